"""Queued DVC experiments on the CI profile's run: two lambda values of AALP queued with `dvc exp run
--queue -S`, run by `dvc queue start` in DVC's copies of the checkout (where `python -m aalp` switches to the
copy's own code), and listed with their own metrics by `dvc exp show`. It starts from the Snakemake run
(conftest.ci_snakemake_run), on its own copy, beside test_e2e_dvc.py on another xdist worker."""
import json
import re
import time

import pytest

from conftest import CI_SET, copy_workspace, run
from test_e2e_dvc import GIT

pytestmark = pytest.mark.e2e


def test_queued_experiments_over_two_lambdas(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    run(f"{GIT} add -A && {GIT} commit -qm 'CI set results'", repo)  # experiments start from a commit
    run(f"{GIT} config user.email t@t && {GIT} config user.name t", repo)
    # queued experiments over two lambda values (only AALP's seed-0 evaluation is asked for, to stay quick);
    # DVC runs them in copies of the checkout, where `python -m aalp` switches to the copy's own code
    for lam in (0.25, 1.0):
        run(f"dvc exp run --queue -S methods.aalp.lambda={lam} evaluate-synthetic-aalp-s0", work)
    run("dvc queue start -j 2", work)  # two queue workers: the two experiments side by side
    deadline = time.time() + 900
    while time.time() < deadline:
        queue = run("dvc queue status", work).stdout
        if not re.search(r"\b(Queued|Running)\b", queue):
            break
        time.sleep(3)
    run("dvc queue stop", work)  # its worker would otherwise idle on
    assert queue.count("Success") == 2, queue
    shown = json.loads(run("dvc exp show --json", work).stdout)  # paths relative to the repository root
    lambdas = {}
    for base in shown:
        for exp in base.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev.get("data") or {}
                lam = data["params"][f"{CI_SET}/params.yaml"]["data"]["methods"]["aalp"]["lambda"]
                metrics = data["metrics"][f"{CI_SET}/runs/synthetic/aalp/s0/eval/metrics.json"]["data"]["accuracy"]
                lambdas[lam] = metrics
    assert set(lambdas) == {0.25, 1.0} and all(0 <= m["pgd10"] <= 100 for m in lambdas.values()), lambdas
    assert lambdas[0.25] != lambdas[1.0]  # a different lambda trains a different model
