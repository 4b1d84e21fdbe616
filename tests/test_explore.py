"""srlib.explore, the logic of notebook 07_explore, on real images and the committed generators: pictures by name
and from files, the inference that runs in each mode (calibration in memory as `srlib calibrate` does it, the
fall-back without training data), scores, clear errors, and the figures."""
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srlib import explore
from srlib.archs import build_generator
from srlib.calibration import calibrate_run
from srlib.data import load_eval_set
from srlib.evaluate import bicubic, mean_offset
from srlib.infer import GENERATOR_FILE, load_generator, load_safetensors_generator, save_generator, upscale_array
from srlib.io import ImageError
from srlib.metrics import image_scores

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "results" / "train"


@pytest.fixture(scope="module")
def uncalibrated(tmp_path_factory):
    """The committed attention generator as a file written before calibration existed: its calibrated
    GroupNorm statistics removed (they load as NaN: uncalibrated)."""
    ckpt = load_safetensors_generator(RUNS / "attention" / GENERATOR_FILE)
    state = {k: v for k, v in ckpt["G"].items() if not k.endswith(("calib_mean", "calib_var"))}
    assert len(state) < len(ckpt["G"])                       # the committed file is calibrated
    path = tmp_path_factory.mktemp("uncalibrated") / GENERATOR_FILE
    save_generator(path, state, ckpt["generator"], ckpt["meta"], ckpt["config"], ckpt["step"])
    return path


@pytest.fixture(scope="module")
def attention(uncalibrated, data_root):
    """The committed attention generator without its stored statistics, calibrated in memory from its
    training crops."""
    return explore.load(uncalibrated, "attention", data_root)


@pytest.fixture(scope="module")
def srgan():
    return explore.load(RUNS / "srgan" / GENERATOR_FILE, "srgan")


@pytest.fixture(scope="module")
def bird(data_root):
    return explore.load_picture("Set5/bird", data_root)


@pytest.fixture(scope="module")
def ex(bird, attention, srgan):
    """Both generators on Set5 bird; each output computed once for the tests that share it."""
    return explore.Explorer(bird, [attention, srgan], explore.measures())


def test_generators_lists_the_committed_runs():
    found = explore.generators(RUNS)
    assert {"attention", "psnr", "srgan"} <= set(found)
    assert found["attention"] == RUNS / "attention" / GENERATOR_FILE


def test_a_benchmark_image_by_name_is_the_benchmarks(bird, data_root):
    it = next(i for i in load_eval_set("Set5", data_root, 4) if i.name == "bird")
    assert bird.name == "Set5/bird" and bird.scale == 4 and not bird.gray
    assert np.array_equal(bird.hr, it.hr) and np.array_equal(bird.lr, it.lr)


def test_a_file_as_hr_or_as_the_lr_input(bird, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(bird.hr[:, :-3]).save(path)                       # not a multiple of 4 wide: mod-cropped
    as_hr = explore.load_picture(path)
    assert as_hr.name == "photo.png" and np.array_equal(as_hr.hr, bird.hr[:, :-4])
    assert as_hr.lr.shape == (72, 71, 3)
    as_lr = explore.load_picture(path, as_lr=True)
    assert as_lr.hr is None and np.array_equal(as_lr.lr, bird.hr[:, :-3])


def test_clear_errors(tmp_path, data_root):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="broken.png: not an image file"):
        explore.load_picture(bad)
    with pytest.raises(ImageError, match="Set5/nothing: no such file, and Set5 has no image 'nothing' .it has baby"):
        explore.load_picture("Set5/nothing", data_root)
    with pytest.raises(ImageError, match="nofile.png: no such file, and not DATASET/NAME"):
        explore.load_picture("nofile.png")
    torch.manual_seed(0)
    net = build_generator("attention", n_blocks=1, n_feats=16)
    save_generator(tmp_path / GENERATOR_FILE, net.state_dict(), {**net.config, "scale": 4}, config={"crop": 96})
    tiny = explore.load(tmp_path / GENERATOR_FILE, "tiny", calibrate=False)
    assert tiny.statistics.startswith("NOT CALIBRATED") and tiny.extent == 24
    small = tmp_path / "small.png"
    Image.fromarray(np.full((80, 120, 3), 128, np.uint8)).save(small)
    with pytest.raises(ImageError, match=r"small.png: LR 30x20 \(HR 120x80\) is smaller than tiny's training crop "
                                         r"\(96 px HR, 24 px LR\)"):
        explore.Explorer(explore.load_picture(small), [tiny])


