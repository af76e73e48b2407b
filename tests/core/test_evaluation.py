import copy
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from aalp import config as C
from aalp.core import attacks, data, evaluation, losses, models, training
from aalp.core.evaluation import consistency_sets, resolution_tolerance, sanity_checks

from conftest import CI_PARAMS, REPO

NEW_FLAGS = ["pgd_far_above_cw", "fgsm_far_above_cw", "pgd_far_above_autoattack", "fgsm_far_above_autoattack"]


def test_sanity_checks_fire_on_masking_signatures():
    ok = {"fgsm": 50.0, "pgd10": 40.0, "pgd20": 39.8, "pgd40": 39.0, "cw10": 41.0, "cw20": 40.0, "autoattack": 38.0}
    assert not any(sanity_checks(ok).values())
    assert sanity_checks({**ok, "pgd40": 41.0})["pgd_steps_increase"]         # more steps, more accuracy
    assert not sanity_checks({**ok, "pgd20": 40.4})["pgd_steps_increase"]     # within the 0.5 point noise
    assert sanity_checks({**ok, "cw20": 42.0})["cw_steps_increase"]
    assert sanity_checks({**ok, "fgsm": 39.0})["pgd_above_fgsm"]
    assert sanity_checks({**ok, "autoattack": 39.6})["autoattack_above_pgd"]  # above the best PGD/CW (39.0)
    assert not sanity_checks({k: v for k, v in ok.items() if k != "autoattack"})["autoattack_above_pgd"]


def test_pgd_steps_are_ordered_numerically():
    # pgd100 must come after pgd20, not between pgd10 and pgd20
    assert not sanity_checks({"pgd10": 40.0, "pgd20": 39.0, "pgd100": 38.0})["pgd_steps_increase"]
    assert sanity_checks({"pgd10": 40.0, "pgd20": 38.0, "pgd100": 39.0})["pgd_steps_increase"]


def test_resolution_tolerance_hand_worked():
    # 100/m + 2 * 100 * sqrt(p (1 - p) / m), p the pooled accuracy, floor 0.5
    assert resolution_tolerance(53, 52, 100, 100) == pytest.approx(1 + 200 * math.sqrt(0.525 * 0.475 / 100))  # 10.99
    assert resolution_tolerance(50, 40, 1000, 1000) == pytest.approx(0.1 + 200 * math.sqrt(0.45 * 0.55 / 1000))  # 3.25
    assert resolution_tolerance(100, 100, 100, 100) == pytest.approx(1.0)   # p = 1: resolution only
    assert resolution_tolerance(0, 0, 10**6, 10**6) == 0.5                 # the floor
    assert resolution_tolerance(53, 52, 100, None) == 0.5                   # no sample count: the floor
    assert resolution_tolerance(53, 52, 50, 100) == resolution_tolerance(53, 52, 50, 50)  # the smaller count


def test_one_image_on_100_samples_does_not_fire_a_10_point_gap_on_1000_does():
    one_image = {"fgsm": 60.0, "pgd10": 52.0, "cw10": 52.0, "autoattack": 53.0}
    assert sanity_checks(one_image)["autoattack_above_pgd"]                 # the fixed 0.5 points alone fired
    assert not any(sanity_checks(one_image, n=100).values())
    assert not any(sanity_checks(one_image, n={"fgsm": 100, "pgd10": 100, "cw10": 100, "autoattack": 100}).values())
    gap = {"fgsm": 60.0, "pgd10": 40.0, "cw10": 41.0, "autoattack": 50.0}
    assert sanity_checks(gap, n=1000)["autoattack_above_pgd"]               # 10 > 3.25 points
    assert not sanity_checks(gap, n=100)["autoattack_above_pgd"]            # 10 < 10.95 points
    assert sanity_checks({"pgd10": 40.0, "pgd20": 50.0}, n=1000)["pgd_steps_increase"]
    assert not sanity_checks({"pgd10": 40.0, "pgd20": 41.0}, n=100)["pgd_steps_increase"]
    assert sanity_checks({"fgsm": 40.0, "pgd10": 50.0}, n=1000)["pgd_above_fgsm"]


def test_far_above_flags_fire_on_the_issue_example():
    acc = {"fgsm": 100.0, "pgd5": 100.0, "pgd10": 100.0, "cw10": 8.0, "autoattack": 4.0}
    for n in (None, 100, {"fgsm": 200, "pgd5": 200, "pgd10": 200, "cw10": 200, "autoattack": 50}):
        flags = sanity_checks(acc, n=n)
        assert all(flags[f] for f in NEW_FLAGS), (n, flags)
        assert not any(v for k, v in flags.items() if k not in NEW_FLAGS), (n, flags)  # the orderings all hold


