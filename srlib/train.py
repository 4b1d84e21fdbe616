"""Training: configuration profiles and the GAN loop of the paper's section 4.1, with exact resume.

Budgets are optimizer steps (as BasicSR's ``total_iter``), so a profile costs the same whatever the data
root holds. A run has up to two phases, each with its own learning-rate schedule and a fresh Adam:

1. warm-up (``warmup_steps``): L1 only, no discriminator;
2. main (to ``steps``): the model's loss. Per batch a discriminator update, then a generator update (the
   paper's order); for 'psnr' L1 again.

With ``warmup_dir`` the warm-up is shared: it runs once per generator architecture (and config) in a
folder of its own, and every run of that architecture starts its main phase from the warm-up's exported
generator, so 'psnr' and 'attention' differ only in their main phase. metrics.csv shows the shared rows.

Every ``val_every`` steps and at each phase end: validation PSNR/SSIM on ``val_set`` (both protocols) and
on the held-out ``tune_set``, the mean of each loss term, each term's share of the generator's gradient
norm on one fixed batch, one CSV row and a checkpoint (atomic). An EMA of the generator's weights
(``ema_decay``, bias-corrected, restarted at each phase) is what is validated and exported when enabled.
``resume`` continues from the checkpoint and gives the same weights as an uninterrupted run (crops and
shuffles are functions of (seed, step), and the RNG states are saved).

Under torchrun (``WORLD_SIZE`` > 1) each process takes its share of every step's global batch (the same
batch whatever the number of processes) and G and D run as DistributedDataParallel, whose averaged gradients
make the update of one process with the whole batch (for a model without BatchNorm; on CUDA BatchNorm
becomes SyncBatchNorm). Rank 0 alone validates and writes the run's files; the others wait for it at each
checkpoint, and every process resumes from the same checkpoint.

One writer per run folder: :func:`train` holds the folder's lock (:mod:`srlib.lock`; under torchrun rank 0
alone takes it) while it runs, and a second process that trains into the same folder stops at once with
:class:`srlib.lock.FolderLocked`. A run that needs a shared warm-up another process is writing waits for it
(with a message), then continues from it. Faults during the loop are one-line errors: Ctrl-C is
:class:`RunInterrupted` (where it stopped, how many steps the resume redoes), a full disk or a permission
denied is a :class:`srlib.io.WriteError` that says the last checkpoint is intact and how to resume.

Models: 'srgan' (SRGAN generator, SRGAN loss), 'attention' (the paper's generator and loss), 'psnr'
(the attention generator, L1 only, no discriminator: the baseline).
"""
import contextlib
import copy
import errno
import json
import math
import os
import platform
import random
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from . import archs, calibration, losses, timings
from .config import (MODELS, PROFILES, WARMUP_MODEL, TrainConfig, make_config, parse_overrides,  # noqa: F401
                     plain, warmup_config, warmup_run_dir)
from .errors import RunInterrupted, TrainingDiverged  # noqa: F401  (srlib.train.TrainingDiverged)
from .data import (StepSampler, TrainDataset, eval_digest, git_state, load_eval_set,
                   resolve_datasets, set_digest)
from .infer import (FORMAT, GENERATOR_FILE, PRECISIONS, CheckpointError, autocast, cpu_bf16_native, cpu_model,
                    load_checkpoint, load_generator, pick_device, save_checkpoint, save_generator, state_hash,
                    upscale_array)
from .io import WriteError, atomic_write, mib, write_json
from .lock import lock
from .metrics import image_scores

def training_precision(amp, device):
    """'fp32' or 'bf16' for training: 'auto' is bf16 on CUDA and on a CPU with native bf16."""
    if amp not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {amp!r}")
    if amp != "auto":
        return amp
    device = torch.device(device)
    return "bf16" if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_native()) else "fp32"


def build_generator(cfg):
    """(generator, its kwargs) for ``cfg``: the registered arch's class (:data:`srlib.archs.GENERATORS`) with
    the config's size, and its ``generator`` options where the class takes them."""
    kwargs = dict(scale=cfg.scale, n_blocks=cfg.n_blocks, n_feats=cfg.n_feats)
    if getattr(archs.GENERATORS.get(cfg.arch), "takes_options", False):
        kwargs.update(cfg.generator)
    elif cfg.generator:
        raise ValueError(f"generator options {cfg.generator} apply to the attention generator only")
    return archs.build_generator(cfg.arch, **kwargs), kwargs


def vgg16_path(cfg):
    """The VGG16 file the SRGAN loss of ``cfg`` looks for: torchvision's cached ImageNet file for 'auto', the
    given path otherwise; None for 'random'."""
    if cfg.vgg_weights == "random":
        return None
    return os.path.join(torch.hub.get_dir(), "checkpoints", losses.VGG16_FILE) if cfg.vgg_weights == "auto" \
        else cfg.vgg_weights


