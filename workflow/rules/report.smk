# Stage 5: records and tables (python -m nasflow.pipeline; JSON only, no torch).
#   collect:   one seed's final record + per-epoch curves (CSV, DVC plots)
#   aggregate: mean +- population std over the profile's seeds, plus the best seed
#   table:     results/tables/<name>.md, one row per method (config `tables`)
# Helpers: short-path copies of `profile`, the `matrix` target, the generated files.
# collect / aggregate / table: declared in nasflow/pipeline/stages.py (shared with dvc.yaml).


rule collect:
    input:
        **stage_inputs("collect"),
    output:
        **stage_outputs("collect"),
    log:
        stage_log("collect"),
    conda:
        ENV
    shell:
        stage_shell("collect")


rule aggregate:
    input:
        seed_results,
    output:
        **stage_outputs("aggregate"),
    params:
        **stage_params("aggregate"),
    log:
        stage_log("aggregate"),
    conda:
        ENV
    shell:
        stage_shell("aggregate")


rule table:
    input:
        table_inputs,
    output:
        **stage_outputs("table"),
    wildcard_constraints:
        table=_choice(PLAIN_TABLES),
    params:
        **stage_params("table"),
    log:
        stage_log("table"),
    conda:
        ENV
    shell:
        stage_shell("table")


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
        "nasflow/pipeline/config.py",
        "nasflow/pipeline/variants.py",
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


# Regenerate dvc.yaml from the stage declaration (checked in; tests/test_pipeline.py checks it
# is current): `snakemake --cores 1 --forcerun dvc_yaml dvc_yaml`.
rule dvc_yaml:
    input:
        "nasflow/pipeline/stages.py",
        "workflow/config.yaml",
    output:
        "dvc.yaml",
    log:
        "runs/logs/dvc_yaml.log",
    conda:
        ENV
    shell:
        "python -m nasflow.pipeline dvc-yaml --out {output} > {log} 2>&1"
