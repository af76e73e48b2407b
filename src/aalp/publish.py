"""`python -m aalp publish DEST`: copy a finished parameter set's small result files and its rendered report
into DEST (a `results/<set>/` folder that git carries), with a manifest of what produced them.

DEST is a parameter-set folder of its own: params.yaml, the run files the report reads (metrics, per-sample
records, training history, analysis summaries and arrays, provenance; never model weights) under the same
`runs/...` paths, and `reports/`. So `cd DEST && python -m aalp report` rebuilds the report from the
published files alone, and `python -m aalp report --tables-only --out X` rebuilds every table to compare
(tests/test_results.py does, byte for byte).

manifest.json: the set, when and from which commit it was published, the code versions and devices the
runs recorded, sha256 of params.yaml and of every file, and the wall times (training and attacks) per run
and in total. Publishing stops with a one-line error, before copying anything, when a run file is missing
or the folder would exceed `LIMIT_MB`.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from pathlib import Path

from . import config as C
from .artifacts import code_version, read_json
from .layout import report_outputs, run_dir, run_files
from .report.inputs import report_inputs

LIMIT_MB = 50.0
RUN_FILES = ("history.csv", "probe.parquet", "eval/metrics.json", "eval/records.parquet")  # + frontpage.run_files
ANALYSIS_SUFFIXES = (".json", ".csv", ".npz", ".parquet")  # analysis/*: summaries and arrays, never *.pt


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def files_to_publish(cfg: dict, src: Path) -> list[str]:
    """Every file DEST gets, relative to the set folder: params.yaml, each run's result files, what the report
    reads, and the rendered report."""
    files = ["params.yaml"] + run_files(cfg)  # run.json and eval.json of every run (the provenance table)
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        files += [(rd / f).as_posix() for f in RUN_FILES]
        files += sorted(p.relative_to(src).as_posix() for p in (src / rd / "analysis").glob("*")
                        if p.is_file() and p.suffix in ANALYSIS_SUFFIXES)
    files += report_inputs(cfg)
    files += report_outputs("reports")
    files += sorted(p.relative_to(src).as_posix() for p in (src / "reports").rglob("*") if p.is_file())
    return list(dict.fromkeys(files))


def manifest(cfg: dict, src: Path, files: list[str]) -> dict:
    runs, devices, versions = {}, set(), set()
    for d, m, s in C.runs(cfg):
        rd = src / run_dir(d, m, s)
        r, e = read_json(rd / "run.json"), read_json(rd / "eval" / "eval.json")
        name = r.get("device_name") or r.get("device")
        devices.add(name)
        versions.update(v for v in (r.get("code_version"), e.get("code_version")) if v)
        runs[run_dir(d, m, s).as_posix()] = {"device": name, "train_seconds": r.get("train_seconds"),
                                              "attack_seconds": round(sum(e.get("attack_seconds", {}).values()), 2)}
    train_s = sum(v["train_seconds"] or 0 for v in runs.values())
    attack_s = sum(v["attack_seconds"] for v in runs.values())
    entries = {f: {"bytes": (src / f).stat().st_size, "sha256": _sha256(src / f)} for f in files}
    return {
        "set": cfg["profile"],
        "published": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "published_with": code_version(),
        "run_code_versions": sorted(versions),
        "params_sha256": entries["params.yaml"]["sha256"],
        "devices": sorted(devices),
        "seeds": sorted({s for _, _, s in C.runs(cfg)}),
        "runs": runs,
        "wall_seconds": {"train": round(train_s, 1), "attacks": round(attack_s, 1), "total": round(train_s + attack_s, 1)},
        "total_bytes": sum(v["bytes"] for v in entries.values()),
        "files": entries,
        "rebuild": "cd <this folder> && python -m aalp report",
    }


def publish(cfg: dict, src: str | Path, dest: str | Path, limit_mb: float = LIMIT_MB) -> dict:
    src, dest = Path(src), Path(dest)
    if dest.resolve() == src.resolve():
        raise C.ConfigError("publish: the destination is the set folder itself")
    files = files_to_publish(cfg, src)
    missing = [f for f in files if not (src / f).is_file()]
    if missing:
        raise C.ConfigError(f"publish: {len(missing)} result file(s) missing, e.g. {missing[0]}; run the whole DAG "
                            "first (snakemake or dvc repro), then publish")
    weights = [f for f in files if f.endswith(".pt")]
    if weights:
        raise C.ConfigError(f"publish: model weights are never published ({weights[0]})")
    size = sum((src / f).stat().st_size for f in files)
    if size > limit_mb * 2**20:
        big = max(files, key=lambda f: (src / f).stat().st_size)
        raise C.ConfigError(f"publish: {size / 2**20:.1f} MB is over the {limit_mb:g} MB limit (largest: {big}, "
                            f"{(src / big).stat().st_size / 2**20:.1f} MB)")
    man = manifest(cfg, src, files)
    tmp = dest.with_name(dest.name + ".publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, tmp / f)
    (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)  # the folder appears complete or not at all
    shutil.rmtree(old, ignore_errors=True)
    return man


def check(folder: str | Path) -> list[str]:
    """Problems of a published folder: files differing from the manifest, files it does not list, weights."""
    folder = Path(folder)
    man = read_json(folder / "manifest.json")
    problems = []
    for f, e in man["files"].items():
        p = folder / f
        if not p.is_file():
            problems.append(f"missing {f}")
        elif _sha256(p) != e["sha256"]:
            problems.append(f"changed {f}")
    listed = set(man["files"]) | {"manifest.json"}
    problems += [f"unlisted {p.relative_to(folder).as_posix()}" for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.relative_to(folder).as_posix() not in listed]
    problems += [f"weights {f}" for f in man["files"] if f.endswith(".pt")]
    return problems
