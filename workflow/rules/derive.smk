# Stage 2: read the discrete genotype off the search's alphas (params section `derive`).
# Inputs, outputs and the shell command: nasflow/pipeline/stages.py (shared with dvc.yaml).


rule derive:
    input:
        **stage_inputs("derive"),
    output:
        **stage_outputs("derive"),
    params:
        **stage_params("derive"),
    log:
        stage_log("derive"),
    conda:
        ENV
    shell:
        stage_shell("derive")
