"""`python -m aalp bench speed`: the measurements behind the speed options, for the paper's three shapes.

For each shape (LeNet 1x28x28 batch 50 PGD-40, ResNet9 3x32x32 batch 128 PGD-10, ResNet32 3x32x32 batch
128 PGD-7) on the current device:

- training images/s of the RAW and ADV steps with each speed option alone and all together (plain first),
  and the cost ratio ADV/RAW;
- our PGD against torchattacks' PGD on the same model and batch;
- the concurrency curve: aggregate training images/s of 1, 2, 4, ... ADV jobs run side by side as separate
  processes (what Snakemake does with `--resources gpu=N`);
- the group rows: the ALP step of S seeds trained as one group (docs/speed.md#seed-groups) against the same
  S seeds stepped one after another in this process, aggregate images/s and achieved TFLOP/s (FLOPs counted as
  `bench roofline` counts them) against the device's measured float32 matmul peak.

Random tensors of the right shape are enough (speed does not depend on the data). Results are rows of
plain dicts, printed as tables and written as JSON (`--out`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time

import torch

from ..core import grouped, models
from ..core.attacks import pgd
from .benchmark import _sync, bench_spec, random_batch
from ..core.training import Trainer
from .peak import count_flops, matmul_peak, sig

SHAPES = {
    "lenet": {"model": "lenet", "shape": (1, 28, 28), "batch": 50, "eps": 0.3, "step": 0.01, "steps": 40},
    "resnet9": {"model": "resnet9", "shape": (3, 32, 32), "batch": 128, "eps": 12 / 255, "step": 3 / 255, "steps": 10},
    "resnet32": {"model": "resnet32", "shape": (3, 32, 32), "batch": 128, "eps": 8 / 255, "step": 2 / 255, "steps": 7},
}


def options(device: torch.device) -> dict[str, dict]:
    """The speed options, alone and together (CUDA graphs only exist on CUDA; bf16 autocast pays there)."""
    compile_mode = "reduce-overhead" if device.type == "cuda" else "default"
    opts = {"plain": {}, "amp": {"amp": True}, "channels_last": {"channels_last": True},
            "fused_adam": {"fused_adam": True}, "compile": {"compile": compile_mode}}
    opts["all"] = {k: v for o in list(opts.values())[1:] for k, v in o.items()}
    return opts


def step_rate(shape: dict, objective: str, opts: dict, device, steps: int, warmup: int) -> float:
    """Training images/s of one objective's step with the given speed options."""
    torch.manual_seed(0)
    c = shape["shape"][0]
    model = models.build(shape["model"], shape["shape"], [0.5] * c, [0.25] * c)
    tr = Trainer(bench_spec(shape, objective), model, device, **{"amp": False, "channels_last": False, **opts})
    x, y = random_batch(shape, device)
    for _ in range(warmup):
        tr.step(x, y)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        tr.step(x, y)
    _sync(device)
    return steps * len(x) / (time.perf_counter() - t)


def step_table(device, shapes: list[str], steps: int, warmup: int) -> list[dict]:
    rows = []
    for name in shapes:
        s = SHAPES[name]
        for label, o in options(device).items():
            raw = step_rate(s, "raw", o, device, steps, warmup)
            adv = step_rate(s, "adv", o, device, steps, warmup)
            rows.append({"shape": name, "batch": s["batch"], "attack_steps": s["steps"], "options": label,
                         "raw_images_per_s": round(raw, 1), "adv_images_per_s": round(adv, 1),
                         "adv_cost_vs_raw": round(raw / adv, 2)})
        plain = {r["options"]: r for r in rows if r["shape"] == name}["plain"]
        for r in rows:
            if r["shape"] == name:
                r["adv_speedup_vs_plain"] = round(r["adv_images_per_s"] / plain["adv_images_per_s"], 2)
    return rows


