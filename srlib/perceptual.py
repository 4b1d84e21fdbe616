"""Measures beside PSNR and SSIM: LPIPS, ST-LPIPS, weight-free full-reference measures (piq) and NIQE.

The paper argues for perceptual quality but reports only PSNR and SSIM. The field reports LPIPS beside them;
other measures need no learned weights at all. Every measure here scores a uint8 RGB output against its HR
image (or, for NIQE, alone) with the standard protocol's border (``scale`` pixels) shaved, so the numbers do
not depend on the PSNR/SSIM protocol. Lower is better for ``lpips``, ``stlpips_alex``, ``gmsd`` and both
NIQEs; higher for ``haarpsi`` and ``ms_ssim`` (:data:`HIGHER_IS_BETTER`).

- ``lpips`` (Zhang et al., 2018), the ``lpips`` package, AlexNet variant: distances between deep features,
  weighted by linear layers fitted to human 2AFC judgements. The linear layers ship in the wheel; the
  AlexNet ImageNet backbone comes from torchvision's cache (``python -m srlib download alexnet`` puts it
  there) or a given file, never from a download at run time. Without it the column is empty and
  :func:`load_lpips` says why. Limits: trained on 64x64 patches of distortions that include few SR
  artefacts; a learned measure can be gamed by optimizing against it.
- ``stlpips_alex`` (Ghildyal and Liu, "Shift-tolerant Perceptual Similarity Metric", ECCV 2022, arXiv
  2207.13686), the ``stlpips-pytorch`` package (the optional extra ``srlib[stlpips]``): an LPIPS-family
  distance on an anti-aliased AlexNet, its backbone and linear layers fitted to the same human judgements
  and shipped complete in the wheel, so it needs no download. It is **not** the LPIPS that SR papers report;
  do not set it beside their LPIPS numbers. Licences: the package is BSD-2-Clause (its metadata also says
  MIT), but its anti-aliased network code (``models_lpf``, from Adobe's antialiased-cnns) is CC BY-NC-SA
  4.0 (non-commercial). It imports ``torchsummary`` and ``IPython`` without declaring them (the extra
  declares both) and loads its weights with ``strict=False``; :func:`load_stlpips` loads them itself and
  refuses a file with missing or unexpected tensors. Without the package the column is NaN and the note
  says why.
- ``haarpsi`` (Reisenhofer et al., 2018), piq: similarity of Haar-wavelet coefficient magnitudes, weighted by
  local importance; no learned weights, tracks human quality ratings closely on the usual IQA databases.
  Limit: a full-reference fidelity measure, so it still prefers an image close to HR over a plausible one.
- ``gmsd`` (Xue et al., 2014), piq: standard deviation of the gradient-magnitude similarity map. Cheap and
  sensitive to blur and ringing. Limit: it sees only gradient magnitude, not colour or texture statistics.
- ``ms_ssim`` (Wang et al., 2003), piq: SSIM over five scales on RGB. Closer to perception than one-scale
  SSIM, but still a distortion measure; it needs both sides over 160 pixels (else NaN).
- ``niqe_live`` (Mittal, Soundararajan and Bovik, "Making a 'Completely Blind' Image Quality Analyzer",
  IEEE SPL 2013): no-reference naturalness, the distance between a multivariate Gaussian of local
  normalized-luminance statistics of the image and one fitted on pristine images, **with the standard
  pristine model** of the LIVE release (mu 1x36, cov 36x36; :func:`load_niqe_live`), so it can be set
  beside published NIQE. Conventions (:func:`niqe_features`, as BasicSR's ``calculate_niqe`` and the PIRM
  2018 evaluation): the Y channel of BT.601 YCbCr (studio swing, MATLAB ``rgb2ycbcr``; the LIVE release
  itself converts RGB with ``rgb2gray``) rounded to integers; ``shave`` pixels cut from every side (4 in
  :class:`Perceptual`, as PIRM; BasicSR's MATLAB check uses 0); the image cropped to whole 96x96 blocks
  (``niqe_blocks`` counts them) and the second scale the MATLAB-bicubic half with 48x48 blocks. A block
  whose normalized coefficients (or their neighbour products) have no negative or no positive value (a
  flat block) gives NaN features, as MATLAB's ``mean`` of an empty set; as MATLAB's ``nanmean`` and
  ``nancov``, the mean skips NaN features and the covariance uses the blocks without NaN. Fewer than two
  such blocks give NaN. ``scripts/niqe_reference.py`` checks it against BasicSR's own code.
- ``niqe_srlib``: the same measure with a model fitted by srlib on its own training HR images (1,006 sharp
  blocks of quick-train; :func:`fit_niqe`, provenance stored with the model), full-swing luma unrounded and
  flat blocks kept finite. Its values compare only with each other (it was the ``niqe`` column before).
  Limit of both: NIQE measures statistical naturalness, not fidelity to the HR image, so it rewards
  plausible invented texture (the perception axis of Blau and Michaeli's plane).

The perceptual index of the PIRM challenge, ``((10 - Ma) + NIQE) / 2``, is absent: Ma et al.'s learned model
is not to be had offline from a package (pyiqa 0.1.16's wheel ships no weights; its NRQM fetches
``NRQM_model.mat`` from Hugging Face at run time), and srlib fetches nothing at run time.
"""
import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from scipy.special import gamma as G

