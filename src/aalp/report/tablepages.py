"""The tables of the Table 1-4 pages, from tables/<table>.csv: reader names for rows and headers (labels.py),
ours in the report's one convention (mean ± 95% t half-width, with n), the paper's number and Δ = ours − paper
(red beyond units.DIFF_POINTS), and the sentence on Table 4's gap to the paper. The notebooks display what
these return."""
from __future__ import annotations

import pandas as pd
from markupsafe import escape

from .anchors import anchors, cell_anchors
from .labels import accuracy_name, attack_name, method_name, set_name, table1_name
from .tablehtml import delta, html_table, minus, n_text
from .units import DIFF_POINTS, metric_label, ours_text, sample_counts

DELTA = "Δ (ours − paper)"


def _num(v, digits: int = 2) -> str:
    return "" if pd.isna(v) else minus(f"{v:.{digits}f}")


def _n_header(ns) -> tuple[str, bool]:
    """('ours (n = 5)', True) when every row has the same n, else ('ours', False): n then goes in each cell."""
    ns = {int(n) for n in ns if n == n}
    return (f"ours {n_text(ns.pop())}", True) if len(ns) == 1 else ("ours", False)


def table1_html(g: pd.DataFrame) -> str:
    """One dataset's rows of table1.csv: a row per set and metric (reader names), ours, the paper's and Δ."""
    head, one_n = _n_header(g.n_seeds)
    paper = g.paper.notna().any()
    rows = []
    for r in g.itertuples():
        digits = 2 if r.metric.endswith("confidence") else 4
        row = [f"{set_name(r.set)}: {table1_name(r.metric)}",
               {"text": minus(ours_text(r.ours_mean, r.ours_std, r.n_seeds, digits, with_n=not one_n)), "cls": "num"}]
        if paper:
            far = DIFF_POINTS if r.metric.endswith("confidence") else float("inf")  # points: a loss has none
            row += [{"text": _num(r.paper, digits), "cls": "num"}, delta(r.ours_mean, r.paper, far)]
        rows.append(row)
    return html_table(["set and quantity", head] + (["paper", DELTA] if paper else []), rows, cls="table1")


def table2_html(d: pd.DataFrame) -> str:
    """One dataset's rows of table2.csv: a row per method (n beside its name), a column per accuracy; each
    cell ours, then the paper's and Δ where the paper has them (Δ red beyond DIFF_POINTS), then the independent
    implementations of the same protocol (anchors.py; their network where it is not this set's model)."""
    counts = sample_counts(d)
    anchor, model = anchors(d.source.iloc[0]), d.model.iloc[0]
    metrics = list(dict.fromkeys(d.metric))
    header = ["method"] + [metric_label(m, counts).replace(m, attack_name(m), 1) for m in metrics]
    rows = []
    for method, g in d.groupby("method", sort=False):
        one_n = g.n_seeds.nunique() == 1
        row = [f"{method_name(method)} {n_text(g.n_seeds.iloc[0])}" if one_n else method_name(method)]
        by = {r.metric: r for r in g.itertuples()}
        for m in metrics:
            r = by.get(m)
            if r is None:
                row.append("")
                continue
            html = str(minus(ours_text(r.ours_mean, r.ours_std, r.n_seeds, with_n=not one_n)))
            if pd.notna(r.paper):
                dl = delta(r.ours_mean, r.paper)
                html += (f'<br><span class="small">paper {_num(r.paper)}<br>'
                         f'<span class="{dl["cls"].replace("num", "").strip()}">Δ {dl["text"]}</span></span>')
            html += "".join(f'<br><span class="small wrap">{escape(a)}</span>' for a in cell_anchors(anchor, method, m, model))
            row.append({"html": html, "cls": "num"})
        rows.append(row)
    return html_table(header, rows, cls="table2")


