rule report:
    input:
        P.code_deps("report"),
        metrics=P.report_inputs(CFG),
    output:
        **P.smk_output("report", DATA),
    params:
        fingerprint=P.fingerprint(CFG, "report"),
    shell:
        P.smk_shell("report")
