"""Small speed benchmarks: training images/s per method (and its cost relative to `raw` on the same
model), and our PGD against torchattacks' PGD on the same model and batch."""
from __future__ import annotations

import json
import time

import torch

from .. import config as C
from ..core import models
from ..core.attacks import pgd
from ..core.data import load_prepared, to_float
from ..core.checkpoints import load_model
from ..core.training import Trainer, speed_options, select_device


BENCH_BASE = {"profile": "bench", "seeds": [0], "run_seeds": {}, "sweeps": [],
              "data": {"dir": "data", "raw_dir": "data/raw", "mirror": None, "download": False},
              "training": {"device": "auto", "amp": False, "channels_last": False, "checkpoint_every": 0, "probe_size": 0},
              "analysis": {"samples": None, "cam_samples": 1, "cam_metric_samples": 1, "batch_size": 50},
              "evaluation": {"attacks": ["fgsm"], "batch_size": 50, "n_samples": None}}
BENCH_METHODS = {"raw": {"objective": "raw"}, "adv": {"objective": "adv"}}


def bench_spec(shape: dict, method: str, steps: int | None = None, methods: dict | None = None) -> C.RunSpec:
    """The RunSpec of one epoch of `method` on a synthetic dataset of `shape` (a dict: shape, model, batch, eps,
    step and, unless `steps` is given, steps of the training attack), with the schema's defaults for everything
    `methods` (name -> method params; default BENCH_METHODS: raw and adv) leaves open. Every timing benchmark
    (bench speed, bench roofline) builds its runs here."""
    import copy

    methods = BENCH_METHODS if methods is None else methods
    n = max(10, shape["batch"])
    p = copy.deepcopy(BENCH_BASE)
    p["methods"] = copy.deepcopy(methods)
    p["datasets"] = {"bench": {"source": "synthetic", "shape": list(shape["shape"]), "n_train": n, "n_test": n, "seed": 0}}
    p["experiments"] = {"bench": {"model": shape["model"], "epochs": 1, "batch_size": shape["batch"], "lr": 1e-4,
                                  "augment": "none", "methods": list(methods),
                                  "attack": {"eps": shape["eps"], "step": shape["step"],
                                             "steps": shape["steps"] if steps is None else steps, "random_start": True}}}
    return C.run_spec(C.validate(p), "bench", method, 0)


def random_batch(shape: dict, device, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random batch of `shape`: inputs (n, *shape['shape']) uniform in [0, 1] and labels in 0..9, n =
    shape['batch'] unless given (generator seed 0: the same batch in every benchmark and run)."""
    g = torch.Generator().manual_seed(0)
    n = n or shape["batch"]
    return torch.rand((n, *shape["shape"]), generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(x), (bs,), generator=g).to(x.device)
        yield to_float(x[idx]), y[idx]


def bench_train(cfg: dict, dataset: str, methods: list[str] | None = None, steps: int = 20, warmup: int = 3,
                batch_size: int | None = None) -> list[dict]:
    """Time `steps` training steps of each method; returns rows with images/s and cost vs raw."""
    exp = cfg["experiments"][dataset]
    methods = methods or exp["methods"]
    device = select_device(cfg["training"]["device"])
    d = load_prepared(cfg["data"]["dir"], dataset, verify=False)
    x, y = torch.from_numpy(d.train_x).to(device), torch.from_numpy(d.train_y).to(device)
    rows = []
    for m in methods:
        if m not in cfg["methods"]:
            raise C.ConfigError(f"unknown method {m!r}; allowed values: {', '.join(cfg['methods'])}")
        spec = C.run_spec({**cfg, "experiments": {dataset: {**exp, "methods": [m]}}}, dataset, m, 0)
        bs = batch_size or spec.batch_size
        torch.manual_seed(0)
        model = models.build(spec.model, d.shape, d.manifest["mean"], d.manifest["std"])
        tr = Trainer(spec, model, device, **speed_options(cfg["training"]))
        it = _batches(x, y, bs)
        for _ in range(warmup):
            tr.step(*next(it))
        _sync(device)
        t = time.perf_counter()
        for _ in range(steps):
            tr.step(*next(it))
        _sync(device)
        dt = time.perf_counter() - t
        rows.append({"method": m, "model": spec.model, "device": str(device), "batch_size": bs, "steps": steps,
                     "attack_steps": spec.attack.steps if spec.objective != "raw" else 0,
                     "images_per_s": round(steps * bs / dt, 1), "seconds_per_step": round(dt / steps, 5)})
    base = next((r["images_per_s"] for r in rows if r["method"] == "raw"), None)
    for r in rows:
        r["cost_vs_raw"] = round(base / r["images_per_s"], 2) if base else None
    return rows


def bench_attack(cfg: dict, dataset: str, model_path: str | None = None, steps: int = 10, batch_size: int = 256,
                 repeats: int = 3) -> dict:
    """Our PGD-k against torchattacks.PGD on the same model, batch, eps, step and steps: speed and accuracy."""
    import torchattacks

    exp = cfg["experiments"][dataset]
    device = select_device(cfg["training"]["device"])
    d = load_prepared(cfg["data"]["dir"], dataset, verify=False)
    if model_path:
        model = load_model(model_path, expect_model=exp["model"], expect_shape=d.shape, device=device)
    else:
        torch.manual_seed(0)
        model = models.build(exp["model"], d.shape, d.manifest["mean"], d.manifest["std"]).to(device).eval()
    n = min(batch_size, len(d.test_x))
    x = to_float(torch.from_numpy(d.test_x[:n]).to(device))
    y = torch.from_numpy(d.test_y[:n]).to(device)
    eps, step = exp["attack"]["eps"], exp["attack"]["step"]
    ta = torchattacks.PGD(model, eps=eps, alpha=step, steps=steps, random_start=True)

    def timed(fn):
        fn()  # warm-up
        _sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        _sync(device)
        return out, (time.perf_counter() - t) / repeats

    ours, t_ours = timed(lambda: pgd(model, x, y, eps=eps, step=step, steps=steps,
                                     generator=torch.Generator(device=device).manual_seed(0)))
    theirs, t_theirs = timed(lambda: ta(x, y))
    with torch.no_grad():
        acc_ours = 100 * (model(ours).argmax(1) == y).float().mean().item()
        acc_theirs = 100 * (model(theirs).argmax(1) == y).float().mean().item()
    return {"dataset": dataset, "model": exp["model"], "device": str(device), "samples": n, "steps": steps,
            "eps": eps, "step": step, "ours_images_per_s": round(n / t_ours, 1),
            "torchattacks_images_per_s": round(n / t_theirs, 1), "speedup": round(t_theirs / t_ours, 3),
            "ours_accuracy": round(acc_ours, 2), "torchattacks_accuracy": round(acc_theirs, 2)}


def print_rows(rows: list[dict]) -> None:
    if not rows:
        return
    keys = list(rows[0])
    widths = {k: max(len(k), *(len(str(r[k])) for r in rows)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for r in rows:
        print("  ".join(str(r[k]).ljust(widths[k]) for k in keys))


def to_json(obj) -> str:
    return json.dumps(obj, indent=2)