def table3_html(g: pd.DataFrame) -> str:
    """One dataset's rows of table3.csv: a row per method and accuracy, ours, and the paper's Table 3 and
    Table 2 numbers with Δ where the paper has them."""
    head, one_n = _n_header(g.n_seeds)
    papers = [(c, name) for c, name in (("paper_table3", "paper Table 3"), ("paper_table2", "paper Table 2"))
              if g[c].notna().any()]
    header = ["method and accuracy", head]
    for _, name in papers:
        header += [name, f"Δ (ours − {name})"]
    rows = []
    for r in g.itertuples():
        row = [f"{method_name(r.method)}: {accuracy_name(r.metric)}",
               {"text": minus(ours_text(r.ours_mean, r.ours_std, r.n_seeds, with_n=not one_n)), "cls": "num"}]
        for c, _ in papers:
            row += [{"text": _num(getattr(r, c)), "cls": "num"}, delta(r.ours_mean, getattr(r, c))]
        rows.append(row)
    return html_table(header, rows, cls="table3")


def table3_change_html(g: pd.DataFrame) -> str:
    """Ours with Guided Dropout minus ours without (difference of the means over seeds, points), a row per
    pair, a column per accuracy."""
    metrics = list(dict.fromkeys(g.metric))
    rows = []
    for pair, p in g.groupby("pair", sort=False):
        mean = p.pivot(index="method", columns="metric", values="ours_mean")
        base, gd = [m for m in dict.fromkeys(p.method)]
        rows.append([f"{method_name(gd)} − {method_name(base)}"]
                    + [{"text": minus(f"{mean.loc[gd, k] - mean.loc[base, k]:+.2f}"), "cls": "num"} for k in metrics])
    return html_table(["pair"] + [accuracy_name(k) for k in metrics], rows, cls="table3")


def table4_html(r) -> str:
    """One row of table4.csv as a table: ALP, AALP and AALP − ALP; ours, the paper's and Δ where the paper
    has them, and the share of the clean-correct samples."""
    paper = pd.notna(r.paper_alp)
    n = {int(r.alp_n_seeds), int(r.aalp_n_seeds)}
    one_n = len(n) == 1
    header = ["Consistent share (%)", f"ours {n_text(n.pop())}" if one_n else "ours"]
    header += ["paper", DELTA] if paper else []
    header += ["ours, % of the clean-correct samples"]
    rows = []
    for name, ours, p, cc in (("ALP", ours_text(r.alp_mean, r.alp_std, r.alp_n_seeds, with_n=not one_n), r.paper_alp,
                               r.alp_of_clean_correct),
                              ("AALP", ours_text(r.aalp_mean, r.aalp_std, r.aalp_n_seeds, with_n=not one_n),
                               r.paper_aalp, r.aalp_of_clean_correct),
                              ("AALP − ALP (difference of the means)", f"{r.change:+.2f}", r.paper_change,
                               r.aalp_of_clean_correct - r.alp_of_clean_correct)):
        mean = {"ALP": r.alp_mean, "AALP": r.aalp_mean}.get(name, r.change)
        row = [name, {"text": minus(ours), "cls": "num"}]
        if paper:
            row += [{"text": _num(p), "cls": "num"}, delta(mean, p)]
        rows.append(row + [{"text": _num(cc), "cls": "num"}])
    return html_table(header, rows, cls="table4")


def table4_gap(r) -> str:
    """The sentence on Table 4's gap to the paper, from the row's numbers and training budgets (table4.csv's
    budget and paper_budget); '' where the paper has no number for the dataset."""
    if pd.isna(r.paper_alp):
        return ""

    def side(ours, paper, who):
        gap = ours - paper
        return f"{who} {abs(gap):.1f} points {'under' if gap < 0 else 'over'} the paper's {paper:.2f}"

    text = (f"On {r.dataset}, ours is {side(r.alp_mean, r.paper_alp, 'ALP')} and "
            f"{side(r.aalp_mean, r.paper_aalp, 'AALP')}.")
    budget, paper_budget = getattr(r, "budget", None), getattr(r, "paper_budget", None)
    if isinstance(budget, str) and isinstance(paper_budget, str) and budget != paper_budget:
        text += (f" This set trains ALP and AALP for {budget}, against the paper's {paper_budget}.")
    return text
