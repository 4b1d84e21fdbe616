"""The study as the notebooks run it: environment report, runs, Table 1, figures.

Notebooks stay thin and call these functions; everything here is reachable from tests.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import reference
from .config import LABELS, MODELS, from_saved  # noqa: F401  (study.LABELS: the registry's)
from .data import BENCHMARKS, available, data_root, hr_files, load_eval_set, resolve_datasets
from .data import project_path  # noqa: F401  (the notebooks call study.project_path)
from .evaluate import bicubic, evaluate, summarize, write_csv
from .infer import GENERATOR_FILE, load_generator, upscale_array
from .io import atomic_write
from .lock import LOCK_NAME
from .metrics import to_uint8

RUN_MODELS = MODELS     # the registered models (srlib.config.register_model); iterating gives their names


def environment_report(root=None):
    """Library versions, the device and the data root, one line each (:func:`srlib.environment.report`)."""
    from . import environment
    return environment.report(environment.record(), data_root(root))


def dataset_summary(names, root=None):
    """Which datasets are found under the data root, with their image counts."""
    rows = []
    found = set(available(names, root))
    for n in names:
        rows.append(dict(dataset=n, found=n in found, images=len(hr_files(n, root)) if n in found else 0))
    return pd.DataFrame(rows)


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


def train_run(model, profile, runs_dir, data_root=None, seed=0, overrides=None, force=False, run_name=None):
    """Train (or reuse) one model of the study in ``runs_dir/<run_name or model>``; the L1 warm-up is shared
    per architecture through ``runs_dir/warmup``. Returns (config, run folder, meta)."""
    from .config import make_config
    from .train import train
    overrides = dict(overrides or {})
    overrides.setdefault("warmup_dir", str(Path(runs_dir) / "warmup"))
    cfg = make_config(model, profile, seed=seed, data_root=data_root, **overrides)
    run_dir = Path(runs_dir) / (run_name or model)
    return cfg, run_dir, train(cfg, run_dir, force=force)


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


def default_inference(df):
    """The rows of a score table under the default inference (without the 'whole' rows kept for the record)."""
    return df[df["inference"] != "whole"] if "inference" in df.columns else df


def run_dirs(runs_dir):
    """{model: folder} of the training runs that exist in ``runs_dir``."""
    return {m: Path(runs_dir) / m for m in MODELS if (Path(runs_dir) / m / GENERATOR_FILE).exists()}


def benchmark(runs_dir, datasets=BENCHMARKS, root=None, results_dir="results", progress=True, perceptual=None,
              cache="cache/scores"):
    """Bicubic and every trained model on ``datasets``, both protocols.

    Writes ``table1.csv`` (means), ``per_image.csv`` and ``table1.md`` into ``results_dir``; returns
    ``(summary, per_image)``. With ``perceptual`` (:class:`srlib.perceptual.Perceptual`) per_image.csv gains
    its measures as columns and ``perceptual.csv`` / ``perceptual.md`` are written (:func:`write_perceptual`).
    ``cache`` (under the repository, None: none): per-image scores by dataset, reused when generator, images,
    inference and measures are the same (:func:`srlib.evaluate.evaluate`), so an interrupted run continues.
    """
    datasets = resolve_datasets(list(datasets), root)
    cache = project_path(cache) if cache else None
    frames = [evaluate("bicubic", datasets, root, label=LABELS["bicubic"], perceptual=perceptual, cache=cache)]
    for model, folder in run_dirs(runs_dir).items():
        print(f"scoring {LABELS[model]} on {', '.join(datasets)}", flush=True)
        frames.append(evaluate(str(folder / GENERATOR_FILE), datasets, root, label=LABELS[model],
                               progress=progress, perceptual=perceptual, cache=cache))
        if frames[-1]["inference"].iloc[0] == "calibrated":    # GroupNorm: also as srlib <= 0.4 scored it
            frames.append(evaluate(str(folder / GENERATOR_FILE), datasets, root, label=LABELS[model],
                                   progress=progress, inference="whole", cache=cache))
    per_image = pd.concat(frames, ignore_index=True)
    summary = summarize(per_image, ("psnr", "ssim", "offset_r", "offset_g", "offset_b"))
    results = Path(results_dir)
    write_csv(summary, results / "table1.csv")
    write_csv(per_image, results / "per_image.csv")
    write_table1_markdown(results_dir, runs_dir)
    write_model_cards(runs_dir, summary)
    if perceptual is not None:
        write_perceptual(per_image, hr_scores(datasets, root, perceptual), perceptual.notes, results)
    return summary, per_image


def write_extent(runs_dir, results_dir, datasets, detail, root=None, detail_models=("attention",)):
    """``extent.csv`` and ``figures/extent.png``: :func:`srlib.extent.probe` of every run's generator (the
    sweep on ``datasets``; the layer, calibration and gate probes on ``detail`` for ``detail_models``)."""
    from . import extent
    frames = []
    for model, folder in run_dirs(runs_dir).items():
        print(f"extent probes: {LABELS[model]}", flush=True)
        frames.append(extent.probe(folder / GENERATOR_FILE, LABELS[model], datasets, root,
                                   detail=detail if model in detail_models else None))
    table = pd.concat(frames, ignore_index=True)
    write_csv(table, Path(results_dir) / "extent.csv")
    extent.plot(table, Path(results_dir) / "figures" / "extent.png")
    return table


def hr_scores(datasets, root, perceptual):
    """The perceptual measures of the HR images themselves (against themselves: the ideal values, and
    NIQE's naturalness of real photographs), per image, labelled 'HR' with no PSNR/SSIM."""
    rows = [dict(method="HR", dataset=ds, image=it.name, protocol="standard", inference="-",
                 **perceptual(it.hr, it.hr))
            for ds in datasets for it in load_eval_set(ds, root, 4)]
    return pd.DataFrame(rows)


def write_perceptual(per_image, hr, notes, results_dir):
    """``perceptual.csv`` (per method and dataset: mean PSNR/SSIM and every perceptual measure, standard
    protocol rows, HR's own values last) and ``perceptual.md`` (the table with directions and notes)."""
    from .perceptual import COUNTS, MEASURES
    cols = ("psnr", "ssim") + MEASURES + COUNTS
    per_image = default_inference(per_image)
    std = pd.concat([per_image[per_image.protocol == "standard"], hr], ignore_index=True)
    table = summarize(std, cols).drop(columns="protocol")
    write_csv(table, Path(results_dir) / "perceptual.csv")
    md = perceptual_markdown(table, notes)
    atomic_write(Path(results_dir) / "perceptual.md", lambda f: f.write(md.encode()))
    return table


def perceptual_markdown(table, notes):
    from .perceptual import HIGHER_IS_BETTER, MEASURES
    cols = [c for c in ("psnr", "ssim") + MEASURES if c in table.columns]
    arrow = {c: "↑" if HIGHER_IS_BETTER[c] else "↓" for c in cols}
    head = "| Method | " + " | ".join(f"{c.upper()} {arrow[c]}" for c in cols) + " |\n|---|" + "---:|" * len(cols)
    out = []
    for ds, g in table.groupby("dataset", sort=False):
        rows = [f"| {r['method']} | " + " | ".join(_num(r[c], c) for c in cols) + " |" for _, r in g.iterrows()]
        n = int(g["images"].iloc[0])
        blocks = f", {g['niqe_blocks'].iloc[0]:.1f} NIQE blocks per image" if "niqe_blocks" in g else ""
        out.append(f"#### {ds} ({n} images{blocks})\n\n" + head + "\n" + "\n".join(rows) + "\n")
    lines = ["Standard protocol for PSNR/SSIM; the other measures on RGB with the same 4-pixel border shaved "
             "(srlib.perceptual). HR: the measures of the HR images themselves (NIQE of real photographs; the "
             "full-reference values are their ideal).",
             f"LPIPS: {notes.get('lpips', '?')}.",
             f"STLPIPS_ALEX: {notes.get('stlpips_alex', '?')}.",
             f"NIQE_LIVE: {notes.get('niqe_live', '?')}; 96x96 blocks of Y, 4-pixel border shaved (PIRM's protocol), "
             "blocks per image in the headings.",
             f"NIQE_SRLIB: {notes.get('niqe_srlib', notes.get('niqe', '?'))} (srlib's own fit, not the published "
             "NIQE parameters: compare its values only with each other)."]
    return "\n".join(out) + "\n" + "\n".join(f"- {x}" for x in lines) + "\n"


def _num(v, measure):
    return "–" if pd.isna(v) else f"{v:.{2 if measure in ('psnr', 'niqe', 'niqe_live', 'niqe_srlib') else 4}f}"


def sharpen(img, amount=1.5, sigma=2.0):
    """Unsharp mask of a uint8 RGB image: ``x + amount (x - blur_sigma(x))``, clipped (halos on edges)."""
    from scipy import ndimage
    x = img.astype(np.float64)
    return to_uint8(np.clip(x + amount * (x - ndimage.gaussian_filter(x, (sigma, sigma, 0))), 0, 255) / 255)


def blur(img, sigma=1.5):
    """Gaussian blur of a uint8 RGB image (sigma in pixels)."""
    from scipy import ndimage
    return to_uint8(ndimage.gaussian_filter(img.astype(np.float64), (sigma, sigma, 0)) / 255)


CONTROL_ORDER = ("HR", "L1 model", "Bicubic", "Bicubic, blurred")   # the ranking people would give


def positive_control(runs_dir, datasets, root, perceptual, model="psnr", extra=None):
    """Do the measures separate outputs that people rank differently? On ``datasets``: HR, the L1 model's
    output (``model``), the same over-sharpened (:func:`sharpen`), bicubic, bicubic blurred (:func:`blur`),
    and any ``extra`` {label: generator path} (e.g. a model with an active adversarial term). Returns
    (per-image rows, table, checks): the table has the mean PSNR/SSIM (standard protocol) and measures per
    output; ``checks`` says for each measure whether its means keep the order HR > L1 > bicubic > blurred in
    its better direction ('yes' / 'no'; '–' when missing; PSNR and SSIM from the L1 model on)."""
    from .metrics import image_scores
    from .perceptual import HIGHER_IS_BETTER, MEASURES
    gen = load_generator(run_dirs(runs_dir)[model] / GENERATOR_FILE)[0]
    extra = {k: load_generator(v)[0] for k, v in (extra or {}).items()}
    rows = []
    for ds in resolve_datasets(list(datasets), root):
        for it in load_eval_set(ds, root, 4):
            sr, bic = to_uint8(upscale_array(gen, it.lr, 4)), bicubic(it.lr, 4)
            outs = {"HR": it.hr, "L1 model": sr, "L1 model, over-sharpened": sharpen(sr), "Bicubic": bic,
                    "Bicubic, blurred": blur(bic)}
            outs.update({k: to_uint8(upscale_array(g, it.lr, 4)) for k, g in extra.items()})
            for label, out in outs.items():
                psnr, ssim = image_scores(out, it.hr, 4, it.gray, ("standard",))["standard"] \
                    if label != "HR" else (np.nan, np.nan)
                rows.append(dict(output=label, dataset=ds, image=it.name, psnr=psnr, ssim=ssim,
                                 **perceptual(out, it.hr)))
    per_image = pd.DataFrame(rows)
    cols = ["psnr", "ssim", *MEASURES]
    table = per_image.groupby("output", sort=False)[cols].mean()
    checks = {}
    for c in cols:
        v = table.loc[list(CONTROL_ORDER[1:] if c in ("psnr", "ssim") else CONTROL_ORDER), c]
        v = v if HIGHER_IS_BETTER[c] else -v
        checks[c] = "–" if v.isna().any() else ("yes" if (np.diff(v.to_numpy()) < 0).all() else "no")
    return per_image, table.reset_index(), checks


def control_markdown(table, checks, notes):
    """The positive-control table as markdown, with the ranking check as its last row."""
    cols = [c for c in checks]
    head = "| Output | " + " | ".join(c.upper() for c in cols) + " |\n|---|" + "---:|" * len(cols)
    rows = [f"| {r['output']} | " + " | ".join(_num(r[c], c) for c in cols) + " |" for _, r in table.iterrows()]
    rows.append("| *ranks HR > L1 > bicubic > blurred* | " + " | ".join(checks[c] for c in cols) + " |")
    return head + "\n" + "\n".join(rows) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"


LIMITS = ("Handles bicubic x4 degradation only (MATLAB-style bicubic downscaling of a clean image): real "
          "camera photos (sensor noise, blur, JPEG) are outside what it learned and come out poorly.",
          "Trained for a small CPU budget (see steps), far below the paper's 100 epochs of DIV2K; scores are "
          "those of this budget.",
          "One seed: a difference to another model of a few tenths of a dB is not evidence by itself.")


def provenance(meta):
    """What a run's meta.json records of where it came from: the srlib commit it trained at (and whether
    tracked files differed from it) and the sha256 of the pixels of its training, validation and held-out
    sets; for a run that predates these records, that they were not recorded (and what was added later)."""
    if "git" not in meta:
        text = "not recorded: this run predates provenance records (its meta.json holds no commit and no data hashes)."
        if meta.get("provenance_note"):      # calibrated after training (srlib.calibration.calibrate_run)
            sha, git = meta.get("data", {}).get("train", {}).get("sha256"), meta.get("calibration", {}).get("git")
            text += f" Recorded later, at its calibration (srlib commit {git}): its training pixels' sha256 {sha}."
        return text
    git = meta["git"]
    commit = ("srlib commit not recorded (not run from a git checkout)" if not git else
              f"srlib commit {git.split('+')[0]} ("
              + ("tracked files differed from it" if git.endswith("+dirty") else "clean tree") + ")")
    sets = []
    for key, what in (("train", "training data"), ("val", "validation set"), ("tune", "held-out split")):
        d = meta.get("data", {}).get(key) or {}
        if d.get("sha256"):
            name = ", ".join(d["sets"]) if "sets" in d else d.get("set")
            listed = d.get("listed", d["images"])
            n = f"{d['images']} images" + (f" used of {listed} listed" if listed != d["images"] else "")
            sets.append(f"{what} {name} ({n}) {d['sha256']}")
    return commit + "; sha256 of the pixels: " + ("; ".join(sets) or "none recorded") + "."


def inference_note(cal):
    """The model card's inference line for a calibrated generator (``cal``: meta.json's 'calibration')."""
    return (f"GroupNorm with statistics calibrated at the training extent ({cal['crops']} LR crops of "
            f"{cal['lr_extent']} px from {', '.join(cal['source'])}; srlib.calibration), stored in the file, so "
            "its colours no longer shift with the image's extent (results/extent.csv; channel attention still "
            "pools over the whole image).")


def model_card(run_dir, summary):
    """Markdown model card of one trained run: data, steps, recipe, scores (from ``summary``), limits."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    cfg = from_saved(meta["config"])
    model = cfg.model
    label = LABELS[model]
    hist = pd.read_csv(run_dir / "metrics.csv")
    shared = hist[hist.shared.notna() & (hist.shared != "")]
    warm = int(shared.step.max()) if len(shared) else cfg.warmup_steps
    lines = [f"# {label}: x4 super-resolution generator (srlib)", "",
             f"- File: `{GENERATOR_FILE}` ({meta['generator']['arch']} generator, {meta['parameters_G']:,} "
             f"parameters; the sha256 of its tensors is in its metadata and checked on load).",
             f"- Load: `srlib.load_upscaler('{run_dir.name}/{GENERATOR_FILE}')`, or `python -m srlib upscale "
             f"IMAGE --checkpoint ...`.",
             f"- Data: {', '.join(cfg.train_sets)} ({meta.get('train_images', '?')} images), HR crops of "
             f"{cfg.crop} px, batch {cfg.batch_size}, LR by {cfg.degradation} bicubic x{cfg.scale}.",
             f"- Steps: {meta['steps_done']} generator steps: {warm} L1 warm-up "
             + ("(shared with the other runs of this architecture), " if len(shared) else "")
             + f"then {meta['steps_done'] - warm} of its own loss ({'L1' if cfg.loss == 'l1' else 'the GAN loss'}).",
             f"- Recipe: Adam betas {cfg.betas}; warm-up lr {cfg.lr_warmup:g}, then G {cfg.lr_g:g}"
             + (f" and D {cfg.lr_d:g}" if cfg.loss != "l1" else "") + f", {cfg.schedule} per phase; EMA "
             f"{meta.get('ema', 'off')}; precision {meta['precision']} on {meta.get('cpu', '?')}; seed {cfg.seed}.",
             "- Loss: " + {"l1": "L1.", "paper": "L1 + 1e-3 mean(1 - D(G(z))) (the paper's).",
                           "srgan": f"MSE + 1e-3 mean(1 - D(G(z))) + 2e-8 TV; VGG16 term: {meta['vgg']}."}[cfg.loss],
             f"- Provenance: {provenance(meta)}",
             "- Inference: " + (inference_note(meta["calibration"]) if meta.get("calibration") else
                                "no GroupNorm (BatchNorm with running statistics): its normalization does not "
                                "depend on the image's extent."), "",
             "## Scores (x4; PSNR dB / SSIM, default inference, from table1.csv)", "",
             "| dataset | standard (Y, border 4) | paper (RGB, whole image) |", "|---|---|---|"]
    mine = default_inference(summary)
    mine = mine[mine.method == label].set_index(["dataset", "protocol"])
    for ds in dict.fromkeys(summary.dataset):
        cells = [f"{mine.psnr[(ds, p)]:.2f} / {mine.ssim[(ds, p)]:.4f}" if (ds, p) in mine.index else "–"
                 for p in ("standard", "paper")]
        lines.append(f"| {ds} | {cells[0]} | {cells[1]} |")
    lines += ["", "## Limits", ""] + [f"- {x}" for x in LIMITS]
    if cfg.loss == "srgan" and str(meta["vgg"]).startswith(("dropped", "random")):
        lines.append("- Its perceptual (VGG16) term was not Ledig's: ImageNet VGG16 weights were unavailable.")
    return "\n".join(lines) + "\n"


def write_model_cards(runs_dir, summary):
    """``README.md`` (model card) in every run folder of ``runs_dir``."""
    for _, d in run_dirs(runs_dir).items():
        card = model_card(d, summary)
        atomic_write(d / "README.md", lambda f, card=card: f.write(card.encode()))


def redraw_runs(runs_dir, results_dir):
    """Each run's ``curves.png`` (:func:`plot_history`) and model card (``README.md``, with the scores of
    ``results_dir``'s table1.csv) drawn again from the files they show: notebook 04 calls it, so a change to
    either needs no retraining and no re-scoring. Returns {model: run folder}."""
    import matplotlib.pyplot as plt
    runs = run_dirs(runs_dir)
    for model, folder in runs.items():
        plt.close(plot_history({model: folder / "metrics.csv"}, path=folder / "curves.png"))
    table = Path(results_dir) / "table1.csv"
    if table.exists():
        write_model_cards(runs_dir, pd.read_csv(table))
    return runs


def write_table1_markdown(results_dir, runs_dir):
    """``table1.md`` from ``table1.csv`` and the runs' records (so the markdown never disagrees with them)."""
    runs = {LABELS[m]: d for m, d in run_dirs(runs_dir).items()}
    vgg = {label: json.loads((d / "meta.json").read_text()).get("vgg", "?") for label, d in runs.items()}
    md = table1_markdown(pd.read_csv(Path(results_dir) / "table1.csv"), vgg,
                         {label: loss_accounting(d) for label, d in runs.items()})
    return atomic_write(Path(results_dir) / "table1.md", lambda f: f.write(md.encode()))


def loss_accounting(run_dir):
    """What each loss term did in a run's main phase, from its metrics.csv: for each term present, its
    share of the generator's gradient norm (on the fixed batch) at the first and the last validation of
    the phase, and the final mean D(G(z)). {} for a run without a discriminator."""
    df = pd.read_csv(Path(run_dir) / "metrics.csv")
    gan = df[df.phase == "gan"]
    if gan.empty:
        return {}
    out = {"g_score": float(gan.g_score.iloc[-1])}
    for term in ("pixel", "adversarial", "perceptual", "tv"):
        col = gan[f"share_{term}"]
        if col.notna().any():
            out[term] = (float(col.iloc[0]), float(col.iloc[-1]))
    return out


def _cell(v, published=False):
    """'PSNR / SSIM'; published SSIMs keep the precision their source gave (0.83 stays 0.83)."""
    if not v:
        return "–"
    return f"{v[0]:.2f} / {v[1]:g}" if published else f"{v[0]:.2f} / {v[1]:.4f}"


def table1_markdown(summary, vgg=None, accounting=None):
    """Markdown tables: ours beside the paper's Table 1 (paper protocol) and beside the published
    anchors (standard protocol). Every 'ours' value comes from the summary (table1.csv)."""
    datasets = list(dict.fromkeys(summary["dataset"]))
    head = "| Method | " + " | ".join(datasets) + " |\n|---|" + "---|" * len(datasets) + "\n"
    whole = summary[summary["inference"] == "whole"] if "inference" in summary else summary.iloc[:0]
    summary = default_inference(summary)
    out = []
    for protocol, title, published in (
            ("paper", "Paper protocol (RGB in [0, 1], whole image): ours beside Wu's Table 1", reference.PAPER_TABLE1),
            ("standard", "Standard protocol (Y, 4-pixel border shaved): ours beside published anchors",
             reference.PUBLISHED_STANDARD)):
        rows = []
        sub = summary[summary.protocol == protocol]
        for method in dict.fromkeys(sub["method"]):
            m = sub[sub.method == method].set_index("dataset")
            rows.append(f"| {method} | " + " | ".join(_cell((m.psnr[d], m.ssim[d])) if d in m.index else "–"
                                                     for d in datasets) + " |")
        for name, vals in published.items():
            rows.append(f"| *{name}* | " + " | ".join(_cell(vals.get(d), True) for d in datasets) + " |")
        out.append(f"### {title}\n\nPSNR (dB) / SSIM, x4.\n\n" + head + "\n".join(rows) + "\n")
    if len(whole):
        rows = []
        for source in (summary, whole):
            sub = source[(source.protocol == "standard") & source.method.isin(set(whole.method))]
            for method in dict.fromkeys(sub["method"]):
                m = sub[sub.method == method].set_index("dataset")
                tag = "whole-image" if source is whole else "calibrated (default)"
                rows.append(f"| {method} | {tag} | " + " | ".join(
                    f"{m.psnr[d]:.2f} / {m.ssim[d]:.4f} / {m.offset_r[d]:+.1f} {m.offset_g[d]:+.1f} "
                    f"{m.offset_b[d]:+.1f}" if d in m.index else "–" for d in datasets) + " |")
        out.append("### Inference modes (standard protocol)\n\nPSNR (dB) / SSIM / mean offset SR - HR in 8-bit "
                   "levels (R G B), x4. Calibrated: GroupNorm with statistics stored at the training extent (the "
                   "default everywhere); whole-image: GroupNorm with each image's own statistics, how srlib <= 0.4 "
                   "scored (results/extent.csv shows why it shifts the colours).\n\n"
                   "| Method | Inference | " + " | ".join(datasets) + " |\n|---|---|" + "---|" * len(datasets)
                   + "\n" + "\n".join(rows) + "\n")
    notes = ["Ours: mean over images of per_image.csv (table1.csv holds the means with image counts), under the "
             "default inference (GroupNorm calibrated at the training extent).",
             "LPIPS and the other perceptual measures: perceptual.md (LPIPS needs ImageNet AlexNet weights; "
             "where they are absent its column says why)."]
    for method, source in (vgg or {}).items():
        if source.startswith("dropped"):
            notes.append(f"{method}: trained WITHOUT the perceptual (VGG16) term: {source.split(': ', 1)[1]} "
                         f"(ImageNet weights cannot be downloaded here). Its loss was MSE + 1e-3 adversarial + "
                         f"2e-8 TV, so it is not Ledig's SRGAN loss.")
        elif source != "not used":
            notes.append(f"{method}: VGG16 of the perceptual loss: {source}"
                         + (" (ImageNet weights unavailable: NOT the SRGAN perceptual loss)"
                            if "random" in source else ""))
    for method, acc in (accounting or {}).items():
        terms = [f"{t} {a:.2g} -> {b:.2g}" for t, (a, b) in
                 ((t, acc[t]) for t in ("pixel", "adversarial", "perceptual", "tv") if t in acc)]
        if terms:
            notes.append(f"{method}: share of the generator's gradient norm per loss term (fixed batch, first -> "
                         f"last validation of the GAN phase): {', '.join(terms)}; final mean D(G(z)) "
                         f"{acc['g_score']:.3g}. A share near 0 means the term barely steered training.")
    if "demo" in datasets:
        out.insert(0, "**DEMO DATA: these numbers mean nothing.** The scikit-image sample images stand in for the "
                      "benchmarks so that the pipeline can run without a download; tiny models, seconds of "
                      "training.\n")
    return "\n".join(out) + "\n" + "\n".join(f"- {n}" for n in notes) + "\n"


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


def record(path, **numbers):
    """Write key numbers of a notebook run to JSON (tests compare them with pytest.approx)."""
    clean = {k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v) for k, v in numbers.items()}
    atomic_write(path, lambda f: f.write(json.dumps(clean, indent=2, sort_keys=True).encode()))
    return clean


