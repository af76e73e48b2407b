"""The CI slice run through SLURM (conftest.slurm_slice_run, test_slurm.py) gives the same numbers as the
local executor's run of the same runs (conftest.ci_snakemake_run): metrics, analysis summaries and every
per-sample record, bit for bit (CPU, one thread per job). A file of its own, handed out last (conftest's
order), so that the worker that ran the SLURM slice goes on with other tests while the local run finishes."""
import json

import pandas as pd
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

PROVENANCE = {"created", "code_version", "host", "python", "torch"}  # when and by which checkout, not what


def _numbers(work, runs):
    """Every number the runs leave behind: metrics of each evaluation, analysis summaries, and the records of
    every test sample."""
    out = {}
    for d, m, s in runs:
        rd = work / "runs" / d / m / f"s{s}"
        for p in (rd / "eval" / "metrics.json", rd / "analysis" / "summary.json"):
            out[str(p.relative_to(work))] = {k: v for k, v in json.loads(p.read_text()).items() if k not in PROVENANCE}
        out[f"{rd.relative_to(work)}/records"] = pd.read_parquet(rd / "eval" / "records.parquet").to_csv(index=False)
    return out


def test_slurm_slice_equals_the_local_run(slurm_slice_run, ci_snakemake_run):
    work, res = slurm_slice_run
    runs = [tuple(r) for r in res["runs"]]
    _, local_work, local_wall = ci_snakemake_run
    print(f"SLURM slice: {res['wall']:.0f} s wall; local executor, whole set: {local_wall:.0f} s wall")
    ours, theirs = _numbers(work, runs), _numbers(local_work, runs)
    assert len(ours) == 3 * len(runs) == 6
    assert ours == theirs
