"""The report's HTML comes from Jinja2 templates (templates/): page.html.j2 is the wrapper every page shares
(the item pages, the method page, the front page), style.css its one stylesheet, index.html.j2 the front
page. Autoescaping is on; HTML made elsewhere (nbconvert's notebook body, the method page's Markdown) is
passed in as Markup."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..layout import REPORT_ITEMS, TITLES, item_outputs

RESOURCES = ["src/aalp/report/templates/page.html.j2", "src/aalp/report/templates/style.css"]
TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=None)
def environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render_template(name: str, **context) -> str:
    """templates/<name> rendered with `context` (a missing variable is an error, not an empty string)."""
    return environment().get_template(name).render(**context)


def page(title: str, body_html: str, back: bool = True, nav: dict | None = None, files: list[dict] | None = None) -> str:
    """A standalone page: `title`, the shared stylesheet, a link back to the front page (back=True), the
    previous and next item pages (nav, item_nav), `body_html` (trusted HTML inserted as it is) and the files
    the folder ships for it (files, item_files)."""
    from markupsafe import Markup

    return render_template("page.html.j2", title=title, body=Markup(body_html), back=back, nav=nav, files=files or [])


def short_title(item: str) -> str:
    """'Fig. 4' of fig04, 'Table 2' of table2: the title up to its colon."""
    return TITLES[item].split(":")[0]


def item_nav(item: str) -> dict:
    """The item pages before and after `item` in the report's order (layout.REPORT_ITEMS): {'prev', 'next'},
    each {'href', 'text'} or None at either end."""
    i = REPORT_ITEMS.index(item)
    link = lambda j: ({"href": f"{REPORT_ITEMS[j]}.html", "text": short_title(REPORT_ITEMS[j]),  # noqa: E731
                       "title": TITLES[REPORT_ITEMS[j]]} if 0 <= j < len(REPORT_ITEMS) else None)
    return {"prev": link(i - 1), "next": link(i + 1)}


FILE_KINDS = {"figures": "figure", "tables": "table", "claims": "claims per seed", "data": "figure data",
              "notebooks": "notebook"}


def item_files(item: str, out_dir: str | Path, drawn: bool = True, written: tuple[str, ...] = ()) -> list[dict]:
    """The files the report folder ships for `item` (layout.item_outputs, but its page) that exist in out_dir
    or are named in `written` (the notebook, moved into place after its page is made): {'href' (relative to
    the page), 'text'}. drawn=False leaves out the figure files (a figure the set cannot draw)."""
    out_dir = Path(out_dir)
    out = []
    for f in item_outputs(item, out_dir):
        rel = Path(f).relative_to(out_dir).as_posix()
        kind = rel.split("/")[0]
        if kind not in FILE_KINDS or (kind == "figures" and not drawn):
            continue
        if (out_dir / rel).is_file() or rel in written:
            out.append({"href": rel, "text": f"{FILE_KINDS[kind]}: {rel}"})
    return out
