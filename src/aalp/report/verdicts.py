"""A verdict on each claim of the paper, from the report's own claim and table files.

Each claim (claimlist.CLAIMS) is a list of *parts*; a part is a per-seed quantity (usually a paired difference
between two models trained with the same seed and evaluated on the same test samples), its unit and the
direction the paper claims for it. A part's verdict comes from the 95% Student-t interval of its mean over
seeds and the equivalence margin of its unit (stats.verdict); beside it stands the smallest difference the
seeds could detect (stats.mde, paired t, 95%, power 80%). A part is *counted* unless it cannot be evidence: it
holds by construction, the method changes it by definition, or it is shown only beside the quantity that
decides (`note` says which): clean accuracy beside every robust accuracy a verdict compares, n50 as a share
of the active features beside n50. A claim's verdict on a dataset combines its counted parts
(stats.combine) and holds at the dataset's budget and setting only (`scope`, scope.scope); `paper_on` says
where the paper showed the claim. The paper's number is shown where the paper has one (Tables 1-4); for its
pictures the paper has none.

Reads only reports/claims/<item>.csv and reports/tables/table2.csv (their `seeds` and `values` columns).
"""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd

from . import stats as S
from .claimlist import (AALP_ALP_LOSS_NOTE, ACC, ACCURACY_MARGIN, BY_CONSTRUCTION_NOTE, CAM, CLAIMS,  # noqa: F401
                        CLEAN_CORRECT_NOTE, CLEAN_NOTE, CONF, LOSS, MIN_SLOPE_EPOCHS, N50, ORDER_NOTE, PAPER_NAMES,
                        SHARE, SHARE_NOTE, SLOPE, UNITS, Claim, Unit, label, paper_showed)
from .camclaims import cam_parts
from .claims import per_seed
from .figdata import second_half
from .gdpairs import gd_tested
from .inputs import attack_columns, gd_pairs, models, sweep_runs
from .paper import PAPER_DIR
from .resolution import paper_gains, resolution  # noqa: F401  (the front page reads them here)
from .scope import scope

COLUMNS = ["claim_id", "claim", "item", "paper_on", "dataset", "scope", "part", "direction", "unit", "paper", "mean",
           "half", "n_seeds", "sd", "mde", "margin", "part_verdict", "counted", "note", "verdict"]


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

    def claim(self, item: str, d: str, m: str, claim: str, scale: float = 1.0) -> dict[int, float]:
        """{seed: scale · value} of claims/<item>.csv's row (d, m, claim); {} without one."""
        c = self._csv(f"claims/{item}.csv")
        row = c[(c.dataset == d) & (c.method == m) & (c.claim == claim)]
        return {s: scale * v for s, v in per_seed(row.iloc[0]).items()} if len(row) else {}

    def accuracy(self, d: str, m: str, metric: str) -> dict[int, float]:
        t = self._csv("tables/table2.csv")
        row = t[(t.dataset == d) & (t.method == m) & (t.metric == metric)]
        return per_seed(row.iloc[0]) if len(row) else {}


def _part(rows, claim, d, name, values, direction, unit: Unit, paper=math.nan, *, state: str | None = None,
          counted: bool = True, note: str = ""):
    """One row: the interval, sd and mde of `values` (per seed, in `unit`), and its verdict (`state` when the
    verdict does not come from the interval: untestable, holds by construction, shown beside)."""
    iv = S.t_interval(values)
    if iv.zero_spread and not state:
        note = "; ".join(x for x in (note, S.ZERO_SPREAD) if x)
    rows.append({"claim_id": claim.id, "claim": claim.text, "item": claim.item, "dataset": d, "part": name,
                 "direction": direction, "unit": unit.text, "paper": paper, "mean": iv.mean, "half": iv.half,
                 "n_seeds": iv.n, "sd": iv.sd, "mde": S.mde(iv.sd, iv.n), "margin": unit.margin,
                 "part_verdict": state or S.verdict(iv, direction, unit.margin), "counted": counted, "note": note})


def _beside(rows, claim, d, name, values, direction, unit: Unit, note: str, paper=math.nan):
    """A part shown beside the counted ones, never counted, where the report has its values (a report written
    before the quantity existed has none). direction 0: no direction claimed (clean accuracy beside a robust
    one), its verdict reads S.BESIDE."""
    if values:
        _part(rows, claim, d, name, values, direction, unit, paper, state=None if direction else S.BESIDE,
              counted=False, note=note)


