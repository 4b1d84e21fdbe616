"""Measures beside PSNR and SSIM: LPIPS, weight-free full-reference measures (piq) and NIQE.

The paper argues for perceptual quality but reports only PSNR and SSIM. The field reports LPIPS beside them;
other measures need no learned weights at all. Every measure here scores a uint8 RGB output against its HR
image (or, for NIQE, alone) with the standard protocol's border (``scale`` pixels) shaved, so the numbers do
not depend on the PSNR/SSIM protocol. Lower is better for ``lpips``, ``gmsd`` and ``niqe``; higher for
``haarpsi`` and ``ms_ssim`` (:data:`HIGHER_IS_BETTER`).

- ``lpips`` (Zhang et al., 2018), the ``lpips`` package, AlexNet variant: distances between deep features,
  weighted by linear layers fitted to human 2AFC judgements. The linear layers ship in the wheel; the
  AlexNet ImageNet backbone comes from torchvision's cache (or a given file) and is never downloaded by
  srlib. Without it the column is empty and :func:`load_lpips` says why. Limits: trained on 64x64 patches
  of distortions that include few SR artefacts; a learned measure can be gamed by optimizing against it.
- ``haarpsi`` (Reisenhofer et al., 2018), piq: similarity of Haar-wavelet coefficient magnitudes, weighted by
  local importance; no learned weights, tracks human quality ratings closely on the usual IQA databases.
  Limit: a full-reference fidelity measure, so it still prefers an image close to HR over a plausible one.
- ``gmsd`` (Xue et al., 2014), piq: standard deviation of the gradient-magnitude similarity map. Cheap and
  sensitive to blur and ringing. Limit: it sees only gradient magnitude, not colour or texture statistics.
- ``ms_ssim`` (Wang et al., 2003), piq: SSIM over five scales on RGB. Closer to perception than one-scale
  SSIM, but still a distortion measure; it needs both sides over 160 pixels (else NaN).
- ``niqe`` (Mittal et al., 2013; their features, blocks, scales and pristine-block selection, with the
  local mean and deviation filtered with replicated instead of zero-padded edges): no-reference
  naturalness, the distance between a multivariate Gaussian of local normalized-luminance statistics of
  the image and one fitted on pristine images. The usual fitted
  parameters cannot be fetched here, so :class:`NIQE` is fitted on our own training HR images (the model's
  provenance is stored with it); its absolute values are therefore not comparable with published NIQE
  numbers, only with each other. Limit: it measures statistical naturalness, not fidelity to the HR image,
  so it rewards plausible invented texture (the perception axis of Blau and Michaeli's plane).
"""
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.special import gamma as G

from .metrics import to_uint8

MEASURES = ("lpips", "haarpsi", "gmsd", "ms_ssim", "niqe")
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "haarpsi": True, "gmsd": False,
                    "ms_ssim": True, "niqe": False}
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"   # torchvision's ImageNet AlexNet weights


def _tensor(img, shave):
    """uint8 (H, W, 3) -> float (1, 3, H', W') in [0, 1] with ``shave`` pixels cut from every side."""
    img = to_uint8(img)
    if shave:
        img = img[shave:-shave, shave:-shave]
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0


# ---------------------------------------------------------------------------------------------------- LPIPS
def load_lpips(backbone="auto", seed=0):
    """An ``lpips.LPIPS`` (AlexNet) model in eval mode, or None, and a note saying which backbone it has.

    ``backbone``: 'auto' (torchvision's cache, ``<torch hub>/checkpoints/alexnet-owt-7be5be79.pth``; None when
    absent), a path to an AlexNet state dict (torchvision's key names), or 'random' (a backbone seeded with
    ``seed``: for tests of the code path only, its scores mean nothing).
    """
    if backbone == "random":
        torch.manual_seed(seed)
        return _lpips_model().eval(), f"RANDOM AlexNet backbone (seed {seed}): scores are meaningless"
    path = os.path.join(torch.hub.get_dir(), "checkpoints", ALEXNET_FILE) if backbone == "auto" else backbone
    if not os.path.isfile(path):
        if backbone != "auto":
            raise FileNotFoundError(f"LPIPS backbone {path}: no such file")
        return None, (f"not computed: no ImageNet AlexNet weights ({ALEXNET_FILE}) in torchvision's cache "
                      f"(<torch hub dir>/checkpoints); srlib does not download them")
    model = _lpips_model()
    _load_alexnet(model, path)
    where = "torchvision's cache" if backbone == "auto" else f"the file {Path(path).name}"
    return model.eval(), f"AlexNet ImageNet weights from {where}"


