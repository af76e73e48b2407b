"""`python -m aalp bench speed` on a tiny shape (the real shapes are the GPU's job): every option trains,
the tables hold what the note needs, and concurrent processes add up."""
import pytest
import torch

from aalp.tools import speed as SP

TINY = {"model": "lenet_small", "shape": (1, 28, 28), "batch": 16, "eps": 0.1, "step": 0.05, "steps": 5}


@pytest.fixture
def tiny_shape(monkeypatch):
    monkeypatch.setitem(SP.SHAPES, "tiny", TINY)
    return "tiny"


def test_step_table_times_every_option_and_the_adv_cost(tiny_shape, monkeypatch):
    cpu = torch.device("cpu")
    opts = SP.options(cpu)
    assert opts["plain"] == {} and opts["compile"] == {"compile": "default"}  # CUDA graphs only on CUDA
    assert opts["all"] == {"amp": True, "channels_last": True, "fused_adam": True, "compile": "default"}
    keep = ("plain", "channels_last", "fused_adam")  # compile and bf16 autocast take minutes on a CPU: the GPU's part
    monkeypatch.setattr(SP, "options", lambda d: {k: v for k, v in opts.items() if k in keep})
    rows = SP.step_table(cpu, [tiny_shape], steps=6, warmup=1)
    assert [r["options"] for r in rows] == list(keep)
    for r in rows:
        assert r["raw_images_per_s"] > 0 and r["adv_images_per_s"] > 0
        assert r["adv_cost_vs_raw"] == pytest.approx(r["raw_images_per_s"] / r["adv_images_per_s"], rel=0.02)
    assert rows[0]["adv_speedup_vs_plain"] == 1.0
    # an ADV step (5 attack steps, then the update) costs several RAW steps
    assert rows[0]["adv_cost_vs_raw"] > 2


def test_attack_and_concurrency_tables(tiny_shape):
    cpu = torch.device("cpu")
    a = SP.attack_table(cpu, [tiny_shape], repeats=1)
    assert a[0]["ours_images_per_s"] > 0 and a[0]["speedup"] == pytest.approx(
        a[0]["ours_images_per_s"] / a[0]["torchattacks_images_per_s"], rel=0.02, abs=0.006)  # both rounded
    c = SP.concurrency_table(cpu, [tiny_shape], [1, 2], seconds=1.0)
    assert [r["jobs"] for r in c] == [1, 2] and c[0]["scaling_vs_first"] == 1.0
    assert c[1]["aggregate_images_per_s"] == pytest.approx(2 * c[1]["per_job_images_per_s"], rel=0.01)


def test_group_rows_count_the_same_work_both_ways(tiny_shape):
    """The group and the loop step the same S seeds on the same batch: the rows hold both rates, their ratio,
    and TFLOP/s from the FLOPs of one step (ALP: PGD-5 on the batch, then clean + adversarial forward-backward)."""
    cpu = torch.device("cpu")
    rows = SP.group_table(cpu, [tiny_shape], [1, 3], steps=2, warmup=1)
    assert [r["seeds"] for r in rows] == [1, 3]
    for r in rows:
        assert r["group_images_per_s"] > 0 and r["loop_images_per_s"] > 0
        assert r["group_vs_loop"] == pytest.approx(r["group_images_per_s"] / r["loop_images_per_s"], rel=0.02, abs=0.006)
        # each number rounded (images/s to 0.1, the others to 4 significant digits): 1% covers a rate of 10 images/s
        assert r["group_tflop_per_s"] == pytest.approx(r["group_images_per_s"] * r["mflop_per_image"] / 1e6, rel=1e-2)
        assert 0 < r["pct_of_fp32_peak"] < 100
    assert rows[0]["mflop_per_image"] == rows[1]["mflop_per_image"] > 0  # per image, whatever the group size
