#!/usr/bin/env bash
# Source this file: creates .venv from requirements.txt once (again when requirements.txt changes),
# installs srlib in editable mode, registers the Jupyter kernel "srlib", and activates the venv.
# Set SRLIB_PYTHON to choose the interpreter (default: python3, which must be >= 3.10), SRLIB_VENV to use
# a virtual environment elsewhere (default: .venv in the repository).
_top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_venv="${SRLIB_VENV:-$_top/.venv}"
_stamp="$_venv/.srlib-requirements.sha256"
_want="$(cat "$_top/requirements.txt" "$_top/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$_venv/bin/python" ] || [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  _py="${SRLIB_PYTHON:-python3}"
  "$_py" -c 'import sys; assert sys.version_info >= (3, 10), "srlib needs Python >= 3.10"' || return 1
  echo "setting up $_venv (first run takes a few minutes: torch is large)" >&2
  { [ -x "$_venv/bin/python" ] || "$_py" -m venv "$_venv"; } || return 1
  "$_venv/bin/python" -m pip install -q --upgrade pip >&2 || return 1
  "$_venv/bin/python" -m pip install -q -r "$_top/requirements.txt" >&2 || return 1
  # a shared venv (SRLIB_VENV) keeps its own srlib: a copy of the repository must not repoint it
  if [ -z "${SRLIB_VENV:-}" ]; then "$_venv/bin/python" -m pip install -q --no-deps -e "$_top" >&2 || return 1; fi
  "$_venv/bin/python" -m ipykernel install --sys-prefix --name srlib --display-name "Python (srlib)" >/dev/null || return 1
  echo "$_want" > "$_stamp"
fi
# shellcheck disable=SC1091
source "$_venv/bin/activate"
