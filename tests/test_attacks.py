import pytest
import torch

from aalp import attacks, models


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
