import os

import pytest
import torch
from torch import nn

from srlib.losses import (L1Loss, PaperGeneratorLoss, SRGANGeneratorLoss, discriminator_loss,
                          load_vgg16_features, tv_loss)

# Fixed tensors, (B=2, C=1, 2, 2): sr image 0 = [[0, 1], [2, 3]], image 1 all ones; hr all zeros.
SR = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
HR = torch.zeros(2, 1, 2, 2)
FAKE = torch.tensor([0.2, 0.6])  # mean(1 - p) = 0.6
L1 = 10 / 8                      # mean |sr - hr|
MSE = 18 / 8                     # (0 + 1 + 4 + 9 + 4) / 8
TV = 5.0                         # 2 * (8 / 2 + 2 / 2) / 2, worked out in test_tv_loss_known


def test_discriminator_loss():
    real, fake = torch.tensor([0.9, 0.7]), torch.tensor([0.1, 0.3])
    assert discriminator_loss(real, fake).item() == pytest.approx(1 - 0.8 + 0.2)
    assert discriminator_loss(torch.ones(3), torch.zeros(3)).item() == 0
    assert discriminator_loss(torch.zeros(3), torch.ones(3)).item() == 2


def test_tv_loss_known():
    # Image 0: vertical diffs 2, 2 -> h_tv = 8; horizontal diffs 1, 1 -> w_tv = 2; image 1 is flat.
    # count_h = C*(H-1)*W = 2, count_w = C*H*(W-1) = 2, batch 2: 2 * (8/2 + 2/2) / 2 = 5.
    assert tv_loss(SR).item() == pytest.approx(TV)
    assert tv_loss(torch.full((2, 3, 5, 4), 0.3)).item() == 0


def test_tv_loss_matches_reference_formula():
    x = torch.rand(3, 3, 5, 7, generator=torch.Generator().manual_seed(0))
    h_tv = ((x[:, :, 1:, :] - x[:, :, :4, :]) ** 2).sum()
    w_tv = ((x[:, :, :, 1:] - x[:, :, :, :6]) ** 2).sum()
    ref = 2 * (h_tv / (3 * 4 * 7) + w_tv / (3 * 5 * 6)) / 3
    assert tv_loss(x).item() == pytest.approx(ref.item())


def test_l1_loss():
    total, parts = L1Loss()(None, SR, HR)
    assert total.item() == pytest.approx(L1)
    assert parts == pytest.approx({"pixel": L1, "total": L1})


def test_paper_generator_loss():
    sr = SR.clone().requires_grad_(True)
    total, parts = PaperGeneratorLoss()(FAKE, sr, HR)
    assert total.item() == pytest.approx(L1 + 0.001 * 0.6)
    assert parts == pytest.approx({"pixel": L1, "adversarial": 0.6, "total": L1 + 0.0006})
    assert all(isinstance(v, float) for v in parts.values())
    total.backward()
    assert sr.grad is not None


def _doubling_vgg():
    vgg = nn.Conv2d(1, 1, 1, bias=False)  # stand-in "VGG": features = 2 * image
    nn.init.constant_(vgg.weight, 2.0)
    return vgg


def test_srgan_generator_loss_known():
    loss = SRGANGeneratorLoss(_doubling_vgg())
    sr = SR.clone().requires_grad_(True)
    total, parts = loss(FAKE, sr, HR)
    perceptual = 4 * MSE
    expected = MSE + 0.001 * 0.6 + 0.006 * perceptual + 2e-8 * TV
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts == pytest.approx({"pixel": MSE, "adversarial": 0.6, "perceptual": perceptual, "tv": TV,
                                   "total": expected}, rel=1e-6)
    total.backward()
    assert sr.grad is not None and loss.vgg.weight.grad is None


def test_srgan_generator_loss_freezes_vgg():
    loss = SRGANGeneratorLoss(_doubling_vgg().train())
    assert not any(p.requires_grad for p in loss.parameters())
    assert not loss.vgg.training
    loss.train()
    assert loss.training and not loss.vgg.training


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    return tmp_path