def notebook_parameters(config_path, notebook, **extra):
    """Typed papermill parameters for ``notebook`` from a run_all config (YAML with a 'common' section
    and one section per notebook name), keeping only the parameters the notebook declares."""
    import papermill
    import yaml
    config = yaml.safe_load(Path(config_path).read_text()) or {}
    declared = papermill.inspect_notebook(str(notebook))
    name = Path(notebook).stem
    wanted = {**(config.get("common") or {}), **(config.get(name) or {}), **extra}
    unknown = set(config.get(name) or {}) | set(extra)
    unknown -= set(declared)
    if unknown:
        raise ValueError(f"{config_path}: {name} has no parameters {sorted(unknown)}")
    return {k: v for k, v in wanted.items() if k in declared}


def relocate(params, results_dir, stage_dir):
    """Notebook parameters with every path under ``results_dir`` moved under ``stage_dir``."""
    results_dir = str(results_dir).rstrip("/")
    out = {}
    for k, v in params.items():
        if isinstance(v, str) and (v == results_dir or v.startswith(results_dir + "/")):
            v = str(stage_dir).rstrip("/") + v[len(results_dir):]
        out[k] = v
    return out


SEEDED = ".seeded.json"      # in a staging folder: the files copied from the results folder, as (size, mtime)
PROMOTING = ".promoting"     # in a staging folder: promote has started (run_all finishes it on the next start)


