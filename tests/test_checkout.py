"""Two checkouts, one venv: each entry point runs only its own checkout's code."""
import shutil

import pytest

from conftest import IGNORE, PYTHON, REPO, run


@pytest.fixture(scope="module")
def two_checkouts(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkouts")
    for name in ("a", "b"):
        shutil.copytree(REPO, root / name, ignore=IGNORE)
    return root / "a", root / "b"


def _one_line_error(p, here, imported):
    err = p.stderr.strip().splitlines()
    assert p.returncode != 0
    line = [ln for ln in err if "imports aalp from" in ln]
    assert len(line) == 1, p.stderr[-2000:]
    assert str(here) in line[0] and str(imported / "src" / "aalp") in line[0] and "make setup" in line[0]
    assert "Traceback" not in p.stderr


def test_cli_refuses_another_checkouts_code(two_checkouts):
    a, b = two_checkouts
    p = run("python -m aalp validate", b / "configs" / "ci", check=False, env={"PYTHONPATH": str(a / "src")})
    _one_line_error(p, b, a)
    ok = run("python -m aalp validate", b / "configs" / "ci", env={"PYTHONPATH": str(b / "src")})
    assert "ok" in ok.stdout


def test_snakefile_refuses_another_checkouts_code(two_checkouts):
    a, b = two_checkouts
    p = run("snakemake -n --cores 1", b, check=False, env={"PYTHONPATH": str(a / "src")})
    _one_line_error(p, b, a)
    run("snakemake -n --cores 1", b, env={"PYTHONPATH": str(b / "src")})
    # a parameter set in a sub-folder, with the Snakefile given by path
    p = run(f"snakemake -n --cores 1 -s {b / 'Snakefile'}", b / "configs" / "ci", check=False,
            env={"PYTHONPATH": str(a / "src")})
    _one_line_error(p, b, a)


def test_outside_any_checkout_the_installed_package_is_used(tmp_path):
    """`pip install .` users run the CLI from their own folders: no checkout, nothing to compare."""
    shutil.copy(REPO / "configs" / "ci" / "params.yaml", tmp_path / "params.yaml")
    assert "ok" in run("python -m aalp validate", tmp_path).stdout


def test_a_dvc_experiment_copy_runs_its_own_code(tmp_path):
    """`dvc exp run --queue` runs stages in <checkout>/.dvc/tmp/exps/<tmp>/, a copy of the checkout, while
    the environment's aalp is the original's: `python -m aalp` there re-runs itself on the copy's code."""
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpabc"
    shutil.copytree(REPO / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    shutil.copytree(REPO / "workflow", copy / "workflow")
    shutil.copy(REPO / "configs" / "ci" / "params.yaml", copy / "params.yaml")
    init = copy / "src" / "aalp" / "__init__.py"
    init.write_text(init.read_text() + "\nimport sys as _s\nprint('aalp from the experiment copy', file=_s.stderr)\n")
    r = run([PYTHON, "-m", "aalp", "dvc"], copy, check=False, env={"PYTHONPATH": str(REPO / "src")})
    assert r.returncode == 0, r.stderr
    assert "aalp from the experiment copy" in r.stderr and (copy / "dvc.yaml").exists()
    # anywhere else, another checkout's code is still refused
    other = tmp_path / "other"
    shutil.copytree(copy, other)
    r = run([PYTHON, "-m", "aalp", "dvc"], other, check=False, env={"PYTHONPATH": str(REPO / "src")})
    assert r.returncode != 0 and "Python imports aalp from" in r.stderr
