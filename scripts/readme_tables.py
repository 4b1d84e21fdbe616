"""The README's result blocks, generated from results/ (so that every number there is copied, not typed).

Each block sits in README.md between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``:

    python scripts/readme_tables.py [--results results] --write    # refill every block of README.md
    python scripts/readme_tables.py --check                        # exit 1 naming each block that differs
    python scripts/readme_tables.py                                # print the blocks
"""
import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from srlib.config import LABELS
from srlib.report import loss_accounting, run_dirs

TOP = Path(__file__).resolve().parents[1]


def training_summary(results):
    runs = run_dirs(results / "train")
    late = []   # runs validated before calibration existed: their validation scores are whole-image ones
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
        if str(meta.get("calibration", {}).get("when", "")).startswith("after training"):
            late.append(LABELS[model])
        adv = f"{acc['adversarial'][0]:.2g} -> {acc['adversarial'][1]:.2g}" if "adversarial" in acc else "–"
        lines.append(f"| {LABELS[model]} | {int(last.step)} ({warm} + {int(last.step) - warm}) | "
                     f"{last.tune_psnr:.2f} / {last.tune_ssim:.4f} | {last.psnr:.2f} / {last.ssim:.4f} | {adv} | "
                     f"{meta['train_seconds'] / 60:.1f} min |")
    lines.append("\nHeld-out and Set5 columns: the last validation during training (metrics.csv)."
                 + (f" {', '.join(late)}: validated with whole-image inference, as the runs predate calibration "
                    "(calibrated afterwards; Table 1 has their calibrated scores)." if late else ""))
    for w in sorted((results / "train" / "warmup").glob("*/meta.json")):
        meta = json.loads(w.read_text())
        lines.append(f"\nShared warm-up `{w.parent.name}`: {meta['steps_done']} steps, "
                     f"{meta['train_seconds'] / 60:.1f} min, {meta['precision']} on {meta['cpu']}.")
    return "\n".join(lines)


def speed_table(results):
    df = pd.read_csv(results / "speed.csv")
    env = df[df.measurement == "environment"]
    lines = ([f"Measured on: {env.config.iloc[0]} ({re.sub(r'; load average [0-9.]+', '', env.note.iloc[0])}).", ""]
             if len(env) else ["Measured on: not recorded (a speed.csv from before srlib recorded its machine).", ""])
    lines += ["| measurement | config | srlib | naive | unit | ratio |", "|---|---|---|---|---|---|"]
    for r in df.itertuples():
        if r.measurement in ("train_step", "data_loading", "inference", "inference_rss"):
            lines.append(f"| {r.measurement} | {r.config} | {r.srlib:.4g} | {r.naive:.4g} | {r.unit} "
                         f"| {r.ratio:.3g}x |")
    return "\n".join(lines)


def offset_table(results, level=1.0):
    """Per method and inference, on each benchmark: the share of images whose mean colour (SR minus HR, 8-bit
    levels) is within +-``level`` in every channel, and the set's mean R / G / B offset (per_image.csv)."""
    df = pd.read_csv(results / "per_image.csv", dtype={"image": str})
    if "offset_r" not in df:
        raise FileNotFoundError("per_image.csv has no offset columns (scored before srlib recorded them)")
    df = df[df.protocol == "standard"]
    off = ["offset_r", "offset_g", "offset_b"]
    sets = list(dict.fromkeys(df.dataset))
    lines = [f"| method | inference | {' | '.join(sets)} |", "|---|---|" + "---|" * len(sets)]
    for (method, inference), g in df.groupby(["method", "inference"], sort=False, dropna=False):
        cells = []
        for ds in sets:
            d = g[g.dataset == ds]
            if d.empty:
                cells.append("–")
                continue
            within = (d[off].abs() <= level).all(axis=1).mean()
            mean = " / ".join(f"{v:+.1f}" for v in d[off].mean())
            cells.append(f"{100 * within:.0f}% ({mean})")
        mode = "–" if pd.isna(inference) else inference
        lines.append(f"| {method} | {mode} | {' | '.join(cells)} |")
    return "\n".join(lines)


