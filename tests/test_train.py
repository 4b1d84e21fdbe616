import warnings

import pytest
import torch

from srlib import archs, train as T
from srlib.infer import (CheckpointError, autocast, load_checkpoint, load_generator, resolve_precision,
                         save_checkpoint)


def smoke(model="attention", **kw):
    return T.make_config(model, "smoke", **kw)


def test_profiles_and_overrides():
    cfg = T.make_config("srgan", "paper")
    assert (cfg.batch_size, cfg.crop, cfg.epochs, cfg.train_sets) == (16, 128, 100, ["DIV2K"])
    assert cfg.arch == "srgan" and cfg.loss == "srgan"
    q = T.make_config("psnr", "quick", lr_g=3e-4)
    assert q.lr_g == 3e-4 and q.arch == "attention" and q.loss == "l1" and q.crop == 96
    with pytest.raises(ValueError, match="unknown config keys"):
        T.make_config("attention", "quick", learning_rate=1)
    with pytest.raises(ValueError, match="unknown model"):
        T.make_config("esrgan", "quick")
    over = T.parse_overrides(["lr_g=1e-4", "epochs=3", "train_sets=[T91, BSD200]", "generator={norm: none}"])
    assert over == {"lr_g": "1e-4", "epochs": 3, "train_sets": ["T91", "BSD200"], "generator": {"norm": "none"}}
    cfg = T.make_config("attention", "quick", **over)      # YAML 1.1 reads 1e-4 as text: coerced
    assert cfg.lr_g == 1e-4 and cfg.epochs == 3 and cfg.generator == {"norm": "none"}
    with pytest.raises(ValueError, match="not a number"):
        T.make_config("attention", "quick", lr_d="fast")


