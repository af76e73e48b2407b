"""The verdict table (tables/verdicts.csv) on a hand-written report folder: which parts are counted, their
units, smallest detectable differences and margins, and the claim verdicts, against values worked out by
hand. t(0.975, 2) = 4.30265 and t(0.8, 2) = 1.06066, so with 3 seeds half = 2.48414 sd and
mde = 3.09651 sd."""
import copy
import json
import math

import numpy as np
import pandas as pd
import pytest

from aalp.report import stats as S, verdicts as V
from aalp.report.claims import claims_frame
from aalp.report.frontpage import verdict_section
from aalp.report.protocol import paper_params
from aalp.report.scope import scope, undecided

SEEDS = (0, 1, 2)
HALF, MDE = 2.48414, 3.09651  # per unit of sd, 3 seeds

# (item, method, claim): per-seed values
CLAIMS = {
    ("fig01", "raw", "n50"): [100, 110, 120], ("fig01", "adv", "n50"): [50, 62, 70],
    ("fig01", "alp", "n50"): [80, 95, 100],
    ("fig02", "raw", "cam_area_adv"): [0.1, 0.1, 0.1], ("fig02", "adv", "cam_area_adv"): [0.1, 0.12, 0.08],
    ("fig02", "alp", "cam_area_adv"): [0.1, 0.12, 0.08],
    # true-class probabilities as fractions, as figdata writes them
    ("fig03", "alp", "adv_conf_inconsistent"): [0.3, 0.3, 0.3], ("fig03", "alp", "adv_conf_consistent"): [0.8, 0.75, 0.7],
    ("table1", "alp", "consistent/classification_loss"): [0.3, 0.35, 0.4],
    ("table1", "alp", "inconsistent/classification_loss"): [1.3, 1.25, 1.5],
    ("table1", "alp", "consistent/alp_loss"): [0.1, 0.1, 0.15],
    ("table1", "alp", "inconsistent/alp_loss"): [0.15, 0.2, 0.2],
    ("fig04", "alp", "alp_slope_inconsistent"): [0.1, 0.2, 0.3], ("fig04", "alp", "alp_slope_consistent"): [-0.1, -0.2, -0.3],
    ("fig07", "alp", "n50"): [80, 95, 100], ("fig07", "aalp", "n50"): [80, 95, 100],
    ("table4", "alp", "consistent_pct"): [60, 65, 70], ("table4", "aalp", "consistent_pct"): [61, 64, 72],
    ("table4", "alp", "consistent_pct_of_clean_correct"): [80, 82, 84],
    ("table4", "aalp", "consistent_pct_of_clean_correct"): [79, 81.5, 83],
    # history.csv keeps the probe accuracies as fractions
    ("fig12", "alp", "final_probe_adv_acc"): [0.60, 0.62, 0.64], ("fig12", "aalp", "final_probe_adv_acc"): [0.63, 0.66, 0.66],
    ("fig12", "alp", "final_probe_alp"): [0.10, 0.12, 0.15], ("fig12", "aalp", "final_probe_alp"): [0.12, 0.14, 0.18],
    ("fig12", "alp", "final_probe_clean_acc"): [0.90, 0.91, 0.92], ("fig12", "aalp", "final_probe_clean_acc"): [0.91, 0.93, 0.92],
}
TABLE2 = {("alp", "pgd10"): [50, 52, 54], ("aalp", "pgd10"): [50.2, 52, 53.8],  # AALP − ALP: 0.2, 0, -0.2
          ("alp", "cw10"): [40, 41, 42], ("aalp", "cw10"): [40.5, 41, 41.5],  # 0.5, 0, -0.5
          ("alp", "clean"): [98, 98.5, 99], ("aalp", "clean"): [97, 97.2, 97.9]}  # -1, -1.3, -1.1


def cfg_of(epochs=2, source="mnist", methods=("raw", "adv", "alp", "aalp"), attacks=("pgd10", "cw10"), **method_params):
    """The paper set's MNIST settings (root params.yaml) on one dataset 'toy' of `source`, run for `epochs`,
    with `methods`; method_params: {method: overrides of methods.<method>}."""
    paper = copy.deepcopy(paper_params())
    methods_cfg = {m: {**p, **method_params.get(m, {})} for m, p in paper["methods"].items()}
    return {**paper, "datasets": {"toy": {"source": source}}, "methods": methods_cfg,
            "experiments": {"toy": {**paper["experiments"]["mnist"], "epochs": epochs, "methods": list(methods)}},
            "evaluation": {**paper["evaluation"], "attacks": list(attacks)}, "sweeps": []}


