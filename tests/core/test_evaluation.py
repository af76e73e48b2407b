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
from aalp.core import attacks, checkpoints, data, evaluation, losses, models, training
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
        assert not any(flags[f] for f in [*NEW_FLAGS, "fgsm_far_above_pgd"]), (r.dataset, r.method, flags)


def test_fgsm_far_above_pgd_flags_catastrophic_overfitting_without_cw_or_autoattack():
    """FGSM against the strongest PGD-k, margin 30 points (as FGSM against CW/AutoAttack)."""
    overfit = {"fgsm": 88.0, "pgd10": 4.0, "pgd40": 1.0}        # Wong et al.'s signature: 87 points
    assert sanity_checks(overfit, n=10000)["fgsm_far_above_pgd"]
    assert not any(v for k, v in sanity_checks(overfit, n=10000).items() if k != "fgsm_far_above_pgd")
    # the paper's CIFAR-10 ADV row: FGSM 63.28, PGD-100 44.72 (18.56 points) is no overfitting
    assert not sanity_checks({"fgsm": 63.28, "pgd100": 44.72}, n=10000)["fgsm_far_above_pgd"]
    # against the strongest PGD-k: 40 - 9 = 31 > max(30, tol = 0.01 + 200 sqrt(0.245 * 0.755 / 10^4) = 0.87)
    assert sanity_checks({"fgsm": 40.0, "pgd10": 12.0, "pgd20": 9.0}, n=10000)["fgsm_far_above_pgd"] is True
    assert sanity_checks({"fgsm": 40.0, "pgd10": 10.5}, n=10000)["fgsm_far_above_pgd"] is False  # 29.5 points
    # 31 points on 100 samples: tol = 1 + 200 sqrt(0.245 * 0.755 / 100) = 9.6, the margin 30 decides: fires
    assert sanity_checks({"fgsm": 40.0, "pgd10": 9.0}, n=100)["fgsm_far_above_pgd"]
    assert not sanity_checks({"fgsm": 90.0}, n=1000)["fgsm_far_above_pgd"]                   # no PGD to compare


def test_collapse_checks_hand_worked():
    from aalp.core.checks import class_shares, collapse_checks

    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    constant = class_shares(labels, [2] * 10)   # chance 5/10; class 2: 10/10 predictions, 5/10 labels
    assert constant == {"chance_pct": 50.0, "top_prediction": 2, "top_prediction_pct": 100.0,
                        "top_prediction_label_pct": 50.0}
    # clean 50 = chance: fires; 100 >= 50 and 100 >= 2 * 50: fires
    assert collapse_checks(50.0, constant, 10) == {"clean_at_chance": True, "predictions_one_class": True}
    good = class_shares(labels, labels)         # every prediction right: class 2 takes 50, as in the labels
    assert good["top_prediction"] == 2 and good["top_prediction_pct"] == 50.0
    assert collapse_checks(100.0, good, 10) == {"clean_at_chance": False, "predictions_one_class": False}
    # balanced ten classes, 1000 samples: chance 10; tol = 100/1000 + 200 sqrt(p(1-p)/1000), p = (c + 10)/200
    balanced = {"chance_pct": 10.0, "top_prediction": 0, "top_prediction_pct": 12.0, "top_prediction_label_pct": 10.0}
    assert collapse_checks(11.5, balanced, 1000)["clean_at_chance"]          # 1.5 <= 0.1 + 1.96 = 2.06
    assert not collapse_checks(13.0, balanced, 1000)["clean_at_chance"]      # 3.0 > 0.1 + 2.05 = 2.15
    assert collapse_checks(5.0, balanced, 1000)["clean_at_chance"]           # under chance
    half = {**balanced, "top_prediction_pct": 50.0}
    assert collapse_checks(60.0, half, 1000)["predictions_one_class"]        # 50 >= 50 and 50 >= 2 * 10
    assert not collapse_checks(60.0, {**half, "top_prediction_pct": 49.9}, 1000)["predictions_one_class"]
    # two balanced classes: half the predictions on one class is what the labels are, not a collapse
    assert not collapse_checks(90.0, {"chance_pct": 50.0, "top_prediction": 1, "top_prediction_pct": 55.0,
                                      "top_prediction_label_pct": 50.0}, 1000)["predictions_one_class"]


def test_into_ball_makes_the_stated_bound_hold_exactly():
    """0.7 in float32 is 0.699999988; float32's 0.7 + 0.3 rounds to 1.0, which lies 0.300000012 from it, outside a
    ball of radius 0.3 (a real number): into_ball moves it one float32 step down, to 0.99999994 (0.29999995 away)."""
    x = torch.tensor([0.7, 0.7, 0.2, 0.5], dtype=torch.float32)
    raw = torch.tensor([1.0, 0.5, 0.0, 0.8], dtype=torch.float32)   # the last: 0.8 - 0.5 in float32
    assert (raw.double() - x.double()).abs()[0] > 0.3                  # the rounding the method page states
    out = attacks.into_ball(raw, x, 0.3)
    assert out.dtype == torch.float32
    assert out[0].item() == torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item() == 1 - 2 ** -24
    assert torch.equal(out[1:3], raw[1:3])                             # inside already: unchanged
    assert ((out.double() - x.double()).abs() <= 0.3).all() and ((out >= 0) & (out <= 1)).all()
    # a real PGD-20 at eps 0.3: points pushed to the corners of the ball, then the exact bound
    torch.manual_seed(0)
    m = models.build("lenet_small", (1, 28, 28), [0.4], [0.3]).eval()
    xs = torch.rand(8, 1, 28, 28)
    adv = attacks.pgd(m, xs, torch.arange(8), eps=0.3, step=0.05, steps=20, generator=torch.Generator().manual_seed(1))
    exact = attacks.into_ball(adv, xs, 0.3)
    assert (exact.double() - xs.double()).abs().max() <= 0.3
    outside = (adv.double() - xs.double()).abs() > 0.3   # float32 rounding at the ball's faces
    assert outside.any()
    assert torch.equal(exact != adv, outside)               # exactly the points outside moved,
    # by rounding's size: eps's float32 excess (1.2e-8) plus one float32 step at 1 (6e-8)
    assert (exact - adv).abs().max() <= 1.2e-8 + 2 ** -24


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
                                      "autoattack_above_pgd", *NEW_FLAGS, "fgsm_far_above_pgd",
                                      "clean_at_chance", "predictions_one_class"}

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


