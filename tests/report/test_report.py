"""The report on a tiny but real run set: every method the tables and figures need, two seeds, a
two-value lambda sweep and a checkpoint run, trained, evaluated and analysed by the package's own
functions. The tables and claims are checked against numbers recomputed here from the run files
(records.parquet, probe.parquet, summary.json), never through aalp.report's functions."""
import copy
import json
import os
import time
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from aalp import config as C, layout, pipeline as P
from aalp.core import analysis, data, evaluation, training
from aalp.report import build, claims as report_claims, inputs as report_in, items, tables
from aalp.pipeline import run_dir

from conftest import BIN, CI_PARAMS

METHODS = ["raw", "adv", "alp", "aalp", "alp_gd", "raw_gd", "adv_gd"]
SEEDS = [0, 1]
EPOCHS = 3


def tiny_params() -> dict:
    p = yaml.safe_load(CI_PARAMS.read_text())
    p["seeds"] = SEEDS
    p["datasets"] = {"synthetic": {**p["datasets"]["synthetic"], "n_train": 300, "n_test": 60}}
    exp = {**p["experiments"]["synthetic"], "epochs": EPOCHS, "batch_size": 64, "methods": METHODS}
    p["experiments"] = {"synthetic": exp}
    p["sweeps"] = [{"dataset": "synthetic", "method": "aalp", "param": "lambda", "values": [0.1, 1.0]}]
    p["run_seeds"] = {}
    # 5 steps per epoch, 15 in all: snapshots at steps 4, 8 and 12
    p["training"].update(checkpoint_every=4, probe_size=60, checkpoint_runs=["synthetic/aalp"])
    p["evaluation"].update(attacks=["fgsm", "pgd10", "cw10"], n_samples=60, batch_size=60)
    p["evaluation"].pop("autoattack_samples", None)
    p["analysis"].update(cam_samples=4)
    return p


def _build(cfg: dict) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is several times faster on a shared machine
    try:
        _train_evaluate_analyse(cfg)
    finally:
        torch.set_num_threads(threads)


