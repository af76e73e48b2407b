"""Two engines, one state: Snakemake and DVC see the same outputs as up to date.

- Snakemake -> DVC (`commit_to_dvc`, called by the Snakefile's `onsuccess`): after a successful run, the stages
  of the jobs in Snakemake's DAG (the jobs it ran and the ones it found up to date) are recorded in dvc.lock
  with `dvc commit`, so `dvc status` has nothing to do and `dvc push` can share the results. While another
  DVC process holds the repository's lock, the commit waits (LOCK_WAIT in all). A commit that still fails
  leaves its stages in a pending list (.snakemake/aalp_dvc_pending), and Snakemake calls no `onsuccess`
  when it finds nothing to do: `commit_at_exit` then commits, as that run exits, the stages of its DAG
  (all of them verified up to date by Snakemake, or it would have had something to do) that are pending or
  that dvc.lock lacks. A no-op run with nothing pending reads dvc.lock's stage names and calls no DVC.
- DVC -> Snakemake (`adopt_dvc`, called when the Snakefile is read): after `dvc repro`, `dvc pull` or
  `dvc checkout`, files have fresh timestamps in no particular order and Snakemake's own records (params,
  code) may describe older versions, so Snakemake would rerun jobs whose outputs are current. For the stages
  that `dvc status` confirms as current (their deps, params and outs hash to what dvc.lock records), the
  outputs' timestamps are put back in dependency order and Snakemake's stale records of them are dropped.
  The check only runs when a timestamp or a record is out of step, so a plain Snakemake user pays a few
  stat calls.

Neither direction ever marks as current what the other engine has not verified.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from pathlib import Path

from . import pipeline as P

_CHILD = "AALP_SYNC_CHILD"  # set in the nested snakemake --touch, which must not adopt again
LOCK_WAIT = 300.0  # seconds a commit waits in all for another DVC process's lock (env AALP_DVC_LOCK_WAIT)
_BUSY = ("Unable to acquire lock", "is busy, it is being blocked by")  # DVC's repository lock, its path locks
PENDING = ".snakemake/aalp_dvc_pending"  # stages whose commit has not succeeded yet, one a line

def _say(msg: str, *args) -> None:
    """One line on stderr: the Snakefile calls these functions outside aalp's logging set-up."""
    print("aalp.sync: " + (msg % args if args else msg), file=sys.stderr, flush=True)

JOB_KINDS = ("train", "evaluate", "analyze")


def stage_name(rule: str, wildcards: dict, params=None) -> str | None:
    """The dvc.yaml stage of a Snakemake job (None for rules DVC has no stage for, like `all`); a rule that names
    its stage in its params (a seed group's training) gives that."""
    if params is not None and getattr(params, "stage", None):
        return params.stage
    w = dict(wildcards)
    if rule == "prepare":
        return f"prepare-{w['dataset']}"
    if rule in JOB_KINDS:
        return f"{rule}-{w['dataset']}-{w['method']}-s{w['seed']}"
    if rule == "evaluate_snapshot":
        return f"evaluate-snapshot-{w['dataset']}-{w['method']}-s{w['seed']}-{w['step']}"
    if rule == "report":
        return "report"
    if rule.startswith("report_"):
        return f"report-{rule[len('report_'):]}"
    return None


def dvc_root(workdir: Path) -> Path | None:
    """The DVC repository holding workdir (the nearest folder with a .dvc directory), if any."""
    for d in (workdir, *workdir.parents):
        if (d / ".dvc").is_dir():
            return d
    return None


def _usable(workdir: Path) -> str | None:
    """Why DVC cannot be synced here, or None."""
    if dvc_root(workdir) is None:
        return "not inside a DVC repository"
    if shutil.which("dvc") is None:
        return "dvc is not on PATH"
    if not (workdir / "dvc.yaml").exists():
        return f"no dvc.yaml in {workdir}"
    return None


