"""The evaluation's checks (docs/method.md#gradient-masking-checks and #collapse-checks): flags that fire on the
signatures of gradient masking, catastrophic overfitting and a collapsed model, each recorded in metrics.json
(`checks`) beside the accuracies it questions, which stay in every table."""
from __future__ import annotations

import math

import numpy as np

TOLERANCE = 0.5    # percentage points: the floor of every tolerance in the sanity checks
NOISE_SE = 2.0     # standard errors of binomial noise allowed on top of one sample's worth of accuracy
FAR_POINTS = {"pgd": 10.0, "fgsm": 30.0}  # points by which FGSM/PGD must exceed CW/AutoAttack to be "far above"
AUTOATTACK_FLAGS = ("autoattack_above_pgd", "pgd_far_above_autoattack", "fgsm_far_above_autoattack")  # on its subset


def resolution_tolerance(a: float, b: float, n_a: int | None, n_b: int | None, floor: float = TOLERANCE) -> float:
    """The difference in percentage points that chance can explain between two accuracies a and b
    (percent) measured on n_a and n_b samples:

        tol = max(floor, 100 / m + NOISE_SE * 100 * sqrt(p (1 - p) / m)),  m = min(n_a, n_b), p = (a + b) / 200,

    i.e. one sample's worth of accuracy (the resolution) plus NOISE_SE (2) binomial standard errors of an
    accuracy at the pooled rate p. Both accuracies come from attacks on the same samples, whose outcomes
    correlate: for correlation rho >= 1/2 the standard error of their difference is at most that of one
    accuracy, so the rule errs towards not firing. Examples: 53 vs 52 on 100 samples: tol = 1 + 9.99 =
    10.99 points; 50 vs 40 on 1000 samples: tol = 0.1 + 3.15 = 3.25 points. Without sample counts
    (n_a or n_b None): tol = floor."""
    if n_a is None or n_b is None:
        return floor
    m = min(n_a, n_b)
    p = min(max((a + b) / 200.0, 0.0), 1.0)
    return max(floor, 100.0 / m + NOISE_SE * 100.0 * math.sqrt(p * (1.0 - p) / m))


