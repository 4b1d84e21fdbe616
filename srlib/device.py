"""The device and the compute precision: which device a run uses, whether the CPU runs bf16, autocast."""
import contextlib

import torch

from .config import PRECISIONS


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
