"""One prepared GPU run of the paper-budget grid: pack the data here, train and bench on the GPU in one call,
score back here.

The GPU run trains the same profile as ``./run_all.sh paper-budget`` on the CPU: the grid
``configs/paper_budget_grid.yaml`` (its arms, common settings and seeds; more seeds where SEEDS asks), each
(variant, seed) by ``python -m srlib ablation`` itself, so its runs are the ablation's run folders
(``runs/seed<s>/<variant>``, shared warm-ups in ``runs/warmup``). What is GPU-specific lives here: a GPU
machine is lent for a few minutes, starts bare, sees only the repository and what is carried with it (64 MiB
in all), and returns at most 8 files of at most 16 MiB (64 MiB together). So the run is three steps:

1. ``python -m srlib gpu-pack`` (here): copies the grid's images (its train, held-out and validation sets)
   into a data-root layout under an ignored folder (``cache/gpu_pack``; PNG and JPEG files as they are, other
   formats decoded and written as PNG, which is lossless, so the manifests' pixel hashes still hold), and
   checks that the repository's files plus the pack stay under the limit.
2. ``python -m srlib gpu-train`` (on the GPU, with the pack as data root): the speed bench in bf16, then every
   (variant, seed) of the grid as its own process on the one GPU, all at once (these small models leave it
   mostly idle; runs that share a warm-up wait for whichever trains it); the decoded images sit in one
   memory map that all processes share. A wall-clock guard stops training in time to write the archive;
   runs are resumable, so calling it again on the same machine continues them. The archive (the grid file,
   each run's generator, metrics.csv and meta.json, the logs, speed.csv) goes under ``--out`` in parts of at
   most :data:`PART_BYTES`.
3. ``python -m srlib gpu-results ARCHIVE`` (here): unpacks the runs into ``runs/gpu``, scores them as the
   ablation does and writes ``results/gpu/``: the grid's analysis (the declared endpoint first) and each
   arm's mean and SD over seeds, in both inference modes, the runs' record, the speed rows, metadata.
   Notebook 06_ablation reads the same runs folder.

``scripts/gpu_run.sh`` wraps the three; ``--dry`` runs the same path on the CPU with tiny settings.
"""
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from .config import GPU_GRID
from .data import BENCHMARKS, data_root, entries, hr_files, is_manifest, read_checked, repo_root
from .io import atomic_write, write_image
from .lock import lock

FORMAT = "srlib-gpu-run 2"            # 2: the grid's runs (seed<s>/<variant>) and the grid file
GRID = GPU_GRID                        # the grid the GPU run trains: the CPU's paper-budget
GRID_FILE = "grid.yaml"               # the grid as trained, in the work folder and the archive
TRAVEL_LIMIT = 64 * 2 ** 20          # repository + carried paths that reach the GPU machine
PART_BYTES = 15 * 2 ** 20            # archive part size: files back from the machine are at most 16 MiB
BACK_LIMIT = 64 * 2 ** 20            # and 64 MiB together
ARCHIVE = "gpu_run.tar.gz"
# --dry takes these of the smoke profile (tiny network, a few steps): the device path on a CPU in seconds
DRY_KEYS = ("n_blocks", "n_feats", "crop", "batch_size", "val_images", "steps", "warmup_steps", "val_every", "amp")


class GpuRunError(ValueError):
    """A pack, run or archive that cannot be used; the message says why."""


# --------------------------------------------------------------------------------------------- pack


COPIED = (".png", ".jpg", ".jpeg")   # packed byte for byte; other formats (BMP ...) are written as PNG


def pack_sets(grid=GRID):
    """The datasets and manifests a grid file's runs train and validate on (train, held-out, validation)."""
    from .ablation import load_grid, variant_configs
    spec = load_grid(grid)
    return tuple(dict.fromkeys(name for cfg in variant_configs(spec, spec["seeds"][0]).values()
                               for name in [*cfg.train_sets, cfg.tune_set, cfg.val_set] if name))


def pack(dest, root=None, sets=None):
    """Copy the images of ``sets`` (manifests or datasets; default :func:`pack_sets` of :data:`GRID`) from
    the data root into ``dest`` as a data root
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
        for name in sets or pack_sets():
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


def dry_overrides():
    """--dry: the smoke profile's tiny network and budget (:data:`srlib.config.PROFILES`) over the grid, on the
    grid's own (packed) data, on the CPU, without the held-out validation."""
    from .config import PROFILES
    return {**{k: PROFILES["smoke"][k] for k in DRY_KEYS}, "tune_set": None, "device": "cpu", "num_workers": 0}


