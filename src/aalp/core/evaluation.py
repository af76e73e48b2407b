"""Attack evaluation of one trained model: per-sample records (parquet) and a metrics JSON.

records.parquet has one row per test sample: label, clean prediction and true-class confidence, and
for each attack A (the evaluation attacks plus `train`, the method's training attack, which defines
the Consistent / Inconsistent sets): A_pred, A_conf, A_ce and A_alp (ALP loss against the clean logits).
All PGD-k attacks are read off one PGD trajectory of the largest k at step k, all CW-k off another.
Definitions: docs/method.md#records, #consistency-sets and #gradient-masking-checks.
"""
from __future__ import annotations

import logging
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import config as C
from ..artifacts import atomic_path, provenance, write_json
from .attacks import SHARED_KINDS, EvalAttack, attack_groups, autocast, pgd, run_shared
from .data import load_prepared, to_float
from .sets import consistency_sets  # noqa: F401  (re-exported: the sets are defined on records)
from .losses import alp_pairing, true_class_prob
from .training import load_model, select_device

log = logging.getLogger(__name__)
TOLERANCE = 0.5  # percentage points allowed for noise in the sanity checks


def _attack_seed(base: int, name: str) -> int:
    return base * 1_000_003 + zlib.crc32(name.encode())


def _group_label(members: list[EvalAttack]) -> str:
    """How the log and progress bar name a group: 'pgd10, pgd20 (one pgd20 trajectory)' or the attack."""
    if len(members) == 1:
        return members[0].name
    top = max(members, key=lambda a: a.steps)
    return f"{', '.join(a.name for a in members)} (one {top.name} trajectory)"


def sanity_checks(acc: dict[str, float], tol: float = TOLERANCE) -> dict[str, bool]:
    """Flags that fire (True) on signatures of gradient masking:
    - pgd_steps_increase: accuracy under PGD-k rises with k (beyond tol), same for CW-k;
    - pgd_above_fgsm: accuracy under some PGD-k is above FGSM's;
    - autoattack_above_pgd: AutoAttack leaves more accuracy than the strongest PGD/CW."""
    def series(kind):
        return [acc[k] for k in sorted((k for k in acc if k.startswith(kind) and k[len(kind):].isdigit()),
                                       key=lambda k: int(k[len(kind):]))]
    flags = {}
    pgd_acc, cw_acc = series("pgd"), series("cw")
    flags["pgd_steps_increase"] = any(b > a + tol for a, b in zip(pgd_acc, pgd_acc[1:]))
    flags["cw_steps_increase"] = any(b > a + tol for a, b in zip(cw_acc, cw_acc[1:]))
    flags["pgd_above_fgsm"] = "fgsm" in acc and any(a > acc["fgsm"] + tol for a in pgd_acc)
    iterative = pgd_acc + cw_acc
    flags["autoattack_above_pgd"] = "autoattack" in acc and bool(iterative) and acc["autoattack"] > min(iterative) + tol
    return flags


