# Stage 3: train the derived cell from scratch (params section `retrain`). The genotype comes
# from the search run of the same profile, method and seed (on `search_on[dataset]` for a
# transfer dataset such as ImageNet, or on <source> for <method>@<source>).
# Inputs, outputs and the shell command: nasflow/pipeline/stages.py (shared with dvc.yaml).


rule retrain:
    input:
        **stage_inputs("retrain"),
    output:
        **stage_outputs("retrain"),
    params:
        **stage_params("retrain"),
    log:
        stage_log("retrain"),
    threads: RETRAIN_RES["threads"]
    resources:
        gpu=RETRAIN_RES["gpu"],
        mem_mb=RETRAIN_RES["mem_mb"],
        runtime=RETRAIN_RES["runtime"],
    conda:
        ENV
    shell:
        stage_shell("retrain")
