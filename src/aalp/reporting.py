"""Tables behind the report: computed here from the metrics files, written as CSV, rendered by the
papermill notebooks in notebooks/ (which only read these CSVs and plot)."""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from . import config as C
from .artifacts import atomic_path, read_json
from .pipeline import run_dir

log = logging.getLogger(__name__)
PAPER_DIR = C.REPO_ROOT / "paper"


def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 in long form: dataset, method, metric, paper."""
    wide = pd.read_csv(PAPER_DIR / "table2_defense.csv")
    return wide.melt(id_vars=["dataset", "method"], var_name="metric", value_name="paper")


def collect_metrics(cfg: dict) -> pd.DataFrame:
    """Long table of every run's accuracies: dataset, source, method, seed, metric, value (percent)."""
    rows = []
    for d, m, s in C.runs(cfg):
        met = read_json(run_dir(d, m, s) / "eval" / "metrics.json")
        for metric, v in met["accuracy"].items():
            rows.append({"dataset": d, "source": cfg["datasets"][d]["source"], "method": m, "seed": s,
                         "metric": metric, "value": v})
    return pd.DataFrame(rows)


def table2(cfg: dict) -> pd.DataFrame:
    """Our accuracies (mean and std over seeds) beside the paper's where the paper has the same dataset,
    method and attack. Columns: dataset, source, model, method, metric, ours_mean, ours_std, n_seeds, paper."""
    runs = collect_metrics(cfg)
    g = runs.groupby(["dataset", "source", "method", "metric"], sort=False)["value"]
    ours = g.agg(ours_mean="mean", ours_std="std", n_seeds="count").reset_index()
    ours["ours_std"] = ours["ours_std"].fillna(0.0)
    ours["model"] = ours["dataset"].map({d: e["model"] for d, e in cfg["experiments"].items()})
    paper = paper_table2().rename(columns={"dataset": "source"})
    out = ours.merge(paper, on=["source", "method", "metric"], how="left")
    order = {m: i for i, m in enumerate(["clean", *cfg["evaluation"]["attacks"], "train"])}
    out = out.sort_values("metric", key=lambda s: s.map(order), kind="stable")
    out = out.sort_values(["dataset", "method"], key=lambda s: s.map({v: i for i, v in enumerate(dict.fromkeys(s))}),
                          kind="stable")
    return out[["dataset", "source", "model", "method", "metric", "ours_mean", "ours_std", "n_seeds", "paper"]]


def sanity_table(cfg: dict) -> pd.DataFrame:
    """Every sanity check of every run: dataset, method, seed, check, fired."""
    rows = []
    for d, m, s in C.runs(cfg):
        met = read_json(run_dir(d, m, s) / "eval" / "metrics.json")
        rows += [{"dataset": d, "method": m, "seed": s, "check": k, "fired": bool(v)} for k, v in met["checks"].items()]
    return pd.DataFrame(rows, columns=["dataset", "method", "seed", "check", "fired"])


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def render(notebook: str, out_dir: Path, parameters: dict) -> None:
    """Execute notebooks/<notebook>.ipynb with papermill into out_dir and convert it to HTML (code hidden)."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    src = C.REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / f"{notebook}.ipynb") as tmp_nb:
        pm.execute_notebook(str(src), str(tmp_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(Path.cwd()), progress_bar=False, log_output=False)
        nb = nbformat.read(tmp_nb, as_version=4)
        html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
        with atomic_path(out_dir / f"{notebook}.html") as tmp_html:
            tmp_html.write_text(html)
    log.info("rendered %s", out_dir / f"{notebook}.html")


def report(cfg: dict, out_dir: str | Path = "reports") -> None:
    out_dir = Path(out_dir)
    write_csv(table2(cfg), out_dir / "table2.csv")
    write_csv(sanity_table(cfg), out_dir / "table2_checks.csv")
    render("table2", out_dir, {"table_csv": str(out_dir / "table2.csv"), "checks_csv": str(out_dir / "table2_checks.csv"),
                               "profile": cfg["profile"]})
