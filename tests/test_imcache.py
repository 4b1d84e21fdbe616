"""The decoded-image cache of TrainDataset: same crops as decoding, no decode on a second start, a stale
cache rebuilt, never inside the data root, and not part of a run's config."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from srlib import data
from srlib.data import TrainDataset
from srlib.config import make_config
from srlib.config import plain as _plain


def write_set(root, sizes, seed=0):
    folder = root / "Toy" / "HR"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def crops(ds, n=6):
    return [ds[(0, i)] for i in range(n)]


@pytest.mark.filterwarnings("ignore:1 training image")
def test_cached_crops_equal_decoded_ones_and_a_second_start_does_not_decode(tmp_path, monkeypatch):
    root, cache = tmp_path / "data", tmp_path / "cache"
    write_set(root, [(40, 48), (36, 40), (20, 20)])       # the 20x20 image is smaller than the crop
    plain = TrainDataset(["Toy"], root, crop=32, seed=3)
    cached = TrainDataset(["Toy"], root, crop=32, seed=3, cache_dir=cache)
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".u8"]
    assert cached.hashes == plain.hashes and len(cached.images) == len(plain.images) == 2
    assert isinstance(cached.images[0].base, np.memmap) or isinstance(cached.images[0], np.memmap)
    for (lr_a, hr_a), (lr_b, hr_b) in zip(crops(plain), crops(cached)):
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although the cache is current")
    monkeypatch.setattr(data, "read_checked", no_decode)
    again = TrainDataset(["Toy"], root, crop=32, seed=3, cache_dir=cache)
    for (lr_a, hr_a), (lr_b, hr_b) in zip(crops(plain), crops(again)):
        assert torch.equal(lr_a, lr_b) and torch.equal(hr_a, hr_b)


def test_a_stale_cache_is_rebuilt(tmp_path):
    root, cache = tmp_path / "data", tmp_path / "cache"
    folder = write_set(root, [(40, 40), (40, 40)])
    first = TrainDataset(["Toy"], root, crop=32, cache_dir=cache)
    new = np.full((44, 40, 3), 7, np.uint8)          # another size and content, as a replaced file
    Image.fromarray(new).save(folder / "im1.png")
    os.utime(folder / "im1.png", ns=(1, 1))          # even an old modification time: the size differs
    second = TrainDataset(["Toy"], root, crop=32, cache_dir=cache)
    assert second.hashes != first.hashes
    np.testing.assert_array_equal(second.images[1], new)
    assert len(list(cache.glob("*.u8"))) == 1        # rebuilt in place, not beside the stale one


def test_the_cache_never_goes_into_the_data_root(tmp_path):
    root = tmp_path / "data"
    write_set(root, [(40, 40)])
    with pytest.raises(ValueError, match="data root"):
        TrainDataset(["Toy"], root, crop=32, cache_dir=root / "cache")


def test_cache_dir_is_where_not_what():
    """Committed runs' configs (and their warm-ups' hashed folders) stay the same with a cache folder."""
    assert _plain(make_config("attention", "quick", cache_dir="cache/x")) == _plain(make_config("attention", "quick"))
