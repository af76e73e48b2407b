"""Names and paths that the stage description (pipeline.py) and the stage code (core/, report/) both need:
the report's items and titles, the file names each report stage writes, the run folders, and the
params.yaml keys each stage reads. It imports nothing of the package but config, so both sides import it
and it imports neither back.
"""
from __future__ import annotations

import json
from pathlib import Path

from . import config as C

FIGURES = ["fig01", "fig02", "fig03", "fig04", "fig06", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12",
           "budget"]  # budget: AALP - ALP against the training budget, beyond the paper's figures
TABLES = ["table1", "table2", "table3", "table4"]
REPORT_ITEMS = FIGURES + TABLES  # one notebook, one report stage each


TITLES = {
    "fig01": "Fig. 1: feature contributions of RAW, ADV and ALP",
    "fig02": "Fig. 2: Grad-CAM of adversarial samples, RAW, ADV and ALP",
    "fig03": "Fig. 3: adversarial confidence of the ALP model, Consistent vs Inconsistent samples",
    "fig04": "Fig. 4: ALP loss of the Consistent and Inconsistent probe samples during ALP training",
    "fig06": "Fig. 6: accuracy against the swept loss weight",
    "fig07": "Fig. 7: feature contributions with AALP",
    "fig08": "Fig. 8: Grad-CAM of adversarial samples, ADV, ALP and AALP",
    "fig09": "Fig. 9: feature-contribution concentration over AALP training checkpoints",
    "fig10": "Fig. 10: Grad-CAM of adversarial samples over AALP training checkpoints",
    "fig11": "Fig. 11: clean vs adversarial confidence per test sample, ALP and AALP",
    "fig12": "Fig. 12: ALP vs AALP during training",
    "budget": "Budget curve: AALP − ALP against the training budget",
    "table1": "Table 1: confidence and losses of the Consistent and Inconsistent sets (ALP)",
    "table2": "Table 2: accuracy (%) under attack, ours beside the paper's",
    "table3": "Table 3: Guided Dropout added to RAW, ADV and ALP",
    "table4": "Table 4: share of Consistent samples, ALP vs AALP",
}


def item_title(item: str) -> str:
    return TITLES[item]


def item_caption(item: str) -> str:
    """One line for Snakemake's report: where the item's page and numbers are."""
    files = [f"reports/{item}.html"] + ([f"reports/claims/{item}.csv"] if item != "table2" else [])
    return f"Rendered by notebooks/{item}.ipynb; page and numbers: {', '.join(files)}."


RUN = "runs/{dataset}/{method}/s{seed}"


def run_dir(dataset: str, method: str, seed: int) -> Path:
    """The folder of one training run (model, history) and its evaluation (eval/)."""
    return Path(RUN.format(dataset=dataset, method=method, seed=seed))


# In a run folder: a kept snapshot's weights (as core/training.py names them), and its evaluation's folder
# (metrics.json, eval.json, records.parquet; docs/method.md#budget-snapshots)
CHECKPOINT = "checkpoints/step{step:07d}.pt"
SNAPSHOT = "snapshots/step{step}"


def snapshot_dir(dataset: str, method: str, seed: int, step: int) -> Path:
    """The folder of the evaluation of one run's snapshot at `step` (`evaluate --snapshot`)."""
    return run_dir(dataset, method, seed) / SNAPSHOT.format(step=step)


def snapshot_checkpoint(dataset: str, method: str, seed: int, step: int) -> Path:
    """The weights that snapshot_dir(dataset, method, seed, step) evaluates: an output of the run's training."""
    return run_dir(dataset, method, seed) / CHECKPOINT.format(step=step)


def snapshot_runs(cfg: dict) -> list[tuple[str, str, int, int]]:
    """(dataset, method, seed, step) of every snapshot evaluation: each seed of each run of training.checkpoint_runs
    in the matrix, at each of training.snapshot_steps (none by default)."""
    keep, steps = set(cfg["training"].get("checkpoint_runs", [])), cfg["training"].get("snapshot_steps", [])
    return [(d, m, s, n) for d, m, s in C.runs(cfg, sweeps=False) if f"{d}/{m}" in keep for n in steps]


CLAIMS = FIGURES + ["table1", "table3", "table4"]  # the names with a claims/<name>.csv
TABLE2_EXTRA = ("table2_checks", "autoattack_subset")  # the Table 2 item's other tables (report/masking.py)


DATA = {"fig01": "csv", "fig02": "npz", "fig03": "csv", "fig04": "csv", "fig06": "csv", "fig07": "csv",
        "fig08": "npz", "fig09": "csv", "fig10": "npz", "fig11": "csv", "fig12": "csv", "budget": "csv"}