def sanity_checks(acc: dict[str, float], n: int | dict[str, int] | None = None, tol: float = TOLERANCE,
                  far: dict[str, float] | None = None) -> dict[str, bool]:
    """Flags that fire (True) on signatures of gradient masking, from accuracies in percent per attack
    (fgsm, pgd<k>, cw<k>, autoattack). `n` is the number of samples behind each accuracy (one int for
    all, or per attack name); every comparison of two accuracies x > y fires only when x - y exceeds
    resolution_tolerance(x, y, n_x, n_y, floor=tol) (tol alone when n is None). Orderings:
    - pgd_steps_increase: accuracy under PGD-k rises from one k to the next larger k; cw_steps_increase: same for CW-k;
    - pgd_above_fgsm: accuracy under some PGD-k is above FGSM's;
    - autoattack_above_pgd: AutoAttack leaves more accuracy than the strongest PGD/CW (the lowest accuracy).
    Gaps (a weak CE attack fails where a margin loss or AutoAttack succeeds, e.g. a saturated softmax),
    each firing when the gap exceeds both `far` (points; default FAR_POINTS: 10 for PGD, 30 for FGSM,
    whose single step legitimately leaves up to ~20 points more on adversarially trained models) and the tolerance:
    - pgd_far_above_cw / fgsm_far_above_cw: the strongest PGD-k / FGSM above the strongest CW-k;
    - pgd_far_above_autoattack / fgsm_far_above_autoattack: the strongest PGD-k / FGSM above AutoAttack;
    - fgsm_far_above_pgd: FGSM above the strongest PGD-k (margin far['fgsm']): catastrophic overfitting, which
      a set without CW or AutoAttack would otherwise not flag.
    A flag whose attacks are missing from acc is False."""
    far = FAR_POINTS if far is None else far

    def count(k):
        return n.get(k) if isinstance(n, dict) else n

    def above(hi: str, lo: str, margin: float = 0.0) -> bool:  # acc[hi] above acc[lo] beyond noise and margin
        d = acc[hi] - acc[lo]
        return d > max(margin, resolution_tolerance(acc[hi], acc[lo], count(hi), count(lo), floor=tol))

    def series(kind):
        return sorted((k for k in acc if k.startswith(kind) and k[len(kind):].isdigit()),
                      key=lambda k: int(k[len(kind):]))

    def strongest(keys):  # the attack leaving the lowest accuracy
        return min(keys, key=lambda k: acc[k]) if keys else None

    pgd_keys, cw_keys = series("pgd"), series("cw")
    best_pgd, best_cw = strongest(pgd_keys), strongest(cw_keys)
    best_iter = strongest(pgd_keys + cw_keys)
    fgsm = "fgsm" if "fgsm" in acc else None
    aa = "autoattack" if "autoattack" in acc else None
    flags = {
        "pgd_steps_increase": any(above(b, a) for a, b in zip(pgd_keys, pgd_keys[1:])),
        "cw_steps_increase": any(above(b, a) for a, b in zip(cw_keys, cw_keys[1:])),
        "pgd_above_fgsm": fgsm is not None and any(above(k, fgsm) for k in pgd_keys),
        "autoattack_above_pgd": aa is not None and best_iter is not None and above(aa, best_iter),
    }
    for name, weak, margin in (("pgd", best_pgd, far["pgd"]), ("fgsm", fgsm, far["fgsm"])):
        for strong_name, strong in (("cw", best_cw), ("autoattack", aa)):
            flags[f"{name}_far_above_{strong_name}"] = (weak is not None and strong is not None
                                                        and above(weak, strong, margin))
    # catastrophic overfitting (a model that learnt to defeat one gradient step only): needs no CW or AutoAttack
    flags["fgsm_far_above_pgd"] = fgsm is not None and best_pgd is not None and above(fgsm, best_pgd, far["fgsm"])
    return flags


COLLAPSE_FLAGS = ("clean_at_chance", "predictions_one_class")
ONE_CLASS_SHARE = 50.0  # percent of the clean predictions one class may take before it counts as concentrated


def class_shares(labels, preds) -> dict:
    """What a collapse check reads off the clean predictions (percent): `chance_pct`, the accuracy of the best
    constant classifier (the largest class share among the labels), and the class predicted most often
    (`top_prediction`), its share of the predictions (`top_prediction_pct`) and of the labels
    (`top_prediction_label_pct`). Example: labels 0 0 0 1 1 2 2 2 2 2, predictions all 2: chance 50, class 2
    takes 100 of the predictions and 50 of the labels."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    classes, counts = np.unique(preds, return_counts=True)
    top = int(classes[np.argmax(counts)])
    n = max(1, len(labels))
    return {"chance_pct": round(100.0 * float(np.bincount(labels).max()) / n, 4) if len(labels) else 0.0,
            "top_prediction": top, "top_prediction_pct": round(100.0 * float(counts.max()) / n, 4),
            "top_prediction_label_pct": round(100.0 * float((labels == top).sum()) / n, 4)}


def collapse_checks(clean: float, shares: dict, n: int | None) -> dict[str, bool]:
    """Flags of a collapsed model, which every attack leaves at the same accuracy, so that no check comparing two
    attacks fires and the Consistent share reads 100 %:
    - clean_at_chance: clean accuracy (percent, on n samples) at or under chance, i.e. not above the best constant
      classifier's accuracy by more than resolution_tolerance;
    - predictions_one_class: one class takes at least ONE_CLASS_SHARE (50) percent of the clean predictions and at
      least twice its share of the labels (on balanced ten-class labels: half the predictions for a class that is
      a tenth of the labels)."""
    chance = shares["chance_pct"]
    top, top_labels = shares["top_prediction_pct"], shares["top_prediction_label_pct"]
    return {"clean_at_chance": bool(clean - chance <= resolution_tolerance(clean, chance, n, n)),
            "predictions_one_class": bool(top >= ONE_CLASS_SHARE and top >= 2 * top_labels)}
