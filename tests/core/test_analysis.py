import copy

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from aalp import config as C
from aalp.core import analysis, data, models, training
from aalp.artifacts import read_json

SHAPES = {"lenet_small": (1, 28, 28), "resnet9_small": (3, 32, 32)}


def _model(name: str, seed: int = 0) -> models.Classifier:
    torch.manual_seed(seed)
    shape = SHAPES[name]
    m = models.build(name, shape, [0.4] * shape[0], [0.3] * shape[0])
    for mod in m.modules():  # batch-norm statistics that differ from train mode's batch statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _images(name: str, n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand((n, *SHAPES[name]), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- contribution_summary
def test_summary_of_hand_values():
    s = analysis.contribution_summary([1.0, 3.0, 4.0, 2.0])  # sorted 4, 3, 2, 1; total 10
    assert s["n50"] == 2  # 4 + 3 = 7 >= 5, 4 < 5
    assert s["n90"] == 3  # 4 + 3 + 2 = 9 >= 9, 7 < 9
    # ascending 1, 2, 3, 4 with weights 2i - 5 = -3, -1, 1, 3: (-3 - 2 + 3 + 12) / (4 * 10)
    assert s["gini"] == pytest.approx(0.25)
    assert s["feature_dim"] == 4


def test_summary_of_uniform_and_one_hot():
    u = analysis.contribution_summary(np.full(10, 0.1))  # rounding must not push n50 to 6
    assert (u["n50"], u["n90"], u["gini"]) == (5, 9, pytest.approx(0.0, abs=1e-12))
    one = analysis.contribution_summary(np.eye(8)[3] * 2.5)
    assert (one["n50"], one["n90"]) == (1, 1) and one["gini"] == pytest.approx(7 / 8)


def test_summary_of_zero_and_invalid_contributions():
    assert analysis.contribution_summary(np.zeros(6)) == {"n50": 0, "n90": 0, "gini": 0.0, "feature_dim": 6}
    for bad in ([], [1.0, -0.5], [1.0, np.nan]):
        with pytest.raises(ValueError):
            analysis.contribution_summary(bad)


# ----------------------------------------------------------------------------- feature_contributions
def _per_sample_loop(model, x, y):
    """Eq. 5 one sample at a time: |h * dCE/dh| of each sample's own loss, averaged."""
    rows = []
    for i in range(len(x)):
        h = model.features(x[i:i + 1]).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model.classifier(h), y[i:i + 1]), h)
        rows.append((h * g).abs()[0])
    return torch.stack(rows).mean(0).detach().double().numpy()


def test_contributions_match_a_per_sample_loop_and_ignore_the_batch_size():
    model = _model("resnet9_small").train()  # the function must switch to eval mode itself
    x_u8 = (_images("resnet9_small", 7) * 255).round().to(torch.uint8)
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    x = data.to_float(x_u8.clone())
    want = _per_sample_loop(model.eval(), x, y)
    model.train()
    for bs in (7, 3):
        got = analysis.feature_contributions(model, x_u8.numpy(), y.numpy(), bs, "cpu")
        assert got.shape == (model.feature_dim,) and got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9 * want.max())
    assert model.training  # mode restored
    # float input in [0, 1] gives the same as uint8 input
    np.testing.assert_allclose(analysis.feature_contributions(model, x, y, 4, "cpu"), want, rtol=1e-4,
                               atol=1e-9 * want.max())


# ----------------------------------------------------------------------------- Grad-CAM
@pytest.mark.parametrize("name", ["lenet_small", "resnet9_small"])
def test_captum_grad_cam_matches_the_direct_implementation(name):
    model = _model(name).train()
    x = _images(name, 6)
    y = torch.tensor([0, 5, 6, 7, 8, 6])  # classes whose maps are not all zero on both random models
    cam = analysis.grad_cam(model, x, y)
    direct = analysis.grad_cam_direct(model, x, y)
    assert cam.shape == direct.shape == (6, *SHAPES[name][1:])
    assert model.training  # eval mode inside, mode restored
    assert (cam >= 0).all() and (cam.flatten(1).amax(1) > 0).sum() >= 4  # not a trivial all-zero comparison
    assert torch.allclose(cam, direct, rtol=1e-4, atol=1e-6 * float(cam.max()))
    # each sample's map is its own true class's, in eval mode: the same as one sample at a time
    model.eval()
    single = torch.cat([analysis.grad_cam(model, x[i:i + 1], y[i:i + 1]) for i in range(len(x))])
    assert torch.allclose(cam, single, rtol=1e-4, atol=1e-6 * float(cam.max()))
    other = analysis.grad_cam(model, x, (y + 1) % 10)
    assert not torch.allclose(cam, other, rtol=1e-4, atol=1e-6 * float(cam.max()))


