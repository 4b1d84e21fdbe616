"""JupyterLab as a user starts it: the real server on 127.0.0.1 with a token, notebooks opened through its
API, the registered `srlib` kernel started for them, and cells run there. The notebook's kernel works in
notebooks/, yet srlib must find the repository's data/ (or $SRLIB_DATA), never notebooks/data. The explorer
notebook (07_explore, with small parameters) runs there cell by cell, and once more in JupyterLab's own page in
headless Chromium, as a user's browser shows it."""
import json
import os
from pathlib import Path

import pytest

from headless import api, browser, jupyterlab, run_cell, run_in_lab   # scripts/headless.py

REPO = Path(__file__).resolve().parent.parent
EXPLORE = "notebooks/07_explore.ipynb"
READY = ("document.querySelectorAll('.srlib-explore .jp-OutputArea-output img').length >= 2 && "
         "!document.querySelector('.srlib-explore').textContent.includes('computing ...')")   # as drawn
pytest.importorskip("tornado.websocket")
pytest.importorskip("jupyterlab")


def _session(base, token, path):
    return api(base, token, "/api/sessions", "POST", {"path": path, "type": "notebook", "name": Path(path).name,
                                                      "kernel": {"name": "srlib"}})


@pytest.mark.slow
def test_notebook_kernel_in_jupyterlab_finds_the_repository_data(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "SRLIB_DATA"}
    with jupyterlab(REPO, tmp_path, env) as (base, token):
        assert "srlib" in api(base, token, "/api/kernelspecs")["kernelspecs"]
        nb = api(base, token, "/api/contents/notebooks/02_train.ipynb")
        assert nb["type"] == "notebook" and any("parameters" in c["metadata"].get("tags", [])
                                                for c in nb["content"]["cells"])
        session = _session(base, token, "notebooks/02_train.ipynb")
        out, status = run_cell(base, token, session["kernel"]["id"],
                               "import os, srlib\nfrom srlib.data import data_root\n"
                               "print(os.getcwd())\nprint(data_root().resolve())\nprint(srlib.__file__)")
        assert status == "ok", out
        cwd, root, module = out.strip().splitlines()[-3:]
        assert Path(cwd) == REPO / "notebooks"                     # the kernel starts beside the notebook
        assert Path(root) == (REPO / "data").resolve()              # ... yet finds the repository's data/
        assert Path(module).resolve().is_relative_to(REPO.resolve())


@pytest.fixture(scope="module")
def lab(tmp_path_factory, data_root):
    """A JupyterLab server on a folder with a copy of 07_explore whose parameters cell ends with small values, as
    papermill injects them: a 192x192 crop of Set5 baby as the image (a file, taken as HR), no calibration (nbval
    runs the committed notebook with its defaults, calibration included), and an unreadable broken.png beside it.
    Yields (base, token, root)."""
    from PIL import Image

    from srlib import explore
    root = tmp_path_factory.mktemp("lab")
    crop = root / "baby_crop.png"
    Image.fromarray(explore.load_picture("Set5/baby", data_root).hr[160:352, 160:352]).save(crop)
    nb = json.loads((REPO / EXPLORE).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    cell["source"] = "".join(cell["source"]) + f'\nimage = "{crop}"\ncalibrate = False\n'
    (root / EXPLORE).parent.mkdir()
    (root / "broken.png").write_bytes(b"not an image at all")
    (root / EXPLORE).write_text(json.dumps(nb))
    with jupyterlab(root, tmp_path_factory.mktemp("lab-runtime")) as (base, token):
        yield base, token, root


def _untouched(data_root):
    """(path, mtime) of everything under results/ and the data root's Set5: what the notebook must not write."""
    files = [*(REPO / "results").rglob("*"), *(Path(data_root) / "Set5").rglob("*")]
    return {str(p): p.stat().st_mtime_ns for p in files}


@pytest.mark.slow
def test_explore_notebook_runs_on_the_srlib_kernel(lab, data_root):
    base, token, root = lab
    cells = [c for c in api(base, token, f"/api/contents/{EXPLORE}")["content"]["cells"] if c["cell_type"] == "code"]
    assert "parameters" in cells[0]["metadata"].get("tags", [])
    kernel = _session(base, token, EXPLORE)["kernel"]["id"]
    before, outs = _untouched(data_root), []
    for cell in cells:
        out, status = run_cell(base, token, kernel, cell["source"])
        assert status == "ok", f"{cell['source'][:200]}\n{out[-3000:]}"
        outs.append(out)
    table = next(o for o in outs if o.lstrip().startswith("method"))
    assert "Attention (ours)" in table and "SRGAN (ours)" in table
    # calibrate = False: the committed file's stored statistics are used, and the table says which inference ran
    assert "calibrated (24-px statistics)" in table
    assert _untouched(data_root) == before                                        # nothing written there


@pytest.mark.slow
def test_explore_notebook_in_headless_chromium(lab, chromium):
    """JupyterLab's page opens 07_explore, runs every cell, and the explorer's widgets appear, with their figures
    and table, without an exception, a console error or a request beyond the server; an unreadable file typed in
    gives a message naming it. (The kernel's work is the other test's; this one is about what the browser
    renders.)"""
    base, token, root = lab
    with browser((1400, 1000)) as b:
        run_in_lab(b, base, token, EXPLORE, READY)
        # run-all stops at a failing cell: the last cell's figures mean every cell ran
        last = "[...document.querySelectorAll('.jp-CodeCell')].pop()"
        b.wait_for(f"{last}.querySelectorAll('.jp-OutputArea-output img').length >= 2", 300, "the last cell's figures")
        controls = b.js("[...document.querySelectorAll('.srlib-explore .widget-label')].map(e => e.textContent)")
        assert {"image", "models", "model file", "inference", "zoom x", "zoom y"} <= set(controls), controls
        assert "Attention (ours)" in b.js("document.querySelector('.srlib-explore pre').textContent")
        assert b.js("[...document.querySelectorAll('.srlib-explore img')].every(i => i.complete && i.naturalWidth > 0)")
        # a user ticks "plot every extent": every mode is computed and the extent plot redrawn
        plot = "[...document.querySelectorAll('.srlib-explore img')].pop().src"
        b.js(f"window.srlibPlot = {plot}")
        b.js("[...document.querySelectorAll('.srlib-explore .widget-checkbox')]"
             ".find(e => e.textContent.includes('every extent')).querySelector('input').click()")
        b.wait_for(f"{plot} !== window.srlibPlot", 300, "the extent plot with every extent")
        # a user types the path of an unreadable file and presses Enter (a 'change' of the text box)
        b.js("(() => { const i = [...document.querySelectorAll('.srlib-explore .widget-text')]"
             ".find(e => e.querySelector('.widget-label').textContent === 'image').querySelector('input');"
             f"i.value = {json.dumps(str(root / 'broken.png'))};"
             "i.dispatchEvent(new Event('change', {bubbles: true})); })()")
        b.wait_for("document.querySelector('.srlib-explore').textContent.includes('broken.png: not an image')", 120,
                   "the message naming the unreadable file")
        # errors only: JupyterLab itself warns, e.g. of plugins slow to activate on a busy machine
        problems = b.problems((base, base.replace("http", "ws"), "data:", "blob:"), warnings=False)
        assert problems == [], json.dumps(problems, indent=1)[:3000]
