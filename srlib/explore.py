"""Explore one image: LR, bicubic, every generator in every inference mode, and HR, side by side.

What notebook 07_explore calls (its widgets only pick and redraw). An image is a benchmark image by name
(``'Set5/baby'``: LR made from its HR as the benchmark makes it), an image file taken as HR (LR made the same
way, so every score exists) or an image file taken as the LR input itself (no HR: no scores; the colour
offset is then measured against bicubic). A generator runs in one of these inference modes:

- ``'calibrated'`` (srlib's default): GroupNorm with statistics measured at the training extent
  (:mod:`srlib.calibration`). A file that holds none (written before calibration existed) is calibrated
  here, on a copy in memory, from its own training crops, when the data root has its training images;
  without them it runs whole-image, and :func:`describe` says so.
- ``'whole'``: the whole image at once, every GroupNorm with the image's own statistics: outside the extent
  the model was trained at, so its colours shift (the extent dependence, :mod:`srlib.extent`).
- an int ``n``: tiles of exactly ``n`` LR pixels (:func:`srlib.extent.tiled`), each tile's own statistics;
  :func:`srlib.extent.sweep_extents` gives the sizes of the extent sweep.

A generator without GroupNorm (SRGAN: BatchNorm with running statistics) is the control: its modes differ only
by tile borders. Nothing here writes a file, except :func:`save_upload`, into a temporary folder.
"""
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import archs, calibration
from .data import DatasetNotFound, data_root, hr_files, mod_crop, to_tensor
from .evaluate import bicubic, mean_offset
from .extent import sweep_extents, tiled
from .imresize import degrade
from .infer import GENERATOR_FILE, load_generator
from .io import ImageError, read_image_full
from .metrics import image_scores, to_uint8
from .config import LABELS
from .figures import _zoom_box

OFFSETS = ("offset_r", "offset_g", "offset_b")
MEASURES = ("lpips", "stlpips_alex", "haarpsi", "gmsd", "ms_ssim", "niqe_live")   # of srlib.perceptual, shown here
TILE_PIXELS = 128 * 128   # LR pixels per forward call in tiled modes: memory as a 128x128 LR image at once


@dataclass
class Picture:
    name: str                  # 'Set5/baby', or the file's name
    lr: np.ndarray             # (h, w, 3) uint8: the generators' input
    hr: np.ndarray | None      # (h*s, w*s, 3) uint8, or None for a file taken as the LR itself
    gray: bool                 # a single-channel source (scored on its gray values)
    scale: int


def _from_hr(name, decoded, scale):
    hr = mod_crop(decoded.rgb, scale)
    if min(hr.shape[:2]) < scale:
        raise ImageError(f"{name}: image {decoded.rgb.shape[1]}x{decoded.rgb.shape[0]} is smaller than scale {scale}")
    return Picture(name, degrade(hr, scale, "matlab"), hr, decoded.gray, scale)


def load_picture(image, root=None, scale=4, as_lr=False):
    """A :class:`Picture` from ``image``: an image file (EXIF orientation applied; taken as HR, or with
    ``as_lr`` as the LR input itself) or ``'DATASET/NAME'`` of a dataset under the data root. LR from HR is
    the benchmark's MATLAB bicubic of the mod-cropped HR. Unreadable files raise :class:`srlib.io.ImageError`."""
    path = Path(str(image)).expanduser()
    if path.is_file():
        decoded = read_image_full(path, exif_transpose=True)
        if as_lr:
            return Picture(path.name, decoded.rgb, None, decoded.gray, scale)
        return _from_hr(path.name, decoded, scale)
    dataset, _, name = str(image).rpartition("/")
    if not dataset:
        raise ImageError(f"{image}: no such file, and not DATASET/NAME of a dataset (e.g. Set5/baby)")
    files = {f.stem: f for f in hr_files(dataset, root)}
    if name not in files:
        raise ImageError(f"{image}: no such file, and {dataset} has no image {name!r} (it has "
                         f"{', '.join(sorted(files)[:8])}{', ...' if len(files) > 8 else ''})")
    return _from_hr(str(image), read_image_full(files[name]), scale)


def save_upload(name, content):
    """Write an uploaded file's bytes into a new temporary folder (never results/ or a data root); its path."""
    path = Path(tempfile.mkdtemp(prefix="srlib-explore-")) / (Path(name).name or "upload")
    path.write_bytes(bytes(content))
    return path


