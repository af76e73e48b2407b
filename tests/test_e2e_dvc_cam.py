"""DVC on the CI profile's Snakemake run (conftest.ci_snakemake_run), on its own copy: a Grad-CAM edit makes
`dvc repro` rerun exactly the analysis stages and the report, and Snakemake then has nothing to do (the ADV
edit: test_e2e_dvc.py, on another xdist worker)."""
import json

import pytest

from conftest import CI_SET, copy_workspace, run
from test_e2e import ANALYSIS_ONLY, _edit_cam_samples
from test_e2e_dvc import _ran, _snakemake_has_nothing_to_do

pytestmark = pytest.mark.e2e


def test_dvc_reruns_only_the_analyses_and_the_report_after_a_grad_cam_edit(ci_snakemake_run, tmp_path):
    """A Grad-CAM setting (its own copy of the Snakemake run, beside the ADV test on another worker): DVC
    reruns the analysis stages and the report, nothing else; then Snakemake has nothing to do."""
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    _edit_cam_samples(work)
    rerun = run("dvc repro", work)
    assert _ran(rerun.stdout) == ANALYSIS_ONLY | {"matrix-check"}
    metrics = json.loads(run("dvc metrics show --json", work).stdout)
    assert "gini" in json.dumps(metrics) and "fig01" in json.dumps(metrics)  # analysis numbers are DVC metrics
    _snakemake_has_nothing_to_do(repo)
