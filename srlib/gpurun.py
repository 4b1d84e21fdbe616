"""One prepared GPU run: pack the data here, train and bench on the GPU in one call, score back here.

A GPU machine is lent for a few minutes, starts bare, sees only the repository and what is carried with
it (64 MiB in all), and returns files of at most 16 MiB. So the study's GPU run is three steps:

1. ``python -m srlib gpu-pack`` (here): copies the quick profile's images (``quick-train``,
   ``quick-holdout``) and Set5 into a data-root layout under an ignored folder (``cache/gpu_pack``; PNG
   files as they are, other formats decoded and written as PNG, which is lossless, so the manifests' pixel
   hashes still hold), and checks that the repository's files plus the pack stay under the limit.
2. ``python -m srlib gpu-train`` (on the GPU, with the pack as data root): the speed bench in bf16, then
   every (model, seed) of the quick recipe at the paper's budget (crop 128, batch 16, ``steps`` generator
   steps, the last ``gan_steps`` with the model's own loss after the shared L1 warm-up), seeds as
   concurrent processes on the one GPU (these small models leave it mostly idle); the decoded images sit in
   one memory map that all processes share. A wall-clock guard stops training in time to write the
   archive; runs are resumable, so calling it again on the same machine continues them. The archive
   (generators, metrics.csv, meta.json, the logs, speed.csv) goes under ``--out`` in parts of at most
   :data:`PART_BYTES`.
3. ``python -m srlib gpu-results ARCHIVE`` (here): scores the generators on the four benchmarks in both
   protocols and writes ``results/gpu/``: Table 1 with the spread over seeds, the speed rows, metadata.

``scripts/gpu_run.sh`` wraps the three; ``--dry`` runs the same path on the CPU with tiny settings.
"""
import gzip
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from .data import BENCHMARKS, data_root, entries, hr_files, is_manifest, read_checked, repo_root
from .io import atomic_write, write_image
from .lock import lock

FORMAT = "srlib-gpu-run 1"
PACK_SETS = ("quick-train", "quick-holdout", "Set5")  # what the GPU run trains and validates on
TRAVEL_LIMIT = 64 * 2 ** 20          # repository + carried paths that reach the GPU machine
PART_BYTES = 15 * 2 ** 20            # archive part size: files back from the machine are at most 16 MiB
ARCHIVE = "gpu_run.tar.gz"
PAPER = dict(crop=128, batch_size=16)    # the paper's crop and batch, over the quick profile's
MODELS = ("psnr", "srgan", "attention")   # psnr first: attention waits for the warm-up they share
# tiny settings of --dry: the device path on a CPU in seconds
DRY = dict(n_blocks=1, n_feats=16, crop=32, batch_size=4, val_images=2, tune_set=None, device="cpu", amp="fp32",
           num_workers=0)


class GpuRunError(ValueError):
    """A pack, run or archive that cannot be used; the message says why."""


# --------------------------------------------------------------------------------------------- pack


COPIED = (".png", ".jpg", ".jpeg")   # packed byte for byte; other formats (BMP ...) are written as PNG


