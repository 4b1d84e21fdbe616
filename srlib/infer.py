"""Inference: loading a generator for its inference mode, tiled upscaling.

:func:`load_generator` reads both kinds of file of :mod:`srlib.checkpoint` (the generator file and the resume
checkpoint); the formats, and the device and precision helpers of :mod:`srlib.device`, are re-exported here.
"""
import math

import torch

from .archs import build_generator, group_norms, is_calibrated, set_inference
from .checkpoint import (FORMAT, GENERATOR_FILE, GENERATOR_FORMAT, load_checkpoint,  # noqa: F401 (re-exported)
                         load_safetensors_generator, save_checkpoint, save_generator, state_hash)
from .config import PRECISIONS  # noqa: F401  (srlib.infer.PRECISIONS)
from .errors import CheckpointError  # noqa: F401  (srlib.infer.CheckpointError)
from .data import to_tensor
from .device import autocast, cpu_bf16_supported, pick_device, resolve_precision  # noqa: F401 (re-exported)
from .environment import CPU_BF16_FLAGS, cpu_bf16_native, cpu_model  # noqa: F401 (re-exported)

RECONSTRUCT_OVERLAP = 8   # LR px between tiles of a generator's upsampling part (receptive field +-3 LR px)


def load_generator(path, device=None, scale=None, arch=None, inference="calibrated"):
    """Rebuild the generator stored in a checkpoint or a generator.safetensors file, in eval mode.
    Returns ``(model, checkpoint)``; ``checkpoint['inference']`` says which inference the model runs.

    ``scale`` / ``arch``, when given, must match the checkpoint's, else :class:`CheckpointError`.
    ``inference``: 'calibrated' (default: GroupNorm with the statistics stored at the training extent, see
    :mod:`srlib.calibration`) or 'whole' (GroupNorm with the statistics of the whole input, as srlib scored before
    calibration existed). A file whose GroupNorm layers hold no calibrated statistics (written before calibration
    existed) runs 'whole' with a loud warning; ``python -m srlib calibrate RUN_FOLDER`` calibrates it.
    """
    ckpt = load_safetensors_generator(path) if str(path).endswith(".safetensors") else load_checkpoint(path)
    g = ckpt.get("generator")
    if not isinstance(g, dict) or not {"arch", "kwargs", "scale"} <= set(g):
        raise CheckpointError(f"{path}: checkpoint has no generator description (arch, kwargs, scale)")
    if scale is not None and g["scale"] != scale:
        raise CheckpointError(f"{path}: checkpoint is for scale x{g['scale']}, not x{scale}")
    if arch is not None and g["arch"] != arch:
        raise CheckpointError(f"{path}: checkpoint holds a {g['arch']!r} generator, not {arch!r}")
    try:
        model = build_generator(g["arch"], **g["kwargs"])
        model.load_state_dict(ckpt["G"])
    except (ValueError, RuntimeError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise CheckpointError(f"{path}: weights do not fit generator {g.get('arch')!r} ({first})") from None
    set_inference(model, inference)
    ckpt["inference"] = inference if group_norms(model) else "no GroupNorm (extent-independent)"
    if inference == "calibrated" and not is_calibrated(model):
        import warnings
        warnings.warn(f"!!! {path}: its GroupNorm layers hold no calibrated statistics (a file written before "
                      f"calibration existed): running whole-image inference, whose colours shift; calibrate "
                      f"it with `python -m srlib calibrate` on its run folder !!!", RuntimeWarning, stacklevel=2)
        ckpt["inference"] = "whole (not calibrated)"
    return model.to(pick_device(device)).eval(), ckpt


def _tiles(length, tile, overlap):
    """Start offsets and window size covering [0, length) with windows of at most ``tile`` that
    overlap by at least ``overlap``; the windows are shrunk to split the length evenly (a 512-pixel side
    with tile 256 and overlap 16 gives 3 windows of 182, not 3 of 256)."""
    if length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (n - 1) * overlap) / n))
    return sorted({min(round(i * (length - size) / (n - 1)), length - size) for i in range(n)}), size


