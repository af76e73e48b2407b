import os
import shutil
import subprocess
import sys
from pathlib import Path

# `make test` runs two xdist workers on a two-core machine, and each starts DAG jobs, DVC stages and kernels of
# its own: one thread per process (torch, and every BLAS), so that no OpenMP team spins on a core another
# process needs. Set before any test imports torch; every subprocess inherits it.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI_PARAMS = REPO / "configs" / "ci" / "params.yaml"
PYTHON = sys.executable
BIN = Path(sys.executable).parent


@pytest.fixture
def ci_params() -> dict:
    return yaml.safe_load(CI_PARAMS.read_text())


@pytest.fixture
def paper_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def run(cmd, cwd, check=True, env=None, timeout=1200):
    """Run a command with the venv first on PATH; return CompletedProcess (text). Inside a copy of the
    repository, the copy's own src/ comes first on PYTHONPATH (each checkout runs its own code)."""
    import os

    from aalp.checkout import find_checkout

    e = dict(os.environ)
    e["PATH"] = f"{BIN}:{e.get('PATH', '')}"
    checkout = find_checkout(cwd)
    if checkout is not None and checkout != REPO:
        e["PYTHONPATH"] = str(checkout / "src")
    e.update(env or {})
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=e, timeout=timeout, shell=isinstance(cmd, str))
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-8000:]}")
    return p


IGNORE = shutil.ignore_patterns(".venv", ".git", "data", "runs", "reports", "logs", ".snakemake", "__pycache__",
                                "*.egg-info", ".pytest_cache", "dvc.lock")


def copy_repo(dst: Path, only: str | None = None) -> Path:
    """A copy of the working tree as a fresh git + DVC repository (outputs excluded). only: the parameter set
    folder (e.g. CI_SET) whose pipeline alone the copy keeps, the other sets' dvc.yaml left out: DVC reads
    every dvc.yaml of a repository for each command, about 1 MB over all the sets (12 s a command here, a
    third of that for the CI set's alone). test_pipeline's copy keeps every set's, so DVC's reading of the
    whole repository stays tested."""
    shutil.copytree(REPO, dst, ignore=IGNORE)
    if only is not None:
        for f in [dst / "dvc.yaml", *dst.glob("configs/*/dvc.yaml")]:
            if f.parent != dst / only:
                f.unlink()
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm copy", dst)
    return dst


CI_SET = "configs/ci"


def shared_tmp(tmp_path_factory, worker_id) -> Path:
    """A folder every xdist worker of this pytest session sees (the session's base temp)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if worker_id != "master" else base


@pytest.fixture(scope="session")
def ci_snakemake_run(tmp_path_factory, worker_id):
    """The CI parameter set's whole DAG through Snakemake's local executor, on a copy of the repository:
    (repository, set folder, wall seconds). It runs once per pytest session, shared by every test file on
    every xdist worker (the first to ask runs it, the others wait on a file lock). Tests read it; a test
    that edits or reruns works on its own copy (`copy_workspace`)."""
    import time

    from filelock import FileLock

    root = shared_tmp(tmp_path_factory, worker_id) / "ci-snakemake"
    repo, done = root / "repo", root / "wall_seconds"
    with FileLock(str(root) + ".lock"):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            copy_repo(repo, only=CI_SET)
            t0 = time.time()
            run(f"snakemake --cores 2 --resources gpu=1 --directory {CI_SET}", repo, timeout=2400)
            done.write_text(f"{time.time() - t0:.1f}\n")
    return repo, repo / CI_SET, float(done.read_text())


@pytest.fixture(scope="session")
def slurm_slice_run(tmp_path_factory, worker_id):
    """A slice of the CI set through profiles/slurm on a one-node SLURM started on this machine
    (slurm_cluster.run_slice): (set folder, result dict). Once per pytest session, shared by the test files
    that read it (the first to ask runs it, the others wait on a file lock); skipped where SLURM cannot run."""
    import json

    from filelock import FileLock

    from slurm_cluster import run_slice

    root = shared_tmp(tmp_path_factory, worker_id) / "slurm-slice"
    done = root / "result.json"
    with FileLock(str(root) + ".lock"):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            done.write_text(json.dumps(run_slice(root)))
    return root / "repo" / CI_SET, json.loads(done.read_text())


def report_numbers(folder: Path) -> dict[str, bytes]:
    """Every table, claims and figure-data file of a report folder, and claims.json (what a rebuild of
    published results must reproduce byte for byte)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for sub in ("tables", "claims", "data")
            for p in sorted((folder / sub).glob("*")) if p.is_file()} | {"claims.json": (folder / "claims.json").read_bytes()}