def pack(dest, root=None, sets=PACK_SETS):
    """Copy the images of ``sets`` (manifests or datasets) from the data root into ``dest`` as a data root
    (``dest/<Dataset>/HR/<name>``). PNG and JPEG files are copied byte for byte (the BSD200 JPEGs are about
    three times smaller than PNGs of their pixels, and the pack must fit beside the repository); others are
    decoded and written as PNG. The manifests' pixel hashes are checked wherever the pack is decoded, so
    a JPEG decoder that differs on the GPU machine stops the run at its start. Files already there with
    the same size are kept. ``dest`` is locked while it is filled (:mod:`srlib.lock`): a second pack into
    it stops at once. Returns the number of images."""
    dest = Path(dest)
    if dest.resolve().is_relative_to(data_root(root).resolve()):
        raise GpuRunError(f"pack folder {dest} lies in the data root, which is only read")
    n = 0
    with lock(dest):
        for name in sets:
            items = entries(name, root) if is_manifest(name) else [(f, None) for f in hr_files(name, root)]
            for f, sha in items:
                copied = f.suffix.lower() in COPIED
                target = dest / f.parent.parent.name / "HR" / (f.name if copied else f.stem + ".png")
                if copied and not (target.is_file() and target.stat().st_size == f.stat().st_size):
                    atomic_write(target, lambda out, f=f: out.write(f.read_bytes()))
                elif not copied and not target.is_file():
                    write_image(target, read_checked(f, sha).rgb)
                n += 1
    return n


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def travel_bytes(pack_dir=None):
    """(repository bytes, pack bytes): the files that reach the GPU machine, tracked plus untracked files
    git does not ignore (as the device tool sends them), and the carried pack."""
    top = repo_root()
    if top is None or not (top / ".git").exists():
        raise GpuRunError("not a git checkout: the size of what would travel cannot be measured")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=top,
                            capture_output=True, check=True).stdout.decode().split("\0")
    repo = sum((top / f).stat().st_size for f in set(listed) if f and (top / f).is_file())
    return repo, folder_bytes(pack_dir) if pack_dir else 0


def check_travel(pack_dir, limit=TRAVEL_LIMIT):
    """Print what would travel and raise :class:`GpuRunError` when it is not under ``limit``."""
    repo, packed = travel_bytes(pack_dir)
    total = repo + packed
    mib = 2 ** 20
    print(f"travel size: repository {repo / mib:.1f} MiB + pack {packed / mib:.1f} MiB = {total / mib:.1f} MiB "
          f"(limit {limit / mib:.0f} MiB): {'ok' if total < limit else 'TOO LARGE'}", flush=True)
    if total >= limit:
        raise GpuRunError(f"repository + pack hold {total / mib:.1f} MiB, not under {limit / mib:.0f} MiB")
    return total


# ------------------------------------------------------------------------------------ device: training


def run_name(model, seed):
    return f"{model}-s{seed}"


def run_overrides(seed, work, steps, gan_steps, val_every, extra):
    """TrainConfig overrides of the 'quick' profile for one seed: the paper's crop and batch, ``steps``
    generator steps of which the last ``gan_steps`` use the model's own loss, the shared warm-ups and the
    image cache under ``work``; ``extra`` last (the tiny settings of a dry run)."""
    return {**PAPER, "seed": seed, "steps": steps, "warmup_steps": steps - gan_steps, "val_every": val_every,
            "warmup_dir": str(work / "runs" / "warmup"), "cache_dir": str(work / "cache"), **extra}


def train_args(model, seed, overrides):
    """`python -m srlib train` arguments of one (model, seed) run."""
    sets = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in overrides.items()]
    return ["-m", "srlib", "train", "--model", model, "--profile", "quick", "--out",
            str(Path(overrides["warmup_dir"]).parent / run_name(model, seed)), "--set"] + sets


def warmup_done(model, overrides):
    """Whether the shared warm-up that ``model`` starts from is complete (attention waits for psnr's)."""
    from .train import make_config, warmup_run_dir
    wdir = warmup_run_dir(make_config(model, "quick", **overrides))    # named by a hash of its config
    meta = wdir / "meta.json"
    return (meta.is_file() and json.loads(meta.read_text()).get("status") == "complete"
            and (wdir / "generator.safetensors").is_file())


