"""The CI profile's whole DAG through Snakemake on a copy of the repository (DVC's: test_e2e_dvc.py).

Checks every report file against the run files behind it, that a second run does nothing, that an ADV
edit or a Grad-CAM edit reruns exactly the jobs it touches, Snakemake's own report, and the report in a
real browser.
"""
import copy
import json
import re

import pandas as pd
import pytest
import yaml

from aalp import config as C
from conftest import CI_SET as PROFILE, copy_workspace, report_numbers, run

pytestmark = pytest.mark.e2e


def _check_report(work, cfg):
    """Every figure and table file exists (PNGs decode), and Tables 1, 3 and 4 equal a recomputation from
    records.parquet (the CI set runs one seed, so the means are the seed-0 values)."""
    import matplotlib.image

    from aalp.layout import REPORT_OUTPUTS

    for rel in REPORT_OUTPUTS:
        assert (work / rel).stat().st_size > 0, rel
    for png in (work / "reports" / "figures").glob("*.png"):
        img = matplotlib.image.imread(png)
        assert img.shape[0] > 50 and img.shape[1] > 50 and img.std() > 0, png
    assert len(list((work / "reports" / "figures").glob("fig*.png"))) == 11

    def records(d, m, s=0):
        r = pd.read_parquet(work / f"runs/{d}/{m}/s{s}/eval/records.parquet")
        ok, adv = r.clean_pred == r.label, r.train_pred == r.label
        return r.assign(consistent=ok & adv, inconsistent=ok & ~adv)

    seeds = {m: cfg.get("run_seeds", {}).get(f"synthetic/{m}", cfg["seeds"]) for m in cfg["methods"]}
    assert len(seeds["alp"]) == 2 and len(seeds["aalp"]) == 2  # the interval and paired-difference paths run
    t1 = pd.read_csv(work / "reports/tables/table1.csv")
    for st in ("consistent", "inconsistent"):
        per_seed = [records("synthetic", "alp", s) for s in seeds["alp"]]
        if all(p[st].any() for p in per_seed):
            row = t1[(t1.dataset == "synthetic") & (t1.set == st) & (t1.metric == "adv_gt_confidence")]
            want = sum(100 * p[p[st]].train_conf.mean() for p in per_seed) / len(per_seed)
            assert row.ours_mean.item() == pytest.approx(want, rel=1e-6)
    t3 = pd.read_csv(work / "reports/tables/table3.csv")
    for m in ("raw", "raw_gd", "adv", "adv_gd", "alp", "alp_gd"):
        want = sum(100 * (r.pgd10_pred == r.label).mean() for r in (records("synthetic", m, s) for s in seeds[m]))
        row = t3[(t3.dataset == "synthetic") & (t3.method == m) & (t3.metric == "pgd10")]
        assert row.ours_mean.item() == pytest.approx(want / len(seeds[m]), abs=1e-3)
    t4 = pd.read_csv(work / "reports/tables/table4.csv")
    for m in ("alp", "aalp"):
        want = sum(100 * records("synthetic", m, s).consistent.mean() for s in seeds[m]) / len(seeds[m])
        assert t4[t4.dataset == "synthetic"][f"{m}_mean"].item() == pytest.approx(want, rel=1e-9)
    verdicts = pd.read_csv(work / "reports/tables/verdicts.csv")
    row = verdicts[(verdicts.claim_id == "aalp_consistent") & (verdicts.dataset == "synthetic") & verdicts.counted]
    diffs = [100 * (records("synthetic", "aalp", s).consistent.mean() - records("synthetic", "alp", s).consistent.mean())
             for s in seeds["alp"]]
    assert row["mean"].item() == pytest.approx(sum(diffs) / 2, abs=1e-6) and row.n_seeds.item() == 2
    half = 12.7062047 * abs(diffs[0] - diffs[1]) / 2 ** 0.5 / 2 ** 0.5  # t(0.975, 1) * sd / sqrt(2)
    assert row["half"].item() == pytest.approx(half, rel=1e-5)
    claims = json.loads((work / "reports" / "claims.json").read_text())
    assert any(k.startswith("fig01/synthetic/alp/") for k in claims)


