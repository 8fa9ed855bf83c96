# nasflow: differentiable NAS (DARTS, DropNAS, ...) as a reproducible pipeline.
#
#   snakemake --cores all                                  # default: DARTS vs DropNAS, smoke, digits
#   snakemake --cores all results/cifar10_dropnas.json     # the paper protocol, 8 seeds
#   snakemake --cores all results/smoke/cifar10_darts.json # any profile, explicitly
#   snakemake --cores all results/tables/ablations.md      # paper vs ours (.md/.csv/.json)
#   snakemake --cores all --config profile=smoke dataset=digits results/tables/ablations.md
#   snakemake --cores all analysis                          # nasflow analyze, DARTS vs DropNAS
#
# Rules only call the `nasflow` CLI (and `python -m nasflow.pipeline` for records and tables);
# no training logic lives here. Stages: track_parent -> search -> derive -> retrain ->
# evaluate -> collect -> aggregate -> table, declared once in nasflow/pipeline/stages.py
# (paths, inputs, outputs, shell commands); dvc.yaml is generated from the same declaration.
# How profiles map to paths: see workflow/config.yaml.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflow/config.yaml"


# The schema is generated from nasflow.pipeline.PipelineConfig (rule `schemas`), never by hand.
validate(config, "workflow/schemas/pipeline.schema.json")


include: "workflow/rules/common.smk"


# The default target: the first rule. Pinned to `default_table` (smoke profile on digits).
rule all:
    input:
        table_path(PC.default_table),
    default_target: True


# Parallel jobs must not both create a fresh MLflow SQLite store (one would fail): create it
# once, before any job starts (nothing to do with an existing file or a tracking server).
onstart:
    shell("python -m nasflow.pipeline init-tracking")


# Light jobs (seconds, no GPU) run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    matrix,
    tables,
    schemas,
    dvc_yaml,
    track_parent,
    derive,
    collect,
    aggregate,
    table,
    short_result,
    short_seed_result,
    paper_table,
    analysis,


include: "workflow/rules/search.smk"
include: "workflow/rules/derive.smk"
include: "workflow/rules/retrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/analysis.smk"