def vgg16_now_available(cfg, meta):
    """True when ``meta`` (a finished run's) records an SRGAN loss without ImageNet VGG16 (term dropped, or a
    random-init fallback) although ``cfg`` asks for ImageNet weights and their file is there now. Such a run
    is not reused: the resolved VGG16 is part of a run's identity, so it is trained again (from its shared
    warm-up when that exists) with Ledig's perceptual term. A run trained with ImageNet VGG16 is reused
    even where the file has gone, and ``vgg_weights='random'`` is never upgraded."""
    path = vgg16_path(cfg)
    return (cfg.loss == "srgan" and path is not None and os.path.isfile(path)
            and str(meta.get("vgg", "")).startswith(("dropped", "random")))


def build_losses(cfg):
    """(main-phase criterion, warm-up criterion, VGG note). The SRGAN loss's VGG16 follows ``vgg_weights`` and
    ``vgg_on_missing``; with 'drop' and no ImageNet file the perceptual term is left out."""
    note = "not used"
    if cfg.loss == "srgan":
        path = vgg16_path(cfg) or ""
        if cfg.vgg_on_missing == "drop" and cfg.vgg_weights != "random" and not os.path.isfile(path):
            warnings.warn(f"!!! VGG16 ImageNet weights not found at {path!r}: the SRGAN loss runs WITHOUT its "
                          f"perceptual term (vgg_on_missing='drop') !!!", RuntimeWarning, stacklevel=2)
            return losses.SRGANGeneratorLoss(None), losses.L1Loss(), f"dropped: no ImageNet VGG16 at {path}"
        on_missing = "error" if cfg.vgg_on_missing == "drop" else cfg.vgg_on_missing   # 'drop' handled above
        vgg, note = losses.load_vgg16_features(cfg.vgg_weights, on_missing, seed=cfg.seed)
        crit = losses.SRGANGeneratorLoss(vgg)
    elif cfg.loss == "paper":
        crit = losses.PaperGeneratorLoss(cfg.adv_weight, cfg.adversarial)
    else:
        crit = losses.L1Loss()
    return crit, losses.L1Loss(), note


def _rng_state():
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state):
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def validate(G, items, scale, protocols=("standard", "paper")):
    """Mean PSNR/SSIM of ``G`` on evaluation images (keys psnr, ssim and, for the paper protocol,
    psnr_paper, ssim_paper); fp32."""
    was_training = G.training
    G.eval()
    acc = {}
    for it in items:
        s = image_scores(upscale_array(G, it.lr, scale, amp=False), it.hr, scale, it.gray)
        for p in protocols:
            suffix = "" if p == "standard" else f"_{p}"
            acc.setdefault("psnr" + suffix, []).append(s[p][0])
            acc.setdefault("ssim" + suffix, []).append(s[p][1])
    G.train(was_training)
    return {k: float(np.mean(v)) for k, v in acc.items()}