from .metrics import to_uint8

MEASURES = ("lpips", "stlpips_alex", "haarpsi", "gmsd", "ms_ssim", "niqe_live", "niqe_srlib")
COUNTS = ("niqe_blocks",)            # per-image facts beside the measures (no better direction)
LEGACY = {"niqe": "niqe_srlib"}      # column names of srlib's earlier tables
HIGHER_IS_BETTER = {"psnr": True, "ssim": True, "lpips": False, "stlpips_alex": False, "haarpsi": True,
                    "gmsd": False, "ms_ssim": True, "niqe_live": False, "niqe_srlib": False}
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"   # torchvision's ImageNet AlexNet weights
ASSETS = Path(__file__).resolve().parent / "assets"   # data files shipped with srlib (not srlib/data.py)
# Mittal et al.'s pristine model, byte for byte the file BasicSR 1.4.2 ships as basicsr/metrics/
# niqe_pris_params.npz (also in mmagic 1.2.0's wheel); its LIVE copyright notice is assets/NIQE_LIVE_NOTICE.txt
NIQE_LIVE_FILE = ASSETS / "niqe_pris_params.npz"
NIQE_LIVE_SHA256 = "2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296"
STLPIPS_WEIGHTS = "weights/vST0.0/alex_shift_tolerant.pth"      # inside the stlpips_pytorch package
STLPIPS_SHA256 = "b356b382f96010f77d085ee8343ecd9fd322d0a56e8de2b2d0549fafcad8b9ee"   # of 0.0.2's file


def current_names(table):
    """A table with srlib's earlier column names (``niqe``) renamed to the current ones (``niqe_srlib``)."""
    return table.rename(columns={k: v for k, v in LEGACY.items() if k in table.columns and v not in table.columns})


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
    """LPIPS (or ST-LPIPS: any model called as ``model(a, b, normalize=True)`` on [0, 1] tensors) between
    two uint8 (H, W, 3) images (or batches of same-size images: (N, H, W, 3)) -> float or array of N floats."""
    batch = np.asarray(sr).ndim == 4
    sr, hr = (np.asarray(x) if batch else np.asarray(x)[None] for x in (sr, hr))
    a = torch.cat([_tensor(x, shave) for x in sr])
    b = torch.cat([_tensor(x, shave) for x in hr])
    d = model(a, b, normalize=True).flatten().numpy().astype(np.float64)
    return d if batch else float(d[0])


