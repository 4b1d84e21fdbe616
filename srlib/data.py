"""Datasets: where data lives, evaluation sets (whole images) and training sets (random crops).

Data root: the ``root`` argument, else the environment variable ``SRLIB_DATA``, else ``data/`` in the
repository that holds this srlib (whatever the working directory, so a notebook started in
``notebooks/`` finds the same data as ``run_all.sh``), else ``./data`` for an installed srlib.
A named dataset is a folder ``<root>/<Name>/HR/*`` with optional ``<root>/<Name>/LR_bicubic/X<s>/*``
(the layout of the EDSR benchmark packs). Any folder of images works too: pass its path as the name.
A *manifest* (``srlib/manifests/<name>.tsv``: dataset, image name without extension, sha256 of the
decoded pixels, so T91's BMP originals and PNG copies of them are the same entry) names
a fixed list of images across datasets, e.g. a profile's training set or the held-out tuning split: a
run on it uses exactly those images, whatever else the data root holds, and an image whose pixels differ
is an error. Pass the manifest's name (``quick-train``) where a dataset name goes.
When a requested dataset is missing everywhere, :func:`resolve_datasets` can fall back to ``demo``:
images that scikit-image ships inside its wheel (no download), with a warning that numbers on it are
not comparable to the literature.

Data roots are only read, never written (the decoded-image cache of :class:`TrainDataset` goes elsewhere).
"""
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import BENCHMARKS  # noqa: F401  (srlib.data.BENCHMARKS)
from .errors import DatasetNotFound  # noqa: F401  (srlib.data.DatasetNotFound)
from .imcache import cached_images
from .imresize import degrade
from .io import ImageError, list_images, read_image_full

DEMO = "demo"
DEMO_FILES = ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
MANIFEST_DIR = Path(__file__).parent / "manifests"


def repo_root():
    """The checkout that holds this srlib (the folder with run_all.sh and pyproject.toml), else None."""
    top = Path(__file__).resolve().parent.parent
    return top if (top / "run_all.sh").is_file() and (top / "pyproject.toml").is_file() else None


def project_path(path):
    """``path`` as given when absolute, else relative to the repository (the working directory for an
    installed srlib): 'results/train' means the same folder from run_all.sh and from notebooks/."""
    path = Path(path).expanduser()
    top = repo_root()
    return path if path.is_absolute() or top is None else top / path


def data_root(root=None):
    """The data root: ``root`` if given, else ``$SRLIB_DATA``, else the repository's ``data/``."""
    if root or os.environ.get("SRLIB_DATA"):
        return Path(root or os.environ["SRLIB_DATA"]).expanduser()
    return project_path("data")


def demo_dir():
    import skimage.data
    return Path(skimage.data.__file__).parent


