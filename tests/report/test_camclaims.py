"""The Grad-CAM counts and the verdicts of Figs. 8-10 (report/camclaims.py): the count read from what an
analysis holds (an old analysis without the key included), the pages' sentence, and the claims' parts from
hand-made claim files, worked out by hand."""
import os
from pathlib import Path

import numpy as np
import pytest

from aalp import config as C
from aalp.report import camclaims as CC, figdata, verdicts as V
from aalp.report.claims import claims_frame

REPO = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)


def test_metric_count_of_an_analysis_with_and_without_the_key():
    assert CC.metric_count({"cam_metric_samples": 500, "cam_samples": 8}) == (500, True)
    assert CC.metric_count({"cam_samples": 8}) == (8, False)  # written before the key: its metrics are over 8


def test_count_text_states_the_count_the_grid_and_an_old_analysis():
    new = CC.count_text([500, 500], [True, True], grid=8)
    assert new == ("CAM metrics (area, on-object share) over the first 500 test images (the same images for every "
                   "model and seed); the grid draws the first 8.")
    old = CC.count_text([8, 8, 8], [False, False, False], grid=8)
    assert "over the first 8 test images" in old and "analysed before analysis.cam_metric_samples" in old
    assert "differs between runs" in CC.count_text([16, 500], [True, True]) and "16–500" in CC.count_text([16, 500], [True, True])
    assert CC.count_text([], []) == ""


def test_a_published_set_analysed_with_8_reads_8_not_its_params_default():
    """results/mnist_cpu was analysed with 8 images and its params.yaml lacks analysis.cam_metric_samples: the
    schema's default fills it in (the set still loads for publish --rerender), and the report reads 8 from the
    analysis files and says so."""
    root = REPO / "results" / "mnist_cpu"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        cfg = C.load("params.yaml")
        counts, recorded = figdata.metric_counts(cfg, "mnist", "aalp")
        arrays, claims = figdata.cam_grid(cfg, "fig08")
        data, _, c10 = figdata.checkpoint_series(cfg)
    finally:
        os.chdir(cwd)
    assert "cam_metric_samples" not in (root / "params.yaml").read_text()
    assert cfg["analysis"]["cam_metric_samples"] > 8  # the default, which is not what this set ran
    assert counts.tolist() == [8] * len(counts) and not recorded.any()
    assert set(claims[claims.claim == "cam_metric_samples"]["mean"]) == {8.0}
    assert set(c10[c10.claim == "cam_metric_samples"]["mean"]) == {8.0} and set(data.cam_metric_samples) == {8}
    text = CC.npz_count_text(_Npz(arrays))
    assert "over the first 8 test images" in text and "the grid draws the first 8" in text and "analysed before" in text


class _Npz:
    """A dict with the .files of an np.load()ed .npz."""
    def __init__(self, arrays):
        self.a = arrays
        self.files = list(arrays)

    def __getitem__(self, k):
        return self.a[k]


# ----------------------------------------------------------------------------- the claims of Figs. 8-10
def write_claims(root: Path, per_item: dict) -> Path:
    """per_item: {item: {(dataset, method, claim): per-seed values}} as claims/<item>.csv."""
    (root / "claims").mkdir(parents=True, exist_ok=True)
    for item, claims in per_item.items():
        rows = [{"dataset": d, "method": m, "claim": c, "seed": s, "value": v}
                for (d, m, c), values in claims.items() for s, v in zip(SEEDS, values)]
        claims_frame(rows).to_csv(root / "claims" / f"{item}.csv", index=False)
    return root


CKPT = {  # on-object share falls over three checkpoints, the area rises, n50 falls
    ("mn", "aalp", "step1200/cam_on_object_adv"): [0.20, 0.22, 0.18], ("mn", "aalp", "step3600/cam_on_object_adv"): [0.10, 0.09, 0.08],
    ("mn", "aalp", "step2400/cam_on_object_adv"): [0.15, 0.15, 0.15],
    ("mn", "aalp", "step1200/cam_area_adv"): [0.3, 0.3, 0.3], ("mn", "aalp", "step3600/cam_area_adv"): [0.5, 0.4, 0.45],
    ("mn", "aalp", "cam_metric_samples"): [500, 500, 500],
    # 3-channel data: no on-object share, the area decides
    ("cf", "aalp", "step1000/cam_area_adv"): [0.5, 0.6, 0.7], ("cf", "aalp", "step2000/cam_area_adv"): [0.4, 0.45, 0.6],
    # one checkpoint: nothing to compare
    ("one", "aalp", "step500/cam_area_adv"): [0.5, 0.6, 0.7],
}
N50 = {("mn", "aalp", "step1200/n50"): [150, 148, 156], ("mn", "aalp", "step3600/n50"): [140, 150, 146],
       ("mn", "aalp", "step2400/gini"): [0.6, 0.6, 0.6]}
