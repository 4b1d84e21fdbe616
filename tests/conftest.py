import os
from pathlib import Path

import pytest


def _shared_root():
    root = os.environ.get("SRLIB_DATA")
    if root and (Path(root) / "Set5" / "HR").is_dir():
        return Path(root)
    return None


@pytest.fixture(scope="session")
def data_root():
    """The real benchmark data (CI points SRLIB_DATA at the shared datasets); skip when absent."""
    root = _shared_root()
    if root is None:
        pytest.skip("real datasets not available (set SRLIB_DATA to a folder with Set5/HR ...)")
    return root
