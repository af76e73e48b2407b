"""A stage's code dependencies are derived from what its entry module imports (aalp.deps), so a change to any
module that decides a stage's output reruns it, and the package keeps one direction of imports."""
import json
import modulefinder
import subprocess
import sys

import pytest

from aalp import deps, pipeline as P
from conftest import PYTHON, REPO

SRC = REPO / "src"
STAGES = ["prepare", "train", "evaluate", "analyze", "report", "index", "matrix"]


def rel(paths) -> set[str]:
    return {p.relative_to(REPO).as_posix() for p in paths}


def modulefinder_closure(entry: str) -> set[str]:
    """The same closure found by the standard library's modulefinder (bytecode, not our ast walk)."""
    finder = modulefinder.ModuleFinder(path=[str(SRC)])
    finder.import_hook(entry)
    return {m for m in finder.modules if m == "aalp" or m.startswith("aalp.")}


@pytest.mark.parametrize("stage", STAGES)
def test_derived_closure_equals_modulefinders(stage):
    assert set(deps.closure([P.ENTRY[stage]])) == modulefinder_closure(P.ENTRY[stage])


@pytest.mark.parametrize("stage", ["train", "evaluate", "index"])
def test_every_module_the_stage_loads_is_a_dependency(stage):
    """Importing the entry in a fresh interpreter loads only modules of the derived closure, and the
    closure's code files are exactly its modules' files plus the declared resources."""
    out = subprocess.run([PYTHON, "-c", f"import sys, {P.ENTRY[stage]}; print(' '.join(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True, cwd=REPO, env={"PYTHONPATH": str(SRC)}).stdout
    loaded = {m for m in out.split() if m == "aalp" or m.startswith("aalp.")}
    assert loaded <= set(deps.closure([P.ENTRY[stage]]))


def test_the_minimal_cases_of_the_issue():
    """What a hand list missed: evaluate writes the Consistent share (core/sets.py) into metrics.json and
    reads the prepared data (core/data.py); every stage reads the schema's defaults through config.py."""
    evaluate = P.code_deps("evaluate")
    assert any(p.endswith("core/sets.py") for p in evaluate) and any(p.endswith("core/data.py") for p in evaluate)
    for stage in STAGES:
        files = rel(P.stage_files(stage, "fig01"))
        assert {"src/aalp/config.py", "workflow/schemas/params.schema.json"} <= files, stage
    report = rel(P.stage_files("report", "fig03"))
    assert {"src/aalp/core/sets.py", "src/aalp/report/figures.py", "notebooks/fig03.ipynb",
            "paper/table2_defense.csv", "src/aalp/report/templates/page.html.j2"} <= report
    assert "notebooks/fig01.ipynb" not in report and "src/aalp/report/frontpage.py" not in report
    index = rel(P.stage_files("index"))
    assert {"src/aalp/report/verdicts.py", "src/aalp/report/stats.py", "src/aalp/report/frontpage.py",
            "docs/method.md", "src/aalp/report/templates/index.html.j2", "src/aalp/layout.py"} <= index
    # training code does not rerun for report code, and no stage depends on the command line's dispatcher
    assert not any("/report/" in f for f in rel(P.stage_files("train")))
    assert not any(f.endswith("cli.py") for s in STAGES for f in rel(P.stage_files(s, "fig01")))


def test_lazy_and_relative_imports_are_followed(tmp_path, monkeypatch):
    """A function-level import, `from . import x`, `from .. import y` and `from .m import name` are all read."""
    pkg = tmp_path / "aalp"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "base.py").write_text("RESOURCES = ['data/*.csv']\n")
    (pkg / "other.py").write_text("")
    (pkg / "sub" / "helper.py").write_text("X = 1\n")
    (pkg / "sub" / "lazy.py").write_text("")
    (pkg / "sub" / "entry.py").write_text("from .. import base\nfrom .helper import X\n"
                                          "def f():\n    from . import lazy\n    import aalp.other\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("1\n")
    monkeypatch.setattr(deps, "PACKAGE_DIR", pkg)
    monkeypatch.setattr(deps, "REPO_ROOT", tmp_path)
    deps._direct.cache_clear()
    try:
        assert deps.closure(["aalp.sub.entry"]) == ["aalp", "aalp.base", "aalp.other", "aalp.sub", "aalp.sub.entry",
                                                   "aalp.sub.helper", "aalp.sub.lazy"]
        assert tmp_path / "data" / "a.csv" in deps.files(["aalp.sub.entry"])
    finally:
        deps._direct.cache_clear()


def test_notebook_imports_count(tmp_path):
    nb = tmp_path / "n.ipynb"
    nb.write_text(json.dumps({"cells": [{"cell_type": "code", "source": ["%matplotlib inline\n",
                                                                          "from aalp.report import figures as F\n"]},
                                        {"cell_type": "markdown", "source": "import aalp.layout"}]}))
    assert deps.notebook_imports(nb) == {"aalp.report", "aalp.report.figures"}


def test_code_hash_follows_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(deps, "REPO_ROOT", tmp_path)
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    h = deps.code_hash([a, b])
    assert deps.code_hash([b, a]) == h
    a.write_text("x = 2\n")
    assert deps.code_hash([a, b]) != h


# ----------------------------------------------------------------------------- the package's shape
LAYERS = {  # a module may import its own layer and the layers listed
    "aalp.config": set(), "aalp.deps": set(), "aalp.layout": {"aalp.config"},
    "aalp.artifacts": {"aalp.config"},
}
PARTS = ["core", "report", "tools"]
MAY_IMPORT = {  # part -> parts it may import besides config, layout, artifacts
    "core": set(), "report": {"core"}, "tools": {"core", "report", "pipeline"},
}


def all_modules() -> list[str]:
    return sorted(deps.module_name(p) for p in (SRC / "aalp").rglob("*.py") if p.name != "__main__.py")


def part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "aalp"


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (module -> modules it imports) as a path, or None."""
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n, path + [n])):
                return found
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m, [m])):
            return found
    return None


def test_no_import_circle_anywhere_in_the_package():
    """Every import statement counts, those inside functions too."""
    circle = find_circle({m: deps.direct_imports(m) for m in all_modules()})
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_a_circle_is_caught():
    graph = {m: deps.direct_imports(m) for m in all_modules()}
    graph["aalp.layout"] = graph["aalp.layout"] | {"aalp.pipeline"}  # pipeline imports layout
    assert find_circle(graph) is not None


def test_imports_run_one_way():
    """The core imports no report, tool or pipeline code; the report no tool or pipeline code; the bottom
    modules (config, deps, layout, artifacts) nothing above them."""
    bottom = {"aalp", "aalp.config", "aalp.layout", "aalp.artifacts", "aalp.deps"}
    for m in all_modules():
        imported = deps.direct_imports(m)
        if m in LAYERS:
            assert imported <= LAYERS[m] | {"aalp"}, (m, imported)
        p = part(m)
        if p in MAY_IMPORT:
            allowed = {p, *MAY_IMPORT[p]}
            bad = {i for i in imported - bottom if part(i) not in allowed
                   and not (p == "tools" and i == "aalp.pipeline")}
            assert not bad, f"{m} imports {sorted(bad)}"


def test_report_modules_have_one_concern_each():
    """No module of the package is a grab-bag: each stays under 350 lines."""
    long = {p.relative_to(SRC).as_posix(): n for p in (SRC / "aalp").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 350}
    assert not long, long


def test_every_module_imports_in_a_fresh_interpreter():
    mods = [m for m in all_modules() if m != "aalp"]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    subprocess.run([sys.executable, "-c", code, *mods], check=True, cwd=REPO, env={"PYTHONPATH": str(SRC)})
