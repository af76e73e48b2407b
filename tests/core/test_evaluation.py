import pandas as pd

from aalp.core.evaluation import consistency_sets, sanity_checks


def test_sanity_checks_fire_on_masking_signatures():
    ok = {"fgsm": 50.0, "pgd10": 40.0, "pgd20": 39.8, "pgd40": 39.0, "cw10": 41.0, "cw20": 40.0, "autoattack": 38.0}
    assert not any(sanity_checks(ok).values())
    assert sanity_checks({**ok, "pgd40": 41.0})["pgd_steps_increase"]         # more steps, more accuracy
    assert not sanity_checks({**ok, "pgd20": 40.4})["pgd_steps_increase"]     # within the 0.5 point noise
    assert sanity_checks({**ok, "cw20": 42.0})["cw_steps_increase"]
    assert sanity_checks({**ok, "fgsm": 39.0})["pgd_above_fgsm"]
    assert sanity_checks({**ok, "autoattack": 39.6})["autoattack_above_pgd"]  # above the best PGD/CW (39.0)
    assert not sanity_checks({k: v for k, v in ok.items() if k != "autoattack"})["autoattack_above_pgd"]


def test_pgd_steps_are_ordered_numerically():
    # pgd100 must come after pgd20, not between pgd10 and pgd20
    assert not sanity_checks({"pgd10": 40.0, "pgd20": 39.0, "pgd100": 38.0})["pgd_steps_increase"]
    assert sanity_checks({"pgd10": 40.0, "pgd20": 38.0, "pgd100": 39.0})["pgd_steps_increase"]


def test_consistency_sets_from_records():
    r = pd.DataFrame({"label": [0, 1, 2, 3], "clean_pred": [0, 1, 2, 0], "train_pred": [0, 2, 2, 3]})
    assert consistency_sets(r).tolist() == ["consistent", "inconsistent", "consistent", "clean_wrong"]
