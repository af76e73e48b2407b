"""Queued DVC experiments on the CI profile's run: another lambda of AALP queued with `dvc exp run --queue -S`,
run by `dvc queue start` in DVC's copy of the checkout (where `python -m aalp` switches to the copy's own code),
and listed with its own metrics beside the committed run's (lambda 0.5) by `dvc exp show`. One queued
experiment, not a sweep: the queue runs each the same way, and CI time goes to what differs. It starts from
the Snakemake run (conftest.ci_snakemake_run), on its own copy, beside test_e2e_dvc.py on another xdist worker."""
import json
import re
import time

import pytest

from conftest import CI_SET, copy_workspace, run
from test_e2e_dvc import GIT

pytestmark = pytest.mark.e2e


def test_a_queued_experiment_over_another_lambda(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    run(f"{GIT} add -A && {GIT} commit -qm 'CI set results'", repo)  # experiments start from a commit
    run(f"{GIT} config user.email t@t && {GIT} config user.name t", repo)
    # a queued experiment at another lambda (only AALP's seed-0 evaluation is asked for, to stay quick);
    # DVC runs it in a copy of the checkout, where `python -m aalp` switches to the copy's own code
    run("dvc exp run --queue -S methods.aalp.lambda=1.0 evaluate-synthetic-aalp-s0", work)
    run("dvc queue start", work)
    # wait: a finished experiment is a git ref refs/exps/<baseline>/<name> (a cheap poll); `dvc queue status` (a DVC start
    # of a few seconds of CPU, which the other xdist worker needs) only every 30 s, to stop early on a failure
    deadline, asked = time.time() + 900, 0.0
    while time.time() < deadline:
        refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).stdout.split()
        done = any(re.match(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/", r) for r in refs)  # not the queue's stash
        if done or time.time() - asked > 30:
            queue, asked = run("dvc queue status", work).stdout, time.time()
            if not re.search(r"\b(Queued|Running)\b", queue):
                break
        time.sleep(2)
    run("dvc queue stop", work)  # its worker would otherwise idle on
    assert queue.count("Success") == 1, queue
    shown = json.loads(run("dvc exp show --json", work).stdout)  # paths relative to the repository root

    def lambda_and_accuracy(data):
        lam = data["params"][f"{CI_SET}/params.yaml"]["data"]["methods"]["aalp"]["lambda"]
        return lam, data["metrics"][f"{CI_SET}/runs/synthetic/aalp/s0/eval/metrics.json"]["data"]["accuracy"]

    committed, queued = {}, {}
    for base in shown:
        if base.get("data"):  # the workspace and the commit the experiment started from
            committed.update([lambda_and_accuracy(base["data"])])
        for exp in base.get("experiments") or []:
            for rev in exp["revs"]:
                queued.update([lambda_and_accuracy(rev.get("data") or {})])
    assert set(committed) == {0.5} and set(queued) == {1.0}, (committed, queued)
    assert all(0 <= m["pgd10"] <= 100 for m in (*committed.values(), *queued.values()))
    assert queued[1.0] != committed[0.5]  # another lambda trains another model, evaluated in the copy
