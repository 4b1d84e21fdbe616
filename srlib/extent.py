"""How a generator's output depends on the extent of its input, and where the dependence enters.

A generator whose normalization takes statistics from its input (GroupNorm) sees other statistics on a
whole image than on the small crops it was trained on; its output then shifts in colour. The probes here
measure that on real images (results/extent.csv, written by notebook 03_benchmark):

- ``sweep``: the generator run on tiles of exactly N LR pixels (:func:`tiled`: no overlap, the last tile
  of a row or column moved back to fit, each output pixel from the last tile that covers it), for N from
  half the training extent up, and on the whole image; per image the per-channel mean offset SR - HR
  (levels of 255), PSNR and SSIM (standard protocol); in both inference modes ('whole': GroupNorm with the
  input's own statistics; 'calibrated': statistics stored at the training extent, :mod:`srlib.calibration`).
- ``layer``: the whole image with one GroupNorm layer calibrated and every other normalizing by the image's
  own statistics ('only k'), and the converse ('all but k'): which layers carry the shift.
- ``calibration``: the whole image calibrated from crops of other extents (half, twice, four times the
  training extent; a setting no training image is large enough for is skipped with a printed note) and
  from fewer or more crops: whether the statistics depend on the extent (zero-padded
  borders weigh more in a small crop) or on the content, and the choice of :data:`srlib.calibration.CROPS`.
- ``padding``: the whole image and tiles of the training extent with every convolution's zero padding
  replaced by reflect padding, own statistics: if the gap between the two shrinks against the zero-padded
  ``sweep`` rows, zero-padded borders (which weigh more in a small crop) carry the extent dependence.
- ``gates``: the channel-attention gates on the whole image against their means over the tiles of the
  training extent (largest absolute difference per image): what the remaining global pool contributes.

Every generator is included, SRGAN too (BatchNorm with running statistics: the control, which must show no
dependence beyond the receptive-field effect of tile borders).
"""
import copy

import numpy as np
import pandas as pd
import torch

from . import archs, calibration
from .data import load_eval_set, resolve_datasets
from .evaluate import mean_offset
from .infer import load_generator
from .io import ImageError
from .metrics import image_scores

COLUMNS = ["generator", "probe", "setting", "extent", "inference", "dataset", "images", "psnr", "ssim",
           "offset_r", "offset_g", "offset_b"]


def _starts(length, n):
    if length <= n:
        return [0], length
    return sorted(set(list(range(0, length - n + 1, n)) + [length - n])), n


@torch.inference_mode()
def tiled(model, lr, n, scale):
    """``model`` on tiles of exactly ``n`` x ``n`` LR pixels of ``lr`` (1, 3, h, w); (1, 3, h*s, w*s).
    ``n`` None: the whole image."""
    if n is None:
        return model(lr).float().clamp(0, 1)
    (ys, th), (xs, tw) = _starts(lr.shape[2], n), _starts(lr.shape[3], n)
    out = torch.empty(1, 3, lr.shape[2] * scale, lr.shape[3] * scale)
    for y in ys:
        for x in xs:
            sr = model(lr[:, :, y: y + th, x: x + tw]).float().clamp(0, 1)
            out[:, :, y * scale: (y + th) * scale, x * scale: (x + tw) * scale] = sr
    return out


def _score(model, items, scale, n=None):
    rows = []
    for it in items:
        lr = torch.from_numpy(np.ascontiguousarray(it.lr)).permute(2, 0, 1)[None].float() / 255
        sr = tiled(model, lr, n, scale)[0].permute(1, 2, 0).numpy()
        psnr, ssim = image_scores(sr, it.hr, scale, it.gray, ("standard",))["standard"]
        rows.append((psnr, ssim, *mean_offset(sr, it.hr)))
    a = np.array(rows)
    return dict(images=len(rows), psnr=a[:, 0].mean(), ssim=a[:, 1].mean(), offset_r=a[:, 2].mean(),
                offset_g=a[:, 3].mean(), offset_b=a[:, 4].mean())


def _training_crops(config, root, crop=None, n=calibration.CROPS):
    return calibration.crops(calibration.training_dataset(config, root, crop), n)