class EMA:
    """Exponential moving average of a model's state (parameters and float buffers such as BatchNorm's
    running statistics; integer buffers are copied), bias-corrected: after ``n`` updates from a zero start,
    divided by ``1 - decay**n``. Computed in place as ``ema = d_n * ema + (1 - d_n) * w`` with
    ``d_n = decay * (1 - decay**(n-1)) / (1 - decay**n)``, so the first update copies the weights and no
    trace of the weights before the first update remains."""

    def __init__(self, model, decay):
        self.decay, self.n = decay, 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model):
        self.n += 1
        d = self.decay * (1 - self.decay ** (self.n - 1)) / (1 - self.decay ** self.n)
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.state[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.state[k].copy_(v)

    def state_dict(self):
        return {"decay": self.decay, "n": self.n, "state": self.state}

    def load_state_dict(self, sd):
        self.decay, self.n = sd["decay"], sd["n"]
        for k, v in sd["state"].items():
            self.state[k].copy_(v)


def term_gradients(G, D, crit, lr, hr, context=None):
    """Each weighted loss term's mean value and gradient norm w.r.t. G's parameters on one batch.

    Returns ``{term: (value, grad_norm)}``. G's buffers (BatchNorm statistics) are restored afterwards, so
    the measurement does not change the run. D is used as is (frozen: no gradient reaches it).
    """
    context = context or contextlib.nullcontext()
    buffers = {k: v.clone() for k, v in G.named_buffers()}
    params = [p for p in G.parameters() if p.requires_grad]
    d_grad = [p.requires_grad for p in D.parameters()] if D is not None else []
    if D is not None:
        D.requires_grad_(False)
    with context:
        sr = G(lr)
        fake = D(sr).float() if D is not None else None
        terms = crit.terms(fake, sr.float(), hr)
    out = {}
    for k, v in terms.items():
        grads = torch.autograd.grad(v, params, retain_graph=True, allow_unused=True)
        norm = math.sqrt(sum(float(g.float().pow(2).sum()) for g in grads if g is not None))
        out[k] = (float(v.detach()), norm)
    with torch.no_grad():
        for k, b in G.named_buffers():
            b.copy_(buffers[k])
    if D is not None:
        for p, r in zip(D.parameters(), d_grad):
            p.requires_grad_(r)
    return out


TERMS = losses.TERMS
CSV_FIELDS = (["step", "phase", "shared", "lr", "d_loss", "g_loss", "d_score", "g_score"] + list(TERMS)
              + [f"share_{t}" for t in TERMS]
              + ["tune_psnr", "tune_ssim", "tune_psnr_raw", "psnr", "ssim", "psnr_paper", "ssim_paper", "seconds",
                 "cpu_seconds", "others_cpu_seconds"])


def _write_csv(path, history):
    def cell(v):
        return f"{v:.6g}" if isinstance(v, float) and abs(v) < 1e-3 and v != 0 else \
            f"{v:.6f}" if isinstance(v, float) else str(v)
    lines = [",".join(CSV_FIELDS)] + [",".join(cell(row.get(k, math.nan)) for k in CSV_FIELDS) for row in history]
    atomic_write(path, lambda f: f.write(("\n".join(lines) + "\n").encode()))


def phases(cfg):
    """[(name, first step, end step, peak lr)]: 'warmup' (L1) when warmup_steps > 0, then the main phase
    ('gan' for GAN models, 'l1' for psnr) when steps > warmup_steps."""
    out = []
    if cfg.warmup_steps:
        out.append(("warmup", 0, cfg.warmup_steps, cfg.lr_warmup))
    if cfg.steps > cfg.warmup_steps:
        out.append(("gan" if cfg.loss != "l1" else "l1", cfg.warmup_steps, cfg.steps, cfg.lr_g))
    return out


def learning_rate(cfg, step, net="G"):
    """The learning rate of ``net`` ('G' or 'D', whose peak is lr_d) at ``step``."""
    for _, a, b, peak in phases(cfg):
        if a <= step < b:
            peak = cfg.lr_d if net == "D" else peak
            if cfg.schedule == "cosine":
                return cfg.eta_min + (peak - cfg.eta_min) * 0.5 * (1 + math.cos(math.pi * (step - a) / (b - a)))
            return peak
    raise ValueError(f"step {step} is outside the run's {cfg.steps} steps")


def _boundaries(cfg):
    """Steps after which a validation row and a checkpoint are written."""
    marks = set(range(cfg.val_every, cfg.steps + 1, cfg.val_every)) | {cfg.steps}
    if cfg.warmup_steps:
        marks.add(cfg.warmup_steps)
    return sorted(marks)


def _world():
    """(rank, number of processes) of the process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg, world):
    """The device of this process: under torchrun on CUDA, the GPU of its local rank."""
    device = pick_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


def _inner(model):
    """The module a DistributedDataParallel wrapper holds; ``model`` itself otherwise."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def train(cfg, out_dir, resume=True, force=False, wait=False):
    """Train according to ``cfg`` into ``out_dir``: metrics.csv, meta.json, checkpoint.pt (everything
    needed to resume) and generator.safetensors (the generator alone, EMA weights when enabled, for
    evaluation and upscaling).

    With ``resume`` (default) an existing checkpoint in ``out_dir`` is continued, and a finished run is
    returned as is unless ``force``, or unless it is an SRGAN run that went without ImageNet VGG16 while
    the file is there now (:func:`vgg16_now_available`; e.g. the committed quick-profile SRGAN after
    ``python -m srlib download vgg16``): that one is trained again, loudly. Returns the metadata dict (also
    in meta.json).

    ``out_dir`` is locked while the run writes it: another process writing it raises
    :class:`srlib.lock.FolderLocked` at once, or with ``wait`` (how a shared warm-up is trained) is waited
    for, with a message.

    Started by torchrun (``WORLD_SIZE`` > 1), it joins the process group ('nccl' on CUDA, 'gloo' on CPU)
    and trains data-parallel; ``batch_size`` is the global batch and must divide among the processes.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else int(os.environ.get("RANK", 0))
    with lock(out_dir, wait=wait) if rank == 0 else contextlib.nullcontext():   # rank 0 alone writes
        return _train_group(cfg, out_dir, resume, force, world)


def _train_group(cfg, out_dir, resume, force, world):
    """:func:`_train`, in a process group of its own when started by torchrun."""
    own = world > 1 and not dist.is_initialized()
    if own:
        if cfg.batch_size % world:
            raise ValueError(f"batch_size {cfg.batch_size} does not divide among {world} processes")
        device = _device(cfg, world)
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    try:
        return _train(cfg, Path(out_dir), resume, force)
    finally:
        if own:
            dist.destroy_process_group()


class _Run:
    """What one run holds while it trains: its config and folder, the process's place in the group, the
    models, losses and optimizers, the data, and the metadata written to meta.json (built by :func:`_build`,
    :func:`_start`, :func:`_load_data`)."""

    def __init__(self, cfg, out, device, rank, world):
        self.cfg, self.out, self.device, self.rank, self.world = cfg, out, device, rank, world
        self.fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.phase_of = {name: (a, b) for name, a, b, _ in phases(cfg)}
        self.opt_g = self.opt_d = self.ema = None

    def phase_at(self, step):
        return next(name for name, (a, b) in self.phase_of.items() if a <= step < b)

    def new_phase(self, name):
        """A fresh Adam for G (and for D in the GAN phase) and a fresh EMA."""
        cfg = self.cfg
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas) if name == "gan" else None
        self.ema = EMA(self.G, cfg.ema_decay) if cfg.ema_decay else None


def _train(cfg, out, resume, force):
    """The loop: decide how the run starts, build it, then per interval (phase boundaries and validations)
    start the phase where one begins, run the interval's steps, validate and checkpoint."""
    finished, start, history, ckpt, force = _decide_resume(cfg, out, resume, force)
    if finished is not None:
        return finished
    rank, world = _world()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} does not divide among {world} processes")
    run = _build(cfg, out, _device(cfg, world), rank, world)
    start, history = _start(run, ckpt, start, history)
    _load_data(run)
    run.step = start                # the steps done: _run_interval counts them, a Ctrl-C message reads them
    saved = ckpt["step"] if ckpt is not None else None     # the step of the checkpoint on disk
    try:
        for stop in [b for b in _boundaries(cfg) if b > start]:
            t0 = _clock()
            step = run.step
            name = run.phase_at(step)
            if step == run.phase_of[name][0] and (ckpt is None or ckpt["step"] != step or ckpt["phase"] != name):
                if run.ema is not None:      # a phase starts from the previous phase's exported (EMA) weights,
                    run.G.load_state_dict(run.ema.state)   # as a shared warm-up's main phase does
                run.new_phase(name)
            row = _run_interval(run, step, stop, name)      # run.step is stop now
            if rank:                # rank 0 validates and writes; the others wait until it has
                dist.barrier()
                continue
            _validate_and_checkpoint(run, row, history, stop, name, t0)
            saved = stop
            if world > 1:
                dist.barrier()
    except KeyboardInterrupt as e:
        raise RunInterrupted(_interrupted(out, cfg, run.step, saved, force)) from e
    except WriteError as e:
        e.advice = _write_advice(e, out / "checkpoint.pt", saved, force)
        raise
    return json.loads((out / "meta.json").read_text()) if rank else run.meta