def write_report(root, seeds=SEEDS, table2=TABLE2):
    (root / "claims").mkdir(parents=True, exist_ok=True)
    (root / "tables").mkdir(exist_ok=True)
    per_item: dict[str, list[dict]] = {}
    for (item, m, claim), values in CLAIMS.items():
        per_item.setdefault(item, []).extend({"dataset": "toy", "method": m, "claim": claim, "seed": s, "value": v}
                                             for s, v in zip(seeds, values))
    for item, rows in per_item.items():
        claims_frame(rows).to_csv(root / "claims" / f"{item}.csv", index=False)
    rows = [{"dataset": "toy", "method": m, "claim": metric, "seed": s, "value": v}
            for (m, metric), values in table2.items() for s, v in zip(seeds, values)]
    claims_frame(rows).rename(columns={"claim": "metric"}).to_csv(root / "tables" / "table2.csv", index=False)
    return root


@pytest.fixture
def table(tmp_path):
    return V.verdicts(cfg_of(), write_report(tmp_path))


def part(table, claim_id, text):
    rows = table[(table.claim_id == claim_id) & table.part.str.contains(text, regex=False)]
    assert len(rows) == 1, (claim_id, text, list(table[table.claim_id == claim_id].part))
    return rows.iloc[0]


def test_columns_units_mde_and_margin(table):
    assert list(table.columns) == V.COLUMNS
    r = part(table, "aalp_beats_alp", "pgd10")  # 0.2, 0, -0.2: sd 0.2
    assert r.unit == V.ACC.text and r.margin == 1.0
    assert r.half == pytest.approx(0.2 * HALF, abs=1e-4) and r.mde == pytest.approx(0.2 * MDE, abs=1e-4)
    assert r.part_verdict == S.EQUIVALENT  # [-0.497, 0.497] within ±1 point
    cw = part(table, "aalp_beats_alp", "cw10")  # 0.5, 0, -0.5: ±1.242, wider than the margin
    assert cw.half == pytest.approx(0.5 * HALF, abs=1e-4) and cw.part_verdict == S.INCONCLUSIVE
    assert r.verdict == S.INCONCLUSIVE  # one part no difference, one inconclusive
    n50 = part(table, "fewer_features", "n50 ADV − RAW")  # -50, -48, -50: features, no margin
    assert n50.unit == V.N50.text and math.isnan(n50.margin) and n50.part_verdict == S.HOLDS
    cam = part(table, "cam_shrinks", "ADV − RAW")  # 0, 0.02, -0.02 of the pixels: within ±1 but no margin for CAM
    assert cam.unit == V.CAM.text and cam.part_verdict == S.INCONCLUSIVE


def test_every_part_verdict_and_claim_verdict_is_known(table):
    assert set(table.part_verdict) <= set(S.PART_VERDICTS) and set(table.verdict) <= set(S.PART_VERDICTS)
    assert table.counted.dtype == bool


def test_claim_of_equivalent_parts_reads_no_difference(tmp_path):
    t2 = {**TABLE2, ("aalp", "cw10"): [40.1, 41, 41.9]}  # 0.1, 0, -0.1: ±0.248
    t = V.verdicts(cfg_of(), write_report(tmp_path, table2=t2))
    assert part(t, "aalp_beats_alp", "cw10").part_verdict == S.EQUIVALENT
    assert part(t, "aalp_beats_alp", "pgd10").verdict == S.EQUIVALENT


def test_table4_counts_the_share_of_all_samples_and_shows_the_clean_correct_share(table):
    r = part(table, "aalp_consistent", "of all test samples")
    # 1, -1, 2: mean 2/3, sd sqrt(7/3) = 1.52753
    assert r.counted and r["mean"] == pytest.approx(2 / 3)
    assert r.half == pytest.approx(1.52753 * HALF, abs=1e-4) and r.mde == pytest.approx(1.52753 * MDE, abs=1e-4)
    assert r.paper == pytest.approx(96.03 - 94.91)  # the paper's Table 4, MNIST
    assert r.part_verdict == S.INCONCLUSIVE
    cc = part(table, "aalp_consistent", "of the clean-correct samples")  # -1, -0.5, -1: [-1.55, -0.12]
    assert not cc.counted and cc.part_verdict == S.FAILS and "Table 4" in cc.note and math.isnan(cc.paper)
    assert r.verdict == S.INCONCLUSIVE  # would be "does not hold" if the clean-correct share were counted


