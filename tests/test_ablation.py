from pathlib import Path

import pytest

from srlib.ablation import load_grid, parameter_counts, runnable, variant_configs
from srlib.archs import SRGANGenerator, count_parameters
from srlib.train import TrainConfig, build_generator

GRID = Path(__file__).resolve().parents[1] / "configs" / "ablation.yaml"


@pytest.fixture(scope="module")
def grid():
    return load_grid(GRID)


def test_grid_builds_every_variant(grid):
    assert grid["reference"] == "paper_block" and grid["seeds"] == [0, 1, 2]
    assert grid["primary_endpoint"]["datasets"] == ["Set5", "Set14", "BSD100", "Urban100"]
    assert "adversarial_control" in grid["variants"] and "adversarial_control" not in runnable(grid)
    configs = variant_configs(grid, seed=2)
    assert set(configs) == set(runnable(grid))
    assert all(isinstance(c, TrainConfig) and c.seed == 2 for c in configs.values())
    assert configs["paper_loss_vs_l1"].model == "psnr" and configs["srgan_model"].arch == "srgan"
    # one factor at a time: every variant's config differs from the reference only in model/generator/n_feats
    ref = vars(configs["paper_block"])
    for name, c in configs.items():
        assert {k for k, v in vars(c).items() if v != ref[k]} <= {"model", "generator", "n_feats"}, name


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
                            ("seeds: [0, 1, 2]", "seeds: [0, 0]", "seeds")]:
        path = tmp_path / "grid.yaml"
        path.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=match):
            load_grid(path)
