"""The item pages' tables as HTML: one header row of reader names (no empty header rows, no code names), each
number in the report's one convention (mean ± 95% Student-t half-width over seeds, with n: stats.t_interval),
Δ = ours − paper coloured where it is far from the paper, and each table in a wrapper that scrolls sideways
rather than breaking a word or a number (style.css)."""
from __future__ import annotations

import math

import pandas as pd
from markupsafe import Markup, escape

from . import stats as S
from .claims import per_seed
from .labels import claim_name, method_name
from .units import DIFF_POINTS

PM = "mean ± 95% t-interval half-width over seeds"


def minus(text: str) -> str:
    """A number's '-' as the minus sign '−'."""
    return text.replace("-", "−")


def n_text(n) -> str:
    """'(n = 5)' with no-break spaces: the count stays on one line."""
    return f"(n\u00a0=\u00a0{int(n)})"


def decimals(half: float) -> int:
    """The decimals that show `half` to two significant digits (0 for half >= 10)."""
    if not half > 0 or math.isinf(half):
        return 2
    return max(0, 1 - math.floor(math.log10(half)))


def interval(values, factor: float = 1.0) -> tuple[str, int]:
    """('64.8 ± 2.2', n) of per-seed `values` times `factor`: the mean to the decimals of its half-width,
    '64.75 (1 seed)' for one value, '(all n equal)' for a zero spread, ('', 0) for none."""
    iv = S.t_interval([v * factor for v in values])
    if iv.n == 0:
        return "", 0
    if iv.n == 1:
        return minus(f"{iv.mean:.4g}") + " (1 seed)", 1
    if iv.zero_spread:
        return minus(f"{iv.mean:.4g}") + " (all equal)", iv.n
    k = decimals(iv.half)
    return minus(f"{iv.mean:.{k}f} ± {iv.half:.{k}f}"), iv.n


def delta(ours: float, paper: float, far: float = DIFF_POINTS) -> dict | str:
    """The Δ = ours − paper cell: {'text': '−1.23', 'cls': 'num far'} (far: more than `far` points from the
    paper), '' where either is missing."""
    if ours is None or paper is None or ours != ours or paper != paper:
        return ""
    d = float(ours) - float(paper)
    return {"text": minus(f"{d:+.2f}"), "cls": "num far" if abs(d) > far else "num"}


def _cell(c, tag: str = "td") -> str:
    if isinstance(c, dict):
        body = Markup(c["html"]) if "html" in c else escape(c["text"])
        cls = f' class="{c["cls"]}"' if c.get("cls") else ""
        return f"<{tag}{cls}>{body}</{tag}>"
    return f"<{tag}>{escape('' if c is None else c)}</{tag}>"


def html_table(header: list[str], rows: list[list], caption: str | None = None, cls: str = "") -> str:
    """A table with one header row and the first cell of each row as its row header, in a sideways-scrolling
    wrapper. A cell is text (escaped) or {'text' or 'html', 'cls'}; a number's cell gets class 'num'."""
    head = "".join(_cell(h, "th") for h in header)
    body = "".join("<tr>" + _cell(r[0], "th") + "".join(_cell(c) for c in r[1:]) + "</tr>" for r in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    classes = " ".join(["report", *cls.split()])
    return (f'<div class="scroll"><table class="{classes}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def claims_html(claims: pd.DataFrame) -> str:
    """A figure's claims (claims/<item>.csv) as one row per claim (reader name, percent for a confidence or an
    accuracy) and one column per dataset and method: mean ± 95% t half-width over seeds, n in the column's
    header (in the cell where a claim has fewer seeds than its column); the caption states the convention."""
    if claims.empty:
        return "<p>No runs, no claim.</p>"
    runs = list(dict.fromkeys(zip(claims.dataset, claims.method)))
    one_dataset = len({d for d, _ in runs}) == 1
    cells, ns = {}, {}
    for _, r in claims.iterrows():
        _, factor = claim_name(r["claim"])
        text, n = interval(list(per_seed(r).values()), factor)
        cells[(r["claim"], r["dataset"], r["method"])] = (text, n)
        ns.setdefault((r["dataset"], r["method"]), []).append(n)
    col_n = {k: max(v) for k, v in ns.items()}
    header = ["claim"] + [f"{'' if one_dataset else d + ': '}{method_name(m)} {n_text(col_n[(d, m)])}" for d, m in runs]
    rows = []
    for claim in dict.fromkeys(claims.claim):
        row = [claim_name(claim)[0]]
        for d, m in runs:
            text, n = cells.get((claim, d, m), ("", 0))
            row.append({"text": text + (f" {n_text(n)}" if text and 1 < n < col_n[(d, m)] else ""), "cls": "num"})
        rows.append(row)
    counts = sorted({n for n in col_n.values()})
    seeds = f"n = {counts[0]} seeds" if len(counts) == 1 else "n seeds in each column's header"
    return html_table(header, rows, caption=f"{PM}, {seeds}", cls="claims")