def test_fig03_confidence_holds_by_construction_and_table1_losses_decide(table):
    conf = part(table, "failed_low_confidence", "confidence")
    # percent, like Table 1: -50, -45, -40
    assert conf["mean"] == pytest.approx(-45.0) and conf.unit == V.CONF.text
    assert conf.paper == pytest.approx(21.87 - 92.58)  # the paper's Table 1, MNIST, percent
    assert not conf.counted and conf.part_verdict == S.BY_CONSTRUCTION and "at most 50%" in conf.note
    assert conf.verdict == S.BY_CONSTRUCTION
    ce = part(table, "inconsistent_higher_loss", "classification loss")  # 1.0, 0.9, 1.1: sd 0.1
    assert ce.counted and ce.direction == 1 and ce.unit == V.LOSS.text
    assert ce["mean"] == pytest.approx(1.0) and ce.half == pytest.approx(0.1 * HALF, abs=1e-4)
    assert ce.part_verdict == S.HOLDS and ce.paper == pytest.approx(4.1833 - 0.3262)
    alp = part(table, "inconsistent_higher_loss", "ALP loss")  # 0.05, 0.1, 0.05: sd 0.028868, [-0.005, 0.138]
    assert alp["mean"] == pytest.approx(0.2 / 3) and alp.half == pytest.approx(0.028868 * HALF, abs=1e-5)
    assert alp.part_verdict == S.INCONCLUSIVE and alp.verdict == S.INCONCLUSIVE
    assert alp.paper == pytest.approx(2.2442 - 0.1443)


def test_probe_accuracy_in_points_and_the_alp_loss_of_aalp_not_counted(table):
    acc = part(table, "aalp_converges", "adversarial accuracy")  # 3, 4, 2 points
    assert acc.unit == V.ACC.text and acc["mean"] == pytest.approx(3.0) and acc.half == pytest.approx(HALF, abs=1e-4)
    assert acc.mde == pytest.approx(MDE, abs=1e-4) and acc.counted and acc.part_verdict == S.HOLDS
    loss = part(table, "aalp_converges", "ALP loss")  # +0.02, +0.02, +0.03: above ALP's
    assert loss.part_verdict == S.FAILS and not loss.counted and "w_i" in loss.note
    assert acc.verdict == S.HOLDS  # the down-weighted loss is no evidence against AALP


@pytest.mark.parametrize("epochs, fitted", [(2, 2), (3, 2), (4, 2), (5, 3), (6, 3), (8, 4)])
def test_fitted_epochs(epochs, fitted):
    assert V.fitted_epochs(cfg_of(epochs), "toy") == fitted


def test_min_epochs_for_slope():
    assert V.min_epochs_for_slope() == 5  # second_half(1..5) = [3, 4, 5]


def test_slopes_are_untestable_with_fewer_than_three_fitted_epochs(tmp_path):
    root = write_report(tmp_path)
    few = V.verdicts(cfg_of(epochs=3), root)
    r = part(few, "alp_loss_diverges", "Inconsistent")
    assert r.part_verdict == S.UNTESTABLE and r.verdict == S.UNTESTABLE and "3 epochs leave 2 in the fitted half" in r.note
    assert r.unit == V.SLOPE.text
    enough = V.verdicts(cfg_of(epochs=5), root)
    r = part(enough, "alp_loss_diverges", "Inconsistent")  # 0.1, 0.2, 0.3: [-0.048, 0.448]
    assert r.part_verdict == S.INCONCLUSIVE and r.note == ""
    assert part(enough, "alp_loss_diverges", "Consistent set").part_verdict == S.INCONCLUSIVE


def test_resolution_against_the_papers_own_differences(table):
    text = V.resolution(cfg_of(), table)
    # counted: n50 2, CAM 2, Table 1 2, slopes 2, n50 AALP 1, Table 4 1, Table 2 2, probe 1 = 13;
    # inconclusive: CAM 2, Table 1 ALP loss, n50 AALP − ALP (0 ± 0, no margin), Table 4, cw10 = 6; 2 untestable
    assert text.startswith("Of the 13 counted parts, 6 are inconclusive") and "2 are untestable" in text
    assert "for 1 of them every seed gave the same value" in text  # n50 AALP − ALP: 0, 0, 0
    # accuracy parts: mde 0.619 (pgd10), 1.548 (cw10), 3.097 (probe), 4.730 (Table 4): median 2.32
    assert "±0.5–3.8 points" in text and "is 2.3 points (median; 0.6–4.7)" in text
    # the paper: Table 4 1.12, pgd10 0.56, cw10 0.32, each below its part's mde
    assert "for 3 of these parts are 0.32–1.12 points: 3 of them are smaller" in text
    assert "gives no number" not in text


def test_resolution_without_the_papers_numbers_uses_its_table2_gains(tmp_path):
    cfg = cfg_of(source="fashion_mnist")
    text = V.resolution(cfg, V.verdicts(cfg, write_report(tmp_path)))
    assert ("MNIST pgd10 +0.56, cw10 +0.32; SVHN pgd10 +5.00, cw10 +3.10; CIFAR-10 pgd10 +2.44, cw10 +7.19 points: "
            "2 of these 6 are smaller than the median") in text