def test_save_upload_goes_to_a_temporary_folder():
    path = explore.save_upload("../../escape.png", memoryview(b"\x89PNG bytes"))
    try:
        assert path.name == "escape.png" and path.read_bytes() == b"\x89PNG bytes"
        assert path.parent.parent == Path(tempfile.gettempdir()) and path.parent.name.startswith("srlib-explore-")
    finally:
        shutil.rmtree(path.parent)


def test_in_memory_calibration_is_srlib_calibrate(attention, uncalibrated, bird, data_root, tmp_path):
    """A file without calibrated statistics: explore measures them as `srlib calibrate` stores them, and as
    the committed file holds them."""
    assert attention.calibrated and attention.statistics.startswith("calibrated here, in memory, on 256 crops")
    run = tmp_path / "attention"
    run.mkdir()
    shutil.copy(uncalibrated, run / GENERATOR_FILE)
    shutil.copy(RUNS / "attention" / "meta.json", run / "meta.json")
    assert calibrate_run(run, data_root)
    stored = explore.load(run / GENERATOR_FILE, "attention", data_root)
    committed = explore.load(RUNS / "attention" / GENERATOR_FILE, "attention", data_root)
    assert stored.statistics == committed.statistics == "calibrated statistics stored in the file"
    lr = bird.lr[:40, :40]
    assert np.array_equal(explore.run(stored, lr, "calibrated"), explore.run(attention, lr, "calibrated"))
    # the committed statistics were measured on another machine (float sums differ in their last bits between
    # CPUs and thread counts): the same statistics to rounding, the same output to at most one level
    here = dict(attention.model.named_buffers())
    for name, buf in committed.model.named_buffers():
        if name.endswith(("calib_mean", "calib_var")):
            assert torch.allclose(buf, here[name], rtol=1e-4, atol=1e-6), name
    diff = np.abs(explore.run(committed, lr, "calibrated").astype(int) - explore.run(attention, lr, "calibrated"))
    assert diff.max() <= 1


def test_without_training_data_calibrated_runs_whole_image_and_says_so(uncalibrated, bird, tmp_path):
    g = explore.load(uncalibrated, "attention", tmp_path / "empty")
    assert not g.calibrated and "not to be had under" in g.statistics and "quick-train" in g.statistics
    assert explore.describe(g, "calibrated") == "whole image, own statistics (NOT calibrated)"
    lr = bird.lr[:40, :40]
    assert np.array_equal(explore.run(g, lr, "calibrated"), explore.run(g, lr, "whole"))


def test_modes_and_what_ran(attention, srgan, bird, ex):
    assert explore.modes(attention) == ["calibrated", 12, 24, 48, 96, "whole"]
    assert explore.modes(attention, bird) == ["calibrated", 12, 24, 48, "whole"]     # 96 >= the 72-px LR
    assert [explore.mode_label(m) for m in (24, "whole")] == ["tiles 24", "whole image"]
    assert explore.describe(attention, "calibrated") == "calibrated (24-px statistics)"
    assert explore.describe(attention, 12) == "tiles of 12 px, own statistics"
    assert explore.describe(srgan, "calibrated") == "whole image, no GroupNorm"
    # whole-image inference is srlib's whole-image upscaling
    model, _ = load_generator(RUNS / "attention" / GENERATOR_FILE, device="cpu", inference="whole")
    np.testing.assert_allclose(ex.output("attention", "whole"), upscale_array(model, bird.lr, 4, amp=False), atol=1e-5)


