"""scripts/gpu_run.sh --dry (the GPU run's path on the CPU, tiny settings) and `srlib gpu-results` on its
archive; the GPU run trains the paper-budget grid's configs, as the CPU run does; a damaged archive gives a
clear error; a large archive is split into parts and joined again."""
import dataclasses
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from srlib import ablation, gpurun
from srlib.cli import main
from srlib.config import PROFILES, warmup_run_dir
from srlib.config import plain as _plain

REPO = Path(__file__).resolve().parent.parent
GRID = REPO / gpurun.GRID


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One `gpu_run.sh --dry` against the shared datasets (it packs them, checks the size, trains the grid's
    4 arms x 2 seeds with tiny models on the CPU and writes the archive); (completed process, its folder)."""
    root = os.environ.get("SRLIB_DATA")
    if not root or not (Path(root) / "T91" / "HR").is_dir() or not (Path(root) / "BSD200" / "HR").is_dir():
        pytest.skip("the pack needs the quick profile's images (T91, BSD200, Set5) under SRLIB_DATA")
    tmp = tmp_path_factory.mktemp("gpu_run")
    env = {**os.environ, "PACK": str(tmp / "pack"), "WORK": str(tmp / "work"), "OUT": str(tmp / "out"),
           "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh"), "--dry"], env=env, capture_output=True,
                         text=True, timeout=420)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res, tmp


def test_dry_run_packs_checks_the_size_and_writes_the_archive(dry_run):
    res, tmp = dry_run
    size = re.search(r"travel size: repository ([\d.]+) MiB \+ pack ([\d.]+) MiB = ([\d.]+) MiB", res.stdout)
    assert size, res.stdout
    assert float(size[3]) < 64 and float(size[2]) > 0
    assert (tmp / "pack" / "Set5" / "HR").is_dir() and (tmp / "pack" / "BSD200" / "HR").is_dir()
    archive = tmp / "out" / gpurun.ARCHIVE
    assert archive.is_file() and archive.stat().st_size < gpurun.PART_BYTES
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"meta.json", "speed.csv", "log.txt", gpurun.GRID_FILE} <= names
    arms = ablation.runnable(ablation.load_grid(GRID))
    assert arms == ["paper_block", "paper_model", "srgan_model", "srgan_block"]
    runs = {n.split("/")[1] + "/" + n.split("/")[2] for n in names if n.endswith("/generator.safetensors")}
    assert runs == {f"seed{s}/{v}" for v in arms for s in (0, 1)}          # no warm-up generators
    assert {n for n in names if n.startswith("runs/warmup/") and n.endswith("meta.json")}   # their cost, though
    assert not any(n.endswith("checkpoint.pt") or n.startswith("cache") for n in names)
    assert "8 of 8 runs complete" in res.stdout


def test_results_from_the_dry_archive(dry_run, tmp_path):
    """gpu-results unpacks the runs as the ablation's run folders and analyses them with the grid's endpoint."""
    _, tmp = dry_run
    out, work = tmp_path / "results", tmp_path / "gpu"
    assert main(["gpu-results", str(tmp / "out"), "--results", str(out), "--work", str(work),
                 "--datasets", "Set5"]) == 0
    assert {"paper_budget.md", "paper_budget.csv", "paper_budget_whole.csv", "paper_budget_absolute.md",
            "paper_budget_runs.csv", "paper_budget_table1.md", "speed.csv", "meta.json", "log.txt"} \
        <= {p.name for p in out.iterdir()}
    table1 = (out / "paper_budget_table1.md").read_text()       # the grid's Table 1 beside Wu's, on Set5 here
    assert "| model | protocol | Set5 |" in table1
    assert "| *New model (Wu, Table 1)* | unstated | 26.73 / 0.84 |" in table1
    assert "| paper_model: the paper's model (its generator and loss) | standard | " in table1 and "Dry run" in table1
    assert "- srgan_model: SRGAN's perceptual term (VGG16): dropped: no ImageNet VGG16" in table1
    md = (out / "paper_budget.md").read_text()
    assert "Dry run" in md and "| **srgan_block - paper_block (primary)** |" in md and "srgan_model - paper_model" in md
    assert "Seeds analyzed: 2 of 2 (0, 1)" in md and "dropped: no ImageNet VGG16" in md
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["environment"]["torch"] and meta["scored"]["datasets"] == ["Set5"]
    assert all(r["status"] == "complete" for r in meta["runs"].values()) and len(meta["runs"]) == 8
    grid = ablation.restrict(ablation.grid_overrides({**ablation.load_grid(GRID), "seeds": [0, 1]}, meta["overrides"]),
                             datasets=["Set5"])
    scores, complete = ablation.collect_scores(grid, work / "runs")      # what notebook 06 reads
    assert complete == [0, 1] and set(scores["variant"]) == set(ablation.runnable(grid))


def fake_work(tmp_path, generator_bytes):
    work = tmp_path / "work"
    gen = work / "runs" / "seed0" / "paper_block" / "generator.safetensors"
    gen.parent.mkdir(parents=True)
    gen.write_bytes(os.urandom(generator_bytes))          # incompressible, as fp32 weights nearly are
    (work / "meta.json").write_text(json.dumps({"format": gpurun.FORMAT, "runs": {}}))
    return work


def test_a_large_archive_is_split_into_parts_and_joined_again(tmp_path):
    parts = gpurun.write_archive(fake_work(tmp_path, 5000), tmp_path / "out", part_bytes=2000)
    assert len(parts) >= 3 and all(p.stat().st_size <= 2000 for p in parts)
    assert [p.name for p in parts][:2] == [f"{gpurun.ARCHIVE}.part00", f"{gpurun.ARCHIVE}.part01"]
    for where in (tmp_path / "out", parts[0]):
        dest = tmp_path / f"x{where.name}"
        assert gpurun.unpack(where, dest)["format"] == gpurun.FORMAT
        assert (dest / "runs" / "seed0" / "paper_block" / "generator.safetensors").stat().st_size == 5000
    parts[1].unlink()
    with pytest.raises(gpurun.GpuRunError, match="without gaps"):
        gpurun.unpack(tmp_path / "out", tmp_path / "y")


def test_malformed_archives_give_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar file at all")
    with pytest.raises(gpurun.GpuRunError, match="not a readable gpu_run archive"):
        gpurun.unpack(bad, tmp_path / "a")
    with pytest.raises(gpurun.GpuRunError, match="no such archive"):
        gpurun.unpack(tmp_path / "missing.tar.gz", tmp_path / "b")
    with pytest.raises(gpurun.GpuRunError, match="no gpu_run.tar.gz"):
        gpurun.unpack(tmp_path, tmp_path / "c")
    foreign = tmp_path / "foreign.tar.gz"
    (tmp_path / "note.txt").write_text("hello")
    with tarfile.open(foreign, "w:gz") as tar:
        tar.add(tmp_path / "note.txt", arcname="note.txt")
    with pytest.raises(gpurun.GpuRunError, match="no meta.json"):
        gpurun.unpack(foreign, tmp_path / "d")
    whole = gpurun.write_archive(fake_work(tmp_path, 100), tmp_path / "out")[0]
    data = whole.read_bytes()
    for cut in (1, 8, 40, 200):                           # cut short, as a broken transfer: even by the
        whole.write_bytes(data[:-cut])                    # gzip trailer alone, after the tar's end blocks
        with pytest.raises(gpurun.GpuRunError, match="not a readable"):
            gpurun.unpack(whole, tmp_path / f"e{cut}")
        assert not any((tmp_path / f"e{cut}").rglob("*"))     # nothing extracted from a damaged archive
    assert main(["gpu-results", str(bad), "--results", str(tmp_path / "r")]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "r").exists()


WHERE = ("cache_dir", "num_workers", "warmup_dir", "progress", "device", "data_root")   # where a run trains


def test_the_gpu_run_trains_the_grids_configs(monkeypatch, tmp_path):
    """Each GPU process (gpurun.train_command, run through the ablation's own CLI) trains the config that the
    CPU run (`./run_all.sh paper-budget`: notebook 06 calls ablation.run_grid on the grid, no overrides)
    trains for the same variant and seed, with the same shared warm-up; only where it trains differs. A seed
    beyond the grid's (SEEDS on a GPU) is the same recipe at that seed. --dry changes the smoke keys only."""
    params = yaml.safe_load((REPO / "configs" / "paper-budget.yaml").read_text())["06_ablation"]
    assert params["grid"] == gpurun.GRID and params["overrides"] == {}
    trained = []
    monkeypatch.setattr(ablation, "train", lambda cfg, folder: trained.append((cfg, Path(folder))) or {})
    grid = ablation.load_grid(GRID)
    where = {"cache_dir": str(tmp_path / "cache"), "num_workers": 3}
    for seed in (0, 3):
        for variant in ablation.runnable(grid):
            for overrides in (where, {**where, **gpurun.dry_overrides()}):
                cmd = gpurun.train_command(GRID, tmp_path / "gpu" / "runs", variant, seed, overrides)
                assert cmd[1:4] == ["-m", "srlib", "ablation"] and main(cmd[3:]) == 0
            ablation.run_grid(grid, tmp_path / "cpu", seeds=[seed], variants=[variant], score=False)
            (gpu, gpu_dir), (dry, _), (cpu, cpu_dir) = trained[-3:]
            assert _plain(gpu) == _plain(cpu) and warmup_run_dir(gpu).name == warmup_run_dir(cpu).name
            assert (gpu.seed, gpu.model, gpu.steps, gpu.warmup_steps, gpu.crop, gpu.batch_size) == \
                (seed, cpu.model, 5000, 4000, 128, 16)
            assert (gpu.cache_dir, gpu.num_workers, gpu.progress) == (where["cache_dir"], 3, True)
            assert gpu_dir.relative_to(tmp_path / "gpu" / "runs") == cpu_dir.relative_to(tmp_path / "cpu")
            changed = {k for k, v in dataclasses.asdict(dry).items() if v != getattr(cpu, k)} - set(WHERE)
            assert changed <= set(gpurun.DRY_KEYS) | {"tune_set"}
            assert all(getattr(dry, k) == PROFILES["smoke"][k] for k in gpurun.DRY_KEYS)
    assert gpurun.pack_sets() == ("quick-train", "quick-holdout", "Set5")        # the grid's data, packed
