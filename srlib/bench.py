"""Speed: srlib's training step, data loading and tiled inference against a straightforward implementation.

    python -m srlib bench [--quick | --tiny] [--out results/speed.csv] [--data-root DIR] [--device D]

Everything is measured in one process and one run; the table (columns measurement, config, srlib, naive,
unit, ratio, note) is printed and written to a CSV. ``ratio`` says how many times better srlib is:
srlib / naive for rates (steps/s, crops/s, MP/s), naive / srlib for costs (GFLOP per step, MB).

The ``naive`` column mirrors the public leftthomas/SRGAN code (train.py, data_utils.py), which the
paper's training loop follows:

- training step: fp32, NCHW, default Adam (``foreach=False``). ``fake = G(z)``; D update with
  ``backward(retain_graph=True)``, which also runs back through G (``fake`` is not detached); a second
  ``G(z)`` and ``D(fake)`` for the generator loss, with D's weights not frozen during that backward; the
  logging forward ``G(z)``, ``D(fake)`` (graph kept) before ``optimizerG.step()``; ``.item()`` of the
  logged values. cuDNN autotuning off (the PyTorch default).
- data: ``TrainDatasetFromFolder``: each sample opens and decodes the file, RandomCrop, ToTensor,
  ToPILImage, PIL bicubic Resize, ToTensor (plus ``convert('RGB')`` so that gray files batch).
- inference: the whole image in one call, fp32, NCHW, under ``no_grad``.

srlib's path: :func:`srlib.train.train_step` (one G forward, reused detached for D; D frozen during the
generator's backward), channels_last (G, D and the loss's VGG16), Adam as train.py builds it (torch's
default), in the precision of train.py's ``amp='auto'``: bf16 autocast on CUDA, fp32 on CPU. On a CPU with
native bf16 (AMX / AVX512-BF16) the bf16-autocast variant, what ``amp='bf16'`` trains with, is measured
besides fp32. Data: :class:`srlib.data.TrainDataset` (images decoded once, numpy crops, MATLAB
bicubic LR). Inference: :func:`srlib.infer.upscale_tensor` in tiles of 256 LR pixels (exact: the attention
generator's low-resolution part on the whole image); at the largest size also its low-memory mode (the
whole network in tiles, per-tile statistics).

Both step paths start from the same weights and use the same random batch (B, 3, crop/4, crop/4) ->
(B, 3, crop, crop). Warm-up steps are not timed; the first one counts the step's FLOPs
(``torch.utils.flop_counter.FlopCounterMode``). Timed steps of the paths alternate, so a change in machine
load hits all of them; the table gives medians. The SRGAN loss uses a random-init VGG16
(``vgg_weights='random'``): the same cost as ImageNet weights, which timing does not need.
"""
import copy
import dataclasses
import gc
import math
import os
import resource
import statistics
import time
from dataclasses import dataclass, field

import torch

from . import archs
from .data import DEMO, TrainDataset, hr_files, resolve_datasets
from .infer import autocast, cpu_bf16_supported, pick_device, upscale_tensor
from .io import atomic_write
from .config import PEAK_BF16_TFLOPS as DEFAULT_PEAK_BF16_TFLOPS
from .config import MODELS, gan_models, make_config
from .train import build_generator, build_losses, train_step

COLUMNS = ["measurement", "config", "srlib", "naive", "unit", "ratio", "note"]
DECIMALS = {"steps/s": 3, "GFLOP/step": 1, "TFLOP/s": 3, "crops/s": 1, "x": 1, "MP/s": 3, "MB": 0, "%": 1}
TRAIN_SETS = ["T91", "BSD200", "DIV2K"]   # data loading source under --data-root (the quick profile's)


@dataclass
class BenchConfig:
    models: tuple = field(default_factory=gan_models)   # the registry's GAN models (srlib.config.gan_models)
    crops: tuple = (96, 128)                # HR crop of the training step
    batch: int = 16                         # the paper's batch
    n_blocks: int = 5                       # generator size, as the training profiles
    n_feats: int = 64
    warmup: int = 3                         # untimed steps per path (the first counts FLOPs)
    steps: int = 10                         # timed steps per path; the median is reported
    data_crop: int = 96                     # HR crop of the data-loading measurement
    data_batches: int = 30                  # timed batches per loader (one more untimed first)
    infer_sizes: tuple = (512, 2048)        # LR side of the inference inputs (output 4x per side)
    infer_reps: int = 3                     # timed repetitions at the smallest size (1 at larger ones)
    untiled: int = 512                      # LR side also run as one whole image (the naive column)
    tile: int = 256                         # LR pixels per tile side
    overlap: int = 40                       # tile overlap, LR pixels
    infer_blocks: int = 5                   # inference generator size (the attention default)
    infer_feats: int = 64
    threads: int = 0                        # torch CPU threads during the run; 0: leave unchanged