def _decide_resume(cfg, out, resume, force):
    """How the run in ``out`` starts: (finished meta or None, start step, history, checkpoint or None,
    force). A finished run with this config is returned as is (exported and calibrated if it predates
    those); an SRGAN run that went without VGG16 now available is forced; a checkpoint is continued."""
    ckpt_path, meta_path = out / "checkpoint.pt", out / "meta.json"
    if ckpt_path.exists() and not force and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True to continue or force=True to restart")
    if resume and not force and meta_path.exists():
        done = json.loads(meta_path.read_text())
        if done.get("config") == plain(cfg) and vgg16_now_available(cfg, done):   # finished or not
            warnings.warn(f"!!! {out}: an SRGAN run without ImageNet VGG16 ({done['vgg']}), and the weights are "
                          f"now at {vgg16_path(cfg)}: training it again, with its perceptual term !!!",
                          RuntimeWarning, stacklevel=5)
            force = True
        elif done.get("status") == "complete" and done.get("config") == plain(cfg):
            if not (out / GENERATOR_FILE).exists() and ckpt_path.exists():     # an early run (generator.pt)
                _export(out / GENERATOR_FILE, load_checkpoint(ckpt_path), done)
            if (out / GENERATOR_FILE).exists():    # finished; also a committed run without its resume checkpoint
                if calibration.calibrate_run(out, cfg.data_root):   # trained before calibration existed
                    done = json.loads(meta_path.read_text())
                return done, 0, [], None, force
    if not (ckpt_path.exists() and resume and not force):
        return None, 0, [], None, force
    try:
        ckpt = load_checkpoint(ckpt_path)
    except CheckpointError as e:
        raise CheckpointError(f"{e}; the run cannot resume from it: --force (force=True) restarts it from "
                              f"step 0") from None
    saved = {**plain(TrainConfig(model=cfg.model)), **ckpt["config"]}
    if "step" not in ckpt:
        raise ValueError(f"{ckpt_path}: an epoch-based checkpoint of an older srlib; use force=True to "
                         f"retrain or another out_dir")
    if saved != plain(cfg):
        diff = {k: (saved.get(k), v) for k, v in plain(cfg).items() if saved.get(k) != v}
        raise ValueError(f"{ckpt_path}: config differs from the checkpoint's {diff}; use force=True "
                         f"to restart or another out_dir")
    if ckpt["step"] >= cfg.steps:
        return json.loads(meta_path.read_text()), 0, [], None, force
    return None, ckpt["step"], ckpt["history"], ckpt, force