def _stop(proc, grace=15):
    """End a process group this module started (a training run and its DataLoader workers)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def train_all(work, seeds, steps, gan_steps, val_every, deadline, extra, say, python=sys.executable):
    """Run every (model, seed) as its own process, all at once except that an attention run starts when
    the warm-up it shares with psnr is complete. Stops what still runs at ``deadline`` (time.time()).
    Returns {run name: exit code, or 'stopped' / 'not started'}."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = extra.pop("num_workers", max(1, cores // (2 * len(seeds))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "20"}
    (work / "logs").mkdir(parents=True, exist_ok=True)
    waiting = [(m, s) for s in seeds for m in MODELS]
    running, codes = {}, {}
    while waiting or running:
        for m, s in list(waiting):
            overrides = run_overrides(s, work, steps, gan_steps, val_every, {**extra, "num_workers": workers})
            if m != "attention" or warmup_done(m, overrides):
                log = open(work / "logs" / f"{run_name(m, s)}.log", "ab")
                running[run_name(m, s)] = (subprocess.Popen([python] + train_args(m, s, overrides), stdout=log,
                                                            stderr=subprocess.STDOUT, env=env,
                                                            start_new_session=True), log)
                waiting.remove((m, s))
                say(f"started {run_name(m, s)} ({workers} loader workers)")
            elif run_name("psnr", s) in codes:        # psnr ended, and the warm-up it ran is not complete
                codes[run_name(m, s)] = "not started"
                waiting.remove((m, s))
                say(f"{run_name(m, s)} not started: the shared warm-up of {run_name('psnr', s)} is not complete")
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                codes[name] = proc.returncode
                log.close()
                del running[name]
                say(f"{name} ended with exit {proc.returncode}")
        if time.time() > deadline:
            for name, (proc, log) in running.items():
                _stop(proc)
                log.close()
                codes[name] = "stopped"
                say(f"{name} stopped by the wall-clock guard (resumable from its last checkpoint)")
            for m, s in waiting:
                codes[run_name(m, s)] = "not started"
            break
        time.sleep(1)
    return codes


def environment():
    """GPU, driver and library versions of this machine."""
    import torch
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count(), "host": platform.node()}
    for mod in ("torchvision", "numpy", "skimage", "pandas", "safetensors"):
        try:
            env[mod] = __import__(mod).__version__
        except ImportError:
            env[mod] = None
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2 ** 30, 1), capability=f"{p.major}.{p.minor}")
    try:
        env["nvidia_smi"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                            "--format=csv,noheader"], capture_output=True, text=True,
                                           timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["nvidia_smi"] = None
    return env


