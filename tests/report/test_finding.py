"""The front page's first screen and the checks' one text: masking.py (each fired check with the accuracies it
compares; accuracies on AutoAttack's own images) and finding.py (the headline, the clean trade-off, the
figure drawn from the verdict rows), against values worked out by hand."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from aalp.report import stats as S
from aalp.report import finding as F
from aalp.report import masking as M


# ----------------------------------------------------------------------------- masking.py
def test_each_check_names_the_accuracies_it_compares():
    acc = {"clean": 97.0, "fgsm": 81.4, "pgd10": 91.9, "pgd20": 84.0, "pgd40": 60.1, "pgd100": 53.8,
           "cw10": 92.0, "cw100": 52.0, "autoattack": 38.6}
    assert M.compared("pgd_far_above_autoattack", acc) == "PGD-100 53.8 against AutoAttack 38.6"
    assert M.compared("fgsm_far_above_autoattack", acc) == "FGSM 81.4 against AutoAttack 38.6"
    assert M.compared("pgd_far_above_cw", acc) == "PGD-100 53.8 against CW-100 52.0"
    assert M.compared("fgsm_far_above_pgd", acc) == "FGSM 81.4 against PGD-100 53.8"
    assert M.compared("autoattack_above_pgd", acc) == "AutoAttack 38.6 against CW-100 52.0"  # the strongest PGD/CW
    assert M.compared("pgd_above_fgsm", acc) == "PGD-10 91.9, PGD-20 84.0 against FGSM 81.4"  # only those above
    assert M.compared("pgd_steps_increase", acc) == "PGD-10 91.9, PGD-20 84.0, PGD-40 60.1, PGD-100 53.8"
    shares = {"chance_pct": 11.35, "top_prediction": 1, "top_prediction_pct": 100.0, "top_prediction_label_pct": 11.35}
    assert M.compared("clean_at_chance", {"clean": 11.35}, shares) == "clean 11.3 against chance 11.3"
    assert M.compared("predictions_one_class", {}, shares) == ("class 1 takes 100.0% of the predictions and 11.3% of "
                                                               "the labels")


def test_check_rows_sort_each_fired_check_and_compare_autoattack_on_its_own_images():
    """The AutoAttack flags read the accuracies on AutoAttack's images (here PGD-100 55.0 there, 53.8 on all);
    a PGD-10 above FGSM at step 0.01 (reach 0.1 < eps 0.3) is explained; a check that did not fire has no text."""
    cfg = {"experiments": {"toy": {"attack": {"eps": 0.3, "step": 0.01}}}}
    met = {"accuracy": {"fgsm": 81.4, "pgd10": 91.9, "pgd100": 53.8, "autoattack": 38.6}, "n_samples_autoattack": 500,
           "checks": {"pgd_far_above_autoattack": True, "pgd_above_fgsm": True, "cw_steps_increase": False,
                      "clean_at_chance": True},
           "class_shares": {"chance_pct": 11.35, "top_prediction": 1, "top_prediction_pct": 90.0,
                            "top_prediction_label_pct": 11.35}}
    subset = {"fgsm": 80.0, "pgd10": 91.0, "pgd100": 55.0, "autoattack": 38.6}
    rows = {r["check"]: r for r in M.check_rows(cfg, "toy", "alp", 3, met, subset)}
    assert rows["pgd_far_above_autoattack"]["kind"] == "warn"
    assert rows["pgd_far_above_autoattack"]["text"] == ("PGD accuracy far above AutoAttack (gradient masking?): "
                                                        "PGD-100 55.0 against AutoAttack 38.6 on the first 500 test images")
    assert rows["pgd_above_fgsm"]["kind"] == "explained" and "PGD-10 91.9 against FGSM 81.4" in rows["pgd_above_fgsm"]["text"]
    assert "≤ 0.1 " in rows["pgd_above_fgsm"]["text"] and "not a sign of masking" in rows["pgd_above_fgsm"]["text"]
    assert rows["clean_at_chance"]["kind"] == "collapsed"
    assert rows["cw_steps_increase"] == {"dataset": "toy", "method": "alp", "seed": 3, "check": "cw_steps_increase",
                                         "fired": False, "kind": "", "text": ""}
    long = dict(met, accuracy={**met["accuracy"], "pgd40": 85.0})  # PGD-40 (reach 0.4 >= eps) above FGSM: a warning
    assert {r["check"]: r for r in M.check_rows(cfg, "toy", "alp", 3, long, subset)}["pgd_above_fgsm"]["kind"] == "warn"
    lines = M.fired_lists(pd.DataFrame(M.check_rows(cfg, "toy", "alp", 3, met, subset)))
    assert [len(lines[k]) for k in M.KINDS] == [1, 1, 1]
    assert lines["warn"][0].startswith("toy/alp seed 3: PGD accuracy far above AutoAttack")


def test_a_short_pgd_is_explained_by_the_reach_of_its_own_step():
    """short_pgd_note reads each k's evaluation step (config.eval_step through check_rows): at 0.01 a PGD-10 moves
    at most 0.1 < eps 0.3, which explains it staying above FGSM; under evaluation.step_rule `reach` it runs at
    2.5 · 0.3 / 10 = 0.075 and can move 0.75, so the same accuracies are a warning."""
    acc = {"fgsm": 81.4, "pgd10": 91.9, "pgd20": 85.0, "pgd100": 53.8}
    assert "k · 0.01 ≤ 0.2 " in M.short_pgd_note(0.3, lambda k: 0.01, acc)
    assert M.short_pgd_note(0.3, {10: 0.075, 20: 0.0375, 100: 0.01}.get, acc) == ""
    assert "≤ 0.2 " in M.short_pgd_note(0.3, {10: 0.015, 20: 0.01, 100: 0.01}.get, acc)  # 10 · 0.015, 20 · 0.01
    met = {"accuracy": acc, "n_samples_autoattack": 0, "checks": {"pgd_above_fgsm": True}}
    cfg = {"experiments": {"toy": {"attack": {"eps": 0.3, "step": 0.01}}}, "evaluation": {"step_rule": "fixed"}}
    assert M.check_rows(cfg, "toy", "raw", 0, met, {})[0]["kind"] == "explained"
    cfg["evaluation"]["step_rule"] = "reach"
    (row,) = M.check_rows(cfg, "toy", "raw", 0, met, {})
    assert row["kind"] == "warn" and row["text"] == "PGD accuracy above FGSM: PGD-10 91.9, PGD-20 85.0 against FGSM 81.4"


def test_accuracy_on_autoattacks_images_and_the_gap_to_the_strongest_pgd():
    records = pd.DataFrame({"sample": range(6), "label": [0, 1, 2, 3, 4, 5],
                            "pgd10_pred": [0, 1, 2, 0, 0, 0], "pgd100_pred": [0, 1, 9, 9, 4, 5],
                            "autoattack_pred": [0, 9, 9, 9, 9, 9]})
    acc = M.autoattack_subset(records, 4, ["pgd10", "pgd100", "autoattack", "cw10"])  # cw10 not recorded: left out
    assert acc == {"pgd10": 75.0, "pgd100": 50.0, "autoattack": 25.0}
    subset = pd.DataFrame([{"dataset": "d", "method": "alp", "seed": s, "metric": k, "value": v, "n_samples": 4}
                           for s, a in ((0, acc), (1, {"pgd10": 100.0, "pgd100": 75.0, "autoattack": 25.0}))
                           for k, v in a.items()])
    (gap,) = M.autoattack_gaps(subset)
    assert gap["pgd"] == "pgd100" and gap["gaps"] == [-25.0, -50.0] and gap["n"] == 4


# ----------------------------------------------------------------------------- finding.py
def _verdict_rows(means, halves, papers, n=5):
    rows = []
    for (metric, mean), half, paper in zip(means.items(), halves, papers):
        iv = S.Interval(mean, half, n)
        rows.append({"claim_id": "aalp_beats_alp_aa" if metric == "autoattack" else "aalp_beats_alp", "dataset": "d",
                     "part": f"{metric} AALP − ALP", "mean": mean, "half": half, "n_seeds": n, "mde": 2 * half,
                     "paper": paper, "part_verdict": S.verdict(iv, +1, 1.0), "counted": True})
    # clean accuracy, shown beside the attacks and never counted: not one of the finding's attack rows
    rows.append({"claim_id": "aalp_beats_alp", "dataset": "d", "part": "clean AALP − ALP", "mean": 0.3, "half": 0.1,
                 "n_seeds": n, "mde": 0.2, "paper": -0.3, "part_verdict": "shown beside (no claim)", "counted": False})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("means, want", [
    ({"pgd10": -0.3, "pgd100": -1.6, "autoattack": -2.2}, "AALP does worse than ALP: AALP − ALP is negative under "
     "every attack, its 95% interval over 5 paired seeds below 0 under all 3."),
    ({"pgd10": 1.3, "pgd100": 1.6, "autoattack": 2.2}, "AALP beats ALP: AALP − ALP is positive under every attack, "
     "its 95% interval over 5 paired seeds above 0 under all 3."),
    ({"pgd10": 1.3, "pgd100": -1.6, "autoattack": 0.1}, "These seeds find no consistent winner: the 95% interval of "
     "AALP − ALP over 5 paired seeds lies above 0 under PGD-10; below 0 under PGD-100; containing 0 under AutoAttack."),
])
def test_the_headline_says_where_each_interval_lies(means, want):
    table = _verdict_rows(means, [0.2, 0.5, 0.9], [0.5, 1.8, math.nan])
    assert [r["metric"] for r in F.attack_rows(table, "d")] == list(means)  # the clean part beside is left out
    assert F.headline(F.attack_rows(table, "d")) == want
    assert F.clean_paper(table, "d") == -0.3


def test_clean_accuracy_is_paired_by_seed():
    t2 = pd.DataFrame([{"dataset": "d", "method": m, "metric": "clean", "seeds": "0;1;2", "values": v}
                       for m, v in (("alp", "97.0;96.0;98.0"), ("aalp", "97.5;96.2;98.4"))])
    iv = F.clean_difference(t2, "d")
    assert iv.n == 3 and iv.mean == pytest.approx((0.5 + 0.2 + 0.4) / 3)
    assert F.clean_difference(t2[t2.method == "alp"], "d") is None


def test_the_figure_draws_the_verdict_rows_and_the_papers_gains():
    """Each attack's point and error bar are the verdict row's mean and half-width, and a red diamond sits at
    the paper's value exactly where the paper has one (none for AutoAttack); clean accuracy comes first."""
    import matplotlib.pyplot as plt

    table = _verdict_rows({"pgd10": -0.3, "pgd100": -1.6, "autoattack": -2.2}, [0.2, 0.5, 0.9], [0.5, 1.8, math.nan])
    rows = F.attack_rows(table, "d")
    fig = F.finding_figure(rows, S.Interval(0.26, 0.14, 5, 0.11), "t")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["clean (n=5)", "PGD-10 (n=5)", "PGD-100 (n=5)", "AutoAttack (n=5)"]  # top to bottom
    ours = sorted((float(c.get_children()[0].get_xdata()[0]) for c in ax.containers))
    assert ours == pytest.approx(sorted([0.26, -0.3, -1.6, -2.2]))
    bars = sorted(float(seg[1][0] - seg[0][0]) for c in ax.containers for seg in c.lines[2][0].get_segments())
    assert bars == pytest.approx(sorted(2 * h for h in (0.14, 0.2, 0.5, 0.9)))
    diamonds = [(float(l.get_xdata()[0]), float(l.get_ydata()[0])) for l in ax.lines if l.get_marker() == "D"]
    assert diamonds == [(0.5, 2.0), (1.8, 1.0)]  # PGD-10 at y 2, PGD-100 at y 1; nothing at AutoAttack (y 0)
    plt.close(fig)
    svg = F.figure_svg(F.finding_figure(rows, None, "title"))
    assert svg.startswith("<svg") and "PGD-100 (n=5)" in svg and "clean (n=5)" not in svg