def test_front_page_section_shows_mde_margin_and_what_is_not_counted(table):
    sec = verdict_section(cfg_of(), table, {})
    parts = {p["part"]: p for g in sec["groups"] for p in g["parts"]}
    pgd = parts["pgd10 AALP − ALP"]
    assert (pgd["mde"], pgd["margin"], pgd["unit"], pgd["verdict"]) == ("0.62", "±1", V.ACC.text, S.EQUIVALENT)
    assert parts["CAM area ADV − RAW"]["margin"] == "not assessed"
    loss = parts["last-epoch probe ALP loss AALP − ALP"]
    assert not loss["counted"] and "w_i" in loss["note"]
    assert "1 holds by construction" in sec["summary"] and "Of the 13 counted parts, 6 are inconclusive" in sec["summary"]


def test_one_seed_has_no_mde(tmp_path):
    t = V.verdicts(cfg_of(), write_report(tmp_path, seeds=(0,)))
    assert t.mde.isna().all() and (t.part_verdict.isin([S.INCONCLUSIVE, S.UNTESTABLE, S.BY_CONSTRUCTION, S.BESIDE])).all()
    sec = verdict_section(cfg_of(), t, {})
    assert "no smallest detectable difference" in sec["summary"]
    assert {p["mde"] for g in sec["groups"] for p in g["parts"]} == {"— (1 seed)"}


def test_aalp_against_alp_has_a_part_for_every_attack_of_table2(tmp_path):
    """The paired AALP − ALP difference under each evaluated attack, in the set's order (FGSM, every PGD-k and
    CW-k), and AutoAttack as its own claim; each with its paper number where the paper's Table 2 has one."""
    attacks = ["fgsm", "pgd10", "pgd100", "cw10", "cw100", "autoattack"]
    base = {"fgsm": 70, "pgd10": 60, "pgd100": 50, "cw10": 55, "cw100": 45, "autoattack": 40}
    t2 = {}
    for a, v in base.items():
        t2[("alp", a)] = [v, v + 1, v + 2]
        t2[("aalp", a)] = [v + 3, v + 4, v + 6]  # AALP − ALP: +3, +3, +4 on every attack: 3.33 ± 1.43
    cfg = {**cfg_of(), "evaluation": {"attacks": attacks}}
    t = V.verdicts(cfg, write_report(tmp_path, table2=t2))
    beats = t[t.claim_id == "aalp_beats_alp"]
    assert [p.split()[0] for p in beats.part] == ["fgsm", "pgd10", "pgd100", "cw10", "cw100"]
    assert beats["mean"].tolist() == pytest.approx([10 / 3] * 5) and beats.half.tolist() == pytest.approx(
        [0.57735 * HALF] * 5, abs=1e-4) and (beats.part_verdict == S.HOLDS).all()
    assert beats.paper.tolist() == pytest.approx([98.19 - 97.68, 97.22 - 96.66, 96.32 - 94.50, 97.28 - 96.96,
                                                  96.89 - 96.16])  # the paper's Table 2, MNIST
    aa = part(t, "aalp_beats_alp_aa", "autoattack")
    assert aa["mean"] == pytest.approx(10 / 3) and aa.part_verdict == S.HOLDS and math.isnan(aa.paper)


def test_the_provenance_table_names_the_accelerator():
    from aalp.report.frontpage import device_text

    assert device_text({"device": "cuda", "device_name": "NVIDIA H200"}) == "cuda (NVIDIA H200)"
    assert device_text({"device": "cpu", "device_name": "cpu"}) == "cpu" == device_text({"device": "cpu"})


# ----------------------------------------------------------------------------- claim_verdict on its own
def parts_of(*rows):
    """A claim's parts on one dataset as verdicts() groups them: one (part_verdict, counted) pair per part."""
    return pd.DataFrame([{"part_verdict": v, "counted": c} for v, c in rows], columns=["part_verdict", "counted"])