def pixel_hash(rgb):
    """sha256 of decoded pixels: the shape, then the (H, W, 3) uint8 bytes (independent of the file format)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    return hashlib.sha256(("x".join(map(str, rgb.shape)) + ":").encode() + rgb.tobytes()).hexdigest()


def manifest_path(name):
    return MANIFEST_DIR / f"{name}.tsv"


def is_manifest(name):
    return isinstance(name, str) and "/" not in name and manifest_path(name).is_file()


def read_manifest(name):
    """Rows (dataset, file, pixel sha256) of a manifest, in its order."""
    rows = []
    for i, line in enumerate(manifest_path(name).read_text().splitlines()):
        if not line.strip() or line.startswith("#") or line.startswith("dataset\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{manifest_path(name)} line {i + 1}: expected dataset, file, sha256")
        rows.append(tuple(parts))
    return rows


def manifest_datasets(name):
    """The datasets a manifest draws from, in order of first appearance."""
    return list(dict.fromkeys(r[0] for r in read_manifest(name)))


def entries(name, root=None):
    """[(HR file, expected pixel sha256 or None)] of a dataset, folder, ``demo`` or manifest."""
    if not is_manifest(name):
        return [(f, None) for f in hr_files(name, root)]
    out, missing, folders = [], [], {}
    for ds, stem, sha in read_manifest(name):
        if ds not in folders:
            folder = data_root(root) / ds / "HR"
            folders[ds] = {f.stem: f for f in list_images(folder)} if folder.is_dir() else {}
        if stem in folders[ds]:
            out.append((folders[ds][stem], sha))
        else:
            missing.append(f"{ds}/HR/{stem}")
    if missing:
        raise DatasetNotFound(f"manifest {name!r}: {len(missing)} image(s) missing under {data_root(root)} "
                              f"(e.g. {', '.join(missing[:3])}); run `python -m srlib download "
                              f"{' '.join(manifest_datasets(name))}`")
    return out


def read_checked(path, sha=None):
    """Decode ``path``; with ``sha``, its pixels must hash to it (else :class:`ImageError`)."""
    dec = read_image_full(path)
    if sha is not None and pixel_hash(dec.rgb) != sha:
        raise ImageError(f"{path}: pixels differ from the manifest (sha256 {pixel_hash(dec.rgb)[:12]}... "
                         f"expected {sha[:12]}...): not the image this training set names")
    return dec


def hr_files(name, root=None):
    """Sorted HR image files of a named dataset, a folder path, ``demo`` or a manifest."""
    if is_manifest(name):
        return [f for f, _ in entries(name, root)]
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
        warnings.warn(f"datasets not found under {data_root(root)}: {', '.join(missing)}; skipping them",
                      stacklevel=2)
    if not found and fallback_demo:
        warnings.warn(f"none of {', '.join(names)} found under {data_root(root)}: using the 'demo' set "
                      f"(scikit-image sample images). Its numbers are NOT comparable to the literature.",
                      stacklevel=2)
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


_EVAL_CACHE = {}                # key -> [EvalImage]: the sets last decoded and degraded by load_eval_set
EVAL_CACHE_BYTES = 512 << 20    # the four benchmarks hold 294 MiB at x4 (Urban100 235 MiB of it)


def load_eval_set(name, root=None, scale=4, lr_source="generate", degradation="matlab"):
    """Whole images of one dataset. ``lr_source``: 'generate' (``degradation`` of the mod-cropped HR)
    or 'dataset' (the files in ``LR_bicubic/X<scale>``, which must exist).

    Decoding, checking and degrading a set costs far more than its key, and a process that scores many
    generators (an ablation grid, a benchmark) loads the same sets again and again, so the sets last
    loaded with generated LR are kept in memory, up to ``EVAL_CACHE_BYTES`` in all, keyed by each HR
    file's path, inode, size, times and expected hash (a changed file is read again). Callers get
    their own copies."""
    found = entries(name, root)
    if lr_source != "generate":
        return _load_eval_set(found, scale, lr_source, degradation)
    key = (scale, degradation, tuple((str(Path(f).resolve()), *_stat(f), sha) for f, sha in found))
    items = _EVAL_CACHE.pop(key, None) or _load_eval_set(found, scale, lr_source, degradation)
    if _nbytes(items) <= EVAL_CACHE_BYTES:
        _EVAL_CACHE[key] = items                    # most recently used last
        while sum(map(_nbytes, _EVAL_CACHE.values())) > EVAL_CACHE_BYTES:
            _EVAL_CACHE.pop(next(iter(_EVAL_CACHE)))
    return [EvalImage(it.name, it.hr.copy(), it.lr.copy(), it.gray) for it in items]


def _nbytes(items):
    return sum(it.hr.nbytes + it.lr.nbytes for it in items)


def _stat(path):
    st = Path(path).stat()     # ctime and inode too: copies that keep mtime (cp -p, rsync -t) change them
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _load_eval_set(found, scale, lr_source, degradation):
    items = []
    for f, sha in found:
        dec = read_checked(f, sha)
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


def set_digest(hashes):
    """One sha256 for a list of 'name:pixel sha256' strings (a training or evaluation set's content)."""
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def eval_digest(items):
    return set_digest([f"{it.name}:{pixel_hash(it.hr)}" for it in items])


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
            whatever the number of workers, and resuming reproduces it. An index is ``(epoch, index)``
            (as :class:`StepSampler` yields) or a plain index in the epoch of :meth:`set_epoch`.
        cache_dir: None: decode every image into RAM. A folder (outside the data root): the decoded images
            are cached there once as one memory-mapped uint8 file (:mod:`srlib.imcache`), so a start or a
            resume does not decode them again and processes on one machine share their pages.

    Images smaller than the crop are skipped with a warning.
    """

    def __init__(self, sources, root=None, crop=96, scale=4, degradation="matlab", augment=True,
                 repeat=1, seed=0, cache_dir=None):
        if crop % scale:
            raise ValueError(f"crop {crop} is not a multiple of scale {scale}")
        self.crop, self.scale, self.degradation, self.augment = crop, scale, degradation, augment
        self.repeat, self.seed, self.epoch = repeat, seed, 0
        items = [item for name in sources for item in entries(name, root)]
        if cache_dir is None:
            decoded = [read_checked(f, sha).rgb for f, sha in items]
            hashes = [sha or pixel_hash(img) for (_, sha), img in zip(items, decoded)]
        else:
            cache_dir = Path(cache_dir).expanduser().resolve()
            if cache_dir.is_relative_to(data_root(root).expanduser().resolve()):
                raise ValueError(f"cache_dir {cache_dir} lies in the data root {data_root(root)}, which is "
                                 f"only read: choose a folder outside it (e.g. cache/ in the repository)")
            decoded, hashes = cached_images([f for f, _ in items], [sha for _, sha in items], cache_dir,
                                            lambda f, sha: read_checked(f, sha).rgb, pixel_hash)
        self.images, self.hashes, skipped = [], [], []
        for (f, _), img, sha in zip(items, decoded, hashes):
            self.hashes.append(f"{f.stem}:{sha}")
            if min(img.shape[:2]) < crop:
                skipped.append(f"{f} ({img.shape[1]}x{img.shape[0]})")
                continue
            self.images.append(img)
        if skipped:
            warnings.warn(f"{len(skipped)} training image(s) smaller than crop {crop} skipped: "
                          + ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""), stacklevel=2)
        if not self.images:
            raise ImageError(f"no training image of at least {crop}x{crop} in {', '.join(map(str, sources))}")

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.images) * self.repeat

    def __getitem__(self, index):
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        rng = np.random.default_rng((self.seed, epoch, index))
        img = self.images[index % len(self.images)]
        h, w = img.shape[:2]
        y = int(rng.integers(0, h - self.crop + 1))
        x = int(rng.integers(0, w - self.crop + 1))
        hr = img[y: y + self.crop, x: x + self.crop]
        if self.augment:
            hr = augment(hr, int(rng.integers(0, 8)))
        hr = np.array(hr)      # a writable copy: the images may be a read-only memory map (cache_dir)
        lr = degrade(hr, self.scale, self.degradation)
        return to_tensor(lr), to_tensor(hr)


class StepSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` for optimizer steps ``start`` .. ``stop - 1``.

    Step ``s`` of a dataset of ``n`` items and batch ``b`` lies in epoch ``e = s // (n // b)``; its batch
    is the ``s % (n // b)``-th slice of epoch ``e``'s permutation, seeded by ``(seed, e)``. So the crop
    stream is a function of the step alone: a run resumed at any step, or a phase that starts at step
    ``start``, sees exactly the batches an uninterrupted run would.

    With ``world`` processes (DistributedDataParallel), process ``rank`` iterates over items
    ``rank::world`` of each global batch, so the processes together see the batches of one process.
    """

    def __init__(self, n, batch_size, start, stop, seed=0, rank=0, world=1):
        if n < batch_size:
            raise ValueError(f"{n} training crops make no batch of {batch_size}")
        if batch_size % world or not 0 <= rank < world:
            raise ValueError(f"batch {batch_size} does not divide among {world} processes (rank {rank})")
        self.n, self.b, self.start, self.stop, self.seed = n, batch_size, start, stop, seed
        self.rank, self.world = rank, world
        self.per_epoch = n // batch_size
        self._perm = (None, None)

    def perm(self, epoch):
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=g).tolist())
        return self._perm[1]

    def batch(self, step):
        epoch, j = divmod(step, self.per_epoch)
        return [(epoch, i) for i in self.perm(epoch)[j * self.b: (j + 1) * self.b]]

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.batch(step)[self.rank::self.world]

    def __len__(self):
        return max(0, self.stop - self.start)


def git_state():
    """The commit of the repository that holds srlib, with '+dirty' when tracked files differ; None outside one."""
    import subprocess
    top = repo_root()
    if top is None:
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=top, capture_output=True, text=True, check=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=top,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")