def item_outputs(name: str, out_dir: str | Path = "reports") -> list[str]:
    """The files report_item(cfg, name, out_dir) writes: its page and executed notebook, its figure (PNG,
    SVG), table, claims and figure data, whatever runs the parameter set has."""
    o = Path(out_dir).as_posix()
    files = [f"{o}/{name}.html", f"{o}/notebooks/{name}.ipynb"]
    if name in FIGURES:
        files += [f"{o}/figures/{name}.{ext}" for ext in ("png", "svg")]
    if name in TABLES:
        files += [f"{o}/tables/{name}.csv"] + ([f"{o}/tables/{t}.csv" for t in TABLE2_EXTRA] if name == "table2" else [])
    if name in CLAIMS:
        files.append(f"{o}/claims/{name}.csv")
    if name in DATA:
        files.append(f"{o}/data/{name}.{DATA[name]}")
    return files


# The maths font every page's formulas use (templates/style.css), copied into the report folder with its license
# by the index stage (report.fonts), so that formulas render alike everywhere and offline.
FONT_FILES = ("fonts/STIXMath-Regular.woff2", "fonts/STIXMath-OFL.txt")


def index_outputs(out_dir: str | Path = "reports") -> list[str]:
    """The files report_index writes: the front page, the method page it links, the verdict table,
    claims.json (every claim, a DVC metrics file) and the maths font with its license."""
    o = Path(out_dir).as_posix()
    return [f"{o}/index.html", f"{o}/method.html", f"{o}/tables/verdicts.csv", f"{o}/claims.json",
            *(f"{o}/{f}" for f in FONT_FILES)]


def report_outputs(out_dir: str | Path = "reports") -> list[str]:
    """Every file report(cfg, out_dir) writes, whatever runs the parameter set has."""
    return index_outputs(out_dir) + [f for nb in REPORT_ITEMS for f in item_outputs(nb, out_dir)]


REPORT_OUTPUTS = report_outputs()


REPORT_INDEX = ("reports/index.html", "reports/method.html", "reports/tables/verdicts.csv",
                *(f"reports/{f}" for f in FONT_FILES))
REPORT_METRICS = "reports/claims.json"


def run_files(cfg: dict) -> list[str]:
    """Each run's provenance files that the front page reads (run.json, eval/eval.json, history.csv for resumed
    runs' epoch times, and analysis/summary.json of the analysed runs, the main matrix): index-stage inputs."""
    analysed = set(C.runs(cfg, sweeps=False))
    return [p.as_posix() for d, m, s in C.runs(cfg)
            for p in (run_dir(d, m, s) / "run.json", run_dir(d, m, s) / "eval" / "eval.json", run_dir(d, m, s) / "history.csv",
                      *([run_dir(d, m, s) / "analysis" / "summary.json"] if (d, m, s) in analysed else []))]


def stage_params(cfg: dict, stage: str, dataset: str | None = None, method: str | None = None) -> list[str]:
    """Exactly the params.yaml keys a stage reads (DVC `params`, Snakemake rerun fingerprint)."""
    if stage == "prepare":
        return [f"datasets.{dataset}"]
    exp = f"experiments.{dataset}"
    base = C.base_method(cfg, dataset, method) if method else None  # a sweep variant reads its base method (+ its value)
    if stage == "train":
        series = f"{dataset}/{method}" in cfg["training"]["checkpoint_runs"]
        return [f"{exp}.model", f"{exp}.epochs", f"{exp}.batch_size", f"{exp}.lr", f"{exp}.augment", f"{exp}.attack",
                f"methods.{base}", "training.device", "training.amp", "training.channels_last", "training.fused_adam",
                "training.compile", "training.drop_last", "training.probe_size",
                *(["training.checkpoint_every", "training.checkpoint_runs"] if series else []),
                *(["training.snapshot_steps"] if series and cfg["training"].get("snapshot_steps") else []),
                *(["training.group_seeds"] if cfg["training"].get("group_seeds") else []), "profile"]
    if stage in ("evaluate", "evaluate_snapshot"):  # a snapshot's: the evaluation's, its step given in the command
        return [f"{exp}.model", f"{exp}.attack", f"methods.{base}", "evaluation", "training.device"]
    if stage == "analyze":
        return [f"{exp}.model", f"{exp}.attack", "analysis", "evaluation.seed", "evaluation.n_samples", "training.device"]
    if stage == "index":  # the front page also shows the set's description
        return ["profile"] + (["description"] if "description" in cfg else [])
    if stage == "report":
        return ["profile"]
    raise ValueError(stage)


def _get(cfg: dict, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


SNAPSHOT_ONLY = ("snapshot_attacks", "snapshot_samples")  # the evaluation keys only the snapshot stages read


def fingerprint(cfg: dict, stage: str, dataset: str | None = None, method: str | None = None) -> str:
    """The values of a stage's params as one JSON string: Snakemake reruns a job when it changes (a run's
    evaluation not when only the snapshot keys do)."""
    values = {k: _get(cfg, k) for k in stage_params(cfg, stage, dataset, method)}
    if stage == "evaluate":
        values["evaluation"] = {k: v for k, v in values["evaluation"].items() if k not in SNAPSHOT_ONLY}
    return json.dumps(values, sort_keys=True)