def claim_verdict(parts: pd.DataFrame) -> str:
    """stats.combine over the counted parts; a claim whose parts are all 'holds by construction' reads so."""
    counted = parts[parts.counted.astype(bool)]
    if len(counted) == 0 and len(parts) and (parts.part_verdict == S.BY_CONSTRUCTION).all():
        return S.BY_CONSTRUCTION
    return S.combine(list(counted.part_verdict))


def fitted_epochs(cfg: dict, d: str) -> int:
    """How many epochs the Fig. 4 slope of dataset d is fitted on (figdata.second_half of epochs 1..E)."""
    return len(second_half(range(1, int(cfg["experiments"][d]["epochs"]) + 1)))


def min_epochs_for_slope() -> int:
    """The fewest epochs whose fitted half (figdata.second_half) holds MIN_SLOPE_EPOCHS epochs."""
    e = 1
    while len(second_half(range(1, e + 1))) < MIN_SLOPE_EPOCHS:
        e += 1
    return e


def aa_samples(cfg: dict) -> str:
    """'; clean accuracy on every evaluated test sample, AutoAttack on the first 500 only' (where it has fewer)."""
    n = cfg["evaluation"].get("autoattack_samples")
    return f"; clean accuracy on every evaluated test sample, AutoAttack on the first {n:,} only" if n else ""