def _dvc(args: list[str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=workdir, capture_output=True, text=True)


def _commit(targets: list[str], workdir: Path, wait: float) -> subprocess.CompletedProcess:
    """`dvc commit`, tried again with a growing interval while another DVC process holds a lock (wait s in all)."""
    waited, step = 0.0, 2.0
    while True:
        r = _dvc(["commit", "--force", *targets], workdir)  # not --quiet: it would swallow DVC's reason
        if r.returncode == 0 or not any(b in r.stderr + r.stdout for b in _BUSY) or waited >= wait:
            return r
        pause = min(step, wait - waited)
        _say("waiting %.0f s for DVC's lock (another DVC process holds it; %.0f of %.0f s waited)", pause, waited, wait)
        time.sleep(pause)
        waited, step = waited + pause, step * 2


def _pending(workdir: Path) -> set[str]:
    f = workdir / PENDING
    return set(f.read_text().split()) if f.exists() else set()


def _set_pending(workdir: Path, names: set[str]) -> None:
    f = workdir / PENDING
    if names:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("".join(n + "\n" for n in sorted(names)))
    else:
        f.unlink(missing_ok=True)


def _locked(workdir: Path) -> set[str]:
    """The stages dvc.lock records (the keys under `stages:`, found without parsing a file of every hash)."""
    f = workdir / "dvc.lock"
    return set(re.findall(r"^  ([\w.-]+):\s*$", f.read_text(), re.M)) if f.exists() else set()


def commit_to_dvc(cfg: dict, stage_names, workdir: Path | str = ".", lock_wait: float | None = None) -> bool:
    """Record the given stages (Snakemake's just-verified jobs) in dvc.lock; True when done.

    lock_wait: seconds to wait in all for another DVC process's lock (default: env AALP_DVC_LOCK_WAIT or
    LOCK_WAIT). Until the commit succeeds the stages stay pending, for a later run's `commit_at_exit`."""
    workdir = Path(workdir).resolve()
    why = _usable(workdir)
    if why:
        _say("dvc.lock not updated: %s", why)
        return False
    problem = P.dvc_yaml_problem(cfg, workdir)
    if problem:  # dvc.yaml describes another matrix: committing would record the wrong stages
        _say("dvc.lock not updated: %s", problem)
        return False
    stamp = workdir / P.MATRIX_STAMP
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(P.matrix_stamp_text())
    names = sorted({n for n in stage_names if n})
    every = {st.name for st in P.stages(cfg, workdir)}
    # one target per stage costs DVC about a second each; the whole file at once, a few seconds in all
    targets = ["dvc.yaml"] if every <= set(names) else [P.MATRIX_STAGE, *names]
    # DVC moves each output into its cache and copies it back (a new file, a new mtime): put the times back,
    # or the next Snakemake would see every output as rewritten after its records and adopt them all again
    outs = [workdir / o for st in P.stages(cfg, workdir) if st.name in set(names) for o in st.all_outs]
    times = {o: (o.stat().st_atime, o.stat().st_mtime) for o in outs if o.exists()}
    _set_pending(workdir, _pending(workdir) | set(names))  # before: a killed commit is pending too
    if lock_wait is None:
        lock_wait = float(os.environ.get("AALP_DVC_LOCK_WAIT", LOCK_WAIT))
    r = _commit(targets, workdir, lock_wait)
    for o, t in times.items():
        if o.exists() and o.stat().st_mtime != t[1]:
            os.utime(o, t)
    if r.returncode != 0:
        out = (r.stderr or r.stdout).strip()
        reason = " ".join(x for x in out.splitlines() if x.startswith("ERROR")) or out  # not DVC's warnings
        _say("dvc commit failed, dvc.lock not updated (a later Snakemake run in this folder commits the stages): %s",
             reason[-2000:])
        return False
    _set_pending(workdir, _pending(workdir) - set(names))
    _say("recorded %d stages in %s (dvc status now agrees with Snakemake)", len(names) + 1,
             workdir / "dvc.lock")
    return True


def commit_at_exit(workflow, cfg: dict, workdir: Path | str = ".") -> None:
    """When this Snakemake run finds nothing to do (no `onsuccess` then), commit as it exits the stages of its
    DAG that a failed commit left pending or that dvc.lock lacks: Snakemake has just verified every one."""
    workdir = Path(workdir).resolve()
    if os.environ.get(_CHILD):
        return

    def at_exit():
        try:
            check()
        except Exception as e:  # Snakemake's internals moved: say so, never a traceback at exit
            _say("could not check for stages an earlier commit missed (%s: %s)", type(e).__name__, e)

    def check():
        dag = workflow.dag
        # the scheduler exists once `execute` built the DAG (not for --list, --summary, --dag, --unlock);
        # len(dag) counts the jobs to run, so 0 is Snakemake's "Nothing to be done"
        if (workflow.scheduler is None or dag is None or len(dag) or workflow.dryrun or workflow.touch
                or workflow.execution_settings.no_hooks or _usable(workdir)):
            return
        names = {n for n in (stage_name(j.rule.name, j.wildcards, getattr(j, "params", None)) for j in dag.jobs) if n}
        due = names & (_pending(workdir) | (names - _locked(workdir)))
        if due:
            _say("committing %d stages that Snakemake finds up to date and an earlier commit missed: %s",
                 len(due), ", ".join(sorted(due)[:6]) + (" ..." if len(due) > 6 else ""))
            commit_to_dvc(cfg, due, workdir)

    atexit.register(at_exit)


# ----------------------------------------------------------------------------- DVC -> Snakemake
def _record(workdir: Path, path: str) -> Path:
    """Snakemake's metadata record of an output (its file persistence: .snakemake/metadata/<base64 path>)."""
    b64 = urlsafe_b64encode(path.encode()).decode()
    parts = [b64[i:i + 254] for i in range(0, len(b64), 254)]
    parts = ["@" + s for s in parts[:-1]] + [parts[-1]]
    return workdir.joinpath(".snakemake", "metadata", *parts)


def _mtime(p: Path) -> float | None:
    try:
        return p.stat().st_mtime
    except FileNotFoundError:
        return None


def _out_of_step(workdir: Path, stages: list) -> list:
    """Stages whose outputs all exist but whose timestamps or Snakemake records are out of step (the cheap test)."""
    found = []
    for st in stages:
        outs = [_mtime(workdir / o) for o in st.all_outs]
        if not outs or None in outs:
            continue
        ins = [t for t in (_mtime(workdir / d) for d in st.deps) if t is not None]
        recs = [_mtime(_record(workdir, o)) for o in st.all_outs]
        older = ins and min(outs) < max(ins)
        stale = any(r is not None and t > r + 1 for r, t in zip(recs, outs))  # rewritten after Snakemake recorded it
        if older or stale:
            found.append(st)
    return found


def dvc_changed(workdir: Path) -> set[str] | None:
    """Stages of workdir/dvc.yaml that `dvc status` reports as changed (None when it cannot say)."""
    r = _dvc(["status", "--json", "dvc.yaml"], workdir)
    if r.returncode != 0:
        _say("dvc status failed: %s", (r.stderr or r.stdout).strip()[-1000:])
        return None
    try:
        doc = json.loads(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else "{}")
    except json.JSONDecodeError:
        return None
    return {k.rsplit(":", 1)[-1] for k in doc}


def adopt_dvc(cfg: dict, snakefile: str | Path, workdir: Path | str = ".") -> list[str]:
    """Make Snakemake accept the outputs DVC verifies as current; returns the stages adopted.

    A stage is adopted when `dvc status` finds it unchanged against dvc.lock, its outputs exist, and so
    for every stage upstream of it. Snakemake itself then records them (`snakemake --touch --forceall` on
    their outputs: timestamps in dependency order and fresh metadata, so later parameter edits are still
    detected); nothing else is touched, so whatever DVC reports as changed is still rerun."""
    workdir = Path(workdir).resolve()
    if os.environ.get(_CHILD) or _usable(workdir) or not (workdir / "dvc.lock").exists():
        return []
    stages = P.stages(cfg, workdir)
    if not _out_of_step(workdir, stages):
        return []
    changed = dvc_changed(workdir)
    if changed is None:
        return []
    locked = _locked(workdir)
    producer = {o: st.name for st in stages for o in st.all_outs}
    clean: list = []
    names: set[str] = set()
    for st in stages:  # dependency order
        if (st.name in locked and st.name not in changed and all((workdir / o).exists() for o in st.all_outs)
                and all(producer[d] in names for d in st.deps if d in producer)):
            clean.append(st)
            names.add(st.name)
    if not clean:
        return []
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env[_CHILD] = "1"
    cmd = [sys.executable, "-m", "snakemake", *[o for st in clean for o in st.all_outs],  # targets first
           "--snakefile", str(Path(snakefile).resolve()), "--directory", str(workdir),
           "--touch", "--forceall", "--no-hooks", "--cores", "1"]
    r = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        _say("could not adopt DVC's outputs (snakemake --touch failed): %s", (r.stdout + r.stderr).strip()[-2000:])
        return []
    _say("adopted %d stages that dvc status verifies as current (Snakemake recorded them with --touch): %s",
         len(clean), ", ".join(st.name for st in clean[:6]) + (" ..." if len(clean) > 6 else ""))
    return [st.name for st in clean]
