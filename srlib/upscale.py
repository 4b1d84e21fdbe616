"""Upscale your own images with a trained checkpoint, from Python or the command line.

    python -m srlib upscale photo.jpg scans/ "shots/*.png" -o out/ \
        --checkpoint results/train/attention/generator.safetensors

The generator and its scale come from the checkpoint (``ckpt['generator']``). Each input becomes
``OUT_DIR/<stem><suffix>.png`` (PNG always, so nothing is lost; the suffix defaults to ``_x<scale>``),
written atomically (temporary file, then rename). Conversions:

- RGB files (PNG, JPEG, BMP, TIFF, WebP): upscaled as they are. EXIF orientation is applied first, so a
  rotated phone photo comes out upright (and with the rotated size).
- Grayscale (``L``, ``1``): the gray values are copied to R, G and B, the model runs on that, and its
  RGB output is turned back into one channel with the BT.601 luma weights of PIL's ``convert('L')``
  (0.299 R + 0.587 G + 0.114 B, in float, then rounded). The output is mode ``L``.
- 16-bit grayscale (``I;16``): written back as a 16-bit PNG (model output in [0, 1] scaled to 0..65535
  and rounded). The model itself sees the image reduced to 8 bits (``round(v / 257)``), so the output
  has 16-bit samples but not 16 bits of input precision.
- Alpha (``RGBA``, ``LA``, palette with transparency): the colour runs through the model; the alpha
  channel is upscaled separately with the MATLAB-compatible bicubic ``imresize`` and re-attached
  (output ``RGBA`` or ``LA``, 8-bit). Palette images are expanded to RGB (RGBA with transparency).
- Large images go through the model in tiles of ``tile`` LR pixels (overlapping beyond the receptive
  field), so the model's memory stays bounded; ``tile=0`` runs the whole image at once. Tiled output
  equals the whole-image output up to float rounding. SRGAN runs entirely in tiles. The attention
  generator's GroupNorm runs with statistics calibrated at its training extent and stored in its file
  (:mod:`srlib.calibration`; the default, the same inference as scoring, ``--inference whole`` for the old
  whole-image statistics), so it is local; its channel attention still averages over the whole image, so
  its low-resolution part runs on the whole image and only the upsampling part (where the large maps are)
  in tiles; see :func:`srlib.infer.upscale_tensor`.
  Its memory then grows with the image (about 1.5 kB per LR pixel in fp32 at 64 channels, measured by
  ``srlib bench``). ``low_memory`` (``--low-memory``) runs it entirely in tiles instead: bounded memory;
  only the attention gates then see one tile at a time (results/extent.csv measures what that changes).
  Images smaller than the training crop need nothing special: the calibrated statistics do not depend on
  the input's size.
- Precision (``--precision``): 'auto' is bf16 autocast on CUDA and fp32 on CPU; 'bf16' also on a CPU,
  where it pays only with AMX / AVX512-BF16 instructions (elsewhere oneDNN emulates them; ``srlib bench``
  measures both) and differs from fp32 by a few 1/255 at most (tested on small generators).

An input file is never overwritten: an output path that is one of the inputs is refused with an error.
Bad inputs are reported one line each (``error: <path>: <problem>``) and the other files still run.
"""
import glob
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .config import DEFAULT_TILE
from .imresize import imresize
from .infer import CheckpointError, load_generator, pick_device, upscale_array
from .io import IMAGE_EXTENSIONS, ImageError, list_images, read_image_full, samples_to_uint8, write_image

LUMA = np.array([0.299, 0.587, 0.114])      # PIL convert('L') weights (BT.601)
ROWS = 256                                  # output rows converted at a time (bounds float64 copies)


