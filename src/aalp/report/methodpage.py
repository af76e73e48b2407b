"""reports/method.html: docs/method.md as a standalone page, and the table of the choices the paper leaves
open with the value each has in a parameter set (shown on the front page)."""
from __future__ import annotations

import json
import re

from .. import config as C
from .maths import markdown_html
from .pages import page

RESOURCES = ["docs/method.md"]
METHOD_PAGE = C.REPO_ROOT / "docs" / "method.md"

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


def _slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    s = re.sub(r"<[^>]+>", "", heading).strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def method_page() -> str:
    """docs/method.md as a standalone page, headings with the same anchors as on GitHub, formulas as MathML."""
    body = markdown_html(METHOD_PAGE.read_text())
    body = re.sub(r"<h([1-6])>(.*?)</h\1>", lambda m: f'<h{m[1]} id="{_slug(m[2])}">{m[2]}</h{m[1]}>', body)
    body = re.sub(r'href="(?:\.\./)?docs/method\.md#', 'href="#', body)
    body = re.sub(r'href="method\.md#', 'href="#', body)
    return page("AALP: the method", body)
