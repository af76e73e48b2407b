"""What the report's figures show, checked against the run files behind them.

A small parameter set (Fashion-MNIST by name, so class names apply; three seeds; a lambda sweep; a checkpoint
run) gets hand-written run files (no training), its figures are rendered by their notebooks, and each figure's
SVG (its text kept as text: figures.style) is read back: titles, legends, tick labels and panel titles are
compared with numbers recomputed here from the run files, never through aalp.report's functions."""
import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import BIN, CI_PARAMS

from aalp import config as C
from aalp.core.analysis import contribution_summary
from aalp.report import figdata, items

D = "fmnist"
SEEDS = [0, 1, 2]
METHODS = ["raw", "adv", "alp", "aalp"]
CAM_SAMPLES = 7  # more than the 6 rows the grids used to draw
CAM_METRIC_SAMPLES = 30  # the images behind the CAM metrics: not the grid's 7
FEATURES = 64
EPOCHS = 4
STEPS = [4, 8, 12]
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
LABEL = {"raw": "RAW", "adv": "ADV", "alp": "ALP", "aalp": "AALP"}
ITEMS = ["fig01", "fig02", "fig04", "fig06", "fig07", "fig08", "fig09", "fig10", "fig11"]


def params() -> dict:
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["seeds"], p["run_seeds"] = SEEDS, {}
    p["datasets"] = {D: {"source": "fashion_mnist"}}
    p["experiments"] = {D: {**p["experiments"]["synthetic"], "epochs": EPOCHS, "methods": METHODS}}
    p["methods"]["aalp"]["lambda"] = 0.5
    p["sweeps"] = [{"dataset": D, "method": "aalp", "param": "lambda", "values": [0.25, 1.0]}]
    p["training"].update(checkpoint_every=4, checkpoint_runs=[f"{D}/aalp"])
    p["evaluation"].update(attacks=["fgsm", "pgd10", "cw10"], n_samples=40)
    p["evaluation"].pop("autoattack_samples", None)
    p["analysis"].update(cam_samples=CAM_SAMPLES, cam_metric_samples=CAM_METRIC_SAMPLES)
    return p


