#!/usr/bin/env bash
# The full reproduction: checks the data, then runs the notebooks in order with papermill and typed
# parameters from configs/<profile>.yaml.
#   ./run_all.sh            quick profile (CPU; reuses the committed runs, as on a fresh clone; each notebook's
#                           measured wall time goes to <results>/run_all_timings.csv; 03_benchmark's perceptual
#                           measures, ST-LPIPS above all at about 19 s per Urban100 image, make it take hours)
#   ./run_all.sh demo       the whole pipeline on built-in sample images in minutes (numbers meaningless;
#                           writes runs/demo/, never results/); 'smoke' is the same
#   ./run_all.sh paper      the paper's schedule (GPU)
#   ./run_all.sh quick --force   retrain even if finished runs exist
#   ./run_all.sh quick --from 04_figures   skip the notebooks before 04_figures (their outputs exist)
#   ./run_all.sh quick --from 03_benchmark --to 04_figures   only 03 and 04 (e.g. new measures, same models)
#   ./run_all.sh ablation   the seeded ablation grid (configs/ablation_grid.yaml; hours on a CPU, resumable:
#                           run it again to continue) and its analysis, notebook 06_ablation
#   ./run_all.sh ablation --no-train   only the analysis of the runs finished so far (a grid in progress)
#   ./run_all.sh paper-budget   Table 1 at the paper's budget (configs/paper_budget_grid.yaml: four arms, 5,000
#                           steps at crop 128, 3 seeds; about 3.9 hours per seed on a CPU, resumable) and its
#                           analysis into results/paper-budget/; --no-train as for ablation
# notebooks/07_explore.ipynb (one image, every model and inference mode, with widgets) is not a step of it: open
# it in JupyterLab.
# 1. Pre-flight: every dataset the profile reads must be under the data root ($SRLIB_DATA, else ./data);
#    what is missing is downloaded (sizes stated first, checksums checked). If that is impossible it stops
#    at once, naming what is missing and the fix, before touching anything.
# 2. Everything is written to a staging folder (.staging/<profile>/, seeded with the finished training
#    runs of the results folder) and moved into the results folder only when every notebook succeeded:
#    a failed or interrupted run never changes committed results. Run it again to continue: finished
#    runs are reused (also the committed ones, which have no resume checkpoint) and interrupted ones
#    resume from their last validation.
# 3. One run_all per profile at a time: it holds the lock .staging/<profile>.lock for its whole life (released
#    by the kernel however it ends, so a killed run_all never blocks the next). A second one on the same
#    profile stops at once, before touching anything, naming the holder (pid, host, start time): exit 75.
#    Each training run folder has its own lock too (a `srlib train` or `srlib ablation` writing a run this
#    needs stops it with exit 75 and that message); readers (--no-train, evaluate, verify) take none.
# A notebook that fails is named with its cell and the first line of the error; results/ is then unchanged.
# 4. Each notebook's wall time, CPU load and whether the cores were quiet go to $results/run_all_timings.csv
#    (srlib/timings.py); a notebook run again replaces its row, the rows of notebooks --from/--to skipped stay.
set -euo pipefail
cd "$(dirname "$0")"
profile="${1:-quick}"
force=false
train=true
from=""
to=""
shift || true
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=true ;;
    --no-train) train=false ;;
    --from) from="${2:?--from needs a notebook name such as 03_benchmark}"; shift ;;
    --to) to="${2:?--to needs a notebook name such as 04_figures}"; shift ;;
    *) echo "run_all: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
for nb in "$from" "$to"; do
  [ -z "$nb" ] || [ -f "notebooks/$nb.ipynb" ] || { echo "run_all: no notebook notebooks/$nb.ipynb" >&2; exit 2; }
  # notebooks/07_explore.ipynb is for exploring in JupyterLab, not a step of the pipeline (no config entry)
  [ "$nb" != 07_explore ] || { echo "run_all: notebooks/$nb.ipynb is not part of run_all's pipeline: open it in JupyterLab" >&2; exit 2; }
done
[ "$profile" = smoke ] && profile=demo
grid_profile=false
case "$profile" in ablation|paper-budget) grid_profile=true ;; esac
[ "$train" = true ] || [ "$grid_profile" = true ] || { echo "run_all: --no-train is for the ablation and paper-budget profiles" >&2; exit 2; }
config="configs/$profile.yaml"
[ -f "$config" ] || { echo "run_all: no config $config (profiles: $(ls configs | sed 's/.yaml//' | tr '\n' ' '))" >&2; exit 2; }
source scripts/setup_env.sh || { echo "run_all: environment setup failed" >&2; exit 1; }
mkdir -p .staging
exec 9<>".staging/$profile.lock"        # fd 9 stays open (the lock held) until this script ends
if ! python -m srlib.lock --fd 9 --pid $$ ".staging/$profile"; then   # says who holds it
  echo "run_all: another run_all is running on profile $profile; nothing was changed" >&2
  exit 75
