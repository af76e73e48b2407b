"""reports/index.html, the page a reader opens first: the verdict on each claim, Table 2 beside the paper's,
a tile per figure and table, and where every number came from.

Self-contained: relative links only, images are the files under figures/, no scripts, no fonts, nothing
fetched from the network; the method page is rendered next to it (method.html) so that the [choice] links
work when the folder is zipped and opened elsewhere.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import re
from importlib import metadata
from pathlib import Path

import pandas as pd

from . import config as C, stats as S
from .artifacts import atomic_path, read_json
from .pipeline import REPORT_ITEMS, fingerprint, run_dir
from .verdicts import interval_text, missing_claims, verdicts

METHOD_PAGE = C.REPO_ROOT / "docs" / "method.md"
PACKAGES = ["torch", "torchvision", "torchattacks", "captum", "numpy", "pandas", "scipy", "matplotlib", "papermill",
            "snakemake", "dvc"]
FLAG_TEXT = {"pgd_above_fgsm": "PGD accuracy above FGSM", "autoattack_above_pgd": "AutoAttack accuracy above PGD",
             "cw_steps_increase": "CW accuracy rises with more steps", "pgd_steps_increase": "PGD accuracy rises with more steps"}
DIFF_POINTS = 2.0  # Table 2: ours against the paper's, highlighted beyond this many points

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}
h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top}th{background:#f3f3f3;text-align:left}
td.num{text-align:right;white-space:nowrap}
.holds{background:#d8f0d8}.fails{background:#f6d5d5}.inconclusive{background:#f3ecd0}
.far{color:#b00;font-weight:bold}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:1em}
.tile{border:1px solid #ddd;padding:.5em;border-radius:4px}.tile img{width:100%;height:auto;display:block}
.tile img{max-height:230px;object-fit:contain}.tile p{margin:.3em 0;font-size:.9em}.small{font-size:.85em;color:#555}
code{background:#f5f5f5;padding:0 .2em}
"""
VERDICT_CLASS = {S.HOLDS: "holds", S.FAILS: "fails", S.INCONCLUSIVE: "inconclusive"}


def _e(x) -> str:
    return html.escape(str(x))


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def _num(x, fmt="{:.2f}") -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


# ----------------------------------------------------------------------------- sections
def verdict_section(cfg: dict, table: pd.DataFrame, needs: dict[str, str]) -> str:
    rows = []
    for (cid, d), g in table.groupby(["claim_id", "dataset"], sort=False):
        v = g.verdict.iloc[0]
        first = True
        for r in g.itertuples(index=False):
            lead = (f'<td rowspan="{len(g)}"><a href="{r.item}.html">{_e(r.claim)}</a></td>'
                    f'<td rowspan="{len(g)}">{_e(d)}</td>') if first else ""
            tail = f'<td rowspan="{len(g)}" class="{VERDICT_CLASS[v]}"><b>{_e(v)}</b></td>' if first else ""
            want = "&gt; 0" if r.direction > 0 else "&lt; 0"
            rows.append(f"<tr>{lead}<td>{_e(r.part)} <span class=small>(claimed {want})</span></td>"
                        f'<td class="num">{_num(r.paper, "{:+.3g}")}</td>'
                        f'<td class="num {VERDICT_CLASS[r.part_verdict]}">{_e(interval_text(r._asdict()))}</td>{tail}</tr>')
            first = False
    missing = [f"<li>{_e(c.text)} (<a href=\"{c.item}.html\">{c.item}</a>): {_e(needs.get(c.item) or 'needs runs')}</li>"
               for c in missing_claims(cfg, table)]
    counts = table.drop_duplicates(["claim_id", "dataset"]).verdict.value_counts() if len(table) else pd.Series(dtype=int)
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in (S.HOLDS, S.FAILS, S.INCONCLUSIVE)) + " (claim × dataset)"
    if len(table) and (table.n_seeds <= 1).all():
        summary += ". Every number here comes from one seed, so there is no interval and no verdict can be reached: " \
                   "run more seeds (seeds, or run_seeds for single runs)"
    summary += "."
    head = ("<tr><th>claim</th><th>dataset</th><th>quantity (per seed; a difference pairs models of the same seed on "
            "the same test samples)</th><th>paper</th><th>ours: mean ± 95% t-interval</th><th>verdict</th></tr>")
    return (f'<h2 id="verdicts">Verdicts</h2>\n<p>{_e(summary)} A part <b>holds</b> when its whole '
            "95% Student-t interval over seeds lies on the side the paper claims, <b>does not hold</b> when it lies on "
            "the other side, and is <b>inconclusive</b> when it contains 0 or there is only one seed; a claim holds "
            "when all its parts do.</p>\n"
            + (f"<table>{head}\n" + "\n".join(rows) + "</table>\n" if rows else "<p>No claim has runs here.</p>\n")
            + (f"<p>Not evaluated in this parameter set:</p><ul>{''.join(missing)}</ul>\n" if missing else ""))


