# Stage 5: records and tables (python -m nasflow.pipeline; JSON only, no torch).
#   collect:   one seed's final record + per-epoch curves (CSV, DVC plots)
#   aggregate: mean +- population std over the profile's seeds, plus the best seed
#   table:     results/tables/<name>.md, one row per method (config `tables`)
# Helpers: short-path copies of `profile`, the `matrix` target, the generated schemas.


rule collect:
    input:
        search=lambda wc: f"{search_run(wc)}/search/search.json",
        search_config=lambda wc: f"{search_run(wc)}/search/config.json",
        genotype=lambda wc: f"{search_run(wc)}/genotype.json",
        retrain=f"{RUN}/retrain/retrain.json",
        retrain_config=f"{RUN}/retrain/config.json",
        evaluation=f"{RUN}/eval.json",
        parent=f"{RUN}/parent.json",
    output:
        record=SEED_RESULT,
        search_curve=f"{CURVES}_search.csv",
        retrain_curve=f"{CURVES}_retrain.csv",
    log:
        f"{RUN}/logs/collect.log",
    conda:
        ENV
    shell:
        "python -m nasflow.pipeline collect --search {input.search} --genotype {input.genotype}"
        " --retrain {input.retrain} --eval {input.evaluation} --parent {input.parent}"
        " --search-config {input.search_config} --retrain-config {input.retrain_config}"
        " --profile {wildcards.profile} --dataset {wildcards.dataset}"
        " --method {wildcards.method} --seed {wildcards.seed}"
        " --curves {output.search_curve} {output.retrain_curve} --out {output.record} > {log} 2>&1"


rule aggregate:
    input:
        seed_results,
    output:
        record=RESULT,
        metrics=METRICS,
    params:
        folder="results/{profile}/{dataset}_{method}",
        seeds=lambda wc: " ".join(map(str, PC.seeds_of(wc.profile))),
    log:
        "runs/{profile}/logs/aggregate_{dataset}_{method}.log",
    conda:
        ENV
    shell:
        "python -m nasflow.pipeline aggregate --dir {params.folder} --seeds {params.seeds}"
        " --out {output.record} --metrics {output.metrics} > {log} 2>&1"


rule table:
    input:
        table_inputs,
    output:
        "results/tables/{table}.md",
    wildcard_constraints:
        table=_choice(PLAIN_TABLES),
    params:
        args=table_args,
    log:
        "runs/logs/table_{table}.log",
    conda:
        ENV
    shell:
        "python -m nasflow.pipeline table {params.args} --out {output} > {log} 2>&1"


# A paper table: ours (mean ± population std over the profile's seeds, best seed, params,
# search cost) beside the published numbers (config `published`, passed in the spec), as Markdown, CSV and JSON.
rule paper_table:
    input:
        paper_table_inputs,
    output:
        md="results/tables/{table}.md",
        csv="results/tables/{table}.csv",
        json="results/tables/{table}.json",
    wildcard_constraints:
        table=_choice(PAPER_TABLES),
    params:
        spec=paper_table_spec,
    log:
        "runs/logs/table_{table}.log",
    conda:
        ENV
    shell:
        "python -m nasflow.pipeline paper-table --spec {params.spec}"
        " --out {output.md} > {log} 2>&1"


# results/<dataset>_<method>.json and results/<dataset>_<method>_s<seed>.json: copies of the
# config's `profile` (default paper). `--config profile=smoke` makes them the smoke results.
rule short_result:
    input:
        RESULT.replace("{profile}", PC.profile),
    output:
        "results/{dataset}_{method}.json",
    log:
        "runs/logs/short_{dataset}_{method}.log",
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"


rule short_seed_result:
    input:
        SEED_RESULT.replace("{profile}", PC.profile),
    output:
        "results/{dataset}_{method}_s{seed}.json",
    log:
        "runs/logs/short_{dataset}_{method}_s{seed}.log",
    conda:
        ENV
    shell:
        "cp {input} {output} 2> {log}"


# Every result of `profile` on datasets x methods (config), and every configured table.
rule matrix:
    input:
        matrix_targets(),


rule tables:
    input:
        [table_path(name) for name in PC.tables],


# Regenerate the JSON schemas from the pydantic models (they are checked in, as the Snakefile
# validates its config at parse time; tests/test_pipeline.py checks they are current).
rule schemas:
    input:
        "nasflow/params.py",
        "nasflow/config.py",
        "nasflow/pipeline.py",
    output:
        run_config="workflow/schemas/run_config.schema.json",
        pipeline="workflow/schemas/pipeline.schema.json",
    params:
        cli=lambda wc: PC.cli,
    log:
        "runs/logs/schemas.log",
    conda:
        ENV
    shell:
        "({params.cli} schema --out {output.run_config}"
        " && python -m nasflow.pipeline schema --out {output.pipeline}) > {log} 2>&1"
