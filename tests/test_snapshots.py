"""Budget snapshots (docs/method.md#budget-snapshots): training.snapshot_steps kept by training, each evaluated by
`evaluate --snapshot N` into snapshots/step<N>/, one DVC stage and Snakemake job each, counted by the time plan and
the GPU window, published with their run."""
import copy
import json
import re

import pytest
import torch
import yaml

from aalp import config as C, layout as L, pipeline as P, sync as S
from aalp.cli import main
from aalp.core import checkpoints, data, evaluation, training
from conftest import REPO, run


def _tiny(ci_params) -> dict:
    """ADV and RAW on 256 synthetic images, batch 32: 8 steps an epoch, 16 in all; ADV keeps snapshots."""
    p = copy.deepcopy(ci_params)
    p["datasets"] = {"synthetic": {"source": "synthetic", "shape": [1, 28, 28], "n_train": 256, "n_test": 64, "seed": 0}}
    p["experiments"] = {"synthetic": dict(p["experiments"]["synthetic"], epochs=2, batch_size=32, methods=["raw", "adv"])}
    p["run_seeds"], p["sweeps"] = {}, []
    p["training"].update(device="cpu", probe_size=16, checkpoint_every=6, checkpoint_runs=["synthetic/adv"],
                         snapshot_steps=[1, 6, 11])
    p["evaluation"].update(snapshot_samples=40, autoattack_methods=None)
    return p


@pytest.fixture
def tiny(tmp_path, ci_params, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _tiny(ci_params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    cfg = C.validate(p)
    data.prepare(cfg, "synthetic")
    return cfg


def _kept(rd):
    return sorted(int(re.fullmatch(r"step(\d{7})\.pt", f.name).group(1)) for f in (rd / "checkpoints").glob("*"))


def test_training_keeps_snapshots_at_exactly_the_snapshot_steps_and_the_checkpoint_every_ones(tiny, tmp_path):
    training.train(tiny, C.run_spec(tiny, "synthetic", "adv", 0), L.run_dir("synthetic", "adv", 0))
    rd = L.run_dir("synthetic", "adv", 0)
    assert _kept(rd) == [1, 6, 11, 12]  # snapshot_steps 1, 6, 11 and checkpoint_every's 6, 12 (16 steps)
    assert all(L.snapshot_checkpoint("synthetic", "adv", 0, n).is_file() for n in tiny["training"]["snapshot_steps"])
    ck = torch.load(L.snapshot_checkpoint("synthetic", "adv", 0, 1), weights_only=True)
    assert ck["step"] == 1
    first, last = checkpoints.load_model(rd / "checkpoints" / "step0000001.pt"), checkpoints.load_model(rd / "model.pt")
    assert not all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), last.state_dict().values()))
    # a run outside training.checkpoint_runs keeps none; a seed group keeps each seed's
    training.train(tiny, C.run_spec(tiny, "synthetic", "raw", 0), L.run_dir("synthetic", "raw", 0))
    assert not (L.run_dir("synthetic", "raw", 0) / "checkpoints").exists()
    specs = [C.run_spec(tiny, "synthetic", "adv", s) for s in (1, 2)]
    training.train(tiny, specs, [tmp_path / "g1", tmp_path / "g2"])
    assert _kept(tmp_path / "g1") == _kept(tmp_path / "g2") == [1, 6, 11, 12]


def _clean_acc(path, cfg, n) -> float:
    model = checkpoints.load_model(path)
    d = data.load_prepared(cfg["data"]["dir"], "synthetic")
    with torch.no_grad():
        pred = model(data.to_float(torch.from_numpy(d.test_x[:n]))).argmax(1)
    return 100.0 * float((pred == torch.from_numpy(d.test_y[:n])).float().mean())