@pytest.mark.parametrize("rows, want", [
    ([(S.HOLDS, True), (S.HOLDS, True)], S.HOLDS),                  # every counted part holds
    ([(S.HOLDS, True), (S.FAILS, True)], S.FAILS),                  # one counted part against the claim sinks it
    ([(S.FAILS, True), (S.UNTESTABLE, True)], S.FAILS),             # ... before untestable
    ([(S.HOLDS, True), (S.FAILS, False)], S.HOLDS),                 # a part shown but not counted does not
    ([(S.HOLDS, True), (S.UNTESTABLE, True)], S.UNTESTABLE),        # holds needs every part
    ([(S.INCONCLUSIVE, True), (S.UNTESTABLE, True)], S.UNTESTABLE),  # more seeds would not settle it
    ([(S.EQUIVALENT, True), (S.EQUIVALENT, True)], S.EQUIVALENT),
    ([(S.EQUIVALENT, True), (S.HOLDS, True)], S.INCONCLUSIVE),      # one holds, one shows no difference
    ([(S.EQUIVALENT, True), (S.INCONCLUSIVE, True)], S.INCONCLUSIVE),
    ([(S.HOLDS, True), (S.INCONCLUSIVE, True)], S.INCONCLUSIVE),
    ([(S.BY_CONSTRUCTION, False)], S.BY_CONSTRUCTION),             # only by-construction parts: reads so
    ([(S.BY_CONSTRUCTION, False), (S.BY_CONSTRUCTION, False)], S.BY_CONSTRUCTION),
    ([(S.BY_CONSTRUCTION, False), (S.HOLDS, True)], S.HOLDS),       # beside a counted part, the counted part decides
    ([(S.BY_CONSTRUCTION, False), (S.FAILS, True)], S.FAILS),
    ([(S.BY_CONSTRUCTION, False), (S.FAILS, False)], S.INCONCLUSIVE),  # nothing counted, not all by construction
    ([(S.HOLDS, False), (S.HOLDS, False)], S.INCONCLUSIVE),         # nothing counted: no evidence
    ([], S.INCONCLUSIVE),
])
def test_claim_verdict_combines_only_the_counted_parts(rows, want):
    assert V.claim_verdict(parts_of(*rows)) == want


def claim_of(*parts):
    """The claim verdict of parts given as (per-seed values, direction, unit), each judged by verdicts._part."""
    rows = []
    for i, (values, direction, unit) in enumerate(parts):
        V._part(rows, V.CLAIMS[0], "toy", f"part {i}", values, direction, unit)
    return V.claim_verdict(pd.DataFrame(rows)), [r["part_verdict"] for r in rows]


@pytest.mark.parametrize("parts, want, part_verdicts", [
    # 2, 3, 4: mean 3, sd 1, 3 +- 2.484 = [0.516, 5.484], above 0: holds for "rises", does not hold for "falls"
    ([([2, 3, 4], +1, V.ACC)], S.HOLDS, [S.HOLDS]),
    ([([2, 3, 4], -1, V.ACC)], S.FAILS, [S.FAILS]),
    # one rises AND the other falls: both on their claimed side; then the second part's claim turned round
    ([([2, 3, 4], +1, V.LOSS), ([-2, -3, -4], -1, V.LOSS)], S.HOLDS, [S.HOLDS, S.HOLDS]),
    ([([2, 3, 4], +1, V.LOSS), ([-2, -3, -4], +1, V.LOSS)], S.FAILS, [S.HOLDS, S.FAILS]),
    # zero spread: 3, 3, 3 is a point far from 0, yet no interval, in either direction
    ([([3, 3, 3], +1, V.ACC)], S.INCONCLUSIVE, [S.INCONCLUSIVE]),
    ([([3, 3, 3], -1, V.ACC)], S.INCONCLUSIVE, [S.INCONCLUSIVE]),
    ([([2, 3, 4], +1, V.ACC), ([3, 3, 3], +1, V.ACC)], S.INCONCLUSIVE, [S.HOLDS, S.INCONCLUSIVE]),
    # straddling 0: -1, 0, 1 gives [-2.484, 2.484], wider than the 1-point margin
    ([([-1, 0, 1], +1, V.ACC)], S.INCONCLUSIVE, [S.INCONCLUSIVE]),
    # -0.2, 0, 0.2 gives [-0.497, 0.497]: within +-1 point of accuracy, but losses have no margin
    ([([-0.2, 0, 0.2], +1, V.ACC), ([0.1, 0, -0.1], -1, V.ACC)], S.EQUIVALENT, [S.EQUIVALENT, S.EQUIVALENT]),
    ([([-0.2, 0, 0.2], +1, V.ACC), ([0.1, 0, -0.1], -1, V.LOSS)], S.INCONCLUSIVE, [S.EQUIVALENT, S.INCONCLUSIVE]),
    # one seed: no interval however large the value
    ([([50.0], +1, V.ACC)], S.INCONCLUSIVE, [S.INCONCLUSIVE]),
])
def test_claim_verdict_from_per_seed_values(parts, want, part_verdicts):
    verdict, per_part = claim_of(*parts)
    assert per_part == part_verdicts
    assert verdict == want


# ----------------------------------------------------------------------------- scope: what a verdict holds at
CPU = {"attack": {"steps": 10, "step": 0.075}}  # results/mnist_cpu's training attack override


