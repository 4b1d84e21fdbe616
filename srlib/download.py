"""Download public SR datasets (DIV2K, Set5, Set14, BSD100, Urban100, T91, BSD200) into a data root.

Layout produced: ``<root>/<Name>/HR/*.png`` and, where the archive has them,
``<root>/<Name>/LR_bicubic/X4/*.png`` (each LR file named like its HR image)::

    from srlib.download import download
    download("DIV2K", "data")   # -> data/DIV2K/HR/0001.png ... (800 train images, 3.5 GB)
    download("Set5", "data")    # EDSR benchmark pack -> data/Set5, Set14, BSD100, Urban100

An archive is streamed to ``<root>/.downloads/<file>.part`` (resumed with an HTTP Range request
after an interruption), checked against its pinned sha256, extracted into a temporary folder
inside ``root``, and only then is each dataset folder renamed into place: a half-written dataset
never appears under its final name. Datasets already present are left alone.

Where no checksum of the archive is published (BSD200's BSDS300 archive, T91's files), every image is
checked instead against the sha256 of its decoded pixels recorded in ``srlib/manifests/datasets/<Name>.tsv``
(computed from the copies named there, whose sources are cited below), before the dataset is moved into
place. ``SRLIB_MIRROR=<base URL>`` fetches every archive from ``<base URL>/<archive file>`` and every
single file from ``<base URL>/<Name>/<file>`` instead (a local mirror; the tests' local server).

Network weights (:data:`WEIGHTS`, ``python -m srlib download vgg16 alexnet``): torchvision's public ImageNet
files, from the URLs torchvision itself uses, into torch.hub's ``checkpoints`` folder, where torchvision,
the SRGAN loss (VGG16) and LPIPS (AlexNet) look for them. Each is streamed to ``<file>.part`` (resumed like
an archive), checked against the sha256 prefix in its name (torchvision's convention: the hex digits after
the last '-') and against the full sha256 where one is recorded, and only then renamed into place.
"""
import contextlib
import hashlib
import http.client
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from .lock import lock

