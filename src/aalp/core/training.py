"""One training loop for every method (docs/method.md#training-step): the method only chooses the batch (clean, adversarial or both),
the objective and whether Guided Dropout masks the logits layer's input.

Outputs of a run folder: model.pt (final weights), history.csv (per-epoch probe metrics),
probe.parquet (per-sample probe records per epoch), run.json (seed, params, code version, device),
checkpoints/step<N>.pt every training.checkpoint_every steps for the runs of training.checkpoint_runs.
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

from . import losses, models
from ..artifacts import atomic_path, provenance, write_json
from .checkpoints import load_model, load_resume, save_model, save_resume  # noqa: F401 (load_model: re-exported)
from .divergence import Diverged, LossWatch  # noqa: F401 (Diverged: re-exported)
from .attacks import autocast, eval_mode, pgd
from ..config import RunSpec
from .data import load_prepared, to_float

log = logging.getLogger(__name__)
PROBE_COLUMNS = ("clean_correct", "adv_correct", "clean_conf", "adv_conf", "clean_ce", "adv_ce", "alp")
# history.csv's probe columns: the mean over the probe images of PROBE_COLUMNS' per-image values
PROBE_MEANS = {"probe_clean_acc": "clean_correct", "probe_adv_acc": "adv_correct", "probe_clean_loss": "clean_ce",
               "probe_adv_loss": "adv_ce", "probe_alp": "alp"}


def select_device(pref: str = "auto") -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("training.device = cuda but no CUDA device is available")
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(pref)


# ----------------------------------------------------------------------------- augmentation
AUGMENT_PAD = 4


def crop_at(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, pad: int = AUGMENT_PAD) -> torch.Tensor:
    """Sample i of x zero-padded by `pad` pixels, then cut at offset (oy[i], ox[i]) in 0..2*pad: the
    original H x W window is offset (pad, pad)."""
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=x.device)  # B x H
    cols = ox[:, None] + torch.arange(w, device=x.device)  # B x W
    idx = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def augment(x: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Random crop with 4-pixel zero padding (`crop`), plus a horizontal flip with probability 1/2
    (`crop_flip`), per sample, drawn from `gen` (docs/method.md#data-augmentation). Shape, value range
    and sample order are kept, so labels stay aligned."""
    if kind == "none":
        return x
    off = torch.randint(0, 2 * AUGMENT_PAD + 1, (2, len(x)), generator=gen, device=x.device)
    x = crop_at(x, off[0], off[1])
    if kind == "crop_flip":
        flip = torch.rand(len(x), generator=gen, device=x.device) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


