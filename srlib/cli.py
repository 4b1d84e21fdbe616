"""Command line: ``python -m srlib <command>`` (also installed as ``srlib``).

Commands: evaluate, download (more are added by the modules that implement them).
"""
import argparse
import sys

from .data import BENCHMARKS


def _evaluate(args):
    from .evaluate import evaluate, format_table, summarize, write_csv
    from .data import resolve_datasets
    protocols = ("standard", "paper") if args.protocol == "both" else (args.protocol,)
    datasets = resolve_datasets(args.datasets, args.data_root)
    # several checkpoints may share a run-folder name: label them by path so their scores never merge
    label = (lambda m: m) if len(args.method) > 1 else (lambda m: None)
    frames = [summarize(evaluate(m, datasets, args.data_root, args.scale, protocols, device=args.device,
                                 label=label(m), progress=True))
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


def build_parser():
    p = argparse.ArgumentParser(prog="python -m srlib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("evaluate", help="score bicubic or checkpoints on benchmark datasets")
    e.add_argument("--method", nargs="+", default=["bicubic"], help="'bicubic' or checkpoint paths")
    e.add_argument("--datasets", nargs="+", default=list(BENCHMARKS))
    e.add_argument("--protocol", choices=["standard", "paper", "both"], default="both")
    e.add_argument("--scale", type=int, default=4)
    e.add_argument("--data-root", default=None, help="default: $SRLIB_DATA, else ./data")
    e.add_argument("--device", default=None)
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
    for mod in ("train", "upscale", "bench", "prepare", "verify", "ablation", "gpurun"):
        try:
            m = __import__(f"srlib.{mod}", fromlist=["add_cli"])
        except ModuleNotFoundError as e:
            if e.name != f"srlib.{mod}":
                raise
            continue
        regs.append(m.add_cli)
    return regs


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .io import ImageError
    from .infer import CheckpointError
    from .data import DatasetNotFound
    try:
        return args.func(args)
    except (ImageError, CheckpointError, DatasetNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