FIG08 = {("mn", "adv", "cam_on_object_adv"): [0.20, 0.19, 0.22], ("mn", "alp", "cam_on_object_adv"): [0.05, 0.05, 0.08],
         ("mn", "aalp", "cam_on_object_adv"): [0.10, 0.08, 0.12], ("mn", "aalp", "cam_area_adv"): [0.3, 0.3, 0.3],
         ("mn", "aalp", "cam_metric_samples"): [8, 8, 8], ("mn", "alp", "cam_metric_samples"): [8, 8, 8],
         ("mn", "adv", "cam_metric_samples"): [8, 8, 8]}


@pytest.fixture
def parts(tmp_path):
    return {(p.claim_id, p.dataset): p for p in CC.cam_parts(write_claims(tmp_path, {"fig08": FIG08, "fig09": N50,
                                                                                       "fig10": CKPT}))}


def test_checkpoint_focus_is_the_on_object_share_last_minus_first_checkpoint(parts):
    p = parts[("checkpoint_cam_focus", "mn")]
    assert p.values == pytest.approx([0.10 - 0.20, 0.09 - 0.22, 0.08 - 0.18])  # step 3600 − step 1200, per seed
    assert p.direction == +1 and p.unit == CC.ON_OBJECT_UNIT and p.counted and p.state is None
    assert "on-object share at step 3,600 − at step 1,200 (AALP)" == p.label
    # the span against the paper's interval, and the images each value is over
    assert "3 checkpoints at steps 1,200–3,600: last − first is 2,400 steps" in p.note
    assert "first 3,600 training steps, 0.36 of one of the paper's 10,000-step intervals" in p.note
    assert "a mean over the first 500 test images" in p.note


def test_without_an_on_object_share_the_area_decides_and_one_checkpoint_is_untestable(parts):
    p = parts[("checkpoint_cam_focus", "cf")]
    assert p.values == pytest.approx([-0.1, -0.15, -0.1]) and p.direction == -1 and p.unit == CC.AREA_UNIT
    one = parts[("checkpoint_cam_focus", "one")]
    assert one.state == "untestable" and one.values == [] and "one checkpoint" in one.note


def test_checkpoint_n50_is_last_minus_first_checkpoint(parts):
    p = parts[("checkpoint_fewer_features", "mn")]
    assert p.values == pytest.approx([-10, 2, -10]) and p.direction == -1 and p.unit == CC.N50_UNIT
    assert "steps 1,200–3,600" in p.note and "test images" not in p.note  # n50 is not a CAM metric


def test_fig08_parts_pair_aalp_with_adv_and_alp(tmp_path):
    root = write_claims(tmp_path, {"fig08": FIG08})
    got = {p.label: p for p in CC.aalp_parts(CC.read_claims(root, "fig08"))}
    assert set(got) == {"on-object share AALP − ADV", "on-object share AALP − ALP"}
    assert got["on-object share AALP − ADV"].values == pytest.approx([-0.10, -0.11, -0.10])
    assert got["on-object share AALP − ALP"].values == pytest.approx([0.05, 0.03, 0.04])
    assert all(p.direction == +1 and "over the first 8 test images" in p.note for p in got.values())


def test_the_verdict_table_holds_the_cam_claims_with_their_verdicts(tmp_path):
    """verdicts() turns the parts into rows: the on-object share falls by 0.11 ± 0.03 over the checkpoints, so
    'AALP focuses on the object as training proceeds' does not hold; a folder without Figs. 8-10 has none."""
    root = write_claims(tmp_path / "a", {"fig08": FIG08, "fig09": N50, "fig10": CKPT})
    cfg = {"datasets": {}, "experiments": {}, "evaluation": {"attacks": []}, "sweeps": []}
    t = V.verdicts(cfg, root)
    row = t[(t.claim_id == "checkpoint_cam_focus") & (t.dataset == "mn")].iloc[0]
    assert row["mean"] == pytest.approx(np.mean([-0.10, -0.13, -0.10])) and row.direction == 1
    assert row.part_verdict == "does not hold" and row.verdict == "does not hold" and row["item"] == "fig10"
    assert t[(t.claim_id == "checkpoint_cam_focus") & (t.dataset == "one")].verdict.iloc[0] == "untestable"
    fig08 = t[t.claim_id == "aalp_cam_on_object"]
    assert list(fig08.part_verdict) == ["does not hold", "holds"]  # below ADV, above ALP: does not hold overall
    assert set(fig08.verdict) == {"does not hold"}
    assert {c.id for c in V.missing_claims(cfg, t)} >= {"fewer_features"}
    empty = V.verdicts(cfg, write_claims(tmp_path / "b", {}))
    assert empty.empty and {c.id for c in V.missing_claims(cfg, empty)} >= {i for i, _, _ in CC.CAM_CLAIMS}
