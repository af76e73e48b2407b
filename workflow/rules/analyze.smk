rule analyze:
    input:
        P.code_deps("analyze"),
        model="runs/{dataset}/{method}/s{seed}/model.pt",
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("analyze", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "analyze", w.dataset, w.method),
    threads: 1  # one core per job; several run side by side (torch follows OMP_NUM_THREADS)
    resources:
        gpu=P.gpu_slots(CFG),  # 0 on a CPU-only machine
    shell:
        P.smk_shell("analyze")
