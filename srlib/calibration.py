"""GroupNorm statistics calibrated at the training extent: the default inference of every generator.

The paper's block normalizes with GroupNorm, whose statistics are those of the input it sees. Trained on
24-px LR crops (quick profile), it sees 24-px statistics; run on a whole image it sees others, and its output
shifts in colour (results/extent.csv measures by how much). As BatchNorm keeps running statistics for
evaluation, :func:`calibrate` measures each GroupNorm's per-group mean and variance on LR crops of the
training extent, drawn from the run's own training images with its degradation (never benchmark images),
and stores them in the layers (:class:`srlib.archs.CalibratedGroupNorm`); the generator file keeps them.
After calibration the generator's normalization is a fixed affine map, extent-independent; channel attention
(a global average pool) still sees the whole input, which measures as negligible (results/extent.csv).

The statistics are the means over :data:`CROPS` crops of each crop's own group mean and group variance
(within-crop variance: what the layer normalized by in training), measured in one pass with every layer
normalizing by its crop's own statistics, as in training. The crops are a fixed function of the run's
config: ``TrainDataset(config's train_sets, crop, scale, degradation, seed)`` at a reserved epoch
(:data:`EPOCH`), one crop at each of :data:`CROPS` evenly spaced indices.
"""
import json
from pathlib import Path

import torch

from .archs import group_norms, is_calibrated

CROPS = 256          # calibration crops (chosen on the held-out split: results/extent.csv, 'calibration' rows)
EPOCH = 10 ** 9      # a crop-stream epoch that training never reaches: calibration crops are not training crops
BATCH = 64


def crops(dataset, n=CROPS):
    """(n, 3, h, w) LR crops of the training extent from a :class:`srlib.data.TrainDataset`."""
    total = len(dataset)
    return torch.stack([dataset[(EPOCH, i * total // n)][0] for i in range(n)])


@torch.no_grad()
def measure(model, lr, batch=BATCH):
    """Per-layer (mean, var) of each GroupNorm's input, shape (groups,) each: the mean over ``lr``'s crops of
    each crop's own group statistics, with every layer normalizing by the crop's own statistics (as in
    training). fp32, eval mode; the model's state is left as it was."""
    norms = group_norms(model)
    if not norms:
        return []
    sums = [[0.0, 0.0] for _ in norms]

    def hook(i):
        def fn(module, args):
            x = args[0].float()
            g = x.reshape(x.shape[0], module.num_groups, -1)
            sums[i][0] = sums[i][0] + g.mean(-1).sum(0)
            sums[i][1] = sums[i][1] + g.var(-1, unbiased=False).sum(0)
        return fn

    was_training, uses = model.training, [m.use_calibration for m in norms]
    handles = [m.register_forward_pre_hook(hook(i)) for i, m in enumerate(norms)]
    model.eval()
    try:
        for m in norms:
            m.use_calibration = False
        device = next(model.parameters()).device
        run = model.features if hasattr(model, "features") else model
        for k in range(0, len(lr), batch):
            run(lr[k: k + batch].to(device))
    finally:
        for h in handles:
            h.remove()
        for m, u in zip(norms, uses):
            m.use_calibration = u
        model.train(was_training)
    return [(s[0] / len(lr), s[1] / len(lr)) for s in sums]


def training_dataset(config, root=None, crop=None):
    """The :class:`srlib.data.TrainDataset` of a run's saved ``config`` (a dict, as in meta.json and the
    generator file), as training built it; ``crop`` (HR px) overrides the config's. Training images that are
    not under the data root raise :class:`srlib.data.DatasetNotFound` (never the demo images instead)."""
    from .data import TrainDataset
    return TrainDataset(list(config["train_sets"]), root, crop or config["crop"], config["scale"],
                        config["degradation"], True, config.get("repeat", 1), config["seed"], None)


def calibrate(model, lr, batch=BATCH):
    """Store :func:`measure`'s statistics in ``model``'s GroupNorm layers; returns ``model``."""
    for m, (mean, var) in zip(group_norms(model), measure(model, lr, batch)):
        m.calib_mean.copy_(mean)
        m.calib_var.copy_(var)
    return model


def record(cfg, n=CROPS):
    """What the generator file and meta.json say of the calibration."""
    return {"method": "GroupNorm statistics at the training extent", "crops": n,
            "lr_extent": cfg.crop // cfg.scale, "source": list(cfg.train_sets), "degradation": cfg.degradation,
            "seed": cfg.seed, "epoch": EPOCH}


def calibrate_run(folder, root=None):
    """Calibrate a finished run's generator.safetensors in place when it has uncalibrated GroupNorm layers
    (a run trained before calibration existed): the crops come from its own config's training images.
    Also records the calibration and, where missing, the git commit and the training data's digest in
    meta.json and the file's metadata. Returns True when the file was rewritten."""
    from .config import from_saved, plain
    from .data import git_state, set_digest
    from .infer import GENERATOR_FILE, load_generator, save_generator
    from .io import write_json
    folder = Path(folder)
    model, ckpt = load_generator(folder / GENERATOR_FILE, device="cpu")
    if is_calibrated(model):
        return False
    cfg = from_saved(ckpt["config"])
    dataset = training_dataset(ckpt["config"], root)
    calibrate(model, crops(dataset))
    rec = {**record(cfg), "git": git_state(), "when": "after training (run trained before calibration existed)"}
    file_meta = {**ckpt["meta"], "calibration": rec}
    save_generator(folder / GENERATOR_FILE, model.state_dict(), ckpt["generator"], file_meta, plain(cfg),
                   ckpt["step"])
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["calibration"] = rec
        meta.setdefault("data", {}).setdefault("train", {}).setdefault(
            "sha256", set_digest(dataset.hashes))
        meta["data"]["train"].setdefault("images", len(dataset.images))
        if not meta.get("git"):
            meta["provenance_note"] = ("the run predates the recording of its commit; the training data's "
                                       "digest and the commit of its calibration were recorded at calibration")
        write_json(meta_path, meta)
    return True


def _cli(args):
    for folder in args.runs:
        done = calibrate_run(folder, args.data_root)
        print(f"{folder}: {'calibrated' if done else 'already calibrated (or no GroupNorm): unchanged'}")
    return 0
