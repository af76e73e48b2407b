"""A real one-node SLURM cluster on this machine, for the tests of profiles/slurm (Debian's slurm-wlm and munge).

`one_node_slurm(folder)` writes /etc/slurm/slurm.conf (where Debian's SLURM reads it), starts munged, slurmctld
and slurmd, waits until sinfo shows the node idle, and on exit stops every daemon it started, by PID, and removes
the configuration it wrote. It skips the test, with the reason, when SLURM cannot be had: not root, packages
missing, or a SLURM that is not ours already configured or running.

Settings that work without cgroups or accounting (as on the project's machines): process tracking through
/proc, no task plugin, no accounting, so the executor plugin polls with squeue and MinJobAge keeps finished
jobs visible to it (and to the test) for an hour.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

CONF = Path("/etc/slurm/slurm.conf")
MARKER = "# written by the aalp test suite (tests/slurm_cluster.py)"
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel")


def _pids(name: str) -> list[int]:
    r = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True)
    return [int(p) for p in r.stdout.split()]


def _node_line() -> str:
    """This machine as a SLURM node (slurmd -C), without the uptime line."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    return next(line for line in out.splitlines() if line.startswith("NodeName="))


def _conf(folder: Path, node: str) -> str:
    host = node.split()[0].split("=", 1)[1]
    return f"""{MARKER}
ClusterName=aalp
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=3600
ReturnToService=2
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
{node} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _stop(pid: int, timeout: float = 20) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.time() + timeout
    while time.time() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)


def _read_pid(path: Path, timeout: float = 20) -> int:
    end = time.time() + timeout
    while time.time() < end:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"{path} never appeared")


@contextmanager
def one_node_slurm(folder: Path):
    """A running one-node SLURM whose state lives in `folder`; yields the folder (daemon logs are there)."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"SLURM not installed ({', '.join(missing)} missing; Debian: apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        pytest.skip("starting a SLURM cluster needs root")
    if CONF.exists() and MARKER not in CONF.read_text():
        pytest.skip(f"{CONF} exists and is not ours: not touching a configured SLURM")
    if _pids("slurmctld") or _pids("slurmd"):
        pytest.skip("a SLURM daemon is already running on this machine")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(_conf(folder, _node_line()))
    started: list[int] = []
    try:
        if not _pids("munged"):
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            shutil.chown("/run/munge", "munge", "munge") if _has_user("munge") else None
            subprocess.run(["munged", "--force"], check=True)
            started.append(_read_pid(Path("/run/munge/munged.pid")))
        subprocess.run(["slurmctld"], check=True)
        started.append(_read_pid(folder / "slurmctld.pid"))
        subprocess.run(["slurmd"], check=True)
        started.append(_read_pid(folder / "slurmd.pid"))
        end = time.time() + 60
        state = ""
        while time.time() < end:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the SLURM node never became idle (sinfo: {state!r}); logs in {folder}")
        yield folder
    finally:
        for pid in reversed(started):  # slurmd, slurmctld, then munged (only those we started)
            _stop(pid)
        if CONF.exists() and MARKER in CONF.read_text():
            CONF.unlink()


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def jobs(fmt: str = "%i|%j|%T") -> list[list[str]]:
    """Every job SLURM still knows (running or finished within MinJobAge), split on '|'."""
    out = subprocess.run(["squeue", "-h", "-t", "all", "-o", fmt], capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- the CI set's slice through SLURM
# This cluster is one CPU-only node without accounting: jobs ask for no GPU and one core, the executor
# polls squeue, and no account is given (the profile reads these from the environment).
CLUSTER_ENV = {"AALP_SLURM_GPUS": "0", "AALP_SLURM_CPUS": "1", "AALP_SLURM_STATUS": "squeue"}
SLICE = ("raw", "aalp")  # on the synthetic set, seed 0
ITEMS = ("table2", "fig09")  # a table from the evaluations, a figure from AALP's checkpoint analyses


def slice_params(work: Path) -> list[tuple[str, str, int]]:
    """The CI set's params restricted to SLICE (config.only_runs), written over params.yaml in the set folder
    `work`, and its dvc.yaml regenerated; returns the slice's runs."""
    import yaml

    from aalp import config as C
    from conftest import run

    cfg = C.validate(yaml.safe_load((work / "params.yaml").read_text()))
    keep = [(d, m, s) for d, m, s in C.runs(cfg) if d == "synthetic" and m in SLICE and s == 0]
    (work / "params.yaml").write_text(yaml.safe_dump(C.only_runs(yaml.safe_load((work / "params.yaml").read_text()),
                                                                 keep), sort_keys=False))
    run("python -m aalp dvc", work)  # the slice's stages, so that DVC can take the Snakemake run's records
    return keep


def run_slice(root: Path) -> dict:
    """A copy of the repository in root/repo, and the slice's run jobs and ITEMS through profiles/slurm on a
    one-node cluster in root/slurm: {'runs', 'submitted' (Snakemake's lines), 'seen' (SLURM's job records:
    id, name, state, cores), 'wall'}."""
    from conftest import CI_SET, copy_repo, run

    with one_node_slurm(root / "slurm"):
        repo = copy_repo(root / "repo", only=CI_SET)
        runs = slice_params(repo / CI_SET)
        targets = [f"runs/{d}/{m}/s{s}/{f}" for d, m, s in runs for f in ("eval/metrics.json", "analysis/summary.json")]
        targets += [f"reports/{item}.html" for item in ITEMS]
        t0 = time.time()
        # polling every 2 s instead of the plugin's 40 s start and Snakemake's 10 s: the jobs here take seconds
        r = run(f"snakemake --profile profiles/slurm --directory {CI_SET} --seconds-between-status-checks 2 "
                f"--slurm-init-seconds-before-status-checks 2 {' '.join(targets)}", repo, env=CLUSTER_ENV, timeout=2400)
        wall = time.time() - t0
        seen = jobs("%i|%j|%T|%C")
    submitted = [line for line in r.stdout.splitlines() + r.stderr.splitlines() if "submitted with SLURM jobid" in line]
    return {"runs": [list(x) for x in runs], "submitted": submitted, "seen": seen, "wall": wall}
