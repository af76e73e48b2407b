"""workflow/scripts/run_slice.sh: a slice of a set without Snakemake. On a two-run set whose first run is
published, it makes exactly the other run (train, evaluate, analyze) in the work folder, with the files
publish --add needs; a second call finds every output and changes nothing; a stage past its deadline is
not started."""
import json

import yaml

from aalp import config as C
from aalp.publish import finished_runs
from conftest import CI_PARAMS, REPO, run

SCRIPT = REPO / "workflow" / "scripts" / "run_slice.sh"


def _set(root):
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 200, "n_test": 40}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "epochs": 1, "methods": ["raw", "alp"]}}
    p["run_seeds"], p["sweeps"] = {}, []
    p["training"].update(checkpoint_runs=[], probe_size=40)
    p["evaluation"].update(attacks=["fgsm", "pgd10"], n_samples=40, batch_size=40)
    p["evaluation"].pop("autoattack_samples", None)
    p["analysis"].update(cam_samples=2)
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    published = root / "published"
    published.mkdir()
    (published / "manifest.json").write_text(json.dumps({"runs": {"runs/synthetic/raw/s0": {}}}))
    return root, published


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in (folder / "runs").rglob("*") if p.is_file()}


def test_run_slice_makes_the_unpublished_runs_and_resumes(tmp_path):
    set_dir, published = _set(tmp_path / "set")
    work = tmp_path / "work"
    out = run(f"bash {SCRIPT} {set_dir} {work} {published}", tmp_path, env={"JOBS": "2"}).stdout
    assert "1 runs to make" in out and "DONE_analyze=1" in out, out
    cfg = C.load(work / "params.yaml")
    with_cwd = finished_runs(cfg, work)
    assert with_cwd == [("synthetic", "alp", 0)] and not (work / "runs/synthetic/raw").exists()
    log = (work / "logs/synthetic-alp-s0.log").read_text()
    assert [ln.split()[:2] for ln in log.splitlines() if ln.startswith(("START", "DONE"))] == [
        ["START", "train"], ["DONE", "train"], ["START", "evaluate"], ["DONE", "evaluate"],
        ["START", "analyze"], ["DONE", "analyze"]]
    assert json.loads((work / "runs/synthetic/alp/s0/eval/metrics.json").read_text())["n_samples"] == 40
    before = _files(work)
    again = run(f"bash {SCRIPT} {set_dir} {work} {published}", tmp_path).stdout
    assert "DONE_analyze=1" in again and _files(work) == before  # nothing rerun
    assert (work / "logs/synthetic-alp-s0.log").read_text().count("HAVE") == 3

    late = tmp_path / "late"
    res = run(f"bash {SCRIPT} {set_dir} {late}", tmp_path, env={"TRAIN_BY": "-1"}).stdout
    assert "2 runs to make" in res and not (late / "runs").exists()
    assert "SKIP train" in (late / "logs/synthetic-raw-s0.log").read_text()