class _Judge:
    """The rows of the verdict table, claim by claim, from one report folder's claim and table files."""

    def __init__(self, cfg: dict, report_dir: Path):
        self.cfg, self.r, self.rows = cfg, _Reader(report_dir), []
        self.src = {d: cfg["datasets"][d]["source"] for d in cfg["experiments"]}
        self.by_id = {c.id: c for c in CLAIMS}
        read = lambda name, index: pd.read_csv(PAPER_DIR / name).set_index(index)  # noqa: E731
        self.p1 = read("table1_consistency.csv", ["dataset", "set"])
        self.p2 = _paper_table2()
        self.p3 = read("table3_guided_dropout.csv", ["dataset", "method"])
        self.p4 = read("table4_consistent_share.csv", "dataset")

    def claim(self, item, d, claim, scale=1.0):
        """{method: {seed: value}} getter of claims/<item>.csv's `claim` on dataset d."""
        return lambda m: self.r.claim(item, d, m, claim, scale)

    def p1_diff(self, d, metric):  # the paper's Table 1: Inconsistent minus Consistent
        return (_paper(self.p1, (self.src[d], "inconsistent"), metric)
                - _paper(self.p1, (self.src[d], "consistent"), metric))

    def p2_diff(self, d, metric):  # the paper's Table 2: AALP minus ALP
        return _paper(self.p2, (self.src[d], "aalp"), metric) - _paper(self.p2, (self.src[d], "alp"), metric)

    def clean_aalp_alp(self, c, d, note: str = CLEAN_NOTE):
        """Clean accuracy AALP − ALP (Table 2), beside a robust comparison of the two."""
        acc = lambda m: self.r.accuracy(d, m, "clean")  # noqa: E731
        _beside(self.rows, c, d, "clean AALP − ALP", S.paired(acc("aalp"), acc("alp")), 0, ACC, note,
                self.p2_diff(d, "clean"))

    def features(self, item: str, cid: str, steps: tuple[tuple[str, str], ...]):
        """n50 differences of `item` (Fig. 1: the ordering RAW > ADV > ALP step by step; Fig. 7: AALP − ALP),
        each with n50 as a share of the active features beside it."""
        c = self.by_id[cid]
        for d, _ in models(self.cfg, item):
            n50, share = self.claim(item, d, "n50"), self.claim(item, d, "n50_active")
            for i, (a, b) in enumerate(steps):
                _part(self.rows, c, d, f"n50 {label(a)} − {label(b)}", S.paired(n50(a), n50(b)), -1, N50,
                      note=ORDER_NOTE if item == "fig01" and i == 0 else "")
            for a, b in steps:
                _beside(self.rows, c, d, f"n50 as % of the active features {label(a)} − {label(b)}",
                        S.paired(share(a), share(b)), -1, SHARE, SHARE_NOTE)

    def cam(self):
        c = self.by_id["cam_shrinks"]
        for d, _ in models(self.cfg, "fig02"):
            area = self.claim("fig02", d, "cam_area_adv")
            for m in ("adv", "alp"):
                _part(self.rows, c, d, f"CAM area {m.upper()} − RAW", S.paired(area(m), area("raw")), -1, CAM)

    def sets(self):
        """Fig. 3 and Table 1: ALP's Inconsistent set against its Consistent set."""
        c = self.by_id["failed_low_confidence"]
        for d, _ in models(self.cfg, "fig03"):
            inc = self.r.claim("fig03", d, "alp", "adv_conf_inconsistent", 100.0)
            con = self.r.claim("fig03", d, "alp", "adv_conf_consistent", 100.0)
            _part(self.rows, c, d, "adv. true-class confidence Inconsistent − Consistent (ALP)", S.paired(inc, con),
                  -1, CONF, self.p1_diff(d, "adv_gt_confidence"), state=S.BY_CONSTRUCTION, counted=False,
                  note=BY_CONSTRUCTION_NOTE)
        c = self.by_id["inconsistent_higher_loss"]
        for d, _ in models(self.cfg, "table1"):
            for metric, what in (("classification_loss", "classification loss"), ("alp_loss", "ALP loss")):
                get = lambda st: self.r.claim("table1", d, "alp", f"{st}/{metric}")  # noqa: E731
                _part(self.rows, c, d, f"{what} Inconsistent − Consistent (ALP)",
                      S.paired(get("inconsistent"), get("consistent")), +1, LOSS, self.p1_diff(d, metric))

    def slopes(self):
        c = self.by_id["alp_loss_diverges"]
        for d, _ in models(self.cfg, "fig04"):
            k = fitted_epochs(self.cfg, d)
            testable = k >= MIN_SLOPE_EPOCHS
            note = "" if testable else (
                f"untestable: {self.cfg['experiments'][d]['epochs']} epochs leave {k} in the fitted half (a line "
                f"through {k} points is one epoch's change); a slope needs at least {MIN_SLOPE_EPOCHS}, i.e. "
                f"{min_epochs_for_slope()} epochs")
            for st, direction in (("inconsistent", +1), ("consistent", -1)):
                _part(self.rows, c, d, f"slope of the {st.capitalize()} set's ALP loss",
                      list(self.r.claim("fig04", d, "alp", f"alp_slope_{st}").values()), direction, SLOPE,
                      state=None if testable else S.UNTESTABLE, note=note)

    def sweep(self):
        c = self.by_id["lambda_tradeoff"]
        sweeps: dict[tuple[str, str], list[tuple[float, str]]] = {}
        for d, base, _, run, value in sweep_runs(self.cfg):
            sweeps.setdefault((d, base), []).append((value, run))
        cols = attack_columns(self.cfg)
        for (d, base), runs in sweeps.items():
            (lo_v, lo_run), (hi_v, hi_run) = min(runs), max(runs)
            for metric, direction in zip(cols, [-1] + [+1] * (len(cols) - 1)):
                get = self.claim("fig06", d, metric)
                _part(self.rows, c, d, f"{metric} at lambda {hi_v:g} − at {lo_v:g} ({base.upper()})",
                      S.paired(get(hi_run), get(lo_run)), direction, ACC)

    def guided_dropout(self):
        """Table 3: each pair the set runs, named in the claim, with clean accuracy beside."""
        cols = attack_columns(self.cfg)
        pgd = next((a for a in cols if a.startswith("pgd")), None)
        for d, a, b in gd_pairs(self.cfg) if pgd else []:
            c = replace(self.by_id["gd_helps"], text=f"{self.by_id['gd_helps'].text} ({gd_tested(self.cfg, d)})")
            paper = lambda k: _paper(self.p3, (self.src[d], b), k) - _paper(self.p3, (self.src[d], a), k)  # noqa: E731
            acc = lambda m: self.claim("table3", d, m)  # noqa: E731
            get = lambda k: S.paired(acc(k)(b), acc(k)(a))  # noqa: E731
            _part(self.rows, c, d, f"{pgd} {label(b)} − {label(a)}", get(pgd), +1, ACC, paper(pgd))
            _beside(self.rows, c, d, f"clean {label(b)} − {label(a)}", get("clean"), 0, ACC, CLEAN_NOTE,
                    paper("clean"))

    def consistent(self):
        """Table 4: AALP − ALP in the Consistent share, clean accuracy beside."""
        c = self.by_id["aalp_consistent"]
        for d, _ in models(self.cfg, "table4"):
            share = self.claim("table4", d, "consistent_pct")
            of_ok = self.claim("table4", d, "consistent_pct_of_clean_correct")
            paper = (_paper(self.p4, self.src[d], "aalp_consistent_pct")
                     - _paper(self.p4, self.src[d], "alp_consistent_pct"))
            _part(self.rows, c, d, "Consistent % of all test samples AALP − ALP (the same as Table 2's train column)",
                  S.paired(share("aalp"), share("alp")), +1, ACC, paper)
            _part(self.rows, c, d, "Consistent % of the clean-correct samples AALP − ALP",
                  S.paired(of_ok("aalp"), of_ok("alp")), +1, ACC, counted=False, note=CLEAN_CORRECT_NOTE)
            self.clean_aalp_alp(c, d)

    def table2(self):
        """Table 2: AALP − ALP under every attack, and under AutoAttack as its own claim; clean accuracy beside."""
        attacks = self.cfg["evaluation"]["attacks"]
        claims = (("aalp_beats_alp", [a for a in attacks if a != "autoattack"], CLEAN_NOTE),
                  ("aalp_beats_alp_aa", [a for a in attacks if a == "autoattack"], CLEAN_NOTE + aa_samples(self.cfg)))
        for d, _ in models(self.cfg, "table4"):  # the datasets with ALP and AALP
            for cid, metrics, clean_note in claims:
                for metric in metrics:
                    acc = lambda m: self.r.accuracy(d, m, metric)  # noqa: E731
                    _part(self.rows, self.by_id[cid], d, f"{metric} AALP − ALP", S.paired(acc("aalp"), acc("alp")),
                          +1, ACC, self.p2_diff(d, metric))
                if metrics:
                    self.clean_aalp_alp(self.by_id[cid], d, clean_note)

    def converges(self):
        """Fig. 12: the last epoch's probe, AALP − ALP; clean accuracy and the unweighted ALP loss beside."""
        c = self.by_id["aalp_converges"]
        for d, _ in models(self.cfg, "fig12"):  # history.csv keeps probe accuracies as fractions: shown in percent
            probe = lambda k, scale=1.0: self.claim("fig12", d, f"final_probe_{k}", scale)  # noqa: E731
            pair = lambda get: S.paired(get("aalp"), get("alp"))  # noqa: E731
            _part(self.rows, c, d, "last-epoch probe adversarial accuracy AALP − ALP", pair(probe("adv_acc", 100.0)),
                  +1, ACC)
            _beside(self.rows, c, d, "last-epoch probe clean accuracy AALP − ALP", pair(probe("clean_acc", 100.0)),
                    0, ACC, CLEAN_NOTE)
            _part(self.rows, c, d, "last-epoch probe ALP loss AALP − ALP", pair(probe("alp")), -1, LOSS,
                  counted=False, note=AALP_ALP_LOSS_NOTE)


