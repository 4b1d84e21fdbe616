"""Bicubic resizing: a MATLAB-compatible ``imresize`` and PIL's bicubic.

``imresize`` reproduces MATLAB's ``imresize(img, scale, 'bicubic')`` on uint8 images, the degradation
behind the standard SR benchmarks (EDSR-style ``LR_bicubic/X4``):

- cubic kernel with a = -0.5 (Keys 1981);
- antialiasing when downscaling: the kernel is stretched by 1/scale;
- symmetric padding (the border pixel is repeated: ``[a b c] -> [b a | a b c | c b]``);
- separable: one 1-D pass per axis, rows (height) first when both scales are equal, the axis with
  the smaller scale first otherwise, as MATLAB does;
- uint8 input is rounded (half away from zero) and clipped to uint8 after *each* pass.

Each 1-D pass is a dense matrix product with a precomputed (out, in) weight matrix, so there is no
Python loop over pixels. Float input (any range) stays float and is not rounded.

``pil_bicubic`` is PIL's ``Image.resize(..., BICUBIC)`` (a = -0.5, antialiased, no per-pass rounding
control), the degradation of the public SRGAN implementation the paper descends from.
"""
from functools import lru_cache

import numpy as np
from PIL import Image


def cubic(x):
    """Keys cubic kernel with a = -0.5, as in MATLAB's imresize."""
    ax = np.abs(x)
    ax2, ax3 = ax ** 2, ax ** 3
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=256)
def resize_weights(in_len, out_len, scale):
    """Dense (out_len, in_len) float64 matrix of one MATLAB bicubic 1-D pass (symmetric padding)."""
    kernel_width = 4.0
    antialias = scale < 1
    if antialias:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)          # 1-based output coordinates
    u = x / scale + 0.5 * (1 - 1 / scale)                     # matching input coordinates
    left = np.floor(u - kernel_width / 2)
    taps = int(np.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]            # (out, taps), 1-based
    dist = u[:, None] - idx
    w = scale * cubic(scale * dist) if antialias else cubic(dist)
    w /= w.sum(axis=1, keepdims=True)
    # symmetric padding: index i outside [1, in_len] mirrors with the border pixel repeated
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    src = mirror[(idx.astype(np.int64) - 1) % (2 * in_len)]
    mat = np.zeros((out_len, in_len))
    np.add.at(mat, (np.repeat(np.arange(out_len), taps), src.ravel()), w.ravel())
    return mat


def _round_uint8(x):
    return np.clip(np.floor(x + 0.5), 0, 255).astype(np.uint8)


def imresize(img, scale=None, output_shape=None):
    """Resize an (H, W) or (H, W, C) image like MATLAB ``imresize(img, scale, 'bicubic')``.

    Give either ``scale`` (a float, e.g. 1/4 or 4) or ``output_shape`` (H_out, W_out). When only
    ``output_shape`` is given, the per-axis scales are out/in. uint8 in -> uint8 out (rounded after
    each pass); float in -> float64 out.
    """
    img = np.asarray(img)
    h, w = img.shape[:2]
    if output_shape is None:
        if scale is None:
            raise ValueError("imresize needs scale or output_shape")
        output_shape = (int(np.ceil(h * scale)), int(np.ceil(w * scale)))
        scales = (float(scale), float(scale))
    else:
        output_shape = tuple(int(v) for v in output_shape)
        scales = (float(scale), float(scale)) if scale is not None else (output_shape[0] / h, output_shape[1] / w)
    if min(output_shape) < 1:
        raise ValueError(f"imresize: output shape {output_shape} from input {h}x{w} is empty")
    is_uint8 = img.dtype == np.uint8
    out = img.astype(np.float64)
    order = (0, 1) if scales[0] <= scales[1] else (1, 0)     # smaller scale first, rows on a tie
    for axis in order:
        mat = resize_weights(out.shape[axis], output_shape[axis], scales[axis])
        out = np.moveaxis(np.tensordot(mat, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
        if is_uint8:
            out = _round_uint8(out).astype(np.float64)
    return out.astype(np.uint8) if is_uint8 else out


def pil_bicubic(img, output_shape):
    """Resize a uint8 (H, W[, C]) image to ``output_shape`` (H, W) with PIL bicubic; returns uint8."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise TypeError("pil_bicubic expects a uint8 image")
    pil = Image.fromarray(img)
    return np.array(pil.resize((int(output_shape[1]), int(output_shape[0])), Image.BICUBIC))   # writable


def degrade(hr, scale=4, method="matlab"):
    """Make the LR image of a uint8 HR image whose sides are multiples of ``scale``."""
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"degrade: HR size {h}x{w} is not a multiple of scale {scale}; mod-crop it first")
    shape = (h // scale, w // scale)
    if method == "matlab":
        return imresize(hr, 1 / scale, output_shape=shape)
    if method == "pil":
        return pil_bicubic(hr, shape)
    raise ValueError(f"unknown degradation {method!r}; choose 'matlab' or 'pil'")