def run_device(work, out, seeds=(0, 1, 2), steps=5000, gan_steps=400, val_every=1000, budget_s=330,
               bench_s=90, reserve_s=25, dry=False, python=sys.executable):
    """The GPU part (see the module docstring); returns the archive's paths under ``out``.

    ``budget_s`` is the whole call's wall time; training stops ``reserve_s`` before its end, leaving time for
    the archive. The bench gets at most ``bench_s`` and is skipped when ``work`` already holds its CSV
    (a second call continues the runs)."""
    from .data import TrainDataset
    t0 = time.time()
    work, out = Path(work), Path(out)
    work.mkdir(parents=True, exist_ok=True)
    logf = open(work / "log.txt", "a")

    def say(msg):
        line = f"[{time.time() - t0:6.1f} s] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")
        logf.flush()

    if gan_steps >= steps or gan_steps < 1:
        raise GpuRunError(f"need 1 <= gan_steps ({gan_steps}) < steps ({steps})")
    env = environment()
    say(f"gpu_run {'dry ' if dry else ''}on {env.get('gpu') or 'CPU'}; torch {env['torch']}, CUDA {env['cuda']}; "
        f"data root {data_root()}; seeds {list(seeds)}; {steps} steps ({steps - gan_steps} L1 warm-up + "
        f"{gan_steps} own loss); budget {budget_s} s")
    if not dry and not env["cuda_available"]:
        raise GpuRunError("no CUDA device: run with --dry on a CPU")
    extra = dict(DRY) if dry else {"progress": True}
    speed = work / "speed.csv"
    bench_exit = "kept from an earlier call" if speed.is_file() else None
    if bench_exit is None:
        cmd = [python, "-m", "srlib", "bench", "--parts", "train", "--out", str(speed)]
        cmd += ["--tiny", "--device", "cpu"] if dry else ["--device", "cuda", "--amp", "bf16", "--crops", "96", "128"]
        say("bench: " + " ".join(cmd[1:]))
        with open(work / "logs_bench.txt", "ab") as blog:
            proc = subprocess.Popen(cmd, stdout=blog, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                bench_exit = proc.wait(bench_s)
            except subprocess.TimeoutExpired:
                _stop(proc)
                bench_exit = f"stopped after {bench_s} s"
        say(f"bench: exit {bench_exit}")
    t_train, codes, failure = time.time(), {}, None
    try:        # whatever fails here, the archive with the bench and the logs is still written
        # decode the training images once into the shared memory map (checking the manifest's pixel
        # hashes), before the processes that read it start
        TrainDataset(["quick-train"], None, extra.get("crop", 128), 4, "matlab", cache_dir=work / "cache")
        say("training images cached")
        codes = train_all(work, seeds, steps, gan_steps, val_every, t0 + budget_s - reserve_s, dict(extra), say,
                          python)
    except Exception as e:  # noqa: BLE001 -- reported in the log and meta.json
        failure = f"{type(e).__name__}: {e}"
        say(f"training failed: {failure}")
    train_s = time.time() - t_train
    runs = {}
    for m in MODELS:
        for s in seeds:
            name = run_name(m, s)
            meta_path = work / "runs" / name / "meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            runs[name] = {"model": m, "seed": s, "exit": codes.get(name), "status": meta.get("status", "missing"),
                          "steps_done": meta.get("steps_done", 0), "train_seconds": meta.get("train_seconds"),
                          "vgg": meta.get("vgg"), "precision": meta.get("precision"), "gpu": meta.get("gpu"),
                          "config": meta.get("config")}
    meta = {"format": FORMAT, "dry": dry, "environment": env, "seeds": list(seeds), "steps": steps,
            "gan_steps": gan_steps, "warmup_steps": steps - gan_steps, "val_every": val_every,
            "budget_s": budget_s, "bench": {"exit": bench_exit, "seconds_limit": bench_s},
            "train_wall_s": round(train_s, 1), "failure": failure, "wall_s": round(time.time() - t0, 1), "runs": runs,
            "recipe": "profile 'quick' (shared L1 warm-up, then the model's own loss; cosine per phase) at crop "
                      "128, batch 16", "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(work / "meta.json", lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    done = sum(r["status"] == "complete" for r in runs.values())
    say(f"{done} of {len(runs)} runs complete; training wall {train_s:.0f} s")
    logf.close()
    parts = write_archive(work, out)
    print(f"archive: {', '.join(f'{p} ({p.stat().st_size / 2 ** 20:.1f} MiB)' for p in parts)}", flush=True)
    return parts


def write_archive(work, out, part_bytes=PART_BYTES):
    """``out/gpu_run.tar.gz`` with meta.json, speed.csv, the logs and each run's generator, metrics.csv and
    meta.json (not the resume checkpoints); split into ``.partNN`` files when larger than ``part_bytes``."""
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ARCHIVE
    for old in out.glob(ARCHIVE + "*"):
        old.unlink()
    keep = ("generator.safetensors", "metrics.csv", "meta.json", "*.log", "log.txt", "logs_bench.txt", "speed.csv")
    with tarfile.open(archive, "w:gz") as tar:
        for pattern in keep:
            for p in sorted(work.rglob(pattern)):
                rel = p.relative_to(work)
                if rel.parts[0] in ("cache",) or "warmup" in rel.parts and p.name == "generator.safetensors":
                    continue
                tar.add(p, arcname=str(rel))
    if archive.stat().st_size <= part_bytes:
        return [archive]
    parts = []
    with open(archive, "rb") as src:
        while chunk := src.read(part_bytes):
            parts.append(out / f"{ARCHIVE}.part{len(parts):02d}")
            parts[-1].write_bytes(chunk)
    archive.unlink()
    return parts


# -------------------------------------------------------------------------------------- back here: results


def archive_parts(path):
    """The files of one archive: a .tar.gz, its first ``.partNN``, or a folder holding either."""
    path = Path(path)
    if path.is_dir():
        whole = path / ARCHIVE
        parts = sorted(path.glob(ARCHIVE + ".part*"))
        if whole.is_file():
            return [whole]
        if parts:
            return parts
        raise GpuRunError(f"{path}: no {ARCHIVE} or {ARCHIVE}.partNN in this folder")
    if not path.is_file():
        raise GpuRunError(f"{path}: no such archive")
    if ".part" in path.name:
        stem = path.name.rsplit(".part", 1)[0]
        return sorted(path.parent.glob(stem + ".part*"))
    return [path]


def unpack(path, dest):
    """Extract the archive at ``path`` (see :func:`archive_parts`) into ``dest``; returns its meta.json.
    A damaged or foreign archive is a :class:`GpuRunError` that says what is wrong."""
    parts = archive_parts(path)
    numbers = [int(p.name.rsplit(".part", 1)[1]) for p in parts if ".part" in p.name]
    if numbers and numbers != list(range(len(numbers))):
        raise GpuRunError(f"{path}: archive parts {numbers} are not 00, 01, ... without gaps")
    dest = Path(dest)
    with tempfile.TemporaryFile() as whole:
        for p in parts:
            with open(p, "rb") as src:
                shutil.copyfileobj(src, whole)
        whole.seek(0)
        try:
            # the whole gzip stream first, to its CRC: tarfile stops at the end-of-archive blocks, so a
            # transfer cut short after them would otherwise extract without an error
            with gzip.GzipFile(fileobj=whole) as stream:
                while stream.read(1 << 20):
                    pass
            whole.seek(0)
            with tarfile.open(fileobj=whole, mode="r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    if not (m.isfile() or m.isdir()) or Path(m.name).is_absolute() or ".." in Path(m.name).parts:
                        raise GpuRunError(f"{path}: unsafe archive member {m.name!r}")
                tar.extractall(dest, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as e:
            raise GpuRunError(f"{path}: not a readable gpu_run archive ({type(e).__name__}: {e}); a part "
                              f"missing or cut short?") from None
    meta_path = dest / "meta.json"
    if not meta_path.is_file():
        raise GpuRunError(f"{path}: no meta.json in the archive: not written by `srlib gpu-train`")
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:
        raise GpuRunError(f"{path}: meta.json is not JSON ({e})") from None
    if meta.get("format") != FORMAT or not isinstance(meta.get("runs"), dict):
        raise GpuRunError(f"{path}: meta.json has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def spread(per_seed):
    """Mean, sample standard deviation, min and max over seeds of each (model, dataset, protocol)."""
    g = per_seed.groupby(["model", "dataset", "protocol"], sort=False)
    table = g.agg(psnr=("psnr", "mean"), psnr_sd=("psnr", "std"), psnr_min=("psnr", "min"),
                  psnr_max=("psnr", "max"), ssim=("ssim", "mean"), ssim_sd=("ssim", "std"),
                  ssim_min=("ssim", "min"), ssim_max=("ssim", "max"), seeds=("seed", "nunique"),
                  images=("images", "first"), steps=("steps_done", "min")).reset_index()
    return table


LABELS = {"bicubic": "Bicubic", "srgan": "SRGAN", "attention": "Attention", "psnr": "PSNR baseline"}


def markdown(table, meta, datasets, speed=None):
    """Table 1 at the GPU budget: one table per protocol, cells 'PSNR ± sd / SSIM ± sd', with notes, and
    the bench's step rows (``speed``, a DataFrame of speed.csv) when given."""
    def cell(r):
        if r.seeds < 2 or math.isnan(r.psnr_sd):
            return f"{r.psnr:.2f} / {r.ssim:.4f}"
        return f"{r.psnr:.2f} ± {r.psnr_sd:.2f} / {r.ssim:.4f} ± {r.ssim_sd:.4f}"

    env, runs = meta["environment"], meta["runs"]
    steps = sorted({r["steps_done"] for r in runs.values()})
    cfg = next((r["config"] for r in runs.values() if r.get("config")), {})
    lines = [f"# Table 1 at the GPU budget ({meta['steps']} generator steps, crop {cfg.get('crop')}, batch "
             f"{cfg.get('batch_size')})", ""]
    titles = {"paper": "Paper protocol (RGB in [0, 1], whole image)", "standard": "Standard protocol (Y, 4-pixel "
              "border shaved)"}
    for protocol in ("paper", "standard"):
        sub = table[table.protocol == protocol]
        if sub.empty:
            continue
        lines += [f"## {titles[protocol]}", "", "PSNR (dB) / SSIM, x4; mean ± standard deviation over seeds.", "",
                  "| Method | " + " | ".join(datasets) + " |", "|---" * (len(datasets) + 1) + "|"]
        for model in sorted(dict.fromkeys(sub.model), key=lambda m: list(LABELS).index(m) if m in LABELS else 99):
            rows = {r.dataset: r for r in sub[sub.model == model].itertuples()}
            label = LABELS.get(model, model) + (" *" if model == "srgan" else "")
            lines.append(f"| {label} | " + " | ".join(cell(rows[d]) if d in rows else "–" for d in datasets) + " |")
        lines.append("")
    vgg = sorted({str(r["vgg"]) for r in runs.values() if r["model"] == "srgan" and r["vgg"]})
    cut = [n for n, r in runs.items() if r["status"] != "complete"]
    lines += [
        "Notes:", "",
        f"- \\* SRGAN: no ImageNet VGG16 weights on the GPU machine, so its perceptual term used a random-init "
        f"VGG16 or was dropped: not Ledig's SRGAN loss. Its runs recorded: {'; '.join(vgg) or 'nothing'}.",
        f"- Seeds {meta['seeds']}, each run its own process on one GPU ({env.get('gpu') or 'CPU'}); recipe: "
        f"profile 'quick' (cosine per phase) at crop {cfg.get('crop')}, batch {cfg.get('batch_size')}: "
        f"{meta['warmup_steps']} L1 warm-up steps shared per architecture and seed, then "
        f"{meta['gan_steps']} steps of the model's own loss. Steps done per run: {steps}.",
        "- Runs not complete (stopped by the wall-clock guard or failed): " + (", ".join(cut) or "none") + "."
        + (f" Training failed: {meta['failure']}" if meta.get("failure") else ""),
        f"- torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}; training wall time "
        f"{meta['train_wall_s']:.0f} s of a {meta['budget_s']} s call.",
    ]
    if speed is not None and not speed.empty:
        rows = speed[speed.measurement.isin(["train_step", "train_tflops", "peak_fraction"])]
        lines += ["", "## Speed (srlib bench: one G+D step; config: model, crop, batch, precision; naive: the "
                  "fp32 NCHW reference loop)", "",
                  "| measurement | config | srlib | naive | unit | note |", "|---|---|---|---|---|---|"]
        lines += [f"| {r.measurement} | {r.config} | {r.srlib:.4g} | {r.naive:.4g} | {r.unit} | {r.note} |"
                  for r in rows.itertuples()]
    if meta.get("dry"):
        lines.insert(1, "\n**Dry run: tiny models on a CPU, a check of the path, not results.**")
    return "\n".join(lines) + "\n"


def gpu_results(archive, results="results/gpu", datasets=BENCHMARKS, root=None, keep=None, device=None):
    """Unpack ``archive``, score its generators (and bicubic) on ``datasets`` in both protocols and write
    ``results``: per_seed.csv, table1.csv, table1.md, speed.csv, meta.json, train/<run>/metrics.csv, log.txt.
    ``keep``: extract into this folder instead of a temporary one. Returns the table1 DataFrame."""
    import pandas as pd

    from .evaluate import evaluate, summarize, write_csv
    results = Path(results)
    with tempfile.TemporaryDirectory(prefix="gpu_run.") as tmp:
        dest = Path(keep) if keep else Path(tmp)
        meta = unpack(archive, dest)
        frames = [summarize(evaluate("bicubic", datasets, root)).assign(model="bicubic", seed=0, steps_done=0)]
        scored = []
        for name, run in meta["runs"].items():
            gen = dest / "runs" / name / "generator.safetensors"
            if not gen.is_file():
                print(f"{name}: no generator in the archive ({run['status']}, {run['steps_done']} steps): skipped")
                continue
            print(f"scoring {name} ({run['steps_done']} steps) on {', '.join(datasets)}", flush=True)
            per = summarize(evaluate(str(gen), datasets, root, label=name, device=device))
            frames.append(per.assign(model=run["model"], seed=run["seed"], steps_done=run["steps_done"]))
            scored.append(name)
        if not scored:
            raise GpuRunError(f"{archive}: the archive holds no generator to score")
        per_seed = pd.concat(frames, ignore_index=True)
        table = spread(per_seed)
        vgg = "; ".join(sorted({str(r["vgg"]) for r in meta["runs"].values() if r["model"] == "srgan"}))
        for df in (per_seed, table):        # SRGAN's numbers carry their VGG16 caveat wherever they go
            df["note"] = [f"no ImageNet VGG16 (VGG16: {vgg})" if m == "srgan" else "" for m in df.model]
        results.mkdir(parents=True, exist_ok=True)
        write_csv(per_seed[["model", "seed", "dataset", "protocol", "psnr", "ssim", "images", "steps_done", "note"]],
                  results / "per_seed.csv")
        write_csv(table, results / "table1.csv")
        speed = pd.read_csv(dest / "speed.csv") if (dest / "speed.csv").is_file() else None
        text = markdown(table, meta, list(datasets), speed)
        atomic_write(results / "table1.md", lambda f: f.write(text.encode()))
        for name in ("speed.csv", "log.txt"):
            if (dest / name).is_file():
                shutil.copyfile(dest / name, results / name)
        for csv in (dest / "runs").glob("*/metrics.csv"):
            target = results / "train" / csv.parent.name / "metrics.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(csv, target)
        meta["scored"] = {"datasets": list(datasets), "runs": scored, "data_root": str(data_root(root)),
                          "protocols": ["standard", "paper"], "archive": str(archive),
                          "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        atomic_write(results / "meta.json", lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    print(f"wrote {results}/ (table1.md, table1.csv, per_seed.csv, speed.csv, meta.json)")
    return table


# ------------------------------------------------------------------------------------------------- cli


def _pack_cli(args):
    n = pack(args.out, args.data_root)
    print(f"packed {n} images of {', '.join(PACK_SETS)} into {args.out}")
    check_travel(args.out)
    return 0


def _train_cli(args):
    try:
        run_device(args.work, args.out, tuple(args.seeds), args.steps, args.gan_steps, args.val_every, args.budget,
                   args.bench_s, dry=args.dry)
    except GpuRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _results_cli(args):
    try:
        gpu_results(args.archive, args.results, args.datasets, args.data_root, args.keep, args.device)
    except GpuRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def add_cli(sub):
    p = sub.add_parser("gpu-pack", help="pack the GPU run's images into a carried data root; check the size")
    p.add_argument("--out", default="cache/gpu_pack", help="pack folder (ignored by git; carried to the GPU)")
    p.add_argument("--data-root", default=None)
    p.set_defaults(func=_pack_cli)

    t = sub.add_parser("gpu-train", help="on the GPU: bench, all models x seeds at the GPU budget, the archive")
    t.add_argument("--work", default="runs/gpu_run", help="run folder; a second call continues its runs")
    t.add_argument("--out", required=True, help="folder for the archive ($OUT on the device)")
    t.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    t.add_argument("--steps", type=int, default=5000, help="generator steps per model (the paper's 5,000)")
    t.add_argument("--gan-steps", type=int, default=400, help="of which with the model's own loss (quick: 400)")
    t.add_argument("--val-every", type=int, default=1000, help="steps between validations and checkpoints")
    t.add_argument("--budget", type=float, default=330, help="wall seconds of the whole call")
    t.add_argument("--bench-s", type=float, default=90, help="wall seconds the bench may take at most")
    t.add_argument("--dry", action="store_true", help="tiny settings on the CPU")
    t.set_defaults(func=_train_cli)

    r = sub.add_parser("gpu-results", help="score a gpu-train archive on the benchmarks; write results/gpu")
    r.add_argument("archive", help="gpu_run.tar.gz, its first .partNN, or the folder holding them")
    r.add_argument("--results", default="results/gpu")
    r.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    r.add_argument("--data-root", default=None)
    r.add_argument("--keep", default=None, help="extract here instead of a temporary folder")
    r.add_argument("--device", default=None)
    r.set_defaults(func=_results_cli)