fi
python -m srlib prepare "$config" || { echo "run_all: stopped before any work: the data above is missing" >&2; exit 3; }
results=$(python -c "import yaml; print(yaml.safe_load(open('$config'))['common']['results_dir'])")
stage=".staging/$profile"
if [ -f "$stage/.promoting" ]; then     # the last run finished but was stopped while moving its results
  echo "run_all: finishing the interrupted move of $stage into $results/"
  python -m srlib.staging promote "$stage" "$results"
fi
if [ ! -d "$stage" ]; then
  mkdir -p "$stage.tmp"
  # the stage starts as a copy of the results folder: its finished training runs are reused, and the outputs
  # of notebooks that --from skips are there for the later ones (a runs folder elsewhere, as the ablation's,
  # whose weights are never committed, is used in place)
  # (promote moves back only the files that changed since this copy)
  python -m srlib.staging start "$results" "$stage.tmp"
  mv "$stage.tmp" "$stage"
else
  echo "run_all: continuing the interrupted run in $stage"
fi
mkdir -p "$stage/notebooks"
declare -a timings=()
done_to=false

run() {  # run NOTEBOOK OUTPUT_NAME [key=value ...]
  local key="$1" nb="notebooks/$1.ipynb" out="$stage/notebooks/$2.ipynb" name="$2"
  if [ "$done_to" = true ] && [ "$key" != "$to" ]; then echo "== skipping $nb (--to $to)"; return 0; fi
  if [ -n "$from" ]; then
    if [ "$1" != "$from" ]; then echo "== skipping $nb (--from $from)"; return 0; fi
    from=""
  fi
  shift 2
  local params
  params=$(python - "$config" "$nb" "$results" "$stage" "$@" <<'PY'
import sys, yaml
from srlib.staging import notebook_parameters, relocate
extra = dict(a.split("=", 1) for a in sys.argv[5:])
extra = {k: yaml.safe_load(v) for k, v in extra.items()}
params = notebook_parameters(sys.argv[1], sys.argv[2], **extra)
print(yaml.safe_dump(relocate(params, sys.argv[3], sys.argv[4])))
PY
) || { echo "run_all: bad parameters for $nb in $config" >&2; exit 1; }
  echo "== $(date +%H:%M:%S) $nb -> $out"
  local t0=$SECONDS mark
  mark=$(python -m srlib.timings mark)    # for $results/run_all_timings.csv (srlib/timings.py: columns, 'quiet')
  times > "$stage.times0"                 # CPU time of this shell's children so far (papermill's comes next)
  # --log-output: what the cells print (training reports every validation) streams here as it happens
  local rc
  set +e
  papermill --kernel srlib --log-output --log-level INFO -y "$params" "$nb" "$out" 2>&1 \
    | grep --line-buffered -v -E "Kernel is running over TCP|IPKernelApp|^Executing" \
    | sed -u 's/^.* - papermill - INFO - /   /'
  rc=${PIPESTATUS[0]}
  set -e
  times > "$stage.times1"
  if [ "$rc" -ne 0 ]; then
    echo "run_all: $nb failed in $(python -m srlib.staging failure "$out" 2>/dev/null || echo "a cell (unreadable $out)")" >&2
    echo "run_all: the executed notebook with the error is $out; $results/ is unchanged." >&2
    echo "run_all: run the same command again to continue from there (finished work is reused)." >&2
    exit 1
  fi
  python -m srlib.timings record "$stage/run_all_timings.csv" "$name" "$profile" $((SECONDS - t0)) "$mark" \
    "$stage.times0,$stage.times1"
  rm -f "$stage.times0" "$stage.times1"
  timings+=("$(printf '%-22s %6d s' "$name" $((SECONDS - t0)))")
  if [ "$key" = "$to" ]; then done_to=true; fi
}

if [ "$grid_profile" = true ]; then
  run 06_ablation "06_${profile//-/_}" train="$train"
else
  run 01_data 01_data
  for model in psnr attention srgan; do
    run 02_train "02_train_$model" model="$model" force="$force"
  done
  run 03_benchmark 03_benchmark
  run 04_figures 04_figures
  run 05_speed 05_speed
fi
[ -z "$from" ] || { echo "run_all: --from $from matches no notebook" >&2; exit 2; }
[ -z "$to" ] || [ "$done_to" = true ] || { echo "run_all: --to $to matches no notebook" >&2; exit 2; }
python -m srlib.staging promote "$stage" "$results"
echo "run_all: time per notebook:"
printf '  %s\n' "${timings[@]}"
echo "run_all: done; results in $results/"