GAPS = [  # (row, (method, inference), (method, inference)); inference None: the default one
    ("Attention - SRGAN (ours), default inference", ("Attention (ours)", None), ("SRGAN (ours)", None)),
    ("Attention - SRGAN (ours), attention whole-image", ("Attention (ours)", "whole"), ("SRGAN (ours)", None)),
    ("Attention: default - whole-image inference", ("Attention (ours)", None), ("Attention (ours)", "whole")),
    ("Attention - PSNR baseline, default inference", ("Attention (ours)", None), ("PSNR baseline (ours)", None)),
    ("Attention - Bicubic, default inference", ("Attention (ours)", None), ("Bicubic", None)),
    ("SRGAN (ours) - Bicubic", ("SRGAN (ours)", None), ("Bicubic", None)),
]


def gap_table(results, protocol="standard"):
    """Differences of mean PSNR (dB) / SSIM between methods and inference modes, per benchmark (table1.csv)."""
    df = pd.read_csv(results / "table1.csv")
    if "inference" not in df:
        raise FileNotFoundError("table1.csv has no inference column (scored before calibration)")
    df = df[df.protocol == protocol]
    sets = list(dict.fromkeys(df.dataset))

    def pick(method, inference):
        rows = df[(df.method == method) & ((df.inference == "whole") if inference else (df.inference != "whole"))]
        return rows.set_index("dataset")[["psnr", "ssim"]]
    lines = [f"| {protocol} protocol: difference | {' | '.join(sets)} |", "|---|" + "---|" * len(sets)]
    for row, a, b in GAPS:
        d = pick(*a) - pick(*b)
        if d.dropna().empty:
            continue
        cells = ["–" if ds not in d.index or d.loc[ds].isna().any() else
                 f"{d.loc[ds, 'psnr']:+.2f} / {d.loc[ds, 'ssim']:+.4f}" for ds in sets]
        lines.append(f"| {row} | {' | '.join(cells)} |")
    return "\n".join(lines)


def extent_table(results, datasets=("quick-holdout", "Set5")):
    """The extent sweep (extent.csv): each generator on tiles of exactly N LR px and on the whole image, in
    both inference modes, and the reflect-padding probe; per cell PSNR (dB) and mean R / G / B offset."""
    df = pd.read_csv(results / "extent.csv")
    out = []
    for ds in datasets:
        d = df[(df.dataset == ds) & df.probe.isin(["sweep", "padding"])]
        if d.empty:
            continue
        extents = sorted(set(d.extent) - {0}) + [0]
        names = [f"{n} px" if n else "whole image" for n in extents]
        out += [f"**{ds}** ({int(d.images.iloc[0])} images): PSNR (dB), mean offset R / G / B (levels of 255)", "",
                f"| generator | inference | {' | '.join(names)} |", "|---|---|" + "---|" * len(extents)]
        single = {gen for gen, g in d[d.probe == "sweep"].groupby("generator") if g.inference.nunique() == 1}
        for (gen, probe, inference), g in d.groupby(["generator", "probe", "inference"], sort=False):
            by = g.set_index("extent")
            cells = ["–" if n not in by.index else
                     f"{by.loc[n, 'psnr']:.2f}, {by.loc[n, 'offset_r']:+.1f} / {by.loc[n, 'offset_g']:+.1f} / "
                     f"{by.loc[n, 'offset_b']:+.1f}" for n in extents]
            mode = "one mode (no GroupNorm)" if gen in single else inference
            mode += ", reflect padding" if probe == "padding" else ""
            out.append(f"| {gen} | {mode} | {' | '.join(cells)} |")
        out.append("")
    if not out:
        raise FileNotFoundError(f"extent.csv has no sweep on {datasets}")
    return "\n".join(out + probe_table(df)).rstrip()