def table2_section(cfg: dict, out_dir: Path) -> str:
    from .reporting import per_seed

    t = pd.read_csv(out_dir / "tables" / "table2.csv")
    checks = pd.read_csv(out_dir / "tables" / "table2_checks.csv")
    metrics = [m for m in ["clean", *cfg["evaluation"]["attacks"]] if m in set(t.metric)]
    head = "<tr><th>dataset</th><th>method</th>" + "".join(f"<th>{_e(m)}</th>" for m in metrics) + "</tr>"
    rows = []
    for (d, m), g in t.groupby(["dataset", "method"], sort=False):
        cells = []
        for metric in metrics:
            r = g[g.metric == metric]
            if r.empty:
                cells.append("<td></td>")
                continue
            r = r.iloc[0]
            iv = S.t_interval(list(per_seed(r).values()))
            ours = f"{iv.mean:.2f} ± {iv.half:.2f} (n={iv.n})" if iv.n > 1 else f"{iv.mean:.2f} (n=1)"
            paper = r["paper"]
            if isinstance(paper, float) and not math.isnan(paper):
                delta = iv.mean - paper
                cls = ' class="far"' if abs(delta) > DIFF_POINTS else ""
                ours += f'<br><span class=small>paper {paper:.2f}, <span{cls}>Δ {delta:+.2f}</span></span>'
            cells.append(f'<td class="num">{ours}</td>')
        rows.append(f"<tr><td>{_e(d)}</td><td>{_e(m)}</td>{''.join(cells)}</tr>")
    fired = checks[checks.fired.astype(bool)] if len(checks) else checks
    if len(fired):
        flags = "".join(f"<li>{_e(r.dataset)}/{_e(r.method)} seed {r.seed}: {_e(FLAG_TEXT.get(r.check, r.check))}</li>"
                        for r in fired.itertuples())
        flags = f"<p>Gradient-masking checks that fired:</p><ul>{flags}</ul>"
    else:
        flags = f"<p>Gradient-masking checks: none of the {len(checks)} fired.</p>"
    return (f'<h2 id="table2">Table 2: accuracy (%) under attack</h2>\n<p>Ours: mean ± half-width of the 95% '
            f"t-interval over seeds (n seeds; n=1: one seed, no interval); beside it the paper's number and the difference, in red beyond "
            f'{DIFF_POINTS:g} points. <a href="table2.html">Table 2 page</a>, <a href="tables/table2.csv">CSV</a>.</p>\n'
            f"<table>{head}\n" + "\n".join(rows) + f"</table>\n{flags}\n")


def tiles_section(table: pd.DataFrame, needs: dict[str, str]) -> str:
    from .reporting import FIG05_NOTE, TITLES

    tiles = []
    for item in REPORT_ITEMS:
        thumb = (f'<a href="{item}.html"><img src="figures/{item}.png" alt="{_e(TITLES[item])}"></a>'
                 if item.startswith("fig") else "")
        rows = table[table.item == item] if len(table) else table
        decisive = "; ".join(f"{r.dataset}: {r.part} = {interval_text(r._asdict())}" for r in rows.itertuples(index=False))
        note = needs.get(item) or decisive
        tiles.append(f'<div class="tile">{thumb}<p><a href="{item}.html"><b>{_e(TITLES[item])}</b></a></p>'
                     + (f'<p class="small">{_e(note)}</p>' if note else "") + "</div>")
    return (f'<h2 id="figures">Figures and tables</h2>\n<p class="small">{_e(FIG05_NOTE)}</p>\n'
            f'<div class="tiles">{"".join(tiles)}</div>\n')


def _runs_table(cfg: dict) -> str:
    rows = []
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        run = read_json(rd / "run.json")
        ev = read_json(rd / "eval" / "eval.json")
        fp = hashlib.sha256(fingerprint(cfg, "train", d, m).encode()).hexdigest()[:12]
        rows.append(f"<tr><td>{_e(d)}</td><td>{_e(m)}</td><td>{s}</td><td><code>{_e(run['code_version'])}</code></td>"
                    f"<td><code>{fp}</code></td><td>{_e(run['device'])}</td>"
                    f'<td class="num">{run["train_seconds"]:.1f}</td>'
                    f'<td class="num">{sum(ev["attack_seconds"].values()):.1f}</td></tr>')
    return ("<table><tr><th>dataset</th><th>method</th><th>seed</th><th>code version</th><th>params fingerprint</th>"
            "<th>device</th><th>train s</th><th>attack s</th></tr>\n" + "\n".join(rows) + "</table>")


def run_files(cfg: dict) -> list[str]:
    """The run files the provenance table reads (index-stage dependencies)."""
    return [p.as_posix() for d, m, s in C.runs(cfg) for p in (run_dir(d, m, s) / "run.json",
                                                               run_dir(d, m, s) / "eval" / "eval.json")]


def choices(cfg: dict) -> list[tuple[str, str]]:
    """(parameter, value in force here) of every row of the method page's table of choices."""
    text = METHOD_PAGE.read_text()
    section = text.split("## Choices the paper leaves open", 1)[1].split("\n\n", 2)[1]
    out = []
    for line in section.splitlines()[2:]:
        params = re.findall(r"`([a-z_.<>]+)`", line.split("|")[1])
        for p in params:
            out.append((p, _value(cfg, p)))
    return out