def test_scope_names_the_epochs_training_attack_eps_and_lambda():
    cfg = cfg_of(epochs=3, **{m: CPU for m in ("raw", "adv", "alp", "aalp")})
    assert scope(cfg, "toy") == "3 epochs of PGD-10 training (step 0.075), ε 0.3, λ 0.5"
    assert scope(cfg_of(epochs=84), "toy") == "84 epochs of PGD-40 training (step 0.01), ε 0.3, λ 0.5"
    mixed = cfg_of(epochs=3, adv=CPU, aalp={"lambda": 1.0})  # AALP trains against PGD-40, at another lambda
    assert scope(mixed, "toy") == ("3 epochs of training against PGD-10 (step 0.075) for ADV; PGD-40 (step 0.01) "
                                   "for ALP, AALP, ε 0.3, λ 0.5 (ALP), 1 (AALP)")
    assert scope(cfg_of(epochs=5, methods=("raw",)), "toy") == "5 epochs of standard training"
    svhn = cfg_of(epochs=30)
    svhn["experiments"]["toy"]["attack"] = {"eps": 12 / 255, "step": 3 / 255, "steps": 10, "random_start": True}
    assert scope(svhn, "toy") == "30 epochs of PGD-10 training (step 3/255), ε 12/255, λ 0.5"


def test_undecided_names_the_papers_budget_its_lost_lambda_the_weights_and_the_data():
    cfg = cfg_of(epochs=3, **{m: CPU for m in ("raw", "adv", "alp", "aalp")})
    budget, lam, weights, data = undecided(cfg, "toy")
    assert budget == ("whether the verdicts hold at the paper's training budget (the paper set's epochs: 84, here 3; "
                      "training attack: PGD-40, eps 0.3, step 0.01, here PGD-10, eps 0.3, step 0.075 (every method))")
    assert lam == "the paper's λ for AALP: lost from its text; λ 0.5 here is a [choice]"
    assert "at the same λ, AALP's weights w_i = p(y|x) ≤ 1 pair each sample less than ALP does" in weights
    # Figs. 1 and 7 are SVHN and CIFAR-10 in the paper; Table 3 (SVHN) is not run without ALP + GD
    assert data == ("whether the paper's data shows what this set shows: Fig. 1 and Fig. 7 on SVHN, CIFAR-10 "
                    "(tested here on MNIST)")
    assert undecided(cfg_of(epochs=84), "toy")[0].startswith("the paper's λ")  # the paper's budget: no budget line
    assert undecided(cfg_of(epochs=84, aalp={"lambda": 1.0}), "toy")[1].split(":")[1].startswith(
        " at λ 1 against ALP's 0.5")
    no_aalp = undecided(cfg_of(epochs=84, methods=("raw", "adv", "alp", "alp_gd")), "toy")
    assert no_aalp == ["whether the paper's data shows what this set shows: Fig. 1 on SVHN, CIFAR-10; Table 3 on "
                       "SVHN (tested here on MNIST)"]
    assert undecided(cfg_of(epochs=84, methods=("alp",)), "toy") == []  # Fig. 3, Table 1: the paper's MNIST too


def test_every_row_names_its_scope_and_where_the_paper_showed_the_claim(table):
    assert (table.scope == scope(cfg_of(), "toy")).all() and table.scope.iloc[0].startswith("2 epochs of PGD-40")
    on = table.drop_duplicates("claim_id").set_index("claim_id").paper_on
    assert on["fewer_features"] == "SVHN, CIFAR-10 (Fig. 1)" and on["aalp_fewer_features"] == "SVHN, CIFAR-10 (Fig. 7)"
    assert on["aalp_beats_alp"] == "MNIST, SVHN, CIFAR-10 (Table 2)" and on["aalp_converges"] == "MNIST (Fig. 12)"
    assert on["cam_shrinks"] == "Fig. 2: the paper's text names no dataset"


def test_front_page_verdict_reads_at_the_sets_scope(table):
    sec = verdict_section(cfg_of(), table, {})
    g = {x["claim"]: x for x in sec["groups"]}
    beats = next(x for c, x in g.items() if c.startswith("AALP beats ALP"))
    assert beats["at"] == "at 2 epochs of PGD-40 training (step 0.01), ε 0.3, λ 0.5"
    assert beats["paper_on"] == "MNIST, SVHN, CIFAR-10 (Table 2)"
    assert next(x for c, x in g.items() if c.startswith("ALP's failed"))["at"] == ""  # by construction: any budget
    assert [s["dataset"] for s in sec["scopes"]] == ["toy"] and sec["scopes"][0]["undecided"] == undecided(cfg_of(), "toy")