def test_far_above_needs_both_the_margin_and_the_tolerance():
    # PGD: margin 10 points; the strongest PGD against the strongest CW
    assert not sanity_checks({"pgd10": 45.0, "cw10": 37.0}, n=10000)["pgd_far_above_cw"]   # 8 < 10 points
    assert sanity_checks({"pgd10": 50.0, "pgd20": 48.0, "cw10": 37.0, "cw20": 36.0}, n=10000)["pgd_far_above_cw"]
    assert sanity_checks({"pgd10": 48.0, "cw10": 36.0}, n=100)["pgd_far_above_cw"]        # 12 > 10.93 points
    assert not sanity_checks({"pgd10": 48.0, "cw10": 36.0}, n=50)["pgd_far_above_cw"]     # 12 < 16.04 points
    assert sanity_checks({"pgd10": 48.0, "autoattack": 36.0}, n=100)["pgd_far_above_autoattack"]
    # FGSM: margin 30 points (one step legitimately leaves ~20 points more than strong attacks)
    assert not sanity_checks({"fgsm": 63.28, "cw100": 44.65, "autoattack": 42.0}, n=10000)["fgsm_far_above_cw"]
    assert sanity_checks({"fgsm": 80.0, "autoattack": 42.0}, n=1000)["fgsm_far_above_autoattack"]
    assert not any(sanity_checks({"fgsm": 80.0}, n=1000).values())         # nothing to compare with


def test_the_papers_table2_fires_no_far_above_flag():
    """The paper's models are not masked (Table 2, full test sets of >= 10000 samples)."""
    t = pd.read_csv(REPO / "paper" / "table2_defense.csv")
    for r in t.itertuples(index=False):
        acc = {k: v for k, v in r._asdict().items() if k not in ("dataset", "method", "clean")}
        flags = sanity_checks(acc, n=10000)
        assert not any(flags[f] for f in NEW_FLAGS), (r.dataset, r.method, flags)


def test_consistency_sets_from_records():
    r = pd.DataFrame({"label": [0, 1, 2, 3], "clean_pred": [0, 1, 2, 0], "train_pred": [0, 2, 2, 3]})
    assert consistency_sets(r).tolist() == ["consistent", "inconsistent", "consistent", "clean_wrong"]


# ----------------------------------------------------------------------------- a masked model, real attacks
class ScaledLogits(torch.nn.Module):
    """The same decisions with logits multiplied by `scale`: the softmax saturates, so cross-entropy
    gradients vanish (FGSM, PGD and APGD-CE stall) while margin losses (CW, APGD-T's DLR) still work."""

    def __init__(self, model: torch.nn.Module, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, x):
        return self.model(x) * self.scale


