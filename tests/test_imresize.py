import numpy as np
import pytest
from PIL import Image

from srlib.data import load_eval_set
from srlib.imresize import cubic, degrade, imresize, pil_bicubic, resize_weights
from srlib.io import read_image


def matlab_loop(vec, out_len, scale):
    """Per-output-pixel reference of MATLAB's 1-D bicubic resize, written independently (plain loops)."""
    n = len(vec)
    width = 4.0 / scale if scale < 1 else 4.0
    out = []
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = int(np.floor(u - width / 2))
        acc, wsum = 0.0, 0.0
        for j in range(left, left + int(np.ceil(width)) + 2):
            d = u - j
            wt = scale * cubic(scale * d) if scale < 1 else cubic(d)
            k = j - 1
            while k < 0 or k >= n:             # symmetric reflection, border repeated
                k = -k - 1 if k < 0 else 2 * n - k - 1
            acc += wt * vec[k]
            wsum += wt
        out.append(acc / wsum)
    return np.array(out)


@pytest.mark.parametrize("n,out_len,scale", [(17, 5, 0.25), (9, 36, 4.0), (12, 6, 0.5), (7, 7, 1.0)])
def test_weights_match_independent_loop(n, out_len, scale):
    rng = np.random.default_rng(0)
    vec = rng.random(n)
    np.testing.assert_allclose(resize_weights(n, out_len, scale) @ vec, matlab_loop(vec, out_len, scale), atol=1e-12)
    np.testing.assert_allclose(resize_weights(n, out_len, scale).sum(1), 1.0, atol=1e-12)


def test_uint8_rounds_each_pass_and_keeps_constants():
    img = np.full((40, 36, 3), 77, np.uint8)
    assert (imresize(img, 0.25) == 77).all() and imresize(img, 0.25).shape == (10, 9, 3)
    assert (imresize(img, 4.0) == 77).all() and imresize(img, 4.0).dtype == np.uint8
    f = imresize(img.astype(np.float64) / 255, 0.25)
    assert f.dtype == np.float64 and np.allclose(f, 77 / 255)


def test_degrade_checks_mod_crop_and_method():
    with pytest.raises(ValueError, match="multiple of scale"):
        degrade(np.zeros((10, 12, 3), np.uint8), 4)
    with pytest.raises(ValueError, match="unknown degradation"):
        degrade(np.zeros((8, 8, 3), np.uint8), 4, "nearest")
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    expect = np.asarray(Image.fromarray(hr).resize((12, 8), Image.BICUBIC))
    assert np.array_equal(degrade(hr, 4, "pil"), expect)
    assert np.array_equal(pil_bicubic(hr, (8, 12)), expect)


@pytest.mark.parametrize("name", ["Set5", "Set14"])
def test_reproduces_edsr_style_lr_files(data_root, name):
    """Acceptance: our imresize makes Set5/Set14 LR_bicubic/X4 from HR, values within 1 level,
    at least 99.9 % identical."""
    total = same = 0
    for item in load_eval_set(name, data_root, 4, lr_source="dataset"):
        diff = np.abs(degrade(item.hr, 4).astype(int) - item.lr.astype(int))
        assert diff.max() <= 1, item.name
        total += diff.size
        same += int((diff == 0).sum())
    assert same / total >= 0.999


def test_upscale_direction_shape(data_root):
    lr = read_image(data_root / "Set5" / "LR_bicubic" / "X4" / "woman.png")
    up = imresize(lr, 4, output_shape=(lr.shape[0] * 4, lr.shape[1] * 4))
    assert up.shape == (344, 228, 3) and up.dtype == np.uint8
