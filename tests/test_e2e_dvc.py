"""DVC on the CI profile's run, and switching between the two engines.

It starts from the Snakemake run (conftest.ci_snakemake_run), on its own copy: after Snakemake, `dvc status`
has nothing to do (the Snakefile records its jobs in dvc.lock); an ADV edit or a Grad-CAM edit makes
`dvc repro` rerun exactly the stages it touches (the Grad-CAM edit in test_e2e_dvc_cam.py, on its own copy,
so that two xdist workers run them side by side), and Snakemake then has nothing to do. DVC's metrics and
plots views and results shared through a DVC remote: test_e2e_dvc_remote.py; queued experiments:
test_e2e_dvc_exp.py (files of their own, so that they run side by side on two xdist workers).
"""
import json
import re

import pytest
import yaml

from conftest import CI_SET, copy_workspace, run
from test_e2e import ADV_ONLY, _check_outputs, _edit_adv_steps

pytestmark = pytest.mark.e2e
GIT = "git -c user.email=t@t -c user.name=t"


def _ran(out: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", out))


def _snakemake_has_nothing_to_do(repo):
    dry = run(f"snakemake -n --cores 2 --directory {CI_SET}", repo)
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout[-3000:] + dry.stderr[-3000:]
    return dry


def _report_files(work):
    return sorted(p.relative_to(work) for p in (work / "reports").rglob("*") if p.is_file())


def test_dvc_after_snakemake_reruns_what_an_edit_touches(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    # Snakemake -> DVC: the Snakemake run is recorded, so DVC has nothing to do
    status = run("dvc status dvc.yaml", work)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout[-3000:]
    assert not _ran(run("dvc repro", work).stdout)
    run(f"{GIT} add -A && {GIT} commit -qm 'CI set results'", repo)  # `dvc metrics diff` compares with this

    # an ADV edit: DVC reruns exactly its stages, and then Snakemake has nothing to do (DVC -> Snakemake)
    _edit_adv_steps(work)
    rerun = run("dvc repro", work)
    assert _ran(rerun.stdout) == ADV_ONLY | {"matrix-check"}  # the guard reruns (cheaply) on every params.yaml edit
    _check_outputs(work)  # the retrained ADV still learns and is robust
    moved = json.loads(run("dvc metrics diff --json", work).stdout)  # what the edit moved, against the commit
    assert "runs/synthetic/adv/s0/eval/metrics.json" in moved and "runs/synthetic/raw/s0/eval/metrics.json" not in moved
    dry = _snakemake_has_nothing_to_do(repo)
    assert "adopted" in dry.stderr  # it took DVC's word for the retrained ADV, rather than training it again
    # ... and a parameter edit after the switch is still seen by Snakemake (its records were rewritten, not dropped)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["methods"]["adv"]["attack"] = {"steps": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = run(f"snakemake -n --cores 2 --directory {CI_SET}", repo)
    assert re.search(r"^train\s+2$", dry.stdout, re.M), dry.stdout[-2000:]  # ADV on both datasets

