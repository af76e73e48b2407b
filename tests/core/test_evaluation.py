import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from aalp import config as C
from aalp.core import attacks, data, evaluation, losses, models, training
from aalp.core.evaluation import consistency_sets, sanity_checks


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


def test_consistency_sets_from_records():
    r = pd.DataFrame({"label": [0, 1, 2, 3], "clean_pred": [0, 1, 2, 0], "train_pred": [0, 2, 2, 3]})
    assert consistency_sets(r).tolist() == ["consistent", "inconsistent", "consistent", "clean_wrong"]


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