def train_command(grid, runs, variant, seed, overrides, progress=True, python=sys.executable):
    """The ``python -m srlib ablation`` command that trains one (variant, seed) of ``grid`` (a grid file) into
    ``runs`` as the CPU run does (``runs/seed<s>/<variant>``, shared warm-ups in ``runs/warmup``), with
    ``overrides`` over the grid's common settings; scoring is left to ``gpu-results``."""
    sets = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    return [python, "-m", "srlib", "ablation", str(grid), "--runs", str(runs), "--seeds", str(seed),
            "--variants", variant, "--no-score"] + (["--progress"] if progress else []) + ["--set"] + sets


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


def train_all(commands, logs, deadline, say, limit=None):
    """Start every command ({run name: command}) as its own process, at most ``limit`` at a time (None: all at
    once): runs that share a warm-up wait for whichever of them trains it (:func:`srlib.train.train`), which
    started before them. Stops what still runs at ``deadline`` (time.time()). Returns {run name: exit code,
    or 'stopped'}."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "20"}
    Path(logs).mkdir(parents=True, exist_ok=True)
    running, codes, waiting = {}, {}, list(commands.items())
    while running or waiting:
        while waiting and (limit is None or len(running) < limit):
            name, cmd = waiting.pop(0)
            log = open(Path(logs) / f"{name.replace('/', '-')}.log", "ab")
            running[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                              start_new_session=True), log)
            say(f"started {name}")
        for name, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                codes[name] = proc.returncode
                log.close()
                del running[name]
                say(f"{name} ended with exit {proc.returncode}")
        if (running or waiting) and time.time() > deadline:
            for name, (proc, log) in running.items():
                _stop(proc)
                log.close()
                codes[name] = "stopped"
                say(f"{name} stopped by the wall-clock guard (resumable from its last checkpoint)")
            for name, _ in waiting:
                codes[name] = "stopped"
                say(f"{name} not started before the wall-clock guard")
            break
        time.sleep(1)
    return codes


def environment():
    """This machine's record (:func:`srlib.environment.record`, with nvidia-smi's line)."""
    from . import environment as env
    return env.record(smi=True)


def run_device(work, out, grid=GRID, seeds=None, overrides=None, budget_s=330, bench_s=90, reserve_s=25, dry=False,
               python=sys.executable):
    """The GPU part (see the module docstring); returns the archive's paths under ``out``.

    Trains every runnable variant of ``grid`` (a grid file) at each of ``seeds`` (default: the grid's) into
    ``work/runs``, with ``overrides`` over the grid's common settings (none by default: the grid's budget;
    --dry: :func:`dry_overrides`). ``budget_s`` is the whole call's wall time; training stops ``reserve_s``
    before its end, leaving time for the archive. The bench gets at most ``bench_s`` and is skipped when
    ``work`` already holds its CSV (a second call continues the runs)."""
    from .ablation import grid_overrides, load_grid, run_dir, runnable, variant_configs
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

    spec = load_grid(grid)
    seeds = list(seeds or spec["seeds"])
    overrides = {**(dry_overrides() if dry else {}), **(overrides or {})}
    pairs = [(v, s) for s in seeds for v in runnable(spec)]
    cfg = variant_configs(grid_overrides(spec, overrides), seeds[0])[spec["reference"]]
    shutil.copyfile(grid, work / GRID_FILE)           # the grid as trained, for gpu-results
    env = environment()
    say(f"gpu_run {'dry ' if dry else ''}on {env.get('gpu') or 'CPU'}; torch {env['torch']}, CUDA {env['cuda']}; "
        f"data root {data_root()}; grid {grid}: {len(pairs)} runs ({', '.join(runnable(spec))} x seeds {seeds}), "
        f"{cfg.steps} steps ({cfg.warmup_steps} shared L1 warm-up); overrides {overrides}; budget {budget_s} s")
    if not dry and not env["cuda_available"]:
        raise GpuRunError("no CUDA device: run with --dry on a CPU")
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
        TrainDataset(cfg.train_sets, None, cfg.crop, cfg.scale, cfg.degradation, cache_dir=work / "cache")
        say("training images cached")
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        where = {"cache_dir": str(work / "cache"), "num_workers": max(1, cores // len(pairs))}   # not what is trained
        commands = {f"seed{s}/{v}": train_command(grid, work / "runs", v, s, {**where, **overrides}, not dry, python)
                    for v, s in pairs}
        # on a GPU every run at once; the --dry path on a CPU one run per core, so that 8 processes importing
        # torch together do not leave each other no time inside the budget
        codes = train_all(commands, work / "logs", t0 + budget_s - reserve_s, say, limit=cores if dry else None)
    except Exception as e:  # noqa: BLE001 -- reported in the log and meta.json
        failure = f"{type(e).__name__}: {e}"
        say(f"training failed: {failure}")
    train_s = time.time() - t_train
    runs = {}
    for v, s in pairs:
        meta_path = run_dir(work / "runs", s, v) / "meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        runs[f"seed{s}/{v}"] = {"variant": v, "seed": s, "exit": codes.get(f"seed{s}/{v}"),
                                "status": meta.get("status", "missing"), "steps_done": meta.get("steps_done", 0),
                                "train_seconds": meta.get("train_seconds"), "vgg": meta.get("vgg"),
                                "precision": meta.get("precision"), "gpu": meta.get("gpu")}
    meta = {"format": FORMAT, "dry": dry, "environment": env, "grid": str(grid), "overrides": overrides,
            "seeds": seeds, "steps": cfg.steps, "warmup_steps": cfg.warmup_steps, "budget_s": budget_s,
            "bench": {"exit": bench_exit, "seconds_limit": bench_s}, "train_wall_s": round(train_s, 1),
            "failure": failure, "wall_s": round(time.time() - t0, 1), "runs": runs,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(work / "meta.json", lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    done = sum(r["status"] == "complete" for r in runs.values())
    say(f"{done} of {len(runs)} runs complete; training wall {train_s:.0f} s")
    logf.close()
    parts = write_archive(work, out)
    size = sum(p.stat().st_size for p in parts)
    print(f"archive: {', '.join(f'{p} ({p.stat().st_size / 2 ** 20:.1f} MiB)' for p in parts)}", flush=True)
    if size > BACK_LIMIT or len(parts) > 8:
        print(f"warning: the archive ({size / 2 ** 20:.1f} MiB in {len(parts)} files) is more than the device "
              f"returns (8 files, {BACK_LIMIT / 2 ** 20:.0f} MiB): run fewer seeds per machine", flush=True)
    return parts


def write_archive(work, out, part_bytes=PART_BYTES):
    """``out/gpu_run.tar.gz`` with meta.json, the grid file, speed.csv, the logs and each run's generator,
    metrics.csv and meta.json (not the resume checkpoints, nor the shared warm-ups' generators); split into
    ``.partNN`` files when larger than ``part_bytes``."""
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    archive = out / ARCHIVE
    for old in out.glob(ARCHIVE + "*"):
        old.unlink()
    keep = ("generator.safetensors", "metrics.csv", "meta.json", GRID_FILE, "*.log", "log.txt", "logs_bench.txt",
            "speed.csv")
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


MODES = ("Inference: GroupNorm calibrated at the training extent, srlib's default (the declared endpoint's).",
         "Inference: whole image, GroupNorm with each image's own statistics (a secondary record).")


def notes(meta):
    """What a GPU run's tables carry beside them: machine, versions, runs not complete, SRGAN's VGG16."""
    env, runs = meta["environment"], meta["runs"]
    cut = [f"{n} ({r['status']}, {r['steps_done']} steps)" for n, r in runs.items() if r["status"] != "complete"]
    vgg = sorted({str(r["vgg"]) for r in runs.values() if r["vgg"] and r["vgg"] != "not used"})
    lines = ["", "GPU run: " + f"{env.get('gpu') or 'CPU'}, torch {env['torch']}, CUDA {env['cuda']}, cuDNN "
             f"{env['cudnn']}; grid {meta['grid']}, seeds {meta['seeds']}, overrides {meta['overrides'] or 'none'}; "
             f"training wall time {meta['train_wall_s']:.0f} s of a {meta['budget_s']} s call. Runs not complete "
             f"(left out of the tables): {', '.join(cut) or 'none'}. SRGAN's VGG16: {'; '.join(vgg) or 'not recorded'}."
             + (f" Training failed: {meta['failure']}" if meta.get("failure") else "")]
    if meta.get("dry"):
        lines.insert(0, "\n**Dry run: tiny models on a CPU, a check of the path, not results.**")
    return "\n".join(lines) + "\n"


def gpu_results(archive, results="results/gpu", work="runs/gpu", datasets=BENCHMARKS, root=None):
    """Unpack ``archive`` into ``work`` (the layout of gpu-train's work folder: the grid's runs in
    ``work/runs``), score its finished runs as the ablation does (:func:`srlib.ablation.score_run`, calibrated
    and whole-image) and write ``results``: ``<name>.md``/``.csv`` (every arm against the grid's reference,
    the declared endpoint first; ``<name>`` the grid file's stem less ``_grid``), ``<name>_whole.*`` (the
    same, whole-image), ``<name>_absolute.*`` (each arm's mean and SD over seeds), ``<name>_table1.md`` (the
    grid's Table 1 beside Wu's), ``<name>_runs.csv``, speed.csv, log.txt and meta.json. Returns the endpoint's table."""
    from . import ablation
    from .evaluate import write_csv
    results, work = Path(results), Path(work)
    meta = unpack(archive, work)
    runs = work / "runs"
    grid = ablation.grid_overrides(ablation.load_grid(work / GRID_FILE), meta["overrides"])
    grid = {**grid, "seeds": meta["seeds"]}
    end = grid["primary_endpoint"]
    grid = ablation.restrict(grid, datasets=None if set(datasets) == set(end["datasets"]) else datasets)
    status = ablation.status(grid, runs)
    done = status[status["trained"]]
    if done.empty:
        raise GpuRunError(f"{archive}: the archive holds no finished run to score")
    for r in done.itertuples():
        print(f"scoring seed{r.seed}/{r.variant} on {', '.join(datasets)}", flush=True)
        for mode in ("calibrated", "whole"):
            ablation.score_run(ablation.run_dir(runs, r.seed, r.variant), datasets, root, inference=mode)
    name = Path(meta["grid"]).stem.removesuffix("_grid")
    order = list(grid["primary_endpoint"]["datasets"]) + ["pooled"]
    results.mkdir(parents=True, exist_ok=True)
    absolute, tables = "", {}
    for mode, suffix, label in (("calibrated", "", MODES[0]), ("whole", "_whole", MODES[1])):
        scores, complete = ablation.collect_scores(grid, runs, perceptual=False, inference=mode)
        tables[mode] = ablation.analyze(grid, scores)
        write_csv(tables[mode], results / f"{name}{suffix}.csv", decimals=4)
        text = f"{label}\n\n" + ablation.markdown(tables[mode], grid, complete) + notes(meta)
        atomic_write(results / f"{name}{suffix}.md", lambda f, text=text: f.write(text.encode()))
        summary, _ = ablation.absolute_scores(scores)
        write_csv(summary, results / f"{name}_absolute{suffix}.csv", decimals=4)
        if mode == "calibrated":             # the grid's Table 1 beside Wu's, under the default inference
            table1 = ablation.grid_table1_markdown(summary, grid, complete, status=status)
            text = table1 + notes(meta)
            atomic_write(results / f"{name}_table1.md", lambda f, text=text: f.write(text.encode()))
        absolute += f"{label}\n\n" + "".join(ablation.absolute_markdown(summary, m, order) + "\n"
                                             for m in ("psnr", "ssim") if m in set(summary["metric"]))
    atomic_write(results / f"{name}_absolute.md", lambda f: f.write((absolute + notes(meta)).encode()))
    write_csv(ablation.status(grid, runs), results / f"{name}_runs.csv")
    for extra in ("speed.csv", "log.txt"):
        if (work / extra).is_file():
            shutil.copyfile(work / extra, results / extra)
    meta["scored"] = {"datasets": list(datasets), "runs": [f"seed{r.seed}/{r.variant}" for r in done.itertuples()],
                      "data_root": str(data_root(root)), "archive": str(archive), "runs_dir": str(runs),
                      "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(results / "meta.json", lambda f: f.write(json.dumps(meta, indent=2, default=str).encode()))
    print(f"wrote {results}/ ({name}.md, {name}_whole.md, {name}_absolute.md and their CSVs, {name}_table1.md, "
          f"{name}_runs.csv, speed.csv, meta.json); the runs stay in {runs}")
    return tables["calibrated"]


# ------------------------------------------------------------------------------------------------- cli


def _pack_cli(args):
    sets = pack_sets(args.grid)
    n = pack(args.out, args.data_root, sets)
    print(f"packed {n} images of {', '.join(sets)} into {args.out}")
    check_travel(args.out)
    return 0


def _train_cli(args):
    from .config import parse_overrides
    try:
        run_device(args.work, args.out, args.grid, args.seeds, parse_overrides(args.set), args.budget, args.bench_s,
                   dry=args.dry)
    except GpuRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _results_cli(args):
    try:
        gpu_results(args.archive, args.results, args.work, args.datasets, args.data_root)
    except GpuRunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
