"""Losses of the SRGAN baseline (as leftthomas/SRGAN) and of the paper (L1 + 0.001 adversarial).

Generator losses share one call, ``loss(fake_prob, sr, hr) -> (total, parts)``: ``fake_prob`` is the
discriminator's P(real) for ``sr``, shape (B,); ``sr`` and ``hr`` are RGB in [0, 1], (B, 3, H, W);
``total`` is a scalar tensor to back-propagate and ``parts`` a dict of floats for logging.

SRGAN: Ledig et al., arXiv 1609.04802. Perceptual loss on VGG16 (Simonyan & Zisserman, arXiv 1409.1556)
``features[:31]`` (up to and including the last max-pool), as the reference implementation.
"""

import os
import warnings

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .config import ADV_WEIGHT, ADVERSARIAL  # noqa: F401

VGG_WEIGHT = 6e-3      # perceptual term, reference implementation
TV_WEIGHT = 2e-8       # total variation term, reference implementation
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16 weights


def discriminator_loss(real_prob, fake_prob):
    """Reference d_loss: ``1 - mean(D(hr)) + mean(D(sr))``; probabilities (B,), result in [0, 2]."""
    return 1 - real_prob.mean() + fake_prob.mean()


def tv_loss(x):
    """Total variation as leftthomas/SRGAN's TVLoss (weight 1): mean squared neighbour differences.

    ``2 * (h_tv / count_h + w_tv / count_w) / B`` with ``h_tv``, ``w_tv`` sums of squared vertical and
    horizontal differences and ``count_*`` the number of such differences per image. x: (B, C, H, W).
    """
    b, c, h, w = x.shape
    h_tv = (x[:, :, 1:, :] - x[:, :, :-1, :]).pow(2).sum()
    w_tv = (x[:, :, :, 1:] - x[:, :, :, :-1]).pow(2).sum()
    return 2 * (h_tv / (c * (h - 1) * w) + w_tv / (c * h * (w - 1))) / b


class GeneratorLoss(nn.Module):
    """Base: ``terms()`` gives the weighted terms (names from TERMS), ``forward`` their sum and the raw
    (unweighted) values for logging. Training accounts for each term separately (value, gradient share)."""

    def terms(self, fake_prob, sr, hr):
        raise NotImplementedError

    def forward(self, fake_prob, sr, hr):
        terms = self.terms(fake_prob, sr, hr)
        total = sum(terms.values())
        parts = {k: float(v.detach()) / self.weights[k] for k, v in terms.items()}
        return total, {**parts, "total": float(total.detach())}


TERMS = ("pixel", "adversarial", "perceptual", "tv")


class L1Loss(GeneratorLoss):
    """PSNR-oriented pre-training loss: L1 only; ``fake_prob`` is ignored and may be None."""
    weights = {"pixel": 1.0}

    def terms(self, fake_prob, sr, hr):
        return {"pixel": F.l1_loss(sr, hr)}




def adversarial_term(fake_prob, kind="saturating"):
    """The generator's adversarial term from D's probabilities on its outputs (unweighted).

    'saturating': ``mean(1 - D(sr))`` as the paper and the reference SRGAN code; its gradient with respect to
    D's logit is ``-D(1 - D)``, which vanishes once D rejects the outputs (D(sr) near 0). 'nonsaturating':
    ``mean(-log D(sr))`` (Goodfellow et al., 2014), gradient ``-(1 - D)``, which does not.
    """
    if kind == "saturating":
        return torch.mean(1 - fake_prob)
    if kind == "nonsaturating":
        return -torch.log(fake_prob.clamp_min(1e-8)).mean()
    raise ValueError(f"adversarial loss {kind!r}: choose from {ADVERSARIAL}")


class PaperGeneratorLoss(GeneratorLoss):
    """The paper's eq. (1): ``L1(sr, hr) + 0.001 * mean(1 - D(sr))``. ``weight`` and ``kind`` (see
    :func:`adversarial_term`) change the adversarial term, for the ablation's positive control."""

    def __init__(self, weight=ADV_WEIGHT, kind="saturating"):
        super().__init__()
        adversarial_term(torch.ones(1), kind)          # an unknown kind fails here, not mid-training
        self.weights, self.kind = {"pixel": 1.0, "adversarial": weight}, kind

    def terms(self, fake_prob, sr, hr):
        return {"pixel": F.l1_loss(sr, hr),
                "adversarial": self.weights["adversarial"] * adversarial_term(fake_prob, self.kind)}