def evaluate(cfg: dict, dataset: str, method: str, seed: int, run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    ecfg = cfg["evaluation"]
    exp = cfg["experiments"][dataset]
    attacks = [EvalAttack.parse(a) for a in ecfg["attacks"]]
    train_atk = C.train_attack(cfg, dataset, C.base_method(cfg, dataset, method))  # a sweep run: its base's
    device = select_device(cfg["training"]["device"])
    amp = cfg["training"]["amp"]
    data = load_prepared(cfg["data"]["dir"], dataset)
    model = load_model(run_dir / "model.pt", expect_model=exp["model"], expect_shape=data.shape, device=device)
    n = len(data.test_x) if ecfg["n_samples"] is None else min(ecfg["n_samples"], len(data.test_x))
    x_all = torch.from_numpy(data.test_x[:n]).to(device)
    y_all = torch.from_numpy(data.test_y[:n]).to(device)
    eps, step = exp["attack"]["eps"], exp["attack"]["step"]
    n_aa = n if ecfg["autoattack_samples"] is None else min(ecfg["autoattack_samples"], n)
    if n_aa < n and n_aa % ecfg["batch_size"]:
        raise ValueError(f"evaluation.autoattack_samples ({n_aa}) must be a multiple of evaluation.batch_size "
                         f"({ecfg['batch_size']})")
    groups = attack_groups(attacks)  # PGD-k share one trajectory, CW-k another (docs/method.md#shared-trajectories)
    labels = {g: _group_label(ms) for g, ms in groups.items()}
    log.info("evaluate %s/%s seed %d on %s: %d test samples, eps %.4g, step %.4g, attacks %s (+ training attack %s)",
             dataset, method, seed, device, n, eps, step, ", ".join(labels.values()), train_atk)

    cols: dict[str, list] = {"label": [], "clean_pred": [], "clean_conf": []}
    names = [a.name for a in attacks] + ["train"]
    for a in names:
        for f in ("pred", "conf", "ce", "alp"):
            cols[f"{a}_{f}"] = []
    base = ecfg["seed"] + seed
    # one generator per group: the members of a shared trajectory share its random start
    gens = {g: torch.Generator(device=device).manual_seed(_attack_seed(base, g)) for g in [*groups, "train"]}
    # attack_seconds: a shared trajectory's time goes to its largest k (what a separate run of it costs), 0.0 to
    # the other members, so the sum stays the evaluation's attack time
    timings = dict.fromkeys(names, 0.0)
    owner = {g: max(ms, key=lambda a: a.steps).name for g, ms in groups.items()} | {"train": "train"}
    bs = ecfg["batch_size"]
    bar = tqdm(range(0, n, bs), desc=f"eval {dataset}/{method}/s{seed}", unit="batch", file=sys.stderr,
               mininterval=0.5 if sys.stderr.isatty() else 10)
    for i in bar:
        x, y = to_float(x_all[i:i + bs]), y_all[i:i + bs]
        with torch.no_grad(), autocast(device, amp):
            lc = model(x).float()
        cols["label"].append(y)
        cols["clean_pred"].append(lc.argmax(1))
        cols["clean_conf"].append(true_class_prob(lc, y))
        for g in [*groups, "train"]:
            bar.set_postfix_str(labels.get(g, "train"), refresh=False)
            t = time.time()
            if g == "autoattack" and i >= n_aa:  # beyond AutoAttack's subset: no record
                for f, fill in (("pred", -1), ("conf", float("nan")), ("ce", float("nan")), ("alp", float("nan"))):
                    cols[f"{g}_{f}"].append(torch.full((len(y),), fill, device=device,
                                                       dtype=torch.long if f == "pred" else torch.float))
                continue
            if g == "train":
                advs = {g: pgd(model, x, y, eps=train_atk.eps, step=train_atk.step, steps=train_atk.steps,
                               random_start=train_atk.random_start, generator=gens[g], amp=amp)}
            elif g in SHARED_KINDS:
                advs = run_shared(groups[g], model, x, y, eps=eps, step=step, kappa=ecfg["cw_kappa"],
                                  generator=gens[g], amp=amp)
            else:
                (atk,) = groups[g]
                advs = {g: atk.run(model, x, y, eps=eps, step=step, kappa=ecfg["cw_kappa"], generator=gens[g], amp=amp,
                                   seed=_attack_seed(base, g) % (2**31), aa_steps=ecfg["autoattack_steps"],
                                   aa_queries=ecfg["autoattack_queries"])}
            timings[owner[g]] += time.time() - t
            for a, x_adv in advs.items():
                if (x_adv - x).abs().max() > eps + 1e-6 and a != "train":
                    raise RuntimeError(f"attack {a} left the eps ball")
                with torch.no_grad(), autocast(device, amp):
                    la = model(x_adv).float()
                cols[f"{a}_pred"].append(la.argmax(1))
                cols[f"{a}_conf"].append(true_class_prob(la, y))
                cols[f"{a}_ce"].append(F.cross_entropy(la, y, reduction="none"))
                cols[f"{a}_alp"].append(alp_pairing(lc, la))
    records = pd.DataFrame({k: torch.cat(v).cpu().numpy() for k, v in cols.items()})
    records.insert(0, "sample", np.arange(n))

    acc = {"clean": 100.0 * float((records.clean_pred == records.label).mean())}
    for a in names:
        rows = records if a != "autoattack" else records[records["sample"] < n_aa]
        acc[a] = 100.0 * float((rows[f"{a}_pred"] == rows.label).mean())
    # the AutoAttack check compares attacks on AutoAttack's own subset
    subset = records[records["sample"] < n_aa]
    acc_subset = {a: 100.0 * float((subset[f"{a}_pred"] == subset.label).mean()) for a in names if a != "train"}
    sets = consistency_sets(records)
    metrics = {
        "n_samples": n, "n_samples_autoattack": n_aa if "autoattack" in names else 0,
        "accuracy": {k: round(v, 4) for k, v in acc.items()},
        "consistent_pct_of_clean_correct": round(100.0 * float(sets.eq("consistent").sum()) /
                                                 max(1, int(sets.isin(["consistent", "inconsistent"]).sum())), 4),
        "checks": {**sanity_checks({k: v for k, v in acc.items() if k not in ("clean", "train", "autoattack")}),
                   "autoattack_above_pgd": sanity_checks(acc_subset)["autoattack_above_pgd"]},
    }
    out = run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "records.parquet") as tmp:
        records.to_parquet(tmp, index=False)
    write_json(out / "eval.json", provenance(str(device), seed=seed, evaluation=ecfg, eps=eps, step=step,
                                             train_attack=vars(train_atk),
                                             dataset=dataset, method=method,
                                             shared_trajectories={g: [a.name for a in ms] for g, ms in groups.items()
                                                                  if g in SHARED_KINDS},
                                             attack_seconds={k: round(v, 3) for k, v in timings.items()}))
    write_json(out / "metrics.json", metrics)
    fired = [k for k, v in metrics["checks"].items() if v]
    log.info("accuracy %s%s", " ".join(f"{k}={v:.2f}" for k, v in acc.items()),
             f" | sanity checks fired: {', '.join(fired)}" if fired else "")
    return metrics

