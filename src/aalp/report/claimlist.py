"""The paper's claims the report tests, where the paper showed each one, the units of their parts and the
notes that say why a part is shown but not counted. verdicts.py judges them; nothing here reads a file."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .camclaims import CAM_CLAIMS


@dataclass(frozen=True)
class Unit:
    text: str  # what a number of this unit is
    margin: float  # equivalence margin in this unit ([choice]); NaN: equivalence not assessed


ACCURACY_MARGIN = 1.0  # [choice] points of accuracy: "no difference larger than 1 point" (docs/method.md)
ACC = Unit("points of accuracy (%)", ACCURACY_MARGIN)
CONF = Unit("points of true-class probability (%)", math.nan)
LOSS = Unit("loss per sample (nats)", math.nan)
SLOPE = Unit("loss per epoch", math.nan)
N50 = Unit("features (of the D penultimate features)", math.nan)
SHARE = Unit("points of the share of active features (%)", math.nan)
CAM = Unit("fraction of the image's pixels", math.nan)
UNITS = [ACC, CONF, LOSS, SLOPE, N50, SHARE, CAM]
MIN_SLOPE_EPOCHS = 3  # [choice] a slope needs at least this many epochs in the fitted (second) half

BY_CONSTRUCTION_NOTE = ("not counted: the sets are defined by whether the true class wins on x', so an Inconsistent "
                        "sample's true-class probability is at most 50% and a Consistent sample's is the largest "
                        "of all classes; the difference is negative by construction")
AALP_ALP_LOSS_NOTE = ("not counted: AALP multiplies each sample's ALP term by w_i = p(y|x) <= 1, lowering its weight "
                      "by design, so a higher unweighted ALP loss is expected and no evidence against AALP")
CLEAN_CORRECT_NOTE = ("not counted: shown beside the share of all test samples, the reading of the paper's Table 4 "
                      "(the paper's ALP shares lie below its own PGD accuracy; method page, Intervals and verdicts)")
CLEAN_NOTE = ("not counted: clean accuracy, the other side of the trade-off, shown beside the robust accuracy; the "
              "claim is about robustness, so a clean gain or loss is no evidence for or against it")
ORDER_NOTE = ("the paper's ordering COM (RAW) > ADV > ALP in high-contribution features, tested step by step: each "
              "step is counted (AALP − ALP, the last step, is Fig. 7's claim)")
SHARE_NOTE = ("not counted: n50 as a share of the model's active features (c > 0; n50 / active, in percent), shown "
              "beside n50 so that dead features do not decide unseen. n50 carries the verdict: the paper's claim is a "
              "number of features (Figs. 1 and 7 plot the contributions over the layer's features), and n50 counts no "
              "dead feature (a feature with c = 0 holds none of the contribution), while the share divides by a "
              "number of live features that training itself changes, which measures concentration among the live "
              "features, a claim the paper does not make. Where n50 falls and the share does not, the fewer "
              "features come from fewer live features, not from concentration")


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    item: str  # the figure or table page that shows it
    shown: str  # where the paper shows it ("Fig. 1"), or why it does not
    sources: tuple[str, ...] = ()  # the datasets (sources) the paper shows it on; () where its text names none


CLAIMS = [
    Claim("fewer_features", "Robust models have fewer high-contribution features: COM (RAW), ADV and ALP in turn "
          "(n50: features holding half the contribution)", "fig01", "Fig. 1", ("svhn", "cifar10")),
    Claim("cam_shrinks", "Grad-CAM areas shrink with robustness (area above half the CAM maximum, adversarial inputs)",
          "fig02", "Fig. 2"),
    Claim("failed_low_confidence", "ALP's failed (Inconsistent) samples have low adversarial true-class confidence",
          "fig03", "Fig. 3, Table 1", ("mnist", "svhn", "cifar10")),
    Claim("inconsistent_higher_loss", "ALP's failed (Inconsistent) samples have a higher classification loss and ALP "
          "loss under the training attack than its Consistent samples", "table1", "Table 1", ("mnist", "svhn", "cifar10")),
    Claim("alp_loss_diverges", "During ALP training the Inconsistent set's ALP loss rises while the Consistent set's "
          "falls (slope per epoch, second half)", "fig04", "Fig. 4"),
    Claim("lambda_tradeoff", "A larger lambda trades clean accuracy for robustness (largest minus smallest swept value)",
          "fig06", "Fig. 6", ("svhn",)),
    Claim("aalp_fewer_features", "AALP has fewer high-contribution features than ALP (n50)", "fig07", "Fig. 7",
          ("svhn", "cifar10")),
    Claim("gd_helps", "Guided Dropout improves the PGD accuracy of RAW, ADV and ALP", "table3", "Table 3", ("svhn",)),
    Claim("aalp_consistent", "AALP increases the share of Consistent samples", "table4", "Table 4",
          ("mnist", "svhn", "cifar10")),
    Claim("aalp_beats_alp", "AALP beats ALP under every attack of Table 2 (FGSM, PGD-k, CW-k)", "table2", "Table 2",
          ("mnist", "svhn", "cifar10")),
    Claim("aalp_beats_alp_aa", "AALP's gain over ALP survives AutoAttack", "table2",
          "not in the paper: a check added here (the paper ran no AutoAttack)"),
    Claim("aalp_converges", "AALP converges better than ALP (last-epoch probe: adversarial accuracy up; the ALP loss "
          "is shown, not counted)", "fig12", "Fig. 12", ("mnist",)),
    *(Claim(cid, text, item, f"Fig. {int(item[3:])}") for cid, text, item in CAM_CLAIMS),  # Figs. 8-10 (camclaims)
]
PAPER_NAMES = {"mnist": "MNIST", "svhn": "SVHN", "cifar10": "CIFAR-10"}


def paper_showed(claim: Claim) -> str:
    """Where the paper showed a claim, for the verdict table: 'SVHN, CIFAR-10 (Fig. 1)'."""
    if not claim.sources:
        return claim.shown if claim.shown.startswith("not in") else f"{claim.shown}: the paper's text names no dataset"
    return ", ".join(PAPER_NAMES.get(s, s) for s in claim.sources) + f" ({claim.shown})"


def label(method: str) -> str:
    """A method as the report writes it: alp_gd -> 'ALP + GD'."""
    return method.upper().replace("_", " + ")
