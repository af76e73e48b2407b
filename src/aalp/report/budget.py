"""The budget curve: AALP − ALP (paired by seed, 95% t interval over seeds) against the training steps, per attack
of evaluation.snapshot_attacks, every point on the same test images (the first evaluation.snapshot_samples, or
the fewer that AutoAttack ran on, which each point's n_samples says):

- snapshot: the evaluated training snapshots of ALP and AALP (snapshots/step<N>/metrics.json);
- final: the final models, from their records.parquet restricted to those first images;
- reference: another published set (report.budget_reference) at its own final step, from its records on the
  same first images, or from its tables/table2.csv (all its evaluated images) where it has no records;
- paper: the paper's own AALP − ALP (its Table 2) at the paper set's budget, where the paper has the attack.

What budgetplan.py names is read here; the notebook only draws data/budget.csv."""
from __future__ import annotations

import math

import pandas as pd

from . import stats as S
from .budgetplan import PAIR, budget_datasets, final_step, reference, snapshot_steps, training_label
from .claims import claims_frame, frame, per_seed
from .inputs import load_csv, load_json, load_parquet, metrics_path, records_path, seeds, track
from .paper import paper_table2
from .protocol import counterpart, paper_params
from ..layout import snapshot_dir

COLUMNS = ["dataset", "attack", "point", "step", "training", "source", "n_samples", "n_seeds", "seeds", "values",
           "mean", "half", "alp_mean", "aalp_mean"]
METHOD = "aalp-alp"  # the claims' method column: the paired difference


def _count(counts: set[int], what: str) -> int:
    """The one sample count of a point's accuracies; a point never mixes counts."""
    if len(counts) != 1:
        raise RuntimeError(f"the budget curve's {what} mixes sample counts {sorted(counts)}: evaluate every run "
                           "of the point on the same images")
    return counts.pop()


def _row(d, attack, point, step, training, source, n, acc: dict[str, dict[int, float]]) -> dict:
    diffs = {s: acc["aalp"][s] - acc["alp"][s] for s in sorted(set(acc["alp"]) & set(acc["aalp"]))}
    iv = S.t_interval(list(diffs.values()))
    mean = lambda m: sum(acc[m].values()) / len(acc[m]) if acc[m] else math.nan  # noqa: E731
    return {"dataset": d, "attack": attack, "point": point, "step": int(step), "training": training, "source": source,
            "n_samples": n, "n_seeds": iv.n, "seeds": ";".join(map(str, diffs)),
            "values": ";".join(repr(float(v)) for v in diffs.values()), "mean": iv.mean,
            "half": iv.half if iv.n > 1 else math.nan, "alp_mean": mean("alp"), "aalp_mean": mean("aalp")}


def snapshot_rows(cfg: dict, d: str) -> list[dict]:
    """One row per snapshot step and attack, from the snapshots' metrics.json."""
    rows = []
    for step in snapshot_steps(cfg, d):
        mets = {(m, s): load_json(snapshot_dir(d, m, s, step) / "metrics.json") for m in PAIR for s in seeds(cfg, d, m)}
        for a in cfg["evaluation"]["snapshot_attacks"]:
            have = {k: met for k, met in mets.items() if a in met["accuracy"]}
            if not have:
                continue
            n = _count({int(met.get("n_samples_autoattack" if a == "autoattack" else "n_samples", met.get("n_samples")))
                        for met in have.values()}, f"step {step:,} under {a}")
            acc = {m: {s: float(met["accuracy"][a]) for (mm, s), met in have.items() if mm == m} for m in PAIR}
            rows.append(_row(d, a, "snapshot", step, training_label(cfg, d), "snapshot metrics.json", n, acc))
    return rows


def records_accuracy(records: pd.DataFrame, attack: str, n: int) -> float:
    """Accuracy (percent) under `attack` on the first n test samples of a run's records."""
    first = records[records["sample"] < n]
    return 100.0 * float((first[f"{attack}_pred"] == first.label).mean())


def records_rows(cfg: dict, d: str, point: str, step: int, training: str, runs, limit: int) -> list[dict]:
    """One row per attack from records.parquet (runs: {(method, seed): (records path, metrics path)}) on the first
    `limit` samples, or the fewer the records hold, or, for AutoAttack, the fewer it ran on (metrics.json's
    n_samples_autoattack)."""
    recs = {k: (load_parquet(r), load_json(mp)) for k, (r, mp) in runs.items()}
    rows = []
    for a in cfg["evaluation"]["snapshot_attacks"]:
        have = {k: v for k, v in recs.items() if f"{a}_pred" in v[0] and (a != "autoattack" or v[1].get("n_samples_autoattack"))}
        if not have:
            continue
        per = {k: min(limit, int((r["sample"] < limit).sum()),
                      int(met["n_samples_autoattack"]) if a == "autoattack" else limit) for k, (r, met) in have.items()}
        n = _count(set(per.values()), f"{point} point under {a}")
        acc = {m: {s: records_accuracy(r, a, n) for (mm, s), (r, _) in have.items() if mm == m} for m in PAIR}
        first = f"records.parquet, the first {n:,} test images"
        rows.append(_row(d, a, point, step, training, first, n, acc))
    return rows


