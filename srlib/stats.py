"""Statistics of a paired, seeded ablation: per-image score differences to a reference, intervals over seeds.

Design. Every variant is trained once per seed, with the same seeds for every variant (seed ``s`` fixes the
initial weights and the crops and their order), and each run is scored per image on the benchmarks. Scores
come as a long DataFrame with columns variant, seed, dataset, image, metric ('psnr', 'ssim', ...) and value.

- A variant's effect is paired (:func:`paired_differences`): for each (seed, dataset, image, metric) its
  score minus the reference variant's score, so image difficulty and the seed's shared randomness cancel.
- The unit of replication is the seed (one training run). The images of a run are repeated measurements
  of that run, not independent replicates: intervals that treat images as independent are far too narrow.
  :func:`seed_t_interval` (the primary method) therefore averages over images within each seed and takes a
  Student t interval over the per-seed means; :func:`hierarchical_bootstrap` (secondary) resamples seeds,
  then images within them.
- :func:`pool_datasets` pools the benchmarks for the primary endpoint (each image counts once).
- Multiplicity: one primary endpoint, declared in configs/ablation_grid.yaml before the runs, is tested alone at
  the stated level. Every other comparison is exploratory: report how many there are (``m``) and their
  Holm-adjusted p-values (:func:`holm`).
- :func:`detectable_difference` sizes the study: the smallest effect a t-test over a given number of
  seeds detects, from the spread of per-seed mean differences in a pilot.
"""
import numpy as np
import pandas as pd
from scipy import stats

KEYS = ["seed", "dataset", "image", "metric"]   # what pairs a variant's score with the reference's
GROUP = ["variant", "dataset", "metric"]        # one interval per group
INTERVAL_COLUMNS = GROUP + ["mean", "ci_low", "ci_high", "seeds", "images"]


def paired_differences(df, reference):
    """Per-image differences ``variant - reference`` for every variant other than ``reference``.

    ``df`` has columns variant, seed, dataset, image, metric, value, one row per
    (variant, seed, dataset, image, metric). Pairs are matched on (seed, dataset, image, metric); every
    variant must hold exactly the reference's keys. Returns a DataFrame with columns variant, seed, dataset,
    image, metric, diff, variants in order of appearance.

    Raises ValueError for missing columns, duplicate rows, an absent reference, or keys of a variant or of
    the reference that have no partner (the message names them).
    """
    missing = {"variant", *KEYS, "value"} - set(df.columns)
    if missing:
        raise ValueError(f"scores lack columns {sorted(missing)}")
    dup = df[df.duplicated(["variant"] + KEYS, keep=False)]
    if len(dup):
        raise ValueError(f"{len(dup)} duplicate score rows, e.g. {_examples(dup, ['variant'] + KEYS)}")
    ref = df.loc[df["variant"] == reference, KEYS + ["value"]]
    if ref.empty:
        raise ValueError(f"reference {reference!r} is not among the variants {list(df['variant'].unique())}")
    out = []
    for variant, g in df[df["variant"] != reference].groupby("variant", sort=False):
        m = g[KEYS + ["value"]].merge(ref, on=KEYS, how="outer", suffixes=("", "_ref"), indicator=True)
        only_v, only_r = m[m["_merge"] == "left_only"], m[m["_merge"] == "right_only"]
        if len(only_v) or len(only_r):
            raise ValueError(f"variant {variant!r} does not pair with reference {reference!r} on {KEYS}: "
                             f"{len(only_v)} keys only in {variant!r} {_examples(only_v, KEYS)}, "
                             f"{len(only_r)} only in {reference!r} {_examples(only_r, KEYS)}")
        out.append(m[KEYS].assign(variant=variant, diff=m["value"] - m["value_ref"]))
    if not out:
        return pd.DataFrame(columns=["variant"] + KEYS + ["diff"])
    return pd.concat(out, ignore_index=True)[["variant"] + KEYS + ["diff"]]


def _examples(rows, cols, k=3):
    return [tuple(r) for r in rows[cols].head(k).itertuples(index=False)]


def seed_means(diffs):
    """Mean difference over images per (variant, dataset, metric, seed): columns as GROUP, seed, diff, images."""
    return (diffs.groupby(GROUP + ["seed"], sort=False)
            .agg(diff=("diff", "mean"), images=("image", "count")).reset_index())


