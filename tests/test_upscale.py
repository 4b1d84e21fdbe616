import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from srlib import io as srio
from srlib.archs import AttentionGenerator, SRGANGenerator
from srlib.imresize import imresize
from srlib.infer import FORMAT, CheckpointError, save_checkpoint, upscale_array, upscale_tensor
from srlib.io import Decoded, read_image_full
from srlib.cli import upscale_main as main
from srlib.upscale import expand_inputs, load_upscaler, upscale_file, upscale_files, upscale_image

LUMA = np.array([0.299, 0.587, 0.114])


def rand_img(shape, seed=0, dtype=np.uint8, high=256):
    return np.random.default_rng(seed).integers(0, high, shape, dtype=dtype)


def tiny_state(model, **generator):
    return {"format": FORMAT, "generator": {**model.config, "scale": 4, **generator},
            "G": model.state_dict(), "meta": {}}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "srgan.pt"
    save_checkpoint(path, tiny_state(SRGANGenerator(n_blocks=1, n_feats=16)))
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    m, scale = load_upscaler(ckpt, device="cpu")
    assert scale == 4
    return m


def run_folder(files, tmp_path, ckpt, **kw):
    return upscale_files(files, tmp_path / "out", ckpt, device="cpu", progress=False, **kw)


# ------------------------------------------------------------------------------------------ formats


def test_every_format_gives_a_4x_png(tmp_path, ckpt):
    src = tmp_path / "in"
    src.mkdir()
    for ext in ("png", "jpg", "bmp", "tif", "webp"):
        Image.fromarray(rand_img((9, 13, 3))).save(src / f"im_{ext}.{ext}")
    written, errors = run_folder([src], tmp_path, ckpt)
    assert errors == [] and len(written) == 5
    for out in written:
        assert out.suffix == ".png" and out.stem.endswith("_x4")
        with Image.open(out) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (52, 36)


def test_grayscale_output_is_luma_of_the_replicated_run(model):
    g = rand_img((8, 10))
    img = upscale_image(model, Decoded(np.repeat(g[..., None], 3, 2), True, None, 8), 4, tile=0)
    sr = upscale_array(model, np.repeat(g[..., None], 3, 2), 4)
    assert img.mode == "L" and img.size == (40, 32)
    want = np.clip(np.floor(sr.astype(np.float64) @ LUMA * 255 + 0.5), 0, 255)
    assert (np.asarray(img) == want).all()


