"""srlib: a reproducible study of SRGAN and its channel-attention variant (Wu, x4 super-resolution).

Modules are imported on demand (no registry): ``srlib.imresize``, ``srlib.metrics``, ``srlib.data``,
``srlib.archs``, ``srlib.losses``, ``srlib.train``, ``srlib.evaluate``, ``srlib.infer``.
"""

__version__ = "0.1.0"
