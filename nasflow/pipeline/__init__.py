"""The pipeline layer: what Snakemake and DVC need beyond the ``nasflow`` CLI.

Snakemake (``Snakefile``, ``workflow/rules/*.smk``) and DVC (``dvc.yaml``) only wire files
together; both build the same stages from the same code. One module per job:

- :mod:`~nasflow.pipeline.config`: :class:`PipelineConfig`, the model of
  ``workflow/config.yaml`` (+ ``--config``); its JSON schema is generated (:func:`pipeline_schema`).
- :mod:`~nasflow.pipeline.variants`: method variants and variant grids as data.
- :mod:`~nasflow.pipeline.lookup`: the params files and overrides of one run
  (:func:`run_params`, :func:`params_files`), :func:`check_params`.
- :mod:`~nasflow.pipeline.records`: one seed's record (:func:`collect_result`), curves, the
  aggregate over seeds (:func:`aggregate`: mean +- *population* std, plus the best seed).
- :mod:`~nasflow.pipeline.tables`: :func:`markdown_table` and the paper tables.
- :mod:`~nasflow.pipeline.stages`: the stage declaration (:data:`STAGES`) behind the
  Snakefile's rules and the generated ``dvc.yaml`` (:func:`dvc_yaml`).
- :mod:`~nasflow.pipeline.cli`: ``python -m nasflow.pipeline {schema,init-tracking,params-files,
  check-params,dvc-yaml,collect,aggregate,table,paper-table}``.

Nothing here imports torch: Snakemake imports this package on every invocation (dry runs, lint).
"""

from nasflow.pipeline.cli import build_parser, init_tracking_store, main
from nasflow.pipeline.config import (
    NAME_PATTERN,
    RESOURCE_RULES,
    AnalysisSpec,
    GridSpec,
    PipelineConfig,
    ProfileSettings,
    PublishedEntry,
    PublishedNumbers,
    RuleResources,
    TableSpec,
    load_pipeline_config,
    pipeline_schema,
)
from nasflow.pipeline.lookup import (
    KINDS,
    RunParams,
    available,
    check_params,
    params_args,
    params_files,
    run_params,
    variant_errors,
)
from nasflow.pipeline.records import (
    STD_KIND,
    aggregate,
    collect_result,
    summary_metrics,
    write_curves,
)
from nasflow.pipeline.stages import STAGES, Stage, dvc_yaml
from nasflow.pipeline.tables import (
    build_paper_table,
    markdown_table,
    paper_table_csv,
    paper_table_header,
    paper_table_markdown,
    write_paper_table,
)
from nasflow.pipeline.variants import Recipe, VariantGrid, VariantSpec, format_value, resolve

__all__ = [
    "KINDS", "NAME_PATTERN", "RESOURCE_RULES", "STAGES", "STD_KIND", "AnalysisSpec", "GridSpec",
    "PipelineConfig", "ProfileSettings", "PublishedEntry", "PublishedNumbers", "Recipe",
    "RuleResources", "RunParams", "Stage", "TableSpec", "VariantGrid", "VariantSpec",
    "aggregate", "available", "build_paper_table", "build_parser", "check_params",
    "collect_result", "dvc_yaml", "format_value", "init_tracking_store", "load_pipeline_config",
    "main", "markdown_table", "paper_table_csv", "paper_table_header", "paper_table_markdown",
    "params_args", "params_files", "pipeline_schema", "resolve", "run_params", "summary_metrics",
    "variant_errors", "write_curves", "write_paper_table",
]