CHUNK = 1 << 20  # bytes per read while streaming and hashing


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; the message names the URL or file."""


@dataclass(frozen=True)
class Rule:
    """Map archive members under folder ``src`` to folder ``dst`` under the data root.

    ``strip`` is cut from the end of each file's stem: with ``strip='x4'``, ``babyx4.png`` -> ``baby.png``.
    """
    src: str
    dst: str
    strip: str = ""


@dataclass(frozen=True)
class Source:
    """One archive: its URL, sha256 (None when no published value is known) and extraction rules.

    Archive members that no rule takes are skipped.
    """
    url: str
    sha256: str | None
    rules: tuple[Rule, ...]
    size: int | None = None  # bytes, for information
    pixels: str | None = None  # dataset whose per-image pixel hashes (manifests/datasets/) verify the images
    files: str | None = None   # a file list instead of an archive: ``url`` holds '{}' for each file name,
                               # ``files`` the extension; the names come from the ``pixels`` manifest

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]

    def resolved_url(self, file=None):
        """The URL to fetch (of one file of a file list), through ``$SRLIB_MIRROR`` when set."""
        mirror = os.environ.get("SRLIB_MIRROR")
        if file is not None:
            return f"{mirror.rstrip('/')}/{self.datasets[0]}/{file}" if mirror else self.url.format(file)
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url

    @property
    def datasets(self):
        """Dataset folders this source creates under the root, e.g. ('Set5', 'Set14', ...)."""
        return tuple(dict.fromkeys(rule.dst.split("/")[0] for rule in self.rules))


def _benchmark_rules():
    """EDSR pack: benchmark/<Set>/HR/x.png and benchmark/<Set>/LR_bicubic/X4/xx4.png (X2, X3 skipped)."""
    rules = []
    for folder, name in [("Set5", "Set5"), ("Set14", "Set14"), ("B100", "BSD100"), ("Urban100", "Urban100")]:
        rules.append(Rule(f"benchmark/{folder}/HR/", f"{name}/HR/"))
        rules.append(Rule(f"benchmark/{folder}/LR_bicubic/X4/", f"{name}/LR_bicubic/X4/", strip="x4"))
    return tuple(rules)


SOURCES = {
    # sha256 and size of both DIV2K zips: tensorflow/datasets, tensorflow_datasets/url_checksums/div2k.txt
    # (the official ETH server, listed there under https).
    "DIV2K": Source(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
        "9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
        (Rule("DIV2K_train_HR/", "DIV2K/HR/"),), size=3530603713),
    "DIV2K_valid": Source(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
        "20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
        (Rule("DIV2K_valid_HR/", "DIV2K_valid/HR/"),), size=448993893),
    # The EDSR authors publish no checksum. This sha256 is the one pinned by the public repository
    # YeapJieShen/single-image-super-resolution (tests/reference/fetch_urban100.py and
    # tests/utils/test_imresize.py, "250112000-byte archive"): a third party's record, not the authors'.
    "benchmark": Source(
        "https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        "80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8",
        _benchmark_rules(), size=250112000),
    # BSD200: the 200 train images of BSDS300 (Martin et al., ICCV 2001), from the Berkeley archive, which
    # publishes no checksum: each image is checked by its pixel hash (manifests/datasets/BSD200.tsv, from
    # the byte-identical JPEGs in Zheng222/IDN-Caffe @ 482c6013 train/291/). The archive also holds the
    # 100 test images (BSD100's originals); they are not taken.
    "BSD200": Source(
        "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/bsds/BSDS300-images.tgz", None,
        (Rule("BSDS300/images/train/", "BSD200/HR/"),), size=22_211_847, pixels="BSD200"),
    # T91 (Yang et al., TIP 2010): the 91 original BMP files, one by one from
    # jiny2001/dcscn-super-resolution @ d382bc30 data/yang91/ (the authors ship them inside a RAR of their
    # MATLAB code); checked by pixel hashes (manifests/datasets/T91.tsv).
    "T91": Source(
        "https://raw.githubusercontent.com/jiny2001/dcscn-super-resolution/"
        "d382bc30d41c94ac72f8cb148d61cc4864b3b380/data/yang91/{}", None, (Rule("", "T91/HR/"),),
        size=6_200_000, pixels="T91", files=".bmp"),
}


@dataclass(frozen=True)
class Weights:
    """A network weight file: torchvision's URL and the full sha256 where one is known (None: the prefix in
    the file name is all that is checked)."""
    url: str
    sha256: str | None
    size: int | None = None    # bytes, for information (torchvision's ``_file_size``)

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]

    @property
    def prefix(self):
        """The sha256 prefix in the file name: ``vgg16-397923af.pth`` -> '397923af'."""
        return self.filename.rsplit("-", 1)[1].split(".")[0]

    def resolved_url(self):
        mirror = os.environ.get("SRLIB_MIRROR")
        return f"{mirror.rstrip('/')}/{self.filename}" if mirror else self.url


WEIGHTS = {
    # torchvision.models.VGG16_Weights.IMAGENET1K_V1.url, for the SRGAN loss's perceptual term. The full
    # sha256 is a third party's record (mvy0502/GenCP, tubitak/modal/gencp_modal.py, asserted after
    # downloading this URL), consistent with the prefix in the name.
    "vgg16": Weights("https://download.pytorch.org/models/vgg16-397923af.pth",
                     "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553_433_881),
    # torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url, LPIPS's backbone; no full sha256 is recorded.
    "alexnet": Weights("https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", None, size=244_408_911),
}


def hub_checkpoints():
    """torch.hub's checkpoints folder (``$TORCH_HOME/hub/checkpoints``), where torchvision caches weights."""
    import torch
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_weights(name, folder=None, progress=True):
    """Fetch the weight file ``name`` (a key of :data:`WEIGHTS`) into ``folder`` (default
    :func:`hub_checkpoints`) and return its path; a file already there is left alone. Raises DownloadError
    (a bad download is deleted; an interrupted one is kept as ``.part`` and resumed next time)."""
    w = WEIGHTS[name]
    folder = Path(folder) if folder else hub_checkpoints()
    target = folder / w.filename
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    part = folder / (w.filename + ".part")
    _fetch(w.resolved_url(), part, progress)
    digest = _sha256(part)
    if not digest.startswith(w.prefix) or (w.sha256 and digest != w.sha256):
        part.unlink()
        raise DownloadError(f"checksum mismatch for {w.resolved_url()}: expected sha256 "
                            f"{w.sha256 or w.prefix + '...'}, got {digest}; deleted {part}")
    os.replace(part, target)
    return target


