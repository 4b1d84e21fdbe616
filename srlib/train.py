"""Training: configuration profiles and the GAN loop of the paper's section 4.1, with exact resume.

Per batch: a discriminator update, then a generator update (the paper's order). Running d_loss, g_loss,
d_score (mean D(x)) and g_score (mean D(G(z))) per epoch; after each epoch validation PSNR/SSIM under
both protocols; one CSV row per epoch; one checkpoint per epoch (atomic). ``resume`` continues from the
checkpoint and gives the same weights as an uninterrupted run (crops and shuffles are functions of
(seed, epoch, index), and the RNG states are saved).

Models: 'srgan' (SRGAN generator, SRGAN loss), 'attention' (the paper's generator and loss), 'psnr'
(the attention generator, L1 only, no discriminator: a baseline and a warm start).
"""
import contextlib
import dataclasses
import json
import math
import platform
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import archs, losses
from .data import TrainDataset, load_eval_set, resolve_datasets
from .infer import (FORMAT, PRECISIONS, autocast, cpu_bf16_supported, load_checkpoint, pick_device, resolve_precision,
                    save_checkpoint, upscale_array)
from .io import atomic_write
from .metrics import image_scores

MODELS = {  # model -> (generator arch, generator loss)
    "srgan": ("srgan", "srgan"),
    "attention": ("attention", "paper"),
    "psnr": ("attention", "l1"),
}


@dataclass
class TrainConfig:
    model: str = "attention"            # 'srgan' | 'attention' | 'psnr'
    scale: int = 4                      # upscaling factor
    n_blocks: int = 5                   # residual blocks; 5 as the reference SRGAN code (16: Ledig's depth)
    n_feats: int = 64                   # trunk channels
    generator: dict = field(default_factory=dict)  # extra AttentionGenerator args (norm, attention, ...)
    train_sets: list = field(default_factory=lambda: ["DIV2K"])  # names or folders under the data root
    val_set: str = "Set5"               # validated after every epoch
    val_images: int = 0                 # 0: all images of val_set
    data_root: str | None = None        # None: $SRLIB_DATA, else ./data
    crop: int = 128                     # HR crop (the paper: 128)
    batch_size: int = 16                # the paper: 16
    repeat: int = 1                     # crops per training image per epoch
    degradation: str = "pil"            # LR of training crops: 'pil' (reference code) or 'matlab'
    epochs: int = 100                   # the paper: 100
    steps_per_epoch: int = 0            # 0: a full pass over the crops; >0: cap (smoke tests)
    warmup_epochs: int = 0              # first epochs with L1 only and no discriminator
    lr_g: float = 1e-3                  # Adam defaults, as the reference code
    lr_d: float = 1e-3
    betas: tuple = (0.9, 0.999)
    init_from: str | None = None        # checkpoint whose generator weights start this run
    vgg_weights: str = "auto"           # 'auto' (torchvision cache) | 'random' | path to a state dict
    vgg_on_missing: str = "error"       # 'error' | 'random' when ImageNet VGG16 weights are absent
    seed: int = 0
    num_workers: int = 0                # DataLoader workers (0 on CPU: the 2 cores are busy training)
    device: str | None = None           # None: CUDA when present, else CPU
    channels_last: bool = True
    amp: str = "auto"                   # 'auto' (bf16 on CUDA, fp32 on CPU) | 'fp32' | 'bf16' (autocast;
                                        # on CPU fast only with AMX / AVX512-BF16, see `srlib bench`)
    progress: bool = True               # tqdm progress bars

    @property
    def arch(self):
        return MODELS[self.model][0]

    @property
    def loss(self):
        return MODELS[self.model][1]


# Profiles are plain data: overrides of TrainConfig's defaults (which are the paper's settings).
PROFILES = {
    # seconds: tests and notebook regression. Tiny network, the scikit-image demo images.
    "smoke": dict(n_blocks=1, n_feats=16, train_sets=["demo"], val_set="demo", val_images=2, crop=32, repeat=4,
                  batch_size=4, epochs=2, steps_per_epoch=3, lr_g=1e-4, lr_d=1e-4, degradation="matlab",
                  vgg_weights="random", progress=False),
    # The CPU reproduction (2 cores). Measured with batch 16, crop 96, lr 1e-4 (see the training issue):
    # the paper's GAN loss from scratch stays below bicubic after 12 min (26.6 dB on Set5), while L1 alone
    # reaches bicubic level in 12 min and a GAN phase warm-started from it holds that level. So: an L1
    # warm-up phase, then the model's own GAN loss, lr 1e-4 (Adam's 1e-3 is unstable at this budget),
    # MATLAB degradation to match the standard benchmark, on all the training images at hand (T91 +
    # BSD200 + DIV2K here: 292 images of >= 96 px, x4 crops = 73 steps per epoch). Measured here:
    # 0.43-0.56 s per L1 step, 1.4 s per attention GAN step, 2.3 s per SRGAN GAN step (VGG16), so
    # 6 + 4 epochs take about 7 (psnr), 11 (attention) and 14 (srgan) minutes: the whole study fits
    # in about 45 minutes on 2 cores. Every model sees the same 10 epochs of crops.
    "quick": dict(train_sets=["T91", "BSD200", "DIV2K"], val_set="Set5", crop=96, batch_size=16, repeat=4,
                  degradation="matlab", epochs=10, warmup_epochs=6, lr_g=1e-4, lr_d=1e-4,
                  vgg_on_missing="random"),
    # The paper's schedule for a GPU: DIV2K, batch 16, crop 128, 100 epochs from scratch, Adam defaults,
    # PIL degradation as the reference code. Stops if ImageNet VGG16 weights are missing (SRGAN loss).
    "paper": dict(train_sets=["DIV2K"], val_set="Set5", crop=128, batch_size=16, epochs=100,
                  degradation="pil"),
}


