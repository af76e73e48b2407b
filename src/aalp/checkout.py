"""Which checkout of the project is being run, and whether Python imports that checkout's aalp."""
from __future__ import annotations

import os
from pathlib import Path

from .config import REPO_ROOT, ConfigError


def find_checkout(start: str | os.PathLike = ".") -> Path | None:
    """The project checkout at or above `start` (the folder holding the Snakefile and src/aalp), if any."""
    start = Path(start).resolve()
    for p in (start, *start.parents):
        if (p / "Snakefile").is_file() and (p / "src" / "aalp").is_dir():
            return p
    return None


def dvc_experiment_copy(checkout: str | os.PathLike | None) -> bool:
    """Whether `checkout` is a temporary copy DVC made to run a queued experiment (.dvc/tmp/exps/...)."""
    return checkout is not None and ".dvc/tmp/exps/" in Path(checkout).resolve().as_posix() + "/"


def check_checkout(checkout: str | os.PathLike | None) -> None:
    """Stop when Python imports another checkout's aalp than the project being run (two checkouts, one
    venv): its code would run while this checkout's source files are tracked as the stages' inputs."""
    if checkout is None:
        return
    checkout = Path(checkout).resolve()
    if checkout != REPO_ROOT:
        raise ConfigError(f"this project is {checkout} but Python imports aalp from {Path(__file__).resolve().parent}; "
                          f"run `make setup` in {checkout} and use its .venv (source {checkout}/.venv/bin/activate)")
