"""Checkpoints and inference: atomic save, safe load (``weights_only=True``), tiled upscaling.

Trained generators are exchanged as ``generator.safetensors`` (the format of the SR ecosystem: Hugging
Face, spandrel, chaiNNer): the tensors of G plus metadata strings ``format`` (``srlib-generator-v1``),
``generator`` (arch, kwargs, scale as JSON), ``meta`` and ``config`` (JSON), ``step`` and ``sha256`` (of
the tensors, checked on load: a flipped bit is a clear error). :func:`load_generator` reads both kinds.

A checkpoint is one dict of tensors and plain data::

    {'format': 'srlib-checkpoint-v1', 'generator': {'arch', 'kwargs', 'scale'}, 'G': state_dict,
     'D': state_dict | None, 'opt_G', 'opt_D', 'epoch', 'config': dict, 'rng': {...}, 'meta': {...}}

It is written to a temporary file and renamed, so a crash never leaves a half-written checkpoint.
"""
import contextlib
import io
import math
import pickle

import torch

from .archs import build_generator, group_norms, is_calibrated, set_inference
from .config import PRECISIONS
from .errors import CheckpointError  # noqa: F401  (srlib.infer.CheckpointError)
from .data import to_tensor
from .environment import CPU_BF16_FLAGS, cpu_bf16_native, cpu_model  # noqa: F401 (re-exported)
from .io import atomic_write

FORMAT = "srlib-checkpoint-v1"
GENERATOR_FORMAT = "srlib-generator-v1"
GENERATOR_FILE = "generator.safetensors"
RECONSTRUCT_OVERLAP = 8   # LR px between tiles of a generator's upsampling part (receptive field +-3 LR px)


def pick_device(device=None):
    """``device`` if given, else CUDA when present, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_bf16_supported():
    """oneDNN runs bf16 convolutions on this CPU (natively with AVX512-BF16 or AMX, or emulated)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(amp, device):
    """The compute precision 'fp32' or 'bf16' for ``amp`` on ``device``.

    ``amp``: 'auto' (bf16 on CUDA, fp32 elsewhere), 'fp32', 'bf16'; True and False mean 'auto' and 'fp32'.
    bf16 means autocast: convolutions and matmuls in bf16 (on a CPU also norms and activations); losses,
    the weights and the running statistics stay fp32.
    """
    amp = {True: "auto", False: "fp32"}.get(amp, amp)
    if amp not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {amp!r}")
    if amp == "auto":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return amp


def autocast(precision, device):
    """A context for ``precision`` ('fp32' or 'bf16', see :func:`resolve_precision`) on ``device``."""
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_checkpoint(path, state):
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename); a full disk
    is a :class:`srlib.io.WriteError` that says how many bytes it needed."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write(path, lambda f: f.write(buf.getbuffer()), size=buf.getbuffer().nbytes)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint dict with ``weights_only=True``; clear errors for missing/corrupt/foreign files."""
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: not a file of tensors and plain data (weights_only=True "
                              f"loading rejects pickled objects), or corrupt") from None
    except Exception as e:  # torch raises several types for truncated or non-torch files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({msg[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an srlib checkpoint (missing format tag {FORMAT!r})")
    return ckpt


def state_hash(state):
    """sha256 over a state dict's names and tensor bytes (in name order)."""
    import hashlib
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_generator(path, state, generator, meta=None, config=None, step=None):
    """Write a generator's tensors and description to ``path`` (.safetensors) atomically."""
    import json
    from safetensors.torch import save
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    info = {"format": GENERATOR_FORMAT, "generator": json.dumps(generator, sort_keys=True),
            "meta": json.dumps(meta or {}, sort_keys=True, default=str),
            "config": json.dumps(config or {}, sort_keys=True, default=str),
            "step": str(step if step is not None else ""), "sha256": state_hash(tensors)}
    data = save(tensors, metadata=info)
    return atomic_write(path, lambda f: f.write(data))


def load_safetensors_generator(path):
    """The checkpoint-like dict (format, generator, G, meta, config, step) of a generator.safetensors file,
    its tensors checked against the recorded sha256."""
    import json
    from safetensors import SafetensorError
    from safetensors.torch import load
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    try:
        tensors = load(data)
        header_len = int.from_bytes(data[:8], "little")
        info = json.loads(data[8: 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0][:200]})") from None
    if info.get("format") != GENERATOR_FORMAT:
        raise CheckpointError(f"{path}: not an srlib generator (metadata format {info.get('format')!r}, "
                              f"expected {GENERATOR_FORMAT!r})")
    if state_hash(tensors) != info.get("sha256"):
        raise CheckpointError(f"{path}: its tensors do not match the sha256 recorded in its metadata: the file "
                              f"is corrupt or was modified")
    try:
        return {"format": FORMAT, "generator": json.loads(info["generator"]), "G": tensors,
                "meta": json.loads(info.get("meta") or "{}"), "config": json.loads(info.get("config") or "{}"),
                "step": int(info["step"]) if info.get("step") else None}
    except (KeyError, ValueError) as e:
        raise CheckpointError(f"{path}: broken srlib metadata ({e})") from None


def load_generator(path, device=None, scale=None, arch=None, inference="calibrated"):
    """Rebuild the generator stored in a checkpoint or a generator.safetensors file, in eval mode.
    Returns ``(model, checkpoint)``; ``checkpoint['inference']`` says which inference the model runs.

    ``scale`` / ``arch``, when given, must match the checkpoint's, else :class:`CheckpointError`.
    ``inference``: 'calibrated' (default: GroupNorm with the statistics stored at the training extent, see
    :mod:`srlib.calibration`) or 'whole' (GroupNorm with the statistics of the whole input, as srlib <= 0.4
    scored). A file whose GroupNorm layers hold no calibrated statistics (written before calibration
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

