"""Time notebook 07_explore's work on the CPU for a 512x512 image (Set5 baby: 128x128 LR -> 512x512), as the
README states it, with the attention model and SRGAN: the in-memory calibration of the committed attention
generator (once per session); a new image as the widgets first show it (both models in the calibrated mode,
the figure, the table with its perceptual measures, the extent plot so far); a move of the inference slider to
a mode not yet computed (one more pass of each model, the same redraw); and "plot every extent" (the other
modes).

    python scripts/explore_timing.py [IMAGE]

Needs the data root (SRLIB_DATA) with Set5 and quick-train. Prints each step's wall time and this process's CPU
time (all its threads), and the load average, which says whether the cores were shared: on shared cores the wall
time is mostly waiting, the CPU time is the work."""
import os
import sys
import time
import warnings

import matplotlib
import matplotlib.pyplot as plt
import torch

from srlib import explore
from srlib.data import project_path

RUNS = project_path("results/train")


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


def main(image="Set5/baby"):
    matplotlib.use("Agg")
    warnings.simplefilter("ignore")
    times = {}
    start = clock()
    attention = explore.load(RUNS / "attention" / "generator.safetensors", "attention")
    times["calibration in memory (attention, once per session)"] = since(start)
    gens, measures = [attention, explore.load(RUNS / "srgan" / "generator.safetensors", "srgan")], explore.measures()
    start = clock()
    ex = explore.Explorer(explore.load_picture(image), gens, measures)
    view(ex, "calibrated")
    times["a new image: both models calibrated, figure, table, extent plot"] = since(start)
    start = clock()
    view(ex, "whole")
    times["the slider to a mode not yet computed (whole image)"] = since(start)
    start = clock()
    view(ex, "whole", every=True)
    times["plot every extent (the other modes)"] = since(start)
    h, w = ex.picture.hr.shape[:2]
    print(f"{image} ({w}x{h} HR), attention + SRGAN, torch {torch.get_num_threads()} threads, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}:")
    for what, (wall, cpu) in times.items():
        print(f"  {what}: {wall:.1f} s wall, {cpu:.1f} s CPU")


if __name__ == "__main__":
    main(*sys.argv[1:])