PRESETS = {
    "full": {},
    # minutes on 2 CPU cores: crop 96 only, 2 + 4 steps, no 2048x2048 inference
    "quick": dict(crops=(96,), warmup=2, steps=4, data_batches=10, infer_sizes=(512,), infer_reps=1),
    # seconds: tests and dry runs. Tiny generators, tiny crops, one repetition; one thread, as tiny ops
    # gain nothing from two and lose much when other processes keep the cores busy
    "tiny": dict(crops=(32,), batch=2, n_blocks=1, n_feats=16, warmup=1, steps=1, data_crop=32,
                 data_batches=1, infer_sizes=(48,), infer_reps=1, untiled=48, tile=32, overlap=8,
                 infer_blocks=1, infer_feats=16, threads=1),
}


# ---------------------------------------------------------------------------------------------- paths


def naive_step(G, D, opt_g, opt_d, crit, lr, hr):
    """One batch as leftthomas/SRGAN's train.py (see the module docstring). Returns the logged floats."""
    fake_img = G(lr)
    D.zero_grad()
    real_out = D(hr).mean()
    fake_out = D(fake_img).mean()
    d_loss = 1 - real_out + fake_out
    d_loss.backward(retain_graph=True)
    opt_d.step()
    G.zero_grad()
    fake_img = G(lr)                     # the second generator forward of that code
    fake_out = D(fake_img).mean()
    g_loss, _ = crit(fake_out, fake_img, hr)
    g_loss.backward()
    fake_img = G(lr)                     # the logging forward of that code, graph kept
    fake_out = D(fake_img).mean()
    opt_g.step()
    return dict(d_loss=d_loss.item(), g_loss=g_loss.item(), d_score=real_out.item(), g_score=fake_out.item())


def precisions(device, amp="auto"):
    """srlib variants to measure: 'bf16' on CUDA (as train()); on CPU 'fp32' (as train()) and, where the
    CPU has native bf16, 'bf16' too. ``amp`` 'fp32' or 'bf16' picks one."""
    if amp != "auto":
        return (amp,)
    if device.type == "cuda":
        return ("bf16",)
    return ("fp32", "bf16") if device.type == "cpu" and cpu_bf16_supported() else ("fp32",)


