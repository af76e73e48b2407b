"""Seeds trained as one group (one batched model) are the seeds trained alone (docs/method.md#seed-groups).

The comparison runs in float64: there the grouped convolutions' other reduction order leaves the weights within
~1e-14 of the single runs' after 20 steps (measured: at most 9e-15 on all three models), so every logic error (a
seed's data order, random starts, Guided Dropout median, adaptive weights, batch-norm statistics or Adam state
taken from another seed) shows as an O(lr) = 1e-3 difference. In float32 the same runs differ by float32 noise
that training amplifies where a decision is discrete (a PGD sign, a ReLU or max-pool choice, the Guided Dropout
median): 3e-7 on LeNet when no decision flips, up to 0.9 on a batch-norm running variance of ResNet-9 when one
does, as two float32 runs with another convolution algorithm differ."""
import copy
from pathlib import Path

import pandas as pd
import pytest
import torch

from aalp import cli
from aalp import config as C
from aalp.core import attacks, checkpoints, data, models, step, training

SEEDS = (0, 1, 2)
TOL = 1e-10  # float64: five orders above the measured 1e-15, seven below float32's noise and any logic error
# every objective, Guided Dropout and adaptive weighting on LeNet; batch norm with the halves through the network
# apart (ResNet-9) and with one mixed batch, Guided Dropout and the option-A shortcut (ResNet-32)
CASES = [("lenet_small", m) for m in ("raw_gd", "adv", "trades_aw", "aalp")] + [
    ("resnet9_small", "alp_split"), ("resnet32_small", "aalp")]


@pytest.fixture
def group_set(tmp_path, ci_params, monkeypatch):
    """Both CI datasets at 80 training images (20 steps of batch 4, one epoch), 12 probe images, PGD-2 training."""
    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"] = {d: {**v, "n_train": 80, "n_test": 12} for d, v in p["datasets"].items()}
    methods = ["raw_gd", "adv", "alp", "trades_aw", "aalp", "alp_split"]
    for d, e in p["experiments"].items():
        e.update(epochs=1, batch_size=4, methods=methods, attack={**e["attack"], "steps": 2})
    p["experiments"]["synthetic_rgb"]["model"] = "resnet9_small"
    p["methods"].update(trades_aw={"objective": "trades", "adaptive_weight": True, "guided_dropout": True},
                        alp_split={"objective": "alp", "mixed_batch": False})
    p["sweeps"], p["run_seeds"], p["seeds"] = [], {}, list(SEEDS)
    p["training"].update(checkpoint_runs=[], checkpoint_every=0, device="cpu", probe_size=12, channels_last=False,
                         fused_adam=False)
    cfg = C.validate(p)
    for d in cfg["datasets"]:
        data.prepare(cfg, d)
    return cfg


def float64(monkeypatch):
    """Every tensor the loop makes in float64: models, random draws, and the loop's own .float() casts."""
    monkeypatch.setattr(torch.Tensor, "float", lambda self, *a, **k: self.to(torch.float64))
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    return old


def run(cfg, model, method, folder, seeds=SEEDS, group=True):
    d = "synthetic" if model == "lenet_small" else "synthetic_rgb"
    cfg = copy.deepcopy(cfg)
    cfg["experiments"][d]["model"] = model
    specs = [C.run_spec(cfg, d, method, s) for s in seeds]
    outs = [folder / f"s{s}" for s in seeds]
    if group:
        training.train(cfg, specs, outs)
    else:
        for sp, o in zip(specs, outs):
            training.train(cfg, sp, o)
    return outs


def compare(a_dirs, b_dirs, tol=TOL):
    """Max weight difference per seed; probe decisions and history's probe columns must agree."""
    diffs = []
    for a, b in zip(a_dirs, b_dirs):
        wa, wb = (checkpoints.load_model(d / "model.pt").state_dict() for d in (a, b))
        diffs.append(max(float((wa[k].double() - wb[k].double()).abs().max()) for k in wa))
        pa, pb = (pd.read_parquet(d / "probe.parquet") for d in (a, b))
        assert pa.clean_correct.equals(pb.clean_correct) and pa.adv_correct.equals(pb.adv_correct), a
        assert (pa.adv_conf - pb.adv_conf).abs().max() <= tol, a
    return diffs


