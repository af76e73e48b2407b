#!/usr/bin/env bash
# A slice of a parameter set on a machine that has PyTorch but not Snakemake (say a GPU lent for minutes):
# the same `python -m aalp train / evaluate / analyze` commands the set's rules run, for each run of the set
# not yet published, JOBS runs at a time (sharing the GPU), each run's stages in order. Everywhere else,
# Snakemake is the way: `snakemake --cores all --resources gpu=N --directory configs/<set>`.
#
#   workflow/scripts/run_slice.sh SET_DIR WORK_DIR [PUBLISHED_DIR]
#
# SET_DIR: the set (its params.yaml; its prepared data/ is linked when there, else `prepare` runs).
# WORK_DIR: where the runs are made, outside the checkout, so that a second call on the same machine finds
#   them: a stage whose output is there is skipped, and an interrupted training or evaluation resumes.
# PUBLISHED_DIR: a set published with `publish --add`; the runs its manifest lists are left out.
# The runs whose methods get AutoAttack (evaluation.autoattack_methods), the longest, go first.
# Environment: PYTHON (default python3), JOBS (default 4); TRAIN_BY, EVAL_BY, ANALYZE_BY: seconds after the start past which that
#   stage is not started; STOP_AT: seconds after which every stage is stopped (SIGTERM: training and
#   evaluation save their resume points); OUT: where runs.tgz (every run file but weights) and logs.tgz go.
# Then, on the machine that holds the set: unpack runs.tgz into a folder with the set's params.yaml and
#   `python -m aalp publish <results/set> --add` there.
set -u
[ $# -ge 2 ] || { echo "usage: $0 SET_DIR WORK_DIR [PUBLISHED_DIR]" >&2; exit 2; }
set_dir=$(cd "$1" && pwd) || exit 2
work=$2 published=${3:-}
[ -f "$set_dir/params.yaml" ] || { echo "$0: no params.yaml in $set_dir" >&2; exit 2; }
[ -z "$published" ] || [ -f "$published/manifest.json" ] || { echo "$0: no manifest.json in $published" >&2; exit 2; }
[ -z "$published" ] || published=$(cd "$published" && pwd)
T0=$(date +%s) JOBS=${JOBS:-4} FAR=999999 PY=${PYTHON:-python3}
export PY T0 TRAIN_BY=${TRAIN_BY:-$FAR} EVAL_BY=${EVAL_BY:-$FAR} ANALYZE_BY=${ANALYZE_BY:-$FAR}
mkdir -p "$work/logs" && cp "$set_dir/params.yaml" "$work/" && cd "$work" || exit 2
[ -d "$set_dir/data" ] && [ ! -e data ] && ln -s "$set_dir/data" data
$PY -m aalp validate || exit 2
runs=$($PY - "$published" <<'EOF'
import json, sys
from aalp import config as C
from aalp.layout import run_dir
cfg = C.load("params.yaml")
done = set(json.load(open(f"{sys.argv[1]}/manifest.json"))["runs"]) if sys.argv[1] else set()
aa = set(cfg["evaluation"].get("autoattack_methods") or [m for e in cfg["experiments"].values() for m in e["methods"]])
todo = [r for r in C.runs(cfg) if run_dir(*r).as_posix() not in done]
for d, m, s in sorted(todo, key=lambda r: ("autoattack" not in cfg["evaluation"]["attacks"] or r[1] not in aa)):
    print(d, m, s)
EOF
) || exit 2
for d in $(echo "$runs" | awk 'NF {print $1}' | sort -u); do
  [ -f "data/$d/manifest.json" ] || $PY -m aalp prepare --dataset "$d" || exit 2
done
one() {  # dataset method seed: its stages in order, each skipped when its output is there
  local d=$1 m=$2 s=$3 rd="runs/$1/$2/s$3" log="logs/$1-$2-s$3.log" st out by
  for st in train evaluate analyze; do
    case $st in train) out=model.pt by=$TRAIN_BY;; evaluate) out=eval/metrics.json by=$EVAL_BY;;
                analyze) out=analysis/summary.json by=$ANALYZE_BY;; esac
    if [ -f "$rd/$out" ]; then echo "HAVE $st" >>"$log"; continue; fi
    if [ $(( $(date +%s) - T0 )) -gt "$by" ]; then echo "SKIP $st at $(( $(date +%s) - T0 )) s" >>"$log"; return 0; fi
    echo "START $st at $(( $(date +%s) - T0 )) s" >>"$log"
    if ! $PY -m aalp "$st" --dataset "$d" --method "$m" --seed "$s" >>"$log" 2>&1; then
      echo "FAILED $st at $(( $(date +%s) - T0 )) s" >>"$log"; return 0
    fi
    echo "DONE $st at $(( $(date +%s) - T0 )) s" >>"$log"
  done
}
export -f one
echo "$(echo "$runs" | grep -c .) runs to make in $work, $JOBS at a time"
if [ -n "${STOP_AT:-}" ]; then
  echo "$runs" | grep . | timeout --kill-after=30 $(( STOP_AT - ($(date +%s) - T0) )) xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1" "$2"'
else
  echo "$runs" | grep . | xargs -P "$JOBS" -L 1 bash -c 'one "$0" "$1" "$2"'
fi
echo "stopped after $(( $(date +%s) - T0 )) s:" $(cat logs/*.log 2>/dev/null | awk '/^(DONE|FAILED|SKIP)/ {print $1 "_" $2}' | sort | uniq -c | awk '{print $2 "=" $1}')
if [ -n "${OUT:-}" ]; then
  tar -czf "$OUT/runs.tgz" --exclude='*.pt' runs && tar -czf "$OUT/logs.tgz" logs
fi
! grep -l "^FAILED" logs/*.log >/dev/null 2>&1
