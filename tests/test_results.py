"""The published results under results/<set>/: each folder matches its manifest (no file changed, none
unlisted, no weights, under publish.LIMIT_MB), and rebuilding its report from the published run files alone reproduces
every committed table, claim and figure-data file (byte for byte, or to the last bits of a float). The
README links each published report."""
import shutil
from pathlib import Path

import pytest

from aalp import publish as P
from conftest import REPO, numbers_differ, report_numbers, run

FOLDERS = sorted(p.parent for p in (REPO / "results").glob("*/manifest.json"))


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_published_folder_matches_its_manifest(folder):
    assert P.check(folder) == []
    man = P.read_json(folder / "manifest.json")
    assert man["total_bytes"] < P.LIMIT_MB * 2**20 and not list(folder.rglob("*.pt"))
    assert (folder / "reports" / "index.html").is_file()
    assert f"results/{folder.name}/reports/index.html" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_rebuilding_from_the_published_files_reproduces_the_tables(folder, tmp_path):
    work = tmp_path / folder.name
    shutil.copytree(folder, work, ignore=shutil.ignore_patterns("reports"))
    partial = "--finished-runs" in P.read_json(folder / "manifest.json")["rebuild"]  # published in slices
    run(f"python -m aalp report --tables-only --out rebuilt{' --finished-runs' * partial}", work)
    rebuilt, committed = report_numbers(work / "rebuilt"), report_numbers(folder / "reports")
    assert sorted(rebuilt) == sorted(committed)
    assert numbers_differ(rebuilt, committed) == []


def test_numbers_differ_tolerates_only_the_last_bits_of_a_float():
    base = {"t.csv": b"m,value,values\nalp,0.25,0.1;0.4\n", "c.json": b'{"x": 0.5}'}
    last_bits = {"t.csv": b"m,value,values\nalp,0.25000000000000006,0.1;0.40000000000000002\n", "c.json": b'{"x": 0.5000000000000001}'}
    assert numbers_differ(base, last_bits) == []
    for changed in ({"t.csv": b"m,value,values\nalp,0.2500001,0.1;0.4\n"}, {"t.csv": b"m,value,values\nalp,0.25,0.1;0.41\n"},
                    {"t.csv": b"m,value,values\nadv,0.25,0.1;0.4\n"}, {"c.json": b'{"x": 0.6}'}):
        assert numbers_differ(base, base | changed) == list(changed), changed


