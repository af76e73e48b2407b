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
                assert P.grouped(cfg)  # the paper set trains each method's seeds as one group
                train = dvc[f"train-{row.dataset}-{row.method}"]
                assert train["cmd"].endswith("--seeds " + " ".join(map(str, C.seeds(cfg, row.dataset, row.method))))
                for seed in cfg["seeds"]:
                    assert f"runs/{row.dataset}/{row.method}/s{seed}/model.pt" in train["outs"]
                    assert f"evaluate-{row.dataset}-{row.method}-s{seed}" in dvc


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


def _grouped_ci() -> dict:
    p = yaml.safe_load((REPO / "configs" / "ci" / "params.yaml").read_text())
    p["training"]["group_seeds"] = True
    return C.validate(p)


def test_group_seeds_makes_one_training_stage_per_method():
    """training.group_seeds: one `train --seeds` stage per (dataset, method) owning every seed's files; each seed's
    evaluation and analysis read its own model from it; only a grouped set's stages read training.group_seeds."""
    from aalp import sync as S

    cfg = _grouped_ci()
    stages = {st.name: st for st in P.stages(cfg)}
    trains = [st for st in stages.values() if st.kind == "train"]
    assert [st.name for st in trains] == [f"train-{d}-{m}" for d, m, _ in P.train_groups(cfg)]
    for d, m, seeds in P.train_groups(cfg):
        st = stages[f"train-{d}-{m}"]
        assert seeds == C.seeds(cfg, d, m) and st.cmd.endswith(f"--seeds {' '.join(map(str, seeds))}")
        assert st.outs == [f"runs/{d}/{m}/s{s}/{f}" for s in seeds for f in ("model.pt", "probe.parquet", "run.json")]
        assert st.plots == [f"runs/{d}/{m}/s{s}/history.csv" for s in seeds]
        assert "training.group_seeds" in st.params and f"methods.{C.base_method(cfg, d, m)}" in st.params
        for s in seeds:
            assert f"runs/{d}/{m}/s{s}/model.pt" in stages[f"evaluate-{d}-{m}-s{s}"].deps
        assert S.stage_name(P.group_rule(st.name), {}, type("Params", (), {"stage": st.name})()) == st.name
    assert stages["train-synthetic-alp"].cmd.endswith("--seeds 0 1")  # run_seeds: ALP has two
    plain = C.validate(yaml.safe_load((REPO / "configs" / "ci" / "params.yaml").read_text()))
    assert all("training.group_seeds" not in st.params for st in P.stages(plain))
    assert {st.name for st in P.stages(plain) if st.kind == "train"} == {f"train-{d}-{m}-s{s}" for d, m, s in C.runs(plain)}


def test_a_grouped_set_reruns_only_the_edited_methods_group_in_both_engines(tmp_path):
    """A tiny grouped set (RAW and ALP, seeds 0 and 1) trained and evaluated by Snakemake, which records the stages in
    dvc.lock; then methods.alp.lambda changes: Snakemake would rerun ALP's group and its evaluations and nothing
    else, and `dvc status` reports exactly those stages."""
    from conftest import copy_repo

    repo = copy_repo(tmp_path / "repo", only="configs/ci")
    work = repo / "configs" / "ci"
    p = yaml.safe_load((work / "params.yaml").read_text())
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 64, "n_test": 20}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "epochs": 1, "methods": ["raw", "alp"]}}
    p["seeds"], p["run_seeds"], p["sweeps"] = [0, 1], {}, []
    p["training"].update(group_seeds=True, checkpoint_runs=[], probe_size=20)
    p["evaluation"].update(attacks=["fgsm"], n_samples=20, batch_size=20, autoattack_methods=[], autoattack_samples=20)
    (work / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run("python -m aalp dvc", work)
    targets = " ".join(f"runs/synthetic/{m}/s{s}/eval/metrics.json" for m in ("raw", "alp") for s in (0, 1))
    r = run(f"snakemake --cores 2 -s {repo / 'Snakefile'} {targets}", work)
    assert r.stderr.count("python -m aalp train --dataset synthetic --method alp --seeds 0 1") <= 1
    assert "recorded" in r.stderr, r.stderr[-2000:]
    groups = {st.name for st in P.stages(C.load(work / "params.yaml")) if st.kind in ("train", "evaluate")}
    assert "Data and pipelines are up to date" in run("dvc status " + " ".join(sorted(groups)), work).stdout

    (work / "params.yaml").write_text((work / "params.yaml").read_text().replace("lambda: 0.5", "lambda: 0.25", 1))
    dry = run(f"snakemake -n --cores 1 -s {repo / 'Snakefile'} {targets}", work).stdout
    jobs = set(re.findall(r"^(?:local)?rule (\w+):", dry, re.M)) | set(re.findall(r"^(\w+)\s+1$", dry, re.M))
    assert "train_group_synthetic_alp" in jobs and "train_group_synthetic_raw" not in jobs, dry[-3000:]
    assert "evaluate" in jobs
    assert len(re.findall(r"wildcards: dataset=synthetic, method=alp, seed=\d", dry)) == 2  # ALP's two evaluations
    assert "method=raw" not in dry
    changed = set(re.findall(r"^(\S+):\s*$", run("dvc status " + " ".join(sorted(groups)), work).stdout, re.M))
    assert changed == {"train-synthetic-alp", "evaluate-synthetic-alp-s0", "evaluate-synthetic-alp-s1"}, changed