@pytest.fixture(scope="module")
def lenet():
    """A lenet_small trained briefly on the synthetic data (clean accuracy near 100 %, not robust at
    eps 0.1), and 150 test samples."""
    tx, ty, vx, vy = data.make_synthetic((1, 28, 28), 1500, 150, seed=5)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        m = models.build("lenet_small", (1, 28, 28), [0.4], [0.3])
        opt = torch.optim.Adam(m.parameters(), 2e-3)
        x, y = torch.from_numpy(tx).float() / 255, torch.from_numpy(ty)
        for _ in range(3):
            for i in range(0, len(x), 64):
                opt.zero_grad()
                torch.nn.functional.cross_entropy(m(x[i:i + 64]), y[i:i + 64]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return m.eval(), torch.from_numpy(vx).float() / 255, torch.from_numpy(vy)


def _attack_all(model, x, y, eps=0.1):
    """Accuracy (percent) under FGSM, PGD-5, PGD-10, CW-10 and AutoAttack (5 steps, 100 queries), and the
    AutoAttack component record."""
    acc = {}
    with torch.no_grad():
        acc["clean"] = 100 * (model(x).argmax(1) == y).float().mean().item()
    for name in ("fgsm", "pgd5", "pgd10", "cw10"):
        xa = attacks.EvalAttack.parse(name).run(model, x, y, eps=eps, step=eps / 4,
                                                generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            acc[name] = 100 * (model(xa).argmax(1) == y).float().mean().item()
    xa, by = attacks.autoattack(model, x, y, eps=eps, steps=5, queries=100, return_by=True)
    assert (xa - x).abs().max() <= eps + 1e-6
    with torch.no_grad():
        acc["autoattack"] = 100 * (model(xa).argmax(1) == y).float().mean().item()
    return acc, by


def test_scaled_logits_defeat_ce_attacks_and_fire_the_far_above_flags(lenet):
    model, x, y = lenet
    n = len(y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        masked, masked_by = _attack_all(ScaledLogits(model, 1000.0).eval(), x, y)
        plain, plain_by = _attack_all(model, x, y)
    finally:
        torch.set_num_threads(threads)
    assert masked["clean"] == plain["clean"] > 90, (masked, plain)
    # the CE attacks see no gradient: accuracy stays near clean; CW and AutoAttack take it down
    for a in ("fgsm", "pgd5", "pgd10"):
        assert masked[a] > masked["clean"] - 10, masked
    assert masked["cw10"] < 20 and masked["autoattack"] < 20, masked
    flags = sanity_checks({k: v for k, v in masked.items() if k != "clean"}, n=n)
    assert all(flags[f] for f in NEW_FLAGS), (masked, flags)
    # AutoAttack's record: APGD-CE is masked too, so a margin-loss component does the work
    assert set(masked_by) <= {"", "clean", *attacks.AUTOATTACK_COMPONENTS}
    assert masked_by.count("clean") == round(n * (1 - masked["clean"] / 100))
    assert masked_by.count("apgd-ce") < masked_by.count("apgd-t") + masked_by.count("fab-t") + masked_by.count("square")
    assert masked_by.count("") == round(n * masked["autoattack"] / 100)
    # the same model unscaled: every attack succeeds and none of the new flags fires
    assert plain["pgd10"] < 20 and plain["cw10"] < 20, plain
    plain_flags = sanity_checks({k: v for k, v in plain.items() if k != "clean"}, n=n)
    assert not any(plain_flags[f] for f in NEW_FLAGS), (plain, plain_flags)
    assert plain_by.count("apgd-ce") > n / 2


# ----------------------------------------------------------------------------- evaluate(): records and metrics
def test_evaluate_records_the_autoattack_component(tmp_path, monkeypatch):
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 200, "n_test": 60}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "epochs": 1, "methods": ["raw"]}}
    p["sweeps"], p["run_seeds"], p["seeds"] = [], {}, [0]
    p["training"].update(checkpoint_runs=[], device="cpu")
    p["evaluation"].pop("autoattack_methods", None)  # AutoAttack for RAW here (the CI set's: ALP and AALP only)
    p["evaluation"].update(attacks=["fgsm", "pgd5", "cw5", "autoattack"], n_samples=60, batch_size=30,
                           autoattack_samples=30, autoattack_steps=3, autoattack_queries=20)
    cfg = C.validate(p)
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        data.prepare(cfg, "synthetic")
        rd = tmp_path / "run"
        training.train(cfg, C.run_spec(cfg, "synthetic", "raw", 0), rd)
        metrics = evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    finally:
        torch.set_num_threads(threads)
    r = pd.read_parquet(rd / "eval" / "records.parquet")
    cols = list(r.columns)
    assert cols[cols.index("autoattack_alp") + 1] == "autoattack_by" and cols.count("autoattack_by") == 1
    sub, rest = r[r["sample"] < 30], r[r["sample"] >= 30]
    assert (rest.autoattack_by == "").all()
    assert set(sub.autoattack_by) <= {"", "clean", *attacks.AUTOATTACK_COMPONENTS}
    assert ((sub.autoattack_by == "clean") == (sub.clean_pred != sub.label)).all()
    flipped = sub.autoattack_by.isin(attacks.AUTOATTACK_COMPONENTS)
    assert (sub.autoattack_pred[flipped] != sub.label[flipped]).all()
    assert (sub.autoattack_pred[sub.autoattack_by == ""] == sub.label[sub.autoattack_by == ""]).all()
    counts = metrics["autoattack_by"]
    assert list(counts) == ["clean", *attacks.AUTOATTACK_COMPONENTS, "robust"] and sum(counts.values()) == 30

    # evaluation.autoattack_methods leaving RAW out: the same records and accuracies, without AutoAttack's
    cfg_no = C.validate({**p, "evaluation": {**p["evaluation"], "autoattack_methods": ["adv"]}})
    assert C.eval_attacks(cfg_no, "synthetic", "raw") == ["fgsm", "pgd5", "cw5"]
    torch.set_num_threads(1)
    try:
        (rd / "eval").rename(tmp_path / "eval_with_aa")
        m_no = evaluation.evaluate(cfg_no, "synthetic", "raw", 0, rd)
    finally:
        torch.set_num_threads(threads)
    r_no = pd.read_parquet(rd / "eval" / "records.parquet")
    assert not [c for c in r_no.columns if c.startswith("autoattack")] and "autoattack_by" not in m_no
    assert m_no["accuracy"] == {k: v for k, v in metrics["accuracy"].items() if k != "autoattack"}
    pd.testing.assert_frame_equal(r_no, r[[c for c in r.columns if not c.startswith("autoattack")]])
    assert counts["robust"] == (sub.autoattack_by == "").sum()
    assert counts["robust"] == round(30 * metrics["accuracy"]["autoattack"] / 100)
    assert set(metrics["checks"]) == {"pgd_steps_increase", "cw_steps_increase", "pgd_above_fgsm",
                                      "autoattack_above_pgd", *NEW_FLAGS}

