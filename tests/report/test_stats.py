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