# ----------------------------------------------------------------------------- clean accuracy beside the robust
def test_clean_accuracy_is_shown_beside_every_aalp_alp_comparison_and_not_counted(table):
    for cid in ("aalp_beats_alp", "aalp_consistent"):
        r = part(table, cid, "clean AALP − ALP")  # -1, -1.3, -1.1
        assert r["mean"] == pytest.approx(-3.4 / 3) and r.unit == V.ACC.text and r.direction == 0
        assert not r.counted and r.part_verdict == S.BESIDE and "trade-off" in r.note
        assert r.paper == pytest.approx(98.49 - 98.77)  # the paper's Table 2, MNIST: AALP's clean is lower too
    probe = part(table, "aalp_converges", "probe clean accuracy")  # 1, 2, 0 points
    assert probe["mean"] == pytest.approx(1.0) and not probe.counted and probe.part_verdict == S.BESIDE


def test_a_clean_loss_does_not_sink_a_robust_gain(tmp_path):
    t2 = {("alp", "pgd10"): [50, 51, 52], ("aalp", "pgd10"): [53, 54, 56], ("alp", "autoattack"): [40, 41, 42],
          ("aalp", "autoattack"): [43, 44, 46], ("alp", "clean"): [99, 99, 99], ("aalp", "clean"): [90, 91, 92]}
    cfg = cfg_of(attacks=("pgd10", "autoattack"))
    t = V.verdicts(cfg, write_report(tmp_path, table2=t2))
    for cid in ("aalp_beats_alp", "aalp_beats_alp_aa"):
        clean = part(t, cid, "clean AALP − ALP")  # -9, -8, -7: far below 0, shown beside
        assert clean["mean"] == pytest.approx(-8.0) and not clean.counted and clean.verdict == S.HOLDS
    aa = part(t, "aalp_beats_alp_aa", "clean AALP − ALP")
    n = cfg["evaluation"]["autoattack_samples"]
    assert n is None or f"AutoAttack on the first {n:,} only" in aa.note
    assert aa.paper_on.startswith("not in the paper")  # the paper ran no AutoAttack


# ----------------------------------------------------------------------------- Fig. 1 as an ordering; n50 of active
def test_fig01_tests_the_whole_ordering_raw_adv_alp(table):
    parts = list(table[table.claim_id == "fewer_features"].part)
    assert parts == ["n50 ADV − RAW", "n50 ALP − ADV"]  # no ALP − RAW: the ordering, step by step
    adv = part(table, "fewer_features", "n50 ADV − RAW")  # -50, -48, -50
    alp = part(table, "fewer_features", "n50 ALP − ADV")  # 30, 33, 30: [26.7, 35.3], ALP has more than ADV
    assert adv.counted and adv.part_verdict == S.HOLDS and "ordering" in adv.note
    assert alp.counted and alp["mean"] == pytest.approx(31.0) and alp.part_verdict == S.FAILS
    assert alp.verdict == S.FAILS  # ADV and ALP both below RAW, as two differences from RAW would have read: holds
    assert list(table[table.claim_id == "aalp_fewer_features"].part) == ["n50 AALP − ALP"]


def test_n50_share_of_active_features_from_a_handmade_contributions_table(tmp_path, monkeypatch):
    """n50 of c = [0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0] is 1 feature: of the 4 active ones 25%, of the 8 features 12.5%;
    with 4 more active features holding a little, n50 stays 1 and its share of the active ones halves."""
    from aalp.core.analysis import contribution_summary
    from aalp.report.figdata import contribution_curves

    c = {"raw": [0.5, 0.3, 0.1, 0.1, 0, 0, 0, 0], "adv": [0.5, 0.3, 0.1, 0.04, 0.03, 0.01, 0.01, 0.01],
         "alp": [0.0] * 8}  # alp: a dead model, no active feature, no share
    for m, cs in c.items():
        folder = tmp_path / "runs" / "toy" / m / "s0" / "analysis"
        folder.mkdir(parents=True)
        pd.DataFrame({"c": cs}).to_csv(folder / "contributions.csv", index=False)
        (folder / "summary.json").write_text(json.dumps(contribution_summary(np.array(cs))))
    monkeypatch.chdir(tmp_path)
    _, claims = contribution_curves({**cfg_of(methods=("raw", "adv", "alp")), "seeds": [0]}, "fig01")
    got = claims.set_index(["method", "claim"])["mean"]
    assert (got["raw", "n50"], got["raw", "active"], got["raw", "n50_active"]) == (1, 4, 25.0)
    assert (got["adv", "n50"], got["adv", "active"], got["adv", "n50_active"]) == (1, 8, 12.5)
    assert ("alp", "n50_active") not in got.index