def load_upscaler(checkpoint, device=None, arch=None, scale=None, inference="calibrated"):
    """Load the generator of ``checkpoint`` for inference. Returns ``(model, scale)``.

    ``inference``: 'calibrated' (default, as scoring: GroupNorm with the statistics stored at the training
    extent) or 'whole' (each image's own statistics, which shifts the colours; for comparison only).

    ``arch`` / ``scale``, when given, are expectations that the checkpoint must meet. Raises
    :class:`CheckpointError` (naming the file) for a missing, corrupt, foreign or mismatched checkpoint,
    and ``ValueError`` for a device that cannot be used here.
    """
    try:
        dev = pick_device(device)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as e:
        raise ValueError(f"device {device!r} cannot be used here ({str(e).splitlines()[0][:200]})") from None
    try:
        model, ckpt = load_generator(checkpoint, device=dev, arch=arch, scale=scale, inference=inference)
        declared = ckpt["generator"]["scale"]
    except (KeyError, TypeError, AttributeError) as e:   # tagged checkpoint without usable metadata
        raise CheckpointError(f"{checkpoint}: no usable generator metadata ({type(e).__name__}: {e})") from None
    if getattr(model, "scale", declared) != declared:
        raise CheckpointError(f"{checkpoint}: declares scale x{declared} but its generator upscales "
                              f"x{model.scale}")
    return model, declared


def _to_samples(sr, gray, peak):
    """(H, W, 3) float in [0, 1] -> (H, W, 3) uint8, or (H, W) luma as uint8 / uint16 (``peak`` 255 or
    65535), rounded half up. Converted in row chunks so a large image needs no full float64 copy."""
    h, w = sr.shape[:2]
    out = np.empty((h, w) if gray else (h, w, 3), np.uint16 if peak > 255 else np.uint8)
    for r in range(0, h, ROWS):
        x = sr[r: r + ROWS].astype(np.float64)
        if gray:
            x = x @ LUMA                                  # (rows, W)
        out[r: r + ROWS] = np.clip(np.floor(x * peak + 0.5), 0, peak)
    return out


def _upscale_alpha(alpha, scale):
    """(h, w) alpha -> (h*s, w*s) uint8 with MATLAB bicubic; a constant alpha stays constant."""
    alpha = np.asarray(alpha)
    if alpha.dtype != np.uint8:                           # 16-bit alpha: to 8 bits like the colour
        alpha = samples_to_uint8(alpha, "I;16")
    shape = (alpha.shape[0] * scale, alpha.shape[1] * scale)
    if alpha.min() == alpha.max():                        # e.g. fully opaque: skip the dense resize
        return np.full(shape, alpha.flat[0], np.uint8)
    return imresize(alpha, scale, output_shape=shape)


def upscale_image(model, decoded, scale, tile=DEFAULT_TILE, precision="auto", low_memory=False):
    """Upscale a :class:`srlib.io.Decoded` image; returns a PIL image ready to save as PNG.

    Mode of the result: ``RGB``, ``RGBA`` (alpha), ``L`` (gray), ``LA`` (gray with alpha) or ``I;16``
    (16-bit gray). See the module docstring for the conversions. ``tile`` is in LR pixels (0: no tiles);
    ``precision`` 'auto', 'fp32' or 'bf16' (see :func:`srlib.infer.resolve_precision`); ``low_memory``:
    tile the whole network, whole-image statistics or not (see the module docstring).
    """
    h, w = decoded.rgb.shape[:2]
    if h == 0 or w == 0:
        raise ImageError(f"image has zero size ({w}x{h})")
    sr = upscale_array(model, decoded.rgb, scale, tile=tile or None, amp=precision, exact=not low_memory)   # [0, 1]
    wide = decoded.gray and decoded.bits == 16 and decoded.alpha is None
    samples = _to_samples(sr, decoded.gray, 65535 if wide else 255)
    del sr
    if decoded.alpha is None:
        return Image.fromarray(samples)                  # RGB, L, or I;16 from uint16
    alpha = _upscale_alpha(decoded.alpha, scale)
    if decoded.gray:
        return Image.fromarray(np.stack([samples, alpha], axis=2), "LA")
    return Image.fromarray(np.concatenate([samples, alpha[..., None]], axis=2), "RGBA")


def output_path(src, out_dir, suffix):
    """``out_dir/<stem of src><suffix>.png``."""
    return Path(out_dir) / f"{Path(src).stem}{suffix}.png"


