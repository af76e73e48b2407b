"""DVC's views of the CI profile's Snakemake run and sharing it through a DVC remote.

It starts from the Snakemake run (conftest.ci_snakemake_run), on its own copy: DVC's metrics and plots views;
results shared through a DVC remote (a local folder standing in for S3 or SSH) reach a fresh clone, where
`dvc repro` and `snakemake -n` have nothing to do and the report is the same (test_e2e_dvc.py: edits)."""
import pytest

from conftest import CI_SET, copy_workspace, run
from test_e2e_dvc import GIT, _ran, _report_files, _snakemake_has_nothing_to_do

pytestmark = pytest.mark.e2e


def test_dvc_views_and_sharing_through_a_remote(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    assert "Data and pipelines are up to date" in run("dvc status dvc.yaml", work).stdout
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

    # a collaborator: fresh clone, dvc pull, nothing to rerun in either engine, the same report
    clone = tmp_path / "clone"
    run(f"git clone -q {repo} {clone}", tmp_path)
    cwork = clone / CI_SET
    run("dvc pull dvc.yaml", cwork)
    assert not _ran(run("dvc repro", cwork).stdout)
    _snakemake_has_nothing_to_do(clone)
    assert _report_files(cwork) == sorted(published)
    assert all((cwork / p).read_bytes() == b for p, b in published.items())
