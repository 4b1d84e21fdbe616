"""Training configuration, in one place: the :class:`TrainConfig` dataclass, the profiles, coercion of
overrides (``--set``, grid files), validation, the shared warm-up's config, and a run's saved config and back.

Everything that builds or reads a training config goes through here: ``srlib train``, the ablation grids, the
GPU run, the bench, the study's runs and the notebooks. This module imports no torch, so the command line can
describe its options without loading it.

Models: 'srgan' (SRGAN generator, SRGAN loss), 'attention' (the paper's generator and loss), 'psnr'
(the attention generator, L1 only, no discriminator: the baseline).
"""
import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")    # autocast of training and inference (srlib.infer.autocast)
ADVERSARIAL = ("saturating", "nonsaturating")   # the paper loss's adversarial term (srlib.losses.adversarial_term)
ADV_WEIGHT = 1e-3                         # its weight, SRGAN's and the paper's
# Names and defaults that the command line shows and the library uses
BENCHMARKS = ("Set5", "Set14", "BSD100", "Urban100")
INFERENCE = ("calibrated", "whole")   # GroupNorm with stored training-extent statistics | the input's own
DEFAULT_TILE = 256                    # upscale: LR pixels per tile side; 0 = whole image
GPU_GRID = "configs/paper_budget_grid.yaml"   # the grid the GPU run trains: the CPU's paper-budget
PEAK_BF16_TFLOPS = 989.0              # bench: H100 / H200 SXM, bf16 dense (no sparsity)

# The model registry: every table that names models. A new one is added by register_model (its generator by
# srlib.archs.register_generator); training, the CLI's --model, scoring and the reports pick it up from here.
LOSSES = ("srgan", "paper", "l1")         # the generator losses of srlib.train.build_losses
MODELS = {  # model -> (generator arch, generator loss)
    "srgan": ("srgan", "srgan"),
    "attention": ("attention", "paper"),
    "psnr": ("attention", "l1"),
}
WARMUP_MODEL = {"attention": "psnr", "srgan": "srgan"}   # the run that holds an architecture's shared warm-up
# The attention skeleton's block options (AttentionGenerator's defaults) and those that make it SRGANGenerator
# itself: the same parameters, created in the same order, so the same initialisation from the same seed and the
# same training (tests/test_archs.py). A warm-up of SRGAN's block in the skeleton is therefore SRGAN's warm-up.
ATTENTION_OPTIONS = {"convs_per_block": 3, "norm": "group", "attention": "channel", "act": "prelu", "padding": "zeros"}
SRGAN_BLOCK = {"convs_per_block": 2, "norm": "batch", "attention": "none", "act": "prelu", "padding": "zeros"}
UNUSED_BY_SRGAN_BLOCK = ("groups", "reduction")   # GroupNorm's and channel attention's, absent from that block
LABELS = {"bicubic": "Bicubic", "srgan": "SRGAN (ours)", "attention": "Attention (ours)",
          "psnr": "PSNR baseline (ours)"}                # how every report names a model


def register_model(name, arch, loss, label, warmup=None):
    """Add model ``name``: generator ``arch`` (a name of :data:`srlib.archs.GENERATORS`), loss ``loss`` (one of
    :data:`LOSSES`), shown as ``label``; ``warmup``: the model whose run holds ``arch``'s shared warm-up
    (default: this one, for a new arch). Training, the command line, run_dirs, scoring and the reports
    (Table 1, model cards, figures) then know it."""
    if name in MODELS or name in LABELS:
        raise ValueError(f"model {name!r} is registered already")
    if loss not in LOSSES:
        raise ValueError(f"model {name!r}: loss {loss!r} is not one of {LOSSES}")
    MODELS[name] = (arch, loss)
    LABELS[name] = label
    WARMUP_MODEL.setdefault(arch, warmup or name)


def gan_models():
    """The registered models whose loss has an adversarial term (a G+D step): the bench's default models."""
    return tuple(name for name, (_, loss) in MODELS.items() if loss != "l1")


