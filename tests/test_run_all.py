"""run_all.sh as a user runs it, in a copy of the repository: the data pre-flight without network, and
the demo profile end to end. Both must leave the copy's committed files untouched."""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def clone(tmp_path):
    """The working tree's tracked and unignored files, committed in a fresh repository."""
    dst = tmp_path / "clone"
    for f in _git(REPO, "ls-files", "-co", "--exclude-standard").splitlines():
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    _git(dst, "init", "-q")
    _git(dst, "add", "-A")
    _git(dst, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "copy")
    return dst


def run_all(cwd, *args, **env):
    full = {**os.environ, "SRLIB_VENV": sys.prefix, **env}     # the test's environment: no reinstall
    return subprocess.run(["bash", "run_all.sh", *args], cwd=cwd, capture_output=True, text=True, env=full,
                          timeout=1800)


@pytest.mark.slow
def test_fresh_clone_without_data_or_network_stops_at_once(tmp_path):
    repo = clone(tmp_path)
    t0 = time.perf_counter()
    res = run_all(repo, "quick", SRLIB_DATA=str(tmp_path / "empty"), SRLIB_MIRROR="http://127.0.0.1:9")
    seconds = time.perf_counter() - t0
    assert res.returncode != 0, res.stdout + res.stderr
    assert "missing under" in res.stderr and "T91" in res.stderr and "Urban100" in res.stderr
    assert "fix: python -m srlib download T91 BSD200 Set5 Set14 BSD100 Urban100" in res.stderr
    assert "stopped before any work" in res.stderr
    assert seconds < 120, seconds                  # seconds, not a training run that fails later
    assert _git(repo, "status", "--porcelain") == ""
    assert [p.name for p in (repo / ".staging").iterdir()] == ["quick.lock"]     # nothing staged: only the lock


