"""One training step for every method (docs/method.md#training-step), for a group of S >= 1 seeds: the method only
chooses the batch (clean, adversarial or both), the objective and whether Guided Dropout masks the logits layer's
input. A single run is a group of one, on the plain model; a group of S runs on `grouped.GroupedClassifier`, whose
inputs and outputs are seed-major (seed s's samples in block s of every batch), so every per-seed quantity (random
starts, augmentation, Guided Dropout's median, the objective) is computed on its own block, from its own generator,
exactly as the seed computes it alone (docs/method.md#seed-groups)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from . import losses
from .attacks import autocast, eval_mode, pgd
from .checkpoints import nonfinite_parameters
from ..config import RunSpec
from .data import to_float

PROBE_COLUMNS = ("clean_correct", "adv_correct", "clean_conf", "adv_conf", "clean_ce", "adv_ce", "alp")
AUGMENT_PAD = 4


# ----------------------------------------------------------------------------- augmentation
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


# ----------------------------------------------------------------------------- seed-major blocks
def blocks(t: torch.Tensor, seeds: int) -> list[torch.Tensor]:
    """The S per-seed blocks of a seed-major tensor (views)."""
    return list(t.chunk(seeds)) if seeds > 1 else [t]


def interleave(a: torch.Tensor, b: torch.Tensor, seeds: int) -> torch.Tensor:
    """Per seed, a's block then b's block: [a_0; b_0; a_1; b_1; ...] (for one seed, cat([a, b]))."""
    if seeds == 1:
        return torch.cat([a, b])
    return torch.stack([a.unflatten(0, (seeds, -1)), b.unflatten(0, (seeds, -1))], 1).flatten(0, 2)


def part(t: torch.Tensor, seeds: int, start: int, stop: int | None) -> torch.Tensor:
    """Rows start:stop of every seed's block, seed-major."""
    return t.unflatten(0, (seeds, -1))[:, start:stop].flatten(0, 1)