@pytest.fixture
def tiny_run(ci_params, tmp_path, monkeypatch):
    """The CI parameters on 40 synthetic test samples (2 batches of 20), the attacks fgsm, pgd2/3/5 and
    cw2/5, and a lenet_small trained for one epoch in run/model.pt: (cfg, run folder, test x, test y)."""
    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"]["synthetic"].update(n_train=500, n_test=40)
    p["training"].update(device="cpu", probe_size=40)
    p["evaluation"].update(attacks=["fgsm", "pgd2", "pgd3", "pgd5", "cw2", "cw5"], n_samples=40, batch_size=20)
    p["evaluation"].pop("autoattack_samples", None)
    cfg = C.validate(p)
    data.prepare(cfg, "synthetic")
    d = data.load_prepared(cfg["data"]["dir"], "synthetic")
    torch.manual_seed(0)
    model = models.build("lenet_small", d.shape, d.manifest["mean"], d.manifest["std"])
    opt = torch.optim.Adam(model.parameters(), 2e-3)
    tx, ty = data.to_float(torch.from_numpy(d.train_x)), torch.from_numpy(d.train_y)
    for i in range(0, len(tx), 50):
        opt.zero_grad()
        F.cross_entropy(model(tx[i:i + 50]), ty[i:i + 50]).backward()
        opt.step()
    rd = tmp_path / "run"
    rd.mkdir()
    training.save_model(rd / "model.pt", model, "lenet_small", d.shape)
    return cfg, rd, data.to_float(torch.from_numpy(d.test_x)), torch.from_numpy(d.test_y)


def _separate_records(cfg, rd, x_all, y_all, name: str, seed_name: str) -> dict:
    """The record columns of attack `name` run on its own, batch by batch, from a generator seeded as
    evaluate seeds `seed_name` (run seed 0)."""
    model = training.load_model(rd / "model.pt")
    ecfg, atk = cfg["evaluation"], attacks.EvalAttack.parse(name)
    eps, step = cfg["experiments"]["synthetic"]["attack"]["eps"], cfg["experiments"]["synthetic"]["attack"]["step"]
    g = torch.Generator().manual_seed(evaluation._attack_seed(ecfg["seed"] + 0, seed_name))
    cols = {f: [] for f in ("pred", "conf", "ce", "alp")}
    for i in range(0, len(x_all), ecfg["batch_size"]):
        x, y = x_all[i:i + ecfg["batch_size"]], y_all[i:i + ecfg["batch_size"]]
        x_adv = atk.run(model, x, y, eps=eps, step=step, kappa=ecfg["cw_kappa"], generator=g)
        with torch.no_grad():
            lc, la = model(x).float(), model(x_adv).float()
        cols["pred"].append(la.argmax(1))
        cols["conf"].append(losses.true_class_prob(la, y))
        cols["ce"].append(F.cross_entropy(la, y, reduction="none"))
        cols["alp"].append(losses.alp_pairing(lc, la))
    return {f: torch.cat(v).numpy() for f, v in cols.items()}


