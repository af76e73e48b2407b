"""What the budget curve (AALP − ALP against the training budget) reads, from the parameters alone: the datasets
whose ALP and AALP keep evaluated snapshots, each point's training step (a final model's: epochs × steps per
epoch, counted as training counts them), and the reference set (report.budget_reference) with its own budget,
training attack and files. budget.py computes the curve; inputs.py declares these files as the item's inputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import config as C
from ..layout import run_dir, snapshot_dir, snapshot_runs

PAIR = ("alp", "aalp")  # the curve is AALP − ALP, paired by seed


def budget_datasets(cfg: dict) -> list[str]:
    """The datasets on which both ALP and AALP have evaluated training snapshots (layout.snapshot_runs)."""
    have = {(d, m) for d, m, _, _ in snapshot_runs(cfg)}
    return [d for d in cfg["experiments"] if all((d, m) in have for m in PAIR)]


def snapshot_steps(cfg: dict, d: str) -> list[int]:
    """The snapshot steps of dataset d, sorted, below the final model's step (a snapshot at the final step is
    the final model, whose point comes from its own records)."""
    last = final_step(cfg, d, "aalp")
    return sorted({n for dd, m, _, n in snapshot_runs(cfg) if dd == d and m in PAIR and n < last})


def snapshot_metrics(cfg: dict, d: str) -> list[Path]:
    """The metrics.json of every ALP and AALP snapshot of dataset d (below the final step)."""
    steps = set(snapshot_steps(cfg, d))
    return [snapshot_dir(dd, m, s, n) / "metrics.json" for dd, m, s, n in snapshot_runs(cfg)
            if dd == d and m in PAIR and n in steps]


def final_step(cfg: dict, d: str, m: str) -> int:
    """The training steps of a final model: epochs × batches per epoch, as core/training.py counts them
    (training.drop_last drops each epoch's last partial batch)."""
    return int(cfg["experiments"][d]["epochs"]) * C.steps_per_epoch(cfg, d)


def training_label(cfg: dict, d: str) -> str:
    """'PGD-40 training': the attack ALP (and AALP) of dataset d train against."""
    steps = C.train_attack(cfg, d, "alp").steps
    return f"PGD-{steps} training" if steps else "FGSM training"


@dataclass(frozen=True)
class Reference:
    name: str  # report.budget_reference as written: 'results/mnist_cpu'
    root: Path  # the same folder relative to the working directory (the item's input paths)
    cfg: dict  # its parameters (params.yaml)
    dataset: str  # its dataset of the same source, with ALP and AALP
    step: int  # its own final step
    training: str  # 'PGD-10 training, results/mnist_cpu'
    records: bool  # every ALP and AALP run has its records.parquet (else: its tables/table2.csv)

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def table2(self) -> Path:
        return self.root / "reports" / "tables" / "table2.csv"

    def seeds(self, m: str) -> list[int]:
        return C.seeds(self.cfg, self.dataset, m)

    def run(self, m: str, s: int) -> Path:
        return self.root / run_dir(self.dataset, m, s)

    def files(self) -> list[Path]:
        """What the curve reads of it: params.yaml, and each run's records and metrics (or table2.csv)."""
        if not self.records:
            return [self.params, self.table2]
        return [self.params] + [self.run(m, s) / "eval" / f for m in PAIR for s in self.seeds(m)
                                for f in ("records.parquet", "metrics.json")]


def reference(cfg: dict, d: str) -> Reference | None:
    """The reference set of dataset d (report.budget_reference; a folder relative to the repository root): its
    dataset of the same source that runs ALP and AALP; None without a reference or without such a dataset."""
    name = (cfg.get("report") or {}).get("budget_reference")
    if not name:
        return None
    root = Path(os.path.relpath(C.REPO_ROOT / name, Path.cwd()))
    ref = C.validate(yaml.safe_load((root / "params.yaml").read_text()), str(root / "params.yaml"))
    src = cfg["datasets"][d]["source"]
    rd = next((x for x, e in ref["experiments"].items()
               if ref["datasets"][x]["source"] == src and all(m in e["methods"] for m in PAIR)), None)
    if rd is None:
        return None
    records = all((root / run_dir(rd, m, s) / "eval" / "records.parquet").is_file()
                  for m in PAIR for s in C.seeds(ref, rd, m))
    return Reference(str(name), root, ref, rd, final_step(ref, rd, "aalp"), f"{training_label(ref, rd)}, {name}",
                     records)