def _write_runs(cfg: dict, root: Path) -> None:
    """Run files of every run: eval/metrics.json and records.parquet; for the main runs analysis/summary.json,
    contributions.csv and cam.npz; ALP's probe.parquet, history.csv of ALP and AALP, AALP's checkpoint series."""
    main = set(C.runs(cfg, sweeps=False))
    for i, (d, m, s) in enumerate(C.runs(cfg)):
        rng = np.random.default_rng(100 + i)
        rd = root / f"runs/{d}/{m}/s{s}"
        (rd / "eval").mkdir(parents=True)
        acc = {k: float(rng.uniform(20, 90)) for k in ("clean", "fgsm", "pgd10", "cw10")}
        (rd / "eval/metrics.json").write_text(json.dumps({"accuracy": acc}))
        n = 40
        label = rng.integers(0, 10, n)
        clean_ok = rng.random(n) < 0.85
        adv_ok = rng.random(n) < 0.3 + 0.2 * s  # the seeds' Consistent shares differ
        pd.DataFrame({"sample": np.arange(n), "label": label,
                      "clean_pred": np.where(clean_ok, label, (label + 1) % 10),
                      "train_pred": np.where(clean_ok & adv_ok, label, (label + 2) % 10),
                      "clean_conf": rng.random(n), "train_conf": rng.random(n)}).to_parquet(rd / "eval/records.parquet")
        if (d, m, s) not in main:
            continue
        (rd / "analysis").mkdir()
        c = rng.exponential(1.0, FEATURES)
        c[rng.permutation(FEATURES)[:10 + 5 * METHODS.index(m) + s]] = 0.0  # dead features, per model and seed
        pd.DataFrame({"feature": np.arange(FEATURES), "c": c}).to_csv(rd / "analysis/contributions.csv", index=False)
        summ = {**contribution_summary(c), "cam_area_adv": float(rng.random()), "cam_on_object_adv": float(rng.random()),
                "cam_metric_samples": CAM_METRIC_SAMPLES, "cam_samples": CAM_SAMPLES}
        (rd / "analysis/summary.json").write_text(json.dumps(summ))
        k = CAM_SAMPLES
        cam_adv = rng.random((k, 28, 28)).astype(np.float16)
        if m in ("raw", "adv"):
            cam_adv[0] = 0  # the attack won: no positive evidence for the true class
        cam_label = (np.arange(k) * 3 + 1) % 10
        np.savez(rd / "analysis/cam.npz", x=rng.random((k, 1, 28, 28)).astype(np.float16),
                 x_adv=rng.random((k, 1, 28, 28)).astype(np.float16), cam_clean=rng.random((k, 28, 28)).astype(np.float16),
                 cam_adv=cam_adv, label=cam_label, pred_adv=np.where(np.arange(k) % 2 == 0, cam_label, (cam_label + 4) % 10),
                 index=np.arange(k))
        if m in ("alp", "aalp"):
            pd.DataFrame({"epoch": np.arange(1, EPOCHS + 1), "probe_alp": rng.random(EPOCHS),
                          "probe_clean_acc": rng.random(EPOCHS), "probe_adv_acc": rng.random(EPOCHS)}).to_csv(
                rd / "history.csv", index=False)
        if m == "alp":
            probe = [{"sample": j, "epoch": e, "alp": float(rng.random()), "clean_correct": int(j % 4 != 0),
                      "adv_correct": int(j % 2 == 0)} for e in range(1, EPOCHS + 1) for j in range(20)]
            pd.DataFrame(probe).to_parquet(rd / "probe.parquet")
        if m == "aalp":
            pd.DataFrame({"step": STEPS, "n50": rng.integers(5, 20, 3), "n90": rng.integers(20, 40, 3),
                          "gini": rng.random(3), "cam_area_adv": rng.random(3), "cam_on_object_adv": rng.random(3)}).to_csv(
                rd / "analysis/checkpoints.csv", index=False)
            ck = rng.random((len(STEPS), k, 28, 28)).astype(np.float16)
            ck[1, 2] = 0
            np.savez(rd / "analysis/checkpoint_cams.npz", steps=np.array(STEPS), cam_adv=ck,
                     x_adv=rng.random((len(STEPS), k, 1, 28, 28)).astype(np.float16))


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """(cfg, folder): the run files and the rendered figures in reports/."""
    root = tmp_path_factory.mktemp("figures_set")
    cfg = C.validate(params())
    _write_runs(cfg, root)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        for name in ITEMS:
            items.report_item(cfg, name, "reports")
    return cfg, root


def svg_texts(path: Path) -> list[str]:
    """The text of every text element of an SVG figure (matplotlib writes each line of a text as its own)."""
    out = []
    for el in ET.parse(path).getroot().iter():
        if el.tag.endswith("}text") or el.tag == "text":
            out.append(" ".join(t.strip() for t in el.itertext() if t.strip()))
    return out


def texts(root: Path, name: str) -> list[str]:
    return svg_texts(root / f"reports/figures/{name}.svg")


def _run(root, m, s, f):
    return root / f"runs/{D}/{m}/s{s}/{f}"


def _records(root, m, s) -> pd.DataFrame:
    return pd.read_parquet(_run(root, m, s, "eval/records.parquet"))


def _consistent(r: pd.DataFrame) -> pd.Series:
    return (r.clean_pred == r.label) & (r.train_pred == r.label)


# ----------------------------------------------------------------------------- Fig. 11
def test_fig11_titles_give_the_share_of_the_seed_drawn(drawn):
    _, root = drawn
    t = texts(root, "fig11")
    for m in ("alp", "aalp"):
        r0 = _records(root, m, 0)
        n_cons = int(_consistent(r0).sum())
        pattern = rf"{D}/{LABEL[m]}, seed 0: Consistent ([0-9.]+) % \((\d+) of (\d+)\)"
        hits = [re.search(pattern, x) for x in t if re.search(pattern, x)]
        assert len(hits) == 1, (m, t)
        assert float(hits[0].group(1)) == pytest.approx(100 * n_cons / len(r0), abs=0.05)
        assert (int(hits[0].group(2)), int(hits[0].group(3))) == (n_cons, len(r0))
        means = [100 * _consistent(_records(root, m, s)).mean() for s in SEEDS]
        assert abs(np.mean(means) - 100 * n_cons / len(r0)) > 0.1  # the seeds differ: a mean in the title would show
        mean = [re.search(r"mean over 3 seeds: ([0-9.]+) %", x) for x in t]
        assert any(h and float(h.group(1)) == pytest.approx(np.mean(means), abs=0.05) for h in mean), m
    legend = [x for x in t if x.startswith("Consistent (")]
    want = sorted(f"Consistent ({int(_consistent(_records(root, m, 0)).sum())})" for m in ("alp", "aalp"))
    assert sorted(legend) == want
    data = pd.read_csv(root / "reports/data/fig11.csv")
    for m in ("alp", "aalp"):  # the rows drawn are seed 0's, all of them
        d = data[(data.method == m) & data.drawn]
        assert set(d.seed) == {0} and len(d) == len(_records(root, m, 0))


