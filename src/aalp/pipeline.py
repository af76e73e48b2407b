"""The pipeline's stages, described once: Snakemake's rules (workflow/rules/*.smk) take their paths,
commands and parameter fingerprints from here, and `python -m aalp dvc` writes dvc.yaml from the same
description, so the two cannot drift.

All paths are relative to the working directory of a parameter profile (the repository root for the
paper profile, configs/<name>/ for the others).
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from . import config as C, deps
from .checkout import find_checkout
from .layout import (CLAIMS, TABLE2_EXTRA, REPORT_INDEX, REPORT_ITEMS, REPORT_METRICS, RUN, SNAPSHOT, fingerprint,  # noqa: F401
                     item_caption, item_outputs, item_title, run_dir, run_files, snapshot_checkpoint, snapshot_dir,
                     snapshot_runs, stage_params)
from .report.inputs import item_inputs as _item_inputs

# The module each stage's command runs (`python -m aalp <stage>` dispatches to it). A stage's code
# dependencies are this module and everything it imports inside the package, derived by aalp.deps, plus the
# files those modules declare in RESOURCES (the schema, the paper's tables, templates) and, for a report
# item, its notebook. cli.py only parses arguments and dispatches, so it is not among them.
ENTRY = {
    "prepare": "aalp.core.data",
    "train": "aalp.core.training",
    "evaluate": "aalp.core.evaluation",
    "evaluate_snapshot": "aalp.core.evaluation",  # `evaluate --snapshot N`: one kept snapshot's evaluation
    "analyze": "aalp.core.analysis",
    "report": "aalp.report.items",
    "index": "aalp.report.frontpage",
    "matrix": "aalp.pipeline",  # dvc.yaml's matrix-check stage
}


def notebooks() -> list[str]:
    return list(REPORT_ITEMS)


def item_outs(item: str) -> list[str]:
    """Every file the report stage of one figure or table writes (fixed names)."""
    return item_outputs(item)


def item_inputs(cfg: dict, item: str) -> list[str]:
    """The run files one report item reads (outputs of train, evaluate and analyze stages)."""
    return list(dict.fromkeys(p.as_posix() for p in _item_inputs(cfg, item)))


def index_inputs(cfg: dict) -> list[str]:
    """What the front page reads: every item's claims and page (so it is written after them), Table 2 and
    its checks, and each run's provenance (run.json, eval.json)."""
    return ([f"reports/claims/{n}.csv" for n in CLAIMS] + [f"reports/{nb}.html" for nb in notebooks()]
            + ["reports/tables/table2.csv", *(f"reports/tables/{t}.csv" for t in TABLE2_EXTRA)] + run_files(cfg))


@dataclass(frozen=True)
class Template:
    cmd: str
    outs: tuple[str, ...]
    metrics: tuple[str, ...] = ()
    plots: tuple[str, ...] = ()


TEMPLATES = {
    "prepare": Template("python -m aalp prepare --dataset {dataset}",
                        tuple(f"{{data_dir}}/{{dataset}}/{a}.npy" for a in ("train_images", "train_labels", "test_images", "test_labels"))
                        + ("{data_dir}/{dataset}/manifest.json",)),
    "train": Template("python -m aalp train --dataset {dataset} --method {method} --seed {seed}",
                      (f"{RUN}/model.pt", f"{RUN}/probe.parquet", f"{RUN}/run.json"), plots=(f"{RUN}/history.csv",)),
    # training.group_seeds: one job trains every seed of a (dataset, method), each seed's files as above
    "train_group": Template("python -m aalp train --dataset {dataset} --method {method} --seeds {seeds}", ()),
    "evaluate": Template("python -m aalp evaluate --dataset {dataset} --method {method} --seed {seed}",
                         (f"{RUN}/eval/records.parquet", f"{RUN}/eval/eval.json"), metrics=(f"{RUN}/eval/metrics.json",)),
    # training.snapshot_steps: the kept snapshot of a checkpoint run at one step, evaluated (docs/method.md#budget-snapshots)
    "evaluate_snapshot": Template("python -m aalp evaluate --dataset {dataset} --method {method} --seed {seed} --snapshot {step}",
                                  (f"{RUN}/{SNAPSHOT}/records.parquet", f"{RUN}/{SNAPSHOT}/eval.json"),
                                  metrics=(f"{RUN}/{SNAPSHOT}/metrics.json",)),
    "analyze": Template("python -m aalp analyze --dataset {dataset} --method {method} --seed {seed}",
                        tuple(f"{RUN}/analysis/{f}" for f in ("contributions.csv", "cam.npz", "checkpoints.csv",
                                                               "checkpoint_cams.npz")),
                        metrics=(f"{RUN}/analysis/summary.json",)),
    "report": Template("python -m aalp report --item {item}", ()),
    "index": Template("python -m aalp report --index", REPORT_INDEX, metrics=(REPORT_METRICS,)),
}