def test_the_share_of_active_features_stands_beside_n50_not_counted(tmp_path):
    share = {("fig01", "raw", "n50_active"): [30, 32, 34], ("fig01", "adv", "n50_active"): [25, 26, 27],
             ("fig01", "alp", "n50_active"): [26, 27, 28], ("fig07", "alp", "n50_active"): [26, 27, 28],
             ("fig07", "aalp", "n50_active"): [20, 21, 22]}
    root = write_report(tmp_path)
    for item in ("fig01", "fig07"):
        old = pd.read_csv(root / "claims" / f"{item}.csv")
        rows = [r for (i, m, k), vs in share.items() if i == item
                for r in ({"dataset": "toy", "method": m, "claim": k, "seed": s, "value": v} for s, v in zip(SEEDS, vs))]
        pd.concat([old, claims_frame(rows)]).to_csv(root / "claims" / f"{item}.csv", index=False)
    t = V.verdicts(cfg_of(), root)
    adv = part(t, "fewer_features", "as % of the active features ADV − RAW")  # -5, -6, -7
    assert adv["mean"] == pytest.approx(-6.0) and adv.unit == V.SHARE.text and adv.part_verdict == S.HOLDS
    alp = part(t, "fewer_features", "as % of the active features ALP − ADV")  # +1, +1, +1: no interval
    assert not adv.counted and not alp.counted and "n50 carries the verdict" in adv.note
    aalp = part(t, "aalp_fewer_features", "as % of the active features AALP − ALP")  # -6 each seed
    assert aalp["mean"] == pytest.approx(-6.0) and not aalp.counted
    assert alp.verdict == S.FAILS  # n50 ALP − ADV decides, whatever the share says


# ----------------------------------------------------------------------------- Table 3 on what was run
def gd_report(root, alp, alp_gd, metrics=("clean", "pgd10")):
    """A report folder with Table 3's claims of ALP and ALP + GD: {metric: per-seed values} each."""
    write_report(root)
    rows = [{"dataset": "toy", "method": m, "claim": k, "seed": s, "value": v}
            for m, per in (("alp", alp), ("alp_gd", alp_gd)) for k in metrics for s, v in enumerate(per[k])]
    claims_frame(rows).to_csv(root / "claims" / "table3.csv", index=False)
    return root


def test_the_gd_claim_names_the_pairs_tested_and_shows_clean_beside(tmp_path):
    cfg = cfg_of(methods=("raw", "adv", "alp", "alp_gd", "aalp"))
    root = gd_report(tmp_path, {"clean": [98, 98, 98], "pgd10": [90, 91, 92]},
                     {"clean": [97, 98.5, 97], "pgd10": [91, 92, 93.5]})
    t = V.verdicts(cfg, root)
    pgd = part(t, "gd_helps", "pgd10 ALP + GD − ALP")  # 1, 1, 1.5: [0.45, 1.88]
    assert pgd.claim.endswith("(tested: ALP + GD vs ALP; RAW + GD and ADV + GD not run)")
    assert pgd.counted and pgd["mean"] == pytest.approx(3.5 / 3) and pgd.part_verdict == S.HOLDS
    clean = part(t, "gd_helps", "clean ALP + GD − ALP")  # -1, 0.5, -1
    assert not clean.counted and clean.part_verdict == S.BESIDE and clean["mean"] == pytest.approx(-0.5)
    assert pgd.verdict == S.HOLDS


def test_gd_pairs_named_from_the_sets_methods():
    from aalp.report.gdpairs import gd_tested, table3_title

    every = cfg_of(methods=("raw", "raw_gd", "adv", "adv_gd", "alp", "alp_gd"))
    assert gd_tested(every, "toy") == "tested: RAW + GD vs RAW, ADV + GD vs ADV, ALP + GD vs ALP"
    assert gd_tested(cfg_of(methods=("alp", "aalp")), "toy") == "tested: none; RAW + GD and ADV + GD and ALP + GD not run"
    assert table3_title(cfg_of(methods=("adv", "adv_gd")), "Table 3") == (
        "Table 3 (tested: ADV + GD vs ADV; RAW + GD and ALP + GD not run)")
    assert table3_title(cfg_of(methods=("alp",)), "Table 3") == "Table 3"


def test_table3_change_is_the_paired_mean_over_common_seeds():
    """ALP has 5 seeds, ALP + GD 3: the unpaired difference of the means is 91 − 93 = −2, the paired mean over
    seeds 0-2 is (0.5 + 0 − 0.5) / 3 = 0, the quantity the verdict judges."""
    from aalp.report.gdpairs import paired_changes

    per_seed = pd.DataFrame(
        [{"dataset": "toy", "pair": "alp", "method": "alp", "seed": s, "metric": "pgd10", "value": v}
         for s, v in enumerate([90, 91, 92, 95, 97])]
        + [{"dataset": "toy", "pair": "alp", "method": "alp_gd", "seed": s, "metric": "pgd10", "value": v}
           for s, v in enumerate([90.5, 91, 91.5])])
    out = paired_changes(per_seed)
    assert len(out) == 1 and out.method.item() == "alp_gd"
    assert out.change.item() == pytest.approx(0.0) and out.change_seeds.item() == "0;1;2"
