"""One writer per folder (srlib.lock) and faults reported in one line: two trainings into one folder, a
killed holder, Ctrl-C, a full disk, a corrupt checkpoint, a shared warm-up being written, a read-only data
root; and what runs side by side (readers, other run folders of one grid) is not blocked."""
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from srlib import checkpoint, cli, train as T
from srlib.infer import load_checkpoint, load_generator
from srlib.lock import EXIT_LOCKED, FolderLocked, lock

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["steps=4", "val_every=2"]          # smoke: warm-up to step 2, then steps 3-4; checkpoints at 2 and 4
# `python -m srlib` whose GATE_AT-th training step first touches GATE_READY, then waits for GATE_GO: the run
# holds its lock and has its checkpoint of step 2 when the test acts (steps done at the gate: GATE_AT - 1)
GATED = """
import os, sys, time
from pathlib import Path
from srlib import cli, train

real, calls = train.train_step, [0]

def gated(*args, **kwargs):
    calls[0] += 1
    if calls[0] == int(os.environ["GATE_AT"]):
        Path(os.environ["GATE_READY"]).touch()
        while not Path(os.environ["GATE_GO"]).exists():
            time.sleep(0.05)
    return real(*args, **kwargs)

train.train_step = gated
sys.exit(cli.main(sys.argv[1:]))
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SRLIB_DEBUG")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return {**env, **extra}


def _train_args(out, settings=SETTINGS):
    return ["train", "--model", "psnr", "--profile", "smoke", "--out", str(out), "--set", *settings]


def cli_train(out):
    return subprocess.run([sys.executable, "-m", "srlib", *_train_args(out)], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)


def gated_train(out, gate, at=4):
    """A training run that stops before its ``at``-th step until ``gate / 'go'`` exists; returns the process
    once it is there (holding the run's lock, its checkpoint of step 2 written)."""
    gate.mkdir(parents=True, exist_ok=True)
    script = gate / "gated.py"
    script.write_text(GATED)
    proc = subprocess.Popen([sys.executable, str(script), *_train_args(out)], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(GATE_AT=str(at), GATE_READY=str(gate / "ready"), GATE_GO=str(gate / "go")))
    deadline = time.time() + 240
    while not (gate / "ready").exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError(f"gated run ended early: {proc.communicate()}")
        time.sleep(0.1)
    return proc


def weights(run):
    return load_generator(run / "generator.safetensors")[1]["G"]


def assert_same_run(a, b, steps=4):
    """Two run folders hold bit-identical generators, checkpoints (G, Adam moments) and histories."""
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ca, cb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    assert ca["step"] == cb["step"] == steps
    assert all(torch.equal(ca["G"][k], cb["G"][k]) for k in ca["G"])
    for k, v in ca["opt_G"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], cb["opt_G"]["state"][k]["exp_avg_sq"])
    assert [r["g_loss"] for r in ca["history"]] == [r["g_loss"] for r in cb["history"]]


def error_lines(stderr):
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def lone(tmp_path_factory):
    """The same run, alone and uninterrupted, through the same command line."""
    out = tmp_path_factory.mktemp("lone") / "run"
    done = cli_train(out)
    assert done.returncode == 0, done.stderr
    return out


def test_the_lock_names_its_holder_and_a_second_writer_stops(tmp_path, capsys):
    folder = tmp_path / "run"
    with lock(folder):
        text = (folder / ".lock").read_text()
        assert text.startswith(f"pid {os.getpid()} on {socket.gethostname()}, started 20")
        with pytest.raises(FolderLocked, match=rf"{folder} is being written by another process \(pid {os.getpid()} "):
            with lock(folder):
                pass
        # the command line: the message and the documented exit status
        assert cli.main(_train_args(folder)) == EXIT_LOCKED == 75
        line = error_lines(capsys.readouterr().err)
        assert str(folder) in line and f"pid {os.getpid()}" in line and "nothing was changed" in line
    assert not (folder / ".lock").exists()       # released: the folder holds no trace of it
    with lock(folder):                           # and free again
        pass
    assert "75" in cli.build_parser().format_help() and "SRLIB_DEBUG" in cli.build_parser().format_help()


