"""A verdict on each claim of the paper, from the report's own claim and table files.

Each claim is a list of *parts*; a part is a per-seed quantity (usually a paired difference between two
models trained with the same seed and evaluated on the same test samples) and the direction the paper
claims for it. A part's verdict comes from the 95% Student-t interval of its mean over seeds
(stats.verdict); a claim holds on a dataset when every part holds (stats.combine). The paper's number is
shown where the paper has one (Tables 1-4); for its pictures the paper has none.

Reads only reports/claims/<item>.csv and reports/tables/table2.csv (their `seeds` and `values` columns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import stats as S
from .claims import per_seed
from .inputs import attack_columns, gd_pairs, models, sweep_runs
from .paper import PAPER_DIR

COLUMNS = ["claim_id", "claim", "item", "dataset", "part", "direction", "paper", "mean", "half", "n_seeds", "part_verdict",
           "verdict"]


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    item: str  # the figure or table page that shows it


CLAIMS = [
    Claim("fewer_features", "Robust models have fewer high-contribution features (n50: features holding half the "
          "contribution)", "fig01"),
    Claim("cam_shrinks", "Grad-CAM areas shrink with robustness (area above half the CAM maximum, adversarial inputs)",
          "fig02"),
    Claim("failed_low_confidence", "ALP's failed (Inconsistent) samples have low adversarial true-class confidence",
          "fig03"),
    Claim("alp_loss_diverges", "During ALP training the Inconsistent set's ALP loss rises while the Consistent set's "
          "falls (slope per epoch, second half)", "fig04"),
    Claim("lambda_tradeoff", "A larger lambda trades clean accuracy for robustness (largest minus smallest swept value)",
          "fig06"),
    Claim("aalp_fewer_features", "AALP has fewer high-contribution features than ALP (n50)", "fig07"),
    Claim("gd_helps", "Guided Dropout improves the PGD accuracy of RAW, ADV and ALP", "table3"),
    Claim("aalp_consistent", "AALP increases the share of Consistent samples", "table4"),
    Claim("aalp_beats_alp", "AALP beats ALP under PGD and CW", "table2"),
    Claim("aalp_beats_alp_aa", "AALP's gain over ALP survives AutoAttack", "table2"),
    Claim("aalp_converges", "AALP converges better than ALP (last-epoch probe: adversarial accuracy up, ALP loss down)",
          "fig12"),
]


def _paper_table2() -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / "table2_defense.csv").set_index(["dataset", "method"])


def _paper(table: pd.DataFrame, key, col) -> float:
    try:
        return float(table.loc[key, col])
    except KeyError:
        return math.nan


class _Reader:
    def __init__(self, report_dir: Path):
        self.dir = Path(report_dir)
        self._cache: dict[str, pd.DataFrame] = {}

    def _csv(self, rel: str) -> pd.DataFrame:
        if rel not in self._cache:
            self._cache[rel] = pd.read_csv(self.dir / rel)
        return self._cache[rel]

    def claim(self, item: str, d: str, m: str, claim: str) -> dict[int, float]:
        c = self._csv(f"claims/{item}.csv")
        row = c[(c.dataset == d) & (c.method == m) & (c.claim == claim)]
        return per_seed(row.iloc[0]) if len(row) else {}

    def accuracy(self, d: str, m: str, metric: str) -> dict[int, float]:
        t = self._csv("tables/table2.csv")
        row = t[(t.dataset == d) & (t.method == m) & (t.metric == metric)]
        return per_seed(row.iloc[0]) if len(row) else {}


def _part(rows, claim, d, label, values, direction, paper=math.nan):
    iv = S.t_interval(values)
    rows.append({"claim_id": claim.id, "claim": claim.text, "item": claim.item, "dataset": d, "part": label,
                 "direction": direction, "paper": paper, "mean": iv.mean, "half": iv.half, "n_seeds": iv.n,
                 "part_verdict": S.verdict(iv, direction)})


def verdicts(cfg: dict, report_dir: str | Path = "reports") -> pd.DataFrame:
    """One row per (claim, dataset, part), with the claim's combined verdict on that dataset (COLUMNS)."""
    r = _Reader(Path(report_dir))
    p2 = _paper_table2()
    p1 = pd.read_csv(PAPER_DIR / "table1_consistency.csv").set_index(["dataset", "set"])
    p3 = pd.read_csv(PAPER_DIR / "table3_guided_dropout.csv").set_index(["dataset", "method"])
    p4 = pd.read_csv(PAPER_DIR / "table4_consistent_share.csv").set_index("dataset")
    src = {d: cfg["datasets"][d]["source"] for d in cfg["experiments"]}
    rows: list[dict] = []
    by_id = {c.id: c for c in CLAIMS}

    def diff(get, a, b):
        return S.paired(get(a), get(b))

    c = by_id["fewer_features"]
    for d, ms in models(cfg, "fig01"):
        for m in ("adv", "alp"):
            _part(rows, c, d, f"n50 {m.upper()} − RAW", diff(lambda x: r.claim("fig01", d, x, "n50"), m, "raw"), -1)
    c = by_id["cam_shrinks"]
    for d, ms in models(cfg, "fig02"):
        for m in ("adv", "alp"):
            _part(rows, c, d, f"CAM area {m.upper()} − RAW",
                  diff(lambda x: r.claim("fig02", d, x, "cam_area_adv"), m, "raw"), -1)
    c = by_id["failed_low_confidence"]
    for d, _ in models(cfg, "fig03"):
        inc, con = r.claim("fig03", d, "alp", "adv_conf_inconsistent"), r.claim("fig03", d, "alp", "adv_conf_consistent")
        paper = (_paper(p1, (src[d], "inconsistent"), "adv_gt_confidence")
                 - _paper(p1, (src[d], "consistent"), "adv_gt_confidence")) / 100
        _part(rows, c, d, "adv. confidence Inconsistent − Consistent (ALP)", S.paired(inc, con), -1, paper)
    c = by_id["alp_loss_diverges"]
    for d, _ in models(cfg, "fig04"):
        _part(rows, c, d, "slope of the Inconsistent set's ALP loss",
              list(r.claim("fig04", d, "alp", "alp_slope_inconsistent").values()), +1)
        _part(rows, c, d, "slope of the Consistent set's ALP loss",
              list(r.claim("fig04", d, "alp", "alp_slope_consistent").values()), -1)
    c = by_id["lambda_tradeoff"]
    sweeps: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for d, base, param, run, value in sweep_runs(cfg):
        sweeps.setdefault((d, base), []).append((value, run))
    cols = attack_columns(cfg)
    for (d, base), runs in sweeps.items():
        (lo_v, lo_run), (hi_v, hi_run) = min(runs), max(runs)
        for metric, direction in zip(cols, [-1] + [+1] * (len(cols) - 1)):
            _part(rows, c, d, f"{metric} at lambda {hi_v:g} − at {lo_v:g} ({base.upper()})",
                  diff(lambda x: r.claim("fig06", d, x, metric), hi_run, lo_run), direction)
    c = by_id["aalp_fewer_features"]
    for d, _ in models(cfg, "fig07"):
        _part(rows, c, d, "n50 AALP − ALP", diff(lambda x: r.claim("fig07", d, x, "n50"), "aalp", "alp"), -1)
    c = by_id["gd_helps"]
    pgd = next((a for a in cols if a.startswith("pgd")), None)
    for d, a, b in gd_pairs(cfg) if pgd else []:
        paper = _paper(p3, (src[d], b), pgd) - _paper(p3, (src[d], a), pgd)
        _part(rows, c, d, f"{pgd} {b.upper()} − {a.upper()}", diff(lambda x: r.claim("table3", d, x, pgd), b, a), +1,
              paper)
    c = by_id["aalp_consistent"]
    for d, _ in models(cfg, "table4"):
        paper = _paper(p4, src[d], "aalp_consistent_pct") - _paper(p4, src[d], "alp_consistent_pct")
        _part(rows, c, d, "Consistent % AALP − ALP",
              diff(lambda x: r.claim("table4", d, x, "consistent_pct"), "aalp", "alp"), +1, paper)
    for d, _ in models(cfg, "table4"):  # the datasets with ALP and AALP
        for cid, metrics in (("aalp_beats_alp", [a for a in cols if a != "clean"]),
                             ("aalp_beats_alp_aa", ["autoattack"] if "autoattack" in cfg["evaluation"]["attacks"] else [])):
            for metric in metrics:
                paper = _paper(p2, (src[d], "aalp"), metric) - _paper(p2, (src[d], "alp"), metric)
                _part(rows, by_id[cid], d, f"{metric} AALP − ALP",
                      diff(lambda x: r.accuracy(d, x, metric), "aalp", "alp"), +1, paper)
    c = by_id["aalp_converges"]
    for d, _ in models(cfg, "fig12"):
        _part(rows, c, d, "last-epoch probe adversarial accuracy AALP − ALP",
              diff(lambda x: r.claim("fig12", d, x, "final_probe_adv_acc"), "aalp", "alp"), +1)
        _part(rows, c, d, "last-epoch probe ALP loss AALP − ALP",
              diff(lambda x: r.claim("fig12", d, x, "final_probe_alp"), "aalp", "alp"), -1)

    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    combined = df.groupby(["claim_id", "dataset"], sort=False)["part_verdict"].agg(lambda v: S.combine(list(v)))
    df["verdict"] = [combined[(a, b)] for a, b in zip(df.claim_id, df.dataset)]
    return df[COLUMNS]


def missing_claims(cfg: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims the parameter set has no runs for (the index says which runs they need)."""
    have = set(table.claim_id) if len(table) else set()
    return [c for c in CLAIMS if c.id not in have]


def interval_text(row) -> str:
    return S.Interval(float(row["mean"]), float(row["half"]), int(row["n_seeds"])).text()
