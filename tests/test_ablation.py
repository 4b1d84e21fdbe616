import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srlib import ablation, archs, stats
from srlib.ablation import load_grid, parameter_counts, runnable, variant_configs
from srlib.archs import SRGANGenerator, count_parameters
from srlib.perceptual import Perceptual
from srlib.train import TrainConfig, build_generator, warmup_run_dir

GRID = Path(__file__).resolve().parents[1] / "configs" / "ablation_grid.yaml"


@pytest.fixture(scope="module")
def grid():
    return load_grid(GRID)


def test_grid_builds_every_variant(grid):
    assert grid["reference"] == "paper_block" and grid["seeds"] == [0, 1, 2, 3, 4]
    assert grid["primary_endpoint"]["datasets"] == ["Set5", "Set14", "BSD100", "Urban100"]
    assert runnable(grid) == list(grid["variants"])          # no variant is left as todo
    configs = variant_configs(grid, seed=2)
    assert set(configs) == set(runnable(grid))
    assert all(isinstance(c, TrainConfig) and c.seed == 2 for c in configs.values())
    assert configs["paper_block"].model == "psnr" and configs["paper_loss"].model == "attention"
    assert configs["srgan_model"].arch == "srgan"
    # the repaired blocks: the paper's block with reflect padding, or with each pixel normalized over channels
    assert build_generator(configs["reflect_padding"])[0].config["kwargs"]["padding"] == "reflect"
    assert any(isinstance(m, archs.PixelNorm) for m in build_generator(configs["pixel_norm"])[0].modules())
    assert (configs["adversarial_control"].adversarial, configs["adversarial_control"].adv_weight) == \
        ("nonsaturating", 5e-3)
    # one factor at a time: every variant's config differs from the reference only in these fields
    ref = vars(configs["paper_block"])
    for name, c in configs.items():
        assert {k for k, v in vars(c).items() if v != ref[k]} <= {"model", "generator", "n_feats", "adversarial",
                                                                  "adv_weight"}, name
    # the loss variants continue the reference's own warm-up at each seed: they differ only in the main phase
    for name in ("paper_loss", "adversarial_control"):
        a, b = (dataclasses.replace(configs[n], warmup_dir="w") for n in (name, "paper_block"))
        assert warmup_run_dir(a) == warmup_run_dir(b)
    # srgan_block is SRGAN's generator in the attention skeleton: it shares srgan_model's warm-up (the same
    # network, initialisation and L1 training); capacity_control (SRGAN's block at 72 channels) has its own
    warm = {n: warmup_run_dir(dataclasses.replace(c, warmup_dir="w")) for n, c in configs.items()}
    assert warm["srgan_block"] == warm["srgan_model"] and warm["srgan_model"].name.startswith("srgan-")
    assert len({warm["capacity_control"], warm["srgan_model"], warm["paper_block"]}) == 3
    other = dataclasses.replace(variant_configs(grid, seed=1)["paper_block"], warmup_dir="w")
    assert warmup_run_dir(other) != warmup_run_dir(dataclasses.replace(configs["paper_block"], warmup_dir="w"))


def test_parameter_counts(grid):
    counts = parameter_counts(grid).set_index("variant")["parameters"]
    assert counts["paper_block"] == 922_404
    assert abs(counts["capacity_control"] / counts["paper_block"] - 1) < 0.03
    assert counts["srgan_block"] == counts["srgan_model"] == 734_219
    # srgan_block is SRGAN's generator layer for layer (same parameter shapes in the same order)
    block = build_generator(variant_configs(grid, 0)["srgan_block"])[0]
    srgan = SRGANGenerator(n_blocks=5, n_feats=64)
    assert count_parameters(srgan) == 734_219
    assert [p.shape for p in block.parameters()] == [p.shape for p in srgan.parameters()]


def test_grid_errors(tmp_path):
    text = GRID.read_text()
    for old, new, match in [("    n_feats: 72", "    n_feets: 72", "unknown config keys"),
                            ("norm: none, attention: channel", "norm: foo, attention: channel", "norm must be"),
                            ("reference: paper_block", "reference: nope", "reference"),
                            ("  variant: srgan_block", "  variant: paper_block", "primary_endpoint"),
                            ("seeds: [0, 1, 2, 3, 4]", "seeds: [0, 0]", "seeds")]:
        path = tmp_path / "grid.yaml"
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=match):
            load_grid(path)


