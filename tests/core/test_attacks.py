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
