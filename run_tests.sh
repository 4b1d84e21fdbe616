#!/usr/bin/env bash
# The test suite: pytest unit tests and the nbval notebook regression tests (committed outputs of
# the notebooks' smoke defaults, re-executed and compared).
# Uses the shared datasets when SRLIB_DATA points at them; tests that need real data skip otherwise.
# Extra arguments go to pytest (e.g. ./run_tests.sh -k metrics).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup_env.sh || { echo "run_tests: environment setup failed" >&2; exit 1; }
python -m ruff check srlib tests scripts   # lint (configured in pyproject.toml)
python -m pytest -q tests notebooks --nbval "$@"