def _train_evaluate_analyse(cfg: dict) -> None:
    data.prepare(cfg, "synthetic")
    main = set(C.runs(cfg, sweeps=False))
    for d, m, s in C.runs(cfg):
        rd = run_dir(d, m, s)
        training.train(cfg, C.run_spec(cfg, d, m, s), rd)
        evaluation.evaluate(cfg, d, m, s, rd)
        if (d, m, s) in main:
            analysis.analyze(cfg, d, m, s, rd)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(cfg, folder, seconds report() took): the run set and its report in reports/."""
    root = tmp_path_factory.mktemp("report_set")
    cfg = C.validate(tiny_params())
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")  # the kernel's python3 is this venv's
        t = time.time()
        _build(cfg)
        print(f"run set built in {time.time() - t:.1f} s")
        t = time.time()
        build.report(cfg, "reports")
        took = time.time() - t
        reads = list(report_in.READS)
    print(f"report() took {took:.1f} s")
    return cfg, root, took, reads


@pytest.fixture(scope="module")
def reduced(built):
    """The same runs seen through a parameter set without the sweep, the checkpoint run and the methods
    past ALP: most figures have nothing to draw."""
    cfg, root, _, _ = built
    p = tiny_params()
    p["sweeps"], p["run_seeds"] = [], {}
    p["training"]["checkpoint_runs"] = []
    p["experiments"]["synthetic"]["methods"] = ["raw", "adv", "alp"]
    small = C.validate(p)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
        build.report(small, "reports_reduced")
    return small, root / "reports_reduced"


def _records(root, m, s) -> pd.DataFrame:
    r = pd.read_parquet(root / f"runs/synthetic/{m}/s{s}/eval/records.parquet")
    clean_ok = r.clean_pred == r.label
    adv_ok = r.train_pred == r.label
    return r.assign(consistent=clean_ok & adv_ok, inconsistent=clean_ok & ~adv_ok)


def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


# ----------------------------------------------------------------------------- outputs
def test_report_outputs_are_fixed_and_complete():
    outs = layout.REPORT_OUTPUTS
    assert outs == layout.report_outputs("reports") and len(outs) == len(set(outs))
    assert "reports/claims.json" in outs
    figs = ["01", "02", "03", "04", "06", "07", "08", "09", "10", "11", "12"]
    for nn in figs:
        for f in (f"reports/figures/fig{nn}.png", f"reports/figures/fig{nn}.svg", f"reports/fig{nn}.html",
                  f"reports/claims/fig{nn}.csv"):
            assert f in outs
    for n in (1, 2, 3, 4):
        assert f"reports/tables/table{n}.csv" in outs and f"reports/table{n}.html" in outs
    assert "reports/tables/table2_checks.csv" in outs
    assert not [o for o in outs if "fig05" in o]  # Fig. 5 is the method's diagram, not data
    assert {f"reports/{nb}.html" for nb in report_in.REPORT_NOTEBOOKS} <= set(outs)
    for nb in report_in.REPORT_NOTEBOOKS:
        assert (C.REPO_ROOT / "notebooks" / f"{nb}.ipynb").is_file()


def test_every_output_is_written_and_every_png_decodes(built):
    cfg, root, took, _ = built
    written = {p.relative_to(root).as_posix() for p in (root / "reports").rglob("*") if p.is_file()}
    assert written == set(layout.REPORT_OUTPUTS)  # nothing missing, nothing extra
    for f in layout.REPORT_OUTPUTS:
        assert (root / f).stat().st_size > 0, f
        if f.endswith(".png"):
            img = mpimg.imread(root / f)
            assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50, f
            assert img[..., :3].std() > 0, f"{f} is blank"
        if f.endswith(".svg"):
            assert "<svg" in (root / f).read_text()[:2000], f
    for nb in report_in.REPORT_NOTEBOOKS:
        page = (root / f"reports/{nb}.html").read_text()
        assert layout.TITLES[nb] in page.replace("&#39;", "'")
        assert "Traceback" not in page and "Not computed." not in page, nb
        # the budget curve needs evaluated snapshots (training.snapshot_steps), which this set does not keep
        assert ("Not drawn." in page) == (nb == "budget"), nb
    index = (root / "reports/index.html").read_text()
    assert "Fig. 5" in index and all(f'href="{nb}.html"' in index for nb in report_in.REPORT_NOTEBOOKS)
    assert took < 300  # about 40 s alone; the suite runs files side by side (pytest -n)


def test_each_figure_page_embeds_the_saved_png_once_with_the_title_as_its_text(built):
    """A figure page shows reports/figures/<name>.png itself, byte for byte (not a second rendering by the
    inline backend, which would also cost a third draw), once, with the item's title as its alt text."""
    import base64
    import html
    import re

    _, root, _, _ = built
    for nb in report_in.REPORT_NOTEBOOKS:
        if nb not in layout.FIGURES or nb == "budget":  # budget: not drawn here (no snapshots)
            continue
        page = (root / f"reports/{nb}.html").read_text()
        imgs = re.findall(r'<img alt="([^"]*)" src="data:image/png;base64,([^"]+)"', page)
        assert len(imgs) == 1, (nb, len(imgs))
        alt, data = imgs[0]
        assert base64.b64decode(data) == (root / f"reports/figures/{nb}.png").read_bytes(), nb
        assert html.unescape(alt) == layout.TITLES[nb], (nb, alt)


def test_report_reads_exactly_report_inputs(built):
    cfg, root, _, reads = built
    inputs = report_in.report_inputs(cfg)
    assert set(reads) == set(inputs)
    assert all((root / p).is_file() for p in inputs)
    kinds = {Path(p).name for p in inputs}
    assert kinds == {"metrics.json", "records.parquet", "history.csv", "probe.parquet", "summary.json",
                     "contributions.csv", "cam.npz", "checkpoints.csv", "checkpoint_cams.npz"}
    assert "runs/synthetic/aalp/s1/analysis/checkpoints.csv" in inputs
    assert "runs/synthetic/aalp_lambda1/s1/eval/metrics.json" in inputs


@pytest.mark.parametrize("item", report_in.REPORT_NOTEBOOKS)
def test_each_report_stage_reads_exactly_its_declared_inputs(built, item, monkeypatch):
    """Each figure and table is its own pipeline stage: what it reads must be what the stage declares,
    or an edit would rerun too little (a stale figure) or too much."""
    cfg, root, _, _ = built
    monkeypatch.chdir(root)
    report_in.READS.clear()
    items.compute(cfg, item)
    assert set(report_in.READS) == set(P.item_inputs(cfg, item)), item
    assert set(P.item_outs(item)) <= set(layout.REPORT_OUTPUTS)


