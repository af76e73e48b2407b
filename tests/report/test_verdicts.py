"""The verdict table (tables/verdicts.csv) on a hand-written report folder: which parts are counted, their
units, smallest detectable differences and margins, and the claim verdicts, against values worked out by
hand. t(0.975, 2) = 4.30265 and t(0.8, 2) = 1.06066, so with 3 seeds half = 2.48414 sd and
mde = 3.09651 sd."""
import math

import pandas as pd
import pytest

from aalp.report import stats as S, verdicts as V
from aalp.report.claims import claims_frame
from aalp.report.frontpage import verdict_section

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
}
TABLE2 = {("alp", "pgd10"): [50, 52, 54], ("aalp", "pgd10"): [50.2, 52, 53.8],  # AALP − ALP: 0.2, 0, -0.2
          ("alp", "cw10"): [40, 41, 42], ("aalp", "cw10"): [40.5, 41, 41.5]}  # 0.5, 0, -0.5


def cfg_of(epochs=2, source="mnist"):
    return {"datasets": {"toy": {"source": source}},
            "experiments": {"toy": {"epochs": epochs, "methods": ["raw", "adv", "alp", "aalp"]}},
            "evaluation": {"attacks": ["pgd10", "cw10"]}, "sweeps": []}


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
    n50 = part(table, "fewer_features", "ALP − RAW")  # -20, -15, -20: features, no margin
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
    assert t.mde.isna().all() and (t.part_verdict.isin([S.INCONCLUSIVE, S.UNTESTABLE, S.BY_CONSTRUCTION])).all()
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
