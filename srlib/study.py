"""The study as the notebooks run it: environment report, runs, Table 1, figures.

Notebooks stay thin and call these functions; everything here is reachable from tests.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .config import LABELS, MODELS, from_saved  # noqa: F401  (study.LABELS: the registry's)
from .data import BENCHMARKS, available, data_root, hr_files, load_eval_set, resolve_datasets
from .data import project_path  # noqa: F401  (the notebooks call study.project_path)
from .evaluate import SCORES_CACHE, bicubic, evaluate, summarize, write_csv
from .infer import GENERATOR_FILE, load_generator, upscale_array
from .io import atomic_write
from .metrics import to_uint8
# the figures and reports the notebooks call as study.<name> (their code is in srlib.figures and srlib.report)
from .figures import (METHOD_STYLE, PD_MEASURES, figure_comparison, figure_pairs,  # noqa: F401
                      method_styles, plot_distributions, plot_history, plot_perception_distortion, plot_samples)
from .report import (LIMITS, control_markdown, default_inference, inference_note, loss_accounting,  # noqa: F401
                     model_card, perceptual_markdown, provenance, run_dirs, table1_markdown, write_model_cards,
                     write_table1_markdown)

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


def benchmark(runs_dir, datasets=BENCHMARKS, root=None, results_dir="results", progress=True, perceptual=None,
              cache=SCORES_CACHE):
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
        if frames[-1]["inference"].iloc[0] == "calibrated":    # GroupNorm: also as scored before calibration
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


def record(path, **numbers):
    """Write key numbers of a notebook run to JSON (tests compare them with pytest.approx)."""
    clean = {k: (round(float(v), 6) if isinstance(v, (float, np.floating)) else v) for k, v in numbers.items()}
    atomic_write(path, lambda f: f.write(json.dumps(clean, indent=2, sort_keys=True).encode()))
    return clean


