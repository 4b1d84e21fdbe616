import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from srlib import archs, train as T
from srlib.infer import (CheckpointError, autocast, load_checkpoint, load_generator, resolve_precision,
                         save_checkpoint)


def smoke(model="attention", **kw):
    return T.make_config(model, "smoke", **kw)


def test_profiles_and_overrides():
    cfg = T.make_config("srgan", "paper")
    assert (cfg.batch_size, cfg.crop, cfg.steps, cfg.train_sets) == (16, 128, 5000, ["DIV2K"])
    assert cfg.arch == "srgan" and cfg.loss == "srgan"
    q = T.make_config("psnr", "quick", lr_g=3e-4)
    assert q.lr_g == 3e-4 and q.arch == "attention" and q.loss == "l1" and q.crop == 96
    assert q.betas == (0.9, 0.99) and q.schedule == "cosine" and q.tune_set == "quick-holdout"
    with pytest.raises(ValueError, match="unknown config keys"):
        T.make_config("attention", "quick", learning_rate=1)
    with pytest.raises(ValueError, match="unknown model"):
        T.make_config("esrgan", "quick")
    over = T.parse_overrides(["lr_g=1e-4", "steps=3000", "train_sets=[T91, BSD200]", "generator={norm: none}"])
    assert over == {"lr_g": "1e-4", "steps": 3000, "train_sets": ["T91", "BSD200"], "generator": {"norm": "none"}}
    cfg = T.make_config("attention", "quick", **over)      # YAML 1.1 reads 1e-4 as text: coerced
    assert cfg.lr_g == 1e-4 and cfg.steps == 3000 and cfg.generator == {"norm": "none"}
    with pytest.raises(ValueError, match="not a number"):
        T.make_config("attention", "quick", lr_d="fast")


def test_config_values_are_typed():
    """A bare string for a list field is a one-element list (it was read letter by letter and fell back
    to the demo set); other wrong types are errors naming the field."""
    cfg = T.make_config("psnr", "quick", **T.parse_overrides(["train_sets=DIV2K", "steps=3000", "ema_decay=0"]))
    assert cfg.train_sets == ["DIV2K"] and cfg.steps == 3000 and cfg.ema_decay == 0.0
    for key, value, msg in (("steps", 2.5, "expected an integer"), ("steps", True, "not a number"),
                            ("channels_last", "yes", "true or false"), ("val_set", ["Set5"], "expected text"),
                            ("generator", "none", "mapping"), ("train_sets", 5, "expected a list"),
                            ("schedule", "linear", "schedule"), ("warmup_steps", 9000, "warmup_steps"),
                            ("vgg_on_missing", "skip", "vgg_on_missing")):
        with pytest.raises(ValueError, match=msg):
            T.make_config("attention", "quick", **{key: value})
    assert T.make_config("attention", "quick", tune_set=None).tune_set is None


def test_learning_rate_schedule_per_phase():
    cfg = T.make_config("attention", "quick", steps=300, warmup_steps=200, lr_warmup=5e-4, lr_g=1e-4)
    lr = [T.learning_rate(cfg, s) for s in range(300)]
    assert lr[0] == pytest.approx(5e-4) and lr[100] == pytest.approx(2.5e-4) and lr[199] < 1e-7
    assert lr[200] == pytest.approx(1e-4) and lr[250] == pytest.approx(5e-5) and lr[299] < 1e-7   # its own cosine
    assert all(a >= b for a, b in zip(lr[:199], lr[1:200])) and all(a >= b for a, b in zip(lr[200:], lr[201:]))
    const = T.make_config("attention", "paper")
    assert {T.learning_rate(const, s) for s in (0, 2500, 4999)} == {1e-3}
    with pytest.raises(ValueError, match="outside"):
        T.learning_rate(cfg, 300)
    assert [p[0] for p in T.phases(cfg)] == ["warmup", "gan"]
    assert [p[0] for p in T.phases(T.make_config("psnr", "quick"))] == ["warmup", "l1"]


