"""reports/index.html, the page a reader opens first: the verdict on each claim, Table 2 beside the paper's,
a tile per figure and table, and where every number came from; with it the method page and claims.json.
This is what the pipeline's `report` stage runs (`python -m aalp report --index`).

Self-contained: relative links only, images are the files under figures/, no scripts, one bundled maths font (fonts/), nothing
fetched from the network; the method page is rendered next to it (method.html) so that the [choice] links
work when the folder is zipped and opened elsewhere. The HTML is templates/index.html.j2; this module
only gathers what it shows.
"""
from __future__ import annotations

import hashlib
import json
import math
from importlib import metadata
from pathlib import Path

import pandas as pd

from .. import config as C
from ..artifacts import atomic_path, read_json
from ..core.checks import COLLAPSE_FLAGS
from ..layout import CLAIMS, REPORT_ITEMS, TITLES, fingerprint, index_outputs, run_dir
from . import stats as S
from .claims import claims_dict, per_seed
from .inputs import REPORT_NOTEBOOKS, needs as item_needs
from .cite import cite_block
from .methodpage import choices, write_method_page
from .pages import render_template
from .protocol import deviations, method_seeds
from .units import UNITS, metric_label, no_paper_text, sample_counts
from .scope import scope, undecided
from .verdicts import ACCURACY_MARGIN, MIN_SLOPE_EPOCHS, interval_text, missing_claims, resolution, verdicts

RESOURCES = ["src/aalp/report/templates/index.html.j2"]
PACKAGES = ["torch", "torchvision", "torchattacks", "captum", "numpy", "pandas", "scipy", "matplotlib", "papermill",
            "snakemake", "dvc"]
FLAG_TEXT = {"pgd_above_fgsm": "PGD accuracy above FGSM", "autoattack_above_pgd": "AutoAttack accuracy above PGD",
             "cw_steps_increase": "CW accuracy rises with more steps", "pgd_steps_increase": "PGD accuracy rises with more steps",
             "pgd_far_above_cw": "PGD accuracy far above CW (CE gradients masked?)",
             "fgsm_far_above_cw": "FGSM accuracy far above CW (CE gradients masked?)",
             "pgd_far_above_autoattack": "PGD accuracy far above AutoAttack (gradient masking?)",
             "fgsm_far_above_autoattack": "FGSM accuracy far above AutoAttack (gradient masking?)",
             "fgsm_far_above_pgd": "FGSM accuracy far above PGD (catastrophic overfitting?)",
             "clean_at_chance": "clean accuracy at or under chance (a collapsed model: every attack leaves the same)",
             "predictions_one_class": "clean predictions concentrated on one class (a collapsed model?)"}
DIFF_POINTS = 2.0  # Table 2: ours against the paper's, highlighted beyond this many points
FIG05_NOTE = ("Fig. 5 (the method's diagram) is not reproduced: it is a schematic of the training step, not data; "
              "docs/method.md states the same method as equations.")
VERDICT_CLASS = {S.HOLDS: "holds", S.FAILS: "fails", S.INCONCLUSIVE: "inconclusive", S.EQUIVALENT: "equivalent",
                 S.UNTESTABLE: "untestable", S.BY_CONSTRUCTION: "construction", S.BESIDE: "beside"}
WANT = {1: "claimed > 0", -1: "claimed < 0", 0: "no direction claimed"}  # a part's claimed side of 0, by its direction


def _num(x, fmt="{:.2f}") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


