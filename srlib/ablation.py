"""The ablation grid as data (configs/ablation_grid.yaml): loading, running, scoring and analysis.

A grid has ``common`` (a training profile and TrainConfig overrides shared by every run), ``seeds``,
``reference`` (the variant every other is compared with), ``primary_endpoint`` (declared before the runs:
variant, metric, datasets, pooled, optional level) and ``variants``: name -> TrainConfig overrides over
``common`` (``model`` included, default 'attention'), plus free-text ``note`` and ``todo`` (a variant that
cannot run yet; it is listed but has no configs). Optional ``contrasts``: extra pairs ``[variant, reference]``
compared besides every variant against ``reference`` (exploratory). The statistics are in :mod:`srlib.stats`.

Running (:func:`run_grid`): runs live in ``<runs>/seed<s>/<variant>``, shared warm-ups in ``<runs>/warmup``;
each finished run is scored once per image on the benchmarks (standard protocol) into ``scores.csv`` beside
its generator, tagged with the generator's sha256 so that a retrained run is scored again. Everything is
resumable: an interrupted grid continues where it stopped, and finished runs are reused.

Records (:func:`archive`): the weights stay in the local runs folder, which a new clone or machine does not
have; each finished and scored run's record (its meta.json, validation curves, score caches and extent sweep,
no weights) is copied to a records folder (``<records>/seed<s>/<variant>``) that is committed with the
results. Every reader (:func:`status`, :func:`collect_scores`, the figures, :func:`extent_sweep`) and
:func:`run_grid` use a run's record where its folder is gone, so a grid finishes over several machines.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import archs, stats
from .data import BENCHMARKS, project_path
from .download import _sha256
from .infer import GENERATOR_FILE
from .io import atomic_write
from .config import from_saved, make_config
# the ablation's figures and markdown, which notebook 06 calls as ablation.<name> (code in figures and report)
from .figures import plot_forest, plot_seed_curves  # noqa: F401
from .report import (INFERENCE_TEXT, absolute_markdown, ablation_markdown as markdown, decimals,  # noqa: F401
                     grid_table1_markdown)
from .train import build_generator, train

GRID_KEYS = {"common", "seeds", "reference", "primary_endpoint", "variants"}
OPTIONAL_KEYS = {"contrasts", "reanalysis"}
REANALYSIS_KEYS = {"inference", "family", "contrasts_in_family", "record", "declared"}
FAMILIES = ("all", "pooled")     # Holm over every exploratory row, or over the pooled rows only
ENDPOINT_KEYS = {"variant", "metric", "datasets", "pooled", "level"}
TEXT_KEYS = ("note", "todo", "label")          # a variant's keys that are not TrainConfig fields


def load_grid(path):
    """Read and validate a grid file; returns it as a dict (``variants`` in file order).

    Errors (ValueError): missing or unknown top-level keys, empty or repeated seeds, a reference or primary
    variant that is not in ``variants`` (or a primary that is the reference), and any variant whose
    overrides ``make_config`` rejects (unknown TrainConfig keys, wrong types) or whose generator cannot
    be built (e.g. ``norm: foo``). Variants marked ``todo`` are validated too.
    """
    import yaml
    grid = yaml.safe_load(Path(path).read_text()) or {}
    if not GRID_KEYS <= set(grid) <= GRID_KEYS | OPTIONAL_KEYS:
        raise ValueError(f"{path}: grid keys must be {sorted(GRID_KEYS)} (optional {sorted(OPTIONAL_KEYS)}); "
                         f"missing {sorted(GRID_KEYS - set(grid))}, unknown "
                         f"{sorted(set(grid) - GRID_KEYS - OPTIONAL_KEYS)}")
    seeds = grid["seeds"]
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise ValueError(f"{path}: seeds must be distinct integers, got {seeds!r}")
    variants = grid["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ValueError(f"{path}: variants must be a non-empty mapping")
    if grid["reference"] not in variants:
        raise ValueError(f"{path}: reference {grid['reference']!r} is not a variant: {list(variants)}")
    end = grid["primary_endpoint"]
    if not isinstance(end, dict) or not {"variant", "metric", "datasets"} <= set(end) <= ENDPOINT_KEYS:
        raise ValueError(f"{path}: primary_endpoint needs variant, metric, datasets (optional pooled, level)")
    if end["variant"] not in variants or end["variant"] == grid["reference"]:
        raise ValueError(f"{path}: primary_endpoint variant {end['variant']!r} must be a variant other than "
                         f"the reference")
    grid.setdefault("contrasts", [])
    for pair in grid["contrasts"]:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in variants for p in pair)
                and pair[0] != pair[1]):
            raise ValueError(f"{path}: contrast {pair!r} must be [variant, reference], two different variants")
    again = grid.get("reanalysis")
    if again is not None:
        from .archs import INFERENCE
        if not isinstance(again, dict) or not {"inference", "family"} <= set(again) <= REANALYSIS_KEYS \
                or again["inference"] not in INFERENCE or again["family"] not in FAMILIES:
            raise ValueError(f"{path}: reanalysis needs inference {list(INFERENCE)} and family {list(FAMILIES)} "
                             f"(optional {sorted(REANALYSIS_KEYS - {'inference', 'family'})}), got {again!r}")
    for name in variants:
        try:
            cfg = _config(grid, name, seeds[0])
            build_generator(cfg)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: variant {name!r}: {e}") from None
    return grid


def _config(grid, name, seed, **where):
    """The validated config of variant ``name`` at ``seed``; ``where`` (warmup_dir, data_root, progress) says
    where it runs, not what it is."""
    common = dict(grid["common"] or {})
    profile = common.pop("profile", "quick")
    overrides = {k: v for k, v in (grid["variants"][name] or {}).items() if k not in TEXT_KEYS}
    model = overrides.pop("model", "attention")
    return make_config(model, profile, **{**common, **overrides, "seed": seed, **where})


def runnable(grid):
    """Names of the variants without ``todo``, in file order."""
    return [name for name, v in grid["variants"].items() if not (v or {}).get("todo")]


def variant_configs(grid, seed):
    """{variant: TrainConfig} of the runnable variants for one seed (``todo`` variants are left out)."""
    return {name: _config(grid, name, seed) for name in runnable(grid)}


def parameter_counts(grid):
    """Generator parameters of each runnable variant: DataFrame with variant, model, arch, parameters and
    ratio (to the reference's count)."""
    rows = []
    for name, cfg in variant_configs(grid, grid["seeds"][0]).items():
        rows.append(dict(variant=name, model=cfg.model, arch=cfg.arch,
                         parameters=archs.count_parameters(build_generator(cfg)[0])))
    df = pd.DataFrame(rows)
    ref = df.loc[df["variant"] == grid["reference"], "parameters"]
    return df.assign(ratio=df["parameters"] / ref.iloc[0] if len(ref) else float("nan"))


def grid_overrides(grid, overrides):
    """The grid with ``overrides`` (TrainConfig fields) applied over ``common``: how a pilot or a GPU run
    changes the budget (``steps``, ``warmup_steps``, ``crop``...) without editing the file."""
    return {**grid, "common": {**(grid["common"] or {}), **(overrides or {})}}


def run_dir(runs_dir, seed, variant):
    return Path(runs_dir) / f"seed{seed}" / variant


RECORD = "record.json"         # in a record folder: the generator's sha256 and the files copied, written last
RECORD_FILES = ("meta.json", "metrics.csv", "scores.csv", "scores.json", "scores-whole.csv", "scores-whole.json",
                "perceptual.csv", "perceptual.json", "extent.csv", "extent.json")


def _archived(records, seed, name):
    """The record folder of (seed, name) under ``records`` when its record is complete, else None."""
    folder = run_dir(records, seed, name) if records else None
    return folder if folder is not None and (folder / RECORD).exists() else None


def run_folder(runs_dir, seed, name, records=None):
    """Where to read run (seed, name): its run folder while it holds a generator, else its record (see
    :func:`archive`) where one exists, else the (empty or unfinished) run folder."""
    folder = run_dir(runs_dir, seed, name)
    if (folder / GENERATOR_FILE).exists():
        return folder
    return _archived(records, seed, name) or folder


def archive(grid, runs_dir, records):
    """Copy the record of every run of ``grid`` that is trained and scored in both inference modes to
    ``records/seed<s>/<variant>`` (:data:`RECORD_FILES` that exist, no weights), with :data:`RECORD` (the
    generator's sha256 and the files) written last, so a stopped copy is never taken for a record; the
    meta.json of the warm-ups those runs continued go to ``records/warmup/<name>/``. A record is replaced
    when its run's files changed (a rescore, a sweep). Returns the (seed, variant) pairs copied."""
    copied = []
    st = status(grid, runs_dir)
    for row in st[st["trained"] & st["scored"] & st["scored_whole"]].itertuples():
        folder, dest = run_dir(runs_dir, row.seed, row.variant), run_dir(records, row.seed, row.variant)
        files = [f for f in RECORD_FILES if (folder / f).exists()]
        record = {"generator_sha256": row.generator_sha256, "files": files}
        if _tag(dest / RECORD) == record and all((dest / f).read_bytes() == (folder / f).read_bytes()
                                                 for f in files):
            continue
        (dest / RECORD).unlink(missing_ok=True)
        for f in files:
            _write(dest / f, (folder / f).read_bytes())
        warm = Path(runs_dir) / "warmup" / Path(_tag(folder / "meta.json").get("warmup_run") or "-").name
        if (warm / "meta.json").exists():
            _write(Path(records) / "warmup" / warm.name / "meta.json", (warm / "meta.json").read_bytes())
        _write(dest / RECORD, json.dumps(record, indent=1).encode())
        copied.append((row.seed, row.variant))
    return copied


def _write(path, data):
    atomic_write(path, lambda out: out.write(data))


def _generator_sha(folder):
    """The sha256 of the generator of a run folder, or of a record folder (from its record.json); None."""
    if (folder / GENERATOR_FILE).exists():
        return _sha256(folder / GENERATOR_FILE)
    return _tag(folder / RECORD).get("generator_sha256")


def _scores_stem(inference):
    return "scores" if inference == "calibrated" else f"scores-{inference}"


def score_run(folder, datasets=BENCHMARKS, root=None, progress=False, inference="calibrated"):
    """Per-image standard-protocol scores of a run's generator on ``datasets`` (DataFrame: dataset, image,
    psnr, ssim, mean offsets), under ``inference`` ('calibrated', the default, or 'whole'), cached in
    ``folder/scores.csv`` (``scores-whole.csv``) with its ``.json`` tag (generator sha256, datasets, inference
    mode); the cache is used only while all match. A generator trained before calibration existed is
    calibrated first (:func:`srlib.calibration.calibrate_run`; its file changes, so old scores are redone)."""
    from .calibration import calibrate_run
    from .evaluate import SCORES_CACHE, evaluate, write_csv
    folder, datasets = Path(folder), list(datasets)
    calibrate_run(folder, root)
    tag = {"generator_sha256": _sha256(folder / GENERATOR_FILE), "datasets": datasets, "inference": inference}
    csv, side = folder / f"{_scores_stem(inference)}.csv", folder / f"{_scores_stem(inference)}.json"
    if csv.exists() and side.exists() and json.loads(side.read_text()) == tag:
        return pd.read_csv(csv)
    df = evaluate(str(folder / GENERATOR_FILE), datasets, root, protocols=("standard",), progress=progress,
                  inference=inference, cache=project_path(SCORES_CACHE))
    df = df.drop(columns=["method", "protocol"])
    write_csv(df, csv, decimals=6)
    atomic_write(side, lambda f: f.write(json.dumps(tag, indent=1).encode()))   # after the CSV: a crash
    return df                                                                   # between them rescoring


def score_perceptual(folder, measures, datasets, root=None):
    """Per-image perceptual measures (:class:`srlib.perceptual.Perceptual`) of a run's generator on
    ``datasets``, cached in ``folder/perceptual.csv`` with ``perceptual.json`` (generator sha256, datasets and
    the measures' notes: which LPIPS backbone, which NIQE model), used only while all match."""
    from .evaluate import SCORES_CACHE, evaluate, write_csv
    folder, datasets = Path(folder), list(datasets)
    tag = {"generator_sha256": _sha256(folder / GENERATOR_FILE), "datasets": datasets, "notes": measures.notes,
           "inference": "calibrated"}
    csv, side = folder / "perceptual.csv", folder / "perceptual.json"
    if csv.exists() and side.exists() and json.loads(side.read_text()) == tag:
        return pd.read_csv(csv)
    df = evaluate(str(folder / GENERATOR_FILE), datasets, root, protocols=("standard",), perceptual=measures,
                  cache=project_path(SCORES_CACHE))
    df = df.drop(columns=["method", "protocol", "psnr", "ssim", "inference", "offset_r", "offset_g", "offset_b"])
    write_csv(df, csv, decimals=6)
    atomic_write(side, lambda f: f.write(json.dumps(tag, indent=1).encode()))
    return df


def run_grid(grid, runs_dir, seeds=None, variants=None, root=None, datasets=BENCHMARKS, overrides=None,
             progress=False, perceptual=None, perceptual_datasets=("Set5", "Set14"), score=True, records=None):
    """Train and score every (seed, variant) of ``grid`` (a dict from :func:`load_grid`) that is not done,
    seed by seed (so that a stopped grid leaves whole seeds), variants in file order. ``seeds``/``variants``
    restrict it; ``overrides`` go over ``common`` (:func:`grid_overrides`). With ``perceptual`` (a
    :class:`srlib.perceptual.Perceptual`) each run is also scored on ``perceptual_datasets`` (the small sets:
    the measures cost about a second per image on the CPU) by :func:`score_perceptual`. A run whose folder
    is gone but whose record is in ``records`` (:func:`archive`) is finished: it is not trained again. Returns
    :func:`status`."""
    grid = grid_overrides(grid, overrides)
    names = [v for v in runnable(grid) if variants is None or v in variants]
    for seed in (grid["seeds"] if seeds is None else seeds):
        for name in names:
            cfg = _config(grid, name, seed, warmup_dir=str(Path(runs_dir) / "warmup"),
                          data_root=None if root is None else str(root),
                          progress=progress)
            folder = run_dir(runs_dir, seed, name)
            if run_folder(runs_dir, seed, name, records) != folder:
                print(f"ablation: seed {seed}, {name}: finished (its record in {records})", flush=True)
                continue
            print(f"ablation: seed {seed}, {name}", flush=True)
            train(cfg, folder)
            if not score:
                continue
            for mode in ("calibrated", "whole"):     # the default inference, and whole-image for the record
                score_run(folder, datasets, root, inference=mode)
            if perceptual is not None:
                score_perceptual(folder, perceptual, perceptual_datasets, root)
    return status(grid, runs_dir, records)


def _tag(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def _scored(folder, sha, inference):
    tag = _tag(folder / f"{_scores_stem(inference)}.json")
    return sha is not None and tag.get("generator_sha256") == sha and tag.get("inference") == inference


def status(grid, runs_dir, records=None):
    """One row per (seed, variant): trained (complete), scored and perceptual (the cached scores belong to the
    current generator), the perceptual measures' notes, train_seconds (this run's own steps; the shared
    warm-up is counted once, in its own folder), warmup_seconds (the warm-up this run continued, shared with
    the other variants of its architecture and seed), train_cpu_seconds, quiet and warmup_quiet (whether the
    cores were quiet while it and its warm-up trained: srlib.train's cost record; None for runs trained before
    srlib measured it), cpu, device, precision, vgg (SRGAN's perceptual network: its source, or why it was
    dropped; None where the loss has none); weights (its generator is in
    ``runs_dir``) and archived (read from its record in ``records``, :func:`run_folder`)."""
    rows = []
    for seed in grid["seeds"]:
        for name in runnable(grid):
            folder = run_folder(runs_dir, seed, name, records)
            weights = (folder / GENERATOR_FILE).exists()
            meta = _tag(folder / "meta.json")
            sha = _generator_sha(folder)
            warm_name = Path(meta.get("warmup_run") or "-").name
            warm = next((w for w in (Path(r) / "warmup" / warm_name / "meta.json" for r in (runs_dir, records) if r)
                         if w.exists()), None)
            warm = _tag(warm) if warm else {}
            rows.append(dict(seed=seed, variant=name, trained=meta.get("status") == "complete", generator_sha256=sha,
                             scored=_scored(folder, sha, "calibrated"), scored_whole=_scored(folder, sha, "whole"),
                             perceptual=sha is not None
                             and _tag(folder / "perceptual.json").get("generator_sha256") == sha,
                             perceptual_notes=json.dumps(_tag(folder / "perceptual.json").get("notes")),
                             train_seconds=meta.get("train_seconds"), warmup_seconds=warm.get("train_seconds"),
                             train_cpu_seconds=meta.get("train_cpu_seconds"), quiet=meta.get("quiet"),
                             warmup_quiet=warm.get("quiet"),
                             cpu=meta.get("cpu"), device=meta.get("device"), precision=meta.get("precision"),
                             vgg=meta.get("vgg"), weights=weights, archived=not weights and (folder / RECORD).exists()))
    return pd.DataFrame(rows)


def collect_scores(grid, runs_dir, metrics=("psnr", "ssim"), perceptual=True, inference="calibrated",
                   records=None):
    """The scores of the finished runs as the long table of :mod:`srlib.stats` (variant, seed, dataset,
    image, metric, value), restricted to seeds at which every runnable variant is scored, so that every
    difference is paired. The perceptual measures (:func:`score_perceptual`) are added when every run of
    those seeds has them, all with the same measures (the same LPIPS backbone and NIQE model), and
    ``perceptual``; on their own datasets; NaN values, e.g. LPIPS without its backbone, are left out.
    ``inference`` 'whole' reads the whole-image scores instead (``scores-whole.csv``; no perceptual measures).
    Runs whose folder is gone are read from their record in ``records`` (:func:`run_folder`).
    Returns (scores, complete seeds)."""
    from .perceptual import MEASURES, current_names
    st = status(grid, runs_dir, records)
    flag = "scored" if inference == "calibrated" else "scored_whole"
    perceptual = perceptual and inference == "calibrated"
    complete = [s for s, g in st.groupby("seed", sort=False) if g[flag].all()]
    done = st[st["seed"].isin(complete)]
    with_perceptual = (perceptual and bool(complete) and done["perceptual"].all()
                       and done["perceptual_notes"].nunique() == 1)
    frames = []
    for seed in complete:
        for name in runnable(grid):
            folder = run_folder(runs_dir, seed, name, records)
            df = pd.read_csv(folder / f"{_scores_stem(inference)}.csv", dtype={"image": str})
            long = df.melt(id_vars=["dataset", "image"], value_vars=list(metrics), var_name="metric")
            frames.append(long.assign(variant=name, seed=seed))
            if with_perceptual:
                df = current_names(pd.read_csv(folder / "perceptual.csv", dtype={"image": str}))
                measures = [c for c in MEASURES if c in df.columns]    # not counts such as niqe_blocks
                long = df.melt(id_vars=["dataset", "image"], value_vars=measures,
                               var_name="metric").dropna(subset=["value"])
                frames.append(long.assign(variant=name, seed=seed))
    cols = ["variant", "seed", "dataset", "image", "metric", "value"]
    scores = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return scores, complete


def restrict(grid, variants=None, datasets=None):
    """The grid with only ``variants`` (which must include the reference and the primary variant) and, with
    ``datasets``, the primary endpoint pooled over those instead: a smaller grid for a pilot or a smoke run.
    Contrasts whose variants are gone are dropped."""
    out = dict(grid)
    if variants is not None:
        need = {grid["reference"], grid["primary_endpoint"]["variant"]}
        if not need <= set(variants):
            raise ValueError(f"a restricted grid needs the reference and the primary variant {sorted(need)}")
        keep = {k: v for k, v in grid["variants"].items() if k in variants}
        out.update(variants=keep, contrasts=[c for c in grid.get("contrasts", []) if set(c) <= set(keep)])
    if datasets is not None:
        out["primary_endpoint"] = {**grid["primary_endpoint"], "datasets": list(datasets)}
    return out


def family(grid):
    """The declared exploratory family: 'all' (every non-primary row of a metric, per set and pooled, contrasts
    included: the analysis of record before the re-analysis) or the grid's ``reanalysis`` family."""
    again = grid.get("reanalysis") or {}
    return again.get("family", "all"), bool(again.get("contrasts_in_family", True))


def analyze(grid, scores, level=None, family_=None):
    """The ablation table: every variant against the reference, and every contrast, per benchmark and pooled
    over the primary endpoint's datasets, for each metric: mean difference, t interval over seeds (``level``,
    default the endpoint's), seeds, images, p. Columns ``comparison`` ('variant - reference'), ``primary``
    (the declared endpoint's row) and ``p_holm`` (Holm over the exploratory family of the same metric, ``m``
    its size; rows outside the family are descriptive: NaN and 0). ``family_``: (family, contrasts in it),
    default :func:`family` of the grid."""
    if scores.empty:                 # no seed at which every variant is finished yet
        return pd.DataFrame(columns=TABLE_COLUMNS)
    end = grid["primary_endpoint"]
    level = level or end.get("level", 0.95)
    pairs = [(v, grid["reference"]) for v in runnable(grid) if v != grid["reference"]]
    pairs += [tuple(p) for p in grid.get("contrasts", []) if all(v in runnable(grid) for v in p)]
    frames = []
    for variant, reference in pairs:
        sub = scores[scores["variant"].isin([variant, reference])]
        diffs = stats.paired_differences(sub, reference)
        full = [m for m, g in diffs.groupby("metric") if set(end["datasets"]) <= set(g["dataset"])]
        sel = diffs[diffs["dataset"].isin(end["datasets"]) & diffs["metric"].isin(full)]   # pooled: the metrics
        pooled = stats.pool_datasets(sel, end["datasets"])                                   # on every dataset
        table = stats.seed_t_interval(pd.concat([diffs, pooled], ignore_index=True), level)
        frames.append(table.assign(reference=reference))
    if not frames:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "comparison", out["variant"] + " - " + out["reference"])
    out["primary"] = ((out["variant"] == end["variant"]) & (out["reference"] == grid["reference"])
                      & (out["dataset"] == ("pooled" if end.get("pooled", True) else end["datasets"][0]))
                      & (out["metric"] == end["metric"]))
    if out["primary"].sum() > 1 or (not out["primary"].any() and
                                     ((out["variant"] == end["variant"]) & (out["metric"] == end["metric"])).any()):
        raise ValueError(f"primary endpoint {end} does not select exactly one row of the table")
    out["p_holm"] = np.nan           # Holm within each metric: one family of exploratory comparisons per metric
    out["m"] = 0
    fam, with_contrasts = family_ or family(grid)
    member = ~out["primary"]
    if fam == "pooled":
        member &= out["dataset"] == "pooled"
    if not with_contrasts:
        member &= out["reference"] == grid["reference"]
    for _, g in out[member].groupby("metric"):
        out.loc[g.index, "p_holm"] = stats.holm(g["p"].to_numpy())
        out.loc[g.index, "m"] = int(g["p"].notna().sum())
    return out[TABLE_COLUMNS]


def absolute_scores(scores):
    """Each variant's own scores (not differences): per (variant, dataset, metric, seed) the mean over
    images, and over the seeds their mean and SD. ``scores``: :func:`collect_scores`' long table. Returns
    (summary: variant, dataset, metric, seeds, images, mean, sd; per_seed: variant, dataset, metric, seed,
    images, value); datasets pooled over images as 'pooled' too."""
    keys = ["variant", "dataset", "metric", "seed"]
    pooled = scores.assign(dataset="pooled")
    both = pd.concat([scores, pooled], ignore_index=True)
    per_seed = both.groupby(keys, sort=False)["value"].agg(images="size", value="mean").reset_index()
    summary = per_seed.groupby(keys[:-1], sort=False).agg(seeds=("seed", "nunique"), images=("images", "first"),
                                                          mean=("value", "mean"), sd=("value", "std")).reset_index()
    return summary, per_seed


def pilot_runs(grid, runs_dir, pilot_dir, budgets):
    """{budget label: runs folder} of the pilot: the grid's own budget (its runs) first, then each of
    ``budgets`` (label -> overrides) in ``pilot_dir/<label with '-' for spaces>``."""
    own = f"{grid['common']['steps']} steps (the grid's)"
    return {own: Path(runs_dir), **{k: Path(pilot_dir) / k.replace(" ", "-") for k in budgets}}


def run_pilot(grid, runs_dir, pilot_dir, budgets, root=None, datasets=BENCHMARKS):
    """Train and score the primary pair (reference and primary variant) at the grid's budget and at each of
    ``budgets`` (label -> overrides over ``common``)."""
    pair = restrict(grid, [grid["reference"], grid["primary_endpoint"]["variant"]])
    run_grid(pair, runs_dir, root=root, datasets=datasets)
    for label, folder in list(pilot_runs(grid, runs_dir, pilot_dir, budgets).items())[1:]:
        run_grid(pair, folder, root=root, datasets=datasets, overrides=budgets[label])


TABLE_COLUMNS = ["comparison", "variant", "reference", "dataset", "metric", "mean", "ci_low", "ci_high", "seeds",
                 "images", "p", "p_holm", "m", "primary"]


def pilot_summary(grid, runs, seeds_for=(3, 5, 8), level=0.95, power=0.8, budget=None, target=None):
    """The pilot: for each budget (label -> runs folder of the primary pair), the per-seed pooled mean
    difference of the primary endpoint, its standard deviation over seeds and the smallest difference a
    t-test over ``seeds_for`` seeds detects (:func:`srlib.stats.detectable_difference`, exact power).
    With ``budget`` ({"hours": ..., "seconds_per_step": ...}: the training time allowed for the whole grid,
    and the grid's measured training seconds per generator step and seed, all variants together) it also
    gives, per budget, the hours per seed, the number of seeds that fit (``seeds_in_budget``) and the
    difference that many seeds detect (``detectable_in_budget``): the pilot's choice is the budget with the
    smallest. With ``target`` (a difference, e.g. the issue's aim of 0.1 dB), ``seeds_for_target``: the seeds
    that would detect it (:func:`srlib.stats.seeds_needed`). Returns (per-seed table, summary table)."""
    end = grid["primary_endpoint"]
    pair = restrict(grid, [grid["reference"], end["variant"]])
    per_seed, summary = [], []
    for label, folder in runs.items():
        scores, complete = collect_scores(pair, folder, metrics=(end["metric"],), perceptual=False)
        if len(complete) < 2:
            continue
        diffs = stats.paired_differences(scores, grid["reference"])
        pooled = stats.pool_datasets(diffs, end["datasets"])
        means = stats.seed_means(pooled)
        per_seed.append(means.assign(budget=label))
        sd = float(means["diff"].std(ddof=1))
        secs = status(pair, folder)
        secs = secs[secs["seed"].isin(complete)]
        row = dict(budget=label, seeds=len(complete), mean=float(means["diff"].mean()), sd=sd,
                   train_seconds_per_run=float((secs["train_seconds"] + secs["warmup_seconds"].fillna(0)).mean()))
        row.update({f"detectable_{n}_seeds": stats.detectable_difference(sd, n, level, power, exact=True)
                    for n in seeds_for})
        if budget:
            meta = run_dir(folder, complete[0], grid["reference"]) / "meta.json"
            steps = from_saved(json.loads(meta.read_text())["config"]).steps
            hours = steps * budget["seconds_per_step"] / 3600
            fit = int(budget["hours"] // hours)
            row.update(steps=steps, grid_hours_per_seed=hours, seeds_in_budget=fit,
                       detectable_in_budget=stats.detectable_difference(sd, fit, level, power, exact=True)
                       if fit >= 2 else float("nan"))
        if target:
            try:
                need = stats.seeds_needed(sd, target, level, power)
            except ValueError:          # beyond any study
                need = float("inf")
            row.update(target=float(target), seeds_for_target=need)
        summary.append(row)
    return (pd.concat(per_seed, ignore_index=True) if per_seed else pd.DataFrame()), pd.DataFrame(summary)


def extent_sweep(grid, runs_dir, datasets, root=None, seed=None, records=None):
    """:func:`srlib.extent.probe`'s sweep (tiles of half to four times the training extent, and the whole image,
    in every inference mode the generator has) of one seed's run (the grid's first seed by default) of every
    block variant (the pixel-loss variants, model 'psnr') whose run is complete; ``generator`` is the variant.
    Each run's sweep is cached beside its scores (``extent.csv``, tagged with the generator's sha256 and the
    datasets), so a run known only by its record (``records``) keeps the sweep it had."""
    seed = grid["seeds"][0] if seed is None else seed
    frames = []
    for name, cfg in variant_configs(grid, seed).items():
        folder = run_folder(runs_dir, seed, name, records)
        if cfg.model == "psnr" and _tag(folder / "meta.json").get("status") == "complete":
            frames.append(_run_sweep(folder, f"seed {seed}, {name}", name, datasets, root))
    frames = [f for f in frames if f is not None]
    from .extent import COLUMNS
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _run_sweep(folder, label, name, datasets, root):
    """One run's extent sweep, from its cache when the cache belongs to its generator and ``datasets``."""
    from . import extent
    from .evaluate import write_csv
    weights = (folder / GENERATOR_FILE).exists()
    tag = {"generator_sha256": _generator_sha(folder), "datasets": list(datasets)}
    if (folder / "extent.csv").exists() and _tag(folder / "extent.json") == tag:
        return pd.read_csv(folder / "extent.csv")
    if not weights:
        print(f"extent sweep: {label}: its weights are gone and its record has no sweep on {list(datasets)}: "
              "left out", flush=True)
        return None
    print(f"extent sweep: {label}", flush=True)
    df = extent.probe(folder / GENERATOR_FILE, name, datasets, root)
    write_csv(df, folder / "extent.csv", decimals=6)
    atomic_write(folder / "extent.json", lambda f: f.write(json.dumps(tag, indent=1).encode()))
    return df


def loss_terms(grid, runs_dir, records=None):
    """What the adversarial term did in each finished run with a discriminator: its share of G's gradient
    norm at the first and last validation of the main phase, and the final mean D(G(z))."""
    from .report import loss_accounting
    rows = []
    for seed in grid["seeds"]:
        for name in runnable(grid):
            folder = run_folder(runs_dir, seed, name, records)
            if not (folder / "metrics.csv").exists():
                continue
            acc = loss_accounting(folder)
            if "adversarial" in acc:
                rows.append(dict(variant=name, seed=seed, adversarial_share_first=acc["adversarial"][0],
                                 adversarial_share_last=acc["adversarial"][1], d_of_g=acc["g_score"]))
    return pd.DataFrame(rows, columns=["variant", "seed", "adversarial_share_first", "adversarial_share_last",
                                       "d_of_g"])   # the columns also when no such run has finished


def _cli(args):
    from .config import parse_overrides
    grid = load_grid(args.grid)
    overrides = parse_overrides(args.set)
    seeds = args.seeds or grid["seeds"]
    if args.jobs > 1:       # one process per group of seeds (a seed's runs share warm-ups, seeds share nothing)
        return _parallel(args, seeds)
    measures = None
    if args.perceptual_datasets:
        from .perceptual import default_perceptual
        from .data import project_path
        measures = default_perceptual(args.niqe_set, args.data_root, cache=project_path("cache"))
    st = run_grid(grid, args.runs, seeds=seeds, variants=args.variants, root=args.data_root,
                  datasets=args.datasets, overrides=overrides, progress=args.progress, perceptual=measures,
                  perceptual_datasets=args.perceptual_datasets or (), score=not args.no_score,
                  records=args.records)
    print(st.to_string(index=False))
    return 0


def _parallel(args, seeds):
    """Run the grid as ``args.jobs`` processes at once (e.g. several small runs on one GPU), seeds dealt out
    round-robin; each process writes its log to ``<runs>/logs/job<k>.log``. Returns the worst exit code."""
    import subprocess
    import sys
    logs = Path(args.runs) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for k in range(min(args.jobs, len(seeds))):
        cmd = [sys.executable, "-m", "srlib", "ablation", args.grid, "--runs", args.runs, "--seeds",
               *map(str, seeds[k::args.jobs]), "--datasets", *args.datasets]
        cmd += (["--variants", *args.variants] if args.variants else []) + (["--set", *args.set] if args.set else [])
        cmd += ["--data-root", args.data_root] if args.data_root else []
        cmd += ["--no-score"] if args.no_score else []
        cmd += ["--records", args.records] if getattr(args, "records", None) else []
        if args.perceptual_datasets:
            cmd += ["--perceptual-datasets", *args.perceptual_datasets, "--niqe-set", args.niqe_set]
        log = open(logs / f"job{k}.log", "w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        print(f"job {k}: seeds {seeds[k::args.jobs]} -> {logs / f'job{k}.log'}", flush=True)
    codes = []
    for p, log in procs:
        codes.append(p.wait())
        log.close()
    print(f"ablation: jobs finished with exit codes {codes}")
    return next((c if c > 0 else 1 for c in codes if c), 0)     # a job killed by a signal has a negative code
