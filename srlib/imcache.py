"""Decoded training images cached on disk: one uint8 file, memory-mapped, and a JSON index beside it.

Why: a start or a resume decodes every training image again (DIV2K's 800 PNGs take minutes), and each
training process holds its own decoded copy in RAM. The cache is decoded once; every process that maps
it reads the same pages of the OS page cache, lazily, so several runs on one machine (seeds in parallel,
DataLoader workers) do not hold the images twice.

Layout under the cache folder: ``<name>.u8`` (the images' HWC uint8 bytes back to back) and
``<name>.json`` (per image: offset, shape, pixel sha256; and the key). ``<name>`` comes from the list of
source files, the key from each file's path, size, modification time and expected pixel hash: a changed,
added or removed file changes the key, and the stale cache is rebuilt. Both files are written atomically,
the index last, so an index always describes a complete data file.
"""
import hashlib
import json
from pathlib import Path

import numpy as np

from .io import atomic_write

FORMAT = 1


def cache_key(files, shas):
    """sha256 over each file's resolved path, size, mtime (ns) and expected pixel sha256 (or '')."""
    h = hashlib.sha256(f"imcache {FORMAT}\n".encode())
    for f, sha in zip(files, shas):
        st = Path(f).stat()
        h.update(f"{Path(f).resolve()}|{st.st_size}|{st.st_mtime_ns}|{sha or ''}\n".encode())
    return h.hexdigest()


def cache_name(files):
    """The cache's file stem: which files it holds (not their content, which the key covers)."""
    joined = "\n".join(str(Path(f).resolve()) for f in files)
    return "images-" + hashlib.sha256(joined.encode()).hexdigest()[:16]


def _load(index_path, data_path, key):
    """(images, hashes) from a current cache, else None."""
    try:
        index = json.loads(index_path.read_text())
    except (OSError, ValueError):
        return None
    if index.get("format") != FORMAT or index.get("key") != key or not data_path.is_file() \
            or data_path.stat().st_size != index.get("bytes"):
        return None
    if index["bytes"] == 0:
        return [], []
    mm = np.memmap(data_path, dtype=np.uint8, mode="r")
    images = [mm[e["offset"]: e["offset"] + int(np.prod(e["shape"]))].reshape(e["shape"]) for e in index["images"]]
    return images, [e["sha256"] for e in index["images"]]


def cached_images(files, shas, cache_dir, decode, pixel_hash):
    """Decoded images of ``files`` as read-only arrays memory-mapped from ``cache_dir``, and their pixel
    hashes; built with ``decode(file, sha) -> (H, W, 3) uint8`` when the cache is missing or stale.

    ``shas`` are the expected pixel hashes (None where unknown); ``pixel_hash(img)`` hashes a decoded image.
    """
    files, shas = [Path(f) for f in files], list(shas)
    cache_dir = Path(cache_dir)
    name, key = cache_name(files), cache_key(files, shas)
    index_path, data_path = cache_dir / f"{name}.json", cache_dir / f"{name}.u8"
    hit = _load(index_path, data_path, key)
    if hit is not None:
        return hit
    entries, offset = [], 0

    def write_data(fobj):
        nonlocal offset
        for f, sha in zip(files, shas):
            img = np.ascontiguousarray(decode(f, sha), dtype=np.uint8)
            entries.append({"file": f.name, "offset": offset, "shape": list(img.shape),
                            "sha256": sha or pixel_hash(img)})
            fobj.write(img.tobytes())
            offset += img.nbytes

    atomic_write(data_path, write_data)
    index = {"format": FORMAT, "key": key, "bytes": offset, "images": entries}
    atomic_write(index_path, lambda f: f.write(json.dumps(index).encode()))
    hit = _load(index_path, data_path, key)
    if hit is None:         # another process rebuilt it from changed files in between
        raise RuntimeError(f"{index_path}: the image cache changed while it was written; start again")
    return hit
