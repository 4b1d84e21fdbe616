"""The study's figures: training curves, Figures 1 and 4, per-image distributions, perception-distortion, the
ablation's forest plot and per-seed curves. Each draws from files of results/ or a run (never from numbers
typed here) and returns its matplotlib figure; ``path`` saves it."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import LABELS, from_saved
from .data import BENCHMARKS, load_eval_set, resolve_datasets
from .evaluate import bicubic
from .infer import GENERATOR_FILE, load_generator, upscale_array
from .io import atomic_write
from .metrics import to_uint8
from .report import default_inference, run_dirs


def _save(fig, path):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight",
                                             metadata={"Software": None}))
    return path


def plot_samples(dataset, root=None, n=3, path=None):
    """HR / LR (x4, MATLAB bicubic) pairs of the first ``n`` images of a dataset."""
    import matplotlib.pyplot as plt
    items = load_eval_set(dataset, root, 4)[:n]
    fig, axes = plt.subplots(2, len(items), figsize=(3 * len(items), 6), squeeze=False)
    for j, it in enumerate(items):
        axes[0, j].imshow(it.hr)
        axes[0, j].set_title(f"{it.name} HR {it.hr.shape[1]}x{it.hr.shape[0]}", fontsize=9)
        axes[1, j].imshow(it.lr, interpolation="nearest")
        axes[1, j].set_title(f"LR x1/4 {it.lr.shape[1]}x{it.lr.shape[0]}", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    if path:
        _save(fig, path)
    return fig


# the panels of plot_history: columns, title, y label, kind. 'interval': the mean over the steps since the
# previous row of metrics.csv (losses, D's outputs), drawn as a bar over that interval; 'point': measured at
# the row's step. {tune} and {val} are the runs' held-out and validation sets (from meta.json).
HISTORY_PANELS = (
    (("g_loss",), "Generator loss (L1 in the warm-up, then the model's)", "loss, mean over each interval",
     "interval"),
    (("d_loss",), "Discriminator loss", "loss, mean over each interval", "interval"),
    (("d_score", "g_score"), "D's output: D(x) solid, D(G(z)) dashed", "mean D output (0 to 1)", "interval"),
    (("share_adversarial",), "Adversarial term's share of G's gradient", "share of the norm (fixed batch)", "point"),
    (("tune_psnr",), "Held-out split {tune}", "PSNR (dB, standard protocol)", "point"),
    (("psnr",), "Validation set {val}", "PSNR (dB, standard protocol)", "point"),
)


def plot_history(csv_paths, path=None):
    """Training curves from runs' metrics.csv ({label: path}; a model name as label is shown as its
    :data:`LABELS` entry): the panels of :data:`HISTORY_PANELS` that hold data in some run, against the
    generator step. A loss or D output is the mean over the steps since the previous row, so it is drawn as
    a bar spanning them with a marker at the step it was written; a validation score is a marker at its
    step. The validation sets are named from each run's meta.json; a dotted line ends the L1 warm-up."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    runs = {LABELS.get(label, label): pd.read_csv(p).sort_values("step") for label, p in csv_paths.items()}
    sets = {"val": [], "tune": []}
    for p in csv_paths.values():
        meta = Path(p).parent / "meta.json"
        cfg = from_saved(json.loads(meta.read_text())["config"]) if meta.exists() else None
        for key in sets:
            name = getattr(cfg, f"{key}_set", None)
            if name and name not in sets[key]:
                sets[key].append(name)
    names = {k: ", ".join(v) or "(unnamed)" for k, v in sets.items()}
    panels = [pnl for pnl in HISTORY_PANELS if any(c in df and df[c].notna().any() for df in runs.values()
                                                  for c in pnl[0])]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.5 * rows), squeeze=False)
    styles = method_styles(runs)
    for ax, (columns, title, ylabel, kind) in zip(axes.ravel(), panels):
        for label, df in runs.items():
            colour, marker, _ = styles[label]
            start = np.r_[0, df["step"].to_numpy()[:-1]]       # each row's interval: (previous step, step]
            for col, ls in zip(columns, ("-", "--")):
                ok = df[col].notna().to_numpy() if col in df else np.zeros(len(df), bool)
                x, y = df["step"].to_numpy()[ok], df[col].to_numpy()[ok]
                if kind == "interval":
                    ax.hlines(y, start[ok], x, colors=colour, linestyles=ls, lw=1.6)
                    ax.plot(x, y, ls="none", marker=marker, ms=5, mfc="none", color=colour)
                else:
                    ax.plot(x, y, ls=ls, lw=1, marker=marker, ms=5, mfc="none", color=colour)
            warm = df.loc[df["phase"] == "warmup", "step"].max()
            if pd.notna(warm):
                ax.axvline(warm, color="gray", lw=0.8, ls=":")
        if columns == ("share_adversarial",):
            ax.set_yscale("log")
        else:
            ax.ticklabel_format(axis="y", useOffset=False)      # values as they are, not offsets from one
        ax.set(title=title.format(**names), xlabel="generator step", ylabel=ylabel)
        ax.title.set_fontsize(10)
    for ax in axes.ravel()[len(panels):]:
        ax.remove()
    handles = [Line2D([], [], color=c, marker=m, mfc="none", label=k) for k, (c, m, _) in styles.items()]
    fig.suptitle("Training record (metrics.csv); dotted line: end of the L1 warm-up", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    if path:
        _save(fig, path)
    return fig


def _zoom_box(hr, size):
    """Top-left corner of the ``size`` window with the most detail (gradient energy), on a coarse grid."""
    gray = hr.astype(float).mean(2)
    g = np.abs(np.diff(gray, axis=0))[:, :-1] + np.abs(np.diff(gray, axis=1))[:-1]
    h, w = g.shape
    best, box = -1, (0, 0)
    for y in range(0, max(1, h - size), max(1, size // 4)):
        for x in range(0, max(1, w - size), max(1, size // 4)):
            e = g[y: y + size, x: x + size].sum()
            if e > best:
                best, box = e, (y, x)
    return box


def _outputs(item, models):
    outs = {"Bicubic": bicubic(item.lr, 4)}
    for label, model in models.items():
        outs[label] = to_uint8(upscale_array(model, item.lr, 4))
    outs["HR"] = item.hr
    return outs


def figure_comparison(runs_dir, images, root=None, path=None, zoom=None):
    """Figure 1 style: for each (dataset, image), bicubic / SRGAN / attention / HR with a zoomed crop."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle
    models = {LABELS[m]: load_generator(d / GENERATOR_FILE)[0] for m, d in run_dirs(runs_dir).items()
              if m in ("srgan", "attention")}
    items = [_find(ds, name, root) for ds, name in images]
    cols = len(models) + 2
    fig, axes = plt.subplots(2 * len(items), cols, figsize=(3.2 * cols, 6.4 * len(items)), squeeze=False)
    for i, it in enumerate(items):
        size = zoom or max(32, min(it.hr.shape[:2]) // 4)
        y, x = _zoom_box(it.hr, size)
        for j, (label, img) in enumerate(_outputs(it, models).items()):
            axes[2 * i, j].imshow(img)
            axes[2 * i, j].add_patch(Rectangle((x, y), size, size, fill=False, color="red", lw=1.5))
            axes[2 * i, j].set_title(label, fontsize=10)
            axes[2 * i + 1, j].imshow(img[y: y + size, x: x + size], interpolation="nearest")
            axes[2 * i + 1, j].set_title(f"{it.name}: zoom", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    if path:
        _save(fig, path)
    return fig


def figure_pairs(runs_dir, images, root=None, path=None):
    """Figure 4 style: bicubic, SRGAN, the attention model and HR side by side for each (dataset, image)."""
    import matplotlib.pyplot as plt
    dirs = run_dirs(runs_dir)
    models = {LABELS[m]: load_generator(dirs[m] / GENERATOR_FILE)[0] for m in ("srgan", "attention") if m in dirs}
    items = [_find(ds, name, root) for ds, name in images]
    cols = ["Bicubic", *models, "HR"]
    fig, axes = plt.subplots(len(items), len(cols), figsize=(3.2 * len(cols), 3.4 * len(items)), squeeze=False)
    for i, it in enumerate(items):
        outs = _outputs(it, models)
        for j, label in enumerate(cols):
            axes[i, j].imshow(outs[label])
            axes[i, j].set_title(f"{label}: {it.name}", fontsize=10)
            axes[i, j].axis("off")
    fig.tight_layout()
    if path:
        _save(fig, path)
    return fig


def _find(dataset, name, root):
    dataset = resolve_datasets([dataset], root)[0]
    items = load_eval_set(dataset, root, 4)
    for it in items:
        if it.name == name:
            return it
    if dataset == "demo":          # the smoke fallback: any demo image stands in
        return items[0]
    raise KeyError(f"image {name!r} not in {dataset} ({', '.join(it.name for it in items)})")


def plot_distributions(per_image, path=None, protocol="standard", reference="Bicubic"):
    """Paired per-image differences: for every method, each image's PSNR (dB) and SSIM minus the
    ``reference``'s (bicubic) on the same image, per dataset (``protocol``, default inference). Each image
    is a dot, the mean over a dataset's images a black bar, and the zero line is no gain over bicubic."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    df = default_inference(per_image)
    df = df[df.protocol == protocol].set_index(["dataset", "image"])
    ref = df[df.method == reference]
    if ref.empty:
        raise ValueError(f"no {reference!r} rows in the {protocol} protocol: nothing to pair with")
    methods = [m for m in dict.fromkeys(df.method) if m != reference]
    datasets = list(dict.fromkeys(ref.index.get_level_values("dataset")))
    styles, width = method_styles(methods), 0.8 / max(1, len(methods))
    rng = np.random.default_rng(0)             # the dots' horizontal jitter: the same figure every time
    fig, axes = plt.subplots(2, 1, figsize=(max(6.0, 2.4 * len(datasets)), 8.0))
    for ax, (k, unit) in zip(axes, (("psnr", " (dB)"), ("ssim", ""))):
        for j, m in enumerate(methods):
            diff = (df.loc[df.method == m, k] - ref[k]).dropna()
            for i, ds in enumerate(datasets):
                d = diff[diff.index.get_level_values("dataset") == ds].to_numpy()
                x = i + (j - (len(methods) - 1) / 2) * width
                ax.scatter(x + rng.uniform(-0.3, 0.3, len(d)) * width, d, s=10, color=styles[m][0], alpha=0.6,
                           lw=0)
                if len(d):
                    ax.hlines(d.mean(), x - 0.4 * width, x + 0.4 * width, color="black", lw=2)
        ax.axhline(0, color="gray", lw=1, ls="--")
        n = ref.groupby(level="dataset").size()
        ax.set_xticks(range(len(datasets)), [f"{ds}\n({n[ds]} images)" for ds in datasets])
        ax.set(ylabel=f"{k.upper()} minus bicubic's{unit}",
               title=f"{k.upper()} gain over bicubic per image ({protocol} protocol)")
        ax.title.set_fontsize(10)
    handles = [Line2D([], [], ls="", marker="o", color=styles[m][0], label=m) for m in methods]
    handles.append(Line2D([], [], color="black", lw=2, label="mean over the images"))
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=9, frameon=False)
    if path:
        _save(fig, path)
    return fig


# one fixed look per method in every panel (Okabe-Ito colours; hollow markers of decreasing size, so that
# coinciding methods stay visible as concentric shapes); methods not listed take the colorblind palette
METHOD_STYLE = {LABELS["bicubic"]: ("#000000", "s", 150), LABELS["srgan"]: ("#D55E00", "o", 120),
                LABELS["attention"]: ("#0072B2", "D", 80), LABELS["psnr"]: ("#009E73", "^", 45)}


PD_MEASURES = {"niqe_live": "NIQE (LIVE model) ↓ more natural", "stlpips_alex": "ST-LPIPS (AlexNet) ↓ closer",
               "niqe_srlib": "NIQE (srlib's fit) ↓ more natural"}


def method_styles(methods):
    """{method: (colour, marker, size)}: :data:`METHOD_STYLE`, then distinct colours and markers for the rest."""
    import seaborn as sns
    extra = iter(zip(sns.color_palette("colorblind")[4:] + sns.color_palette("dark"), "vPX*hp<>" * 3,
                     [100] * 30))
    return {m: METHOD_STYLE.get(m) or next(extra) for m in dict.fromkeys(methods)}


def plot_perception_distortion(table, path=None, perception=("niqe_live", "stlpips_alex")):
    """Blau and Michaeli's perception-distortion plane, one row per measure in ``perception`` (default the
    published NIQE and ST-LPIPS) and one column per benchmark: each method (and bicubic) at its mean PSNR
    (distortion; right is better) and its mean score on the measure (down is better), from
    :func:`write_perceptual`'s table (an older table's 'niqe' is read as 'niqe_srlib'). HR's own value is the
    dashed line (for NIQE, what real photographs score; for ST-LPIPS, 0). Every method has one colour and
    hollow marker in every panel (:func:`method_styles`), the legend sits below the panels, off the data; a
    measure the table lacks (e.g. ST-LPIPS without its package) gives a panel that says so. Axes per panel."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from .perceptual import current_names
    table = current_names(table)
    perception = [perception] if isinstance(perception, str) else list(perception)
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(len(perception), len(datasets), figsize=(3.6 * len(datasets), 3.3 * len(perception)),
                             squeeze=False)
    models = table[table["method"] != "HR"]
    styles = method_styles(models["method"])
    for row, measure in zip(axes, perception):
        for ax, ds in zip(row, datasets):
            sub = models[models["dataset"] == ds]
            ylabel = PD_MEASURES.get(measure, f"{measure.upper()} ↓")
            ax.set(title=ds, xlabel="PSNR (dB, standard) → less distortion", ylabel=ylabel)
            if measure not in sub or sub[measure].isna().all():
                ax.text(0.5, 0.5, f"{measure}: not computed", ha="center", va="center", transform=ax.transAxes,
                        color="gray")
                continue
            for method, (colour, marker, size) in styles.items():
                r = sub[sub["method"] == method]
                ax.scatter(r["psnr"], r[measure], s=size, marker=marker, facecolors="none", edgecolors=colour,
                           linewidths=1.8, label=method, zorder=3)
            hr = table[(table["dataset"] == ds) & (table["method"] == "HR")][measure]
            if len(hr) and hr.notna().all():
                ax.axhline(float(hr.iloc[0]), ls="--", c="gray", lw=1)
                ax.annotate("HR", (0.01, float(hr.iloc[0])), xycoords=("axes fraction", "data"), va="bottom",
                            color="gray", fontsize=8)
            ax.margins(0.15)
    handles = [Line2D([], [], ls="", marker=m, markersize=8, markerfacecolor="none", markeredgecolor=c,
                      markeredgewidth=1.8, label=k) for k, (c, m, _) in styles.items()]
    fig.suptitle("Perception-distortion plane (x4)", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if path:
        _save(fig, path)
    return fig


# ------------------------------------------------------------------------------------------ the ablation


def plot_forest(table, metric="psnr", path=None, alpha=0.05):
    """Forest plot of :func:`analyze`'s table: each comparison's mean difference and interval, one panel per
    dataset (pooled first, then Table 1's order), all on one x-range; the primary endpoint in red; a filled
    marker where the comparison's Holm-adjusted p (the primary: its own p) is below ``alpha``, hollow
    otherwise. Differences are variant minus reference."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    sub = table[table["metric"] == metric]
    present = set(sub["dataset"])
    others = sorted(present - set(BENCHMARKS) - {"pooled"})
    datasets = [d for d in ["pooled", *BENCHMARKS, *others] if d in present]
    comps = list(dict.fromkeys(sub["comparison"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(3.2 * len(datasets) + 2.5, 0.45 * len(comps) + 2.0),
                             sharey=True, sharex=True, squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        d = sub[sub["dataset"] == ds].set_index("comparison").reindex(comps)
        y = np.arange(len(comps))[::-1]
        for yi, (_, r) in zip(y, d.iterrows()):
            if pd.isna(r["mean"]):
                continue
            primary = r["primary"] in (True, 1)        # bool or numpy bool
            color = "tab:red" if primary else "tab:blue"
            p = r["p"] if primary else r["p_holm"]
            ax.errorbar(r["mean"], yi, xerr=[[r["mean"] - r["ci_low"]], [r["ci_high"] - r["mean"]]], fmt="o",
                        color=color, ms=5, capsize=3, mfc=color if p < alpha else "white")
        ax.axvline(0, color="gray", lw=1, ls="--")
        ax.set_title(ds, fontsize=10)
        ax.set_xlabel(f"{metric.upper()} difference" + (" (dB)" if metric == "psnr" else ""))
        ax.set_yticks(y, comps, fontsize=8)
    n = int(sub["seeds"].max()) if len(sub) else 0
    fig.suptitle(f"Ablation: variant - reference, mean and 95% t interval over {n} seeds", fontsize=10)
    handles = [Line2D([], [], color="tab:red", marker="o", ls="", label="primary endpoint"),
               Line2D([], [], color="tab:blue", marker="o", ls="", label=f"exploratory, Holm-adjusted p < {alpha:g}"),
               Line2D([], [], color="tab:blue", marker="o", mfc="white", ls="",
                      label=f"exploratory, Holm-adjusted p >= {alpha:g}")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


def plot_seed_curves(grid, runs_dir, path=None, column="tune_psnr", bicubic=None, records=None):
    """Validation curves of every run (held-out PSNR by default) against the step, one panel per variant, one
    line per seed; shared warm-up rows included, so every run's curve starts at step 0's first validation. A
    dotted line ends the shared warm-up; ``bicubic``: bicubic's score on the same split, drawn as a line."""
    import matplotlib.pyplot as plt
    from .ablation import run_folder, runnable
    names = runnable(grid)
    cols = min(5, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows + 0.6), sharex=True, sharey=True,
                             squeeze=False)
    warm = grid.get("common", {}).get("warmup_steps")
    for ax, name in zip(axes.ravel(), names):
        for seed in grid["seeds"]:
            csv = run_folder(runs_dir, seed, name, records) / "metrics.csv"
            if csv.exists():
                df = pd.read_csv(csv)
                if column in df:
                    ax.plot(df["step"], df[column], marker=".", lw=1, label=f"seed {seed}")
        if bicubic is not None:
            ax.axhline(bicubic, color="black", lw=1, ls="--", label="bicubic")
        if warm:
            ax.axvline(warm, color="gray", lw=1, ls=":", label="end of the shared warm-up")
        ax.set_title(name, fontsize=9)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(7, len(labels)), fontsize=7, frameon=False)
    tune = grid.get("common", {}).get("tune_set", "the held-out split")
    fig.supylabel(f"PSNR on {tune} (dB, standard protocol)" if column == "tune_psnr" else column)
    fig.supxlabel("generator step")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