@dataclass
class TrainConfig:
    model: str = "attention"            # 'srgan' | 'attention' | 'psnr'
    scale: int = 4                      # upscaling factor
    n_blocks: int = 5                   # residual blocks; 5 as the reference SRGAN code (16: Ledig's depth)
    n_feats: int = 64                   # trunk channels
    generator: dict = field(default_factory=dict)  # extra AttentionGenerator args (norm, attention, ...)
    train_sets: list = field(default_factory=lambda: ["DIV2K"])  # datasets, folders or manifests
    val_set: str = "Set5"               # validated every val_every steps (both protocols)
    tune_set: str | None = None         # held-out split that chose the recipe, validated beside val_set
    val_images: int = 0                 # 0: all images of val_set
    data_root: str | None = None        # None: $SRLIB_DATA, else ./data
    cache_dir: str | None = None        # None: training images decoded into RAM at each start; a folder
                                        # (never in the data root): decoded once into a shared memory map
    crop: int = 128                     # HR crop (the paper: 128)
    batch_size: int = 16                # the paper: 16
    repeat: int = 1                     # crops per training image per epoch (an epoch only orders crops)
    degradation: str = "pil"            # LR of training crops: 'pil' (reference code) or 'matlab'
    steps: int = 5000                   # generator steps in all; the paper's 100 epochs of 800 / 16
    warmup_steps: int = 0               # phase 1: L1 only, no discriminator
    val_every: int = 50                 # steps between validations and checkpoints (and at phase ends)
    lr_warmup: float = 1e-3             # peak learning rate of the warm-up
    lr_g: float = 1e-3                  # peak learning rate of G in the main phase (Adam defaults, as the
    lr_d: float = 1e-3                  # reference code)
    schedule: str = "constant"          # per phase: 'constant' | 'cosine' (from the peak to eta_min)
    eta_min: float = 0.0
    betas: tuple = (0.9, 0.999)
    adversarial: str = "saturating"     # the paper loss's adversarial term: 'saturating' mean(1 - D(sr)) |
                                        # 'nonsaturating' mean(-log D(sr)) (srlib.losses.adversarial_term)
    adv_weight: float = 1e-3            # its weight (the paper: 0.001)
    ema_decay: float = 0.0              # EMA of G's weights (0: off); validated and exported when on
    warmup_dir: str | None = None       # shared warm-ups live here, one per architecture and config
    init_from: str | None = None        # checkpoint whose generator weights start this run
    vgg_weights: str = "auto"           # 'auto' (torchvision cache) | 'random' | path to a state dict
    vgg_on_missing: str = "error"       # ImageNet VGG16 absent: 'error' | 'random' (random-init VGG16) |
                                        # 'drop' (no perceptual term; recorded in meta.json)
    seed: int = 0
    num_workers: int | None = None      # DataLoader workers per process; None: 0 on CPU (the 2 cores are
                                        # busy training), min(4, cores // processes) on CUDA
    device: str | None = None           # None: CUDA when present, else CPU
    channels_last: bool = True
    amp: str = "auto"                   # 'auto': bf16 autocast on CUDA and on a CPU with native bf16 (AMX or
                                        # AVX512-BF16, from its flags), fp32 elsewhere | 'fp32' | 'bf16'
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
                  batch_size=4, steps=6, warmup_steps=2, val_every=2, lr_warmup=1e-4, lr_g=1e-4, lr_d=1e-4,
                  degradation="matlab", vgg_weights="random", amp="fp32", progress=False),
    # The CPU reproduction (2 cores, bf16 autocast where the CPU has it). Seed 0, fixed before tuning; the
    # recipe was chosen on the held-out split quick-holdout (10 BSD200 images, never trained on; bicubic
    # 26.19 dB there), never on the benchmarks. Measured 2026-11-30 on a 2-core AMD EPYC (AVX512-BF16):
    # - L1 warm-up, Adam betas (0.9, 0.99), cosine to 0 over 1,000 steps, raw weights, held-out PSNR:
    #   lr 1e-3: 25.38 dB at step 500, 26.21 at 1,000; lr 5e-4: 25.28 and 25.92. So lr_warmup 1e-3.
    # - EMA of G (decay 0.999, bias-corrected) at the same points: 24.17 / 25.47 (lr 1e-3), 24.19 / 25.18
    #   (5e-4): 0.7-1.2 dB below the raw weights at this budget (cosine to 0 already settles the weights),
    #   so the EMA is off here (ema_decay=0); it stays available for longer runs.
    # - Step costs, batch 16, crop 96, bf16: L1 0.47 s (attention) / 0.36 s (SRGAN); GAN step 1.13 s
    #   (attention) / 1.03 s (SRGAN without its perceptual term). With a random VGG16 the perceptual term
    #   held 1.2e-3 of the generator's gradient norm (trained SRGAN G and D, a quick-train batch, fp32)
    #   while VGG16 cost about 40% of an SRGAN step,
    #   so without ImageNet weights it is dropped (vgg_on_missing='drop', recorded in meta.json).
    # - Budget: the warm-up is shared per architecture (run once), so long warm-ups are cheap and GAN steps
    #   dear: 3,000 L1 warm-up steps, then 400 steps of each model's own loss (psnr: L1 again) with their
    #   own cosine from lr_g 1e-4: 3,400 generator steps per model; the committed runs' meta.json give 85
    #   minutes of training in all, warm-ups included.
    "quick": dict(train_sets=["quick-train"], tune_set="quick-holdout", val_set="Set5", crop=96, batch_size=16,
                  degradation="matlab", steps=3400, warmup_steps=3000, val_every=250, lr_warmup=1e-3,
                  lr_g=1e-4, lr_d=1e-4, schedule="cosine", betas=(0.9, 0.99), ema_decay=0.0,
                  vgg_on_missing="drop", seed=0),
    # The paper's schedule for a GPU: DIV2K, batch 16, crop 128, 100 epochs (5,000 steps) from scratch,
    # Adam defaults, PIL degradation as the reference code, validation every epoch. Stops if ImageNet VGG16
    # weights are missing (SRGAN loss).
    "paper": dict(train_sets=["DIV2K"], val_set="Set5", crop=128, batch_size=16, steps=5000, val_every=50,
                  degradation="pil"),
}


