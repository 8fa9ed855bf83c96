# Stage 4: test error (top-1/top-5), params (DARTS convention) and MACs of the retrained weights.


rule evaluate:
    input:
        params=run_params,
        genotype=lambda wc: f"{search_run(wc)}/genotype.json",
        weights=f"{RUN}/retrain/model.pt",
        record=f"{RUN}/retrain/retrain.json",
        parent=f"{RUN}/parent.json",
    output:
        f"{RUN}/eval.json",
    params:
        cli=lambda wc: PC.cli,
        args=cli_args,
        name=lambda wc: run_name(wc, "evaluate"),
    log:
        f"{RUN}/logs/evaluate.log",
    threads: EVALUATE_RES["threads"]
    resources:
        gpu=EVALUATE_RES["gpu"],
        mem_mb=EVALUATE_RES["mem_mb"],
        runtime=EVALUATE_RES["runtime"],
    conda:
        ENV
    shell:
        "{params.cli} evaluate {params.args} --set runtime.threads={threads}"
        " --genotype {input.genotype} --weights {input.weights} --out {output}"
        " --run-name {params.name} --parent-run-id {input.parent} > {log} 2>&1"
