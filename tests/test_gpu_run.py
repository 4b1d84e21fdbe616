"""scripts/gpu_run.sh --dry (the GPU run's path on the CPU, tiny settings) and `srlib gpu-results` on its
archive; a damaged archive gives a clear error; a large archive is split into parts and joined again."""
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from srlib import gpurun
from srlib.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    """One `gpu_run.sh --dry` against the shared datasets (it packs them, checks the size, trains 3 tiny
    models x 2 seeds on the CPU and writes the archive); (completed process, its folder)."""
    root = os.environ.get("SRLIB_DATA")
    if not root or not (Path(root) / "T91" / "HR").is_dir() or not (Path(root) / "BSD200" / "HR").is_dir():
        pytest.skip("the pack needs the quick profile's images (T91, BSD200, Set5) under SRLIB_DATA")
    tmp = tmp_path_factory.mktemp("gpu_run")
    env = {**os.environ, "PACK": str(tmp / "pack"), "WORK": str(tmp / "work"), "OUT": str(tmp / "out"),
           "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(REPO / "scripts" / "gpu_run.sh"), "--dry"], env=env, capture_output=True,
                         text=True, timeout=300)
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
    assert {"meta.json", "speed.csv", "log.txt"} <= names
    assert {f"runs/{m}-s{s}/generator.safetensors" for m in gpurun.MODELS for s in (0, 1)} <= names
    assert not any(n.endswith("checkpoint.pt") or n.startswith("cache") for n in names)
    assert "6 of 6 runs complete" in res.stdout


def test_results_from_the_dry_archive(dry_run, tmp_path):
    _, tmp = dry_run
    out = tmp_path / "results"
    assert main(["gpu-results", str(tmp / "out"), "--results", str(out), "--datasets", "Set5"]) == 0
    assert {"table1.csv", "table1.md", "per_seed.csv", "speed.csv", "meta.json", "log.txt"} <= \
        {p.name for p in out.iterdir()}
    table = (out / "table1.csv").read_text()
    for model in ("bicubic", "srgan", "attention", "psnr"):
        assert f"\n{model},Set5,standard," in table and f"\n{model},Set5,paper," in table
    md = (out / "table1.md").read_text()
    assert "Dry run" in md and "±" in md and "no ImageNet VGG16" in md and "train_step" in md
    meta = json.loads((out / "meta.json").read_text())
    assert meta["seeds"] == [0, 1] and meta["environment"]["torch"] and meta["scored"]["datasets"] == ["Set5"]
    assert all(r["status"] == "complete" for r in meta["runs"].values())
    assert (out / "train" / "srgan-s1" / "metrics.csv").is_file()


def fake_work(tmp_path, generator_bytes):
    work = tmp_path / "work"
    gen = work / "runs" / "psnr-s0" / "generator.safetensors"
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
        assert (dest / "runs" / "psnr-s0" / "generator.safetensors").stat().st_size == 5000
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
