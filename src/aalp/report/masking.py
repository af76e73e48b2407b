"""The evaluation's checks as a reader reads them, in one text that the front page and the Table 2 page both
show: each fired flag with the accuracies it compares, sorted into three kinds (a collapsed model; a weak
attack, masked gradients or catastrophic overfitting; a short PGD explained by its reach), and every attack's
accuracy on the test samples AutoAttack ran on, so that AutoAttack is only ever compared with PGD and CW
measured on the same images.

Written by the Table 2 item (tables/table2_checks.csv, tables/autoattack_subset.csv); read by the pages.
"""
from __future__ import annotations

import pandas as pd

from .. import config as C
from ..core.checks import AUTOATTACK_FLAGS, COLLAPSE_FLAGS
from .labels import attack_name

FLAG_TEXT = {"pgd_above_fgsm": "PGD accuracy above FGSM", "autoattack_above_pgd": "AutoAttack accuracy above PGD",
             "cw_steps_increase": "CW accuracy rises with more steps", "pgd_steps_increase": "PGD accuracy rises with more steps",
             "pgd_far_above_cw": "PGD accuracy far above CW (CE gradients masked?)",
             "fgsm_far_above_cw": "FGSM accuracy far above CW (CE gradients masked?)",
             "pgd_far_above_autoattack": "PGD accuracy far above AutoAttack (gradient masking?)",
             "fgsm_far_above_autoattack": "FGSM accuracy far above AutoAttack (gradient masking?)",
             "fgsm_far_above_pgd": "FGSM accuracy far above PGD (catastrophic overfitting?)",
             "clean_at_chance": "clean accuracy at or under chance (a collapsed model: every attack leaves the same)",
             "predictions_one_class": "clean predictions concentrated on one class (a collapsed model?)"}
KINDS = ("collapsed", "warn", "explained")  # the order the pages list them in
KIND_TEXT = {  # the heading of each kind, on the front page and the Table 2 page alike
    "collapsed": ("Collapsed models: these runs predict (almost) one class, so every attack leaves them the same accuracy "
                  "and no masking check can fire. Their rows stay in every table, but measure no robustness"),
    "warn": ("Checks that fired and point to a weak attack, masked gradients or catastrophic overfitting, each with the "
             "accuracies it compares (where FGSM or PGD stays far above AutoAttack on AutoAttack's images, their "
             "accuracies overstate robustness: AutoAttack's is the one to trust)"),
    "explained": "Checks that fired but are no sign of masking, each with the accuracies it compares and why",
}


def _series(acc: dict, kind: str) -> list[str]:
    return sorted((k for k in acc if k.startswith(kind) and k[len(kind):].isdigit()), key=lambda k: int(k[len(kind):]))


def _strongest(acc: dict, keys: list[str]) -> str | None:
    return min(keys, key=lambda k: acc[k]) if keys else None


def _pair(acc: dict, hi: str | None, lo: str | None) -> str:
    if hi is None or lo is None:
        return ""
    return f"{attack_name(hi)} {acc[hi]:.1f} against {attack_name(lo)} {acc[lo]:.1f}"


def compared(check: str, acc: dict[str, float], shares: dict | None = None) -> str:
    """The accuracies (percent) a check compares, as sanity_checks and collapse_checks compare them: e.g.
    'PGD-100 52.1 against AutoAttack 38.6', 'PGD-10 38.2, PGD-20 0.9 against FGSM 1.9', 'PGD-10 30.1, PGD-20
    32.4, PGD-40 31.0'. For the AutoAttack flags `acc` must hold the accuracies on AutoAttack's own samples."""
    pgd, cw = _series(acc, "pgd"), _series(acc, "cw")
    if check in ("pgd_steps_increase", "cw_steps_increase"):
        return ", ".join(f"{attack_name(k)} {acc[k]:.1f}" for k in (pgd if check.startswith("pgd") else cw))
    if check == "pgd_above_fgsm" and "fgsm" in acc:
        above = [k for k in pgd if acc[k] > acc["fgsm"]]
        return ", ".join(f"{attack_name(k)} {acc[k]:.1f}" for k in above) + f" against FGSM {acc['fgsm']:.1f}"
    if check == "autoattack_above_pgd" and "autoattack" in acc:
        return _pair(acc, "autoattack", _strongest(acc, pgd + cw))
    if check in ("clean_at_chance", "predictions_one_class") and shares:
        if check == "clean_at_chance":
            return f"clean {acc.get('clean', float('nan')):.1f} against chance {shares['chance_pct']:.1f}"
        return (f"class {shares['top_prediction']} takes {shares['top_prediction_pct']:.1f}% of the predictions and "
                f"{shares['top_prediction_label_pct']:.1f}% of the labels")
    weak, _, strong = check.partition("_far_above_")
    pick = {"pgd": _strongest(acc, pgd), "cw": _strongest(acc, cw), "fgsm": "fgsm" if "fgsm" in acc else None,
            "autoattack": "autoattack" if "autoattack" in acc else None}
    return _pair(acc, pick.get(weak), pick.get(strong))