def test_cam_summary_of_hand_made_maps():
    cam = torch.zeros(3, 4, 4)
    cam[0] = torch.arange(16.0).view(4, 4)  # max 15: the 8 values 8..15 are above 7.5
    cam[1, 0, :] = torch.tensor([4.0, 2.0, 1.0, 0.0])  # max 4: only 4 is above 2 (2 itself is not): 1/16
    x = torch.zeros(3, 1, 4, 4)
    x[:, 0, :, :2] = 0.5  # object: the two left columns
    x[:, 0, 0, 2] = 0.1  # not above the 0.1 threshold
    s = analysis.cam_summary(cam, x)
    assert s["cam_area"] == pytest.approx((8 / 16 + 1 / 16 + 0) / 3)  # the all-zero map counts as area 0
    # on-object share: sample 0: (0+1+4+5+8+9+12+13) / 120; sample 1: 6 / 7; sample 2 (no mass) skipped
    assert s["cam_on_object"] == pytest.approx((52 / 120 + 6 / 7) / 2)
    rgb = analysis.cam_summary(cam, x.repeat(1, 3, 1, 1))
    assert rgb["cam_on_object"] is None and rgb["cam_area"] == pytest.approx(s["cam_area"])
    assert analysis.cam_summary(torch.zeros(2, 4, 4), x[:2])["cam_on_object"] is None
    area, on = analysis.cam_per_image(cam, x)  # each map's own values, of which the summary is the mean
    np.testing.assert_allclose(area, [8 / 16, 1 / 16, 0])
    np.testing.assert_allclose(on, [52 / 120, 6 / 7, np.nan])
    assert np.isnan(analysis.cam_per_image(cam, x.repeat(1, 3, 1, 1))[1]).all()


