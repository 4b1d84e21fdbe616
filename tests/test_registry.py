"""One place registers an architecture: a toy generator added to the registry (srlib.archs.register_generator
and srlib.config.register_model, nothing else) is trained, scored and reported by the code that trains, scores
and reports the paper's models."""
import pytest
import torch.nn.functional as F
from torch import nn

from srlib import archs, config


class ToyGenerator(nn.Module):
    """Bicubic upsampling plus one learned 3x3 correction: small enough to train in a test."""

    def __init__(self, scale=4, n_blocks=1, n_feats=16):
        super().__init__()
        self.scale = scale
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.conv(up)


@pytest.fixture
def toy():
    """The toy registered for one test, the registry restored afterwards."""
    saved = [(t, dict(t)) for t in (archs.GENERATORS, config.MODELS, config.LABELS, config.WARMUP_MODEL)]
    archs.register_generator("toy", ToyGenerator)
    config.register_model("toy", "toy", "l1", "Toy (test)")
    yield "toy"
    for table, before in saved:
        table.clear()
        table.update(before)


def test_the_registry_refuses_a_name_twice_and_an_unknown_loss(toy):
    with pytest.raises(ValueError, match="registered already"):
        config.register_model("toy", "toy", "l1", "again")
    with pytest.raises(ValueError, match="registered already"):
        archs.register_generator("toy", ToyGenerator)
    with pytest.raises(ValueError, match="loss 'l2'"):
        config.register_model("toy2", "toy", "l2", "Toy 2")


def test_the_bench_times_every_registered_gan_model(toy):
    from srlib.bench import BenchConfig
    from srlib.cli import build_parser
    assert BenchConfig().models == ("srgan", "attention")              # psnr and the toy train with L1 only
    config.register_model("toy_gan", "toy", "paper", "Toy GAN (test)")
    try:
        assert BenchConfig().models == ("srgan", "attention", "toy_gan")
        assert build_parser().parse_args(["bench", "--models", "toy_gan"]).models == ["toy_gan"]
    finally:
        del config.MODELS["toy_gan"], config.LABELS["toy_gan"]


def test_a_registered_toy_generator_is_trained_scored_and_reported(toy, tmp_path):
    import pandas as pd

    from srlib import study
    from srlib.cli import build_parser
    from srlib.evaluate import evaluate
    assert build_parser().parse_args(["train", "--model", "toy", "--out", "x"]).model == "toy"   # the CLI
    study.train_run("toy", "smoke", tmp_path / "runs")                       # training (a warm-up of its own)
    assert "toy" in study.run_dirs(tmp_path / "runs")
    summary, per_image = study.benchmark(tmp_path / "runs", datasets=["demo"], results_dir=tmp_path / "results",
                                         progress=False, cache=None)       # scoring: bicubic and the toy
    assert set(summary.method) == {"Bicubic", "Toy (test)"}
    assert per_image[per_image.method == "Toy (test)"].psnr.notna().all()
    assert "Toy (test)" in (tmp_path / "results" / "table1.md").read_text()   # the report
    study.write_model_cards(tmp_path / "runs", summary)
    card = (tmp_path / "runs" / "toy" / "README.md").read_text()
    assert card.startswith("# Toy (test):") and "toy generator" in card and "- Loss: L1." in card
    gen = tmp_path / "runs" / "toy" / "generator.safetensors"
    again = evaluate(str(gen), ["demo"], label="toy")                         # the file loads by its arch name
    pd.testing.assert_series_equal(again.psnr.reset_index(drop=True),
                                   per_image[per_image.method == "Toy (test)"].psnr.reset_index(drop=True),
                                   check_names=False)