def test_vgg_missing_raises(empty_hub):
    with pytest.raises(RuntimeError) as err:
        load_vgg16_features()
    msg = str(err.value)
    assert os.path.join(str(empty_hub), "checkpoints", "vgg16-397923af.pth") in msg
    assert "weights='random'" in msg


def test_vgg_missing_path_raises(tmp_path):
    with pytest.raises(RuntimeError, match="not found"):
        load_vgg16_features(weights=str(tmp_path / "nope.pth"))


def test_vgg_bad_on_missing():
    with pytest.raises(ValueError, match="on_missing"):
        load_vgg16_features(on_missing="ignore")


@pytest.fixture(scope="module")
def random_vgg():
    return load_vgg16_features("random", seed=0)


def test_vgg_random_fallback_warns_is_deterministic_and_keeps_rng(empty_hub, random_vgg):
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with pytest.warns(RuntimeWarning, match="RANDOM-INIT"):
        features, source = load_vgg16_features(on_missing="random", seed=0)
    assert torch.equal(torch.get_rng_state(), state)
    assert source == "random-init(seed=0)" == random_vgg[1]
    assert len(features) == 31 and not features.training
    ref = random_vgg[0].state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in features.state_dict().items())


def test_vgg_loads_state_dict_file(tmp_path, random_vgg):
    features = random_vgg[0]
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)  # torchvision layout
    state = torch.get_rng_state()
    loaded, source = load_vgg16_features(weights=str(path))
    assert torch.equal(torch.get_rng_state(), state)
    assert source == f"imagenet:{path}"
    ref = features.state_dict()
    assert loaded.state_dict().keys() == ref.keys()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(1, 3, 32, 32)
    assert torch.allclose(loaded(x), features(x))


def test_vgg_auto_finds_hub_file_and_truncates(empty_hub, random_vgg):
    (empty_hub / "checkpoints").mkdir()
    path = empty_hub / "checkpoints" / "vgg16-397923af.pth"
    torch.save(random_vgg[0][:5].state_dict(), path)  # features-only layout, first two convs
    loaded, source = load_vgg16_features(layers=5)
    assert source == f"imagenet:{path}" and len(loaded) == 5
    assert torch.equal(loaded[2].weight, random_vgg[0][2].weight)


def test_vgg_corrupt_file_names_path(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pth"):
        load_vgg16_features(weights=str(path))


def test_srgan_loss_with_vgg16_features(random_vgg):
    loss = SRGANGeneratorLoss(random_vgg[0])
    sr = torch.rand(1, 3, 32, 32, requires_grad=True)
    total, parts = loss(torch.tensor([0.5]), sr, torch.rand(1, 3, 32, 32))
    assert torch.isfinite(total) and set(parts) == {"pixel", "adversarial", "perceptual", "tv", "total"}
    total.backward()
    assert torch.isfinite(sr.grad).all()


def test_adversarial_terms_and_their_gradients():
    """The saturating term's gradient vanishes once D rejects the outputs; the non-saturating one does not."""
    from srlib.losses import adversarial_term
    p = torch.tensor([0.01, 0.5])
    assert adversarial_term(p).item() == pytest.approx(0.745)
    assert adversarial_term(p, "nonsaturating").item() == pytest.approx((-torch.log(p)).mean().item())
    logit = torch.tensor([-4.59512], requires_grad=True)            # D(G(z)) = sigmoid(logit) = 0.01
    for kind, expected in (("saturating", -0.01 * 0.99), ("nonsaturating", -0.99)):
        (g,) = torch.autograd.grad(adversarial_term(torch.sigmoid(logit), kind), logit)
        assert g.item() == pytest.approx(expected, rel=1e-3), kind
    with pytest.raises(ValueError, match="adversarial loss 'hinge'"):
        PaperGeneratorLoss(kind="hinge")
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total, parts = PaperGeneratorLoss(5e-3, "nonsaturating")(p, sr, hr)
    assert total.item() == pytest.approx(parts["pixel"] + 5e-3 * parts["adversarial"], rel=1e-6)
