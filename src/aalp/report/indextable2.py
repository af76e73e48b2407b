"""The front page's Table 2: every method's accuracy under every attack (and under its own training attack),
ours beside the paper's, with AutoAttack's cell also giving the strongest PGD-k on the same images, and the
evaluation's checks in the one text the Table 2 page shows too (masking.py)."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from .. import config as C
from . import stats as S
from .anchors import anchors, anchors_note, cell_anchors
from .claims import per_seed
from .labels import attack_name
from .masking import KIND_TEXT, fired_lists
from .units import DIFF_POINTS, UNITS, metric_label, no_paper_text, sample_counts



def attack_text(spec) -> str:
    """'PGD-10, step 0.075, random start' of a training attack (config.AttackSpec)."""
    parts = [f"PGD-{spec.steps}" if spec.steps else "FGSM", f"ε {spec.eps:g}", f"step {spec.step:g}"]
    parts += ["random start"] if spec.random_start else []
    return ", ".join(parts)


def train_text(cfg: dict) -> str:
    """What the 'training attack' column measures, per dataset: the attack each method trains on (and which
    defines its Consistent and Inconsistent sets); RAW, trained on clean images, is evaluated under the same."""
    out = []
    for d, e in cfg["experiments"].items():
        by: dict[str, list[str]] = {}
        for m in e["methods"]:
            by.setdefault(attack_text(C.train_attack(cfg, d, m)), []).append(m.upper().replace("_", " + "))
        what = "; ".join(f"{a} ({', '.join(ms)})" if len(by) > 1 else a for a, ms in by.items())
        out.append((f"{d}: " if len(cfg["experiments"]) > 1 else "") + what)
    return (f"The {metric_label('train', {})} column is accuracy under each method's own training attack ({'; '.join(out)}), "
            "the attack that defines its Consistent and Inconsistent sets; a method trained on clean images (RAW) "
            "is evaluated under it too.")


def _subset_cell(subset: pd.DataFrame, d: str, m: str) -> str:
    """'strongest PGD-k on the same N: x ± h' for AutoAttack's cell ('' without AutoAttack's subset)."""
    g = subset[(subset.dataset == d) & (subset.method == m)] if len(subset) else subset
    pgd = [k for k in g.metric.unique() if k.startswith("pgd") and k[3:].isdigit()] if len(g) else []
    if not pgd:
        return ""
    best = min(pgd, key=lambda k: g[g.metric == k].value.mean())
    iv = S.t_interval(g[g.metric == best].sort_values("seed").value.tolist())
    return (f"{attack_name(best)} on these {int(g.n_samples.max()):,}: "
            + (f"{iv.mean:.2f} ± {iv.half:.2f}" if iv.n > 1 else f"{iv.mean:.2f}"))


def table2_section(cfg: dict, out_dir: Path) -> dict:
    """Table 2, one block of rows per dataset: each cell the mean ± 95% t half-width over seeds (n per row,
    or per cell where a row's cells differ), the paper's number and the difference; the sample count in the
    heading of a column measured on fewer samples (AutoAttack), whose cell also gives the strongest PGD-k on
    the same samples; under the paper's number, independent implementations of the same protocol (anchors.py:
    per cell 'anchors', per dataset the sentence naming them); the sentence that replaces the paper's numbers on a
    dataset the paper did not use; the training-attack column and what it measures; and the checks that fired
    (masking.fired_lists)."""
    t = pd.read_csv(out_dir / "tables" / "table2.csv")
    checks = pd.read_csv(out_dir / "tables" / "table2_checks.csv")
    subset = pd.read_csv(out_dir / "tables" / "autoattack_subset.csv")
    metrics = [m for m in ["clean", *cfg["evaluation"]["attacks"], "train"] if m in set(t.metric)]
    t = t[t.metric.isin(metrics)]
    counts = sample_counts(t)
    datasets = []
    for d, gd in t.groupby("dataset", sort=False):
        rows = []
        source, model = gd.source.iloc[0], gd.model.iloc[0]
        anchor = anchors(source)
        for m, g in gd.groupby("method", sort=False):
            cells, ns = [], set()
            for metric in metrics:
                r = g[g.metric == metric]
                if r.empty:
                    cells.append(None)
                    continue
                r = r.iloc[0]
                iv = S.t_interval(list(per_seed(r).values()))
                ns.add(iv.n)
                cell = {"ours": f"{iv.mean:.2f} ± {iv.half:.2f}" if iv.n > 1 else f"{iv.mean:.2f}", "n": iv.n,
                        "paper": None, "same": _subset_cell(subset, d, m) if metric == "autoattack" else "",
                        "anchors": cell_anchors(anchor, m, metric, model)}
                paper = r["paper"]
                if isinstance(paper, float) and not math.isnan(paper):
                    delta = iv.mean - paper
                    cell.update(paper=f"{paper:.2f}", delta=f"{delta:+.2f}".replace("-", "−"),
                                far=abs(delta) > DIFF_POINTS)
                cells.append(cell)
            rows.append({"method": m, "n": ns.pop() if len(ns) == 1 else None, "cells": cells})
        has_paper = gd.paper.notna().any()
        datasets.append({"name": d, "source": source, "model": model, "rows": rows,
                         "no_paper": None if has_paper else no_paper_text(d, source, "table2"),
                         "anchors": anchors_note(anchor, model)})
    return {"metrics": [metric_label(m, counts) for m in metrics], "datasets": datasets, "units": UNITS, "diff_points": f"{DIFF_POINTS:g}",
            "n_checks": len(checks), "train": train_text(cfg) if "train" in metrics else "",
            "heads": KIND_TEXT, **fired_lists(checks)}
