rule train:
    input:
        P.code_deps("train"),
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("train", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "train", w.dataset, w.method),
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        P.smk_shell("train")
