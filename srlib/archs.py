"""Networks: the SRGAN generator and discriminator, and the paper's attention generator.

- SRGAN: Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative Adversarial
  Network", arXiv 1609.04802. Layer for layer as the public leftthomas/SRGAN PyTorch code, which the
  paper's training loop follows (5 residual blocks; 734,219 generator and 5,215,425 discriminator
  parameters, the counts printed in that repository's README).
- Channel attention: the CALayer of RCAN, Zhang et al., "Image Super-Resolution Using Very Deep Residual
  Channel Attention Networks", arXiv 1807.02758.
- Group normalization: Wu & He, "Group Normalization", arXiv 1803.08494.

Images are RGB in [0, 1], layout (B, 3, H, W). Only ``nn.Module``s live here (plus two helpers).
"""

import math

import torch
from torch import nn

from .config import INFERENCE

NORMS = ("group", "batch", "pixel", "none")
PADDINGS = ("zeros", "reflect")
ATTENTIONS = ("channel", "none")
ACTS = ("prelu", "relu", "lrelu")


class CalibratedGroupNorm(nn.GroupNorm):
    """GroupNorm that can normalize with stored statistics instead of the input's own.

    In training (and with :func:`set_inference` 'whole', or before calibration) it is ``nn.GroupNorm``: each
    image is normalized by the mean and variance of its own features, over its whole extent. A generator
    trained on small crops has learned the statistics of those crops; on a whole image they differ, and its
    output shifts in colour (results/extent.csv). :func:`srlib.calibration.calibrate` stores per-group
    statistics measured at the training extent (the mean over training crops of each crop's group mean and
    group variance) in the buffers ``calib_mean`` and ``calib_var``, which the generator file keeps like
    BatchNorm's running statistics; in eval mode the layer then applies them, becoming a fixed per-channel
    affine map whose output no longer depends on the input's extent. Uncalibrated buffers hold NaN.
    """

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True):
        super().__init__(num_groups, num_channels, eps, affine)
        self.register_buffer("calib_mean", torch.full((num_groups,), float("nan")))
        self.register_buffer("calib_var", torch.full((num_groups,), float("nan")))
        self.use_calibration = True     # not saved: the inference mode of the process (set_inference)

    @property
    def calibrated(self):
        return not bool(torch.isnan(self.calib_mean).any() or torch.isnan(self.calib_var).any())

    def uses_calibration(self):
        return not self.training and self.use_calibration and self.calibrated

    def forward(self, x):
        if not self.uses_calibration():
            return super().forward(x)
        per = self.num_channels // self.num_groups
        inv = torch.rsqrt(self.calib_var + self.eps).repeat_interleave(per)        # (C,)
        scale = inv * self.weight if self.affine else inv
        shift = -self.calib_mean.repeat_interleave(per) * scale
        if self.affine:
            shift = shift + self.bias
        return x * scale.view(1, -1, 1, 1).to(x.dtype) + shift.view(1, -1, 1, 1).to(x.dtype)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # generator files written before calibration existed have no buffers: they load as uncalibrated
        for name in ("calib_mean", "calib_var"):
            state_dict.setdefault(prefix + name, torch.full((self.num_groups,), float("nan")))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)




def group_norms(model):
    return [m for m in model.modules() if isinstance(m, CalibratedGroupNorm)]


def set_inference(model, mode):
    """'calibrated' (the default: stored statistics where calibrated) or 'whole' (every GroupNorm normalizes
    with the statistics of the whole input, as results/ was scored before calibration). Returns ``model``."""
    if mode not in INFERENCE:
        raise ValueError(f"inference must be one of {INFERENCE}, got {mode!r}")
    for m in group_norms(model):
        m.use_calibration = mode == "calibrated"
    return model


def is_calibrated(model):
    """True when the model has no GroupNorm or every GroupNorm holds calibrated statistics."""
    return all(m.calibrated for m in group_norms(model))


class PixelNorm(nn.Module):
    """Layer normalization over the channels of each pixel, with a per-channel affine map (ConvNeXt's
    channels-first LayerNorm): its statistics come from one pixel, never from the extent of the image."""

    def __init__(self, n_feats, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(n_feats))
        self.bias = nn.Parameter(torch.zeros(n_feats))

    def forward(self, x):                                  # (B, C, H, W); statistics in fp32 under autocast
        y = x.float()
        mean = y.mean(1, keepdim=True)
        y = (y - mean) * torch.rsqrt((y - mean).pow(2).mean(1, keepdim=True) + self.eps)
        return (y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)).to(x.dtype)


def _norm(kind, n_feats, groups):
    if kind == "group":
        return CalibratedGroupNorm(groups, n_feats)
    if kind == "batch":
        return nn.BatchNorm2d(n_feats)
    if kind == "pixel":
        return PixelNorm(n_feats)
    return nn.Identity()


def _act(kind):
    if kind == "prelu":
        return nn.PReLU()  # one learnable slope, as SRGAN
    if kind == "relu":
        return nn.ReLU(inplace=True)
    return nn.LeakyReLU(0.2, inplace=True)


