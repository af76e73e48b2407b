"""Snakemake's commit into dvc.lock while another DVC process holds the repository's lock: it waits, says DVC's
reason when it gives up, and a later run with nothing to do commits what was missed. One stage (prepare-synthetic
of the CI set, seconds) on a copy of the repository; the lock is taken with DVC's own API, as `dvc status` would."""
import os
import subprocess
import time
import types
from contextlib import contextmanager

from dvc.lock import make_lock

from aalp import config as C, sync as S
from conftest import BIN, CI_SET, copy_repo, run

TARGET = "data/synthetic/manifest.json"  # the output of prepare-synthetic: a one-job DAG
STAGE = "prepare-synthetic"
WAITS = "for DVC's lock"  # in aalp.sync's line for each wait on the lock


@contextmanager
def _held(repo):
    """DVC's repository lock, taken with DVC's own API as any dvc command takes it (here by the test's process)."""
    (repo / ".dvc" / "tmp").mkdir(parents=True, exist_ok=True)
    lock = make_lock(str(repo / ".dvc" / "tmp" / "lock"))
    lock.lock()
    try:
        yield lock
    finally:
        if lock.is_locked:
            lock.unlock()


def _snakemake(repo, tmp_path, wait: float, release=None) -> str:
    """Snakemake on TARGET with a lock wait of `wait` s; its stderr. A `release`d lock is let go once the commit
    says it waits for it (or when Snakemake ends, if it never does)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(repo / "src"),
           "AALP_DVC_LOCK_WAIT": str(wait)}
    log = tmp_path / f"snakemake-{time.monotonic_ns()}.err"
    with open(log, "w") as err:
        p = subprocess.Popen(["snakemake", "--cores", "1", "--directory", CI_SET, TARGET], cwd=repo, env=env,
                             stdout=subprocess.DEVNULL, stderr=err)
        if release is not None:
            while p.poll() is None and WAITS not in log.read_text():
                time.sleep(0.2)
            release.unlock()
        assert p.wait(timeout=300) == 0, log.read_text()[-4000:]
    return log.read_text()


def _dvc_status(work) -> str:
    return run(f"dvc status {STAGE}", work).stdout


def test_commit_waits_for_dvcs_lock(tmp_path):
    """Another DVC process holds the lock when Snakemake's job is done: the commit waits, then records the stage."""
    repo = copy_repo(tmp_path / "repo", only=CI_SET)
    with _held(repo) as lock:
        err = _snakemake(repo, tmp_path, wait=120, release=lock)
    assert "aalp.sync: waiting 2 s for DVC's lock" in err, err[-3000:]
    assert "recorded 2 stages" in err, err[-3000:]
    assert f"  {STAGE}:" in (repo / CI_SET / "dvc.lock").read_text()
    assert not (repo / CI_SET / S.PENDING).exists()


def test_a_failed_commit_says_why_and_the_next_run_commits_it(tmp_path):
    """The lock is held past the wait: the failure names DVC's reason; the next run, with nothing to do, commits
    the stage that dvc.lock lacks (without rerunning it), and `dvc status` agrees with Snakemake."""
    repo = copy_repo(tmp_path / "repo", only=CI_SET)
    work = repo / CI_SET
    with _held(repo):
        err = _snakemake(repo, tmp_path, wait=1)
    failed = [line for line in err.splitlines() if "dvc commit failed" in line]
    assert failed and "Unable to acquire lock" in failed[0], err[-3000:]
    assert not (work / "dvc.lock").exists() or f"  {STAGE}:" not in (work / "dvc.lock").read_text()

    again = _snakemake(repo, tmp_path, wait=60)
    assert "Nothing to be done" in again and "localrule prepare" not in again, again[-3000:]
    assert "recorded 2 stages" in again, again[-3000:]
    assert "Data and pipelines are up to date" in _dvc_status(work)
    assert not (work / S.PENDING).exists()


class _Dag(list):
    """Snakemake's DAG as commit_at_exit reads it: its jobs, and len() the number of jobs to run."""
    def __init__(self, jobs, to_run):
        super().__init__(range(to_run))
        self.jobs = jobs


def _job(rule, **wildcards):
    return types.SimpleNamespace(rule=types.SimpleNamespace(name=rule), wildcards=wildcards)


def test_a_run_with_nothing_to_do_commits_only_what_dvc_lock_misses(ci_params, tmp_path, monkeypatch):
    """commit_at_exit's choice, on a fake DAG: the stages Snakemake found up to date that a failed commit left
    pending (dvc.lock has an older entry) or that dvc.lock lacks; nothing after a dry run, a run with jobs
    (onsuccess commits those) or a command that built no schedule (--list, --summary)."""
    cfg = C.validate(ci_params)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  matrix-check:\n    cmd: x\n"
                                       "  prepare-synthetic:\n    cmd: x\n  train-synthetic-raw-s0:\n    cmd: x\n")
    S._set_pending(tmp_path, {"train-synthetic-raw-s0"})  # committed once, rerun, its new commit failed
    jobs = [_job("all"), _job("prepare", dataset="synthetic"),
            _job("train", dataset="synthetic", method="raw", seed="0"),
            _job("train", dataset="synthetic", method="adv", seed="0")]  # never committed
    committed, hooks = [], []
    monkeypatch.setattr(S.atexit, "register", hooks.append)
    monkeypatch.setattr(S, "commit_to_dvc", lambda cfg, names, workdir: committed.append(set(names)))
    due = {"train-synthetic-raw-s0", "train-synthetic-adv-s0"}
    for to_run, dryrun, scheduler, want in ((1, False, object(), []), (0, True, object(), []),
                                            (0, False, None, []), (0, False, object(), [due])):
        flow = types.SimpleNamespace(dag=_Dag(jobs, to_run), scheduler=scheduler, dryrun=dryrun, touch=False,
                                     execution_settings=types.SimpleNamespace(no_hooks=False))
        S.commit_at_exit(flow, cfg, tmp_path)
        hooks.pop()()
        assert committed == want
