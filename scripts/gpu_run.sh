#!/usr/bin/env bash
# The study's prepared GPU run, in one device call of at most 6 minutes (srlib/gpurun.py explains it).
#
#   scripts/gpu_run.sh pack     # here: pack the images into cache/gpu_pack, check repository + pack < 64 MiB
#   scripts/gpu_run.sh          # on the GPU machine (cache/gpu_pack carried): bench, 3 models x SEEDS at
#                               # STEPS, archive under $OUT; calling it again continues the runs
#   scripts/gpu_run.sh --dry    # here: pack + size check, then the GPU path on the CPU with tiny settings
#   python -m srlib gpu-results $OUT_FOLDER     # here, afterwards: scores, writes results/gpu/
#
# Environment (defaults): STEPS (5000: the paper's generator steps per model), GAN_STEPS (400: the quick
# recipe's steps of each model's own loss after the shared L1 warm-up), SEEDS ("0 1 2"; --dry "0 1"), BUDGET_S (330:
# wall seconds of the whole call; training stops in time to write the archive), BENCH_S (90), VAL_EVERY
# (1000), PACK (cache/gpu_pack), WORK (runs/gpu_run), OUT (archive folder; default $WORK/out),
# SRLIB_DATA (source of the pack), PYTHON (default .venv/bin/python, else python3).
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
DEFAULT_SEEDS="0 1 2"
[ "$MODE" = "--dry" ] && DEFAULT_SEEDS="0 1"
read -r -a SEED_LIST <<< "${SEEDS:-$DEFAULT_SEEDS}"

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
      --seeds "${SEED_LIST[@]}" --steps "${STEPS:-4}" --gan-steps "${GAN_STEPS:-2}" --val-every "${VAL_EVERY:-2}" \
      --budget "${BUDGET_S:-120}" --bench-s "${BENCH_S:-60}" ;;
  device)
    [ -d "$PACK" ] || { echo "no $PACK: run 'scripts/gpu_run.sh pack' here and carry $PACK" >&2; exit 2; }
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    SRLIB_DATA="$(cd "$PACK" && pwd)" "$PY" -m srlib gpu-train --work "$WORK" --out "$OUT_DIR" \
      --seeds "${SEED_LIST[@]}" --steps "${STEPS:-5000}" --gan-steps "${GAN_STEPS:-400}" \
      --val-every "${VAL_EVERY:-1000}" --budget "${BUDGET_S:-330}" --bench-s "${BENCH_S:-90}" ;;
  *)
    echo "usage: scripts/gpu_run.sh [pack | --dry]" >&2; exit 2 ;;
esac
