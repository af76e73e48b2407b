"""`pip install .` gives a working aalp: every third-party module the package and its notebooks import
is declared in pyproject.toml, and requirements.txt (what `make setup` installs) pins the same set."""
import ast
import json
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, run

NORMALISE = re.compile(r"[-_.]+")


def _name(req: str) -> str:
    return NORMALISE.sub("-", re.match(r"\s*([A-Za-z0-9_.-]+)", req).group(1)).lower()


def _imports(source: str) -> set[str]:
    mods = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            mods |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module.split(".")[0])
    return mods


def third_party_imports() -> set[str]:
    mods = set()
    for f in (REPO / "src" / "aalp").rglob("*.py"):
        mods |= _imports(f.read_text())
    for nb in (REPO / "notebooks").glob("*.ipynb"):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                src = "".join(cell["source"])
                mods |= _imports("\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!"))))
    return {m for m in mods if m not in sys.stdlib_module_names and m != "aalp"}


@pytest.fixture(scope="module")
def metadata(tmp_path_factory) -> dict:
    """Requires-Dist of the wheel that `pip install .` would build, split into runtime and extras."""
    out = tmp_path_factory.mktemp("meta")
    run([PYTHON, "-c", f"from setuptools import build_meta as b; print(b.prepare_metadata_for_build_wheel({str(out)!r}))"],
        REPO)
    (info,) = out.glob("*.dist-info")
    runtime, extras = set(), {}
    for line in (info / "METADATA").read_text().splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1]
            m = re.search(r"extra\s*==\s*['\"](\w+)['\"]", req)
            (extras.setdefault(m.group(1), set()) if m else runtime).add(_name(req))
    return {"runtime": runtime, "extras": extras, "lines": (info / "METADATA").read_text().splitlines()}


def test_every_imported_module_is_a_declared_dependency(metadata):
    dists = packages_distributions()
    missing = {}
    for mod in sorted(third_party_imports()):
        owners = {_name(d) for d in dists.get(mod, [])}
        assert owners, f"{mod} is imported but not installed"
        if not owners & metadata["runtime"]:
            missing[mod] = sorted(owners)
    assert not missing, f"imported but not in [project] dependencies: {missing}"
    # the checks above cover what matters most: the engine, the workflow tools and the notebooks
    assert {"torch", "torchattacks", "pandas", "pyarrow", "snakemake", "dvc", "papermill"} <= metadata["runtime"]


def test_the_package_declares_its_license_and_repository(metadata):
    """The wheel's metadata says MIT (with the LICENSE file) and links the repository where CITATION.cff names
    its address; without one (none public yet) it gives no Project-URL for it."""
    import yaml

    lines = metadata["lines"]
    assert "License-Expression: MIT" in lines and "License-File: LICENSE" in lines
    repo = yaml.safe_load((REPO / "CITATION.cff").read_text()).get("repository-code")
    if repo:
        assert f"Project-URL: Repository, {repo}" in lines
    else:
        assert not [line for line in lines if line.startswith("Project-URL: Repository")]


def test_test_tools_are_an_extra(metadata):
    assert "pytest" in metadata["extras"].get("test", set())
    assert "pytest" not in metadata["runtime"]


def test_requirements_pin_every_declared_dependency(metadata):
    pinned = {_name(line) for line in (REPO / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    make = (REPO / "Makefile").read_text()
    pinned |= {_name(m) for m in re.findall(r"--no-deps (\w[\w.=-]*)", make) if m != "-e"}
    assert metadata["runtime"] - pinned == set(), "declared in pyproject.toml but not installed by make setup"
    assert "pytest" in pinned