def final_rows(cfg: dict, d: str) -> list[dict]:
    runs = {(m, s): (records_path(d, m, s), metrics_path(d, m, s)) for m in PAIR for s in seeds(cfg, d, m)}
    return records_rows(cfg, d, "final", final_step(cfg, d, "aalp"), training_label(cfg, d), runs,
                        int(cfg["evaluation"]["snapshot_samples"]))


def reference_rows(cfg: dict, d: str) -> list[dict]:
    """The reference set's point (report.budget_reference), from its records on the same first images or, where
    it has none, its table2.csv's per-seed values (over the images it evaluated)."""
    ref = reference(cfg, d)
    if ref is None:
        return []
    track(ref.params)  # read by budgetplan.reference
    if ref.records:
        runs = {(m, s): (ref.run(m, s) / "eval" / "records.parquet", ref.run(m, s) / "eval" / "metrics.json")
                for m in PAIR for s in ref.seeds(m)}
        return records_rows(cfg, d, "reference", ref.step, ref.training, runs, int(cfg["evaluation"]["snapshot_samples"]))
    t = load_csv(ref.table2)
    t = t[t.dataset == ref.dataset]
    rows = []
    for a in cfg["evaluation"]["snapshot_attacks"]:
        got = {m: t[(t.method == m) & (t.metric == a)] for m in PAIR}
        if any(g.empty for g in got.values()):
            continue
        n = _count({int(g.n_samples.iloc[0]) for g in got.values()}, f"reference point under {a}")
        rows.append(_row(d, a, "reference", ref.step, ref.training, f"{ref.name}'s table2.csv, all its {n:,} test images",
                         n, {m: per_seed(g.iloc[0]) for m, g in got.items()}))
    return rows


def paper_rows(cfg: dict, d: str) -> list[dict]:
    """The paper's AALP − ALP (its Table 2) at the paper set's budget (the repository's params.yaml), for each
    snapshot attack the paper reports on d's source."""
    paper = paper_params()
    pd_ = counterpart(cfg, paper, d)[0] if paper else None
    if pd_ is None or not all(m in paper["experiments"][pd_]["methods"] for m in PAIR):
        return []
    t = paper_table2()
    t = t[t.dataset == cfg["datasets"][d]["source"]]
    rows = []
    for a in cfg["evaluation"]["snapshot_attacks"]:
        v = {m: t[(t.method == m) & (t.metric == a)].paper for m in PAIR}
        if all(len(x) and pd.notna(x.iloc[0]) for x in v.values()):
            rows.append({"dataset": d, "attack": a, "point": "paper", "step": final_step(paper, pd_, "aalp"),
                         "training": f"the paper's Table 2, {training_label(paper, pd_)} (the paper set's budget)",
                         "source": "the paper's Table 2",
                         "n_samples": math.nan, "n_seeds": 0, "seeds": "", "values": "",
                         "mean": float(v["aalp"].iloc[0] - v["alp"].iloc[0]), "half": math.nan,
                         "alp_mean": float(v["alp"].iloc[0]), "aalp_mean": float(v["aalp"].iloc[0])})
    return rows


def budget_curve(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """data/budget.csv (COLUMNS: one row per dataset, attack and point, in step order) and the claims: per seed,
    AALP − ALP at each snapshot step and at the final step ('step<N>/<attack>', method 'aalp-alp')."""
    rows = []
    order = {a: i for i, a in enumerate(cfg["evaluation"]["snapshot_attacks"])}
    for d in budget_datasets(cfg):
        here = snapshot_rows(cfg, d) + final_rows(cfg, d) + reference_rows(cfg, d) + paper_rows(cfg, d)
        rows += sorted(here, key=lambda r: (order[r["attack"]], r["step"]))
    data = frame(rows, COLUMNS)
    claims = [{"dataset": r.dataset, "method": METHOD, "claim": f"step{int(r.step)}/{r.attack}", "seed": s, "value": v}
              for r in data.itertuples() if r.point in ("snapshot", "final") for s, v in per_seed(r._asdict()).items()]
    return data, claims_frame(claims)
