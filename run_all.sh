#!/usr/bin/env bash
# The full reproduction: runs the notebooks in order with papermill and typed parameters from
# configs/<profile>.yaml; executed notebooks go to results/notebooks/ (results/paper/notebooks/ for
# the paper profile).
#   ./run_all.sh            quick profile (CPU, about an hour on 2 cores)
#   ./run_all.sh paper      the paper's schedule (GPU)
#   ./run_all.sh quick --force   retrain even if finished runs exist
#   ./run_all.sh quick --from 04_figures   skip the notebooks before 04_figures (their outputs exist)
# Finished training runs are reused and interrupted ones resume from their last epoch; the script
# stops at the first failing notebook. Data: $SRLIB_DATA, else ./data, else the built-in demo set.
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
force=false
from=""
shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=true ;;
    --from) from="${2:?--from needs a notebook name such as 03_benchmark}"; shift ;;
    *) echo "run_all: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
config="configs/$profile.yaml"
[ -f "$config" ] || { echo "run_all: no config $config (profiles: $(ls configs | sed 's/.yaml//' | tr '\n' ' '))" >&2; exit 2; }
source scripts/setup_env.sh || { echo "run_all: environment setup failed" >&2; exit 1; }
results=$(python -c "import yaml; print(yaml.safe_load(open('$config'))['common']['results_dir'])")
mkdir -p "$results/notebooks"

run() {  # run NOTEBOOK OUTPUT_NAME [key=value ...]
  local nb="notebooks/$1.ipynb" out="$results/notebooks/$2.ipynb"
  if [ -n "$from" ]; then
    if [ "$1" != "$from" ]; then echo "== skipping $nb (--from $from)"; return 0; fi
    from=""
  fi
  shift 2
  local params
  params=$(python - "$config" "$nb" "$@" <<'PY'
import sys, yaml
from srlib.study import notebook_parameters
extra = dict(a.split("=", 1) for a in sys.argv[3:])
extra = {k: yaml.safe_load(v) for k, v in extra.items()}
print(yaml.safe_dump(notebook_parameters(sys.argv[1], sys.argv[2], **extra)))
PY
) || { echo "run_all: bad parameters for $nb in $config" >&2; exit 1; }
  echo "== $(date +%H:%M:%S) $nb -> $out"
  if ! papermill --kernel srlib --log-level WARNING --no-progress-bar -y "$params" "$nb" "$out"; then
    echo "run_all: $nb failed; the executed notebook with the error is $out" >&2
    exit 1
  fi
}

run 01_data 01_data
for model in psnr attention srgan; do
  run 02_train "02_train_$model" model="$model" force="$force"
done
run 03_benchmark 03_benchmark
run 04_figures 04_figures
if [ -f notebooks/05_speed.ipynb ]; then run 05_speed 05_speed; fi
[ -z "$from" ] || { echo "run_all: --from $from matches no notebook" >&2; exit 2; }
echo "run_all: done; results in $results/"
