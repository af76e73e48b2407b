"""`python -m aalp publish DEST`: copy a finished parameter set's small result files and its rendered report
into DEST (a `results/<set>/` folder that git carries), with a manifest of what produced them.

DEST is a parameter-set folder of its own: params.yaml, the run files the report reads (metrics, per-sample
records, training history, analysis summaries and arrays, provenance; never model weights) under the same
`runs/...` paths, and `reports/`. So `cd DEST && python -m aalp report` rebuilds the report from the
published files alone, and `python -m aalp report --tables-only --out X` rebuilds every table to compare
(tests/test_results.py does, byte for byte).

manifest.json: the set, when and from which commit it was published, the code versions and devices the
runs recorded, sha256 of params.yaml and of every file, per run its device, wall times (training and attacks)
and code hashes (the digest of the source files each of its stages imports, `pipeline.code_hash`, recorded by
the stage itself), and the totals. Publishing stops with a one-line error, before copying anything, when a
run file is missing or the folder would exceed `LIMIT_MB`.

`publish DEST --add` publishes a long set in slices: it adds the set's finished runs (trained, evaluated and,
where the set analyses them, analysed) to DEST, keeps the runs DEST already holds, and rebuilds DEST's report
from all of them (`python -m aalp report --finished-runs` inside DEST: the report of the set restricted to
those runs, `config.only_runs`; the runs not yet published show as missing). It
refuses, in one line and before copying anything, a DEST whose params.yaml differs, and runs whose recorded
code hashes differ from the set's (a run with other params or other training, evaluation or analysis code
belongs to another set).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from . import config as C
from .artifacts import code_version, read_json
from .layout import report_outputs, run_dir, run_files, snapshot_dir, snapshot_runs
from .report.inputs import report_inputs

# configs/mnist_cpu, the largest published set: 25 runs of per-sample records (10,000 test images under 9 attacks,
# ~2 MB a run: 50 MB) and its report (16 MB, 11 of them the data behind the per-sample figures): 65.3 MB in all
LIMIT_MB = 80.0
RUN_FILES = ("history.csv", "probe.parquet", "eval/metrics.json", "eval/records.parquet")  # + frontpage.run_files
ANALYSIS_SUFFIXES = (".json", ".csv", ".npz", ".parquet")  # analysis/*: summaries and arrays, never *.pt
ADD_REBUILD = "cd <this folder> && python -m aalp report --finished-runs"  # a set published in slices
HASHED = {"train": "run.json", "evaluate": "eval/eval.json", "analyze": "analysis/summary.json"}  # stage: its record


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _analysed(cfg: dict, d: str, m: str, s: int) -> bool:
    return (d, m, s) in set(C.runs(cfg, sweeps=False))  # the analysis stage covers the main matrix only


def run_result_files(cfg: dict, src: Path, d: str, m: str, s: int) -> list[str]:
    """One run's published files, relative to the set folder: provenance (run.json, eval/eval.json), RUN_FILES,
    its snapshots' evaluations (training.snapshot_steps) and its analysis summaries and arrays (analysed runs)."""
    rd = run_dir(d, m, s)
    files = [(rd / f).as_posix() for f in ("run.json", "eval/eval.json", *RUN_FILES)]
    files += [(snapshot_dir(*r) / f).as_posix() for r in snapshot_runs(cfg) if r[:3] == (d, m, s)
              for f in ("metrics.json", "eval.json", "records.parquet")]
    if _analysed(cfg, d, m, s):
        files.append((rd / HASHED["analyze"]).as_posix())
        files += sorted(p.relative_to(src).as_posix() for p in (src / rd / "analysis").glob("*")
                        if p.is_file() and p.suffix in ANALYSIS_SUFFIXES)
    return list(dict.fromkeys(files))


def files_to_publish(cfg: dict, src: Path) -> list[str]:
    """Every file DEST gets, relative to the set folder: params.yaml, each run's result files, what the report
    reads, and the rendered report."""
    files = ["params.yaml"] + run_files(cfg)  # run.json and eval.json of every run (the provenance table)
    for d, m, s in C.runs(cfg):
        files += run_result_files(cfg, src, d, m, s)
    files += report_inputs(cfg)
    files += report_outputs("reports")
    files += sorted(p.relative_to(src).as_posix() for p in (src / "reports").rglob("*") if p.is_file())
    return list(dict.fromkeys(files))


