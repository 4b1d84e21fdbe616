"""Image and file I/O: decoding to RGB uint8 with explicit conversions, and atomic writes.

Conversions applied by :func:`read_image` (the result is always (H, W, 3) uint8 RGB):

- ``RGB``: unchanged. ``L`` / ``1`` (grayscale, bilevel): the gray value copied to R, G and B; the image
  is reported as gray so the standard metric can evaluate the gray values themselves.
- ``RGBA`` / ``LA`` / ``PA``: the alpha channel is dropped (not composited); :func:`read_image_full`
  returns it separately for the upscaler.
- ``P`` (palette): expanded through its palette (PIL ``convert('RGB')``).
- 16-bit (``I;16*``, ``I``) and 32-bit float (``F``) grayscale: scaled to 8 bits with rounding
  (``round(v / 257)`` for 16-bit; ``F`` is assumed in [0, 1]); 16-bit RGB PNGs are read by PIL as 8-bit.
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: converted with PIL ``convert('RGB')``.
- EXIF orientation is *not* applied by default (benchmark files are used as stored); pass
  ``exif_transpose=True`` for user photos.

Decoded arrays are writable copies (np.asarray of a PIL image is read-only, and torch.from_numpy warns on
read-only arrays). Bad files raise :class:`ImageError` with a one-line message naming the path; a file that
cannot be written (disk full, permission denied, read-only file system) raises :class:`WriteError`, naming it.
"""
import errno
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


# why a write fails for want of space or of permission (not a fault of the data being written)
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)


class WriteError(OSError):
    """A file could not be written: ``filename`` is the file (not its temporary copy), ``errno`` and
    ``strerror`` say why, ``size`` is the bytes it needed when known, and ``advice`` (empty, or set by the
    caller that knows) what to do next, which replaces the size in the message. ``str()`` is one line."""

    def __init__(self, err, path, size=None, advice=""):
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.size, self.advice = size, advice

    def __str__(self):
        if self.advice:
            return f"{self.filename}: cannot write it ({self.strerror}); {self.advice}"
        need = f"; about {mib(self.size)} needed" if self.size and self.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"{self.filename}: cannot write it ({self.strerror}{need})"


def mib(n):
    """``n`` bytes as text in MiB, e.g. '60.2 MiB'."""
    return f"{n / 2 ** 20:.1f} MiB"


@dataclass
class Decoded:
    rgb: np.ndarray            # (H, W, 3) uint8
    gray: bool                 # the file was single-channel
    alpha: np.ndarray | None   # (H, W) uint8 or uint16, or None
    bits: int                  # 8 or 16: bit depth of the source samples


def samples_to_uint8(arr, mode):
    """Samples of a PIL mode to uint8: 16/32-bit integer (``I*``) by round(v / 257), float (``F``, in [0, 1])
    by round(v * 255); other modes are cast."""
    if mode.startswith("I"):
        return np.clip(np.floor(arr.astype(np.float64) / 257.0 + 0.5), 0, 255).astype(np.uint8)
    if mode == "F":
        return np.clip(np.floor(arr.astype(np.float64) * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return arr.astype(np.uint8)


def read_image_full(path, exif_transpose=False):
    """Decode ``path`` into a :class:`Decoded` (RGB uint8, gray flag, alpha, bit depth)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            if exif_transpose:
                im = ImageOps.exif_transpose(im)
            mode = im.mode
            alpha = None
            bits = 16 if mode.startswith("I;16") or mode == "I" else 8
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA") if mode != "LA" else im
                alpha = np.array(rgba.getchannel("A"))
            if mode in GRAY_MODES:
                g = np.array(im.getchannel(0) if mode == "LA" else im)
                g = samples_to_uint8(g, mode) if mode != "1" else g.astype(np.uint8) * 255
                return Decoded(np.repeat(g[..., None], 3, axis=2), True, alpha, bits)
            rgb = np.array(im.convert("RGB"))   # a writable copy: np.asarray of a PIL image is read-only
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (PIL cannot identify it)") from None
    except Image.DecompressionBombError as e:   # not an OSError; over 2x PIL's MAX_IMAGE_PIXELS
        raise ImageError(f"{path}: image too large ({e})") from None
    except (OSError, SyntaxError, ValueError) as e:   # truncated or corrupt data
        raise ImageError(f"{path}: cannot decode image ({e})") from None
    if rgb.size == 0:
        raise ImageError(f"{path}: image has zero size")
    return Decoded(rgb, False, alpha, bits)


def read_image(path, exif_transpose=False):
    """Decode ``path`` to (H, W, 3) uint8 RGB. See the module docstring for the conversions."""
    return read_image_full(path, exif_transpose).rgb


def list_images(folder):
    """Sorted image files (by extension, case-insensitive) directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: folder not found")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def atomic_write(path, write_fn, mode="wb", size=None):
    """Write a file atomically: ``write_fn(fileobj)`` fills a temporary file in the same folder,
    which is flushed, fsynced and renamed over ``path``. A crash leaves the old file intact. An OSError
    (disk full, permission denied ...) removes the temporary file and is raised as :class:`WriteError`
    naming ``path`` (``size``: the bytes it needs, for the message)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(e, path, size) from e
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)      # mkstemp makes 0600; give the usual permissions of a new file
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, WriteError) and e.errno in WRITE_ERRNOS:
            raise WriteError(e, path, size) from e
        raise
    return path


def write_image(path, img, fmt=None):
    """Save an (H, W, 3) uint8 array (or a PIL image) atomically; the format follows the suffix."""
    pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
    fmt = fmt or Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    return atomic_write(path, lambda f: pil.save(f, format=fmt))


def write_json(path, obj):
    """``obj`` as indented, key-sorted JSON at ``path``, atomically."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))
