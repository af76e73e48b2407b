if not P.grouped(CFG):

    rule train:
        input:
            P.code_deps("train"),
            data=lambda w: P.prepared(DATA, w.dataset),
        output:
            **P.smk_output("train", DATA),
        params:
            fingerprint=lambda w: P.fingerprint(CFG, "train", w.dataset, w.method),
        threads: 1  # one core per job; several run side by side (torch follows OMP_NUM_THREADS)
        resources:
            gpu=P.gpu_slots(CFG),  # 0 on a CPU-only machine
        shell:
            P.smk_shell("train")


# One rule per training stage that the wildcard rule cannot describe (the same stage as dvc.yaml's): with
# training.group_seeds, one job per (dataset, method) trains all its seeds; without, a run that keeps snapshots to
# evaluate (training.snapshot_steps) declares them (a rule without wildcards takes precedence over `train`).
for st in P.rule_trains(CFG):

    rule:
        name:
            P.group_rule(st.name)
        input:
            [d for d in st.deps if not d.startswith(f"{DATA}/")],
            data=[d for d in st.deps if d.startswith(f"{DATA}/")],
        output:
            st.all_outs,
        params:
            fingerprint=P.fingerprint(CFG, "train", *P.group_of(st.name)),
            stage=st.name,  # the dvc.yaml stage Snakemake's commit records (sync.stage_name)
            cmd=st.cmd,  # bound now: the shell command is formatted when the job runs, after the loop
        threads: 1
        resources:
            gpu=P.gpu_slots(CFG),
        shell:
            "{params.cmd}"
