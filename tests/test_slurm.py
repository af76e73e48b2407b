"""profiles/slurm against a real SLURM: a slice of the CI parameter set (RAW and AALP on the synthetic set,
seed 0: the plain path and every training option (guided dropout, adaptive weights, the checkpoint series);
every kind of job: train, evaluate, analyze, and a table and a figure of the report, which run as the other
report items and the front page do: one `python -m aalp report` job on one core) submitted through
snakemake-executor-plugin-slurm to a one-node cluster started on this machine (tests/slurm_cluster.py,
conftest.slurm_slice_run), checked job by job in SLURM's own records. Number by number against the same
runs of the local executor: test_slurm_vs_local.py, handed out last, so that this worker does not wait for
the local run. A slice, not the whole set: the executor does not depend on the matrix, and the whole set a
second time would double the CI's longest phase."""
import re

import pytest
import yaml

from aalp import config as C, pipeline as P
from conftest import CI_SET, REPO, run
from slurm_cluster import ITEMS

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]


def test_ci_slice_runs_every_kind_of_job_through_slurm(slurm_slice_run):
    work, res = slurm_slice_run
    runs = [tuple(r) for r in res["runs"]]
    cfg = C.validate(yaml.safe_load((work / "params.yaml").read_text()))
    # every job of the slice went through sbatch (prepare downloads, so it runs where Snakemake runs: compute
    # nodes often have no internet) ...
    remote = [st.name for st in P.stages(cfg) if st.kind in ("train", "evaluate", "analyze")] + [f"report-{i}" for i in ITEMS]
    assert len(res["submitted"]) == len(remote), (len(res["submitted"]), remote)
    # ... and SLURM ran each of them to completion, on one core
    seen = res["seen"]
    assert len(seen) == len(remote) and all(state == "COMPLETED" for _, _, state, _ in seen), seen
    assert {cpus for *_, cpus in seen} == {"1"}
    print(f"SLURM: {len(remote)} jobs, {res['wall']:.0f} s wall")

    assert {p.parent.parent.relative_to(work).as_posix() for p in work.glob("runs/*/*/s*/eval/metrics.json")} == {
        f"runs/{d}/{m}/s{s}" for d, m, s in runs}
    outs = [f for st in P.stages(cfg) if st.name in remote and st.kind == "report" for f in st.outs]
    assert len(outs) >= 2 * len(ITEMS) and all((work / f).stat().st_size > 0 for f in outs)
    # the Snakemake run is recorded for DVC there too
    assert "up to date" in run(f"dvc status {' '.join(remote)}", work).stdout


def test_profile_site_settings_reach_the_jobs():
    """The settings a user edits (environment or the profile's defaults) land on the right jobs: device jobs
    on the GPU partition with GPUs and cores, notebooks on the CPU partition without, prepare local."""
    env = {"AALP_SLURM_PARTITION": "cpuq", "AALP_SLURM_GPU_PARTITION": "gpuq", "AALP_SLURM_GPUS": "2",
           "AALP_SLURM_CPUS": "6", "AALP_SLURM_ACCOUNT": "lab42"}
    dry = run(f"snakemake -n --profile profiles/slurm --directory {CI_SET} --forceall", REPO, env=env).stdout
    jobs_ = re.findall(r"^(?:local)?rule (\w+):\n(.*?)\n\n", dry, re.M | re.S)
    res = {}
    for rule, body in jobs_:
        m = re.search(r"resources: (.*)", body)
        res.setdefault(rule, dict(kv.split("=", 1) for kv in m.group(1).split(", ")) if m else {})
    for rule in ("train", "evaluate", "analyze"):
        r = res[rule]
        assert (r["slurm_partition"], r["gpu"], r["cpus_per_task"], r["slurm_account"]) == ("gpuq", "2", "6", "lab42"), r
        assert int(r["runtime"]) >= 60 and int(r["mem_mb"]) >= 8000
    report = res["report_fig01"]
    assert report["slurm_partition"] == "cpuq" and report.get("gpu", "0") == "0" and report["cpus_per_task"] == "1"
