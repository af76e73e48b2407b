"""The CI profile's whole DAG through DVC, on a copy of the repository (its own file, so that pytest-xdist
runs it beside the Snakemake one): the same output checks, a second run does nothing, DVC's metrics and
plots views, and an ADV edit or a Grad-CAM edit reruns exactly the stages it touches."""
import json
import re

import pytest

from conftest import copy_repo, run
from test_e2e import ADV_ONLY, ANALYSIS_ONLY, PROFILE, _check_outputs, _edit_adv_steps, _edit_cam_samples

pytestmark = pytest.mark.e2e


def test_dvc_dag(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    work = repo / PROFILE
    run("dvc repro", work)
    _check_outputs(work)
    metrics = run("dvc metrics show --json", work)
    assert "pgd10" in metrics.stdout
    again = run("dvc repro", work)
    assert "Running stage" not in again.stdout
    plots = run("dvc plots show dvc.yaml", work)  # the training curves of every history.csv of this set
    page = (work / "dvc_plots" / "index.html").read_text()
    assert "runs/synthetic/aalp/s0/history.csv" in page and "probe_adv_acc" in page, plots.stdout
    run("git add -A && git -c user.email=t@t -c user.name=t commit -qm 'first run'", work)
    _edit_adv_steps(work)
    rerun = run("dvc repro", work)
    ran = set(re.findall(r"Running stage '([^']+)'", rerun.stdout))
    assert ran == ADV_ONLY | {"matrix-check"}  # the guard reruns (cheaply) on every params.yaml edit
    _check_outputs(work)  # the retrained ADV still learns and is robust
    moved = json.loads(run("dvc metrics diff --json", work).stdout)  # what the edit moved, against the commit
    assert "runs/synthetic/adv/s0/eval/metrics.json" in moved and "runs/synthetic/raw/s0/eval/metrics.json" not in moved
    _edit_cam_samples(work)  # a Grad-CAM setting: the analysis stages and the report, nothing else
    rerun = run("dvc repro", work)
    assert set(re.findall(r"Running stage '([^']+)'", rerun.stdout)) == ANALYSIS_ONLY | {"matrix-check"}
    metrics = json.loads(run("dvc metrics show --json", work).stdout)
    assert "gini" in json.dumps(metrics) and "fig01" in json.dumps(metrics)  # analysis numbers are DVC metrics
