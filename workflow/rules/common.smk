# Shared helpers: the validated pipeline config, wildcard constraints, paths, params files and
# per-profile resources. Functions only (no rules), so that `snakemake --lint` stays clean.
# The stages shared with DVC (paths, inputs, outputs, shell commands) are declared once in
# nasflow/pipeline/stages.py; dvc.yaml is generated from the same declaration.
import re
import shlex

from nasflow.pipeline import available, load_pipeline_config, params_args, run_params as _run_params
from nasflow.pipeline.stages import (
    CURVES,
    METRICS,
    RESULT,
    RUN,
    SEED_RESULT,
    STAGES,
    reads_params,
    snakemake_inputs,
    snakemake_log,
    snakemake_outputs,
    snakemake_shell,
    snakemake_values,
)

PC = load_pipeline_config(config)
# `--config profile=X dataset=Y` on the command line (not the config file's values) overrides
# the profile and dataset of every table and of `analysis` (see workflow/config.yaml).
_CLI_CONFIG = workflow.config_settings.overwrite_config or {}
PC.set_table_overrides(_CLI_CONFIG.get("profile"), _CLI_CONFIG.get("dataset"))
PC.check_names(".")
KNOWN = available(".", PC.params_dir)
# method variants (workflow/config.yaml `variants`, `variant_grids`): valid method names too
VARIANTS = PC.all_variants()
METHODS = PC.method_names(".")
PUBLISHED = PC.published.tables
# tables with published numbers are built by paper_table (.md, .csv, .json), the others by table
PAPER_TABLES = [n for n in PC.tables if n in PUBLISHED]
PLAIN_TABLES = [n for n in PC.tables if n not in PUBLISHED]


def _choice(names):
    # longest first, so that e.g. darts_1level is tried before darts
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


wildcard_constraints:
    profile=_choice(KNOWN["profiles"]),
    dataset=_choice(KNOWN["datasets"]),
    # <method> or <method>@<source>: the cell searched on <source> (transfer)
    method=f"(?:{_choice(METHODS)})(?:@(?:{_choice(KNOWN['datasets'])}))?",
    seed=r"\d+",
    table=_choice(PC.tables),


# One run = one (profile, dataset, method, seed). Intermediate files live in RUN; checkpoints
# in CKPT (nasflow.pipeline.stages) are deliberately NOT outputs, so a failed job keeps them
# and a re-run resumes.


def run_dir(profile, dataset, method, seed):
    return RUN.format(profile=profile, dataset=dataset, method=method, seed=seed)


def split_method(method):
    """'dropnas@cifar10' -> ('dropnas', 'cifar10'); 'dropnas' -> ('dropnas', None)."""
    base, _, source = method.partition("@")
    return base, source or None


def search_run(wc):
    """The run whose search feeds this run: the same one, unless the method names a source
    (<method>@<source>: the cell searched on <source>, same method and seed) or the dataset is
    a transfer-only target (config `search_on`, e.g. ImageNet retrains a CIFAR-10 cell)."""
    base, source = split_method(wc.method)
    return run_dir(wc.profile, source or PC.search_dataset(wc.dataset), base, wc.seed)


def run_recipe(wc):
    """Params files and overrides of this run: dataset, method, space (a variant's), overlay,
    profile; then the variant's overrides (nasflow.pipeline.lookup)."""
    return _run_params(wc.dataset, split_method(wc.method)[0], wc.profile, ".", PC.params_dir,
                       VARIANTS)


def run_params(wc):
    """Params files of this run, in composition order."""
    return run_recipe(wc).files


def seed_overrides(wc):
    return [f"search.seed={wc.seed}", f"retrain.seed={wc.seed}"]


def cli_args(wc, input):
    """--params ... --set ... for the nasflow CLI (the params files are also inputs): the
    variant's overrides, then the seeds. A variant's overrides are part of the command, so
    Snakemake reruns its jobs when they change (rerun trigger `params`)."""
    return params_args(input.params, [*run_recipe(wc).overrides, *seed_overrides(wc)])


def parent_args(wc):
    """track_parent: the run's params and the variant's overrides (it reads only the tracking
    section, so the files are not inputs)."""
    run = run_recipe(wc)
    return params_args(run.files, run.overrides)