def _build(cfg, out, device, rank, world):
    """The run's models (seeded), losses and the start of its metadata."""
    run = _Run(cfg, out, device, rank, world)
    torch.manual_seed(cfg.seed)
    run.G, g_kwargs = build_generator(cfg)
    main_steps = cfg.steps > cfg.warmup_steps
    run.D = archs.Discriminator() if cfg.loss != "l1" and main_steps else None
    run.crit, run.warm_crit, vgg_note = build_losses(cfg) if main_steps else (None, losses.L1Loss(), "not used")
    run.g_kwargs = g_kwargs
    run.meta = {"format": FORMAT, "config": plain(cfg), "generator": {"arch": cfg.arch, "kwargs": g_kwargs,
                "scale": cfg.scale}, "vgg": vgg_note, "device": str(device), "cpu": cpu_model(),
                "torch": torch.__version__, "python": platform.python_version(),
                "run_name": out.name, "ema": cfg.ema_decay or "off",
                "exported_weights": "EMA of G" if cfg.ema_decay else "G"}
    return run


def _start(run, ckpt, start, history):
    """The run's starting weights (a shared warm-up's, ``init_from``'s or the checkpoint's, with its optimizers
    and RNG states), on the device, wrapped for DistributedDataParallel under torchrun. Returns (start step,
    history): a run continuing a shared warm-up starts at its end, with its rows."""
    cfg, device, fmt = run.cfg, run.device, run.fmt
    if ckpt is None and cfg.warmup_dir and cfg.warmup_steps and cfg.steps > cfg.warmup_steps:
        wdir = warmup_run_dir(cfg)
        train(warmup_config(cfg), wdir, resume=True, force=False, wait=True)   # another run's: wait for it
        _, warm = load_generator(wdir / GENERATOR_FILE, inference="whole")   # only its weights are read
        run.G.load_state_dict(warm["G"])
        start = cfg.warmup_steps
        history = [{**row, "shared": wdir.name} for row in load_checkpoint(wdir / "checkpoint.pt")["history"]]
        run.meta["warmup_run"] = str(wdir)
        run.meta["warmup_generator_sha256"] = state_hash(warm["G"])
    elif cfg.init_from and ckpt is None:
        init = load_checkpoint(cfg.init_from)
        if init["generator"]["arch"] != cfg.arch or init["generator"]["kwargs"] != run.g_kwargs:
            raise ValueError(f"{cfg.init_from}: generator {init['generator']} does not match {cfg.arch} "
                             f"{run.g_kwargs}")
        run.G.load_state_dict(init["G"])
    run.G.to(device, memory_format=fmt)
    if run.world > 1 and device.type == "cuda":   # BatchNorm over the global batch (no-op without BatchNorm)
        run.G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(run.G)
        run.D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(run.D) if run.D is not None else None
    if run.crit is not None:
        run.crit.to(device, memory_format=fmt)     # the VGG16 of the SRGAN loss
    if run.D is not None:
        run.D.to(device, memory_format=fmt)
    if ckpt is not None:
        run.G.load_state_dict(ckpt["G"])
        run.new_phase(ckpt["phase"])
        run.opt_g.load_state_dict(ckpt["opt_G"])
        if run.D is not None and ckpt["D"] is not None:
            run.D.load_state_dict(ckpt["D"])
        if run.opt_d is not None:
            run.opt_d.load_state_dict(ckpt["opt_D"])
        if run.ema is not None:
            run.ema.load_state_dict(ckpt["ema"])
        _set_rng_state(ckpt["rng"])
    run.G_run, run.D_run = run.G, run.D       # what train_step runs: DDP wrappers of G and D under torchrun
    if run.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        run.G_run = DistributedDataParallel(run.G, device_ids=ids)
        run.D_run = DistributedDataParallel(run.D, device_ids=ids) if run.D is not None else None
    return start, history


