"""How much the seeds of a verdict table can resolve: how many counted parts are inconclusive, the typical
smallest detectable difference of the accuracy parts, and the paper's own claimed differences against it."""
from __future__ import annotations

import pandas as pd

from . import stats as S
from .claimlist import ACC, ACCURACY_MARGIN, PAPER_NAMES
from .inputs import attack_columns
from .paper import PAPER_DIR


def paper_gains(metrics: list[str]) -> dict[str, dict[str, float]]:
    """{paper dataset: {metric: AALP − ALP}} of the paper's Table 2 (points of accuracy), for the metrics
    the paper's table has."""
    p2 = pd.read_csv(PAPER_DIR / "table2_defense.csv").set_index(["dataset", "method"])
    cols = [m for m in metrics if m in p2.columns]
    sources = dict.fromkeys(d for d, _ in p2.index)
    return {src: {m: float(p2.loc[(src, "aalp"), m] - p2.loc[(src, "alp"), m]) for m in cols}
            for src in sources if cols and (src, "alp") in p2.index and (src, "aalp") in p2.index}


def resolution(cfg: dict, table: pd.DataFrame) -> str:
    """The sentences under the verdict counts: how many counted parts the seeds could not resolve, the
    typical smallest detectable difference of the accuracy parts against the paper's claimed differences
    (the part's own where the paper has it, else the paper's AALP − ALP gains on the same attacks)."""
    if table.empty:
        return ""
    counted = table[table.counted.astype(bool)]
    testable = counted[counted.part_verdict != S.UNTESTABLE]
    open_ = counted[counted.part_verdict == S.INCONCLUSIVE]
    out = [f"Of the {len(counted)} counted parts, {len(open_)} are inconclusive: the seeds at hand could not resolve "
           f"them (the interval contains 0 and is wider than the margin, or the unit has no margin"
           + (f"; for {n_zero} of them every seed gave the same value, a zero spread that is no interval"
              if (n_zero := int(S.is_zero_spread(open_.n_seeds, open_.half).sum())) else "") + ")"
           + (f"; {len(counted) - len(testable)} are untestable with this set's data" if len(testable) < len(counted)
              else "") + "."]
    acc = testable[(testable.unit == ACC.text) & testable.mde.notna()]
    if testable.n_seeds.max() <= 1:
        out.append("With one seed there is no interval and no smallest detectable difference.")
    elif len(acc):
        n = sorted(set(int(x) for x in acc.n_seeds))
        seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}"
        out.append(f"With {seeds} seeds the accuracy parts' intervals are ±{acc.half.min():.1f}–{acc.half.max():.1f} "
                   f"points and the smallest difference they could detect (paired t, 95%, power 80%) is "
                   f"{acc.mde.median():.1f} points (median; {acc.mde.min():.1f}–{acc.mde.max():.1f}); "
                   f"a part reads \"no difference larger than the margin\" only when its whole interval lies within "
                   f"±{ACCURACY_MARGIN:g} point.")
        mine = acc[acc.paper.notna()]
        if len(mine):
            small = int((mine.paper.abs() < mine.mde).sum())
            out.append(f"The paper's own differences for {len(mine)} of these parts are "
                       f"{mine.paper.abs().min():.2f}–{mine.paper.abs().max():.2f} points: {small} of them are smaller "
                       f"than what these seeds could detect.")
        without = sorted(set(acc.dataset) - set(mine.dataset))
        if without:
            metrics = [a for a in attack_columns(cfg) if a != "clean"]
            gains = paper_gains(metrics)
            if gains:
                every = [g for per in gains.values() for g in per.values()]
                below = sum(g < acc.mde.median() for g in every)
                txt = "; ".join(f"{PAPER_NAMES.get(s, s)} " + ", ".join(f"{m} {g:+.2f}" for m, g in per.items())
                                for s, per in gains.items())
                out.append(f"The paper gives no number for {', '.join(without)}; its own gains of AALP over ALP on "
                           f"the same attacks (Table 2) are {txt} points: {below} of these {len(every)} are smaller "
                           f"than the median smallest detectable difference here.")
    return " ".join(out)
