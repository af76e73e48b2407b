"""DVC on the CI profile's run, and switching between the two engines.

It starts from the Snakemake run (conftest.ci_snakemake_run), on its own copy: after Snakemake, `dvc status`
has nothing to do (the Snakefile records its jobs in dvc.lock); an ADV edit or a Grad-CAM edit makes
`dvc repro` rerun exactly the stages it touches, and Snakemake then has nothing to do; DVC's metrics and
plots views; results shared through a DVC remote (a local folder standing in for S3 or SSH) reach a
fresh clone, where `dvc repro` and `snakemake -n` have nothing to do and the report is the same. Queued
experiments: test_e2e_dvc_exp.py (its own file, so that the two run side by side on two xdist workers).
"""
import json
import re

import pytest
import yaml

from conftest import CI_SET, copy_workspace, run
from test_e2e import ADV_ONLY, ANALYSIS_ONLY, _check_outputs, _edit_adv_steps, _edit_cam_samples

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


def test_dvc_after_snakemake_reruns_what_an_edit_touches_and_shares_through_a_remote(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    # Snakemake -> DVC: the Snakemake run is recorded, so DVC has nothing to do
    status = run("dvc status dvc.yaml", work)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout[-3000:]
    assert not _ran(run("dvc repro", work).stdout)
    metrics = run("dvc metrics show --json", work)
    assert "pgd10" in metrics.stdout
    plots = run("dvc plots show dvc.yaml", work)  # the training curves of every history.csv of this set
    page = (work / "dvc_plots" / "index.html").read_text()
    assert "runs/synthetic/aalp/s0/history.csv" in page and "probe_adv_acc" in page, plots.stdout

    # share: a default remote, committed with the results (small metrics files go to git, the rest to the remote)
    remote = tmp_path / "remote"
    run(f"dvc remote add -d shared {remote}", work)
    run(f"{GIT} add -A && {GIT} commit -qm 'CI set results'", repo)
    run("dvc push dvc.yaml", work)  # this set's stages (a bare `dvc push` means every dvc.yaml of the repository)
    assert any(p.is_file() for p in remote.rglob("*"))
    published = {p: (work / p).read_bytes() for p in _report_files(work)}

    # an ADV edit: DVC reruns exactly its stages, and then Snakemake has nothing to do (DVC -> Snakemake)
    _edit_adv_steps(work)
    rerun = run("dvc repro", work)
    assert _ran(rerun.stdout) == ADV_ONLY | {"matrix-check"}  # the guard reruns (cheaply) on every params.yaml edit
    _check_outputs(work)  # the retrained ADV still learns and is robust
    moved = json.loads(run("dvc metrics diff --json", work).stdout)  # what the edit moved, against the commit
    assert "runs/synthetic/adv/s0/eval/metrics.json" in moved and "runs/synthetic/raw/s0/eval/metrics.json" not in moved
    dry = _snakemake_has_nothing_to_do(repo)
    assert "adopted" in dry.stderr  # it took DVC's word for the retrained ADV, rather than training it again
    _edit_cam_samples(work)  # a Grad-CAM setting: the analysis stages and the report, nothing else
    rerun = run("dvc repro", work)
    assert _ran(rerun.stdout) == ANALYSIS_ONLY | {"matrix-check"}
    metrics = json.loads(run("dvc metrics show --json", work).stdout)
    assert "gini" in json.dumps(metrics) and "fig01" in json.dumps(metrics)  # analysis numbers are DVC metrics
    _snakemake_has_nothing_to_do(repo)
    # ... and a parameter edit after the switch is still seen by Snakemake (its records were rewritten, not dropped)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["methods"]["adv"]["attack"] = {"steps": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dry = run(f"snakemake -n --cores 2 --directory {CI_SET}", repo)
    assert re.search(r"^train\s+2$", dry.stdout, re.M), dry.stdout[-2000:]  # ADV on both datasets

    # a collaborator: fresh clone, dvc pull, nothing to rerun in either engine, the same report
    clone = tmp_path / "clone"
    run(f"git clone -q {repo} {clone}", tmp_path)
    cwork = clone / CI_SET
    run("dvc pull dvc.yaml", cwork)
    assert not _ran(run("dvc repro", cwork).stdout)
    _snakemake_has_nothing_to_do(clone)
    assert _report_files(cwork) == sorted(published)
    assert all((cwork / p).read_bytes() == b for p, b in published.items())
