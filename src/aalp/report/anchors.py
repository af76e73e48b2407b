"""Independent implementations of the paper's protocols (anchors.csv, each number with its source): Table 2's
cells show them under the paper's number, on the datasets of their source (MNIST), with the network each
trained where it is not this set's model."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

RESOURCES = ["src/aalp/report/anchors.csv"]
ANCHORS_CSV = Path(__file__).with_name("anchors.csv")


def anchors(source: str) -> pd.DataFrame:
    """The anchors of a dataset source (anchors.csv's rows with dataset == source): anchor, network, protocol,
    method, metric, value (percent), source (its address)."""
    a = pd.read_csv(ANCHORS_CSV)
    return a[a.dataset == source].drop(columns="dataset").reset_index(drop=True)


def cell_anchors(table: pd.DataFrame, method: str, metric: str, model: str) -> list[str]:
    """The lines of one Table 2 cell: 'Madry et al. 92.52', 'PyTorch-Robust 96.08 (SmallCNN)' (the network in
    brackets where it is not `model`, this set's)."""
    rows = table[(table.method == method) & (table.metric == metric)] if len(table) else table
    return [f"{r.anchor} {r.value:.2f}" + ("" if r.network == model else f" ({r.network})") for r in rows.itertuples()]


def anchors_note(table: pd.DataFrame, model: str) -> str:
    """One sentence under a Table 2 with anchors: who each is, its protocol and network, and its source."""
    if table.empty:
        return ""
    parts = []
    for (name, network, protocol, url), _ in table.groupby(["anchor", "network", "protocol", "source"], sort=False):
        same = "the same network as this set's" if network == model else f"not this set's {model}: the networks differ"
        parts.append(f"{name} ({protocol}; {same}; {url})")
    return ("Under the paper's number, independent implementations of the same protocol, as their authors "
            "report them: " + "; ".join(parts) + ".")
