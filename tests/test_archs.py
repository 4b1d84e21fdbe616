import json
import math

import pytest
import torch

from srlib.archs import (AttentionGenerator, Discriminator, SRGANGenerator, build_generator,
                         count_parameters)

ABLATIONS = [(norm, att, k) for norm in ("group", "batch", "pixel", "none")
             for att in ("channel", "none") for k in (2, 3)]


def _check_forward_backward(net, x, out_shape):
    out = net(x)
    assert out.shape == out_shape
    assert torch.isfinite(out).all()
    out.mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    return out


@pytest.mark.parametrize("norm,attention,convs", ABLATIONS)
def test_attention_generator_ablations(norm, attention, convs):
    torch.manual_seed(0)
    net = AttentionGenerator(n_blocks=1, convs_per_block=convs, norm=norm, attention=attention)
    out = _check_forward_backward(net, torch.rand(2, 3, 16, 16), (2, 3, 64, 64))
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("act", ["prelu", "relu", "lrelu"])
def test_attention_generator_acts(act):
    net = AttentionGenerator(n_blocks=1, act=act)
    _check_forward_backward(net, torch.rand(1, 3, 16, 16), (1, 3, 64, 64))


@pytest.mark.parametrize("arch", ["srgan", "attention"])
@pytest.mark.parametrize("scale", [2, 4])
def test_generator_scale(arch, scale):
    net = build_generator(arch, scale=scale, n_blocks=1)
    out = _check_forward_backward(net, torch.rand(2, 3, 12, 16), (2, 3, 12 * scale, 16 * scale))
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("arch", ["srgan", "attention"])
@pytest.mark.parametrize("scale", [3, 1, 6, 4.0])
def test_generator_rejects_bad_scale(arch, scale):
    with pytest.raises(ValueError, match="power of 2"):
        build_generator(arch, scale=scale, n_blocks=1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(norm="layer"), "norm"),
    (dict(attention="spatial"), "attention"),
    (dict(act="gelu"), "act"),
    (dict(convs_per_block=4), "convs_per_block"),
    (dict(n_feats=60, groups=8), "divisible"),
    (dict(reduction=128), "reduction"),
])
def test_attention_generator_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AttentionGenerator(n_blocks=1, **kwargs)


def test_build_generator_unknown_arch():
    with pytest.raises(ValueError, match="unknown generator arch 'rcan'"):
        build_generator("rcan")


@pytest.mark.parametrize("net", [SRGANGenerator(n_blocks=1, scale=2),
                                 AttentionGenerator(n_blocks=1, norm="batch", reduction=8)])
def test_config_rebuilds_generator(net):
    config = json.loads(json.dumps(net.config))  # plain data, storable in a checkpoint
    rebuilt = build_generator(config["arch"], **config["kwargs"])
    rebuilt.load_state_dict(net.state_dict())
    assert rebuilt.config == net.config


def test_discriminator():
    torch.manual_seed(0)
    net = Discriminator()
    x = torch.rand(2, 3, 32, 32)
    prob = _check_forward_backward(net, x, (2,))
    assert ((prob > 0) & (prob < 1)).all()
    assert torch.allclose(torch.sigmoid(net.logits(x)), prob)


def test_reference_parameter_counts():
    # Printed in the leftthomas/SRGAN README (the public code the paper follows).
    assert count_parameters(SRGANGenerator(n_blocks=5)) == 734219
    assert count_parameters(Discriminator()) == 5215425