def make_config(model="attention", profile="quick", **overrides):
    """A :class:`TrainConfig` from a profile, with field-by-field overrides; unknown keys are errors."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {list(MODELS)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = set(overrides) - names
    if bad:
        raise ValueError(f"unknown config keys {sorted(bad)}; valid keys: {sorted(names)}")
    cfg = TrainConfig(model=model, **{**PROFILES[profile], **overrides})
    for f in dataclasses.fields(cfg):   # YAML 1.1 reads '1e-4' as a string: coerce numeric fields
        value = getattr(cfg, f.name)
        if f.type in ("float", "int", float, int) and isinstance(value, str):
            try:
                setattr(cfg, f.name, (float if f.type in ("float", float) else int)(value))
            except ValueError:
                raise ValueError(f"config {f.name}={value!r} is not a number") from None
    cfg.betas = tuple(float(b) for b in cfg.betas)
    if cfg.amp not in PRECISIONS:
        raise ValueError(f"config amp={cfg.amp!r}: choose from {list(PRECISIONS)}")
    return cfg


class TrainingDiverged(RuntimeError):
    pass


def build_generator(cfg):
    kwargs = dict(scale=cfg.scale, n_blocks=cfg.n_blocks, n_feats=cfg.n_feats)
    if cfg.arch == "attention":
        kwargs.update(cfg.generator)
    elif cfg.generator:
        raise ValueError(f"generator options {cfg.generator} apply to the attention generator only")
    return archs.build_generator(cfg.arch, **kwargs), kwargs


def build_losses(cfg):
    """(generator criterion, warm-up criterion, VGG source or None)."""
    vgg_source = None
    if cfg.loss == "srgan":
        vgg, vgg_source = losses.load_vgg16_features(cfg.vgg_weights, cfg.vgg_on_missing, seed=cfg.seed)
        crit = losses.SRGANGeneratorLoss(vgg)
    elif cfg.loss == "paper":
        crit = losses.PaperGeneratorLoss()
    else:
        crit = losses.L1Loss()
    return crit, losses.L1Loss(), vgg_source


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


def validate(G, items, scale):
    """Mean PSNR/SSIM of ``G`` on evaluation images, both protocols (keys psnr, ssim, psnr_paper, ssim_paper)."""
    was_training = G.training
    G.eval()
    acc = {"psnr": [], "ssim": [], "psnr_paper": [], "ssim_paper": []}
    for it in items:
        s = image_scores(upscale_array(G, it.lr, scale, amp=False), it.hr, scale, it.gray)  # fp32 scores
        acc["psnr"].append(s["standard"][0])
        acc["ssim"].append(s["standard"][1])
        acc["psnr_paper"].append(s["paper"][0])
        acc["ssim_paper"].append(s["paper"][1])
    G.train(was_training)
    return {k: float(np.mean(v)) for k, v in acc.items()}


CSV_FIELDS = ["epoch", "phase", "steps", "d_loss", "g_loss", "d_score", "g_score", "psnr", "ssim",
              "psnr_paper", "ssim_paper", "seconds"]


def _write_csv(path, history):
    lines = [",".join(CSV_FIELDS)]
    for row in history:
        lines.append(",".join(f"{row[k]:.6f}" if isinstance(row[k], float) else str(row[k]) for k in CSV_FIELDS))
    atomic_write(path, lambda f: f.write(("\n".join(lines) + "\n").encode()))


def _write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, sort_keys=True, default=str).encode()))


def train(cfg, out_dir, resume=True, force=False):
    """Train according to ``cfg`` into ``out_dir``: metrics.csv, meta.json, checkpoint.pt (everything
    needed to resume) and generator.pt (the generator alone, a few MB, for evaluation and upscaling).

    With ``resume`` (default) an existing checkpoint in ``out_dir`` is continued, and a finished run is
    returned as is unless ``force``. Returns the metadata dict (also in meta.json).
    """
    out = Path(out_dir)
    ckpt_path, meta_path, csv_path = out / "checkpoint.pt", out / "meta.json", out / "metrics.csv"
    if ckpt_path.exists() and not force and not resume:
        raise FileExistsError(f"{ckpt_path} exists: pass resume=True to continue or force=True to restart")
    start_epoch, history, ckpt = 0, [], None
    if ckpt_path.exists() and resume and not force:
        ckpt = load_checkpoint(ckpt_path)
        # a key missing from an older checkpoint ran with that field's default
        saved = {**_plain(TrainConfig(model=cfg.model)), **ckpt["config"]}
        if saved != _plain(cfg):
            diff = {k: (saved.get(k), v) for k, v in _plain(cfg).items() if saved.get(k) != v}
            if set(diff) - {"epochs"}:
                raise ValueError(f"{ckpt_path}: config differs from the checkpoint's {diff}; use force=True "
                                 f"to restart or another out_dir")
        start_epoch, history = ckpt["epoch"], ckpt["history"]
        if start_epoch >= cfg.epochs:
            return json.loads(meta_path.read_text())

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    G, g_kwargs = build_generator(cfg)
    D = archs.Discriminator() if cfg.loss != "l1" else None
    crit, warm_crit, vgg_source = build_losses(cfg)
    if cfg.init_from and ckpt is None:
        init = load_checkpoint(cfg.init_from)
        if init["generator"]["arch"] != cfg.arch or init["generator"]["kwargs"] != g_kwargs:
            raise ValueError(f"{cfg.init_from}: generator {init['generator']} does not match {cfg.arch} {g_kwargs}")
        G.load_state_dict(init["G"])
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    G.to(device, memory_format=fmt)
    crit.to(device, memory_format=fmt)     # the VGG16 of the SRGAN loss
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas)
    opt_d = None
    if D is not None:
        D.to(device, memory_format=fmt)
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas)
    if ckpt is not None:
        G.load_state_dict(ckpt["G"])
        opt_g.load_state_dict(ckpt["opt_G"])
        if D is not None:
            D.load_state_dict(ckpt["D"])
            opt_d.load_state_dict(ckpt["opt_D"])
        _set_rng_state(ckpt["rng"])

    root = cfg.data_root
    dataset = TrainDataset(resolve_datasets(cfg.train_sets, root), root, cfg.crop, cfg.scale,
                           cfg.degradation, True, cfg.repeat, cfg.seed)
    val_items = load_eval_set(resolve_datasets([cfg.val_set], root)[0], root, cfg.scale)
    if cfg.val_images:
        val_items = val_items[: cfg.val_images]
    meta = {"format": FORMAT, "config": _plain(cfg), "generator": {"arch": cfg.arch, "kwargs": g_kwargs,
            "scale": cfg.scale}, "vgg": vgg_source or "not used", "device": str(device),
            "torch": torch.__version__, "python": platform.python_version(), "run_name": out.name,
            "train_images": len(dataset.images), "val_images": len(val_items),
            "parameters_G": archs.count_parameters(G), "parameters_D": archs.count_parameters(D) if D else 0}
    precision = resolve_precision(cfg.amp, device)
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_supported():
        warnings.warn("amp='bf16' on a CPU without native bf16 (AMX / AVX512-BF16): emulated, likely slower "
                      "than fp32", RuntimeWarning, stacklevel=2)
    meta["precision"] = precision
    context = autocast(precision, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        gan = D is not None and epoch >= cfg.warmup_epochs
        dataset.set_epoch(epoch)
        shuffle = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        loader = torch.utils.data.DataLoader(dataset, cfg.batch_size, shuffle=True, generator=shuffle,
                                             drop_last=True, num_workers=cfg.num_workers,
                                             pin_memory=device.type == "cuda")
        n_steps = len(loader) if not cfg.steps_per_epoch else min(len(loader), cfg.steps_per_epoch)
        if n_steps == 0:
            raise ValueError(f"{len(dataset)} training crops make no batch of {cfg.batch_size}")
        sums = dict(d_loss=0.0, g_loss=0.0, d_score=0.0, g_score=0.0)
        G.train()
        if D is not None:
            D.train()
        bar = _progress(cfg, n_steps, f"epoch {epoch + 1}/{cfg.epochs} {'gan' if gan else 'l1'}")
        for step, (lr, hr) in enumerate(loader):
            if step >= n_steps:
                break
            lr = lr.to(device, non_blocking=True).contiguous(memory_format=fmt)
            hr = hr.to(device, non_blocking=True).contiguous(memory_format=fmt)
            res = train_step(G, D, opt_g, opt_d, crit if gan else warm_crit, lr, hr, gan, context)
            for k in ("d_loss", "g_loss"):
                _check_finite(res[k], k, epoch, step)
            for k, v in res.items():
                sums[k] += float(v)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        row = {k: v / n_steps for k, v in sums.items()}
        row.update(validate(G, val_items, cfg.scale))
        row.update(epoch=epoch + 1, phase="gan" if gan else "l1", steps=n_steps,
                   seconds=round(time.perf_counter() - t0, 1))
        history.append(row)
        state = {"format": FORMAT, "generator": meta["generator"], "G": G.state_dict(),
                 "D": D.state_dict() if D is not None else None, "opt_G": opt_g.state_dict(),
                 "opt_D": opt_d.state_dict() if opt_d is not None else None, "epoch": epoch + 1,
                 "config": _plain(cfg), "history": history, "rng": _rng_state(),
                 "meta": {"run_name": out.name, "vgg": meta["vgg"]}}
        # the resume checkpoint goes last: if the process dies before it, the epoch is redone and the
        # files written before it are rewritten; a finished checkpoint means everything else is current
        save_checkpoint(out / "generator.pt", {k: state[k] for k in ("format", "generator", "G", "epoch",
                                                                    "config", "meta")})
        _write_csv(csv_path, history)
        meta.update(epochs_done=epoch + 1, status="complete" if epoch + 1 == cfg.epochs else "running",
                    train_seconds=round(sum(r["seconds"] for r in history), 1), final=row)
        _write_json(meta_path, meta)
        save_checkpoint(ckpt_path, state)
    return meta


def train_step(G, D, opt_g, opt_d, crit, lr, hr, gan=True, context=None):
    """One batch: a discriminator update, then a generator update (the paper's order, section 4.1.4).

    G's output is computed once and reused (detached) for D's update; D's weights are frozen during the
    generator's backward. With ``gan=False`` only the generator is updated with ``crit(None, sr, hr)``.
    The generator step is skipped if a loss is not finite (the caller stops the run).
    Returns detached scalars d_loss, g_loss, d_score (mean D(x)), g_score (mean D(G(z))).
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
            return dict(d_loss=d_loss.detach(), g_loss=zero, d_score=zero, g_score=zero)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        d_score, g_score = real.detach().mean(), fake.detach().mean()
        D.requires_grad_(False)
        with context:
            fake_g = D(sr).float()
            g_loss, _ = crit(fake_g, sr.float(), hr)      # SRGAN's VGG16 in bf16 too; the loss in fp32
    else:
        with context:
            g_loss, _ = crit(None, sr.float(), hr)
    if torch.isfinite(g_loss):
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
    return dict(d_loss=d_loss.detach(), g_loss=g_loss.detach(), d_score=d_score, g_score=g_score)


def _check_finite(value, name, epoch, step):
    if not torch.isfinite(value):
        raise TrainingDiverged(f"non-finite {name} ({float(value)}) at epoch {epoch + 1}, step {step + 1}; "
                               f"the checkpoint of the last finished epoch is kept unchanged")


def _progress(cfg, total, desc):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False)


