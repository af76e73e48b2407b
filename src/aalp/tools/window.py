"""`python -m aalp window SET_DIR WORK_DIR OUT_DIR [PUBLISHED_DIR]` (workflow/scripts/gpu_window.sh): as much of a
set as fits in a short GPU window, on a machine with PyTorch and this repository's src/ alone (no Snakemake, no network).

1. `bench speed` (LeNet, 5 steps, groups of 1 and 5) into OUT_DIR/speed.json, SPEED_S seconds at most (SPEED=0: none).
2. The runs that PUBLISHED_DIR/manifest.json does not list and WORK_DIR does not hold finished (every output of their
   train, evaluate and, where the set has them, analyze and snapshot stages), one (dataset, method) at a time as a seed
   group (docs/speed.md#seed-groups) ordered by `order` and sized by `next_group`: `train --seeds`, `evaluate --seeds`,
   `analyze --seeds`, `evaluate --seeds --snapshot <steps>` for the group's seeds that lack each, each a subprocess that
   gets SIGTERM at the deadline (training saves its resume points; an evaluation keeps its last batch's), so that a
   next call on the same WORK_DIR goes on where this one stopped and redoes nothing finished.
3. At the end, also after the deadline or a SIGTERM: OUT_DIR, what comes back (the GPU tool: at most 8 files of 16
   MiB), gets runs.tgz (params.yaml and every run file but weights, `pack`), logs.tgz and window.json (device,
   deadline, each group's estimate and actual seconds per stage: what the next window is planned from).

Environment: DEADLINE (seconds from the start, default 780), ORDER (methods first, e.g. "alp aalp adv"), SPEED, WINDOW_SCALE
(times every timed estimate, e.g. a last window's actual/estimate), WINDOW_ESTIMATE (seconds of every stage, nothing timed)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import config as C
from ..layout import run_dir

STAGES = ("train", "evaluate", "analyze", "evaluate_snapshot")  # the last: `evaluate --snapshot` of training.snapshot_steps
DEADLINE_S = 780.0  # 13 minutes: a 15-minute GPU lease less its start
SPEED_S = 120  # the speed benchmark's bound
OVERHEAD_S = 10.0  # a stage process's start on a GPU machine (Python, torch, CUDA, the data), added per stage of a group
GRACE_S = 20  # from SIGTERM to SIGKILL: a training saves its resume points after the step in flight
LIMIT_MB, PART_MB = 60, 15  # runs.tgz at most; pieces at most (the GPU tool brings back files of 16 MiB)


@dataclass
class Todo:
    """One (dataset, method)'s unfinished seeds: seed -> the estimated seconds of each stage it still lacks.
    together: the seeds of an interrupted group, whose training resumes only as that same group."""
    dataset: str
    method: str
    cost: dict[int, dict[str, float]]
    together: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.dataset}/{self.method}"


def estimate(t: Todo, seeds, overhead: float = OVERHEAD_S) -> float:
    """Seconds of a group of `seeds`: a process start per stage any of them lacks, plus each seed's stages. Training S
    seeds as one group counts as S single trainings, an upper bound (a GPU steps a group faster than its seeds one by
    one: docs/speed.md#seed-groups); evaluate and analyze take the seeds in turn, S times one run indeed."""
    stages = {st for s in seeds for st in t.cost[s]}
    return overhead * len(stages) + sum(v for s in seeds for v in t.cost[s].values())


def size(t: Todo, left: float, overhead: float = OVERHEAD_S) -> list[int]:
    """The most of t's seeds whose group fits in `left` seconds: an interrupted group whole, else (or if it does not
    fit) the cheapest of the other seeds first (those partly done, then the lowest seeds); [] when not one fits."""
    if t.together and estimate(t, t.together, overhead) <= left:
        return sorted(t.together)
    seeds = sorted((s for s in t.cost if s not in t.together), key=lambda s: (sum(t.cost[s].values()), s))
    n = max((n for n in range(1, len(seeds) + 1) if estimate(t, seeds[:n], overhead) <= left), default=0)
    return sorted(seeds[:n])


def next_group(todos: list[Todo], left: float, passed: set, overhead: float = OVERHEAD_S):
    """(todo, seeds, skipped): the first (dataset, method) in order, not passed over before, of which some seeds fit
    in `left` seconds and the most of them that fit; `skipped`: those passed over now, not one seed fitting (a later,
    cheaper method may still fit)."""
    skipped = []
    for t in (t for t in todos if t.name not in passed and t.cost):
        if seeds := size(t, left, overhead):
            return t, seeds, skipped
        skipped.append(t)
    return None, [], skipped


def schedule(todos: list[Todo], left: float, overhead: float = OVERHEAD_S) -> list[tuple[str, list[int] | None, float]]:
    """What a window of `left` seconds starts if every group takes its estimate: (name, seeds, estimate) per group in
    the order started, (name, None, cheapest seed's estimate) per method passed over. The dry run of `command`'s loop."""
    todos = [Todo(t.dataset, t.method, {s: dict(c) for s, c in t.cost.items()}, t.together) for t in todos]
    out, passed = [], set()
    while True:
        t, seeds, skipped = next_group(todos, left, passed, overhead)
        for k in skipped:
            passed.add(k.name)
            out.append((k.name, None, min(estimate(k, [s], overhead) for s in k.cost)))
        if t is None:
            return out
        e = estimate(t, seeds, overhead)
        out.append((t.name, seeds, e))
        left -= e
        t.cost = {s: c for s, c in t.cost.items() if s not in seeds}
        t.together = tuple(s for s in t.together if s in t.cost)


def order(cfg: dict, keys: list[tuple[str, str]], named: list[str] = ()) -> list[tuple[str, str]]:
    """(dataset, method) pairs in the order their groups go: the methods `named` first, in that order; then the
    methods evaluated with AutoAttack (evaluation.autoattack_methods, the longest evaluations), then the others in
    the set's order, those whose objective is raw last."""
    first: dict = {}
    for i, (d, m, _) in enumerate(C.runs(cfg)):
        first.setdefault((d, m), i)

    def rank(k):
        d, m = k
        default = ("autoattack" not in C.eval_attacks(cfg, d, m),
                   C.run_spec(cfg, d, m, C.seeds(cfg, d, m)[0]).objective == "raw", first[k])
        return (0, list(named).index(m), default) if m in named else (1, 0, default)
    return sorted(keys, key=rank)


def stages_left(cfg: dict, d: str, m: str, s: int, analysed: set) -> list[str]:
    """The stages of a run whose outputs (every one Snakemake's rule declares) are not all here (the working folder)."""
    from .. import pipeline as P

    def done(st):
        t = P.TEMPLATES[st]
        return all(Path(o.format(dataset=d, method=m, seed=s, step=n)).is_file() for o in (*t.outs, *t.metrics, *t.plots)
                   for n in (steps if st == "evaluate_snapshot" else [None]))
    steps = [n for dd, mm, ss, n in P.snapshot_runs(cfg) if (dd, mm, ss) == (d, m, s)]  # none: that stage is done
    return [st for st in STAGES if (st != "analyze" or (d, m, s) in analysed) and not done(st)]


def resume_point(path: Path) -> tuple[tuple[int, ...] | None, int] | None:
    """(the seeds of the group that wrote it, or None for a single run; its step) of a training's resume.pt."""
    import torch

    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
        fp = st["fingerprint"]  # core.training: a group's fingerprint ends in "|group [seeds]"
        return (tuple(json.loads(fp.rsplit("|group ", 1)[1])) if "|group " in fp else None), int(st["step"])
    except Exception:
        return None


def todos(cfg: dict, published: set, est: dict, named: list[str]) -> list[Todo]:
    """The unfinished, unpublished runs of the set in the working folder, one Todo per (dataset, method), in order."""
    analysed, by = set(C.runs(cfg, sweeps=False)), {}
    for d, m, s in C.runs(cfg):
        if run_dir(d, m, s).as_posix() not in published and (left := stages_left(cfg, d, m, s, analysed)):
            by.setdefault((d, m), {})[s] = {st: est[f"{d}/{m}"][st] for st in left}
    out = []
    for d, m in order(cfg, list(by), named):
        t = Todo(d, m, by[(d, m)])
        points = {s: resume_point(run_dir(d, m, s) / "resume.pt") for s in t.cost
                  if "train" in t.cost[s] and (run_dir(d, m, s) / "resume.pt").is_file()}
        for s, p in points.items():  # the first interrupted group whose seeds all stopped at the same step
            g = p and (p[0] or (s,))
            if g and all(points.get(x) == p for x in g):
                steps = cfg["experiments"][d]["epochs"] * C.steps_per_epoch(cfg, d)
                for x in g:
                    t.cost[x]["train"] *= max(0.0, 1 - p[1] / steps)
                t.together = tuple(g)
                break
        out.append(t)
    return out


def estimates(cfg: dict, runs: list) -> tuple[dict, str]:
    """Seconds of each stage of one run per "dataset/method" on this device, from `bench plan`'s timed bursts
    (tools/plan.py) of the runs to make, times WINDOW_SCALE; and how they were made."""
    if os.environ.get("WINDOW_ESTIMATE"):
        return {f"{d}/{m}": dict.fromkeys(STAGES, float(os.environ["WINDOW_ESTIMATE"])) for d, m, _ in runs}, "WINDOW_ESTIMATE"
    from . import plan as PL
    from ..core.training import select_device

    bases = {(d, C.base_method(cfg, d, m)) for d, m, _ in runs}  # a sweep variant is planned with its base method
    keep = set(runs) | {(d, b, C.seeds(cfg, d, b)[0]) for d, b in bases}
    scale = float(os.environ.get("WINDOW_SCALE", 1))
    est: dict = {}
    for r in PL.plan(C.only_runs(cfg, keep), PL.Timer(select_device(cfg["training"]["device"]))):
        for dm in r["runs"] if r["kind"] in STAGES else []:  # a run's snapshots: one evaluation per step
            est.setdefault(dm, dict.fromkeys(STAGES, 0.0))[r["kind"]] = scale * r["seconds_each"] * r.get("per_run", 1)
    return est, f"timed bursts (bench plan) x {scale:g}"


STOP = {"now": False}  # SIGTERM or SIGINT to the window: the stage in flight stops as at the deadline; OUT_DIR is written


def run_until(cmd: list[str], until: float, log: Path, grace: float = GRACE_S) -> tuple[int, float, bool]:
    """Run cmd (output appended to log) until it ends or the time `until` comes (or a STOP): then SIGTERM, and
    SIGKILL `grace` seconds later. (exit status, seconds, whether it was stopped)."""
    t = time.time()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        stopped = None
        while (rc := p.poll()) is None:
            now = time.time()
            if stopped is None and (now >= until or STOP["now"]):
                p.terminate()
                stopped = now
            elif stopped is not None and now - stopped > grace:
                p.kill()
            time.sleep(0.05)
    return rc, time.time() - t, stopped is not None


def pack(work: Path, out: Path, limit_mb: float = LIMIT_MB, part_mb: float = PART_MB) -> dict:
    """OUT_DIR/runs.tgz (or its pieces) with params.yaml and runs/ without weights or temporary files; logs.tgz."""
    for old in [*out.glob("runs.tgz*"), *out.glob("logs.tgz")]:
        old.unlink()
    tgz, files = work / ".runs.tgz", sorted(p for p in work.glob("runs/**/*") if p.is_file() and p.suffix != ".pt"
                                            and not p.name.startswith("."))  # .name.tmp: a write cut short
    with tarfile.open(tgz, "w:gz") as tar:
        for p in [work / "params.yaml", *files]:
            tar.add(p, p.relative_to(work).as_posix())
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        tar.add(work / "logs", "logs")
    data, part = tgz.read_bytes(), int(part_mb * 2**20)
    res = {"runs_files": len(files), "bytes": len(data), "pieces": []}
    if len(data) > limit_mb * 2**20:
        res["refused"] = (f"runs.tgz is {len(data) / 2**20:.1f} MB, over the {limit_mb:g} MB that may come back: not "
                          f"written; take the run files from {work} in parts")
    else:  # one piece, runs.tgz; else runs.tgz.00, .01, ... of PART_MB each: `cat runs.tgz.* > runs.tgz`
        res["pieces"] = ["runs.tgz"] if len(data) <= part else [f"runs.tgz.{i:02d}" for i in range(-(-len(data) // part))]
        for i, name in enumerate(res["pieces"]):
            (out / name).write_bytes(data[i * part:(i + 1) * part])
    tgz.unlink()
    return res


def unfinished(cfg: dict, published: set) -> list[tuple[str, str, int]]:
    analysed = set(C.runs(cfg, sweeps=False))
    return [r for r in C.runs(cfg) if run_dir(*r).as_posix() not in published and stages_left(cfg, *r, analysed)]


def run_group(cfg: dict, t: Todo, seeds: list[int], deadline: float, logs: Path) -> dict:
    """The dataset's `prepare` if its data is not there, then each stage for the group's seeds that lack it."""
    g = {"group": t.name, "seeds": seeds, "estimate_s": round(estimate(t, seeds), 1), "stages": {},
         "resumed": bool(t.together) and set(t.together) == set(seeds)}
    jobs = [] if (Path(cfg["data"]["dir"]) / t.dataset / "manifest.json").is_file() else [
        ("prepare", [], ["prepare", "--dataset", t.dataset], f"{t.dataset}-prepare")]
    for st in STAGES:
        if need := [s for s in seeds if st in t.cost[s]]:
            snap = ["--snapshot", *map(str, cfg["training"]["snapshot_steps"])] * (st == "evaluate_snapshot")
            jobs.append((st, need, [st.split("_")[0], "--dataset", t.dataset, "--method", t.method, "--seeds",
                                    *map(str, need), *snap], f"{t.dataset}-{t.method}-{st}"))
    for st, need, cmd, name in jobs:
        rc, sec, stopped = run_until([sys.executable, "-m", "aalp", *cmd], deadline, logs / f"{name}.log")
        g["stages"][st] = {"seeds": need, "actual_s": round(sec, 1), "exit": rc}
        if need:
            g["stages"][st]["estimate_s"] = round(OVERHEAD_S + sum(t.cost[s][st] for s in need), 1)
        if stopped or rc:
            g["status"] = "stopped" if stopped else "failed"
            break
    g.setdefault("status", "done")
    g["actual_s"] = round(sum(v["actual_s"] for v in g["stages"].values()), 1)
    return g


def command(_cfg: dict, args) -> int:
    """The window (module docstring); 1 when a stage failed, else 0 (a stop at the deadline included)."""
    t0 = time.time()
    deadline = t0 + float(os.environ.get("DEADLINE", DEADLINE_S))
    set_dir, work, out = (Path(p).resolve() for p in (args.set_dir, args.work_dir, args.out_dir))
    cfg = C.load(set_dir / "params.yaml")
    published = set(json.loads((Path(args.published) / "manifest.json").read_text())["runs"]) if args.published else set()
    if (work / "params.yaml").is_file() and (work / "params.yaml").read_bytes() != (set_dir / "params.yaml").read_bytes():
        raise C.ConfigError(f"window: {work} holds the runs of another params.yaml; give this set another WORK_DIR")
    for folder in (work / "logs", out):
        folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(set_dir / "params.yaml", work / "params.yaml")
    if (set_dir / "data").is_dir() and not (work / "data").exists():
        (work / "data").symlink_to(set_dir / "data")
    os.chdir(work)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: STOP.update(now=True))
    logs, failed = work / "logs", False
    summary = {"set": cfg["profile"], "deadline_s": deadline - t0, "groups": [], "skipped": []}

    def say(kind, text):
        line = f"{kind} {time.time() - t0:.1f} s {text}"
        print(line, flush=True)
        with open(logs / "window.log", "a") as f:
            f.write(line + "\n")

    say("BEGIN", f"{cfg['profile']} in {work}, deadline {deadline - t0:.0f} s, {len(published)} runs published")
    try:
        if os.environ.get("SPEED", "1") != "0":
            rc, sec, stopped = run_until([sys.executable, "-m", "aalp", "bench", "speed", "--shapes", "lenet", "--steps",
                                          "5", "--group-sizes", "1", "5", "--out", str(out / "speed.json")],
                                         min(deadline, t0 + SPEED_S), logs / "speed.log")
            summary["speed"] = {"seconds": round(sec, 1), "status": "stopped" if stopped else rc}
            say("SPEED", f"bench speed: {'stopped' if stopped else f'exit {rc}'} after {sec:.1f} s")
        runs = unfinished(cfg, published)
        est, how = estimates(cfg, runs) if runs and not STOP["now"] else ({}, "none needed")
        summary["estimates"] = {"how": how, "overhead_per_stage_s": OVERHEAD_S, "per_run_s": est}
        say("PLAN", f"{len(runs)} runs to make" + (f"; seconds per run and stage from {how}: " if est else "")
                    + "; ".join(f"{k} " + " ".join(f"{st} {v:.1f}" for st, v in e.items()) for k, e in est.items()))
        passed, made = set(), set()  # made: the runs whose stages all ran in this call
        while not STOP["now"]:
            t, seeds, skipped = next_group(todos(cfg, published, est, os.environ.get("ORDER", "").split()),
                                           deadline - time.time(), passed)
            for k in skipped:
                passed.add(k.name)
                summary["skipped"].append(k.name)
                say("SKIP", f"{k.name}: not one of its {len(k.cost)} seeds fits (the cheapest needs "
                            f"{min(estimate(k, [s]) for s in k.cost):.0f} s, {deadline - time.time():.0f} s left)")
            if t is None:
                break
            if made & {(t.name, s) for s in seeds}:  # a stage that ends well without its outputs: not over and over
                say("FAILED", f"{t.name}: its stages ran but some outputs are missing")
                failed = passed.add(t.name) or True
                continue
            say("START", f"{t.name} seeds {' '.join(map(str, seeds))}{' (resumes its training)' * (set(t.together) == set(seeds))}"
                         f": estimate {estimate(t, seeds):.0f} s, {deadline - time.time():.0f} s left")
            g = run_group(cfg, t, seeds, deadline, logs)
            summary["groups"].append(g)
            kind = {"done": "DONE", "stopped": "STOP", "failed": "FAILED"}[g["status"]]
            say(kind, f"{t.name} seeds {' '.join(map(str, seeds))}: {g['actual_s']:.1f} s (estimate {g['estimate_s']:.0f} s): "
                      + ", ".join(f"{k} {v['actual_s']:.1f} s (estimate {v.get('estimate_s', '-')})" for k, v in g["stages"].items())
                      + {"STOP": "; a next call on this WORK_DIR resumes it", "DONE": ""}.get(kind, f"; see {logs}"))
            made |= {(t.name, s) for s in seeds} if kind == "DONE" else set()
            if kind == "FAILED":  # not again in this call; the next methods go on
                failed = True
                passed.add(t.name)
            if kind == "STOP":
                break
    finally:
        left = sorted({f"{d}/{m}" for d, m, _ in unfinished(cfg, published)})
        say("END", f"{len(summary['groups'])} groups started; unfinished: {' '.join(left) or 'none'}")
        summary["packed"] = pack(work, out)
        if "refused" in summary["packed"]:
            say("REFUSED", summary["packed"]["refused"])
        torch = sys.modules.get("torch")  # imported to time the stages or read a resume point
        summary.update(seconds=round(time.time() - t0, 1), unfinished=left, device="not probed" if torch is None else
                       torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu")
        (out / "window.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return 1 if failed else 0


def add_parser(sub) -> None:
    """The `window` subcommand (cli.build_parser)."""
    s = sub.add_parser("window", help="as much of a set as fits before DEADLINE on a GPU machine without Snakemake "
                                      "(workflow/scripts/gpu_window.sh; README: Sharing results)")
    s.add_argument("set_dir", help="the parameter set (its params.yaml; its data/ is linked when there)")
    s.add_argument("work_dir", help="where the runs are made; a next call on it resumes")
    s.add_argument("out_dir", help="what comes back: speed.json, runs.tgz (or pieces), logs.tgz, window.json")
    s.add_argument("published", nargs="?", help="a published set (its manifest.json): its runs are left out")
    s.set_defaults(fn=lambda cfg, args: command(cfg, args) and sys.exit(1))  # a stage failed; OUT_DIR is written all the same