def _synthetic(grid, seeds=(0, 1, 2), effects=None, rng=0):
    """Scores of every runnable variant: image difficulty + a seed effect shared by all variants + the
    variant's per-seed offset ``effects[variant][seed]`` (default 0)."""
    rng = np.random.default_rng(rng)
    images = {"Set5": 5, "Set14": 14, "BSD100": 10, "Urban100": 10}
    base = {(d, i): rng.normal(28, 2) for d, n in images.items() for i in range(n)}
    rows = []
    for v in runnable(grid):
        for s in seeds:
            shared = 0.3 * s
            for (d, i), b in base.items():
                off = (effects or {}).get(v, {}).get(s, 0.0)
                rows.append(dict(variant=v, seed=s, dataset=d, image=str(i), metric="psnr", value=b + shared + off))
    return pd.DataFrame(rows)


def test_analyze_known_answers(grid):
    effects = {"srgan_block": {0: 0.1, 1: 0.2, 2: 0.3}, "srgan_model": {0: 1.0, 1: 1.0, 2: 1.3},
               "paper_loss": {0: 0.5, 1: 0.5, 2: 0.8}}
    table = ablation.analyze(grid, _synthetic(grid, effects=effects), family_=("all", True))   # of record
    assert list(table.columns) == ablation.TABLE_COLUMNS
    prim = table[table["primary"]]
    assert len(prim) == 1 and prim.iloc[0]["comparison"] == "srgan_block - paper_block"
    row = prim.iloc[0]
    d = np.array([0.1, 0.2, 0.3])                    # the per-seed pooled differences, exactly
    half = 4.302652729911275 * d.std(ddof=1) / np.sqrt(3)
    assert row["dataset"] == "pooled" and row["mean"] == pytest.approx(0.2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.2 - half, 0.2 + half))
    assert row["seeds"] == 3 and row["images"] == 39 and np.isnan(row["p_holm"])
    # the contrast srgan_model - paper_loss: per seed 0.5, 0.5, 0.5
    c = table[(table["comparison"] == "srgan_model - paper_loss") & (table["dataset"] == "pooled")].iloc[0]
    assert c["mean"] == pytest.approx(0.5) and c["ci_high"] - c["ci_low"] == pytest.approx(0, abs=1e-9)
    # no effect: mean 0 on every dataset
    z = table[table["variant"] == "no_norm"]
    assert np.allclose(z["mean"], 0, atol=1e-9) and set(z["dataset"]) == {"Set5", "Set14", "BSD100", "Urban100",
                                                                         "pooled"}
    expl = table[~table["primary"]]
    assert (expl["m"] == expl["p"].notna().sum()).all()
    assert np.allclose(expl["p_holm"].dropna(), stats.holm(expl["p"].to_numpy())[expl["p"].notna().to_numpy()])


def test_reanalysis_family_is_the_pooled_rows(grid):
    """The declared re-analysis (configs/ablation_grid.yaml: reanalysis): Holm over the pooled row of each
    variant - reference per metric; per-set rows and the contrast are descriptive; the family of record
    (every row) is still available and larger."""
    assert ablation.family(grid) == ("pooled", False) and grid["reanalysis"]["inference"] == "calibrated"
    rng = np.random.default_rng(3)
    effects = {v: {s: float(rng.normal(0.2, 0.3)) for s in grid["seeds"][:3]} for v in runnable(grid)}
    table = ablation.analyze(grid, _synthetic(grid, effects=effects))
    fam = table[table["m"] > 0]
    assert set(fam["dataset"]) == {"pooled"} and set(fam["reference"]) == {grid["reference"]}
    assert len(fam) == len(runnable(grid)) - 2 and (fam["m"] == len(fam)).all()    # less the primary
    assert np.allclose(fam["p_holm"], stats.holm(fam["p"].to_numpy()))
    rest = table[(table["m"] == 0) & ~table["primary"]]
    assert rest["p_holm"].isna().all() and (rest["dataset"] != "pooled").sum() == len(runnable(grid)) * 4
    record = ablation.analyze(grid, _synthetic(grid, effects=effects), family_=("all", True))
    assert record["m"].max() == 5 * len(runnable(grid)) - 1