def verdicts(cfg: dict, report_dir: str | Path = "reports") -> pd.DataFrame:
    """One row per (claim, dataset, part), with the claim's combined verdict on that dataset (COLUMNS):
    paper_on (where the paper showed the claim), scope (the budget and setting the verdict holds at), unit,
    paper (the paper's value of the same quantity), mean, half (95% t half-width), n_seeds, sd, mde (smallest
    detectable difference) and margin, all in `unit`; part_verdict, counted and note (why a part is not
    counted or untestable)."""
    j = _Judge(cfg, Path(report_dir))
    j.features("fig01", "fewer_features", (("adv", "raw"), ("alp", "adv")))
    for step in (j.cam, j.sets, j.slopes, j.sweep):
        step()
    j.features("fig07", "aalp_fewer_features", (("aalp", "alp"),))
    for step in (j.guided_dropout, j.consistent, j.table2, j.converges):
        step()
    for p in cam_parts(report_dir):  # Figs. 8-10 (camclaims)
        _part(j.rows, j.by_id[p.claim_id], p.dataset, p.label, p.values, p.direction, Unit(p.unit, math.nan),
              state=p.state, counted=p.counted, note=p.note)
    df = pd.DataFrame(j.rows, columns=[c for c in COLUMNS if c not in ("paper_on", "scope", "verdict")])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    combined = {k: claim_verdict(g) for k, g in df.groupby(["claim_id", "dataset"], sort=False)}
    df["verdict"] = [combined[(a, b)] for a, b in zip(df.claim_id, df.dataset)]
    df["paper_on"] = df.claim_id.map({c.id: paper_showed(c) for c in CLAIMS})
    df["scope"] = df.dataset.map({d: scope(cfg, d) for d in cfg["experiments"]})
    return df[COLUMNS]


def missing_claims(cfg: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims the parameter set has no runs for (the index says which runs they need)."""
    have = set(table.claim_id) if len(table) else set()
    return [c for c in CLAIMS if c.id not in have]


def interval_text(row) -> str:
    return S.Interval(float(row["mean"]), float(row["half"]), int(row["n_seeds"])).text()