@pytest.mark.slow
def test_two_trainings_into_one_folder_the_second_stops_at_once(tmp_path, lone):
    run = tmp_path / "run"
    first = gated_train(run, tmp_path / "gate")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    t0 = time.perf_counter()
    second = cli_train(run)
    assert second.returncode == EXIT_LOCKED, second.stderr
    assert time.perf_counter() - t0 < 60              # the start-up of python, not a training run
    line = error_lines(second.stderr)
    assert f"{run} is being written by another process (pid {first.pid} on {socket.gethostname()}, started " in line
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before     # the second wrote nothing
    (tmp_path / "gate" / "go").touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert_same_run(run, lone)                        # the first is as if it had run alone
    assert not (run / ".lock").exists()


@pytest.mark.slow
def test_a_lock_left_by_a_killed_run_does_not_block_the_next(tmp_path, lone):
    run = tmp_path / "run"
    killed = gated_train(run, tmp_path / "gate")
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=60)
    assert f"pid {killed.pid} " in (run / ".lock").read_text()     # its file stays; its lock died with it
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    done = cli_train(run)
    assert done.returncode == 0, done.stderr
    assert_same_run(run, lone)


@pytest.mark.slow
def test_ctrl_c_mid_interval_says_where_and_the_resume_is_exact(tmp_path, lone):
    run = tmp_path / "run"
    stopped = gated_train(run, tmp_path / "gate")     # before its 4th step: 3 done, checkpoint at 2
    stopped.send_signal(signal.SIGINT)
    out, err = stopped.communicate(timeout=120)
    assert stopped.returncode == 130, err
    line = error_lines(err)
    assert line == (f"error: {run}: interrupted (Ctrl-C) at step 3 of 4; the last checkpoint is step 2, so 1 step "
                    f"will be redone; the same command resumes from step 2")
    assert not (run / ".lock").exists() and load_checkpoint(run / "checkpoint.pt")["step"] == 2
    done = cli_train(run)
    assert done.returncode == 0, done.stderr
    assert_same_run(run, lone)


def test_disk_full_during_a_checkpoint_is_one_line_and_the_resume_is_exact(tmp_path, monkeypatch, capsys):
    real, calls = checkpoint.atomic_write, []

    def full_at_second_checkpoint(path, write_fn, mode="wb", size=None):
        calls.append(Path(path).name)
        if calls.count("checkpoint.pt") == 2 and Path(path).name == "checkpoint.pt":
            def half(f):
                f.write(b"\0" * 4096)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(path, half, mode, size)
        return real(path, write_fn, mode, size)

    run, settings = tmp_path / "run", ["val_every=2"]      # 6 steps: checkpoints at 2, 4 (disk full) and 6
    monkeypatch.setattr(checkpoint, "atomic_write", full_at_second_checkpoint)
    assert cli.main(_train_args(run, settings)) == 74
    line = error_lines(capsys.readouterr().err)
    size = (run / "checkpoint.pt").stat().st_size
    assert line == (f"error: {run / 'checkpoint.pt'}: cannot write it (No space left on device); the last checkpoint "
                    f"(step 2) is intact; free about {size / 2 ** 20:.1f} MiB (the size of one checkpoint), then the "
                    f"same command resumes from step 2")
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 2
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "generator.safetensors", "meta.json",
                                                      "metrics.csv"]      # no temporary file, no lock
    monkeypatch.setattr(checkpoint, "atomic_write", real)
    assert cli.main(_train_args(run, settings)) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T.train(T.make_config("psnr", "smoke", **T.parse_overrides(settings)), tmp_path / "straight")
    assert_same_run(run, tmp_path / "straight", steps=6)
    # readers never take the lock: the finished run can be read while a writer holds its folder
    with lock(run):
        assert load_generator(run / "generator.safetensors")[1]["step"] == 6


