"""Statistics over seeds: Student-t intervals, paired differences, the smallest detectable difference and
the verdict on a claim.

A claim says a quantity moves in one direction (for example "AALP's PGD-10 accuracy minus ALP's, same
seed, is > 0"). Over n seeds we take the mean of the per-seed values and its 95% Student-t interval,
mean ± t(0.975, n-1) · sd / sqrt(n), in the quantity's own unit. A *part* (one such quantity) reads:

- holds: the whole interval lies on the claimed side of 0;
- does not hold: the whole interval lies on the other side;
- no difference larger than the margin: the interval contains 0 and lies within [-margin, +margin]
  (an equivalence verdict; only for units with a stated margin, see verdicts.MARGINS);
- inconclusive: the interval contains 0 and is wider than the margin (or the unit has none), or there
  is one seed (no interval), or every seed gave the same value (a zero spread: see ZERO_SPREAD);
- untestable: the data cannot measure the quantity at all (e.g. a slope with too few epochs), whatever
  the seeds;
- holds by construction: true by definition, shown but never evidence;
- shown beside: a quantity with no claimed direction (clean accuracy beside a robust one), never evidence.

The smallest difference the seeds could detect (mde) is the paired-t approximation
(t(1-alpha/2, n-1) + t(power, n-1)) · sd / sqrt(n), alpha = 0.05, power = 0.8.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
EQUIVALENT = "no difference larger than the margin"
UNTESTABLE = "untestable"
BY_CONSTRUCTION = "holds by construction"
BESIDE = "shown beside (no claim)"
PART_VERDICTS = (HOLDS, FAILS, EQUIVALENT, INCONCLUSIVE, UNTESTABLE, BY_CONSTRUCTION, BESIDE)

# Every seed giving the same value makes sd = 0 and the interval a point. That is no evidence of precision:
# the quantities are quantised (an accuracy on 500 samples moves in steps of 0.2 points, n50 in whole
# features), so two or three seeds agree exactly by chance, and the spread they hide is unknown.
ZERO_SPREAD = "every seed gave the same value: a zero spread is no interval (the quantity is quantised)"
CONFIDENCE = 0.95  # two-sided level of every interval (alpha = 0.05)
POWER = 0.80  # the power at which mde() is the smallest detectable difference


def is_zero_spread(n, half):
    """True where two or more values (n) all agreed, so their half-width is 0 (ZERO_SPREAD). Works on
    scalars and, elementwise, on pandas Series (a verdict table's n_seeds and half columns)."""
    return (n > 1) & (half == 0)


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the 95% interval; NaN with fewer than two values
    n: int
    sd: float = math.nan  # sample standard deviation (ddof 1) of the values; NaN with fewer than two

    @property
    def zero_spread(self) -> bool:
        """Two or more values, all equal (ZERO_SPREAD): a point, not an interval."""
        return is_zero_spread(self.n, self.half)

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def text(self, digits: int = 3) -> str:
        """'1.23 ± 0.45 (3 seeds)', or '1.23 (1 seed, no interval)'."""
        if self.n == 0 or math.isnan(self.mean):
            return "no runs"
        if self.n == 1:
            return f"{self.mean:.{digits}g} (1 seed, no interval)"
        if self.zero_spread:
            return f"{self.mean:.{digits}g} ({self.n} seeds, all equal: no interval)"
        return f"{self.mean:.{digits}g} ± {self.half:.2g} ({self.n} seeds)"


def t_interval(values, confidence: float = CONFIDENCE) -> Interval:
    """Mean, half-width t(0.5 + confidence/2, n-1) · sd / sqrt(n) of the two-sided Student-t interval of
    the mean, n and sd (ddof 1) of `values` (NaNs dropped), all in the values' unit. Values equal to the
    last bits of a float (paired differences such as 44.8 - 43.4 and 38.6 - 37.2) count as equal: sd = 0."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(v[0]), math.nan, 1)
    sd = 0.0 if np.allclose(v, v[0], rtol=1e-9, atol=1e-12) else float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
    return Interval(float(v.mean()), half, n, sd)


def mde(sd: float, n: int, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """Smallest true mean difference a two-sided paired t-test at level 1 - confidence detects with
    probability `power`, from n paired values with standard deviation sd (same unit as sd):

        mde = (t(1 - alpha/2, n-1) + t(power, n-1)) · sd / sqrt(n),   alpha = 1 - confidence.

    The usual normal-approximation formula with Student-t quantiles (it ignores the chance of rejecting on
    the wrong side, which is negligible at 80% power). NaN with fewer than two values (no sd, no test)
    and with sd = 0 (ZERO_SPREAD: the spread is unknown, not nil).
    Example: n = 3, sd = 1: (4.3027 + 1.0607) / sqrt(3) = 3.0965."""
    from scipy import stats

    if n < 2 or sd is None or math.isnan(sd) or sd == 0:
        return math.nan
    alpha = 1 - confidence
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


def paired(a: dict, b: dict) -> list[float]:
    """a[s] - b[s] for every seed s both have (same seed, same test samples), in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def verdict(iv: Interval, direction: int, margin: float = math.nan) -> str:
    """HOLDS when the interval lies strictly on the side `direction` (+1: above 0, -1: below 0), FAILS when it
    lies strictly on the other side; otherwise (it contains 0) EQUIVALENT when it lies within
    [-margin, +margin] (margin in the quantity's unit; NaN: equivalence not assessed), else INCONCLUSIVE.
    One seed gives no interval, nor do seeds that all gave the same value (ZERO_SPREAD): INCONCLUSIVE.
    A direction found is reported even when the effect is smaller
    than the margin: the margin only tells "no difference" from "cannot tell"."""
    if iv.n < 2 or math.isnan(iv.half) or iv.zero_spread:
        return INCONCLUSIVE
    lo, hi = (iv.lo, iv.hi) if direction > 0 else (-iv.hi, -iv.lo)  # the interval on the claimed axis
    if lo > 0:
        return HOLDS
    if hi < 0:
        return FAILS
    if not math.isnan(margin) and -margin <= iv.lo and iv.hi <= margin:
        return EQUIVALENT
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """One verdict for a claim from the verdicts of its *counted* parts (the parts that must all hold, e.g.
    one rises AND the other falls), in this order:

    1. does not hold, if any part does not hold;
    2. holds, if every part holds;
    3. untestable, if any part is untestable with the data at hand (more seeds would not settle it);
    4. no difference larger than the margin, if every part reads so;
    5. inconclusive otherwise (also with no counted part).
    """
    if not verdicts:
        return INCONCLUSIVE
    if any(v == FAILS for v in verdicts):
        return FAILS
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == UNTESTABLE for v in verdicts):
        return UNTESTABLE
    if all(v == EQUIVALENT for v in verdicts):
        return EQUIVALENT
    return INCONCLUSIVE
