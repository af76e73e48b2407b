# The AALP pipeline: prepare data -> train every (dataset, method, seed) -> attack evaluation -> report.
# Paths, commands and parameter lists come from src/aalp/pipeline.py, which also writes dvc.yaml.
#   paper set:       snakemake --cores all --resources gpu=1
#   other parameter sets: snakemake --cores all --resources gpu=1 --directory configs/<name>
import sys

from snakemake.utils import min_version, validate

from aalp import config as C, pipeline as P, sync as S
from aalp.checkout import check_checkout

min_version("9.0")


configfile: "params.yaml"


report: "workflow/report/workflow.rst"


try:
    check_checkout(workflow.basedir)  # the imported aalp must be this checkout's code
    CFG = C.validate(config)  # one-line errors naming the key, before any job starts
except C.ConfigError as e:
    sys.exit(f"error: {e}")
validate(config, schema="workflow/schemas/params.schema.json")
DATA = CFG["data"]["dir"]

# Compute nodes of a cluster often have no internet: downloads run where Snakemake runs.
localrules: prepare


# Two engines, one state (src/aalp/sync.py): outputs that DVC verifies as current after `dvc repro` or
# `dvc pull` are not rerun here, and a successful run is recorded in dvc.lock so `dvc status` agrees
# (a run with nothing to do has no onsuccess: it commits at exit what an earlier commit missed).
if not workflow.remote_exec:
    S.adopt_dvc(CFG, workflow.main_snakefile)
    S.commit_at_exit(workflow, CFG)


onsuccess:
    S.commit_to_dvc(CFG, [S.stage_name(job.rule.name, job.wildcards, job.params) for job in workflow.dag.jobs])


wildcard_constraints:
    dataset="[a-z][a-z0-9_]*",
    method="[a-z][a-z0-9_]*",
    seed="[0-9]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        P.smk_targets(CFG),
