"""The report: every table and figure of the paper (except Fig. 5, the method's diagram).

Everything computed here is plain pandas/numpy over the small files of the run folders (metrics.json,
records.parquet, history.csv, probe.parquet, analysis/*). It is written, under the report folder
(`reports/` of a parameter set), as

  tables/tableN.csv             Tables 1-4 (ours beside the paper's), tables/table2_checks.csv
  data/figNN.csv | .npz         what each figure draws, already reduced
  claims/<name>.csv             per figure (and Tables 1, 3, 4) the numbers that decide the paper's claim,
                                per dataset and model: mean over seeds, std (0 for one seed), n_seeds
  claims.json                   the same numbers as one flat dict (a DVC metrics file)

and the papermill notebooks in notebooks/ (which only read those files and draw) render
figures/figNN.png and .svg and one HTML page per notebook (<name>.html, code hidden).

The file names are fixed (REPORT_OUTPUTS) whatever runs the parameter set has: a figure whose runs
are missing is still rendered, as a page and a text-only figure naming the runs it needs, with empty
data and claim files (headers only). Means over seeds group by (dataset, method) over all seeds of
`seeds`; per-sample pictures (Grad-CAM grids, the Fig. 11 scatter) show the first seed.
"""
from __future__ import annotations

import contextlib
import html
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from . import config as C
from .artifacts import atomic_path, read_json
from .sets import consistency_sets
from .pipeline import FIGURES, TABLES, TITLES, run_dir

log = logging.getLogger(__name__)
PAPER_DIR = C.REPO_ROOT / "paper"

REPORT_NOTEBOOKS = FIGURES + TABLES
CLAIMS = FIGURES + ["table1", "table3", "table4"]  # the names with a claims/<name>.csv
DATA = {"fig01": "csv", "fig02": "npz", "fig03": "csv", "fig04": "csv", "fig06": "csv", "fig07": "csv",
        "fig08": "npz", "fig09": "csv", "fig10": "npz", "fig11": "csv", "fig12": "csv"}
CLAIM_COLUMNS = ["dataset", "method", "claim", "mean", "std", "n_seeds", "seeds", "values"]
FIG05_NOTE = ("Fig. 5 (the method's diagram) is not reproduced: it is a schematic of the training step, not data; "
              "docs/method.md states the same method as equations.")

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
TABLE1_METRICS = {  # paper/table1_consistency.csv column -> (records column, scale)
    "clean_gt_confidence": ("clean_conf", 100.0),
    "adv_gt_confidence": ("train_conf", 100.0),
    "classification_loss": ("train_ce", 1.0),
    "alp_loss": ("train_alp", 1.0),
}
CKPT_CLAIMS = {"fig09": ("n50", "gini"), "fig10": ("cam_area_adv", "cam_on_object_adv")}


def item_outputs(name: str, out_dir: str | Path = "reports") -> list[str]:
    """The files report_item(cfg, name, out_dir) writes: its page and executed notebook, its figure (PNG,
    SVG), table, claims and figure data, whatever runs the parameter set has."""
    o = Path(out_dir).as_posix()
    files = [f"{o}/{name}.html", f"{o}/notebooks/{name}.ipynb"]
    if name in FIGURES:
        files += [f"{o}/figures/{name}.{ext}" for ext in ("png", "svg")]
    if name in TABLES:
        files += [f"{o}/tables/{name}.csv"] + ([f"{o}/tables/table2_checks.csv"] if name == "table2" else [])
    if name in CLAIMS:
        files.append(f"{o}/claims/{name}.csv")
    if name in DATA:
        files.append(f"{o}/data/{name}.{DATA[name]}")
    return files


def index_outputs(out_dir: str | Path = "reports") -> list[str]:
    """The files report_index writes: the front page, the method page it links, the verdict table and
    claims.json (every claim, a DVC metrics file)."""
    o = Path(out_dir).as_posix()
    return [f"{o}/index.html", f"{o}/method.html", f"{o}/tables/verdicts.csv", f"{o}/claims.json"]


def report_outputs(out_dir: str | Path = "reports") -> list[str]:
    """Every file report(cfg, out_dir) writes, whatever runs the parameter set has."""
    return index_outputs(out_dir) + [f for nb in REPORT_NOTEBOOKS for f in item_outputs(nb, out_dir)]


REPORT_OUTPUTS = report_outputs()


# ----------------------------------------------------------------------------- reading run files
_READS: list[str] = []  # the run files the last report() read (tests compare them with report_inputs)


def _track(path: Path) -> Path:
    _READS.append(Path(path).as_posix())
    return Path(path)


def _json(path: Path) -> dict:
    return read_json(_track(path))


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(_track(path))


def _parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(_track(path))


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(_track(path)) as z:
        return {k: z[k] for k in z.files}


def _metrics(d, m, s):
    return run_dir(d, m, s) / "eval" / "metrics.json"


