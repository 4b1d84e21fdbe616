import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from srlib import data
from srlib.data import TrainDataset, data_root, hr_files, load_eval_set, resolve_datasets
from srlib.imresize import degrade
from srlib.io import ImageError, read_image, read_image_full


def write_set(root, name, sizes, seed=0):
    folder = root / name / "HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("SRLIB_DATA", raising=False)
    from srlib.data import project_path, repo_root
    top = repo_root()
    assert top is not None and (top / "srlib" / "data.py").is_file()     # tests run in a checkout
    assert data_root() == top / "data"            # the repository's data/, whatever the working directory
    monkeypatch.chdir(tmp_path)
    assert data_root() == top / "data" and project_path("results/train") == top / "results" / "train"
    assert project_path(tmp_path) == tmp_path
    monkeypatch.setenv("SRLIB_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert str(data_root("elsewhere")) == "elsewhere"


def test_conversions_to_rgb_uint8(tmp_path):
    rng = np.random.default_rng(0)
    g = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "gray.png")
    dec = read_image_full(tmp_path / "gray.png")
    assert dec.gray and dec.rgb.shape == (6, 5, 3) and (dec.rgb == g[..., None]).all()

    rgba = rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    dec = read_image_full(tmp_path / "rgba.png")
    assert not dec.gray and (dec.rgb == rgba[..., :3]).all() and (dec.alpha == rgba[..., 3]).all()

    g16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    dec = read_image_full(tmp_path / "g16.png")
    assert dec.gray and dec.bits == 16 and (dec.rgb[..., 0] == np.round(g16 / 257)).all()

    pal = Image.fromarray(rgba[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=8)
    pal.save(tmp_path / "pal.png")
    assert (read_image(tmp_path / "pal.png") == np.asarray(pal.convert("RGB"))).all()

    Image.fromarray(rgba[..., :3]).save(tmp_path / "x.bmp")
    assert (read_image(tmp_path / "x.bmp") == rgba[..., :3]).all()


def test_bad_files_give_one_line_errors_naming_the_path(tmp_path):
    folder = write_set(tmp_path, "Bad", [(16, 16)])
    good = folder / "im0.png"
    (folder / "trunc.png").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    (folder / "notes.png").write_text("not an image")
    for f in ("trunc.png", "notes.png"):
        with pytest.raises(ImageError) as e:
            read_image(folder / f)
        assert str(folder / f) in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "Empty" / "HR").mkdir(parents=True)
    with pytest.raises(ImageError, match="no image files") as e:
        hr_files("Empty", tmp_path)
    assert str(tmp_path / "Empty" / "HR") in str(e.value)


