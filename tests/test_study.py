"""What the notebooks draw and write from the runs' files: training curves, paired per-image gains over
bicubic, and the provenance line of a model card."""
import json
import os
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from srlib import study

matplotlib.use("Agg")
RUNS = Path(__file__).resolve().parents[1] / "results" / "train"


def write_run(folder, gan):
    """A run folder with a metrics.csv of 4 warm-up rows and 2 main-phase rows, and a meta.json naming its sets."""
    folder.mkdir(parents=True)
    steps = [25, 50, 75, 100, 125, 150]
    phase = ["warmup"] * 4 + ["gan" if gan else "l1"] * 2
    nan = [np.nan] * 4
    df = pd.DataFrame(dict(step=steps, phase=phase, g_loss=[0.1, 0.08, 0.07, 0.06, 0.05, 0.05],
                           d_loss=nan + ([0.3, 0.02] if gan else [np.nan] * 2),
                           d_score=nan + ([0.8, 0.99] if gan else [np.nan] * 2),
                           g_score=nan + ([0.2, 0.01] if gan else [np.nan] * 2),
                           share_adversarial=nan + ([0.01, 0.006] if gan else [np.nan] * 2),
                           tune_psnr=np.linspace(24, 26, 6), psnr=np.linspace(27, 29, 6)))
    df.to_csv(folder / "metrics.csv", index=False)
    (folder / "meta.json").write_text(json.dumps({"config": {"val_set": "Set5", "tune_set": "quick-holdout"}}))
    return folder / "metrics.csv"


def test_training_curves_draw_only_panels_with_data(tmp_path):
    psnr = study.plot_history({"psnr": write_run(tmp_path / "psnr", gan=False)})
    assert [ax.get_title() for ax in psnr.axes] == ["Generator loss (L1 in the warm-up, then the model's)",
                                                    "Held-out split quick-holdout", "Validation set Set5"]
    assert all(ax.get_xlabel() == "generator step" for ax in psnr.axes)
    assert [ax.get_ylabel() for ax in psnr.axes[1:]] == ["PSNR (dB, standard protocol)"] * 2
    assert psnr.legends[0].get_texts()[0].get_text() == "PSNR baseline (ours)"     # the label, not 'psnr'
    both = study.plot_history({"SRGAN (ours)": write_run(tmp_path / "srgan", gan=True),
                               "PSNR baseline (ours)": tmp_path / "psnr" / "metrics.csv"})
    assert len(both.axes) == 6
    d_loss = next(ax for ax in both.axes if ax.get_title() == "Discriminator loss")
    # a loss is the mean over the steps since the previous row: one bar per row, spanning its interval
    (bars,) = [c for c in d_loss.collections if len(c.get_segments())]
    assert [tuple(s[:, 0]) for s in bars.get_segments()] == [(100, 125), (125, 150)]
    assert [tuple(s[:, 1]) for s in bars.get_segments()] == [(0.3, 0.3), (0.02, 0.02)]


def test_per_image_gains_are_paired_with_bicubic():
    rows = []
    for ds, images in (("Set5", 5), ("Set14", 3)):
        for i in range(images):
            base = 25 + i
            for method, gain in (("Bicubic", 0.0), ("SRGAN (ours)", 1.0 + i), ("Attention (ours)", -0.5)):
                for protocol in ("standard", "paper"):
                    rows.append(dict(method=method, dataset=ds, image=f"im{i}", protocol=protocol,
                                     psnr=base + gain, ssim=0.7 + gain / 100, inference="calibrated"))
    rows.append(dict(method="Attention (ours)", dataset="Set5", image="im0", protocol="standard", psnr=99.0,
                     ssim=0.99, inference="whole"))     # another inference mode: not drawn
    fig = study.plot_distributions(pd.DataFrame(rows))
    psnr_ax = fig.axes[0]
    means = sorted(round(float(s[0, 1]), 6) for c in psnr_ax.collections if hasattr(c, "get_segments")
                   for s in c.get_segments())
    assert means == sorted([3.0, 2.0, -0.5, -0.5])         # SRGAN Set5 mean(1..5), Set14 mean(1..3); attention
    assert any(line.get_ydata()[0] == 0 for line in psnr_ax.lines)                    # the zero line
    assert [t.get_text() for t in psnr_ax.get_xticklabels()] == ["Set5\n(5 images)", "Set14\n(3 images)"]
    assert "dB" in psnr_ax.get_ylabel() and "bicubic" in psnr_ax.get_ylabel()
    with pytest.raises(ValueError, match="no 'Bicubic' rows"):
        study.plot_distributions(pd.DataFrame(rows).query("method != 'Bicubic'"))