def _check_outputs(work):
    cfg = yaml.safe_load((work / "params.yaml").read_text())
    _check_report(work, cfg)
    table = pd.read_csv(work / "reports" / "tables" / "table2.csv")
    html = (work / "reports" / "table2.html").read_text()
    assert "Table 2" in html
    for d, exp in cfg["experiments"].items():
        for m in exp["methods"]:
            seeds = cfg.get("run_seeds", {}).get(f"{d}/{m}", cfg["seeds"])
            mets = [json.loads((work / f"runs/{d}/{m}/s{s}/eval/metrics.json").read_text()) for s in seeds]
            met = mets[0]
            # every evaluation attack, AutoAttack only for evaluation.autoattack_methods
            assert set(met["accuracy"]) == {"clean", "train", *C.eval_attacks(C.validate(copy.deepcopy(cfg)), d, m)}
            assert ("autoattack" in met["accuracy"]) == (m in cfg["evaluation"].get("autoattack_methods", [m]))
            for metric in met["accuracy"]:
                v = sum(x["accuracy"][metric] for x in mets) / len(mets)
                row = table[(table.dataset == d) & (table.method == m) & (table.metric == metric)]
                assert row.ours_mean.item() == pytest.approx(v, abs=1e-3)
                assert f"{v:.2f}" in html
            records = pd.read_parquet(work / f"runs/{d}/{m}/s0/eval/records.parquet")
            assert len(records) == cfg["evaluation"]["n_samples"]
            assert met["accuracy"]["clean"] == pytest.approx(100 * (records.clean_pred == records.label).mean(), abs=1e-3)
        acc = {m: json.loads((work / f"runs/{d}/{m}/s0/eval/metrics.json").read_text())["accuracy"]
               for m in exp["methods"]}
        # every model learns the task (a collapsed, constant classifier scores ~10%) ...
        for m, a in acc.items():
            assert a["clean"] >= 60, (d, m, a)
        # ... and every adversarial method buys robustness, by a wide margin over RAW
        adversarial = [m for m in acc if cfg["methods"][m]["objective"] != "raw"]
        assert adversarial
        for m in adversarial:
            assert acc[m]["pgd10"] >= acc["raw"]["pgd10"] + 20, (d, m, acc[m], acc["raw"])
    return cfg


def _edit_adv_steps(work):
    p = work / "params.yaml"
    params = yaml.safe_load(p.read_text())
    params["methods"]["adv"]["attack"] = {"steps": 5}  # once made ADV collapse to a constant classifier
    p.write_text(yaml.safe_dump(params, sort_keys=False))


ADV_ONLY = {"train-synthetic-adv-s0", "evaluate-synthetic-adv-s0", "analyze-synthetic-adv-s0", "train-synthetic_rgb-adv-s0",
            "evaluate-synthetic_rgb-adv-s0", "analyze-synthetic_rgb-adv-s0",
            # the items that draw ADV (synthetic_rgb has no ALP, so only Table 2 shows its ADV) and the front page
            "report-fig01", "report-fig02", "report-fig07", "report-fig08", "report-table2", "report-table3", "report"}
ANALYSIS_ONLY = {f"analyze-{d}-{m}-s0" for d, ms in (("synthetic", ("raw", "adv", "alp", "trades", "alp_gd", "alp_aw", "aalp",
                                                                      "raw_gd", "adv_gd")), ("synthetic_rgb", ("raw", "adv")))
                 for m in ms} | {"analyze-synthetic-alp-s1", "analyze-synthetic-aalp-s1"} | {"report-fig01", "report-fig02", "report-fig07", "report-fig08", "report-fig09",
                                 "report-fig10", "report"}  # the items drawn from analysis files


def _edit_cam_samples(work):
    p = work / "params.yaml"
    params = yaml.safe_load(p.read_text())
    params["analysis"]["cam_samples"] += 1
    p.write_text(yaml.safe_dump(params, sort_keys=False))


def _job_name(cmd):
    """The DVC stage name of a Snakemake job's command."""
    m = re.match(r"python -m aalp (\w+)(?: --dataset (\w+))?(?: --method (\w+))?(?: --seed (\d+))?(?: --item (\w+))?", cmd)
    kind, d, meth, seed, item = m.groups()
    return "-".join(x for x in (kind, d, meth, f"s{seed}" if seed else None, item) if x)


@pytest.fixture(scope="module")
def snakemake_run(ci_snakemake_run):
    """The CI profile's whole DAG through Snakemake (run once per session, conftest.ci_snakemake_run)."""
    repo, work, _ = ci_snakemake_run
    return repo, work


def test_snakemake_dag(snakemake_run, tmp_path):
    repo, work = snakemake_run
    _check_outputs(work)
    again = run(f"snakemake -n --cores 2 --directory {PROFILE}", repo)
    assert "Nothing to be done" in again.stdout + again.stderr
    repo = copy_workspace(repo, tmp_path / "repo")  # the edits below happen on a copy: other files read the run
    work = repo / PROFILE
    original = (work / "params.yaml").read_text()
    for edit, expected in ((_edit_adv_steps, ADV_ONLY), (_edit_cam_samples, ANALYSIS_ONLY)):
        (work / "params.yaml").write_text(original)
        edit(work)
        dry = run(f"snakemake -n -p --cores 2 --directory {PROFILE}", repo)
        jobs = {_job_name(c) for c in re.findall(r"(python -m aalp [^\n]*?)\s*$", dry.stdout, re.M)}
        assert jobs == expected, edit.__name__


