import math

import pytest
import torch

from aalp.core import attacks, models


@pytest.fixture
def model():
    torch.manual_seed(0)
    return models.build("lenet_small", (1, 28, 28), [0.5], [0.25])


@pytest.mark.parametrize("loss", ["ce", "cw", "kl"])
def test_pgd_stays_in_ball_and_image_range(model, loss):
    x = torch.rand(8, 1, 28, 28)
    y = torch.randint(0, 10, (8,))
    g = torch.Generator().manual_seed(0)
    xa = attacks.pgd(model, x, y, eps=0.1, step=0.03, steps=5, loss=loss, generator=g)
    assert (xa - x).abs().max() <= 0.1 + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1
    assert not xa.requires_grad


def test_attack_leaves_weights_without_gradients_and_restores_mode(model):
    model.train()
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    attacks.pgd(model, x, y, eps=0.1, step=0.03, steps=3)
    assert all(p.grad is None for p in model.parameters())
    assert model.training


def test_pgd_increases_the_loss(model):
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    model.eval()
    clean = torch.nn.functional.cross_entropy(model(x), y)
    xa = attacks.pgd(model, x, y, eps=0.1, step=0.02, steps=10, generator=torch.Generator().manual_seed(1))
    assert torch.nn.functional.cross_entropy(model(xa), y) > clean


def test_fgsm_is_one_full_step(model):
    x, y = torch.rand(4, 1, 28, 28) * 0.5 + 0.25, torch.randint(0, 10, (4,))
    xa = attacks.fgsm(model, x, y, eps=0.1)
    moved = (xa - x).abs()
    assert moved.max() <= 0.1 + 1e-6
    assert ((moved - 0.1).abs() < 1e-6).float().mean() > 0.9  # every pixel with a gradient moves by eps