def gate_shift(model, items, extent):
    """Largest |gate(whole image) - mean gate over extent-px tiles| over every channel-attention layer,
    averaged over ``items``; NaN without channel attention."""
    gates = [m for m in model.modules() if isinstance(m, archs.ChannelAttention)]
    if not gates:
        return float("nan")
    seen = {}

    def hook(i):
        def fn(module, args, out):
            seen.setdefault(i, []).append(out.detach().flatten(1).mean(0))
        return fn

    shifts = []
    with torch.inference_mode():
        for it in items:
            lr = torch.from_numpy(np.ascontiguousarray(it.lr)).permute(2, 0, 1)[None].float() / 255
            handles = [g.gate.register_forward_hook(hook(i)) for i, g in enumerate(gates)]
            model.features(lr)
            whole = {i: v[0] for i, v in seen.items()}
            seen.clear()
            (ys, th), (xs, tw) = _starts(lr.shape[2], extent), _starts(lr.shape[3], extent)
            for y in ys:
                for x in xs:
                    model.features(lr[:, :, y: y + th, x: x + tw])
            for h in handles:
                h.remove()
            shifts.append(max(float((whole[i] - torch.stack(v).mean(0)).abs().max()) for i, v in seen.items()))
            seen.clear()
    return float(np.mean(shifts))


