"""The README's numbers: result blocks generated from results/, and every other number given its source.

Each block sits in README.md between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` and is generated
by ``BLOCKS[NAME]`` (so that every number there is copied, not typed). A number in the prose (outside blocks,
code spans and fenced code) has one of three sources:

- a cell of a CSV, printed with a format spec and checked exactly:
  ``<!--cell:results/ablation.csv[comparison=no_norm - paper_block;dataset=pooled;metric=psnr].mean:+.2f-->+1.61
  <!--/cell-->`` (the selection must pick one row);
- an inline value that no file holds as printed (a difference, a bound, a count), computed by ``VALUES[NAME]``:
  ``<!--v:NAME-->0.11<!--/v-->``;
- a tag in its paragraph (a list item is a paragraph of its own) naming where its numbers come from:

    <!-- numbers: results/speed.csv configs/quick.yaml -->     each number is found in one of these files, at
                                                               the precision printed (a signed one with its sign)
    <!-- numbers: results/per_image.csv[image=butterfly] -->   only these rows of a CSV
    <!-- numbers: external: Wu (2024), Table 1 -->             quoted from outside the repository (named)

  A source that holds more than ``MAX_POOL`` numbers matches almost anything and is refused: select rows, or use
  a cell. A quotation inside a paragraph is ``<!--ext:SOURCE-->text<!--/ext-->``.

:func:`unsourced` lists every prose number without a source or not found in it, :func:`stale_cells` every cell
that differs from its file; the README test fails on any.

    python scripts/readme_tables.py [--results results] --write    # refill every block and value of README.md
    python scripts/readme_tables.py --check                        # exit 1 naming each block or number at fault
    python scripts/readme_tables.py                                # print the blocks
"""
import argparse
import functools
import json
import math
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


def timings_table(results):
    """run_all's own timing record (results/run_all_timings.csv, srlib/timings.py): one row per notebook, as
    last run (no total: the rows may come from different runs)."""
    df = pd.read_csv(results / "run_all_timings.csv")
    lines = ["| notebook | profile | started (UTC) | wall | own CPU | other processes' CPU | cores quiet |",
             "|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        wall = f"{r.seconds / 60:.1f} min" if r.seconds >= 60 else f"{r.seconds:.0f} s"
        lines.append(f"| {r.notebook} | {r.profile} | {r.started[:16].replace('T', ' ')} | {wall} | "
                     f"{r.own_cpu_s:.0f} s | {r.others_cpu_s:.0f} s | {r.quiet} |")
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
    "ablation": _markdown("ablation.md"),
    "paper_budget_table1": _markdown("paper-budget/paper_budget_table1.md"),
    "paper_budget": _markdown("paper-budget/paper_budget.md"),
    "paper_budget_absolute": _markdown("paper-budget/paper_budget_absolute.md"),
    "speed": speed_table,
    "offsets": offset_table,
    "gaps": gap_table,
    "extent": extent_table,
    "explore_timing": explore_timing,
    "timings": timings_table,
}
MARKER = re.compile(r"(<!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(\n?<!-- /results:(?P=name) -->)", re.S)


VALUES = {}   # inline values: name -> function of the results folder, returning the text the README shows
VALUE = re.compile(r"<!--v:(?P<name>[\w-]+)-->(?P<body>.*?)<!--/v-->", re.S)
QUOTE = re.compile(r"<!--ext:(?P<source>[^>]+?)-->(?P<body>.*?)<!--/ext-->", re.S)   # a quotation, source named
TAG = re.compile(r"<!-- numbers: (?P<sources>.+?) -->")
# A cell of a CSV, printed with a format spec: <!--cell:results/ablation.csv[comparison=x - y;dataset=pooled;
# metric=psnr].mean:+.2f-->+0.91<!--/cell--> (the selection must pick exactly one row).
CELL = re.compile(r"<!--cell:(?P<file>[^\[\s]+)\[(?P<rows>[^\]]*)\]\.(?P<column>\w+):(?P<spec>[^>]*?)-->"
                  r"(?P<body>.*?)<!--/cell-->", re.S)
