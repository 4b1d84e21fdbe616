import os
import sys
import warnings
from pathlib import Path

import pytest

# scripts/headless.py (Chromium over the DevTools protocol, a JupyterLab server) is shared with scripts/
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from headless import CHROMIUM  # noqa: E402


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


@pytest.fixture
def chromium(request):
    """Headless Chromium is there; skip (with a warning) where it is not, but fail in CI (.ci/run installs it)."""
    if not os.path.exists(CHROMIUM):
        reason = f"{CHROMIUM} not installed (apt-get install chromium; .ci/run installs it in CI)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}: the browser test may not skip in CI")
        warnings.warn(f"{request.node.name} skipped: {reason}", stacklevel=1)
        pytest.skip(reason)
    return CHROMIUM
