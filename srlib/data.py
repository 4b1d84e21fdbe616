"""Datasets: where data lives, evaluation sets (whole images) and training sets (random crops).

Data root: the ``root`` argument, else the environment variable ``SRLIB_DATA``, else ``./data``.
A named dataset is a folder ``<root>/<Name>/HR/*`` with optional ``<root>/<Name>/LR_bicubic/X<s>/*``
(the layout of the EDSR benchmark packs). Any folder of images works too: pass its path as the name.
When a requested dataset is missing everywhere, :func:`resolve_datasets` can fall back to ``demo``:
images that scikit-image ships inside its wheel (no download), with a warning that numbers on it are
not comparable to the literature.

Data roots are only read, never written.
"""
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .imresize import degrade
from .io import ImageError, list_images, read_image_full

BENCHMARKS = ("Set5", "Set14", "BSD100", "Urban100")
DEMO = "demo"
DEMO_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")


class DatasetNotFound(FileNotFoundError):
    pass


def data_root(root=None):
    """The data root: ``root`` if given, else ``$SRLIB_DATA``, else ``./data``."""
    return Path(root or os.environ.get("SRLIB_DATA") or "data").expanduser()


def demo_dir():
    import skimage.data
    return Path(skimage.data.__file__).parent


def hr_files(name, root=None):
    """Sorted HR image files of a named dataset, a folder path, or ``demo``."""
    if name == DEMO:
        return [demo_dir() / f for f in DEMO_FILES]
    path = Path(name).expanduser()
    if path.is_dir():
        folder = path / "HR" if (path / "HR").is_dir() else path
    else:
        folder = data_root(root) / name / "HR"
        if not folder.is_dir():
            raise DatasetNotFound(f"dataset {name!r} not found: no folder {folder} "
                                  f"(set SRLIB_DATA or --data-root, or run `python -m srlib download`)")
    files = list_images(folder)
    if not files:
        raise ImageError(f"{folder}: no image files (.png, .jpg, .bmp, ...) in this folder")
    return files


def available(names, root=None):
    """The subset of ``names`` that can be found."""
    found = []
    for n in names:
        try:
            hr_files(n, root)
            found.append(n)
        except DatasetNotFound:
            pass
    return found


def resolve_datasets(names, root=None, fallback_demo=True):
    """Names that exist; when none does and ``fallback_demo``, ``['demo']`` with a warning."""
    found = available(names, root)
    missing = [n for n in names if n not in found]
    if missing and found:
        warnings.warn(f"datasets not found under {data_root(root)}: {', '.join(missing)}; skipping them")
    if not found and fallback_demo:
        warnings.warn(f"none of {', '.join(names)} found under {data_root(root)}: using the 'demo' set "
                      f"(scikit-image sample images). Its numbers are NOT comparable to the literature.")
        return [DEMO]
    return found


def mod_crop(img, scale):
    """Crop top-left so both sides are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]


@dataclass
class EvalImage:
    name: str
    hr: np.ndarray     # (H, W, 3) uint8, mod-cropped
    lr: np.ndarray     # (H/s, W/s, 3) uint8
    gray: bool         # source file was single-channel


def load_eval_set(name, root=None, scale=4, lr_source="generate", degradation="matlab"):
    """Whole images of one dataset. ``lr_source``: 'generate' (``degradation`` of the mod-cropped HR)
    or 'dataset' (the files in ``LR_bicubic/X<scale>``, which must exist)."""
    items = []
    for f in hr_files(name, root):
        dec = read_image_full(f)
        hr = mod_crop(dec.rgb, scale)
        if min(hr.shape[:2]) < scale:
            raise ImageError(f"{f}: image {dec.rgb.shape[1]}x{dec.rgb.shape[0]} is smaller than scale {scale}")
        if lr_source == "generate":
            lr = degrade(hr, scale, degradation)
        elif lr_source == "dataset":
            lr_file = f.parent.parent / "LR_bicubic" / f"X{scale}" / (f.stem + ".png")
            lr = read_image_full(lr_file).rgb
            if lr.shape[:2] != (hr.shape[0] // scale, hr.shape[1] // scale):
                raise ImageError(f"{lr_file}: LR size {lr.shape[1]}x{lr.shape[0]} does not match HR/{scale}")
        else:
            raise ValueError(f"unknown lr_source {lr_source!r}; choose 'generate' or 'dataset'")
        items.append(EvalImage(f.stem, hr, lr, dec.gray))
    return items


def to_tensor(img):
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)


def augment(img, k):
    """One of the 8 dihedral transforms (k in 0..7): k % 4 quarter turns, then a flip if k >= 4."""
    img = np.rot90(img, k % 4)
    return img[:, ::-1] if k >= 4 else img


class TrainDataset(torch.utils.data.Dataset):
    """Random HR crops with LR made on the fly, from images decoded once and held in memory as uint8.

    Args:
        sources: dataset names or folders (see :func:`hr_files`).
        crop: HR crop size, a multiple of ``scale`` (the paper: 128; SRGAN's code: 88).
        scale: upscaling factor.
        degradation: 'matlab' (standard benchmarks) or 'pil' (the reference SRGAN code).
        augment: random flips and 90-degree rotations.
        repeat: crops drawn per image per epoch (small training sets make very short epochs).
        seed: crops and augmentations are a function of (seed, epoch, index), so an epoch is the same
            whatever the number of workers, and resuming reproduces it. Call :meth:`set_epoch`.

    Images smaller than the crop are skipped with a warning.
    """

    def __init__(self, sources, root=None, crop=96, scale=4, degradation="matlab", augment=True,
                 repeat=1, seed=0):
        if crop % scale:
            raise ValueError(f"crop {crop} is not a multiple of scale {scale}")
        self.crop, self.scale, self.degradation, self.augment = crop, scale, degradation, augment
        self.repeat, self.seed, self.epoch = repeat, seed, 0
        self.images, skipped = [], []
        for name in sources:
            for f in hr_files(name, root):
                img = read_image_full(f).rgb
                if min(img.shape[:2]) < crop:
                    skipped.append(f"{f} ({img.shape[1]}x{img.shape[0]})")
                    continue
                self.images.append(img)
        if skipped:
            warnings.warn(f"{len(skipped)} training image(s) smaller than crop {crop} skipped: "
                          + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
        if not self.images:
            raise ImageError(f"no training image of at least {crop}x{crop} in {', '.join(map(str, sources))}")

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.images) * self.repeat

    def __getitem__(self, index):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        img = self.images[index % len(self.images)]
        h, w = img.shape[:2]
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        hr = img[y: y + self.crop, x: x + self.crop]
        if self.augment:
            hr = augment(hr, int(rng.integers(0, 8)))
        hr = np.ascontiguousarray(hr)
        lr = degrade(hr, self.scale, self.degradation)
        return to_tensor(lr), to_tensor(hr)