def numbers_differ(a: dict[str, bytes], b: dict[str, bytes], rtol: float = 1e-9) -> list[str]:
    """The files of two report_numbers() whose numbers differ: byte-equal files agree; otherwise CSV and JSON
    files agree when every text cell is equal and every number is within rtol (the last bits of a float can
    differ between machines, e.g. LAPACK's least squares in np.polyfit), .npz arrays only when equal."""
    import io
    import json
    import math

    import numpy as np
    import pandas as pd

    def close(x, y) -> bool:
        if isinstance(x, dict) and isinstance(y, dict):
            return x.keys() == y.keys() and all(close(x[k], y[k]) for k in x)
        if isinstance(x, float) or isinstance(y, float):
            return (x is None and y is None) or (isinstance(x, (int, float)) and isinstance(y, (int, float))
                                                 and math.isclose(x, y, rel_tol=rtol, abs_tol=1e-12))
        return x == y

    bad = sorted(set(a) ^ set(b))
    for f in sorted(set(a) & set(b)):
        if a[f] == b[f]:
            continue
        if f.endswith(".csv"):
            try:
                pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(a[f])), pd.read_csv(io.BytesIO(b[f])),
                                              check_exact=False, rtol=rtol, atol=1e-12)
                # per-seed values are ';'-joined text: compare them as numbers too
                continue
            except AssertionError:
                da, db = pd.read_csv(io.BytesIO(a[f])), pd.read_csv(io.BytesIO(b[f]))
                if list(da.columns) == list(db.columns) and len(da) == len(db) and all(
                        close(_cell(x), _cell(y)) for c in da.columns for x, y in zip(da[c], db[c])):
                    continue
        elif f.endswith(".json") and close(json.loads(a[f]), json.loads(b[f])):
            continue
        elif f.endswith(".npz"):
            za, zb = np.load(io.BytesIO(a[f])), np.load(io.BytesIO(b[f]))
            if za.files == zb.files and all(np.array_equal(za[k], zb[k], equal_nan=True) for k in za.files):
                continue
        bad.append(f)
    return bad


def _cell(x):
    """A CSV cell as a number, a dict of ';'-joined numbers (claims' per-seed values) or itself."""
    if isinstance(x, str) and ";" in x:
        try:
            return {i: float(v) for i, v in enumerate(x.split(";"))}
        except ValueError:
            return x
    if isinstance(x, float) and x != x:
        return None
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else x


def copy_workspace(src: Path, dst: Path) -> Path:
    """A copy of a repository with its outputs, Snakemake's records and DVC's cache, timestamps kept."""
    def ignore(folder, names):  # DVC's temporary files; the locks of a Snakemake that another test runs there
        return {".dvc": ["tmp"], ".snakemake": ["locks", "incomplete"]}.get(Path(folder).name, [])

    shutil.copytree(src, dst, symlinks=True, ignore=ignore)
    return dst


def pytest_collection_modifyitems(items):
    """The order in which `make test` (`pytest -n auto --dist loadfile --no-loadscope-reorder`) hands out test
    files to its two workers, each keeping about two files queued: the SLURM slice on one worker and the local
    Snakemake DAG on the other; two long unit files that need neither; then the DVC tests, which start from
    the local run (a worker that reaches them before the DAG is done waits, and the DAG's second job takes
    its core); then the other unit files, longest first, so that many short files even out the end."""
    first = ("test_slurm.py", "test_e2e.py", "test_report.py", "test_mnist.py",
             "test_e2e_dvc_cam.py", "test_e2e_dvc.py", "test_e2e_dvc_exp.py", "test_e2e_dvc_remote.py",
             "test_e2e_deps.py", "test_slurm_vs_local.py",
             "test_pipeline.py", "test_training.py", "test_group_training.py", "test_attacks.py", "test_group_evaluation.py", "test_gpu_window.py", "test_figures.py", "test_browser.py",
             "test_sync_lock.py")

    def rank(item):
        name = item.path.name
        return first.index(name) if name in first else len(first)

    items.sort(key=rank)  # stable: the rest keep their collection order
