rule prepare:
    input:
        P.code_deps("prepare"),
    output:
        **P.smk_output("prepare", DATA),
    params:
        fingerprint=lambda w: P.fingerprint(CFG, "prepare", w.dataset),
    shell:
        P.smk_shell("prepare")
