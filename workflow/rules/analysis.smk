# The DropNAS paper's analyses of one search (`nasflow analyze`): alpha trajectories, mean
# |grad alpha| per op, co-adaptation (K-means / PCA of the ops' features), alpha vs stand-alone
# accuracy. Reads the search folder (search.json and its supernet.pt).
import os


rule analyze:
    input:
        params=run_params,
        search=f"{RUN}/search/search.json",
    output:
        record=f"{ANALYSIS}/analysis.json",
        figures=[f"{ANALYSIS}/{name}" for name in ANALYSIS_FIGURES],
    params:
        cli=lambda wc: PC.cli,
        args=cli_args,
        search=lambda wc, input: os.path.dirname(input.search),
        out=lambda wc, output: os.path.dirname(output.record),
        images=analysis_images,
        name=lambda wc: run_name(wc, "analyze"),
    log:
        f"{RUN}/logs/analyze.log",
    threads: EVALUATE_RES["threads"]
    resources:
        gpu=EVALUATE_RES["gpu"],
        mem_mb=EVALUATE_RES["mem_mb"],
        runtime=EVALUATE_RES["runtime"],
    conda:
        ENV
    shell:
        "{params.cli} analyze {params.args} --set runtime.threads={threads}"
        " --search {params.search} --out {params.out} --images {params.images}"
        " --run-name {params.name} > {log} 2>&1"


# config `analysis`: one-level DARTS vs DropNAS on its dataset (overridable like the tables)
rule analysis:
    input:
        analysis_targets(),
