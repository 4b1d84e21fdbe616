"""PSNR and SSIM under the two evaluation protocols of this study.

There is exactly one definition of each metric here; everything else in srlib calls these.

**standard** (nearly every SR paper since 2017; reproduces the published bicubic row):
  - input: uint8 RGB images, layout (H, W, 3); a float SR output is first rounded to uint8 by the
    caller (``to_uint8``);
  - channel: Y of YCbCr, ITU-R BT.601 studio swing, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``
    with R, G, B in [0, 255], kept as float64 (not rounded), range [16, 235];
    a grayscale image (``gray=True``: its file was single-channel, e.g. Set14 ``bridge``; the data layer
    records this) is evaluated on its gray values themselves,
    ``(65.481 R + 128.553 G + 24.966 B) / 219``, range [0, 255], as the published numbers do (the studio-swing
    Y of a gray image would compress its range by 219/255 and add about 1.3 dB);
  - border: ``scale`` pixels shaved from every side;
  - PSNR: peak 255, ``10 log10(255^2 / MSE)``;
  - SSIM: Wang et al. 2004, 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255, valid
    region only (no padding), mean of the SSIM map;
  - dataset score: mean of the per-image scores.

**paper** (the public PyTorch SRGAN implementation the paper's code follows; its protocol is unstated):
  - input: float RGB in [0, 1], layout (H, W, 3) (uint8 input is divided by 255), no rounding;
  - whole image, no border shave;
  - PSNR: ``10 log10(1 / MSE)`` over all three channels;
  - SSIM: 11x11 Gaussian window (sigma 1.5) applied per RGB channel with zero padding (same-size
    output), C1 = 0.01^2, C2 = 0.03^2, mean over channels and pixels;
  - dataset score: mean of the per-image scores.
"""
import numpy as np
from scipy.ndimage import correlate1d

PROTOCOLS = ("standard", "paper")


def to_uint8(img):
    """Float image in [0, 1] (H, W, C) -> uint8, rounded half up and clipped; uint8 passes through."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return np.clip(np.floor(img.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)


def rgb_to_y(img):
    """uint8 or [0, 255] float RGB (H, W, 3) -> float64 BT.601 studio-swing Y in [16, 235]."""
    img = np.asarray(img, dtype=np.float64)
    return 16.0 + (img @ np.array([65.481, 128.553, 24.966])) / 255.0


def _luma_full(img):
    # BT.601 luma weights scaled to full swing: equals the gray value of an image with R == G == B.
    return (np.asarray(img, dtype=np.float64) @ np.array([65.481, 128.553, 24.966])) / 219.0


def _gaussian_window(size=11, sigma=1.5):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter2(img, mode):
    """Separable 11x11 Gaussian filter of a 2-D float64 array: 'valid' or zero-padded 'same'."""
    g = _gaussian_window()
    out = correlate1d(correlate1d(img, g, axis=0, mode="constant"), g, axis=1, mode="constant")
    r = len(g) // 2
    return out if mode == "same" else out[r:-r, r:-r]


def _ssim_map(x, y, c1, c2, mode):
    mu_x, mu_y = _filter2(x, mode), _filter2(y, mode)
    sxx = _filter2(x * x, mode) - mu_x ** 2
    syy = _filter2(y * y, mode) - mu_y ** 2
    sxy = _filter2(x * y, mode) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def _check_pair(sr, hr):
    sr, hr = np.asarray(sr), np.asarray(hr)
    if sr.shape != hr.shape:
        raise ValueError(f"SR shape {sr.shape} differs from HR shape {hr.shape}")
    if sr.ndim != 3 or sr.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB images, got shape {sr.shape}")
    return sr, hr


def standard_channel(sr, hr, scale, gray=False):
    """The float64 (H-2s, W-2s) arrays compared by the standard protocol (Y, or gray values).

    ``gray`` must come from the source file (single-channel), not from the pixels: some RGB images
    (Set14 ``man``, seven of Urban100) have equal channels and are evaluated on Y in the literature.
    """
    sr, hr = _check_pair(sr, hr)
    if sr.dtype != np.uint8 or hr.dtype != np.uint8:
        raise TypeError("standard protocol expects uint8 images; round the SR output with to_uint8 first")
    conv = _luma_full if gray else rgb_to_y
    ys, yh = conv(sr), conv(hr)
    if scale > 0:
        ys, yh = ys[scale:-scale, scale:-scale], yh[scale:-scale, scale:-scale]
    return ys, yh


def psnr_standard(sr, hr, scale=4, gray=False):
    """PSNR (dB) on Y (or gray), border ``scale`` shaved, peak 255. uint8 (H, W, 3) inputs."""
    ys, yh = standard_channel(sr, hr, scale, gray)
    mse = np.mean((ys - yh) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim_standard(sr, hr, scale=4, gray=False):
    """SSIM (Wang et al. 2004) on Y (or gray), border ``scale`` shaved, valid region, L = 255."""
    ys, yh = standard_channel(sr, hr, scale, gray)
    return float(_ssim_map(ys, yh, (0.01 * 255) ** 2, (0.03 * 255) ** 2, "valid").mean())


def _as_unit_float(img):
    img = np.asarray(img)
    return img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)


def psnr_paper(sr, hr):
    """PSNR (dB) on RGB in [0, 1], whole image: 10 log10(1 / MSE). uint8 input is scaled by 1/255."""
    sr, hr = _check_pair(sr, hr)
    mse = np.mean((_as_unit_float(sr) - _as_unit_float(hr)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim_paper(sr, hr):
    """SSIM on RGB in [0, 1], per channel with an 11x11 Gaussian window and zero padding, averaged."""
    sr, hr = _check_pair(sr, hr)
    sr, hr = _as_unit_float(sr), _as_unit_float(hr)
    maps = [_ssim_map(sr[..., c], hr[..., c], 0.01 ** 2, 0.03 ** 2, "same") for c in range(3)]
    return float(np.mean(maps))


def image_scores(sr, hr, scale=4, gray=False, protocols=PROTOCOLS):
    """Dict of ``{protocol: (psnr, ssim)}`` for one image. ``sr`` is float [0, 1] or uint8; ``hr`` uint8."""
    out = {}
    for p in protocols:
        if p == "standard":
            s8 = to_uint8(sr)
            out[p] = (psnr_standard(s8, hr, scale, gray), ssim_standard(s8, hr, scale, gray))
        elif p == "paper":
            out[p] = (psnr_paper(sr, hr), ssim_paper(sr, hr))
        else:
            raise ValueError(f"unknown protocol {p!r}; choose from {PROTOCOLS}")
    return out