def code_hashes(cfg: dict, src: Path, d: str, m: str, s: int) -> dict[str, str | None]:
    """The code hashes one run's stages recorded (train, evaluate and, for analysed runs, analyze)."""
    rd = src / run_dir(d, m, s)
    return {stage: read_json(rd / rec).get("code_hash") for stage, rec in HASHED.items()
            if stage != "analyze" or _analysed(cfg, d, m, s)}


def manifest(cfg: dict, src: Path, files: list[str], runs_: list[tuple[str, str, int]] | None = None) -> dict:
    """The manifest of a published folder holding `runs_` (default: every run of the set) and `files`."""
    runs_ = list(C.runs(cfg)) if runs_ is None else runs_
    runs, devices, versions = {}, set(), set()
    for d, m, s in runs_:
        rd = src / run_dir(d, m, s)
        r, e = read_json(rd / "run.json"), read_json(rd / "eval" / "eval.json")
        name = r.get("device_name") or r.get("device")
        devices.add(name)
        versions.update(v for v in (r.get("code_version"), e.get("code_version")) if v)
        runs[run_dir(d, m, s).as_posix()] = {"device": name, "train_seconds": r.get("train_seconds"),
                                              "attack_seconds": round(sum(e.get("attack_seconds", {}).values()), 2),
                                              "code_hash": code_hashes(cfg, src, d, m, s)}
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
        "seeds": sorted({s for _, _, s in runs_}),
        "runs": runs,
        "runs_of_the_set": f"{len(runs)} of {len(list(C.runs(cfg)))}",
        "wall_seconds": {"train": round(train_s, 1), "attacks": round(attack_s, 1), "total": round(train_s + attack_s, 1)},
        "total_bytes": sum(v["bytes"] for v in entries.values()),
        "files": entries,
        "rebuild": "cd <this folder> && python -m aalp report",
    }


def _set_hash(hashes: list[dict]) -> dict | None:
    """The set's code hash per stage when every run recorded the same ones, else None."""
    merged: dict = {}
    for h in hashes:
        for k, v in h.items():
            if v is None or merged.setdefault(k, v) != v:
                return None
    return merged


def finished_runs(cfg: dict, src: Path) -> list[tuple[str, str, int]]:
    """The runs of the set whose result files are all in src (trained, evaluated and, if analysed, analysed)."""
    return [r for r in C.runs(cfg) if all((src / f).is_file() for f in run_result_files(cfg, src, *r))]


def _copy(base: Path, files: list[str], tmp: Path) -> None:
    """Copy `files` (relative paths) from base into tmp, keeping their paths."""
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(base / f, tmp / f)


def _swap_in(tmp: Path, dest: Path) -> None:
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)  # the folder appears complete or not at all
    shutil.rmtree(old, ignore_errors=True)