def test_evaluate_snapshot_attacks_the_snapshots_weights_on_the_first_samples(tiny, monkeypatch):
    training.train(tiny, C.run_spec(tiny, "synthetic", "adv", 0), L.run_dir("synthetic", "adv", 0))
    rd, out = L.run_dir("synthetic", "adv", 0), L.snapshot_dir("synthetic", "adv", 0, 1)
    assert main(["evaluate", "--dataset", "synthetic", "--method", "adv", "--seed", "0", "--snapshot", "1"]) == 0
    m, ev = json.loads((out / "metrics.json").read_text()), json.loads((out / "eval.json").read_text())
    assert out == rd / "snapshots" / "step1" and not (rd / "eval").exists() and not (out / "resume.pt").exists()
    assert m["step"] == 1 and ev["snapshot"] == {"step": 1} and m["n_samples"] == m["n_samples_autoattack"] == 40
    assert set(m["accuracy"]) == {"clean", "pgd100", "cw100", "autoattack", "train"}  # + the training attack's
    snap, final = _clean_acc(rd / "checkpoints" / "step0000001.pt", tiny, 40), _clean_acc(rd / "model.pt", tiny, 40)
    assert m["accuracy"]["clean"] == pytest.approx(snap, abs=1e-3)
    assert abs(snap - final) > 5  # one step against sixteen: other weights, other accuracies
    assert ev["code_hash"] == P.code_hash("evaluate") and ev["seed"] == 0 and ev["device"] == "cpu"
    assert len(__import__("pandas").read_parquet(out / "records.parquet")) == 40

    # resumable as an evaluation: stopped after its first batch (of 25), it goes on to the same numbers
    calls, real = {"n": 0}, evaluation.autoattack

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(evaluation, "autoattack", dying)
    (out / "metrics.json").unlink()
    with pytest.raises(KeyboardInterrupt):
        main(["evaluate", "--dataset", "synthetic", "--method", "adv", "--seed", "0", "--snapshot", "1"])
    assert (out / "resume.pt").is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(evaluation, "autoattack", real)
    assert main(["evaluate", "--dataset", "synthetic", "--method", "adv", "--seed", "0", "--snapshot", "1"]) == 0
    assert json.loads((out / "metrics.json").read_text()) == m

    # a step without a kept snapshot: one line, no output
    assert main(["evaluate", "--dataset", "synthetic", "--method", "adv", "--seed", "0", "--snapshot", "2"]) == 1
    assert not L.snapshot_dir("synthetic", "adv", 0, 2).exists()


def _snap_cfg(ci_params, grouped=False) -> dict:
    p = copy.deepcopy(ci_params)
    p["training"].update(checkpoint_runs=["synthetic/alp", "synthetic/aalp"], snapshot_steps=[50, 100],
                         group_seeds=grouped)
    return C.validate(p)