def _seconds(fn, device, reps: int, warmup: int) -> float:
    """Seconds per call of fn: `warmup` untimed calls, then the mean of `reps` (the device synchronised around)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / reps


def attack_table(device, shapes: list[str], repeats: int) -> list[dict]:
    """Our PGD-k against torchattacks.PGD, same model (eval mode), batch, eps, step and steps."""
    import torchattacks

    rows = []
    for name in shapes:
        s = SHAPES[name]
        torch.manual_seed(0)
        c = s["shape"][0]
        model = models.build(s["model"], s["shape"], [0.5] * c, [0.25] * c).to(device).eval()
        x, y = random_batch(s, device)
        ta = torchattacks.PGD(model, eps=s["eps"], alpha=s["step"], steps=s["steps"], random_start=True)

        def timed(fn):
            return _seconds(fn, device, repeats, warmup=1)

        ours = timed(lambda: pgd(model, x, y, eps=s["eps"], step=s["step"], steps=s["steps"],
                                 generator=torch.Generator(device=device).manual_seed(0)))
        theirs = timed(lambda: ta(x, y))
        rows.append({"shape": name, "batch": s["batch"], "steps": s["steps"],
                     "ours_images_per_s": round(len(x) / ours, 1), "torchattacks_images_per_s": round(len(x) / theirs, 1),
                     "speedup": round(theirs / ours, 2)})
    return rows


def concurrency_table(device, shapes: list[str], jobs: list[int], seconds: float) -> list[dict]:
    """Aggregate ADV training images/s of n processes side by side on the device (each its own CUDA context)."""
    rows = []
    for name in shapes:
        for n in jobs:
            spec = json.dumps(SHAPES[name])
            cmd = [sys.executable, "-c", f"from aalp.tools.speed import _worker; _worker({spec!r}, {str(device)!r}, {seconds})"]
            env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
            procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(n)]
            outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
            if any(p.returncode for p in procs):
                raise RuntimeError(f"a concurrency worker failed ({name}, {n} jobs)")
            total = sum(o["images_per_s"] for o in outs)
            rows.append({"shape": name, "jobs": n, "aggregate_images_per_s": round(total, 1),
                         "per_job_images_per_s": round(total / n, 1)})
        one = next(r for r in rows if r["shape"] == name and r["jobs"] == jobs[0])
        for r in rows:
            if r["shape"] == name:
                r["scaling_vs_first"] = round(r["aggregate_images_per_s"] / one["aggregate_images_per_s"], 2)
    return rows


def _worker(shape: str, device: str, seconds: float) -> None:
    """One concurrency job: ADV steps for `seconds` after warm-up; prints its images/s as JSON."""
    dev = torch.device(device)
    s = json.loads(shape)
    s["shape"] = tuple(s["shape"])
    torch.manual_seed(0)
    c = s["shape"][0]
    tr = Trainer(bench_spec(s, "adv"), models.build(s["model"], s["shape"], [0.5] * c, [0.25] * c), dev)
    x, y = random_batch(s, dev)
    tr.step(x, y)
    _sync(dev)
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        tr.step(x, y)
        n += len(x)
    _sync(dev)
    print(json.dumps({"images_per_s": n / (time.perf_counter() - t)}), flush=True)




GROUP_METHOD = {"alp": {"objective": "alp", "lambda": 0.5}}


def group_table(device, shapes: list[str], sizes: list[int], steps: int, warmup: int) -> list[dict]:
    """ALP training steps of S seeds as one group against the S seeds stepped in turn (a loop in this process:
    what S processes sharing the device get at best without NVIDIA MPS, which time-slices them), for each S in
    sizes: aggregate training images/s, the group's speed-up, and the TFLOP/s achieved against the float32 matmul
    peak measured here (FLOPs of one seed's step from peak.count_flops, the count `bench roofline` uses)."""
    peak = matmul_peak(torch.float32, device)["gflop_per_s"] / 1e3
    rows = []
    for name in shapes:
        s = SHAPES[name]
        spec = bench_spec(s, "alp", methods=GROUP_METHOD)
        c = s["shape"][0]
        x, y = random_batch(s, device)
        singles = []
        for i in range(max(sizes)):
            torch.manual_seed(i)
            singles.append(models.build(s["model"], s["shape"], [0.5] * c, [0.25] * c))
        flops = count_flops(lambda: Trainer(spec, models.build(s["model"], s["shape"], [0.5] * c, [0.25] * c),
                                            device).step(x, y))

        def rate(fn, n_images):
            return n_images / _seconds(fn, device, steps, warmup)

        for n in sizes:
            specs = [dataclasses.replace(spec, seed=i) for i in range(n)]
            group = Trainer(specs, grouped.stack(singles[:n]) if n > 1 else singles[0], device)
            xg, yg = (x.repeat(n, 1, 1, 1), y.repeat(n)) if n > 1 else (x, y)
            g_rate = rate(lambda: group.step(xg, yg), n * len(x))
            loop = [Trainer(sp, models.build(s["model"], s["shape"], [0.5] * c, [0.25] * c), device) for sp in specs]
            l_rate = rate(lambda: [t.step(x, y) for t in loop], n * len(x))
            tflops = g_rate * flops / len(x) / 1e12
            rows.append({"shape": name, "batch": s["batch"], "attack_steps": s["steps"], "method": "alp", "seeds": n,
                         "group_images_per_s": round(g_rate, 1), "loop_images_per_s": round(l_rate, 1),
                         "group_vs_loop": round(g_rate / l_rate, 2), "mflop_per_image": sig(flops / len(x) / 1e6),
                         "group_tflop_per_s": sig(tflops), "fp32_peak_tflop_per_s": sig(peak),
                         "pct_of_fp32_peak": sig(100 * tflops / peak, 3)})
    return rows


def command(cfg: dict, args) -> None:
    """`python -m aalp bench speed`: the tables above on the set's device, printed and written to --out as JSON."""
    from .. import config as C
    from ..artifacts import write_json
    from .benchmark import print_rows
    from ..core.training import select_device

    device = select_device(cfg["training"]["device"])
    shapes = args.shapes or list(SHAPES)
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        raise C.ConfigError(f"unknown shape(s) {', '.join(unknown)}; allowed values: {', '.join(SHAPES)}")
    steps = args.steps or 20
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"speed on {name}: {', '.join(shapes)}; {steps} timed steps each", flush=True)
    result = {"device": name, "steps": steps}
    result["training_step"] = step_table(device, shapes, steps, warmup=3)
    print_rows(result["training_step"])
    result["pgd_vs_torchattacks"] = attack_table(device, shapes, repeats=3)
    print_rows(result["pgd_vs_torchattacks"])
    if args.jobs:
        result["concurrency"] = concurrency_table(device, shapes, args.jobs, args.seconds)
        print_rows(result["concurrency"])
    if args.group_sizes:
        result["groups"] = group_table(device, shapes, args.group_sizes, steps, warmup=2)
        print_rows(result["groups"])
    if args.out:
        write_json(args.out, result)
