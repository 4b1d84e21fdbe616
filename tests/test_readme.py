"""The README's result blocks are what scripts/readme_tables.py generates from results/, character for character."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
RESULTS = TOP / "results"


def _readme_tables():
    spec = importlib.util.spec_from_file_location("readme_tables", TOP / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(TOP))
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(not (RESULTS / "table1.md").exists(), reason="no results/table1.md")
def test_readme_blocks_are_generated_from_results():
    rt = _readme_tables()
    readme = (TOP / "README.md").read_text()
    generated, inline = rt.blocks(RESULTS), rt.values(RESULTS)
    assert {m["name"] for m in rt.VALUE.finditer(readme)} <= set(inline), "a README value could not be computed"
    assert not rt.stale(readme, {}, inline), "README values differ from results/: scripts/readme_tables.py --write"
    assert rt.stale_cells(readme) == [], "README cells differ from their files: scripts/readme_tables.py --write"
    assert {"table1", "training", "perceptual", "speed"} <= set(generated)
    marked = {m["name"] for m in rt.MARKER.finditer(readme)}
    assert set(generated) <= marked, f"README lacks the blocks {set(generated) - marked}"
    assert generated["table1"].count("\n| ") >= 10          # the two protocol tables at least
    assert not rt.stale(readme, generated), "README differs from results/: python scripts/readme_tables.py --write"


def test_the_check_fails_on_an_edited_number():
    rt = _readme_tables()
    row = "| Attention (ours) | 30.32 / 0.8612 | 27.31 / 0.7472 |"
    readme = f"text\n<!-- results:table1 -->\n{row}\n<!-- /results:table1 -->\nmore\n"
    assert rt.stale(readme, {"table1": row}) == []
    assert rt.stale(readme.replace("30.32", "30.33"), {"table1": row}) == ["table1"]
    assert rt.fill(readme.replace("30.32", "30.33"), {"table1": row}) == readme
    empty = "text\n<!-- results:table1 -->\n<!-- /results:table1 -->\nmore\n"     # a new block, not yet filled
    assert rt.stale(empty, {"table1": row}) == ["table1"] and rt.fill(empty, {"table1": row}) == readme
    with pytest.raises(KeyError, match="results:nonsense"):
        rt.fill("<!-- results:nonsense -->\nx\n<!-- /results:nonsense -->", {})


def _last_digit_edits(rt, readme):
    """Every prose number of a tagged paragraph (on a line where it stands once), its last digit moved by one
    each way: (kind, caught) per edit, caught when the check then fails on that line."""
    lines, out = readme.split("\n"), []
    for para in rt.paragraphs(readme):
        text = "\n".join(x for _, x in para)
        if not rt.TAG.search(text):
            continue
        for (i, raw), line in zip(para, rt._strip(text).split("\n")):
            for token, value in rt.numbers(line):
                places = list(re.finditer(r"(?<![\w.])" + re.escape(token) + r"(?![\w.]*\d)", raw))
                if len(places) != 1 or raw[:places[0].start()].count("<!--") > raw[:places[0].start()].count("-->"):
                    continue
                digits = token.rstrip("%")
                kind = "decimal" if "." in digits else "integer >= 10" if abs(value) >= 10 else "small integer"
                for step in (1, -1):
                    edit = digits[:-1] + str((int(digits[-1]) + step) % 10) + token[len(digits):]
                    m = places[0]
                    edited = lines[:i - 1] + [raw[:m.start()] + edit + raw[m.end():]] + lines[i:]
                    out.append((kind, any(p.startswith(f"line {i}:") for p in rt.unsourced("\n".join(edited)))))
    return out


def test_every_readme_number_has_its_source():
    rt = _readme_tables()
    readme = (TOP / "README.md").read_text()
    assert rt.unsourced(readme) == []
    # Changed by hand, a number fails: measured over every sourced prose number, its last digit moved by one.
    # A tag's files hold many small integers (settings), so those edits often pass; results are cells or
    # values (checked exactly) or numbers with decimals, which a moved digit rarely hits in a tagged file.
    edits = _last_digit_edits(rt, readme)
    caught = {k: sum(c for kk, c in edits if kk == k) / sum(1 for kk, _ in edits if kk == k)
              for k in {k for k, _ in edits}}
    assert len(edits) > 400 and caught["decimal"] >= 0.75 and caught["integer >= 10"] >= 0.85, caught
    for m in list(rt.CELL.finditer(readme))[:10] + list(rt.VALUE.finditer(readme))[:10]:   # exact ones, exactly
        edited = readme[:m.start("body")] + "9" + readme[m.start("body"):]
        assert rt.stale_cells(edited) or rt.stale(edited, {}, rt.values(RESULTS)), m.group()


def test_prose_numbers_need_a_tag_a_file_that_holds_them_or_a_named_quotation(tmp_path):
    rt = _readme_tables()
    (tmp_path / "speed.csv").write_text("measurement,ratio\ntrain_step,1.7812\nshare,0.4\n")
    readme = ("Intro without numbers.\n\n<!-- numbers: speed.csv -->\nbf16 is 1.78x faster, 40% of a step,\n"
              "as `--steps 500` in Table 1 says.\n\n```\nstep 12345\n```\n\nWu reports "
              "<!--ext:Wu (2024), Table 1-->28.63 dB<!--/ext-->.\n")
    assert rt.unsourced(readme, tmp_path) == []
    assert rt.unsourced(readme.replace("1.78x", "1.79x"), tmp_path) == ['line 4: "1.79" is not in speed.csv']
    assert rt.unsourced(readme.replace("40%", "41%"), tmp_path) == ['line 4: "41%" is not in speed.csv']
    assert rt.unsourced(readme.replace("Intro without numbers", "Intro with 3 numbers"), tmp_path) == [
        'line 1: "3" has no source (no "<!-- numbers: ... -->" tag)']
    assert rt.unsourced(readme.replace("speed.csv -->", "nothing.csv -->"), tmp_path) == [
        "line 3: the tag names no file nothing.csv"]
    assert rt.unsourced(readme.replace("<!--ext:Wu (2024), Table 1-->28.63 dB<!--/ext-->", "28.63 dB"),
                        tmp_path) == ['line 11: "28.63" has no source (no "<!-- numbers: ... -->" tag)']


def test_an_inline_value_is_generated_and_checked():
    rt = _readme_tables()
    rt.VALUES["test-ratio"] = lambda results: "2.25"
    try:
        readme = "bf16 is <!--v:test-ratio-->2.25<!--/v-->x faster.\n"
        assert rt.stale(readme, {}, rt.values(RESULTS)) == [] and rt.unsourced(readme) == []
        edited = readme.replace("2.25", "4", 1)
        assert rt.stale(edited, {}, rt.values(RESULTS)) == ["v:test-ratio"]
        assert rt.fill(edited, {}, rt.values(RESULTS)) == readme
        with pytest.raises(KeyError, match="v:nonsense"):
            rt.fill("<!--v:nonsense-->1<!--/v-->", {}, {})
    finally:
        del rt.VALUES["test-ratio"]


def test_offset_and_gap_blocks_compute_from_the_files(tmp_path):
    """The offsets and gaps blocks are computed from per_image.csv and table1.csv (not typed): checked on a
    small table whose answers are known."""
    import pandas as pd
    rt = _readme_tables()
    rows = []
    for method, inference, offsets in (("Bicubic", "-", [(0, 0, 0), (0.5, 0, 0)]),
                                       ("Attention (ours)", "calibrated", [(0.2, -0.4, 0.1), (1.5, 0, 0)]),
                                       ("Attention (ours)", "whole", [(6, 3, 3), (5, 2, 2)])):
        for image, (r, g, b) in zip(("a", "b"), offsets):
            for protocol in ("standard", "paper"):
                rows.append(dict(method=method, dataset="Set5", image=image, protocol=protocol, psnr=30, ssim=0.8,
                                 inference=inference, offset_r=r, offset_g=g, offset_b=b))
    pd.DataFrame(rows).to_csv(tmp_path / "per_image.csv", index=False)
    table = rt.offset_table(tmp_path).splitlines()
    assert table[2:] == ["| Bicubic | - | 100% (+0.2 / +0.0 / +0.0) |",
                         "| Attention (ours) | calibrated | 50% (+0.8 / -0.2 / +0.1) |",
                         "| Attention (ours) | whole | 0% (+5.5 / +2.5 / +2.5) |"]
    summary = pd.DataFrame([dict(method="Bicubic", dataset="Set5", protocol="standard", inference="-", psnr=28.0,
                                 ssim=0.80),
                            dict(method="SRGAN (ours)", dataset="Set5", protocol="standard",
                                 inference="no GroupNorm", psnr=30.25, ssim=0.86),
                            dict(method="Attention (ours)", dataset="Set5", protocol="standard",
                                 inference="calibrated", psnr=30.0, ssim=0.87),
                            dict(method="Attention (ours)", dataset="Set5", protocol="standard", inference="whole",
                                 psnr=29.0, ssim=0.86)])
    summary.to_csv(tmp_path / "table1.csv", index=False)
    gaps = {line.split(" | ")[0][2:]: line.split(" | ")[1] for line in rt.gap_table(tmp_path).splitlines()[2:]}
    assert gaps == {"Attention - SRGAN (ours), default inference": "-0.25 / +0.0100 |",
                    "Attention - SRGAN (ours), attention whole-image": "-1.25 / +0.0000 |",
                    "Attention: default - whole-image inference": "+1.00 / +0.0100 |",
                    "Attention - Bicubic, default inference": "+2.00 / +0.0700 |",
                    "SRGAN (ours) - Bicubic": "+2.25 / +0.0600 |"}


def test_extent_block_lays_out_the_sweep(tmp_path):
    import pandas as pd
    rt = _readme_tables()
    rows = [dict(generator=g, probe=p, setting="", extent=n, inference=m, dataset="Set5", images=5, psnr=psnr,
                 ssim=0.8, offset_r=r, offset_g=0.0, offset_b=-0.25)
            for g, p, m, n, psnr, r in (("SRGAN", "sweep", "calibrated", 24, 30.1, 0.5),
                                        ("SRGAN", "sweep", "calibrated", 0, 30.2, 0.5),
                                        ("Att", "sweep", "whole", 24, 30.0, -1.0),
                                        ("Att", "sweep", "whole", 0, 29.2, 5.9),
                                        ("Att", "sweep", "calibrated", 0, 30.3, 0.1),
                                        ("Att", "padding", "whole", 0, 28.4, 8.7))]
    pd.DataFrame(rows).to_csv(tmp_path / "extent.csv", index=False)
    lines = rt.extent_table(tmp_path).splitlines()
    assert lines[2] == "| generator | inference | 24 px | whole image |"
    assert lines[4:] == ["| SRGAN | one mode (no GroupNorm) | 30.10, +0.5 / +0.0 / -0.2 | 30.20, +0.5 / +0.0 / -0.2 |",
                         "| Att | whole | 30.00, -1.0 / +0.0 / -0.2 | 29.20, +5.9 / +0.0 / -0.2 |",
                         "| Att | calibrated | – | 30.30, +0.1 / +0.0 / -0.2 |",
                         "| Att | whole, reflect padding | – | 28.40, +8.7 / +0.0 / -0.2 |"]


def test_speed_block_names_its_machine(tmp_path):
    """The speed block says where speed.csv was measured (its environment row), or that it was not recorded."""
    import pandas as pd
    rt = _readme_tables()
    cols = ["measurement", "config", "srlib", "naive", "unit", "ratio", "note"]
    step = ["train_step", "attention crop96 b16 fp32", 0.25, 0.125, "steps/s", 2.0, "median of 4"]
    pd.DataFrame([step], columns=cols).to_csv(tmp_path / "speed.csv", index=False)
    assert rt.speed_table(tmp_path).startswith("Measured on: not recorded")
    env = ["environment", "AMD EPYC", None, None, "-", None,
           "device cpu; torch 2.9; 2 CPU threads; load average 1.2; AMD EPYC; bf16 instructions: False"]
    pd.DataFrame([env, step], columns=cols).to_csv(tmp_path / "speed.csv", index=False)
    lines = rt.speed_table(tmp_path).splitlines()
    assert lines[0] == ("Measured on: AMD EPYC (device cpu; torch 2.9; 2 CPU threads; AMD EPYC; "
                        "bf16 instructions: False).")
    assert lines[-1] == "| train_step | attention crop96 b16 fp32 | 0.25 | 0.125 | steps/s | 2x |"


def test_probe_rows_pick_the_layer_that_carries_the_shift():
    """The probe table names the single layer whose calibration helps most and the one whose omission hurts
    most, with the other layers as a range; pipes inside a setting are escaped."""
    import pandas as pd
    rt = _readme_tables()
    base = dict(generator="Att", extent=0, dataset="h", images=10, ssim=0.75, offset_g=0.0, offset_b=0.0)
    rows = [dict(base, probe="layer", setting=f"only layer {k}", inference="mixed", psnr=p, offset_r=r)
            for k, p, r in ((0, 26.5, 4.5), (1, 26.9, 0.5), (2, 26.4, 4.6))]
    rows += [dict(base, probe="layer", setting=f"all but layer {k}", inference="mixed", psnr=p, offset_r=r)
             for k, p, r in ((0, 27.0, -0.2), (1, 26.6, 4.4), (2, 27.1, -0.3))]
    rows += [dict(base, probe="gates", setting="max |g|", inference="whole", psnr=0.003, offset_r=None)]
    lines = rt.probe_table(pd.DataFrame(rows))
    assert lines[4] == ("| GroupNorm layers calibrated (of 3, module order) | only layer 1 | 26.90, +0.5 / +0.0 / +0.0 "
                        "(the other 2: 26.40 to 26.50 dB) |")
    assert lines[5] == ("| GroupNorm layers calibrated (of 3, module order) | all but layer 1 | 26.60, +4.4 / +0.0 / "
                        "+0.0 (the other 2: 27.00 to 27.10 dB) |")
    assert lines[6] == "| channel-attention gates, whole | max \\|g\\| | 0.0030 |"


def test_explore_timing_block_is_the_timing_file(tmp_path):
    """The explorer's timing block copies docs/explore_timing.csv (written by scripts/explore_timing.py): the
    machine line from its first row, one table row per step."""
    import pandas as pd
    rt = _readme_tables()
    rows = [["a new image", 3.04, 4.26, "Set5/baby", 2, "0.4 0.5 0.6", "AMD EPYC", False],
            ["plot every extent", 5.3, 9.9, "Set5/baby", 2, "0.4 0.5 0.6", "AMD EPYC", False]]
    cols = ["step", "wall_s", "cpu_s", "image", "threads", "load_average", "cpu", "cpu_bf16_native"]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "t.csv", index=False)
    lines = rt.explore_timing(None, tmp_path / "t.csv").splitlines()
    assert lines[0] == ("Measured on: AMD EPYC (without native bf16), torch on 2 threads, load average 0.4 0.5 0.6 "
                        "when it ended; image Set5/baby.")
    assert lines[-2:] == ["| a new image | 3.0 | 4.3 |", "| plot every extent | 5.3 | 9.9 |"]


def test_timings_block_is_run_alls_record(tmp_path):
    rt = _readme_tables()
    (tmp_path / "run_all_timings.csv").write_text(
        "notebook,profile,seconds,started,load_start,load_end,cpus,own_cpu_s,others_cpu_s,quiet\n"
        "03_benchmark,quick,3892,2026-12-07T07:29:16Z,2.69,4.10,2,4927.7,2853.6,no\n"
        "05_speed,quick,42,2026-12-07T08:37:41Z,3.74,1.84,2,80.2,8.5,yes\n")
    lines = rt.timings_table(tmp_path).split("\n")
    assert lines[2] == "| 03_benchmark | quick | 2026-12-07 07:29 | 64.9 min | 4928 s | 2854 s | no |"
    assert lines[3] == "| 05_speed | quick | 2026-12-07 08:37 | 42 s | 80 s | 8 s | yes |" and len(lines) == 4


def test_a_cell_shows_its_one_row(tmp_path):
    rt = _readme_tables()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "a.csv").write_text("comparison,dataset,mean\nx - y,pooled,0.9104\nx - y,Set5,1.5\n")
    cell = "<!--cell:results/a.csv[comparison=x - y;dataset=pooled].mean:+.2f-->{}<!--/cell-->"
    readme = f"The gap is {cell.format('+0.91')} dB.\n"
    assert rt.stale_cells(readme, tmp_path) == [] and rt.unsourced(readme, tmp_path) == []
    assert rt.stale_cells(readme.replace("+0.91<", "+0.92<"), tmp_path) == [
        "line 1: cell results/a.csv[comparison=x - y;dataset=pooled].mean shows +0.92, the file gives +0.91"]
    with pytest.raises(KeyError, match="selects 2 rows"):
        rt.stale_cells(readme.replace(";dataset=pooled", ""), tmp_path)


def test_a_source_too_broad_or_a_list_items_neighbour_is_no_source(tmp_path):
    rt = _readme_tables()
    (tmp_path / "big.csv").write_text("x\n" + "\n".join(str(i / 100) for i in range(2000)) + "\n")
    (tmp_path / "small.csv").write_text("image,x\nbaby,1.25\nbird,7.5\n")
    assert "too many to source one by occurrence" in rt.unsourced("a 3.14 <!-- numbers: big.csv -->\n", tmp_path)[0]
    assert rt.unsourced("bird 7.5 <!-- numbers: small.csv[image=bird] -->\n", tmp_path) == []
    assert rt.unsourced("baby 1.25 <!-- numbers: small.csv[image=bird] -->\n", tmp_path) == [
        'line 1: "1.25" is not in small.csv[image=bird]']
    items = "- one 7.5 <!-- numbers: small.csv -->\n- two 1.25\n"      # each list item needs its own source
    assert rt.unsourced(items, tmp_path) == ['line 2: "1.25" has no source (no "<!-- numbers: ... -->" tag)']
    assert rt.unsourced("betas 0.9/0.99 and 3x3 <!-- numbers: small.csv -->\n", tmp_path) == [
        f'line 1: "{t}" is not in small.csv' for t in ("0.9", "0.99", "3", "3")]
    assert rt.unsourced("a sign +7.5 and -7.5 <!-- numbers: small.csv -->\n", tmp_path) == [
        'line 1: "-7.5" is not in small.csv']