@pytest.mark.slow
def test_demo_profile_runs_everything_and_leaves_results_alone(tmp_path):
    repo = clone(tmp_path)
    before = _git(repo, "ls-files", "-s", "results")
    res = run_all(repo, "demo", SRLIB_DATA=str(tmp_path / "empty"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert _git(repo, "status", "--porcelain") == "" and _git(repo, "ls-files", "-s", "results") == before
    demo = repo / "runs" / "demo"
    assert "DEMO DATA: these numbers mean nothing" in (demo / "table1.md").read_text()
    assert {p.name for p in (demo / "notebooks").iterdir()} >= {"01_data.ipynb", "02_train_srgan.ipynb",
                                                                "03_benchmark.ipynb", "04_figures.ipynb"}
    assert not (repo / ".staging" / "demo").exists()
    assert "time per notebook" in res.stdout
    timings = (demo / "run_all_timings.csv").read_text().splitlines()
    assert timings[0].startswith("notebook,profile,seconds,started,load_start,load_end,cpus,")
    names = [line.split(",")[0] for line in timings[1:]]
    assert names == ["01_data", "02_train_psnr", "02_train_attention", "02_train_srgan", "03_benchmark",
                     "04_figures", "05_speed"]
    # --from / --to: one notebook again (04 reads 03's per_image.csv from the results folder), the others
    # skipped, their outputs kept
    first = (demo / "notebooks" / "01_data.ipynb").stat().st_mtime_ns
    res = run_all(repo, "demo", "--from", "04_figures", "--to", "04_figures", SRLIB_DATA=str(tmp_path / "empty"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "skipping notebooks/05_speed.ipynb (--to 04_figures)" in res.stdout
    assert "skipping notebooks/03_benchmark.ipynb (--from 04_figures)" in res.stdout
    assert (demo / "notebooks" / "01_data.ipynb").stat().st_mtime_ns == first
    assert (demo / "figures" / "data_samples.png").exists() and (demo / "compare.html").exists()
    again = (demo / "run_all_timings.csv").read_text().splitlines()     # 04's row anew, the skipped ones kept
    assert [a for a, b in zip(again, timings) if a != b] == [next(x for x in again if x.startswith("04_figures,"))]
    # --to a notebook that runs several times (02_train, once per model) runs every one of them
    res = run_all(repo, "demo", "--from", "02_train", "--to", "02_train", SRLIB_DATA=str(tmp_path / "empty"))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert all(f"02_train_{m}.ipynb" in res.stdout for m in ("psnr", "attention", "srgan")), res.stdout
    assert "skipping notebooks/03_benchmark.ipynb (--to 02_train)" in res.stdout
    assert _git(repo, "status", "--porcelain") == ""


def test_timing_record_replaces_a_notebooks_row_and_keeps_the_others(tmp_path, monkeypatch):
    from srlib import timings
    csv = tmp_path / "run_all_timings.csv"
    busy = iter([1000.0, 1100.0, 1100.0, 1300.0])       # /proc/stat busy seconds at each mark and record
    monkeypatch.setattr(timings, "busy_cpu_seconds", lambda: next(busy))
    monkeypatch.setattr(timings.os, "cpu_count", lambda: 2)
    first = timings.mark()
    a = timings.record(csv, "01_data", "quick", 100, first, own_cpu_s=95.0)     # others: 5 of 200 CPU s
    assert (a["quiet"], a["others_cpu_s"], a["cpus"]) == ("yes", "5.0", 2)
    b = timings.record(csv, "03_benchmark", "quick", 100, timings.mark(), own_cpu_s=100.0)   # others: 100
    assert (b["quiet"], b["others_cpu_s"]) == ("no", "100.0")
    before = csv.read_text().splitlines()
    assert before[0] == ",".join(timings.FIELDS)
    assert [r.split(",")[0] for r in before[1:]] == ["01_data", "03_benchmark"]
    monkeypatch.setattr(timings, "busy_cpu_seconds", lambda: None)      # no /proc/stat: quiet unknown
    c = timings.record(csv, "01_data", "quick", 7, "2026-12-01T00:00:00Z 0.30", own_cpu_s=6.0)
    assert (c["quiet"], c["others_cpu_s"], c["seconds"]) == ("", "", 7)
    rows = csv.read_text().splitlines()
    assert rows[1].startswith("01_data,quick,7,2026-12-01T00:00:00Z,0.30,") and rows[2] == before[2]  # in place
    assert timings.children_cpu("0m0.01s 0m0.00s\n1m2.50s 0m0.25s\n") == pytest.approx(62.75)


def test_unknown_notebook_names_stop_before_any_work(tmp_path):
    for args in (["--to", "07_nothing"], ["--from", "3_benchmark"]):
        res = subprocess.run(["bash", str(REPO / "run_all.sh"), "demo", *args], capture_output=True, text=True,
                             env={**os.environ, "SRLIB_VENV": sys.prefix}, timeout=60)
        assert res.returncode == 2 and "no notebook notebooks/" in res.stderr, res.stderr
    # the explorer is a notebook, but not a step of the pipeline
    res = subprocess.run(["bash", str(REPO / "run_all.sh"), "demo", "--to", "07_explore"], capture_output=True,
                         text=True, env={**os.environ, "SRLIB_VENV": sys.prefix}, timeout=60)
    assert res.returncode == 2 and "07_explore.ipynb is not part of run_all's pipeline" in res.stderr, res.stderr


def test_no_train_is_only_for_the_grid_profiles(tmp_path):
    res = subprocess.run(["bash", str(REPO / "run_all.sh"), "demo", "--no-train"], capture_output=True, text=True,
                         env={**os.environ, "SRLIB_VENV": sys.prefix}, timeout=60)
    assert res.returncode == 2 and "--no-train is for the ablation and paper-budget profiles" in res.stderr, res.stderr
    # the paper-budget profile takes it: without its data it stops at the pre-flight instead (exit 3)
    res = subprocess.run(["bash", str(REPO / "run_all.sh"), "paper-budget", "--no-train"], capture_output=True,
                         text=True, timeout=120,
                         env={**os.environ, "SRLIB_VENV": sys.prefix, "SRLIB_DATA": str(tmp_path / "none")})
    assert res.returncode == 3 and "--no-train is for" not in res.stderr, res.stderr


def test_a_second_run_all_on_the_same_profile_stops_at_once(tmp_path):
    """run_all holds .staging/<profile>.lock for its life: a second one (here the test holds the lock as the
    first would) stops before any work with exit 75, naming the holder, and changes nothing."""
    from srlib.lock import take
    repo = clone(tmp_path)
    (repo / ".staging").mkdir()
    fd = os.open(repo / ".staging" / "demo.lock", os.O_RDWR | os.O_CREAT)
    try:
        take(fd, ".staging/demo")
        t0 = time.perf_counter()
        res = run_all(repo, "demo", SRLIB_DATA=str(tmp_path / "empty"))
        seconds = time.perf_counter() - t0
    finally:
        os.close(fd)
    assert res.returncode == 75, res.stdout + res.stderr
    assert f".staging/demo is being written by another process (pid {os.getpid()} " in res.stderr
    assert "another run_all is running on profile demo" in res.stderr and seconds < 60
    assert sorted(p.name for p in (repo / ".staging").iterdir()) == ["demo.lock"]
    assert _git(repo, "status", "--porcelain") == "" and not (repo / "runs").exists()


def test_a_failed_notebook_is_named_with_its_cell_and_error(tmp_path):
    from srlib.staging import notebook_failure
    nb = {"cells": [{"cell_type": "markdown", "source": ["# title"]},
                    {"cell_type": "code", "execution_count": 1, "source": ["x = 1"], "outputs": []},
                    {"cell_type": "code", "execution_count": 2, "outputs": [
                        {"output_type": "error", "ename": "WriteError",
                         "evalue": "runs/x/checkpoint.pt: cannot write it (No space left on device); ...\nmore",
                         "traceback": []}],
                     "source": ["# NBVAL_IGNORE_OUTPUT\n", "meta = train(cfg, out)\n", "print(meta)"]}]}
    path = tmp_path / "02_train.ipynb"
    path.write_text(__import__("json").dumps(nb))
    assert notebook_failure(path) == ("cell [2] (`meta = train(cfg, out)`): WriteError: runs/x/checkpoint.pt: "
                                      "cannot write it (No space left on device); ...")
    nb["cells"][2]["outputs"] = []
    path.write_text(__import__("json").dumps(nb))
    assert notebook_failure(path) is None and notebook_failure(tmp_path / "missing.ipynb") is None
    assert "python -m srlib.staging failure" in (REPO / "run_all.sh").read_text()
