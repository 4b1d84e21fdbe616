#!/usr/bin/env bash
# The study's prepared GPU run, in one device call of at most 6 minutes (srlib/gpurun.py explains it). It trains
# the paper-budget grid, configs/paper_budget_grid.yaml (the profile `./run_all.sh paper-budget` trains on the
# CPU: its four arms, common settings and seeds), each (variant, seed) by `python -m srlib ablation`.
#
#   scripts/gpu_run.sh pack     # here: pack the grid's images into cache/gpu_pack, check repository + pack < 64 MiB
#   scripts/gpu_run.sh          # on the GPU machine (cache/gpu_pack carried): bench, the grid's 4 arms x SEEDS,
#                               # archive under $OUT; calling it again continues the runs
#   scripts/gpu_run.sh --dry    # here: pack + size check, then the GPU path on the CPU with the smoke profile's
#                               # tiny network and budget (srlib.gpurun.dry_overrides)
#   python -m srlib gpu-results $OUT_FOLDER     # here, afterwards: unpacks into runs/gpu, scores, writes results/gpu/
#
# Environment (defaults): SEEDS (the grid's, 0 1 2; more seeds are allowed on a GPU; --dry "0 1"), BUDGET_S (330:
# wall seconds of the whole call; training stops in time to write the archive), BENCH_S (90), PACK
# (cache/gpu_pack), WORK (runs/gpu_run), OUT (archive folder; default $WORK/out), SRLIB_DATA (source of the
# pack), PYTHON (default .venv/bin/python, else python3). The budget (steps, warm-up, crop, batch, val_every)
# is the grid's; `python -m srlib gpu-train --set KEY=VALUE` changes it for a trial, as `srlib ablation --set`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
MODE="${1:-device}"
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # srlib importable without installing it
export PYTHONUNBUFFERED=1
PACK="${PACK:-cache/gpu_pack}"
WORK="${WORK:-runs/gpu_run}"
OUT_DIR="${OUT:-$WORK/out}"
DEFAULT_SEEDS=""                                      # empty: the grid's seeds
[ "$MODE" = "--dry" ] && DEFAULT_SEEDS="0 1"
read -r -a SEED_LIST <<< "${SEEDS:-$DEFAULT_SEEDS}"
SEED_ARGS=()
[ "${#SEED_LIST[@]}" -eq 0 ] || SEED_ARGS=(--seeds "${SEED_LIST[@]}")

pack() {
  "$PY" -m srlib gpu-pack --out "$PACK"
}

case "$MODE" in
  pack)
    pack ;;
  --dry)
    pack
    # the device path with the pack as data root, tiny models on the CPU
    SRLIB_DATA="$(cd "$PACK" && pwd)" "$PY" -m srlib gpu-train --dry --work "$WORK" --out "$OUT_DIR" \
      "${SEED_ARGS[@]}" --budget "${BUDGET_S:-240}" --bench-s "${BENCH_S:-60}" ;;
  device)
    [ -d "$PACK" ] || { echo "no $PACK: run 'scripts/gpu_run.sh pack' here and carry $PACK" >&2; exit 2; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    SRLIB_DATA="$(cd "$PACK" && pwd)" "$PY" -m srlib gpu-train --work "$WORK" --out "$OUT_DIR" \
      "${SEED_ARGS[@]}" --budget "${BUDGET_S:-330}" --bench-s "${BENCH_S:-90}" ;;
  *)
    echo "usage: scripts/gpu_run.sh [pack | --dry]" >&2; exit 2 ;;
esac
