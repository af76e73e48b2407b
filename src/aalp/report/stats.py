"""Statistics over seeds: Student-t intervals, paired differences and the verdict on a claim.

A claim says a quantity moves in one direction (for example "AALP's PGD-10 accuracy minus ALP's, same
seed, is > 0"). Over n seeds we take the mean of the per-seed values and its 95% Student-t interval,
mean ± t(0.975, n-1) · sd / sqrt(n). The verdict:

- holds: the whole interval lies on the claimed side of 0;
- does not hold: the whole interval lies on the other side;
- inconclusive: the interval contains 0, or there is one seed (no interval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float  # half-width of the 95% interval; NaN with fewer than two values
    n: int

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
        return f"{self.mean:.{digits}g} ± {self.half:.2g} ({self.n} seeds)"


def t_interval(values, confidence: float = 0.95) -> Interval:
    """Mean and half-width of the two-sided Student-t interval of the mean of `values` (NaNs dropped)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(math.nan, math.nan, 0)
    if n == 1:
        return Interval(float(v[0]), math.nan, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(float(v.mean()), half, n)


def paired(a: dict, b: dict) -> list[float]:
    """a[s] - b[s] for every seed s both have (same seed, same test samples), in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def verdict(iv: Interval, direction: int) -> str:
    """HOLDS when the interval lies strictly on the side `direction` (+1: above 0, -1: below 0), FAILS when it
    lies strictly on the other side, else INCONCLUSIVE (it contains 0, or one seed gives no interval)."""
    if iv.n < 2 or math.isnan(iv.half):
        return INCONCLUSIVE
    lo, hi = iv.lo * direction, iv.hi * direction
    if direction < 0:
        lo, hi = hi, lo
    if lo > 0:
        return HOLDS
    if hi < 0:
        return FAILS
    return INCONCLUSIVE


def combine(verdicts: list[str]) -> str:
    """One verdict for a claim made of parts that must all hold (e.g. one rises AND the other falls)."""
    if not verdicts:
        return INCONCLUSIVE
    if all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return INCONCLUSIVE