# ----------------------------------------------------------------------------- Figs. 1 and 7
def test_fig01_fig07_state_n50_and_the_active_features(drawn):
    _, root = drawn
    for name, methods in (("fig01", ["raw", "adv", "alp"]), ("fig07", METHODS)):
        t = texts(root, name)
        for m in methods:
            cs = [pd.read_csv(_run(root, m, s, "analysis/contributions.csv")).c.to_numpy() for s in SEEDS]
            active = np.mean([(c > 0).sum() for c in cs])
            n50 = np.mean([json.loads(_run(root, m, s, "analysis/summary.json").read_text())["n50"] for s in SEEDS])
            assert f"{LABEL[m]}: n50 {n50:.0f}, {active:.0f} of {FEATURES} active" in t, (name, m, t)
            claims = pd.read_csv(root / f"reports/claims/{name}.csv")
            row = claims[(claims.method == m) & (claims.claim == "active")]
            assert row["mean"].item() == pytest.approx(active)
        html = (root / f"reports/{name}.html").read_text()
        assert "Active feature" in html and "nonzero contribution" in html


def test_fig07_caption_states_the_papers_claim(drawn):
    _, root = drawn
    html = (root / "reports/fig07.html").read_text()
    assert "fewer high-contribution features than ALP" in html
    assert "over more features" not in html


# ----------------------------------------------------------------------------- Grad-CAM grids
@pytest.mark.parametrize("name,methods", [("fig02", ["raw", "adv", "alp"]), ("fig08", ["adv", "alp", "aalp"])])
def test_cam_grids_draw_cam_samples_with_class_names_a_scale_and_zero_maps_marked(drawn, name, methods):
    cfg, root = drawn
    t = texts(root, name)
    z = {m: np.load(_run(root, m, 0, "analysis/cam.npz")) for m in methods}
    labels = z[methods[0]]["label"]
    assert [x for x in t if x.startswith("clean: ")] == [f"clean: {FASHION[k]}" for k in labels]  # one row each
    assert len(labels) == cfg["analysis"]["cam_samples"] == CAM_SAMPLES
    for m in methods:
        want = [f"{LABEL[m]}: {FASHION[p]}" + ("" if p == y else " ✗") for p, y in zip(z[m]["pred_adv"], labels)]
        assert [x for x in t if x.startswith(f"{LABEL[m]}: ")] == want
    zero = sum(int((z[m]["cam_adv"].reshape(len(labels), -1).max(1) == 0).sum()) for m in methods)
    assert zero > 0 and sum(x.startswith("Grad-CAM zero") for x in t) == zero
    assert "Grad-CAM / the map's own maximum" in t


@pytest.mark.parametrize("name", ["fig02", "fig08", "fig09", "fig10"])
def test_every_cam_metric_page_states_how_many_images_its_metrics_are_over(drawn, name):
    """The count comes from the analysis files (summary.json: 30 here), the grid's from the set (7): both on the
    page, in its data file and, for the verdicts, as a claim row; never the old 'all analysed samples'."""
    _, root = drawn
    html = (root / f"reports/{name}.html").read_text()
    assert f"over the first {CAM_METRIC_SAMPLES} test images (the same images for every model and seed)" in html
    assert ("the grid draws the first 7" in html) == (name != "fig09") and "all analysed samples" not in html
    assert "analysed before" not in html  # every summary records its count
    claims = pd.read_csv(root / f"reports/claims/{name}.csv")
    assert set(claims[claims.claim == "cam_metric_samples"]["mean"]) == {CAM_METRIC_SAMPLES}
    if name == "fig09":
        data = pd.read_csv(root / "reports/data/fig09.csv")
        assert set(data.cam_metric_samples) == {CAM_METRIC_SAMPLES} and data.cam_metric_recorded.all()
    else:
        z = np.load(root / f"reports/data/{name}.npz")
        counts = [k for k in z.files if k.endswith("/cam_metric_samples")]
        assert counts and all(z[k].tolist() == [CAM_METRIC_SAMPLES] * len(SEEDS) for k in counts)


