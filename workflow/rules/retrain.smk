# Stage 3: train the derived cell from scratch (params section `retrain`). The genotype comes
# from the search run of the same profile, method and seed (on `search_on[dataset]` for a
# transfer dataset such as ImageNet).


rule retrain:
    input:
        params=run_params,
        genotype=lambda wc: f"{search_run(wc)}/genotype.json",
        parent=f"{RUN}/parent.json",
    output:
        record=f"{RUN}/retrain/retrain.json",
        config=f"{RUN}/retrain/config.json",
        weights=f"{RUN}/retrain/model.pt",
    params:
        cli=lambda wc: PC.cli,
        args=cli_args,
        out=f"{RUN}/retrain",
        checkpoints=f"{CKPT}/retrain",
        name=lambda wc: run_name(wc, "retrain"),
    log:
        f"{RUN}/logs/retrain.log",
    threads: RETRAIN_RES["threads"]
    resources:
        gpu=RETRAIN_RES["gpu"],
        mem_mb=RETRAIN_RES["mem_mb"],
        runtime=RETRAIN_RES["runtime"],
    conda:
        ENV
    shell:
        "{params.cli} retrain {params.args} --set runtime.threads={threads}"
        " --genotype {input.genotype} --out {params.out} --checkpoint-dir {params.checkpoints}"
        " --run-name {params.name} --parent-run-id {input.parent} > {log} 2>&1"