@torch.inference_mode()
def upscale_tensor(model, lr, scale, tile=None, overlap=40, device=None, amp=True, exact=True):
    """Run ``model`` on a (B, 3, h, w) float tensor in [0, 1]; returns (B, 3, h*s, w*s) on the CPU.

    ``amp``: precision as :func:`resolve_precision` (True: bf16 on CUDA, fp32 elsewhere; False: fp32,
    which scores use; 'bf16': also on CPU, fast where the CPU has native bf16).

    With ``tile`` (LR pixels), the image is processed in overlapping tiles; each output pixel comes
    from the tile where it lies farthest from an edge (the centre part of each tile is kept). The default
    overlap of 40 keeps every output pixel at least 20 LR pixels from a tile edge, beyond the 5-block
    SRGAN's receptive field (about 18 LR pixels), so tiled output equals the whole-image one up to float
    rounding (the overlap is cut to ``tile // 2``: tiles smaller than twice the overlap are not exact):

    - SRGAN (BatchNorm with stored statistics) runs entirely in tiles: memory is bounded by the tile size
      whatever the image size.
    - A generator with whole-image statistics (GroupNorm, channel attention: the attention generator)
      runs, with ``exact`` (the default), its low-resolution part (``model.features``) on the whole
      image, so that the statistics are those of the whole image, and its upsampling part
      (``model.reconstruct``, where the large maps are) in tiles overlapping by
      :data:`RECONSTRUCT_OVERLAP`. Memory then grows with the LR image: a few C-channel maps of LR size,
      each C / 48 times the fp32 output (1.3x at C = 64), never the 16x larger maps of output size.
      With ``exact=False`` it runs entirely in tiles like SRGAN: memory bounded by the tile size, but
      GroupNorm and channel attention see one tile at a time, so the output differs from the whole-image
      one (measured with random weights: up to 15-35/255 with 32-96 px tiles).
    """
    device = next(model.parameters()).device if device is None else torch.device(device)
    context = autocast(resolve_precision(amp, device), device)
    b, c, h, w = lr.shape
    if not tile or (h <= tile and w <= tile):
        with context:
            return model(lr.to(device)).float().clamp_(0, 1).cpu()
    src, run = lr, model
    if exact and callable(getattr(model, "has_global_statistics", None)) and model.has_global_statistics():
        with context:
            src, run = model.features(lr.to(device)), model.reconstruct
        overlap = min(overlap, RECONSTRUCT_OVERLAP)
    overlap = min(overlap, tile // 2)
    out = torch.empty(b, c, h * scale, w * scale)
    (ys, th), (xs, tw) = _tiles(h, tile, overlap), _tiles(w, tile, overlap)
    for i, y in enumerate(ys):
        # keep rows from the midpoint of the overlap with the previous tile to that with the next
        y0 = 0 if i == 0 else (y + ys[i - 1] + th) // 2
        y1 = h if i == len(ys) - 1 else (ys[i + 1] + y + th) // 2
        for j, x in enumerate(xs):
            x0 = 0 if j == 0 else (x + xs[j - 1] + tw) // 2
            x1 = w if j == len(xs) - 1 else (xs[j + 1] + x + tw) // 2
            patch = src[:, :, y: y + th, x: x + tw].to(device)
            with context:
                sr = run(patch).float().clamp_(0, 1).cpu()
            out[:, :, y0 * scale: y1 * scale, x0 * scale: x1 * scale] = \
                sr[:, :, (y0 - y) * scale: (y1 - y) * scale, (x0 - x) * scale: (x1 - x) * scale]
    return out


def upscale_array(model, lr, scale, tile=None, overlap=40, amp=True, exact=True):
    """(h, w, 3) uint8 LR -> (h*s, w*s, 3) float32 SR in [0, 1] (numpy). ``amp``: as upscale_tensor."""
    x = to_tensor(lr)[None]
    return upscale_tensor(model, x, scale, tile, overlap, amp=amp, exact=exact)[0].permute(1, 2, 0).numpy()

