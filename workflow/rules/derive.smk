# Stage 2: read the discrete genotype off the search's alphas (params section `derive`).


rule derive:
    input:
        params=run_params,
        search=f"{RUN}/search/search.json",
    output:
        f"{RUN}/genotype.json",
    params:
        cli=lambda wc: PC.cli,
        args=cli_args,
    log:
        f"{RUN}/logs/derive.log",
    conda:
        ENV
    shell:
        "{params.cli} derive {params.args} --search {input.search} --out {output} > {log} 2>&1"
