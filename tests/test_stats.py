import math
import time

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from srlib.stats import (detectable_difference, hierarchical_bootstrap, holm, paired_differences, pool_datasets,
                         seed_t_interval, seeds_needed)


def _diffs(x, variant="v", dataset="Set5", metric="psnr"):
    """Difference rows from a (seeds, images) array."""
    x = np.asarray(x, dtype=float)
    return pd.DataFrame([dict(variant=variant, seed=s, dataset=dataset, image=f"im{i}", metric=metric, diff=x[s, i])
                         for s in range(x.shape[0]) for i in range(x.shape[1])])


def _scores(variants=("ref", "a"), seeds=(0, 1), images=("x", "y"), value=lambda v, s, i: 0.0):
    return pd.DataFrame([dict(variant=v, seed=s, dataset="Set5", image=i, metric="psnr", value=value(v, s, i))
                         for v in variants for s in seeds for i in images])


def test_paired_differences():
    df = _scores(variants=("ref", "a", "b"), value=lambda v, s, i: {"ref": 30, "a": 31, "b": 29.5}[v] + s)
    d = paired_differences(df, "ref")
    assert list(d.columns) == ["variant", "seed", "dataset", "image", "metric", "diff"]
    assert list(d["variant"].unique()) == ["a", "b"]
    assert np.allclose(d.loc[d.variant == "a", "diff"], 1.0) and np.allclose(d.loc[d.variant == "b", "diff"], -0.5)


def test_pairing_errors():
    df = _scores()
    with pytest.raises(ValueError, match="only in 'a'.*'z'"):      # a variant's image the reference lacks
        paired_differences(pd.concat([df, _scores(variants=("a",), images=("z",))]), "ref")
    with pytest.raises(ValueError, match="1 only in 'ref'"):        # a missing seed/image of the variant
        paired_differences(df.iloc[:-1], "ref")
    with pytest.raises(ValueError, match="duplicate"):
        paired_differences(pd.concat([df, df.iloc[:1]]), "ref")
    with pytest.raises(ValueError, match="reference 'nope'"):
        paired_differences(df, "nope")
    with pytest.raises(ValueError, match="lack columns"):
        paired_differences(df.drop(columns="seed"), "ref")


def test_seed_t_interval_hand_computation():
    # per-seed means 1, 2, 3 (images spread around them): mean 2, sd 1, half-width t(0.975, 2) / sqrt(3)
    x = np.array([[0.5, 1.5], [1.0, 3.0], [3.0, 3.0]])
    r = seed_t_interval(_diffs(x)).iloc[0]
    half = st.t.ppf(0.975, 2) * 1 / math.sqrt(3)
    assert r["mean"] == pytest.approx(2.0)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - half, 2 + half))
    assert (r["seeds"], r["images"]) == (3, 2)
    assert r["p"] == pytest.approx(2 * st.t.sf(2 / (1 / math.sqrt(3)), 2))


def test_seed_t_interval_coverage():
    # 400 simulated studies (5 seeds x 20 images, seed effect sd 0.1): the 95% interval covers the truth ~95%
    rng = np.random.default_rng(1)
    true, reps, seeds, images = 0.3, 400, 5, 20
    x = true + rng.normal(0, 0.1, (reps, seeds, 1)) + rng.normal(0, 0.5, (reps, seeds, images))
    d = pd.concat([_diffs(x[r], variant=r) for r in range(reps)], ignore_index=True)
    t = seed_t_interval(d)
    cover = ((t.ci_low <= true) & (true <= t.ci_high)).mean()
    assert abs(cover - 0.95) < 3 * math.sqrt(0.95 * 0.05 / reps)


def test_bootstrap_known_answers():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, (3, 100))
    noise -= noise.mean(axis=1, keepdims=True)                        # every seed's mean is exactly its offset
    offsets = np.array([[-0.02], [0.0], [0.02]])
    big = hierarchical_bootstrap(_diffs(0.5 + offsets + noise), rng=0).iloc[0]
    assert big["mean"] == pytest.approx(0.5)
    assert big["ci_low"] < 0.5 < big["ci_high"]                        # contains the true mean
    assert big["ci_low"] > 0                                           # large effect, small noise: excludes 0
    zero = hierarchical_bootstrap(_diffs(offsets + noise), rng=0).iloc[0]
    assert zero["ci_low"] < 0 < zero["ci_high"]                        # zero effect: includes 0
    assert list(zero[["seeds", "images"]]) == [3, 100]
    const = hierarchical_bootstrap(_diffs(np.full((3, 4), 0.25))).iloc[0]
    assert (const["ci_low"], const["ci_high"]) == pytest.approx((0.25, 0.25))
    again = hierarchical_bootstrap(_diffs(offsets + noise), rng=0).iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (zero["ci_low"], zero["ci_high"])   # reproducible


def test_bootstrap_is_vectorized_and_needs_balanced_images():
    d = _diffs(np.random.default_rng(0).normal(size=(3, 100)))
    start = time.perf_counter()
    hierarchical_bootstrap(d, n_boot=2000)
    assert time.perf_counter() - start < 2.0                           # about 0.05 s; a loop would take seconds
    with pytest.raises(ValueError, match="same images"):
        hierarchical_bootstrap(d.iloc[:-1])


def test_pool_datasets_weights_each_image_once():
    d = pd.concat([_diffs(np.zeros((2, 1)), dataset="A"), _diffs(np.ones((2, 3)), dataset="B")])
    pooled = pool_datasets(d, ["A", "B"])
    assert set(pooled["dataset"]) == {"pooled"} and pooled["image"].nunique() == 4
    r = seed_t_interval(pooled).iloc[0]
    assert r["mean"] == pytest.approx(0.75) and r["images"] == 4
    with pytest.raises(ValueError, match="no scores for"):
        pool_datasets(d, ["A", "C"])


def test_holm():
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([0.5, np.nan])[1]) and holm([0.5, np.nan])[0] == 0.5
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_detectable_difference():
    assert detectable_difference(0.2, 3) == pytest.approx((st.t.ppf(0.975, 2) + st.t.ppf(0.8, 2)) * 0.2 / math.sqrt(3))
    assert detectable_difference(1.0, 3) == pytest.approx(3.0965, abs=1e-4)
    exact = detectable_difference(1.0, 3, exact=True)
    nc = exact * math.sqrt(3)
    assert st.nct.sf(st.t.ppf(0.975, 2), 2, nc) + st.nct.cdf(-st.t.ppf(0.975, 2), 2, nc) == pytest.approx(0.8)
    assert exact > detectable_difference(1.0, 3)                        # the closed form is a little optimistic
    assert detectable_difference(1.0, 10) < detectable_difference(1.0, 3)
    with pytest.raises(ValueError):
        detectable_difference(1.0, 1)


def test_seeds_needed_inverts_detectable_difference():
    for sd in (0.1, 0.45):
        for n in (2, 3, 5, 12):
            d = detectable_difference(sd, n, exact=True)
            assert seeds_needed(sd, d * 1.0001) == n            # n seeds detect d; n - 1 do not
    # the normal approximation's ((z_0.975 + z_0.8) sd / d)^2 is close for many seeds
    assert abs(seeds_needed(0.45, 0.1) - (2.8016 * 0.45 / 0.1) ** 2) < 3
    assert seeds_needed(0.0, 0.1) == 2
    with pytest.raises(ValueError):
        seeds_needed(0.45, 0.0)