def add_runs(cfg: dict, src: str | Path, dest: str | Path, limit_mb: float = LIMIT_MB) -> dict:
    """`publish DEST --add`: add src's finished runs to the set published in dest (or start it), then rebuild
    dest's report from every run it holds. Errors (ConfigError, one line, nothing copied): dest's params.yaml
    differs from src's; a run records no code hash or hashes other than the set's; no run to add; over
    limit_mb."""
    src, dest = Path(src), Path(dest)
    if dest.resolve() == src.resolve():
        raise C.ConfigError("publish: the destination is the set folder itself")
    params_sha = _sha256(src / "params.yaml")
    old = read_json(dest / "manifest.json") if (dest / "manifest.json").is_file() else None
    if old is not None and old["params_sha256"] != params_sha:
        raise C.ConfigError(f"publish --add: this set's params.yaml (sha256 {params_sha[:12]}) differs from the one "
                            f"published in {dest} ({old['params_sha256'][:12]}); runs with other params go into a new set")
    have = set(old["runs"]) if old else set()
    new = [r for r in finished_runs(cfg, src) if run_dir(*r).as_posix() not in have]
    if not new:
        raise C.ConfigError(f"publish --add: no finished run to add ({len(have)} already in {dest})")
    want = old.get("code_hash") if old else None
    for r in new:
        got = code_hashes(cfg, src, *r)
        if None in got.values():
            raise C.ConfigError(f"publish --add: {run_dir(*r).as_posix()} records no code hash for its "
                                f"{[k for k, v in got.items() if v is None][0]} stage (made before hashes were "
                                "recorded); rerun it")
        want = want or {k: v for k, v in got.items()}
        bad = [k for k, v in got.items() if want.get(k, v) != v]
        if bad:
            raise C.ConfigError(f"publish --add: {run_dir(*r).as_posix()} was made by other {bad[0]} code than the "
                                f"set's (code hash {got[bad[0]]} against {want[bad[0]]}); it belongs to a new set")
        want.update({k: v for k, v in got.items() if k not in want})
    files = [f for r in new for f in run_result_files(cfg, src, *r)]
    size = sum((src / f).stat().st_size for f in files) + (old["total_bytes"] if old else 0)
    if size > limit_mb * 2**20:
        raise C.ConfigError(f"publish --add: {size / 2**20:.1f} MB is over the {limit_mb:g} MB limit")
    tmp = dest.with_name(dest.name + ".publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    kept = [f for f in (old["files"] if old else {}) if not f.startswith("reports/") and f != "params.yaml"]
    _copy(dest, kept, tmp)
    _copy(src, ["params.yaml", *files], tmp)
    return _report_and_swap(cfg, tmp, dest, want, ADD_REBUILD)


def _report_and_swap(cfg: dict, tmp: Path, dest: Path, code_hash: dict | None, rebuild: str) -> dict:
    """Build the report in tmp (a copy of dest's run files) with `rebuild`'s command, where a reader rebuilds
    it, write tmp's manifest and swap tmp in for dest. RuntimeError (dest untouched) if the report fails."""
    cmd = rebuild.split("&& ", 1)[1].split()
    r = subprocess.run([sys.executable, *cmd[1:]], cwd=tmp, capture_output=True, text=True)
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"publish: the report did not build: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
    partial = "--finished-runs" in cmd  # a set published in slices holds the runs finished so far
    runs_ = sorted(set(finished_runs(cfg, tmp)), key=list(C.runs(cfg)).index) if partial else None
    everything = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    man = manifest(cfg, tmp, everything, runs_)
    man["code_hash"], man["rebuild"] = code_hash, rebuild
    (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    _swap_in(tmp, dest)
    return man


def rerender(cfg: dict, src: str | Path, dest: str | Path) -> dict:
    """`publish DEST --rerender`: rebuild the report of the set published in dest with today's report code,
    from the run files dest holds (none added, none changed), and rewrite its manifest. Restyling a figure or
    rewording a page of published results never reruns a model. Errors (ConfigError, one line, nothing
    touched): dest holds no published set; src's params.yaml differs from dest's in a parameter (a new
    description or new comments are taken: _same_but_words)."""
    src, dest = Path(src), Path(dest)
    if not (dest / "manifest.json").is_file():
        raise C.ConfigError(f"publish --rerender: {dest} holds no published set (no manifest.json)")
    old = read_json(dest / "manifest.json")
    reworded = _sha256(src / "params.yaml") != old["params_sha256"]
    if reworded and not _same_but_words(src / "params.yaml", dest / "params.yaml"):
        raise C.ConfigError(f"publish --rerender: this set's params.yaml differs from the one published in {dest}; "
                            "run it from the published set's own folder")
    tmp = dest.with_name(dest.name + ".publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    _copy(dest, [f for f in old["files"] if not f.startswith("reports/") and not (reworded and f == "params.yaml")], tmp)
    if reworded:  # only the words changed (description, comments): the published set takes them
        _copy(src, ["params.yaml"], tmp)
    return _report_and_swap(cfg, tmp, dest, old.get("code_hash"), old["rebuild"])


def _same_but_words(a: Path, b: Path) -> bool:
    """Two params.yaml files that set every parameter alike and differ at most in `description` and comments,
    which no stage reads: a rerender may reword a published set's description."""
    import yaml

    def params(p):
        d = yaml.safe_load(Path(p).read_text()) or {}
        d.pop("description", None)
        return d
    return params(a) == params(b)


def publish(cfg: dict, src: str | Path, dest: str | Path, limit_mb: float = LIMIT_MB, add: bool = False,
            rerender_only: bool = False) -> dict:
    """Publish the finished set in src to dest (replacing it), or with add=True add its finished runs
    (`add_runs`), or with rerender_only=True rebuild dest's report with today's code (`rerender`)."""
    if rerender_only:
        return rerender(cfg, src, dest)
    if add:
        return add_runs(cfg, src, dest, limit_mb)
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
    man["code_hash"] = _set_hash([v["code_hash"] for v in man["runs"].values()])
    tmp = dest.with_name(dest.name + ".publishing")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in files:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / f, tmp / f)
    (tmp / "manifest.json").write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    _swap_in(tmp, dest)
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