# -------------------------------------------------------------------------------------------------- ST-LPIPS
def load_stlpips():
    """ST-LPIPS (AlexNet, shift-tolerant variant) from the ``stlpips-pytorch`` wheel in eval mode, or None, and
    a note: the package version and weight file, or why it is missing. The wheel's weights are loaded here,
    not by the package (which uses ``strict=False``): every tensor of the model must come from the file
    (``lins.*`` are the same modules as ``lin0``..``lin4``) and the file must hold nothing else."""
    import warnings
    from importlib import metadata
    try:
        from stlpips_pytorch import stlpips
    except ImportError as e:
        msg = (f"NOT COMPUTED: ST-LPIPS needs the optional extra srlib[stlpips] (stlpips-pytorch, and torchsummary "
               f"and IPython, which it imports without declaring them): {e}")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return None, msg
    path = Path(stlpips.__file__).parent / STLPIPS_WEIGHTS
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != STLPIPS_SHA256:
        raise ValueError(f"{path}: sha256 {digest}, not the file of stlpips-pytorch 0.0.2 ({STLPIPS_SHA256})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = stlpips.LPIPS(net="alex", variant="shift_tolerant", pretrained=False, verbose=False)
    load_strictly(model, torch.load(path, map_location="cpu", weights_only=True), path)
    version = metadata.version("stlpips-pytorch")
    return model.eval(), (f"ST-LPIPS (Ghildyal and Liu, ECCV 2022), AlexNet shift-tolerant, stlpips-pytorch "
                          f"{version}, weights {path.name} (sha256 {digest[:12]}...) loaded strictly; "
                          f"not the LPIPS of the SR literature")


def load_strictly(model, state, name):
    """``model.load_state_dict(state)`` where a missing key is allowed only for a tensor that another loaded key
    shares (a module registered under two names); anything else missing, or any unexpected key, raises."""
    res = model.load_state_dict(state, strict=False)
    own = model.state_dict(keep_vars=True)
    loaded = {id(own[k]) for k in state if k in own}
    missing = [k for k in res.missing_keys if id(own[k]) not in loaded]
    if missing or res.unexpected_keys:
        raise ValueError(f"{name}: missing {missing[:5]}, unexpected {res.unexpected_keys[:5]}")


def stlpips_distance(model, sr, hr, shave=4):
    """ST-LPIPS between two uint8 images (or batches), as :func:`lpips_distance`."""
    return lpips_distance(model, sr, hr, shave)


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


def aggd_fit(x, empty_nan=False):
    """Moment-matching fit of an asymmetric generalized Gaussian per row of ``x`` (N, M), as Mittal et al.'s
    ``estimateaggdparam``: (shape alpha, left scale beta_l, right scale beta_r), with the shape looked up on
    a 0.001 grid over [0.2, 10] and ``beta = std * sqrt(G(1/alpha) / G(3/alpha))`` for each side. A side
    without values has scale 0, or NaN with ``empty_nan`` (MATLAB's mean of an empty set); the shape of a
    row without a finite fit is the grid's first value, 0.2, as MATLAB's and numpy's argmin give."""
    x = np.asarray(x, dtype=np.float64)
    neg, pos = x < 0, x > 0
    empty = np.nan if empty_nan else 1
    n_neg, n_pos = neg.sum(axis=1), pos.sum(axis=1)
    left = np.sqrt((x ** 2 * neg).sum(axis=1) / np.where(n_neg > 0, n_neg, empty))
    right = np.sqrt((x ** 2 * pos).sum(axis=1) / np.where(n_pos > 0, n_pos, empty))
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


def gaussian_window(size=7, sigma=7 / 6):
    """A normalized 2-D Gaussian, as MATLAB's ``fspecial('gaussian', size, sigma)``."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x[:, None] ** 2 + x[None] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def mscn_single(y, window):
    """MSCN coefficients and local deviation as the published NIQE's ports compute them: the image in single
    precision, a 2-D convolution with ``window`` (edges replicated), every step rounded to float32."""
    y = np.asarray(y, dtype=np.float32)
    mu = ndimage.convolve(y, window, mode="nearest")
    sigma = np.sqrt(np.abs(ndimage.convolve(y * y, window, mode="nearest") - mu * mu))
    return (y - mu) / (sigma + 1), sigma


def _blocks(a, size):
    """Non-overlapping size x size blocks of a 2-D array, row-major: (n_blocks, size * size)."""
    h, w = a.shape[0] // size, a.shape[1] // size
    return a[: h * size, : w * size].reshape(h, size, w, size).swapaxes(1, 2).reshape(h * w, size * size)


def _scale_features(y, size, window=None):
    """18 features per size x size block, as Mittal et al.'s ``computefeature``: the AGGD of the MSCN
    coefficients (shape, mean of the two scales), and for each of four neighbour directions the AGGD of the
    products of MSCN with its neighbour, shifted circularly within the block (shape, mean, left and right
    scale). Also each block's sharpness (mean local deviation). With a ``window``: the published NIQE's
    way (:func:`mscn_single`, NaN for an empty AGGD side); without: srlib's (:func:`mscn`)."""
    empty_nan = window is not None
    m, sigma = mscn(y) if window is None else mscn_single(y, window)
    blocks = _blocks(m, size)
    a, bl, br = aggd_fit(blocks, empty_nan)
    feats = [a, (bl + br) / 2]
    cube = blocks.reshape(-1, size, size)
    for dy, dx in SHIFTS:
        pair = (cube * np.roll(cube, (dy, dx), axis=(1, 2))).reshape(len(cube), -1)
        a, bl, br = aggd_fit(pair, empty_nan)
        feats += [a, (br - bl) * G(2 / a) / G(1 / a), bl, br]
    return np.stack(feats, axis=1), _blocks(sigma, size).mean(axis=1)


def niqe_features(img, block=96, shave=4, convention="srlib", window=None):
    """NIQE features of an image: (n_blocks, 36) for two scales (the image and its half, MATLAB bicubic), and
    the blocks' sharpness at full scale. ``img``: uint8 RGB (H, W, 3) or a 2-D float luminance in [0, 255].
    ``convention`` 'srlib': RGB is reduced to full-swing BT.601 luma, in double precision, flat blocks keep
    finite features. 'live' (the published NIQE, as BasicSR computes it): RGB to BT.601 studio-swing Y in
    single precision, rounded to integers (a 2-D input is rounded as it is); MSCN in single precision with
    ``window`` (default :func:`gaussian_window`); a flat block's features are NaN (see the module's notes).
    Needs at least one block: both sides >= ``block`` after ``shave``."""
    from .imresize import imresize
    if convention not in ("srlib", "live"):
        raise ValueError(f"NIQE convention {convention!r}: choose 'srlib' or 'live'")
    live = convention == "live"
    y = np.asarray(img)
    if live:
        window = gaussian_window() if window is None else window
        y = _y_single(y) if y.ndim == 3 else np.round(y.astype(np.float32))
    else:
        window = None
        y = y.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) if y.ndim == 3 else y.astype(np.float64)
    if shave:
        y = y[shave:-shave, shave:-shave]
    if min(y.shape) < block:
        raise ValueError(f"NIQE needs an image of at least {block}x{block} pixels, got {y.shape}")
    h, w = (s // block * block for s in y.shape)
    y = y[:h, :w]
    f1, sharp = _scale_features(y, block, window)
    half = half_single(y) if live else imresize(y, output_shape=(h // 2, w // 2))
    f2, _ = _scale_features(half, block // 2, window)
    return np.concatenate([f1, f2], axis=1), sharp


def half_single(y):
    """MATLAB's ``imresize(y, 0.5)`` (bicubic, antialiased, symmetric padding) of a [0, 255] image of even
    sides in single precision, as BasicSR runs it: on ``y / 255``, the weights computed in float32 and each
    output summed over its taps in order in float32. NIQE's shape fits sit on a 0.001 grid, so on images of
    few blocks the last float32 bit of this image moves the score by up to about 1e-3."""
    f = np.float32
    out = np.asarray(y, dtype=f) / f(255)
    for axis in (0, 1):
        n = out.shape[axis]
        u = np.arange(1, n // 2 + 1, dtype=f) / f(0.5) + f(-0.5)   # input coordinate of each output pixel
        idx = np.floor(u - f(4))[:, None] + np.arange(10, dtype=f)   # kernel width 8 (4 / scale), 10 taps
        d = np.abs((u[:, None] - idx) * f(0.5))
        w = f(0.5) * ((f(1.5) * d * d * d - f(2.5) * d * d + f(1)) * (d <= 1)
                      + (f(-0.5) * d * d * d + f(2.5) * d * d - f(4) * d + f(2)) * ((d > 1) & (d <= 2))).astype(f)
        w = w / w.sum(axis=1, keepdims=True, dtype=f)
        mirror = np.concatenate([np.arange(n), np.arange(n)[::-1]])
        src = mirror[(idx.astype(np.int64) - 1) % (2 * n)]
        a = np.moveaxis(out, axis, 0)
        acc = np.zeros((len(u),) + a.shape[1:], f)
        for k in range(idx.shape[1]):
            acc = acc + a[src[:, k]] * w[:, k, None]
        out = np.moveaxis(acc, 0, axis)
    return out * f(255)


def _y_single(rgb):
    """Rounded BT.601 studio-swing Y of a uint8 RGB image, with BasicSR's rounding steps (float32 in and out,
    the weighted sum in double)."""
    x = np.asarray(rgb).astype(np.float32) / np.float32(255)
    y = ((x[..., ::-1] @ np.array([24.966, 128.553, 65.481]) + 16.0) / 255.0).astype(np.float32) * np.float32(255)
    return np.round(y)


def niqe_blocks(shape, block=96, shave=4):
    """How many ``block`` x ``block`` blocks NIQE uses in an image of ``shape`` (H, W, ...) with ``shave``."""
    return ((shape[0] - 2 * shave) // block) * ((shape[1] - 2 * shave) // block)


class NIQE:
    """A NIQE model: the mean and covariance of the features of pristine blocks, and the ``convention`` of
    its features (:func:`niqe_features`): 'srlib' for srlib's own fits, 'live' for the published model.

    :meth:`fit` takes images (uint8 RGB), keeps in each the blocks whose sharpness exceeds
    ``sharpness * max`` (0.75, as Mittal et al.) and fits a Gaussian to all kept blocks. :meth:`score` fits
    a Gaussian to all blocks of one image and returns ``sqrt((mu1 - mu2)^T ((C1 + C2) / 2)^+ (mu1 - mu2))``
    (pseudo-inverse; 'live': NaN features skipped as MATLAB's nanmean and nancov). :meth:`save` /
    :meth:`load` keep the model in a .npz with its provenance.
    """

    def __init__(self, mu, cov, source="", block=96, convention="srlib", window=None):
        self.mu, self.cov, self.source, self.block = np.asarray(mu), np.asarray(cov), source, int(block)
        self.convention, self.window = convention, window

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
        f, _ = niqe_features(img, self.block, shave, self.convention, self.window)
        if self.convention == "live":
            complete = f[~np.isnan(f).any(axis=1)]
            if len(complete) < 2:
                return np.nan
            mu, cov = np.nanmean(f, axis=0), np.cov(complete, rowvar=False)
        else:
            mu = f.mean(axis=0)
            cov = np.cov(f, rowvar=False) if len(f) > 1 else np.zeros_like(self.cov)
        d = self.mu - mu
        return float(np.sqrt(max(d @ np.linalg.pinv((self.cov + cov) / 2) @ d, 0.0)))

    def save(self, path):
        from .io import atomic_write
        atomic_write(path, lambda f: np.savez(f, mu=self.mu, cov=self.cov, source=self.source, block=self.block,
                                              convention=self.convention))

    @classmethod
    def load(cls, path):
        with np.load(path) as z:
            convention = str(z["convention"]) if "convention" in z else "srlib"
            return cls(z["mu"], z["cov"], str(z["source"]), int(z["block"]), convention)


def load_niqe_live(path=NIQE_LIVE_FILE):
    """The published NIQE model: the pristine parameters of Mittal et al.'s LIVE release (fitted on 125 pristine
    images, 96x96 blocks, sharpness threshold 0.75), from the file srlib ships (checked against its sha256;
    never fetched), with the 'live' feature conventions."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if digest != NIQE_LIVE_SHA256:
        raise ValueError(f"{path}: sha256 {digest}, not the LIVE pristine model ({NIQE_LIVE_SHA256})")
    with np.load(path) as z:
        mu, cov, window = z["mu_pris_param"].ravel(), z["cov_pris_param"], z["gaussian_window"]
    return NIQE(mu, cov, "the pristine model of Mittal et al.'s LIVE NIQE release (as BasicSR 1.4.2 ships it; "
                "Y channel rounded, 96px blocks, NaN blocks skipped): comparable with published NIQE", 96, "live",
                window)


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
    """Scores one output on every measure available: ``lpips`` and ``stlpips_alex`` (when their models are
    given), the piq measures, ``niqe_srlib`` (``niqe``: srlib's own fit) and ``niqe_live`` (the published
    model) when given, and ``niqe_blocks``. Missing measures are NaN; ``notes`` says why."""

    def __init__(self, lpips_model=None, niqe=None, notes=None, shave=4, niqe_live=None, stlpips=None):
        self.lpips, self.niqe, self.shave = lpips_model, niqe, shave
        self.niqe_live, self.stlpips = niqe_live, stlpips
        self.notes = dict(notes or {})

    def __call__(self, sr, hr):
        sr = to_uint8(sr)
        out = dict.fromkeys(MEASURES + COUNTS, np.nan)
        if self.lpips is not None:
            out["lpips"] = lpips_distance(self.lpips, sr, hr, self.shave)
        if self.stlpips is not None:
            out["stlpips_alex"] = stlpips_distance(self.stlpips, sr, hr, self.shave)
        out.update(full_reference(sr, hr, self.shave))
        if self.niqe_live is not None:
            out["niqe_live"] = self.niqe_live.score(sr, self.shave)
        if self.niqe is not None:
            out["niqe_srlib"] = self.niqe.score(sr, self.shave)
        out["niqe_blocks"] = niqe_blocks(sr.shape, 96, self.shave)
        return out


def default_perceptual(niqe_set="quick-train", root=None, cache="cache", lpips_backbone="auto"):
    """:class:`Perceptual` with LPIPS where its backbone exists, ST-LPIPS where its package is installed, the
    published NIQE model and srlib's NIQE fitted on ``niqe_set``."""
    model, lp_note = load_lpips(lpips_backbone)
    st, st_note = load_stlpips()
    niqe, live = fit_niqe(niqe_set, root, cache), load_niqe_live()
    return Perceptual(model, niqe, niqe_live=live, stlpips=st,
                      notes={"lpips": lp_note, "stlpips_alex": st_note, "niqe_live": live.source,
                             "niqe_srlib": niqe.source})
