#!/usr/bin/env bash
# GPU speed check, one command, under 8 minutes: torch/CUDA info, `python -m srlib bench` on CUDA
# (srgan and attention, crops 96 and 128, srlib's bf16-autocast step against the fp32 naive one; steps/s,
# FLOPs per step counted with FlopCounterMode on the actual step, achieved TFLOP/s and the fraction of the
# bf16 dense peak), then a timed quick training profile of the attention model.
#
#   scripts/gpu_check.sh            # on a machine with a CUDA GPU
#   scripts/gpu_check.sh --dry      # CPU, tiny models: checks the Python parts in seconds (no training run)
#
# Environment: PEAK_BF16_TFLOPS (default 989, the dense bf16 peak of H100 / H200 SXM; e.g. 756 for H100
# PCIe, 312 for A100), SRLIB_DATA (data root; default shared/datasets in the repository when present),
# PYTHON (default .venv/bin/python, else python3), OUT (when set, output is also written to
# $OUT/gpu_check.txt, with the CSV and the training run under $OUT).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DRY=0
[ "${1:-}" = "--dry" ] && DRY=1
PY="${PYTHON:-}"
[ -n "$PY" ] || { [ -x .venv/bin/python ] && PY=.venv/bin/python || PY=python3; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # srlib importable even when not installed
export PEAK_BF16_TFLOPS="${PEAK_BF16_TFLOPS:-989}"
OUT_DIR="${OUT:-}"
WORK="${OUT_DIR:-$(mktemp -d)}"
mkdir -p "$WORK"
DATA="${SRLIB_DATA:-}"
[ -z "$DATA" ] && [ -d shared/datasets ] && DATA="$PWD/shared/datasets"

main() {
  echo "== gpu_check $(date -u +%FT%TZ) on $(hostname); dry=$DRY; python $PY"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm \
    --format=csv,noheader
  "$PY" - <<'EOF' || { echo "torch import failed: nothing else can run"; return 1; }
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, "
      f"CUDA available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"  cuda:{i} {p.name}, capability {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, "
          f"{p.multi_processor_count} SMs, bf16 {torch.cuda.is_bf16_supported()}")
EOF
  echo "peak used for the fraction: PEAK_BF16_TFLOPS=$PEAK_BF16_TFLOPS TFLOP/s (989 = H100/H200 SXM bf16 dense)"
  if [ "$DRY" = 1 ]; then
    timeout 300 "$PY" -m srlib bench --tiny --device cpu --amp bf16 --peak-tflops "$PEAK_BF16_TFLOPS" \
      --out "$WORK/speed_dry.csv"
    echo "bench exit $?; dry run: training skipped"
    return 0
  fi
  # full bench preset on CUDA: crops 96 and 128, both models, 3 warm-up + 10 timed steps per path,
  # data loading, tiled inference of 512x512 and 2048x2048 LR inputs
  timeout 300 "$PY" -m srlib bench --device cuda --out "$WORK/speed_cuda.csv"
  echo "bench exit $? (124: timed out after 300 s)"
  local args=(--model attention --profile quick --out "$WORK/quick_attention" --force)
  [ -n "$DATA" ] && args+=(--data-root "$DATA")
  echo "== quick training profile: python -m srlib train ${args[*]}"
  local t0=$SECONDS
  timeout 150 "$PY" -m srlib train "${args[@]}"
  local rc=$?
  echo "quick attention training: $((SECONDS - t0)) s wall, exit $rc (124: stopped by the 150 s timeout)"
  [ -f "$WORK/quick_attention/metrics.csv" ] && cat "$WORK/quick_attention/metrics.csv"
  return 0
}

if [ -n "$OUT_DIR" ]; then
  main 2>&1 | tee "$OUT_DIR/gpu_check.txt"
else
  main 2>&1
fi
