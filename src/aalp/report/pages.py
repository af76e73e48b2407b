"""The report's HTML comes from Jinja2 templates (templates/): page.html.j2 is the wrapper every page shares
(the item pages, the method page, the front page), style.css its one stylesheet, index.html.j2 the front
page. Autoescaping is on; HTML made elsewhere (nbconvert's notebook body, the method page's Markdown) is
passed in as Markup."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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


def page(title: str, body_html: str, back: bool = True) -> str:
    """A standalone page: `title`, the shared stylesheet, a link back to the front page (back=True) and
    `body_html`, trusted HTML inserted as it is."""
    from markupsafe import Markup

    return render_template("page.html.j2", title=title, body=Markup(body_html), back=back)