def test_seeded_attacks_are_reproducible(model):
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    a = attacks.pgd(model, x, y, eps=0.1, step=0.03, steps=2, generator=torch.Generator().manual_seed(3))
    b = attacks.pgd(model, x, y, eps=0.1, step=0.03, steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("name, kind, steps", [("fgsm", "fgsm", 1), ("pgd20", "pgd", 20), ("cw100", "cw", 100),
                                               ("autoattack", "autoattack", 0)])
def test_eval_attack_names(name, kind, steps):
    a = attacks.EvalAttack.parse(name)
    assert (a.kind, a.steps) == (kind, steps)


@pytest.mark.parametrize("bad", ["pgd", "cw", "fgsm3", "bim10"])
def test_bad_eval_attack_names(bad):
    with pytest.raises(ValueError):
        attacks.EvalAttack.parse(bad)


def test_amp_runs_on_cpu(model):
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    xa = attacks.pgd(model, x, y, eps=0.1, step=0.03, steps=2, amp=True)
    assert xa.dtype == torch.float32 and (xa - x).abs().max() <= 0.1 + 1e-6


@pytest.fixture(scope="module")
def trained():
    """A small model trained for a few steps on synthetic data, so that attacks leave mid-range accuracy."""
    from aalp.core import data

    tx, ty, vx, vy = data.make_synthetic((1, 28, 28), 2000, 1000, seed=5)
    torch.manual_seed(0)
    m = models.build("lenet_small", (1, 28, 28), [0.4], [0.3])
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    x, y = torch.from_numpy(tx).float() / 255, torch.from_numpy(ty)
    for epoch in range(3):
        for i in range(0, 2000, 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return m.eval(), torch.from_numpy(vx).float() / 255, torch.from_numpy(vy)


def test_our_pgd_agrees_with_torchattacks(trained):
    import torchattacks

    model, x, y = trained
    kw = dict(eps=0.03, step=0.01, steps=10)
    torch.manual_seed(0)
    theirs = torchattacks.PGD(model, eps=kw["eps"], alpha=kw["step"], steps=kw["steps"], random_start=True)(x, y)
    ours = attacks.pgd(model, x, y, **kw, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = 100 * (model(x).argmax(1) == y).float().mean().item()
        a_ours = 100 * (model(ours).argmax(1) == y).float().mean().item()
        a_theirs = 100 * (model(theirs).argmax(1) == y).float().mean().item()
    assert 15 < a_ours < clean - 10  # the attack bites but does not saturate, so the comparison means something
    assert abs(a_ours - a_theirs) <= 1.0, (a_ours, a_theirs)


def test_autoattack_is_at_least_as_strong_as_pgd(trained):
    model, x, y = trained
    x, y = x[:100], y[:100]
    adv = attacks.autoattack(model, x, y, eps=0.03, steps=20, queries=200)
    pgd_adv = attacks.pgd(model, x, y, eps=0.03, step=0.01, steps=20, generator=torch.Generator().manual_seed(0))
    assert (adv - x).abs().max() <= 0.03 + 1e-6
    with torch.no_grad():
        acc_aa = (model(adv).argmax(1) == y).float().mean().item()
        acc_pgd = (model(pgd_adv).argmax(1) == y).float().mean().item()
    assert acc_aa <= acc_pgd + 0.02


def test_autoattack_matches_torchattacks_multiattack_and_records_the_component(trained):
    """Our loop over the components gives MultiAttack's adversarial inputs bit for bit, and names per
    sample the component that flipped it ('clean': misclassified clean, '': robust)."""
    import torchattacks as ta

    model, x, y = trained
    x, y = x[:40], y[:40]
    common = dict(norm="Linf", eps=0.03, seed=7)
    ref = ta.MultiAttack([ta.APGD(model, steps=3, n_restarts=1, loss="ce", **common),
                          ta.APGDT(model, steps=3, n_restarts=1, n_classes=10, **common),
                          ta.FAB(model, steps=3, n_restarts=1, multi_targeted=True, n_classes=10, **common),
                          ta.Square(model, n_queries=20, n_restarts=1, **common)])(x, y)
    adv, by = attacks.autoattack(model, x, y, eps=0.03, seed=7, steps=3, queries=20, return_by=True)
    assert torch.equal(adv, ref)
    assert torch.equal(attacks.autoattack(model, x, y, eps=0.03, seed=7, steps=3, queries=20), ref)
    with torch.no_grad():
        clean_ok, adv_ok = model(x).argmax(1) == y, model(adv).argmax(1) == y
    assert [b == "clean" for b in by] == (~clean_ok).tolist()
    assert [b == "" for b in by] == (clean_ok & adv_ok).tolist()
    assert set(by) <= {"", "clean", *attacks.AUTOATTACK_COMPONENTS} and len(set(by) - {"", "clean"}) >= 1

@pytest.mark.parametrize("loss, amp", [("ce", False), ("cw", False), ("ce", True)])
def test_one_trajectory_gives_every_pgd_k(trained, loss, amp):
    """The shared run's iterate after k steps is exactly a separate k-step PGD from the same start."""
    model, x, y = trained
    x, y = x[:64], y[:64]
    kw = dict(eps=0.03, step=0.01, loss=loss, amp=amp)
    shared = attacks.pgd_prefixes(model, x, y, checkpoints=(5, 2, 3), generator=torch.Generator().manual_seed(7), **kw)
    assert sorted(shared) == [2, 3, 5]
    for k in (2, 3, 5):
        alone = attacks.pgd(model, x, y, steps=k, generator=torch.Generator().manual_seed(7), **kw)
        assert torch.equal(shared[k], alone), k
        with torch.no_grad():
            assert torch.equal(model(shared[k]).argmax(1), model(alone).argmax(1))
    # the check can fail: the iterates differ along the trajectory and from another start
    assert not torch.equal(shared[3], shared[5])
    other = attacks.pgd(model, x, y, steps=3, generator=torch.Generator().manual_seed(8), **kw)
    assert not torch.equal(shared[3], other)


def test_run_shared_matches_each_members_own_run(trained):
    model, x, y = trained
    x, y = x[:32], y[:32]
    for kind in ("pgd", "cw"):
        members = [attacks.EvalAttack.parse(f"{kind}{k}") for k in (2, 3, 5)]
        shared = attacks.run_shared(members, model, x, y, eps=0.03, step=0.01, kappa=20.0,
                                    generator=torch.Generator().manual_seed(1))
        assert list(shared) == [a.name for a in members]
        for a in members:
            alone = a.run(model, x, y, eps=0.03, step=0.01, kappa=20.0, generator=torch.Generator().manual_seed(1))
            assert torch.equal(shared[a.name], alone), a.name
    with pytest.raises(ValueError):
        attacks.run_shared([attacks.EvalAttack.parse("pgd2"), attacks.EvalAttack.parse("cw2")], model, x, y,
                           eps=0.03, step=0.01)


def test_attack_groups():
    parsed = [attacks.EvalAttack.parse(a) for a in ["fgsm", "pgd10", "cw10", "pgd20", "autoattack", "cw40"]]
    groups = attacks.attack_groups(parsed)
    assert {g: [a.name for a in ms] for g, ms in groups.items()} == {
        "fgsm": ["fgsm"], "pgd": ["pgd10", "pgd20"], "cw": ["cw10", "cw40"], "autoattack": ["autoattack"]}


def test_attack_groups_split_by_step():
    """With `reach` on MNIST (config.eval_step: k 10 -> 0.075, 20 -> 0.0375, else 0.01) PGD-10 and PGD-20 run alone
    and PGD-40, PGD-100 share the trajectory at the dataset's step; the same for CW; FGSM and AutoAttack as before."""
    steps = {10: 0.075, 20: 0.0375, 40: 0.01, 100: 0.01}
    names = ["fgsm", "pgd10", "pgd20", "pgd40", "pgd100", "cw10", "cw20", "cw40", "cw100", "autoattack"]
    parsed = attacks.with_steps(names, steps.__getitem__, 0.01)
    assert [(a.name, a.step) for a in parsed if a.kind == "pgd"] == [("pgd10", 0.075), ("pgd20", 0.0375),
                                                                     ("pgd40", None), ("pgd100", None)]
    groups = {g: [a.name for a in ms] for g, ms in attacks.attack_groups(parsed).items()}
    assert groups == {"fgsm": ["fgsm"], "pgd@0.075": ["pgd10"], "pgd@0.0375": ["pgd20"], "pgd": ["pgd40", "pgd100"],
                      "cw@0.075": ["cw10"], "cw@0.0375": ["cw20"], "cw": ["cw40", "cw100"], "autoattack": ["autoattack"]}
    # one step for every k (`fixed`): the groups of before
    fixed = attacks.attack_groups(attacks.with_steps(names, lambda k: 0.01, 0.01))
    assert {g: [a.name for a in ms] for g, ms in fixed.items()} == {
        "fgsm": ["fgsm"], "pgd": ["pgd10", "pgd20", "pgd40", "pgd100"], "cw": ["cw10", "cw20", "cw40", "cw100"],
        "autoattack": ["autoattack"]}


def test_an_attacks_own_step_is_the_step_it_runs_at(trained):
    """EvalAttack.run and run_shared take a member's own step over the one they are given; run_shared refuses
    members of different steps."""
    model, x, y = trained
    x, y = x[:16], y[:16]
    own = attacks.EvalAttack.parse("pgd3", 0.02)
    kw = dict(eps=0.05, kappa=20.0)
    ran = own.run(model, x, y, step=0.005, generator=torch.Generator().manual_seed(2), **kw)
    ref = attacks.pgd(model, x, y, eps=0.05, step=0.02, steps=3, generator=torch.Generator().manual_seed(2))
    other = attacks.pgd(model, x, y, eps=0.05, step=0.005, steps=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ran, ref) and not torch.equal(ran, other)
    shared = attacks.run_shared([attacks.EvalAttack.parse("pgd2", 0.02), own], model, x, y, step=0.005,
                                generator=torch.Generator().manual_seed(2), **kw)
    assert torch.equal(shared["pgd3"], ref)
    with pytest.raises(ValueError, match="one step"):
        attacks.run_shared([attacks.EvalAttack.parse("pgd2"), own], model, x, y, step=0.005, **kw)


def test_pgd_prefixes_start_and_bad_checkpoints(model):
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    out = attacks.pgd_prefixes(model, x, y, eps=0.1, step=0.03, checkpoints=[0, 1],
                               generator=torch.Generator().manual_seed(0))
    start = (x + (torch.rand(x.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1) * 0.1).clamp(0, 1)
    assert torch.equal(out[0], start) and not torch.equal(out[1], start)
    for bad in ([], [-1, 3]):
        with pytest.raises(ValueError):
            attacks.pgd_prefixes(model, x, y, eps=0.1, step=0.03, checkpoints=bad)


@pytest.mark.parametrize("loss", ["ce", "cw", "kl"])
@pytest.mark.parametrize("train_mode", [False, True])
def test_bf16_weights_cast_once_per_attack_is_bit_identical(model, loss, train_mode):
    """With amp the attack casts the weights to bf16 once (attacks.bf16_weights) instead of autocast
    casting them in every iteration: the same bf16 values reach the same kernels, so the adversarial
    examples are bit-identical; afterwards the model holds its own float32 parameters again."""
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    params = list(model.parameters())
    seen = []
    hook = model.classifier.register_forward_pre_hook(lambda mod, inp: seen.append(mod.weight.dtype))

    def run(precast):
        old = attacks.PRECAST_BF16
        attacks.PRECAST_BF16 = precast
        try:
            return attacks.pgd(model, x, y, eps=0.3, step=0.05, steps=3, loss=loss, amp=True, train_mode=train_mode,
                               generator=torch.Generator().manual_seed(1))
        finally:
            attacks.PRECAST_BF16 = old

    once = run(True)
    assert set(seen) == {torch.bfloat16}  # the layer held its bf16 copy in every iteration
    seen.clear()
    every = run(False)
    assert set(seen) == {torch.float32}
    hook.remove()
    assert torch.equal(once, every)
    assert all(a is b for a, b in zip(model.parameters(), params))  # the same parameter objects, float32, trainable again
    assert all(p.dtype == torch.float32 and p.requires_grad for p in params)


# ----------------------------------------------------------------------------- TRADES' KL attack: its direction
def test_kl_attack_objective_is_kl_of_clean_against_adversarial_by_hand():
    """The KL attack maximises sum_i KL(p_clean,i || softmax f(x'_i)), not KL(p_adv || p_clean).

    Both samples have p_clean = (1/2, 1/2); the adversarial logits (0, ln 4) and (ln 4, 0) give q = (1/5, 4/5)
    and (4/5, 1/5). Each sample: KL(p || q) = 1/2 ln(5/2) + 1/2 ln(5/8) = ln(5/4) = 0.22314, so the sum is
    2 ln(5/4) = 0.44629; the reverse KL(q || p) = 1/5 ln(2/5) + 4/5 ln(8/5) = 0.19274 each, 0.38549 in all."""
    clean_probs = torch.full((2, 2), 0.5)
    logits_adv = torch.tensor([[0.0, math.log(4)], [math.log(4), 0.0]])
    y = torch.tensor([0, 1])  # the KL attack ignores the labels
    obj = attacks._objective("kl", logits_adv, y, 50.0, clean_probs)
    assert obj.item() == pytest.approx(2 * math.log(5 / 4), rel=1e-6)
    reverse = 2 * (0.2 * math.log(0.4) + 0.8 * math.log(1.6))
    assert abs(obj.item() - reverse) > 0.05  # the two directions are far apart on these logits


class _FixedCleanLinear(torch.nn.Module):
    """Logits 4 * x over 3 pixels (3 classes) for the attack's iterates; its first call, which is pgd's clean
    forward pass (the KL attack computes the clean probabilities before its first step), returns fixed
    clean logits, so that p_clean is not close to q at the start (x + 0.001 N(0, 1)), where both KL
    directions have the same gradient to first order."""

    def __init__(self, clean_logits: torch.Tensor):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(4.0))  # a weight for the attack to freeze
        self.clean = clean_logits
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            return self.clean.expand(len(x), -1)
        return self.scale * x.flatten(1)


def test_kl_attack_steps_up_the_gradient_of_kl_clean_against_adversarial():
    """One KL-attack step moves each pixel by sign(d KL(p || q) / dx') = sign(4 (q - p)).

    p = softmax(ln 3, 0, 0) = (0.6, 0.2, 0.2); x = (0.2, 0.2 + ln(6)/4, 0.2 + ln(3)/4), so 4x = (0, ln 6, ln 3) + 0.8
    and q = (0.1, 0.6, 0.3). d KL(p || q) / dz = q - p = (-0.5, 0.4, 0.1): signs (-, +, +).
    The reverse direction: d KL(q || p) / dz_k = q_k (ln(q_k / p_k) - KL(q || p)), with
    KL(q || p) = 0.1 ln(1/6) + 0.6 ln 3 + 0.3 ln 1.5 = 0.6016: pixel 3 gets 0.3 (ln 1.5 - 0.6016) = -0.059,
    signs (-, +, -).
    The random start (0.001 N(0, 1)) moves 4x by about 0.004, q by well under 1%: far less than these margins."""
    model = _FixedCleanLinear(torch.tensor([[math.log(3), 0.0, 0.0]]))
    x = torch.tensor([0.2, 0.2 + math.log(6) / 4, 0.2 + math.log(3) / 4]).view(1, 3, 1, 1)
    q = torch.softmax(4 * x.flatten(1), 1)
    assert q.flatten().tolist() == pytest.approx([0.1, 0.6, 0.3])
    xa = attacks.pgd(model, x, torch.tensor([0]), eps=0.1, step=0.05, steps=1, loss="kl",
                     generator=torch.Generator().manual_seed(0))
    assert model.calls == 2  # the clean pass, then one step
    moved = (xa - x).flatten()
    assert torch.sign(moved).tolist() == [-1.0, 1.0, 1.0]  # KL(adv || clean) would give [-1, 1, -1]
    assert ((moved.abs() - 0.05).abs() < 0.005).all()  # a full step from the start, each pixel
