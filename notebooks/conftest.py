"""nbval runs every notebook here at its parameters' defaults (./run_tests.sh: pytest notebooks --nbval). Those of
07_explore read a benchmark image (Set5) and, to calibrate the committed generators, their training images
(quick-train) from the data root: without that data it is skipped, as the tests that need real data are; in CI
(which has it) it may not skip."""
import os

import pytest

NEEDS_DATA = {"07_explore.ipynb": ["Set5", "quick-train"]}


def pytest_collection_modifyitems(config, items):
    from srlib.data import available, data_root
    if os.environ.get("CI"):
        return
    for name, needs in NEEDS_DATA.items():
        missing = sorted(set(needs) - set(available(needs)))
        if missing:
            skip = pytest.mark.skip(reason=f"{name} needs {', '.join(missing)} under {data_root()}")
            for item in items:
                if item.path.name == name:
                    item.add_marker(skip)
