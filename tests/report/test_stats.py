"""Seed statistics against values worked out by hand (t quantiles from tables)."""
import math

import pytest

from aalp.report import stats as S


def test_t_interval_three_seeds():
    # [1, 2, 3]: mean 2, sd 1, t(0.975, 2) = 4.3027, half = 4.3027 / sqrt(3) = 2.4841
    iv = S.t_interval([1.0, 2.0, 3.0])
    assert (iv.mean, iv.n) == (2.0, 3)
    assert iv.half == pytest.approx(2.48414, abs=1e-4)
    assert iv.text() == "2 ± 2.5 (3 seeds)"
    assert iv.sd == pytest.approx(1.0)


def test_t_interval_two_seeds():
    # [0.5, 0.7]: mean 0.6, sd 0.14142, t(0.975, 1) = 12.706, half = 12.706 * 0.14142 / sqrt(2) = 1.2706
    iv = S.t_interval([0.5, 0.7])
    assert iv.mean == pytest.approx(0.6) and iv.half == pytest.approx(1.27062, abs=1e-4)


def test_one_seed_has_no_interval_and_no_verdict():
    iv = S.t_interval([0.8, float("nan")])
    assert iv.n == 1 and math.isnan(iv.half)
    assert iv.text() == "0.8 (1 seed, no interval)"
    assert S.verdict(iv, +1) == S.INCONCLUSIVE
    assert S.t_interval([]).text() == "no runs"


def test_seeds_that_agree_exactly_give_no_interval_and_no_verdict():
    """The published MNIST set's AutoAttack AALP - ALP: seed 0 37.2 - 38.6, seed 1 43.4 - 44.8, both -1.4
    (7 of 500 samples). A zero spread (also when unequal in the last bits of a float) is no interval: inconclusive,
    no MDE, not 'does not hold' from a point; a spread of one sample (0.2 points) is an interval again."""
    iv = S.t_interval(S.paired({0: 37.2, 1: 43.4}, {0: 38.6, 1: 44.8}))
    assert iv.n == 2 and iv.half == 0 and iv.sd == 0
    assert S.verdict(iv, +1) == S.INCONCLUSIVE and S.verdict(iv, -1) == S.INCONCLUSIVE
    assert iv.text() == "-1.4 (2 seeds, all equal: no interval)"
    assert math.isnan(S.mde(iv.sd, iv.n))
    noisy = S.t_interval([-1.4, -1.4 + 4e-15])  # equal but for the last bits: still no interval
    assert noisy.half == 0 and S.verdict(noisy, -1) == S.INCONCLUSIVE
    # -1.4 and -1.6: sd 0.1414, half 12.706 * 0.1414 / sqrt(2) = 1.2706: [-2.77, -0.23], below 0
    spread = S.t_interval([-1.4, -1.6])
    assert spread.half == pytest.approx(1.27062, abs=1e-4) and S.verdict(spread, +1) == S.FAILS


def test_verdict_follows_the_interval_and_the_claimed_direction():
    above = S.t_interval([3.0, 4.0, 5.0])  # 4 ± 2.48: [1.52, 6.48]
    straddles = S.t_interval([1.0, 2.0, 3.0])  # 2 ± 2.48: [-0.48, 4.48]
    assert S.verdict(above, +1) == S.HOLDS
    assert S.verdict(above, -1) == S.FAILS
    assert S.verdict(straddles, +1) == S.INCONCLUSIVE
    below = S.t_interval([-3.0, -4.0, -5.0])
    assert S.verdict(below, -1) == S.HOLDS and S.verdict(below, +1) == S.FAILS


def test_paired_differences_use_common_seeds_only():
    a = {0: 50.0, 1: 52.0, 2: 49.0}
    b = {0: 48.0, 1: 51.0}
    assert S.paired(a, b) == [2.0, 1.0]


def test_combine():
    assert S.combine([S.HOLDS, S.HOLDS]) == S.HOLDS
    assert S.combine([S.HOLDS, S.INCONCLUSIVE]) == S.INCONCLUSIVE
    assert S.combine([S.HOLDS, S.FAILS]) == S.FAILS
    assert S.combine([]) == S.INCONCLUSIVE


def test_mde_by_hand():
    # n = 3: t(0.975, 2) = 0.95 / sqrt(2 * 0.975 * 0.025) = 4.30265, t(0.8, 2) = 0.6 / sqrt(2 * 0.8 * 0.2) = 1.06066
    # (df = 2 has the closed form t_p = (2p - 1) / sqrt(2 p (1 - p))); sd = 1: (4.30265 + 1.06066) / sqrt(3) = 3.09651
    assert S.mde(1.0, 3) == pytest.approx(3.09651, abs=1e-4)
    # n = 5, sd = 2: t(0.975, 4) = 2.7764, t(0.8, 4) = 0.9410 (tables): 3.7174 * 2 / sqrt(5) = 3.3250
    assert S.mde(2.0, 5) == pytest.approx(3.3250, abs=1e-3)
    # linear in sd, and larger than the interval's half-width by (1 + t(0.8) / t(0.975))
    iv = S.t_interval([1.0, 2.0, 3.0])
    assert S.mde(iv.sd, iv.n) == pytest.approx(iv.half * (1 + 1.06066 / 4.30265), rel=1e-4)
    assert math.isnan(S.mde(float("nan"), 1)) and math.isnan(S.mde(1.0, 1))


def test_equivalence_needs_the_whole_interval_within_the_margin():
    flat = S.t_interval([-0.2, 0.0, 0.2])  # 0 ± 4.30265 * 0.2 / sqrt(3) = 0 ± 0.4968
    assert flat.half == pytest.approx(0.49683, abs=1e-4)
    assert S.verdict(flat, +1, margin=1.0) == S.EQUIVALENT
    assert S.verdict(flat, -1, margin=1.0) == S.EQUIVALENT
    assert S.verdict(flat, +1, margin=0.4) == S.INCONCLUSIVE  # 0.4968 > 0.4
    assert S.verdict(flat, +1) == S.INCONCLUSIVE  # no margin: equivalence not assessed
    shifted = S.t_interval([0.4, 0.6, 0.8])  # 0.6 ± 0.4968: [0.103, 1.097] holds, whatever the margin
    assert S.verdict(shifted, +1, margin=1.0) == S.HOLDS and S.verdict(shifted, -1, margin=1.0) == S.FAILS
    wide = S.t_interval([-1.0, 0.0, 1.0])  # 0 ± 2.48: wider than a 1-point margin
    assert S.verdict(wide, +1, margin=1.0) == S.INCONCLUSIVE
    assert S.verdict(S.t_interval([0.1]), +1, margin=1.0) == S.INCONCLUSIVE  # one seed: no interval


def test_combine_claim_rule():
    assert S.combine([S.FAILS, S.UNTESTABLE]) == S.FAILS
    assert S.combine([S.HOLDS, S.UNTESTABLE]) == S.UNTESTABLE
    assert S.combine([S.UNTESTABLE, S.UNTESTABLE]) == S.UNTESTABLE
    assert S.combine([S.INCONCLUSIVE, S.UNTESTABLE]) == S.UNTESTABLE
    assert S.combine([S.EQUIVALENT, S.EQUIVALENT]) == S.EQUIVALENT
    assert S.combine([S.HOLDS, S.EQUIVALENT]) == S.INCONCLUSIVE
    assert S.combine([S.EQUIVALENT, S.INCONCLUSIVE]) == S.INCONCLUSIVE