def test_absolute_scores_mean_and_sd_over_seeds(grid):
    scores = _synthetic(grid, effects={"no_norm": {0: 1.0, 1: 2.0, 2: 3.0}})
    summary, per_seed = ablation.absolute_scores(scores)
    images = scores[(scores.variant == "no_norm") & (scores.dataset == "Set5")]
    want = images.groupby("seed")["value"].mean()
    got = per_seed[(per_seed.variant == "no_norm") & (per_seed.dataset == "Set5")].set_index("seed")["value"]
    assert np.allclose(got.sort_index(), want.sort_index())
    row = summary[(summary.variant == "no_norm") & (summary.dataset == "Set5")].iloc[0]
    assert row["mean"] == pytest.approx(want.mean()) and row["sd"] == pytest.approx(want.std(ddof=1))
    pooled = summary[(summary.variant == "no_norm") & (summary.dataset == "pooled")].iloc[0]
    assert pooled["images"] == 39 and row["seeds"] == 3
    md = ablation.absolute_markdown(summary, datasets=["Set5", "Set14", "BSD100", "Urban100", "pooled"])
    line = next(x for x in md.splitlines() if x.startswith("| no_norm |"))
    assert line.split(" | ")[1] == f"{row['mean']:.2f} ± {row['sd']:.2f} (3)"


def test_grid_table1_beside_wu_and_the_published_anchors(grid):
    scores = _synthetic(grid, effects={"no_norm": {0: 1.0, 1: 2.0, 2: 3.0}})
    scores = pd.concat([scores, scores.assign(metric="ssim", value=scores["value"] / 40)], ignore_index=True)
    scores = scores[~((scores.variant == "no_norm") & (scores.dataset == "Urban100"))]   # a set not scored
    summary, _ = ablation.absolute_scores(scores)
    grid = {**grid, "variants": {**grid["variants"], "paper_block": {**grid["variants"]["paper_block"],
                                                                      "label": "the baseline"}}}
    status = pd.DataFrame([dict(seed=s, variant=v, vgg=vgg) for s in (0, 1, 2, 3)
                           for v, vgg in (("paper_block", "not used"), ("srgan_model", f"dropped {s // 2}"))])
    md = ablation.grid_table1_markdown(summary, grid, [0, 1, 2], status=status)
    lines = md.splitlines()
    assert "at 500 generator steps" in lines[0] and "mean over 3 seeds (0, 1, 2;" in lines[0]
    assert lines[2] == "| model | protocol | Set5 | Set14 | BSD100 | Urban100 |"
    row = summary.set_index(["variant", "metric", "dataset"])
    psnr, ssim = row.loc[("no_norm", "psnr", "Set5")], row.loc[("no_norm", "ssim", "Set5")]
    no_norm = next(x for x in lines if x.startswith("| no_norm |"))
    assert no_norm.split(" | ")[1:3] == ["standard", f"{psnr['mean']:.2f} ± {psnr['sd']:.2f} / {ssim['mean']:.4f}"]
    assert no_norm.endswith("| – |")                                    # no Urban100 scores: no cell
    assert any(x.startswith("| paper_block: the baseline | standard | ") for x in lines)
    assert "| *New model (Wu, Table 1)* | unstated | 26.73 / 0.84 | 23.57 / 0.73 | 23.70 / 0.69 | 21.33 / 0.72 |" \
        in lines
    assert "| *SRGAN (Ledig et al., Table 2)* | standard | 29.40 / 0.8472 | 26.02 / 0.7397 | 25.16 / 0.6688 | – |" \
        in lines
    assert lines[-1] == "- srgan_model: SRGAN's perceptual term (VGG16): dropped 0; dropped 1"   # seed 3 not in
    assert not any("paper_block: SRGAN's" in x for x in lines)              # 'not used' is not a note
    one, _ = ablation.absolute_scores(scores[scores.seed == 0])
    md = ablation.grid_table1_markdown(one, grid, [0])                      # one seed: no SD to show
    assert "mean over 1 seed (0;" in md and "±" not in next(x for x in md.splitlines() if x.startswith("| no_norm |"))
    assert "(425 of them a shared L1 warm-up" in md
    assert "no seed complete yet" in ablation.grid_table1_markdown(one.iloc[:0], grid, [])


