"""What each report item reads: which (dataset, method, seed) runs a figure or table draws, the run files
behind it, and what it still needs when the parameter set lacks them.

The loaders here (load_json, load_csv, ...) record every path they read in READS, so a test can compare
what an item read with what the pipeline declares as its inputs (item_inputs).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import config as C
from ..artifacts import read_json
from ..layout import FIGURES, TABLES, TITLES, run_dir
from .budgetplan import PAIR, budget_datasets, reference, snapshot_metrics

REPORT_NOTEBOOKS = FIGURES + TABLES

# Which methods a figure compares: a dataset is drawn when it has every `required` method; `optional`
# ones are added where the dataset has them.
# Which methods a figure compares: a dataset is drawn when it has every `required` method; `optional`
# ones are added where the dataset has them.
SPECS = {
    "fig01": (("raw", "adv", "alp"), ()),
    "fig02": (("raw", "adv", "alp"), ()),
    "fig03": (("alp",), ()),
    "fig04": (("alp",), ()),
    "fig07": (("alp", "aalp"), ("raw", "adv", "alp_gd", "alp_aw")),
    "fig08": (("adv", "alp", "aalp"), ()),
    "fig11": (("alp", "aalp"), ()),
    "fig12": (("alp", "aalp"), ()),
    "table1": (("alp",), ()),
    "table4": (("alp", "aalp"), ()),
}


ORDER = ["raw", "raw_gd", "adv", "adv_gd", "alp", "alp_gd", "alp_aw", "trades", "aalp"]


GD_PAIRS = [("raw", "raw_gd"), ("adv", "adv_gd"), ("alp", "alp_gd")]


SETS = ["consistent", "inconsistent"]


CKPT_CLAIMS = {"fig09": ("n50", "gini"), "fig10": ("cam_area_adv", "cam_on_object_adv")}


READS: list[str] = []  # the run files the last report() read (tests compare them with report_inputs)


def track(path: Path) -> Path:
    READS.append(Path(path).as_posix())
    return Path(path)


def load_json(path: Path) -> dict:
    return read_json(track(path))


def load_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(track(path))


def load_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(track(path))


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(track(path)) as z:
        return {k: z[k] for k in z.files}


def metrics_path(d, m, s):
    return run_dir(d, m, s) / "eval" / "metrics.json"


def records_path(d, m, s):
    return run_dir(d, m, s) / "eval" / "records.parquet"


def analysis_path(d, m, s, name):
    return run_dir(d, m, s) / "analysis" / name


def sorted_methods(methods) -> list[str]:
    return sorted(methods, key=lambda m: (ORDER.index(m) if m in ORDER else len(ORDER), m))


def seeds(cfg: dict, dataset: str | None = None, method: str | None = None) -> list[int]:
    if dataset is not None:
        return C.seeds(cfg, dataset, method)
    return list(cfg["seeds"])  # the main list; a run's own: C.seeds(cfg, dataset, method)


def models(cfg: dict, name: str) -> list[tuple[str, list[str]]]:
    """(dataset, methods in display order) that figure/table `name` draws (SPECS)."""
    required, optional = SPECS[name]
    out = []
    for d, exp in cfg["experiments"].items():
        have = set(exp["methods"])
        if set(required) <= have:
            out.append((d, sorted_methods([*required, *(m for m in optional if m in have)])))
    return out


def gd_pairs(cfg: dict) -> list[tuple[str, str, str]]:
    """(dataset, base, base_gd) of Table 3, for each pair both of whose methods the dataset runs."""
    return [(d, a, b) for d, exp in cfg["experiments"].items() for a, b in GD_PAIRS
            if a in exp["methods"] and b in exp["methods"]]


def checkpoint_runs(cfg: dict) -> list[tuple[str, str]]:
    """(dataset, method) of training.checkpoint_runs that the set's matrix runs (only when snapshots are kept:
    checkpoint_every > 0); a set published in slices has none for a method it holds no run of yet."""
    if not cfg["training"].get("checkpoint_every"):
        return []
    pairs = [tuple(r.split("/")) for r in cfg["training"].get("checkpoint_runs", [])]
    return [(d, m) for d, m in pairs if m in cfg["experiments"].get(d, {}).get("methods", [])]


def sweep_runs(cfg: dict) -> list[tuple[str, str, str, str, float]]:
    """(dataset, base method, param, run name, value) of every sweep value."""
    return [(d, base, p, name, v) for (d, name), (base, p, v) in C.variants(cfg).items()]


def sweep_bases(cfg: dict) -> list[tuple[str, str, str, float]]:
    """(dataset, method, param, its own value) of each swept method the dataset runs itself, at a value the
    sweep does not hold: Fig. 6 draws that run beside the sweep (aalp itself at lambda 0.5)."""
    out = []
    for d, base, p in dict.fromkeys((d, base, p) for d, base, p, _, _ in sweep_runs(cfg)):
        v = cfg["methods"][base].get(p)
        swept = {val for dd, b, pp, _, val in sweep_runs(cfg) if (dd, b, pp) == (d, base, p)}
        if v is not None and base in cfg["experiments"][d]["methods"] and float(v) not in swept:
            out.append((d, base, p, float(v)))
    return out


def attack_columns(cfg: dict) -> list[str]:
    """The accuracies of Fig. 6 and Table 3: clean, PGD-10 and CW-10, or the strongest PGD-k / CW-k evaluated."""
    atks = cfg["evaluation"]["attacks"]
    out = ["clean"]
    for kind in ("pgd", "cw"):
        ks = {a: int(a[len(kind):]) for a in atks if a.startswith(kind) and a[len(kind):].isdigit()}
        if ks:
            out.append(f"{kind}10" if f"{kind}10" in ks else max(ks, key=ks.get))
    return out


def _names(methods) -> str:
    from .labels import method_name

    names = [method_name(m) for m in methods]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _item(name: str) -> str:
    return TITLES[name].split(":")[0]


def needs(cfg: dict, name: str) -> str:
    """'' when `name` has runs to draw, else one sentence for the reader: why this set cannot draw it and what
    would."""
    datasets = list(cfg["experiments"]) or ["this set's dataset"]
    aalp_d = next((d for d in datasets if "aalp" in cfg["experiments"].get(d, {}).get("methods", [])), datasets[0])
    if name in SPECS:
        if models(cfg, name):
            return ""
        required = SPECS[name][0]
        best = min(datasets, key=lambda d: sum(m not in cfg["experiments"].get(d, {}).get("methods", []) for m in required))
        missing = [m for m in required if m not in cfg["experiments"].get(best, {}).get("methods", [])]
        what = " with their feature and Grad-CAM analysis" if name in ("fig01", "fig02", "fig07", "fig08") else ""
        return (f"This set has no {_names(missing)} runs on {best}: {_item(name)} needs {_names(required)} "
                f"trained on one dataset{what}.")
    if name == "table3":
        if gd_pairs(cfg):
            return ""
        return ("This set trains no method both with and without Guided Dropout: Table 3 needs RAW and RAW + GD, "
                "ADV and ADV + GD, or ALP and ALP + GD on one dataset.")
    if name == "fig06":
        if sweep_runs(cfg):
            return ""
        return (f"This set has no λ sweep: Fig. 6 needs AALP trained on {aalp_d} at several values of λ "
                "(a sweep in the set's parameters).")
    if name in ("fig09", "fig10"):
        if checkpoint_runs(cfg):
            return ""
        return (f"This set keeps no training checkpoints: {_item(name)} needs AALP on {aalp_d} saved at intervals "
                "during training (a checkpoint run in the set's parameters).")
    if name == "budget":
        if budget_datasets(cfg):
            return ""
        pair_d = next((d for d in datasets if set(PAIR) <= set(cfg["experiments"].get(d, {}).get("methods", []))),
                      datasets[0])
        return (f"This set evaluates no training snapshots of ALP and AALP: the budget curve needs both trained on "
                f"{pair_d} and evaluated at several steps before the end of training (snapshot steps for ALP and "
                "AALP in the set's parameters).")
    if name == "table2":
        return ""
    raise ValueError(name)


def item_inputs(cfg: dict, name: str) -> list[Path]:
    """The run files report() reads for `name`."""
    ss = lambda d, m: seeds(cfg, d, m)  # noqa: E731
    first = lambda d, m: seeds(cfg, d, m)[:1]  # noqa: E731
    if name in ("fig01", "fig07"):
        return [analysis_path(d, m, s, f) for d, ms in models(cfg, name) for m in ms for s in ss(d, m)
                for f in ("summary.json", "contributions.csv")]
    if name in ("fig02", "fig08"):
        return ([analysis_path(d, m, s, "summary.json") for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
                + [analysis_path(d, m, s, "cam.npz") for d, ms in models(cfg, name) for m in ms for s in first(d, m)])
    if name in ("fig03", "fig11", "table1", "table4"):
        return [records_path(d, m, s) for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
    if name == "fig04":
        return [run_dir(d, "alp", s) / "probe.parquet" for d, _ in models(cfg, name) for s in ss(d, "alp")]
    if name == "fig12":
        return [run_dir(d, m, s) / "history.csv" for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
    if name == "fig06":
        return ([metrics_path(d, r, s) for d, _, _, r, _ in sweep_runs(cfg) for s in ss(d, r)]
                + [metrics_path(d, m, s) for d, m, _, _ in sweep_bases(cfg) for s in ss(d, m)])
    if name == "fig09":  # summary.json: the images the CAM metrics are over (camclaims.metric_count)
        return [analysis_path(d, m, s, f) for d, m in checkpoint_runs(cfg) for s in ss(d, m)
                for f in ("summary.json", "checkpoints.csv")]
    if name == "fig10":
        return ([analysis_path(d, m, s, f) for d, m in checkpoint_runs(cfg) for s in ss(d, m)
                 for f in ("summary.json", "checkpoints.csv")]
                + [analysis_path(d, m, s, f) for d, m in checkpoint_runs(cfg) for s in first(d, m)
                   for f in ("checkpoint_cams.npz", "cam.npz")])
    if name == "table2":
        return ([metrics_path(d, m, s) for d, m, s in C.runs(cfg)]  # the checks table covers sweep runs too
                + [records_path(d, m, s) for d, m, s in C.runs(cfg) if "autoattack" in C.eval_attacks(cfg, d, m)])
    if name == "table3":
        return [metrics_path(d, m, s) for d, a, b in gd_pairs(cfg) for m in (a, b) for s in ss(d, m)]
    if name == "budget":  # the snapshots, the final models' records (and their AutoAttack count), the reference
        refs = {d: reference(cfg, d) for d in budget_datasets(cfg)}
        return [p for d, ref in refs.items()
                for p in [*snapshot_metrics(cfg, d),
                          *(f(d, m, s) for m in PAIR for s in ss(d, m) for f in (records_path, metrics_path)),
                          *(ref.files() if ref else [])]]
    raise ValueError(name)


def report_inputs(cfg: dict) -> list[str]:
    """Every run file report(cfg) reads, relative to the parameter-set folder (pipeline dependencies)."""
    return list(dict.fromkeys(p.as_posix() for name in REPORT_NOTEBOOKS for p in item_inputs(cfg, name)))
