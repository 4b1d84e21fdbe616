"""Benchmark evaluation: run a method over datasets and score it under both protocols.

A *method* is 'bicubic' (MATLAB-style bicubic upscaling of the LR) or the path of a checkpoint.
Per-image rows carry: method, dataset, image, protocol, psnr, ssim. :func:`summarize` averages them per
(method, dataset, protocol): the dataset score is the mean of per-image scores.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .data import load_eval_set
from .imresize import imresize
from .infer import load_generator, upscale_array
from .io import atomic_write
from .metrics import PROTOCOLS, image_scores


def bicubic(lr, scale=4):
    """MATLAB-style bicubic upscaling of an (h, w, 3) uint8 LR image to (h*s, w*s, 3) uint8."""
    return imresize(lr, scale, output_shape=(lr.shape[0] * scale, lr.shape[1] * scale))


def make_upscaler(method, scale=4, device=None, tile=None, inference="calibrated"):
    """Return ``(label, fn, mode)`` where ``fn(lr_uint8) -> sr`` (float [0, 1] or uint8, HWC), ``label`` names
    it and ``mode`` is the inference it runs (``checkpoint['inference']`` of :func:`srlib.infer.load_generator`;
    '-' for bicubic).

    ``inference``: 'calibrated' (the default everywhere: GroupNorm with statistics stored at the training
    extent) or 'whole' (GroupNorm with each image's own statistics). Benchmark images run whole by default
    (``tile=None``); with ``tile`` the scores agree up to float rounding (see
    :func:`srlib.infer.upscale_tensor`). Scores are computed in fp32.
    """
    if method == "bicubic":
        return "bicubic", lambda lr: bicubic(lr, scale), "-"
    model, ckpt = load_generator(method, device=device, scale=scale, inference=inference)
    label = ckpt.get("meta", {}).get("run_name") or Path(method).parent.name or Path(method).stem
    return label, lambda lr: upscale_array(model, lr, scale, tile=tile, amp=False), ckpt["inference"]


def mean_offset(sr, hr):
    """Per-channel mean of SR minus HR in 8-bit levels (R, G, B): the colour cast of an output."""
    sr = np.asarray(sr, np.float64) * (1 if np.asarray(sr).dtype == np.uint8 else 255)
    return tuple(float(v) for v in (sr - np.asarray(hr, np.float64)).reshape(-1, 3).mean(0))


SCORES_VERSION = 1   # raise when a metric's code changes: cached per-image scores of older code are then not reused


SCORES_CACHE = "cache/scores"   # under the repository: the one scorer's cache (study, ablation, gpurun), by score_key


def score_key(method, items, scale, protocols, lr_source, inference, perceptual):
    """The cache key of one method's per-image scores on one dataset: the generator file's sha256 (or
    'bicubic'), the inference asked for, scale, protocols, LR source, the perceptual measures' identity (their
    notes: models, weights and versions) and :data:`SCORES_VERSION`, and the images' pixels (HR and LR)."""
    from .download import _sha256
    spec = dict(version=SCORES_VERSION, method="bicubic" if method == "bicubic" else _sha256(method), scale=scale,
                protocols=list(protocols), lr_source=lr_source, inference=inference,
                perceptual=None if perceptual is None else [type(perceptual).__name__, perceptual.notes])
    h = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode())
    for it in items:
        h.update(it.name.encode())
        h.update(np.ascontiguousarray(it.hr).tobytes())
        h.update(np.ascontiguousarray(it.lr).tobytes())
    return h.hexdigest()[:24]


def evaluate(method, datasets, root=None, scale=4, protocols=PROTOCOLS, device=None, label=None,
             lr_source="generate", progress=False, perceptual=None, inference="calibrated", cache=None):
    """Per-image scores (DataFrame) of one method on named datasets. LR is MATLAB-bicubic from HR by
    default (``lr_source='generate'``) for every protocol, so protocols differ only in the metric.
    Columns: method, dataset, image, protocol, psnr, ssim, inference (the mode that ran, see
    :func:`make_upscaler`), offset_r, offset_g, offset_b (:func:`mean_offset`, levels of 255).

    ``perceptual`` (e.g. :class:`srlib.perceptual.Perceptual`): a callable ``(sr, hr) -> {measure: value}``
    whose values are added as columns; they do not depend on the protocol, so every protocol's row of an
    image carries the same values.

    ``cache`` (a folder): each dataset's per-image scores are kept there under :func:`score_key` once the
    dataset is done, and reused when the key matches, so an interrupted benchmark continues by dataset
    and nothing computed by other code, another generator or other measures is taken for it."""
    name, fn, mode = make_upscaler(method, scale, device, inference=inference)
    label = label or name
    if perceptual is not None and not hasattr(perceptual, "notes"):
        cache = None                               # measures without an identity cannot be keyed
    frames = []
    for ds in datasets:
        items = load_eval_set(ds, root, scale, lr_source=lr_source)
        path = None
        if cache is not None:
            key = score_key(method, items, scale, protocols, lr_source, inference, perceptual)
            path = Path(cache) / f"{ds}-{key}.csv"
            if path.exists():
                frames.append(pd.read_csv(path, dtype={"image": str}).assign(method=label))
                continue
        if progress:
            from tqdm.auto import tqdm
            items = tqdm(items, desc=f"{label} {ds}", leave=False)
        rows = []
        for it in items:
            sr = fn(it.lr)
            extra = perceptual(sr, it.hr) if perceptual is not None else {}
            off = dict(zip(("offset_r", "offset_g", "offset_b"), mean_offset(sr, it.hr)))
            for p, (psnr, ssim) in image_scores(sr, it.hr, scale, it.gray, protocols).items():
                rows.append(dict(method=label, dataset=ds, image=it.name, protocol=p, psnr=psnr, ssim=ssim,
                                 inference=mode, **off, **extra))
        frames.append(pd.DataFrame(rows))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda f: f.write(frames[-1].to_csv(index=False).encode()))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summarize(per_image, columns=("psnr", "ssim")):
    """Mean scores (``columns`` present in ``per_image``) and image count per (method, dataset, protocol,
    and inference where per_image has it), in order of appearance."""
    cols = [c for c in columns if c in per_image.columns]
    keys = ["method", "dataset", "protocol"] + (["inference"] if "inference" in per_image.columns else [])
    return (per_image.groupby(keys, sort=False, dropna=False)   # a row with no inference (HR) is kept
            .agg(**{c: (c, "mean") for c in cols}, images=("image", "count")).reset_index())


def write_csv(df, path, decimals=4):
    """Write a DataFrame to CSV atomically with fixed decimals."""
    return atomic_write(path, lambda f: f.write(df.round(decimals).to_csv(index=False).encode()))


def bicubic_table(datasets, root=None, csv_path=None, scale=4):
    """Bicubic x``scale`` on ``datasets`` in both protocols; optionally written to ``csv_path``."""
    table = summarize(evaluate("bicubic", datasets, root, scale)).drop(columns="inference", errors="ignore")
    if csv_path:
        write_csv(table, csv_path)
    return table


def format_table(summary):
    """Human-readable lines: one per (method, dataset, protocol)."""
    lines = [f"{'method':<14} {'dataset':<10} {'protocol':<9} {'PSNR':>8} {'SSIM':>7} {'images':>6}"]
    for r in summary.itertuples():
        lines.append(f"{r.method:<14} {r.dataset:<10} {r.protocol:<9} {r.psnr:8.2f} {r.ssim:7.4f} {r.images:6d}")
    return "\n".join(lines)
