"""`python -m aalp bench plan`: how long a parameter set's whole DAG takes on this device.

Each distinct kind of job is timed for a short burst at the set's real settings (model, batch size, attack)
on random tensors of the dataset's shape, so no data needs to be downloaded; each job is then extrapolated
to its full size and the DAG's jobs are added up:

- train (one per dataset, method and seed): seconds per step x steps (epochs x batches per epoch), plus one
  probe per epoch (the training attack on `training.probe_size` test samples). Methods that cost the same
  per step (same objective and attack) are timed once.
- evaluate (one per run): per attack, seconds per batch x batches, from timed forward and forward-backward
  passes of the model at the evaluation batch size: an FGSM is one forward-backward, all PGD-k together are
  one shared trajectory of the largest k (k forward-backwards), all CW-k another (their projection and loss
  are negligible beside the network). AutoAttack is an upper bound: every sample
  survives every component (APGD-CE, APGD-T and FAB-T with 9 targets, Square), which a robust model
  approaches and a weak one never does.
- evaluate_snapshot (one per kept snapshot of `training.snapshot_steps`): the same arithmetic for
  `evaluation.snapshot_attacks` on the first `evaluation.snapshot_samples` test images.
- analyze (one per analysed run, plus one pass per kept snapshot of the checkpoint runs): contributions over
  the analysed samples (timed forward passes), and the training attack and Grad-CAM on the first
  max(`cam_samples`, `cam_metric_samples`) test samples (the grid's and the metrics' images), in batches.
- report (one per figure, table and the front page): CPU work independent of the device, a fixed estimate.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass

import torch

from .. import config as C, pipeline as P
from ..core import models
from ..core.attacks import attack_groups, with_steps
from ..core.training import Trainer, speed_options, select_device

REPORT_SECONDS = 10.0  # one notebook or the front page on one core (measured: 2-6 s on the CI set), not timed here
TRAIN_STEPS, WARMUP = 1, 1  # a training step is long enough to time alone after one warm-up step
AA_TARGETS = 9  # APGD-T and FAB-T in AutoAttack's standard version


def dataset_size(cfg: dict, dataset: str) -> tuple[int, int, tuple[int, ...]]:
    """(n_train, n_test, shape) from the parameters alone (no data needed)."""
    from ..core.sources import EXPECTED_COUNTS

    ds = cfg["datasets"][dataset]
    if ds["source"] == "synthetic":
        return ds["n_train"], ds["n_test"], tuple(ds["shape"])
    n_train, n_test = EXPECTED_COUNTS[ds["source"]]
    return min(n_train, ds.get("n_train", n_train)), n_test, C.SOURCE_SHAPES[ds["source"]]


@dataclass
class Timer:
    """Seconds of the timed primitives; tests replace it with fixed numbers to check the arithmetic.

    On a GPU every burst runs at the real batch size (small batches are launch-bound there, so time does not
    scale with the batch). On a CPU, which is compute-bound, bursts run on at most `cpu_batch` samples and
    are scaled up linearly, so that the plan of the paper set stays within minutes."""
    device: torch.device
    cpu_batch: int = 32

    def _scaled(self, bs: int) -> tuple[int, float]:
        """(batch to time, factor to the real one)."""
        if self.device.type == "cpu" and bs > self.cpu_batch:
            return self.cpu_batch, bs / self.cpu_batch
        return bs, 1.0

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def _time(self, fn, repeat: int, warmup: int = 1) -> float:
        for _ in range(warmup):
            fn()
        self._sync()
        t = time.perf_counter()
        for _ in range(repeat):
            fn()
        self._sync()
        return (time.perf_counter() - t) / repeat

    def _model(self, cfg, dataset):
        exp = cfg["experiments"][dataset]
        _, _, shape = dataset_size(cfg, dataset)
        torch.manual_seed(0)
        model = models.build(exp["model"], shape, [0.5] * shape[0], [0.25] * shape[0]).to(self.device)
        return model, shape

    def _batch(self, shape, bs):
        g = torch.Generator().manual_seed(0)
        x = torch.rand((bs, *shape), generator=g).to(self.device)
        y = torch.randint(0, 10, (bs,), generator=g).to(self.device)
        return x, y

    def train_step(self, cfg: dict, dataset: str, method: str) -> float:
        """Seconds per training step of one method at its batch size."""
        spec = C.run_spec(cfg, dataset, method, 0)
        model, shape = self._model(cfg, dataset)
        tr = Trainer(spec, model, self.device, **speed_options(cfg["training"]))
        n, factor = self._scaled(spec.batch_size)
        x, y = self._batch(shape, n)
        return factor * self._time(lambda: tr.step(x, y), TRAIN_STEPS, WARMUP)

    def passes(self, cfg: dict, dataset: str, bs: int) -> tuple[float, float]:
        """Seconds of one forward pass and of one forward-backward pass (gradient w.r.t. the input) on bs."""
        model, shape = self._model(cfg, dataset)
        model.eval()
        n, factor = self._scaled(bs)
        x, y = self._batch(shape, n)

        def forward():
            with torch.no_grad():
                model(x)

        def forward_backward():
            xr = x.clone().requires_grad_(True)
            torch.nn.functional.cross_entropy(model(xr), y).backward()

        return factor * self._time(forward, 2), factor * self._time(forward_backward, 2)


def _cost_class(cfg: dict, dataset: str, method: str) -> tuple:
    """Methods with the same per-step cost: objective, attack and batch size (Guided Dropout and adaptive
    weights change a mask and a weight, not the number of passes)."""
    spec = C.run_spec(cfg, dataset, method, 0)
    return spec.objective, spec.attack.steps if spec.objective != "raw" else 0, spec.batch_size


def plan(cfg: dict, timer: Timer | None = None) -> list[dict]:
    """One row per job kind: kind, what, count, seconds_each, hours (count x seconds_each / 3600), cpu_only, and
    runs: the "dataset/method" names whose jobs the row counts (`window` reads each one's estimate from them; a run has
    per_run of them, default 1)."""
    timer = timer or Timer(select_device(cfg["training"]["device"]))
    tcfg, ecfg = cfg["training"], cfg["evaluation"]
    runs = list(C.runs(cfg))
    rows = []

    pass_cache: dict = {}

    def passes(d, bs):
        if (d, bs) not in pass_cache:
            pass_cache[(d, bs)] = timer.passes(cfg, d, bs)
        return pass_cache[(d, bs)]

    # train
    step_cache: dict = {}
    per_run: Counter = Counter((d, m) for d, m, _ in runs)
    for (d, m), count in per_run.items():
        exp = cfg["experiments"][d]
        n_train, n_test, _ = dataset_size(cfg, d)
        key = (d, _cost_class(cfg, d, m))
        if key not in step_cache:
            step_cache[key] = timer.train_step(cfg, d, m)
        spec = C.run_spec(cfg, d, m, 0)
        steps = exp["epochs"] * math.ceil(n_train / spec.batch_size)
        probe_n = min(tcfg["probe_size"], n_test)
        probe_bs = max(spec.batch_size, 256)
        probe = 0.0
        if probe_n:  # the training attack on the probe samples, once an epoch
            att = spec.attack.steps
            probe = math.ceil(probe_n / probe_bs) * att * passes(d, probe_bs)[1]
        sec = steps * step_cache[key] + exp["epochs"] * probe
        rows.append({"kind": "train", "what": f"{d}/{m}", "count": count, "seconds_each": sec, "runs": [f"{d}/{m}"]})

    def attack_seconds(d, names, train_steps, n, n_aa):  # one evaluation: its attacks on n samples, AutoAttack on n_aa
        bs = ecfg["batch_size"]
        f, fb = passes(d, bs)
        per_batch, aa = max(train_steps, 1) * fb, 0.0  # the run's training attack
        step = cfg["experiments"][d]["attack"]["step"]  # PGD-k/CW-k of one step share a trajectory
        for g, members in attack_groups(with_steps(names, lambda k: C.eval_step(cfg, d, k), step)).items():
            if g == "autoattack":
                s_, q = ecfg["autoattack_steps"], ecfg["autoattack_queries"]
                aa = s_ * fb + 2 * AA_TARGETS * s_ * fb + q * f  # APGD-CE + APGD-T, FAB-T (~fb each) + Square
            else:  # fgsm: one forward-backward; PGD-k, CW-k: one shared trajectory of the largest k each
                per_batch += max(max(a.steps for a in members), 1) * fb
        return math.ceil(n / bs) * per_batch + math.ceil(n_aa / bs) * aa, aa > 0

    # evaluate: per dataset, attack list and training attack (the attacks do not depend on the method, except
    # its training attack and whether evaluation.autoattack_methods gives it AutoAttack)
    for d in cfg["experiments"]:
        key_of = {m: (tuple(C.eval_attacks(cfg, d, m)), C.train_attack(cfg, d, C.base_method(cfg, d, m)).steps)
                  for dd, m, _ in runs if dd == d}
        by_attacks: Counter = Counter(key_of[m] for dd, m, _ in runs if dd == d)
        _, n_test, _ = dataset_size(cfg, d)
        n = n_test if ecfg["n_samples"] is None else min(ecfg["n_samples"], n_test)
        n_aa = n if ecfg["autoattack_samples"] is None else min(ecfg["autoattack_samples"], n)
        for (names, train_steps), count in by_attacks.items():
            sec, aa = attack_seconds(d, names, train_steps, n, n_aa)
            what = "AutoAttack as an upper bound" if aa else ("no AutoAttack" if "autoattack" in ecfg["attacks"] else "")
            rows.append({"kind": "evaluate", "what": f"{d} (all attacks{', ' + what if what else ''})",
                         "count": count, "seconds_each": sec, "runs": [f"{d}/{m}" for m, k in key_of.items()
                                                                         if k == (names, train_steps)]})

    # evaluate_snapshot: one per kept snapshot to evaluate (training.snapshot_steps), its attacks on the first
    # evaluation.snapshot_samples test images, AutoAttack on all of them
    snaps: Counter = Counter((d, m) for d, m, _, _ in P.snapshot_runs(cfg))
    for (d, m), count in snaps.items():
        n = min(ecfg["snapshot_samples"], dataset_size(cfg, d)[1])
        sec, aa = attack_seconds(d, ecfg["snapshot_attacks"], C.train_attack(cfg, d, m).steps, n, n)
        rows.append({"kind": "evaluate_snapshot", "what": f"{d}/{m} ({', '.join(ecfg['snapshot_attacks'])} on {n} "
                     f"samples{', AutoAttack as an upper bound' if aa else ''})", "count": count, "seconds_each": sec,
                     "runs": [f"{d}/{m}"], "per_run": len(cfg["training"]["snapshot_steps"])})

    # analyze
    a = cfg.get("analysis", {})
    analysed = set(P.analyzed(cfg))
    ck_runs = set(tcfg.get("checkpoint_runs") or [])
    for d in cfg["experiments"]:
        d_runs = [(m, s) for dd, m, s in analysed if dd == d]
        if not d_runs:
            continue
        _, n_test, _ = dataset_size(cfg, d)
        samples = a.get("samples") if a.get("samples") is not None else ecfg["n_samples"]
        n = n_test if samples is None else min(samples, n_test)
        abs_ = a.get("batch_size", 256)
        f, fb = passes(d, abs_)
        k = cfg["experiments"][d]["attack"]["steps"]
        cams = min(max(a.get("cam_samples", 8), a.get("cam_metric_samples", 500)), n_test)
        one = math.ceil(n / abs_) * f + math.ceil(cams / abs_) * (k + 2) * fb  # contributions; attack and Grad-CAM
        snapshots = 0
        for m, s in d_runs:
            if f"{d}/{m}" in ck_runs:  # its kept snapshots: checkpoint_every's multiples and snapshot_steps
                spec = C.run_spec(cfg, d, m, s)
                n_train, _, _ = dataset_size(cfg, d)
                steps, every = cfg["experiments"][d]["epochs"] * math.ceil(n_train / spec.batch_size), tcfg["checkpoint_every"]
                snapshots += len(set(range(every, steps + 1, every) if every else []) | set(tcfg.get("snapshot_steps", [])))
        rows.append({"kind": "analyze", "what": d, "count": len(d_runs), "seconds_each": one * (1 + snapshots / len(d_runs)),
                     "runs": list(dict.fromkeys(f"{d}/{m}" for m, _ in d_runs))})

    n_items = len(P.notebooks()) + 1
    rows.append({"kind": "report", "what": "notebooks and front page (CPU, estimated)", "count": n_items,
                 "seconds_each": REPORT_SECONDS, "cpu_only": True, "runs": []})
    for r in rows:
        r["hours"] = r["count"] * r["seconds_each"] / 3600
        r.setdefault("cpu_only", False)
    return rows


def total_hours(rows: list[dict], device_only: bool = True) -> float:
    return sum(r["hours"] for r in rows if not (device_only and r["cpu_only"]))


def format_plan(rows: list[dict], device: str) -> str:
    w, k = max(len(r["what"]) for r in rows), max(9, *(len(r["kind"]) for r in rows))
    lines = [f"{'job':<{k}} {'what':<{w}} {'count':>6} {'s/job':>10} {'hours':>9}"]
    for r in rows:
        lines.append(f"{r['kind']:<{k}} {r['what']:<{w}} {r['count']:>6} {r['seconds_each']:>10.1f} {r['hours']:>9.2f}")
    dev, cpu = total_hours(rows), sum(r["hours"] for r in rows if r["cpu_only"])
    lines.append(f"total: {dev:.1f} {device} hours for the device jobs (train, evaluate, analyze), one job at a time; "
                 f"+ {cpu:.2f} CPU hours of reports")
    return "\n".join(lines)
