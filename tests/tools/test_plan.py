"""`python -m aalp bench plan`: the extrapolation arithmetic against numbers worked out by hand, the job
counts against the DAG, and the CLI (make run's warning)."""
import copy

import pytest

from aalp import config as C, pipeline as P
from aalp.tools import plan as PL
from conftest import PYTHON, REPO, run


class FixedTimer(PL.Timer):
    """Fixed primitive timings, so every total can be worked out by hand."""

    def __init__(self):
        pass

    def train_step(self, cfg, dataset, method):
        return 0.01

    def passes(self, cfg, dataset, bs):
        return 0.0001, 0.0003


def test_plan_arithmetic_worked_by_hand(ci_params):
    cfg = C.validate(copy.deepcopy(ci_params))
    rows = {(r["kind"], r["what"].split(" ")[0]): r for r in PL.plan(cfg, FixedTimer())}
    # synthetic: 2000 training images, batch 32, 3 epochs -> 3 * 63 = 189 steps of 0.01 s; one probe batch an
    # epoch (200 samples, batch 256) of the 3-step training attack, a forward-backward (0.0003 s) a step
    raw = rows[("train", "synthetic/raw")]
    assert raw["seconds_each"] == pytest.approx(189 * 0.01 + 3 * 3 * 0.0003)
    assert raw["count"] == 1 and rows[("train", "synthetic/alp")]["count"] == 2  # run_seeds: alp on seeds 0, 1
    # evaluate: 150 samples in 6 batches of 25, each attack step a forward-backward: fgsm 1 + pgd5 and pgd10 on
    # one shared trajectory 10 + cw10 10 + the training attack 3 = 24 * 0.0003 a batch; AutoAttack on 25 samples
    # (1 batch), 5 steps, 100 queries: APGD-CE 5*fb + APGD-T and FAB-T 2*9*5*fb + Square 100*f = 0.0015 + 0.027 + 0.01,
    # only for ALP and AALP (evaluation.autoattack_methods: 2 + 2 seeds and AALP's 2 sweep values)
    ev = [r for r in PL.plan(cfg, FixedTimer()) if r["kind"] == "evaluate" and r["what"].startswith("synthetic ")]
    assert [(r["count"], round(r["seconds_each"], 6)) for r in ev] == [(7, round(6 * 24 * 0.0003, 6)),
                                                                       (6, round(6 * 24 * 0.0003 + 0.0385, 6))]
    # analyze: contributions over 150 samples (1 forward batch of 256), the 3-step attack and Grad-CAM (2 fb);
    # synthetic/aalp keeps 189 // 40 = 4 snapshots on each of its 2 seeds, shared over the 11 analysed runs
    an = rows[("analyze", "synthetic")]
    one = 1 * 0.0001 + 3 * 0.0003 + 2 * 0.0003
    assert an["count"] == 11 and an["seconds_each"] == pytest.approx(one * (1 + 8 / 11))
    total = sum(r["count"] * r["seconds_each"] for r in rows.values() if r["kind"] != "report") / 3600
    assert PL.total_hours(list(rows.values())) == pytest.approx(total)

    # without evaluation.autoattack_methods: AutoAttack for every run, one row of 13 (9 methods, 2 more seeds, 2 sweep values)
    p = copy.deepcopy(ci_params)
    p["evaluation"].pop("autoattack_methods")
    rows_all = {(r["kind"], r["what"].split(" ")[0]): r for r in PL.plan(C.validate(p), FixedTimer())}
    ev = rows_all[("evaluate", "synthetic")]
    assert ev["count"] == 13 and ev["seconds_each"] == pytest.approx(6 * 24 * 0.0003 + 0.0385)


def test_plan_counts_every_job_of_the_dag_and_times_for_real(ci_params, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data folder: the plan needs none
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic"]["methods"] = ["raw", "adv", "aalp"]
    p["experiments"]["synthetic_rgb"]["methods"] = ["raw"]
    p["run_seeds"] = {}
    p["sweeps"] = []
    p["training"]["checkpoint_runs"] = []
    cfg = C.validate(p)
    rows = PL.plan(cfg)
    count = lambda kind: sum(r["count"] for r in rows if r["kind"] == kind)  # noqa: E731
    runs = list(C.runs(cfg))
    assert count("train") == len(runs) == count("evaluate") and count("analyze") == len(list(P.analyzed(cfg)))
    assert count("report") == len(P.notebooks()) + 1
    by = {r["what"]: r["seconds_each"] for r in rows if r["kind"] == "train"}
    assert all(s > 0 for s in by.values())
    assert by["synthetic/adv"] > by["synthetic/raw"]  # 3 attack steps a training step cost more than none
    assert not (tmp_path / "data").exists()


def test_cli_plan_and_make_runs_warning(ci_params, tmp_path):
    import yaml

    p = copy.deepcopy(ci_params)
    p["experiments"] = {"synthetic": dict(p["experiments"]["synthetic"], methods=["raw"])}
    p["datasets"] = {"synthetic": p["datasets"]["synthetic"]}
    p.update(run_seeds={}, sweeps=[])
    p["training"]["checkpoint_runs"] = []
    p["evaluation"]["attacks"] = ["fgsm", "pgd5"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))
    shown = run([PYTHON, "-m", "aalp", "bench", "plan", "--if-slow", "0"], tmp_path)
    assert "time plan of the ci parameter set on CPU" in shown.stdout and "more than 0 hours" in shown.stdout
    assert "synthetic/raw" in shown.stdout and "total:" in shown.stdout
    quiet = run([PYTHON, "-m", "aalp", "bench", "plan", "--if-slow", "100000"], tmp_path)
    assert quiet.stdout == ""
    assert "bench plan --if-slow 24" in (REPO / "Makefile").read_text()