# ----------------------------------------------------------------------------- tables against records.parquet
def test_table1_equals_a_recomputation_from_records(built):
    cfg, root, _, _ = built
    t = pd.read_csv(root / "reports/tables/table1.csv")
    assert len(t) == 8 and set(t.method) == {"alp"}
    cols = {"clean_gt_confidence": ("clean_conf", 100), "adv_gt_confidence": ("train_conf", 100),
            "classification_loss": ("train_ce", 1), "alp_loss": ("train_alp", 1)}
    for st in ("consistent", "inconsistent"):
        recs = [_records(root, "alp", s) for s in SEEDS]
        parts = [r[r[st]] for r in recs]
        assert all(len(p) for p in parts), "the tiny run set must fill both sets"
        for metric, (col, scale) in cols.items():
            mean, std = _mean_std([scale * p[col].mean() for p in parts])
            row = t[(t.set == st) & (t.metric == metric)]
            assert row.ours_mean.item() == pytest.approx(mean, rel=1e-6), (st, metric)
            assert row.ours_std.item() == pytest.approx(std, rel=1e-6, abs=1e-12), (st, metric)
            assert row.n_seeds.item() == 2
        assert row.n_samples.item() == pytest.approx(np.mean([len(p) for p in parts]))
        fig03 = pd.read_csv(root / "reports/claims/fig03.csv")  # Fig. 3's claim: the same adversarial confidence
        got = fig03[fig03.claim == f"adv_conf_{st}"]["mean"].item()
        assert got == pytest.approx(np.mean([p.train_conf.mean() for p in parts]), rel=1e-6)


def test_table3_equals_a_recomputation_from_records(built):
    cfg, root, _, _ = built
    t = pd.read_csv(root / "reports/tables/table3.csv")
    assert list(dict.fromkeys(t.method)) == ["raw", "raw_gd", "adv", "adv_gd", "alp", "alp_gd"]
    acc = {}
    for m in dict.fromkeys(t.method):
        recs = [_records(root, m, s) for s in SEEDS]
        for metric, col in (("clean", "clean_pred"), ("pgd10", "pgd10_pred"), ("cw10", "cw10_pred")):
            acc[m, metric] = [100 * (r[col] == r.label).mean() for r in recs]
            mean, std = _mean_std(acc[m, metric])
            row = t[(t.method == m) & (t.metric == metric)]
            assert row.ours_mean.item() == pytest.approx(mean, abs=1e-3), (m, metric)  # metrics.json rounds to 1e-4
            assert row.ours_std.item() == pytest.approx(std, abs=1e-3), (m, metric)
    for (m, metric), values in acc.items():  # the change with Guided Dropout: paired by seed, on the GD row
        row = t[(t.method == m) & (t.metric == metric)]
        if m.endswith("_gd"):
            paired = np.mean([g - b for g, b in zip(values, acc[m[:-3], metric])])
            assert row.change.item() == pytest.approx(paired, abs=1e-3) and row.change_seeds.item() == "0;1"
        else:
            assert np.isnan(row.change.item())
    html = (root / "reports/table3.html").read_text()
    assert "24.03" in html and "38.41" in html and "31.17" in html and "44.82" in html


def test_table4_equals_a_recomputation_from_records(built):
    cfg, root, _, _ = built
    t = pd.read_csv(root / "reports/tables/table4.csv")
    assert len(t) == 1
    share = {}
    for m in ("alp", "aalp"):
        recs = [_records(root, m, s) for s in SEEDS]
        mean, std = _mean_std([100 * r.consistent.sum() / len(r) for r in recs])
        share[m] = mean
        assert t[f"{m}_mean"].item() == pytest.approx(mean, rel=1e-9)
        assert t[f"{m}_std"].item() == pytest.approx(std, rel=1e-9, abs=1e-12)
        assert t[f"{m}_n_seeds"].item() == 2
        of_ok = np.mean([100 * r.consistent.sum() / (r.consistent | r.inconsistent).sum() for r in recs])
        assert t[f"{m}_of_clean_correct"].item() == pytest.approx(of_ok, rel=1e-9)
    assert t.change.item() == pytest.approx(share["aalp"] - share["alp"], rel=1e-9, abs=1e-12)
    claims = pd.read_csv(root / "reports/claims/fig11.csv")  # Fig. 11's claim is Table 4's number
    got = claims[(claims.method == "aalp") & (claims.claim == "consistent_pct")]["mean"].item()
    assert got == pytest.approx(share["aalp"], rel=1e-9)