@pytest.mark.parametrize("model,method", CASES)
def test_a_group_of_three_seeds_trains_each_seed_as_it_trains_alone(group_set, tmp_path, monkeypatch, model, method):
    batches = {"group": [], "alone": []}
    real = step.Trainer.step

    def spy(self, x, y):  # the data each seed sees, before augmentation and attack
        batches["group" if self.seeds > 1 else "alone"].append((self.specs[0].seed if self.seeds == 1 else None,
                                                                 x.clone(), y.clone()))
        return real(self, x, y)

    monkeypatch.setattr(step.Trainer, "step", spy)
    old = float64(monkeypatch)
    try:
        g = run(group_set, model, method, tmp_path / "group")
        a = run(group_set, model, method, tmp_path / "alone", group=False)
    finally:
        torch.set_default_dtype(old)
    assert max(compare(g, a)) <= TOL
    # identical batches: seed s's block of every group step is the batch seed s trains on alone
    assert len(batches["group"]) == 20 and len(batches["alone"]) == 60
    for i, (_, xg, yg) in enumerate(batches["group"]):
        for s in SEEDS:
            _, xs, ys = batches["alone"][20 * s + i]
            assert torch.equal(xg.chunk(3)[s], xs) and torch.equal(yg.chunk(3)[s], ys)
    for s, d in zip(SEEDS, g):
        meta = pd.read_json(d / "run.json", typ="series")
        assert meta["seed"] == s and list(meta["group"]) == list(SEEDS) and meta["steps"] == 20


def test_swapping_two_seeds_random_streams_fails_the_comparison(group_set, tmp_path, monkeypatch):
    """The test above can fail: a group whose seeds 0 and 1 draw their random starts from each other's
    generators (data order and weights untouched) ends O(lr) away from the seeds trained alone."""
    old = float64(monkeypatch)
    real_init = step.Trainer.__init__

    def swapped(self, *a, **k):
        real_init(self, *a, **k)
        if self.seeds > 1:
            self.gens[0], self.gens[1] = self.gens[1], self.gens[0]

    try:
        a = run(group_set, "lenet_small", "alp", tmp_path / "alone", group=False)
        monkeypatch.setattr(step.Trainer, "__init__", swapped)
        g = run(group_set, "lenet_small", "alp", tmp_path / "group")
    finally:
        torch.set_default_dtype(old)
    with pytest.raises(AssertionError):
        assert max(compare(g, a)) <= TOL
    w = [checkpoints.load_model(d / "model.pt").state_dict() for d in (g[0], a[0], g[2], a[2])]
    assert max(float((w[0][k] - w[1][k]).abs().max()) for k in w[0]) > 1e-4   # seed 0: another stream
    assert max(float((w[2][k] - w[3][k]).abs().max()) for k in w[2]) <= TOL    # seed 2: its own


def test_the_random_starts_of_a_group_are_each_seeds_own():
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    x = torch.zeros(6, 1, 2, 2)
    drawn = attacks.draw(torch.rand, x, gens)
    for s in SEEDS:
        assert torch.equal(drawn[2 * s:2 * s + 2], torch.rand((2, 1, 2, 2), generator=torch.Generator().manual_seed(s)))