def _coerce(name, value, kind):
    """``value`` as the config field's type ``kind``, or ValueError naming the field."""
    def bad(what):
        return ValueError(f"config {name}={value!r}: {what}")
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        if value is None:
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is list:
        if isinstance(value, str):
            return [value]           # --set train_sets=DIV2K: one dataset, not a list of letters
        if isinstance(value, (list, tuple)):
            return list(value)
        raise bad("expected a list")
    if kind is tuple:
        if isinstance(value, (list, tuple)):
            try:
                return tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise bad("expected numbers") from None
        raise bad("expected a list of numbers")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad("expected true or false")
    if kind in (int, float):
        if isinstance(value, bool):
            raise bad("is not a number")
        try:
            number = float(value)    # YAML 1.1 reads '1e-4' as text
        except (TypeError, ValueError):
            raise bad("is not a number") from None
        if kind is int:
            if number != int(number):
                raise bad("expected an integer")
            return int(number)
        return number
    if kind is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)        # e.g. a dataset folder named 2024
        if not isinstance(value, str):
            raise bad("expected text")
        return value
    if kind is dict and not isinstance(value, dict):
        raise bad("expected a mapping")
    return value


def make_config(model="attention", profile="quick", **overrides):
    """A :class:`TrainConfig` from a profile, with field-by-field overrides; unknown keys and values of
    the wrong type are errors (a bare string for a list field is a one-element list)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {list(MODELS)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {list(PROFILES)}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    bad = set(overrides) - set(fields)
    if bad:
        raise ValueError(f"unknown config keys {sorted(bad)}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(TrainConfig)
    values = {k: _coerce(k, v, hints[k]) for k, v in {**PROFILES[profile], **overrides}.items()}
    cfg = TrainConfig(model=model, **values)
    if cfg.amp not in PRECISIONS:
        raise ValueError(f"config amp={cfg.amp!r}: choose from {list(PRECISIONS)}")
    if cfg.schedule not in ("constant", "cosine"):
        raise ValueError(f"config schedule={cfg.schedule!r}: choose 'constant' or 'cosine'")
    if cfg.vgg_on_missing not in ("error", "random", "drop"):
        raise ValueError(f"config vgg_on_missing={cfg.vgg_on_missing!r}: choose 'error', 'random' or 'drop'")
    if not 0 <= cfg.warmup_steps <= cfg.steps or cfg.val_every < 1:
        raise ValueError(f"config: need 0 <= warmup_steps ({cfg.warmup_steps}) <= steps ({cfg.steps}) "
                         f"and val_every ({cfg.val_every}) >= 1")
    if cfg.adversarial not in ADVERSARIAL:
        raise ValueError(f"config adversarial={cfg.adversarial!r}: choose from {list(ADVERSARIAL)}")
    if (cfg.adversarial, cfg.adv_weight) != ("saturating", ADV_WEIGHT) and cfg.loss != "paper":
        raise ValueError(f"config adversarial/adv_weight apply to the paper's loss (model 'attention'), not "
                         f"to model {cfg.model!r}")
    if not 0 <= cfg.ema_decay < 1:
        raise ValueError(f"config ema_decay={cfg.ema_decay}: must be in [0, 1)")
    return cfg


def same_generator(arch, options):
    """The (arch, generator options) that name the network ``arch`` builds from ``options``: the attention
    skeleton with :data:`SRGAN_BLOCK` is ``('srgan', {})``; any other pair names itself."""
    if arch == "attention":
        used = {k: v for k, v in options.items() if k not in UNUSED_BY_SRGAN_BLOCK}
        if {**ATTENTION_OPTIONS, **used} == SRGAN_BLOCK:       # an unknown option is never SRGAN's
            return "srgan", {}
    return arch, options


def warmup_config(cfg):
    """The config of the shared warm-up run for ``cfg``'s generator (ends after its warm-up phase).
    Fields that act only in the main phase take their defaults, so runs that differ only there share it; a
    generator that is another architecture's network (:func:`same_generator`) shares that architecture's."""
    d = TrainConfig()
    arch, generator = same_generator(cfg.arch, cfg.generator)
    return dataclasses.replace(cfg, model=WARMUP_MODEL[arch], generator=generator, steps=cfg.warmup_steps,
                               warmup_dir=None, init_from=None, lr_g=d.lr_g, lr_d=d.lr_d, adversarial=d.adversarial,
                               adv_weight=d.adv_weight, vgg_weights=d.vgg_weights,
                               vgg_on_missing=d.vgg_on_missing)


def warmup_run_dir(cfg):
    warm = warmup_config(cfg)
    key = hashlib.sha256(json.dumps(plain(warm), sort_keys=True).encode()).hexdigest()[:8]
    return Path(cfg.warmup_dir) / f"{warm.arch}-{key}"


LATER_FIELDS = {"adversarial": "saturating", "adv_weight": ADV_WEIGHT}   # added after committed runs


def plain(cfg):
    """A config as meta.json and the generator file store it: what a run is (not where it runs), with fields
    added after runs were committed left out at their defaults, so older runs still match."""
    d = dataclasses.asdict(cfg)
    d["betas"] = list(d["betas"])
    for k in ("progress", "device", "num_workers", "data_root", "warmup_dir", "cache_dir"):   # where, not what
        d.pop(k)
    for k, default in LATER_FIELDS.items():
        if d[k] == default:
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


def from_saved(saved):
    """The :class:`TrainConfig` of a saved config (meta.json's or a generator file's ``config``): fields the
    file lacks (added to srlib after it was written) take their defaults; keys srlib no longer knows are
    dropped. The result's :func:`plain` is the saved dict for any file this srlib wrote."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values = {k: v for k, v in saved.items() if k in known}
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return TrainConfig(**values)