def test_markdown_table(grid):
    effects = {"srgan_block": {0: 0.1, 1: 0.2, 2: 0.3}, "srgan_model": {0: 1.0, 1: 1.0, 2: 1.3},
               "paper_loss": {0: 0.5, 1: 0.5, 2: 0.8}}
    table = ablation.analyze(grid, _synthetic(grid, effects=effects))
    md = ablation.markdown(table, grid, [0, 1, 2]).splitlines()
    assert "Seeds analyzed: 3 of 5 (0, 1, 2)" in md[0] and "at 500 steps" in md[0]
    rows = md[4:]
    assert len(rows) == len(runnable(grid)) - 1 + len(grid["contrasts"])     # every comparison once
    half = 4.302652729911275 * 0.1 / np.sqrt(3)
    assert rows[0].startswith("| **srgan_block - paper_block (primary)** | "
                              f"+0.20 [{0.2 - half:+.2f}, {0.2 + half:+.2f}] | ")
    assert "(confirmatory)" in rows[0] and rows[0].endswith("|  |  |  |")        # no SSIM in these scores
    contrast = next(r for r in rows if r.startswith("| srgan_model - paper_loss |"))
    assert "+0.50 [+0.50, +0.50] | <0.001 | (descriptive)" in contrast          # outside the declared family
    assert "declared exploratory family" in md[0]
    no_effect = next(r for r in rows if r.startswith("| no_norm - paper_block |"))
    assert "+0.00 [+0.00, +0.00] | n/a | n/a (m=2)" in no_effect    # zero spread: no p; m counts the 2 with a p
    with pytest.raises(ValueError, match="primary endpoint"):
        ablation.markdown(table, grid, [0, 1, 2], metrics=("ssim",))
    empty = ablation.markdown(ablation.analyze(grid, _synthetic(grid).iloc[:0]), grid, [])
    assert "Seeds analyzed: 0 of 5 (none)" in empty and "(no seed complete yet)" in empty


def test_small_effects_get_the_decimals_their_intervals_need(grid):
    assert ablation.decimals(-0.0026, 0.0032) == 4 and ablation.decimals(0.39, 1.43) == 2      # PSNR rows
    assert ablation.decimals(0.0061, 0.0274, 4) == 4 and ablation.decimals(0.00001, 0.00007, 4) == 6
    assert ablation.decimals(0.5, 0.5) == 2 and ablation.decimals(float("nan"), 1.0) == 2
    assert ablation.decimals(-20, 20) == 2 and ablation.decimals(0, 2e-8) == 8 and ablation.decimals(0, 1e-12) == 2
    effects = {"paper_loss": {0: 0.0001, 1: 0.0031, 2: -0.0023}, "srgan_block": {0: 0.1, 1: 0.2, 2: 0.3}}
    table = ablation.analyze(grid, _synthetic(grid, effects=effects))
    row = table[(table.comparison == "paper_loss - paper_block") & (table.dataset == "pooled")].iloc[0]
    want = f"{row['mean']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
    assert 4 == ablation.decimals(row["ci_low"], row["ci_high"])
    md = ablation.markdown(table, grid, [0, 1, 2])
    line = next(x for x in md.splitlines() if x.startswith("| paper_loss - paper_block |"))
    assert want in line and "+0.00 [" not in line
    assert "| **srgan_block - paper_block (primary)** | +0.20 [" in md         # a wide interval keeps 2


