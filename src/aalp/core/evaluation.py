"""Attack evaluation of one trained model: per-sample records (parquet) and a metrics JSON.

records.parquet has one row per test sample: label, clean prediction and true-class confidence, and
for each attack A (the evaluation attacks plus `train`, the method's training attack, which defines
the Consistent / Inconsistent sets): A_pred, A_conf, A_ce and A_alp (ALP loss against the clean logits),
and autoattack_by: the AutoAttack component that first flipped the sample ('clean' if misclassified
clean, '' if robust or beyond AutoAttack's subset). metrics.json: accuracies (percent), the Consistent
share, the gradient-masking `checks` and `autoattack_by` (samples of the subset per component).
The PGD-k attacks of one step are read off one PGD trajectory of the largest k at step k, the CW-k off another;
each PGD-k's and CW-k's step is config.eval_step's (evaluation.step_rule, docs/method.md#evaluation-step).
Definitions: docs/method.md#records, #consistency-sets and #gradient-masking-checks.
An evaluation resumes: after every batch eval/resume.pt holds the records so far and the attack generators'
states, so a rerun after an interruption continues with the next batch and writes the same records as an
uninterrupted run (unless the model, parameters or code changed: then it starts over).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .. import config as C
from ..artifacts import atomic_path, provenance, write_json
from .attacks import (AUTOATTACK_COMPONENTS, SHARED_KINDS, EvalAttack, attack_groups, autoattack, autocast, into_ball, pgd,
                      run_shared, with_steps)
from .checks import AUTOATTACK_FLAGS, class_shares, collapse_checks, resolution_tolerance, sanity_checks  # noqa: F401 (re-exported)
from .data import load_prepared, to_float
from .sets import consistency_sets  # noqa: F401  (re-exported: the sets are defined on records)
from .losses import alp_pairing, true_class_prob
from . import grouped
from .step import blocks
from .checkpoints import load_model, load_resume, save_resume as write_resume
from .training import select_device

log = logging.getLogger(__name__)
def _attack_seed(base: int, name: str) -> int:
    return base * 1_000_003 + zlib.crc32(name.encode())


def _group_label(members: list[EvalAttack]) -> str:
    """How the log and progress bar name a group: 'pgd10, pgd20 (one pgd20 trajectory)' or the attack."""
    if len(members) == 1:
        return members[0].name
    top = max(members, key=lambda a: a.steps)
    return f"{', '.join(a.name for a in members)} (one {top.name} trajectory)"


def _finite_logits(logits: torch.Tensor, run: str, where: str) -> None:
    """A model whose logits overflow has no accuracy: argmax over NaN picks class 0, which would count as a
    prediction under every attack. One line instead."""
    if not bool(torch.isfinite(logits).all()):
        bad = int((~torch.isfinite(logits)).any(1).sum())
        raise RuntimeError(f"{run}: the model's logits are not finite for {bad} of {len(logits)} inputs ({where}); "
                           "its weights are finite, so the forward pass overflows: the model is not usable")


def _fingerprint(model_path: Path, ecfg: dict, *parts) -> str:
    """What an evaluation's resume.pt must match to be continued: the model file's bytes, the evaluation
    parameters and the other inputs that decide the records (attack names, sample counts, eps, step, training
    attack, amp, device, code hash)."""
    h = hashlib.sha256(Path(model_path).read_bytes())
    h.update(json.dumps([ecfg, *parts], sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass
class _Run:
    """One seed's share of an evaluation: its model, resume point and what it has recorded so far."""
    seed: int
    run_dir: Path
    model: torch.nn.Module
    fp: str
    gens: dict
    cols: dict
    timings: dict
    aa_by: list = field(default_factory=list)
    out: str = "eval"  # the output folder in run_dir
    extra: dict = field(default_factory=dict)  # written into metrics.json, and into eval.json as `snapshot`

    @property
    def resume(self) -> Path:
        return self.run_dir / self.out / "resume.pt"


