rule evaluate:
    input:
        P.code_deps("evaluate"),
        model="runs/{dataset}/{method}/s{seed}/model.pt",
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("evaluate", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "evaluate", w.dataset, w.method),
    threads: 1  # one core per job; several run side by side (torch follows OMP_NUM_THREADS)
    resources:
        gpu=P.gpu_slots(CFG),  # 0 on a CPU-only machine
    shell:
        P.smk_shell("evaluate")


rule evaluate_snapshot:  # training.snapshot_steps: one kept snapshot of a checkpoint run (docs/method.md#budget-snapshots)
    input:
        P.code_deps("evaluate_snapshot"),
        model=lambda w: P.snapshot_checkpoint(w.dataset, w.method, w.seed, int(w.step)).as_posix(),
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("evaluate_snapshot", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "evaluate_snapshot", w.dataset, w.method),
    wildcard_constraints:
        step="[0-9]+",
    threads: 1
    resources:
        gpu=P.gpu_slots(CFG),
    shell:
        P.smk_shell("evaluate_snapshot")