def test_readme_ablation_table_is_the_results_table():
    """The README's ablation block is results/ablation.md (written by ./run_all.sh ablation), line for line."""
    top = Path(__file__).resolve().parents[1]
    md = top / "results" / "ablation.md"
    if not md.exists():
        pytest.skip("results/ablation.md not written yet")
    readme = (top / "README.md").read_text()
    start, end = "<!-- results:ablation -->\n", "\n<!-- /results:ablation -->"
    assert start in readme, "the README has no ablation block (scripts/readme_tables.py)"
    block = readme[readme.index(start) + len(start):readme.index(end)]
    assert block == md.read_text().strip(), \
        "the README's ablation table differs from results/ablation.md (python scripts/readme_tables.py --write)"


def test_restrict_and_overrides(grid):
    small = ablation.restrict(grid, ["paper_block", "srgan_block", "srgan_model"], datasets=["Set5"])
    assert runnable(small) == ["paper_block", "srgan_block", "srgan_model"] and small["contrasts"] == []
    assert small["primary_endpoint"]["datasets"] == ["Set5"] and grid["primary_endpoint"]["datasets"][0] == "Set5"
    with pytest.raises(ValueError, match="reference and the primary"):
        ablation.restrict(grid, ["paper_block", "no_norm"])
    assert variant_configs(ablation.grid_overrides(grid, {"steps": 9, "warmup_steps": 5}), 0)["no_norm"].steps == 9


SMOKE = {"train_sets": ["demo"], "tune_set": None, "val_set": "demo", "val_images": 1, "crop": 32, "batch_size": 4,
         "repeat": 4, "steps": 4, "warmup_steps": 2, "val_every": 2, "amp": "fp32", "n_blocks": 1, "n_feats": 16}