def _records(d, m, s):
    return run_dir(d, m, s) / "eval" / "records.parquet"


def _analysis(d, m, s, name):
    return run_dir(d, m, s) / "analysis" / name


# ----------------------------------------------------------------------------- what exists
def _sorted(methods) -> list[str]:
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
            out.append((d, _sorted([*required, *(m for m in optional if m in have)])))
    return out


def gd_pairs(cfg: dict) -> list[tuple[str, str, str]]:
    """(dataset, base, base_gd) of Table 3, for each pair both of whose methods the dataset runs."""
    return [(d, a, b) for d, exp in cfg["experiments"].items() for a, b in GD_PAIRS
            if a in exp["methods"] and b in exp["methods"]]


def checkpoint_runs(cfg: dict) -> list[tuple[str, str]]:
    """(dataset, method) of training.checkpoint_runs (only when snapshots are kept: checkpoint_every > 0)."""
    if not cfg["training"].get("checkpoint_every"):
        return []
    return [tuple(r.split("/")) for r in cfg["training"].get("checkpoint_runs", [])]


def sweep_runs(cfg: dict) -> list[tuple[str, str, str, str, float]]:
    """(dataset, base method, param, run name, value) of every sweep value."""
    return [(d, base, p, name, v) for (d, name), (base, p, v) in C.variants(cfg).items()]


def attack_columns(cfg: dict) -> list[str]:
    """The accuracies of Fig. 6 and Table 3: clean, PGD-10 and CW-10, or the strongest PGD-k / CW-k evaluated."""
    atks = cfg["evaluation"]["attacks"]
    out = ["clean"]
    for kind in ("pgd", "cw"):
        ks = {a: int(a[len(kind):]) for a in atks if a.startswith(kind) and a[len(kind):].isdigit()}
        if ks:
            out.append(f"{kind}10" if f"{kind}10" in ks else max(ks, key=ks.get))
    return out


def _method_list(d, ms) -> str:
    return ", ".join(f"{d}/{m}" for m in ms)


def needs(cfg: dict, name: str) -> str:
    """'' when `name` has runs to draw, else one line saying which runs it needs."""
    datasets = list(cfg["experiments"]) or ["<dataset>"]
    if name in SPECS:
        if models(cfg, name):
            return ""
        required = SPECS[name][0]
        best = min(datasets, key=lambda d: sum(m not in cfg["experiments"].get(d, {}).get("methods", []) for m in required))
        missing = [m for m in required if m not in cfg["experiments"].get(best, {}).get("methods", [])]
        what = {"fig01": " (with their analysis)", "fig02": " (with their analysis)", "fig07": " (with their analysis)",
                "fig08": " (with their analysis)"}.get(name, "")
        return f"needs runs: {_method_list(best, missing)}{what}"
    if name == "table3":
        if gd_pairs(cfg):
            return ""
        return "needs runs: " + " or ".join(f"{datasets[0]}/{a} and {datasets[0]}/{b}" for a, b in GD_PAIRS)
    if name == "fig06":
        if sweep_runs(cfg):
            return ""
        d = next((d for d in datasets if "aalp" in cfg["experiments"].get(d, {}).get("methods", [])), datasets[0])
        return f"needs runs: {d}/aalp sweep over lambda (a `sweeps:` entry in params.yaml)"
    if name in ("fig09", "fig10"):
        if checkpoint_runs(cfg):
            return ""
        d = next((d for d in datasets if "aalp" in cfg["experiments"].get(d, {}).get("methods", [])), datasets[0])
        return (f"needs runs: {d}/aalp with checkpoints (training.checkpoint_runs: ['{d}/aalp'] and "
                f"training.checkpoint_every > 0)")
    if name == "table2":
        return ""
    raise ValueError(name)