def test_a_group_killed_mid_epoch_resumes_to_the_uninterrupted_group(group_set, tmp_path, monkeypatch):
    """float32, bit for bit: each seed's resume point holds its own slices of the weights and of Adam's state."""
    cfg = copy.deepcopy(group_set)
    cfg["training"]["checkpoint_every"] = 3
    full = run(cfg, "resnet9_small", "aalp", tmp_path / "full")
    calls = {"n": 0}
    real = step.Trainer.step

    def dying(self, x, y):
        calls["n"] += 1
        if calls["n"] == 8:  # after the resume point at step 6
            raise KeyboardInterrupt
        return real(self, x, y)

    monkeypatch.setattr(step.Trainer, "step", dying)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, "resnet9_small", "aalp", tmp_path / "cut")
    cut = [tmp_path / "cut" / f"s{s}" for s in SEEDS]
    sts = [torch.load(d / "resume.pt", weights_only=True) for d in cut]
    assert [st["step"] for st in sts] == [6] * 3 and not any((d / "model.pt").exists() for d in cut)
    # a seed's resume point is what a single run saves: its own weights, loadable into one model, and Adam's state
    single = models.build("resnet9_small", (3, 32, 32), [0.0] * 3, [1.0] * 3)
    single.load_state_dict(sts[1]["model"])
    assert set(sts[1]["opt"]["state"]) == set(range(len(list(single.parameters()))))
    assert [v["exp_avg"].shape for v in sts[1]["opt"]["state"].values()] == [p.shape for p in single.parameters()]
    monkeypatch.setattr(step.Trainer, "step", real)
    run(cfg, "resnet9_small", "aalp", tmp_path / "cut")
    for a, b in zip(full, cut):
        wa, wb = (checkpoints.load_model(d / "model.pt").state_dict() for d in (a, b))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), a
        assert pd.read_csv(a / "history.csv").drop(columns="epoch_seconds").equals(
            pd.read_csv(b / "history.csv").drop(columns="epoch_seconds"))


def test_a_seed_that_diverges_fails_the_group_naming_it(group_set, tmp_path, monkeypatch, capfd):
    """Seed 1's loss turns NaN at step 5: one line naming s1 and step 5; the others' resume points are kept."""
    cfg = copy.deepcopy(group_set)
    cfg["training"]["checkpoint_every"] = 2
    real = step.Trainer.step
    calls = {"n": 0}

    def nan_for_seed_1(self, x, y):
        out = real(self, x, y)
        calls["n"] += 1
        if calls["n"] >= 5:
            out["loss"] = out["loss"].clone()
            out["loss"][1] = float("nan")
        return out

    monkeypatch.setattr(step.Trainer, "step", nan_for_seed_1)
    with pytest.raises(training.Diverged, match=r"train synthetic/alp/s1: the training loss is not finite at step 5 "
                                                r"\(last finite loss [0-9.]+ at step 4\)"):
        run(cfg, "lenet_small", "alp", tmp_path / "g")
    for s in SEEDS:
        st = torch.load(tmp_path / "g" / f"s{s}" / "resume.pt", weights_only=True)
        assert st["step"] == 4 and not (tmp_path / "g" / f"s{s}" / "model.pt").exists()


def test_train_seeds_on_the_command_line(group_set, tmp_path, capfd):
    import yaml

    raw = yaml.safe_load((Path(__file__).parents[2] / "configs" / "ci" / "params.yaml").read_text())
    raw["datasets"] = {"synthetic": {**raw["datasets"]["synthetic"], "n_train": 80, "n_test": 12}}
    raw["experiments"] = {"synthetic": {**raw["experiments"]["synthetic"], "epochs": 1, "batch_size": 4,
                                        "methods": ["adv"]}}
    raw["sweeps"], raw["run_seeds"], raw["seeds"] = [], {}, [0, 1]
    raw["training"].update(checkpoint_runs=[], device="cpu", probe_size=12)
    raw["analysis"].update(samples=12, cam_samples=2)
    raw["evaluation"].update(attacks=["fgsm", "pgd5"], n_samples=12, batch_size=12, autoattack_methods=[],
                             autoattack_samples=12)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert cli.main(["train", "--dataset", "synthetic", "--method", "adv", "--seeds", "0", "1"]) == 0
    assert cli.main(["evaluate", "--dataset", "synthetic", "--method", "adv", "--seeds", "0", "1"]) == 0
    assert cli.main(["analyze", "--dataset", "synthetic", "--method", "adv", "--seeds", "0", "1"]) == 0
    for s in (0, 1):
        rd = tmp_path / "runs" / "synthetic" / "adv" / f"s{s}"
        assert (rd / "model.pt").exists() and (rd / "eval" / "metrics.json").exists()
        assert (rd / "analysis" / "summary.json").exists()
    capfd.readouterr()
    assert cli.main(["train", "--dataset", "synthetic", "--method", "adv", "--seeds", "0", "0"]) == 2
    assert "twice" in capfd.readouterr().err
