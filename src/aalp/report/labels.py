"""Reader names for the report's code names: methods (`alp_gd` -> 'ALP + GD'), attacks (`pgd10` -> 'PGD-10'),
Table 1's metrics (`clean_gt_confidence` -> 'clean true-class confidence (%)') and the figures' claims, with
the scale each is shown at (a confidence or accuracy stored as a fraction is shown in percent: one scale on
every page)."""
from __future__ import annotations

import re

METHODS = {"raw": "RAW", "raw_gd": "RAW + GD", "adv": "ADV", "adv_gd": "ADV + GD", "alp": "ALP", "alp_gd": "ALP + GD",
           "alp_aw": "ALP + AW", "trades": "TRADES", "aalp": "AALP",
           "aalp-alp": "AALP − ALP"}  # the budget curve's claims: the paired difference
PARAMS = {"lambda": "λ", "beta": "β"}
SETS = {"consistent": "Consistent", "inconsistent": "Inconsistent", "clean_wrong": "clean wrong (neither set)"}
ATTACKS = {"clean": "clean", "fgsm": "FGSM", "autoattack": "AutoAttack"}
TABLE1 = {"clean_gt_confidence": "clean true-class confidence (%)",
          "adv_gt_confidence": "adversarial true-class confidence (%)",
          "classification_loss": "classification loss (adversarial cross-entropy)",
          "alp_loss": "ALP loss (Eq. 1)"}

# claim -> (reader name, factor from the stored value to the one shown); '{set}' and '{attack}' filled below
CLAIMS = {
    "n50": ("n50: features holding 50 % of the contribution", 1.0),
    "n90": ("n90: features holding 90 % of the contribution", 1.0),
    "gini": ("Gini coefficient of the contributions", 1.0),
    "active": ("active features (nonzero contribution)", 1.0),
    "cam_area_adv": ("Grad-CAM area, adversarial input (share of pixels above half the peak)", 1.0),
    "cam_on_object_adv": ("Grad-CAM on the object, adversarial input (share of the map's mass)", 1.0),
    "adv_conf_consistent": ("adversarial true-class confidence (%), Consistent", 100.0),
    "adv_conf_inconsistent": ("adversarial true-class confidence (%), Inconsistent", 100.0),
    "alp_slope_consistent": ("ALP-loss slope per epoch, Consistent", 1.0),
    "alp_slope_inconsistent": ("ALP-loss slope per epoch, Inconsistent", 1.0),
    "consistent_pct": ("Consistent share (% of the evaluated samples)", 1.0),
    "consistent_pct_of_clean_correct": ("Consistent share (% of the clean-correct samples)", 1.0),
    "final_probe_alp": ("final probe ALP loss", 1.0),
    "final_probe_clean_acc": ("final probe clean accuracy (%)", 100.0),
    "final_probe_adv_acc": ("final probe adversarial accuracy (%)", 100.0),
}


def method_name(method: str) -> str:
    """'ALP + GD' for alp_gd; a sweep run 'aalp_lambda0p25' reads 'AALP, λ 0.25'; an unknown name stays."""
    if method in METHODS:
        return METHODS[method]
    m = re.fullmatch(r"(.+)_([a-z]+)(\d+(?:p\d+)?)", method)
    if m and m.group(1) in METHODS:
        return f"{METHODS[m.group(1)]}, {PARAMS.get(m.group(2), m.group(2))} {m.group(3).replace('p', '.')}"
    return method


def attack_name(metric: str) -> str:
    """'PGD-10' for pgd10, 'CW-100' for cw100, 'AutoAttack', 'FGSM', 'clean'; an unknown name stays."""
    m = re.fullmatch(r"(pgd|cw)(\d+)", metric)
    if m:
        return f"{m.group(1).upper()}-{m.group(2)}"
    return ATTACKS.get(metric, metric)


def accuracy_name(metric: str) -> str:
    """'clean accuracy (%)', 'PGD-10 accuracy (%)'."""
    return f"{attack_name(metric)} accuracy (%)"


def set_name(s: str) -> str:
    return SETS.get(s, s)


def table1_name(metric: str) -> str:
    return TABLE1.get(metric, metric)


def claim_name(claim: str) -> tuple[str, float]:
    """(reader name, display factor) of a claim of claims/<item>.csv: 'step1200/n50' reads 'step 1200: n50: ...';
    an accuracy claim (Fig. 6's 'pgd10') 'PGD-10 accuracy (%)'; a fraction of confidence or accuracy is shown
    in percent (factor 100)."""
    step = re.fullmatch(r"step(\d+)/(.+)", claim)
    if step:
        name, factor = claim_name(step.group(2))
        return f"step {int(step.group(1)):,}: {name}", factor
    if claim in CLAIMS:
        return CLAIMS[claim]
    if claim == "clean" or attack_name(claim) != claim:
        return accuracy_name(claim), 1.0
    if "/" in claim:  # Table 1's '<set>/<metric>'
        s, metric = claim.split("/", 1)
        return f"{table1_name(metric)}, {set_name(s)}", 1.0
    return claim.replace("_", " "), 1.0
