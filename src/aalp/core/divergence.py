"""A training that diverges stops with one line instead of saving NaN weights as a result."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from .checkpoints import nonfinite_parameters


class Diverged(RuntimeError):
    """The training loss or the weights stopped being finite: the run stops with this one-line message."""


class LossWatch:
    """Finds the first step whose training loss is not finite, without a device sync per step: the step number
    and the last finite loss before it are kept on the device and read (one sync) by `check`, which the loop
    calls every EVERY steps, before every resume point or snapshot and before the final artefacts."""

    EVERY = 50

    def __init__(self, device: torch.device):
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.last_finite = torch.full((), float("nan"), device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        ok, fresh = torch.isfinite(loss.detach()), self.first_bad < 0
        self.first_bad = torch.where(fresh & ~ok, step, self.first_bad)
        self.last_finite = torch.where(fresh & ok, loss.detach().float(), self.last_finite)

    def check(self, run: str, model: torch.nn.Module, resume: Path) -> None:
        kept = f"resume point {resume} kept" if resume.exists() else "no resume point was written"
        bad = int(self.first_bad)
        if bad >= 0:
            last = float(self.last_finite)
            before = ("no finite loss before it in this process" if math.isnan(last)
                      else f"last finite loss {last:.4g} at step {bad - 1}")
            raise Diverged(f"train {run}: the training loss is not finite at step {bad} ({before}); stopped, "
                           f"{kept}: lower the learning rate or check the data")
        names = nonfinite_parameters(model)
        if names:
            raise Diverged(f"train {run}: weights not finite ({', '.join(names[:3])}) after finite losses; stopped, "
                           f"{kept}: lower the learning rate or check the data")
