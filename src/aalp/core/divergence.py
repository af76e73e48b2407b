"""A training that diverges stops with one line instead of saving NaN weights as a result."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import torch


class Diverged(RuntimeError):
    """The training loss or the weights stopped being finite: the run stops with this one-line message."""


class LossWatch:
    """Finds, per seed of a group (S >= 1), the first step whose training loss is not finite, without a device
    sync per step: the step and the last finite loss before it are kept on the device and read (one sync) by
    `check`, which the loop calls every EVERY steps, before every resume point or snapshot and before the final
    artefacts."""

    EVERY = 50

    def __init__(self, device: torch.device, seeds: int = 1):
        self.first_bad = torch.full((seeds,), -1, dtype=torch.long, device=device)
        self.last_finite = torch.full((seeds,), float("nan"), device=device)

    def update(self, loss: torch.Tensor, step: int) -> None:
        """loss: the step's loss of each seed (S values)."""
        loss = loss.detach().float().reshape(self.first_bad.shape)
        ok, fresh = torch.isfinite(loss), self.first_bad < 0
        self.first_bad = torch.where(fresh & ~ok, step, self.first_bad)
        self.last_finite = torch.where(fresh & ok, loss, self.last_finite)

    def check(self, runs: list[str], nonfinite: Callable[[], list[list[str]]], resumes: list[Path]) -> None:
        """runs: each seed's name; nonfinite(): each seed's weights that are not finite; resumes: each seed's
        resume point. Raises Diverged naming the first seed whose loss (or else weights) stopped being finite."""
        bad = self.first_bad.tolist()
        if max(bad) < 0:
            names = nonfinite()
            for run, n, resume in zip(runs, names, resumes):
                if n:
                    raise Diverged(f"train {run}: weights not finite ({', '.join(n[:3])}) after finite losses; "
                                   f"stopped, {_kept(resumes)}: lower the learning rate or check the data")
            return
        i = min((b, i) for i, b in enumerate(bad) if b >= 0)[1]
        last = float(self.last_finite[i])
        before = ("no finite loss before it in this process" if math.isnan(last)
                  else f"last finite loss {last:.4g} at step {bad[i] - 1}")
        raise Diverged(f"train {runs[i]}: the training loss is not finite at step {bad[i]} ({before}); stopped, "
                       f"{_kept(resumes)}: lower the learning rate or check the data")


def _kept(resumes: list[Path]) -> str:
    kept = [str(r) for r in resumes if r.exists()]
    if not kept:
        return "no resume point was written"
    return f"resume point{'s' if len(kept) > 1 else ''} {', '.join(kept)} kept"