def test_the_code_summary_counts_hashes_commits_and_devices():
    from aalp.report.frontpage import code_summary

    rows = [{"code_version": v, "device": dv, "hashes": {"train": "a", "evaluate": e, "analyze": None}}
            for v, dv, e in (("c1", "cpu", "e1"), ("c2+dirty", "cpu", "e1"), ("c2+dirty", "cuda (NVIDIA H200)", "e2"))]
    s = code_summary(rows)
    assert s["runs"] == 3 and s["commits"] == 2 and s["dirty"] == 1
    assert s["stages"] == [{"stage": "training", "n": 3, "hashes": [{"hash": "a", "runs": 3}]},
                           {"stage": "evaluation", "n": 3, "hashes": [{"hash": "e1", "runs": 2}, {"hash": "e2", "runs": 1}]}]
    assert s["devices"] == [{"device": "cpu", "runs": 2}, {"device": "cuda (NVIDIA H200)", "runs": 1}]


def test_the_training_attack_column_says_what_it_measures():
    from aalp.report.indextable2 import train_text

    cfg = {"experiments": {"mnist": {"methods": ["raw", "alp"], "attack": {"eps": 0.3, "step": 0.01, "steps": 40}}},
           "methods": {"raw": {"objective": "raw", "attack": {"steps": 10, "step": 0.075}},
                       "alp": {"objective": "alp", "attack": {"steps": 10, "step": 0.075}}}}
    text = train_text(cfg)
    assert "each method's own training attack (PGD-10, ε 0.3, step 0.075, random start)" in text
    assert "(RAW)" in text
    cfg["methods"]["raw"]["attack"] = {}
    assert "PGD-40, ε 0.3, step 0.01, random start (RAW); PGD-10, ε 0.3, step 0.075, random start (ALP)" in train_text(cfg)


