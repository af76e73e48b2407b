"""Seeds evaluated as one group are the seeds evaluated alone (docs/method.md#seed-groups): FGSM, PGD-k, CW-k and
the training attack on the grouped model, each seed's random starts from its own generators, AutoAttack seed by
seed. As for training (tests/core/test_group_training.py), the comparison runs in float64, where the grouped
convolutions' other summation order leaves ~1e-15 and a seed given another's random starts or model is O(1) off;
AutoAttack, run on each seed's own model, is compared in float32, bit for bit."""
import copy

import numpy as np
import pandas as pd
import pytest
import torch

from aalp import config as C
from aalp.core import checkpoints, data, evaluation, models

SEEDS = (0, 1, 2)
TOL = 1e-10


@pytest.fixture
def three_models(tmp_path, ci_params, monkeypatch):
    """The CI set on 30 test images (batches of 10), three lenet_small of seeds 0-2 (untrained: the attacks act
    on any model) saved twice, for the group and for the seeds alone."""
    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 40, "n_test": 30}}
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "methods": ["alp"]}}
    p["sweeps"], p["run_seeds"], p["seeds"] = [], {}, list(SEEDS)
    p["training"].update(checkpoint_runs=[], device="cpu")
    p["evaluation"].update(attacks=["fgsm", "pgd2", "pgd3", "cw2", "autoattack"], n_samples=30, batch_size=10,
                           autoattack_samples=10, autoattack_steps=2, autoattack_queries=10,
                           autoattack_methods=["alp"])
    cfg = C.validate(p)
    data.prepare(cfg, "synthetic")
    for s in SEEDS:
        torch.manual_seed(s)
        m = models.build("lenet_small", (1, 28, 28), [0.4], [0.3])
        for where in ("group", "alone"):
            checkpoints.save_model(tmp_path / where / f"s{s}" / "model.pt", m, "lenet_small", (1, 28, 28))
    return cfg


def _records(folder):
    return [pd.read_parquet(folder / f"s{s}" / "eval" / "records.parquet") for s in SEEDS]


def _evaluate_both(cfg, tmp_path):
    evaluation.evaluate(cfg, "synthetic", "alp", list(SEEDS), [tmp_path / "group" / f"s{s}" for s in SEEDS])
    for s in SEEDS:
        evaluation.evaluate(cfg, "synthetic", "alp", s, tmp_path / "alone" / f"s{s}")
    return _records(tmp_path / "group"), _records(tmp_path / "alone")


@pytest.mark.parametrize("rule", ["fixed", "reach"])
def test_a_group_of_three_seeds_evaluates_each_seed_as_alone(three_models, tmp_path, monkeypatch, rule):
    """Under step_rule `reach` (eps 0.07, step 0.025) PGD-2 and CW-2 run at 2.5 · 0.07 / 2 = 0.0875, each alone."""
    cfg = copy.deepcopy(three_models)
    cfg["evaluation"].update(attacks=["fgsm", "pgd2", "pgd3", "cw2"], step_rule=rule)
    monkeypatch.setattr(torch.Tensor, "float", lambda self, *a, **k: self.to(torch.float64))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        group, alone = _evaluate_both(cfg, tmp_path)
    finally:
        torch.set_default_dtype(old)
    for g, a in zip(group, alone):
        assert list(g.columns) == list(a.columns)
        for c in g.columns:
            if c.endswith("_pred") or c in ("sample", "label"):
                assert g[c].equals(a[c]), c
            else:
                assert np.abs(g[c].to_numpy() - a[c].to_numpy()).max() <= TOL, c
    # the seeds' models differ, so the check compares per seed: seed 0's records are not seed 1's
    assert np.abs(group[0].pgd3_ce.to_numpy() - alone[1].pgd3_ce.to_numpy()).max() > 1e-3
    for s in SEEDS:
        m_g, m_a = (pd.read_json(tmp_path / w / f"s{s}" / "eval" / "metrics.json", typ="series") for w in ("group", "alone"))
        assert m_g["accuracy"] == m_a["accuracy"]
        ev = pd.read_json(tmp_path / "group" / f"s{s}" / "eval" / "eval.json", typ="series")
        assert set(ev["shared_trajectories"]) == ({"pgd", "cw"} if rule == "fixed" else {"pgd@0.0875", "pgd", "cw@0.0875"})


def test_autoattack_runs_seed_by_seed_on_each_seeds_own_model(three_models, tmp_path):
    group, alone = _evaluate_both(three_models, tmp_path)
    for g, a in zip(group, alone):
        aa = [c for c in g.columns if c.startswith("autoattack")]
        assert len(aa) == 5 and g[aa].equals(a[aa])
        assert (g.autoattack_pred[g["sample"] >= 10] == -1).all()  # beyond AutoAttack's 10 images: no record


def test_a_group_evaluation_killed_mid_way_resumes_to_the_same_records(three_models, tmp_path, monkeypatch):
    cfg = copy.deepcopy(three_models)
    cfg["evaluation"]["attacks"] = ["fgsm", "pgd3"]
    dirs = [tmp_path / "group" / f"s{s}" for s in SEEDS]
    evaluation.evaluate(cfg, "synthetic", "alp", list(SEEDS), [tmp_path / "alone" / f"s{s}" for s in SEEDS])
    calls = []
    real = evaluation.run_shared

    def dies_in_the_third_batch(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(evaluation, "run_shared", dies_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        evaluation.evaluate(cfg, "synthetic", "alp", list(SEEDS), dirs)
    assert all(torch.load(d / "eval" / "resume.pt", weights_only=True)["next"] == 20 for d in dirs)
    monkeypatch.setattr(evaluation, "run_shared", real)
    evaluation.evaluate(cfg, "synthetic", "alp", list(SEEDS), dirs)
    for g, a in zip(_records(tmp_path / "group"), _records(tmp_path / "alone")):
        pd.testing.assert_frame_equal(g, a)