# ----------------------------------------------------------------------------------------------- blocks


class ResidualBlock(nn.Module):
    """SRGAN residual block: conv3x3-BN-PReLU-conv3x3-BN, plus the skip."""

    def __init__(self, n_feats):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.BatchNorm2d(n_feats), nn.PReLU(),
            nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.BatchNorm2d(n_feats),
        )

    def forward(self, x):
        return x + self.body(x)


class ChannelAttention(nn.Module):
    """RCAN CALayer: global average pool, 1x1 conv C -> C/r, ReLU, 1x1 conv C/r -> C, sigmoid, rescale."""

    def __init__(self, n_feats, reduction=16):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),                          # (B, C, 1, 1)
            nn.Conv2d(n_feats, n_feats // reduction, 1), nn.ReLU(inplace=True),  # (B, C/r, 1, 1)
            nn.Conv2d(n_feats // reduction, n_feats, 1), nn.Sigmoid(),           # (B, C, 1, 1)
        )

    def forward(self, x):
        return x * self.gate(x)  # (B, C, H, W)


class AttentionResidualBlock(nn.Module):
    """The paper's block: ``convs`` x (conv3x3 -> norm), act between convs, then attention, then skip."""

    def __init__(self, n_feats, convs=3, norm="group", groups=8, attention="channel", reduction=16,
                 act="prelu"):
        super().__init__()
        layers = []
        for i in range(convs):
            layers += [nn.Conv2d(n_feats, n_feats, 3, padding=1), _norm(norm, n_feats, groups)]
            if i < convs - 1:  # no activation after the last conv, as SRGAN's block
                layers.append(_act(act))
        self.body = nn.Sequential(*layers)
        self.attention = ChannelAttention(n_feats, reduction) if attention == "channel" else nn.Identity()

    def forward(self, x):
        return x + self.attention(self.body(x))


class UpsampleBlock(nn.Sequential):
    """x2 upsampling: conv3x3 to 4C, PixelShuffle(2), PReLU. (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, n_feats):
        super().__init__(nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2), nn.PReLU())


# --------------------------------------------------------------------------------------------- networks


class _ResNetGenerator(nn.Module):
    """Shared skeleton: 9x9 head + PReLU, residual blocks, conv3x3-norm, long skip, x2 stages, 9x9 tail."""

    def __init__(self, scale, n_feats, blocks, trunk_norm):
        super().__init__()
        if not (isinstance(scale, int) and scale >= 2 and scale & (scale - 1) == 0):
            raise ValueError(f"scale must be a power of 2 (2, 4, 8, ...), got {scale!r}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 9, padding=4), nn.PReLU())
        self.body = nn.Sequential(*blocks)
        self.trunk = nn.Sequential(nn.Conv2d(n_feats, n_feats, 3, padding=1), trunk_norm)
        self.upsample = nn.Sequential(*[UpsampleBlock(n_feats) for _ in range(int(math.log2(scale)))])
        self.tail = nn.Conv2d(n_feats, 3, 9, padding=4)

    def forward(self, x):                          # (B, 3, h, w) in [0, 1]
        return self.reconstruct(self.features(x))

    def features(self, x):
        """The low-resolution part: (B, 3, h, w) -> (B, C, h, w). It holds every normalization and attention
        layer, so whole-image statistics (GroupNorm, channel attention) are all taken here."""
        feat = self.head(x)
        return feat + self.trunk(self.body(feat))  # long skip

    def reconstruct(self, feat):
        """The upsampling part, purely local (convolutions, PixelShuffle, PReLU; receptive field about
        3 LR pixels): (B, C, h, w) -> (B, 3, h*s, w*s) in [0, 1]."""
        feat = self.upsample(feat)                 # (B, C, h*s, w*s)
        return (torch.tanh(self.tail(feat)) + 1) / 2

    def has_global_statistics(self):
        """True when an output pixel depends on the whole image (a GroupNorm that normalizes with the
        input's own statistics, channel attention, or a BatchNorm in training mode), so that exact tiling
        must run :meth:`features` on the whole image. A calibrated GroupNorm in eval mode is local."""
        return any((isinstance(m, nn.GroupNorm) and not (isinstance(m, CalibratedGroupNorm) and m.uses_calibration()))
                   or isinstance(m, nn.AdaptiveAvgPool2d)
                   or (isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training) for m in self.modules())


class SRGANGenerator(_ResNetGenerator):
    """SRGAN generator as leftthomas/SRGAN (``n_blocks=5`` there; the SRGAN paper used 16)."""

    def __init__(self, scale=4, n_blocks=5, n_feats=64):
        blocks = [ResidualBlock(n_feats) for _ in range(n_blocks)]
        super().__init__(scale, n_feats, blocks, nn.BatchNorm2d(n_feats))
        self.config = {"arch": "srgan", "kwargs": dict(scale=scale, n_blocks=n_blocks, n_feats=n_feats)}


class AttentionGenerator(_ResNetGenerator):
    """The paper's generator: SRGAN's skeleton with attention residual blocks.

    Args:
        scale: upscaling factor, a power of 2; 4 as the paper.
        n_blocks: residual blocks; 5 equals the baseline SRGAN's depth, so the comparison is fair.
        n_feats: channels in the trunk; 64 as SRGAN.
        convs_per_block: 3x3 convs per block, 2 or 3; 3 as the paper ("two convolutional layers
            into three"), 2 gives SRGAN's block for ablation.
        norm: 'group', 'batch', 'pixel' or 'none', after every conv in a block and after the trunk-end
            conv; 'group' as the paper (GN replaces BN); 'pixel' (:class:`PixelNorm`) normalizes each pixel
            over its channels, with no statistic over the image (a repaired block of the ablation).
        groups: GroupNorm groups; 8 so that each group has 8 channels at 64 features.
        attention: 'channel' (RCAN CALayer after the convs, before the skip add) or 'none'; the paper
            adds attention "after the convolution" and cites RCAN.
        reduction: channel-attention squeeze ratio C -> C/r; 16 as RCAN.
        act: 'prelu', 'relu' or 'lrelu' (0.2), between convs but not after the last; 'prelu' and that
            placement as SRGAN's block.
        padding: 'zeros' (as the paper and SRGAN) or 'reflect', for every convolution of the generator;
            zero-padded borders weigh more in a small training crop than in a whole image, which is what
            makes GroupNorm's statistics depend on the extent (results/extent.csv, probe 'padding').

    With ``convs_per_block=2, norm='batch', attention='none'`` this is exactly ``SRGANGenerator``.
    """
    takes_options = True      # a run's ``generator`` options (the ablation's block variants) are its kwargs

    def __init__(self, scale=4, n_blocks=5, n_feats=64, convs_per_block=3, norm="group", groups=8,
                 attention="channel", reduction=16, act="prelu", padding="zeros"):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if act not in ACTS:
            raise ValueError(f"act must be one of {ACTS}, got {act!r}")
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        if convs_per_block not in (2, 3):
            raise ValueError(f"convs_per_block must be 2 or 3, got {convs_per_block!r}")
        if norm == "group" and (groups < 1 or n_feats % groups):
            raise ValueError(f"n_feats={n_feats} is not divisible by groups={groups}")
        if attention == "channel" and not 1 <= reduction <= n_feats:
            raise ValueError(f"reduction must be in [1, n_feats={n_feats}], got {reduction!r}")
        blocks = [AttentionResidualBlock(n_feats, convs_per_block, norm, groups, attention, reduction, act)
                  for _ in range(n_blocks)]
        super().__init__(scale, n_feats, blocks, _norm(norm, n_feats, groups))
        self.config = {"arch": "attention", "kwargs": dict(
            scale=scale, n_blocks=n_blocks, n_feats=n_feats, convs_per_block=convs_per_block, norm=norm,
            groups=groups, attention=attention, reduction=reduction, act=act)}
        if padding != "zeros":        # recorded only when set, so files written before it existed are unchanged
            self.config["kwargs"]["padding"] = padding
            for m in self.modules():
                if isinstance(m, nn.Conv2d) and max(m.padding) > 0:
                    m.padding_mode = padding


class Discriminator(nn.Module):
    """SRGAN discriminator as leftthomas/SRGAN: 8 convs, pool, two 1x1 convs; forward gives P(real), (B,)."""

    def __init__(self):
        super().__init__()
        widths = [64, 64, 128, 128, 256, 256, 512, 512]
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1))  # stride 2 on 2,4,6,8
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.features = nn.Sequential(*layers)  # (B, 512, H/16, W/16)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),            # (B, 512, 1, 1)
            nn.Conv2d(512, 1024, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(1024, 1, 1),              # (B, 1, 1, 1)
        )

    def logits(self, x):
        return self.classifier(self.features(x)).flatten()  # (B,)

    def forward(self, x):
        return torch.sigmoid(self.logits(x))  # (B,) in (0, 1)


GENERATORS = {"srgan": SRGANGenerator, "attention": AttentionGenerator}   # arch -> class(scale, n_blocks, n_feats)


def register_generator(name, cls):
    """Add generator class ``cls`` as arch ``name``: built from ``scale``, ``n_blocks``, ``n_feats`` (and the
    run's ``generator`` options when ``cls.takes_options``), saved and loaded by name
    (:func:`build_generator`). Its model goes to :func:`srlib.config.register_model`."""
    if name in GENERATORS:
        raise ValueError(f"generator arch {name!r} is registered already")
    GENERATORS[name] = cls


def build_generator(arch, **kwargs):
    """Build a generator by name ('srgan' or 'attention'); ``model.config`` rebuilds it this way."""
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator arch {arch!r}; choose one of {sorted(GENERATORS)}")
    return GENERATORS[arch](**kwargs)


def count_parameters(module):
    """Number of parameters (trainable or not) in ``module``."""
    return sum(p.numel() for p in module.parameters())
