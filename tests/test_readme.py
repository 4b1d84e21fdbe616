"""The README's result blocks are what scripts/readme_tables.py generates from results/, character for character."""
import importlib.util
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
    generated = rt.blocks(RESULTS)
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
    with pytest.raises(KeyError, match="results:nonsense"):
        rt.fill("<!-- results:nonsense -->\nx\n<!-- /results:nonsense -->", {})