def _separate_records(cfg, rd, x_all, y_all, name: str, seed_name: str, step: float | None = None) -> dict:
    """The record columns of attack `name` (at its own `step`, if given) run on its own, batch by batch, from a
    generator seeded as evaluate seeds `seed_name` (run seed 0)."""
    model = checkpoints.load_model(rd / "model.pt")
    ecfg, atk = cfg["evaluation"], attacks.EvalAttack.parse(name, step)
    eps, step = cfg["experiments"]["synthetic"]["attack"]["eps"], cfg["experiments"]["synthetic"]["attack"]["step"]
    g = torch.Generator().manual_seed(evaluation._attack_seed(ecfg["seed"] + 0, seed_name))
    cols = {f: [] for f in ("pred", "conf", "ce", "alp")}
    for i in range(0, len(x_all), ecfg["batch_size"]):
        x, y = x_all[i:i + ecfg["batch_size"]], y_all[i:i + ecfg["batch_size"]]
        x_adv = atk.run(model, x, y, eps=eps, step=step, kappa=ecfg["cw_kappa"], generator=g)
        x_adv = attacks.into_ball(x_adv, x, eps)  # what evaluate scores (docs/method.md#evaluation-attacks)
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


def test_the_step_rule_lets_pgd10_cross_the_ball(tiny_run, monkeypatch):
    """MNIST's eps 0.3 and step 0.01 on the tiny run, attacks pgd10, pgd40 and cw10. Under `fixed` PGD-10 and CW-10
    move at most 10 · 0.01 = 0.1 from their random start; under `reach` they run at 2.5 · 0.3 / 10 = 0.075 and move
    farther, each alone (PGD-40 keeps 0.01), their records those of a PGD-10 at 0.075 from the generator of its
    group 'pgd@0.075'; eval.json records the rule and each attack's step."""
    cfg, rd, x_all, y_all = tiny_run
    cfg = copy.deepcopy(cfg)
    cfg["experiments"]["synthetic"]["attack"].update(eps=0.3, step=0.01)
    cfg["evaluation"]["attacks"] = ["pgd10", "pgd40", "cw10"]
    travel = []  # (step, largest distance of the iterate after 10 steps from the random start)
    real = attacks.pgd_prefixes

    def watched(*a, checkpoints, **k):
        out = real(*a, checkpoints=[0, *checkpoints], **k)
        if 10 in out:
            travel.append((k["step"], float((out[10] - out[0]).abs().max())))
        return {c: out[c] for c in checkpoints}

    monkeypatch.setattr(attacks, "pgd_prefixes", watched)
    evs = {}
    for rule in ("fixed", "reach"):
        cfg["evaluation"]["step_rule"] = rule
        travel.clear()
        evaluation.evaluate(cfg, "synthetic", "raw", 0, rd)
        evs[rule] = (json.loads((rd / "eval" / "eval.json").read_text()), list(travel),
                     pd.read_parquet(rd / "eval" / "records.parquet"))
    ev, moved, _ = evs["fixed"]
    assert len(moved) == 4 and max(d for _, d in moved) <= 0.1 + 1e-6  # pgd and cw, 2 batches each
    assert ev["step_rule"] == "fixed" and ev["steps"] == {"pgd10": 0.01, "pgd40": 0.01, "cw10": 0.01}
    assert ev["shared_trajectories"] == {"pgd": ["pgd10", "pgd40"], "cw": ["cw10"]}
    ev, moved, rec = evs["reach"]
    assert {s for s, _ in moved} == {0.075} and max(d for _, d in moved) > 0.1 + 1e-6
    assert ev["step_rule"] == "reach" and ev["steps"] == {"pgd10": 0.075, "pgd40": 0.01, "cw10": 0.075}
    assert ev["step"] == 0.01 and ev["evaluation"]["step_rule"] == "reach"
    assert ev["shared_trajectories"] == {"pgd@0.075": ["pgd10"], "pgd": ["pgd40"], "cw@0.075": ["cw10"]}
    monkeypatch.setattr(attacks, "pgd_prefixes", real)
    ref = _separate_records(cfg, rd, x_all, y_all, "pgd10", "pgd@0.075", step=0.075)
    np.testing.assert_array_equal(rec["pgd10_ce"].to_numpy(), ref["ce"])
    assert not np.array_equal(evs["fixed"][2]["pgd10_ce"].to_numpy(), ref["ce"])


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