@pytest.mark.slow
def test_run_grid_trains_scores_and_reuses(grid, tmp_path):
    small = ablation.grid_overrides(ablation.restrict(grid, ["paper_block", "srgan_block", "paper_loss"],
                                                      datasets=["demo"]), SMOKE)
    small["seeds"] = [0, 1]
    measures = Perceptual()                      # the piq measures (no LPIPS backbone, no NIQE model: NaN)
    st = ablation.run_grid(small, tmp_path, datasets=["demo"], perceptual=measures, perceptual_datasets=["demo"])
    assert st["trained"].all() and st["scored"].all() and st["perceptual"].all() and len(st) == 6
    assert (st["warmup_seconds"] > 0).all()      # each run's shared warm-up, found from its meta.json
    sweep = ablation.extent_sweep(small, tmp_path, ["demo"])   # the first seed's block variants (pixel loss)
    assert set(sweep["generator"]) == {"paper_block", "srgan_block"} and set(sweep["probe"]) == {"sweep"}
    assert set(sweep[sweep.generator == "paper_block"].inference) == {"whole", "calibrated"}
    assert set(sweep[sweep.generator == "srgan_block"].inference) == {"calibrated"}   # nothing to calibrate
    assert sweep["psnr"].notna().all() and (sweep["extent"] == 0).sum() == 3            # one whole image each
    # paper_loss continued paper_block's warm-up at the same seed (one warm-up folder per seed and generator);
    # srgan_block's generator is SRGAN's, so it continued an SRGAN warm-up, loaded into the attention skeleton
    assert len(list((tmp_path / "warmup").glob("attention-*"))) == 2      # 2 seeds
    assert len(list((tmp_path / "warmup").glob("srgan-*"))) == 2
    gen = tmp_path / "seed0" / "paper_block" / "generator.safetensors"
    before = gen.stat().st_mtime_ns, (tmp_path / "seed0" / "paper_block" / "scores.csv").stat().st_mtime_ns
    ablation.run_grid(small, tmp_path, datasets=["demo"])                   # everything reused
    assert (gen.stat().st_mtime_ns, (tmp_path / "seed0" / "paper_block" / "scores.csv").stat().st_mtime_ns) == before
    scores, complete = ablation.collect_scores(small, tmp_path)
    assert complete == [0, 1] and set(scores["metric"]) == {"psnr", "ssim", "haarpsi", "gmsd", "ms_ssim"}
    table = ablation.analyze(small, scores)
    assert table["primary"].sum() == 1 and (table["seeds"] == 2).all()
    terms = ablation.loss_terms(small, tmp_path)       # the GAN run at each seed, its adversarial share in [0, 1]
    assert list(terms["variant"]) == ["paper_loss"] * 2 and list(terms["seed"]) == [0, 1]
    assert terms[["adversarial_share_first", "adversarial_share_last"]].stack().between(0, 1).all()
    assert set(table[table["dataset"] == "pooled"]["metric"]) == {"psnr", "ssim", "haarpsi", "gmsd", "ms_ssim"}
    # the pilot's summary uses the endpoint's metric only, though perceptual scores are there
    _, pilot = ablation.pilot_summary(small, {"grid": tmp_path})
    assert len(pilot) == 1 and pilot.iloc[0]["seeds"] == 2 and np.isfinite(pilot.iloc[0]["sd"])
    pair = st[st["variant"].isin(["paper_block", "srgan_block"])]     # a run's cost includes its warm-up
    assert pilot.iloc[0]["train_seconds_per_run"] == pytest.approx((pair["train_seconds"]
                                                                    + pair["warmup_seconds"]).mean())
    # with the grid's cost: 4 steps x 900 s = 1 hour per seed, so 3 hours fit 3 seeds, and 1.5 hours only 1
    _, fits = ablation.pilot_summary(small, {"grid": tmp_path}, budget={"hours": 3, "seconds_per_step": 900})
    row = fits.iloc[0]
    assert (row["steps"], row["grid_hours_per_seed"], row["seeds_in_budget"]) == (4, 1.0, 3)
    assert row["detectable_in_budget"] == pytest.approx(row["detectable_3_seeds"])
    _, aim = ablation.pilot_summary(small, {"grid": tmp_path}, target=0.1)
    assert aim.iloc[0]["seeds_for_target"] == stats.seeds_needed(aim.iloc[0]["sd"], 0.1)
    _, short = ablation.pilot_summary(small, {"grid": tmp_path}, budget={"hours": 1.5, "seconds_per_step": 900})
    assert short.iloc[0]["seeds_in_budget"] == 1 and np.isnan(short.iloc[0]["detectable_in_budget"])
    # scores of another generator (e.g. retrained, then stopped before scoring) do not count, and are redone
    side = tmp_path / "seed1" / "srgan_block" / "scores.json"
    side.write_text(side.read_text().replace('"generator_sha256": "', '"generator_sha256": "x'))
    assert ablation.collect_scores(small, tmp_path)[1] == [0]
    df = ablation.score_run(tmp_path / "seed1" / "srgan_block", ["demo"])
    assert len(df) == 6 and '"x' not in side.read_text()
    assert ablation.collect_scores(small, tmp_path)[1] == [0, 1]


def test_run_all_ablation_profile_config():
    """./run_all.sh ablation: its config gives notebook 06 every parameter it declares, with the grid's own
    budget (no overrides), and the pre-flight checks the grid's training and benchmark data."""
    from srlib.prepare import profile_datasets
    from srlib.staging import notebook_parameters
    root = GRID.parent.parent
    params = notebook_parameters(root / "configs" / "ablation.yaml", root / "notebooks" / "06_ablation.ipynb")
    assert params["grid"] == "configs/ablation_grid.yaml" and params["overrides"] == {}
    assert params["variants"] is None and params["seeds"] is None and params["train"] is True
    assert params["grid_budget"]["hours"] == 3 and params["grid_budget"]["seconds_per_step"] > 0
    assert params["pilot_seeds"] == [0, 1, 2]          # the 900-step pilot is not trained at seeds 3 and 4
    assert params["datasets"] == ["Set5", "Set14", "BSD100", "Urban100"] and params["runs_dir"] == "runs/ablation"
    assert set(profile_datasets(root / "configs" / "ablation.yaml")) >= {"quick-train", "quick-holdout", "Urban100"}