def test_fig10_draws_cam_samples_per_checkpoint_with_class_names(drawn):
    _, root = drawn
    t = texts(root, "fig10")
    cam = np.load(_run(root, "aalp", 0, "analysis/cam.npz"))
    ck = np.load(_run(root, "aalp", 0, "analysis/checkpoint_cams.npz"))
    assert [x for x in t if x.startswith("clean: ")] == [f"clean: {FASHION[k]}" for k in cam["label"]]
    assert sum(x.startswith("step ") for x in t) == CAM_SAMPLES * len(STEPS)
    zero = int((ck["cam_adv"].reshape(len(STEPS), CAM_SAMPLES, -1).max(2) == 0).sum())
    assert zero == 1 and sum(x.startswith("Grad-CAM zero") for x in t) == zero
    assert "Grad-CAM / the map's own maximum" in t


# ----------------------------------------------------------------------------- Fig. 6
def test_fig06_includes_the_base_run_with_a_tick_per_value(drawn):
    _, root = drawn
    data = pd.read_csv(root / "reports/data/fig06.csv")
    base = data[data.value == 0.5]
    assert set(base.run) == {"aalp"} and sorted(set(base.seed)) == SEEDS
    for s in SEEDS:
        acc = json.loads(_run(root, "aalp", s, "eval/metrics.json").read_text())["accuracy"]
        for k in ("clean", "pgd10", "cw10"):
            assert base[(base.seed == s) & (base.metric == k)].accuracy.item() == pytest.approx(acc[k])
    t = texts(root, "fig06")
    assert {"0.25", "0.5", "1", "(AALP)"} <= set(t)  # a tick at each value run, the base run's named (2nd line)
    assert not [x for x in t if "10^" in x or "\\times" in x or "×" in x]  # no 3×10⁻¹ minor labels


# ----------------------------------------------------------------------------- Fig. 4
def test_fig04_title_names_the_fitted_epochs(drawn):
    _, root = drawn
    epochs = sorted(pd.read_parquet(_run(root, "alp", 0, "probe.parquet")).epoch.unique())
    half = epochs[len(epochs) // 2:]  # the second half of training: epochs 3-4 of 4
    assert f"{D}: ALP training; dashed: fit over epochs {half[0]}–{half[-1]}" in texts(root, "fig04")
    data = pd.read_csv(root / "reports/data/fig04.csv")
    assert sorted(data.dropna(subset=["fit"]).epoch.unique()) == half


# ----------------------------------------------------------------------------- Fig. 9
def test_fig09_legends_in_words(drawn):
    _, root = drawn
    t = texts(root, "fig09")
    words = {"n50": "n50: features holding 50 % of the contribution",
             "n90": "n90: features holding 90 % of the contribution",
             "gini": "Gini coefficient of the contributions",
             "cam_area_adv": "Grad-CAM area: share of pixels above half the peak",
             "cam_on_object_adv": "Grad-CAM on the object: share of the map's mass"}
    assert sorted(x for x in t if x in words.values()) == sorted(words.values())  # each drawn once, in words
    assert not set(words) & set(t)  # no bare column name


# ----------------------------------------------------------------------------- class names
def test_class_names_by_source():
    cfg = {"datasets": {"a": {"source": "mnist"}, "b": {"source": "cifar10"}, "c": {"source": "synthetic"},
                        "d": {"source": "svhn"}, "e": {"source": "fashion_mnist"}}}
    assert list(figdata.class_names(cfg, "a")) == [str(k) for k in range(10)]
    assert list(figdata.class_names(cfg, "d")) == [str(k) for k in range(10)]
    assert figdata.class_names(cfg, "b")[0] == "airplane" and figdata.class_names(cfg, "b")[9] == "truck"
    assert list(figdata.class_names(cfg, "c")) == [f"class {k}" for k in range(10)]
    assert list(figdata.class_names(cfg, "e")) == FASHION