def test_a_corrupt_checkpoint_on_resume_names_the_file_and_force(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"PK\x03\x04 cut short")
    assert cli.main(_train_args(run)) == 2
    line = error_lines(capsys.readouterr().err)
    assert line.startswith(f"error: {run / 'checkpoint.pt'}: not a readable checkpoint")
    assert line.endswith("the run cannot resume from it: --force (force=True) restarts it from step 0")
    monkeypatch.setenv("SRLIB_DEBUG", "1")          # the traceback on demand, then the same line
    assert cli.main(_train_args(run)) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == line
    monkeypatch.delenv("SRLIB_DEBUG")
    assert cli.main(["--debug", *_train_args(run)]) == 2 and "Traceback" in capsys.readouterr().err


def test_a_run_waits_for_its_shared_warmup_while_another_process_writes_it(tmp_path, capsys):
    cfg = T.make_config("psnr", "smoke", warmup_dir=str(tmp_path / "warm"), **T.parse_overrides(SETTINGS))
    wdir = T.warmup_run_dir(cfg)
    with contextlib.ExitStack() as held:
        held.enter_context(lock(wdir))            # as another run training the warm-up would
        release = threading.Timer(3.0, held.close)
        release.start()
        t0 = time.perf_counter()
        meta = T.train(cfg, tmp_path / "run")
        waited = time.perf_counter() - t0
        release.join()
    assert waited >= 3.0 and meta["steps_done"] == 4 and meta["warmup_run"] == str(wdir)
    assert f"waiting for {wdir}: it is being written by another process (pid {os.getpid()} " in capsys.readouterr().err


def test_runs_of_one_grid_train_side_by_side(tmp_path):
    """ablation --jobs: each job trains other run folders (and warm-ups) of the same grid."""
    from srlib import ablation
    grid = ablation.grid_overrides(ablation.load_grid(REPO / "configs" / "ablation_grid.yaml"),
                                   {"train_sets": ["demo"], "tune_set": None, "val_set": "demo", "val_images": 1,
                                    "crop": 32, "batch_size": 4, "repeat": 4, "steps": 4, "warmup_steps": 2,
                                    "val_every": 2, "amp": "fp32", "n_blocks": 1, "n_feats": 16})
    with lock(ablation.run_dir(tmp_path, 0, grid["reference"])):       # job 0 is training seed 0
        st = ablation.run_grid(grid, tmp_path, seeds=[1], variants=[grid["reference"]], score=False)
        # and the grid's readers (./run_all.sh ablation --no-train) read it meanwhile
        assert ablation.collect_scores(grid, tmp_path)[1] == []
    assert st.set_index(["seed", "variant"]).loc[(1, grid["reference"]), "trained"]


def test_a_data_root_is_filled_by_one_process_and_a_read_only_one_is_named(tmp_path, monkeypatch, capsys):
    from srlib import download, gpurun
    root = tmp_path / "data"
    with lock(root):
        with pytest.raises(FolderLocked, match=str(root)):
            download.download("Set5", root)
        with pytest.raises(FolderLocked):        # the GPU pack too
            gpurun.pack(root, root=tmp_path / "other")
    real_open = os.open

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(root)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setenv("SRLIB_MIRROR", "http://127.0.0.1:9")
    assert cli.main(["download", "Set5", "--data-root", str(root)]) == 2
    line = error_lines(capsys.readouterr().err)
    assert line == (f"error: data root {root} cannot be written (Read-only file system), so Set5, Set14, BSD100, "
                    f"Urban100 cannot be added there; download into a writable folder (--data-root DIR or "
                    f"SRLIB_DATA=DIR)")
    for name in ("Set5", "Set14", "BSD100", "Urban100"):     # present: a read-only root is only read
        (root / name).mkdir()
    assert download.download("Set5", root) == [root / n for n in ("Set5", "Set14", "BSD100", "Urban100")]
