"""Command line: ``python -m srlib <command>`` (also installed as ``srlib``; ``srlib-upscale`` is ``upscale``).

Every command's parser is here; each handler is imported only when its command runs (``module:function``
below), so ``--help`` and the torch-free commands never load torch, and a broken module breaks only its own
commands. Names and defaults the options show come from :mod:`srlib.config` (torch-free).
"""
import argparse
import importlib
import os
import sys
import traceback

from .config import (BENCHMARKS, DEFAULT_TILE, GPU_GRID, INFERENCE, MODELS, PEAK_BF16_TFLOPS, PRECISIONS, PROFILES,
                     gan_models)

def _evaluate(args):
    from .evaluate import evaluate, format_table, summarize, write_csv
    from .data import resolve_datasets
    protocols = ("standard", "paper") if args.protocol == "both" else (args.protocol,)
    datasets = resolve_datasets(args.datasets, args.data_root)
    # several checkpoints may share a run-folder name: label them by path so their scores never merge
    label = (lambda m: m) if len(args.method) > 1 else (lambda m: None)
    frames = [summarize(evaluate(m, datasets, args.data_root, args.scale, protocols, device=args.device,
                                 label=label(m), progress=True, inference=args.inference))
              for m in args.method]
    import pandas as pd
    table = pd.concat(frames, ignore_index=True)
    print(format_table(table))
    if args.csv:
        write_csv(table, args.csv)
        print(f"wrote {args.csv}")
    return 0


def _download(args):
    from .data import data_root
    from .download import WEIGHTS, download, download_weights
    for name in args.names:
        if name in WEIGHTS:
            print(f"{name}: {download_weights(name)}")
        else:
            download(name, data_root(args.data_root), allow_unverified=args.allow_unverified)
    return 0


EXIT_STATUS = """exit status: 0 done; 2 bad input (an image, checkpoint, dataset or download that cannot be
used: a corrupt checkpoint says that --force restarts, a read-only data root where a dataset is missing
names another folder to use); 3 a training run diverged (its last checkpoint is kept); 74 a file could not
be written (disk full, permission denied, read-only folder: the message names the file; in training, that
the last checkpoint is intact and the same command resumes); 75 another process is
writing the same folder (run folder, data root, GPU pack; the message names it and the holder's pid, host
and start time): nothing was changed; 130 stopped by Ctrl-C (the message says where and how to resume).
Faults are one line; --debug or SRLIB_DEBUG=1 adds the traceback."""
EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_WRITE, EXIT_INTERRUPTED = 2, 3, 74, 130


def build_parser():
    p = argparse.ArgumentParser(prog="python -m srlib", description=__doc__.splitlines()[0], epilog=EXIT_STATUS)
    p.add_argument("--debug", action="store_true", help="print the traceback of a fault (also: SRLIB_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_train, _evaluate_parser, _upscale, _download_parser, _prepare, _verify, _calibrate, _ablation,
                _bench, _gpu):
        add(sub)
    return p


def _handler(parser, target):
    """Run ``target`` ('srlib.module:function') on the parsed arguments, importing it only then."""
    def run(args):
        module, name = target.split(":")
        return getattr(importlib.import_module(module), name)(args)
    parser.set_defaults(func=run, handler=target)


def _inference(p, help):
    p.add_argument("--inference", choices=INFERENCE, default="calibrated", help=help)


def _train(sub):
    t = sub.add_parser("train", help="train SRGAN, the attention model or the PSNR baseline", epilog=(
        "One writer per --out: a second process training into the same folder stops at once with exit status "
        "75, naming the holder (pid, host, start time); a run waits for a shared warm-up another run is "
        "writing. Ctrl-C (exit 130), a full disk or a permission denied (74) and a corrupt checkpoint (2) "
        "are one-line errors that say what is intact and how to resume; `python -m srlib --debug train ...` "
        "(or SRLIB_DEBUG=1) adds the traceback."))
    t.add_argument("--model", choices=list(MODELS), required=True)
    t.add_argument("--profile", choices=list(PROFILES), default="quick")
    t.add_argument("--out", required=True, help="run folder (checkpoint.pt, metrics.csv, meta.json)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out (the default)")
    t.add_argument("--force", action="store_true", help="start over even if --out holds a run")
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override config fields, e.g. lr_g=1e-4")
    t.add_argument("--data-root", default=None)
    _handler(t, "srlib.train:_train_cli")


def _evaluate_parser(sub):
    e = sub.add_parser("evaluate", help="score bicubic or checkpoints on benchmark datasets")
    e.add_argument("--method", nargs="+", default=["bicubic"], help="'bicubic' or checkpoint paths")
    e.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    e.add_argument("--protocol", choices=["standard", "paper", "both"], default="both")
    e.add_argument("--scale", type=int, default=4)
    e.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data")
    e.add_argument("--device", default=None)
    _inference(e, "calibrated (default): GroupNorm with the statistics stored at the training extent; "
                  "whole: each image's own statistics (how results/ was scored before calibration)")
    e.add_argument("--csv", default=None, help="write the table to this CSV file")
    _handler(e, "srlib.cli:_evaluate")


