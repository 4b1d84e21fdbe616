"""srlib: a reproducible study of SRGAN and its channel-attention variant (Wu, x4 super-resolution).

The public API, imported on first use (``import srlib`` stays light)::

    from srlib import load_upscaler, upscale_image, evaluate, train, make_config
    model, scale = load_upscaler("results/train/attention/generator.safetensors")

Modules: ``srlib.config`` (training settings), ``srlib.cli`` (every command), ``srlib.imresize``,
``srlib.metrics``, ``srlib.data``, ``srlib.archs``, ``srlib.losses``,
``srlib.train``, ``srlib.evaluate``, ``srlib.infer``, ``srlib.upscale``, ``srlib.study``.
"""

__version__ = "0.1.0"

_API = {"load_upscaler": "upscale", "upscale_image": "upscale", "upscale_file": "upscale",
        "evaluate": "evaluate", "train": "train", "make_config": "config", "data_root": "data"}
__all__ = sorted(_API)


def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_API[name]}"), name)
    raise AttributeError(f"module 'srlib' has no attribute {name!r}")
