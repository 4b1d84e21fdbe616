"""The side-by-side viewer (srlib.viewer): page structure, determinism, the size cap, and the page in a real
headless Chromium driven over the DevTools protocol (no console error; switching image and method changes
the focus view)."""
import base64
import io
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from headless import browser   # scripts/headless.py (tests/conftest.py puts scripts/ on the path)
from srlib.archs import build_generator
from srlib.infer import GENERATOR_FILE, save_generator
from srlib.viewer import PageTooLarge, write_compare_html

REPO = Path(__file__).resolve().parent.parent

LABELS = ["Bicubic", "PSNR baseline (ours)", "SRGAN (ours)", "Attention (ours)", "HR"]


def page_data(path):
    """The JSON the page embeds (methods, images with their data URIs and scores)."""
    text = Path(path).read_text()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


@pytest.fixture(scope="module")
def page(data_root, tmp_path_factory):
    """The page from the committed generators, on the first two Set5 images."""
    path = tmp_path_factory.mktemp("viewer") / "compare.html"
    info = write_compare_html(REPO / "results" / "train", path, datasets=["Set5"], images_per_set=2,
                              root=data_root)
    return path, info


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """A runs folder with tiny randomly initialised psnr / srgan / attention generators."""
    runs = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    for model, arch in [("psnr", "attention"), ("srgan", "srgan"), ("attention", "attention")]:
        net = build_generator(arch, n_blocks=1, n_feats=16)
        save_generator(runs / model / GENERATOR_FILE, net.state_dict(), {**net.config, "scale": 4})
    return runs


def test_page_structure(page):
    path, info = page
    text = path.read_text()
    assert info["bytes"] == path.stat().st_size < 2_000_000
    assert info["images"] == ["Set5/baby", "Set5/bird"]
    assert info["methods"] == LABELS
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I)   # no external URL at all
    assert "image-rendering: pixelated" in text and "not whole images" in text and "2,000,000 bytes" in text
    data = page_data(path)
    assert [m["label"] for m in data["methods"]] == LABELS
    for img in data["images"]:
        y, x, size = img["box"]
        assert size == 128 and 0 <= y <= img["height"] - size and 0 <= x <= img["width"] - size
        assert set(img["crops"]) == {m["key"] for m in data["methods"]}
        crops = {k: Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))) for k, u in img["crops"].items()}
        assert {c.size for c in crops.values()} == {(128, 128)}
        assert len(set(img["crops"].values())) == len(crops)         # every method shows something different
        psnr, ssim = img["scores"]["attention"]
        assert 20 < psnr < 45 and 0.5 < ssim <= 1
        assert "hr" not in img["scores"]


def test_deterministic_and_size_cap(tiny_runs, data_root, tmp_path):
    kwargs = dict(datasets=["Set5"], images_per_set=1, crop=64, root=data_root)
    a = write_compare_html(tiny_runs, tmp_path / "a.html", **kwargs)
    write_compare_html(tiny_runs, tmp_path / "b.html", **kwargs)
    assert (tmp_path / "a.html").read_bytes() == (tmp_path / "b.html").read_bytes()
    assert a["images"] == ["Set5/baby"] and len(a["methods"]) == 5
    with pytest.raises(PageTooLarge, match="over its cap of 20,000"):
        write_compare_html(tiny_runs, tmp_path / "c.html", max_bytes=20_000, **kwargs)
    assert not (tmp_path / "c.html").exists()


def test_missing_runs_leave_bicubic_and_hr(tmp_path, data_root):
    info = write_compare_html(tmp_path, tmp_path / "p.html", datasets=["Set5"], images_per_set=1, crop=32,
                              root=data_root)
    assert info["methods"] == ["Bicubic", "HR"]


def test_page_in_headless_chromium(page, chromium):
    path, _ = page
    data = page_data(path)
    crops = [img["crops"] for img in data["images"]]
    with browser() as b:
        b.call("Page.navigate", url=path.as_uri())
        b.wait_event("Page.loadEventFired")
        focus = "document.getElementById('focus').src"
        caption = "document.getElementById('caption').textContent"

        assert b.js("document.querySelectorAll('#image option').length") == 2
        assert b.js("document.querySelectorAll('#grid img').length") == 5
        assert b.js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert b.js("getComputedStyle(document.getElementById('focus')).imageRendering") == "pixelated"
        assert b.js(focus) == crops[0]["bicubic"]
        assert b.js(caption).startswith("Set5/baby, Bicubic: PSNR ")

        # another image, as a user picks it: the select's value, then a 'change' event
        b.js("const s = document.getElementById('image'); s.value = '1';"
             "s.dispatchEvent(new Event('change', {bubbles: true}))")
        assert b.js(focus) == crops[1]["bicubic"]
        assert b.js(caption).startswith("Set5/bird, Bicubic: PSNR ")
        assert b.js("document.querySelector('#grid img').src") == crops[1]["bicubic"]

        # another method: click its tab, then a grid tile
        b.js("document.querySelector('#tabs button[data-method=\"srgan\"]').click()")
        assert b.js(focus) == crops[1]["srgan"]
        assert b.js(caption).startswith("Set5/bird, SRGAN (ours): PSNR ")
        assert b.js("document.querySelector('#tabs button.active').textContent") == "SRGAN (ours)"
        b.js("document.querySelector('#grid figure[data-method=\"hr\"]').click()")
        assert b.js(focus) == crops[1]["hr"]
        assert b.js(caption).startswith("Set5/bird, HR: reference")
        assert b.problems() == []
