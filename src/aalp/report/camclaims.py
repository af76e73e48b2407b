"""Grad-CAM numbers the pages and the verdicts share: how many images a CAM metric is over, and the claims of
the paper's Figs. 8-10 (verdicts.py turns the parts below into rows).

The count. analysis.cam_metric_samples (M) sets how many test images a CAM metric (area, on-object share) is
averaged over and analysis.cam_samples (K) how many a grid draws. The report reads M from what each analysis
holds (analysis/summary.json's cam_metric_samples), never from params.yaml: a set analysed before the two
counts were separate has no such key, its metrics are over its cam_samples images (summary.json says how
many), and its published params.yaml (which then reads the schema's default) must not be believed.
figdata writes the count per seed as a claim row 'cam_metric_samples' (claims/fig02, fig08, fig09, fig10)
and, for the notebooks, into the figure data ('<d>/<m>/cam_metric_samples' and '<d>/<m>/cam_metric_recorded'
in the .npz files, columns of the same names in data/fig09.csv); count_text() is the sentence the pages print.

The claims. Fig. 8: AALP's maps lie more on the object than ADV's and ALP's. Figs. 9-10: over AALP's
training checkpoints the high-contribution features become fewer and the maps focus on the object (the
paper saves a model every 10,000 steps). A part pairs seeds (last checkpoint − first; AALP − other);
the on-object share decides where the inputs have one channel, the area (smaller: more focused) otherwise.
Reads only reports/claims/fig08.csv, fig09.csv and fig10.csv.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import stats as S
from .claims import per_seed

COUNT = "cam_metric_samples"  # the claim row and data key of the count
RECORDED = "cam_metric_recorded"  # whether the analysis recorded the count itself (False: an analysis before M)
PAPER_CHECKPOINT_INTERVAL = 10_000  # the paper, section 4.4: "save a model every 10000 steps" (Figs. 9-10)

ON_OBJECT_UNIT = "share of the CAM's mass on the object's pixels"
AREA_UNIT = "fraction of the image's pixels"
N50_UNIT = "features (of the D penultimate features)"

# (id, text, item): verdicts.CLAIMS holds them
CAM_CLAIMS = [
    ("aalp_cam_on_object", "AALP's Grad-CAM lies more on the object than ADV's and ALP's (on-object share of the "
     "adversarial CAM; area where the inputs have 3 channels)", "fig08"),
    ("checkpoint_fewer_features", "AALP's high-contribution features become fewer as training proceeds (n50, last "
     "checkpoint − first)", "fig09"),
    ("checkpoint_cam_focus", "AALP's Grad-CAM focuses on the object as training proceeds (on-object share of the "
     "adversarial CAM, last checkpoint − first; area where the inputs have 3 channels)", "fig10"),
]


def metric_count(summary: dict) -> tuple[int, bool]:
    """(the images the CAM metrics of one analysis are over, whether summary.json records that count itself):
    cam_metric_samples; an analysis written before that key has its metrics over its cam_samples images."""
    if summary.get(COUNT) is not None:
        return int(summary[COUNT]), True
    return int(summary["cam_samples"]), False


def count_text(counts, recorded, grid: int | None = None) -> str:
    """The pages' sentence: how many test images the CAM metrics are over (the seeds' counts), whether they are
    the same for every model and seed, and how many the grid draws; a set analysed before the count was
    separate from the grid's says so."""
    counts = [int(c) for c in counts]
    if not counts:
        return ""
    lo, hi = min(counts), max(counts)
    n = f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"
    same = "the same images for every model and seed" if lo == hi else "the count differs between runs"
    out = f"CAM metrics (area, on-object share) over the first {n} test images ({same})"
    if grid is not None:
        out += f"; the grid draws the first {int(grid):,}"
    out += "."
    if not all(bool(r) for r in recorded):
        out += (f" This set was analysed before analysis.cam_metric_samples separated the metrics' count from the "
                f"grid's: its metrics are over the {n} images its analysis files hold (summary.json's cam_samples), "
                f"not over the default that its params.yaml, without the key, would read.")
    return out


def npz_count_text(z) -> str:
    """count_text() of a figure's .npz (figdata.cam_grid, checkpoint_cams): every run's counts, the largest grid."""
    runs = [k[:-len(COUNT) - 1] for k in z.files if k.endswith("/" + COUNT)]
    grid = max((len(z[f"{r}/x"]) for r in runs), default=None)
    return count_text([c for r in runs for c in z[f"{r}/{COUNT}"]], [f for r in runs for f in z[f"{r}/{RECORDED}"]],
                      grid)


def frame_count_text(df: pd.DataFrame) -> str:
    """count_text() of data/fig09.csv (one row per seed and step; no grid)."""
    per_seed_rows = df.drop_duplicates(["dataset", "method", "seed"])
    return count_text(per_seed_rows[COUNT], per_seed_rows[RECORDED])


# ----------------------------------------------------------------------------- the claims of Figs. 8-10
@dataclass(frozen=True)
class Part:
    claim_id: str
    dataset: str
    label: str
    values: list
    direction: int
    unit: str
    state: str | None = None
    counted: bool = True
    note: str = ""