def find_source(name):
    """The Source for a SOURCES key or for a dataset one provides ('Set5' -> the benchmark pack)."""
    if name in SOURCES:
        return SOURCES[name]
    for source in SOURCES.values():
        if name in source.datasets:
            return source
    choices = ", ".join(f"{key} ({', '.join(s.datasets)})" for key, s in SOURCES.items())
    raise ValueError(f"unknown dataset {name!r}; choose from {choices}, or the weights {', '.join(WEIGHTS)}")


def download(name, root, allow_unverified=False, progress=True):
    """Download and lay out dataset ``name`` under ``root``; return its dataset folders.

    ``name`` is a key of SOURCES, a dataset one provides ('Set5', 'BSD100', ...) or a Source.
    Datasets that already exist under ``root`` are left as they are, and nothing is fetched when
    all exist. A source without a pinned sha256 is refused unless ``allow_unverified=True``, which
    downloads it anyway, warns and prints the computed sha256. Raises DownloadError (also for a data root
    that cannot be written), or :class:`srlib.lock.FolderLocked` while another process fills ``root``.
    """
    source = name if isinstance(name, Source) else find_source(name)
    root = Path(root)
    targets = [root / dataset for dataset in source.datasets]
    if all(target.is_dir() for target in targets):
        return targets
    if source.sha256 is None and source.pixels is None and not source.files and not allow_unverified:
        raise DownloadError(f"{source.url} has no pinned sha256; pass allow_unverified=True to use it unchecked")
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(lock(root))    # one process fills a data root at a time (else FolderLocked)
        except OSError as e:
            missing = ", ".join(t.name for t in targets if not t.is_dir())
            raise DownloadError(f"data root {root} cannot be written ({e.strerror}), so {missing} cannot be added "
                                f"there; download into a writable folder (--data-root DIR or SRLIB_DATA=DIR)") from e
        return _download(source, root, progress)


def _download(source, root, progress):
    """:func:`download` once the data root is locked."""
    if source.files:
        return _download_files(source, root, progress)
    cache = root / ".downloads"
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / source.filename
    if archive.exists():  # verified before, but its extraction did not finish
        _verify(archive, source)
    if not archive.exists():
        part = cache / (source.filename + ".part")
        _fetch(source.resolved_url(), part, progress)
        _verify(part, source)
        os.replace(part, archive)
    _extract(archive, source, root, progress)
    archive.unlink()
    return [root / dataset for dataset in source.datasets]


def _fetch(url, part, progress):
    """Stream ``url`` into ``part``, resuming from its size with a Range request (HTTP 200: start over)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60) as response:
            if response.status == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {offset}-"):
                    part.unlink()
                    raise DownloadError(f"{url} answered range {content_range!r} for bytes {offset}-; "
                                        "partial file deleted, run again")
                mode = "ab"
            else:
                offset, mode = 0, "wb"
            total = None if response.length is None else offset + response.length
            with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             desc=part.name[:-len(".part")], disable=not progress) as bar:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # .part already holds the whole file; the checksum decides
            return
        raise DownloadError(f"download of {url} failed: HTTP {e.code} {e.reason}") from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise DownloadError(f"download of {url} failed: {e} (partial file {part} kept to resume)") from e


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pixel_hashes(dataset):
    """{image name without extension: pixel sha256} of a dataset's manifest (manifests/datasets/)."""
    from .data import MANIFEST_DIR
    path = MANIFEST_DIR / "datasets" / f"{dataset}.tsv"
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {r[1]: r[2] for r in rows if r[0] == dataset}


def _verify_pixels(folder, dataset, what):
    """Every image of the dataset's pixel manifest is in ``folder`` with its pixels; else DownloadError."""
    from .data import pixel_hash
    from .io import ImageError, list_images, read_image
    want = pixel_hashes(dataset)
    files = {f.stem: f for f in list_images(folder)} if folder.is_dir() else {}
    missing = sorted(set(want) - set(files))
    if missing:
        raise DownloadError(f"{what}: {len(missing)} of the {len(want)} {dataset} images are missing "
                            f"(e.g. {', '.join(missing[:3])})")
    for stem, sha in want.items():
        try:
            got = pixel_hash(read_image(files[stem]))
        except ImageError as e:
            raise DownloadError(f"{what}: {e}") from None
        if got != sha:
            raise DownloadError(f"{what}: {dataset} image {files[stem].name} has other pixels than the "
                                f"recorded ones (sha256 {got[:12]}..., expected {sha[:12]}...)")
    for stem in set(files) - set(want):
        files[stem].unlink()                 # not part of the dataset


