"""profiles/slurm against a real SLURM: the CI parameter set's whole DAG submitted through
snakemake-executor-plugin-slurm to a one-node cluster started on this machine (tests/slurm_cluster.py),
checked job by job in SLURM's own records and number by number against the local run."""
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


def _numbers(work):
    """Every number a run leaves behind: metrics of each evaluation, analysis summaries, Table 2."""
    out = {}
    for p in sorted(work.glob("runs/**/eval/metrics.json")) + sorted(work.glob("runs/**/analysis/summary.json")):
        out[str(p.relative_to(work))] = {k: v for k, v in json.loads(p.read_text()).items() if k not in PROVENANCE}
    out["table2"] = pd.read_csv(work / "reports/tables/table2.csv", keep_default_na=False).to_dict("list")  # nan != nan
    return out


def test_ci_dag_through_slurm_matches_the_local_run(tmp_path, request):
    with one_node_slurm(tmp_path / "slurm") as cluster:
        repo = copy_repo(tmp_path / "repo")
        t0 = time.time()
        # polling every 2 s instead of the plugin's 40 s start and Snakemake's 10 s: the jobs here take seconds
        r = run(f"snakemake --profile profiles/slurm --directory {CI_SET} --seconds-between-status-checks 2 "
                "--slurm-init-seconds-before-status-checks 2", repo, env=CLUSTER_ENV, timeout=2400)
        wall = time.time() - t0
        seen = jobs("%i|%j|%T|%C")
    work = repo / CI_SET
    submitted = [line for line in r.stdout.splitlines() + r.stderr.splitlines() if "submitted with SLURM jobid" in line]
    # every rule job except the local ones went through sbatch (prepare downloads, so it runs where Snakemake
    # runs: compute nodes often have no internet; `all` only collects) ...
    cfg = C.validate(yaml.safe_load((work / "params.yaml").read_text()))
    n_remote = len([st for st in P.stages(cfg) if st.kind != "prepare"])
    assert len(submitted) == n_remote, (len(submitted), n_remote)
    # ... and SLURM ran each of them to completion, on one core
    assert len(seen) == n_remote and all(state == "COMPLETED" for _, _, state, _ in seen), seen
    assert {cpus for *_, cpus in seen} == {"1"}
    print(f"SLURM: {n_remote} jobs, {wall:.0f} s wall")

    # the same numbers as the local executor's run of the same set (CPU, one thread per job: bit-identical)
    local_repo, local_work, local_wall = request.getfixturevalue("ci_snakemake_run")
    print(f"local executor: {local_wall:.0f} s wall")
    ours, theirs = _numbers(work), _numbers(local_work)
    assert ours.keys() == theirs.keys() and len(ours) > 20
    assert ours == theirs
    # and the Snakemake run is recorded for DVC there too
    assert "up to date" in run("dvc status dvc.yaml", work).stdout


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
