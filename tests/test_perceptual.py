"""srlib.perceptual: LPIPS through its real code path (offline, seeded random backbone), ST-LPIPS with its
wheel's weights, the piq measures, NIQE's distribution fits (known answers), srlib's NIQE model and the
published one, and the positive control on real data. tests/test_niqe_reference.py checks niqe_live against
BasicSR's own code."""
import hashlib
import os
import sys

import numpy as np
import pytest
import torch
from scipy import stats

from srlib import perceptual as P
from srlib.data import load_eval_set
from srlib.study import blur, positive_control, sharpen

RNG = np.random.default_rng(0)


def _image(h=128, w=160, seed=0):
    """A smooth random colour image with edges (uint8)."""
    from scipy import ndimage
    rng = np.random.default_rng(seed)
    x = ndimage.gaussian_filter(rng.random((h, w, 3)) * 255, (3, 3, 0))
    x[h // 3: h // 2] += 60
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def random_lpips():
    model, note = P.load_lpips("random", seed=0)
    assert "RANDOM" in note
    return model


def test_lpips_identity_symmetry_and_batch(random_lpips):
    a, b, c = _image(seed=1), _image(seed=2), blur(_image(seed=1))
    assert P.lpips_distance(random_lpips, a, a) == pytest.approx(0.0, abs=1e-7)
    ab, ba = P.lpips_distance(random_lpips, a, b), P.lpips_distance(random_lpips, b, a)
    assert ab > 0 and ab == pytest.approx(ba, rel=1e-5)
    batch = P.lpips_distance(random_lpips, np.stack([a, c]), np.stack([b, a]))
    assert batch.shape == (2,)
    assert batch == pytest.approx([ab, P.lpips_distance(random_lpips, c, a)], rel=1e-5)


def test_lpips_backbone_from_a_file_and_missing(tmp_path, monkeypatch):
    import torchvision
    torch.manual_seed(3)
    alex = torchvision.models.alexnet()
    torch.save(alex.state_dict(), tmp_path / "alex.pth")
    model, note = P.load_lpips(str(tmp_path / "alex.pth"))
    assert "alex.pth" in note
    assert torch.equal(getattr(model.net.slice1, "0").weight, alex.features[0].weight)     # conv1
    assert torch.equal(getattr(model.net.slice5, "10").bias, alex.features[10].bias)       # conv5
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="not a torchvision AlexNet"):
        P.load_lpips(str(tmp_path / "bad.pth"))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        P.load_lpips(str(tmp_path / "nope.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))        # no cache: no model, and a reason
    model, note = P.load_lpips("auto")
    assert model is None and P.ALEXNET_FILE in note and "not computed" in note


@pytest.mark.skipif(not os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", P.ALEXNET_FILE)),
                    reason="ImageNet AlexNet weights are not in torchvision's cache here")
def test_lpips_real_weights_rank_blur():
    model, note = P.load_lpips("auto")
    a = _image(256, 256, seed=4)
    assert "ImageNet" in note
    assert P.lpips_distance(model, a, a) == pytest.approx(0.0, abs=1e-6)
    assert P.lpips_distance(model, blur(a, 1.0), a) < P.lpips_distance(model, blur(a, 3.0), a)


def test_full_reference_ideal_and_degraded():
    a = _image(200, 200)
    ideal = P.full_reference(a, a)
    assert ideal["haarpsi"] == pytest.approx(1.0, abs=1e-4) and ideal["gmsd"] == pytest.approx(0.0, abs=1e-6)
    assert ideal["ms_ssim"] == pytest.approx(1.0, abs=1e-4)
    worse = P.full_reference(blur(a, 2.0), a)
    assert worse["haarpsi"] < 0.99 and worse["gmsd"] > 0.01 and worse["ms_ssim"] < 0.999
    assert np.isnan(P.full_reference(a[:120, :120], a[:120, :120])["ms_ssim"])    # too small for 5 scales


@pytest.mark.parametrize("shape", [0.8, 1.5, 2.0, 3.0])
def test_aggd_fit_recovers_shape_and_scale(shape):
    """Samples of a symmetric generalized Gaussian (scipy's gennorm, scale 2): shape and both scales back."""
    x = stats.gennorm.rvs(shape, scale=2.0, size=(1, 200_000), random_state=RNG)
    alpha, left, right = P.aggd_fit(x)
    assert alpha[0] == pytest.approx(shape, rel=0.05)
    assert left[0] == pytest.approx(2.0, rel=0.03) and right[0] == pytest.approx(2.0, rel=0.03)


def test_aggd_fit_skewed():
    x = stats.gennorm.rvs(1.2, size=(1, 200_000), random_state=RNG)
    skewed = np.where(x > 0, 2 * x, x)   # right side twice as wide (the shape estimate is moment-matched: 7% off)
    alpha, left, right = P.aggd_fit(skewed)
    assert alpha[0] == pytest.approx(1.2, rel=0.1) and right[0] / left[0] == pytest.approx(2.0, rel=0.03)


def test_niqe_model_save_load_and_errors(tmp_path):
    imgs = [_image(200, 200, seed=s) for s in range(4)]
    model = P.NIQE.fit(imgs + [_image(90, 90)], source="synthetic")
    assert "4 images" in model.source and "1 images under one block skipped" in model.source
    model.save(tmp_path / "m.npz")
    again = P.NIQE.load(tmp_path / "m.npz")
    assert again.source == model.source and np.array_equal(again.cov, model.cov)
    assert again.score(imgs[0]) == model.score(imgs[0])
    with pytest.raises(ValueError, match="at least 96x96"):
        model.score(_image(80, 200))


@pytest.fixture(scope="module")
def niqe(data_root):
    return P.NIQE.fit([load_eval_set(n, data_root)[0].hr for n in ("BSD100", "Urban100")] +
                      [it.hr for it in load_eval_set("Set14", data_root)[:6]], source="test")


def test_niqe_prefers_real_photographs_to_blurred_ones(niqe, data_root):
    for it in load_eval_set("Set5", data_root):
        assert niqe.score(it.hr) < niqe.score(blur(it.hr, 2.0)), it.name


def test_perceptual_columns_and_gaps(niqe, random_lpips):
    a = _image(200, 200)
    out = P.Perceptual(None, niqe)(blur(a), a)
    assert set(out) == set(P.MEASURES + P.COUNTS) and np.isnan(out["lpips"]) and out["niqe_srlib"] > 0
    assert np.isnan(out["niqe_live"]) and np.isnan(out["stlpips_alex"]) and out["niqe_blocks"] == 4   # 192 px
    assert out["niqe_srlib"] == niqe.score(blur(a))                # the column formerly named 'niqe'
    small = _image(150, 150)
    out = P.Perceptual(random_lpips, None, niqe_live=P.load_niqe_live())(small, small)
    assert out["lpips"] == pytest.approx(0.0, abs=1e-7) and np.isnan(out["niqe_srlib"])
    assert out["niqe_blocks"] == 1 and np.isnan(out["niqe_live"])     # one block: no covariance
    big = _image(300, 400)
    out = P.Perceptual(None, None, niqe_live=P.load_niqe_live())(big, big)
    assert out["niqe_blocks"] == 3 * 4 and out["niqe_live"] > 0


def test_legacy_niqe_column_is_read_as_niqe_srlib():
    import pandas as pd
    old = pd.DataFrame({"method": ["a"], "niqe": [7.0]})
    assert list(P.current_names(old).columns) == ["method", "niqe_srlib"]
    both = pd.DataFrame({"niqe": [1.0], "niqe_srlib": [2.0]})
    assert list(P.current_names(both).columns) == ["niqe", "niqe_srlib"]       # a current column wins


@pytest.mark.slow
def test_positive_control_ranks_on_set5(niqe, data_root):
    """The committed L1 model on Set5: the full-reference measures rank HR > L1 > bicubic > blurred bicubic
    and penalize the over-sharpened output; NIQE (fitted on 8 images here) puts HR first and the blurred
    output last, while it barely separates the L1 model from bicubic (so that order is not asserted)."""
    from pathlib import Path
    runs = Path(__file__).resolve().parents[1] / "results" / "train"
    _, table, checks = positive_control(runs, ["Set5"], data_root, P.Perceptual(None, niqe))
    assert {k: checks[k] for k in ("psnr", "ssim", "haarpsi", "gmsd", "ms_ssim")} == dict.fromkeys(
        ["psnr", "ssim", "haarpsi", "gmsd", "ms_ssim"], "yes")
    t = table.set_index("output")
    n = t["niqe_srlib"]
    assert n["HR"] < min(n["L1 model"], n["Bicubic"]) and n["Bicubic, blurred"] > max(n["L1 model"], n["Bicubic"])
    for m in ("haarpsi", "ms_ssim"):
        assert t.loc["L1 model, over-sharpened", m] < t.loc["L1 model", m]
    assert t.loc["L1 model, over-sharpened", "gmsd"] > t.loc["L1 model", "gmsd"]


def test_sharpen_and_blur_shapes():
    a = _image()
    assert sharpen(a).shape == a.shape == blur(a).shape and sharpen(a).dtype == np.uint8
    assert sharpen(a).astype(float).std() > a.astype(float).std() > blur(a).astype(float).std()


def test_flat_blocks_give_finite_features():
    flat = np.full((200, 200, 3), 128, np.uint8)
    f, sharp = P.niqe_features(flat)
    assert np.isfinite(f).all() and (sharp < 1e-3).all()


# ------------------------------------------------------------------------------------- the published NIQE
def test_niqe_live_model_is_the_shipped_file_with_its_notice():
    assert hashlib.sha256(P.NIQE_LIVE_FILE.read_bytes()).hexdigest() == P.NIQE_LIVE_SHA256
    live = P.load_niqe_live()
    assert live.mu.shape == (36,) and live.cov.shape == (36, 36) and live.convention == "live"
    assert np.allclose(live.cov, live.cov.T) and live.window.shape == (7, 7)
    assert live.window == pytest.approx(P.gaussian_window(), abs=1e-15)          # fspecial('gaussian', 7, 7/6)
    notice = (P.ASSETS / "NIQE_LIVE_NOTICE.txt").read_text()
    assert "COPYRIGHT NOTICE STARTS WITH THIS LINE" in notice and "Making a Completely Blind" in notice
    assert P.NIQE_LIVE_SHA256 in notice


def test_niqe_live_refuses_another_file(tmp_path):
    z = np.load(P.NIQE_LIVE_FILE)
    np.savez(tmp_path / "other.npz", mu_pris_param=z["mu_pris_param"] + 1, cov_pris_param=z["cov_pris_param"],
             gaussian_window=z["gaussian_window"])
    with pytest.raises(ValueError, match="not the LIVE pristine model"):
        P.load_niqe_live(tmp_path / "other.npz")


def test_niqe_live_flat_blocks_are_nan_and_skipped():
    """A block without negative (or positive) normalized coefficients gives NaN features, as MATLAB's mean of
    an empty set; the score skips them (nanmean, and the covariance of the blocks without NaN)."""
    img = _image(400, 400, seed=5)
    f, _ = P.niqe_features(img, convention="live")
    assert np.isfinite(f).all() and len(f) == 16
    flat = img.copy()
    flat[:200, :200] = 90                      # four blocks flat (shaved 4: rows and columns 4..195)
    f, _ = P.niqe_features(flat, convention="live")
    nan = np.isnan(f).any(axis=1)
    assert nan.sum() >= 3 and not nan.all()
    live = P.load_niqe_live()
    assert np.isfinite(live.score(flat))
    assert np.isnan(live.score(np.full((300, 300, 3), 90, np.uint8)))            # no block without NaN
    assert np.isfinite(P.niqe_features(flat)[0]).all()                           # srlib's convention: finite


def test_niqe_live_input_conventions():
    """RGB goes to rounded studio-swing Y (single precision, as BasicSR); a 2-D input is taken as that
    channel, rounded."""
    from srlib.metrics import rgb_to_y
    img = _image(300, 300, seed=6)
    y = P._y_single(img)
    assert (y == np.round(rgb_to_y(img))).mean() > 0.999 and y.min() >= 16 and y.max() <= 235
    live = P.load_niqe_live()
    assert live.score(img) == live.score(y)
    assert live.score(y + 0.3) == live.score(y)                                  # rounded first
    with pytest.raises(ValueError, match="convention"):
        P.niqe_features(img, convention="matlab")


def test_half_single_is_matlab_bicubic_half():
    from srlib.imresize import imresize
    y = np.round(np.random.default_rng(7).random((96, 192)) * 219 + 16)
    half = P.half_single(y)
    assert half.dtype == np.float32 and half.shape == (48, 96)
    assert half == pytest.approx(imresize(y, output_shape=(48, 96)), abs=1e-4)   # float32 of the same resize


def test_niqe_live_on_baboon_matches_matlab(data_root):
    """BasicSR's calculate_niqe docstring: MATLAB R2021a gives 5.72957338 on Set14 baboon (Y, no crop)."""
    it = next(it for it in load_eval_set("Set14", data_root) if it.name == "baboon")
    assert P.load_niqe_live().score(it.hr, shave=0) == pytest.approx(5.72957338, abs=1e-3)   # 6e-5 here


# ----------------------------------------------------------------------------------------------- ST-LPIPS
@pytest.fixture(scope="module")
def stlpips():
    pytest.importorskip("stlpips_pytorch")
    model, note = P.load_stlpips()
    assert model is not None and "stlpips-pytorch 0.0.2" in note and "loaded strictly" in note
    return model


def test_stlpips_identity_control_and_batch(stlpips):
    from skimage import data
    a = data.astronaut()[100:356, 100:356]
    assert P.stlpips_distance(stlpips, a, a) == pytest.approx(0.0, abs=1e-7)
    light, heavy = P.stlpips_distance(stlpips, blur(a, 1.0), a), P.stlpips_distance(stlpips, blur(a, 3.0), a)
    assert 0 < light < heavy
    batch = P.stlpips_distance(stlpips, np.stack([blur(a, 1.0), a]), np.stack([a, blur(a, 2.0)]))
    assert batch.shape == (2,)
    assert batch == pytest.approx([light, P.stlpips_distance(stlpips, a, blur(a, 2.0))], rel=1e-4)
    out = P.Perceptual(None, None, stlpips=stlpips)(blur(a, 1.0), a)
    assert out["stlpips_alex"] == pytest.approx(light, rel=1e-6)


def test_stlpips_weights_are_loaded_strictly(stlpips):
    sd = {k: v.clone() for k, v in stlpips.state_dict().items() if not k.startswith("lins.")}
    P.load_strictly(stlpips, sd, "ok")                      # lins.* are lin0..lin4 under a second name
    with pytest.raises(ValueError, match="missing"):
        P.load_strictly(stlpips, {k: v for k, v in sd.items() if k != "lin2.model.1.weight"}, "short")
    with pytest.raises(ValueError, match="unexpected"):
        P.load_strictly(stlpips, {**sd, "extra.weight": torch.zeros(1)}, "long")


def test_stlpips_missing_package_gives_nan_and_a_loud_note(monkeypatch):
    monkeypatch.setitem(sys.modules, "stlpips_pytorch", None)          # import fails as if not installed
    with pytest.warns(RuntimeWarning, match="NOT COMPUTED"):
        model, note = P.load_stlpips()
    assert model is None and "srlib[stlpips]" in note and "torchsummary" in note


# ------------------------------------------------------------------------------- perception-distortion plot
def test_perception_distortion_figure_shows_every_method_with_the_legend_off_the_data():
    """Every method in every panel with its own colour and marker (the attention model and the PSNR baseline
    coincide here, as in results/), HR's line, the legend outside every axes, a missing measure said."""
    import matplotlib
    matplotlib.use("Agg")
    import pandas as pd

    from srlib import study
    methods = ["Bicubic", "SRGAN (ours)", "Attention (ours)", "PSNR baseline (ours)", "Other"]
    rows = []
    for ds in ("Set5", "Set14"):
        for i, m in enumerate(methods):
            same = min(i, 2)                                       # the last three share one point
            rows.append(dict(method=m, dataset=ds, psnr=28.0 + same, niqe=9.0 - same, stlpips_alex=0.3 - 0.05 * same))
        rows.append(dict(method="HR", dataset=ds, psnr=np.nan, niqe=4.5, stlpips_alex=0.0))
    table = pd.DataFrame(rows)                                     # an older table: 'niqe' is niqe_srlib
    fig = study.plot_perception_distortion(table, perception=("niqe_srlib", "stlpips_alex", "niqe_live"))
    axes = np.array(fig.axes).reshape(3, 2)
    styles = study.method_styles(methods)
    assert len({c for c, _, _ in styles.values()}) == len({m for _, m, _ in styles.values()}) == len(methods)
    fig.canvas.draw()
    for ax in axes[:2].ravel():
        shown = {c.get_label(): c for c in ax.collections}
        assert set(shown) == set(methods)
        assert all(len(c.get_offsets()) == 1 for c in shown.values())
        sizes = [shown[m].get_sizes()[0] for m in methods[2:]]     # coinciding: concentric, largest drawn first
        assert len(set(sizes)) == 3
        assert any(line.get_linestyle() == "--" for line in ax.lines)    # HR
    assert all("not computed" in ax.texts[0].get_text() and not ax.collections for ax in axes[2])
    legend = fig.legends[0].get_window_extent()
    assert [t.get_text() for t in fig.legends[0].get_texts()] == methods
    assert not any(legend.overlaps(ax.get_window_extent()) for ax in fig.axes)
    matplotlib.pyplot.close(fig)
