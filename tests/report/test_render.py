"""The report's notebooks run on the interpreter that runs the pipeline, whatever Jupyter kernelspecs the
machine has (a user-level `python3` kernelspec on a cluster must not take over)."""
import json
import os
import sys

import pytest

from aalp.report import render


def notebook(path, code: str):
    path.write_text(json.dumps({
        "cells": [{"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
                   "source": "out = ''"},
                  {"cell_type": "code", "id": "body", "metadata": {}, "execution_count": None, "outputs": [], "source": code}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                     "language_info": {"name": "python"}},
        "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.fixture
def decoy(tmp_path, monkeypatch):
    """A `python3` kernelspec first on JUPYTER_PATH whose 'interpreter' records that it ran, then fails."""
    marker = tmp_path / "decoy_ran"
    fake = tmp_path / "fake_python"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": [str(fake), "-m", "ipykernel_launcher", "-f",
                                                           "{connection_file}"],
                                                  "display_name": "decoy", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_PREFER_ENV_PATH", "0")
    return marker


def test_a_decoy_python3_kernelspec_is_not_used(tmp_path, decoy, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = notebook(tmp_path / "n.ipynb", "import sys\nopen(out, 'w').write(sys.executable)")
    render.execute(nb, tmp_path / "done.ipynb", {"out": str(tmp_path / "exe.txt")})
    assert (tmp_path / "exe.txt").read_text() == sys.executable
    assert not decoy.exists()


def test_the_decoy_would_be_used_by_name(tmp_path, decoy):
    """The check above can fail: resolving the kernel by its name alone starts the decoy."""
    import papermill as pm

    nb = notebook(tmp_path / "n.ipynb", "pass")
    with pytest.raises(Exception):
        pm.execute_notebook(str(nb), str(tmp_path / "done.ipynb"), kernel_name="python3", progress_bar=False,
                            start_timeout=10)
    assert decoy.exists()