@pytest.mark.parametrize("grouped", [False, True], ids=["single", "grouped"])
def test_eight_snapshot_stages_with_their_deps_outs_and_params(ci_params, grouped):
    cfg = _snap_cfg(ci_params, grouped)  # ALP and AALP on seeds 0 and 1 (run_seeds), steps 50 and 100
    want = [(d, m, s, n) for m in ("alp", "aalp") for s in (0, 1) for n in (50, 100) for d in ["synthetic"]]
    assert L.snapshot_runs(cfg) == want
    stages = {st.name: st for st in P.stages(cfg)}
    snaps = [st for st in stages.values() if st.kind == "evaluate_snapshot"]
    assert sorted(st.name for st in snaps) == sorted(f"evaluate-snapshot-{d}-{m}-s{s}-{n}" for d, m, s, n in want)
    data_files = P.prepared("data", "synthetic")
    for d, m, s, n in want:
        st, folder = stages[f"evaluate-snapshot-{d}-{m}-s{s}-{n}"], f"runs/{d}/{m}/s{s}/snapshots/step{n}"
        assert L.snapshot_dir(d, m, s, n).as_posix() == folder
        assert st.cmd == f"python -m aalp evaluate --dataset {d} --method {m} --seed {s} --snapshot {n}"
        ck = f"runs/{d}/{m}/s{s}/checkpoints/step{n:07d}.pt"
        assert st.deps == [ck, *data_files, *P.code_deps("evaluate")] and "model.pt" not in " ".join(st.deps)
        assert st.outs == [f"{folder}/records.parquet", f"{folder}/eval.json"] and st.metrics == [f"{folder}/metrics.json"]
        assert st.params == P.stage_params(cfg, "evaluate", d, m)
        train = stages[f"train-{d}-{m}" if grouped else f"train-{d}-{m}-s{s}"]
        assert ck in train.outs and "training.snapshot_steps" in train.params
        assert S.stage_name("evaluate_snapshot", {"dataset": d, "method": m, "seed": s, "step": n}) == st.name
    # the other runs keep and declare none, and read no snapshot key
    for st in stages.values():
        if st.kind == "train" and not re.match(r"train-synthetic-a?alp(-s\d)?$", st.name):
            assert "checkpoints" not in " ".join(st.outs) and "training.snapshot_steps" not in st.params, st.name
    assert [st.name for st in P.rule_trains(cfg)] == [st.name for st in stages.values() if st.kind == "train"
                                                      and (grouped or "checkpoints" in " ".join(st.outs))]
    dvc = yaml.safe_load(P.dvc_yaml(cfg))["stages"]
    assert dvc["evaluate-snapshot-synthetic-aalp-s1-100"]["metrics"] == [
        {"runs/synthetic/aalp/s1/snapshots/step100/metrics.json": {"cache": False}}]
    # without snapshot_steps (every published set) nothing changes: no stage, no param, the same fingerprints
    plain = C.validate(copy.deepcopy(ci_params))
    assert L.snapshot_runs(plain) == [] and all(st.kind != "evaluate_snapshot" for st in P.stages(plain))
    other = copy.deepcopy(plain)
    other["evaluation"].update(snapshot_samples=7, snapshot_attacks=["fgsm"])
    assert L.fingerprint(other, "evaluate", "synthetic", "aalp") == L.fingerprint(plain, "evaluate", "synthetic", "aalp")
    assert L.fingerprint(other, "evaluate_snapshot", "synthetic", "aalp") != L.fingerprint(plain, "evaluate_snapshot",
                                                                                          "synthetic", "aalp")


def test_snakemake_dry_run_shows_the_snapshot_jobs_as_dvc_yaml_has_them(ci_params, tmp_path):
    p = copy.deepcopy(ci_params)
    p["training"].update(checkpoint_runs=["synthetic/alp", "synthetic/aalp"], snapshot_steps=[50, 100])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    dvc = yaml.safe_load(P.dvc_yaml(C.validate(p), tmp_path))["stages"]
    r = run(f"snakemake -n -p --forceall --cores 1 -s {REPO / 'Snakefile'}", tmp_path)
    cmds = sorted(set(re.findall(r"(python -m aalp [^\n]*?)\s*$", r.stdout, re.M)))
    assert cmds == sorted(s["cmd"] for n, s in dvc.items() if n != P.MATRIX_STAGE)
    assert len(re.findall(r"^rule evaluate_snapshot:", r.stdout, re.M)) == 8, r.stdout[-3000:]
    assert len(re.findall(r"^rule train_run_synthetic_a?alp_s\d:", r.stdout, re.M)) == 4
    assert "output: runs/synthetic/alp/s1/model.pt, runs/synthetic/alp/s1/probe.parquet, runs/synthetic/alp/s1/run.json, " \
           "runs/synthetic/alp/s1/checkpoints/step0000050.pt, runs/synthetic/alp/s1/checkpoints/step0000100.pt" in r.stdout
    (job,) = [b for b in r.stdout.split("\nrule ") if b.startswith("evaluate_snapshot:")
              and "runs/synthetic/aalp/s0/snapshots/step100/metrics.json" in b]
    assert "runs/synthetic/aalp/s0/checkpoints/step0000100.pt" in re.search(r"input: (.*)", job).group(1).split(", ")


