"""Command line: ``python -m srlib <command>`` (also installed as ``srlib``).

Commands: evaluate, download (more are added by the modules that implement them).
"""
import argparse
import os
import sys
import traceback

from .data import BENCHMARKS


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

    e = sub.add_parser("evaluate", help="score bicubic or checkpoints on benchmark datasets")
    e.add_argument("--method", nargs="+", default=["bicubic"], help="'bicubic' or checkpoint paths")
    e.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    e.add_argument("--protocol", choices=["standard", "paper", "both"], default="both")
    e.add_argument("--scale", type=int, default=4)
    e.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data")
    e.add_argument("--device", default=None)
    e.add_argument("--inference", choices=["calibrated", "whole"], default="calibrated",
                   help="calibrated (default): GroupNorm with the statistics stored at the training extent; "
                        "whole: each image's own statistics (as srlib <= 0.4 scored)")
    e.add_argument("--csv", default=None, help="write the table to this CSV file")
    e.set_defaults(func=_evaluate)

    d = sub.add_parser("download", help="download datasets (DIV2K, the benchmark pack, ...) into the data root, "
                                        "or torchvision's weights (vgg16, alexnet) into torch.hub's cache")
    d.add_argument("names", nargs="+")
    d.add_argument("--data-root", default=None)
    d.add_argument("--allow-unverified", action="store_true", help="accept archives without a known sha256")
    d.set_defaults(func=_download)

    for register in _extensions():
        register(sub)
    return p


def _extensions():
    """Sub-commands defined next to their implementation (train, upscale, bench)."""
    regs = []
    for mod in ("train", "upscale", "bench", "prepare", "verify", "ablation", "gpurun", "calibration"):
        try:
            m = __import__(f"srlib.{mod}", fromlist=["add_cli"])
        except ModuleNotFoundError as e:
            if e.name != f"srlib.{mod}":
                raise
            continue
        regs.append(m.add_cli)
    return regs


def main(argv=None):
    """Run one command; a fault is reported in one line (see :data:`EXIT_STATUS`), with its traceback
    under ``--debug`` or ``SRLIB_DEBUG=1``."""
    args = build_parser().parse_args(argv)
    from .io import WRITE_ERRNOS, ImageError, WriteError
    from .infer import CheckpointError
    from .data import DatasetNotFound
    from .download import DownloadError
    from .lock import EXIT_LOCKED, FolderLocked
    from .train import TrainingDiverged
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
        from .train import RunInterrupted
        return _fault(args, e, EXIT_INTERRUPTED, None if isinstance(e, RunInterrupted) else
                      "interrupted (Ctrl-C); files are written whole or not at all: the same command continues")


def _fault(args, e, code, message=None):
    """Print ``error: <message>`` (default: the exception's), after its traceback when debugging; return ``code``."""
    if args.debug or os.environ.get("SRLIB_DEBUG", "") not in ("", "0"):
        traceback.print_exc()
    print(f"error: {message or e}", file=sys.stderr, flush=True)
    return code