def seed(results_dir, stage_dir):
    """Start a staging folder as a copy of the results folder (times kept), recording every copied file's
    size and modification time in ``SEEDED``: :func:`promote` moves back only what a run changed or made."""
    import shutil
    results, stage = Path(results_dir), Path(stage_dir)
    stage.mkdir(parents=True, exist_ok=True)
    if results.is_dir():
        shutil.copytree(results, stage, dirs_exist_ok=True)
    record = {str(f.relative_to(stage)): [f.stat().st_size, f.stat().st_mtime_ns]
              for f in sorted(stage.rglob("*")) if f.is_file()}
    (stage / SEEDED).write_text(json.dumps(record))
    return stage


def promote(stage_dir, results_dir):
    """Move every file a run changed or made from its staging folder into ``results_dir``, replacing the
    file of the same path (each by renames: a file is either the old or the new one, never a mix). Files
    unchanged since :func:`seed` stay where they are, so results changed meanwhile (another profile, a git
    pull) are not reverted; folders are merged, so the outputs of notebooks that ``--from`` skipped stay.
    A ``PROMOTING`` marker is written first: a promote stopped midway is finished by calling it again."""
    import shutil
    stage, results = Path(stage_dir), Path(results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (stage / PROMOTING).touch()
    seeded = json.loads((stage / SEEDED).read_text()) if (stage / SEEDED).exists() else {}
    trash = results / f".replaced-{stage.name}"
    shutil.rmtree(trash, ignore_errors=True)
    trash.mkdir()
    _merge(stage, results, trash, stage, seeded)
    shutil.rmtree(trash)
    shutil.rmtree(stage)
    return results


def _merge(src, dst, trash, stage, seeded):
    for entry in sorted(src.iterdir()):
        rel = str(entry.relative_to(stage))
        if rel in (SEEDED, PROMOTING) or entry.name == LOCK_NAME:     # a killed run's lock file stays behind
            continue
        target = dst / entry.name
        if entry.is_dir() and target.is_dir():
            _merge(entry, target, trash, stage, seeded)
            continue
        if entry.is_file() and seeded.get(rel) == [entry.stat().st_size, entry.stat().st_mtime_ns]:
            continue                                   # the copy made by seed(), untouched by the run
        if target.exists():
            target.rename(trash / f"{len(list(trash.iterdir()))}-{entry.name}")
        entry.rename(target)


def notebook_failure(path):
    """Where an executed notebook (papermill's output) failed, in one line: 'cell [N] (its first line of code):
    ErrorName: the first line of its message', N its execution count (or 'code cell N', counted in the
    executed notebook, where it has none); None when no cell holds an error."""
    try:
        cells = json.loads(Path(path).read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return None
    code = [c for c in cells if c.get("cell_type") == "code"]
    for n, cell in enumerate(code, 1):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                source = "".join(cell.get("source", "")).strip().splitlines()
                first = next((line for line in source if not line.startswith("#")), source[0] if source else "")
                message = (str(out.get("evalue", "")).strip().splitlines() or [""])[0]
                count = cell.get("execution_count")
                where = f"cell [{count}]" if count else f"code cell {n}"
                return f"{where} (`{first[:80]}`): {out.get('ename', 'error')}: {message[:300]}"
    return None


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "failure":
        print(notebook_failure(sys.argv[2]) or "no cell holds an error (stopped from outside?)")
    elif len(sys.argv) == 4 and sys.argv[1] == "promote":
        print(f"run_all: results moved into {promote(sys.argv[2], sys.argv[3])}/")
    elif len(sys.argv) == 4 and sys.argv[1] == "seed":
        seed(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m srlib.study promote|seed|failure ...")
