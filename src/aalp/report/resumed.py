"""Which runs were stopped and resumed, so that the front page says "train s is a lower bound" for those runs
only, and not for a set none of whose runs resumed.

A run resumed from its resume.pt records the steps it resumed at in run.json (`resumed_at`, written since
training recorded it). A run trained before then carries no such record; its history.csv still shows a resume
that lost time: before 2026-12-02 a resume point carried no seconds, so such a run's train_seconds counts its
last segment only, less than the seconds its epochs (history.csv's epoch_seconds, carried across the resume)
add up to. A run with neither sign is taken as trained in one go."""
from __future__ import annotations

import pandas as pd

from .. import config as C
from ..artifacts import read_json
from ..layout import run_dir

SLACK = 0.99  # a run's epochs add up to at most its train_seconds (probing and saving add to it): 1% for rounding


def resumed_note(run: dict, epoch_seconds: list[float] | None = None) -> str | None:
    """Why this run's train_seconds is a lower bound (it was resumed), or None: `run` is run.json's content,
    epoch_seconds history.csv's column (None where the run has no history)."""
    steps = run.get("resumed_at") or []
    if steps:
        return "resumed at step " + ", ".join(f"{int(s):,}" for s in steps)
    total = sum(float(s) for s in (epoch_seconds or []) if s == s)
    if total and float(run["train_seconds"]) < SLACK * total:
        return (f"resumed: its epochs took {total:,.0f} s, its record counts {float(run['train_seconds']):,.0f} s "
                "(the last segment)")
    return None


def resumed_runs(cfg: dict) -> dict[tuple[str, str, int], str]:
    """{(dataset, method, seed): resumed_note} of every run of the set that was resumed (run.json, history.csv
    in its run folder, relative to the working directory); empty when none was."""
    out = {}
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        history = rd / "history.csv"
        seconds = None
        if history.is_file():
            h = pd.read_csv(history)
            seconds = h["epoch_seconds"].tolist() if "epoch_seconds" in h else None
        note = resumed_note(read_json(rd / "run.json"), seconds)
        if note:
            out[(d, m, s)] = note
    return out