def short_pgd_note(eps: float, step, acc: dict[str, float]) -> str:
    """For a fired pgd_above_fgsm whose PGD-k above FGSM all travel less than eps (k · step < eps, with the
    evaluation's step of each k: `step` a number, the same for every k, or a function of k, config.eval_step):
    why that is no sign of masking. PGD-k moves at most k · step from its random start, while FGSM's one step puts
    every pixel at ±eps, so a short PGD can leave more accuracy than FGSM on a model that large perturbations
    break. '' otherwise."""
    if "fgsm" not in acc:
        return ""
    step_of = step if callable(step) else lambda k: step
    above = [(k, step_of(k)) for m in _series(acc, "pgd") if acc[m] > acc["fgsm"] for k in [int(m[3:])]]
    if not above or any(k * s >= eps for k, s in above):
        return ""
    reach = max(k * s for k, s in above)
    each = {s for _, s in above}
    how = f"k · {each.pop():g}" if len(each) == 1 else "k times its step"
    return (f"PGD-k travels at most {how} ≤ {reach:g} from its random start, less than eps {eps:g}, while "
            "FGSM's one step moves every pixel by eps: not a sign of masking")


def check_rows(cfg: dict, d: str, m: str, s: int, met: dict, subset: dict[str, float]) -> list[dict]:
    """Every check of one run (metrics.json `met`): dataset, method, seed, check, fired, kind and text (the
    fired ones: KINDS and 'FLAG_TEXT: the accuracies compared[; why no sign of masking]'). subset: the run's
    accuracies on AutoAttack's samples (autoattack_subset), which the AutoAttack flags compare."""
    eps = float(cfg["experiments"][d]["attack"]["eps"])
    rows = []
    for check, fired in met["checks"].items():
        kind = text = ""
        if fired:
            acc = subset if check in AUTOATTACK_FLAGS and subset else met["accuracy"]
            why = compared(check, acc, met.get("class_shares"))
            note = (short_pgd_note(eps, lambda k: C.eval_step(cfg, d, k), acc) if check == "pgd_above_fgsm" else "")
            kind = "collapsed" if check in COLLAPSE_FLAGS else "explained" if note else "warn"
            where = f" on the first {met['n_samples_autoattack']:,} test images" if check in AUTOATTACK_FLAGS else ""
            text = FLAG_TEXT.get(check, check) + (f": {why}{where}" if why else "") + (f"; {note}" if note else "")
        rows.append({"dataset": d, "method": m, "seed": s, "check": check, "fired": bool(fired), "kind": kind,
                     "text": text})
    return rows


def autoattack_subset(records: pd.DataFrame, n_aa: int, metrics: list[str]) -> dict[str, float]:
    """Accuracy (percent) of each metric on the first n_aa test samples, the ones AutoAttack ran on."""
    sub = records[records["sample"] < n_aa]
    return {a: 100.0 * float((sub[f"{a}_pred"] == sub.label).mean()) for a in metrics if f"{a}_pred" in sub}


def fired_lists(checks: pd.DataFrame) -> dict[str, list[str]]:
    """The fired checks of table2_checks.csv, one line per run and check ('d/m seed s: text'), split by kind."""
    out: dict[str, list[str]] = {k: [] for k in KINDS}
    if len(checks) and "kind" in checks:
        for r in checks[checks.fired.astype(bool)].itertuples():
            out[r.kind if r.kind in out else "warn"].append(f"{r.dataset}/{r.method} seed {r.seed}: {r.text}")
    return out


def autoattack_gaps(subset: pd.DataFrame) -> list[dict]:
    """Per (dataset, method) with AutoAttack: the strongest PGD-k on the same images (the one leaving the lowest
    mean accuracy there), and per seed AutoAttack minus it (points): {dataset, method, n, pgd, gaps, pgd_values,
    aa_values}."""
    out = []
    if subset.empty:
        return out
    for (d, m), g in subset.groupby(["dataset", "method"], sort=False):
        wide = g.pivot(index="seed", columns="metric", values="value")
        pgd = [c for c in wide.columns if c.startswith("pgd") and c[3:].isdigit()]
        if "autoattack" not in wide or not pgd:
            continue
        best = min(pgd, key=lambda c: wide[c].mean())
        out.append({"dataset": d, "method": m, "n": int(g.n_samples.max()), "pgd": best,
                    "gaps": (wide["autoattack"] - wide[best]).tolist(), "pgd_values": wide[best].tolist(),
                    "aa_values": wide["autoattack"].tolist()})
    return out
