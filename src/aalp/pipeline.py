"""The pipeline's stages, described once: Snakemake's rules (workflow/rules/*.smk) take their paths,
commands and parameter fingerprints from here, and `python -m aalp dvc` writes dvc.yaml from the same
description, so the two cannot drift.

All paths are relative to the working directory of a parameter profile (the repository root for the
paper profile, configs/<name>/ for the others).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import config as C

CODE = {  # source files each stage's output depends on (DVC deps, Snakemake inputs)
    "prepare": ["data.py", "sources.py"],
    "train": ["training.py", "losses.py", "models.py", "attacks.py", "data.py"],
    "evaluate": ["evaluation.py", "attacks.py", "losses.py", "models.py", "training.py"],
    "analyze": ["analysis.py", "attacks.py", "losses.py", "models.py", "training.py", "data.py"],
    "report": ["reporting.py", "figures.py"],  # + the item's notebook and the paper's tables
    "index": ["reporting.py", "frontpage.py", "verdicts.py", "stats.py"],  # + docs/method.md
}
PAPER_TABLES = ["table1_consistency.csv", "table2_defense.csv", "table3_guided_dropout.csv", "table4_consistent_share.csv"]


FIGURES = ["fig01", "fig02", "fig03", "fig04", "fig06", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12"]
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


def notebooks() -> list[str]:
    return list(REPORT_ITEMS)


def item_outs(item: str) -> list[str]:
    """Every file the report stage of one figure or table writes (fixed names)."""
    from .reporting import item_outputs

    return item_outputs(item)


def item_inputs(cfg: dict, item: str) -> list[str]:
    """The run files one report item reads (outputs of train, evaluate and analyze stages)."""
    from .reporting import _inputs

    return list(dict.fromkeys(p.as_posix() for p in _inputs(cfg, item)))


REPORT_INDEX = ("reports/index.html", "reports/method.html", "reports/tables/verdicts.csv")
REPORT_METRICS = "reports/claims.json"


def index_inputs(cfg: dict) -> list[str]:
    """What the front page reads: every item's claims and page (so it is written after them), Table 2 and
    its checks, and each run's provenance (run.json, eval.json)."""
    from .frontpage import run_files
    from .reporting import CLAIMS

    return ([f"reports/claims/{n}.csv" for n in CLAIMS] + [f"reports/{nb}.html" for nb in notebooks()]
            + ["reports/tables/table2.csv", "reports/tables/table2_checks.csv"] + run_files(cfg))


@dataclass(frozen=True)
class Template:
    cmd: str
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()


RUN = "runs/{dataset}/{method}/s{seed}"


def run_dir(dataset: str, method: str, seed: int) -> Path:
    """The folder of one training run (model, history) and its evaluation (eval/)."""
    return Path(RUN.format(dataset=dataset, method=method, seed=seed))

TEMPLATES = {
    "prepare": Template("python -m aalp prepare --dataset {dataset}",
                        tuple(f"{{data_dir}}/{{dataset}}/{a}.npy" for a in ("train_images", "train_labels", "test_images", "test_labels"))
                        + ("{data_dir}/{dataset}/manifest.json",)),
    "train": Template("python -m aalp train --dataset {dataset} --method {method} --seed {seed}",
                      (f"{RUN}/model.pt", f"{RUN}/probe.parquet", f"{RUN}/run.json"), plots=(f"{RUN}/history.csv",)),
    "evaluate": Template("python -m aalp evaluate --dataset {dataset} --method {method} --seed {seed}",
                         (f"{RUN}/eval/records.parquet", f"{RUN}/eval/eval.json"), metrics=(f"{RUN}/eval/metrics.json",)),
    "analyze": Template("python -m aalp analyze --dataset {dataset} --method {method} --seed {seed}",
                        tuple(f"{RUN}/analysis/{f}" for f in ("contributions.csv", "cam.npz", "checkpoints.csv",
                                                               "checkpoint_cams.npz")),
                        metrics=(f"{RUN}/analysis/summary.json",)),
    "report": Template("python -m aalp report --item {item}", ()),
    "index": Template("python -m aalp report --index", REPORT_INDEX, metrics=(REPORT_METRICS,)),
}


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
                *(["training.checkpoint_every", "training.checkpoint_runs"] if series else []), "profile"]
    if stage == "evaluate":
        return [f"{exp}.model", f"{exp}.attack", f"methods.{base}", "evaluation", "training.device", "training.amp"]
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


def fingerprint(cfg: dict, stage: str, dataset: str | None = None, method: str | None = None) -> str:
    """The values of a stage's params as one JSON string: Snakemake reruns a job when it changes."""
    return json.dumps({k: _get(cfg, k) for k in stage_params(cfg, stage, dataset, method)}, sort_keys=True)


def analyzed(cfg: dict):
    """The runs the analysis stage covers: the main matrix (sweep variants are only evaluated)."""
    return C.runs(cfg, sweeps=False)


def project_root(workdir: Path | str = ".") -> Path:
    """The checkout a profile belongs to: the nearest folder at or above workdir holding the Snakefile."""
    return C.find_checkout(workdir) or C.REPO_ROOT


def repo_rel(workdir: Path | str = ".") -> str:
    """The project root relative to the profile's working directory ('.' or '../..')."""
    return os.path.relpath(project_root(workdir), Path(workdir).resolve())


