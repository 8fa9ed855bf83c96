# Stage 1: open the MLflow parent run of one (profile, dataset, method, seed), then search.
# Paths, inputs, outputs and shell commands: nasflow/pipeline/stages.py (shared with dvc.yaml).


# The parent run groups the search / retrain / evaluate child runs of one seed. It reads only
# the tracking section, so the params files are passed but not declared as inputs: editing a
# search or retrain value must not open a new parent (and rerun everything below it).
rule track_parent:
    output:
        **stage_outputs("track_parent"),
    params:
        **stage_params("track_parent"),
    log:
        stage_log("track_parent"),
    conda:
        ENV
    shell:
        stage_shell("track_parent")


rule search:
    input:
        **stage_inputs("search"),
    output:
        **stage_outputs("search"),
    params:
        **stage_params("search"),
    log:
        stage_log("search"),
    threads: SEARCH_RES["threads"]
    resources:
        gpu=SEARCH_RES["gpu"],
        mem_mb=SEARCH_RES["mem_mb"],
        runtime=SEARCH_RES["runtime"],
    conda:
        ENV
    shell:
        stage_shell("search")
