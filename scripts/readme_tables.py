"""Print the README's result tables from results/ (so that every number there is copied, not typed).

    python scripts/readme_tables.py [results_dir]
"""
import json
import sys
from pathlib import Path

import pandas as pd

from srlib.study import LABELS, loss_accounting, run_dirs


def training_summary(results):
    runs = run_dirs(results / "train")
    lines = ["| run | steps (shared L1 warm-up + own) | held-out PSNR / SSIM | Set5 PSNR / SSIM (standard) | "
             "adversarial share of G's gradient, first -> last GAN validation | own training time |",
             "|---|---|---|---|---|---|"]
    for model, d in runs.items():
        meta = json.loads((d / "meta.json").read_text())
        df = pd.read_csv(d / "metrics.csv")
        last = df.iloc[-1]
        shared = df[df.shared.notna() & (df.shared != "")]
        warm = int(shared.step.max()) if len(shared) else 0
        acc = loss_accounting(d)
        adv = f"{acc['adversarial'][0]:.2g} -> {acc['adversarial'][1]:.2g}" if "adversarial" in acc else "–"
        lines.append(f"| {LABELS[model]} | {int(last.step)} ({warm} + {int(last.step) - warm}) | "
                     f"{last.tune_psnr:.2f} / {last.tune_ssim:.4f} | {last.psnr:.2f} / {last.ssim:.4f} | {adv} | "
                     f"{meta['train_seconds'] / 60:.1f} min |")
    for w in sorted((results / "train" / "warmup").glob("*/meta.json")):
        meta = json.loads(w.read_text())
        lines.append(f"\nShared warm-up `{w.parent.name}`: {meta['steps_done']} steps, "
                     f"{meta['train_seconds'] / 60:.1f} min, {meta['precision']} on {meta['cpu']}.")
    return "\n".join(lines)


def speed_table(results):
    df = pd.read_csv(results / "speed.csv")
    lines = ["| measurement | config | srlib | naive | unit | ratio |", "|---|---|---|---|---|---|"]
    for r in df.itertuples():
        if r.measurement in ("train_step", "data_loading", "inference", "inference_rss"):
            lines.append(f"| {r.measurement} | {r.config} | {r.srlib:.4g} | {r.naive:.4g} | {r.unit} "
                         f"| {r.ratio:.3g}x |")
    return "\n".join(lines)


def main():
    results = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    table1 = (results / "table1.md").read_text()
    print(table1.replace("### ", "#### "))
    print(training_summary(results))
    print()
    print(speed_table(results))
    for name in ("perceptual.md", "perceptual_control.md"):
        if (results / name).exists():
            print(f"\n{name}:\n" + (results / name).read_text())


if __name__ == "__main__":
    main()