def test_table_and_sweep_on_a_real_image(ex, bird):
    table = ex.table("calibrated")
    assert list(table.method) == ["Bicubic", "Attention (ours)", "SRGAN (ours)"]
    assert list(table.inference) == ["-", "calibrated (24-px statistics)", "whole image, no GroupNorm"]
    assert {"haarpsi", "gmsd", "ms_ssim", "niqe_live"} <= set(table.columns) and "lpips" not in table.columns
    b = bicubic(bird.lr)
    assert table.psnr[0] == pytest.approx(image_scores(b, bird.hr, 4, False, ("standard",))["standard"][0], abs=1e-9)
    assert tuple(table.loc[0, list(explore.OFFSETS)]) == pytest.approx(mean_offset(b, bird.hr))
    assert 25 < table.psnr[1] < 40 and 0 < table.haarpsi[1] <= 1
    sweep = ex.sweep("attention")
    assert list(sweep["mode"]) == ["calibrated", "tiles 12", "tiles 24", "tiles 48", "whole image"]
    offset = sweep[list(explore.OFFSETS)].mean(axis=1)
    # the study's finding on this image: own statistics at the training extent stay close to the calibrated
    # colours; the whole image, an extent never trained at, shifts them
    assert abs(offset[2] - offset[0]) < 1 < abs(offset[4] - offset[0])
    control = ex.sweep("srgan")[list(explore.OFFSETS)].mean(axis=1)
    assert control.max() - control.min() < 0.5                       # BatchNorm: no extent dependence
    text = explore.format_table(sweep)
    assert "calibrated      -" in text and "whole image      0" in text
    assert ex.output("attention", "whole") is ex.output("attention", "whole")       # computed once
    assert ex.score("attention", "whole") is ex.score("attention", "whole")         # scored once (a zoom redraws)


def test_models_of_different_training_extents_share_one_sweep(attention, bird, tmp_path):
    """A given generator file trained at another crop: the slider and the plot take every model's tile sizes."""
    import matplotlib
    matplotlib.use("Agg")
    torch.manual_seed(0)
    net = build_generator("attention", n_blocks=1, n_feats=16)
    save_generator(tmp_path / GENERATOR_FILE, net.state_dict(), {**net.config, "scale": 4}, config={"crop": 64})
    other = explore.load(tmp_path / GENERATOR_FILE, "other", calibrate=False)
    assert explore.modes(other, bird) == ["calibrated", 8, 16, 32, 64, "whole"]
    ex = explore.Explorer(bird, [attention, other])
    assert ex.modes() == ["calibrated", 8, 12, 16, 24, 32, 48, 64, "whole"]
    sweeps = {n: ex.sweep(n) for n in ex.gens}
    assert list(sweeps["attention"].extent[1:]) == [8, 12, 16, 24, 32, 48, 64, 0]
    fig = explore.plot_sweep(sweeps, ex.modes(), 16)
    xs = [8, 12, 16, 24, 32, 48, 64, 128]                                           # the whole image right of 64
    assert [list(fig.axes[0].lines[k].get_xdata()) for k in (0, 2)] == [xs, xs]   # (1, 3: the calibrated levels)
    assert explore.describe(other, "calibrated") == "whole image, own statistics (NOT calibrated)"


def test_an_lr_input_without_hr(attention, bird, tmp_path):
    path = tmp_path / "small_photo.png"
    Image.fromarray(bird.lr[:40, :48]).save(path)
    ex = explore.Explorer(explore.load_picture(path, as_lr=True), [attention], explore.measures())
    table = ex.table("whole")
    assert "psnr" not in table.columns and np.isfinite(table.offset_r).all()     # offsets against bicubic
    assert table.offset_r[0] == 0
    y, x, size = ex.zoom_box()
    assert size == 96 and 0 <= y <= 160 - 96 and 0 <= x <= 192 - 96


def test_figures(ex, bird):
    import matplotlib
    matplotlib.use("Agg")
    fig = explore.plot_side_by_side(ex, 24, (10, 20, 64))
    assert len(fig.axes) == 3 * 5 and fig.axes[6].get_images()[0].get_array().shape == (64, 64, 3)
    assert fig.axes[5].get_images()[0].get_array().shape == (16, 16, 3)           # the LR zoom: 64 / 4
    modes = explore.modes(ex.gens["attention"], bird)
    fig = explore.plot_sweep({"attention": ex.sweep("attention")}, modes, 24)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["12", "24", "48", "whole"]
    assert list(fig.axes[0].lines[0].get_xdata()) == [12, 24, 48, 96]             # the whole image right of 48
    fresh = explore.Explorer(bird, [ex.gens["attention"]])
    assert fresh.sweep("attention", computed=True).empty                          # nothing computed yet
    fresh.output("attention", "whole")
    part = fresh.sweep("attention", computed=True)
    assert list(part["mode"]) == ["whole image"]
    fig = explore.plot_sweep({"attention": part}, modes, "whole")                  # a sweep in progress
    assert list(fig.axes[0].lines[0].get_xdata()) == [96]
    d = explore.difference(bird.hr.astype(np.float32) / 255 + 2 / 255, bird.hr)
    assert d.dtype == np.uint8 and (d[bird.hr < 250] == 136).all()                # 127.5 + 4 * 2, rounded
