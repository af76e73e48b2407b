"""One training loop for every method (docs/method.md#training-step): the method only chooses the batch (clean, adversarial or both),
the objective and whether Guided Dropout masks the logits layer's input.

Outputs of a run folder: model.pt (final weights), history.csv (per-epoch probe metrics),
probe.parquet (per-sample probe records per epoch), run.json (seed, params, code version, device),
checkpoints/step<N>.pt (N zero-padded to 7 digits) every training.checkpoint_every steps and at each step of
training.snapshot_steps for the runs of training.checkpoint_runs.
resume.pt holds the state to resume from.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import devices, grouped, models
from ..artifacts import atomic_path, provenance, write_json
from .checkpoints import load_model, load_resume, save_model, save_resume  # noqa: F401 (load_model: re-exported)
from .divergence import Diverged, LossWatch  # noqa: F401 (Diverged: re-exported)
from .step import AUGMENT_PAD, PROBE_COLUMNS, Trainer, augment, crop_at  # noqa: F401 (re-exported)
from ..config import RunSpec
from .data import load_prepared, to_float

log = logging.getLogger(__name__)
# history.csv's probe columns: the mean over the probe images of PROBE_COLUMNS' per-image values
PROBE_MEANS = {"probe_clean_acc": "clean_correct", "probe_adv_acc": "adv_correct", "probe_clean_loss": "clean_ce",
               "probe_adv_loss": "adv_ce", "probe_alp": "alp"}


def select_device(pref: str = "auto") -> torch.device:
    """training.device: cpu, cuda (an error without one), cuda:N, or auto. On a machine with several GPUs, cuda and
    auto claim a free one (core/devices.py), so that jobs side by side spread over the GPUs."""
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"training.device = {pref} but no CUDA device is available")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda" and torch.cuda.device_count() > 1:
        i = devices.claim(devices.cuda_ids())
        torch.cuda.set_device(i)
        log.info("claimed GPU %d of %d (the others are held by other jobs or free)", i, torch.cuda.device_count())
        return torch.device("cuda", i)
    return torch.device(pref)


def _fingerprint(spec: RunSpec, manifest: dict, training: dict) -> str:
    snaps = {"snapshot_steps": training["snapshot_steps"]} if spec.snapshots and training.get("snapshot_steps") else {}
    return json.dumps({"spec": dataclasses.asdict(spec), "data": manifest["sha256"],
                       "training": {k: training.get(k) for k in ("amp", "channels_last", "checkpoint_every", "probe_size",
                                                                "fused_adam", "compile", "drop_last")} | snaps},
                      sort_keys=True)


def speed_options(tcfg: dict) -> dict:
    """The Trainer's speed options from params.yaml `training` (docs/method.md#speed-options)."""
    return {"amp": tcfg["amp"], "channels_last": tcfg["channels_last"], "fused_adam": tcfg.get("fused_adam", False),
            "compile": tcfg.get("compile", "none")}