def evaluate(cfg: dict, dataset: str, method: str, seed: int | list[int], run_dir: str | Path | list,
             code_hash: str | None = None, *, model_file: str = "model.pt", attacks: list[str] | None = None,
             n_samples: int | None = None, out: str = "eval", extra: dict | None = None) -> dict | list[dict]:
    """Attack the trained model of run_dir with the set's evaluation attacks into run_dir/eval/: records.parquet
    (one row per test sample), metrics.json (accuracies in percent, sanity checks) and eval.json (provenance,
    with code_hash: the digest of the stage's source files). Returns the metrics. With lists of seeds and run
    folders, the seeds' models run as one group (docs/method.md#seed-groups) through FGSM, PGD-k, CW-k and the
    training attack, each seed's random starts from its own generators; AutoAttack runs seed by seed.
    A snapshot's evaluation (cli `evaluate --snapshot`) gives the weights file (model_file) and output folder (out)
    in run_dir, the attacks and the first n_samples test images (all attacked by AutoAttack too) and extra
    ({"step": N}), which metrics.json records (eval.json as "snapshot")."""
    single = isinstance(seed, int)
    seeds, dirs = ([seed], [Path(run_dir)]) if single else (list(seed), [Path(d) for d in run_dir])
    S = len(seeds)
    ecfg = cfg["evaluation"]
    exp = cfg["experiments"][dataset]
    eps, step = exp["attack"]["eps"], exp["attack"]["step"]
    # autoattack_methods applied; each PGD-k and CW-k at its step (docs/method.md#evaluation-step)
    attacks = with_steps(C.eval_attacks(cfg, dataset, method) if attacks is None else attacks,
                         lambda k: C.eval_step(cfg, dataset, k), step)
    steps = {a.name: step if a.step is None else a.step for a in attacks if a.kind in SHARED_KINDS}
    train_atk = C.train_attack(cfg, dataset, C.base_method(cfg, dataset, method))  # a sweep run: its base's
    device = select_device(cfg["training"]["device"])
    # Float32 whatever training.amp: bf16 attacks were to be used only where a test on a trained model shows
    # per-sample agreement with float32 of at least 99.5% under PGD-100 and CW-100, and none does here
    # (this machine has no native bf16). training.amp speeds training only (docs/method.md#speed-options).
    amp = False
    data = load_prepared(cfg["data"]["dir"], dataset)
    limit = ecfg["n_samples"] if n_samples is None else n_samples
    n = len(data.test_x) if limit is None else min(limit, len(data.test_x))
    x_all = torch.from_numpy(data.test_x[:n]).to(device)
    y_all = torch.from_numpy(data.test_y[:n]).to(device)
    n_aa = n if ecfg["autoattack_samples"] is None or n_samples else min(ecfg["autoattack_samples"], n)
    if n_aa < n and n_aa % ecfg["batch_size"]:
        raise ValueError(f"evaluation.autoattack_samples ({n_aa}) must be a multiple of evaluation.batch_size "
                         f"({ecfg['batch_size']})")
    groups = attack_groups(attacks)  # PGD-k of one step share a trajectory, CW-k too (docs/method.md#shared-trajectories)
    labels = {g: _group_label(ms) for g, ms in groups.items()}
    names = [a.name for a in attacks] + ["train"]
    owner = {g: max(ms, key=lambda a: a.steps).name for g, ms in groups.items()} | {"train": "train"}
    runs = []
    for sd, rd in zip(seeds, dirs):
        base = ecfg["seed"] + sd
        # one generator per group: the members of a shared trajectory share its random start
        runs.append(_Run(sd, rd, load_model(rd / model_file, expect_model=exp["model"], expect_shape=data.shape,
                                            device=device),
                         _fingerprint(rd / model_file, ecfg, names, n, n_aa, eps, step, steps, vars(train_atk), amp,
                                      device, code_hash),
                         {g: torch.Generator(device=device).manual_seed(_attack_seed(base, g)) for g in [*groups, "train"]},
                         {k: [] for k in ["label", "clean_pred", "clean_conf",
                                          *(f"{a}_{f}" for a in names for f in ("pred", "conf", "ce", "alp"))]},
                         # attack_seconds: a shared trajectory's time goes to its largest k (what a separate run of it
                         # costs), 0.0 to the other members; a group's attack time is split evenly between its seeds
                         dict.fromkeys(names, 0.0), out=out, extra=dict(extra or {})))
    model = runs[0].model if S == 1 else grouped.stack([r.model for r in runs])
    who = f"{dataset}/{method}/s{','.join(map(str, seeds))}"
    own = ", ".join(f"{a} {s:.4g}" for a, s in steps.items() if s != step)
    log.info("evaluate %s on %s%s: %d test samples, eps %.4g, step %.4g%s, attacks %s (+ training attack %s)",
             who, device, f" as one group of {S}" if S > 1 else "", n, eps, step, f" (own steps: {own})" if own else "",
             ", ".join(labels.values()), train_atk)

    bs = ecfg["batch_size"]
    start = 0
    sts = [load_resume(r.resume, r.fp) for r in runs]
    if all(st is not None for st in sts) and len({st["next"] for st in sts}) == 1:
        for r, st in zip(runs, sts):
            r.aa_by, r.timings = list(st["aa_by"]), dict(st["timings"])
            r.cols = {k: [v.to(device)] for k, v in st["cols"].items()}
            for g, state in st["gens"].items():
                r.gens[g].set_state(state)
        start = sts[0]["next"]
        log.info("resuming %s at sample %d of %d", who, start, n)
    elif any(st is not None for st in sts):
        log.warning("ignoring the resume points of %s: the group's seeds stopped at different samples", who)

    def save_resume(next_sample: int) -> None:
        for r in runs:
            write_resume(r.resume, {"fingerprint": r.fp, "next": next_sample, "aa_by": r.aa_by, "timings": r.timings,
                                    "cols": {k: torch.cat(v).cpu() for k, v in r.cols.items()},
                                    "gens": {g: gen.get_state() for g, gen in r.gens.items()}})

    def gen(g):  # one generator, or each seed's for its block of the group's batch (attacks.draw)
        return runs[0].gens[g] if S == 1 else [r.gens[g] for r in runs]

    def rep(t):  # the test batch once per seed, seed-major
        return t if S == 1 else t.repeat(S, *[1] * (t.dim() - 1))

    def split(t):
        return blocks(t, S)

    def finite(logits, where):
        for r, lb in zip(runs, split(logits)):
            _finite_logits(lb, f"evaluate {dataset}/{method}/s{r.seed}", where)

    def score(group: list[_Run], net, advs: dict, xs, y, lcs, where: str):
        """Records of the attacks' points advs on `net` (seed-major over `group`, around xs; y: the labels of each
        seed's block): each point checked to lie in its ball, projected so that the stated bound holds exactly,
        then classified."""
        for a, x_adv in advs.items():
            radius = train_atk.eps if a == "train" else eps
            if (x_adv - xs).abs().max() > radius + 1e-6:  # more than float32 rounding: a broken attack
                raise RuntimeError(f"attack {a} left the eps ball")
            x_adv = into_ball(x_adv, xs, radius)  # |x_adv - x| <= eps exactly (docs/method.md#evaluation-attacks)
            with torch.no_grad(), autocast(device, amp):
                la = net(x_adv).float()
            for r, lab, lc in zip(group, blocks(la, len(group)), lcs):
                _finite_logits(lab, f"evaluate {dataset}/{method}/s{r.seed}", f"{a} {where}")
                _append(r, a, lab, lc, y)

    for r in runs:
        r.resume.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(range(start, n, bs), desc=f"eval {who}", unit="batch", file=sys.stderr,
               initial=start // bs, total=(n + bs - 1) // bs, mininterval=0.5 if sys.stderr.isatty() else 10)
    try:  # the bar's line ends before any error line
        for i in bar:
            x, y = to_float(x_all[i:i + bs]), y_all[i:i + bs]
            xg, yg = rep(x), rep(y)
            with torch.no_grad(), autocast(device, amp):
                lcg = model(xg).float()
            finite(lcg, f"clean samples {i}-{i + len(y) - 1}")
            lcs = split(lcg)
            for r, lc in zip(runs, lcs):
                r.cols["label"].append(y)
                r.cols["clean_pred"].append(lc.argmax(1))
                r.cols["clean_conf"].append(true_class_prob(lc, y))
            for g in [*groups, "train"]:
                bar.set_postfix_str(labels.get(g, "train"), refresh=False)
                t = time.time()
                if g == "autoattack" and i >= n_aa:  # beyond AutoAttack's subset: no record
                    for r in runs:
                        for f, fill in (("pred", -1), ("conf", float("nan")), ("ce", float("nan")),
                                        ("alp", float("nan"))):
                            r.cols[f"{g}_{f}"].append(torch.full((len(y),), fill, device=device,
                                                                 dtype=torch.long if f == "pred" else torch.float))
                        r.aa_by += [""] * len(y)
                    continue
                if g == "autoattack":  # seed by seed, on each seed's own model
                    for r, lc in zip(runs, lcs):
                        t = time.time()
                        x_adv, by = autoattack(r.model, x, y, eps=eps, seed=_attack_seed(ecfg["seed"] + r.seed, g) % (2**31),
                                               steps=ecfg["autoattack_steps"], queries=ecfg["autoattack_queries"],
                                               return_by=True)
                        r.aa_by += by
                        r.timings[owner[g]] += time.time() - t
                        score([r], r.model, {g: x_adv}, x, y, [lc], f"on samples {i}-{i + len(y) - 1}")
                    continue
                if g == "train":
                    advs = {g: pgd(model, xg, yg, eps=train_atk.eps, step=train_atk.step, steps=train_atk.steps,
                                   random_start=train_atk.random_start, generator=gen(g), amp=amp)}
                elif groups[g][0].kind in SHARED_KINDS:
                    advs = run_shared(groups[g], model, xg, yg, eps=eps, step=step, kappa=ecfg["cw_kappa"],
                                      generator=gen(g), amp=amp)
                else:
                    (atk,) = groups[g]
                    advs = {g: atk.run(model, xg, yg, eps=eps, step=step, kappa=ecfg["cw_kappa"], generator=gen(g),
                                       amp=amp)}
                for r in runs:
                    r.timings[owner[g]] += (time.time() - t) / S
                score(runs, model, advs, xg, y, lcs, f"on samples {i}-{i + len(y) - 1}")
            if i + bs < n:
                save_resume(i + bs)
    finally:
        bar.close()
    metrics = [_finish(r, n, n_aa, names, groups, ecfg, eps, step, steps, train_atk, device, dataset, method, code_hash)
               for r in runs]
    return metrics[0] if single else metrics


def _append(r: _Run, a: str, la: torch.Tensor, lc: torch.Tensor, y: torch.Tensor) -> None:
    r.cols[f"{a}_pred"].append(la.argmax(1))
    r.cols[f"{a}_conf"].append(true_class_prob(la, y))
    r.cols[f"{a}_ce"].append(F.cross_entropy(la, y, reduction="none"))
    r.cols[f"{a}_alp"].append(alp_pairing(lc, la))


def _finish(r: _Run, n, n_aa, names, groups, ecfg, eps, step, steps, train_atk, device, dataset, method,
            code_hash) -> dict:
    """One seed's records.parquet, metrics.json and eval.json from what it recorded; step: the dataset attack's,
    steps: each PGD-k's and CW-k's."""
    seed, out = r.seed, r.run_dir / r.out
    records = pd.DataFrame({k: torch.cat(v).cpu().numpy() for k, v in r.cols.items()})
    records.insert(0, "sample", np.arange(n))
    if "autoattack" in names:  # '' beyond AutoAttack's subset and for robust samples
        records.insert(records.columns.get_loc("autoattack_alp") + 1, "autoattack_by", r.aa_by)
    timings = r.timings

    acc = {"clean": 100.0 * float((records.clean_pred == records.label).mean())}
    for a in names:
        rows = records if a != "autoattack" else records[records["sample"] < n_aa]
        acc[a] = 100.0 * float((rows[f"{a}_pred"] == rows.label).mean())
    # the AutoAttack check compares attacks on AutoAttack's own subset
    subset = records[records["sample"] < n_aa]
    acc_subset = {a: 100.0 * float((subset[f"{a}_pred"] == subset.label).mean()) for a in names if a != "train"}
    sets = consistency_sets(records)
    shares = class_shares(records.label, records.clean_pred)
    metrics = {
        "n_samples": n, "n_samples_autoattack": n_aa if "autoattack" in names else 0,
        "accuracy": {k: round(v, 4) for k, v in acc.items()},
        "consistent_pct_of_clean_correct": round(100.0 * float(sets.eq("consistent").sum()) /
                                                 max(1, int(sets.isin(["consistent", "inconsistent"]).sum())), 4),
        "class_shares": shares,
        "checks": {**sanity_checks({k: v for k, v in acc.items() if k not in ("clean", "train", "autoattack")}, n=n),
                   **{k: v for k, v in sanity_checks(acc_subset, n=n_aa).items() if k in AUTOATTACK_FLAGS},
                   **collapse_checks(acc["clean"], shares, n)},
    }
    if "autoattack" in names:  # how many samples of the subset each component flipped ('robust': none did)
        counts = records.autoattack_by[records["sample"] < n_aa].replace("", "robust").value_counts()
        metrics["autoattack_by"] = {k: int(counts.get(k, 0)) for k in ("clean", *AUTOATTACK_COMPONENTS, "robust")}
    metrics.update(r.extra)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "records.parquet") as tmp:
        records.to_parquet(tmp, index=False)
    write_json(out / "eval.json", provenance(str(device), seed=seed, evaluation=ecfg, eps=eps, step=step, steps=steps,
                                             step_rule=ecfg.get("step_rule", "fixed"),
                                             train_attack=vars(train_atk),
                                             dataset=dataset, method=method,
                                             shared_trajectories={g: [a.name for a in ms] for g, ms in groups.items()
                                                                  if ms[0].kind in SHARED_KINDS},
                                             attack_seconds={k: round(v, 3) for k, v in timings.items()},
                                             code_hash=code_hash, **({"snapshot": r.extra} if r.extra else {})))
    write_json(out / "metrics.json", metrics)
    r.resume.unlink(missing_ok=True)
    fired = [k for k, v in metrics["checks"].items() if v]
    log.info("accuracy %s%s (%s)", " ".join(f"{k}={v:.2f}" for k, v in acc.items()),
             f" | sanity checks fired: {', '.join(fired)}" if fired else "", out)
    return metrics

