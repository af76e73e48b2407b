"""profiles/slurm against a real SLURM: a slice of the CI parameter set (RAW and AALP on the synthetic set,
seed 0: the plain path and every training option (guided dropout, adaptive weights, the checkpoint series);
every kind of job: train, evaluate, analyze, and a table and a figure of the report, which run as the other
report items and the front page do: one `python -m aalp report` job on one core) submitted through
snakemake-executor-plugin-slurm to a one-node cluster started on this machine (tests/slurm_cluster.py),
checked job by job in SLURM's own records and number by number against the same runs of the local run.
A slice, not the whole set: the executor does not depend on the matrix, and the whole set a second time
would double the CI's longest phase."""
import json
import re
import time

import pandas as pd
import pytest
import yaml

from aalp import config as C, pipeline as P
from conftest import CI_SET, REPO, copy_repo, run
from slurm_cluster import jobs, one_node_slurm

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

# This cluster is one CPU-only node without accounting: jobs ask for no GPU and one core, the executor
# polls squeue, and no account is given (the profile reads these from the environment).
CLUSTER_ENV = {"AALP_SLURM_GPUS": "0", "AALP_SLURM_CPUS": "1", "AALP_SLURM_STATUS": "squeue"}


PROVENANCE = {"created", "code_version", "host", "python", "torch"}  # when and by which checkout, not what


SLICE = ("raw", "aalp")  # on the synthetic set, seed 0
ITEMS = ("table2", "fig09")  # a table from the evaluations, a figure from AALP's checkpoint analyses


def _slice(work):
    """The CI set's params restricted to SLICE (config.only_runs), written over the copy's params.yaml."""
    cfg = C.validate(yaml.safe_load((work / "params.yaml").read_text()))
    keep = [(d, m, s) for d, m, s in C.runs(cfg) if d == "synthetic" and m in SLICE and s == 0]
    (work / "params.yaml").write_text(yaml.safe_dump(C.only_runs(yaml.safe_load((work / "params.yaml").read_text()),
                                                                 keep), sort_keys=False))
    run("python -m aalp dvc", work)  # the slice's stages, so that DVC can take the Snakemake run's records
    return keep


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


def test_ci_dag_through_slurm_matches_the_local_run(tmp_path, request):
    with one_node_slurm(tmp_path / "slurm") as cluster:
        repo = copy_repo(tmp_path / "repo")
        runs = _slice(repo / CI_SET)
        t0 = time.time()
        # polling every 2 s instead of the plugin's 40 s start and Snakemake's 10 s: the jobs here take seconds
        targets = [f"runs/{d}/{m}/s{s}/{f}" for d, m, s in runs for f in ("eval/metrics.json", "analysis/summary.json")]
        targets += [f"reports/{item}.html" for item in ITEMS]
        r = run(f"snakemake --profile profiles/slurm --directory {CI_SET} --seconds-between-status-checks 2 "
                f"--slurm-init-seconds-before-status-checks 2 {' '.join(targets)}", repo, env=CLUSTER_ENV, timeout=2400)
        wall = time.time() - t0
        seen = jobs("%i|%j|%T|%C")
    work = repo / CI_SET
    submitted = [line for line in r.stdout.splitlines() + r.stderr.splitlines() if "submitted with SLURM jobid" in line]
    # every rule job except the local ones went through sbatch (prepare downloads, so it runs where Snakemake
    # runs: compute nodes often have no internet; `all` only collects) ...
    cfg = C.validate(yaml.safe_load((work / "params.yaml").read_text()))
    remote = [st.name for st in P.stages(cfg) if st.kind in ("train", "evaluate", "analyze")] + [f"report-{i}" for i in ITEMS]
    n_remote = len(remote)
    assert len(submitted) == n_remote, (len(submitted), n_remote)
    # ... and SLURM ran each of them to completion, on one core
    assert len(seen) == n_remote and all(state == "COMPLETED" for _, _, state, _ in seen), seen
    assert {cpus for *_, cpus in seen} == {"1"}
    print(f"SLURM: {n_remote} jobs, {wall:.0f} s wall")

    assert {p.parent.parent.relative_to(work).as_posix() for p in work.glob("runs/*/*/s*/eval/metrics.json")} == {
        f"runs/{d}/{m}/s{s}" for d, m, s in runs}
    outs = [f for st in P.stages(cfg) if st.name in remote and st.kind == "report" for f in st.outs]
    assert len(outs) >= 2 * len(ITEMS) and all((work / f).stat().st_size > 0 for f in outs)

    # the same numbers as the local executor's run of the same runs (CPU, one thread per job: bit-identical)
    local_repo, local_work, local_wall = request.getfixturevalue("ci_snakemake_run")
    print(f"local executor: {local_wall:.0f} s wall")
    ours, theirs = _numbers(work, runs), _numbers(local_work, runs)
    assert len(ours) == 3 * len(SLICE)
    assert ours == theirs
    # and the Snakemake run is recorded for DVC there too
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