def code_deps(stage: str, workdir: Path | str = ".", item: str | None = None) -> list[str]:
    root = repo_rel(workdir)
    deps = [os.path.normpath(f"{root}/src/aalp/{f}") for f in CODE[stage]]
    if stage == "report":
        deps.append(os.path.normpath(f"{root}/notebooks/{item}.ipynb"))
        deps += [os.path.normpath(f"{root}/paper/{t}") for t in PAPER_TABLES]
    if stage == "index":
        deps.append(os.path.normpath(f"{root}/docs/method.md"))
        deps += [os.path.normpath(f"{root}/paper/{t}") for t in PAPER_TABLES]
    return deps


@dataclass
class Stage:
    name: str
    kind: str
    cmd: str
    deps: list[str]
    outs: list[str]
    params: list[str]
    metrics: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)

    @property
    def all_outs(self) -> list[str]:
        return self.outs + self.metrics + self.plots


def stages(cfg: dict, workdir: Path | str = ".") -> list[Stage]:
    """Every job of the experiment matrix, in dependency order."""
    dd = cfg["data"]["dir"]
    out: list[Stage] = []

    def make(kind, name, deps, dataset=None, method=None, seed=None, item=None):
        t = TEMPLATES[kind]
        kw = dict(data_dir=dd, dataset=dataset, method=method, seed=seed, item=item)
        outs = item_outs(item) if kind == "report" else [o.format(**kw) for o in t.outs]
        return Stage(name, kind, t.cmd.format(**kw), deps + code_deps(kind, workdir, item), outs,
                     stage_params(cfg, kind, dataset, method), [o.format(**kw) for o in t.metrics],
                     [o.format(**kw) for o in t.plots])

    used = list(cfg["experiments"])
    for d in used:
        out.append(make("prepare", f"prepare-{d}", [], d))
    analysed = set(analyzed(cfg))
    for d, m, s in C.runs(cfg):
        prep = out[used.index(d)]
        train = make("train", f"train-{d}-{m}-s{s}", [p for p in prep.outs], d, m, s)
        ev = make("evaluate", f"evaluate-{d}-{m}-s{s}", [train.outs[0]] + prep.outs, d, m, s)
        out += [train, ev]
        if (d, m, s) in analysed:
            out.append(make("analyze", f"analyze-{d}-{m}-s{s}", [train.outs[0]] + prep.outs, d, m, s))
    for nb in notebooks():
        out.append(make("report", f"report-{nb}", item_inputs(cfg, nb), item=nb))
    out.append(make("index", "report", index_inputs(cfg)))
    return out


MATRIX_STAGE = "matrix-check"
MATRIX_STAMP = "runs/dvc_matrix.ok"


def dvc_yaml(cfg: dict, workdir: Path | str = ".") -> str:
    """dvc.yaml text for the experiment matrix of `cfg`.

    Its first stage, matrix-check, reruns whenever params.yaml changes and stops `dvc repro` with one
    line when the matrix (datasets, methods, seeds) no longer matches this file; every prepare stage
    depends on its stamp (constant content, so a passing check reruns nothing downstream)."""
    root = repo_rel(workdir)
    doc = {"stages": {MATRIX_STAGE: {
        "cmd": f"python -m aalp dvc --check --stamp {MATRIX_STAMP}",
        "deps": ["params.yaml"] + [os.path.normpath(f"{root}/src/aalp/{f}") for f in ("pipeline.py", "config.py")],
        "outs": [{MATRIX_STAMP: {"cache": False}}]}}}
    for st in stages(cfg, workdir):
        deps = st.deps + [MATRIX_STAMP] if st.kind == "prepare" else st.deps
        entry = {"cmd": st.cmd, "deps": deps}
        if st.params:
            entry["params"] = st.params
        entry["outs"] = st.outs
        if st.metrics:
            entry["metrics"] = [{m: {"cache": False}} for m in st.metrics]
        if st.plots:
            entry["plots"] = [{p: {"cache": False, "x": "epoch"}} for p in st.plots]
        doc["stages"][st.name] = entry
    header = ("# Generated by `python -m aalp dvc` from params.yaml and src/aalp/pipeline.py: do not edit by hand.\n"
              "# Regenerate after changing the experiment matrix (datasets, methods, seeds); tests fail if it is stale.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)


# ----------------------------------------------------------------------------- Snakemake helpers
def smk_output(kind: str, data_dir: str = "data") -> dict[str, str]:
    """Named output patterns with Snakemake wildcards."""
    t = TEMPLATES[kind]
    outs = t.outs
    pats = [o.replace("{data_dir}", data_dir) for o in outs + t.metrics + t.plots]
    return {re.sub(r"\W", "_", Path(p).name.split(".")[0]) + f"_{i}": p for i, p in enumerate(pats)}


def smk_shell(kind: str) -> str:
    return re.sub(r"\{(dataset|method|seed)\}", r"{wildcards.\1}", TEMPLATES[kind].cmd)


def smk_targets(cfg: dict) -> list[str]:
    return [o for st in stages(cfg) for o in st.all_outs]


def prepared(data_dir: str, dataset: str) -> list[str]:
    return [o.format(data_dir=data_dir, dataset=dataset) for o in TEMPLATES["prepare"].outs]


def gpu_slots(cfg: dict) -> int:
    """How much of Snakemake's `gpu` resource one train, evaluate or analyze job takes: 1 when it will run
    on a GPU (training.device cuda, or auto on a machine with an NVIDIA driver), else 0, so that
    `--resources gpu=N` caps the jobs sharing the GPU while CPU-only jobs are limited by `--cores` alone."""
    import shutil

    device = cfg["training"]["device"]
    if device == "cpu":
        return 0
    if device.startswith("cuda"):
        return 1
    return int(Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None)
