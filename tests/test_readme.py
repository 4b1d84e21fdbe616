"""The README's result tables are copies of what run_all.sh wrote into results/, line for line."""
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


def _table_rows(text):
    return [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| Method")]


def _missing(expected, readme):
    lines = set(readme.splitlines())
    return [row for row in expected if row not in lines]


@pytest.mark.skipif(not (RESULTS / "table1.md").exists(), reason="no results/table1.md")
def test_readme_table1_is_results_table1():
    """Every table row of results/table1.md (both protocols, the inference modes) is in the README as it is."""
    rows = _table_rows((RESULTS / "table1.md").read_text())
    assert len(rows) >= 14
    missing = _missing(rows, (TOP / "README.md").read_text())
    assert not missing, f"README rows not as in results/table1.md (python scripts/readme_tables.py): {missing}"


@pytest.mark.skipif(not (RESULTS / "train").exists(), reason="no committed runs")
def test_readme_training_summary_is_generated():
    rows = _table_rows(_readme_tables().training_summary(RESULTS))
    missing = _missing(rows, (TOP / "README.md").read_text())
    assert not missing, f"README training rows differ from scripts/readme_tables.py: {missing}"


def test_the_check_fails_on_an_edited_number():
    rows = ["| Attention (ours) | 30.32 / 0.8612 | 27.31 / 0.7472 |"]
    assert _missing(rows, "text\n" + rows[0] + "\n") == []
    assert _missing(rows, "text\n" + rows[0].replace("30.32", "30.33") + "\n") == rows