def test_parallel_jobs_fail_when_a_job_is_killed(monkeypatch, tmp_path):
    """--jobs: seeds dealt out round-robin, one process each; a job killed by a signal (negative exit code)
    makes the whole command fail."""
    import argparse
    import subprocess
    calls = []

    class Job:
        def __init__(self, cmd, **kwargs):
            calls.append(cmd)
            self.code = -9 if len(calls) == 2 else 0

        def wait(self):
            return self.code

    monkeypatch.setattr(subprocess, "Popen", Job)
    args = argparse.Namespace(grid=str(GRID), runs=str(tmp_path), jobs=2, datasets=["Set5"], variants=None, set=[],
                              data_root=None, perceptual_datasets=[], niqe_set="quick-train", no_score=False)
    assert ablation._parallel(args, [0, 1, 2]) == 1
    seeds = [c[c.index("--seeds") + 1: c.index("--datasets")] for c in calls]
    assert seeds == [["0", "2"], ["1"]]


def test_analyze_before_any_seed_is_complete(grid, tmp_path):
    """A grid in progress (./run_all.sh ablation --no-train): no seed finished, an empty table with the columns.
    The analysis only reads: it takes no lock, so a run being trained (its folder locked) does not stop it."""
    from srlib.lock import lock
    with lock(ablation.run_dir(tmp_path, grid["seeds"][0], grid["reference"])):
        scores, complete = ablation.collect_scores(grid, tmp_path)
        assert complete == [] and scores.empty
        table = ablation.analyze(grid, scores)
        assert table.empty and list(table.columns) == ablation.TABLE_COLUMNS
        terms = ablation.loss_terms(grid, tmp_path)        # no loss variant finished: still a CSV header
        assert terms.empty and "adversarial_share_last" in terms.columns
        assert not ablation.status(grid, tmp_path)["trained"].any()


def test_forest_plot_one_range_table1_order_and_holm_marks(grid):
    """One x-range for every panel, the sets in Table 1's order after the pooled one, the primary in red, and a
    filled marker only where the (Holm-adjusted) p is below 0.05."""
    import matplotlib
    matplotlib.use("Agg")
    effects = {"srgan_block": {0: 0.50, 1: 0.51, 2: 0.53}, "srgan_model": {0: 1.0, 1: 1.01, 2: 1.02}}
    table = ablation.analyze(grid, _synthetic(grid, effects=effects), family_=("all", True))
    fig = ablation.plot_forest(table, "psnr")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["pooled", "Set5", "Set14", "BSD100", "Urban100"]
    assert len({ax.get_xlim() for ax in panels}) == 1
    pooled = table[(table.metric == "psnr") & (table.dataset == "pooled")].set_index("comparison")
    comps = list(dict.fromkeys(table[table.metric == "psnr"].comparison))
    marks = {}
    for line in panels[0].get_lines():
        if line.get_marker() == "o" and len(line.get_ydata()) == 1:
            marks[comps[len(comps) - 1 - int(line.get_ydata()[0])]] = line
    assert set(marks) == set(pooled.index)
    filled = 0
    for comp, line in marks.items():
        r = pooled.loc[comp]
        filled += line.get_markerfacecolor() != "white"
        p = r.p if r.primary in (True, 1) else r.p_holm
        assert (line.get_markerfacecolor() != "white") == (p < 0.05), comp
        assert (line.get_color() == "tab:red") == (r.primary in (True, 1))
    assert 0 < filled < len(marks)                        # both kinds of marker occur
    assert [t.get_text() for t in fig.legends[0].get_texts()][0] == "primary endpoint"