# ----------------------------------------------------------------------------- one step
class Trainer:
    """Holds the model, optimiser and attack RNG of a run and performs its training steps."""

    def __init__(self, spec: RunSpec, model: models.Classifier, device: torch.device, amp: bool = False,
                 channels_last: bool = False, fused_adam: bool = False, compile: str = "none"):
        self.spec, self.model, self.device, self.amp = spec, model, device, amp
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(device=device, memory_format=self.memory_format)
        # fused=True: one kernel for the whole update; None keeps PyTorch's default (foreach on CUDA)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=spec.lr, fused=True if fused_adam else None)
        if compile != "none":  # the body only: its state_dict keys stay those of the plain model
            self.model.body.compile(mode=None if compile == "default" else compile)
        self.gen = torch.Generator(device=device).manual_seed(spec.seed)
        self.aug_gen = torch.Generator(device=device).manual_seed(spec.seed + 1_000_003)  # own stream: attacks unchanged

    def attack(self, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", train_mode: bool = False) -> torch.Tensor:
        a = self.spec.attack
        return pgd(self.model, x, y, eps=a.eps, step=a.step, steps=a.steps, random_start=a.random_start,
                   loss=loss, generator=self.gen, amp=self.amp, train_mode=train_mode)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The training batch of the objective and how many clean samples lead it."""
        kind = self.spec.objective
        if kind == "raw":
            return x, len(x)
        train_mode = self.spec.attack_mode == "train"
        if kind == "adv":
            return self.attack(x, y, train_mode=train_mode), 0
        x_adv = self.attack(x, y, loss="kl" if kind == "trades" else "ce", train_mode=train_mode)
        return torch.cat([x, x_adv]), len(x)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        s = self.spec
        x = augment(x, s.augment, self.aug_gen)
        xb, n_clean = self.batch(x, y)
        xb = xb.contiguous(memory_format=self.memory_format)
        self.model.train()
        with autocast(self.device, self.amp):
            if s.mixed_batch or n_clean in (0, len(xb)):
                h = self.model.features(xb)
            else:  # clean and adversarial halves through the network separately (own batch-norm statistics)
                h = torch.cat([self.model.features(xb[:n_clean]), self.model.features(xb[n_clean:])])
            if s.guided_dropout:
                cls = losses.classification_loss(s.objective, self.model.classifier(h), y, n_clean,
                                                 clean_only=s.gd_mask_source == "clean")
                (g,) = torch.autograd.grad(cls, h, retain_graph=True)
                mask = losses.guided_dropout_mask(losses.contributions(h.detach().float(), g.float()), s.gd_rescale)
                h = h * mask.to(h.dtype)
            logits = self.model.classifier(h)
        loss, terms = losses.objective(s.objective, logits, y, n_clean, lam=s.lam, pairing=s.pairing, beta=s.beta,
                                       adaptive=s.adaptive_weight)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.detach(), **terms}

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.model(x.contiguous(memory_format=self.memory_format)).float()

    def probe(self, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int, seed: int) -> dict[str, np.ndarray]:
        """Per-sample clean/adversarial (training attack) confidence, CE and ALP loss on fixed samples."""
        gen_state = self.gen.get_state()
        self.gen.manual_seed(seed)  # the same random starts every epoch
        out = {k: [] for k in PROBE_COLUMNS}
        if len(x_all) == 0:
            return {k: np.zeros(0, dtype=np.float32) for k in PROBE_COLUMNS}
        with eval_mode(self.model):
            for i in range(0, len(x_all), batch_size):
                x, y = to_float(x_all[i:i + batch_size]), y_all[i:i + batch_size]
                lc = self._logits(x)
                la = self._logits(self.attack(x, y))
                out["clean_correct"].append(lc.argmax(1) == y)
                out["adv_correct"].append(la.argmax(1) == y)
                out["clean_conf"].append(losses.true_class_prob(lc, y))
                out["adv_conf"].append(losses.true_class_prob(la, y))
                out["clean_ce"].append(torch.nn.functional.cross_entropy(lc, y, reduction="none"))
                out["adv_ce"].append(torch.nn.functional.cross_entropy(la, y, reduction="none"))
                out["alp"].append(losses.alp_pairing(lc, la, self.spec.pairing))
        self.gen.set_state(gen_state)
        return {k: torch.cat(v).float().cpu().numpy() for k, v in out.items()}


def _fingerprint(spec: RunSpec, manifest: dict, training: dict) -> str:
    return json.dumps({"spec": dataclasses.asdict(spec), "data": manifest["sha256"],
                       "training": {k: training.get(k) for k in ("amp", "channels_last", "checkpoint_every", "probe_size",
                                                                "fused_adam", "compile", "drop_last")}},
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


def train(cfg: dict, spec: RunSpec, out_dir: str | Path, train_samples: int | None = None,
          code_hash: str | None = None) -> dict:
    """Train one (dataset, method, seed) run into out_dir, resuming from out_dir/resume.pt if present.
    train_samples: train on the first N training images only (`bench agree`'s reduced check; the pipeline
    always trains on all of them). code_hash: the digest of the stage's source files, recorded in run.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tcfg = cfg["training"]
    device = select_device(tcfg["device"])
    data = load_prepared(cfg["data"]["dir"], spec.dataset)
    torch.manual_seed(spec.seed)
    model = models.build(spec.model, data.shape, data.manifest["mean"], data.manifest["std"])
    trainer = Trainer(spec, model, device, **speed_options(tcfg))
    fast = [k for k in ("channels_last", "fused_adam", "drop_last") if tcfg.get(k)] + (
        [f"compile={tcfg['compile']}"] if tcfg.get("compile", "none") != "none" else [])
    dtype = ("bf16 autocast" if tcfg["amp"] else "fp32") + ", " + (" ".join(fast) if fast else "plain path")
    log.info("train %s/%s seed %d on %s (%s, %s) | model %s (%d params) | %s", spec.dataset, spec.method, spec.seed,
             device, torch.cuda.get_device_name() if device.type == "cuda" else "cpu", dtype, spec.model,
             models.count_parameters(model), json.dumps(dataclasses.asdict(spec)))

    keep = slice(None) if train_samples is None else slice(0, train_samples)
    train_x = torch.from_numpy(data.train_x[keep]).to(device)
    train_y = torch.from_numpy(data.train_y[keep]).to(device)
    n_probe = min(tcfg["probe_size"], len(data.test_x))
    probe_x = torch.from_numpy(data.test_x[:n_probe]).to(device)
    probe_y = torch.from_numpy(data.test_y[:n_probe]).to(device)
    n, bs = len(train_x), spec.batch_size
    # drop_last: every step the same shape (what CUDA graphs need); the dropped images change every epoch
    n_batches = n // bs if tcfg.get("drop_last") and n >= bs else (n + bs - 1) // bs
    fp = _fingerprint(spec, data.manifest, tcfg) + ("" if train_samples is None else f"|first {train_samples}")

    epoch, batch_idx, step, history, probes, sums = 0, 0, 0, [], [], {}
    done_seconds, epoch_done_seconds = 0.0, 0.0  # seconds of a resumed run's earlier segments: run, current epoch
    resume = out / "resume.pt"
    st = load_resume(resume, fp)
    if st is not None:
        model.load_state_dict(st["model"])
        trainer.opt.load_state_dict(st["opt"])
        trainer.gen.set_state(st["gen"])
        trainer.aug_gen.set_state(st["aug_gen"])
        epoch, batch_idx, step = st["epoch"], st["batch"], st["step"]
        history, probes, sums = st["history"], st["probes"], st["sums"]
        done_seconds, epoch_done_seconds = st.get("elapsed_seconds", 0.0), st.get("epoch_elapsed_seconds", 0.0)
        log.info("resuming from %s at epoch %d, batch %d (step %d)", resume, epoch, batch_idx, step)
    if step == 0:  # a fresh run: snapshots of an earlier run must not join this run's series
        shutil.rmtree(out / "checkpoints", ignore_errors=True)

    run = f"{spec.dataset}/{spec.method}/s{spec.seed}"
    watch = LossWatch(device)

    def save_state():  # only a finite state becomes a resume point: a diverged run keeps its last good one
        watch.check(run, model, resume)
        now = time.time()  # the seconds so far go with the state: a resumed run adds them
        save_resume(resume, {
            "fingerprint": fp, "model": model.state_dict(), "opt": trainer.opt.state_dict(),
            "gen": trainer.gen.get_state(), "aug_gen": trainer.aug_gen.get_state(), "epoch": epoch, "batch": batch_idx,
            "step": step, "history": history, "probes": probes, "sums": sums,
            "elapsed_seconds": done_seconds + now - start, "epoch_elapsed_seconds": epoch_done_seconds + now - t0})

    every = tcfg["checkpoint_every"]
    per_epoch = min(n, n_batches * bs)
    bar = tqdm(total=spec.epochs * per_epoch, initial=min(spec.epochs * per_epoch, epoch * per_epoch + batch_idx * bs),
               unit="img", unit_scale=True,
               desc=f"{spec.dataset}/{spec.method}/s{spec.seed}", file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10)
    bar.update(0)
    start = t0 = time.time()
    stop = _StopSignals()  # SLURM preemption or time limit: save resume.pt, exit, and continue from it when requeued
    try:
        while epoch < spec.epochs:
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(spec.seed * 100_003 + epoch)).to(device)
            t0 = time.time()
            while batch_idx < n_batches:
                idx = perm[batch_idx * bs:(batch_idx + 1) * bs]
                terms = trainer.step(to_float(train_x[idx]), train_y[idx])
                for k, v in terms.items():
                    sums[k] = sums.get(k, 0.0) + v  # tensors: no device sync per step
                batch_idx += 1
                step += 1
                watch.update(terms["loss"], step)
                bar.update(len(idx))
                if every and step % every == 0:
                    watch.check(run, model, resume)
                    if spec.snapshots:
                        save_model(out / "checkpoints" / f"step{step:07d}.pt", model, spec.model, data.shape, {"step": step})
                    save_state()
                elif step % LossWatch.EVERY == 0:
                    watch.check(run, model, resume)
                if stop.signum is not None:
                    save_state()
                    log.warning("signal %d at step %d: saved %s; exiting, a rerun of this job resumes from it",
                                stop.signum, step, resume)
                    sys.exit(128 + stop.signum)
            epoch_time = epoch_done_seconds + time.time() - t0
            watch.check(run, model, resume)
            probe = trainer.probe(probe_x, probe_y, max(bs, 256), seed=spec.seed + 7919)
            row = {"epoch": epoch + 1, "step": step, "epoch_seconds": round(epoch_time, 3),
                   **{f"train_{k}": float(v) / max(1, n_batches) for k, v in sums.items()},
                   **{k: float(probe[v].mean()) if n_probe else float("nan") for k, v in PROBE_MEANS.items()}}
            history.append(row)
            probes.append({k: torch.from_numpy(v) for k, v in probe.items()})
            log.info("epoch %d/%d: %s", epoch + 1, spec.epochs,
                     " ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float)))
            epoch, batch_idx, sums = epoch + 1, 0, {}
            epoch_done_seconds, t0 = 0.0, time.time()
            save_state()
    finally:  # the bar's line ends before any error line
        stop.restore()
        bar.close()

    watch.check(run, model, resume)  # a run of zero steps left, or of no full epoch, gets checked too
    # Final artefacts: each written atomically; model.pt last, since it marks the run as finished.
    with atomic_path(out / "history.csv") as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
    frames = [pd.DataFrame({"epoch": e + 1, "sample": np.arange(n_probe), **{k: v.numpy() for k, v in p.items()}})
              for e, p in enumerate(probes)]
    with atomic_path(out / "probe.parquet") as tmp:
        pd.concat(frames, ignore_index=True).to_parquet(tmp, index=False)
    meta = provenance(str(device), seed=spec.seed, profile=cfg["profile"], spec=dataclasses.asdict(spec),
                      training=tcfg, data_manifest=data.manifest["sha256"], steps=step,
                      **({} if train_samples is None else {"train_samples": len(train_x)}),
                      train_seconds=round(done_seconds + time.time() - start, 2), final=history[-1] if history else {},
                      code_hash=code_hash)
    write_json(out / "run.json", meta)
    save_model(out / "model.pt", model, spec.model, data.shape, {"spec": json.dumps(dataclasses.asdict(spec))})
    resume.unlink(missing_ok=True)
    return meta