def _file_id(path):
    """(device, inode) of an existing file, else None; equal for two names of the same file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def upscale_file(model, src, dst, scale, tile=DEFAULT_TILE, precision="auto", low_memory=False):
    """Read image file ``src`` (EXIF orientation applied), upscale it, write PNG ``dst`` atomically.

    Refuses (``ImageError``) when ``dst`` is ``src`` itself. Returns ``dst`` as a ``Path``.
    """
    if _file_id(dst) is not None and _file_id(dst) == _file_id(src):
        raise ImageError(f"{src}: output {dst} is this input file; refusing to overwrite it")
    decoded = read_image_full(src, exif_transpose=True)
    try:
        img = upscale_image(model, decoded, scale, tile, precision, low_memory)
    except ImageError as e:
        raise ImageError(f"{src}: {e}") from None
    return Path(write_image(dst, img, fmt="PNG"))


def expand_inputs(items):
    """Files named by ``items``: files as given, folders' images (non-recursive, by extension) and glob
    patterns (expanded here, so they also work where the shell does not expand them).

    Returns ``(files, errors)``: the files in order without repeats, and one message per item that named
    nothing. A missing plain path is kept, so that reading it reports the error.
    """
    files, errors, seen = [], [], set()

    def add(path):
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            files.append(Path(path))

    for item in map(str, items):
        if os.path.exists(item) or not any(c in item for c in "*?["):
            matches = [item]
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                errors.append(f"{item}: no files match this pattern")
        for m in matches:
            if not os.path.isdir(m):
                add(m)
                continue
            try:
                images = list_images(m)
            except (ImageError, OSError) as e:
                errors.append(str(e) if isinstance(e, ImageError) else f"{m}: cannot list folder ({e.strerror})")
                continue
            if not images:
                errors.append(f"{m}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            for p in images:
                add(p)
    return files, errors


def _report(msg):
    tqdm.write(f"error: {msg}", file=sys.stderr)


def upscale_files(inputs, out_dir, checkpoint, tile=DEFAULT_TILE, device=None, suffix=None, arch=None,
                  scale=None, progress=True, precision="auto", low_memory=False, inference="calibrated"):
    """Upscale every image named by ``inputs`` (see :func:`expand_inputs`) into ``out_dir``.

    The checkpoint is loaded first; its problems raise :class:`CheckpointError` before any image is
    read; so does an output folder that is a file (``ValueError``). A bad input is reported on stderr
    (``error: <path>: <problem>``) and skipped. ``suffix`` defaults to ``_x<scale>``; ``precision`` and
    ``low_memory`` as :func:`upscale_image`. Returns ``(written, errors)``: output paths and error messages.
    """
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ValueError(f"{out_dir}: output folder exists and is not a folder")
    model, scale = load_upscaler(checkpoint, device=device, arch=arch, scale=scale, inference=inference)
    suffix = f"_x{scale}" if suffix is None else suffix
    files, errors = expand_inputs(inputs)
    for msg in errors:
        _report(msg)
    protected = {_file_id(p) for p in files} - {None}
    claimed = {}                                           # output path -> input that wrote it
    written = []
    for src in tqdm(files, desc="upscale", unit="img", disable=not progress or len(files) < 2):
        dst = output_path(src, out_dir, suffix)
        key = os.path.normcase(os.path.abspath(dst))
        try:
            if _file_id(dst) in protected:
                raise ImageError(f"{src}: output {dst} is an input file; refusing to overwrite it "
                                 "(choose another -o or --suffix)")
            if key in claimed:
                raise ImageError(f"{src}: output {dst} is already the output of {claimed[key]} "
                                 "(same name); rename one of them")
            written.append(upscale_file(model, src, dst, scale, tile, precision, low_memory))
            claimed[key] = src
        except ImageError as e:
            errors.append(str(e))
            _report(errors[-1])
        except Exception as e:  # noqa: BLE001 - one file's failure (disk full, out of memory) must not stop the rest
            hint = "; try a smaller --tile or --low-memory" if "out of memory" in str(e).lower() else ""
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
            errors.append(f"{src}: {type(e).__name__}: {first}{hint}")
            _report(errors[-1])
    return written, errors


# ------------------------------------------------------------------------------------------------ CLI


def _run(args):
    """Exit code: 0 all done, 1 some input failed, 2 checkpoint or device problem (nothing processed)."""
    try:
        written, errors = upscale_files(args.inputs, args.out_dir, args.checkpoint, tile=args.tile,
                                        device=args.device, suffix=args.suffix, arch=args.arch,
                                        scale=args.scale, precision=args.precision,
                                        low_memory=args.low_memory, inference=args.inference)
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(written)} done, {len(errors)} failed")
    return 1 if errors else 0