def test_provenance_names_the_commit_and_the_data():
    data = {"train": {"sets": ["quick-train"], "images": 280, "listed": 281, "sha256": "a" * 64},
            "val": {"set": "Set5", "images": 5, "sha256": "b" * 64},
            "tune": {"set": "quick-holdout", "images": 10, "sha256": "c" * 64}}
    text = study.provenance({"git": "1" * 40 + "+dirty", "data": data})
    assert text.startswith(f"srlib commit {'1' * 40} (tracked files differed from it)")
    assert f"training data quick-train (280 images used of 281 listed) {'a' * 64}" in text
    assert f"validation set Set5 (5 images) {'b' * 64}" in text and f"quick-holdout (10 images) {'c' * 64}" in text
    assert "(clean tree)" in study.provenance({"git": "1" * 40, "data": data})
    assert study.provenance({"git": None, "data": data}).startswith("srlib commit not recorded (not run from a git")
    old = study.provenance({"config": {}})
    assert old.startswith("not recorded: this run predates provenance records") and "unknown" not in old


@pytest.mark.skipif(not RUNS.is_dir(), reason="no committed runs")
def test_committed_model_cards_say_what_they_lack():
    summary = pd.DataFrame(columns=["method", "dataset", "protocol", "psnr", "ssim"])
    for model in study.run_dirs(RUNS):
        meta = json.loads((RUNS / model / "meta.json").read_text())
        line = next(x for x in study.model_card(RUNS / model, summary).splitlines() if x.startswith("- Provenance"))
        if "git" not in meta:
            assert line.startswith("- Provenance: not recorded: this run predates provenance records"), line
        else:
            assert "srlib commit" in line and meta["data"]["train"]["sha256"] in line, line


def test_perceptual_table_keeps_hr_beside_both_inference_modes(tmp_path):
    """HR's own values (no inference mode) stay in perceptual.csv/md; the whole-image rows do not."""
    rows = []
    for method, inference, niqe in (("Bicubic", "-", 9.0), ("Attention (ours)", "calibrated", 7.0),
                                    ("Attention (ours)", "whole", 8.0)):
        for image in ("a", "b"):
            rows.append(dict(method=method, dataset="Set5", image=image, protocol="standard", inference=inference,
                             psnr=30.0, ssim=0.8, niqe_live=niqe))
    per_image = pd.DataFrame(rows)
    hr = pd.DataFrame([dict(method="HR", dataset="Set5", image=i, protocol="standard", inference="-",
                            niqe_live=5.0) for i in ("a", "b")])
    table = study.write_perceptual(per_image, hr, {}, tmp_path).set_index("method")
    assert list(table.index) == ["Bicubic", "Attention (ours)", "HR"]
    assert table.loc["HR", "niqe_live"] == 5.0 and table.loc["Attention (ours)", "niqe_live"] == 7.0
    assert "| HR |" in (tmp_path / "perceptual.md").read_text()
    assert pd.read_csv(tmp_path / "perceptual.csv")["method"].tolist() == ["Bicubic", "Attention (ours)", "HR"]
    # an HR frame written without an inference column (as before this test) is not dropped either
    table = study.write_perceptual(per_image, hr.drop(columns="inference"), {}, tmp_path)
    assert "HR" in set(table["method"])


@pytest.mark.skipif(not os.environ.get("SRLIB_DATA"), reason="needs the shared datasets (SRLIB_DATA)")
def test_verify_reproduces_the_committed_table_and_fails_on_an_edited_cell(tmp_path):
    """`srlib verify` re-scores the committed generators on Set5 against results/table1.csv (which holds
    whole-image rows beside the default ones: only the default ones are compared), and a cell edited by
    hand fails."""
    from srlib.verify import verify
    top = Path(__file__).resolve().parents[1] / "results"
    (tmp_path / "train").symlink_to(top / "train")
    table = pd.read_csv(top / "table1.csv")
    table.to_csv(tmp_path / "table1.csv", index=False)
    rows, missing = verify(tmp_path, datasets=["Set5"], progress=False)
    assert not missing and len(rows) == 4 * 2 * 2 and rows.ok.all()      # 4 methods x 2 protocols x 2 metrics
    cell = (table.method == "SRGAN (ours)") & (table.dataset == "Set5") & (table.protocol == "standard")
    table.loc[cell, "psnr"] += 0.01
    table.to_csv(tmp_path / "table1.csv", index=False)
    rows, _ = verify(tmp_path, datasets=["Set5"], progress=False)
    assert list(rows[~rows.ok][["method", "protocol", "metric"]].itertuples(index=False, name=None)) == \
        [("SRGAN (ours)", "standard", "psnr")]
