"""The checkpoint and generator file formats: atomic save, safe load (``weights_only=True``).

Trained generators are exchanged as ``generator.safetensors`` (the format of the SR ecosystem: Hugging
Face, spandrel, chaiNNer): the tensors of G plus metadata strings ``format`` (``srlib-generator-v1``),
``generator`` (arch, kwargs, scale as JSON), ``meta`` and ``config`` (JSON), ``step`` and ``sha256`` (of
the tensors, checked on load: a flipped bit is a clear error).

A resume checkpoint is one dict of tensors and plain data::

    {'format': 'srlib-checkpoint-v1', 'generator': {'arch', 'kwargs', 'scale'}, 'G': state_dict,
     'D': state_dict | None, 'opt_G', 'opt_D', 'ema', 'step', 'phase', 'config': dict, 'history', 'rng': {...},
     'meta': {...}}

Both are written to a temporary file and renamed, so a crash never leaves a half-written file.
"""
import io
import pickle

import torch

from .errors import CheckpointError
from .io import atomic_write

FORMAT = "srlib-checkpoint-v1"
GENERATOR_FORMAT = "srlib-generator-v1"
GENERATOR_FILE = "generator.safetensors"


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
