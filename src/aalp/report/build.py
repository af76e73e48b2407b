"""The whole report in one call (`python -m aalp report`): every item, then the front page. The pipeline
runs one stage per item and one for the front page instead, so that a change reruns only what it touches."""
from __future__ import annotations

from pathlib import Path

from .frontpage import report_index
from .inputs import READS, REPORT_NOTEBOOKS
from .items import report_item


def report(cfg: dict, out_dir: str | Path = "reports", items: list[str] | None = None,
           render_notebooks: bool = True) -> None:
    """Every item (or the given ones), then the index. render_notebooks=False: the numbers only."""
    READS.clear()
    for name in items or REPORT_NOTEBOOKS:
        report_item(cfg, name, out_dir, render_notebooks)
    report_index(cfg, out_dir)
