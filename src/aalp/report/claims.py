"""Statistics over seeds of the report's per-seed numbers: the claim tables (claims/<item>.csv) and
claims.json. A claim row keeps the seeds and per-seed values behind its mean, so the front page can pair
two methods seed by seed."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

CLAIM_COLUMNS = ["dataset", "method", "claim", "mean", "std", "n_seeds", "seeds", "values"]


def over_seeds(df: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """keys + mean, std (0 with one seed) and n_seeds (the non-NaN values) of `value` over the rows of each group."""
    cols = [*keys, "mean", "std", "n_seeds"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(keys, sort=False, dropna=False)[value]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = np.where(out.n_seeds == 1, 0.0, out["std"])
    return out[cols]


def with_seeds(out: pd.DataFrame, df: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """out (one row per group of keys) plus `seeds` and `values`: the seeds and per-seed values behind each
    mean, ';'-joined in seed order (the index page pairs methods seed by seed; per_seed() reads them back)."""
    if out.empty:
        return out.assign(seeds=pd.Series(dtype=str), values=pd.Series(dtype=str))
    rows = df.dropna(subset=[value]).sort_values("seed")
    per = (rows.groupby(keys, sort=False, dropna=False)
           .agg(seeds=("seed", lambda x: ";".join(str(int(v)) for v in x)),
                values=(value, lambda x: ";".join(repr(float(v)) for v in x))).reset_index())
    out = out.merge(per, on=keys, how="left")
    return out.fillna({"seeds": "", "values": ""})


def per_seed(row) -> dict[int, float]:
    """{seed: value} of one claims/table row written by with_seeds."""
    seeds, values = str(row["seeds"]) if row["seeds"] == row["seeds"] else "", row["values"]
    if not seeds:
        return {}
    return {int(s): float(v) for s, v in zip(seeds.split(";"), str(values).split(";"))}


def claims_frame(per_seed: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Claim table (CLAIM_COLUMNS) from per-seed rows: dataset, method, claim, seed, value."""
    df = pd.DataFrame(per_seed, columns=["dataset", "method", "claim", "seed", "value"])
    keys = ["dataset", "method", "claim"]
    return with_seeds(over_seeds(df, keys), df, keys)[CLAIM_COLUMNS]


def frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


def claims_dict(claims: dict[str, pd.DataFrame]) -> dict[str, float | int | None]:
    """Flat {'<name>/<dataset>/<method>/<claim>_mean': ..., '_std': ..., '_n_seeds': ...} (NaN -> None)."""
    out = {}
    for name, df in claims.items():
        for r in df.itertuples(index=False):
            key = f"{name}/{r.dataset}/{r.method}/{r.claim}"
            for f in ("mean", "std"):
                v = float(getattr(r, f))
                out[f"{key}_{f}"] = None if math.isnan(v) else v
            out[f"{key}_n_seeds"] = int(r.n_seeds)
    return out
