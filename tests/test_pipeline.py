"""Snakemake and DVC describe the same DAG: same commands, outputs and parameter lists."""
import re

import pytest
import yaml

from aalp import config as C, pipeline as P
from conftest import REPO, run

PROFILES = [REPO] + sorted(p.parent for p in (REPO / "configs").glob("*/params.yaml"))
IDS = ["paper"] + [p.name for p in PROFILES[1:]]


@pytest.mark.parametrize("workdir", PROFILES, ids=IDS)
def test_committed_dvc_yaml_is_current(workdir):
    r = run("python -m aalp dvc --check", workdir, check=False)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("workdir", PROFILES, ids=IDS)
def test_snakemake_and_dvc_run_the_same_jobs(workdir):
    cfg = C.load(workdir / "params.yaml")
    dvc = yaml.safe_load((workdir / "dvc.yaml").read_text())["stages"]
    assert next(iter(dvc)) == P.MATRIX_STAGE  # DVC's own guard against a stale matrix; Snakemake needs none
    dvc.pop(P.MATRIX_STAGE)
    r = run(f"snakemake -n -p --forceall --cores 1 -s {REPO / 'Snakefile'}", workdir)
    smk_cmds = sorted(set(re.findall(r"(python -m aalp [^\n]*?)\s*$", r.stdout, re.M)))
    assert smk_cmds == sorted(s["cmd"] for s in dvc.values())
    for line in re.findall(r"^\s*output: (.*)$", r.stdout, re.M):
        outs = [o.strip() for o in line.split(",")]
        owners = [n for n, s in dvc.items()
                  if set(outs) == set(s["outs"]) | {next(iter(m)) for m in s.get("metrics", []) + s.get("plots", [])}]
        assert len(owners) == 1, outs
    # the paper profile's DAG lists every (dataset, method, seed) of Tables 2 and 3
    if workdir == REPO:
        import pandas as pd

        for table in ("table2_defense.csv", "table3_guided_dropout.csv"):
            for row in pd.read_csv(REPO / "paper" / table).itertuples():
                for seed in cfg["seeds"]:
                    assert f"train-{row.dataset}-{row.method}-s{seed}" in dvc


def test_stage_params_are_exactly_what_each_stage_reads(ci_params):
    cfg = C.validate(ci_params)
    train = P.stage_params(cfg, "train", "synthetic", "adv")
    assert "methods.adv" in train and "methods.raw" not in train
    assert not any(k.startswith("evaluation") for k in train)
    ev = P.stage_params(cfg, "evaluate", "synthetic", "adv")
    assert "evaluation" in ev and "experiments.synthetic.epochs" not in ev
    assert P.stage_params(cfg, "prepare", "synthetic") == ["datasets.synthetic"]
    # every listed key exists in the params file itself (DVC requires it)
    for st in P.stages(cfg):
        for key in st.params:
            node = ci_params
            for part in key.split("."):
                node = node[part]


def test_fingerprint_changes_only_for_the_edited_method(ci_params):
    cfg = C.validate(ci_params)
    before = {m: P.fingerprint(cfg, "train", "synthetic", m) for m in ("raw", "adv")}
    ci_params["methods"]["adv"]["attack"] = {"steps": 9}
    cfg2 = C.validate(ci_params)
    after = {m: P.fingerprint(cfg2, "train", "synthetic", m) for m in ("raw", "adv")}
    assert before["raw"] == after["raw"] and before["adv"] != after["adv"]


def test_parameter_sets_are_not_in_snakemake_profiles_folder():
    """profiles/ is Snakemake's folder for execution profiles; parameter sets live in configs/."""
    assert not list((REPO / "profiles").glob("**/params.yaml")), "a parameter set under profiles/"
    sets = {p.parent.name for p in (REPO / "configs").glob("*/params.yaml")}
    assert {"ci", "fashion"} <= sets
    for name in sets:
        assert (REPO / "configs" / name / "dvc.yaml").is_file()
    assert "configs/*/" in (REPO / "Makefile").read_text()
    assert "/configs/*/runs/" in (REPO / ".gitignore").read_text()


def test_adding_a_seed_snakemake_follows_and_dvc_stops_until_regenerated(tmp_path):
    """Never a silent run of the old matrix: Snakemake derives its DAG from params.yaml; DVC's first
    stage stops with one line until dvc.yaml is regenerated, and then runs the new seed's stages."""
    from conftest import copy_repo

    repo = copy_repo(tmp_path / "repo")
    work = repo / "configs" / "ci"
    p = work / "params.yaml"
    p.write_text(p.read_text().replace("seeds: [0]", "seeds: [0, 1]"))

    dry = run(f"snakemake -n -p --cores 1 -s {repo / 'Snakefile'}", work)
    assert "python -m aalp train --dataset synthetic --method adv --seed 1" in dry.stdout

    r = run("dvc repro", work, check=False)
    assert r.returncode != 0
    line = [ln for ln in (r.stdout + r.stderr).splitlines() if "does not match" in ln]
    names = lambda text: {st.name for st in P.stages(C.validate(yaml.safe_load(text)))}  # noqa: E731
    new = names(p.read_text()) - names(p.read_text().replace("seeds: [0, 1]", "seeds: [0]", 1))
    assert len(line) == 1 and "python -m aalp dvc" in line[0] and f"lacks {len(new)} stage(s)" in line[0], r.stderr
    assert "the experiment matrix changed" in line[0]
    assert "Running stage 'prepare-" not in r.stdout and not (work / "data").exists()  # nothing else ran

    run("python -m aalp dvc", work)
    r = run("dvc repro train-synthetic-raw-s1", work)  # the new seed's stage exists and runs
    ran = set(re.findall(r"Running stage '([^']+)'", r.stdout))
    assert ran == {"matrix-check", "prepare-synthetic", "train-synthetic-raw-s1"}
    assert (work / "runs" / "synthetic" / "raw" / "s1" / "model.pt").exists()
