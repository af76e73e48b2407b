"""The Consistent and Inconsistent sets of a model's test samples (docs/method.md#consistency-sets),
defined on its evaluation records. Kept free of torch so that the report stages start fast."""
from __future__ import annotations

import numpy as np
import pandas as pd


def consistency_sets(records: pd.DataFrame, attack: str = "train") -> pd.Series:
    """Consistent: clean and adversarial (under `attack`) both correct; Inconsistent: clean correct,
    adversarial wrong; 'clean_wrong' otherwise."""
    clean_ok = records.clean_pred == records.label
    adv_ok = records[f"{attack}_pred"] == records.label
    return pd.Series(np.where(clean_ok & adv_ok, "consistent", np.where(clean_ok, "inconsistent", "clean_wrong")),
                     index=records.index, name="set")