def _attention_count(scale=4, n_blocks=5, n_feats=64, convs_per_block=3, norm="group", groups=8,
                     attention="channel", reduction=16, act="prelu", padding="zeros"):
    c, k = n_feats, convs_per_block
    conv3 = 9 * c * c + c
    norm_p = 0 if norm == "none" else 2 * c             # GN, BN, pixel norm: affine weight + bias
    act_p = 1 if act == "prelu" else 0
    ca = 2 * c * (c // reduction) + c // reduction + c if attention == "channel" else 0
    head = 81 * 3 * c + c + 1
    block = k * (conv3 + norm_p) + (k - 1) * act_p + ca
    trunk = conv3 + norm_p
    up = int(math.log2(scale)) * (9 * c * 4 * c + 4 * c + 1)
    tail = 81 * c * 3 + 3
    return head + n_blocks * block + trunk + up + tail


@pytest.mark.parametrize("kwargs", [
    {},
    dict(norm="batch", attention="none", convs_per_block=2),
    dict(norm="none", act="relu", scale=2, n_blocks=2),
    dict(n_feats=32, groups=4, reduction=8),
    dict(norm="pixel", padding="reflect"),
])
def test_attention_parameter_count(kwargs):
    assert count_parameters(AttentionGenerator(**kwargs)) == _attention_count(**kwargs)


def test_attention_defaults_count():
    assert count_parameters(AttentionGenerator()) == 922404


def test_attention_generator_reduces_to_srgan():
    # convs=2, BN, no attention is SRGAN's block: same state-dict keys and the same function.
    torch.manual_seed(0)
    srgan = SRGANGenerator(n_blocks=2).eval()
    att = AttentionGenerator(n_blocks=2, convs_per_block=2, norm="batch", attention="none").eval()
    att.load_state_dict(srgan.state_dict())
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(att(x), srgan(x))


def test_srgan_block_in_the_skeleton_is_srgan_from_the_same_seed():
    # srlib.config.same_generator: the options that make the skeleton SRGANGenerator create the same
    # parameters in the same order, so the same seed gives the same weights (a warm-up is shared)
    import inspect
    from srlib.config import ATTENTION_OPTIONS, SRGAN_BLOCK, same_generator
    defaults = inspect.signature(AttentionGenerator).parameters
    assert ATTENTION_OPTIONS == {k: defaults[k].default for k in ATTENTION_OPTIONS}
    torch.manual_seed(3)
    srgan = SRGANGenerator(n_blocks=2, n_feats=16).state_dict()
    torch.manual_seed(3)
    att = AttentionGenerator(n_blocks=2, n_feats=16, **SRGAN_BLOCK).state_dict()
    assert list(att) == list(srgan) and all(torch.equal(att[k], srgan[k]) for k in srgan)
    block = {"convs_per_block": 2, "norm": "batch", "attention": "none"}
    assert same_generator("attention", block) == same_generator("attention", {**block, "groups": 4}) == ("srgan", {})
    for other in ({}, {**block, "act": "relu"}, {**block, "padding": "reflect"}, {**block, "attention": "channel"},
                  {"convs_per_block": 2, "norm": "batch"}):
        assert same_generator("attention", other) == ("attention", other)
    assert same_generator("srgan", {}) == ("srgan", {})


def test_pixel_norm_normalizes_each_pixel_over_its_channels():
    from srlib.archs import PixelNorm
    torch.manual_seed(0)
    m = PixelNorm(6)
    with torch.no_grad():
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.2, 0.2)
    x = torch.randn(2, 6, 4, 5) * 3 + 1
    want = torch.empty_like(x)
    for b in range(2):                                   # an independent loop, pixel by pixel
        for i in range(4):
            for j in range(5):
                v = x[b, :, i, j]
                want[b, :, i, j] = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + m.eps) * m.weight + m.bias
    assert torch.allclose(m(x), want, atol=1e-5)
    # no statistic over the image: a crop of the input gives the crop of the output
    assert torch.allclose(m(x[:, :, 1:3, 2:5]), m(x)[:, :, 1:3, 2:5])


def test_reflect_padding_reaches_every_padded_conv_and_the_file_config():
    zero, refl = AttentionGenerator(n_blocks=1, n_feats=16), AttentionGenerator(n_blocks=1, n_feats=16,
                                                                                padding="reflect")
    padded = [m for m in refl.modules() if isinstance(m, torch.nn.Conv2d) and max(m.padding) > 0]
    assert padded and all(m.padding_mode == "reflect" for m in padded)
    assert all(m.padding_mode == "zeros" for m in zero.modules() if isinstance(m, torch.nn.Conv2d))
    assert "padding" not in zero.config["kwargs"] and refl.config["kwargs"]["padding"] == "reflect"
    rebuilt = build_generator(refl.config["arch"], **refl.config["kwargs"])
    rebuilt.load_state_dict(refl.state_dict())
    x = torch.rand(1, 3, 12, 12)
    zero.load_state_dict(refl.state_dict())              # same weights: only the padding differs
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), refl.eval()(x))
        border = (zero.eval()(x) - refl(x)).abs()
        assert border[..., :8, :].max() > 1e-4 and border[..., 20:28, 20:28].max() < border.max()
    with pytest.raises(ValueError, match="padding"):
        AttentionGenerator(padding="circular")
