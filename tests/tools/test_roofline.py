"""`python -m aalp bench roofline` on a tiny shape: every method and attack on each path, FLOPs counted and
equal across paths, GFLOP/s consistent with FLOPs x images/s, the minimal loop's ratio present. No timing
assertions (the machine may be busy)."""
import pytest
import torch

from aalp.cli import build_parser
from aalp.tools import roofline as RL

TINY = {"model": "lenet_small", "shape": (1, 28, 28), "batch": 4, "eps": 0.3, "step": 0.05}


@pytest.fixture(scope="module")
def result():
    return RL.roofline(torch.device("cpu"), paths=["fp32", "bf16_fast"], steps=1, reps=1, shape=TINY, peak_n=128)


def test_every_method_and_attack_on_every_path(result):
    rows = result["rows"]
    assert {(r["kind"], r["name"], r["path"]) for r in rows} == (
        {("train", m, p) for m in RL.METHODS for p in ("fp32", "bf16_fast")}
        | {("attack", a, p) for a in RL.ATTACKS for p in ("fp32", "bf16_fast")})
    assert set(result["peaks"]) == {"float32", "bfloat16"} and all(v["gflop_per_s"] > 0 for v in result["peaks"].values())
    for r in rows:
        assert r["images_per_s"] > 0 and r["mflop_per_image"] > 0 and r["minimal_images_per_s"] > 0
        assert r["ours_vs_minimal"] == pytest.approx(r["images_per_s"] / r["minimal_images_per_s"], rel=0.05)
        # achieved GFLOP/s = FLOPs per image x images/s, and its share of the path's own peak
        assert r["gflop_per_s"] == pytest.approx(r["mflop_per_image"] * 1e6 * r["images_per_s"] / 1e9, rel=0.02, abs=0.01)
        peak = result["peaks"]["bfloat16" if r["path"] == "bf16_fast" else "float32"]["gflop_per_s"]
        assert r["peak_gflop_per_s"] == peak
        assert r["pct_of_peak"] == pytest.approx(100 * r["gflop_per_s"] / peak, rel=0.02, abs=0.1)


def test_flops_are_the_same_work_on_both_paths(result):
    by = {(r["kind"], r["name"], r["path"]): r["mflop_per_image"] for r in result["rows"]}
    for kind, names in (("train", RL.METHODS), ("attack", RL.ATTACKS)):
        for n in names:
            assert by[(kind, n, "fp32")] == by[(kind, n, "bf16_fast")]
    # an ADV step is its PGD-1 attack iteration plus a RAW step; ALP's batch is twice ADV's
    t = {n: by[("train", n, "fp32")] for n in RL.METHODS}
    assert t["adv"] == pytest.approx(t["raw"] + by[("attack", "pgd_step", "fp32")], rel=1e-3)
    assert t["alp"] > t["adv"] and t["aalp"] >= t["alp"]
    assert by[("attack", "fgsm", "fp32")] == by[("attack", "pgd_step", "fp32")] == by[("attack", "cw_step", "fp32")]


def test_summary_and_table(result):
    s = {(r["kind"], r["name"], r["path"]): r for r in result["summary"]}
    assert s[("train", "adv", "bf16_fast")]["speedup_vs_plain_fp32"] > 0
    assert s[("train", "adv", "fp32")]["speedup_vs_plain_fp32"] == 1.0
    text = RL.format_result(result)
    for word in (*RL.METHODS, *RL.ATTACKS, "fp32", "bf16_fast", "ours_vs_minimal", "pct_of_peak", "matmul peak"):
        assert word in text


def test_before_rows_switch_the_kernels_off():
    res = RL.roofline(torch.device("cpu"), methods=["adv"], attacks=["fgsm"], paths=["fp32"], steps=1, reps=1,
                      before=True, shape=TINY, peak_n=128)
    assert [(r["kind"], r["path"]) for r in res["rows"]] == [("train", "fp32"), ("train", "fp32 (before)"),
                                                            ("attack", "fp32"), ("attack", "fp32 (before)")]
    s = {(r["kind"], r["path"]): r for r in res["summary"]}
    assert s[("train", "fp32")]["speedup_vs_before"] > 0 and s[("train", "fp32 (before)")]["speedup_vs_plain_fp32"] == 1.0
    from aalp.core import attacks, models

    with RL.kernels(False):
        assert not (models.FOLD_INPUT_GRAD or models.KEEP_CHANNELS_LAST or attacks.PRECAST_BF16)
    assert models.FOLD_INPUT_GRAD and models.KEEP_CHANNELS_LAST and attacks.PRECAST_BF16


def test_cli_choice():
    a = build_parser().parse_args(["bench", "roofline", "--paths", "fp32", "--before", "--reps", "2"])
    assert a.what == "roofline" and a.paths == ["fp32"] and a.before and a.reps == 2 and a.steps is None