# ----------------------------------------------------------------------------- the stage
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch ADV run (8 steps, checkpoints at steps 3 and 6) on a tiny synthetic 1x28x28 set."""
    import yaml

    from conftest import CI_PARAMS

    tmp = tmp_path_factory.mktemp("analysis")
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["data"]["dir"] = str(tmp / "data")
    p["datasets"] = {"synthetic": {"source": "synthetic", "shape": [1, 28, 28], "n_train": 256, "n_test": 48, "seed": 0}}
    p["experiments"] = {"synthetic": dict(p["experiments"]["synthetic"], epochs=1, batch_size=32, methods=["adv"])}
    p["methods"] = {"adv": {"objective": "adv", "attack": {"eps": 0.3}}}  # an override analyze must not use
    p["training"].update(probe_size=16, checkpoint_every=3, device="cpu", checkpoint_runs=["synthetic/adv"])
    p["analysis"] = {"samples": 40, "cam_samples": 2, "cam_metric_samples": 5, "batch_size": 3}  # batches of 3
    p["sweeps"], p["run_seeds"] = [], {}
    p["evaluation"].pop("autoattack_methods", None)  # the CI set's names ALP and AALP, absent here
    cfg = C.validate(p)
    data.prepare(cfg, "synthetic")
    training.train(cfg, C.run_spec(cfg, "synthetic", "adv", 0), tmp / "run")
    return cfg, tmp / "run"


def test_analyze_writes_consistent_outputs(trained):
    cfg, run = trained
    summary = analysis.analyze(cfg, "synthetic", "adv", 0, run)
    out = run / "analysis"
    d = data.load_prepared(cfg["data"]["dir"], "synthetic")
    eps = cfg["experiments"]["synthetic"]["attack"]["eps"]

    contrib = pd.read_csv(out / "contributions.csv")
    assert list(contrib.columns) == ["feature", "c"] and contrib.feature.tolist() == list(range(64))
    s = read_json(out / "summary.json")
    again = analysis.contribution_summary(contrib.c.to_numpy())
    assert (s["n50"], s["n90"], s["feature_dim"]) == (again["n50"], again["n90"], 64)
    assert s["gini"] == pytest.approx(again["gini"], rel=1e-6)
    assert s["samples"] == 40 and s["cam_metric_samples"] == 5 and s["cam_samples"] == 2 and s["seed"] == 0
    assert s["code_version"]
    assert {k: s[k] for k in summary} == pytest.approx(summary)
    model = training.load_model(run / "model.pt")
    np.testing.assert_allclose(contrib.c, analysis.feature_contributions(model, d.test_x[:40], d.test_y[:40], 40, "cpu"),
                               rtol=1e-4, atol=1e-12)

    cam = np.load(out / "cam.npz")  # the grid: 2 images with their maps; the metrics: 5 images' values
    assert cam["index"].tolist() == list(range(2)) and cam["label"].tolist() == d.test_y[:2].tolist()
    for key, shape in (("x", (2, 1, 28, 28)), ("x_adv", (2, 1, 28, 28)), ("cam_clean", (2, 28, 28)),
                       ("cam_adv", (2, 28, 28))):
        assert cam[key].shape == shape and cam[key].dtype == np.float16, key
    assert cam["pred_adv"].shape == (2,)
    np.testing.assert_allclose(cam["x"], d.test_x[:2] / 255.0, atol=1e-3)
    for key in ("area_clean", "area_adv", "on_object_clean", "on_object_adv"):
        assert cam[key].shape == (5,) and cam[key].dtype == np.float64, key
    for v in ("clean", "adv"):  # the summary's metrics are the means over the 5 metric images, not the grid's 2
        assert s[f"cam_area_{v}"] == pytest.approx(cam[f"area_{v}"].mean(), rel=1e-12)
        assert s[f"cam_on_object_{v}"] == pytest.approx(np.nanmean(cam[f"on_object_{v}"]), rel=1e-12)
    # the grid's maps are the first metric images' maps: recomputed from the stored clean map, the same area
    grid_area, _ = analysis.cam_per_image(torch.from_numpy(cam["cam_clean"].astype(np.float32)),
                                          torch.from_numpy(cam["x"].astype(np.float32)))
    np.testing.assert_allclose(grid_area, cam["area_clean"][:2], atol=0.02)
    x5 = torch.from_numpy(d.test_x[:5] / 255.0).float()
    again = analysis.cam_summary(analysis.grad_cam(model, x5, torch.from_numpy(d.test_y[:5]).long()), x5)
    assert s["cam_area_clean"] == pytest.approx(again["cam_area"], abs=1e-6)
    gap = np.abs(cam["x_adv"].astype(np.float32) - cam["x"].astype(np.float32)).max()
    assert 0.5 * eps < gap <= eps + 2e-3  # the dataset's attack (eps 0.1), not the method's override (0.3)
    for key in ("cam_area_clean", "cam_area_adv", "cam_on_object_clean", "cam_on_object_adv"):
        assert 0 <= s[key] <= 1, key  # 1-channel images: the on-object shares are defined

    ck = pd.read_csv(out / "checkpoints.csv")
    assert ck.step.tolist() == [3, 6]
    assert list(ck.columns) == ["step", "n50", "n90", "gini", "cam_area_adv", "cam_on_object_adv"]
    cc = np.load(out / "checkpoint_cams.npz")
    assert cc["steps"].tolist() == [3, 6]
    assert cc["cam_adv"].shape == (2, 2, 28, 28) and cc["x_adv"].shape == (2, 2, 1, 28, 28)
    assert cc["area_adv"].shape == cc["on_object_adv"].shape == (2, 5)
    np.testing.assert_allclose(ck.cam_area_adv, cc["area_adv"].mean(1), rtol=1e-12)
    np.testing.assert_allclose(ck.cam_on_object_adv, np.nanmean(cc["on_object_adv"], 1), rtol=1e-12)
    assert cc["cam_adv"].dtype == cc["x_adv"].dtype == np.float16
    # the checkpoint rows are those checkpoints' own summaries
    m3 = training.load_model(run / "checkpoints" / "step0000003.pt")
    c3 = analysis.contribution_summary(analysis.feature_contributions(m3, d.test_x[:40], d.test_y[:40], 40, "cpu"))
    assert (ck.n50[0], ck.n90[0]) == (c3["n50"], c3["n90"]) and ck.gini[0] == pytest.approx(c3["gini"], rel=1e-5)

    # without checkpoints the series files hold no rows (and no longer those of an earlier analysis)
    for f in (run / "checkpoints").glob("*.pt"):
        f.rename(run / f.name)
    try:
        analysis.analyze(cfg, "synthetic", "adv", 0, run)
    finally:
        for f in run.glob("step*.pt"):
            f.rename(run / "checkpoints" / f.name)
    assert pd.read_csv(out / "checkpoints.csv").empty  # fixed outputs: the series files exist, without rows
    empty = np.load(out / "checkpoint_cams.npz")
    assert empty["cam_adv"].shape == (0, 2, 28, 28) and empty["area_adv"].shape == (0, 5)
    assert (out / "summary.json").exists() and read_json(out / "summary.json")["checkpoint_steps"] == []