def seed_t_interval(diffs, level=0.95):
    """Student t interval over seeds for each (variant, dataset, metric) of :func:`paired_differences` rows.

    Per seed, the mean difference over that seed's images (``d_s``); then over the ``n`` seeds
    ``mean = mean(d_s)``, ``se = sd(d_s, ddof=1) / sqrt(n)`` and ``mean +- t_{(1+level)/2, n-1} * se``.
    Column ``p`` is the two-sided p-value of the one-sample t-test of ``mean(d_s) = 0`` (n - 1 degrees of
    freedom). Images only reduce the noise of each ``d_s``; they add no degrees of freedom. With one seed
    the interval and p are NaN.

    Returns a DataFrame with columns variant, dataset, metric, mean, ci_low, ci_high, seeds (n), images
    (distinct images), p.
    """
    images = diffs.groupby(GROUP, sort=False)["image"].nunique()
    rows = []
    for key, g in seed_means(diffs).groupby(GROUP, sort=False):
        d = g["diff"].to_numpy(dtype=float)
        n, mean = len(d), float(d.mean())
        low = high = p = np.nan
        if n > 1:
            se = d.std(ddof=1) / np.sqrt(n)
            half = stats.t.ppf((1 + level) / 2, n - 1) * se
            low, high = mean - half, mean + half
            with np.errstate(divide="ignore", invalid="ignore"):
                p = float(2 * stats.t.sf(abs(mean) / se, n - 1))
        rows.append(dict(zip(GROUP, key), mean=mean, ci_low=low, ci_high=high, seeds=n, images=images[key], p=p))
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS + ["p"])


def hierarchical_bootstrap(diffs, n_boot=2000, level=0.95, rng=0):
    """Two-stage percentile bootstrap for each (variant, dataset, metric) of :func:`paired_differences` rows.

    Each group is a table of differences ``x[s, i]`` (seeds x images; every seed must hold the same images).
    One resample draws ``n_seeds`` seeds with replacement, then, independently for each drawn seed,
    ``n_images`` images with replacement from that seed's row; its statistic is the mean of the drawn
    values (the mean over seeds of the per-seed image means). The interval is the ``(1 - level) / 2`` and
    ``(1 + level) / 2`` quantiles of ``n_boot`` such statistics (numpy's linear interpolation); ``mean`` is
    the observed grand mean. ``rng`` is a seed or a numpy Generator; groups draw from it in turn.

    With few seeds (3 seeds give 10 distinct seed multisets) the seed stage is coarse and the interval
    tends to be narrower than the t interval's; :func:`seed_t_interval` is the primary method.

    Returns a DataFrame with columns variant, dataset, metric, mean, ci_low, ci_high, seeds, images.
    """
    rng = np.random.default_rng(rng)
    q = [(1 - level) / 2, (1 + level) / 2]
    rows = []
    for key, g in diffs.groupby(GROUP, sort=False):
        table = g.pivot(index="seed", columns="image", values="diff")
        if table.isna().to_numpy().any():
            raise ValueError(f"{dict(zip(GROUP, key))}: every seed needs the same images for the bootstrap")
        x = table.to_numpy(dtype=float)                                  # (S, I)
        n_seeds, n_images = x.shape
        s = rng.integers(n_seeds, size=(n_boot, n_seeds, 1))             # drawn seeds
        i = rng.integers(n_images, size=(n_boot, n_seeds, n_images))     # drawn images of each drawn seed
        boot = x[s, i].mean(axis=(1, 2))                                 # (n_boot,)
        low, high = np.quantile(boot, q)
        rows.append(dict(zip(GROUP, key), mean=float(x.mean()), ci_low=float(low), ci_high=float(high),
                         seeds=n_seeds, images=n_images))
    return pd.DataFrame(rows, columns=INTERVAL_COLUMNS)


