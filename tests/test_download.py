"""srlib.download against a local HTTP server (127.0.0.1 only) serving tiny zip and tar archives and stand-ins
for torchvision's weight files (written into a temporary torch.hub folder, never the real cache)."""
import dataclasses
import hashlib
import io
import re
import tarfile
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import srlib.download as dl
from srlib.download import SOURCES, WEIGHTS, DownloadError, Source, Weights, download, download_weights, find_source


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` support; records (path, Range header) of every GET."""

    def do_GET(self):
        rng = self.headers.get("Range")
        self.server.requests.append((self.path, rng))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return self.send_error(404)
        data, start = path.read_bytes(), 0
        if rng and self.server.honor_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self.send_error(416)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/www on an ephemeral port; ``server.url`` is its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(www)))
    httpd.requests, httpd.honor_range, httpd.www = [], True, www
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def png(seed, size=16):
    """Bytes of a small random RGB PNG."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(path, members):
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path.read_bytes()


def make_tar(path, members, mode="w"):
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path.read_bytes()


DIV2K_MEMBERS = {"DIV2K_train_HR/0001.png": png(1), "DIV2K_train_HR/0002.png": png(2)}
BENCH_MEMBERS = {
    "benchmark/Set5/HR/baby.png": png(3),
    "benchmark/Set5/LR_bicubic/X4/babyx4.png": png(4, 4),
    "benchmark/Set5/LR_bicubic/X2/babyx2.png": png(5, 8),  # not taken by any rule
    "benchmark/Set14/HR/lenna.png": png(6),
    "benchmark/B100/HR/3096.png": png(7),
    "benchmark/B100/LR_bicubic/X4/3096x4.png": png(8, 4),
    "benchmark/Urban100/HR/img_001.png": png(9),
}


def div2k_source(server, sha256="computed", members=DIV2K_MEMBERS):
    """Serve a DIV2K-like zip; return the real DIV2K Source pointed at it (sha256 of it by default)."""
    data = make_zip(server.www / "DIV2K_train_HR.zip", members)
    sha = hashlib.sha256(data).hexdigest() if sha256 == "computed" else sha256
    return dataclasses.replace(SOURCES["DIV2K"], url=f"{server.url}/DIV2K_train_HR.zip", sha256=sha), data


def leftovers(root):
    """Temporary extraction folders and .part files left under root."""
    return list(root.glob(".extract-*")) + list(root.glob(".downloads/*.part"))


def test_zip_lands_in_layout(server, tmp_path):
    source, _ = div2k_source(server)
    root = tmp_path / "data"
    assert download(source, root, progress=False) == [root / "DIV2K"]
    assert sorted(p.name for p in (root / "DIV2K" / "HR").iterdir()) == ["0001.png", "0002.png"]
    assert (root / "DIV2K" / "HR" / "0002.png").read_bytes() == DIV2K_MEMBERS["DIV2K_train_HR/0002.png"]
    assert leftovers(root) == [] and list((root / ".downloads").iterdir()) == []


def test_tar_benchmark_layout(server, tmp_path):
    data = make_tar(server.www / "benchmark.tar", BENCH_MEMBERS)
    source = dataclasses.replace(SOURCES["benchmark"], url=f"{server.url}/benchmark.tar",
                                 sha256=hashlib.sha256(data).hexdigest())
    root = tmp_path / "data"
    assert download(source, root, progress=False) == [root / n for n in ("Set5", "Set14", "BSD100", "Urban100")]
    lr = BENCH_MEMBERS["benchmark/Set5/LR_bicubic/X4/babyx4.png"]
    assert (root / "Set5/LR_bicubic/X4/baby.png").read_bytes() == lr
    assert (root / "BSD100/HR/3096.png").read_bytes() == BENCH_MEMBERS["benchmark/B100/HR/3096.png"]
    assert (root / "BSD100/LR_bicubic/X4/3096.png").is_file()
    assert (root / "Urban100/HR/img_001.png").is_file()
    assert not (root / "Set5/LR_bicubic/X2").exists() and not (root / "B100").exists()


def test_checksum_mismatch(server, tmp_path):
    source, _ = div2k_source(server, sha256="0" * 64)
    root = tmp_path / "data"
    message = r"checksum mismatch for http://127\.0\.0\.1.*expected sha256 0{64}, got [0-9a-f]{64}"
    with pytest.raises(DownloadError, match=message):
        download(source, root, progress=False)
    assert not (root / "DIV2K").exists()
    assert list((root / ".downloads").iterdir()) == [] and leftovers(root) == []


@pytest.mark.parametrize("have", ["half", "all"])
def test_resume_sends_range(server, tmp_path, have):
    source, data = div2k_source(server)
    root = tmp_path / "data"
    (root / ".downloads").mkdir(parents=True)
    offset = len(data) // 2 if have == "half" else len(data)  # all: server answers 416
    (root / ".downloads" / "DIV2K_train_HR.zip.part").write_bytes(data[:offset])
    download(source, root, progress=False)
    assert server.requests == [("/DIV2K_train_HR.zip", f"bytes={offset}-")]
    assert (root / "DIV2K/HR/0001.png").read_bytes() == DIV2K_MEMBERS["DIV2K_train_HR/0001.png"]


def test_server_ignoring_range_starts_over(server, tmp_path):
    server.honor_range = False
    source, _ = div2k_source(server)
    root = tmp_path / "data"
    (root / ".downloads").mkdir(parents=True)
    (root / ".downloads" / "DIV2K_train_HR.zip.part").write_bytes(b"junk" * 10)
    download(source, root, progress=False)
    assert server.requests == [("/DIV2K_train_HR.zip", "bytes=40-")]
    assert (root / "DIV2K/HR/0002.png").read_bytes() == DIV2K_MEMBERS["DIV2K_train_HR/0002.png"]


def test_interrupted_extraction_leaves_no_dataset(server, tmp_path, monkeypatch):
    source, _ = div2k_source(server)
    root = tmp_path / "data"
    real, calls = dl._write_member, []

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(dl, "_write_member", fail_second)
    with pytest.raises(OSError, match="disk full"):
        download(source, root, progress=False)
    assert len(calls) == 2 and calls[0].is_relative_to(root)  # one file was written, in a temp folder
    assert not (root / "DIV2K").exists() and leftovers(root) == []

    monkeypatch.setattr(dl, "_write_member", real)
    download(source, root, progress=False)  # the verified archive is reused: no second request
    assert len(server.requests) == 1 and len(list((root / "DIV2K/HR").iterdir())) == 2


def test_second_call_fetches_nothing(server, tmp_path):
    source, _ = div2k_source(server)
    root = tmp_path / "data"
    download(source, root, progress=False)
    stamp = (root / "DIV2K/HR/0001.png").stat().st_mtime_ns
    download(source, root, progress=False)
    assert len(server.requests) == 1
    assert (root / "DIV2K/HR/0001.png").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("kind, bad", [("zip", "../evil.png"),
                                       ("tar", "/tmp/evil.png"),
                                       ("tar", "DIV2K_train_HR/../../../evil.png")])
def test_path_traversal_raises(server, tmp_path, kind, bad):
    members = {"DIV2K_train_HR/0001.png": png(1), bad: png(2)}
    data = (make_zip if kind == "zip" else make_tar)(server.www / "DIV2K_train_HR.zip", members)
    source = dataclasses.replace(SOURCES["DIV2K"], url=f"{server.url}/DIV2K_train_HR.zip",
                                 sha256=hashlib.sha256(data).hexdigest())
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=f"unsafe member {re.escape(repr(bad))}"):
        download(source, root, progress=False)
    assert not (root / "DIV2K").exists() and leftovers(root) == []
    assert not (tmp_path / "evil.png").exists() and not (root / "evil.png").exists()


def test_unverified_source(server, tmp_path, capsys):
    source, data = div2k_source(server, sha256=None)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="no pinned sha256; pass allow_unverified=True"):
        download(source, root, progress=False)
    assert server.requests == [] and not (root / "DIV2K").exists()

    digest = hashlib.sha256(data).hexdigest()
    with pytest.warns(UserWarning, match=f"UNVERIFIED.*{digest}"):
        download(source, root, allow_unverified=True, progress=False)
    assert digest in capsys.readouterr().err
    assert (root / "DIV2K/HR/0001.png").is_file()


def test_http_error_names_url(server, tmp_path):
    source = Source(f"{server.url}/missing.zip", "0" * 64, SOURCES["DIV2K"].rules)
    with pytest.raises(DownloadError, match=r"download of http://127\.0\.0\.1:\d+/missing\.zip failed: HTTP 404"):
        download(source, tmp_path / "data", progress=False)


def test_registry():
    for source in SOURCES.values():
        assert source.sha256 is None or re.fullmatch("[0-9a-f]{64}", source.sha256)
    assert SOURCES["DIV2K"].datasets == ("DIV2K",)
    assert SOURCES["DIV2K_valid"].datasets == ("DIV2K_valid",)
    assert SOURCES["benchmark"].datasets == ("Set5", "Set14", "BSD100", "Urban100")
    assert find_source("BSD100") is SOURCES["benchmark"]
    with pytest.raises(ValueError, match="unknown dataset 'Set9'"):
        find_source("Set9")


def _pixel_manifests(mdir, sets):
    """Write manifests/datasets/<Name>.tsv for {name: {stem: png bytes}}; return the hashes."""
    from srlib.data import pixel_hash
    (mdir / "datasets").mkdir(parents=True, exist_ok=True)
    out = {}
    for name, images in sets.items():
        rows = [(name, stem, pixel_hash(np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))))
                for stem, b in images.items()]
        (mdir / "datasets" / f"{name}.tsv").write_text("dataset\timage\tpixel_sha256\n"
                                                      + "".join("\t".join(r) + "\n" for r in rows))
        out[name] = rows
    return out


def bmp(seed, size=16):
    buf = io.BytesIO()
    Image.open(io.BytesIO(png(seed, size))).save(buf, format="BMP")
    return buf.getvalue()


T91_FILES = {"t1": bmp(20), "tt2": bmp(21)}
BSDS_MEMBERS = {"BSDS300/images/train/100075.jpg": png(22), "BSDS300/images/train/12074.jpg": png(23),
                "BSDS300/images/test/3096.jpg": png(24)}    # PNG bytes under .jpg names: PIL reads content


@pytest.fixture
def mirror(server, tmp_path, monkeypatch):
    """SRLIB_MIRROR at the local server, holding T91 files, a BSDS300-like tgz and the benchmark tar, with
    the pixel manifests of the test images in place of the shipped ones."""
    from srlib import data as D
    mdir = tmp_path / "manifests"
    _pixel_manifests(mdir, {"T91": T91_FILES,
                            "BSD200": {"100075": BSDS_MEMBERS["BSDS300/images/train/100075.jpg"],
                                       "12074": BSDS_MEMBERS["BSDS300/images/train/12074.jpg"]}})
    monkeypatch.setattr(D, "MANIFEST_DIR", mdir)
    (server.www / "T91").mkdir()
    for stem, b in T91_FILES.items():
        (server.www / "T91" / f"{stem}.bmp").write_bytes(b)
    make_tar(server.www / "BSDS300-images.tgz", BSDS_MEMBERS, "w:gz")
    bench = make_tar(server.www / "benchmark.tar", BENCH_MEMBERS)
    monkeypatch.setitem(SOURCES, "benchmark", dataclasses.replace(SOURCES["benchmark"],
                                                                  sha256=hashlib.sha256(bench).hexdigest()))
    monkeypatch.setenv("SRLIB_MIRROR", server.url)
    fake_weights(server, monkeypatch)
    server.mdir = mdir
    return server


def fake_weights(server, monkeypatch, names=("vgg16", "alexnet")):
    """Serve a small stand-in for each weight file, named with its own sha256 prefix as torchvision names
    them, and point WEIGHTS at it; torch.hub's folder moves to tmp (TORCH_HOME). Returns {name: bytes}."""
    monkeypatch.setenv("TORCH_HOME", str(server.www.parent / "torch"))
    out = {}
    for name in names:
        data = f"{name} weights ".encode() * 5000
        sha = hashlib.sha256(data).hexdigest()
        w = Weights(f"https://download.pytorch.org/models/{name}-{sha[:8]}.pth", sha, size=len(data))
        (server.www / w.filename).write_bytes(data)
        monkeypatch.setitem(WEIGHTS, name, w)
        out[name] = data
    return out


def test_weights_registry_is_torchvisions():
    import torchvision.models as tvm

    from srlib.losses import VGG16_FILE
    from srlib.perceptual import ALEXNET_FILE
    assert WEIGHTS["vgg16"].url == tvm.VGG16_Weights.IMAGENET1K_V1.url
    assert WEIGHTS["alexnet"].url == tvm.AlexNet_Weights.IMAGENET1K_V1.url
    assert (WEIGHTS["vgg16"].filename, WEIGHTS["alexnet"].filename) == (VGG16_FILE, ALEXNET_FILE)
    assert (WEIGHTS["vgg16"].prefix, WEIGHTS["alexnet"].prefix) == ("397923af", "7be5be79")
    for w in WEIGHTS.values():
        assert w.sha256 is None or (re.fullmatch("[0-9a-f]{64}", w.sha256) and w.sha256.startswith(w.prefix))
    mib = tvm.VGG16_Weights.IMAGENET1K_V1.meta["_file_size"]
    assert WEIGHTS["vgg16"].size / 2 ** 20 == pytest.approx(mib, abs=1e-3)


def test_weights_land_in_torch_hub_checked_and_atomic(server, monkeypatch):
    import torch
    data = fake_weights(server, monkeypatch)["vgg16"]
    monkeypatch.setenv("SRLIB_MIRROR", server.url)
    path = download_weights("vgg16", progress=False)
    assert path == Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS["vgg16"].filename
    assert str(path).startswith(str(server.www.parent / "torch")) and path.read_bytes() == data
    assert list(path.parent.glob("*.part")) == []
    n = len(server.requests)
    assert download_weights("vgg16", progress=False) == path and len(server.requests) == n   # present: left alone


@pytest.mark.parametrize("bad", ["prefix", "full"])
def test_weights_checksum_mismatch_deletes_the_download(server, monkeypatch, tmp_path, bad):
    fake_weights(server, monkeypatch, ["alexnet"])
    monkeypatch.setenv("SRLIB_MIRROR", server.url)
    w = WEIGHTS["alexnet"]
    if bad == "prefix":                      # other bytes under the name: the name's prefix does not match
        (server.www / w.filename).write_bytes(b"something else")
        monkeypatch.setitem(WEIGHTS, "alexnet", dataclasses.replace(w, sha256=None))
    else:                                    # the prefix matches, the recorded full sha256 does not
        monkeypatch.setitem(WEIGHTS, "alexnet", dataclasses.replace(w, sha256=w.prefix + "0" * 56))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download_weights("alexnet", tmp_path / "ckpt", progress=False)
    assert list((tmp_path / "ckpt").iterdir()) == []


def test_weights_resume_sends_range(server, monkeypatch, tmp_path):
    data = fake_weights(server, monkeypatch, ["vgg16"])["vgg16"]
    monkeypatch.setenv("SRLIB_MIRROR", server.url)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / (WEIGHTS["vgg16"].filename + ".part")).write_bytes(data[:1000])
    assert download_weights("vgg16", folder, progress=False).read_bytes() == data
    assert server.requests[-1][1] == "bytes=1000-"


def test_cli_downloads_weights(server, monkeypatch, capsys):
    from srlib.cli import main
    fake_weights(server, monkeypatch)
    monkeypatch.setenv("SRLIB_MIRROR", server.url)
    assert main(["download", "vgg16", "alexnet"]) == 0
    out = capsys.readouterr().out
    assert WEIGHTS["vgg16"].filename in out and WEIGHTS["alexnet"].filename in out


def test_weights_offline_are_reported_not_fatal(server, monkeypatch, capsys):
    from srlib import prepare
    fake_weights(server, monkeypatch)
    monkeypatch.setenv("SRLIB_MIRROR", "http://127.0.0.1:9")      # nothing listens there
    assert prepare.fetch_weights(["vgg16", "alexnet"], progress=False) == []
    err = capsys.readouterr().err
    assert "could not fetch" in err and "WITHOUT its perceptual" in err and "LPIPS column stays empty" in err
    assert "fix: python -m srlib download vgg16 alexnet" in err
    assert prepare.fetch_weights(["alexnet"], fetch=False) == [] and "still missing: alexnet" in capsys.readouterr().err
    config = Path(__file__).resolve().parent.parent / "configs"
    assert prepare.profile_weights(config / "quick.yaml") == ["vgg16", "alexnet"]
    assert prepare.profile_weights(config / "demo.yaml") == []


def test_file_list_source_checked_by_pixels(mirror, tmp_path):
    root = tmp_path / "data"
    assert download("T91", root, progress=False) == [root / "T91"]
    assert sorted(p.name for p in (root / "T91/HR").iterdir()) == ["t1.bmp", "tt2.bmp"]
    assert {p for p, _ in mirror.requests} == {"/T91/t1.bmp", "/T91/tt2.bmp"}
    assert leftovers(root) == [] and not (root / ".downloads" / "T91").exists()


def test_file_list_with_other_pixels_is_refused(mirror, tmp_path):
    (mirror.www / "T91" / "tt2.bmp").write_bytes(bmp(99))
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="T91 image tt2.bmp has other pixels"):
        download("T91", root, progress=False)
    assert not (root / "T91").exists() and leftovers(root) == []


def test_archive_without_checksum_checked_by_pixels(mirror, tmp_path):
    root = tmp_path / "data"
    download("BSD200", root, progress=False)
    assert sorted(p.name for p in (root / "BSD200/HR").iterdir()) == ["100075.jpg", "12074.jpg"]  # no test split
    (root / "BSD200").rename(tmp_path / "old")
    data = (mirror.www / "BSDS300-images.tgz").read_bytes()
    bad = dict(BSDS_MEMBERS, **{"BSDS300/images/train/12074.jpg": png(77)})
    assert make_tar(mirror.www / "BSDS300-images.tgz", bad, "w:gz") != data
    with pytest.raises(DownloadError, match="BSD200 image 12074.jpg has other pixels"):
        download("BSD200", root, progress=False)
    assert not (root / "BSD200").exists() and leftovers(root) == []


def test_preflight_lays_out_every_dataset_of_the_profile(mirror, tmp_path, monkeypatch, capsys):
    """configs/quick.yaml from an empty data root: everything it reads is fetched from the (local) sources."""
    from srlib import prepare
    from srlib.data import available
    hold = _pixel_manifests(tmp_path / "unused", {"BSD200": {"12074": png(23)}})["BSD200"]
    train = [r for r in (mirror.mdir / "datasets" / "T91.tsv").read_text().splitlines()[1:]]
    (mirror.mdir / "quick-train.tsv").write_text("dataset\timage\tpixel_sha256\n" + "\n".join(train) + "\n")
    (mirror.mdir / "quick-holdout.tsv").write_text("dataset\timage\tpixel_sha256\n" + "\t".join(hold[0]) + "\n")
    config = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"
    root = tmp_path / "data"
    assert prepare.profile_datasets(config)[:3] == ["quick-train", "Set5", "quick-holdout"]
    fetched = prepare.preflight(config, root, progress=False)
    assert set(fetched) == {"T91", "BSD200", "Set5", "Set14", "BSD100", "Urban100"}
    assert available(["T91", "BSD200", "Set5", "Set14", "BSD100", "Urban100"], root) == \
        ["T91", "BSD200", "Set5", "Set14", "BSD100", "Urban100"]
    err = capsys.readouterr().err
    for part in ("T91 (6 MB)", "BSD200 (22 MB)", "Set5, Set14, BSD100, Urban100 (250 MB)", "weights: missing"):
        assert part in err
    from srlib.download import hub_checkpoints     # the weights too, into torch.hub's (temporary) folder
    assert all((hub_checkpoints() / WEIGHTS[n].filename).is_file() for n in ("vgg16", "alexnet"))
    n = len(mirror.requests)
    assert prepare.preflight(config, root) == [] and len(mirror.requests) == n     # nothing left to fetch


def test_preflight_without_network_names_the_fix(tmp_path, monkeypatch):
    from srlib import prepare
    monkeypatch.setenv("SRLIB_MIRROR", "http://127.0.0.1:9")      # nothing listens there
    config = Path(__file__).resolve().parent.parent / "configs" / "quick.yaml"
    with pytest.raises(prepare.DataMissing, match=r"(?s)could not fetch T91.*fix: python -m srlib download T91 "
                                                  r"BSD200 Set5 Set14 BSD100 Urban100"):
        prepare.preflight(config, tmp_path / "data", progress=False)
    with pytest.raises(prepare.DataMissing, match="missing datasets under"):
        prepare.preflight(config, tmp_path / "data", fetch=False)
    assert prepare.profile_datasets(Path(config).parent / "demo.yaml") == []