def test_clean_accuracy_is_given_a_direction_only_when_its_interval_excludes_zero():
    rows = [{"mean": -1.6}, {"mean": -2.2}]
    moved = F.clean_text(S.Interval(0.26, 0.14, 5), rows)
    assert moved == "Clean accuracy moves the other way: AALP − ALP +0.26 ± 0.14 points (5 paired seeds)."
    assert F.clean_text(S.Interval(0.80, 2.28, 3), rows) == ("Clean accuracy: AALP − ALP +0.80 ± 2.28 points (3 paired "
                                                             "seeds); its interval contains 0.")
    assert F.clean_text(None, rows) == ""


def test_attack_strength_names_alp_and_aalp_and_claims_overstatement_only_when_autoattack_is_lower():
    def subset(aa_minus_pgd):
        return pd.DataFrame([{"dataset": "d", "method": m, "seed": s, "metric": k, "value": v, "n_samples": 100}
                             for m in ("raw", "alp", "aalp") for s, gap in enumerate(aa_minus_pgd)
                             for k, v in (("pgd20", 50.0), ("autoattack", 50.0 + gap))])
    lower = F.strength_text(subset([-2.0, -1.0]), "d")
    assert "RAW" not in lower and "ALP −2.0 to −1.0 points (2 seeds)" in lower and "over-states robustness" in lower
    mixed = F.strength_text(subset([-2.0, 1.0]), "d")
    assert "is compared with PGD-20" in mixed and "over-states" not in mixed


def test_the_caption_promises_the_papers_markers_only_where_the_paper_has_numbers():
    with_paper = F.caption([{"paper": 1.82}, {"paper": math.nan}], "mnist")
    assert with_paper.endswith("red diamond: the paper's AALP − ALP for the same attack (its Table 2, MNIST).")
    without = F.caption([{"paper": math.nan}], "fashion_mnist")
    assert "red diamond" not in without and without.endswith("The paper has no numbers for fashion_mnist.")