def test_snakemakes_own_report(snakemake_run, tmp_path):
    """snakemake --report: every figure and table, and the front page, under their categories."""
    import zipfile

    repo, work = snakemake_run
    run(f"snakemake --report {tmp_path / 'report.zip'} --directory {PROFILE}", repo)
    names = zipfile.ZipFile(tmp_path / "report.zip").namelist()
    assert sorted(n.rsplit("/", 1)[1] for n in names if n.endswith((".png", ".csv"))) == sorted(
        [f"fig{n:02d}.png" for n in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12)] + ["budget.png"] + [f"table{n}.csv" for n in (1, 2, 3, 4)])
    assert any(n.endswith("/index.html") and "/data/raw/" in n for n in names)


def test_report_reads_well_in_a_real_browser(snakemake_run, tmp_path):
    """The front page and every page it links, in headless chromium: no broken link or anchor, every image
    decodes, no console error, nothing fetched from the network. The screenshot is left in tmp_path."""
    from browser import check_site

    _, work = snakemake_run
    r = check_site(work / "reports" / "index.html", tmp_path / "index.png")
    assert not r["problems"], "\n".join(r["problems"])
    names = {p.name for p in r["pages"]}
    assert {"index.html", "method.html", "fig01.html", "table2.html"} <= names and len(names) == 18  # the items, the budget page among them
    index = (work / "reports" / "index.html").read_text()
    assert "Verdicts" in index and "t-interval" in index and "Provenance" in index
    assert re.search(r"<code>([0-9a-f]{12}|src-sha256:[0-9a-f]{16})", index) and ">unknown<" not in index
    print(f"screenshot: {tmp_path / 'index.png'}")


@pytest.fixture(scope="module")
def published_once(snakemake_run, tmp_path_factory):
    """The whole set published at once (`python -m aalp publish DEST`): (DEST, its output). Read only: a test
    that changes it works on a copy."""
    _, work = snakemake_run
    dest = tmp_path_factory.mktemp("published") / "results" / "ci"
    return dest, run(f"python -m aalp publish {dest}", work).stdout


def test_publish_and_rebuild_from_the_published_files(snakemake_run, published_once, tmp_path):
    """python -m aalp publish: result files and report without weights, a manifest that matches them, and a
    rebuild of every table from the published folder alone that equals the published tables byte for byte;
    a changed metric changes the rebuilt Table 2 (the comparison can fail)."""
    import shutil

    from aalp import publish as P

    _, work = snakemake_run
    dest = tmp_path / "results" / "ci"
    shutil.copytree(published_once[0], dest)
    out = published_once[1]
    assert "published" in out and "reports/index.html" in out
    man = json.loads((dest / "manifest.json").read_text())
    assert P.check(dest) == [] and not list(dest.rglob("*.pt")) and (dest / "reports" / "index.html").is_file()
    cfg = yaml.safe_load((dest / "params.yaml").read_text())
    n_runs = len(list(work.glob("runs/*/*/s*/model.pt")))
    assert len(man["runs"]) == n_runs > 10 and man["devices"] == ["cpu"] and man["wall_seconds"]["train"] > 0
    assert man["set"] == cfg["profile"] and man["total_bytes"] < 50 * 2**20
    assert man["total_bytes"] == sum(p.stat().st_size for p in dest.rglob("*") if p.is_file() and p.name != "manifest.json")

    published = report_numbers(dest / "reports")
    run("python -m aalp report --tables-only --out rebuilt", dest)
    assert report_numbers(dest / "rebuilt") == published
    assert P.check(dest) == ["unlisted " + p.relative_to(dest).as_posix()
                             for p in sorted(dest.rglob("*")) if p.is_file() and "rebuilt/" in p.as_posix()]

    # a metric edited after publishing: the manifest check names it, and the rebuilt Table 2 differs
    tampered = tmp_path / "tampered"
    shutil.copytree(dest, tampered, ignore=shutil.ignore_patterns("rebuilt"))
    mfile = next(tampered.glob("runs/*/adv/s0/eval/metrics.json"))
    m = json.loads(mfile.read_text())
    m["accuracy"]["clean"] = round(m["accuracy"]["clean"] - 7.5, 4)
    mfile.write_text(json.dumps(m))
    assert P.check(tampered) == [f"changed {mfile.relative_to(tampered).as_posix()}"]
    run("python -m aalp report --tables-only --out rebuilt", tampered)
    again = report_numbers(tampered / "rebuilt")
    assert again["tables/table2.csv"] != published["tables/table2.csv"]

    bad = run(f"python -m aalp publish {tmp_path / 'small'} --limit-mb 0.01", work, check=False)
    assert bad.returncode != 0 and "over the 0.01 MB limit" in bad.stderr and not (tmp_path / "small").exists()