def _tile_size(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 disables tiling)")
    return value


def upscale_arguments(p):
    """The ``upscale`` options (also those of the ``srlib-upscale`` console script)."""
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files, folders (their images) or glob patterns")
    p.add_argument("-o", "--out-dir", required=True, help="folder for the PNG outputs (created if needed)")
    p.add_argument("--checkpoint", required=True, help="srlib checkpoint (.pt) of the generator")
    p.add_argument("--tile", type=_tile_size, default=DEFAULT_TILE,
                   help=f"tile side in LR pixels, bounds memory (default {DEFAULT_TILE}; 0 = whole image)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when present)")
    p.add_argument("--suffix", default=None, help="added to each output name (default _x<scale>)")
    p.add_argument("--arch", choices=["srgan", "attention"], default=None,
                   help="refuse a checkpoint of another generator")
    p.add_argument("--scale", type=int, default=None, help="refuse a checkpoint of another scale")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 on CUDA, fp32 on CPU; bf16: also on CPU (fast with AMX / AVX512-BF16)")
    p.add_argument("--low-memory", action="store_true",
                   help="attention generator: run it entirely in tiles (memory bounded by --tile); its "
                        "calibrated GroupNorm is local, only channel attention then sees one tile at a time")
    _inference(p, "calibrated (default, as scoring): GroupNorm with the statistics stored at the training "
                  "extent; whole: each image's own statistics (colours shift; for comparison)")
    _handler(p, "srlib.upscale:_run")


def _upscale(sub):
    upscale_arguments(sub.add_parser("upscale", help="upscale your own images with a checkpoint",
                                     description="Upscale your own images with a trained checkpoint."))


def _download_parser(sub):
    d = sub.add_parser("download", help="download datasets (DIV2K, the benchmark pack, ...) into the data root, "
                                        "or torchvision's weights (vgg16, alexnet) into torch.hub's cache")
    d.add_argument("names", nargs="+")
    d.add_argument("--data-root", default=None)
    d.add_argument("--allow-unverified", action="store_true", help="accept archives without a known sha256")
    _handler(d, "srlib.cli:_download")


def _prepare(sub):
    p = sub.add_parser("prepare", help="check (and fetch) every dataset a run_all profile needs")
    p.add_argument("config", help="a run_all config, e.g. configs/quick.yaml")
    p.add_argument("--data-root", default=None)
    p.add_argument("--check-only", action="store_true", help="only report what is missing")
    _handler(p, "srlib.prepare:_cli")


def _verify(sub):
    p = sub.add_parser("verify", help="re-score the committed generators and compare with results/table1.csv")
    p.add_argument("--results", default="results")
    p.add_argument("--datasets", nargs="+", default=None, help="default: every dataset of table1.csv at hand")
    p.add_argument("--data-root", default=None)
    _handler(p, "srlib.verify:_cli")


def _calibrate(sub):
    c = sub.add_parser("calibrate", help="store training-extent GroupNorm statistics in finished runs' generators")
    c.add_argument("runs", nargs="+", metavar="RUN_FOLDER", help="folders holding generator.safetensors and meta.json")
    c.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data (the runs' training images)")
    _handler(c, "srlib.calibration:_cli")


def _ablation(sub):
    a = sub.add_parser("ablation", help="train and score the runs of an ablation grid (resumable)")
    a.add_argument("grid", help="grid file, e.g. configs/ablation_grid.yaml")
    a.add_argument("--runs", default="runs/ablation", help="runs folder (default: runs/ablation)")
    a.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the grid's seeds")
    a.add_argument("--variants", nargs="+", default=None, help="default: every runnable variant")
    a.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    a.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data")
    a.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override the grid's common fields")
    a.add_argument("--progress", action="store_true", help="progress bars")
    a.add_argument("--perceptual-datasets", nargs="*", default=[], metavar="DATASET",
                   help="also score the perceptual measures on these (e.g. Set5 Set14); default: none")
    a.add_argument("--niqe-set", default="quick-train", help="HR images NIQE is fitted on (default quick-train)")
    a.add_argument("--jobs", type=int, default=1, help="processes at once, seeds dealt out among them (GPU)")
    a.add_argument("--no-score", action="store_true", help="train only; score later (run_all's analysis does)")
    a.add_argument("--records", default=None, metavar="DIR",
                   help="committed records of finished runs (e.g. results/paper-budget/records): runs with a "
                        "record there are not trained again")
    _handler(a, "srlib.ablation:_cli")


def _bench(sub):
    b = sub.add_parser("bench", help="measure training, data loading and inference speed against a "
                                     "straightforward implementation")
    size = b.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="crop 96 only, fewer steps, no 2048x2048 inference")
    size.add_argument("--tiny", action="store_true", help="tiny models and inputs: a dry run in seconds")
    b.add_argument("--out", default=None, help="write the table to this CSV (e.g. results/speed.csv)")
    b.add_argument("--data-root", default=None,
                   help="load T91/BSD200/DIV2K from here (default: $SRLIB_DATA, else data/, else the demo images)")
    b.add_argument("--device", default=None, help="default: CUDA when present, else CPU")
    b.add_argument("--compile", action="store_true", help="also try torch.compile on srlib's path")
    b.add_argument("--amp", choices=["auto", "fp32", "bf16"], default="auto",
                   help="srlib precision: auto = bf16 on CUDA, fp32 and (native bf16 CPUs) bf16 on CPU")
    b.add_argument("--peak-tflops", type=float, default=None,
                   help="bf16 dense peak for the fraction-of-peak rows (default on CUDA: $PEAK_BF16_TFLOPS "
                        f"or {PEAK_BF16_TFLOPS:g})")
    b.add_argument("--parts", nargs="+", choices=["train", "data", "inference"],
                   default=["train", "data", "inference"])
    b.add_argument("--models", nargs="+", choices=gan_models(), default=None,
                   help="GAN models to time (default: every registered one)")
    b.add_argument("--crops", nargs="+", type=int, default=None)
    b.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads during the run (default: unchanged; 1 can win on a busy shared CPU)")
    b.add_argument("--steps", type=int, default=None, help="timed steps per path")
    b.add_argument("--warmup", type=int, default=None, help="untimed steps per path (>= 1)")
    _handler(b, "srlib.bench:_bench_cli")