def read_claims(report_dir: Path, item: str) -> pd.DataFrame:
    """claims/<item>.csv; an empty frame where the folder has none (a hand-made folder without the figure)."""
    p = Path(report_dir) / "claims" / f"{item}.csv"
    return pd.read_csv(p) if p.is_file() else pd.DataFrame(columns=["dataset", "method", "claim", "seeds", "values"])


def _get(df: pd.DataFrame, d: str, m: str, claim: str) -> dict[int, float]:
    row = df[(df.dataset == d) & (df.method == m) & (df.claim == claim)]
    return per_seed(row.iloc[0]) if len(row) else {}


def _count_note(df: pd.DataFrame, d: str, methods) -> str:
    counts = sorted({int(v) for m in methods for v in _get(df, d, m, COUNT).values()})
    if not counts:
        return ""
    n = f"{counts[0]:,}" if len(counts) == 1 else f"{counts[0]:,}–{counts[-1]:,}"
    return f"each seed's value is a mean over the first {n} test images"


def span_note(steps) -> str:
    """The checkpoints' span against the paper's interval: which steps, how far apart, and the share of one
    of the paper's 10,000-step intervals they lie in."""
    first, last = min(steps), max(steps)
    return (f"{len(steps)} checkpoints at steps {first:,}–{last:,}: last − first is {last - first:,} steps, all within "
            f"the first {last:,} training steps, {last / PAPER_CHECKPOINT_INTERVAL:.2g} of one of the paper's "
            f"{PAPER_CHECKPOINT_INTERVAL:,}-step intervals (it saves a model every {PAPER_CHECKPOINT_INTERVAL:,} steps)")


def _steps(df: pd.DataFrame, d: str, m: str, metric: str) -> list[int]:
    sub = df[(df.dataset == d) & (df.method == m)]
    return sorted(int(g.group(1)) for c in sub.claim if (g := re.fullmatch(rf"step(\d+)/{metric}", str(c))))


def _runs(df: pd.DataFrame) -> list[tuple[str, str]]:
    return list(dict.fromkeys(zip(df.dataset, df.method)))


def _cam_metric(df: pd.DataFrame, d: str, m: str, checkpoints: bool = False) -> tuple[str, str, int, str]:
    """(claim, label, direction, unit) of the CAM metric that decides: on-object where the claims have it."""
    if _steps(df, d, m, "cam_on_object_adv") if checkpoints else _get(df, d, m, "cam_on_object_adv"):
        return "cam_on_object_adv", "on-object share", +1, ON_OBJECT_UNIT
    return "cam_area_adv", "CAM area", -1, AREA_UNIT


def checkpoint_parts(claim_id: str, df: pd.DataFrame, metric: str | None, counts: pd.DataFrame) -> list[Part]:
    """last checkpoint − first of each checkpoint run in `df` (claims 'step<N>/<metric>'; metric None: the CAM
    metric that decides), paired by seed; untestable with fewer than two checkpoints."""
    out = []
    for d, m in _runs(df[df.claim.astype(str).str.startswith("step")]):
        if metric is None:
            key, what, direction, unit = _cam_metric(df, d, m, checkpoints=True)
        else:
            key, what, direction, unit = metric, metric, -1, N50_UNIT
        steps = _steps(df, d, m, key)
        if not steps:
            continue
        note = "; ".join(x for x in (span_note(steps), _count_note(counts, d, [m]) if metric is None else "") if x)
        label = f"{what} at step {steps[-1]:,} − at step {steps[0]:,} ({m.upper()})"
        if len(steps) < 2:
            out.append(Part(claim_id, d, label, [], direction, unit, state=S.UNTESTABLE,
                            note=f"untestable: one checkpoint, no change to measure; {note}"))
            continue
        values = S.paired(_get(df, d, m, f"step{steps[-1]}/{key}"), _get(df, d, m, f"step{steps[0]}/{key}"))
        out.append(Part(claim_id, d, label, values, direction, unit, note=note))
    return out


def aalp_parts(df: pd.DataFrame) -> list[Part]:
    """Fig. 8: AALP − ADV and AALP − ALP of the CAM metric that decides, paired by seed."""
    out = []
    for d in dict.fromkeys(df.dataset[df.method == "aalp"]):
        key, what, direction, unit = _cam_metric(df, d, "aalp")
        for other in ("adv", "alp"):
            if _get(df, d, other, key):
                values = S.paired(_get(df, d, "aalp", key), _get(df, d, other, key))
                out.append(Part("aalp_cam_on_object", d, f"{what} AALP − {other.upper()}", values, direction, unit,
                                note=_count_note(df, d, ["aalp", other])))
    return out


def cam_parts(report_dir: str | Path) -> list[Part]:
    """Every part of CAM_CLAIMS, from the report folder's claims of Figs. 8-10."""
    c8, c9, c10 = (read_claims(Path(report_dir), n) for n in ("fig08", "fig09", "fig10"))
    return (aalp_parts(c8) + checkpoint_parts("checkpoint_fewer_features", c9, "n50", c10)
            + checkpoint_parts("checkpoint_cam_focus", c10, None, c10))