@pytest.mark.parametrize("model", ["srgan", "attention", "psnr"])
def test_smoke_run_writes_csv_checkpoint_meta(tmp_path, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = T.train(smoke(model), tmp_path / model)
    rows = (tmp_path / model / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == T.CSV_FIELDS and len(rows) == 3
    assert meta["status"] == "complete" and meta["epochs_done"] == 2
    assert meta["vgg"] == ("random-init(seed=0)" if model == "srgan" else "not used")
    for key in ("psnr", "ssim", "psnr_paper", "ssim_paper", "g_loss"):
        assert torch.isfinite(torch.tensor(meta["final"][key]))
    if model != "psnr":
        assert 0 < meta["final"]["d_score"] < 1 and 0 < meta["final"]["g_score"] < 1
    model_, ckpt = load_generator(tmp_path / model / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and not model_.training
    # a finished run is reused, not retrained
    assert T.train(smoke(model), tmp_path / model)["epochs_done"] == 2


def test_resume_gives_identical_weights(tmp_path):
    cfg = smoke("attention")
    T.train(cfg, tmp_path / "straight")
    T.train(smoke("attention", epochs=1), tmp_path / "resumed")
    T.train(cfg, tmp_path / "resumed", resume=True)
    a, b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for part in ("G", "D"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["history"][1]["g_loss"] == b["history"][1]["g_loss"]
    with pytest.raises(ValueError, match="config differs"):
        T.train(smoke("attention", lr_g=1.0), tmp_path / "resumed")


def test_discriminator_is_updated_before_generator(monkeypatch, tmp_path):
    order = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        # D's first weight is a 3x3 conv (64, 3, 3, 3); G's is the 9x9 head conv
        order.append("D" if self.param_groups[0]["params"][0].shape[-1] == 3 else "G")
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    cfg = smoke("attention", epochs=1, steps_per_epoch=2)
    T.train(cfg, tmp_path / "run")
    assert order == ["D", "G", "D", "G"]


def test_warmup_epochs_skip_the_discriminator(tmp_path):
    meta = T.train(smoke("attention", warmup_epochs=1), tmp_path / "run")
    rows = [r.split(",") for r in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert [r[1] for r in rows] == ["l1", "gan"] and float(rows[0][3]) == 0.0
    assert meta["final"]["phase"] == "gan"


def test_non_finite_loss_stops_and_keeps_last_checkpoint(monkeypatch, tmp_path):
    T.train(smoke("psnr", epochs=1), tmp_path / "run")
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(T.losses.L1Loss, "forward", lambda self, f, sr, hr: (sr.mean() * float("nan"), {}))
    with pytest.raises(T.TrainingDiverged, match=r"non-finite g_loss \(nan\) at epoch 2, step 1"):
        T.train(smoke("psnr", epochs=2), tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_checkpoint_errors(tmp_path):
    T.train(smoke("psnr", epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="scale x4, not x2"):
        load_generator(path, scale=2)
    with pytest.raises(CheckpointError, match="not 'srgan'"):
        load_generator(path, arch="srgan")
    bad = tmp_path / "trunc.pt"
    bad.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)
    ck = load_checkpoint(path)
    ck["generator"]["kwargs"]["n_feats"] = 32
    save_checkpoint(tmp_path / "other.pt", ck)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_generator(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="does not match"):
        T.train(smoke("srgan", init_from=str(path)), tmp_path / "warm")


def test_crash_before_the_checkpoint_redoes_the_epoch(monkeypatch, tmp_path):
    """The resume checkpoint is written last: a crash after the other files of the last epoch were
    written leaves the previous checkpoint, and the rerun redoes that epoch and finishes cleanly."""
    real_save = T.save_checkpoint

    def crash_on_second_checkpoint(path, state):
        if path.name == "checkpoint.pt" and state["epoch"] == 2:
            raise KeyboardInterrupt("killed")
        return real_save(path, state)

    monkeypatch.setattr(T, "save_checkpoint", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        T.train(smoke("psnr"), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    meta = T.train(smoke("psnr"), tmp_path / "run")
    assert meta["status"] == "complete" and meta["epochs_done"] == 2
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 3
    assert load_checkpoint(tmp_path / "run" / "generator.pt")["epoch"] == 2


def test_precision_choice():
    assert resolve_precision("auto", "cuda") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision(True, "cpu") == "fp32" and resolve_precision(False, "cuda") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("fp32", "cuda") == "fp32"
    with pytest.raises(ValueError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="config amp='fp16'"):
        T.make_config("srgan", "quick", amp="fp16")
    assert T.make_config("srgan", "quick").amp == "auto"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_train_step_precision_reaches_every_convolution(precision):
    """Under bf16 autocast the convolutions of G, D and the SRGAN loss's VGG16 run in bf16 (the loss's
    VGG16 is most of an SRGAN step), while the losses and the updated weights stay fp32."""
    cfg = smoke("srgan")
    torch.manual_seed(0)
    G, _ = T.build_generator(cfg)
    D = archs.Discriminator()
    crit, _, _ = T.build_losses(cfg)
    seen = {}
    for name, net in (("G", G), ("D", D), ("vgg", crit.vgg)):
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(lambda mod, i, out, name=name: seen.setdefault(name, set()).add(out.dtype))
    opt_g, opt_d = torch.optim.Adam(G.parameters(), 1e-4), torch.optim.Adam(D.parameters(), 1e-4)
    gen = torch.Generator().manual_seed(0)
    lr, hr = torch.rand(2, 3, 8, 8, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    res = T.train_step(G, D, opt_g, opt_d, crit, lr, hr, True, autocast(precision, "cpu"))
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert seen == {"G": {want}, "D": {want}, "vgg": {want}}
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in res.values())
    assert all(p.dtype == torch.float32 for p in [*G.parameters(), *D.parameters()])


def test_bf16_training_run_records_its_precision(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = T.train(smoke("attention", amp="bf16"), tmp_path / "bf16")
        fp32 = T.train(smoke("attention"), tmp_path / "fp32")
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["config"]["amp"] == "bf16"
    a = load_checkpoint(tmp_path / "bf16" / "generator.pt")["G"]
    b = load_checkpoint(tmp_path / "fp32" / "generator.pt")["G"]
    assert any(not torch.equal(a[k], b[k]) for k in a)      # bf16 really changed the arithmetic
    assert abs(bf16["final"]["psnr"] - fp32["final"]["psnr"]) < 0.5


def test_checkpoint_from_before_a_config_field_resumes(tmp_path):
    """A checkpoint written before a config field existed ran with that field's default."""
    T.train(smoke("psnr", epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    ck = load_checkpoint(path)
    del ck["config"]["amp"]
    save_checkpoint(path, ck)
    assert T.train(smoke("psnr"), tmp_path / "run")["epochs_done"] == 2
    with pytest.raises(ValueError, match="amp"):
        T.train(smoke("psnr", epochs=3, amp="bf16"), tmp_path / "run")