def probe_table(df):
    """extent.csv's layer, calibration and gate probes (whole image): for the layer probe, the one layer
    whose calibration alone helps most and the layer whose omission alone hurts most (the others in a range)."""
    out = []
    for gen, g in df[df.probe.isin(["layer", "calibration", "gates"])].groupby("generator", sort=False):
        ds = g.dataset.iloc[0]
        out += [f"**Probes of {gen}** on {ds} ({int(g.images.iloc[0])} images), whole image: PSNR (dB), mean offset "
                "R / G / B (levels of 255)", "", "| probe | setting | result |", "|---|---|---|"]
        cell = lambda r: f"{r.psnr:.2f}, {r.offset_r:+.1f} / {r.offset_g:+.1f} / {r.offset_b:+.1f}"  # noqa: E731
        layer = g[g.probe == "layer"]
        for prefix, pick in (("only layer", "idxmax"), ("all but layer", "idxmin")):
            rows = layer[layer.setting.str.startswith(prefix)]
            if rows.empty:
                continue
            best = rows.loc[getattr(rows.psnr, pick)()]
            rest = rows.drop(index=best.name)
            out.append(f"| GroupNorm layers calibrated (of {len(rows)}, module order) | {best.setting} | {cell(best)} "
                       f"(the other {len(rest)}: {rest.psnr.min():.2f} to {rest.psnr.max():.2f} dB) |")
        for r in g[g.probe == "calibration"].itertuples():
            out.append(f"| calibration from | {r.setting} | {cell(r)} |")
        for r in g[g.probe == "gates"].itertuples():
            setting = r.setting.replace("|", "\\|")   # a pipe inside a cell would split it
            out.append(f"| channel-attention gates, {r.inference} | {setting} | {r.psnr:.4f} |")
        out.append("")
    return out


def explore_timing(results, path=TOP / "docs" / "explore_timing.csv"):
    """The explorer's cost per step (``docs/explore_timing.csv``, written by scripts/explore_timing.py, not by
    run_all: the explorer is not a step of it), with the machine it was measured on."""
    df = pd.read_csv(path)
    first = df.iloc[0]
    bf16 = "with" if str(first.cpu_bf16_native) == "True" else "without"
    lines = [f"Measured on: {first.cpu} ({bf16} native bf16), torch on {first.threads} threads, load average "
             f"{first.load_average} when it ended; image {first.image}.", "",
             "| step | wall (s) | CPU (s) |", "|---|---|---|"]
    lines += [f"| {r.step} | {r.wall_s:.1f} | {r.cpu_s:.1f} |" for r in df.itertuples()]
    return "\n".join(lines)


def _markdown(name, demote=0):
    def block(results):
        text = (results / name).read_text().strip()
        return re.sub(r"^(#+) ", lambda m: m.group(1) + "#" * demote + " ", text, flags=re.M)
    return block


BLOCKS = {
    "table1": _markdown("table1.md", demote=1),
    "training": training_summary,
    "perceptual": _markdown("perceptual.md", demote=1),
    "perceptual_control": _markdown("perceptual_control.md"),
    "speed": speed_table,
    "offsets": offset_table,
    "gaps": gap_table,
    "extent": extent_table,
    "explore_timing": explore_timing,
}
MARKER = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n?<!-- /results:(?P=name) -->)", re.S)


def blocks(results):
    """Each generated block by name (a block whose file is missing is left out)."""
    out = {}
    for name, make in BLOCKS.items():
        try:
            out[name] = make(results)
        except FileNotFoundError:
            continue
    return out


def fill(readme, generated):
    """``readme`` with every marked block replaced by its generated text; unknown block names are an error."""
    def sub(m):
        if m["name"] not in BLOCKS:
            raise KeyError(f"README block results:{m['name']} has no generator in scripts/readme_tables.py")
        return m.group(1) + generated.get(m["name"], m["body"]) + "\n" + m.group(4).lstrip("\n")   # also empty
    return MARKER.sub(sub, readme)


def stale(readme, generated):
    """Names of the marked blocks of ``readme`` whose text differs from the generated one."""
    return [m["name"] for m in MARKER.finditer(readme) if m["name"] in generated and m["body"] != generated[m["name"]]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=TOP / "results")
    p.add_argument("--readme", type=Path, default=TOP / "README.md")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="refill README.md's blocks")
    g.add_argument("--check", action="store_true", help="exit 1 if a block of README.md differs")
    args = p.parse_args(argv)
    generated = blocks(args.results)
    if args.write:
        args.readme.write_text(fill(args.readme.read_text(), generated))
    elif args.check:
        bad = stale(args.readme.read_text(), generated)
        if bad:
            sys.exit(f"README blocks differ from {args.results}: {', '.join(bad)} "
                     "(python scripts/readme_tables.py --write)")
    else:
        for name, text in generated.items():
            print(f"<!-- results:{name} -->\n{text}\n<!-- /results:{name} -->\n")


if __name__ == "__main__":
    main()