def _load_data(run):
    """The training crops, the validation and held-out sets, the fixed batch of the loss accounting, the
    calibration crops, the precision, and their record in the run's metadata."""
    cfg, device, root = run.cfg, run.device, run.cfg.data_root
    run.dataset = TrainDataset(resolve_datasets(cfg.train_sets, root), root, cfg.crop, cfg.scale,
                               cfg.degradation, True, cfg.repeat, cfg.seed, cfg.cache_dir)
    val_items = load_eval_set(resolve_datasets([cfg.val_set], root)[0], root, cfg.scale)
    run.val_items = val_items[: cfg.val_images] if cfg.val_images else val_items
    run.tune_items = (load_eval_set(resolve_datasets([cfg.tune_set], root)[0], root, cfg.scale)
                      if cfg.tune_set else [])
    sampler0 = StepSampler(len(run.dataset), cfg.batch_size, 0, 1, cfg.seed)
    fixed = torch.utils.data.default_collate([run.dataset[i] for i in sampler0.batch(0)])
    run.fixed = [t.to(device).contiguous(memory_format=run.fmt) for t in fixed]
    run.calib_lr = calibration.crops(run.dataset) if archs.group_norms(run.G) else None   # validated calibrated
    meta = run.meta
    if run.calib_lr is not None:
        meta["calibration"] = calibration.record(cfg)
    precision = training_precision(cfg.amp, device)
    meta["data"] = {"train": {"sets": resolve_datasets(cfg.train_sets, root), "images": len(run.dataset.images),
                              "listed": len(run.dataset.hashes), "sha256": set_digest(run.dataset.hashes)},
                    "val": {"set": cfg.val_set, "images": len(run.val_items), "sha256": eval_digest(run.val_items)},
                    "tune": {"set": cfg.tune_set, "images": len(run.tune_items),
                             "sha256": eval_digest(run.tune_items) if run.tune_items else None}}
    meta.update(git=git_state(), gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                processes=run.world)
    meta.update(train_images=len(run.dataset.images), val_images=len(run.val_items),
                tune_images=len(run.tune_items), parameters_G=archs.count_parameters(run.G),
                parameters_D=archs.count_parameters(run.D) if run.D else 0, precision=precision,
                cpu_bf16_native=cpu_bf16_native())
    run.context = autocast(precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    run.G_eval = copy.deepcopy(run.G) if cfg.ema_decay else run.G
    run.workers = cfg.num_workers
    if run.workers is None:
        run.workers = min(4, (os.cpu_count() or 1) // run.world) if device.type == "cuda" else 0


def _run_interval(run, step, stop, name):
    """Steps ``step`` to ``stop`` of phase ``name``, counted in ``run.step``. Returns the interval's row: the
    mean of each logged value over the global batch, and each loss term's share of G's gradient norm on the
    fixed batch."""
    cfg, device, fmt, gan = run.cfg, run.device, run.fmt, name == "gan"
    sampler = StepSampler(len(run.dataset), cfg.batch_size, step, stop, cfg.seed, run.rank, run.world)
    loader = torch.utils.data.DataLoader(run.dataset, batch_sampler=sampler, num_workers=run.workers,
                                         pin_memory=device.type == "cuda")
    crit = run.crit if gan else run.warm_crit
    sums, n = {}, 0
    run.G.train()
    if run.D is not None:
        run.D.train()
    bar = None if run.rank else _progress(cfg, stop - step, f"steps {step}-{stop} of {cfg.steps} {name}")
    for lr, hr in loader:
        for g in run.opt_g.param_groups:
            g["lr"] = learning_rate(cfg, step)
        if run.opt_d is not None:
            for g in run.opt_d.param_groups:
                g["lr"] = learning_rate(cfg, step, "D")
        lr = lr.to(device, non_blocking=True).contiguous(memory_format=fmt)
        hr = hr.to(device, non_blocking=True).contiguous(memory_format=fmt)
        res = train_step(run.G_run, run.D_run, run.opt_g, run.opt_d, crit, lr, hr, gan, run.context)
        for k in ("d_loss", "g_loss"):
            _check_finite(res[k], k, step)
        for k, v in res.items():
            for kk, vv in (v.items() if isinstance(v, dict) else [(k, v)]):
                sums[kk] = sums.get(kk, 0.0) + float(vv)
        if run.ema is not None:
            run.ema.update(run.G)
        step += 1
        run.step = step
        n += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if run.world > 1:           # the means over the global batch
        keys = sorted(sums)
        total = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
        dist.all_reduce(total)
        sums = dict(zip(keys, (total / run.world).tolist()))
    row = {k: v / n for k, v in sums.items() if k != "total"}
    if not gan:
        row.update(d_loss=math.nan, d_score=math.nan, g_score=math.nan)
    accounting = term_gradients(run.G, run.D if gan else None, crit, *run.fixed, run.context)
    total_norm = sum(g for _, g in accounting.values()) or 1.0
    row.update({f"share_{k}": g / total_norm for k, (_, g) in accounting.items()})
    return row


def _clock():
    """(wall, this process's CPU, the machine's busy CPU seconds or None): an interval's start."""
    return time.perf_counter(), time.process_time(), timings.busy_cpu_seconds()


def _elapsed(t0):
    """An interval's cost since ``t0`` (:func:`_clock`): wall seconds, this process's CPU seconds (every
    thread) and the CPU seconds every other process on the machine used meanwhile (NaN without /proc/stat)."""
    wall, cpu, busy = (now - then if then is not None and now is not None else None
                       for now, then in zip(_clock(), t0))
    return {"seconds": round(wall, 1), "cpu_seconds": round(cpu, 1),
            "others_cpu_seconds": round(max(busy - cpu, 0.0), 1) if busy is not None else math.nan}


def _cost(history):
    """The run's own training cost for meta.json (the shared warm-up's rows left out): wall and CPU seconds,
    the other processes' CPU seconds meanwhile, and whether the cores were quiet (the others under
    srlib.timings.QUIET_SHARE of the machine's CPU time; None where an interval did not record it, e.g. one
    trained before srlib measured it)."""
    own = [r for r in history if not r.get("shared")]
    others = [r.get("others_cpu_seconds", math.nan) for r in own]
    known = bool(own) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in others)
    wall = sum(r["seconds"] for r in own)
    return {"train_seconds": round(wall, 1),
            "train_cpu_seconds": round(sum(r.get("cpu_seconds", math.nan) for r in own), 1) if known else None,
            "others_cpu_seconds": round(sum(others), 1) if known else None,
            "quiet": timings.quiet(sum(others), wall) if known else None}


def _validate_and_checkpoint(run, row, history, step, name, t0):
    """Validation of the exported (calibrated, EMA where kept) generator on the held-out and validation sets
    into ``row``, appended to ``history``; then the run's files, the resume checkpoint last."""
    cfg, out, G, D, ema, meta = run.cfg, run.out, run.G, run.D, run.ema, run.meta
    if ema is not None:
        run.G_eval.load_state_dict(ema.state)
    if run.calib_lr is not None:      # validation and the exported generator use the default inference
        calibration.calibrate(run.G_eval, run.calib_lr)
        if ema is not None:
            calibration.calibrate(G, run.calib_lr)
    if run.tune_items:
        row.update({f"tune_{k}": v for k, v in validate(run.G_eval, run.tune_items, cfg.scale,
                                                        ("standard",)).items()})
        if ema is not None:
            row["tune_psnr_raw"] = validate(G, run.tune_items, cfg.scale, ("standard",))["psnr"]
    row.update(validate(run.G_eval, run.val_items, cfg.scale))
    row.update(step=step, phase=name, shared="", lr=learning_rate(cfg, step - 1), **_elapsed(t0))
    history.append(row)
    state = {"format": FORMAT, "generator": meta["generator"], "G": G.state_dict(),
             "D": D.state_dict() if D is not None else None, "opt_G": run.opt_g.state_dict(),
             "opt_D": run.opt_d.state_dict() if run.opt_d is not None else None,
             "ema": ema.state_dict() if ema is not None else None, "step": step, "phase": name,
             "config": plain(cfg), "history": history, "rng": _rng_state(),
             "meta": {"run_name": out.name, "vgg": meta["vgg"]}}
    # the resume checkpoint goes last: if the process dies before it, the interval is redone and the
    # files written before it are rewritten; a finished checkpoint means everything else is current
    save_generator(out / GENERATOR_FILE, run.G_eval.state_dict(), meta["generator"], state["meta"], plain(cfg),
                   step)
    _write_csv(out / "metrics.csv", history)
    meta.update(steps_done=step, status="complete" if step == cfg.steps else "running", **_cost(history), final=row)
    write_json(out / "meta.json", meta)
    save_checkpoint(out / "checkpoint.pt", state)
    if cfg.progress:
        tune = f"held-out {row['tune_psnr']:.2f} dB, " if run.tune_items else ""
        print(f"{out.name}: step {step}/{cfg.steps} ({name}): {tune}{cfg.val_set} {row['psnr']:.2f} dB / "
              f"{row['ssim']:.4f}, {row['seconds']:.0f} s", flush=True)


def _resume_hint(saved, force):
    if saved is None:
        return "the same command starts the run again"
    return f"the same command{' without --force' if force else ''} resumes from step {saved}"


def _interrupted(out, cfg, step, saved, force):
    """The one-line message of a run stopped by Ctrl-C at ``step``; ``saved``: the checkpoint's step."""
    if saved is None:
        kept = "no checkpoint of this run yet"
    else:
        redo = step - saved
        kept = f"the last checkpoint is step {saved}, so {redo} step{'s' if redo != 1 else ''} will be redone"
    return f"{out}: interrupted (Ctrl-C) at step {step} of {cfg.steps}; {kept}; {_resume_hint(saved, force)}"


def _write_advice(e, ckpt_path, saved, force):
    """What to do after a write of the run failed (disk full, permission denied); the checkpoint is intact."""
    kept = "no checkpoint of this run yet" if saved is None else f"the last checkpoint (step {saved}) is intact"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        size = ckpt_path.stat().st_size if ckpt_path.exists() else e.size if e.filename == str(ckpt_path) else None
        fix = f"free about {mib(size)} (the size of one checkpoint)" if size else "free some space"
    else:
        fix = f"make {ckpt_path.parent} writable"
    return f"{kept}; {fix}, then {_resume_hint(saved, force)}"


def _export(path, ckpt, meta):
    """generator.safetensors from a finished run's resume checkpoint (the EMA weights when it kept one)."""
    ema = ckpt.get("ema")
    save_generator(path, ema["state"] if ema else ckpt["G"], ckpt["generator"], ckpt["meta"], ckpt["config"],
                   ckpt["step"])
    (path.parent / "generator.pt").unlink(missing_ok=True)     # the old export, now superseded


def train_step(G, D, opt_g, opt_d, crit, lr, hr, gan=True, context=None):
    """One batch: a discriminator update, then a generator update (the paper's order, section 4.1.4).

    G's output is computed once and reused (detached) for D's update; D's weights are frozen during the
    generator's backward. With ``gan=False`` only the generator is updated with ``crit(None, sr, hr)``.
    The generator step is skipped if a loss is not finite (the caller stops the run).
    Returns detached scalars d_loss, g_loss, d_score (mean D(x)), g_score (mean D(G(z))) and ``parts``
    (the loss terms' unweighted values).
    """
    context = context or contextlib.nullcontext()   # e.g. autocast(precision, device)
    zero = torch.zeros((), device=lr.device)
    d_loss = d_score = g_score = zero
    with context:
        sr = G(lr)
    if gan:
        D.requires_grad_(True)
        with context:
            real = D(hr).float()
            fake = D(sr.detach()).float()
        d_loss = losses.discriminator_loss(real, fake)
        if not torch.isfinite(d_loss):
            return dict(d_loss=d_loss.detach(), g_loss=zero, d_score=zero, g_score=zero, parts={})
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d_score, g_score = real.detach().mean(), fake.detach().mean()
        D.requires_grad_(False)
        with context:
            fake_g = _inner(D)(sr).float()      # frozen: no gradient of D to average across processes
            g_loss, parts = crit(fake_g, sr.float(), hr)      # SRGAN's VGG16 in bf16 too; the loss in fp32
    else:
        with context:
            g_loss, parts = crit(None, sr.float(), hr)
    if torch.isfinite(g_loss):
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    return dict(d_loss=d_loss.detach(), g_loss=g_loss.detach(), d_score=d_score, g_score=g_score, parts=parts)


def _check_finite(value, name, step):
    if not torch.isfinite(value):
        raise TrainingDiverged(f"non-finite {name} ({float(value)}) at step {step + 1}; the last checkpoint "
                               f"is kept unchanged")


def _progress(cfg, total, desc):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


# Fields added after runs were committed: left out of a config's plain form while at these defaults, so
# that the committed runs (and their shared warm-ups' hashed folders) still match their configs.
def _train_cli(args):
    overrides = parse_overrides(args.set)
    if args.data_root:
        overrides["data_root"] = args.data_root
    cfg = make_config(args.model, args.profile, **overrides)
    meta = train(cfg, args.out, resume=args.resume or not args.force, force=args.force)
    if int(os.environ.get("RANK", 0)):
        return 0                # torchrun: rank 0 reports
    f = meta.get("final", {})
    print(f"{meta['run_name']}: {meta['steps_done']} steps, validation on {cfg.val_set}: "
          f"PSNR {f.get('psnr', math.nan):.2f} dB / SSIM {f.get('ssim', math.nan):.4f} (standard), "
          f"{f.get('psnr_paper', math.nan):.2f} / {f.get('ssim_paper', math.nan):.4f} (paper); VGG: {meta['vgg']}")
    return 0