def generators(runs_dir="results/train"):
    """{name: path} of every generator file under ``runs_dir``, named by its folder ('attention', ...)."""
    runs_dir = Path(runs_dir)
    return {str(p.parent.relative_to(runs_dir)): p for p in sorted(runs_dir.rglob(GENERATOR_FILE))}


@dataclass
class Generator:
    name: str
    label: str
    model: object              # the generator, eval mode, CPU
    scale: int
    extent: int | None         # the training crop in LR px (None: the file records none)
    statistics: str            # where its calibrated GroupNorm statistics come from, or why there are none
    calibrated: bool           # it has GroupNorm layers, all calibrated
    norms: bool                # it has GroupNorm layers


def load(path, name=None, root=None, calibrate=True):
    """A :class:`Generator` from a generator file. ``calibrate``: a file with uncalibrated GroupNorm layers is
    calibrated in memory (the file is not changed) from its training crops, as :func:`srlib.calibration.calibrate_run`
    would, when they are under the data root; otherwise 'calibrated' runs whole-image."""
    model, ckpt = load_generator(path, device="cpu", inference="whole")
    cfg, scale = ckpt["config"], ckpt["generator"]["scale"]
    name = name or Path(path).parent.name
    norms = bool(archs.group_norms(model))
    if not norms:
        statistics = "no GroupNorm: its normalization does not depend on the input"
    elif archs.is_calibrated(model):
        statistics = "calibrated statistics stored in the file"
    elif not calibrate:
        statistics = "NOT CALIBRATED: the file holds no calibrated statistics"
    else:
        try:
            calibration.calibrate(model, calibration.crops(calibration.training_dataset(cfg, root)))
            statistics = (f"calibrated here, in memory, on {calibration.CROPS} crops of its training images "
                          f"({', '.join(cfg['train_sets'])}): the file holds none")
        except (DatasetNotFound, ImageError, KeyError) as e:
            statistics = (f"NOT CALIBRATED: the file holds no calibrated statistics, and its training images are not "
                          f"to be had under {data_root(root)} ({e})")
    extent = cfg["crop"] // scale if "crop" in cfg else None
    return Generator(name, LABELS.get(name, name), model, scale, extent, statistics,
                     norms and archs.is_calibrated(model), norms)


def check_size(picture, gen):
    """:class:`srlib.io.ImageError` when the LR input is smaller than ``gen``'s training crop."""
    h, w = picture.lr.shape[:2]
    if gen.extent and min(h, w) < gen.extent:
        hr = "" if picture.hr is None else f" (HR {w * picture.scale}x{h * picture.scale})"
        raise ImageError(f"{picture.name}: LR {w}x{h}{hr} is smaller than {gen.label}'s training crop "
                         f"({gen.extent * gen.scale} px HR, {gen.extent} px LR): use a larger image")
    if gen.scale != picture.scale:
        raise ValueError(f"{gen.label} upscales x{gen.scale}, the picture was made for x{picture.scale}")


def modes(gen, picture=None):
    """The inference modes of ``gen``: 'calibrated', the sweep's tile sizes (those smaller than the picture's
    LR), 'whole'."""
    sizes = sweep_extents(gen.extent) if gen.extent else []
    if picture is not None:
        sizes = [n for n in sizes if n < max(picture.lr.shape[:2])]
    return ["calibrated", *sizes, "whole"]


def mode_label(mode):
    return f"tiles {mode}" if isinstance(mode, int) else {"whole": "whole image"}.get(mode, mode)


def describe(gen, mode):
    """The inference that ``run(gen, ..., mode)`` actually runs, in a few words (``gen.statistics`` says where
    calibrated statistics came from, or why there are none)."""
    where = f"tiles of {mode} px" if isinstance(mode, int) else "whole image"
    if not gen.norms:
        return f"{where}, no GroupNorm"
    if mode == "calibrated" and gen.calibrated:
        return f"calibrated ({gen.extent}-px statistics)" if gen.extent else "calibrated (stored statistics)"
    if mode == "calibrated":
        return "whole image, own statistics (NOT calibrated)"
    return f"{where}, own statistics"


def run(gen, lr, mode):
    """``gen`` on an (h, w, 3) uint8 LR image in ``mode``: (h*s, w*s, 3) float32 in [0, 1]."""
    archs.set_inference(gen.model, "calibrated" if mode == "calibrated" else "whole")
    sr = tiled(gen.model, to_tensor(lr)[None], mode if isinstance(mode, int) else None, gen.scale, TILE_PIXELS)
    return sr[0].permute(1, 2, 0).numpy()


