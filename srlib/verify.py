"""``python -m srlib verify``: re-score the committed generators and bicubic on the benchmarks at hand and
compare every cell with ``results/table1.csv``; names each cell that differs (exit status 1).

Scores are fp32; the default tolerance (0.002 dB PSNR, 0.0002 SSIM) covers the 4 decimals of the CSV and
float differences between CPUs, not a changed model or data.
"""
from pathlib import Path

import pandas as pd

from .data import available
from .evaluate import evaluate, summarize
from .config import LABELS
from .report import default_inference, run_dirs
from .infer import GENERATOR_FILE


def verify(results="results", root=None, datasets=None, tol_psnr=2e-3, tol_ssim=2e-4, progress=True):
    """Rows (method, dataset, protocol, metric, committed, now, ok) for every cell re-scored."""
    results = Path(results)
    table = pd.read_csv(results / "table1.csv")
    wanted = datasets or list(dict.fromkeys(table.dataset))
    sets = [d for d in wanted if d in available([d], root)]
    if not sets:
        raise FileNotFoundError(f"none of {', '.join(wanted)} is under the data root: nothing to verify")
    methods = {"bicubic": LABELS["bicubic"]}
    methods.update({str(d / GENERATOR_FILE): LABELS[m] for m, d in run_dirs(results / "train").items()})
    rows = []
    for method, label in methods.items():
        now = summarize(evaluate(method, sets, root, label=label, progress=progress)).set_index(["dataset", "protocol"])
        old = default_inference(table)       # table1.csv holds whole-image rows beside the default ones
        old = old[old.method == label].set_index(["dataset", "protocol"])
        for (ds, protocol), r in now.iterrows():
            for metric, tol in (("psnr", tol_psnr), ("ssim", tol_ssim)):
                committed = old[metric].get((ds, protocol), float("nan"))
                rows.append(dict(method=label, dataset=ds, protocol=protocol, metric=metric, committed=committed,
                                 now=round(float(r[metric]), 4), ok=abs(committed - r[metric]) <= tol))
    return pd.DataFrame(rows), [d for d in wanted if d not in sets]


def _cli(args):
    rows, skipped = verify(args.results, args.data_root, args.datasets)
    bad = rows[~rows.ok]
    for r in bad.itertuples():
        print(f"DIFFERS: {r.method} {r.dataset} {r.protocol} {r.metric}: committed {r.committed} now {r.now}")
    print(f"verify: {len(rows) - len(bad)} of {len(rows)} cells of {args.results}/table1.csv reproduced"
          + (f"; not checked (no data): {', '.join(skipped)}" if skipped else ""))
    return 1 if len(bad) else 0
