import warnings

import pytest
import torch

from srlib import train as T
from srlib.infer import CheckpointError, load_checkpoint, load_generator, save_checkpoint


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