def measures(learned=False):
    """:class:`srlib.perceptual.Perceptual` with the measures that need no training data: HaarPSI, GMSD,
    MS-SSIM, NIQE (published LIVE model); ``learned`` adds LPIPS (where its AlexNet backbone is in
    torchvision's cache) and ST-LPIPS (where its package is installed). ``notes`` says what is missing."""
    from .perceptual import Perceptual, load_lpips, load_niqe_live, load_stlpips
    live = load_niqe_live()
    notes = {"niqe_live": live.source, "niqe_srlib": "not computed here (it is fitted on the training HR)"}
    lp = st = None
    if learned:
        (lp, notes["lpips"]), (st, notes["stlpips_alex"]) = load_lpips(), load_stlpips()
    else:
        notes["lpips"] = notes["stlpips_alex"] = "not computed (learned=False)"
    return Perceptual(lp, niqe_live=live, stlpips=st, notes=notes)


class Explorer:
    """One :class:`Picture` and some :class:`Generator` s: outputs per (generator, mode), computed once."""

    def __init__(self, picture, gens, perceptual=None):
        for g in gens:
            check_size(picture, g)
        self.picture, self.gens, self.perceptual = picture, {g.name: g for g in gens}, perceptual
        self.bicubic = bicubic(picture.lr, picture.scale)
        self.reference = picture.hr if picture.hr is not None else self.bicubic
        self._outputs, self._scores = {}, {}

    def modes(self):
        """The inference modes of every generator (:func:`modes`), together: 'calibrated', the tile sizes, 'whole'."""
        sizes = {n for g in self.gens.values() for n in modes(g, self.picture) if isinstance(n, int)}
        return ["calibrated", *sorted(sizes), "whole"]

    def output(self, name, mode):
        key = (name, mode)
        if key not in self._outputs:
            self._outputs[key] = run(self.gens[name], self.picture.lr, mode)
        return self._outputs[key]

    def scores(self, sr, perceptual=True):
        """PSNR / SSIM (standard protocol: Y, border ``scale`` shaved), the mean offset (R, G, B; levels of 255)
        against HR (bicubic where there is none) and, with ``perceptual``, the measures of ``self.perceptual``."""
        pic, row = self.picture, {}
        if pic.hr is not None:
            row["psnr"], row["ssim"] = image_scores(sr, pic.hr, pic.scale, pic.gray, ("standard",))["standard"]
        row.update(zip(OFFSETS, mean_offset(sr, self.reference)))
        if pic.hr is not None and perceptual and self.perceptual is not None:
            row.update({k: v for k, v in self.perceptual(sr, pic.hr).items() if k in MEASURES})
        return row

    def score(self, name, mode, perceptual=True):
        """:meth:`scores` of generator ``name`` in ``mode`` (``name`` None: bicubic), computed once."""
        key = (name, None if name is None else mode, perceptual)
        if key not in self._scores:
            sr = self.bicubic if name is None else self.output(name, mode)
            self._scores[key] = self.scores(sr, perceptual)
        return self._scores[key]

    def table(self, mode, perceptual=True):
        """One row per method (bicubic, then every generator in ``mode``): the inference that ran and
        :meth:`scores`."""
        rows = [dict(method="Bicubic", inference="-", **self.score(None, mode, perceptual))]
        for name, g in self.gens.items():
            rows.append(dict(method=g.label, inference=describe(g, mode), **self.score(name, mode, perceptual)))
        table = pd.DataFrame(rows)
        return table.drop(columns=[c for c in MEASURES if c in table and table[c].isna().all()])   # not computed

    def sweep(self, name, computed=False):
        """``name`` in every mode of :meth:`modes` (with ``computed``, only in those already computed): mode,
        extent (LR px; 0 for the whole image, NaN for calibrated), PSNR, SSIM and the mean offset (R, G, B)."""
        rows = []
        for mode in self.modes():
            if computed and (name, mode) not in self._outputs:
                continue
            extent = mode if isinstance(mode, int) else (0 if mode == "whole" else np.nan)
            rows.append(dict(mode=mode_label(mode), extent=extent,
                             **self.score(name, mode, perceptual=False)))
        return pd.DataFrame(rows, columns=["mode", "extent"] + (["psnr", "ssim"] if self.picture.hr is not None
                                                                  else []) + list(OFFSETS))

    def zoom_box(self, size=96):
        """``(y, x, size)``: the square window (HR px) with the most detail (as Figure 1 and the viewer)."""
        size = min(size, *self.reference.shape[:2])
        return (*_zoom_box(self.reference, size), size)