class _StopSignals:
    """Records SIGTERM (what SLURM sends on preemption, scancel or the time limit) and SIGUSR1 (what
    `sbatch --signal=USR1@<seconds>` sends ahead of it) instead of dying at once, so the training loop can
    save resume.pt after the step in flight. Installed only in the main thread (signal handlers cannot be
    set elsewhere); `restore` puts the previous handlers back."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self):
        self.signum: int | None = None
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._on) for s in self.SIGNALS}

    def _on(self, signum, frame):
        self.signum = signum

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}


def _opt_state(opt_sd: dict, shapes: list, s: int | None) -> dict:
    """Seed s's share of a group's Adam state_dict: every state tensor shaped like its parameter (of the single
    model's parameter shapes, in the order the grouped model keeps), sliced as the grouped parameter is
    (grouped.seed_slice): what a single run of seed s saves. s None: the state as it is."""
    if s is None:
        return opt_sd
    state = {i: {k: (v if k == "step" else grouped.seed_slice(v, s, shapes[i]).clone()) for k, v in st.items()}
             for i, st in opt_sd["state"].items()}
    return {"state": state, "param_groups": opt_sd["param_groups"]}


def _group_opt_state(sds: list[dict], model: torch.nn.Module) -> dict:
    """The inverse of _opt_state: the seeds' Adam states stacked into the group's."""
    params = list(model.parameters())
    state = {i: {k: (v if k == "step" else torch.stack([sd["state"][i][k] for sd in sds]).reshape(params[i].shape))
                 for k, v in st.items()} for i, st in sds[0]["state"].items()}
    return {"state": state, "param_groups": sds[0]["param_groups"]}


def train(cfg: dict, spec: RunSpec | list[RunSpec], out_dir: str | Path | list, train_samples: int | None = None,
          code_hash: str | None = None) -> dict | list[dict]:
    """Train one (dataset, method, seed) run into out_dir, or a group of seeds of one (dataset, method) (spec and
    out_dir lists, one per seed) as one batched model (docs/method.md#seed-groups), each seed resuming from its
    out_dir/resume.pt if present. train_samples: train on the first N training images only (`bench agree`'s reduced
    check; the pipeline always trains on all of them). code_hash: the digest of the stage's source files, recorded
    in run.json. Returns run.json's content (a list of them for a list of specs)."""
    single = isinstance(spec, RunSpec)
    specs, outs = ([spec], [Path(out_dir)]) if single else (list(spec), [Path(o) for o in out_dir])
    S, spec = len(specs), specs[0]
    if len({dataclasses.replace(sp, seed=0) for sp in specs}) != 1 or len(outs) != S:
        raise ValueError("a group trains the seeds of one (dataset, method): one out_dir per spec, all else equal")
    for o in outs:
        o.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["training"]
    device = select_device(tcfg["device"])
    data = load_prepared(cfg["data"]["dir"], spec.dataset)
    singles = []
    for sp in specs:  # each seed's initial weights, as when it trains alone
        torch.manual_seed(sp.seed)
        singles.append(models.build(sp.model, data.shape, data.manifest["mean"], data.manifest["std"]))
    model = singles[0] if S == 1 else grouped.stack(singles)
    trainer = Trainer(specs, model, device, **speed_options(tcfg))
    fast = [k for k in ("channels_last", "fused_adam", "drop_last") if tcfg.get(k)] + (
        [f"compile={tcfg['compile']}"] if tcfg.get("compile", "none") != "none" else [])
    dtype = ("bf16 autocast" if tcfg["amp"] else "fp32") + ", " + (" ".join(fast) if fast else "plain path")
    seeds = [sp.seed for sp in specs]
    name = f"{spec.dataset}/{spec.method}/s{','.join(map(str, seeds))}"
    log.info("train %s%s on %s (%s, %s) | model %s (%d params%s) | %s", name, f" as one group of {S}" if S > 1 else "",
             device, torch.cuda.get_device_name() if device.type == "cuda" else "cpu", dtype, spec.model,
             models.count_parameters(singles[0]), " each" if S > 1 else "", json.dumps(dataclasses.asdict(spec)))

    keep = slice(None) if train_samples is None else slice(0, train_samples)
    train_x = torch.from_numpy(data.train_x[keep]).to(device)
    train_y = torch.from_numpy(data.train_y[keep]).to(device)
    n_probe = min(tcfg["probe_size"], len(data.test_x))
    probe_x = torch.from_numpy(data.test_x[:n_probe]).to(device)
    probe_y = torch.from_numpy(data.test_y[:n_probe]).to(device)
    n, bs = len(train_x), spec.batch_size
    # drop_last: every step the same shape (what CUDA graphs need); the dropped images change every epoch
    n_batches = n // bs if tcfg.get("drop_last") and n >= bs else (n + bs - 1) // bs
    group = "" if S == 1 else f"|group {seeds}"  # a group's resume points resume that group
    fps = [_fingerprint(sp, data.manifest, tcfg) + ("" if train_samples is None else f"|first {train_samples}") + group
           for sp in specs]

    epoch, batch_idx, step = 0, 0, 0
    history, probes, sums = [[] for _ in specs], [[] for _ in specs], {}
    done_seconds, epoch_done_seconds = 0.0, 0.0  # seconds of a resumed run's earlier segments: run, current epoch
    resumed_at: list[int] = []  # the steps this run resumed at (run.json): its train_seconds is then a lower bound
    resumes = [o / "resume.pt" for o in outs]
    sts = [load_resume(r, fp) for r, fp in zip(resumes, fps)]
    if all(st is not None for st in sts) and len({(st["epoch"], st["batch"], st["step"]) for st in sts}) == 1:
        for i, st in enumerate(sts):
            if S == 1:
                model.load_state_dict(st["model"])
            else:
                model.load_single_state_dict(i, st["model"])
            trainer.gens[i].set_state(st["gen"])
            trainer.aug_gens[i].set_state(st["aug_gen"])
            history[i], probes[i] = st["history"], st["probes"]
        trainer.opt.load_state_dict(sts[0]["opt"] if S == 1 else _group_opt_state([st["opt"] for st in sts], model))
        st = sts[0]
        epoch, batch_idx, step = st["epoch"], st["batch"], st["step"]
        sums = {k: torch.stack([s_["sums"][k] for s_ in sts]) for k in st["sums"]}
        done_seconds, epoch_done_seconds = st.get("elapsed_seconds", 0.0), st.get("epoch_elapsed_seconds", 0.0)
        resumed_at = [*st.get("resumed_at", []), int(step)]
        log.info("resuming from %s at epoch %d, batch %d (step %d)", ", ".join(map(str, resumes)), epoch, batch_idx, step)
    elif any(st is not None for st in sts):
        log.warning("ignoring the resume points of %s: the group's seeds stopped at different points", name)
    if step == 0:  # a fresh run: snapshots of an earlier run must not join this run's series
        for o in outs:
            shutil.rmtree(o / "checkpoints", ignore_errors=True)

    runs = [f"{spec.dataset}/{spec.method}/s{sd}" for sd in seeds]
    watch = LossWatch(device, S)
    shapes = [p.shape for p in singles[0].parameters()]  # the grouped model keeps the single model's order

    def seed_state(i: int) -> dict:
        return model.state_dict() if S == 1 else model.single_state_dict(i)

    def save_state(checked: bool = False):  # only a finite state becomes a resume point: a diverged run keeps its last
        if not checked:                      # good one
            watch.check(runs, trainer.nonfinite, resumes)
        now = time.time()  # the seconds so far go with the state: a resumed run adds them
        opt_sd = trainer.opt.state_dict()
        for i in range(S):
            save_resume(resumes[i], {
                "fingerprint": fps[i], "model": seed_state(i), "opt": _opt_state(opt_sd, shapes, None if S == 1 else i),
                "gen": trainer.gens[i].get_state(), "aug_gen": trainer.aug_gens[i].get_state(), "epoch": epoch,
                "batch": batch_idx, "step": step, "history": history[i], "probes": probes[i],
                "sums": {k: v[i] for k, v in sums.items()}, "resumed_at": resumed_at,
                "elapsed_seconds": done_seconds + now - start, "epoch_elapsed_seconds": epoch_done_seconds + now - t0})

    def save_models(path_of, extra):
        for i in range(S):
            single = singles[i]
            if S > 1:
                single.load_state_dict(model.single_state_dict(i))
            save_model(path_of(i), model if S == 1 else single, spec.model, data.shape, extra(i))

    every = tcfg["checkpoint_every"]
    kept = set(tcfg.get("snapshot_steps") or []) if spec.snapshots else set()  # snapshots besides every's multiples
    per_epoch = min(n, n_batches * bs)
    bar = tqdm(total=S * spec.epochs * per_epoch, initial=S * min(spec.epochs * per_epoch, epoch * per_epoch + batch_idx * bs),
               unit="img", unit_scale=True, desc=name, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10)
    bar.update(0)
    start = t0 = time.time()
    stop = _StopSignals()  # SLURM preemption or time limit: save resume.pt, exit, and continue from it when requeued
    try:
        while epoch < spec.epochs:
            perms = [torch.randperm(n, generator=torch.Generator().manual_seed(sd * 100_003 + epoch)).to(device)
                     for sd in seeds]  # each seed's own data order
            t0 = time.time()
            while batch_idx < n_batches:
                idx = torch.cat([p[batch_idx * bs:(batch_idx + 1) * bs] for p in perms]) if S > 1 \
                    else perms[0][batch_idx * bs:(batch_idx + 1) * bs]
                terms = trainer.step(to_float(train_x[idx]), train_y[idx])
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v  # tensors of S values: no device sync per step
                batch_idx += 1
                step += 1
                watch.update(terms["loss"], step)
                bar.update(len(idx))
                if (every and step % every == 0) or step in kept:
                    watch.check(runs, trainer.nonfinite, resumes)  # before the snapshot and the resume point
                    if spec.snapshots:
                        save_models(lambda i: outs[i] / "checkpoints" / f"step{step:07d}.pt", lambda i: {"step": step})
                    save_state(checked=True)
                elif step % LossWatch.EVERY == 0:
                    watch.check(runs, trainer.nonfinite, resumes)
                if stop.signum is not None:
                    save_state()
                    log.warning("signal %d at step %d: saved %s; exiting, a rerun of this job resumes from it",
                                stop.signum, step, ", ".join(map(str, resumes)))
                    sys.exit(128 + stop.signum)
            epoch_time = epoch_done_seconds + time.time() - t0
            watch.check(runs, trainer.nonfinite, resumes)
            for i, probe in enumerate(trainer.probe(probe_x, probe_y, max(bs, 256), [sd + 7919 for sd in seeds])):
                row = {"epoch": epoch + 1, "step": step, "epoch_seconds": round(epoch_time, 3),
                       **{f"train_{k}": float(v[i]) / max(1, n_batches) for k, v in sums.items()},
                       **{k: float(probe[v].mean()) if n_probe else float("nan") for k, v in PROBE_MEANS.items()}}
                history[i].append(row)
                probes[i].append({k: torch.from_numpy(v) for k, v in probe.items()})
                log.info("epoch %d/%d%s: %s", epoch + 1, spec.epochs, f" seed {seeds[i]}" if S > 1 else "",
                         " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
            epoch, batch_idx, sums = epoch + 1, 0, {}
            epoch_done_seconds, t0 = 0.0, time.time()
            save_state(checked=True)  # checked before the probe, and no step since
    finally:  # the bar's line ends before any error line
        stop.restore()
        bar.close()

    watch.check(runs, trainer.nonfinite, resumes)  # a run of zero steps left, or of no full epoch, gets checked too
    # Final artefacts of each seed: each written atomically; model.pt last, since it marks the run as finished.
    metas = []
    for i, (sp, out) in enumerate(zip(specs, outs)):
        with atomic_path(out / "history.csv") as tmp:
            pd.DataFrame(history[i]).to_csv(tmp, index=False)
        frames = [pd.DataFrame({"epoch": e + 1, "sample": np.arange(n_probe), **{k: v.numpy() for k, v in p.items()}})
                  for e, p in enumerate(probes[i])]
        with atomic_path(out / "probe.parquet") as tmp:
            pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
        meta = provenance(str(device), seed=sp.seed, profile=cfg["profile"], spec=dataclasses.asdict(sp),
                          training=tcfg, data_manifest=data.manifest["sha256"], steps=step, group=seeds,
                          **({} if train_samples is None else {"train_samples": len(train_x)}),
                          train_seconds=round(done_seconds + time.time() - start, 2),
                          resumed_at=resumed_at,
                          final=history[i][-1] if history[i] else {}, code_hash=code_hash)
        write_json(out / "run.json", meta)
        metas.append(meta)
    save_models(lambda i: outs[i] / "model.pt", lambda i: {"spec": json.dumps(dataclasses.asdict(specs[i]))})
    for r in resumes:
        r.unlink(missing_ok=True)
    return metas[0] if single else metas
