"""`python -m aalp <stage>`: the command every Snakemake rule and DVC stage calls.

It reads ./params.yaml (or --params) from the working directory of the profile, validates it
before any work, and writes outputs relative to that directory.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from . import checkout, config as C
from .layout import CHECKPOINT, REPORT_ITEMS, SNAPSHOT, run_dir as _run_dir

log = logging.getLogger("aalp")


def cmd_validate(cfg, args):
    n = sum(1 for _ in C.runs(cfg))
    print(f"{args.params}: ok (profile {cfg['profile']}, {len(cfg['experiments'])} datasets, {n} training runs)")


def cmd_prepare(cfg, args):
    from .core import data

    if args.dataset not in cfg["datasets"]:
        raise C.ConfigError(f"unknown dataset {args.dataset!r}; allowed values: {', '.join(cfg['datasets'])}")
    data.prepare(cfg, args.dataset)


def _code_hash(stage: str) -> str:
    """The digest of the source files the stage imports (pipeline.code_hash), recorded beside its outputs so
    that `publish --add` can refuse runs made by other code."""
    from . import pipeline

    return pipeline.code_hash(stage)


def _seeds(cfg, args) -> list[int]:
    """--seed S or --seeds S1 S2 ...: the seeds, each checked against the set (names, duplicates) before compute."""
    seeds = [args.seed] if args.seeds is None else list(args.seeds)
    if len(set(seeds)) != len(seeds):
        raise C.ConfigError(f"--seeds lists a seed twice: {seeds}")
    for sd in seeds:
        C.run_spec(cfg, args.dataset, args.method, sd)
    return seeds


def cmd_train(cfg, args):
    """One run, or with --seeds the seeds of one (dataset, method) as one group (docs/speed.md#seed-groups)."""
    from .core import training

    seeds = _seeds(cfg, args)
    specs = [C.run_spec(cfg, args.dataset, args.method, sd) for sd in seeds]
    outs = [_run_dir(args.dataset, args.method, sd) for sd in seeds]
    training.train(cfg, specs[0] if args.seeds is None else specs, outs[0] if args.seeds is None else outs,
                   code_hash=_code_hash("train"))


def cmd_evaluate(cfg, args):
    """With --seeds, the seeds as one group (docs/speed.md#seed-groups); with --snapshot, each seed's kept snapshots
    at those steps in turn (docs/method.md#budget-snapshots)."""
    from .core import evaluation

    seeds = _seeds(cfg, args)
    dirs = [_run_dir(args.dataset, args.method, sd) for sd in seeds]
    if args.snapshot:
        ev = cfg["evaluation"]
        for sd, rd in zip(seeds, dirs):
            for n in args.snapshot:
                evaluation.evaluate(cfg, args.dataset, args.method, sd, rd, _code_hash("evaluate"),
                                    model_file=CHECKPOINT.format(step=n), attacks=ev["snapshot_attacks"],
                                    n_samples=ev["snapshot_samples"], out=SNAPSHOT.format(step=n), extra={"step": n})
        return
    evaluation.evaluate(cfg, args.dataset, args.method, seeds[0] if args.seeds is None else seeds,
                        dirs[0] if args.seeds is None else dirs, code_hash=_code_hash("evaluate"))


def cmd_analyze(cfg, args):
    from .core import analysis

    for sd in _seeds(cfg, args):
        analysis.analyze(cfg, args.dataset, args.method, sd, _run_dir(args.dataset, args.method, sd),
                         code_hash=_code_hash("analyze"))


def cmd_report(cfg, args):
    if args.finished_runs:  # a set published in slices: its report covers the runs finished so far
        from .publish import finished_runs

        done = finished_runs(cfg, Path("."))
        if not done:
            raise C.ConfigError("report --finished-runs: no run of this set is finished here")
        total = len(list(C.runs(cfg)))
        cfg = C.only_runs(cfg, done)
        if len(done) < total:  # said first on the front page, so the slice is not read as the whole set
            cfg["description"] = (f"Published in slices: {len(done)} of this set's {total} runs are finished so far; "
                                  "the others are missing from every table and figure. " + cfg.get("description", ""))
    if args.item:
        from .report.items import report_item

        report_item(cfg, args.item, args.out, not args.tables_only)
    elif args.index:
        from .report.frontpage import report_index

        report_index(cfg, args.out)
    else:
        from .report.build import report

        report(cfg, args.out, render_notebooks=not args.tables_only)


def cmd_publish(cfg, args):
    from . import publish as P

    limit = P.LIMIT_MB if args.limit_mb is None else args.limit_mb
    man = P.publish(cfg, Path("."), Path(args.dest), limit_mb=limit, add=args.add, rerender_only=args.rerender)
    problems = P.check(args.dest)
    if problems:
        raise RuntimeError(f"publish: the copy in {args.dest} does not match its manifest: {problems[0]}")
    w = man["wall_seconds"]
    print(f"published {len(man['files'])} files ({man['total_bytes'] / 2**20:.1f} MB) of the {man['set']} set to "
          f"{args.dest}: {len(man['runs'])} runs on {', '.join(map(str, man['devices']))}, training {w['train'] / 3600:.2f} h, "
          f"attacks {w['attacks'] / 3600:.2f} h. Open {Path(args.dest) / 'reports' / 'index.html'}")


def cmd_dvc(cfg, args):
    from . import pipeline

    workdir = Path(args.params).resolve().parent
    target = Path(args.output)
    if args.check:
        problem = pipeline.dvc_yaml_problem(cfg, workdir, args.params, args.output)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            sys.exit(1)
        if args.stamp:
            from .artifacts import atomic_path

            with atomic_path(Path(args.stamp)) as tmp:
                Path(tmp).write_text(pipeline.matrix_stamp_text(args.output, args.params))
        print(f"{target} is up to date")
        return
    target.write_text(pipeline.dvc_yaml(cfg, workdir))
    print(f"wrote {target}")


def cmd_bench(cfg, args):
    from .tools import benchmark as B

    if args.what == "plan":
        from .core.training import select_device
        from .tools import plan as PL

        device = select_device(cfg["training"]["device"])
        if args.if_slow is not None and device.type != "cpu":
            return  # make run: the warning is for CPU machines only
        t0 = time.time()
        rows = PL.plan(cfg, PL.Timer(device))
        total = PL.total_hours(rows)
        name = torch_device_name(device)
        if args.if_slow is not None and total <= args.if_slow:
            return
        print(f"time plan of the {cfg['profile']} parameter set on {name} (timed in {time.time() - t0:.0f} s):")
        print(PL.format_plan(rows, name))
        if args.if_slow is not None:
            print(f"note: that is more than {args.if_slow:g} hours on this {device.type.upper()}. A GPU runs it "
                  "much faster; for a first look run a smaller set, e.g. `snakemake --cores all --directory "
                  "configs/fashion` (Fashion-MNIST, minutes to hours) or `--directory configs/ci` (minutes). "
                  "Interrupt now (Ctrl-C) or let it run: finished jobs are kept.", flush=True)
        return
    if args.what == "speed":
        from .tools import speed as SP

        SP.command(cfg, args)
        return
    if args.what == "roofline":
        from .tools import roofline as RL

        RL.command(cfg, args)
        return
    if args.what == "agree":
        from .tools import agree as AG

        options = AG.parse_options(args.options or [])
        dataset = args.dataset or next(iter(cfg["experiments"]))
        method = (args.methods or ["adv"])[0]
        seeds = args.seeds if args.seeds is not None else list(cfg["seeds"])
        for name, v in (("--epochs", args.epochs), ("--train-samples", args.train_samples),
                        ("--test-samples", args.test_samples)):
            if v is not None and v < 1:
                raise C.ConfigError(f"{name} must be at least 1, got {v}")
        res = AG.run(cfg, dataset, method, seeds, options, args.out or "bench/agree", epochs=args.epochs,
                     train_samples=args.train_samples, test_samples=args.test_samples, attacks=args.attacks)
        print(AG.format_result(res))
        return
    if not args.dataset:
        raise C.ConfigError(f"bench {args.what} needs --dataset")
    if args.what == "train":
        rows = B.bench_train(cfg, args.dataset, args.methods, steps=args.steps or 20, batch_size=args.batch_size)
        B.print_rows(rows)
    else:
        res = B.bench_attack(cfg, args.dataset, args.model, steps=args.steps or 20,
                             batch_size=args.batch_size or 256)
        print(B.to_json(res))


def torch_device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aalp", description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml", help="parameter file (default: ./params.yaml)")
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("validate", help="check params.yaml and exit").set_defaults(fn=cmd_validate)
    s = sub.add_parser("prepare", help="download/verify or generate a dataset and write its prepared copy")
    s.add_argument("--dataset", required=True)
    s.set_defaults(fn=cmd_prepare)
    for name, fn, text in (("train", cmd_train, "train one (dataset, method, seed)"),
                           ("evaluate", cmd_evaluate, "attack one trained model and write its records and metrics"),
                           ("analyze", cmd_analyze, "feature contributions and Grad-CAM of one trained model "
                                                    "(and of its checkpoint series)")):
        s = sub.add_parser(name, help=text)
        s.add_argument("--dataset", required=True)
        s.add_argument("--method", required=True)
        one = s.add_mutually_exclusive_group(required=True)
        one.add_argument("--seed", type=int)
        one.add_argument("--seeds", type=int, nargs="+", help="several seeds of the method: trained as one group "
                                                               "(one batched model), evaluated and analysed in turn")
        if name == "evaluate":
            s.add_argument("--snapshot", type=int, nargs="+", metavar="N",
                           help="evaluate the run's checkpoints/step<N>.pt instead of model.pt, with "
                                "evaluation.snapshot_attacks on the first evaluation.snapshot_samples test images, "
                                "into snapshots/step<N>/ (each seed and step in turn)")
        s.set_defaults(fn=fn)
    s = sub.add_parser("report", help="compute the report's tables and figures and render the notebooks to HTML "
                                      "(every item and the index page, or one of them)")
    s.add_argument("--out", default="reports")
    which = s.add_mutually_exclusive_group()
    which.add_argument("--item", choices=REPORT_ITEMS, help="one figure or table (what its pipeline stage runs)")
    which.add_argument("--index", action="store_true", help="only the front page and claims.json, from claims/*.csv")
    s.add_argument("--tables-only", action="store_true",
                   help="compute and write the tables, claims and figure data (and the front page) without "
                        "rendering the notebooks: quick, and what a rebuild of published results compares")
    s.add_argument("--finished-runs", action="store_true",
                   help="build the report from the runs whose result files are all here, the others counting as "
                        "missing (a set published in slices, `publish --add`)")
    s.set_defaults(fn=cmd_report)
    s = sub.add_parser("publish", help="copy this finished set's result files (no weights) and rendered report "
                                       "into DEST, e.g. ../../results/<set>, with a manifest")
    s.add_argument("dest")
    s.add_argument("--limit-mb", type=float, default=None, help="refuse to publish more than this (default: publish.LIMIT_MB)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--add", action="store_true",
                     help="add this set's finished runs (trained, evaluated, analysed) to DEST, a set published "
                          "before with the same params.yaml and code (or a new one), and rebuild its report from all "
                          "of its runs: a long set published in slices")
    how.add_argument("--rerender", action="store_true",
                     help="rebuild the report of the set published in DEST with today's report code, from the run "
                          "files DEST holds (none added or changed), and rewrite its manifest")
    s.set_defaults(fn=cmd_publish)
    s = sub.add_parser("dvc", help="write dvc.yaml for this profile (or --check that it is current)")
    s.add_argument("--output", default="dvc.yaml")
    s.add_argument("--check", action="store_true")
    s.add_argument("--stamp", help="with --check: write this file when dvc.yaml is current (the matrix-check stage)")
    s.set_defaults(fn=cmd_dvc)
    s = sub.add_parser("bench", help="speed benchmarks: training images/s per method, our PGD vs torchattacks")
    s.add_argument("what", choices=["train", "attack", "plan", "speed", "agree", "roofline"],
                   help="plan: time every job kind of this set's DAG briefly and extrapolate the whole DAG; "
                        "speed: the speed options, PGD vs torchattacks and concurrent jobs on the paper's three shapes; "
                        "roofline: images/s and achieved GFLOP/s of every method's training step and every evaluation "
                        "attack's iteration on the paper LeNet, against the measured matmul peak and a minimal loop; "
                        "agree: train and evaluate one method per seed on the plain path and with --options, and say "
                        "whether the results agree within seed noise")
    s.add_argument("--dataset")
    s.add_argument("--if-slow", type=float, metavar="HOURS",
                   help="plan: print only on a CPU and only when the device jobs exceed HOURS (make run)")
    s.add_argument("--methods", nargs="+", help="train: methods to time (default: the dataset's); agree: the method "
                                                "(default adv); roofline: raw adv alp trades aalp (default: all)")
    s.add_argument("--model", help="attack: a model.pt to attack (default: an untrained model)")
    s.add_argument("--steps", type=int, help="train, speed: timed steps (default 20); attack: PGD steps (default 20); "
                                             "roofline: steps of the training attack PGD-k (default 10)")
    s.add_argument("--shapes", nargs="+", help="speed: lenet, resnet9, resnet32 (default: all)")
    s.add_argument("--jobs", type=int, nargs="+", help="speed: concurrent training processes to measure, e.g. 1 2 4 8")
    s.add_argument("--group-sizes", type=int, nargs="+",
                   help="speed: seeds trained as one group (ALP) against the same seeds in turn, e.g. 1 5 10 25")
    s.add_argument("--seconds", type=float, default=20.0, help="speed: seconds each concurrent process trains")
    s.add_argument("--out", help="speed, roofline: write the tables as JSON here; agree: the runs' folder (default bench/agree)")
    s.add_argument("--options", nargs="+", metavar="OPT",
                   help="agree: speed options of the fast path: amp channels_last fused_adam drop_last "
                        "compile=default|reduce-overhead")
    s.add_argument("--seeds", type=int, nargs="+", help="agree: seeds (default: the set's)")
    s.add_argument("--epochs", type=int, help="agree: epochs instead of the set's")
    s.add_argument("--train-samples", type=int, help="agree: train on the first N training images")
    s.add_argument("--test-samples", type=int, help="agree: evaluate on the first N test images")
    s.add_argument("--attacks", nargs="+", help="agree: evaluation attacks instead of the set's, e.g. pgd20; "
                                                "roofline: fgsm pgd_step cw_step (default: all)")
    s.add_argument("--paths", nargs="+", help="roofline: fp32 fp32_fast bf16_fast (default: all; bf16_fast only "
                                              "where the device has native bf16)")
    s.add_argument("--reps", type=int, default=3, help="roofline: timed calls per row, each of ours and of the minimal loop")
    s.add_argument("--before", action="store_true",
                   help="roofline: every row also with the CPU kernels of docs/speed.md#cpu-kernels off")
    s.add_argument("--threads", type=int, help="roofline: torch threads (default: torch's)")
    s.add_argument("--batch-size", type=int)
    s.set_defaults(fn=cmd_bench)
    from .tools.window import add_parser as window_parser
    window_parser(sub)
    return p


_REEXEC = "AALP_REEXEC"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    home = checkout.find_checkout(Path.cwd())
    if home is not None and home.resolve() != C.REPO_ROOT and checkout.dvc_experiment_copy(home) and not os.environ.get(_REEXEC):
        # `dvc exp run --queue` runs the stages in a copy of the checkout, with the environment's aalp still
        # pointing at the original: run this copy's own code, which is what its dvc.lock records
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(home / "src"), os.environ.get("PYTHONPATH")])))
        env[_REEXEC] = "1"
        os.execve(sys.executable, [sys.executable, "-m", "aalp", *(sys.argv[1:] if argv is None else argv)], env)
    try:
        checkout.check_checkout(home)  # this checkout's code, not another one's
        cfg = C.load(args.params)
        args.fn(cfg, args)
    except C.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        if args.verbose:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