def _download_files(source, root, progress):
    """A file-list source: every file into a temporary folder, pixels checked, then renamed into place."""
    dataset = source.datasets[0]
    cache = root / ".downloads" / dataset
    cache.mkdir(parents=True, exist_ok=True)
    names = sorted(pixel_hashes(source.pixels))
    for name in tqdm(names, desc=dataset, unit="file", disable=not progress):
        file = name + source.files
        if not (cache / file).exists():
            _fetch(source.resolved_url(file), cache / (file + ".part"), False)
            os.replace(cache / (file + ".part"), cache / file)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        hr = tmp / dataset / "HR"
        hr.mkdir(parents=True)
        for name in names:
            shutil.copyfile(cache / (name + source.files), hr / (name + source.files))
        try:
            _verify_pixels(hr, source.pixels, source.resolved_url("..."))
        except DownloadError:
            shutil.rmtree(cache, ignore_errors=True)     # a bad file is fetched again next time
            raise
        os.replace(tmp / dataset, root / dataset)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return [root / dataset]


def _verify(path, source):
    """Check ``path`` against ``source.sha256``; on a mismatch delete it and raise."""
    if source.sha256 is None and source.pixels:
        return                               # its images are checked one by one after extraction
    digest = _sha256(path)
    if source.sha256 is None:
        message = (f"UNVERIFIED archive {source.url}: no pinned sha256 to check it against; "
                   f"computed sha256 {digest}")
        warnings.warn(message, stacklevel=3)
        print(f"WARNING: {message}", file=sys.stderr)
    elif digest != source.sha256:
        path.unlink()
        raise DownloadError(f"checksum mismatch for {source.url}: expected sha256 {source.sha256}, "
                            f"got {digest}; deleted {path}")


def _members(archive):
    """Yield (name, open) for every member of a zip or tar; open is None for non-files."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                yield info.filename, None if info.is_dir() else (lambda info=info: z.open(info))
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for member in t:  # links and devices are never extracted
                yield member.name, (lambda m=member: t.extractfile(m)) if member.isfile() else None
    else:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")


def _target(name, rules, archive):
    """Relative path under the root for member ``name``, or None when no rule takes it."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or name[1:2] == ":" or ".." in parts:
        raise DownloadError(f"unsafe member {name!r} in {archive} (absolute path or '..'); not extracting")
    path = "/".join(p for p in parts if p not in ("", "."))
    for rule in rules:
        if path.startswith(rule.src) and len(path) > len(rule.src):
            rest = PurePosixPath(path[len(rule.src):])
            if rule.strip and rest.stem.endswith(rule.strip) and rest.stem != rule.strip:
                rest = rest.with_name(rest.stem[:-len(rule.strip)] + rest.suffix)
            return PurePosixPath(rule.dst) / rest
    return None


def _write_member(src, dst):
    with open(dst, "wb") as f:
        shutil.copyfileobj(src, f, CHUNK)


def _extract(archive, source, root, progress):
    """Extract what ``source.rules`` take into a temporary folder in ``root``, then rename each
    missing dataset folder into place (after everything extracted)."""
    if progress:
        print(f"extracting {archive.name} ...", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        counts = dict.fromkeys(source.datasets, 0)
        for name, open_member in _members(archive):
            rel = _target(name, source.rules, archive)
            if rel is None or open_member is None:
                continue
            dst = tmp / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            with open_member() as src:
                _write_member(src, dst)
            counts[rel.parts[0]] += 1
        empty = [dataset for dataset, n in counts.items() if n == 0]
        if empty:
            raise DownloadError(f"{archive} holds no files for {', '.join(empty)}: not the expected layout")
        if source.pixels:
            try:
                _verify_pixels(tmp / source.pixels / "HR", source.pixels, str(archive))
            except DownloadError:
                archive.unlink()
                raise
        for dataset in source.datasets:
            if not (root / dataset).exists():
                os.replace(tmp / dataset, root / dataset)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