def test_paper_columns_are_matched_by_source(built):
    """Relabelled as SVHN, the tables pick the paper's SVHN rows, column by column."""
    cfg, root, _, _ = built
    svhn = copy.deepcopy(cfg)
    svhn["datasets"]["synthetic"]["source"] = "svhn"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        t1, _ = tables.table1(svhn)
        t3, _ = tables.table3(svhn)
        t4, _ = tables.table4(svhn)
    p1 = pd.read_csv(C.REPO_ROOT / "paper/table1_consistency.csv").set_index(["dataset", "set"])
    for r in t1.itertuples():
        assert r.paper == p1.loc[("svhn", r.set), r.metric]
    p3 = pd.read_csv(C.REPO_ROOT / "paper/table3_guided_dropout.csv").set_index(["dataset", "method"])
    p2 = pd.read_csv(C.REPO_ROOT / "paper/table2_defense.csv").set_index(["dataset", "method"])
    for r in t3.itertuples():
        assert r.paper_table3 == p3.loc[("svhn", r.method), r.metric]
        if ("svhn", r.method) in p2.index:
            assert r.paper_table2 == p2.loc[("svhn", r.method), r.metric]
        else:
            assert np.isnan(r.paper_table2)
    adv_cw = t3[(t3.method == "adv") & (t3.metric == "cw10")]
    assert (adv_cw.paper_table3.item(), adv_cw.paper_table2.item()) == (24.03, 38.41)
    assert (t4.paper_alp.item(), t4.paper_aalp.item()) == (30.89, 36.58)


# ----------------------------------------------------------------------------- claims
def test_fig01_and_fig07_claims_are_summary_means_over_seeds(built):
    cfg, root, _, _ = built
    flat = json.loads((root / "reports/claims.json").read_text())
    for fig, methods in (("fig01", ["raw", "adv", "alp"]), ("fig07", ["raw", "adv", "alp", "alp_gd", "aalp"])):
        claims = pd.read_csv(root / f"reports/claims/{fig}.csv")
        assert list(dict.fromkeys(claims.method)) == methods
        for m in methods:
            summ = [json.loads((root / f"runs/synthetic/{m}/s{s}/analysis/summary.json").read_text()) for s in SEEDS]
            for k in ("n50", "n90", "gini"):
                mean, std = _mean_std([x[k] for x in summ])
                row = claims[(claims.method == m) & (claims.claim == k)]
                assert row["mean"].item() == pytest.approx(mean, rel=1e-12, abs=1e-12), (fig, m, k)
                assert row["std"].item() == pytest.approx(std, rel=1e-9, abs=1e-12), (fig, m, k)
                assert row.n_seeds.item() == 2
                assert flat[f"{fig}/synthetic/{m}/{k}_mean"] == pytest.approx(mean, rel=1e-12, abs=1e-12)
    curves = pd.read_csv(root / "reports/data/fig01.csv")
    for (m, s), g in curves.groupby(["method", "seed"]):
        c = pd.read_csv(root / f"runs/synthetic/{m}/s{s}/analysis/contributions.csv").c.to_numpy()
        want = np.sort(c)[::-1] / c.sum() if c.sum() > 0 else np.zeros_like(c)  # a dead model: all zero
        np.testing.assert_allclose(g.sort_values("rank").share.to_numpy(), want, rtol=1e-9)


