"""Run notebooks through papermill with smoke parameters and check the numbers they record.

(The committed notebooks' outputs are checked separately by nbval: ./run_tests.sh runs pytest --nbval.)
"""
import json
from pathlib import Path

import pandas as pd
import pytest

pm = pytest.importorskip("papermill")

from srlib.data import load_eval_set  # noqa: E402
from srlib.evaluate import evaluate, summarize  # noqa: E402
from srlib.infer import load_generator  # noqa: E402
from srlib.train import validate  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run(name, tmp_path, **params):
    out = tmp_path / f"{name}.out.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=params, cwd=str(tmp_path),
                        progress_bar=False)
    return out


@pytest.mark.slow
def test_train_notebook_records_the_models_validation_scores(tmp_path):
    runs = tmp_path / "runs"
    run("02_train", tmp_path, model="psnr", profile="smoke", runs_dir=str(runs))
    rec = json.loads((runs / "psnr" / "notebook_record.json").read_text())
    assert rec["model"] == "psnr" and rec["steps"] == 6
    # recompute the validation of the saved generator independently of the notebook
    model, _ = load_generator(runs / "psnr" / "generator.safetensors")
    scores = validate(model, load_eval_set("demo", scale=4)[:2], 4)
    for key in ("psnr", "ssim", "psnr_paper", "ssim_paper"):
        assert rec[key] == pytest.approx(scores[key], abs=1e-5), key
    assert (runs / "psnr" / "curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_benchmark_notebook_writes_table1(tmp_path):
    results = tmp_path / "results"
    run("03_benchmark", tmp_path, profile="smoke", runs_dir=str(results / "train"), datasets=["demo"],
        results_dir=str(results))
    rec = json.loads((results / "benchmark_record.json").read_text())
    table = pd.read_csv(results / "table1.csv")
    methods = ["Bicubic", "SRGAN (ours)", "Attention (ours)", "PSNR baseline (ours)"]
    assert sorted(set(table.method)) == sorted(methods) and set(table.protocol) == {"standard", "paper"}
    for r in table.itertuples():
        whole = "|whole" if r.inference == "whole" else ""     # GroupNorm models are also scored whole-image
        assert rec[f"{r.method}|{r.dataset}|{r.protocol}{whole}|psnr"] == pytest.approx(r.psnr, abs=1e-4)
    bicubic = summarize(evaluate("bicubic", ["demo"])).set_index("protocol")
    for protocol in ("standard", "paper"):
        assert rec[f"Bicubic|demo|{protocol}|psnr"] == pytest.approx(bicubic.psnr[protocol], abs=1e-4)
        assert rec[f"Bicubic|demo|{protocol}|ssim"] == pytest.approx(bicubic.ssim[protocol], abs=1e-4)
    attention = summarize(evaluate(str(results / "train" / "attention" / "generator.safetensors"), ["demo"]))
    got = rec["Attention (ours)|demo|standard|psnr"]
    assert got == pytest.approx(attention.set_index("protocol").psnr["standard"], abs=1e-4)
    md = (results / "table1.md").read_text()
    assert "New model (Wu, Table 1)" in md and "LPIPS" in md and "random-init" in md
    per_image = pd.read_csv(results / "per_image.csv")
    assert len(per_image) == 4 * 2 * 6  # methods x protocols x demo images