# The declared stages (nasflow.pipeline.stages.STAGES) as directives: each stage's rule takes
# its input, output, params, log and shell from the helpers below (plus its resources).
def stage_inputs(name):
    """The run's params files (if the stage reads params), then the declared inputs."""
    params = {"params": run_params} if reads_params(name) else {}
    return {**params, **snakemake_inputs(name, search_run)}


def stage_params(name):
    """What the command's fields need: {cli}, {args} / {files}, {seeds}, {table}, values."""
    fields = STAGES[name].fields()
    out = {}
    if "cli" in fields:
        out["cli"] = lambda wc: PC.cli
    for field, value in (("args", cli_args), ("files", parent_args), ("table", table_args)):
        if field in fields:
            out["args"] = value
    if "seeds" in fields:
        out["seeds"] = lambda wc: " ".join(map(str, PC.seeds_of(wc.profile)))
    return {**out, **snakemake_values(name)}


stage_outputs = snakemake_outputs
stage_log = snakemake_log
stage_shell = snakemake_shell


def run_name(wc, stage=None):
    name = f"{wc.profile}/{wc.dataset}_{wc.method}_s{wc.seed}"
    return name if stage is None else f"{name}/{stage}"


def rule_resources(rule):
    """threads and resources of `rule` for the job's profile (config `resources`)."""
    get = lambda wc: PC.rule_resources(wc.profile, rule)
    return {
        "threads": lambda wildcards: get(wildcards).threads,
        "gpu": lambda wildcards: get(wildcards).gpu,
        "mem_mb": lambda wildcards: get(wildcards).mem_mb,
        "runtime": lambda wildcards: get(wildcards).runtime,
    }


SEARCH_RES = rule_resources("search")
RETRAIN_RES = rule_resources("retrain")
EVALUATE_RES = rule_resources("evaluate")


def seed_results(wc):
    return [
        SEED_RESULT.format(profile=wc.profile, dataset=wc.dataset, method=wc.method, seed=s)
        for s in PC.seeds_of(wc.profile)
    ]


def table_path(name):
    return f"results/tables/{name}.md"


def table_inputs(wc):
    t = PC.table(wc.table)
    return [
        RESULT.format(profile=t["profile"], dataset=t["dataset"], method=m)
        for m in t["methods"]
    ]


def paper_table_inputs(wc):
    t = PC.table(wc.table)
    return [
        RESULT.format(profile=t["profile"], dataset=d, method=r)
        for d in t["datasets"]
        for r in t["results"]
    ]


def paper_table_spec(wc):
    import json

    return shlex.quote(json.dumps(PC.table(wc.table), separators=(",", ":")))


ANALYSIS = "results/{profile}/analysis/{dataset}_{method}_s{seed}"
# nasflow analyze's fixed-name figures (plus standalone_edge<i>.png for the first/last edge)
ANALYSIS_FIGURES = [
    "alpha_trajectories_normal.png",
    "alpha_trajectories_reduce.png",
    "alpha_grad_normal.png",
    "alpha_grad_reduce.png",
    "coadaptation.png",
]


def analysis_targets():
    a = PC.analysis_plan()
    return [
        f"{ANALYSIS}/analysis.json".format(
            profile=a["profile"], dataset=a["dataset"], method=m, seed=s
        )
        for m in a["methods"]
        for s in a["seeds"]
    ]


def analysis_images(wc):
    return PC.analysis.images.get(wc.profile, 1000)


def table_args(wc):
    # the same flags as DVC's unpacking of `tables.<name>` in dvc.yaml
    t = PC.table(wc.table)
    spec = PC.tables[wc.table]
    args = ["--profile", t["profile"], "--dataset", t["dataset"], "--methods", *t["methods"]]
    if spec.title:
        args += ["--title", spec.title]
    return " ".join(shlex.quote(a) for a in args)


def matrix_targets():
    return [
        RESULT.format(profile=PC.profile, dataset=d, method=m)
        for d in PC.datasets
        for m in PC.methods
    ]


# The software environment of every rule (used with --software-deployment-method conda).
ENV = "../envs/nasflow.yaml"