def pool_datasets(diffs, datasets, name="pooled"):
    """Pool the benchmarks ``datasets`` into one dataset ``name``, each image with equal weight.

    Per-image weighting: the pooled mean is the mean over all images of the listed datasets (with Set5,
    Set14, BSD100 and Urban100: 5 + 14 + 100 + 100 = 219 images, so Set5 and Set14 carry 19/219 of the
    weight). Equal weight per dataset would let Set5's 5 images count as much as Urban100's 100 and make
    the noisiest mean dominate. Images are renamed ``dataset/image`` so they stay distinct; the result
    goes to :func:`seed_t_interval` or :func:`hierarchical_bootstrap` (whose image stage then resamples
    the pooled images, not stratified by dataset).

    Raises ValueError when a (variant, metric) lacks one of ``datasets``.
    """
    datasets = list(datasets)
    sel = diffs[diffs["dataset"].isin(datasets)]
    for (variant, metric), g in diffs.groupby(["variant", "metric"], sort=False):
        absent = [d for d in datasets if d not in set(g["dataset"])]
        if absent:
            raise ValueError(f"variant {variant!r}, metric {metric!r}: no scores for {absent}")
    return sel.assign(image=sel["dataset"].astype(str) + "/" + sel["image"].astype(str), dataset=name)


def holm(pvalues):
    """Holm's step-down adjusted p-values (family-wise error control), in the input's order.

    With the ``m`` non-NaN p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of ``p_(k)`` is
    ``min(1, max_{j <= k} (m - j + 1) p_(j))``; NaN stays NaN. A comparison is significant at level alpha
    when its adjusted p-value is <= alpha. Use it for the exploratory comparisons and state ``m`` with
    them; the primary endpoint is not part of the family.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    order = np.argsort(q, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * q[order]))
    out[ok] = adjusted
    return out


def detectable_difference(sd_of_seed_means, n_seeds, level=0.95, power=0.8, exact=False):
    """Smallest true mean paired difference that a two-sided one-sample t-test over seeds detects.

    ``sd_of_seed_means`` is the standard deviation across seeds of the per-seed mean difference (variant
    minus reference, averaged over images), from a pilot. If the pilot only gives the spread of one
    variant's per-seed means, ``sqrt(2)`` times it is the value for independent runs (pairing on the seed
    can only lower it when the two variants' seed effects correlate positively).

    Closed form (``exact=False``), with ``n = n_seeds``:
    ``(t_{(1+level)/2, n-1} + t_{power, n-1}) * sd / sqrt(n)``. It ignores the skew of the noncentral t and
    the far rejection tail, so at small n its true power is a little below ``power`` (0.77 for n = 3, 0.78
    for n = 4, 0.79 for n = 5 at power 0.8). ``exact=True`` solves instead for the difference whose
    power, from the noncentral t with noncentrality ``delta * sqrt(n) / sd``, equals ``power``.
    """
    sd, n = float(sd_of_seed_means), int(n_seeds)
    if n < 2:
        raise ValueError(f"a t-test over seeds needs at least 2 seeds, got {n}")
    if sd < 0 or not 0 < level < 1 or not 0 < power < 1:
        raise ValueError(f"need sd >= 0 and level, power in (0, 1); got {sd}, {level}, {power}")
    df, crit = n - 1, stats.t.ppf((1 + level) / 2, n - 1)
    delta = (crit + stats.t.ppf(power, df)) * sd / np.sqrt(n)
    if exact and sd > 0:
        from scipy.optimize import brentq

        def gap(d):
            nc = d * np.sqrt(n) / sd
            far_tail = np.nan_to_num(stats.nct.cdf(-crit, df, nc))   # negligible; scipy may give NaN
            return stats.nct.sf(crit, df, nc) + far_tail - power
        delta = brentq(gap, 0.0, 2 * delta)
    return float(delta)


def seeds_needed(sd_of_seed_means, difference, level=0.95, power=0.8, limit=100_000):
    """Fewest seeds (at least 2) whose t-test detects ``difference`` with ``power``: the smallest ``n`` with
    ``detectable_difference(sd, n, level, power, exact=True) <= difference``, found by bisection (the
    detectable difference falls as ``n`` grows). ValueError beyond ``limit`` seeds."""
    sd, target = float(sd_of_seed_means), float(difference)
    if target <= 0:
        raise ValueError(f"need a positive difference, got {difference}")

    def enough(n):
        return detectable_difference(sd, n, level, power, exact=True) <= target
    if not enough(limit):
        raise ValueError(f"more than {limit} seeds needed to detect {target} at sd {sd}")
    lo, hi = 1, limit                   # enough(hi); lo is below the answer (n = 1 has no t-test)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return hi
