"""A verdict on each claim of the paper, from the report's own claim and table files.

Each claim is a list of *parts*; a part is a per-seed quantity (usually a paired difference between two
models trained with the same seed and evaluated on the same test samples), its unit and the direction the
paper claims for it. A part's verdict comes from the 95% Student-t interval of its mean over seeds and the
equivalence margin of its unit (stats.verdict); beside it stands the smallest difference the seeds could
detect (stats.mde, paired t, 95%, power 80%). A part is *counted* unless it cannot be evidence: it holds by
construction, the method changes it by definition, or it is shown only beside the quantity that decides
(`note` says which). A claim's verdict on a dataset combines its counted parts (stats.combine). The paper's
number is shown where the paper has one (Tables 1-4); for its pictures the paper has none.

Reads only reports/claims/<item>.csv and reports/tables/table2.csv (their `seeds` and `values` columns).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import stats as S
from .camclaims import CAM_CLAIMS, cam_parts
from .claims import per_seed
from .figdata import second_half
from .inputs import attack_columns, gd_pairs, models, sweep_runs
from .paper import PAPER_DIR

COLUMNS = ["claim_id", "claim", "item", "dataset", "part", "direction", "unit", "paper", "mean", "half", "n_seeds",
           "sd", "mde", "margin", "part_verdict", "counted", "note", "verdict"]


@dataclass(frozen=True)
class Unit:
    text: str  # what a number of this unit is
    margin: float  # equivalence margin in this unit ([choice]); NaN: equivalence not assessed


ACCURACY_MARGIN = 1.0  # [choice] points of accuracy: "no difference larger than 1 point" (docs/method.md)
ACC = Unit("points of accuracy (%)", ACCURACY_MARGIN)
CONF = Unit("points of true-class probability (%)", math.nan)
LOSS = Unit("loss per sample (nats)", math.nan)
SLOPE = Unit("loss per epoch", math.nan)
N50 = Unit("features (of the D penultimate features)", math.nan)
CAM = Unit("fraction of the image's pixels", math.nan)
UNITS = [ACC, CONF, LOSS, SLOPE, N50, CAM]
MIN_SLOPE_EPOCHS = 3  # [choice] a slope needs at least this many epochs in the fitted (second) half

BY_CONSTRUCTION_NOTE = ("not counted: the sets are defined by whether the true class wins on x', so an Inconsistent "
                        "sample's true-class probability is at most 50% and a Consistent sample's is the largest "
                        "of all classes; the difference is negative by construction")
AALP_ALP_LOSS_NOTE = ("not counted: AALP multiplies each sample's ALP term by w_i = p(y|x) <= 1, lowering its weight "
                      "by design, so a higher unweighted ALP loss is expected and no evidence against AALP")
CLEAN_CORRECT_NOTE = ("not counted: shown beside the share of all test samples, the reading of the paper's Table 4 "
                      "(the paper's ALP shares lie below its own PGD accuracy; method page, Intervals and verdicts)")


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
    Claim("inconsistent_higher_loss", "ALP's failed (Inconsistent) samples have a higher classification loss and ALP "
          "loss under the training attack than its Consistent samples", "table1"),
    Claim("alp_loss_diverges", "During ALP training the Inconsistent set's ALP loss rises while the Consistent set's "
          "falls (slope per epoch, second half)", "fig04"),
    Claim("lambda_tradeoff", "A larger lambda trades clean accuracy for robustness (largest minus smallest swept value)",
          "fig06"),
    Claim("aalp_fewer_features", "AALP has fewer high-contribution features than ALP (n50)", "fig07"),
    Claim("gd_helps", "Guided Dropout improves the PGD accuracy of RAW, ADV and ALP", "table3"),
    Claim("aalp_consistent", "AALP increases the share of Consistent samples", "table4"),
    Claim("aalp_beats_alp", "AALP beats ALP under every attack of Table 2 (FGSM, PGD-k, CW-k)", "table2"),
    Claim("aalp_beats_alp_aa", "AALP's gain over ALP survives AutoAttack", "table2"),
    Claim("aalp_converges", "AALP converges better than ALP (last-epoch probe: adversarial accuracy up; the ALP loss "
          "is shown, not counted)", "fig12"),
]
CLAIMS += [Claim(*c) for c in CAM_CLAIMS]  # Figs. 8-10 (camclaims)


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


def _part(rows, claim, d, label, values, direction, unit: Unit, paper=math.nan, *, state: str | None = None,
          counted: bool = True, note: str = ""):
    """One row: the interval, sd and mde of `values` (per seed, in `unit`), and its verdict (`state` when the
    verdict does not come from the interval: untestable, holds by construction)."""
    iv = S.t_interval(values)
    if iv.zero_spread and not state:
        note = "; ".join(x for x in (note, S.ZERO_SPREAD) if x)
    rows.append({"claim_id": claim.id, "claim": claim.text, "item": claim.item, "dataset": d, "part": label,
                 "direction": direction, "unit": unit.text, "paper": paper, "mean": iv.mean, "half": iv.half,
                 "n_seeds": iv.n, "sd": iv.sd, "mde": S.mde(iv.sd, iv.n), "margin": unit.margin,
                 "part_verdict": state or S.verdict(iv, direction, unit.margin), "counted": counted, "note": note})


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


def verdicts(cfg: dict, report_dir: str | Path = "reports") -> pd.DataFrame:
    """One row per (claim, dataset, part), with the claim's combined verdict on that dataset (COLUMNS):
    unit, paper (the paper's value of the same quantity), mean, half (95% t half-width), n_seeds, sd, mde
    (smallest detectable difference) and margin, all in `unit`; part_verdict, counted and note (why a part
    is not counted or untestable)."""
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

    def p1_diff(d, metric):  # the paper's Table 1: Inconsistent minus Consistent
        return _paper(p1, (src[d], "inconsistent"), metric) - _paper(p1, (src[d], "consistent"), metric)

    c = by_id["fewer_features"]
    for d, ms in models(cfg, "fig01"):
        for m in ("adv", "alp"):
            _part(rows, c, d, f"n50 {m.upper()} − RAW", diff(lambda x: r.claim("fig01", d, x, "n50"), m, "raw"), -1, N50)
    c = by_id["cam_shrinks"]
    for d, ms in models(cfg, "fig02"):
        for m in ("adv", "alp"):
            _part(rows, c, d, f"CAM area {m.upper()} − RAW",
                  diff(lambda x: r.claim("fig02", d, x, "cam_area_adv"), m, "raw"), -1, CAM)
    c = by_id["failed_low_confidence"]
    for d, _ in models(cfg, "fig03"):
        inc = r.claim("fig03", d, "alp", "adv_conf_inconsistent", 100.0)
        con = r.claim("fig03", d, "alp", "adv_conf_consistent", 100.0)
        _part(rows, c, d, "adv. true-class confidence Inconsistent − Consistent (ALP)", S.paired(inc, con), -1, CONF,
              p1_diff(d, "adv_gt_confidence"), state=S.BY_CONSTRUCTION, counted=False, note=BY_CONSTRUCTION_NOTE)
    c = by_id["inconsistent_higher_loss"]
    for d, _ in models(cfg, "table1"):
        for metric, what in (("classification_loss", "classification loss"), ("alp_loss", "ALP loss")):
            _part(rows, c, d, f"{what} Inconsistent − Consistent (ALP)",
                  diff(lambda st: r.claim("table1", d, "alp", f"{st}/{metric}"), "inconsistent", "consistent"), +1,
                  LOSS, p1_diff(d, metric))
    c = by_id["alp_loss_diverges"]
    for d, _ in models(cfg, "fig04"):
        k = fitted_epochs(cfg, d)
        testable = k >= MIN_SLOPE_EPOCHS
        note = "" if testable else (f"untestable: {cfg['experiments'][d]['epochs']} epochs leave {k} in the fitted half "
                                    f"(a line through {k} points is one epoch's change); a slope needs at least "
                                    f"{MIN_SLOPE_EPOCHS}, i.e. {min_epochs_for_slope()} epochs")
        for st, direction in (("inconsistent", +1), ("consistent", -1)):
            _part(rows, c, d, f"slope of the {st.capitalize()} set's ALP loss",
                  list(r.claim("fig04", d, "alp", f"alp_slope_{st}").values()), direction, SLOPE,
                  state=None if testable else S.UNTESTABLE, note=note)
    c = by_id["lambda_tradeoff"]
    sweeps: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for d, base, param, run, value in sweep_runs(cfg):
        sweeps.setdefault((d, base), []).append((value, run))
    cols = attack_columns(cfg)
    for (d, base), runs in sweeps.items():
        (lo_v, lo_run), (hi_v, hi_run) = min(runs), max(runs)
        for metric, direction in zip(cols, [-1] + [+1] * (len(cols) - 1)):
            _part(rows, c, d, f"{metric} at lambda {hi_v:g} − at {lo_v:g} ({base.upper()})",
                  diff(lambda x: r.claim("fig06", d, x, metric), hi_run, lo_run), direction, ACC)
    c = by_id["aalp_fewer_features"]
    for d, _ in models(cfg, "fig07"):
        _part(rows, c, d, "n50 AALP − ALP", diff(lambda x: r.claim("fig07", d, x, "n50"), "aalp", "alp"), -1, N50)
    c = by_id["gd_helps"]
    pgd = next((a for a in cols if a.startswith("pgd")), None)
    for d, a, b in gd_pairs(cfg) if pgd else []:
        paper = _paper(p3, (src[d], b), pgd) - _paper(p3, (src[d], a), pgd)
        _part(rows, c, d, f"{pgd} {b.upper()} − {a.upper()}", diff(lambda x: r.claim("table3", d, x, pgd), b, a), +1,
              ACC, paper)
    c = by_id["aalp_consistent"]
    for d, _ in models(cfg, "table4"):
        paper = _paper(p4, src[d], "aalp_consistent_pct") - _paper(p4, src[d], "alp_consistent_pct")
        _part(rows, c, d, "Consistent % of all test samples AALP − ALP (the same as Table 2's train column)",
              diff(lambda x: r.claim("table4", d, x, "consistent_pct"), "aalp", "alp"), +1, ACC, paper)
        _part(rows, c, d, "Consistent % of the clean-correct samples AALP − ALP",
              diff(lambda x: r.claim("table4", d, x, "consistent_pct_of_clean_correct"), "aalp", "alp"), +1, ACC,
              counted=False, note=CLEAN_CORRECT_NOTE)
    for d, _ in models(cfg, "table4"):  # the datasets with ALP and AALP
        every = [a for a in cfg["evaluation"]["attacks"] if a != "autoattack"]  # every attack of Table 2, in order
        for cid, metrics in (("aalp_beats_alp", every),
                             ("aalp_beats_alp_aa", ["autoattack"] if "autoattack" in cfg["evaluation"]["attacks"] else [])):
            for metric in metrics:
                paper = _paper(p2, (src[d], "aalp"), metric) - _paper(p2, (src[d], "alp"), metric)
                _part(rows, by_id[cid], d, f"{metric} AALP − ALP",
                      diff(lambda x: r.accuracy(d, x, metric), "aalp", "alp"), +1, ACC, paper)
    c = by_id["aalp_converges"]
    for d, _ in models(cfg, "fig12"):  # history.csv keeps probe accuracies as fractions: shown in percent
        _part(rows, c, d, "last-epoch probe adversarial accuracy AALP − ALP",
              diff(lambda x: r.claim("fig12", d, x, "final_probe_adv_acc", 100.0), "aalp", "alp"), +1, ACC)
        _part(rows, c, d, "last-epoch probe ALP loss AALP − ALP",
              diff(lambda x: r.claim("fig12", d, x, "final_probe_alp"), "aalp", "alp"), -1, LOSS,
              counted=False, note=AALP_ALP_LOSS_NOTE)
    for p in cam_parts(report_dir):  # Figs. 8-10 (camclaims)
        _part(rows, by_id[p.claim_id], p.dataset, p.label, p.values, p.direction, Unit(p.unit, math.nan),
              state=p.state, counted=p.counted, note=p.note)

    df = pd.DataFrame(rows, columns=COLUMNS[:-1])
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    combined = {k: claim_verdict(g) for k, g in df.groupby(["claim_id", "dataset"], sort=False)}
    df["verdict"] = [combined[(a, b)] for a, b in zip(df.claim_id, df.dataset)]
    return df[COLUMNS]


def paper_gains(metrics: list[str]) -> dict[str, dict[str, float]]:
    """{paper dataset: {metric: AALP − ALP}} of the paper's Table 2 (points of accuracy), for the metrics
    the paper's table has."""
    p2 = pd.read_csv(PAPER_DIR / "table2_defense.csv").set_index(["dataset", "method"])
    cols = [m for m in metrics if m in p2.columns]
    sources = dict.fromkeys(d for d, _ in p2.index)
    return {src: {m: float(p2.loc[(src, "aalp"), m] - p2.loc[(src, "alp"), m]) for m in cols}
            for src in sources if cols and (src, "alp") in p2.index and (src, "aalp") in p2.index}


PAPER_NAMES = {"mnist": "MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10"}


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


def missing_claims(cfg: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims the parameter set has no runs for (the index says which runs they need)."""
    have = set(table.claim_id) if len(table) else set()
    return [c for c in CLAIMS if c.id not in have]


def interval_text(row) -> str:
    return S.Interval(float(row["mean"]), float(row["half"]), int(row["n_seeds"])).text()