def count_flops(fn):
    """FLOPs counted by ``FlopCounterMode`` while ``fn()`` runs (convolutions and matmuls, forward and
    backward); returns ``(flops, fn's result)``."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        result = fn()
    return counter.get_total_flops(), result


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Path:
    """One way of running the G+D step: models, optimizers, the batch in its layout, the step function."""

    def __init__(self, name, G, D, crit, lr, hr, device, precision="fp32", naive=False, compile_=False):
        self.name, self.device, self.naive, self.compiled = name, device, naive, False
        fmt = torch.contiguous_format if naive else torch.channels_last
        self.G, self.D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
        self.crit = crit.to(device, memory_format=fmt)
        self.lr = lr.to(device).contiguous(memory_format=fmt)
        self.hr = hr.to(device).contiguous(memory_format=fmt)
        if naive:
            self.opt_g = torch.optim.Adam(G.parameters(), 1e-4, foreach=False)
            self.opt_d = torch.optim.Adam(D.parameters(), 1e-4, foreach=False)
        else:
            self.opt_g, self.opt_d = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)
        self.autocast = None if naive else autocast(precision, device)
        self.want_compile, self.times, self.flops = compile_, [], math.nan
        self.g_run, self.d_run = self.G, self.D

    def step(self):
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not self.naive   # srlib.train sets it; the reference does not
        if self.naive:
            return naive_step(self.G, self.D, self.opt_g, self.opt_d, self.crit, self.lr, self.hr)
        res = train_step(self.g_run, self.d_run, self.opt_g, self.opt_d, self.crit, self.lr, self.hr, True,
                         self.autocast)
        return {k: float(v) for k, v in res.items() if k != "parts"}      # as train(): one sync per logged value

    def try_compile(self):
        if not self.want_compile:
            return
        self.want_compile = False
        try:
            self.g_run, self.d_run = torch.compile(self.G), torch.compile(self.D)
            self.step()
            self.compiled = True
        except Exception as e:  # noqa: BLE001 -- any backend failure: report and continue eager
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
            print(f"torch.compile failed for {self.name} ({type(e).__name__}: {first}); continuing without it")
            self.g_run, self.d_run = self.G, self.D


def _build_step_models(model, cfg, seed):
    tc = make_config(model, "quick", n_blocks=cfg.n_blocks, n_feats=cfg.n_feats, vgg_weights="random",
                     seed=seed)
    torch.manual_seed(seed)
    G, _ = build_generator(tc)
    D = archs.Discriminator()
    crit, _, _ = build_losses(tc)
    return G, D, crit


def bench_steps(model, crop, cfg, device, precs, compile_=False, seed=0):
    """Median steps/s and FLOPs per step of srlib's path (one per precision) and the naive path."""
    G, D, crit = _build_step_models(model, cfg, seed)
    gen = torch.Generator().manual_seed(seed)
    lr = torch.rand(cfg.batch, 3, crop // 4, crop // 4, generator=gen)
    hr = torch.rand(cfg.batch, 3, crop, crop, generator=gen)
    paths = [_Path(f"srlib {p}", copy.deepcopy(G), copy.deepcopy(D), copy.deepcopy(crit), lr, hr, device, p,
                   compile_=compile_) for p in precs]
    paths.append(_Path("naive", G, D, crit, lr, hr, device, naive=True))
    for path in paths:
        path.flops, _ = count_flops(path.step)
        path.try_compile()
        for _ in range(cfg.warmup - 1):
            path.step()
    _sync(device)
    for _ in range(cfg.steps):
        for path in paths:          # alternate, so that load changes hit every path alike
            t0 = time.perf_counter()
            path.step()
            _sync(device)
            path.times.append(time.perf_counter() - t0)
    return paths


# ----------------------------------------------------------------------------------------------- data


class NaiveTrainDataset(torch.utils.data.Dataset):
    """leftthomas/SRGAN's ``TrainDatasetFromFolder``: decode, RandomCrop and PIL-resize at every sample."""

    def __init__(self, files, crop, scale, length):
        from PIL import Image
        from torchvision import transforms as T
        self.files, self.length, self.open = list(files), length, Image.open
        self.hr_transform = T.Compose([T.RandomCrop(crop), T.ToTensor()])
        bicubic = T.InterpolationMode.BICUBIC
        self.lr_transform = T.Compose([T.ToPILImage(), T.Resize(crop // scale, interpolation=bicubic), T.ToTensor()])

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        hr = self.hr_transform(self.open(self.files[index % len(self.files)]).convert("RGB"))
        return self.lr_transform(hr), hr


def _loader_rate(dataset, batch, n_batches, seed=0):
    loader = torch.utils.data.DataLoader(dataset, batch, shuffle=True, drop_last=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(seed))
    it = iter(loader)
    next(it)                                   # untimed: first-call costs
    t0 = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - t0)


def bench_data(sources, root, cfg, scale=4):
    """Crops/s of ``TrainDataset`` and of the naive per-sample-decoding dataset; also the files used."""
    from PIL import Image
    files = []
    for name in sources:
        for f in hr_files(name, root):
            with Image.open(f) as im:          # header only: skip images smaller than the crop, as TrainDataset
                if min(im.size) >= cfg.data_crop:
                    files.append(f)
    if not files:
        raise ValueError(f"no training image of at least {cfg.data_crop} px in {', '.join(sources)}")
    need = (cfg.data_batches + 1) * cfg.batch
    t0 = time.perf_counter()
    ds = TrainDataset(sources, root, cfg.data_crop, scale, "matlab", True, max(1, math.ceil(need / len(files))))
    cache_s = time.perf_counter() - t0
    fast = _loader_rate(ds, cfg.batch, cfg.data_batches)
    slow = _loader_rate(NaiveTrainDataset(files, cfg.data_crop, scale, max(need, len(files))), cfg.batch,
                        cfg.data_batches)
    return fast, slow, len(files), cache_s


# ------------------------------------------------------------------------------------------ inference


def _reset_peak_rss():
    """Return freed heap to the OS (glibc ``malloc_trim``), then reset the kernel's RSS high-water mark
    (Linux ``clear_refs``); False where that is not allowed."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # kB on Linux


def _timed_inference(fn, device, reps):
    """(median seconds, peak RSS MB, peak CUDA MB or nan, whether the RSS peak was reset before)."""
    gc.collect()
    reset = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        del out
    cuda_mb = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else math.nan
    return statistics.median(times), _peak_rss_mb(), cuda_mb, reset


def bench_inference(cfg, device, precs, seed=0):
    """Rows of output MP/s and peak memory: tiled srlib inference per size and precision, untiled fp32."""
    from .calibration import calibrate
    torch.manual_seed(seed)
    base = archs.AttentionGenerator(n_blocks=cfg.infer_blocks, n_feats=cfg.infer_feats).eval()
    # the default inference: GroupNorm statistics calibrated at the training extent (here on random 24-px crops:
    # the cost does not depend on the values), as every trained generator file holds them
    calibrate(base, torch.rand(64, 3, 24, 24, generator=torch.Generator().manual_seed(seed)))
    models = {}
    for p in precs:
        m = copy.deepcopy(base).to(device)
        models[p] = m.to(memory_format=torch.channels_last) if p == "bf16" and device.type == "cpu" else m
    naive_model = copy.deepcopy(base).to(device)
    archs.set_inference(naive_model, "whole")          # the straightforward one: whole-image statistics
    rows = []
    gen = torch.Generator().manual_seed(seed)
    warm = torch.rand(1, 3, 32, 32, generator=gen)
    for p, m in models.items():                      # untimed: first-call (kernel selection) costs
        upscale_tensor(m, warm, 4, tile=cfg.tile, overlap=cfg.overlap, amp=p)
    with torch.no_grad():
        naive_model(warm.to(device))
    for n in cfg.infer_sizes:
        lr = torch.rand(1, 3, n, n, generator=gen)
        mp = (4 * n) ** 2 / 1e6
        reps = cfg.infer_reps if n == min(cfg.infer_sizes) else 1
        naive = None
        if n == cfg.untiled:
            def run_naive(lr=lr):
                with torch.no_grad():
                    return naive_model(lr.to(device)).clamp_(0, 1).cpu()
            naive = _timed_inference(run_naive, device, reps)
        # the default (calibrated GroupNorm; channel attention over the whole image) always; at the smallest size
        # also whole-image GroupNorm statistics (--inference whole), at the largest the low-memory mode
        modes = [("calibrated", True)] + ([("whole", True)] if n == min(cfg.infer_sizes) else []) \
            + ([("calibrated", False)] if n == max(cfg.infer_sizes) else [])
        for inference, exact in modes:
            for p, m in models.items():
                def run(m=m, lr=lr, p=p, exact=exact, inference=inference):
                    archs.set_inference(m, inference)
                    return upscale_tensor(m, lr, 4, tile=cfg.tile, overlap=cfg.overlap, amp=p, exact=exact)
                t, rss, cuda_mb, reset = _timed_inference(run, device, reps)
                archs.set_inference(m, "calibrated")
                config = f"attention {n}x{n}->{4 * n}x{4 * n} tile{cfg.tile} {p} {inference}" \
                    + ("" if exact else " low-memory")
                out_mb = 3 * (4 * n) ** 2 * 4 / 2 ** 20
                mode = ("calibrated GroupNorm, channel attention over the whole image" if inference == "calibrated"
                        else "whole-image GroupNorm statistics") if exact else \
                    "calibrated GroupNorm, channel attention per tile (not exact)"
                if naive:
                    note = f"srlib {t:.2f} s; untiled fp32 {naive[0]:.2f} s; {reps} rep(s); {mode}"
                    rows.append(_row("inference", config, mp / t, mp / naive[0], "MP/s", note=note))
                else:
                    gb = 64 * (4 * n) ** 2 * 4 / 1e9
                    rows.append(_row("inference", config, mp / t, math.nan, "MP/s",
                                     note=f"srlib {t:.2f} s; {mode}; untiled not run: a 64-channel fp32 map "
                                          f"at output size is {gb:.1f} GB"))
                peak = "peak since reset" if reset else "process peak so far"
                rows.append(_row("inference_rss", config, rss, naive[1] if naive else math.nan, "MB", cost=True,
                                 note=f"ru_maxrss, {peak}; includes the {out_mb:.0f} MB fp32 output"))
                if device.type == "cuda":
                    rows.append(_row("inference_cuda_mem", config, cuda_mb, naive[2] if naive else math.nan,
                                     "MB", cost=True, note="torch.cuda.max_memory_allocated"))
    return rows


# -------------------------------------------------------------------------------------------- driver


def _row(measurement, config, srlib, naive, unit, cost=False, note=""):
    ratio = math.nan
    if srlib and naive and not (math.isnan(srlib) or math.isnan(naive)):
        ratio = naive / srlib if cost else srlib / naive
    return dict(measurement=measurement, config=config, srlib=float(srlib), naive=float(naive), unit=unit,
                ratio=ratio, note=note)


def environment(device, record=None):
    """One line of the machine's record (:func:`srlib.environment.line`) and the load average now."""
    from . import environment as env
    return f"{env.line(record or env.record(device))}; load average {os.getloadavg()[0]:.1f}"


def run_bench(preset="full", out=None, data_root=None, device=None, compile_=False, amp="auto",
              peak_tflops=None, parts=("train", "data", "inference"), threads=None, verbose=True, **overrides):
    """Measure and return the table as a ``pandas.DataFrame`` (columns :data:`COLUMNS`).

    Args:
        preset: 'full', 'quick' or 'tiny' (see :data:`PRESETS`); ``overrides`` change single
            :class:`BenchConfig` fields (e.g. ``steps=5``).
        out: CSV path written atomically, or None.
        data_root: data loading reads the quick profile's training sets (T91, BSD200, DIV2K) under this root,
            else under $SRLIB_DATA or ./data, else the demo images; the tiny preset uses the demo images.
        device: None picks CUDA when present, else CPU.
        compile_: also try ``torch.compile`` on srlib's path (on failure a line is printed and eager runs).
        amp: srlib precisions: 'auto' (see :func:`precisions`), 'fp32' or 'bf16'.
        peak_tflops: bf16 dense peak for the fraction-of-peak rows; None: only on CUDA, from the
            environment variable PEAK_BF16_TFLOPS, default 989 (H100 / H200 SXM).
        parts: which of 'train', 'data', 'inference' to run.
        threads: CPU threads for torch (``torch.set_num_threads``) during the run; None: the preset's
            (unchanged, except 1 for 'tiny'). On a CPU shared with other busy processes, fewer threads
            than cores can be much faster (measured here: 1.0 s instead of 13.5 s per attention bf16 step).
    """
    if threads is not None:
        overrides["threads"] = threads
    cfg = dataclasses.replace(BenchConfig(**PRESETS[preset]), **overrides)
    saved_threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run(cfg, preset, out, data_root, device, compile_, amp, peak_tflops, parts, verbose)
    finally:
        torch.set_num_threads(saved_threads)


def _run(cfg, preset, out, data_root, device, compile_, amp, peak_tflops, parts, verbose):
    import pandas as pd
    if cfg.warmup < 1:
        raise ValueError("warmup must be >= 1 (the first warm-up step counts FLOPs)")
    device = pick_device(device)
    if peak_tflops is None and device.type == "cuda":
        peak_tflops = float(os.environ.get("PEAK_BF16_TFLOPS", DEFAULT_PEAK_BF16_TFLOPS))
    precs = precisions(device, amp)
    say = print if verbose else (lambda *a, **k: None)
    from . import environment as envmod
    record = envmod.record(device)
    env = environment(device, record)
    say(env)
    # the first row says where the figures were measured (a table without it cannot be read)
    machine = record["gpu"] if device.type == "cuda" else record["cpu"]
    rows, t_start = [_row("environment", machine, math.nan, math.nan, "-", note=env)], time.perf_counter()
    if "train" in parts:
        for crop in cfg.crops:
            for model in cfg.models:
                t0 = time.perf_counter()
                paths = bench_steps(model, crop, cfg, device, precs, compile_)
                naive = paths[-1]
                n_rate = 1 / statistics.median(naive.times)
                for path in paths[:-1]:
                    config = f"{model} crop{crop} b{cfg.batch} {path.name.split()[1]}" + \
                             ("+compile" if path.compiled else "")
                    rate = 1 / statistics.median(path.times)
                    rows.append(_row("train_step", config, rate, n_rate, "steps/s",
                                     note=f"median of {cfg.steps}; naive fp32 NCHW" +
                                          ("; VGG16 random-init" if MODELS[model][1] == "srgan" else "")))
                    rows.append(_row("step_gflop", config, path.flops / 1e9, naive.flops / 1e9, "GFLOP/step",
                                     cost=True, note="FlopCounterMode, one G+D step"))
                    rows.append(_row("train_tflops", config, path.flops * rate / 1e12,
                                     naive.flops * n_rate / 1e12, "TFLOP/s", note="achieved: FLOPs x steps/s"))
                    if peak_tflops:
                        rows.append(_row("peak_fraction", config, 100 * path.flops * rate / 1e12 / peak_tflops,
                                         100 * naive.flops * n_rate / 1e12 / peak_tflops, "%",
                                         note=f"of bf16 dense peak {peak_tflops:g} TFLOP/s (PEAK_BF16_TFLOPS; "
                                              f"default {DEFAULT_PEAK_BF16_TFLOPS:g}: H100/H200 SXM)"))
                say(f"  {model} crop {crop}: " + ", ".join(
                    f"{p.name} {statistics.median(p.times):.3f} s/step" for p in paths)
                    + f" ({time.perf_counter() - t0:.0f} s)")
                del paths
                gc.collect()
    if "data" in parts:
        # the quick profile's training sets under the data root ($SRLIB_DATA), else the demo images
        sources = [DEMO] if preset == "tiny" and not data_root else resolve_datasets(TRAIN_SETS, data_root)
        fast, slow, n_files, cache_s = bench_data(sources, data_root, cfg)
        config = f"{'+'.join(sources)} ({n_files} images) crop{cfg.data_crop} b{cfg.batch}"
        rows.append(_row("data_loading", config, fast, slow, "crops/s",
                         note=f"1 process; srlib: decoded once ({cache_s:.1f} s, not timed), MATLAB bicubic; "
                              f"naive: decode + PIL bicubic per sample"))
        demand = [(r["srlib"] * cfg.batch, r["config"]) for r in rows
                  if r["measurement"] == "train_step" and f"crop{cfg.data_crop} " in r["config"]]
        if demand:
            need, which = max(demand)
            rows.append(_row("data_headroom", config, fast / need, math.nan, "x",
                             note=f"loading crops/s / training demand {need:.1f} crops/s ({which}); target >= 5"))
        say(f"  data loading: {fast:.1f} vs {slow:.1f} crops/s")
    if "inference" in parts:
        gc.collect()
        rows += bench_inference(cfg, device, precs)
    table = pd.DataFrame(rows, columns=COLUMNS)
    say(f"{preset} benchmark: {time.perf_counter() - t_start:.0f} s; load average now {os.getloadavg()[0]:.1f}")
    if out:
        atomic_write(out, lambda f: f.write(table.to_csv(index=False, float_format="%.6g").encode()))
    return table


def format_table(table):
    """The table as fixed-decimal text (decimals by unit; ratio as e.g. 2.41x)."""
    def num(v, unit):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{DECIMALS.get(unit, 3)}f}"
    body = [[r.measurement, r.config, num(r.srlib, r.unit), num(r.naive, r.unit), r.unit,
             "-" if math.isnan(r.ratio) else f"{r.ratio:.2f}x", r.note] for r in table.itertuples()]
    head = COLUMNS
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    right = {2, 3, 5}
    fmt = lambda cells: "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


def _bench_cli(args):
    preset = "tiny" if args.tiny else "quick" if args.quick else "full"
    overrides = {k: v for k, v in dict(steps=args.steps, warmup=args.warmup).items() if v is not None}
    if args.models:
        overrides["models"] = tuple(args.models)
    if args.crops:
        overrides["crops"] = tuple(args.crops)
    table = run_bench(preset, args.out, args.data_root, args.device, args.compile, args.amp, args.peak_tflops,
                      tuple(args.parts), args.threads, **overrides)
    print(format_table(table))
    if args.out:
        print(f"wrote {args.out}")
    return 0