@pytest.mark.parametrize("steps,needles", [
    ([189], ["training.snapshot_steps = [189] must lie below the 189 training steps of synthetic/aalp (3 epochs of 63 steps)"]),
    ([0], ["training.snapshot_steps.0 = 0 is out of range; it must be >= 1"]),
    ([5, 5], ["training.snapshot_steps", "non-unique"]),
])
def test_bad_snapshot_steps_are_one_line_errors(ci_params, steps, needles):
    p = copy.deepcopy(ci_params)
    p["training"]["snapshot_steps"] = steps
    with pytest.raises(C.ConfigError) as e:
        C.validate(p)
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)
    p["training"]["snapshot_steps"] = [1, 188]
    C.validate(p)
    p["training"]["drop_last"] = True  # 2000 images in 62 whole batches of 32: 186 steps
    p["training"]["snapshot_steps"] = [186]
    with pytest.raises(C.ConfigError, match="below the 186 training steps"):
        C.validate(p)
    p["training"]["checkpoint_runs"] = []  # no run keeps snapshots: nothing to check
    C.validate(p)


def test_source_train_counts_are_the_sources():
    from aalp.core.sources import EXPECTED_COUNTS

    assert C.SOURCE_TRAIN == {k: v[0] for k, v in EXPECTED_COUNTS.items()}


def test_plan_window_and_publish_count_the_snapshots(ci_params, tmp_path, monkeypatch):
    from aalp import publish
    from aalp.tools import plan as PL, window as W

    class Fixed(PL.Timer):
        def __init__(self):
            pass

        def train_step(self, cfg, dataset, method):
            return 0.01

        def passes(self, cfg, dataset, bs):
            return 0.0001, 0.0003

    cfg = _snap_cfg(ci_params)
    rows = [r for r in PL.plan(cfg, Fixed()) if r["kind"] == "evaluate_snapshot"]
    # 1000 snapshot samples, at most the 500 test images: 20 batches of 25 of PGD-100, CW-100 and the 3-step training
    # attack (203 forward-backwards), AutoAttack (5 steps, 100 queries: 0.0385 s a batch) on all 20
    assert [(r["what"].split(" ")[0], r["count"], r["per_run"]) for r in rows] == [("synthetic/alp", 4, 2),
                                                                                  ("synthetic/aalp", 4, 2)]
    assert rows[0]["seconds_each"] == pytest.approx(20 * 203 * 0.0003 + 20 * 0.0385)
    assert "evaluate_snapshot" in PL.format_plan(PL.plan(cfg, Fixed()), "CPU")
    monkeypatch.chdir(tmp_path)
    assert W.stages_left(cfg, "synthetic", "alp", 1, set()) == ["train", "evaluate", "evaluate_snapshot"]
    assert W.stages_left(cfg, "synthetic", "raw", 0, set()) == ["train", "evaluate"]
    for n in (50, 100):
        for f in ("records.parquet", "eval.json", "metrics.json"):
            (L.snapshot_dir("synthetic", "alp", 1, n) / f).parent.mkdir(parents=True, exist_ok=True)
            (L.snapshot_dir("synthetic", "alp", 1, n) / f).write_text("{}")
    assert W.stages_left(cfg, "synthetic", "alp", 1, set()) == ["train", "evaluate"]
    files = publish.run_result_files(cfg, tmp_path, "synthetic", "alp", 1)
    assert {f for f in files if "/snapshots/" in f} == {f"runs/synthetic/alp/s1/snapshots/step{n}/{f}" for n in (50, 100)
                                                         for f in ("metrics.json", "eval.json", "records.parquet")}
    assert not any("/snapshots/" in f for f in publish.run_result_files(cfg, tmp_path, "synthetic", "raw", 0))