def analyzed(cfg: dict):
    """The runs the analysis stage covers: the main matrix (sweep variants are only evaluated)."""
    return C.runs(cfg, sweeps=False)


def project_root(workdir: Path | str = ".") -> Path:
    """The checkout a profile belongs to: the nearest folder at or above workdir holding the Snakefile."""
    return find_checkout(workdir) or C.REPO_ROOT


def repo_rel(workdir: Path | str = ".") -> str:
    """The project root relative to the profile's working directory ('.' or '../..')."""
    return os.path.relpath(project_root(workdir), Path(workdir).resolve())


def stage_files(stage: str, item: str | None = None) -> list[Path]:
    """Absolute paths of every source and resource file whose change must rerun `stage` (aalp.deps)."""
    return list(_stage_files(stage, item if stage == "report" else None))


@lru_cache(maxsize=None)
def _stage_files(stage: str, item: str | None) -> tuple[Path, ...]:
    # read once per process: Snakemake and `python -m aalp dvc` ask for every stage of the matrix
    notebook = deps.REPO_ROOT / "notebooks" / f"{item}.ipynb" if stage == "report" else None
    return tuple(deps.files([ENTRY[stage]], notebook))


def code_hash(stage: str, item: str | None = None) -> str:
    """One digest of stage_files(stage, item): equal hashes, equal code behind the stage's outputs."""
    return deps.code_hash(stage_files(stage, item))


def code_deps(stage: str, workdir: Path | str = ".", item: str | None = None) -> list[str]:
    """stage_files(stage, item) relative to a parameter set's working directory (DVC deps, Snakemake inputs)."""
    root = repo_rel(workdir)
    return [os.path.normpath(f"{root}/{p.relative_to(deps.REPO_ROOT).as_posix()}") for p in stage_files(stage, item)]


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

    def make(kind, name, deps, dataset=None, method=None, seed=None, item=None, step=None):
        t = TEMPLATES[kind]
        kw = dict(data_dir=dd, dataset=dataset, method=method, seed=seed, item=item, step=step)
        outs = item_outs(item) if kind == "report" else [o.format(**kw) for o in t.outs]
        return Stage(name, kind, t.cmd.format(**kw), deps + code_deps(kind, workdir, item), outs,
                     stage_params(cfg, kind, dataset, method), [o.format(**kw) for o in t.metrics],
                     [o.format(**kw) for o in t.plots])

    used = list(cfg["experiments"])
    for d in used:
        out.append(make("prepare", f"prepare-{d}", [], d))
    analysed = set(analyzed(cfg))
    groups = {(d, m): seeds for d, m, seeds in train_groups(cfg)} if grouped(cfg) else {}
    snaps: dict = {}  # (dataset, method, seed) -> its snapshot steps to evaluate, whose weights its training outputs
    for d, m, s, n in snapshot_runs(cfg):
        snaps.setdefault((d, m, s), []).append(n)

    def train_outs(st, d, m, s):
        return st.outs + [snapshot_checkpoint(d, m, s, n).as_posix() for n in snaps.get((d, m, s), [])]

    for d, m, s in C.runs(cfg):
        prep = out[used.index(d)]
        if (d, m) in groups:  # the group's one stage, before its first seed's evaluation
            seeds = groups.pop((d, m))
            runs = [make("train", "", [], d, m, sd) for sd in seeds]
            t = TEMPLATES["train_group"]
            out.append(Stage(f"train-{d}-{m}", "train", t.cmd.format(dataset=d, method=m, seeds=" ".join(map(str, seeds))),
                             list(prep.outs) + code_deps("train", workdir),
                             [o for r, sd in zip(runs, seeds) for o in train_outs(r, d, m, sd)],
                             stage_params(cfg, "train", d, m), plots=[p for r in runs for p in r.plots]))
        model = TEMPLATES["train"].outs[0].format(data_dir=dd, dataset=d, method=m, seed=s)
        if not grouped(cfg):
            tr = make("train", f"train-{d}-{m}-s{s}", [p for p in prep.outs], d, m, s)
            out.append(dataclasses.replace(tr, outs=train_outs(tr, d, m, s)))
        ev = make("evaluate", f"evaluate-{d}-{m}-s{s}", [model] + prep.outs, d, m, s)
        out.append(ev)
        for n in snaps.get((d, m, s), []):
            out.append(make("evaluate_snapshot", f"evaluate-snapshot-{d}-{m}-s{s}-{n}",
                            [snapshot_checkpoint(d, m, s, n).as_posix()] + prep.outs, d, m, s, step=n))
        if (d, m, s) in analysed:
            out.append(make("analyze", f"analyze-{d}-{m}-s{s}", [model] + prep.outs, d, m, s))
    for nb in notebooks():
        out.append(make("report", f"report-{nb}", item_inputs(cfg, nb), item=nb))
    out.append(make("index", "report", index_inputs(cfg)))
    return out


