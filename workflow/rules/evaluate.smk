rule evaluate:
    input:
        P.code_deps("evaluate"),
        model="runs/{dataset}/{method}/s{seed}/model.pt",
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("evaluate", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "evaluate", w.dataset, w.method),
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        P.smk_shell("evaluate")
