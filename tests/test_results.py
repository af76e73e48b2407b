"""The published results under results/<set>/: each folder matches its manifest (no file changed, none
unlisted, no weights, under publish.LIMIT_MB), and rebuilding its report from the published run files alone reproduces
every committed table, claim and figure-data file (byte for byte, or to the last bits of a float). The
README links each published report."""
import shutil

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
