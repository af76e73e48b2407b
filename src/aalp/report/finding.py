"""The front page's first screen: the finding on AALP against ALP, scoped to the budget and setting that
produced it, in a few sentences and one figure (AALP − ALP per attack with its 95% interval over paired
seeds, the smallest difference the seeds could detect, and the paper's own gains as markers), with what the
set cannot decide and how strong its attacks are (AutoAttack against PGD on the same images).

Reads what the front page already has: the verdict table (verdicts.verdicts), tables/table2.csv and
tables/autoattack_subset.csv. The figure is inline SVG in index.html: the page needs no other file.
"""
from __future__ import annotations

import io
import math

import pandas as pd

from . import stats as S
from .claims import per_seed
from .labels import attack_name
from .masking import autoattack_gaps
from .scope import scope, undecided
from .units import sample_counts

CLAIM_IDS = ("aalp_beats_alp", "aalp_beats_alp_aa")  # the verdict rows the finding reads
CAPTION = ("AALP − ALP in points of accuracy (%), per attack: mean over paired seeds (same seed, same test images) "
           "± its 95% Student-t half-width (black, with n); grey band: ± the smallest difference these seeds could "
           "detect (MDE: paired t, 95%, power 80%); red diamond: the paper's AALP − ALP for the same attack (its "
           "Table 2, {source}).")


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _interval(iv: S.Interval) -> str:
    """'−1.64 ± 0.69' (points), or the mean alone with one seed."""
    return f"{_fmt(iv.mean)} ± {iv.half:.2f}" if iv.n > 1 and not math.isnan(iv.half) else _fmt(iv.mean)


def attack_rows(table: pd.DataFrame, d: str) -> list[dict]:
    """The AALP − ALP parts of dataset d, one per attack in the verdict table's order: attack, metric, mean,
    half, n, mde, paper (NaN where the paper has no number), verdict."""
    rows = table[table.claim_id.isin(CLAIM_IDS) & (table.dataset == d)]
    if "counted" in rows:  # the attacks only: parts shown beside (clean accuracy) are not the finding's rows
        rows = rows[rows.counted.astype(bool)]
    out = []
    for r in rows.itertuples(index=False):
        metric = r.part.split(" ")[0]
        out.append({"metric": metric, "attack": attack_name(metric), "mean": float(r.mean), "half": float(r.half),
                    "n": int(r.n_seeds), "mde": float(r.mde), "paper": float(r.paper), "verdict": r.part_verdict})
    return out


def clean_difference(table2: pd.DataFrame, d: str) -> S.Interval | None:
    """Clean accuracy AALP − ALP over paired seeds (points), from tables/table2.csv; None without both."""
    def acc(m):
        r = table2[(table2.dataset == d) & (table2.method == m) & (table2.metric == "clean")]
        return per_seed(r.iloc[0]) if len(r) else {}
    a, b = acc("aalp"), acc("alp")
    return S.t_interval(S.paired(a, b)) if a and b else None


def headline(rows: list[dict]) -> str:
    """One sentence: where AALP − ALP's 95% interval lies, attack by attack."""
    n = max(r["n"] for r in rows)
    below = [r["attack"] for r in rows if r["verdict"] == S.FAILS]
    above = [r["attack"] for r in rows if r["verdict"] == S.HOLDS]
    rest = [r["attack"] for r in rows if r["verdict"] not in (S.FAILS, S.HOLDS)]
    seeds = f"{n} paired seeds"
    if len(below) == len(rows):
        return (f"AALP does worse than ALP: AALP − ALP is negative under every attack, its 95% interval over {seeds} "
                f"below 0 under all {len(rows)}.")
    if len(above) == len(rows):
        return (f"AALP beats ALP: AALP − ALP is positive under every attack, its 95% interval over {seeds} above 0 "
                f"under all {len(rows)}.")
    parts = [f"above 0 under {', '.join(above)}" if above else "",
             f"below 0 under {', '.join(below)}" if below else "",
             f"containing 0 under {', '.join(rest)}" if rest else ""]
    verb = "cannot tell AALP from ALP" if not above and not below else "find no consistent winner"
    return f"These seeds {verb}: the 95% interval of AALP − ALP over {seeds} lies " + "; ".join(p for p in parts if p) + "."


def strength_text(subset: pd.DataFrame, d: str) -> str:
    """How much lower AutoAttack goes than the strongest PGD-k on the same images, per method ('' without)."""
    gaps = [g for g in autoattack_gaps(subset) if g["dataset"] == d and g["method"] in ("alp", "aalp")]
    if not gaps:
        return ""
    per = "; ".join(f"{g['method'].upper()} {_range(g['gaps'])} points ({len(g['gaps'])} seeds)" for g in gaps)
    g0, lower = gaps[0], all(x < 0 for g in gaps for x in g["gaps"])
    head = (f"Attack strength: on the same first {g0['n']:,} test images, AutoAttack "
            + ("leaves less accuracy than" if lower else "is compared with")
            + f" {attack_name(g0['pgd'])}, the strongest PGD-k there (AutoAttack − {attack_name(g0['pgd'])}, per seed: {per}).")
    return head + (" Every PGD and CW number on this page over-states robustness by about that much; AutoAttack, "
                   "run on those images only, is the one to trust." if lower else "")


def _range(xs: list[float]) -> str:
    lo, hi = min(xs), max(xs)
    return _fmt(lo, 1) if round(lo, 1) == round(hi, 1) else f"{_fmt(lo, 1)} to {_fmt(hi, 1)}"


