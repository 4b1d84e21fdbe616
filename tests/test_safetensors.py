"""generator.safetensors: what train() exports, what upscale and evaluate load, and its integrity check."""
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from srlib import train as T
from srlib.evaluate import evaluate
from srlib.infer import CheckpointError, load_generator, save_checkpoint
from srlib.cli import upscale_main
from srlib.upscale import load_upscaler


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "psnr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T.train(T.make_config("psnr", "smoke"), out)
    return out


def test_train_exports_safetensors_that_upscale_and_evaluate_load(run, tmp_path):
    path = run / "generator.safetensors"
    assert path.exists() and not (run / "generator.pt").exists()
    model, scale = load_upscaler(path)
    _, ckpt = load_generator(path)
    _, full = load_generator(run / "checkpoint.pt")
    assert scale == 4 and ckpt["step"] == 6 and ckpt["generator"]["arch"] == "attention"
    assert all(torch.equal(ckpt["G"][k], full["G"][k].contiguous()) for k in full["G"])
    scores = evaluate(str(path), ["demo"])
    assert len(scores) == 2 * 6 and scores.psnr.notna().all()
    img = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(img)
    assert upscale_main([str(img), "-o", str(tmp_path / "out"), "--checkpoint", str(path)]) == 0
    assert Image.open(tmp_path / "out" / "in_x4.png").size == (40, 48)


def test_tampered_file_is_a_clear_error(run, tmp_path):
    data = bytearray((run / "generator.safetensors").read_bytes())
    flipped = bytearray(data)
    flipped[-5] ^= 0x01                     # one bit of one weight
    (tmp_path / "bit.safetensors").write_bytes(flipped)
    with pytest.raises(CheckpointError, match=r"bit\.safetensors: its tensors do not match the sha256"):
        load_upscaler(tmp_path / "bit.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors: not a readable safetensors file"):
        load_generator(tmp_path / "cut.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match="not an srlib generator"):
        load_generator(tmp_path / "foreign.safetensors")


def test_finished_runs_are_reused_and_old_exports_migrated(tmp_path):
    out = tmp_path / "run"
    cfg = T.make_config("psnr", "smoke", steps=2, warmup_steps=0)
    T.train(cfg, out)
    stamp = (out / "generator.safetensors").stat().st_mtime_ns
    (out / "checkpoint.pt").rename(tmp_path / "checkpoint.pt")     # as committed: no resume checkpoint
    assert T.train(cfg, out)["status"] == "complete"
    assert (out / "generator.safetensors").stat().st_mtime_ns == stamp and not (out / "checkpoint.pt").exists()
    # an early run: generator.pt beside its checkpoint; reusing it exports the safetensors file
    (tmp_path / "checkpoint.pt").rename(out / "checkpoint.pt")
    (out / "generator.safetensors").unlink()
    save_checkpoint(out / "generator.pt", {"format": "srlib-checkpoint-v1"})
    T.train(cfg, out)
    assert (out / "generator.safetensors").exists() and not (out / "generator.pt").exists()


def test_evaluate_cache_reuses_only_matching_scores(run, tmp_path):
    """Per-dataset scores are cached under a key of generator, inference and measures: a second call reads
    them back equal (under its own label), while another inference or another generator file is computed."""
    import shutil
    path, cache = run / "generator.safetensors", tmp_path / "scores"
    first = evaluate(str(path), ["demo"], cache=cache, label="a")
    assert len(list(cache.glob("demo-*.csv"))) == 1
    again = evaluate(str(path), ["demo"], cache=cache, label="b")
    pd.testing.assert_frame_equal(first.drop(columns="method"), again.drop(columns="method"))
    assert set(again.method) == {"b"}
    evaluate(str(path), ["demo"], cache=cache, inference="whole")
    other = tmp_path / "other.safetensors"          # same weights under another name: the same sha256, reused
    shutil.copy(path, other)
    evaluate(str(other), ["demo"], cache=cache)
    assert len(list(cache.glob("demo-*.csv"))) == 2
    evaluate("bicubic", ["demo"], cache=cache)
    assert len(list(cache.glob("demo-*.csv"))) == 3