def test_pgd_k_and_cw_k_records_are_separate_runs_from_the_groups_start(tiny_run):
    cfg, rd, x_all, y_all = tiny_run
    evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    rec = pd.read_parquet(rd / "eval" / "records.parquet")
    names = ["fgsm", "pgd2", "pgd3", "pgd5", "cw2", "cw5", "train"]
    assert list(rec.columns) == ["sample", "label", "clean_pred", "clean_conf"] + [
        f"{a}_{f}" for a in names for f in ("pred", "conf", "ce", "alp")]
    for name, group in [("pgd2", "pgd"), ("pgd3", "pgd"), ("pgd5", "pgd"), ("cw2", "cw"), ("cw5", "cw"),
                        ("fgsm", "fgsm")]:
        ref = _separate_records(cfg, rd, x_all, y_all, name, group)
        for f, v in ref.items():
            np.testing.assert_array_equal(rec[f"{name}_{f}"].to_numpy(), v, err_msg=f"{name}_{f}")
    # the check can fail: from another start (pgd3's own seed, as before the groups) the records differ
    other = _separate_records(cfg, rd, x_all, y_all, "pgd3", "pgd3")
    assert not np.array_equal(rec["pgd3_ce"].to_numpy(), other["ce"])
    ev = json.loads((rd / "eval" / "eval.json").read_text())
    assert ev["shared_trajectories"] == {"pgd": ["pgd2", "pgd3", "pgd5"], "cw": ["cw2", "cw5"]}
    sec = ev["attack_seconds"]
    assert sec["pgd5"] > 0 and sec["cw5"] > 0 and sec["pgd2"] == sec["pgd3"] == sec["cw2"] == 0.0
    metrics = json.loads((rd / "eval" / "metrics.json").read_text())
    assert sorted(metrics["accuracy"]) == sorted(["clean", *names])


def test_an_interrupted_evaluation_resumes_at_the_next_batch_with_the_same_records(tiny_run, monkeypatch):
    cfg, rd, _, _ = tiny_run  # 2 batches of 20; groups fgsm, pgd (shared), cw (shared), train
    ref_dir = rd.parent / "ref"
    ref_dir.mkdir()
    shutil.copy(rd / "model.pt", ref_dir / "model.pt")
    evaluation.evaluate(cfg, "synthetic", "raw", 0, ref_dir)  # uninterrupted
    assert not (ref_dir / "eval" / "resume.pt").exists()

    calls = []
    real = evaluation.run_shared

    def crash_in_second_batch(members, *a, **k):
        calls.append(members[0].name)
        if len(calls) == 3:  # batch 1 ran pgd and cw; the second batch's first shared group dies
            raise KeyboardInterrupt
        return real(members, *a, **k)

    monkeypatch.setattr(evaluation, "run_shared", crash_in_second_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    assert (rd / "eval" / "resume.pt").exists() and not (rd / "eval" / "records.parquet").exists()
    calls.clear()
    monkeypatch.setattr(evaluation, "run_shared", lambda members, *a, **k: calls.append(1) or real(members, *a, **k))
    evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    assert len(calls) == 2  # only the second batch's pgd and cw ran again
    pd.testing.assert_frame_equal(pd.read_parquet(rd / "eval" / "records.parquet"),
                                  pd.read_parquet(ref_dir / "eval" / "records.parquet"))
    assert json.loads((rd / "eval" / "metrics.json").read_text()) == json.loads(
        (ref_dir / "eval" / "metrics.json").read_text())
    assert not (rd / "eval" / "resume.pt").exists()

    # a resume point of other parameters is not continued: the run starts over
    evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)  # no resume.pt: 2 batches again
    monkeypatch.setattr(evaluation, "run_shared", crash_in_second_batch)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
    other = {**cfg, "evaluation": {**cfg["evaluation"], "cw_kappa": cfg["evaluation"]["cw_kappa"] + 1}}
    calls.clear()
    monkeypatch.setattr(evaluation, "run_shared", lambda members, *a, **k: calls.append(1) or real(members, *a, **k))
    evaluation.evaluate(other, "synthetic", "raw", 0, rd)
    assert len(calls) == 4


def test_evaluation_runs_in_float32_whatever_training_amp(tiny_run):
    """bf16 attacks would need per-sample agreement with float32 of at least 99.5% under PGD-100 and CW-100 on
    a trained model, which no test here shows: training.amp speeds training only, and the records of a set
    with amp on equal those with it off, bit for bit (under bf16 autocast every confidence and loss moves)."""
    cfg, rd, _, _ = tiny_run
    ref_dir = rd.parent / "fp32"
    ref_dir.mkdir()
    shutil.copy(rd / "model.pt", ref_dir / "model.pt")
    evaluation.evaluate(cfg, "synthetic", "raw", 0, ref_dir)
    amp_cfg = {**cfg, "training": {**cfg["training"], "amp": True}}
    evaluation.evaluate(amp_cfg, "synthetic", "raw", 0, rd)
    pd.testing.assert_frame_equal(pd.read_parquet(rd / "eval" / "records.parquet"),
                                  pd.read_parquet(ref_dir / "eval" / "records.parquet"), check_exact=True)