def clean_paper(table: pd.DataFrame, d: str) -> float:
    """The paper's clean AALP − ALP, from the verdict table's clean part beside the attacks (NaN without)."""
    r = table[table.claim_id.isin(CLAIM_IDS) & (table.dataset == d) & table.part.str.startswith("clean ")] \
        if len(table) else table
    return float(r.paper.iloc[0]) if len(r) else math.nan


def finding_figure(rows: list[dict], clean: S.Interval | None, title: str, paper_clean: float = math.nan):
    """The finding's figure (matplotlib): one row per attack, clean accuracy first where measured; per row
    the mean ± 95% half-width (errorbar), ± the MDE (grey band) and the paper's value (red diamond)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .figures import style

    style()
    items = ([{"attack": "clean", "mean": clean.mean, "half": clean.half, "n": clean.n,
               "mde": S.mde(clean.sd, clean.n), "paper": paper_clean}] if clean else []) + rows
    fig, ax = plt.subplots(figsize=(6.4, 0.32 * len(items) + 0.9))
    ys = list(range(len(items)))[::-1]
    for y, r in zip(ys, items):
        if r["mde"] == r["mde"]:
            ax.fill_betweenx([y - 0.3, y + 0.3], -r["mde"], r["mde"], color="0.88", lw=0)
        ax.errorbar(r["mean"], y, xerr=None if r["half"] != r["half"] else r["half"], fmt="o", color="black",
                    ms=4, capsize=3, lw=1.2, label="_ours")
        if r["paper"] == r["paper"]:
            ax.plot(r["paper"], y, marker="D", color="tab:red", ms=5, ls="none", label="_paper")
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_yticks(ys, [f"{r['attack']}" + (f", {r['samples']:,} images" if r.get("samples") else "") + f" (n={r['n']})"
                       for r in items])
    ax.set_xlabel("AALP − ALP (points of accuracy, %)")
    ax.set_title(title, loc="left")
    return fig


def figure_svg(fig) -> str:
    """A matplotlib figure as an <svg> element to inline in a page (closes the figure)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def finding_section(cfg: dict, table: pd.DataFrame, table2: pd.DataFrame, subset: pd.DataFrame) -> list[dict]:
    """One finding per dataset that has both ALP and AALP verdict rows: dataset, scope, headline, the key
    numbers (the strongest PGD-k and CW-k, and AutoAttack, with the paper's), clean accuracy beside them,
    what the set cannot decide, attack strength, and the figure (inline SVG) with its caption."""
    out = []
    for d in cfg["experiments"]:
        rows = attack_rows(table, d) if len(table) else []
        if not rows:
            continue
        clean = clean_difference(table2, d)
        where = scope(cfg, d)
        keys = _key_rows(rows)
        counts = sample_counts(table2[table2.dataset == d])
        usual = max(counts.values(), default=0)
        for r in rows:
            r["samples"] = counts[r["metric"]] if counts.get(r["metric"], usual) < usual else None
        numbers = "; ".join(f"{r['attack']} {_interval(S.Interval(r['mean'], r['half'], r['n']))}"
                            + (f" on the first {counts[r['metric']]:,} test images" if counts.get(r["metric"], usual) < usual
                               else "")
                            + (f" (paper {_fmt(r['paper'])})" if r["paper"] == r["paper"] else "") for r in keys)
        source = cfg["datasets"][d]["source"]
        out.append({
            "dataset": d, "scope": where, "headline": headline(rows),
            "numbers": f"AALP − ALP in points of accuracy, mean ± 95% t half-width over paired seeds: {numbers}.",
            "clean": clean_text(clean, rows),
            "undecided": undecided(cfg, d), "strength": strength_text(subset, d),
            "svg": figure_svg(finding_figure(rows, clean, f"{d}: AALP − ALP at {where}", clean_paper(table, d))),
            "caption": caption(rows, source)})
    return out


def _key_rows(rows: list[dict]) -> list[dict]:
    """The rows a reader needs first: the longest PGD-k and CW-k, and AutoAttack."""
    def longest(kind):
        ks = [r for r in rows if r["metric"].startswith(kind) and r["metric"][len(kind):].isdigit()]
        return [max(ks, key=lambda r: int(r["metric"][len(kind):]))] if ks else []
    return longest("pgd") + longest("cw") + [r for r in rows if r["metric"] == "autoattack"]


def caption(rows: list[dict], source: str) -> str:
    """The figure's caption; the red diamonds only where the paper has a number for this dataset."""
    name = {"mnist": "MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10"}.get(source, source)
    if any(r["paper"] == r["paper"] for r in rows):
        return CAPTION.format(source=name)
    return CAPTION.split("; red diamond")[0] + f". The paper has no numbers for {name}."


def clean_text(clean: S.Interval | None, rows: list[dict]) -> str:
    """Clean accuracy beside the robust rows: which way it moves, said only where its interval excludes 0."""
    if clean is None:
        return ""
    number = f"AALP − ALP {_interval(clean)} points ({clean.n} paired seeds)"
    if clean.n < 2 or not (clean.lo > 0 or clean.hi < 0):
        return f"Clean accuracy: {number}; its interval contains 0."
    return f"Clean accuracy moves {'the other way' if _opposite(clean, rows) else 'alongside'}: {number}."


def _opposite(clean: S.Interval, rows: list[dict]) -> bool:
    """Clean AALP − ALP has the other sign than the robust differences' mean."""
    robust = sum(r["mean"] for r in rows) / len(rows)
    return clean.mean * robust < 0