SELECT = re.compile(r"(?P<file>[^\[\s]+)(?:\[(?P<rows>[^\]]+)\])?$")   # FILE or FILE[column=value,...] (a CSV)
NUMBER = re.compile(r"(?<![\w.+\-/#:@])[-+]?\d(?:[\d,]*\d)?(?:\.\d+)?(?:e[-+]?\d+)?%?(?![\w.]*\d)")
NOT_A_QUANTITY = re.compile(r"(?i:table|tables|figure|figures|fig\.|issue|issues|section|notebook|notebooks) $")
FILE_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:_\d{3})*(?:,\d{3})*(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")
ITEM = re.compile(r"\s*(?:[-*]|\d+\.) ")     # a list item starts its own paragraph: a tag covers its item
MAX_POOL = 1000     # a source holding more numbers than this matches almost any number: select rows, or compute


def _strip(text):
    """``text`` without what is not prose (code spans, link targets, inline values, quotations, comments), each
    replaced by a space and the line breaks it spanned."""
    keep = lambda m: " " + "\n" * m.group().count("\n")      # noqa: E731
    for pattern in (r"`[^`]*`", r"\]\([^)]*\)", VALUE.pattern, CELL.pattern, QUOTE.pattern, r"<!--.*?-->"):
        text = re.sub(pattern, keep, text, flags=re.S)
    return text


def paragraphs(readme):
    """The prose paragraphs (a list item is one of its own), each a list of (line number, line): outside fenced
    code and generated blocks."""
    out, cur, fence, block = [], [], False, False
    for i, line in enumerate(readme.split("\n"), 1):
        if line.startswith("```"):
            fence = not fence
        elif re.match(r"<!-- results:[\w-]+ -->$", line):
            block = True
        elif re.match(r"<!-- /results:[\w-]+ -->$", line):
            block = False
        elif not (fence or block) and line.strip():
            if ITEM.match(line) and cur and not TAG.fullmatch(cur[-1][1].strip()):
                out.append(cur)
                cur = []
            cur.append((i, line))
            continue
        if cur:
            out.append(cur)
        cur = []
    return out + ([cur] if cur else [])


def numbers(text):
    """The quantities of a prose line, as (token as printed, value); names such as 'Table 1' left out. Numbers
    joined by 'x', '/' or '-' (3x3, 0.9/0.99, seeds 0-2, a date) count one by one."""
    found = []
    text = re.sub(r"^(\s*)\d+\. ", lambda m: m.group(1) + "#. ", text)     # an ordered list's item number
    text = re.sub(r"(?<=\d)[x/](?=\d)|(?<=\d)-(?=\d)", " ", text)
    for m in NUMBER.finditer(text):
        if NOT_A_QUANTITY.search(text[:m.start()]) or text[m.end():m.end() + 1] == "_":   # 'Table 1', '01_data'
            continue
        found.append((m.group(), float(m.group().rstrip("%").replace(",", ""))))
    return found


def _matches(token, value, pool):
    """Whether a number of ``pool`` prints as ``token``: equal at the token's decimals (by magnitude, as prose
    says 'x lower', unless the token carries a sign), or a percentage of a share."""
    signed = token[0] in "+-"
    same = (lambda f: f) if signed else abs
    v = value if signed else abs(value)
    if "e" in token:
        return any(math.isclose(same(f), v, rel_tol=1e-6) for f in pool)
    decimals = len(token.rstrip("%").split(".")[1]) if "." in token else 0
    tol = 0.5 * 10 ** -decimals + 1e-9
    return any(abs(same(f) - v) <= tol or (token.endswith("%") and abs(100 * same(f) - v) <= tol) for f in pool)


def _text_numbers(text):
    text = re.sub(r"(?<=\d)x(?=\d)", " ", text)            # 512x512: two numbers
    return [float(t.replace(",", "").replace("_", "")) for t in FILE_NUMBER.findall(text)]


@functools.lru_cache(maxsize=None)
def _file_numbers(path, rows=None, mtime=None):
    """The numbers a source holds: a CSV's cells (only the rows whose columns equal ``rows``' 'col=value,...'),
    a notebook's code and text (not its images), any other file's text."""
    if path.suffix in (".csv", ".tsv"):
        df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        for cond in (rows.split(",") if rows else []):
            col, _, want = cond.partition("=")
            if col not in df.columns:
                raise KeyError(f"{path.name} has no column {col!r}")
            df = df[df[col] == want]
        return tuple(x for cell in df.to_numpy().ravel() for x in _text_numbers(str(cell)))
    if rows:
        raise KeyError(f"{path.name}: rows can be selected in a CSV only")
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        parts = ["".join(c["source"]) for c in cells] + [
            "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
            for c in cells for o in c.get("outputs", [])]
        return tuple(_text_numbers("\n".join(parts)))
    return tuple(_text_numbers(path.read_text(errors="replace")))


def _pool(top, source):
    """(numbers, problem) of one tag source, FILE or FILE[column=value,...]."""
    m = SELECT.match(source)
    path = top / m["file"] if m else None
    if path is None or not path.is_file():
        return (), f"the tag names no file {source}"
    try:
        pool = _file_numbers(path, m["rows"], path.stat().st_mtime)
    except KeyError as e:
        return (), f"the tag's {source}: {e.args[0]}"
    if len(pool) > MAX_POOL:
        return (), (f"{source} holds {len(pool)} numbers, too many to source one by occurrence: select rows "
                    f"(FILE[column=value]) or compute the number (an inline value)")
    return pool, None


def unsourced(readme, top=TOP):
    """Every prose number of ``readme`` without a source, or not found in the sources its paragraph's tags name
    (a tag anywhere in the paragraph or list item; several tags add their sources), and every inline value or
    block that no generator makes: 'line N: ...' strings, empty when every number has its source."""
    problems = [f"line {readme[:m.start()].count(chr(10)) + 1}: README value v:{m['name']} has no generator"
                for m in VALUE.finditer(readme) if m["name"] not in VALUES]
    problems += [f"line {readme[:m.start()].count(chr(10)) + 1}: README block results:{m['name']} has no generator"
                 for m in re.finditer(r"<!-- results:(?P<name>[\w-]+) -->", readme) if m["name"] not in BLOCKS]
    for para in paragraphs(readme):
        text = "\n".join(line for _, line in para)
        for m in QUOTE.finditer(text):
            if not m["source"].strip():
                problems.append(f"line {para[0][0]}: a quotation without its source")
        tags = [(para[0][0] + text[:m.start()].count("\n"), m["sources"]) for m in TAG.finditer(text)]
        external = bool(tags) and all(t.startswith("external:") and t[9:].strip() for _, t in tags)
        pool, bad = [], False
        for i, t in tags:
            for source in ([] if t.startswith("external:") else t.split()):
                numbers_, problem = _pool(top, source)
                pool += numbers_
                if problem:
                    problems.append(f"line {i}: {problem}")
                    bad = True
        if bad or external:
            continue
        sources = " ".join(t for _, t in tags)
        for (i, _), line in zip(para, _strip(text).split("\n")):
            for token, value in numbers(line):
                if not tags:
                    problems.append(f'line {i}: "{token}" has no source (no "<!-- numbers: ... -->" tag)')
                elif not _matches(token, value, pool):
                    problems.append(f'line {i}: "{token}" is not in {sources}')
    return problems


def cell_text(m, top=TOP):
    """The text a CELL match should show: its one selected row's column, formatted."""
    df = pd.read_csv(top / m["file"], dtype=str, keep_default_na=False)
    for cond in m["rows"].split(";"):
        col, _, want = cond.strip().partition("=")
        if col not in df.columns:
            raise KeyError(f"README cell: {m['file']} has no column {col!r}")
        df = df[df[col] == want]
    if len(df) != 1:
        raise KeyError(f"README cell: {m['file']}[{m['rows']}] selects {len(df)} rows, not one")
    return format(float(df.iloc[0][m["column"]]), m["spec"])


def stale_cells(readme, top=TOP):
    """The cells of ``readme`` whose text is not what their file gives, as 'line N: cell FILE[...]' strings."""
    return [f"line {readme[:m.start()].count(chr(10)) + 1}: cell {m['file']}[{m['rows']}].{m['column']} shows "
            f"{m['body']}, the file gives {cell_text(m, top)}" for m in CELL.finditer(readme)
            if m["body"] != cell_text(m, top)]


def _made(makers, results):
    """Each maker's text by name (one whose file is missing is left out)."""
    out = {}
    for name, make in makers.items():
        try:
            out[name] = make(results)
        except FileNotFoundError:
            continue
    return out


def values(results):
    """Each inline value by name (one whose file is missing is left out)."""
    return _made(VALUES, results)


def blocks(results):
    """Each generated block by name (a block whose file is missing is left out)."""
    return _made(BLOCKS, results)


def fill(readme, generated, inline=None):
    """``readme`` with every marked block (and inline value, from ``inline``) replaced by its generated text;
    unknown names are an error."""
    def sub(m):
        if m["name"] not in BLOCKS:
            raise KeyError(f"README block results:{m['name']} has no generator in scripts/readme_tables.py")
        return m.group(1) + generated.get(m["name"], m["body"]) + "\n" + m.group(4).lstrip("\n")   # also empty

    def sub_value(m):
        if m["name"] not in VALUES:
            raise KeyError(f"README value v:{m['name']} has no generator in scripts/readme_tables.py")
        return f"<!--v:{m['name']}-->{(inline or {}).get(m['name'], m['body'])}<!--/v-->"

    def sub_cell(m):
        return m.group()[:m.start("body") - m.start()] + cell_text(m) + "<!--/cell-->"
    return CELL.sub(sub_cell, VALUE.sub(sub_value, MARKER.sub(sub, readme)))


def stale(readme, generated, inline=None):
    """Names of the marked blocks (and inline values) of ``readme`` whose text differs from the generated one."""
    inline = inline or {}
    return ([m["name"] for m in MARKER.finditer(readme) if m["name"] in generated
             and m["body"] != generated[m["name"]]]
            + [f"v:{m['name']}" for m in VALUE.finditer(readme) if m["name"] in inline
               and m["body"] != inline[m["name"]]])


# ------------------------------------------------------------------------------------------ inline values
# Numbers of the prose that no file holds as printed (a difference, a bound, a count, a unit change): each is
# computed here from the file that holds its parts, and README.md shows it as <!--v:NAME-->text<!--/v-->.
SETS = ("Set5", "Set14", "BSD100", "Urban100")
OFFSETS = ["offset_r", "offset_g", "offset_b"]


def _full(values, what):
    """``values`` (a Series or DataFrame), refused when any is missing: a bound over 'every benchmark' must not
    quietly skip one."""
    if values.isna().to_numpy().any() or values.size == 0:
        raise ValueError(f"README value: {what} has missing entries")
    return values


def _at_most(x, decimals):
    """A bound printed at ``decimals``: rounded up, so that 'at most' holds."""
    return f"{math.ceil(x * 10 ** decimals - 1e-9) / 10 ** decimals:.{decimals}f}"


def _psnr(results, method, whole=False, protocol="standard", column="psnr"):
    """One method's PSNR (or ``column``) per benchmark from table1.csv; default inference unless ``whole``."""
    df = pd.read_csv(results / "table1.csv")
    df = df[(df.protocol == protocol) & (df.method == method)]
    rows = df[(df.inference == "whole") if whole else (df.inference != "whole")]
    return _full(rows.set_index("dataset")[column].reindex(list(SETS)), f"table1.csv {method} {column}")


def _gain(results, methods):
    """Default minus whole-image PSNR (standard protocol) of ``methods``, every benchmark, as one Series."""
    return pd.concat([_psnr(results, m) - _psnr(results, m, whole=True) for m in methods])


def _calibrated_attention(results):
    df = pd.read_csv(results / "per_image.csv", dtype={"image": str})
    d = df[(df.protocol == "standard") & (df.method == "Attention (ours)") & (df.inference == "calibrated")]
    _full(d[OFFSETS], "per_image.csv offsets")
    return d


def _outside(d, level=1.0):
    return (d[OFFSETS].abs() > level).any(axis=1)


def _adversarial_share(results, model, row):
    """The adversarial term's share of G's gradient norm at the first (row 0) or last (row -1) GAN validation
    of a committed run, in percent (its metrics.csv)."""
    df = pd.read_csv(results / "train" / model / "metrics.csv")
    return 100 * df[df.phase == "gan"].share_adversarial.iloc[row]


def _wu(dataset, model="SRGAN (Wu, Table 1)"):
    from srlib.reference import PAPER_TABLE1
    return PAPER_TABLE1[model][dataset][0]


def _paper_drop(results):
    """BSD100 minus Urban100 PSNR of every row of the paper-protocol table but Wu's SRGAN."""
    drops = [_wu("BSD100", "New model (Wu, Table 1)") - _wu("Urban100", "New model (Wu, Table 1)")]
    for m in ("Bicubic", "SRGAN (ours)", "Attention (ours)", "PSNR baseline (ours)"):
        p = _psnr(results, m, protocol="paper")
        drops.append(p["BSD100"] - p["Urban100"])
    return drops


def _manifest(name):
    from srlib.data import read_manifest
    return pd.DataFrame(read_manifest(name), columns=["dataset", "file", "sha256"])


def _meta(results, model):
    return json.loads((results / "train" / model / "meta.json").read_text())


def _perceptual(results, method):
    df = pd.read_csv(results / "perceptual.csv")
    return df[df.method == method].set_index("dataset")


def _perceptual_gap(results, columns, decimals):
    """Largest |attention model - PSNR baseline| over the benchmarks and ``columns`` of perceptual.csv."""
    d = (_perceptual(results, "Attention (ours)")[columns] - _perceptual(results, "PSNR baseline (ours)")[columns])
    return _at_most(_full(d, f"perceptual.csv {columns}").abs().max().max(), decimals)


def _models_spread(results):
    """The largest PSNR spread of the three models on any benchmark (perceptual.csv)."""
    p = pd.concat([_perceptual(results, m).psnr for m in ("SRGAN (ours)", "Attention (ours)", "PSNR baseline (ours)")],
                  axis=1)
    return _at_most(_full(p, "perceptual.csv psnr").pipe(lambda p: p.max(axis=1) - p.min(axis=1)).max(), 2)


def _gn_layers(results):
    """GroupNorm layers of the attention generator: those extent.csv's layer probe calibrates one at a time."""
    df = pd.read_csv(results / "extent.csv")
    layer = df[(df.generator == "Attention (ours)") & (df.probe == "layer")]
    return str(layer.setting[layer.setting.str.startswith("only layer ")].nunique())


def _download_mb(name):
    """A download's size in MB as run_all's pre-flight prints it (srlib.prepare), from srlib/download.py."""
    def make(results):
        from srlib.download import SOURCES
        from srlib.prepare import _size
        return _size(SOURCES[name]).removesuffix(" MB")
    return make


def _train_minutes(results):
    """Minutes of training recorded by the committed runs: train_seconds of every run's and every shared
    warm-up's meta.json (results/train/*/ and results/train/warmup/*/), summed."""
    metas = sorted((results / "train").glob("*/meta.json")) + sorted((results / "train" / "warmup").glob("*/meta.json"))
    if not metas:
        raise FileNotFoundError(results / "train")
    return f"{sum(json.loads(m.read_text())['train_seconds'] for m in metas) / 60:.0f}"


def _gan_over_l1():
    """GAN step / L1 step, per architecture, from the step costs measured in PROFILES['quick']'s comment
    (srlib/config.py: 'L1 a s (attention) / b s (SRGAN); GAN step c s (attention) / d s (SRGAN ...')."""
    import srlib.config
    text = Path(srlib.config.__file__).read_text()
    m = re.search(r"L1 ([\d.]+) s \(attention\) / ([\d.]+) s \(SRGAN\); GAN step ([\d.]+) s\s*#?\s*"
                  r"\(attention\) / ([\d.]+) s \(SRGAN", text)
    l1_att, l1_srgan, gan_att, gan_srgan = map(float, m.groups())
    return gan_att / l1_att, gan_srgan / l1_srgan


def _ablation_shares(results, variant):
    """The adversarial term's share of G's gradient (percent), first and last GAN validation of every seed of
    one loss variant (results/ablation_loss_terms.csv)."""
    d = pd.read_csv(results / "ablation_loss_terms.csv")
    d = d[d.variant == variant]
    return 100 * _full(d[["adversarial_share_first", "adversarial_share_last"]], f"{variant}'s shares").stack()


def _ablation_runs(results):
    d = pd.read_csv(results / "ablation.csv")
    return str(len(set(d.variant) | set(d.reference)) * int(d.seeds.max()))


def _smoke_main(results):
    from srlib.config import PROFILES
    return str(PROFILES["smoke"]["steps"] - PROFILES["smoke"]["warmup_steps"])


def _span(name, values, spec):
    """Two inline values, NAME-min and NAME-max: the smallest and largest of ``values(results)``."""
    return {f"{name}-min": lambda r: format(min(values(r)), spec),
            f"{name}-max": lambda r: format(max(values(r)), spec)}


ATT, PSNR_BASE, SRGAN = "Attention (ours)", "PSNR baseline (ours)", "SRGAN (ours)"
VALUES.update({
    # data and training record
    "mb-t91": _download_mb("T91"), "mb-bsd200": _download_mb("BSD200"), "mb-benchmark": _download_mb("benchmark"),
    "train-minutes": _train_minutes,
    "bsd200-listed": lambda r: str(int((_manifest("quick-train").dataset == "BSD200").sum())),
    "images-listed": lambda r: str(len(_manifest("quick-train"))),
    "smoke-main": _smoke_main,
    **_span("gan-l1", lambda r: _gan_over_l1(), ".1f"),
    "gan-steps": lambda r: str(_meta(r, "attention")["config"]["steps"]
                               - _meta(r, "attention")["config"]["warmup_steps"]),
    "srgan-params-k": lambda r: f"{_meta(r, 'srgan')['parameters_G'] / 1000:.0f}",
    "att-params-k": lambda r: f"{_meta(r, 'attention')['parameters_G'] / 1000:.0f}",
    "att-adv-first": lambda r: f"{_adversarial_share(r, 'attention', 0):.2f}",
    "att-adv-last": lambda r: f"{_adversarial_share(r, 'attention', -1):.2f}",
    "srgan-adv-first": lambda r: f"{_adversarial_share(r, 'srgan', 0):.1f}",
    "srgan-adv-last": lambda r: f"{_adversarial_share(r, 'srgan', -1):.1f}",
    # Table 1 (standard protocol unless named): what whole-image inference costs the GroupNorm generators
    **_span("gain", lambda r: _gain(r, [ATT, PSNR_BASE]), ".1f"),
    **_span("att-gain", lambda r: _gain(r, [ATT]), ".1f"),
    **_span("whole-lead", lambda r: _psnr(r, SRGAN) - _psnr(r, ATT, whole=True), ".1f"),
    "gap-psnr-max": lambda r: _at_most((_psnr(r, ATT) - _psnr(r, SRGAN)).abs().max(), 2),
    "gap-ssim-max": lambda r: _at_most((_psnr(r, ATT, column="ssim") - _psnr(r, SRGAN, column="ssim")).abs().max(), 4),
    "att-psnr-max": lambda r: _at_most(max((_psnr(r, ATT, protocol=p) - _psnr(r, PSNR_BASE, protocol=p)).abs().max()
                                           for p in ("standard", "paper")), 3),
    # colour offsets of the attention model under the default inference (per_image.csv)
    "set5-within": lambda r: str(int((~_outside(_calibrated_attention(r).query("dataset == 'Set5'"))).sum())),
    "att-outside": lambda r: str(int(_outside(_calibrated_attention(r)).sum())),
    "images": lambda r: str(len(_calibrated_attention(r))),
    "set5-images": lambda r: str(int((_calibrated_attention(r).dataset == "Set5").sum())),
    "att-offset-bound": lambda r: f"{math.ceil(10 * _calibrated_attention(r)[OFFSETS].abs().max().max()) / 10:.1f}",
    # Wu's Urban100 SRGAN number against the rest of the paper-protocol table
    "wu-bsd-urban": lambda r: f"{_wu('BSD100') - _wu('Urban100'):.2f}",
    **_span("paper-drop", _paper_drop, ".1f"),
    "wu-urban-gain": lambda r: f"{_wu('Urban100') - _psnr(r, 'Bicubic', protocol='paper')['Urban100']:.2f}",
    "wu-bsd-gain": lambda r: f"{_wu('BSD100') - _psnr(r, 'Bicubic', protocol='paper')['BSD100']:.2f}",
    # the extent probes, the viewer, the perceptual table
    "gn-layers": _gn_layers,
    "compare-mb": lambda r: f"{(r / 'compare.html').stat().st_size / 1e6:.1f}",
    "att-psnr-fr": lambda r: _perceptual_gap(r, ["ssim", "stlpips_alex", "haarpsi", "gmsd", "ms_ssim"], 4),
    "att-psnr-niqe": lambda r: _perceptual_gap(r, ["niqe_live", "niqe_srlib"], 2),
    "models-psnr-spread": _models_spread,
    # the ablation's runs: every variant of ablation.csv's comparisons and the reference, at every seed analyzed
    "ablation-runs": _ablation_runs,
    # the ablation's loss variants: the adversarial term's share of G's gradient over seeds
    **_span("paper-loss-share", lambda r: _ablation_shares(r, "paper_loss"), ".1f"),
    **_span("adv-control-share", lambda r: _ablation_shares(r, "adversarial_control"), ".0f"),
})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=TOP / "results")
    p.add_argument("--readme", type=Path, default=TOP / "README.md")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="refill README.md's blocks")
    g.add_argument("--check", action="store_true", help="exit 1 if a block of README.md differs")
    args = p.parse_args(argv)
    generated, inline = blocks(args.results), values(args.results)
    if args.write:
        args.readme.write_text(fill(args.readme.read_text(), generated, inline))
    elif args.check:
        readme = args.readme.read_text()
        bad = stale(readme, generated, inline)
        if bad:
            sys.exit(f"README blocks differ from {args.results}: {', '.join(bad)} "
                     "(python scripts/readme_tables.py --write)")
        loose = stale_cells(readme) + unsourced(readme)
        if loose:
            sys.exit("README numbers without a source:\n" + "\n".join(loose))
    else:
        for name, text in generated.items():
            print(f"<!-- results:{name} -->\n{text}\n<!-- /results:{name} -->\n")


if __name__ == "__main__":
    main()