# ----------------------------------------------------------------------------- what each section shows
def verdict_section(cfg: dict, table: pd.DataFrame, needs: dict[str, str]) -> dict:
    """The verdict table grouped by (claim, dataset), each claim with where the paper showed it and the budget
    its verdict holds at (scope), each part with its unit, smallest detectable difference (mde) and equivalence
    margin; per dataset its scope and what the set cannot decide (scope.undecided); the claims without runs;
    and a summary: the claim verdicts counted, how many parts the seeds could not resolve, and the typical mde
    against the paper's claimed gains."""
    groups = []
    for (_, d), g in table.groupby(["claim_id", "dataset"], sort=False):
        v = g.verdict.iloc[0]
        first = g.iloc[0]
        parts = []
        for r in g.itertuples(index=False):
            mde = "— (1 seed)" if r.n_seeds < 2 else "— (zero spread)" if S.is_zero_spread(r.n_seeds, r.half) else _num(r.mde, "{:.2g}")
            parts.append({"part": r.part, "want": WANT[(r.direction > 0) - (r.direction < 0)], "unit": r.unit,
                          "paper": _num(r.paper, "{:+.3g}"), "cls": VERDICT_CLASS[r.part_verdict],
                          "interval": interval_text(r._asdict()), "mde": mde,
                          "margin": f"±{r.margin:g}" if r.margin == r.margin else "not assessed",
                          "verdict": r.part_verdict, "counted": bool(r.counted),
                          "note": r.note if isinstance(r.note, str) else ""})
        at = "" if v == S.BY_CONSTRUCTION else f"at {first.scope}"  # a verdict by construction holds at any budget
        groups.append({"claim": first.claim, "item": first["item"], "dataset": d, "verdict": v, "at": at,
                       "paper_on": first.paper_on, "cls": VERDICT_CLASS[v], "parts": parts})
    missing = [{"text": c.text, "item": c.item, "needs": needs.get(c.item) or "needs runs"}
               for c in missing_claims(cfg, table)]
    scopes = [{"dataset": d, "scope": scope(cfg, d), "undecided": undecided(cfg, d)}
              for d in dict.fromkeys(table.dataset)] if len(table) else []
    counts = table.drop_duplicates(["claim_id", "dataset"]).verdict.value_counts() if len(table) else pd.Series(dtype=int)
    shown = [v for v in S.PART_VERDICTS if v in (S.HOLDS, S.FAILS, S.INCONCLUSIVE) or counts.get(v, 0)]
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in shown) + " (claim × dataset)."
    if len(table) and (table.n_seeds <= 1).all():
        summary += " Every number here comes from one seed, so there is no interval, no smallest detectable " \
                   "difference and no verdict can be reached: run more seeds (seeds, or run_seeds for single runs)."
    elif len(table):
        summary += " " + resolution(cfg, table)
    return {"summary": summary, "groups": groups, "missing": missing, "scopes": scopes,
            "margin": f"{ACCURACY_MARGIN:g}", "min_slope_epochs": MIN_SLOPE_EPOCHS}


def table2_section(cfg: dict, out_dir: Path) -> dict:
    """Table 2, one block of rows per dataset: each cell the mean ± 95% t half-width over seeds (n per row,
    or per cell where a row's cells differ), the paper's number and the difference; the sample count in the
    heading of a column measured on fewer samples (AutoAttack); the sentence that replaces the paper's
    numbers on a dataset the paper did not use; and the gradient-masking checks that fired."""
    t = pd.read_csv(out_dir / "tables" / "table2.csv")
    checks = pd.read_csv(out_dir / "tables" / "table2_checks.csv")
    metrics = [m for m in ["clean", *cfg["evaluation"]["attacks"]] if m in set(t.metric)]
    t = t[t.metric.isin(metrics)]
    counts = sample_counts(t)
    datasets = []
    for d, gd in t.groupby("dataset", sort=False):
        rows = []
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
                        "paper": None}
                paper = r["paper"]
                if isinstance(paper, float) and not math.isnan(paper):
                    delta = iv.mean - paper
                    cell.update(paper=f"{paper:.2f}", delta=f"{delta:+.2f}".replace("-", "−"),
                                far=abs(delta) > DIFF_POINTS)
                cells.append(cell)
            rows.append({"method": m, "n": ns.pop() if len(ns) == 1 else None, "cells": cells})
        source = gd.source.iloc[0]
        has_paper = gd.paper.notna().any()
        datasets.append({"name": d, "source": source, "model": gd.model.iloc[0], "rows": rows,
                         "no_paper": None if has_paper else no_paper_text(d, source, "table2")})
    fired = checks[checks.fired.astype(bool)] if len(checks) else checks
    return {"metrics": [metric_label(m, counts) for m in metrics], "datasets": datasets, "units": UNITS,
            "diff_points": f"{DIFF_POINTS:g}", "n_checks": len(checks),
            **fired_lists(cfg, t, fired)}


