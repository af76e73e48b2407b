#!/usr/bin/env bash
# As much of a parameter set as fits in a short GPU window, on a machine that has PyTorch and this repository's
# src/ but nothing else (no Snakemake, no network): a short `bench speed`, then the runs not yet published, one
# (dataset, method) at a time as a seed group sized to what fits before the deadline (train --seeds, evaluate,
# analyze; SIGTERM at the deadline, resumed by the next call on the same WORK_DIR), then what comes back.
#
#   DEADLINE=780 ORDER="alp aalp" workflow/scripts/gpu_window.sh SET_DIR WORK_DIR OUT_DIR [PUBLISHED_DIR]
#
# SET_DIR: the set (its params.yaml; its data/ is linked when there, else `prepare` runs).
# WORK_DIR: where the runs are made (outside the checkout, e.g. /tmp/window); a next call on it resumes.
# OUT_DIR: what comes back: speed.json, runs.tgz (params.yaml and run files, no weights; in 15 MB pieces
#   runs.tgz.00, .01, ... when larger), logs.tgz, window.json. At most 7 files.
# PUBLISHED_DIR: a folder with the published set's manifest.json; the runs it lists are left out.
# Environment: DEADLINE (seconds from the start, default 780), ORDER (methods first), SPEED=0 (no bench speed),
#   WINDOW_SCALE, WINDOW_ESTIMATE, PYTHON (default python3). How it sizes and orders: src/aalp/tools/window.py.
# Back on the machine that holds the set: `cat runs.tgz* | tar -xz -C slice && cd slice &&
#   python -m aalp publish <checkout>/results/<set> --add` (README: Sharing results).
set -u
[ $# -ge 3 ] && [ $# -le 4 ] || { echo "usage: $0 SET_DIR WORK_DIR OUT_DIR [PUBLISHED_DIR]" >&2; exit 2; }
[ -f "$1/params.yaml" ] || { echo "$0: no params.yaml in $1" >&2; exit 2; }
[ $# -lt 4 ] || [ -f "$4/manifest.json" ] || { echo "$0: no manifest.json in $4" >&2; exit 2; }
src=$(cd "$(dirname "$0")/../../src" && pwd) || exit 2
export PYTHONPATH="$src${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m aalp --params "$1/params.yaml" window "$@"