class SRGANGeneratorLoss(GeneratorLoss):
    """Reference SRGAN loss: ``MSE + 0.001 adv + 0.006 MSE(vgg(sr), vgg(hr)) + 2e-8 TV(sr)``.

    ``vgg_features`` (e.g. from ``load_vgg16_features``) is frozen and kept in eval mode. As the reference
    implementation, images in [0, 1] go to VGG without ImageNet mean/std normalization; we keep that so
    the 0.006 weight means what it meant there. ``vgg_features=None`` drops the perceptual term (the
    quick profile does so when only a random VGG16 is at hand: see ``TrainConfig.vgg_on_missing``).
    """

    def __init__(self, vgg_features):
        super().__init__()
        self.vgg = vgg_features.eval() if vgg_features is not None else None
        self.weights = {"pixel": 1.0, "adversarial": ADV_WEIGHT, "tv": TV_WEIGHT}
        if self.vgg is not None:
            self.weights["perceptual"] = VGG_WEIGHT
            for p in self.vgg.parameters():
                p.requires_grad_(False)

    def train(self, mode=True):
        super().train(mode)
        if self.vgg is not None:
            self.vgg.eval()  # frozen feature extractor, whatever the parent's mode
        return self

    def terms(self, fake_prob, sr, hr):
        t = {"pixel": F.mse_loss(sr, hr), "adversarial": ADV_WEIGHT * torch.mean(1 - fake_prob)}
        if self.vgg is not None:
            t["perceptual"] = VGG_WEIGHT * F.mse_loss(self.vgg(sr), self.vgg(hr))
        t["tv"] = TV_WEIGHT * tv_loss(sr)
        return t


def load_vgg16_features(weights="auto", on_missing="error", seed=0, layers=31):
    """VGG16 ``features[:layers]`` for the perceptual loss, and a string saying where its weights came from.

    Args:
        weights: 'auto' looks for torchvision's cached ImageNet file ``vgg16-397923af.pth`` in
            ``torch.hub.get_dir()/checkpoints/`` (never downloads); a path loads that state dict (a full
            torchvision VGG16 one, keys 'features.N.*', or a features-only one, keys 'N.*'); 'random'
            uses a seeded random init on purpose.
        on_missing: what to do when the ImageNet file is absent: 'error' raises RuntimeError; 'random'
            warns loudly and falls back to a seeded random init.
        seed: seed of the random init; drawn from a forked RNG, so the global RNG state is untouched.
        layers: how many modules of ``vgg16().features`` to keep; 31 (all) as the reference.

    Returns:
        ``(features, source)`` with source ``'imagenet:<path>'`` or ``'random-init(seed=<seed>)'``.
    """
    if on_missing not in ("error", "random"):
        raise ValueError(f"on_missing must be 'error' or 'random', got {on_missing!r}")
    if weights == "random":
        return _random_vgg16_features(seed, layers), f"random-init(seed={seed})"
    if weights == "auto":
        path = os.path.join(torch.hub.get_dir(), "checkpoints", VGG16_FILE)
    else:
        path = str(weights)
    if not os.path.isfile(path):
        msg = (f"VGG16 ImageNet weights not found at {path!r}. Fix: copy torchvision's {VGG16_FILE} there "
               f"(it is torch.hub.get_dir()/checkpoints/), or pass weights='<path to the file>', or choose "
               f"weights='random' / on_missing='random' for a random-init VGG "
               f"(not the SRGAN perceptual loss).")
        if on_missing == "error":
            raise RuntimeError(msg)
        warnings.warn(f"!!! {msg} FALLING BACK TO A RANDOM-INIT VGG16 (seed={seed}): the perceptual loss "
                      f"will NOT match SRGAN's. !!!", RuntimeWarning, stacklevel=2)
        return _random_vgg16_features(seed, layers), f"random-init(seed={seed})"

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"could not read VGG16 weights from {path!r} "
                           f"(corrupt or not a state dict?): {e}") from e
    if not isinstance(state, dict):
        raise RuntimeError(f"VGG16 weights file {path!r} does not hold a state dict")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    with torch.random.fork_rng(devices=[]):  # building the layers draws random numbers; keep them local
        features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])[:layers]
    try:
        features.load_state_dict({k: v for k, v in state.items() if int(k.split(".")[0]) < layers})
    except (RuntimeError, ValueError) as e:
        raise RuntimeError(f"VGG16 weights file {path!r} does not match "
                           f"VGG16 features[:{layers}]: {e}") from e
    return features.eval(), f"imagenet:{path}"


def _random_vgg16_features(seed, layers):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vgg = torchvision.models.vgg16(weights=None)
    return vgg.features[:layers].eval()
