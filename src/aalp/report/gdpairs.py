"""What Table 3 and its claim ("Guided Dropout improves RAW, ADV and ALP") test in a parameter set: the pairs
(base, base + Guided Dropout) it runs, the ones it does not, and the change with Guided Dropout as the paired
mean over the seeds both runs have (the quantity the verdict judges)."""
from __future__ import annotations

import pandas as pd

from .claimlist import label
from .stats import paired
from .inputs import GD_PAIRS, gd_pairs


def gd_tested(cfg: dict, dataset: str) -> str:
    """The pairs of Table 3 a dataset runs and those it does not: 'tested: ALP + GD vs ALP; RAW + GD and
    ADV + GD not run'."""
    run = [(a, b) for d, a, b in gd_pairs(cfg) if d == dataset]
    missing = [b for a, b in GD_PAIRS if (a, b) not in run]
    text = "tested: " + (", ".join(f"{label(b)} vs {label(a)}" for a, b in run) or "none")
    if missing:
        text += "; " + " and ".join(label(b) for b in missing) + " not run"
    return text


def table3_title(cfg: dict, title: str) -> str:
    """Table 3's page title with the pairs each dataset tests: 'Table 3: ... (tested: ALP + GD vs ALP; ...)'."""
    datasets = list(dict.fromkeys(d for d, _, _ in gd_pairs(cfg)))
    if not datasets:
        return title
    if len(datasets) == 1:
        return f"{title} ({gd_tested(cfg, datasets[0])})"
    return f"{title} (" + "; ".join(f"{d}: {gd_tested(cfg, d)}" for d in datasets) + ")"


def paired_changes(per_seed: pd.DataFrame) -> pd.DataFrame:
    """The change with Guided Dropout of each (dataset, pair, metric): the mean over the seeds both runs have
    of (base + GD) − base, same seed (the verdict's paired difference), on the Guided Dropout run's row.
    per_seed: dataset, pair (the base method), method, seed, metric, value. Returns dataset, pair, method,
    metric, change, change_seeds (the seeds paired, ';'-joined)."""
    cols = ["dataset", "pair", "method", "metric", "change", "change_seeds"]
    rows = []
    for (d, pair, metric), g in per_seed.groupby(["dataset", "pair", "metric"], sort=False):
        base = g[g.method == pair].set_index("seed").value
        for m in dict.fromkeys(g.method[g.method != pair]):
            gd = g[g.method == m].set_index("seed").value
            diffs = paired(gd.to_dict(), base.to_dict())
            common = sorted(set(base.index) & set(gd.index))
            rows.append({"dataset": d, "pair": pair, "method": m, "metric": metric,
                         "change": sum(diffs) / len(diffs) if diffs else float("nan"),
                         "change_seeds": ";".join(str(int(s)) for s in common)})
    return pd.DataFrame(rows, columns=cols)