def _slice(work, dst, keep=None):
    """A copy of the set folder's params and run files (no weights); with keep, the runs outside it lose their
    metrics.json, so they are unfinished there."""
    import shutil

    shutil.copytree(work / "runs", dst / "runs", ignore=shutil.ignore_patterns("*.pt"))
    shutil.copy2(work / "params.yaml", dst / "params.yaml")
    if keep is not None:
        for m in dst.glob("runs/*/*/s*/eval/metrics.json"):
            if m.parents[1].relative_to(dst).as_posix() not in keep:
                m.unlink()
    return dst


def test_publish_in_two_slices_equals_publishing_once(snakemake_run, published_once, tmp_path):
    """publish --add: a set published in two slices has the same report numbers, pages and run files as the
    set published at once; the manifest lists per run its code hashes and device; a slice with another
    params.yaml, with runs of other code, or without recorded code hashes is refused in one line and leaves
    the published set as it was."""
    from conftest import numbers_differ

    from aalp import publish as P

    _, work = snakemake_run
    whole = published_once[0]
    man_whole = json.loads((whole / "manifest.json").read_text())
    first = {"runs/synthetic/raw/s0", "runs/synthetic/adv/s0", "runs/synthetic/alp/s0", "runs/synthetic/aalp/s0"}
    dest = tmp_path / "results" / "ci"
    one = _slice(work, tmp_path / "one", keep=first)
    out = run(f"python -m aalp publish {dest} --add", one).stdout
    man = json.loads((dest / "manifest.json").read_text())
    assert set(man["runs"]) == first and P.check(dest) == [] and (dest / "reports" / "index.html").is_file(), out
    assert not list(dest.glob("runs/synthetic/trades/**/*"))  # the unfinished runs stay out
    hashes = {r: v["code_hash"] for r, v in man["runs"].items()}
    assert all(set(h) == {"train", "evaluate", "analyze"} and None not in h.values() for h in hashes.values())
    assert man["code_hash"] == hashes["runs/synthetic/adv/s0"] and man["devices"] == ["cpu"]
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}

    two = _slice(work, tmp_path / "two")
    # refused, one line each, nothing touched: runs of other code, runs without hashes, another params.yaml
    rec = two / "runs/synthetic/trades/s0/run.json"
    good = rec.read_text()
    rec.write_text(good.replace(man["code_hash"]["train"], "0123456789abcdef"))
    bad = run(f"python -m aalp publish {dest} --add", two, check=False)
    assert bad.returncode == 2 and "other train code than the set's" in bad.stderr and len(bad.stderr.splitlines()) == 1
    rec.write_text(json.dumps({k: v for k, v in json.loads(good).items() if k != "code_hash"}))
    bad = run(f"python -m aalp publish {dest} --add", two, check=False)
    assert bad.returncode == 2 and "records no code hash" in bad.stderr
    rec.write_text(good)
    params = (two / "params.yaml").read_text()
    (two / "params.yaml").write_text(params.replace("cam_samples: 8", "cam_samples: 7"))
    bad = run(f"python -m aalp publish {dest} --add", two, check=False)
    assert bad.returncode == 2 and "params.yaml" in bad.stderr and "new set" in bad.stderr
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    (two / "params.yaml").write_text(params)

    run(f"python -m aalp publish {dest} --add", two)  # the rest: the already published runs are kept
    man = json.loads((dest / "manifest.json").read_text())
    assert set(man["runs"]) == set(man_whole["runs"]) and P.check(dest) == []
    assert numbers_differ(report_numbers(dest / "reports"), report_numbers(whole / "reports")) == []
    assert set(man["files"]) == set(man_whole["files"])  # the same run files and pages
    runs_only = {f: e for f, e in man["files"].items() if f.startswith("runs/")}
    assert runs_only == {f: e for f, e in man_whole["files"].items() if f.startswith("runs/")}
    assert man["code_hash"] == man_whole["code_hash"] == hashes["runs/synthetic/adv/s0"]
    nothing = run(f"python -m aalp publish {dest} --add", two, check=False)
    assert nothing.returncode == 2 and "no finished run to add" in nothing.stderr