def test_fig04_slope_equals_polyfit_of_the_probe(built):
    cfg, root, _, _ = built
    claims = pd.read_csv(root / "reports/claims/fig04.csv")
    for st in ("consistent", "inconsistent"):
        slopes = []
        for s in SEEDS:
            p = pd.read_parquet(root / f"runs/synthetic/alp/s{s}/probe.parquet")
            last = p[p.epoch == EPOCHS]
            ok = last.clean_correct == 1
            members = last["sample"][ok & (last.adv_correct == 1) if st == "consistent" else ok & (last.adv_correct == 0)]
            per_epoch = p[p["sample"].isin(members)].groupby("epoch").alp.mean()
            later = per_epoch.loc[[2, 3]]  # the second half of 3 epochs
            slopes.append(np.polyfit(later.index.to_numpy(float), later.to_numpy(float), 1)[0])
        mean, std = _mean_std(slopes)
        row = claims[claims.claim == f"alp_slope_{st}"]
        assert row["mean"].item() == pytest.approx(mean, rel=1e-6, abs=1e-12), st
        assert row["std"].item() == pytest.approx(std, rel=1e-6, abs=1e-12), st


def test_sweep_and_checkpoint_claims(built):
    cfg, root, _, _ = built
    c6 = pd.read_csv(root / "reports/claims/fig06.csv")
    assert set(c6.method) == {"aalp_lambda0p1", "aalp_lambda1"} and set(c6.claim) == {"clean", "pgd10", "cw10"}
    for run in ("aalp_lambda0p1", "aalp_lambda1"):
        acc = [json.loads((root / f"runs/synthetic/{run}/s{s}/eval/metrics.json").read_text())["accuracy"] for s in SEEDS]
        for k in ("clean", "pgd10", "cw10"):
            row = c6[(c6.method == run) & (c6.claim == k)]
            assert row["mean"].item() == pytest.approx(np.mean([a[k] for a in acc]))
    c9 = pd.read_csv(root / "reports/claims/fig09.csv")
    ck = [pd.read_csv(root / f"runs/synthetic/aalp/s{s}/analysis/checkpoints.csv") for s in SEEDS]
    assert list(ck[0].step) == [4, 8, 12]
    for step in (4, 8, 12):
        for k in ("n50", "gini"):
            row = c9[c9.claim == f"step{step}/{k}"]
            assert row["mean"].item() == pytest.approx(np.mean([c.set_index("step").loc[step, k] for c in ck]))
    z = np.load(root / "reports/data/fig10.npz")
    assert z["synthetic/aalp/cam_adv"].shape[:2] == (3, 4)


def test_claims_json_is_the_claim_tables(built):
    cfg, root, _, _ = built
    flat = json.loads((root / "reports/claims.json").read_text())
    n = 0
    for name in layout.CLAIMS:
        for r in pd.read_csv(root / f"reports/claims/{name}.csv").itertuples():
            key = f"{name}/{r.dataset}/{r.method}/{r.claim}"
            assert flat[f"{key}_n_seeds"] == r.n_seeds
            assert flat[f"{key}_mean"] == (None if np.isnan(r.mean) else pytest.approx(r.mean))
            n += 3
    assert n == len(flat)
    assert all(v is None or isinstance(v, (int, float)) for v in flat.values())


# ----------------------------------------------------------------------------- missing runs
def test_a_set_without_the_runs_renders_each_figure_with_a_needs_line(reduced):
    cfg, out = reduced
    written = {p.relative_to(out.parent).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == set(layout.report_outputs("reports_reduced"))
    fig06 = (out / "fig06.html").read_text()
    assert "Not drawn.</strong> This set has no λ sweep: Fig. 6 needs AALP trained on synthetic" in fig06
    for name in ("fig06", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "budget", "table3", "table4"):
        html = (out / f"{name}.html").read_text()
        assert "Not drawn.</strong> This set " in html or "Not computed.</strong> This set " in html, name
        assert "<img" not in html and "`" not in html, name  # no placeholder image, no raw backticks
    for name in ("fig06", "fig07", "fig08", "fig09", "fig10", "fig11", "fig12", "budget"):
        assert mpimg.imread(out / f"figures/{name}.png").shape[0] > 0
        claims = pd.read_csv(out / f"claims/{name}.csv")
        assert claims.empty and list(claims.columns) == report_claims.CLAIM_COLUMNS, name
    for name in ("fig01", "fig02", "fig03", "fig04", "table1", "table2"):  # these still have their runs
        assert "Not drawn." not in (out / f"{name}.html").read_text(), name
    assert pd.read_csv(out / "tables/table3.csv").empty and pd.read_csv(out / "tables/table4.csv").empty
    flat = json.loads((out / "claims.json").read_text())
    assert flat and not [k for k in flat if k.startswith(("fig06/", "fig07/", "table4/"))]