def test_seed_curves_mark_bicubic_and_the_warm_up(grid, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    run = ablation.run_dir(tmp_path, grid["seeds"][0], "paper_block")
    run.mkdir(parents=True)
    pd.DataFrame(dict(step=[250, 500], tune_psnr=[25.0, 26.0])).to_csv(run / "metrics.csv", index=False)
    fig = ablation.plot_seed_curves(grid, tmp_path, bicubic=26.19)
    ax = fig.axes[0]
    assert ax.get_title() == "paper_block"
    ys = {tuple(line.get_ydata()) for line in ax.get_lines()}
    assert (25.0, 26.0) in ys and (26.19, 26.19) in ys
    assert any(tuple(line.get_xdata()) == (grid["common"]["warmup_steps"],) * 2 for line in ax.get_lines())
    assert fig.get_supylabel().startswith("PSNR on ")


def test_records_outlive_the_runs_folder(grid, tmp_path):
    """A grid over several machines: each finished, scored run's record (no weights) is archived; with the runs
    folder gone, the analysis, the curves, the loss terms and the extent sweep read the records and give what
    they gave from the runs, and run_grid does not train an archived run again."""
    small = ablation.grid_overrides(ablation.restrict(grid, ["paper_block", "srgan_block", "paper_loss"],
                                                      datasets=["demo"]), SMOKE)
    small["seeds"] = [0]
    runs, records = tmp_path / "runs", tmp_path / "records"
    ablation.run_grid(small, runs, datasets=["demo"])
    assert ablation.archive(small, runs, records) == [(0, "paper_block"), (0, "srgan_block"), (0, "paper_loss")]
    assert ablation.archive(small, runs, records) == []          # unchanged runs are not copied again
    sweep = ablation.extent_sweep(small, runs, ["demo"])           # the block variants' sweeps, into their runs
    assert ablation.archive(small, runs, records) == [(0, "paper_block"), (0, "srgan_block")]
    assert not list(records.rglob("*.safetensors")) and not list(records.rglob("*.pt"))
    assert (records / "seed0" / "paper_block" / "extent.csv").exists()
    assert list((records / "warmup").glob("attention-*/meta.json"))
    before = ablation.status(small, runs)
    scores, complete = ablation.collect_scores(small, runs)
    terms = ablation.loss_terms(small, runs)
    import shutil
    shutil.rmtree(runs)                                            # a new machine: only the records
    st = ablation.status(small, runs, records)
    assert st["archived"].all() and not st["weights"].any()
    cols = ["trained", "generator_sha256", "scored", "scored_whole", "train_seconds", "warmup_seconds", "precision"]
    pd.testing.assert_frame_equal(st[cols], before[cols])
    again, complete_again = ablation.collect_scores(small, runs, records=records)
    assert complete_again == complete == [0]
    pd.testing.assert_frame_equal(again, scores)
    pd.testing.assert_frame_equal(ablation.loss_terms(small, runs, records), terms)
    pd.testing.assert_frame_equal(ablation.extent_sweep(small, runs, ["demo"], records=records), sweep,
                                  check_dtype=False)
    assert ablation.extent_sweep(small, runs, ["Set5"], records=records).empty   # no weights: no new sweep
    fig = ablation.plot_seed_curves(small, runs, records=records)
    assert all(len(ax.lines) >= 1 for ax in fig.axes[:3])          # each variant's curve from its record
    st = ablation.run_grid(small, runs, datasets=["demo"], records=records)
    assert not runs.exists() or not list(runs.rglob("*.safetensors"))   # nothing trained again
    assert st["archived"].all()
    # without the records the grid is not finished: the same folder would train again
    assert not ablation.status(small, runs)["trained"].any()
    # a copy stopped midway (no record.json) is not a record
    (records / "seed0" / "srgan_block" / ablation.RECORD).unlink()
    assert ablation.collect_scores(small, runs, records=records)[1] == []


def test_paper_budget_seed0_srgan_warm_ups_were_one_computation():
    """Seed 0 trained srgan_block's warm-up (the attention skeleton with SRGAN's block) and srgan_model's
    separately; their final losses and validation scores agree to every digit, which is why later seeds share
    one warm-up (srlib.config.same_generator)."""
    import json
    records = Path(__file__).resolve().parents[1] / "results" / "paper-budget" / "records" / "warmup"
    block, srgan = (json.loads((records / name / "meta.json").read_text())
                    for name in ("attention-8e95c9e9", "srgan-c7425054"))
    assert block["generator"]["kwargs"]["norm"] == "batch" and srgan["generator"]["arch"] == "srgan"
    assert block["steps_done"] == srgan["steps_done"] == 4000
    keys = ("g_loss", "pixel", "psnr", "ssim", "psnr_paper", "ssim_paper", "tune_psnr", "tune_ssim")
    assert [block["final"][k] for k in keys] == [srgan["final"][k] for k in keys]
