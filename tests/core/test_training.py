import copy
import os

import pandas as pd
import pytest
import torch

from aalp import config as C
from aalp.core import data, training


@pytest.fixture
def tiny(tmp_path, ci_params, monkeypatch):
    """A validated config on a small synthetic dataset, prepared in tmp_path (the working directory)."""
    monkeypatch.chdir(tmp_path)
    p = copy.deepcopy(ci_params)
    p["datasets"] = {"synthetic": {"source": "synthetic", "shape": [1, 28, 28], "n_train": 256, "n_test": 64, "seed": 0}}
    p["experiments"] = {"synthetic": dict(p["experiments"]["synthetic"], epochs=2, batch_size=32)}
    p["methods"]["aalp"] = {"objective": "alp", "guided_dropout": True, "adaptive_weight": True}
    p["methods"]["trades"] = {"objective": "trades"}
    p["experiments"]["synthetic"]["methods"] = ["raw", "adv", "aalp", "trades"]
    p["training"]["probe_size"] = 32
    p["training"]["channels_last"] = False  # required; fused_adam and compile from the schema's defaults:
    for k in ("fused_adam", "compile"):     # the plain path
        p["training"].pop(k, None)
    p["run_seeds"] = {}
    cfg = C.validate(p)
    data.prepare(cfg, "synthetic")
    return cfg


def _weights(path):
    return training.load_model(path).state_dict()


@pytest.mark.parametrize("method,aug", [("adv", "none"), ("aalp", "none"), ("adv", "crop_flip")])
def test_interrupted_run_resumes_to_the_same_weights(tiny, tmp_path, monkeypatch, method, aug):
    cfg = copy.deepcopy(tiny)
    cfg["training"].update(checkpoint_every=3, device="cpu",  # bitwise equality is promised on CPU
                           checkpoint_runs=[f"synthetic/{method}"])
    cfg["experiments"]["synthetic"]["augment"] = aug
    spec = C.run_spec(cfg, "synthetic", method, 0)
    training.train(cfg, spec, tmp_path / "full")

    calls = {"n": 0}
    real_step = training.Trainer.step

    def dying_step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 13:  # mid-way through epoch 2 (8 batches an epoch), after the checkpoint at step 12
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(training.Trainer, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, spec, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "resume.pt").exists() and not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(training.Trainer, "step", real_step)
    training.train(cfg, spec, tmp_path / "resumed")

    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha = pd.read_csv(tmp_path / "full" / "history.csv")
    hb = pd.read_csv(tmp_path / "resumed" / "history.csv")
    assert ha.drop(columns="epoch_seconds").equals(hb.drop(columns="epoch_seconds"))
    assert not (tmp_path / "resumed" / "resume.pt").exists()
    assert sorted(os.listdir(tmp_path / "full" / "checkpoints")) == [f"step{s:07d}.pt" for s in (3, 6, 9, 12, 15)]


