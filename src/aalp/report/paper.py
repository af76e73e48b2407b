"""The paper's own numbers (paper/*.csv: Tables 1-4 as published), in the long form the report joins on."""
from __future__ import annotations

import pandas as pd

from .. import config as C

RESOURCES = ["paper/table1_consistency.csv", "paper/table2_defense.csv", "paper/table3_guided_dropout.csv",
             "paper/table4_consistent_share.csv"]
PAPER_DIR = C.REPO_ROOT / "paper"


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 in long form: dataset, method, metric, paper."""
    wide = pd.read_csv(PAPER_DIR / "table2_defense.csv")
    return wide.melt(id_vars=["dataset", "method"], var_name="metric", value_name="paper")


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 in long form: source, set, metric, paper."""
    wide = pd.read_csv(PAPER_DIR / "table1_consistency.csv")
    return wide.melt(id_vars=["dataset", "set"], var_name="metric", value_name="paper").rename(columns={"dataset": "source"})


def paper_table4() -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / "table4_consistent_share.csv").rename(columns={"dataset": "source"})


def paper_table3() -> pd.DataFrame:
    wide = pd.read_csv(PAPER_DIR / "table3_guided_dropout.csv")
    return wide.melt(id_vars=["dataset", "method"], var_name="metric", value_name="paper_table3").rename(
        columns={"dataset": "source"})
