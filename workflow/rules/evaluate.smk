# Stage 4: test error (top-1/top-5), params (DARTS convention) and MACs of the retrained weights.
# Inputs, outputs and the shell command: nasflow/pipeline/stages.py (shared with dvc.yaml).


rule evaluate:
    input:
        **stage_inputs("evaluate"),
    output:
        **stage_outputs("evaluate"),
    params:
        **stage_params("evaluate"),
    log:
        stage_log("evaluate"),
    threads: EVALUATE_RES["threads"]
    resources:
        gpu=EVALUATE_RES["gpu"],
        mem_mb=EVALUATE_RES["mem_mb"],
        runtime=EVALUATE_RES["runtime"],
    conda:
        ENV
    shell:
        stage_shell("evaluate")
