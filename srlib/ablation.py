"""The ablation grid as data (configs/ablation.yaml): loading, validation, per-seed configs, parameter counts.

A grid has ``common`` (a training profile and TrainConfig overrides shared by every run), ``seeds``,
``reference`` (the variant every other is compared with), ``primary_endpoint`` (declared before the runs:
variant, metric, datasets, pooled, optional level) and ``variants``: name -> TrainConfig overrides over
``common`` (``model`` included, default 'attention'), plus free-text ``note`` and ``todo`` (a variant that
cannot run yet; it is listed but has no configs). The statistics are in :mod:`srlib.stats`.
"""
from pathlib import Path

import pandas as pd

from . import archs
from .train import build_generator, make_config

GRID_KEYS = {"common", "seeds", "reference", "primary_endpoint", "variants"}
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
    if set(grid) != GRID_KEYS:
        raise ValueError(f"{path}: grid keys must be {sorted(GRID_KEYS)}; missing {sorted(GRID_KEYS - set(grid))}, "
                         f"unknown {sorted(set(grid) - GRID_KEYS)}")
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
