"""How every page of the report writes a number over seeds and what it says where the paper has none: one
convention (mean ± half-width of the 95% Student-t interval, with n), the sentence that replaces empty paper
columns, and the heading of an accuracy measured on fewer samples than the others (AutoAttack)."""
from __future__ import annotations

import math

import pandas as pd

from .paper import paper_table1, paper_table2, paper_table3, paper_table4

DIFF_POINTS = 2.0  # ours against the paper's: a Δ beyond this many points is shown in red (every page)
UNITS = ("mean over seeds ± half-width of its 95% Student-t interval, t(0.975, n−1)·s/√n with s the standard "
         "deviation over the n seeds; n=1: one seed, no interval")


def half_width(std: float, n: int) -> float:
    """Half-width of the 95% Student-t interval of a mean of n values with standard deviation std."""
    from scipy import stats

    n = int(n) if n == n else 0
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan


def ours_text(mean: float, std: float, n: int, digits: int = 2, with_n: bool = True) -> str:
    """'12.34 ± 0.56 (n=3)': mean ± 95% t half-width (UNITS); '12.34 (n=1)' for one seed; '' without a value."""
    if mean is None or mean != mean:
        return ""
    n = int(n)
    text = f"{mean:.{digits}f}" + (f" ± {half_width(std, n):.{digits}f}" if n > 1 else "")
    return text + (f" (n={n})" if with_n else "")


PAPER_NAMES = {"mnist": "MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10"}


def paper_sources(table: str) -> list[str]:
    """The datasets (sources) the paper's Table 1-4 ('table1'..'table4') has numbers for."""
    t = {"table1": paper_table1, "table2": paper_table2, "table3": paper_table3, "table4": paper_table4}[table]()
    return list(dict.fromkeys((t["source"] if "source" in t else t["dataset"]).tolist()))


def no_paper_text(dataset: str, source: str, table: str) -> str:
    """The one sentence that replaces a dataset's empty paper columns of Table 1-4 ('table1'..'table4')."""
    have = [PAPER_NAMES.get(s, s) for s in paper_sources(table)]
    have = have[0] if len(have) == 1 else ", ".join(have[:-1]) + " and " + have[-1]
    name = dataset if source == dataset else f"{dataset} ({source})"
    return (f"The paper's Table {table[-1]} has no numbers for {name}: it reports {have} only, so the paper's "
            "columns are left out here.")


def sample_counts(df: pd.DataFrame) -> dict[str, int]:
    """{metric: test samples} of table2.csv rows (the most over the runs)."""
    if "n_samples" not in df or df.empty:
        return {}
    return {m: int(v) for m, v in df.groupby("metric", sort=False)["n_samples"].max().dropna().items()}


def metric_label(metric: str, counts: dict[str, int]) -> str:
    """The column heading of an accuracy: its name, with its sample count when that differs from the count
    most columns have (AutoAttack on a prefix of the test set)."""
    if metric == "train":
        return "training attack"
    usual = pd.Series(list(counts.values())).mode()
    if metric in counts and len(usual) and counts[metric] != int(usual.max()):
        return f"{metric} ({counts[metric]:,} of {int(usual.max()):,} samples)"
    return metric
