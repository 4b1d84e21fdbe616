"""srlib.bench on tiny CPU inputs: both step paths train, FLOP counting, the table and its CSV, tiling.

No timing is asserted: the numbers depend on the machine and its load.
"""
import copy
import math

import pandas as pd
import pytest
import torch

from srlib import archs, bench
from srlib.cli import build_parser
from srlib.infer import cpu_model, upscale_tensor

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two OpenMP threads competing with other processes
    make these tiny ops many times slower (measured: 65 s instead of 8 s for this file)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_paths(model):
    cfg = bench.BenchConfig(**bench.PRESETS["tiny"])
    G, D, crit = bench._build_step_models(model, cfg, seed=0)
    gen = torch.Generator().manual_seed(0)
    lr, hr = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    fast = bench._Path("srlib fp32", copy.deepcopy(G), copy.deepcopy(D), copy.deepcopy(crit), lr, hr, CPU)
    naive = bench._Path("naive", G, D, crit, lr, hr, CPU, naive=True)
    return fast, naive


@pytest.mark.parametrize("model", ["attention", "srgan"])
def test_both_step_paths_update_both_networks(model):
    fast, naive = tiny_paths(model)
    assert fast.G.head[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert naive.G.head[0].weight.is_contiguous() and not naive.opt_g.defaults["foreach"]
    for path in (fast, naive):
        before = [copy.deepcopy(m.state_dict()) for m in (path.G, path.D)]
        logged = path.step()
        assert set(logged) == {"d_loss", "g_loss", "d_score", "g_score"}
        assert all(math.isfinite(v) for v in logged.values()) and 0 < logged["d_score"] < 1
        for module, old in zip((path.G, path.D), before):
            changed = [k for k, v in module.state_dict().items()
                       if v.is_floating_point() and not torch.equal(v, old[k])]
            assert changed, (path.name, type(module).__name__)


def test_naive_step_does_the_redundant_work():
    fast, naive = tiny_paths("attention")
    f_fast, _ = bench.count_flops(fast.step)
    f_naive, _ = bench.count_flops(naive.step)
    assert 0 < f_fast < f_naive          # two extra G forwards, a D forward and backward through G and D


def test_flop_counter_counts_a_convolution():
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    flops, out = bench.count_flops(lambda: conv(torch.rand(1, 3, 8, 8)))
    assert out.shape == (1, 4, 8, 8) and flops == 2 * 4 * 3 * 9 * 64      # 2 x MACs
    flops_fb, _ = bench.count_flops(lambda: conv(torch.rand(1, 3, 8, 8, requires_grad=True)).sum().backward())
    assert flops_fb == 3 * flops                                          # backward: input and weight grads


def test_run_bench_tiny_table_and_csv(tmp_path):
    out = tmp_path / "results" / "speed.csv"
    table = bench.run_bench("tiny", out=out, device="cpu", amp="fp32", peak_tflops=1.0, verbose=False,
                            models=("attention",))
    assert list(table.columns) == bench.COLUMNS
    assert table.measurement.iloc[0] == "environment" and "bf16 instructions" in table.note.iloc[0]
    assert table.config.iloc[0] == cpu_model()
    assert set(table.measurement) == {"environment", "train_step", "step_gflop", "train_tflops", "peak_fraction",
                                      "data_loading", "data_headroom", "inference", "inference_rss"}
    step = table[table.measurement == "train_step"].iloc[0]
    assert step.config == "attention crop32 b2 fp32" and step.srlib > 0 and step.naive > 0
    assert math.isclose(step.ratio, step.srlib / step.naive)
    gflop = table[table.measurement == "step_gflop"].iloc[0]
    assert gflop.naive > gflop.srlib > 0 and math.isclose(gflop.ratio, gflop.naive / gflop.srlib)
    inf = table[table.measurement == "inference"].iloc[0]
    assert inf.srlib > 0 and inf.naive > 0 and "48x48->192x192 tile32" in inf.config
    configs = list(table[table.measurement == "inference"].config)
    assert inf.config.endswith(" calibrated")                     # the default inference first
    assert any(c.endswith(" whole") for c in configs) and any(c.endswith(" low-memory") for c in configs)
    assert table[table.measurement == "inference_rss"].srlib.iloc[0] > 0
    assert table[table.measurement == "data_headroom"].srlib.iloc[0] > 0
    saved = pd.read_csv(out)
    assert list(saved.columns) == bench.COLUMNS and list(saved.measurement) == list(table.measurement)
    text = bench.format_table(table)
    assert text.splitlines()[0].split() == bench.COLUMNS and "x" in text


def test_cli_registers_bench():
    args = build_parser().parse_args(["bench", "--quick", "--out", "speed.csv", "--device", "cpu"])
    assert args.handler == "srlib.bench:_bench_cli" and args.quick and not args.compile and args.amp == "auto"


def test_precisions():
    assert bench.precisions(torch.device("cuda")) == ("bf16",)
    assert bench.precisions(CPU)[0] == "fp32" and bench.precisions(CPU, "bf16") == ("bf16",)


# Tiled against whole-image inference, 64x80 LR, tiles of 32 overlapping by 16 (3 x 4 tiles). SRGAN's
# BatchNorm uses stored statistics, so tiles agree up to the receptive field (about 9 LR pixels for one
# block, inside the 8-pixel margin plus the fading far taps): measured max 0.08/255. The attention
# generator's GroupNorm and channel attention need whole-image statistics: its low-resolution part runs
# on the whole image and only the upsampling part in tiles (measured max 5e-5/255). Before that split,
# per-tile statistics gave max 14.7/255 here.
@pytest.mark.parametrize("arch", ["srgan", "attention"])
def test_tiled_inference_matches_whole_image(arch):
    torch.manual_seed(0)
    model = archs.build_generator(arch, n_blocks=1, n_feats=16).eval()
    lr = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(1))
    whole = upscale_tensor(model, lr, 4)
    tiled = upscale_tensor(model, lr, 4, tile=32, overlap=16)
    assert tiled.shape == whole.shape == (1, 3, 256, 320)
    assert (tiled - whole).abs().max().item() <= 1 / 255


def test_bf16_inference_on_cpu_is_close_to_fp32():
    torch.manual_seed(0)
    model = archs.build_generator("attention", n_blocks=1, n_feats=16).eval()
    lr = torch.rand(1, 3, 24, 20, generator=torch.Generator().manual_seed(1))
    fp32 = upscale_tensor(model, lr, 4, amp=False)
    bf16 = upscale_tensor(model, lr, 4, amp="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    diff = (bf16 - fp32).abs()
    assert 0 < diff.max().item() < 8 / 255 and diff.mean().item() < 1 / 255
    assert torch.equal(upscale_tensor(model, lr, 4, amp=True), fp32)    # 'auto' on CPU is fp32
