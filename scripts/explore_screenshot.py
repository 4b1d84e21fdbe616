"""Make docs/explore.png, the README's picture of notebooks/07_explore.ipynb: a real JupyterLab server (this
interpreter's, kernel `srlib`), the notebook opened in headless Chromium, every cell run at its parameters'
defaults, "plot every extent" ticked, and a screenshot of the explorer's widget area, as a palette PNG (under
300 KB).

    python scripts/explore_screenshot.py [--out docs/explore.png]

Needs the data root (SRLIB_DATA) with Set5 and the committed generators' training images (for the calibration
in memory), and /usr/bin/chromium. A script, not a test: tests/test_jupyterlab.py checks the same page."""
import argparse
import io
import sys
import tempfile
from pathlib import Path

from PIL import Image

from headless import browser, jupyterlab, run_in_lab

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = "notebooks/07_explore.ipynb"
MAX_BYTES = 300_000
READY = ("document.querySelectorAll('.srlib-explore .jp-OutputArea-output img').length >= 2 && "
         "!document.querySelector('.srlib-explore').textContent.includes('computing ...')")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "docs" / "explore.png"))
    p.add_argument("--timeout", type=int, default=900, help="seconds for the notebook's cells")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="srlib-shot-") as tmp, jupyterlab(REPO, tmp) as (base, token), \
            browser((1100, 2000)) as b:
        run_in_lab(b, base, token, NOTEBOOK, READY, args.timeout)
        # the record cells at the end compute every mode; then "plot every extent" fills the extent plot
        last = "[...document.querySelectorAll('.jp-CodeCell')].pop()"
        b.wait_for(f"{last}.querySelectorAll('.jp-OutputArea-output img').length >= 2", args.timeout,
                   "the last cell's figures")
        plot = "[...document.querySelectorAll('.srlib-explore img')].pop().src"
        b.js(f"window.srlibPlot = {plot}")
        b.js("[...document.querySelectorAll('.srlib-explore .widget-checkbox')]"
             ".find(e => e.textContent.includes('every extent')).querySelector('input').click()")
        b.wait_for(f"{plot} !== window.srlibPlot", 120, "the extent plot with every extent")
        b.js("document.querySelector('.srlib-explore').scrollIntoView()")
        rect = b.js("(() => { const r = document.querySelector('.srlib-explore').getBoundingClientRect();"
                    " return {x: r.x, y: r.y, width: r.width, height: r.height}; })()")
        png = b.screenshot(rect)
    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(256)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > MAX_BYTES:
        sys.exit(f"the screenshot is {buf.tell():,} bytes, over {MAX_BYTES:,}: make the figures smaller")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_bytes(buf.getvalue())
    print(f"{args.out}: {img.width}x{img.height}, {buf.tell():,} bytes")


if __name__ == "__main__":
    main()
