"""Time notebook 07_explore's work on the CPU for a 512x512 image (Set5 baby: 128x128 LR -> 512x512), as the
README states it, with the attention model and SRGAN: the in-memory calibration of the committed attention
generator (once per session); a new image as the widgets first show it (both models in the calibrated mode,
the figure, the table with its perceptual measures, the extent plot so far); a move of the inference slider to
a mode not yet computed (one more pass of each model, the same redraw); and "plot every extent" (the other
modes).

    python scripts/explore_timing.py [IMAGE] [--out docs/explore_timing.csv]

Then the same image's HR file taken as the LR input (a 512x512 LR, a 2048x2048 output): a new image only.
Needs the data root (SRLIB_DATA) with Set5 and quick-train. Prints each step's wall time and this process's CPU
time (all its threads), and the load average, which says whether the cores were shared: on shared cores the wall
time is mostly waiting, the CPU time is the work; writes the same to ``--out`` (the README quotes that file),
with the machine's CPU model and bf16 support."""
import argparse
import csv
import os
import tempfile
import time
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import torch

from srlib import explore
from srlib.data import project_path
from srlib.environment import cpu_bf16_native, cpu_model

RUNS = project_path("results/train")
OUT = Path(__file__).resolve().parent.parent / "docs" / "explore_timing.csv"


def view(ex, mode, every=False):
    """What the widgets' redraw computes: the table, the figure and the extent plot."""
    ex.table(mode)
    plt.close(explore.plot_side_by_side(ex, mode))
    sweeps = {g.label: ex.sweep(n, computed=not every) for n, g in ex.gens.items()}
    plt.close(explore.plot_sweep(sweeps, ex.modes(), mode))


def clock():
    return time.perf_counter(), time.process_time()


def since(start):
    """(wall, CPU) seconds since ``start`` (:func:`clock`); CPU: this process, all its threads."""
    return tuple(now - then for now, then in zip(clock(), start))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image", nargs="?", default="Set5/baby")
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    matplotlib.use("Agg")
    warnings.simplefilter("ignore")
    times = {}
    start = clock()
    attention = explore.load(RUNS / "attention" / "generator.safetensors", "attention")
    times["loading the attention generator (calibrated in memory only if its file holds no statistics)"] = since(start)
    gens, measures = [attention, explore.load(RUNS / "srgan" / "generator.safetensors", "srgan")], explore.measures()
    start = clock()
    ex = explore.Explorer(explore.load_picture(args.image), gens, measures)
    view(ex, "calibrated")
    times["a new image: both models calibrated, figure, table, extent plot"] = since(start)
    start = clock()
    view(ex, "whole")
    times["the slider to a mode not yet computed (whole image)"] = since(start)
    start = clock()
    view(ex, "whole", every=True)
    times["plot every extent (the other modes)"] = since(start)
    h, w = ex.picture.hr.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:        # the HR as a file, taken as the LR input
        from PIL import Image
        path = Path(tmp) / "lr.png"
        Image.fromarray(ex.picture.hr).save(path)
        start = clock()
        big = explore.Explorer(explore.load_picture(path, as_lr=True), gens, measures)
        view(big, "calibrated")
        times[f"a {w}x{h} file as the LR input ({4 * w}x{4 * h} output): a new image"] = since(start)
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"{args.image} ({w}x{h} HR), attention + SRGAN, torch {torch.get_num_threads()} threads, load average "
          f"{load}:")
    for what, (wall, cpu) in times.items():
        print(f"  {what}: {wall:.1f} s wall, {cpu:.1f} s CPU")
    with open(args.out, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["step", "wall_s", "cpu_s", "image", "threads", "load_average", "cpu", "cpu_bf16_native"])
        for what, (wall, cpu) in times.items():
            out.writerow([what, f"{wall:.1f}", f"{cpu:.1f}", args.image, torch.get_num_threads(), load,
                          cpu_model(), cpu_bf16_native()])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