def _plain(cfg):
    d = dataclasses.asdict(cfg)
    d["betas"] = list(d["betas"])
    for k in ("progress", "device", "num_workers", "data_root"):
        d.pop(k)
    return d


def parse_overrides(pairs):
    """``['lr_g=1e-4', 'train_sets=[T91]']`` -> typed dict (values parsed as YAML)."""
    import yaml
    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ValueError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _train_cli(args):
    overrides = parse_overrides(args.set)
    if args.data_root:
        overrides["data_root"] = args.data_root
    cfg = make_config(args.model, args.profile, **overrides)
    meta = train(cfg, args.out, resume=args.resume or not args.force, force=args.force)
    f = meta.get("final", {})
    print(f"{meta['run_name']}: {meta['epochs_done']} epochs, validation on {cfg.val_set}: "
          f"PSNR {f.get('psnr', math.nan):.2f} dB / SSIM {f.get('ssim', math.nan):.4f} (standard), "
          f"{f.get('psnr_paper', math.nan):.2f} / {f.get('ssim_paper', math.nan):.4f} (paper); VGG: {meta['vgg']}")
    return 0


def add_cli(sub):
    t = sub.add_parser("train", help="train SRGAN, the attention model or the PSNR baseline")
    t.add_argument("--model", choices=list(MODELS), required=True)
    t.add_argument("--profile", choices=list(PROFILES), default="quick")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.csv, meta.json)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out (the default)")
    t.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. lr_g=1e-4")
    t.add_argument("--data-root", default=None)
    t.set_defaults(func=_train_cli)

