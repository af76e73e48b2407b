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
from ..layout import CLAIMS, FIGURES, REPORT_ITEMS, TITLES, fingerprint, index_outputs, run_dir
from . import stats as S
from .claims import claims_dict
from .finding import finding_section
from .indextable2 import table2_section
from .inputs import REPORT_NOTEBOOKS, needs as item_needs
from .cite import cite_block
from .methodpage import choices, write_method_page
from .pages import render_template
from .protocol import deviations, method_seeds
from .resumed import resumed_runs
from .scope import scope, undecided
from .verdicts import ACCURACY_MARGIN, MIN_SLOPE_EPOCHS, interval_text, missing_claims, resolution, verdicts

RESOURCES = ["src/aalp/report/templates/index.html.j2"]
PACKAGES = ["torch", "torchvision", "torchattacks", "captum", "numpy", "pandas", "scipy", "matplotlib", "papermill",
            "snakemake", "dvc"]
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


def tiles(table: pd.DataFrame, needs: dict[str, str]) -> list[dict]:
    """One tile per figure and table: its title, thumbnail and the numbers that decide its claim."""
    out = []
    for item in REPORT_ITEMS:
        rows = table[table["item"] == item] if len(table) else table
        decisive = "; ".join(f"{r.dataset}: {r.part} = {interval_text(r._asdict())}" for r in rows.itertuples(index=False))
        out.append({"item": item, "title": TITLES[item], "figure": item in FIGURES and not needs.get(item),
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
    analysed = set(C.runs(cfg, sweeps=False))
    resumed = resumed_runs(cfg)
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        run = read_json(rd / "run.json")
        ev = read_json(rd / "eval" / "eval.json")
        an = rd / "analysis" / "summary.json"
        out.append({"dataset": d, "method": m, "seed": s, "code_version": run["code_version"],
                    "fingerprint": hashlib.sha256(fingerprint(cfg, "train", d, m).encode()).hexdigest()[:12],
                    "device": device_text(run), "train_seconds": run["train_seconds"],
                    "attack_seconds": sum(ev["attack_seconds"].values()), "resumed": resumed.get((d, m, s), ""),
                    "hashes": {"train": run.get("code_hash"), "evaluate": ev.get("code_hash"),
                               "analyze": read_json(an).get("code_hash") if (d, m, s) in analysed else None}})
    return out


STAGE_NAMES = {"train": "training", "evaluate": "evaluation", "analyze": "analysis"}


def code_summary(rows: list[dict]) -> dict:
    """What makes the runs one set: per stage, the code hashes its runs recorded (a digest of the source files
    the stage imports) with their run counts; and how many git commits, and dirty ones, the runs came from."""
    stages = []
    for stage, name in STAGE_NAMES.items():
        hashes = pd.Series([r["hashes"][stage] for r in rows if r["hashes"].get(stage)], dtype=object)
        if len(hashes):
            stages.append({"stage": name, "n": len(hashes),
                           "hashes": [{"hash": h, "runs": int(c)} for h, c in hashes.value_counts().items()]})
    commits = {r["code_version"] for r in rows}
    return {"stages": stages, "runs": len(rows), "commits": len(commits),
            "dirty": sum(c.endswith("+dirty") for c in commits),
            "devices": [{"device": dv, "runs": int(c)} for dv, c in
                        pd.Series([r["device"] for r in rows], dtype=object).value_counts().items()]}


def rendered() -> dict:
    """When (UTC, to the minute) and from which code version this report was rendered."""
    import datetime as dt

    from ..artifacts import code_version

    return {"when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "commit": code_version()}


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
    provenance = runs(cfg)
    html = render_template(
        "index.html.j2", title=f"AALP report ({cfg['profile']})", back=False, profile=cfg["profile"],
        description=cfg.get("description"), seeds=seeds_text(cfg),
        datasets=[{"name": d, "model": e["model"], "n_methods": len(e["methods"])} for d, e in cfg["experiments"].items()],
        deviations=deviations(cfg), verdicts=verdict_section(cfg, table, needs), table2=table2_section(cfg, out_dir),
        fig05_note=FIG05_NOTE,
        tiles=tiles(table, needs), runs=provenance, code=code_summary(provenance), rendered=rendered(),
        findings=finding_section(cfg, table, pd.read_csv(out_dir / "tables" / "table2.csv"),
                                 pd.read_csv(out_dir / "tables" / "autoattack_subset.csv")),
        choices=choices(cfg), packages=versions(), cite=cite_block())
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