def test_ema_is_bias_corrected_and_averages_buffers():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    ema = T.EMA(net, 0.9)
    values = [2.0, 4.0, 8.0]
    for v in values:
        with torch.no_grad():
            net[0].weight.fill_(v)
            net[1].running_mean.fill_(v)
        net[1].num_batches_tracked += 1
        ema.update(net)
        if v == 2.0:   # the first update copies the weights: nothing of the initial weights remains
            assert ema.state["0.weight"].item() == pytest.approx(2.0)
    w = [0.9 ** 2, 0.9, 1.0]
    expect = sum(a * b for a, b in zip(w, values)) / sum(w)
    assert ema.state["0.weight"].item() == pytest.approx(expect)
    assert ema.state["1.running_mean"].item() == pytest.approx(expect)
    assert ema.state["1.num_batches_tracked"].item() == 3


@pytest.mark.parametrize("model", list(T.MODELS))      # every registered model (srlib.config)
def test_smoke_run_writes_csv_checkpoint_meta(tmp_path, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = T.train(smoke(model), tmp_path / model)
    rows = (tmp_path / model / "metrics.csv").read_text().splitlines()
    assert rows[0].split(",") == T.CSV_FIELDS and len(rows) == 4        # steps 2 (warm-up), 4, 6
    assert meta["status"] == "complete" and meta["steps_done"] == 6
    assert meta["vgg"] == ("random-init(seed=0)" if model == "srgan" else "not used")
    for key in ("psnr", "ssim", "psnr_paper", "ssim_paper", "g_loss"):
        assert torch.isfinite(torch.tensor(meta["final"][key]))
    if model != "psnr":
        assert 0 < meta["final"]["d_score"] < 1 and 0 < meta["final"]["g_score"] < 1
    model_, ckpt = load_generator(tmp_path / model / "checkpoint.pt")
    assert ckpt["step"] == 6 and not model_.training
    # its cost: wall and CPU seconds per interval, and what the rest of the machine used meanwhile
    own = [r for r in ckpt["history"] if not r.get("shared")]
    assert meta["train_seconds"] == round(sum(r["seconds"] for r in own), 1)
    assert meta["train_cpu_seconds"] == round(sum(r["cpu_seconds"] for r in own), 1) > 0
    assert meta["others_cpu_seconds"] >= 0 and isinstance(meta["quiet"], bool)
    # a finished run is reused, not retrained
    assert T.train(smoke(model), tmp_path / model)["steps_done"] == 6


@pytest.mark.parametrize("model,ema", [("attention", 0.0), ("srgan", 0.9)])
def test_resume_gives_identical_weights_through_phase_switches(tmp_path, model, ema):
    """Interrupted after the warm-up (a phase switch) and mid-phase, then resumed: bit-identical to a
    straight run, for G, D, the optimizers' moments and the EMA."""
    cfg = smoke(model, ema_decay=ema, steps=8, warmup_steps=3, val_every=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T.train(cfg, tmp_path / "straight")
        real_save = T.save_checkpoint
        for stop in (3, 6):       # 3: end of the warm-up; 6: inside the GAN phase

            def crash(path, state, stop=stop):
                real_save(path, state)
                if path.name == "checkpoint.pt" and state["step"] == stop:
                    raise KeyboardInterrupt("killed")
            T.save_checkpoint = crash
            try:
                with pytest.raises(KeyboardInterrupt):
                    T.train(cfg, tmp_path / "resumed")
            finally:
                T.save_checkpoint = real_save
        T.train(cfg, tmp_path / "resumed")
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for part in ("G", "D"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    for k, v in a["opt_G"]["state"].items():
        assert torch.equal(v["exp_avg"], b["opt_G"]["state"][k]["exp_avg"])
    if ema:
        for k in a["ema"]["state"]:
            assert torch.equal(a["ema"]["state"][k], b["ema"]["state"][k]), k
    assert [r["g_loss"] for r in a["history"]] == [r["g_loss"] for r in b["history"]]
    with pytest.raises(ValueError, match="config differs"):
        T.train(smoke(model, ema_decay=ema, steps=8, warmup_steps=3, val_every=2, lr_g=1.0), tmp_path / "resumed")


def test_shared_warmup_runs_once_and_the_main_phase_starts_from_its_weights(tmp_path):
    warm = tmp_path / "warm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # lr 0 in the main phase: Adam does not move the weights, so the run ends on its start weights
        att = T.train(smoke("attention", warmup_dir=str(warm), lr_g=0.0, lr_d=1e-4), tmp_path / "attention")
        psnr = T.train(smoke("psnr", warmup_dir=str(warm)), tmp_path / "psnr")
    assert len(list(warm.iterdir())) == 1           # one warm-up for the attention architecture
    wdir = Path(att["warmup_run"])
    assert psnr["warmup_run"] == att["warmup_run"] and wdir.parent == warm
    w = load_generator(wdir / "generator.safetensors")[1]["G"]
    g = load_checkpoint(tmp_path / "attention" / "checkpoint.pt")["G"]
    assert all(torch.equal(w[k], g[k]) for k in w)
    assert att["warmup_generator_sha256"] == T.state_hash(w)
    rows = (tmp_path / "psnr" / "metrics.csv").read_text().splitlines()
    shared = [r.split(",") for r in rows[1:]]
    assert [(r[0], r[1], r[2]) for r in shared] == [("2", "warmup", wdir.name), ("4", "l1", ""), ("6", "l1", "")]
    assert rows[1] == (tmp_path / "attention" / "metrics.csv").read_text().splitlines()[1]
    # the psnr run really trained in its main phase, the attention run (lr 0) did not move
    p = load_checkpoint(tmp_path / "psnr" / "checkpoint.pt")["G"]
    assert any(not torch.equal(w[k], p[k]) for k in w)
    # within one run (no warmup_dir) the main phase starts from the warm-up's EMA weights the same way
    one = T.train(smoke("psnr", ema_decay=0.5, lr_g=0.0), tmp_path / "single")
    assert one["steps_done"] == 6


def test_loss_accounting_shares_and_terms(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        T.train(smoke("srgan"), tmp_path / "run")
    import pandas as pd
    df = pd.read_csv(tmp_path / "run" / "metrics.csv")
    warm, gan = df[df.phase == "warmup"].iloc[0], df[df.phase == "gan"].iloc[-1]
    assert warm.share_pixel == 1.0 and pd.isna(warm.share_adversarial)
    shares = gan[["share_pixel", "share_adversarial", "share_perceptual", "share_tv"]]
    assert shares.sum() == pytest.approx(1.0) and (shares > 0).all()
    assert gan.adversarial == pytest.approx(1 - gan.g_score, abs=0.05)   # the term's unweighted mean
    # term_gradients on its own: an L1-only criterion has one term holding the whole gradient
    G, _ = T.build_generator(smoke("psnr"))
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    out = T.term_gradients(G, None, T.losses.L1Loss(), lr, hr)
    assert set(out) == {"pixel"} and out["pixel"][1] > 0


def test_missing_vgg_drop_leaves_out_the_perceptual_term(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.warns(RuntimeWarning, match="WITHOUT its perceptual term"):
        crit, _, note = T.build_losses(T.make_config("srgan", "quick"))
    assert note.startswith("dropped") and crit.vgg is None and "perceptual" not in crit.weights
    with pytest.raises(RuntimeError, match="not found"):
        T.build_losses(T.make_config("srgan", "paper"))


def test_training_precision_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(T, "cpu_bf16_native", lambda: True)
    assert T.training_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(T, "cpu_bf16_native", lambda: False)
    assert T.training_precision("auto", "cpu") == "fp32" and T.training_precision("auto", "cuda") == "bf16"
    assert T.training_precision("bf16", "cpu") == "bf16"


def test_cpu_flags_are_read(tmp_path):
    from srlib.infer import cpu_bf16_native
    f = tmp_path / "cpuinfo"
    f.write_text("model name\t: X\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert cpu_bf16_native(f)
    f.write_text("flags\t\t: fpu sse avx512f amx_tile\n")
    assert not cpu_bf16_native(f) and not cpu_bf16_native(tmp_path / "missing")


def test_discriminator_is_updated_before_generator(monkeypatch, tmp_path):
    order = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **kw):
        # D's first weight is a 3x3 conv (64, 3, 3, 3); G's is the 9x9 head conv
        order.append("D" if self.param_groups[0]["params"][0].shape[-1] == 3 else "G")
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    T.train(smoke("attention", steps=3, warmup_steps=1), tmp_path / "run")
    assert order == ["G", "D", "G", "D", "G"]       # warm-up: G alone


def test_non_finite_loss_stops_and_keeps_last_checkpoint(monkeypatch, tmp_path):
    real_save = T.save_checkpoint

    def stop_after_first(path, state):
        real_save(path, state)
        if path.name == "checkpoint.pt":
            raise KeyboardInterrupt("stopped")
    monkeypatch.setattr(T, "save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        T.train(smoke("psnr"), tmp_path / "run")
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    before = (tmp_path / "run" / "checkpoint.pt").read_bytes()
    monkeypatch.setattr(T.losses.L1Loss, "forward", lambda self, f, sr, hr: (sr.mean() * float("nan"), {}))
    with pytest.raises(T.TrainingDiverged, match=r"non-finite g_loss \(nan\) at step 3"):
        T.train(smoke("psnr"), tmp_path / "run")
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2


def test_checkpoint_errors(tmp_path):
    T.train(smoke("psnr", steps=2), tmp_path / "run")
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


def test_crash_before_the_checkpoint_redoes_the_interval(monkeypatch, tmp_path):
    """The resume checkpoint is written last: a crash after the other files of an interval were
    written leaves the previous checkpoint, and the rerun redoes that interval and finishes cleanly."""
    real_save = T.save_checkpoint

    def crash_on_second_checkpoint(path, state):
        if path.name == "checkpoint.pt" and state["step"] == 4:
            raise KeyboardInterrupt("killed")
        return real_save(path, state)

    monkeypatch.setattr(T, "save_checkpoint", crash_on_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        T.train(smoke("psnr"), tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(T, "save_checkpoint", real_save)
    meta = T.train(smoke("psnr"), tmp_path / "run")
    assert meta["status"] == "complete" and meta["steps_done"] == 6
    assert len((tmp_path / "run" / "metrics.csv").read_text().splitlines()) == 4
    assert load_generator(tmp_path / "run" / "generator.safetensors")[1]["step"] == 6


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
    parts = res.pop("parts")
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in res.values())
    assert set(parts) == {"pixel", "adversarial", "perceptual", "tv", "total"}
    assert all(p.dtype == torch.float32 for p in [*G.parameters(), *D.parameters()])


def test_bf16_training_run_records_its_precision(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bf16 = T.train(smoke("attention", amp="bf16"), tmp_path / "bf16")
        fp32 = T.train(smoke("attention", amp="fp32"), tmp_path / "fp32")
    assert bf16["precision"] == "bf16" and fp32["precision"] == "fp32"
    assert bf16["config"]["amp"] == "bf16"
    a = load_generator(tmp_path / "bf16" / "generator.safetensors")[1]["G"]
    b = load_generator(tmp_path / "fp32" / "generator.safetensors")[1]["G"]
    assert any(not torch.equal(a[k], b[k]) for k in a)      # bf16 really changed the arithmetic
    assert abs(bf16["final"]["psnr"] - fp32["final"]["psnr"]) < 0.5


def test_a_run_whose_intervals_predate_the_cpu_record_says_its_quiet_is_unknown():
    old = [{"seconds": 10.0, "shared": ""}, {"seconds": 5.0, "shared": "", "cpu_seconds": 9.0,
                                            "others_cpu_seconds": 0.5}]
    assert T._cost(old) == {"train_seconds": 15.0, "train_cpu_seconds": None, "others_cpu_seconds": None,
                            "quiet": None}
    busy = [{"seconds": 10.0, "shared": "", "cpu_seconds": 19.0, "others_cpu_seconds": 8.0}]
    assert T._cost(busy)["quiet"] is (8.0 < T.timings.QUIET_SHARE * 10 * os.cpu_count())


def test_checkpoint_from_before_a_config_field_resumes(tmp_path):
    """A checkpoint written before a config field existed ran with that field's default."""
    T.train(smoke("psnr", steps=2, warmup_steps=0), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    ck = load_checkpoint(path)
    del ck["config"]["tune_set"]
    save_checkpoint(path, ck)
    assert T.train(smoke("psnr", steps=2, warmup_steps=0), tmp_path / "run")["steps_done"] == 2
    with pytest.raises(ValueError, match="tune_set"):
        T.train(smoke("psnr", steps=4, warmup_steps=0, tune_set="demo"), tmp_path / "run")
    del ck["step"]                 # an early, epoch-based run (its meta.json holds another config)
    save_checkpoint(path, ck)
    (tmp_path / "run" / "meta.json").unlink()
    with pytest.raises(ValueError, match="epoch-based checkpoint"):
        T.train(smoke("psnr", steps=2, warmup_steps=0), tmp_path / "run")


def test_a_short_training_run_hands_torch_no_read_only_array(tmp_path):
    """A run with PIL degradation (the paper profile's) and the memory-mapped image cache, in a fresh process
    (torch warns of a non-writable NumPy array once per process), with that warning made an error."""
    cfg = dict(degradation="pil", steps=2, warmup_steps=0, cache_dir=str(tmp_path / "cache"))
    code = ("import warnings\nfrom srlib import train as T\n"
            "warnings.filterwarnings('error', message='The given NumPy array is not writable')\n"
            f"T.train(T.make_config('psnr', 'smoke', **{cfg!r}), {str(tmp_path / 'run')!r})\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def test_meta_records_provenance(tmp_path):
    meta = T.train(smoke("psnr", steps=2, warmup_steps=0), tmp_path / "run")
    assert meta["cpu"] and meta["precision"] == "fp32" and meta["gpu"] is None
    assert meta["git"] is None or len(meta["git"].split("+")[0]) == 40
    data = meta["data"]
    assert data["train"]["images"] == 6 and len(data["train"]["sha256"]) == 64
    assert data["val"]["images"] == 2 and data["val"]["sha256"] != data["train"]["sha256"]
    from srlib.data import eval_digest, load_eval_set
    assert data["val"]["sha256"] == eval_digest(load_eval_set("demo", scale=4)[:2])
    assert data["train"]["listed"] == 6
    import pandas as pd

    from srlib.report import model_card
    card = model_card(tmp_path / "run", pd.DataFrame(columns=["method", "dataset", "protocol", "psnr", "ssim"]))
    line = next(x for x in card.splitlines() if x.startswith("- Provenance: "))
    assert data["train"]["sha256"] in line and data["val"]["sha256"] in line and "predates" not in line
    assert (meta["git"] or "not recorded").split("+")[0] in line


def test_later_fields_leave_older_configs_unchanged():
    """Fields added after runs were committed stay out of the plain config at their defaults (so committed
    runs and warm-up folders still match) and are recorded when set; wrong values are errors."""
    import json
    from pathlib import Path

    from srlib.config import make_config
    from srlib.config import plain as _plain
    plain = _plain(make_config("attention", "quick"))
    assert "adversarial" not in plain and "adv_weight" not in plain
    meta = Path(__file__).resolve().parents[1] / "results" / "train" / "attention" / "meta.json"
    assert json.loads(meta.read_text())["config"] == plain
    set_ = _plain(make_config("attention", "quick", adversarial="nonsaturating", adv_weight=5e-3))
    assert (set_["adversarial"], set_["adv_weight"]) == ("nonsaturating", 5e-3)
    with pytest.raises(ValueError, match="adversarial='x'"):
        make_config("attention", "quick", adversarial="x")
    with pytest.raises(ValueError, match="apply to the paper's loss"):
        make_config("srgan", "quick", adversarial="nonsaturating")


def test_srgan_run_without_vgg16_is_retrained_once_the_weights_are_there(tmp_path, monkeypatch):
    """The resolved VGG16 is part of a run's identity: a finished SRGAN run that dropped its perceptual term
    (as the committed quick-profile run) is reused while ImageNet VGG16 is absent and trained again, with
    the term, once the file is in torch.hub's cache; then that run is reused."""
    import torchvision
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cfg = smoke("srgan", vgg_weights="auto", vgg_on_missing="drop")
    out = tmp_path / "srgan"
    with pytest.warns(RuntimeWarning, match="WITHOUT its perceptual term"):
        meta = T.train(cfg, out)
    assert meta["vgg"].startswith("dropped") and not T.vgg16_now_available(cfg, meta)
    gen = out / "generator.safetensors"
    before = gen.read_bytes()
    assert T.train(cfg, out)["vgg"] == meta["vgg"] and gen.read_bytes() == before      # reused
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    with torch.random.fork_rng():
        torch.manual_seed(1)
        torch.save(torchvision.models.vgg16(weights=None).features.state_dict(), ckpt / "vgg16-397923af.pth")
    assert T.vgg16_now_available(cfg, meta)
    with pytest.warns(RuntimeWarning, match="training it again"):
        again = T.train(cfg, out)
    assert again["vgg"] == f"imagenet:{ckpt / 'vgg16-397923af.pth'}" and again["status"] == "complete"
    assert gen.read_bytes() != before
    after = gen.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # no retraining warning now
        assert T.train(cfg, out)["vgg"] == again["vgg"] and gen.read_bytes() == after
    # never upgraded: a random-init VGG16 chosen on purpose, and a run that had ImageNet weights
    assert not T.vgg16_now_available(smoke("srgan"), {"vgg": "random-init(seed=0)"})
    assert not T.vgg16_now_available(cfg, {"vgg": again["vgg"]})
    assert not T.vgg16_now_available(smoke("psnr"), {"vgg": "not used"})


# The generators of smoke runs (seed 0, one torch thread: the sums of two threads round differently), by CPU and
# torch version: a change of the training loop that is meant to keep its behaviour keeps these bit for bit.
GOLDEN = {
    ("Intel(R) Xeon(R) Processor", "2.14.1+cu130"): {
        "attention": "ab8e11490df324216855fe27ecda32ef16297dd1a061eedef64a3b06c77f47b4",
        "srgan": "06d1d97aa4d53e56ebfde38ff736268027a4b2e0548c4148fe244a815d9c4359",
        "psnr": "f1b189bc1a7131a6a90074169babb22feb720af87de7a7011f2df02d1f71df8e",
    },
}


@pytest.mark.parametrize("model", ["attention", "srgan", "psnr"])
def test_smoke_generator_is_bit_identical_to_its_golden_hash(tmp_path, model):
    """The training loop's output, bit for bit (tensor bytes, state_hash), against the hash recorded on this CPU
    and torch before the loop was split into named steps. Another CPU or torch gives other bits: skipped,
    printing the hashes to record for it (measured before a change, not after)."""
    from srlib.infer import state_hash
    from srlib.environment import cpu_model
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        T.train(smoke(model, seed=0), tmp_path / model)
    finally:
        torch.set_num_threads(threads)
    _, ck = load_generator(tmp_path / model / "generator.safetensors", inference="whole")
    got = state_hash(ck["G"])
    golden = GOLDEN.get((cpu_model(), torch.__version__))
    if golden is None:
        pytest.skip(f"no golden hash for {cpu_model()!r} with torch {torch.__version__}: {model} gives {got}")
    assert got == golden[model]


def test_no_function_of_the_training_loop_is_longer_than_a_screen():
    """The loop is named steps (decide resume, build, start, load data, run an interval, validate and
    checkpoint), each readable on one screen (50 lines)."""
    import ast
    import srlib.train
    tree = ast.parse(Path(srlib.train.__file__).read_text())
    long = {n.name: n.end_lineno - n.lineno + 1 for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef) and n.end_lineno - n.lineno + 1 > 50}
    assert not long, f"functions of srlib/train.py longer than 50 lines: {long}"
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert {"_decide_resume", "_build", "_start", "_load_data", "_run_interval", "_validate_and_checkpoint"} <= names
