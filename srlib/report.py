"""The study's reports: which runs a folder holds, Table 1, the perceptual and positive-control tables, the
ablation's markdown and the model cards, written from the files of results/ and the runs' records. The labels
are the registry's (:data:`srlib.config.LABELS`)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import reference
from .checkpoint import GENERATOR_FILE
from .config import LABELS, MODELS, from_saved
from .io import atomic_write


def default_inference(df):
    """The rows of a score table under the default inference (without the 'whole' rows kept for the record)."""
    return df[df["inference"] != "whole"] if "inference" in df.columns else df


def run_dirs(runs_dir):
    """{model: folder} of the training runs that exist in ``runs_dir``."""
    return {m: Path(runs_dir) / m for m in MODELS if (Path(runs_dir) / m / GENERATOR_FILE).exists()}


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
                   "default everywhere); whole-image: GroupNorm with each image's own statistics, how results/ "
                   "was scored before calibration (results/extent.csv shows why it shifts the colours).\n\n"
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


# ------------------------------------------------------------------------------------------ the ablation


def absolute_markdown(summary, metric="psnr", datasets=None):
    """``summary`` of :func:`srlib.ablation.absolute_scores` as a markdown table: one row per variant, 'mean ± SD (over
    seeds)' per dataset (``datasets``: their order; default as they come, pooled last)."""
    d = summary[summary["metric"] == metric]
    sets = list(datasets or [x for x in dict.fromkeys(d["dataset"]) if x != "pooled"] + ["pooled"])
    spec = ".2f" if metric == "psnr" else ".4f"
    lines = [f"{metric.upper()} of each variant (standard protocol): mean over seeds ± SD over seeds "
             f"(n seeds in brackets).", "", "| variant | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    for v, g in d.groupby("variant", sort=False):
        g = g.set_index("dataset")
        cells = [f"{format(g.loc[x, 'mean'], spec)} ± {_fmt(g.loc[x, 'sd'], spec)} ({int(g.loc[x, 'seeds'])})"
                 if x in g.index else "" for x in sets]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def grid_table1_markdown(summary, grid, complete, datasets=None, status=None):
    """A grid's Table 1: each variant's PSNR (mean ± SD over seeds) / SSIM (mean) per dataset, standard
    protocol, beside Wu's Table 1 and the published standard-protocol anchors (:mod:`srlib.reference`).
    ``summary``: :func:`srlib.ablation.absolute_scores`' of the default inference; ``complete``: the seeds in
    it. A variant is shown as its ``label`` in the grid (else its name). ``status`` (:func:`srlib.ablation.status`)
    adds what its runs used for SRGAN's perceptual term."""
    from .ablation import _config
    sets = list(datasets or grid["primary_endpoint"]["datasets"])
    ours = summary[summary["dataset"].isin(sets)].set_index(["variant", "metric", "dataset"])
    have = set(ours.index)

    def cell(v, d):
        if (v, "psnr", d) not in have:
            return "–"
        psnr = ours.loc[(v, "psnr", d)]
        text = f"{psnr['mean']:.2f}" + ("" if pd.isna(psnr["sd"]) else f" ± {psnr['sd']:.2f}")
        return text + (f" / {ours.loc[(v, 'ssim', d), 'mean']:.4f}" if (v, "ssim", d) in have else "")

    rows = []
    for v in dict.fromkeys(summary["variant"]):
        label = (grid["variants"].get(v) or {}).get("label")
        rows.append(f"| {v}{f': {label}' if label else ''} | standard | " + " | ".join(cell(v, d) for d in sets)
                    + " |")
    for published, protocol in ((reference.PAPER_TABLE1, "unstated"), (reference.PUBLISHED_STANDARD, "standard")):
        for name, vals in published.items():
            rows.append(f"| *{name}* | {protocol} | " + " | ".join(_cell(vals.get(d), True) for d in sets) + " |")
    cfg = _config(grid, grid["reference"], grid["seeds"][0])
    seeds = (f"mean over {len(complete)} seed{'s' * (len(complete) != 1)} ({', '.join(map(str, complete))}; "
             f"PSNR ± SD over seeds)" if complete else "no seed complete yet")
    warm = f" ({cfg.warmup_steps} of them a shared L1 warm-up, then each arm's own loss)" if cfg.warmup_steps else ""
    return (f"PSNR (dB) / SSIM, x4, at {cfg.steps} generator steps{warm}. Ours: {seeds}, standard protocol (Y, "
            "4-pixel border shaved, MATLAB bicubic LR), default inference (GroupNorm calibrated at the training "
            "extent). Wu's Table 1 does not state its protocol. Its training loop follows a public SRGAN code base "
            "whose evaluation is RGB over the whole image; RGB PSNR alone runs about 1.5 to 1.9 dB below Y PSNR on "
            "the same images, and that code's border, rounding and LR resizing differ too. So its rows are not on "
            "our scale.\n\n"
            "| model | protocol | " + " | ".join(sets) + " |\n|---|---|" + "---|" * len(sets) + "\n"
            + "\n".join(rows) + "\n" + _vgg_notes(status, complete))


def _vgg_notes(status, complete):
    """One line per variant whose runs (of the ``complete`` seeds) have a perceptual term: what its VGG16 was."""
    if status is None or "vgg" not in status:
        return ""
    done = status[status["seed"].isin(complete) & status["vgg"].notna() & (status["vgg"] != "not used")]
    lines = [f"- {v}: SRGAN's perceptual term (VGG16): {'; '.join(dict.fromkeys(g['vgg']))}\n"
             for v, g in done.groupby("variant", sort=False)]
    return "\n" + "".join(lines) if lines else ""


def ablation_markdown(table, grid, complete, metrics=("psnr", "ssim"), level=None, path=None, inference=None,
                      family_=None):
    """The README's ablation table from :func:`srlib.ablation.analyze`'s ``table`` (at interval ``level``,
    default the endpoint's): one row per comparison, the pooled difference of each of ``metrics`` with its
    interval, p and Holm p; the primary endpoint first and in bold. ``complete``: the seeds analyzed (those at
    which every variant has finished). ``inference`` (the scores' inference mode) and ``family_`` (as
    :func:`srlib.ablation.analyze`) are stated in the caption. Written to ``path`` (atomically) when given;
    returns the text."""
    from .ablation import family
    end = grid["primary_endpoint"]
    if not end.get("pooled", True) or end["metric"] not in metrics:
        raise ValueError(f"the table shows pooled {list(metrics)}; the primary endpoint {end} is not among them")
    pooled = table[(table["dataset"] == "pooled") & table["metric"].isin(metrics)]
    level = round(100 * (level or end.get("level", 0.95)))
    lines = [f"Variant minus `{grid['reference']}`, all {', '.join(end['datasets'])} images pooled (standard "
             f"protocol), at {grid['common']['steps']} steps: mean over seeds [{level}% t interval; decimals per "
             f"row such that the interval's half-width shows 2 significant figures], two-sided "
             f"p, and Holm-adjusted p over {_family_text(family_ or family(grid))} of the same metric (m each). "
             + (f"Inference: {INFERENCE_TEXT[inference]}. " if inference else "") + "Seeds "
             f"analyzed: {len(complete)} of {len(grid['seeds'])} ({', '.join(map(str, complete)) or 'none'}).",
             "", "| comparison | " + " | ".join(f"{m.upper()} [{level}% CI] | p | Holm p" for m in metrics) + " |",
             "|---|" + "---|---|---|" * len(metrics)]
    comps = list(dict.fromkeys(pooled.sort_values("primary", ascending=False, kind="stable")["comparison"]))
    for comp in comps:
        rows = pooled[pooled["comparison"] == comp].drop_duplicates("metric").set_index("metric")
        cells = [f"**{comp} (primary)**" if rows["primary"].any() else comp]
        for m in metrics:
            if m not in rows.index:
                cells += ["", "", ""]
                continue
            r = rows.loc[m]
            d = f"+.{decimals(r['ci_low'], r['ci_high'], 2 if m == 'psnr' else 4)}f"
            cells += [f"{_fmt(r['mean'], d)} [{_fmt(r['ci_low'], d)}, {_fmt(r['ci_high'], d)}]", _p(r["p"]),
                      "(confirmatory)" if bool(r["primary"]) else
                      f"{_p(r['p_holm'])} (m={int(r['m'])})" if r["m"] else "(descriptive)"]
        lines.append("| " + " | ".join(cells) + " |")
    if not comps:
        why = "no pooled rows" if complete else "no seed complete yet"
        lines.append(f"| ({why}) |" + " |" * (3 * len(metrics)))
    text = "\n".join(lines) + "\n"
    if path:
        atomic_write(path, lambda f: f.write(text.encode()))
    return text


INFERENCE_TEXT = {"calibrated": "GroupNorm calibrated at the training extent (the default)",
                  "whole": "whole image, GroupNorm with each image's own statistics (the analysis of record)"}


def _family_text(fam_spec):
    fam, with_contrasts = fam_spec
    if fam == "all":
        return "the exploratory comparisons (every other row, per set and pooled)"
    contrasts = " and of each contrast" if with_contrasts else "; contrasts descriptive"
    return f"the declared exploratory family (the pooled row of each variant minus the reference{contrasts}; " \
           "per-set rows descriptive)"


def decimals(low, high, least=2):
    """Decimals that show the half-width of the interval [low, high] to 2 significant figures, at least
    ``least`` (and at most 8): +0.0003 [-0.0026, +0.0032] rather than +0.00 [-0.00, +0.00]. A half-width
    under 1e-9 (no spread but float rounding) keeps ``least``."""
    half = (high - low) / 2
    if not np.isfinite(half) or half < 1e-9:
        return least
    return int(min(8, max(least, 1 - np.floor(np.log10(half)))))


def _fmt(x, spec):
    return "n/a" if pd.isna(x) else format(x, spec)


def _p(p):
    return "<0.001" if not pd.isna(p) and p < 0.001 else _fmt(p, ".3f")