@pytest.mark.parametrize("case", ["truncated", "not-image", "empty"])
def test_cli_reports_bad_dataset(tmp_path, case):
    folder = write_set(tmp_path, "Bad", [(16, 16)])
    if case == "truncated":
        bad = folder / "im0.png"
        bad.write_bytes(bad.read_bytes()[:60])
    elif case == "not-image":
        bad = folder / "zz.jpg"
        bad.write_text("hello")
    else:
        (folder / "im0.png").unlink()
        bad = folder
    res = subprocess.run([sys.executable, "-m", "srlib", "evaluate", "--datasets", "Bad", "--data-root",
                          str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]


def test_missing_datasets_fall_back_to_demo(tmp_path):
    with pytest.warns(UserWarning, match="NOT comparable"):
        assert resolve_datasets(["Set5"], tmp_path) == ["demo"]
    items = load_eval_set("demo", scale=4)
    assert len(items) == len(data.DEMO_FILES)
    assert any(it.gray for it in items)     # camera.png is grayscale
    for it in items:
        assert it.hr.shape[0] % 4 == 0 and it.lr.shape[0] * 4 == it.hr.shape[0]


def test_plain_folder_and_mod_crop(tmp_path):
    write_set(tmp_path, "Mine", [(30, 41)])
    (it,) = load_eval_set(str(tmp_path / "Mine" / "HR"), scale=4)
    assert it.hr.shape == (28, 40, 3) and it.lr.shape == (7, 10, 3)
    assert np.array_equal(it.lr, degrade(it.hr, 4))


def test_eval_set_cache_reuses_copies_and_sees_changed_files(tmp_path, monkeypatch):
    folder = write_set(tmp_path, "Mine", [(32, 40), (24, 24)])
    reads = []
    real = data.read_checked
    monkeypatch.setattr(data, "read_checked", lambda f, sha=None: reads.append(f) or real(f, sha))
    first = load_eval_set(str(folder), scale=4)
    assert len(reads) == 2
    first[0].hr[:] = 0                  # a caller's edit must not reach the cache
    first[0].lr[:] = 0
    again = load_eval_set(str(folder), scale=4)
    assert len(reads) == 2              # served from memory
    fresh = data._load_eval_set(data.entries(str(folder)), 4, "generate", "matlab")     # reads 2 more
    for a, b in zip(again, fresh):
        assert a.name == b.name and np.array_equal(a.hr, b.hr) and np.array_equal(a.lr, b.lr)
    # a rewritten file (new pixels, new size) is read again
    Image.fromarray(np.full((36, 44, 3), 7, np.uint8)).save(folder / "im1.png")
    changed = load_eval_set(str(folder), scale=4)
    assert len(reads) == 6 and changed[1].hr.shape == (36, 44, 3) and (changed[1].hr == 7).all()
    # the cache holds at most EVAL_CACHE_BYTES, oldest sets dropped first; a set larger than that is not kept
    monkeypatch.setattr(data, "_EVAL_CACHE", {})
    monkeypatch.setattr(data, "EVAL_CACHE_BYTES", data._nbytes(changed) + 100)
    load_eval_set(str(folder), scale=4)
    other = write_set(tmp_path, "Other", [(16, 16)])
    load_eval_set(str(other), scale=4)
    assert [len(v) for v in data._EVAL_CACHE.values()] == [1]       # the 2-image set was dropped
    monkeypatch.setattr(data, "EVAL_CACHE_BYTES", data._nbytes(load_eval_set(str(other), scale=4)))
    assert len(load_eval_set(str(folder), scale=4)) == 2 and [len(v) for v in data._EVAL_CACHE.values()] == [1]


def test_eval_set_cache_sees_a_copy_that_keeps_size_and_mtime(tmp_path):
    """cp -p / rsync -t: same size (BMP), same mtime, other pixels; the cache must not serve the old ones."""
    folder = tmp_path / "Bmp" / "HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / "a.bmp")
    st = (folder / "a.bmp").stat()
    (first,) = load_eval_set(str(folder), scale=4)
    new = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(new).save(tmp_path / "b.bmp")
    shutil.copyfile(tmp_path / "b.bmp", folder / "a.bmp")
    os.utime(folder / "a.bmp", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (folder / "a.bmp").stat().st_size == st.st_size and (folder / "a.bmp").stat().st_mtime_ns == st.st_mtime_ns
    (again,) = load_eval_set(str(folder), scale=4)
    assert np.array_equal(again.hr, new) and not np.array_equal(first.hr, new)


def test_eval_set_reads_dataset_lr(data_root):
    items = load_eval_set("Set14", data_root, 4, lr_source="dataset")
    comic = next(it for it in items if it.name == "comic")
    assert comic.hr.shape == (360, 248, 3) and comic.lr.shape == (90, 62, 3)
    assert [it.name for it in items if it.gray] == ["bridge"]


def test_train_dataset_crops_deterministic_and_skips_small(tmp_path):
    write_set(tmp_path, "Train", [(64, 80), (20, 20), (48, 48)])
    with pytest.warns(UserWarning, match="smaller than crop 32"):
        ds = TrainDataset(["Train"], tmp_path, crop=32, scale=4, repeat=3, seed=5)
    assert len(ds) == 6
    lr, hr = ds[4]
    assert lr.shape == (3, 8, 8) and hr.shape == (3, 32, 32) and lr.dtype == hr.dtype
    assert 0 <= float(hr.min()) and float(hr.max()) <= 1
    hr8 = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    assert np.allclose(lr.permute(1, 2, 0).numpy(), degrade(hr8, 4) / 255.0)
    again = TrainDataset(["Train"], tmp_path, crop=32, scale=4, repeat=3, seed=5)
    assert all((again[i][1] == ds[i][1]).all() for i in range(len(ds)))
    ds.set_epoch(1)
    assert not all((again[i][1] == ds[i][1]).all() for i in range(len(ds)))
    with pytest.raises(ValueError, match="multiple of scale"):
        TrainDataset(["Train"], tmp_path, crop=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ImageError, match="no training image"):
            TrainDataset(["Train"], tmp_path, crop=128)


def test_every_array_handed_to_torch_is_writable(tmp_path, monkeypatch):
    """torch.from_numpy warns ("The given NumPy array is not writable") on read-only arrays, which PIL
    (np.asarray of an image) and the memory-mapped image cache hand out: decoded files, PIL-degraded LR and
    crops as wide as a cached image must reach :func:`srlib.data.to_tensor` writable. (Checked on the arrays:
    torch warns once per process, so a warning filter would miss it after any earlier test.)"""
    root = tmp_path / "data"
    folder = write_set(root, "Train", [(40, 32)])
    dec = read_image_full(folder / "im0.png")
    assert dec.rgb.flags.writeable and read_image(folder / "im0.png").flags.writeable
    assert degrade(dec.rgb[:32], 4, "pil").flags.writeable and degrade(dec.rgb[:32], 4, "matlab").flags.writeable
    seen, to_tensor = [], data.to_tensor
    monkeypatch.setattr(data, "to_tensor", lambda img: seen.append(img.flags.writeable) or to_tensor(img))
    for cache in (None, tmp_path / "cache"):      # the crop spans the whole width: a view without the copy
        ds = TrainDataset(["Train"], root, crop=32, scale=4, degradation="pil", augment=False, cache_dir=cache)
        for i in range(4):
            ds[(0, i)]
    assert len(seen) == 16 and all(seen)


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    import os
    from srlib.io import atomic_write
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        atomic_write(target, lambda f: (f.write(b"half"), (_ for _ in ()).throw(RuntimeError("crash"))))
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
    atomic_write(target, lambda f: f.write(b"new"))
    umask = os.umask(0)
    os.umask(umask)
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_manifest_names_exact_images_and_rejects_other_pixels(tmp_path, monkeypatch):
    from srlib import data as D
    write_set(tmp_path, "A", [(40, 40), (44, 48)])
    write_set(tmp_path, "B", [(36, 40)])
    files = D.hr_files("A", tmp_path) + D.hr_files("B", tmp_path)
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    rows = [("A", files[0].stem, D.pixel_hash(D.read_image_full(files[0]).rgb)),
            ("B", files[2].stem, D.pixel_hash(D.read_image_full(files[2]).rgb))]
    (mdir / "mine.tsv").write_text("# test\ndataset\timage\tpixel_sha256\n"
                                   + "".join("\t".join(r) + "\n" for r in rows))
    monkeypatch.setattr(D, "MANIFEST_DIR", mdir)
    assert D.is_manifest("mine") and not D.is_manifest("A") and D.manifest_datasets("mine") == ["A", "B"]
    assert D.hr_files("mine", tmp_path) == [files[0], files[2]]          # not A's second image
    ds = TrainDataset(["mine"], tmp_path, crop=32, scale=4)
    assert len(ds.images) == 2
    # the same pixels in another format are the same entry (T91's BMP originals vs PNG copies)
    img = D.read_image_full(files[0]).rgb
    files[0].unlink()
    Image.fromarray(img).save(files[0].with_suffix(".bmp"))
    assert len(TrainDataset(["mine"], tmp_path, crop=32, scale=4).images) == 2
    # one changed pixel: a clear error naming the file
    img = img.copy()
    img[0, 0, 0] ^= 1
    Image.fromarray(img).save(files[0].with_suffix(".bmp"))
    with pytest.raises(ImageError, match=r"\.bmp: pixels differ from the manifest"):
        TrainDataset(["mine"], tmp_path, crop=32, scale=4)
    files[2].unlink()
    with pytest.raises(D.DatasetNotFound, match="manifest 'mine': 1 image"):
        D.hr_files("mine", tmp_path)


def test_shipped_manifests_hold_the_quick_split(data_root):
    """The quick profile's training set and held-out split: disjoint, no benchmark image, and the shared
    data matches them pixel for pixel."""
    from srlib import data as D
    train, hold = D.read_manifest("quick-train"), D.read_manifest("quick-holdout")
    assert len(train) == 281 and len(hold) == 10 and {r[0] for r in hold} == {"BSD200"}
    assert not {r[:2] for r in train} & {r[:2] for r in hold}
    assert {r[0] for r in train} == {"T91", "BSD200"}
    items = load_eval_set("quick-holdout", data_root, 4)
    assert len(items) == 10


def test_step_sampler_is_a_function_of_the_step():
    from srlib.data import StepSampler
    whole = list(StepSampler(10, 3, 0, 7, seed=1))
    assert [len(b) for b in whole] == [3] * 7 and StepSampler(10, 3, 0, 7).per_epoch == 3
    assert list(StepSampler(10, 3, 4, 7, seed=1)) == whole[4:]          # a resumed or later phase
    first_epoch = [i for b in whole[:3] for _, i in b]
    assert len(set(first_epoch)) == 9 and {e for b in whole[:3] for e, _ in b} == {0}
    assert {e for e, _ in whole[3]} == {1} and whole[3] != whole[0]
    with pytest.raises(ValueError, match="no batch"):
        StepSampler(2, 3, 0, 1)


def test_step_sampler_shares_each_global_batch_among_processes():
    whole = list(data.StepSampler(24, 8, 3, 7, seed=1))
    parts = [list(data.StepSampler(24, 8, 3, 7, seed=1, rank=r, world=4)) for r in range(4)]
    for step, batch in enumerate(whole):
        shares = [p[step] for p in parts]
        assert all(len(s) == 2 for s in shares) and sorted(sum(shares, [])) == sorted(batch)
    with pytest.raises(ValueError, match="does not divide among 3 processes"):
        data.StepSampler(24, 8, 0, 1, world=3)


def test_seed_and_promote(tmp_path):
    """run_all's staging: start() copies the results folder; promote() moves back only what the run changed or
    made (files replaced by renames, folders merged), so outputs of skipped notebooks stay and results
    changed meanwhile are not reverted; a promote stopped midway is finished by calling it again."""
    import os

    from srlib.staging import PROMOTING, promote, start
    results, stage = tmp_path / "results", tmp_path / ".staging" / "quick"
    for rel, text in {"table1.csv": "old", "notebooks/01_data.ipynb": "kept", "notebooks/03_benchmark.ipynb": "old",
                      "figures/data_samples.png": "kept", "train/psnr/meta.json": "kept"}.items():
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_text(text)
    start(results, stage)
    assert (stage / "notebooks" / "01_data.ipynb").read_text() == "kept"
    (results / "train" / "psnr" / "meta.json").write_text("changed meanwhile")   # e.g. another profile's run
    for rel in ("table1.csv", "notebooks/03_benchmark.ipynb", "figures/new.png", "perceptual.md"):
        (stage / rel).parent.mkdir(parents=True, exist_ok=True)
        (stage / rel).write_text("new")
        os.utime(stage / rel, ns=(1, 1))               # a different time even on a coarse clock
    promote(stage, results)
    got = {str(p.relative_to(results)): p.read_text() for p in results.rglob("*") if p.is_file()}
    assert got == {"table1.csv": "new", "notebooks/01_data.ipynb": "kept", "notebooks/03_benchmark.ipynb": "new",
                   "figures/data_samples.png": "kept", "figures/new.png": "new", "perceptual.md": "new",
                   "train/psnr/meta.json": "changed meanwhile"}
    assert not stage.exists() and not any(p.name.startswith(".replaced") for p in results.iterdir())
    # stopped midway: the marker is there and some files are still staged; promote again finishes the move
    start(results, stage)
    (stage / "late.csv").write_text("late")
    (stage / PROMOTING).touch()
    promote(stage, results)
    assert (results / "late.csv").read_text() == "late" and not stage.exists()
