"""Each formula against values worked out by hand on tiny tensors."""
import math

import pytest
import torch

from aalp.core import losses
from aalp.core.attacks import cw_margin

LN2, LN3 = math.log(2), math.log(3)


def test_alp_pairing_mean_and_sum():
    lc, la = torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 0.0, 3.0]])
    assert losses.alp_pairing(lc, la).item() == pytest.approx(4 / 3)
    assert losses.alp_pairing(lc, la, "sum").item() == pytest.approx(4.0)


def test_adaptive_weight_is_clean_true_class_probability_and_detached():
    lc = torch.tensor([[0.0, LN3], [0.0, 0.0]], requires_grad=True)
    w = losses.adaptive_weights(lc, torch.tensor([1, 0]))
    assert w.tolist() == pytest.approx([0.75, 0.5])
    assert not w.requires_grad


def test_adaptive_weight_passes_no_gradient():
    """d/dlc of w * mean_k (lc - la)^2 must be w * 2 (lc - la) / K with w held constant."""
    lc = torch.tensor([[0.0, LN3]], requires_grad=True)
    la = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([1])
    loss, _ = losses.objective("alp", torch.cat([lc, la]), y, 1, lam=1.0, adaptive=True)
    pair_part = loss - 0.5 * (losses.ce(lc, y) + losses.ce(la, y))
    (g,) = torch.autograd.grad(pair_part, lc)
    expected = 0.75 * 2 * (lc.detach() - la) / 2
    assert torch.allclose(g, expected)


def test_trades_kl():
    lc, la = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, LN3]])
    assert losses.trades_kl(lc, la).item() == pytest.approx(0.5 * math.log(4 / 3))


def test_alp_objective_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, LN3]])  # clean then adversarial
    y = torch.tensor([0])
    loss, terms = losses.objective("alp", logits, y, 1, lam=0.5)
    cls = 0.5 * (LN2 + math.log(4))
    assert terms["cls"].item() == pytest.approx(cls)
    assert terms["pair"].item() == pytest.approx(LN3 ** 2 / 2)
    assert loss.item() == pytest.approx(cls + 0.5 * LN3 ** 2 / 2)
    loss_aw, _ = losses.objective("alp", logits, y, 1, lam=0.5, adaptive=True)
    assert loss_aw.item() == pytest.approx(cls + 0.5 * 0.5 * LN3 ** 2 / 2)  # w = p(y|x) = 0.5


def test_trades_objective_by_hand():
    logits = torch.tensor([[0.0, 0.0], [0.0, LN3]])
    loss, _ = losses.objective("trades", logits, torch.tensor([0]), 1, beta=6.0)
    assert loss.item() == pytest.approx(LN2 + 6.0 * 0.5 * math.log(4 / 3))


def test_raw_and_adv_objective_are_cross_entropy():
    logits = torch.tensor([[0.0, LN3]])
    for kind in ("raw", "adv"):
        loss, _ = losses.objective(kind, logits, torch.tensor([1]), 1)
        assert loss.item() == pytest.approx(-math.log(0.75))


def test_contributions():
    h = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
    g = torch.tensor([[2.0, 1.0], [-1.0, 5.0]])
    assert losses.contributions(h, g).tolist() == pytest.approx([2.5, 1.0])


@pytest.mark.parametrize("c, mask", [
    ([4.0, 1.0, 3.0, 2.0], [1, 0, 1, 0]),      # even D: upper half kept
    ([5.0, 1.0, 3.0], [1, 0, 0]),              # odd D: the median itself is dropped
    ([1.0, 2.0, 2.0, 2.0, 3.0], [0, 0, 0, 0, 1]),  # ties at the median are dropped
    ([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 1]),      # nothing above the median: keep all
    ([7.0], [1]),                               # D = 1
])
def test_guided_dropout_mask(c, mask):
    assert losses.guided_dropout_mask(torch.tensor(c)).tolist() == mask


def test_guided_dropout_mask_rescale():
    assert losses.guided_dropout_mask(torch.tensor([4.0, 1.0, 3.0, 2.0]), rescale=True).tolist() == [2, 0, 2, 0]


def test_guided_dropout_batch_of_one():
    h = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    g = torch.tensor([[4.0, 0.1, 1.0, -1.0]])  # contributions 4, 0.2, 3, 4 -> median 3 -> keep 0 and 3
    assert losses.guided_dropout_mask(losses.contributions(h, g)).tolist() == [1, 0, 0, 1]


def test_cw_margin():
    logits = torch.tensor([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    assert cw_margin(logits, torch.tensor([1, 0])).tolist() == [-53.0, -46.0]
    assert cw_margin(logits, torch.tensor([0]).repeat(2), kappa=0.0).tolist() == [0.0, 0.0]


def test_classification_loss_of_mixed_batch_is_half_sum():
    logits = torch.tensor([[0.0, 0.0], [0.0, LN3]])
    y = torch.tensor([0])
    assert losses.classification_loss("alp", logits, y, 1).item() == pytest.approx(0.5 * (LN2 + math.log(4)))
    assert losses.classification_loss("alp", logits, y, 1, clean_only=True).item() == pytest.approx(LN2)