def test_rerender_rebuilds_only_the_report_and_a_manifest_that_matches(tmp_path, monkeypatch):
    """publish --rerender: dest's report is rebuilt where a reader rebuilds it (its manifest's rebuild command,
    in a copy holding dest's run files and no old report), the run files stay byte for byte, and the new
    manifest matches the new report; another params.yaml is refused in one line with nothing touched. The
    report command itself is replaced by one that writes a marked page: the real one is what `publish --add`
    runs (tests/test_e2e.py)."""
    import subprocess

    from aalp import config as C

    dest = tmp_path / "results" / "fashion_cpu"
    shutil.copytree(REPO / "results" / "fashion_cpu", dest)
    old = P.read_json(dest / "manifest.json")
    seen, real_run = {}, subprocess.run

    def fake_report(cmd, cwd=None, **kw):
        if cmd[1:4] != ["-m", "aalp", "report"]:  # git describe, for the code version
            return real_run(cmd, cwd=cwd, **kw)
        seen["cmd"], seen["old_report"] = cmd[1:], (Path(cwd) / "reports").exists()
        seen["runs"] = sorted(p.relative_to(cwd).as_posix() for p in Path(cwd).rglob("*") if p.is_file())
        (Path(cwd) / "reports").mkdir()
        (Path(cwd) / "reports" / "index.html").write_text("<p>rerendered</p>")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(P.subprocess, "run", fake_report)
    cfg = C.load(dest / "params.yaml")
    man = P.publish(cfg, dest, dest, rerender_only=True)
    assert seen["cmd"] == ["-m", "aalp", "report"] and not seen["old_report"]
    assert seen["runs"] == sorted(f for f in old["files"] if not f.startswith("reports/"))
    assert P.check(dest) == [] and (dest / "reports" / "index.html").read_text() == "<p>rerendered</p>"
    assert {f: e for f, e in man["files"].items() if not f.startswith("reports/")} == \
        {f: e for f, e in old["files"].items() if not f.startswith("reports/")}
    assert man["runs"] == old["runs"] and man["code_hash"] == old["code_hash"] and man["rebuild"] == old["rebuild"]

    other = tmp_path / "other"
    other.mkdir()
    (other / "params.yaml").write_text((dest / "params.yaml").read_text().replace("seeds: [0, 1, 2]", "seeds: [0, 1]", 1))
    before = {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    with pytest.raises(C.ConfigError, match="params.yaml differs"):
        P.publish(cfg, other, dest, rerender_only=True)
    assert {p: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before

    # a reworded description and comment, no parameter changed: the published set takes the new words
    text = (dest / "params.yaml").read_text()
    assert "description:" in text and text.startswith("#")
    reworded = text.replace("description: >-\n", "description: >-\n  Reworded.\n", 1).replace("#", "# reworded:", 1)
    (other / "params.yaml").write_text(reworded)
    man = P.publish(cfg, other, dest, rerender_only=True)
    assert (dest / "params.yaml").read_text() == reworded and P.check(dest) == []
    assert man["runs"] == old["runs"] and man["params_sha256"] != old["params_sha256"]


@pytest.mark.parametrize("folder", FOLDERS, ids=[f.name for f in FOLDERS])
def test_the_published_report_reads_well_in_a_browser(folder, tmp_path):
    """The committed pages as a reader opens them from the README: every link and anchor resolves, every image
    decodes, no console error or network fetch, no TeX as text, no table past its column at 1400 pixels."""
    from browser import check_site

    r = check_site(folder / "reports" / "index.html", tmp_path / "index.png")
    assert not r["problems"], "\n".join(r["problems"])
    assert len(r["pages"]) > 10


def test_the_readme_quotes_the_published_slices_and_their_numbers():
    """The README's first screen follows each published slice of a set published in slices: the count of
    finished runs is the manifest's, and the paired AALP − ALP it quotes under PGD-100 and CW-100 is the
    published verdict table's (mean ± 95% half-width), so a slice published without updating it fails here; once the
    last slice is published, the README no longer says the set is unfinished."""
    import pandas as pd

    from aalp.report.verdicts import interval_text

    readme = " ".join((REPO / "README.md").read_text().split())
    for folder in FOLDERS:
        man = P.read_json(folder / "manifest.json")
        if "--finished-runs" not in man["rebuild"]:
            continue
        done, total = man["runs_of_the_set"].split(" of ")
        assert f"{done} of its {total} runs" in readme, (folder.name, man["runs_of_the_set"])
        if done == total:  # the last slice is published: the README must not still call the set unfinished
            assert "not finished" not in readme and "so far" not in readme, folder.name
        v = pd.read_csv(folder / "reports" / "tables" / "verdicts.csv")
        for attack in ("pgd100", "cw100"):
            r = v[v.part == f"{attack} AALP − ALP"].iloc[0]
            if r.n_seeds > 1 and r.half > 0:
                quoted = interval_text(r).split(" (")[0].replace("-", "−")  # as the front page writes it
                assert quoted in readme, (folder.name, attack, quoted)


ATTACK_LABELS = {"FGSM": "fgsm", "PGD-10": "pgd10", "PGD-100": "pgd100", "CW-100": "cw100", "AutoAttack": "autoattack"}


def test_the_readme_finding_table_is_the_published_verdict_table():
    """The README's first screen (before "## The two commands") holds the finding as a table: for each attack,
    AALP − ALP as the front page writes it (mean ± 95% half-width, Interval.text) and the paper's gain, each equal
    to the published verdicts.csv of the set it links first; its header's seed count and its budget line (epochs,
    training attack, eps, λ) are that set's. A set re-published with other numbers fails here until the README
    follows it."""
    import re

    import pandas as pd
    import yaml

    from aalp.report.verdicts import interval_text

    first = (REPO / "README.md").read_text().split("## The two commands", 1)[0]
    name = re.search(r"\]\(results/([\w-]+)/reports/index\.html\)", first)[1]
    folder = REPO / "results" / name
    v = pd.read_csv(folder / "reports" / "tables" / "verdicts.csv").set_index("part")
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in first.splitlines()
            if line.startswith("| ") and not line.startswith("| attack") and "---" not in line]
    assert [r[0].split(" (")[0] for r in rows] == list(ATTACK_LABELS), rows
    for label, ours, paper in rows:
        r = v.loc[f"{ATTACK_LABELS[label.split(' (')[0]]} AALP − ALP"]
        assert ours == interval_text(r).split(" (")[0].replace("-", "−"), (label, ours, interval_text(r))
        want = "—" if pd.isna(r.paper) else f"{r.paper:+.2f}".replace("-", "−")
        assert paper.split(" (")[0] == want, (label, paper, r.paper)
    (n,) = {int(v.loc[f"{a} AALP − ALP"].n_seeds) for a in ATTACK_LABELS.values()}
    assert f"{n} paired seeds" in first
    cfg = yaml.safe_load((folder / "params.yaml").read_text())
    (exp,) = cfg["experiments"].values()
    attack = {**exp["attack"], **cfg["methods"]["alp"].get("attack", {})}
    budget = " ".join(first.split())
    for text in (f"{exp['epochs']} epochs", f"PGD-{attack['steps']} training", f"step {attack['step']}",
                 f"eps {exp['attack']['eps']}", f"λ {cfg['methods']['alp']['lambda']}"):
        assert text in budget, text