def fired_lists(cfg: dict, table2: pd.DataFrame, fired: pd.DataFrame) -> dict[str, list[str]]:
    """The fired checks, one line per run and check, split in three: 'collapsed', the collapse checks (a model
    that predicts one class, whose accuracies measure no robustness); 'warn', the checks that point to a weak
    attack, masked gradients or catastrophic overfitting; and 'explained', those short_pgd_note explains (no sign
    of masking), which the page folds away so that the warnings are not lost among them."""
    out = {"warn": [], "explained": [], "collapsed": []}
    for r in fired.itertuples():
        note = short_pgd_note(cfg, table2, r)
        kind = "collapsed" if r.check in COLLAPSE_FLAGS else "explained" if note else "warn"
        out[kind].append(f"{r.dataset}/{r.method} seed {r.seed}: {FLAG_TEXT.get(r.check, r.check)}{note}")
    return out


def short_pgd_note(cfg: dict, table2: pd.DataFrame, flag) -> str:
    """For a fired pgd_above_fgsm whose PGD-k above FGSM all travel less than eps (k · step < eps, the
    evaluation's step): why that is no sign of masking. PGD-k moves at most k · step from its random start,
    while FGSM's one step puts every pixel at ±eps, so a short PGD can leave more accuracy than FGSM on a
    model that large perturbations break. '' otherwise."""
    if flag.check != "pgd_above_fgsm":
        return ""
    att = cfg["experiments"][flag.dataset]["attack"]
    eps, step = float(att["eps"]), float(att["step"])
    g = table2[(table2.dataset == flag.dataset) & (table2.method == flag.method)]

    def acc(metric):
        r = g[g.metric == metric]
        return per_seed(r.iloc[0]).get(int(flag.seed)) if len(r) else None

    fgsm = acc("fgsm")
    above = [(m, int(m[3:]), a) for m in g.metric.unique() if m.startswith("pgd") and m[3:].isdigit()
             for a in [acc(m)] if a is not None and fgsm is not None and a > fgsm]
    if not above or any(k * step >= eps for _, k, _ in above):
        return ""
    which = ", ".join(f"PGD-{k} {a:.1f}" for _, k, a in above)
    reach = max(k for _, k, _ in above) * step
    return (f" ({which} against FGSM {fgsm:.1f}): these travel at most {reach:g} from their random start at step "
            f"{step:g}, less than eps {eps:g}, while FGSM's one step moves every pixel by eps; not a sign of masking")


def tiles(table: pd.DataFrame, needs: dict[str, str]) -> list[dict]:
    """One tile per figure and table: its title, thumbnail and the numbers that decide its claim."""
    out = []
    for item in REPORT_ITEMS:
        rows = table[table["item"] == item] if len(table) else table
        decisive = "; ".join(f"{r.dataset}: {r.part} = {interval_text(r._asdict())}" for r in rows.itertuples(index=False))
        out.append({"item": item, "title": TITLES[item], "figure": item.startswith("fig"),
                    "note": needs.get(item) or decisive})
    return out