def probe(path, name, datasets, root=None, extents=None, detail=None):
    """The probes of the module docstring for the generator file ``path`` (labelled ``name``): the sweep on
    ``datasets``, the layer, calibration and gate probes on ``detail`` (datasets; None: none of them);
    a DataFrame with :data:`COLUMNS` (``extent``: LR px, 0 for the whole image)."""
    model, ckpt = load_generator(path, device="cpu", inference="whole")
    cfg, scale = ckpt["config"], ckpt["generator"]["scale"]
    train_extent = cfg["crop"] // scale
    extents = extents or [train_extent // 2, train_extent, train_extent * 2, train_extent * 4]
    norms = archs.group_norms(model)
    if norms and not archs.is_calibrated(model):     # a file written before calibration: calibrate a copy
        calibration.calibrate(model, _training_crops(cfg, root))
    stats = [(m.calib_mean.clone(), m.calib_var.clone()) for m in norms]
    sets = {ds: load_eval_set(ds, root, scale) for ds in resolve_datasets(list(datasets), root)}
    # no detail, no detail probes (resolve_datasets of an empty list would fall back to the demo images)
    small = {ds: load_eval_set(ds, root, scale) for ds in resolve_datasets(list(detail), root)} if detail else {}
    rows = []

    def add(probe_name, setting, extent, inference, ds, scores):
        rows.append(dict(generator=name, probe=probe_name, setting=setting, extent=extent, inference=inference,
                         dataset=ds, **scores))

    modes = ("whole", "calibrated") if norms else ("calibrated",)
    for mode in modes:
        archs.set_inference(model, mode)
        for ds, items in sets.items():
            for n in [*extents, None]:
                add("sweep", "tiles" if n else "whole image", n or 0, mode, ds, _score(model, items, scale, n))
    if norms and small:
        for k in range(len(norms)):
            for setting, chosen in ((f"only layer {k}", {k}), (f"all but layer {k}", set(range(len(norms))) - {k})):
                for j, mm in enumerate(norms):
                    mm.use_calibration = j in chosen
                for ds, items in small.items():
                    add("layer", setting, 0, "mixed", ds, _score(model, items, scale))
    if norms and small:
        archs.set_inference(model, "calibrated")
        for setting, crop, n in ((f"{train_extent // 2}-px crops", cfg["crop"] // 2, calibration.CROPS),
                                 (f"{train_extent * 2}-px crops", cfg["crop"] * 2, calibration.CROPS),
                                 (f"{train_extent * 4}-px crops", cfg["crop"] * 4, calibration.CROPS),
                                 ("64 crops", cfg["crop"], 64), ("1024 crops", cfg["crop"], 1024)):
            try:
                lr = _training_crops(cfg, root, crop, n)
            except ImageError as e:          # e.g. 4x the quick extent: 384 px, larger than every T91 image
                print(f"extent: calibration from {setting} skipped: {e}", flush=True)
                continue
            trial = calibration.calibrate(copy.deepcopy(model), lr)
            for ds, items in small.items():
                add("calibration", setting, 0, "calibrated", ds, _score(trial, items, scale))
        for m, (mean, var) in zip(norms, stats):
            m.calib_mean.copy_(mean)
            m.calib_var.copy_(var)
    if norms and small:          # the same probe with reflect padding: do zero-padded borders carry the shift?
        archs.set_inference(model, "whole")
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and max(m.padding) > 0]
        for m in convs:
            m.padding_mode = "reflect"
        for ds, items in small.items():
            for n in (train_extent, None):
                add("padding", f"reflect padding, {f'{n}-px tiles' if n else 'whole image'}", n or 0, "whole", ds,
                    _score(model, items, scale, n))
        for m in convs:
            m.padding_mode = "zeros"
    for mode in modes:
        archs.set_inference(model, mode)
        for ds, items in small.items():
            g = gate_shift(model, items, train_extent)
            if not np.isnan(g):
                rows.append(dict(generator=name, probe="gates", setting=f"max |gate(whole) - mean gate({train_extent}"
                                 f"-px tiles)|", extent=train_extent, inference=mode, dataset=ds,
                                 images=len(items), psnr=g))
    return pd.DataFrame(rows, columns=COLUMNS)


def plot(table, path=None):
    """Mean offset (R, G, B) and PSNR against the tile extent, per generator, dataset and inference mode;
    the whole image at the right of each panel."""
    import matplotlib.pyplot as plt
    sweep = table[table.probe == "sweep"]
    gens, sets = list(dict.fromkeys(sweep.generator)), list(dict.fromkeys(sweep.dataset))
    fig, axes = plt.subplots(2, len(sets), figsize=(4.6 * len(sets), 7.5), squeeze=False)
    # colour per generator, line per mode; later generators get larger hollow markers, so that lines which
    # coincide (the attention model and the PSNR baseline) stay visible
    markers = ("o", "s", "D", "^", "v")
    for j, ds in enumerate(sets):
        for g, gen in enumerate(gens):
            colour = f"C{g}"
            for mode, style in (("whole", "-"), ("calibrated", "--")):
                d = sweep[(sweep.generator == gen) & (sweep.dataset == ds) & (sweep.inference == mode)]
                if d.empty:
                    continue
                tiles, whole = d[d.extent > 0].sort_values("extent"), d[d.extent == 0]
                xs = list(tiles.extent) + [tiles.extent.max() * 1.6]
                norms = "whole" in set(sweep[sweep.generator == gen].inference)   # one mode: no GroupNorm
                label = (f"{gen}, {'own statistics' if mode == 'whole' else 'calibrated'}" if norms
                         else f"{gen} (no GroupNorm: one mode)")
                offset = (pd.concat([tiles, whole]))[["offset_r", "offset_g", "offset_b"]].mean(1)
                kw = dict(color=colour, marker=markers[g % len(markers)], ms=3 + 2.5 * g,
                          mfc=colour if g == 0 else "none", label=label)
                axes[0, j].plot(xs, offset, style, **kw)
                axes[1, j].plot(xs, list(tiles.psnr) + list(whole.psnr), style, **kw)
        for i, ylabel in enumerate(("mean offset SR - HR (levels of 255, mean of R, G, B)", "PSNR (dB, Y, border 4)")):
            ax = axes[i, j]
            ax.set_xscale("log", base=2)
            ticks = sorted(set(sweep[(sweep.dataset == ds) & (sweep.extent > 0)].extent))
            ax.set_xticks(ticks + [max(ticks) * 1.6], [str(t) for t in ticks] + ["whole"])
            ax.minorticks_off()
            ax.set_xlabel("tile extent (LR px)")
            ax.set_ylabel(ylabel, fontsize=8)
            ax.set_title(ds, fontsize=10)
            if i == 0:
                ax.axhline(0, color="gray", lw=0.8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    if path:
        from pathlib import Path
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
