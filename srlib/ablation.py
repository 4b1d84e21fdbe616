"""The ablation grid as data (configs/ablation.yaml): loading, validation, per-seed configs, parameter counts.

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
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from . import archs, stats
from .data import BENCHMARKS
from .infer import GENERATOR_FILE
from .io import atomic_write
from .train import build_generator, make_config, train

GRID_KEYS = {"common", "seeds", "reference", "primary_endpoint", "variants"}
OPTIONAL_KEYS = {"contrasts"}
ENDPOINT_KEYS = {"variant", "metric", "datasets", "pooled", "level"}
TEXT_KEYS = ("note", "todo")                   # a variant's keys that are not TrainConfig fields


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
    for name in variants:
        try:
            cfg = _config(grid, name, seeds[0])
            build_generator(cfg)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: variant {name!r}: {e}") from None
    return grid


def _config(grid, name, seed):
    common = dict(grid["common"] or {})
    profile = common.pop("profile", "quick")
    overrides = {k: v for k, v in (grid["variants"][name] or {}).items() if k not in TEXT_KEYS}
    model = overrides.pop("model", "attention")
    return make_config(model, profile, **{**common, **overrides, "seed": seed})


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


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def score_run(folder, datasets=BENCHMARKS, root=None, progress=False):
    """Per-image standard-protocol scores of a run's generator on ``datasets`` (DataFrame: dataset, image,
    psnr, ssim), cached in ``folder/scores.csv`` with ``scores.json`` (generator sha256, datasets); the cache
    is used only while both match."""
    from .evaluate import evaluate, write_csv
    folder, datasets = Path(folder), list(datasets)
    tag = {"generator_sha256": _sha256(folder / GENERATOR_FILE), "datasets": datasets}
    csv, side = folder / "scores.csv", folder / "scores.json"
    if csv.exists() and side.exists() and json.loads(side.read_text()) == tag:
        return pd.read_csv(csv)
    df = evaluate(str(folder / GENERATOR_FILE), datasets, root, protocols=("standard",), progress=progress)
    df = df.drop(columns=["method", "protocol"])
    write_csv(df, csv, decimals=6)
    atomic_write(side, lambda f: f.write(json.dumps(tag, indent=1).encode()))   # after the CSV: a crash
    return df                                                                   # between them rescoring


def run_grid(grid, runs_dir, seeds=None, variants=None, root=None, datasets=BENCHMARKS, overrides=None,
             progress=False):
    """Train and score every (seed, variant) of ``grid`` (a dict from :func:`load_grid`) that is not done,
    seed by seed (so that a stopped grid leaves whole seeds), variants in file order. ``seeds``/``variants``
    restrict it; ``overrides`` go over ``common`` (:func:`grid_overrides`). Returns :func:`status`."""
    grid = grid_overrides(grid, overrides)
    names = [v for v in runnable(grid) if variants is None or v in variants]
    for seed in (grid["seeds"] if seeds is None else seeds):
        for name in names:
            cfg = _config(grid, name, seed)
            cfg.warmup_dir, cfg.data_root, cfg.progress = str(Path(runs_dir) / "warmup"), root, progress
            folder = run_dir(runs_dir, seed, name)
            print(f"ablation: seed {seed}, {name}", flush=True)
            train(cfg, folder)
            score_run(folder, datasets, root)
    return status(grid, runs_dir)


def status(grid, runs_dir):
    """One row per (seed, variant): trained (complete), scored, train_seconds (this run's own steps; the
    shared warm-up is counted once, in its own folder), cpu, device, precision."""
    rows = []
    for seed in grid["seeds"]:
        for name in runnable(grid):
            folder = run_dir(runs_dir, seed, name)
            meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").exists() else {}
            rows.append(dict(seed=seed, variant=name, trained=meta.get("status") == "complete",
                             scored=(folder / "scores.json").exists(), train_seconds=meta.get("train_seconds"),
                             cpu=meta.get("cpu"), device=meta.get("device"), precision=meta.get("precision")))
    return pd.DataFrame(rows)


def collect_scores(grid, runs_dir, metrics=("psnr", "ssim")):
    """The scores of the finished runs as the long table of :mod:`srlib.stats` (variant, seed, dataset,
    image, metric, value), restricted to seeds at which every runnable variant is scored, so that every
    difference is paired. Returns (scores, complete seeds)."""
    st = status(grid, runs_dir)
    complete = [s for s, g in st.groupby("seed", sort=False) if g["scored"].all()]
    frames = []
    for seed in complete:
        for name in runnable(grid):
            df = pd.read_csv(run_dir(runs_dir, seed, name) / "scores.csv")
            long = df.melt(id_vars=["dataset", "image"], value_vars=list(metrics), var_name="metric")
            frames.append(long.assign(variant=name, seed=seed))
    cols = ["variant", "seed", "dataset", "image", "metric", "value"]
    scores = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return scores, complete


def analyze(grid, scores, level=None):
    """The ablation table: every variant against the reference, and every contrast, per benchmark and pooled
    over the primary endpoint's datasets, for each metric: mean difference, t interval over seeds (``level``,
    default the endpoint's), seeds, images, p. Columns ``comparison`` ('variant - reference'), ``primary``
    (the declared endpoint's row) and ``p_holm`` (Holm over all other rows of the same metric: the
    exploratory family; ``m`` is its size)."""
    end = grid["primary_endpoint"]
    level = level or end.get("level", 0.95)
    pairs = [(v, grid["reference"]) for v in runnable(grid) if v != grid["reference"]]
    pairs += [tuple(p) for p in grid.get("contrasts", []) if all(v in runnable(grid) for v in p)]
    frames = []
    for variant, reference in pairs:
        sub = scores[scores["variant"].isin([variant, reference])]
        diffs = stats.paired_differences(sub, reference)
        pooled = stats.pool_datasets(diffs[diffs["dataset"].isin(end["datasets"])], end["datasets"])
        table = stats.seed_t_interval(pd.concat([diffs, pooled], ignore_index=True), level)
        frames.append(table.assign(reference=reference))
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out.insert(0, "comparison", out["variant"] + " - " + out["reference"])
    out["primary"] = ((out["variant"] == end["variant"]) & (out["reference"] == grid["reference"])
                      & (out["dataset"] == ("pooled" if end.get("pooled", True) else end["datasets"][0]))
                      & (out["metric"] == end["metric"]))
    out["p_holm"] = np.nan
    out["m"] = 0
    for _metric, g in out[~out["primary"]].groupby("metric"):
        out.loc[g.index, "p_holm"] = stats.holm(g["p"].to_numpy())
        out.loc[g.index, "m"] = int(g["p"].notna().sum())
    return out


def _cli(args):
    from .train import parse_overrides
    grid = load_grid(args.grid)
    overrides = parse_overrides(args.set)
    st = run_grid(grid, args.runs, seeds=args.seeds, variants=args.variants, root=args.data_root,
                  datasets=args.datasets, overrides=overrides, progress=args.progress)
    print(st.to_string(index=False))
    return 0


def add_cli(sub):
    a = sub.add_parser("ablation", help="train and score the runs of an ablation grid (resumable)")
    a.add_argument("grid", help="grid file, e.g. configs/ablation.yaml")
    a.add_argument("--runs", default="runs/ablation", help="runs folder (default: runs/ablation)")
    a.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the grid's seeds")
    a.add_argument("--variants", nargs="+", default=None, help="default: every runnable variant")
    a.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    a.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data")
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override the grid's common fields")
    a.add_argument("--progress", action="store_true", help="progress bars")
    a.set_defaults(func=_cli)
