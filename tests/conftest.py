import shutil
import subprocess
import sys
from pathlib import Path

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

    from aalp.config import find_checkout

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


def copy_repo(dst: Path) -> Path:
    """A copy of the working tree as a fresh git + DVC repository (outputs excluded)."""
    shutil.copytree(REPO, dst, ignore=IGNORE)
    run("git init -q && git add -A && git -c user.email=t@t -c user.name=t commit -qm copy", dst)
    return dst


def pytest_collection_modifyitems(items):
    """The end-to-end DAG runs first: with `pytest -n auto --dist loadfile` (make test) each starts at once on
    its own worker and the short test files fill the other cores around them."""
    items.sort(key=lambda item: 0 if item.get_closest_marker("e2e") else 1)
