"""reports/method.html: docs/method.md as a standalone page, with the value each choice the paper leaves open has
in the report's parameter set beside the paper set's default, an id per row of that table (the front page links
each parameter to its own row), and the maths font its formulas use."""
from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from .. import config as C
from ..artifacts import atomic_path
from ..layout import FONT_FILES
from .cite import repository_url
from .maths import markdown_html
from .pages import page

RESOURCES = ["docs/method.md", "src/aalp/report/fonts/STIXMath-Regular.woff2", "src/aalp/report/fonts/STIXMath-OFL.txt"]
METHOD_PAGE = C.REPO_ROOT / "docs" / "method.md"
FONTS = Path(__file__).resolve().parent / "fonts"
CHOICES = "## Choices the paper leaves open"
_CELL = re.compile(r"(?<!\\)\|")  # a table's cell separator (an escaped pipe is text)


def _choice_table(text: str) -> tuple[str, str, str]:
    """(text before the table, the table's Markdown, text after it) of the method page's table of choices."""
    head, rest = text.split(CHOICES, 1)
    blank, table, after = rest.split("\n\n", 2)
    return head + CHOICES + blank, table, after


def _params(row: str) -> list[str]:
    """The parameters a row of the table of choices names (its first cell's code spans)."""
    return re.findall(r"`([a-z_.<>]+)`", _CELL.split(row)[1])


def choice_id(param: str) -> str:
    """The id of a parameter's row on the method page: `choice-` and its dotted path without the brackets of
    its wildcards (`experiments.<dataset>.epochs` -> `choice-experiments.dataset.epochs`)."""
    return "choice-" + re.sub(r"[<>]", "", param)


def choices(cfg: dict) -> list[tuple[str, str, str]]:
    """(parameter, value in force here, id of its row on the method page) of every row of the table of choices."""
    _, table, _ = _choice_table(METHOD_PAGE.read_text())
    return [(p, _value(cfg, p), choice_id(p)) for row in table.splitlines()[2:] for p in _params(row)]


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


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"<[^>]+>", "", heading).strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _markdown_text(value: str) -> str:
    """A value as Markdown text in a table cell: HTML escaped, no cell separator, no maths delimiter."""
    return html.escape(value, quote=False).replace("|", "\\|").replace("$", "\\$")


def _with_values(text: str, cfg: dict) -> str:
    """The method page's Markdown with a column beside the table of choices' defaults: the value of each
    parameter in `cfg` (a row naming two parameters gives each with its last key)."""
    head, table, after = _choice_table(text)
    rows = table.splitlines()
    out = []
    for i, row in enumerate(rows):
        cells = _CELL.split(row)
        if i == 0:
            new = f" this set (`{cfg['profile']}`) "
        elif i == 1:
            new = " --- "
        else:
            params = _params(row)
            vals = [_value(cfg, p) for p in params]
            new = " " + _markdown_text("; ".join(v if len(params) == 1 else f"{p.rsplit('.', 1)[-1]}: {v}"
                                                 for p, v in zip(params, vals))) + " "
        out.append("|".join(cells[:3] + [new] + cells[3:]))
    intro = (f"The column *this set* gives each parameter's value in the parameter set `{cfg['profile']}` that "
             "this report measures; *default* is the paper set's (the repository's `params.yaml`).\n\n")
    return head + "\n\n" + intro + "\n".join(out) + "\n\n" + after


def _row_ids(body: str) -> str:
    """Each row of the table of choices with the id of its parameter (choice_id); a row naming more than one
    parameter gets an anchor for each of the others in its first cell."""
    start = body.index('<h2 id="choices-the-paper-leaves-open">')
    end = body.index("</table>", start)

    def row(m: re.Match) -> str:
        params = [html.unescape(p) for p in re.findall(r"<code>([^<]*)</code>", m[1])]
        if not params:
            return m[0]
        extra = "".join(f'<span id="{html.escape(choice_id(p))}"></span>' for p in params[1:])
        return f'<tr id="{html.escape(choice_id(params[0]))}">\n<td>{extra}{m[1]}</td>'

    table = re.sub(r"<tr>\n<td>(.*?)</td>", row, body[start:end])
    return body[:start] + table + body[end:]


def method_page(cfg: dict | None = None) -> str:
    """docs/method.md as a standalone page, headings with the same anchors as on GitHub, formulas as MathML, an
    id per row of the table of choices and, with `cfg`, that set's value of each choice beside its default.
    Links to the speed page (docs/speed.md, not part of the report) go to the repository where it has an address;
    without one they become text that names the file (no link to an address that does not exist, nor a relative
    one that the report's folder cannot resolve)."""
    text = METHOD_PAGE.read_text()
    body = markdown_html(_with_values(text, cfg) if cfg else text)
    body = re.sub(r"<h([1-6])>(.*?)</h\1>", lambda m: f'<h{m[1]} id="{_slug(m[2])}">{m[2]}</h{m[1]}>', body)
    body = re.sub(r'href="(?:\.\./)?docs/method\.md#', 'href="#', body)
    body = re.sub(r'href="method\.md#', 'href="#', body)
    repo = repository_url()
    if repo:
        body = re.sub(r'href="(?:docs/)?speed\.md', f'href="{html.escape(repo)}/blob/main/docs/speed.md', body)
    else:
        body = re.sub(r'<a href="(?:docs/)?speed\.md[^"]*">(.*?)</a>',
                      r"\1 (<code>docs/speed.md</code> in the repository)", body, flags=re.S)
    body = _row_ids(body)
    where = f", for the parameter set <code>{html.escape(cfg['profile'])}</code>" if cfg else ""
    repository = f'<a href="{html.escape(repo)}">the repository</a>' if repo else "the repository"
    note = f'<p class="small">This page is <code>docs/method.md</code> of {repository}{where}.</p>\n'
    return page("AALP: the method", note + body)


def write_method_page(cfg: dict, out_dir: Path) -> None:
    """reports/method.html for `cfg`, and the maths font (with its license) that every page's formulas use."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "method.html") as tmp:
        tmp.write_text(method_page(cfg))
    for f in FONT_FILES:
        with atomic_path(out_dir / f) as tmp:
            shutil.copyfile(FONTS / Path(f).name, tmp)