def test_sigterm_saves_the_step_in_flight_and_the_rerun_resumes_to_the_same_weights(tiny, tmp_path, monkeypatch):
    """SLURM preempts or times out a job with SIGTERM: training stops after the step in flight (not at the last
    checkpoint), saves resume.pt and exits 143; the requeued job resumes to the uninterrupted run's weights."""
    import signal

    cfg = copy.deepcopy(tiny)
    cfg["training"].update(checkpoint_every=0, device="cpu")  # no periodic resume points: only the signal saves one
    spec = C.run_spec(cfg, "synthetic", "adv", 0)
    training.train(cfg, spec, tmp_path / "full")
    calls = {"n": 0}
    real_step = training.Trainer.step

    def step(self, x, y):
        calls["n"] += 1
        if calls["n"] == 11:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, x, y)

    monkeypatch.setattr(training.Trainer, "step", step)
    with pytest.raises(SystemExit) as stopped:
        training.train(cfg, spec, tmp_path / "resumed")
    assert stopped.value.code == 128 + signal.SIGTERM
    state = torch.load(tmp_path / "resumed" / "resume.pt", weights_only=True)
    assert state["step"] == 11 and state["epoch"] == 1 and state["batch"] == 3  # 8 batches an epoch
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is gone again
    monkeypatch.setattr(training.Trainer, "step", real_step)
    training.train(cfg, spec, tmp_path / "resumed")
    a, b = _weights(tmp_path / "full" / "model.pt"), _weights(tmp_path / "resumed" / "model.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


class _Clock:
    """A stand-in for training's `time` module: only training steps take time, one second each."""

    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


def test_a_resumed_run_records_the_seconds_of_every_segment(tiny, tmp_path, monkeypatch):
    """train_seconds (run.json) and epoch_seconds (history.csv) of a run stopped and resumed count the seconds before
    the stop too: with one second a step, both runs record 16 s over 2 epochs of 8 steps, 8 s each epoch."""
    cfg = copy.deepcopy(tiny)
    cfg["training"].update(checkpoint_every=3, device="cpu")
    spec = C.run_spec(cfg, "synthetic", "adv", 0)
    clock = _Clock()
    monkeypatch.setattr(training, "time", clock)
    real_step = training.Trainer.step
    calls = {"n": 0}

    def timed_step(self, x, y):
        calls["n"] += 1
        clock.now += 1.0
        if calls["n"] == 16 + 13:  # the second run dies mid-way through epoch 2, one step after the checkpoint at 12
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(training.Trainer, "step", timed_step)
    full = training.train(cfg, spec, tmp_path / "full")
    with pytest.raises(KeyboardInterrupt):
        training.train(cfg, spec, tmp_path / "resumed")
    clock.now += 3600.0  # the job waits in the queue: not training time
    resumed = training.train(cfg, spec, tmp_path / "resumed")
    assert full["train_seconds"] == 16.0
    assert resumed["train_seconds"] == 16.0  # 12 s before the stop (the step that died is lost with it) + 4 s after
    assert full["resumed_at"] == [] and resumed["resumed_at"] == [12]  # the report names a resumed run (provenance)
    for run in ("full", "resumed"):
        assert pd.read_csv(tmp_path / run / "history.csv").epoch_seconds.tolist() == [8.0, 8.0]


def test_run_records_history_probe_and_provenance(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["training"].update(checkpoint_every=3, checkpoint_runs=["synthetic/adv"])
    spec = C.run_spec(cfg, "synthetic", "trades", 0)
    meta = training.train(cfg, spec, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()  # only the runs of training.checkpoint_runs keep snapshots
    h = pd.read_csv(tmp_path / "run" / "history.csv")
    assert h.epoch.tolist() == [1, 2] and {"probe_clean_acc", "probe_adv_acc", "probe_alp", "train_loss"} <= set(h)
    probe = pd.read_parquet(tmp_path / "run" / "probe.parquet")
    assert len(probe) == 2 * 32 and {"clean_conf", "adv_conf", "clean_ce", "adv_ce", "alp"} <= set(probe)
    assert meta["seed"] == 0 and meta["device"] in ("cpu", "cuda") and meta["code_version"] and meta["spec"]["method"] == "trades"


def test_guided_dropout_trains_only_the_kept_half_of_the_logits_layer(tiny):
    spec = C.run_spec(tiny, "synthetic", "aalp", 0)
    d = data.load_prepared("data", "synthetic")
    torch.manual_seed(0)
    from aalp.core import models

    model = models.build(spec.model, d.shape, d.manifest["mean"], d.manifest["std"])
    tr = training.Trainer(spec, model, torch.device("cpu"))
    before = model.classifier.weight.detach().clone()
    x, y = data.to_float(torch.from_numpy(d.train_x[:32])), torch.from_numpy(d.train_y[:32])
    tr.step(x, y)
    changed = (model.classifier.weight.detach() != before).any(0)
    assert changed.sum().item() == model.feature_dim // 2


def test_amp_and_channels_last_run_on_cpu(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["training"].update(amp=True, channels_last=True)
    cfg["experiments"]["synthetic"]["epochs"] = 1
    meta = training.train(cfg, C.run_spec(cfg, "synthetic", "aalp", 0), tmp_path / "amp")
    assert meta["training"]["amp"] is True and meta["steps"] == 8


def test_checkpoint_of_another_model_is_refused(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["experiments"]["synthetic"]["epochs"] = 1
    training.train(cfg, C.run_spec(cfg, "synthetic", "raw", 0), tmp_path / "r")
    with pytest.raises(ValueError, match="holds a 'lenet_small' model, expected 'lenet'"):
        training.load_model(tmp_path / "r" / "model.pt", expect_model="lenet")
    with pytest.raises(ValueError, match="trained on inputs"):
        training.load_model(tmp_path / "r" / "model.pt", expect_shape=(3, 32, 32))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        training.load_model(bad)


@pytest.mark.parametrize("override", [{"mixed_batch": False}, {"attack_mode": "train"}])
def test_choice_parameters_train(tiny, tmp_path, override):
    cfg = copy.deepcopy(tiny)
    cfg["experiments"]["synthetic"]["epochs"] = 1
    cfg["methods"]["aalp"].update(override)
    spec = C.run_spec(cfg, "synthetic", "aalp", 0)
    assert all(getattr(spec, k) == v for k, v in override.items())
    meta = training.train(cfg, spec, tmp_path / "choice")
    assert meta["steps"] == 8 and meta["spec"] == {**meta["spec"], **override}


def test_crop_at_worked_by_hand():
    x = (torch.arange(16.0) + 1).reshape(1, 1, 4, 4)  # rows 1-4, 5-8, 9-12, 13-16
    t = torch.tensor
    assert torch.equal(training.crop_at(x, t([4]), t([4])), x)  # offset (pad, pad): the original
    assert torch.equal(training.crop_at(x, t([0]), t([0])), torch.zeros_like(x))  # all padding
    want = t([[0.0, 0, 0, 0], [2, 3, 4, 0], [6, 7, 8, 0], [10, 11, 12, 0]])  # one row up, one column left
    assert torch.equal(training.crop_at(x, t([3]), t([5]))[0, 0], want)


def _matches(out, src, flip_allowed):
    """Offsets (and flip) that turn src (1 x C x H x W) into out, if any."""
    found = []
    for oy in range(9):
        for ox in range(9):
            c = training.crop_at(src, torch.tensor([oy]), torch.tensor([ox]))
            for flip in (False, True) if flip_allowed else (False,):
                if torch.equal(c.flip(3) if flip else c, out):
                    found.append((oy, ox, flip))
    return found


@pytest.mark.parametrize("kind", ["crop", "crop_flip"])
def test_augmented_batch_keeps_shape_range_and_labels(kind):
    d = data.make_synthetic((3, 32, 32), 48, 10, seed=3)
    x = data.to_float(torch.from_numpy(d[0]))
    out = training.augment(x, kind, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype and 0 <= out.min() and out.max() <= 1
    moves = []
    for i in range(len(x)):  # sample i comes from input i (labels stay aligned), shifted by <= 4 px
        m = _matches(out[i:i + 1], x[i:i + 1], kind == "crop_flip")
        assert m, f"output {i} is not a crop{'/flip' if kind == 'crop_flip' else ''} of input {i}"
        moves.append(m[0])
    assert len({(oy, ox) for oy, ox, _ in moves}) > 10  # random offsets, not one fixed shift
    flips = {f for _, _, f in moves}
    assert flips == ({False, True} if kind == "crop_flip" else {False})
    again = training.augment(x, kind, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)  # seeded
    assert training.augment(x, "none", torch.Generator()) is x


def test_augment_parameter_reaches_the_training_step(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["experiments"]["synthetic"]["epochs"] = 1
    cfg["training"]["device"] = "cpu"
    weights = {}
    for aug in ("none", "crop"):
        cfg["experiments"]["synthetic"]["augment"] = aug
        spec = C.run_spec(cfg, "synthetic", "raw", 0)
        assert spec.augment == aug
        training.train(cfg, spec, tmp_path / aug)
        weights[aug] = _weights(tmp_path / aug / "model.pt")
    assert any(not torch.equal(weights["none"][k], weights["crop"][k]) for k in weights["none"])


def _steps(cfg, method, n, **speed):
    """Weights after n training steps on fixed batches, with the given speed options (and the Trainer; its
    per-step losses as tr.losses)."""
    spec = C.run_spec(cfg, "synthetic", method, 0)
    d = data.load_prepared(cfg["data"]["dir"], "synthetic")
    torch.manual_seed(0)
    from aalp.core import models

    model = models.build(spec.model, d.shape, d.manifest["mean"], d.manifest["std"])
    tr = training.Trainer(spec, model, torch.device("cpu"), **{**training.speed_options(cfg["training"]), **speed})
    x = data.to_float(torch.from_numpy(d.train_x[:64]))
    y = torch.from_numpy(d.train_y[:64])
    tr.losses = [tr.step(x[32 * (i % 2):32 * (i % 2 + 1)], y[32 * (i % 2):32 * (i % 2 + 1)])["loss"] for i in range(n)]
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, tr


def test_speed_options_are_off_by_default_and_fused_adam_lands_on_the_plain_weights(tiny):
    plain, tr = _steps(tiny, "adv", 4)
    assert tr.opt.defaults["fused"] is None and getattr(tr.model.body, "_compiled_call_impl", None) is None
    again, _ = _steps(tiny, "adv", 4)
    assert all(torch.equal(plain[k], again[k]) for k in plain)  # the plain path is bit-identical run to run
    fused, tr = _steps(tiny, "adv", 4, fused_adam=True)
    assert tr.opt.defaults["fused"] is True
    moved = max((plain[k].float() - _steps(tiny, "adv", 0)[0][k].float()).abs().max().item() for k in plain)
    gap = max((plain[k].float() - fused[k].float()).abs().max().item() for k in plain)
    assert moved > 1e-3 and gap < 1e-5  # the steps move the weights; fused and plain agree to rounding


def test_compiled_body_trains_to_the_plain_weights(tiny):
    """training.compile: torch.compile of the body (inductor on CPU; with CUDA graphs on a GPU)."""
    plain, _ = _steps(tiny, "aalp", 2)
    compiled, tr = _steps(tiny, "aalp", 2, compile="default")
    assert tr.model.body._compiled_call_impl is not None
    assert set(compiled) == set(plain)  # the checkpoint format is unchanged
    assert all(torch.allclose(plain[k], compiled[k], atol=1e-5) for k in plain)


def test_drop_last_keeps_every_step_the_same_shape(tiny, tmp_path):
    cfg = copy.deepcopy(tiny)
    cfg["datasets"]["synthetic"]["n_train"] = 250  # 7 full batches of 32 and one of 26
    data.prepare(cfg, "synthetic")
    shapes = []
    real_step = training.Trainer.step

    def step(self, x, y):
        shapes.append(len(x))
        return real_step(self, x, y)

    spec = C.run_spec(cfg, "synthetic", "raw", 0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training.Trainer, "step", step)
        training.train(cfg, spec, tmp_path / "all")
        assert shapes == ([32] * 7 + [26]) * 2
        shapes.clear()
        cfg["training"]["drop_last"] = True
        meta = training.train(cfg, spec, tmp_path / "dropped")
    assert shapes == [32] * 14 and meta["steps"] == 14


def _losses_and_weights(cfg, method, n, **speed):
    """Losses of n training steps on fixed batches and the weights after them (_steps)."""
    weights, tr = _steps(cfg, method, n, **speed)
    return torch.stack(tr.losses), weights


@pytest.mark.parametrize("method", ["adv", "trades"])
def test_bf16_weights_cast_once_per_attack_leave_the_step_bit_identical(tiny, monkeypatch, method):
    """amp + channels_last: the training step with the attack's weights cast to bf16 once per attack equals
    the step with autocast's cast in every iteration, bit for bit (losses and weights)."""
    from aalp.core import attacks

    once = _losses_and_weights(tiny, method, 2, amp=True, channels_last=True)
    monkeypatch.setattr(attacks, "PRECAST_BF16", False)
    every = _losses_and_weights(tiny, method, 2, amp=True, channels_last=True)
    assert torch.equal(once[0], every[0])
    assert all(torch.equal(once[1][k], every[1][k]) for k in once[1])


@pytest.mark.parametrize("speed", [{}, {"channels_last": True, "fused_adam": True}])
def test_cpu_kernels_leave_the_step_within_float32_rounding(tiny, monkeypatch, speed):
    """The fold input gradient of LeNet's first layer sums in another order than PyTorch's convolution
    backward (float32 rounding); the channels_last Flatten is bit-identical. Over 3 ADV and AALP steps
    (PGD-3 each) the losses agree to 1e-5 relative and the weights to 1e-5 absolute."""
    from aalp.core import models

    for method in ("adv", "aalp"):
        new = _losses_and_weights(tiny, method, 3, **speed)
        with monkeypatch.context() as m:
            m.setattr(models, "FOLD_INPUT_GRAD", False)
            m.setattr(models, "KEEP_CHANNELS_LAST", False)
            old = _losses_and_weights(tiny, method, 3, **speed)
        assert torch.allclose(new[0], old[0], rtol=1e-5, atol=0)
        assert all(torch.allclose(new[1][k], old[1][k], rtol=0, atol=1e-5) for k in new[1])


@pytest.fixture
def rgb_cfg(ci_params):
    """The CI profile's 3x32x32 set (resnet9_small, which has batch norm) with every attack-using objective."""
    p = copy.deepcopy(ci_params)
    p["experiments"]["synthetic_rgb"]["methods"] = ["raw", "adv", "alp", "trades"]
    return C.validate(p)


@pytest.mark.parametrize("method", ["adv", "alp", "trades"])
def test_default_training_attack_on_batch_norm_is_the_eval_mode_attack(rgb_cfg, method):
    """attack_mode's default (eval) on a batch-norm model: crafting the batch leaves every running statistic
    (running_mean, running_var, num_batches_tracked) as it was and the model's mode too (train or eval), and
    gives bit for bit the adversarial batch of an eval-mode pgd from the same generator seed. On LeNet
    (no batch norm) the two modes agree, so only a batch-norm model can tell them apart: the check below
    shows that a train-mode attack from the same seed moves the statistics and gives another batch."""
    from aalp.core import attacks, models

    spec = C.run_spec(rgb_cfg, "synthetic_rgb", method, 0)
    assert spec.model == "resnet9_small" and spec.attack_mode == "eval"
    torch.manual_seed(0)
    model = models.build(spec.model, (3, 32, 32), [0.5] * 3, [0.25] * 3)
    tr = training.Trainer(spec, model, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)
    stats = {k: v.clone() for k, v in model.named_buffers() if k.rsplit(".", 1)[-1] in
             ("running_mean", "running_var", "num_batches_tracked")}
    assert len(stats) == 3 * sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) > 0

    def unchanged():
        now = dict(model.named_buffers())
        return [k for k in stats if not torch.equal(stats[k], now[k])]

    model.train()  # as in training: the previous step left the model in train mode
    xb, n_clean = tr.batch(x, y)
    assert n_clean == (0 if method == "adv" else 4) and torch.equal(xb[:n_clean], x[:n_clean])
    assert unchanged() == []
    assert all(m.training for m in model.modules())  # the attack put train mode back, in every module

    a = spec.attack
    kw = dict(eps=a.eps, step=a.step, steps=a.steps, random_start=a.random_start,
              loss="kl" if method == "trades" else "ce")
    with attacks.eval_mode(model):
        ref = attacks.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(spec.seed), train_mode=False)
    assert torch.equal(xb[n_clean:], ref)
    assert not torch.equal(ref, x)

    model.eval()  # and a model in eval mode stays there
    tr.batch(x, y)
    assert not any(m.training for m in model.modules()) and unchanged() == []

    # the check can fail: a train-mode attack (attack_mode: train) moves the statistics and crafts another batch
    model.train()
    in_train = attacks.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(spec.seed), train_mode=True)
    assert not torch.equal(in_train, ref)
    assert len(unchanged()) == len(stats)