def _gpu(sub):
    p = sub.add_parser("gpu-pack", help="pack the GPU run's images into a carried data root; check the size")
    p.add_argument("--out", default="cache/gpu_pack", help="pack folder (ignored by git; carried to the GPU)")
    p.add_argument("--grid", default=GPU_GRID, help=f"the grid whose data is packed (default {GPU_GRID})")
    p.add_argument("--data-root", default=None)
    _handler(p, "srlib.gpurun:_pack_cli")

    t = sub.add_parser("gpu-train", help="on the GPU: bench, every variant x seed of the grid, the archive")
    t.add_argument("--work", default="runs/gpu_run", help="work folder; a second call continues its runs")
    t.add_argument("--out", required=True, help="folder for the archive ($OUT on the device)")
    t.add_argument("--grid", default=GPU_GRID, help=f"grid file (default {GPU_GRID}, the CPU's paper-budget)")
    t.add_argument("--seeds", nargs="+", type=int, default=None, help="default: the grid's")
    t.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="override the grid's common fields, as `srlib ablation --set` (default: none)")
    t.add_argument("--budget", type=float, default=330, help="wall seconds of the whole call")
    t.add_argument("--bench-s", type=float, default=90, help="wall seconds the bench may take at most")
    t.add_argument("--dry", action="store_true", help="the smoke profile's tiny settings on the CPU")
    _handler(t, "srlib.gpurun:_train_cli")

    r = sub.add_parser("gpu-results", help="score a gpu-train archive's runs as the ablation; write results/gpu")
    r.add_argument("archive", help="gpu_run.tar.gz, its first .partNN, or the folder holding them")
    r.add_argument("--results", default="results/gpu")
    r.add_argument("--work", default="runs/gpu", help="unpacked here (its runs/: the grid's runs folder)")
    r.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    r.add_argument("--data-root", default=None)
    _handler(r, "srlib.gpurun:_results_cli")


def upscale_main(argv=None):
    """Entry point of the ``srlib-upscale`` console script: ``python -m srlib upscale`` under its own name."""
    p = argparse.ArgumentParser(prog="srlib-upscale", description="Upscale your own images with a trained checkpoint.")
    upscale_arguments(p)
    args = p.parse_args(argv)
    return args.func(args)


def main(argv=None):
    """Run one command; a fault is reported in one line (see :data:`EXIT_STATUS`), with its traceback
    under ``--debug`` or ``SRLIB_DEBUG=1``."""
    args = build_parser().parse_args(argv)
    from .download import DownloadError
    from .errors import CheckpointError, DatasetNotFound, RunInterrupted, TrainingDiverged
    from .io import WRITE_ERRNOS, ImageError, WriteError
    from .lock import EXIT_LOCKED, FolderLocked
    try:
        return args.func(args)
    except (ImageError, CheckpointError, DatasetNotFound, DownloadError) as e:
        return _fault(args, e, EXIT_BAD_INPUT)
    except TrainingDiverged as e:
        return _fault(args, e, EXIT_DIVERGED)
    except FolderLocked as e:
        return _fault(args, e, EXIT_LOCKED)
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        plain = not isinstance(e, WriteError) and e.filename is not None      # WriteError says it all
        return _fault(args, e, EXIT_WRITE, f"{e.filename}: {e.strerror}; fix that, then the same command "
                                           f"continues" if plain else None)
    except KeyboardInterrupt as e:
        return _fault(args, e, EXIT_INTERRUPTED, None if isinstance(e, RunInterrupted) else
                      "interrupted (Ctrl-C); files are written whole or not at all: the same command continues")


def _fault(args, e, code, message=None):
    """Print ``error: <message>`` (default: the exception's), after its traceback when debugging; return ``code``."""
    if args.debug or os.environ.get("SRLIB_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    print(f"error: {message or e}", file=sys.stderr, flush=True)
    return code