def grouped(cfg: dict) -> bool:
    """training.group_seeds: the seeds of each (dataset, method) trained by one job (docs/speed.md#seed-groups)."""
    return bool(cfg["training"].get("group_seeds", False))


def train_groups(cfg: dict) -> list[tuple[str, str, list[int]]]:
    """(dataset, method, seeds) of every training group, in the matrix's order (sweep variants included)."""
    out: dict = {}
    for d, m, s in C.runs(cfg):
        out.setdefault((d, m), []).append(s)
    return [(d, m, seeds) for (d, m), seeds in out.items()]


def group_rule(stage: str) -> str:
    """The Snakemake rule of a group's training stage: its name as an identifier ('train-mnist-alp' ->
    'train_group_mnist_alp'; a single run's, 'train-mnist-aalp-s0' -> 'train_run_mnist_aalp_s0'); the stage itself
    travels in the rule's params (sync.stage_name)."""
    return ("train_group_" if stage.count("-") == 2 else "train_run_") + re.sub(r"\W", "_", stage[len("train-"):])


def rule_trains(cfg: dict) -> list[Stage]:
    """The training stages that get a Snakemake rule each (workflow/rules/train.smk), with their outputs as dvc.yaml
    has them: every seed group's (training.group_seeds) and, without groups, every run's that keeps snapshots to
    evaluate (its outputs name the steps, which the wildcard rule `train` cannot)."""
    return [st for st in stages(cfg) if st.kind == "train" and (grouped(cfg) or len(st.outs) > len(TEMPLATES["train"].outs))]


def group_of(stage: str) -> tuple[str, str]:
    """(dataset, method) of a training stage 'train-<dataset>-<method>[-s<seed>]' (names hold no '-')."""
    _, d, m = stage.split("-")[:3]
    return d, m


MATRIX_STAGE = "matrix-check"
MATRIX_STAMP = "runs/dvc_matrix.ok"


def dvc_yaml(cfg: dict, workdir: Path | str = ".") -> str:
    """dvc.yaml text for the experiment matrix of `cfg`.

    Its first stage, matrix-check, reruns whenever params.yaml changes and stops `dvc repro` with one
    line when the matrix (datasets, methods, seeds) no longer matches this file; every prepare stage
    depends on its stamp (constant content, so a passing check reruns nothing downstream)."""
    doc = {"stages": {MATRIX_STAGE: {
        "cmd": f"python -m aalp dvc --check --stamp {MATRIX_STAMP}",
        "deps": ["params.yaml"] + code_deps("matrix", workdir),
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


def dvc_yaml_problem(cfg: dict, workdir: Path, params: str = "params.yaml", output: str = "dvc.yaml") -> str | None:
    """Why workdir/<output> does not describe the matrix of `cfg` (one line), or None when it does."""
    text = dvc_yaml(cfg, Path(workdir).resolve())
    target = Path(workdir) / output
    if target.exists() and target.read_text() == text:
        return None
    want = set(yaml.safe_load(text)["stages"])
    have = set((yaml.safe_load(target.read_text()) or {}).get("stages", {})) if target.exists() else set()
    new, gone = sorted(want - have), sorted(have - want)
    what = "; ".join(f"{label} {len(s)} stage(s): {', '.join(s[:3])}{', ...' if len(s) > 3 else ''}"
                     for label, s in (("it lacks", new), ("it has extra", gone)) if s) or "same stages, other details"
    cause = "the experiment matrix changed" if new or gone else "the stage description changed"
    return (f"{output} does not match {params} ({cause}; {what}): regenerate it with `python -m aalp dvc` "
            f"in {Path(workdir).resolve()} (or `make dvc`), then rerun")


def matrix_stamp_text(output: str = "dvc.yaml", params: str = "params.yaml") -> str:
    """The content of the matrix-check stage's stamp (the same whichever engine writes it)."""
    return f"{output} matches {params}\n"


# ----------------------------------------------------------------------------- Snakemake helpers
def smk_output(kind: str, data_dir: str = "data") -> dict[str, str]:
    """Named output patterns with Snakemake wildcards."""
    t = TEMPLATES[kind]
    outs = t.outs
    pats = [o.replace("{data_dir}", data_dir) for o in outs + t.metrics + t.plots]
    return {re.sub(r"\W", "_", Path(p).name.split(".")[0]) + f"_{i}": p for i, p in enumerate(pats)}


def smk_shell(kind: str) -> str:
    return re.sub(r"\{(dataset|method|seed|step)\}", r"{wildcards.\1}", TEMPLATES[kind].cmd)


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