def _inputs(cfg: dict, name: str) -> list[Path]:
    """The run files report() reads for `name`."""
    ss = lambda d, m: seeds(cfg, d, m)  # noqa: E731
    first = lambda d, m: seeds(cfg, d, m)[:1]  # noqa: E731
    if name in ("fig01", "fig07"):
        return [_analysis(d, m, s, f) for d, ms in models(cfg, name) for m in ms for s in ss(d, m)
                for f in ("summary.json", "contributions.csv")]
    if name in ("fig02", "fig08"):
        return ([_analysis(d, m, s, "summary.json") for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
                + [_analysis(d, m, s, "cam.npz") for d, ms in models(cfg, name) for m in ms for s in first(d, m)])
    if name in ("fig03", "fig11", "table1", "table4"):
        return [_records(d, m, s) for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
    if name == "fig04":
        return [run_dir(d, "alp", s) / "probe.parquet" for d, _ in models(cfg, name) for s in ss(d, "alp")]
    if name == "fig12":
        return [run_dir(d, m, s) / "history.csv" for d, ms in models(cfg, name) for m in ms for s in ss(d, m)]
    if name == "fig06":
        return [_metrics(d, r, s) for d, _, _, r, _ in sweep_runs(cfg) for s in ss(d, r)]
    if name == "fig09":
        return [_analysis(d, m, s, "checkpoints.csv") for d, m in checkpoint_runs(cfg) for s in ss(d, m)]
    if name == "fig10":
        return ([_analysis(d, m, s, "checkpoints.csv") for d, m in checkpoint_runs(cfg) for s in ss(d, m)]
                + [_analysis(d, m, s, f) for d, m in checkpoint_runs(cfg) for s in first(d, m)
                   for f in ("checkpoint_cams.npz", "cam.npz")])
    if name == "table2":
        return [_metrics(d, m, s) for d, m, s in C.runs(cfg)]  # the checks table covers sweep runs too
    if name == "table3":
        return [_metrics(d, m, s) for d, a, b in gd_pairs(cfg) for m in (a, b) for s in ss(d, m)]
    raise ValueError(name)


def report_inputs(cfg: dict) -> list[str]:
    """Every run file report(cfg) reads, relative to the parameter-set folder (pipeline dependencies)."""
    return list(dict.fromkeys(p.as_posix() for name in REPORT_NOTEBOOKS for p in _inputs(cfg, name)))


# ----------------------------------------------------------------------------- seed statistics
def over_seeds(df: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """keys + mean, std (0 with one seed) and n_seeds (the non-NaN values) of `value` over the rows of each group."""
    cols = [*keys, "mean", "std", "n_seeds"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    g = df.groupby(keys, sort=False, dropna=False)[value]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["std"] = np.where(out.n_seeds == 1, 0.0, out["std"])
    return out[cols]


def with_seeds(out: pd.DataFrame, df: pd.DataFrame, keys: list[str], value: str = "value") -> pd.DataFrame:
    """out (one row per group of keys) plus `seeds` and `values`: the seeds and per-seed values behind each
    mean, ';'-joined in seed order (the index page pairs methods seed by seed; per_seed() reads them back)."""
    if out.empty:
        return out.assign(seeds=pd.Series(dtype=str), values=pd.Series(dtype=str))
    rows = df.dropna(subset=[value]).sort_values("seed")
    per = (rows.groupby(keys, sort=False, dropna=False)
           .agg(seeds=("seed", lambda x: ";".join(str(int(v)) for v in x)),
                values=(value, lambda x: ";".join(repr(float(v)) for v in x))).reset_index())
    out = out.merge(per, on=keys, how="left")
    return out.fillna({"seeds": "", "values": ""})


def per_seed(row) -> dict[int, float]:
    """{seed: value} of one claims/table row written by with_seeds."""
    seeds, values = str(row["seeds"]) if row["seeds"] == row["seeds"] else "", row["values"]
    if not seeds:
        return {}
    return {int(s): float(v) for s, v in zip(seeds.split(";"), str(values).split(";"))}


def claims_frame(per_seed: list[dict] | pd.DataFrame) -> pd.DataFrame:
    """Claim table (CLAIM_COLUMNS) from per-seed rows: dataset, method, claim, seed, value."""
    df = pd.DataFrame(per_seed, columns=["dataset", "method", "claim", "seed", "value"])
    keys = ["dataset", "method", "claim"]
    return with_seeds(over_seeds(df, keys), df, keys)[CLAIM_COLUMNS]


def _frame(rows, columns) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)


# ----------------------------------------------------------------------------- Table 2 (and its checks)
def paper_table2() -> pd.DataFrame:
    """The paper's Table 2 in long form: dataset, method, metric, paper."""
    wide = pd.read_csv(PAPER_DIR / "table2_defense.csv")
    return wide.melt(id_vars=["dataset", "method"], var_name="metric", value_name="paper")


def collect_metrics(cfg: dict) -> pd.DataFrame:
    """Long table of every run's accuracies (the main matrix; sweep runs are Fig. 6's): dataset, source,
    method, seed, metric, value (percent)."""
    rows = []
    for d, m, s in C.runs(cfg, sweeps=False):
        met = _json(_metrics(d, m, s))
        for metric, v in met["accuracy"].items():
            rows.append({"dataset": d, "source": cfg["datasets"][d]["source"], "method": m, "seed": s,
                         "metric": metric, "value": v})
    return _frame(rows, ["dataset", "source", "method", "seed", "metric", "value"])


def table2(cfg: dict, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our accuracies (mean and std over seeds) beside the paper's where the paper has the same dataset,
    method and attack. Columns: dataset, source, model, method, metric, ours_mean, ours_std, n_seeds, paper."""
    runs = collect_metrics(cfg) if runs is None else runs
    keys = ["dataset", "source", "method", "metric"]
    g = runs.groupby(keys, sort=False)["value"]
    ours = with_seeds(g.agg(ours_mean="mean", ours_std="std", n_seeds="count").reset_index(), runs, keys)
    ours["ours_std"] = ours["ours_std"].fillna(0.0)
    ours["model"] = ours["dataset"].map({d: e["model"] for d, e in cfg["experiments"].items()})
    paper = paper_table2().rename(columns={"dataset": "source"})
    out = ours.merge(paper, on=["source", "method", "metric"], how="left")
    order = {m: i for i, m in enumerate(["clean", *cfg["evaluation"]["attacks"], "train"])}
    out = out.sort_values("metric", key=lambda s: s.map(order), kind="stable")
    out = out.sort_values(["dataset", "method"], key=lambda s: s.map({v: i for i, v in enumerate(dict.fromkeys(s))}),
                          kind="stable")
    return out[["dataset", "source", "model", "method", "metric", "ours_mean", "ours_std", "n_seeds", "paper", "seeds",
                "values"]]


def sanity_table(cfg: dict) -> pd.DataFrame:
    """Every sanity check of every run: dataset, method, seed, check, fired."""
    rows = []
    for d, m, s in C.runs(cfg):
        met = _json(_metrics(d, m, s))
        rows += [{"dataset": d, "method": m, "seed": s, "check": k, "fired": bool(v)} for k, v in met["checks"].items()]
    return pd.DataFrame(rows, columns=["dataset", "method", "seed", "check", "fired"])


# ----------------------------------------------------------------------------- Figs. 1 and 7: contributions
def contribution_curves(cfg: dict, name: str = "fig01") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sorted contribution curves (data) and n50/n90/gini claims (from summary.json) of the models of `name`.

    data: dataset, method, seed, rank (1 = largest), share (c sorted descending, normalised to sum 1;
    all-zero c gives share 0), feature_dim."""
    curves, claims = [], []
    for d, ms in models(cfg, name):
        for m in ms:
            for s in seeds(cfg, d, m):
                summ = _json(_analysis(d, m, s, "summary.json"))
                for k in ("n50", "n90", "gini"):
                    claims.append({"dataset": d, "method": m, "claim": k, "seed": s, "value": summ[k]})
                c = np.sort(_csv(_analysis(d, m, s, "contributions.csv"))["c"].to_numpy(np.float64))[::-1]
                share = c / c.sum() if c.sum() > 0 else np.zeros_like(c)
                curves.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "rank": np.arange(1, len(c) + 1),
                                            "share": share, "feature_dim": len(c)}))
    cols = ["dataset", "method", "seed", "rank", "share", "feature_dim"]
    data = pd.concat(curves, ignore_index=True)[cols] if curves else pd.DataFrame(columns=cols)
    return data, claims_frame(claims)


# ----------------------------------------------------------------------------- Figs. 2 and 8: Grad-CAM
def cam_grid(cfg: dict, name: str = "fig02") -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Grad-CAM maps of the first seed's models of `name` (arrays '<dataset>/<method>/<field>' with field
    x, x_adv, cam_clean, cam_adv, label, pred_adv, index; float32) and the cam_area_adv /
    cam_on_object_adv claims over all seeds (cam_on_object_adv only for 1-channel inputs)."""
    arrays, claims = {}, []
    for d, ms in models(cfg, name):
        for m in ms:
            for s in seeds(cfg, d, m):
                summ = _json(_analysis(d, m, s, "summary.json"))
                for k in ("cam_area_adv", "cam_on_object_adv"):
                    if summ.get(k) is not None:
                        claims.append({"dataset": d, "method": m, "claim": k, "seed": s, "value": summ[k]})
            z = _npz(_analysis(d, m, seeds(cfg, d, m)[0], "cam.npz"))
            for f in ("x", "x_adv", "cam_clean", "cam_adv", "label", "pred_adv", "index"):
                arrays[f"{d}/{m}/{f}"] = z[f].astype(np.float32) if z[f].dtype == np.float16 else z[f]
    return arrays, claims_frame(claims)


# ----------------------------------------------------------------------------- Figs. 3, 11, Tables 1, 4: sets
def records_with_sets(cfg: dict, d: str, m: str, s: int) -> pd.DataFrame:
    r = _parquet(_records(d, m, s))
    return r.assign(set=consistency_sets(r))


def _records_of(cfg: dict, name: str) -> dict[tuple[str, str, int], pd.DataFrame]:
    return {(d, m, s): records_with_sets(cfg, d, m, s) for d, ms in models(cfg, name) for m in ms for s in seeds(cfg, d, m)}


def adversarial_confidence(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3: the ALP model's adversarial true-class confidence (train_conf) of each Consistent and
    Inconsistent test sample (data: dataset, method, seed, sample, set, train_conf); claims: mean per set
    ('adv_conf_consistent', 'adv_conf_inconsistent'; a seed with an empty set gives no value)."""
    frames, claims = [], []
    for (d, m, s), r in _records_of(cfg, "fig03").items():
        r = r[r.set.isin(SETS)]
        frames.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "sample": r["sample"], "set": r.set,
                                    "train_conf": r.train_conf}))
        for st in SETS:
            v = r.train_conf[r.set == st]
            if len(v):
                claims.append({"dataset": d, "method": m, "claim": f"adv_conf_{st}", "seed": s, "value": float(v.mean())})
    cols = ["dataset", "method", "seed", "sample", "set", "train_conf"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


def consistent_share(r: pd.DataFrame) -> tuple[float, float]:
    """% of the evaluated samples that are Consistent, and % of the clean-correct ones."""
    n_cons = float((r.set == "consistent").sum())
    n_ok = float(r.set.isin(SETS).sum())
    return 100.0 * n_cons / max(len(r), 1), (100.0 * n_cons / n_ok if n_ok else float("nan"))


def confidence_scatter(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 11: clean vs adversarial true-class confidence of every evaluated sample of ALP and AALP
    (data: dataset, method, seed, sample, set, clean_conf, train_conf); claims: 'consistent_pct' (% of
    evaluated samples that are Consistent, Table 4) and 'consistent_pct_of_clean_correct'."""
    frames, claims = [], []
    for (d, m, s), r in _records_of(cfg, "fig11").items():
        frames.append(pd.DataFrame({"dataset": d, "method": m, "seed": s, "sample": r["sample"], "set": r.set,
                                    "clean_conf": r.clean_conf, "train_conf": r.train_conf}))
        pct, pct_ok = consistent_share(r)
        claims += [{"dataset": d, "method": m, "claim": "consistent_pct", "seed": s, "value": pct},
                   {"dataset": d, "method": m, "claim": "consistent_pct_of_clean_correct", "seed": s, "value": pct_ok}]
    cols = ["dataset", "method", "seed", "sample", "set", "clean_conf", "train_conf"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


def paper_table1() -> pd.DataFrame:
    """The paper's Table 1 in long form: source, set, metric, paper."""
    wide = pd.read_csv(PAPER_DIR / "table1_consistency.csv")
    return wide.melt(id_vars=["dataset", "set"], var_name="metric", value_name="paper").rename(columns={"dataset": "source"})


def table1(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 1: the ALP model's per-set means of clean and adversarial (training attack) true-class
    confidence (percent), adversarial CE (train_ce) and ALP loss (train_alp), over seeds, beside the paper's.
    Columns: dataset, source, model, method, set, metric, ours_mean, ours_std, n_seeds, n_samples (mean
    set size over seeds), paper. Claims: '<set>/<metric>'."""
    rows, sizes = [], []
    for (d, m, s), r in _records_of(cfg, "table1").items():
        for st in SETS:
            part = r[r.set == st]
            sizes.append({"dataset": d, "method": m, "set": st, "seed": s, "value": len(part)})
            for metric, (col, scale) in TABLE1_METRICS.items():
                if len(part):
                    rows.append({"dataset": d, "method": m, "set": st, "metric": metric, "seed": s,
                                 "value": scale * float(part[col].mean())})
    per_seed = _frame(rows, ["dataset", "method", "set", "metric", "seed", "value"])
    cols = ["dataset", "source", "model", "method", "set", "metric", "ours_mean", "ours_std", "n_seeds", "n_samples", "paper"]
    if per_seed.empty:
        return pd.DataFrame(columns=cols), claims_frame([])
    out = over_seeds(per_seed, ["dataset", "method", "set", "metric"]).rename(
        columns={"mean": "ours_mean", "std": "ours_std"})
    n = pd.DataFrame(sizes).groupby(["dataset", "method", "set"], sort=False)["value"].mean().rename("n_samples")
    out = out.merge(n.reset_index(), on=["dataset", "method", "set"], how="left")
    out["source"] = out.dataset.map(lambda d: cfg["datasets"][d]["source"])
    out["model"] = out.dataset.map(lambda d: cfg["experiments"][d]["model"])
    out = out.merge(paper_table1(), on=["source", "set", "metric"], how="left")
    claims = claims_frame(per_seed.assign(claim=per_seed.set + "/" + per_seed.metric))
    return out[cols], claims


def paper_table4() -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / "table4_consistent_share.csv").rename(columns={"dataset": "source"})


def table4(cfg: dict, claims: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 4: the Consistent share (% of the evaluated test samples that are clean-correct and correct
    under the training attack) of ALP and AALP, mean/std over seeds, the change (AALP - ALP), the same
    share of the clean-correct samples (metrics.json's consistent_pct_of_clean_correct), beside the paper's."""
    if claims is None:
        _, claims = confidence_scatter(cfg)
    cols = ["dataset", "source", "model", "alp_mean", "alp_std", "alp_n_seeds", "aalp_mean", "aalp_std", "aalp_n_seeds",
            "change", "alp_of_clean_correct", "aalp_of_clean_correct", "paper_alp", "paper_aalp", "paper_change"]
    rows = []
    paper = paper_table4().set_index("source")
    for d, _ in models(cfg, "table4"):
        def get(m, claim, field):
            c = claims[(claims.dataset == d) & (claims.method == m) & (claims.claim == claim)]
            return float(c[field].iloc[0]) if len(c) else float("nan")
        src = cfg["datasets"][d]["source"]
        p_alp = float(paper.alp_consistent_pct.get(src, float("nan")))
        p_aalp = float(paper.aalp_consistent_pct.get(src, float("nan")))
        rows.append({"dataset": d, "source": src, "model": cfg["experiments"][d]["model"],
                     **{f"{m}_{f}": get(m, "consistent_pct", k) for m in ("alp", "aalp")
                        for f, k in (("mean", "mean"), ("std", "std"), ("n_seeds", "n_seeds"))},
                     "alp_of_clean_correct": get("alp", "consistent_pct_of_clean_correct", "mean"),
                     "aalp_of_clean_correct": get("aalp", "consistent_pct_of_clean_correct", "mean"),
                     "paper_alp": p_alp, "paper_aalp": p_aalp, "paper_change": p_aalp - p_alp})
        rows[-1]["change"] = rows[-1]["aalp_mean"] - rows[-1]["alp_mean"]
    table = _frame(rows, cols)[cols]
    for m in ("alp", "aalp"):
        table[f"{m}_n_seeds"] = table[f"{m}_n_seeds"].fillna(0).astype(int)
    keep = claims[claims.claim.isin(["consistent_pct", "consistent_pct_of_clean_correct"])] if len(claims) else claims
    return table, keep.reset_index(drop=True)


# ----------------------------------------------------------------------------- Fig. 4: probe ALP loss per set
def second_half(epochs) -> list[int]:
    """The epochs of the 'second half of training' the Fig. 4 slope is fitted on: the later half of the
    sorted epochs (epochs[len // 2:]), or the last two epochs when that leaves fewer than two."""
    e = sorted(set(int(x) for x in epochs))
    half = e[len(e) // 2:]
    return half if len(half) >= 2 else e[-2:]


def probe_alp_by_set(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 4: per epoch, the mean probe ALP loss of the ALP model's probe samples of each set, the sets
    fixed by the final epoch (Consistent: clean and adversarial correct then; Inconsistent: clean correct,
    adversarial wrong). data: dataset, method, seed, set, epoch, alp, n, fit (least-squares line over
    second_half(); NaN elsewhere). Claims: 'alp_slope_<set>' (per epoch; none for an empty set or one epoch)."""
    frames, claims = [], []
    for d, _ in models(cfg, "fig04"):
        for s in seeds(cfg, d, "alp"):
            p = _parquet(run_dir(d, "alp", s) / "probe.parquet")
            last = p[p.epoch == p.epoch.max()].set_index("sample")
            clean_ok, adv_ok = last.clean_correct.astype(bool), last.adv_correct.astype(bool)
            members = {"consistent": last.index[clean_ok & adv_ok], "inconsistent": last.index[clean_ok & ~adv_ok]}
            fit_epochs = second_half(p.epoch.unique())
            for st, idx in members.items():
                q = p[p["sample"].isin(idx)].groupby("epoch")["alp"].agg(alp="mean", n="count").reset_index()
                q["fit"] = np.nan
                if len(idx) and len(fit_epochs) >= 2:
                    sel = q.epoch.isin(fit_epochs)
                    slope, icpt = np.polyfit(q.epoch[sel].to_numpy(float), q.alp[sel].to_numpy(float), 1)
                    q.loc[sel, "fit"] = icpt + slope * q.epoch[sel]
                    claims.append({"dataset": d, "method": "alp", "claim": f"alp_slope_{st}", "seed": s,
                                   "value": float(slope)})
                frames.append(q.assign(dataset=d, method="alp", seed=s, set=st))
    cols = ["dataset", "method", "seed", "set", "epoch", "alp", "n", "fit"]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


# ----------------------------------------------------------------------------- Fig. 12: ALP vs AALP training
HISTORY = ["probe_alp", "probe_clean_acc", "probe_adv_acc"]


def training_curves(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 12: history.csv's probe ALP loss, clean and adversarial accuracy per epoch of ALP and AALP
    (data: dataset, method, seed, epoch + HISTORY); claims: the final epoch's values ('final_<column>')."""
    frames, claims = [], []
    for d, ms in models(cfg, "fig12"):
        for m in ms:
            for s in seeds(cfg, d, m):
                h = _csv(run_dir(d, m, s) / "history.csv")
                frames.append(h[["epoch", *HISTORY]].assign(dataset=d, method=m, seed=s))
                last = h.loc[h.epoch.idxmax()]
                claims += [{"dataset": d, "method": m, "claim": f"final_{k}", "seed": s, "value": float(last[k])}
                           for k in HISTORY]
    cols = ["dataset", "method", "seed", "epoch", *HISTORY]
    return (pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)), claims_frame(claims)


# ----------------------------------------------------------------------------- Fig. 6: sweeps
def sweep_accuracy(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 6: accuracy (metrics.json) of every sweep run against the swept value, for attack_columns().
    data: dataset, method (the swept base method), param, value, run, seed, metric, accuracy.
    Claims: per run (method = the run name, e.g. aalp_lambda0p25), claim = the metric."""
    rows, claims = [], []
    metrics = attack_columns(cfg)
    for d, base, p, run, v in sweep_runs(cfg):
        for s in seeds(cfg, d, run):
            acc = _json(_metrics(d, run, s))["accuracy"]
            for k in metrics:
                rows.append({"dataset": d, "method": base, "param": p, "value": v, "run": run, "seed": s, "metric": k,
                             "accuracy": acc[k]})
                claims.append({"dataset": d, "method": run, "claim": k, "seed": s, "value": acc[k]})
    return _frame(rows, ["dataset", "method", "param", "value", "run", "seed", "metric", "accuracy"]), claims_frame(claims)


# ----------------------------------------------------------------------------- Figs. 9, 10: checkpoints
def checkpoint_series(cfg: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Figs. 9-10: checkpoints.csv of every checkpoint run and seed (data: dataset, method, seed, step, n50,
    n90, gini, cam_area_adv, cam_on_object_adv); claims of Fig. 9 ('step<N>/n50', 'step<N>/gini') and of
    Fig. 10 ('step<N>/cam_area_adv', 'step<N>/cam_on_object_adv' where defined)."""
    frames, c9, c10 = [], [], []
    for d, m in checkpoint_runs(cfg):
        for s in seeds(cfg, d, m):
            ck = _csv(_analysis(d, m, s, "checkpoints.csv"))
            frames.append(ck.assign(dataset=d, method=m, seed=s))
            for _, row in ck.iterrows():
                for name, out in (("fig09", c9), ("fig10", c10)):
                    for k in CKPT_CLAIMS[name]:
                        if pd.notna(row[k]):
                            out.append({"dataset": d, "method": m, "claim": f"step{int(row.step)}/{k}", "seed": s,
                                        "value": float(row[k])})
    cols = ["dataset", "method", "seed", "step", "n50", "n90", "gini", "cam_area_adv", "cam_on_object_adv"]
    data = pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
    return data, claims_frame(c9), claims_frame(c10)


def checkpoint_cams(cfg: dict) -> dict[str, np.ndarray]:
    """Fig. 10: first seed's per-checkpoint adversarial Grad-CAM maps ('<d>/<m>/steps', 'cam_adv' S x K x H x W,
    'x_adv' S x K x C x H x W) and the clean inputs and labels of the same samples ('x', 'label', from cam.npz)."""
    arrays = {}
    for d, m in checkpoint_runs(cfg):
        s = seeds(cfg, d, m)[0]
        z = _npz(_analysis(d, m, s, "checkpoint_cams.npz"))
        cam = _npz(_analysis(d, m, s, "cam.npz"))
        k = z["cam_adv"].shape[1]
        arrays.update({f"{d}/{m}/steps": z["steps"], f"{d}/{m}/cam_adv": z["cam_adv"].astype(np.float32),
                       f"{d}/{m}/x_adv": z["x_adv"].astype(np.float32), f"{d}/{m}/x": cam["x"][:k].astype(np.float32),
                       f"{d}/{m}/label": cam["label"][:k]})
    return arrays


# ----------------------------------------------------------------------------- Table 3: Guided Dropout
def paper_table3() -> pd.DataFrame:
    wide = pd.read_csv(PAPER_DIR / "table3_guided_dropout.csv")
    return wide.melt(id_vars=["dataset", "method"], var_name="metric", value_name="paper_table3").rename(
        columns={"dataset": "source"})


def table3(cfg: dict, runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 3: clean, PGD-10 and CW-10 accuracy (attack_columns()) of RAW, ADV, ALP with and without Guided
    Dropout, mean/std over seeds, beside the paper's Table 3 and its Table 2 for the same models.
    Columns: dataset, source, model, pair, method, metric, ours_mean, ours_std, n_seeds, paper_table3, paper_table2."""
    metrics = attack_columns(cfg)
    rows = []
    for d, a, b in gd_pairs(cfg):
        for m in (a, b):
            for s in seeds(cfg, d, m):
                acc = _json(_metrics(d, m, s))["accuracy"]
                rows += [{"dataset": d, "pair": a, "method": m, "seed": s, "metric": k, "value": acc[k]} for k in metrics]
    per_seed = _frame(rows, ["dataset", "pair", "method", "seed", "metric", "value"])
    cols = ["dataset", "source", "model", "pair", "method", "metric", "ours_mean", "ours_std", "n_seeds",
            "paper_table3", "paper_table2"]
    if per_seed.empty:
        return pd.DataFrame(columns=cols), claims_frame([])
    out = over_seeds(per_seed, ["dataset", "pair", "method", "metric"]).rename(columns={"mean": "ours_mean",
                                                                                      "std": "ours_std"})
    out["source"] = out.dataset.map(lambda d: cfg["datasets"][d]["source"])
    out["model"] = out.dataset.map(lambda d: cfg["experiments"][d]["model"])
    out = out.merge(paper_table3(), on=["source", "method", "metric"], how="left")
    out = out.merge(paper_table2().rename(columns={"dataset": "source", "paper": "paper_table2"}),
                    on=["source", "method", "metric"], how="left")
    return out[cols], claims_frame(per_seed.rename(columns={"metric": "claim"}))


TABLE3_NOTE = ("The paper's Table 3 CW-10 column disagrees with its own Table 2 for the same SVHN models: "
               "ADV 24.03 vs 38.41, ALP 31.17 vs 44.82.")


# ----------------------------------------------------------------------------- writing and rendering
def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_npz(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def claims_dict(claims: dict[str, pd.DataFrame]) -> dict[str, float | int | None]:
    """Flat {'<name>/<dataset>/<method>/<claim>_mean': ..., '_std': ..., '_n_seeds': ...} (NaN -> None)."""
    out = {}
    for name, df in claims.items():
        for r in df.itertuples(index=False):
            key = f"{name}/{r.dataset}/{r.method}/{r.claim}"
            for f in ("mean", "std"):
                v = float(getattr(r, f))
                out[f"{key}_{f}"] = None if math.isnan(v) else v
            out[f"{key}_n_seeds"] = int(r.n_seeds)
    return out


@contextlib.contextmanager
def _kernel_pythonpath():
    """Let the notebooks' kernel import this checkout's aalp (figures.py) first."""
    src = C.REPO_ROOT / "src"
    old = os.environ.get("PYTHONPATH")
    if (src / "aalp").is_dir():
        os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *([old] if old else [])])
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def render(notebook: str, out_dir: Path, parameters: dict) -> None:
    """Execute notebooks/<notebook>.ipynb with papermill (kernel python3, working directory the current
    one) into out_dir/notebooks/ and convert it to out_dir/<notebook>.html (code hidden)."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    src = C.REPO_ROOT / "notebooks" / f"{notebook}.ipynb"
    out_dir = Path(out_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "notebooks" / f"{notebook}.ipynb") as tmp_nb, _kernel_pythonpath():
        pm.execute_notebook(str(src), str(tmp_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(Path.cwd()), progress_bar=False, log_output=False)
        nb = nbformat.read(tmp_nb, as_version=4)
        from .frontpage import _page

        body, _ = HTMLExporter(template_name="basic", exclude_input=True).from_notebook_node(nb)
        page = _page(TITLES[notebook], '<p><a href="index.html">← report</a></p>\n' + body)
        with atomic_path(out_dir / f"{notebook}.html") as tmp_html:
            tmp_html.write_text(page)
    log.info("rendered %s", out_dir / f"{notebook}.html")




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
    elif name == "table1":
        tables["table1"], claims = table1(cfg)
    elif name == "table2":
        tables["table2"] = table2(cfg, collect_metrics(cfg))
        tables["table2_checks"] = sanity_table(cfg)
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
        render(name, out_dir, {"report_dir": str(out_dir), "profile": cfg["profile"], "needs": needs(cfg, name),
                               "title": TITLES[name]})
    else:
        files = [f for f in files if "/tables/" in f or "/claims/" in f or "/data/" in f]
    _check_written(files)


def report_index(cfg: dict, out_dir: str | Path = "reports") -> None:
    """The front page (with the verdicts), the method page and claims.json, from the files the item stages
    wrote (claims/*.csv, tables/table2*.csv) and the runs' provenance (run.json, eval.json)."""
    from .frontpage import write_index

    out_dir = Path(out_dir)
    claims = {n: pd.read_csv(out_dir / "claims" / f"{n}.csv") for n in CLAIMS}
    write_index(cfg, out_dir, {nb: needs(cfg, nb) for nb in REPORT_NOTEBOOKS})
    with atomic_path(out_dir / "claims.json") as tmp:
        tmp.write_text(json.dumps(claims_dict(claims), indent=1, sort_keys=True) + "\n")
    _check_written(index_outputs(out_dir))


def _check_written(files: list[str]) -> None:
    missing = [p for p in files if not Path(p).is_file()]
    if missing:
        raise RuntimeError(f"the report did not write {', '.join(missing)}")


def report(cfg: dict, out_dir: str | Path = "reports", items: list[str] | None = None,
           render_notebooks: bool = True) -> None:
    """Every item (or the given ones), then the index. The pipeline runs one stage per item instead, so that
    a change reruns only the items whose run files changed. render_notebooks=False: the numbers only."""
    _READS.clear()
    for name in items or REPORT_NOTEBOOKS:
        report_item(cfg, name, out_dir, render_notebooks)
    report_index(cfg, out_dir)