USED_BY = {  # method fields that only some objectives read: list the value only where it is read
    "lambda": lambda m: m["objective"] == "alp", "pairing": lambda m: m["objective"] == "alp",
    "beta": lambda m: m["objective"] == "trades", "mixed_batch": lambda m: m["objective"] in ("alp", "trades"),
    "gd_mask_source": lambda m: m["guided_dropout"], "gd_rescale": lambda m: m["guided_dropout"],
}


def _value(cfg: dict, dotted: str) -> str:
    """The value(s) of a parameter path with <dataset>/<name> wildcards, e.g. experiments.<dataset>.epochs."""
    nodes = [("", cfg)]
    for part in dotted.split("."):
        nxt = []
        for label, node in nodes:
            if part.startswith("<"):
                if isinstance(node, dict):
                    nxt += [(f"{label}{k}: ", v) for k, v in node.items()]
            elif isinstance(node, dict) and part in node:
                nxt.append((label, node[part]))
        nodes = nxt
    if dotted.startswith("methods.<name>.") and part in USED_BY:
        nodes = [(lab, v) for lab, v in nodes if USED_BY[part](cfg["methods"][lab.rstrip(": ")])]
    groups: dict[str, list[str]] = {}  # value -> the datasets/methods that have it
    for lab, v in nodes:
        groups.setdefault(v if isinstance(v, str) else json.dumps(v), []).append(lab.rstrip(": "))
    if not groups:
        return "(not used here)"
    if len(groups) == 1 and len(nodes) > 1:
        who = "every dataset" if dotted.startswith("experiments.") else "every method that reads it"
        return f"{next(iter(groups))} ({who})"
    return "; ".join(f"{v} ({', '.join(w)})" if any(w) else v for v, w in groups.items())


def versions() -> str:
    got = []
    for p in PACKAGES:
        try:
            got.append(f"{p} {metadata.version(p)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(got)


def provenance_section(cfg: dict) -> str:
    ch = "".join(f'<tr><td><a href="method.html#choices-the-paper-leaves-open"><code>{_e(p)}</code></a></td>'
                 f"<td>{_e(v)}</td></tr>" for p, v in choices(cfg))
    return ('<h2 id="provenance">Provenance</h2>\n<p>Every run behind the numbers above: the code version (git commit, '
            "or a hash of the source when git is absent), a fingerprint of the parameters its training read, the "
            "device and the wall time of training and of the attacks.</p>\n" + _runs_table(cfg)
            + '\n<h3>Choices the paper leaves open, as set here</h3>\n<p class="small">Definitions and reasons: '
            '<a href="method.html">the method page</a>.</p>\n<table><tr><th>parameter</th><th>value</th></tr>'
            + ch + f"</table>\n<h3>Packages</h3>\n<p class=small>{_e(versions())}</p>\n")


# ----------------------------------------------------------------------------- the method page
def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"<[^>]+>", "", heading).strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def method_page() -> str:
    """docs/method.md as a standalone page, headings with the same anchors as on GitHub."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(METHOD_PAGE.read_text())
    body = re.sub(r"<h([1-6])>(.*?)</h\1>", lambda m: f'<h{m[1]} id="{_slug(m[2])}">{m[2]}</h{m[1]}>', body)
    body = re.sub(r'href="(?:\.\./)?docs/method\.md#', 'href="#', body)
    body = re.sub(r'href="method\.md#', 'href="#', body)
    return _page("AALP: the method", '<p><a href="index.html">← report</a></p>\n' + body)


# ----------------------------------------------------------------------------- the page
def write_index(cfg: dict, out_dir: Path, needs: dict[str, str]) -> pd.DataFrame:
    """Write index.html, method.html and tables/verdicts.csv; return the verdict table."""
    out_dir = Path(out_dir)
    table = verdicts(cfg, out_dir)
    seeds = cfg["seeds"]
    body = (f"<h1>AALP reproduction: parameter set <code>{_e(cfg['profile'])}</code></h1>\n"
            + (f'<p class="set-description"><b>This parameter set:</b> {_e(cfg["description"])}</p>\n'
               if cfg.get("description") else "")
            + f"<p>Every claim of <i>Adaptive Adversarial Logits Pairing</i> that this parameter set has runs for, "
            f"measured over {len(seeds)} seed{'s' if len(seeds) != 1 else ''} ({', '.join(map(str, seeds))}), "
            "beside the paper's own numbers. Datasets: "
            + ", ".join(f"{_e(d)} ({_e(e['model'])}, {len(e['methods'])} methods)" for d, e in cfg["experiments"].items())
            + ".</p>\n" + verdict_section(cfg, table, needs) + table2_section(cfg, out_dir) + tiles_section(table, needs)
            + provenance_section(cfg))
    with atomic_path(out_dir / "tables" / "verdicts.csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(out_dir / "method.html") as tmp:
        tmp.write_text(method_page())
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(_page(f"AALP report ({cfg['profile']})", body))
    return table