def seeds_text(cfg: dict) -> str:
    """How many seeds the page's numbers rest on, per method where the methods differ: '3 seeds (0, 1, 2)' when
    every run name of every dataset has the same seeds, else '1–2 seeds per method (RAW 2 (0, 1); ALP 1 (0))'.
    A set published in slices has different seeds per method (run_seeds), and the set's `seeds` would overstate
    what an ALP or AALP row rests on."""
    per = method_seeds(cfg)
    distinct = {tuple(s) for s in per.values()}
    if len(distinct) == 1:
        ss = next(iter(distinct))
        return f"{len(ss)} seed{'s' if len(ss) != 1 else ''} ({', '.join(map(str, ss))})"

    def run_text(m, ss):
        return f"{m.upper().replace('_', ' + ')} {len(ss)} ({', '.join(map(str, ss))})"

    parts = []
    for d in cfg["experiments"]:
        text = "; ".join(run_text(m, ss) for (dd, m), ss in per.items() if dd == d)
        parts.append(f"{d}: {text}" if len(cfg["experiments"]) > 1 else text)
    lo, hi = min(len(s) for s in distinct), max(len(s) for s in distinct)
    return f"{lo}–{hi} seeds per method (" + "; ".join(parts) + ")"


def device_text(run: dict) -> str:
    """The device a run.json records, with the accelerator's name where it has one: 'cuda (NVIDIA H200)'."""
    name = run.get("device_name")
    return run["device"] if not name or name == run["device"] else f"{run['device']} ({name})"


def runs(cfg: dict) -> list[dict]:
    """The provenance of every run: code version, a fingerprint of its training params, device, wall times."""
    out = []
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        run = read_json(rd / "run.json")
        ev = read_json(rd / "eval" / "eval.json")
        out.append({"dataset": d, "method": m, "seed": s, "code_version": run["code_version"],
                    "fingerprint": hashlib.sha256(fingerprint(cfg, "train", d, m).encode()).hexdigest()[:12],
                    "device": device_text(run), "train_seconds": run["train_seconds"],
                    "attack_seconds": sum(ev["attack_seconds"].values())})
    return out


def versions() -> str:
    got = []
    for p in PACKAGES:
        try:
            got.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(got)


# ----------------------------------------------------------------------------- the page
def write_index(cfg: dict, out_dir: Path, needs: dict[str, str]) -> pd.DataFrame:
    """Write index.html, method.html and tables/verdicts.csv; return the verdict table."""
    out_dir = Path(out_dir)
    table = verdicts(cfg, out_dir)
    html = render_template(
        "index.html.j2", title=f"AALP report ({cfg['profile']})", back=False, profile=cfg["profile"],
        description=cfg.get("description"), seeds=seeds_text(cfg),
        datasets=[{"name": d, "model": e["model"], "n_methods": len(e["methods"])} for d, e in cfg["experiments"].items()],
        deviations=deviations(cfg), verdicts=verdict_section(cfg, table, needs), table2=table2_section(cfg, out_dir),
        fig05_note=FIG05_NOTE,
        tiles=tiles(table, needs), runs=runs(cfg), choices=choices(cfg), packages=versions(), cite=cite_block())
    with atomic_path(out_dir / "tables" / "verdicts.csv") as tmp:
        table.to_csv(tmp, index=False)
    write_method_page(cfg, out_dir)
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(html)
    return table


def report_index(cfg: dict, out_dir: str | Path = "reports") -> None:
    """The front page (with the verdicts), the method page and claims.json, from the files the item stages
    wrote (claims/*.csv, tables/table2*.csv) and the runs' provenance (run.json, eval.json)."""
    out_dir = Path(out_dir)
    claims = {n: pd.read_csv(out_dir / "claims" / f"{n}.csv") for n in CLAIMS}
    write_index(cfg, out_dir, {nb: item_needs(cfg, nb) for nb in REPORT_NOTEBOOKS})
    with atomic_path(out_dir / "claims.json") as tmp:
        tmp.write_text(json.dumps(claims_dict(claims), indent=1, sort_keys=True) + "\n")
    missing = [p for p in index_outputs(out_dir) if not Path(p).is_file()]
    if missing:
        raise RuntimeError(f"the report did not write {', '.join(missing)}")
