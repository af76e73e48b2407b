# One job per figure or table (it reads only its own run files, so a change reruns only the items it
# touches), then the front page.
for item in P.notebooks():

    rule:
        name:
            f"report_{item}"
        input:
            P.code_deps("report", item=item),
            P.item_inputs(CFG, item),
        output:
            P.item_outs(item),
        params:
            fingerprint=P.fingerprint(CFG, "report"),
            item=item,  # bound now: the shell command is formatted when the job runs, after the loop
        shell:
            "python -m aalp report --item {params.item}"


rule report:
    input:
        P.code_deps("index"),
        P.index_inputs(CFG),
    output:
        **P.smk_output("index"),
    params:
        fingerprint=P.fingerprint(CFG, "index"),
    shell:
        P.smk_shell("index")