def test_rgba_and_la_keep_an_upscaled_alpha(tmp_path, model):
    rgba = rand_img((8, 10, 4))
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    out = upscale_file(model, tmp_path / "a.png", tmp_path / "a_x4.png", 4)
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (40, 32)
        assert (np.asarray(im)[..., 3] == imresize(rgba[..., 3], 4, output_shape=(32, 40))).all()

    la = np.stack([rand_img((8, 10), 1), np.full((8, 10), 200, np.uint8)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    with Image.open(upscale_file(model, tmp_path / "la.png", tmp_path / "la_x4.png", 4)) as im:
        assert im.mode == "LA" and im.size == (40, 32) and (np.asarray(im)[..., 1] == 200).all()


def test_palette_is_rgb_or_rgba_with_transparency(tmp_path, model):
    pal = Image.fromarray(rand_img((8, 10, 3))).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    pal.save(tmp_path / "pt.png", transparency=0)
    with Image.open(upscale_file(model, tmp_path / "p.png", tmp_path / "p_x4.png", 4)) as im:
        assert im.mode == "RGB" and im.size == (40, 32)
    with Image.open(upscale_file(model, tmp_path / "pt.png", tmp_path / "pt_x4.png", 4)) as im:
        alpha = np.asarray(im)[..., 3]
        assert im.mode == "RGBA" and alpha.min() < 255 and alpha.max() == 255


def test_16bit_gray_is_written_as_16bit_png(tmp_path, model):
    g16 = rand_img((8, 10), dtype=np.uint16, high=65536)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = upscale_file(model, tmp_path / "g16.png", tmp_path / "g16_x4.png", 4)
    assert out.read_bytes()[24] == 16                     # IHDR bit depth
    with Image.open(out) as im:
        assert im.mode == "I;16" and im.size == (40, 32)
        arr = np.asarray(im)
    rgb8 = read_image_full(tmp_path / "g16.png").rgb      # what the model sees: 8-bit
    want = np.floor(upscale_array(model, rgb8, 4).astype(np.float64) @ LUMA * 65535 + 0.5)
    assert arr.max() > 255 and (arr == want).all()


def test_exif_orientation_is_applied(tmp_path, model):
    exif = Image.Exif()
    exif[0x0112] = 6                                      # rotate 90 degrees clockwise to display
    Image.fromarray(rand_img((8, 12, 3))).save(tmp_path / "phone.jpg", exif=exif)
    with Image.open(upscale_file(model, tmp_path / "phone.jpg", tmp_path / "phone_x4.png", 4)) as im:
        assert im.size == (32, 48)                        # stored 12x8 (W x H), shown 8x12


def test_tiled_and_untiled_agree(model):
    rgb = rand_img((40, 48, 3))
    dec = Decoded(rgb, False, None, 8)
    whole = np.asarray(upscale_image(model, dec, 4, tile=0), np.int16)
    tiled = np.asarray(upscale_image(model, dec, 4, tile=32), np.int16)   # 2x2 tiles
    assert whole.shape == (160, 192, 3) and np.abs(whole - tiled).max() <= 1


# -------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_reported_and_the_rest_done(tmp_path, ckpt):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rand_img((9, 13, 3))).save(src / "good.png")
    Image.fromarray(rand_img((9, 13, 3))).save(src / "good2.jpg")
    for name in ("good.png", "good2.jpg"):
        data = (src / name).read_bytes()
        (src / f"trunc_{name}").write_bytes(data[: len(data) // 2])
    (src / "empty.png").write_bytes(b"")                  # zero-size
    (src / "notes.png").write_text("not an image")
    written, errors = run_folder([src, tmp_path / "missing.png"], tmp_path, ckpt)
    assert sorted(p.name for p in written) == ["good2_x4.png", "good_x4.png"]
    assert len(errors) == 5
    for name in ("trunc_good.png", "trunc_good2.jpg", "empty.png", "notes.png", "missing.png"):
        (msg,) = [e for e in errors if name in e]
        assert "\n" not in msg
    assert any("file not found" in e for e in errors)
    assert not (tmp_path / "out" / "empty_x4.png").exists()


def test_permission_denied_is_a_per_file_error(tmp_path, ckpt, monkeypatch):
    locked = tmp_path / "locked.png"
    Image.fromarray(rand_img((9, 13, 3))).save(locked)
    Image.fromarray(rand_img((9, 13, 3))).save(tmp_path / "ok.png")
    locked.chmod(0)
    if os.access(locked, os.R_OK):                        # root ignores the mode: simulate it
        real_open = srio.Image.open

        def fake_open(path, *a, **k):
            if os.fspath(path) == os.fspath(locked):
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real_open(path, *a, **k)
        monkeypatch.setattr(srio.Image, "open", fake_open)
    written, errors = run_folder([locked, tmp_path / "ok.png"], tmp_path, ckpt)
    locked.chmod(0o644)
    assert [p.name for p in written] == ["ok_x4.png"]
    assert errors == [f"{locked}: permission denied"]


def test_inputs_are_never_overwritten(tmp_path, ckpt, model):
    a, b = tmp_path / "a.png", tmp_path / "a_x4.png"
    Image.fromarray(rand_img((9, 13, 3))).save(a)
    Image.fromarray(rand_img((9, 13, 3), 1)).save(b)
    before = a.read_bytes(), b.read_bytes()
    # same folder, empty suffix: a.png -> a.png; and a.png -> a_x4.png, which is also an input
    for suffix in ("", None):
        written, errors = upscale_files([a, b], tmp_path, ckpt, suffix=suffix, progress=False)
        assert any("a.png" in e and "refusing to overwrite" in e for e in errors)
    assert (a.read_bytes(), b.read_bytes()) == before
    with pytest.raises(srio.ImageError, match="refusing"):
        upscale_file(model, a, a, 4)
    # two inputs with one stem: the second does not replace the first one's output
    Image.fromarray(rand_img((9, 13, 3))).save(tmp_path / "a.jpg")
    written, errors = run_folder([a, tmp_path / "a.jpg"], tmp_path, ckpt)
    assert len(written) == 1 and len(errors) == 1 and "a.jpg" in errors[0]


def test_expand_inputs_files_folders_globs(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "empty").mkdir()
    for name in ("d/x.png", "d/y.JPG", "z.png"):
        Image.fromarray(rand_img((4, 4, 3))).save(tmp_path / name)
    (tmp_path / "d" / "readme.txt").write_text("skip me")
    files, errors = expand_inputs([tmp_path / "d", str(tmp_path / "*.png"), tmp_path / "d" / "x.png",
                                   str(tmp_path / "nothing*.png"), tmp_path / "empty"])
    assert [p.name for p in files] == ["x.png", "y.JPG", "z.png"]
    assert len(errors) == 2 and "nothing*.png" in errors[0] and "empty" in errors[1]


# -------------------------------------------------------------------------------------- checkpoints


class Payload:
    """Unpickling this would run os.mkdir: a stand-in for arbitrary code in a pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def bad_checkpoints(tmp_path, ckpt):
    srgan = SRGANGenerator(n_blocks=1, n_feats=16)
    data = ckpt.read_bytes()
    marker = str(tmp_path / "pwned")
    paths = {}

    def put(name, content):
        paths[name] = tmp_path / name
        if isinstance(content, bytes):
            paths[name].write_bytes(content)
        else:
            save_checkpoint(paths[name], content)

    put("truncated.pt", data[: len(data) // 2])
    put("random.pt", np.random.default_rng(0).bytes(4096))
    put("pickle.pt", pickle.dumps({"format": FORMAT, "x": Payload(marker)}, protocol=2))
    buf_path = tmp_path / "torch_obj.pt"
    torch.save({"format": FORMAT, "generator": Payload(marker)}, buf_path)
    paths["torch_obj.pt"] = buf_path
    attention = AttentionGenerator(n_blocks=1, n_feats=16).config
    put("wrong_arch.pt", {**tiny_state(srgan), "generator": {**attention, "scale": 4}})
    put("scale_lie.pt", tiny_state(srgan, scale=2))       # declares x2, weights and kwargs are x4
    put("no_meta.pt", {"format": FORMAT, "G": srgan.state_dict()})
    return paths, marker


def test_bad_checkpoints_are_clean_errors(tmp_path, ckpt):
    paths, marker = bad_checkpoints(tmp_path, ckpt)
    Image.fromarray(rand_img((9, 13, 3))).save(tmp_path / "ok.png")
    for name, path in paths.items():
        with pytest.raises(CheckpointError) as info:
            run_folder([tmp_path / "ok.png"], tmp_path, path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), name
    assert not os.path.exists(marker)                    # the pickled call never ran
    assert not (tmp_path / "out").exists()               # nothing processed
    for kw, match in (({"scale": 2}, "scale x4, not x2"), ({"arch": "attention"}, "'srgan' generator")):
        with pytest.raises(CheckpointError, match=match):
            run_folder([tmp_path / "ok.png"], tmp_path, ckpt, **kw)


def test_cli_exit_codes(tmp_path, ckpt, capsys):
    Image.fromarray(rand_img((9, 13, 3))).save(tmp_path / "ok.png")
    base = [str(tmp_path / "ok.png"), "-o", str(tmp_path / "out"), "--device", "cpu"]
    (tmp_path / "random.pt").write_bytes(b"\x00garbage" * 100)
    assert main(base + ["--checkpoint", str(tmp_path / "random.pt")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path / 'random.pt'}: ") and err.count("\n") == 1
    assert main(base + ["--checkpoint", str(ckpt), "--scale", "2"]) == 2
    assert main(base + ["--checkpoint", str(ckpt), "--device", "nonsense"]) == 2
    assert not (tmp_path / "out").exists()
    assert main(base + ["--checkpoint", str(ckpt), "--suffix", "_big", "--tile", "0"]) == 0
    assert capsys.readouterr().out.strip() == "1 done, 0 failed"
    assert (tmp_path / "out" / "ok_big.png").exists()


def test_cli_subprocess_mixed_folder(tmp_path, ckpt):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(rand_img((9, 13, 3))).save(src / "good.png")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cmd = [sys.executable, "-m", "srlib", "upscale", str(src), "-o", str(tmp_path / "out"),
           "--checkpoint", str(ckpt), "--device", "cpu", "--tile", "8"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1, res.stderr
    assert f"error: {src / 'broken.jpg'}: " in res.stderr
    assert "1 done, 1 failed" in res.stdout
    with Image.open(tmp_path / "out" / "good_x4.png") as im:
        assert im.size == (52, 36)
    res = subprocess.run([sys.executable, "-m", "srlib", "upscale", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and "--checkpoint" in res.stdout and "--tile" in res.stdout


def test_huge_image_is_a_clean_error(tmp_path, ckpt, monkeypatch):
    Image.fromarray(rand_img((9, 13, 3))).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)   # 117 pixels > 2x the limit: PIL's bomb check
    written, errors = run_folder([tmp_path / "big.png"], tmp_path, ckpt)
    assert written == [] and errors[0].startswith(f"{tmp_path / 'big.png'}: image too large")


@pytest.mark.parametrize("generator", [SRGANGenerator, AttentionGenerator])
def test_default_overlap_makes_full_size_tiles_exact(generator):
    """With the default overlap every kept pixel lies beyond the 5-block SRGAN's receptive field; the
    attention generator's tiled upsampling part (overlap 8) lies beyond its +-3 LR px."""
    torch.manual_seed(0)
    model = generator().eval()
    lr = torch.rand(1, 3, 60, 100, generator=torch.Generator().manual_seed(2))
    whole = upscale_tensor(model, lr, 4)
    tiled = upscale_tensor(model, lr, 4, tile=48)
    assert (tiled - whole).abs().max().item() < 1e-4


def test_cli_precision_bf16_is_close_to_fp32(tmp_path, ckpt):
    Image.fromarray(rand_img((20, 24, 3))).save(tmp_path / "im.png")
    outs = {}
    for p in ("fp32", "bf16"):
        base = [str(tmp_path / "im.png"), "-o", str(tmp_path / p), "--device", "cpu", "--checkpoint", str(ckpt)]
        assert main(base + ["--precision", p]) == 0
        outs[p] = np.asarray(Image.open(tmp_path / p / "im_x4.png"), dtype=int)
    diff = np.abs(outs["bf16"] - outs["fp32"])
    assert outs["bf16"].shape == (80, 96, 3) and 0 < diff.max() <= 3 and diff.mean() < 0.5
    with pytest.raises(SystemExit):
        main(base + ["--precision", "fp16"])


def test_attention_tiles_use_whole_image_statistics(monkeypatch):
    """The attention generator's GroupNorm and channel attention see the whole image: its features run
    once on the whole LR image, and only the upsampling part runs per tile."""
    torch.manual_seed(0)
    model = AttentionGenerator(n_blocks=2, n_feats=16).eval()
    assert model.has_global_statistics() and not SRGANGenerator(n_blocks=1, n_feats=16).eval().has_global_statistics()
    lr = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    whole = upscale_tensor(model, lr, 4)
    shapes = []
    real = AttentionGenerator.features
    monkeypatch.setattr(AttentionGenerator, "features", lambda self, x: shapes.append(x.shape) or real(self, x))
    tiled = upscale_tensor(model, lr, 4, tile=32)
    assert shapes == [(1, 3, 70, 90)]
    assert (tiled - whole).abs().max().item() < 1e-4
    # low-memory mode: the whole network per tile (4 x 5 tiles), per-tile statistics, not exact
    shapes.clear()
    low = upscale_tensor(model, lr, 4, tile=32, exact=False)
    assert len(shapes) == 20 and max(s[2] for s in shapes) <= 32 and max(s[3] for s in shapes) <= 32
    assert (low - whole).abs().max().item() > 1 / 255


def test_cli_low_memory(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "att.pt"
    save_checkpoint(path, tiny_state(AttentionGenerator(n_blocks=1, n_feats=16)))
    Image.fromarray(rand_img((40, 48, 3))).save(tmp_path / "im.png")
    outs = {}
    for name, extra in (("exact", []), ("whole", ["--tile", "0"]), ("low", ["--low-memory"])):
        assert main([str(tmp_path / "im.png"), "-o", str(tmp_path / name), "--checkpoint", str(path),
                     "--device", "cpu", "--tile", "16", *extra]) == 0
        outs[name] = np.asarray(Image.open(tmp_path / name / "im_x4.png"), dtype=int)
    assert np.abs(outs["exact"] - outs["whole"]).max() <= 1
    assert np.abs(outs["low"] - outs["whole"]).max() > 1
