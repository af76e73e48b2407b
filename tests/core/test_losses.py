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


def test_adaptive_trades_objective_weights_by_clean_confidence_by_hand():
    """TRADES with adaptive weighting: w_i = p(y_i | x_i) on the clean logits multiplies each sample's KL before
    the mean over B; the CE term is not weighted (docs/method.md#adaptive-weighting). 2 samples, 3 classes, y = 0:

    sample 1: clean (0, 0, 0): p = (1/3, 1/3, 1/3), w = 1/3; adversarial (0, ln 4, 0): q = (1/6, 4/6, 1/6);
              KL(p || q) = 1/3 (ln 2 + ln 1/2 + ln 2) = ln(2) / 3; CE = ln 3.
    sample 2: clean (ln 2, 0, 0): p = (1/2, 1/4, 1/4), w = 1/2; adversarial (0, 0, 0): q = (1/3, 1/3, 1/3);
              KL(p || q) = 1/2 ln(3/2) + 1/2 ln(3/4) = ln(9/8) / 2; CE = ln 2.
    cls = (ln 3 + ln 2) / 2 = ln(6) / 2 = 0.895880
    reg = (1/3 * ln(2)/3 + 1/2 * ln(9/8)/2) / 2 = ln(2)/18 + ln(9/8)/8 = 0.038508 + 0.014723 = 0.053231
    loss = cls + 6 reg = 1.215266.
    Weights from the adversarial logits (1/6 and 1/3) would give reg = 0.029069, loss 1.070296; no weights
    reg = 0.144970, loss 1.765701; dividing by sum(w) instead of B, reg = 0.127755."""
    logits = torch.tensor([[0.0, 0.0, 0.0], [LN2, 0.0, 0.0],                 # clean
                           [0.0, math.log(4), 0.0], [0.0, 0.0, 0.0]])       # adversarial
    y = torch.tensor([0, 0])
    reg = math.log(2) / 18 + math.log(9 / 8) / 8
    loss, terms = losses.objective("trades", logits, y, 2, beta=6.0, adaptive=True)
    assert terms["cls"].item() == pytest.approx(math.log(6) / 2, rel=1e-6)
    assert terms["pair"].item() == pytest.approx(reg, rel=1e-6)
    assert loss.item() == pytest.approx(math.log(6) / 2 + 6 * reg, rel=1e-6)
    assert loss.item() == pytest.approx(1.215266, abs=1e-6)
    plain, _ = losses.objective("trades", logits, y, 2, beta=6.0)  # the flag reaches the TRADES branch
    assert plain.item() == pytest.approx(math.log(6) / 2 + 6 * (math.log(2) / 6 + math.log(9 / 8) / 4), rel=1e-6)


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
