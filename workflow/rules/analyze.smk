rule analyze:
    input:
        P.code_deps("analyze"),
        model="runs/{dataset}/{method}/s{seed}/model.pt",
        data=lambda w: P.prepared(DATA, w.dataset),
    output:
        **P.smk_output("analyze", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "analyze", w.dataset, w.method),
    threads: workflow.cores
    resources:
        gpu=1,
    shell:
        P.smk_shell("analyze")