def _lpips_model():
    """lpips.LPIPS (AlexNet, linear layers from the wheel) with an unloaded backbone: never downloads."""
    import warnings

    import lpips
    with warnings.catch_warnings():     # torchvision's deprecation of ``pretrained=False``, used inside lpips
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)


def _load_alexnet(model, path):
    """Copy torchvision AlexNet ``features.<i>.*`` tensors into lpips' slices (which keep the indices)."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    target = {}
    for name, _ in model.net.named_parameters():          # 'slice1.0.weight' ...
        _, idx, kind = name.split(".")
        target[f"features.{idx}.{kind}"] = name
    missing = [k for k in target if k not in sd]
    if missing:
        raise ValueError(f"{path}: not a torchvision AlexNet state dict (missing {missing[:3]})")
    model.net.load_state_dict({target[k]: sd[k] for k in target})


@torch.no_grad()
def lpips_distance(model, sr, hr, shave=4):
    """LPIPS between two uint8 (H, W, 3) images (or batches of same-size images: (N, H, W, 3)) -> float or
    array of N floats."""
    batch = np.asarray(sr).ndim == 4
    sr, hr = (np.asarray(x) if batch else np.asarray(x)[None] for x in (sr, hr))
    a = torch.cat([_tensor(x, shave) for x in sr])
    b = torch.cat([_tensor(x, shave) for x in hr])
    d = model(a, b, normalize=True).flatten().numpy().astype(np.float64)
    return d if batch else float(d[0])


# ------------------------------------------------------------------------------------ weight-free (piq)
@torch.no_grad()
def full_reference(sr, hr, shave=4):
    """HaarPSI, GMSD and MS-SSIM of a uint8 (H, W, 3) output against HR (piq, data range 1)."""
    import piq
    a, b = _tensor(sr, shave), _tensor(hr, shave)
    out = {"haarpsi": float(piq.haarpsi(a, b, data_range=1.0)), "gmsd": float(piq.gmsd(a, b, data_range=1.0))}
    out["ms_ssim"] = float(piq.multi_scale_ssim(a, b, data_range=1.0)) if min(a.shape[-2:]) > 160 else np.nan
    return out


# ---------------------------------------------------------------------------------------------------- NIQE
_GAM = np.arange(0.2, 10.0 + 1e-9, 0.001)
_R_AGGD = G(2 / _GAM) ** 2 / (G(1 / _GAM) * G(3 / _GAM))
SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))         # horizontal, vertical, two diagonals (as circshift in NIQE)
NIQE_VERSION = 2     # of the features below; part of the fitted model's cache key


def aggd_fit(x):
    """Moment-matching fit of an asymmetric generalized Gaussian per row of ``x`` (N, M), as Mittal et al.'s
    ``estimateaggdparam``: (shape alpha, left scale beta_l, right scale beta_r), with the shape looked up on
    a 0.001 grid over [0.2, 10] and ``beta = std * sqrt(G(1/alpha) / G(3/alpha))`` for each side."""
    x = np.asarray(x, dtype=np.float64)
    neg, pos = x < 0, x > 0
    left = np.sqrt((x ** 2 * neg).sum(axis=1) / np.maximum(neg.sum(axis=1), 1))
    right = np.sqrt((x ** 2 * pos).sum(axis=1) / np.maximum(pos.sum(axis=1), 1))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):   # flat or one-sided blocks
        g = left / right
        r = np.abs(x).mean(axis=1) ** 2 / (x ** 2).mean(axis=1)
        r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
    alpha = _GAM[np.nan_to_num((_R_AGGD[None] - r_norm[:, None]) ** 2, nan=np.inf).argmin(axis=1)]
    scale = np.sqrt(G(1 / alpha) / G(3 / alpha))
    return alpha, left * scale, right * scale


def mscn(y):
    """Mean-subtracted contrast-normalized coefficients of a float image and its local deviation (7x7
    Gaussian, sigma 7/6, edges replicated): ``(y - mu) / (sigma + 1)``, sigma."""
    mu = ndimage.gaussian_filter(y, 7 / 6, mode="nearest", truncate=3 / (7 / 6))
    var = ndimage.gaussian_filter(y * y, 7 / 6, mode="nearest", truncate=3 / (7 / 6)) - mu * mu
    sigma = np.sqrt(np.abs(var))
    return (y - mu) / (sigma + 1), sigma


def _blocks(a, size):
    """Non-overlapping size x size blocks of a 2-D array, row-major: (n_blocks, size * size)."""
    h, w = a.shape[0] // size, a.shape[1] // size
    return a[: h * size, : w * size].reshape(h, size, w, size).swapaxes(1, 2).reshape(h * w, size * size)


def _scale_features(y, size):
    """18 features per size x size block, as Mittal et al.'s ``computefeature``: the AGGD of the MSCN
    coefficients (shape, mean of the two scales), and for each of four neighbour directions the AGGD of the
    products of MSCN with its neighbour, shifted circularly within the block (shape, mean, left and right
    scale). Also each block's sharpness (mean local deviation)."""
    m, sigma = mscn(y)
    blocks = _blocks(m, size)
    a, bl, br = aggd_fit(blocks)
    feats = [a, (bl + br) / 2]
    cube = blocks.reshape(-1, size, size)
    for dy, dx in SHIFTS:
        pair = (cube * np.roll(cube, (dy, dx), axis=(1, 2))).reshape(len(cube), -1)
        a, bl, br = aggd_fit(pair)
        feats += [a, (br - bl) * G(2 / a) / G(1 / a), bl, br]
    return np.stack(feats, axis=1), _blocks(sigma, size).mean(axis=1)


