# One job per figure or table (it reads only its own run files, so a change reruns only the items it
# touches), then the front page.
def _reported(item):
    """The item's outputs, its figure and table flagged for Snakemake's own report (snakemake --report)."""
    out = []
    for path in P.item_outs(item):
        if path.endswith(".png"):
            path = report(path, caption="../report/item.rst", category="Figures", labels={"item": item})
        elif path == f"reports/tables/{item}.csv":
            path = report(path, caption="../report/item.rst", category="Tables", labels={"item": item})
        out.append(path)
    return out


for item in P.notebooks():

    rule:
        name:
            f"report_{item}"
        input:
            P.code_deps("report", item=item),
            P.item_inputs(CFG, item),
        output:
            _reported(item),
        params:
            fingerprint=P.fingerprint(CFG, "report"),
            item=item,
            title=P.item_title(item),
            caption=P.item_caption(item),  # bound now: the shell command is formatted when the job runs, after the loop
        shell:
            "python -m aalp report --item {params.item}"


rule report:
    input:
        P.code_deps("index"),
        P.index_inputs(CFG),
    output:
        index=report(P.REPORT_INDEX[0], caption="../report/index.rst", category="Front page"),
        **{k: v for k, v in P.smk_output("index").items() if v != P.REPORT_INDEX[0]},
    params:
        fingerprint=P.fingerprint(CFG, "index"),
    shell:
        P.smk_shell("index")
