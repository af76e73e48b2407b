"""Code edits on the CI set's finished run: Snakemake and DVC rerun exactly the stages whose derived code
dependencies (aalp.deps) hold the edited file, and agree with each other.

- `src/aalp/core/sets.py` (the Consistent-set definition, which evaluation writes into metrics.json and the
  report pages read): the evaluations and the report pages, never prepare, train or analyze;
- the schema's default of `methods.*.pairing` (every stage reads params.yaml through the schema's defaults):
  every stage.

It starts from the Snakemake run (conftest.ci_snakemake_run), on its own copy; both engines are asked with a
dry run (`snakemake -n`, `dvc status`), so nothing is recomputed."""
import json
import re

import pytest

from aalp import config as C, pipeline as P
from conftest import CI_SET, copy_workspace, run

pytestmark = pytest.mark.e2e


def _snakemake_jobs(repo) -> set[str]:
    """The dvc.yaml stage names of the jobs `snakemake -n` would run."""
    out = run(f"snakemake -n -p --cores 2 --directory {CI_SET}", repo).stdout
    names = set()
    for cmd in re.findall(r"python -m aalp (.+)$", out, re.M):  # "Shell command: python -m aalp ..."
        a = dict(re.findall(r"--(\w+) (\S+)", cmd))
        kind = cmd.split()[0]
        if kind == "report":
            names.add(f"report-{a['item']}" if "item" in a else "report")
        elif kind == "prepare":
            names.add(f"prepare-{a['dataset']}")
        elif "snapshot" in a:  # evaluate --snapshot N
            names.add(f"evaluate-snapshot-{a['dataset']}-{a['method']}-s{a['seed']}-{a['snapshot']}")
        else:
            names.add(f"{kind}-{a['dataset']}-{a['method']}-s{a['seed']}")
    return names


def _dvc_changed(work) -> set[str]:
    out = run("dvc status --json dvc.yaml", work).stdout.strip().splitlines()[-1]
    return {k.rsplit(":", 1)[-1] for k in json.loads(out)} - {P.MATRIX_STAGE}


def _downstream(stages, names: set[str]) -> set[str]:
    """names and every stage that reads an output of one of them, transitively."""
    producer = {o: st.name for st in stages for o in st.all_outs}
    out = set(names)
    for st in stages:  # dependency order
        if any(producer.get(d) in out for d in st.deps):
            out.add(st.name)
    return out


def test_a_code_edit_reruns_exactly_the_stages_that_import_it_in_both_engines(ci_snakemake_run, tmp_path):
    repo = copy_workspace(ci_snakemake_run[0], tmp_path / "repo")
    work = repo / CI_SET
    cfg = C.load(work / "params.yaml")
    stages = P.stages(cfg, work)
    assert _dvc_changed(work) == set() and _snakemake_jobs(repo) == set()

    sets_py = repo / "src/aalp/core/sets.py"
    sets_py.write_text(sets_py.read_text() + "\n# an edit of the Consistent-set module\n")
    direct = {st.name for st in stages if "../../src/aalp/core/sets.py" in st.deps}
    kinds = {n.split("-")[0] for n in direct}
    assert kinds == {"evaluate", "report"}, kinds  # what imports sets.py: evaluation and the report pages
    assert {f"evaluate-{d}-{m}-s{s}" for d, m, s in C.runs(cfg)} <= direct
    assert _dvc_changed(work) == direct  # DVC: the stages whose own dependencies changed
    assert _snakemake_jobs(repo) == _downstream(stages, direct)  # Snakemake: those and what reads their outputs

    sets_py.write_text(sets_py.read_text().replace("\n# an edit of the Consistent-set module\n", ""))
    schema = repo / "workflow/schemas/params.schema.json"
    text = schema.read_text()
    assert text.count('"default": "mean"') == 1
    schema.write_text(text.replace('"default": "mean"', '"default": "sum"'))
    everything = {st.name for st in stages}
    assert _dvc_changed(work) == everything
    assert _snakemake_jobs(repo) == everything