def niqe_features(img, block=96, shave=4):
    """NIQE features of an image: (n_blocks, 36) for two scales (the image and its half, MATLAB bicubic), and
    the blocks' sharpness at full scale. ``img``: uint8 RGB (H, W, 3) or a 2-D float luminance in [0, 255];
    RGB is reduced to full-swing BT.601 luma. Needs at least one block: both sides >= ``block``."""
    from .imresize import imresize
    y = np.asarray(img)
    if y.ndim == 3:
        y = y.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    y = y.astype(np.float64)
    if shave:
        y = y[shave:-shave, shave:-shave]
    if min(y.shape) < block:
        raise ValueError(f"NIQE needs an image of at least {block}x{block} pixels, got {y.shape}")
    h, w = (s // block * block for s in y.shape)
    y = y[:h, :w]
    f1, sharp = _scale_features(y, block)
    f2, _ = _scale_features(imresize(y, output_shape=(h // 2, w // 2)), block // 2)
    return np.concatenate([f1, f2], axis=1), sharp


class NIQE:
    """A NIQE model: the mean and covariance of the features of pristine blocks.

    :meth:`fit` takes images (uint8 RGB), keeps in each the blocks whose sharpness exceeds
    ``sharpness * max`` (0.75, as Mittal et al.) and fits a Gaussian to all kept blocks. :meth:`score` fits
    a Gaussian to all blocks of one image and returns ``sqrt((mu1 - mu2)^T ((C1 + C2) / 2)^+ (mu1 - mu2))``
    (pseudo-inverse). :meth:`save` / :meth:`load` keep the model in a .npz with its provenance.
    """

    def __init__(self, mu, cov, source="", block=96):
        self.mu, self.cov, self.source, self.block = np.asarray(mu), np.asarray(cov), source, int(block)

    @classmethod
    def fit(cls, images, source="", block=96, sharpness=0.75):
        kept, used, small = [], 0, 0
        for img in images:
            if min(np.asarray(img).shape[:2]) - 8 < block:   # under one block once shaved: nothing to fit
                small += 1
                continue
            f, sharp = niqe_features(img, block)
            kept.append(f[sharp > sharpness * sharp.max()] if sharp.max() > 0 else f[:0])
            used += 1
        feats = np.concatenate(kept) if kept else np.zeros((0, 36))
        if len(feats) < 2:
            raise ValueError("NIQE.fit needs at least two sharp blocks")
        source = (f"{source}; {used} images, {len(feats)} sharp {block}px blocks ({small} images under one "
                  f"block skipped)")
        return cls(feats.mean(axis=0), np.cov(feats, rowvar=False), source, block)

    def score(self, img, shave=4):
        f, _ = niqe_features(img, self.block, shave)
        mu = f.mean(axis=0)
        cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(self.cov)
        d = self.mu - mu
        return float(np.sqrt(max(d @ np.linalg.pinv((self.cov + cov) / 2) @ d, 0.0)))

    def save(self, path):
        from .io import atomic_write
        atomic_write(path, lambda f: np.savez(f, mu=self.mu, cov=self.cov, source=self.source, block=self.block))

    @classmethod
    def load(cls, path):
        with np.load(path) as z:
            return cls(z["mu"], z["cov"], str(z["source"]), int(z["block"]))


def fit_niqe(dataset, root=None, cache=None):
    """NIQE fitted on the HR images of a dataset or manifest (e.g. 'quick-train'), cached as
    ``<cache>/niqe-<dataset>-<digest>.npz`` (digest of the image files' names and sizes); the model's
    ``source`` names the dataset and the number of images."""
    from .data import hr_files
    from .io import read_image
    files = hr_files(dataset, root)
    digest = hashlib.sha256("\n".join([f"niqe-features-v{NIQE_VERSION}"] +
                                      [f"{Path(f).name}:{Path(f).stat().st_size}" for f in files]).encode())
    path = Path(cache) / f"niqe-{dataset}-{digest.hexdigest()[:12]}.npz" if cache else None
    if path and path.exists():
        return NIQE.load(path)
    model = NIQE.fit((read_image(f) for f in files),
                     source=f"fitted by srlib on the HR images of {dataset}")
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(path)
    return model


class Perceptual:
    """Scores one output on every measure available: ``lpips`` (when a model is given), the piq measures,
    ``niqe`` (when a model is given). Missing measures are NaN; ``notes`` says why."""

    def __init__(self, lpips_model=None, niqe=None, notes=None, shave=4):
        self.lpips, self.niqe, self.shave = lpips_model, niqe, shave
        self.notes = dict(notes or {})

    def __call__(self, sr, hr):
        sr = to_uint8(sr)
        out = dict.fromkeys(MEASURES, np.nan)
        if self.lpips is not None:
            out["lpips"] = lpips_distance(self.lpips, sr, hr, self.shave)
        out.update(full_reference(sr, hr, self.shave))
        if self.niqe is not None:
            out["niqe"] = self.niqe.score(sr, self.shave)
        return out


def default_perceptual(niqe_set="quick-train", root=None, cache="cache", lpips_backbone="auto"):
    """:class:`Perceptual` with LPIPS where its backbone exists and NIQE fitted on ``niqe_set``."""
    model, lp_note = load_lpips(lpips_backbone)
    niqe = fit_niqe(niqe_set, root, cache)
    return Perceptual(model, niqe, notes={"lpips": lp_note, "niqe": niqe.source})