def format_table(table, decimals=None):
    """Fixed-decimal text of a :meth:`Explorer.table` or :meth:`Explorer.sweep` ('-' for a missing value)."""
    decimals = decimals or {"psnr": 2, "ssim": 4, "extent": 0, **dict.fromkeys(OFFSETS, 2)}
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]):
            d = decimals.get(col, 4)
            out[col] = [("-" if pd.isna(v) else f"{v:.{d}f}") for v in out[col]]
    return out.to_string(index=False)


def difference(sr, reference, gain=4):
    """SR - reference as an RGB image: mid-grey where they agree, ``gain`` times the signed difference
    elsewhere (a uniform tint is a colour offset). uint8 (H, W, 3)."""
    d = to_uint8(sr).astype(np.float64) - np.asarray(reference, np.float64)
    return np.clip(np.round(127.5 + gain * d), 0, 255).astype(np.uint8)


def plot_side_by_side(ex, mode, box=None):
    """LR, bicubic, each generator (in ``mode``) and HR: whole images with the zoom window, then that one window
    of each (nearest-neighbour), then each output's :func:`difference` from HR (bicubic without HR)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    y, x, size = box or ex.zoom_box()
    s = ex.picture.scale
    panels = [("LR", ex.picture.lr, s), ("Bicubic", ex.bicubic, 1)]
    panels += [(g.label, to_uint8(ex.output(n, mode)), 1) for n, g in ex.gens.items()]
    if ex.picture.hr is not None:
        panels.append(("HR", ex.picture.hr, 1))
    ref = "HR" if ex.picture.hr is not None else "bicubic"
    fig, axes = plt.subplots(3, len(panels), figsize=(2.6 * len(panels), 8.2), squeeze=False)
    for j, (label, img, f) in enumerate(panels):
        axes[0, j].imshow(img, interpolation="nearest")
        axes[0, j].add_patch(Rectangle((x / f - 0.5, y / f - 0.5), size / f, size / f, fill=False, color="red", lw=1))
        axes[0, j].set_title(label, fontsize=9)
        axes[1, j].imshow(img[y // f: (y + size) // f, x // f: (x + size) // f], interpolation="nearest")
        axes[1, j].set_title(f"zoom {size}x{size} at ({x}, {y})", fontsize=7)
        if label not in ("LR", "HR"):
            axes[2, j].imshow(difference(img, ex.reference), interpolation="nearest")
            axes[2, j].set_title(f"{label} - {ref}, x4", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{ex.picture.name}: {mode_label(mode)}", fontsize=10)
    fig.tight_layout()
    return fig


def plot_sweep(sweeps, modes, selected=None):
    """Mean offset (mean of R, G, B, levels of 255) against the inference extent, one line per generator
    (``sweeps``: {label: :meth:`Explorer.sweep`}, all or some of the ``modes`` of :meth:`Explorer.modes`), its
    calibrated level dashed; ``selected`` (a mode) marked."""
    import matplotlib.pyplot as plt
    extents = [m for m in modes if isinstance(m, int)]
    where = {**{n: n for n in extents}, 0: 2 * max(extents, default=1)}     # x of each extent; 0: whole image
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for k, (label, table) in enumerate(sweeps.items()):
        offset = table[list(OFFSETS)].mean(axis=1)
        own = table.extent.notna()
        ax.plot([where[int(e)] for e in table.extent[own]], offset[own], "-o", color=f"C{k}", ms=4, label=label)
        if (~own).any():
            ax.axhline(float(offset[~own].iloc[0]), color=f"C{k}", ls="--", lw=1, label=f"{label}, calibrated")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(where.values()), [str(n) for n in extents] + ["whole"])
    ax.minorticks_off()
    if selected is not None and selected != "calibrated":
        ax.axvline(where[selected if isinstance(selected, int) else 0], color="gray", lw=3, alpha=0.3)
    ax.axhline(0, color="gray", lw=0.8)
    ax.set_title("solid: tiles and whole image, GroupNorm with their own statistics; dashed: calibrated", fontsize=7)
    ax.set_xlabel("inference extent (LR px)")
    ax.set_ylabel("mean offset SR - reference\n(levels of 255, mean of R, G, B)", fontsize=8)
    if sweeps:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