# ----------------------------------------------------------------------------- the step
class Trainer:
    """Holds the model (plain for one seed, grouped for several), the optimiser and each seed's attack and
    augmentation generators, and performs the group's training steps."""

    def __init__(self, specs: RunSpec | Sequence[RunSpec], model: torch.nn.Module, device: torch.device,
                 amp: bool = False, channels_last: bool = False, fused_adam: bool = False, compile: str = "none"):
        self.specs = [specs] if isinstance(specs, RunSpec) else list(specs)
        self.spec, self.seeds = self.specs[0], len(self.specs)  # the group shares every hyperparameter but the seed
        self.model, self.device, self.amp = model, device, amp
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model.to(device=device, memory_format=self.memory_format)
        # fused=True: one kernel for the whole update; None keeps PyTorch's default (foreach on CUDA). Adam is
        # elementwise, so one Adam over a group's stacked parameters is one Adam per seed.
        self.opt = torch.optim.Adam(self.model.parameters(), lr=self.spec.lr, fused=True if fused_adam else None)
        if compile != "none":  # the body only: its state_dict keys stay those of the plain model
            self.model.body.compile(mode=None if compile == "default" else compile)
        self.gens = [torch.Generator(device=device).manual_seed(s.seed) for s in self.specs]
        self.aug_gens = [torch.Generator(device=device).manual_seed(s.seed + 1_000_003) for s in self.specs]  # own stream

    @property
    def gen(self) -> torch.Generator | list[torch.Generator]:
        """The attack's generator: one, or one per seed (attacks.draw)."""
        return self.gens[0] if self.seeds == 1 else self.gens

    def attack(self, x: torch.Tensor, y: torch.Tensor, loss: str = "ce", train_mode: bool = False) -> torch.Tensor:
        a = self.spec.attack
        return pgd(self.model, x, y, eps=a.eps, step=a.step, steps=a.steps, random_start=a.random_start,
                   loss=loss, generator=self.gen, amp=self.amp, train_mode=train_mode)

    def batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The training batch of the objective, seed-major, and how many clean samples lead each seed's block."""
        kind, per = self.spec.objective, len(x) // self.seeds
        if kind == "raw":
            return x, per
        train_mode = self.spec.attack_mode == "train"
        if kind == "adv":
            return self.attack(x, y, train_mode=train_mode), 0
        x_adv = self.attack(x, y, loss="kl" if kind == "trades" else "ce", train_mode=train_mode)
        return interleave(x, x_adv, self.seeds), per

    def step(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """One step on the seed-major batch (x, y); returns each term as a tensor of S values (one per seed)."""
        s, S = self.spec, self.seeds
        x = torch.cat([augment(xs, s.augment, g) for xs, g in zip(blocks(x, S), self.aug_gens)]) if S > 1 \
            else augment(x, s.augment, self.aug_gens[0])
        xb, n_clean = self.batch(x, y)
        xb = xb.contiguous(memory_format=self.memory_format)
        per = len(xb) // S
        self.model.train()
        with autocast(self.device, self.amp):
            if s.mixed_batch or n_clean in (0, per):
                h = self.model.features(xb)
            else:  # clean and adversarial halves through the network separately (own batch-norm statistics)
                h = interleave(self.model.features(part(xb, S, 0, n_clean)),
                               self.model.features(part(xb, S, n_clean, None)), S)
            if s.guided_dropout:  # each seed's mask from its own contributions (Eq. 5's mean over its batch)
                lg = self.model.classifier(h)
                cls = sum(losses.classification_loss(s.objective, lb, yb, n_clean, clean_only=s.gd_mask_source == "clean")
                          for lb, yb in zip(blocks(lg, S), blocks(y, S)))
                (g,) = torch.autograd.grad(cls, h, retain_graph=True)
                mask = torch.stack([losses.guided_dropout_mask(losses.contributions(hb.detach().float(), gb.float()),
                                                               s.gd_rescale)
                                    for hb, gb in zip(blocks(h, S), blocks(g, S))])
                h = (h.unflatten(0, (S, -1)) * mask[:, None, :].to(h.dtype)).flatten(0, 1)
            logits = self.model.classifier(h)
        outs = [losses.objective(s.objective, lb, yb, n_clean, lam=s.lam, pairing=s.pairing, beta=s.beta,
                                 adaptive=s.adaptive_weight) for lb, yb in zip(blocks(logits, S), blocks(y, S))]
        loss = outs[0][0] if S == 1 else torch.stack([o[0] for o in outs]).sum()  # seeds share no parameter
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": torch.stack([o[0].detach() for o in outs]),
                **{k: torch.stack([o[1][k] for o in outs]) for k in outs[0][1]}}

    def nonfinite(self) -> list[list[str]]:
        """Each seed's weights that are not finite, named as in its own state_dict (one pass over the group's
        tensors; the per-seed split only when one of them is not finite)."""
        if not nonfinite_parameters(self.model):
            return [[] for _ in range(self.seeds)]
        if self.seeds == 1:
            return [nonfinite_parameters(self.model)]
        return [[k for k, v in self.model.single_state_dict(i).items()
                 if v.is_floating_point() and not bool(torch.isfinite(v).all())] for i in range(self.seeds)]

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.amp):
            return self.model(x.contiguous(memory_format=self.memory_format)).float()

    def probe(self, x_all: torch.Tensor, y_all: torch.Tensor, batch_size: int,
              seeds: int | Sequence[int]) -> list[dict[str, np.ndarray]]:
        """Per seed: per-sample clean/adversarial (training attack) confidence, CE and ALP loss on the same fixed
        samples, the attack's random starts from the seed's probe seed (the same every epoch)."""
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        S = self.seeds
        states = [g.get_state() for g in self.gens]
        for g, sd in zip(self.gens, seeds):
            g.manual_seed(sd)
        out = [{k: [] for k in PROBE_COLUMNS} for _ in range(S)]
        with eval_mode(self.model):
            for i in range(0, len(x_all), batch_size):
                x, y = to_float(x_all[i:i + batch_size]), y_all[i:i + batch_size]
                x, y = (x.repeat(S, 1, 1, 1), y.repeat(S)) if S > 1 else (x, y)
                lc, la = self._logits(x), self._logits(self.attack(x, y))
                cols = {"clean_correct": lc.argmax(1) == y, "adv_correct": la.argmax(1) == y,
                        "clean_conf": losses.true_class_prob(lc, y), "adv_conf": losses.true_class_prob(la, y),
                        "clean_ce": torch.nn.functional.cross_entropy(lc, y, reduction="none"),
                        "adv_ce": torch.nn.functional.cross_entropy(la, y, reduction="none"),
                        "alp": losses.alp_pairing(lc, la, self.spec.pairing)}
                for k, v in cols.items():
                    for o, vb in zip(out, blocks(v, S)):
                        o[k].append(vb)
        for g, st in zip(self.gens, states):
            g.set_state(st)
        empty = np.zeros(0, dtype=np.float32)
        return [{k: torch.cat(v).float().cpu().numpy() if v else empty for k, v in o.items()} for o in out]
