# Stage 1: open the MLflow parent run of one (profile, dataset, method, seed), then search.


# The parent run groups the search / retrain / evaluate child runs of one seed. It reads only
# the tracking section, so the params files are passed but not declared as inputs: editing a
# search or retrain value must not open a new parent (and rerun everything below it).
rule track_parent:
    output:
        f"{RUN}/parent.json",
    params:
        cli=lambda wc: PC.cli,
        args=lambda wc: params_args(run_params(wc)),
        name=lambda wc: run_name(wc),
    log:
        f"{RUN}/logs/track_parent.log",
    conda:
        ENV
    shell:
        "{params.cli} track-parent {params.args} --name {params.name} --out {output} > {log} 2>&1"


rule search:
    input:
        params=run_params,
        parent=f"{RUN}/parent.json",
    output:
        search=f"{RUN}/search/search.json",
        config=f"{RUN}/search/config.json",
        genotype=f"{RUN}/search/genotype.json",
    params:
        cli=lambda wc: PC.cli,
        args=cli_args,
        out=f"{RUN}/search",
        checkpoints=f"{CKPT}/search",
        name=lambda wc: run_name(wc, "search"),
    log:
        f"{RUN}/logs/search.log",
    threads: SEARCH_RES["threads"]
    resources:
        gpu=SEARCH_RES["gpu"],
        mem_mb=SEARCH_RES["mem_mb"],
        runtime=SEARCH_RES["runtime"],
    conda:
        ENV
    shell:
        "{params.cli} search {params.args} --set runtime.threads={threads}"
        " --out {params.out} --checkpoint-dir {params.checkpoints}"
        " --run-name {params.name} --parent-run-id {input.parent} > {log} 2>&1"
