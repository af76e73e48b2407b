"""One report item (a figure or a table of the paper): compute its numbers from the run files it reads,
write them (tables/, claims/, data/ of the report folder), and render its notebook. This is what the
pipeline's `report-<item>` stages run (`python -m aalp report --item <item>`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import atomic_path
from ..layout import CLAIMS, DATA, TITLES, item_outputs
from .budget import budget_curve
from .figdata import (adversarial_confidence, cam_grid, checkpoint_cams, checkpoint_series, confidence_scatter,
                      contribution_curves, probe_alp_by_set, sweep_accuracy, training_curves)
from .gdpairs import table3_title
from .inputs import REPORT_NOTEBOOKS, needs
from .render import render
from .tables import collect_metrics, sanity_table, table1, table2, table3, table4

def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_npz(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def compute(cfg: dict, name: str) -> tuple[pd.DataFrame | dict | None, pd.DataFrame | None, dict[str, pd.DataFrame]]:
    """(figure data, claims, tables) of one report item, from the run files it reads (_inputs)."""
    data, claims, tables = None, None, {}
    if name in ("fig01", "fig07"):
        data, claims = contribution_curves(cfg, name)
    elif name in ("fig02", "fig08"):
        data, claims = cam_grid(cfg, name)
    elif name == "fig03":
        data, claims = adversarial_confidence(cfg)
    elif name == "fig04":
        data, claims = probe_alp_by_set(cfg)
    elif name == "fig06":
        data, claims = sweep_accuracy(cfg)
    elif name == "fig09":
        data, claims, _ = checkpoint_series(cfg)
    elif name == "fig10":
        _, _, claims = checkpoint_series(cfg)
        data = checkpoint_cams(cfg)
    elif name == "fig11":
        data, claims = confidence_scatter(cfg)
    elif name == "fig12":
        data, claims = training_curves(cfg)
    elif name == "budget":
        data, claims = budget_curve(cfg)
    elif name == "table1":
        tables["table1"], claims = table1(cfg)
    elif name == "table2":
        tables["table2"] = table2(cfg, collect_metrics(cfg))
        tables["table2_checks"], tables["autoattack_subset"] = sanity_table(cfg)
    elif name == "table3":
        tables["table3"], claims = table3(cfg)
    elif name == "table4":
        tables["table4"], claims = table4(cfg, confidence_scatter(cfg)[1])
    else:
        raise ValueError(f"unknown report item {name!r}; allowed values: {', '.join(REPORT_NOTEBOOKS)}")
    return data, claims, tables


def report_item(cfg: dict, name: str, out_dir: str | Path = "reports", render_notebook: bool = True) -> None:
    """One figure or table: compute its numbers from the run folders (relative to the working directory),
    write them, and render its notebook. Writes exactly item_outputs(name, out_dir); with
    render_notebook=False only its numbers (table, claims, figure data), not the page and figure."""
    out_dir = Path(out_dir)
    data, claims, tables = compute(cfg, name)
    if name in DATA:
        (write_npz if DATA[name] == "npz" else write_csv)(data, out_dir / "data" / f"{name}.{DATA[name]}")
    if name in CLAIMS:
        write_csv(claims, out_dir / "claims" / f"{name}.csv")
    for t, df in tables.items():
        write_csv(df, out_dir / "tables" / f"{t}.csv")
    files = item_outputs(name, out_dir)
    if render_notebook:
        title = table3_title(cfg, TITLES[name]) if name == "table3" else TITLES[name]  # names the pairs run
        render(name, out_dir, {"report_dir": str(out_dir), "profile": cfg["profile"], "needs": needs(cfg, name),
                               "title": title})
    else:
        files = [f for f in files if "/tables/" in f or "/claims/" in f or "/data/" in f]
    _check_written(files)


def _check_written(files: list[str]) -> None:
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        raise RuntimeError(f"the report did not write {', '.join(missing)}")
