"""The budget curve (report item `budget`) and Table 2's anchors, on hand-made run files: snapshot metrics, final
records and a reference set written here, every expected number worked out by hand."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from aalp import config as C, layout, pipeline as P
from aalp.report import anchors as A, budget as B, budgetplan, figures as F, inputs as report_in, items, tablepages
from aalp.report.indextable2 import table2_section

from conftest import BIN, CI_PARAMS

# (method, seed, step) -> (PGD-100, AutoAttack) accuracy of the snapshot, in percent
SNAP = {("alp", 0, 4): (50.0, 40.0), ("aalp", 0, 4): (52.0, 41.0), ("alp", 1, 4): (48.0, 39.0), ("aalp", 1, 4): (51.0, 43.0),
        ("alp", 0, 8): (60.0, 50.0), ("aalp", 0, 8): (61.0, 50.0), ("alp", 1, 8): (62.0, 52.0), ("aalp", 1, 8): (60.0, 51.0)}
# the samples each final model gets wrong under PGD-100 (and under AutoAttack, which ran on the first 4)
WRONG = {("alp", 0): [0, 1, 2], ("aalp", 0): [0, 7], ("alp", 1): [1, 2], ("aalp", 1): [3, 8, 9]}


def params(**report) -> dict:
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["seeds"], p["run_seeds"], p["sweeps"] = [0, 1], {}, []
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 300}}  # 5 batches of 64 an epoch
    p["experiments"] = {"synthetic": {**p["experiments"]["synthetic"], "batch_size": 64, "methods": ["alp", "aalp"]}}
    p["training"].update(checkpoint_runs=["synthetic/alp", "synthetic/aalp"], snapshot_steps=[4, 8])
    p["evaluation"].update(attacks=["pgd100", "autoattack"], snapshot_attacks=["pgd100", "autoattack"],
                           snapshot_samples=6)
    p["report"] = report
    return p


def write_records(run: Path, wrong: list[int], n_aa: int = 4) -> None:
    label = np.arange(10)
    pgd, aa = label.copy(), label.copy()
    pgd[wrong] = 99
    aa[[w for w in wrong if w < n_aa]] = 99
    aa[n_aa:] = -1  # AutoAttack did not run there
    (run / "eval").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"sample": label, "label": label, "pgd100_pred": pgd, "autoattack_pred": aa}).to_parquet(
        run / "eval" / "records.parquet")
    (run / "eval" / "metrics.json").write_text(json.dumps({"accuracy": {}, "n_samples": 10, "n_samples_autoattack": n_aa}))


def write_set(root: Path) -> None:
    for (m, s, n), (pgd, aa) in SNAP.items():
        f = root / layout.snapshot_dir("synthetic", m, s, n) / "metrics.json"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"accuracy": {"clean": 90.0, "pgd100": pgd, "autoattack": aa}, "n_samples": 6,
                                 "n_samples_autoattack": 6, "step": n}))
    for (m, s), wrong in WRONG.items():
        write_records(root / layout.run_dir("synthetic", m, s), wrong)


def write_reference(root: Path, records: bool = True) -> None:
    """Another set: 1 epoch (5 steps) of PGD-7 training; AutoAttack on its first 2 images; seeds 0 and 1."""
    p = params()
    p["experiments"]["synthetic"]["epochs"] = 1
    p["experiments"]["synthetic"]["attack"]["steps"] = 7
    p["training"]["snapshot_steps"] = []
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(p))
    if records:
        for (m, s), wrong in {("alp", 0): [0], ("aalp", 0): [], ("alp", 1): [1, 4], ("aalp", 1): [4]}.items():
            write_records(root / layout.run_dir("synthetic", m, s), wrong, n_aa=2)
    else:
        t = pd.DataFrame([{"dataset": "synthetic", "method": m, "metric": a, "n_samples": n, "seeds": "0;1", "values": v}
                          for m, a, n, v in (("alp", "pgd100", 10, "80.0;70.0"), ("aalp", "pgd100", 10, "85.0;71.0"),
                                             ("alp", "autoattack", 2, "50.0;50.0"), ("aalp", "autoattack", 2, "100.0;50.0"))])
        (root / "reports" / "tables").mkdir(parents=True)
        t.to_csv(root / "reports" / "tables" / "table2.csv", index=False)


@pytest.fixture
def handmade(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_set(tmp_path)
    return tmp_path


def _point(data, attack, point, step=None):
    g = data[(data.attack == attack) & (data.point == point)]
    return (g if step is None else g[g.step == step]).iloc[0]


def test_snapshot_runs_and_the_final_step():
    cfg = C.validate(params())
    assert layout.snapshot_runs(cfg) == [("synthetic", m, s, n) for m in ("alp", "aalp") for s in (0, 1) for n in (4, 8)]
    assert layout.snapshot_dir("mnist", "alp", 3, 10000) == Path("runs/mnist/alp/s3/snapshots/step10000")
    assert budgetplan.final_step(cfg, "synthetic", "aalp") == 3 * 5  # 3 epochs of ceil(300 / 64) batches
    cfg["training"]["drop_last"] = True
    assert budgetplan.final_step(cfg, "synthetic", "aalp") == 3 * 4  # 300 // 64
    assert budgetplan.final_step(C.load(C.REPO_ROOT / "configs/mnist_cpu/params.yaml"), "mnist", "aalp") == 3600


def test_snapshot_and_final_points_are_paired_differences_on_the_same_images(handmade):
    cfg = C.validate(params())
    report_in.READS.clear()
    data, claims = B.budget_curve(cfg)
    assert set(report_in.READS) == set(P.item_inputs(cfg, "budget"))
    assert list(zip(data.attack, data.point, data.step)) == [
        ("pgd100", "snapshot", 4), ("pgd100", "snapshot", 8), ("pgd100", "final", 15),
        ("autoattack", "snapshot", 4), ("autoattack", "snapshot", 8), ("autoattack", "final", 15)]
    for a, k in (("pgd100", 0), ("autoattack", 1)):
        for step in (4, 8):
            r = _point(data, a, "snapshot", step)
            diffs = [SNAP["aalp", s, step][k] - SNAP["alp", s, step][k] for s in (0, 1)]
            assert [float(v) for v in r["values"].split(";")] == diffs and r.n_samples == 6
            assert r["mean"] == pytest.approx(np.mean(diffs))
            assert r.half == pytest.approx(12.706204736 * np.std(diffs, ddof=1) / math.sqrt(2))  # t(0.975, 1)
    # final models on the first 6 images: ALP s0 3 wrong, AALP s0 1 (sample 7 is past them); s1: 2 and 1
    final = _point(data, "pgd100", "final")
    assert [float(v) for v in final["values"].split(";")] == pytest.approx([100 * (5 - 3) / 6, 100 * (5 - 4) / 6])
    assert final.n_samples == 6 and final.source == "records.parquet, the first 6 test images"
    # AutoAttack ran on the first 4 only: s0 ALP 1/4, AALP 3/4; s1 ALP 2/4, AALP 3/4
    aa = _point(data, "autoattack", "final")
    assert aa.n_samples == 4 and [float(v) for v in aa["values"].split(";")] == [50.0, 25.0]
    c = claims.set_index("claim")
    assert set(claims.method) == {"aalp-alp"} and list(c.index) == [
        "step4/pgd100", "step8/pgd100", "step15/pgd100", "step4/autoattack", "step8/autoattack", "step15/autoattack"]
    assert c.loc["step15/autoattack", "mean"] == pytest.approx(37.5) and c.loc["step4/pgd100", "n_seeds"] == 2


def test_a_point_never_mixes_sample_counts(handmade):
    f = handmade / layout.snapshot_dir("synthetic", "aalp", 1, 8) / "metrics.json"
    met = json.loads(f.read_text())
    f.write_text(json.dumps({**met, "n_samples": 5}))
    with pytest.raises(RuntimeError, match="mixes sample counts"):
        B.budget_curve(C.validate(params()))


@pytest.mark.parametrize("records", [True, False])
def test_the_reference_point_at_its_own_budget_with_its_sample_count(handmade, records):
    ref = handmade / "elsewhere" / "results" / "small"
    write_reference(ref, records)
    cfg = C.validate(params(budget_reference=str(ref)))  # an absolute folder stands for one under the repository
    report_in.READS.clear()
    data, claims = B.budget_curve(cfg)
    assert set(report_in.READS) == set(P.item_inputs(cfg, "budget"))
    assert all(not Path(p).is_absolute() for p in P.item_inputs(cfg, "budget"))
    pgd, aa = _point(data, "pgd100", "reference"), _point(data, "autoattack", "reference")
    assert pgd.step == aa.step == 5 and pgd.training == f"PGD-7 training, {ref}"
    if records:  # the first 6 images: s0 ALP 5/6, AALP 6/6; s1 ALP 4/6, AALP 5/6; AutoAttack on its first 2
        assert [float(v) for v in pgd["values"].split(";")] == pytest.approx([100 / 6, 100 / 6]) and pgd.n_samples == 6
        assert [float(v) for v in aa["values"].split(";")] == [50.0, 50.0] and aa.n_samples == 2
        assert aa.source == "records.parquet, the first 2 test images"
    else:  # its Table 2's per-seed values, over all the images it evaluated
        assert [float(v) for v in pgd["values"].split(";")] == [5.0, 1.0] and pgd.n_samples == 10
        assert aa.n_samples == 2 and "table2.csv" in aa.source
    assert not [c for c in claims.claim if c.startswith("step5/")]  # the reference is no claim of this set


def test_the_published_cpu_set_as_reference_and_the_papers_point(monkeypatch):
    """results/mnist_cpu: 3 epochs of PGD-10 (3,600 steps), AutoAttack on its first 500 images only."""
    monkeypatch.chdir(C.REPO_ROOT)
    cfg = C.load(C.REPO_ROOT / "configs/mnist_cpu/params.yaml")
    cfg["report"]["budget_reference"] = "results/mnist_cpu"
    rows = pd.DataFrame(B.reference_rows(cfg, "mnist") + B.paper_rows(cfg, "mnist"))
    ref = rows[rows.point == "reference"].set_index("attack")
    assert set(ref.training) == {"PGD-10 training, results/mnist_cpu"} and set(ref.step) == {3600}
    assert ref.n_samples.to_dict() == {"pgd100": 1000, "cw100": 1000, "autoattack": 500}
    acc = lambda m, s, a, n: 100 * float((lambda r: (r[f"{a}_pred"] == r.label).mean())(  # noqa: E731
        pd.read_parquet(f"results/mnist_cpu/runs/mnist/{m}/s{s}/eval/records.parquet").iloc[:n]))
    want = [acc("aalp", s, "autoattack", 500) - acc("alp", s, "autoattack", 500) for s in range(5)]
    assert [float(v) for v in ref.loc["autoattack", "values"].split(";")] == pytest.approx(want)
    paper = rows[rows.point == "paper"].set_index("attack")
    assert set(paper.index) == {"pgd100", "cw100"}  # the paper ran no AutoAttack
    assert paper.loc["pgd100", "mean"] == pytest.approx(96.32 - 94.50) and set(paper.step) == {84 * 1200}


def test_the_figures_error_bars_are_the_datas_half_widths(handmade):
    ref = handmade / "ref"
    write_reference(ref)
    data, _ = B.budget_curve(C.validate(params(budget_reference=str(ref))))
    fig = F.budget_figure(data)
    for ax, attack in zip(fig.axes, ("pgd100", "autoattack")):
        g = data[data.attack == attack]
        assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_xticklabels()] == ["4", "5", "8", "15"]
        drawn = sorted((float(seg[0][0]), float(seg[1][1] - seg[0][1]) / 2)
                       for c in ax.containers for seg in c.lines[2][0].get_segments())
        want = sorted(zip(g.step.astype(float), g.half.fillna(0.0)))
        assert [x for x, _ in drawn] == [x for x, _ in want]
        assert [h for _, h in drawn] == pytest.approx([h for _, h in want])
        assert any(h > 0 for _, h in drawn)
        assert any(line.get_ydata()[0] == 0 for line in ax.get_lines())  # the line at 0


@pytest.fixture
def kernel_path(monkeypatch):
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # the kernel's python3 is this venv's


def test_the_page_draws_the_curve_and_lists_each_points_images(handmade, kernel_path):
    cfg = C.validate(params())
    items.report_item(cfg, "budget", "reports")
    html = (handmade / "reports/budget.html").read_text()
    assert "Not drawn." not in html and html.count("<img") == 1
    assert "records.parquet, the first 4 test images" in html and "snapshot metrics.json" in html
    assert set(pd.read_csv(handmade / "reports/data/budget.csv").point) == {"snapshot", "final"}


def test_a_set_without_snapshots_says_why_the_curve_is_not_drawn(tmp_path, monkeypatch, kernel_path):
    monkeypatch.chdir(tmp_path)
    cfg = C.load(C.REPO_ROOT / "configs/mnist_cpu/params.yaml")  # the published CPU set keeps no evaluated snapshots
    assert report_in.item_inputs(cfg, "budget") == []
    items.report_item(cfg, "budget", "reports")
    html = (tmp_path / "reports/budget.html").read_text()
    assert ("Not drawn.</strong> This set evaluates no training snapshots of ALP and AALP: the budget curve needs "
            "both trained on mnist and evaluated at several steps before the end of training") in html
    assert "<img" not in html and pd.read_csv(tmp_path / "reports/data/budget.csv").empty


# ----------------------------------------------------------------------------- anchors
def _table2(source: str) -> pd.DataFrame:
    rows = [{"dataset": "d", "source": source, "model": "lenet", "method": m, "metric": k, "ours_mean": 90.0,
             "ours_std": 1.0, "n_seeds": 2, "n_samples": 1000 if k == "autoattack" else 10000, "paper": np.nan,
             "seeds": "0;1", "values": "89.0;91.0"}
            for m in ("adv", "alp", "aalp") for k in ("clean", "pgd100", "autoattack")]
    return pd.DataFrame(rows)


def test_table2_cells_carry_the_anchors_of_mnist_only(tmp_path):
    out = tmp_path / "reports"
    (out / "tables").mkdir(parents=True)
    cfg = {"experiments": {"d": {"methods": ["adv", "alp", "aalp"]}}, "evaluation": {"attacks": ["pgd100", "autoattack"]}}
    for source, want in (("mnist", True), ("fashion_mnist", False)):
        _table2(source).to_csv(out / "tables/table2.csv", index=False)
        pd.DataFrame(columns=["dataset", "method", "seed", "check", "fired", "kind", "text"]).to_csv(
            out / "tables/table2_checks.csv", index=False)
        pd.DataFrame(columns=["dataset", "method", "seed", "metric", "value", "n_samples"]).to_csv(
            out / "tables/autoattack_subset.csv", index=False)
        sec = table2_section(cfg, out)
        (block,) = sec["datasets"]
        cells = {(r["method"], k): c["anchors"] for r in block["rows"] for k, c in zip(["clean", "pgd100", "autoattack"], r["cells"])}
        page = tablepages.table2_html(_table2(source))
        if not want:
            assert not any(cells.values()) and block["anchors"] == "" and "PyTorch-Robust" not in page
            continue
        assert cells["adv", "pgd100"] == ["Madry et al. 92.52", "PyTorch-Robust 95.48 (SmallCNN)"]
        assert cells["adv", "autoattack"] == ["Madry et al. 88.50", "PyTorch-Robust 92.78 (SmallCNN)"]
        assert cells["adv", "clean"] == ["Madry et al. 98.53"]
        assert cells["alp", "pgd100"] == ["PyTorch-Robust 96.08 (SmallCNN)"]
        assert cells["alp", "autoattack"] == ["PyTorch-Robust 92.60 (SmallCNN)"] and cells["aalp", "pgd100"] == []
        assert "the networks differ" in block["anchors"] and "https://github.com/MadryLab/mnist_challenge" in block["anchors"]
        assert "PyTorch-Robust 96.08 (SmallCNN)" in page and "Madry et al. 88.50" in page


def test_every_anchor_names_its_source():
    a = pd.read_csv(A.ANCHORS_CSV)
    assert list(a.columns) == ["dataset", "anchor", "network", "protocol", "method", "metric", "value", "source"]
    assert a.source.str.startswith("https://github.com/").all() and set(a.method) <= {"adv", "alp"}
    assert len(a) == 7 and set(a.metric) == {"clean", "pgd100", "autoattack"}
