"""The stages of the pipeline, declared once: the Snakefile's rules and ``dvc.yaml`` are both
built from :data:`STAGES`, so their commands, inputs and outputs cannot drift.

A stage has a command template, named inputs and outputs (path templates over the run's
``{profile}``, ``{dataset}``, ``{method}``, ``{seed}``), values (other templated arguments),
and the params sections it reads per kind of params file (DVC tracks params per file and
section, so that an edit reruns only the stages that read it). Command fields:

``{cli}``                 the ``nasflow`` CLI (config ``cli``)
``{args}`` / ``{files}``  ``--params`` files and ``--set`` overrides (``{files}``: no seeds)
``{threads}``             ``--set runtime.threads=<threads>`` (Snakemake only)
``{seeds}``               ``--seeds <the profile's seeds>``
``{table}``               ``--profile P --dataset D --methods M... [--title T]`` of a table
``{input.X}`` / ``{output.X}`` / ``{value.X}``   a declared path or value
``{profile}`` ...         a wildcard of the run

``{search_run}`` in a path is the run whose search feeds this one: the run itself, or on
Snakemake the source dataset's run (transfer, ``<method>@<source>``, ``search_on``).

``python -m nasflow.pipeline dvc-yaml --out dvc.yaml`` writes ``dvc.yaml`` (the default
comparison, ``tables.<default_table>`` of ``workflow/config.yaml``); a test fails when the
committed file is stale.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nasflow.pipeline.config import PipelineConfig
from nasflow.pipeline.lookup import available

RUN = "runs/{profile}/{dataset}_{method}_s{seed}"
CKPT = "checkpoints/{profile}/{dataset}_{method}_s{seed}"
NAME = "{profile}/{dataset}_{method}_s{seed}"
SEED_RESULT = "results/{profile}/{dataset}_{method}/s{seed}.json"
RESULT = "results/{profile}/{dataset}_{method}.json"
RESULT_DIR = "results/{profile}/{dataset}_{method}"
METRICS = "results/{profile}/metrics/{dataset}_{method}.json"
CURVES = "results/{profile}/curves/{dataset}_{method}_s{seed}"
TABLE = "results/tables/{table}.md"
PIPELINE = "python -m nasflow.pipeline"
WILDCARDS = ("profile", "dataset", "method", "seed", "table")


@dataclass(frozen=True)
class Output:
    path: str
    cache: bool = True                      # DVC: cached (pushed to the remote) or not
    kind: Literal["outs", "metrics", "plots"] = "outs"
    plot: Mapping[str, str] = field(default_factory=dict)   # DVC plot properties


@dataclass(frozen=True)
class Stage:
    name: str
    command: str
    per: Literal["run", "result", "table"]  # one job per seed run, per result, per table
    doc: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)
    outputs: Mapping[str, Output] = field(default_factory=dict)
    values: Mapping[str, str] = field(default_factory=dict)
    #: params sections read, per kind of params file; non-empty: the files are inputs
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: DVC dependencies instead of `inputs` (folders: Snakemake lists their files itself)
    dvc_deps: tuple[str, ...] | None = None
    log: str = ""

    def fields(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.command) if f is not None]


_RUN_READS = {  # the sections each run stage reads
    "search": {"datasets": ("dataset", "search"), "methods": ("method", "search"),
               "spaces": ("space",), "overlays": ("dataset", "search"),
               "profiles": ("dataset", "search", "runtime", "tracking")},
    "derive": {"methods": ("derive",), "spaces": ("space",), "overlays": ("derive",),
               "profiles": ("derive",)},
    "retrain": {"datasets": ("dataset", "retrain"), "methods": ("retrain",),
                "overlays": ("dataset", "retrain"),
                "profiles": ("dataset", "retrain", "runtime", "tracking")},
    "evaluate": {"datasets": ("dataset",), "overlays": ("dataset", "evaluate"),
                 "profiles": ("dataset", "evaluate", "runtime", "tracking")},
}

STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("track_parent", per="run",
          doc="MLflow parent run of one seed (reads only the tracking section)",
          command="{cli} track-parent {files} --name {value.name} --out {output.parent}",
          outputs={"parent": Output(f"{RUN}/parent.json", cache=False)},
          values={"name": NAME}, log=f"{RUN}/logs/track_parent.log"),
    Stage("search", per="run",
          command="{cli} search {args} {threads} --out {value.out}"
                  " --checkpoint-dir {value.checkpoints} --run-name {value.name}"
                  " --parent-run-id {input.parent}",
          inputs={"parent": f"{RUN}/parent.json"},
          outputs={"search": Output(f"{RUN}/search/search.json"),
                   "config": Output(f"{RUN}/search/config.json"),
                   "genotype": Output(f"{RUN}/search/genotype.json")},
          values={"out": f"{RUN}/search", "checkpoints": f"{CKPT}/search",
                  "name": f"{NAME}/search"},
          reads=_RUN_READS["search"], log=f"{RUN}/logs/search.log"),
    Stage("derive", per="run",
          command="{cli} derive {args} --search {input.search} --out {output.genotype}",
          inputs={"search": f"{RUN}/search/search.json"},
          outputs={"genotype": Output(f"{RUN}/genotype.json")},
          reads=_RUN_READS["derive"], log=f"{RUN}/logs/derive.log"),
    Stage("retrain", per="run",
          command="{cli} retrain {args} {threads} --genotype {input.genotype}"
                  " --out {value.out} --checkpoint-dir {value.checkpoints}"
                  " --run-name {value.name} --parent-run-id {input.parent}",
          inputs={"genotype": "{search_run}/genotype.json", "parent": f"{RUN}/parent.json"},
          outputs={"record": Output(f"{RUN}/retrain/retrain.json"),
                   "config": Output(f"{RUN}/retrain/config.json"),
                   "weights": Output(f"{RUN}/retrain/model.pt")},
          values={"out": f"{RUN}/retrain", "checkpoints": f"{CKPT}/retrain",
                  "name": f"{NAME}/retrain"},
          reads=_RUN_READS["retrain"], log=f"{RUN}/logs/retrain.log"),
    Stage("evaluate", per="run",
          command="{cli} evaluate {args} {threads} --genotype {input.genotype}"
                  " --weights {input.weights} --out {output.evaluation}"
                  " --run-name {value.name} --parent-run-id {input.parent}",
          inputs={"genotype": "{search_run}/genotype.json",
                  "weights": f"{RUN}/retrain/model.pt", "record": f"{RUN}/retrain/retrain.json",
                  "parent": f"{RUN}/parent.json"},
          outputs={"evaluation": Output(f"{RUN}/eval.json")},
          values={"name": f"{NAME}/evaluate"},
          reads=_RUN_READS["evaluate"], log=f"{RUN}/logs/evaluate.log"),
    Stage("collect", per="run", doc="one seed's final record + per-epoch curves",
          command=f"{PIPELINE} collect --search {{input.search}} --genotype {{input.genotype}}"
                  " --retrain {input.retrain} --eval {input.evaluation} --parent {input.parent}"
                  " --search-config {input.search_config}"
                  " --retrain-config {input.retrain_config}"
                  " --profile {profile} --dataset {dataset} --method {method} --seed {seed}"
                  " --curves {output.search_curve} {output.retrain_curve}"
                  " --out {output.record}",
          inputs={"search": "{search_run}/search/search.json",
                  "search_config": "{search_run}/search/config.json",
                  "genotype": "{search_run}/genotype.json",
                  "retrain": f"{RUN}/retrain/retrain.json",
                  "retrain_config": f"{RUN}/retrain/config.json",
                  "evaluation": f"{RUN}/eval.json", "parent": f"{RUN}/parent.json"},
          outputs={"record": Output(SEED_RESULT, cache=False),
                   "search_curve": Output(f"{CURVES}_search.csv", cache=False, kind="plots",
                                          plot={"x": "epoch", "y": "train_loss",
                                                "title": "search (supernet) training loss"}),
                   "retrain_curve": Output(f"{CURVES}_retrain.csv", cache=False, kind="plots",
                                           plot={"x": "epoch", "y": "test_acc",
                                                 "title": "retraining test accuracy"})},
          log=f"{RUN}/logs/collect.log"),
    Stage("aggregate", per="result",
          doc="mean +- population std over the seeds, plus the best seed",
          command=f"{PIPELINE} aggregate --dir {{value.folder}} {{seeds}}"
                  " --out {output.record} --metrics {output.metrics}",
          outputs={"record": Output(RESULT, cache=False),
                   "metrics": Output(METRICS, cache=False, kind="metrics")},
          values={"folder": RESULT_DIR}, dvc_deps=(RESULT_DIR,),
          log="runs/{profile}/logs/aggregate_{dataset}_{method}.log"),
    Stage("table", per="table", doc=f"{TABLE}, one row per method",
          command=f"{PIPELINE} table {{table}} --out {{output.table}}",
          outputs={"table": Output(TABLE, cache=False)},
          dvc_deps=("results/{profile}",), log="runs/logs/table_{table}.log"),
)}


# ---- Snakemake ----------------------------------------------------------------------------------
_SMK_SPECIAL = {"cli": "{params.cli}", "args": "{params.args}", "files": "{params.args}",
                "threads": "--set runtime.threads={threads}", "seeds": "--seeds {params.seeds}",
                "table": "{params.args}"}


def _render(command: str, field_value: Callable[[str], str]) -> str:
    out = []
    for text, name, _, _ in string.Formatter().parse(command):
        out.append(text)
        if name is not None:
            out.append(field_value(name))
    return " ".join("".join(out).split())


def snakemake_shell(name: str) -> str:
    """The rule's shell command (its log gets stdout and stderr)."""
    def value(f: str) -> str:
        kind, _, key = f.partition(".")
        if f in _SMK_SPECIAL:
            return _SMK_SPECIAL[f]
        if kind in ("input", "output"):
            return "{" + f + "}"
        if kind == "value":
            return "{params." + key + "}"
        if f in WILDCARDS:
            return "{wildcards." + f + "}"
        raise KeyError(f"stage {name}: unknown command field {{{f}}}")

    return _render(STAGES[name].command, value) + " > {log} 2>&1"


def snakemake_inputs(name: str, search_run: Callable[[Any], str]) -> dict[str, Any]:
    """Named inputs; a path through ``{search_run}`` becomes a function of the wildcards."""
    def through(template: str) -> Callable[[Any], str]:
        return lambda wc: template.format(search_run=search_run(wc), profile=wc.profile,
                                          dataset=wc.dataset, method=wc.method, seed=wc.seed)

    return {k: through(p) if "{search_run}" in p else p for k, p in STAGES[name].inputs.items()}


def snakemake_outputs(name: str) -> dict[str, str]:
    return {k: o.path for k, o in STAGES[name].outputs.items()}


def snakemake_values(name: str) -> dict[str, str]:
    return dict(STAGES[name].values)


def snakemake_log(name: str) -> str:
    return STAGES[name].log


def reads_params(name: str) -> bool:
    """Whether the rule declares its run's params files as inputs."""
    return bool(STAGES[name].reads)


# ---- DVC --------------------------------------------------------------------------------------
DVC_HEADER = """\
# GENERATED by `python -m nasflow.pipeline dvc-yaml --out dvc.yaml` from the stage declaration
# in nasflow/pipeline/stages.py (the Snakefile's rules use the same one): do not edit by hand;
# tests/test_pipeline.py fails when this file is stale.
#
# The nasflow pipeline for DVC: the same stages, CLI calls and paths as the Snakefile.
# `dvc repro` builds the default comparison of workflow/config.yaml -- tables.{table}: its
# profile, dataset and methods, with that profile's seeds (profiles.{profile}.seeds); regenerate
# this file after changing which profile tables.{table} uses. The Snakefile additionally handles
# any profile / dataset / method / variant on demand, transfer datasets (ImageNet) and
# overlays; DVC needs them listed here.
#
# Params: every stage lists, per params file, the sections it reads, so that editing one value
# reruns only the stages that read it (e.g. method.r_parametric in params/methods/dropnas.yaml
# reruns the DropNAS searches and what follows them; no DARTS stage). Code changes are not
# tracked: after editing nasflow/, force the affected stages (`dvc repro -f -s search`).
#
# Outputs: genotypes, search / retrain records and weights are cached (`dvc push` shares them
# through the remote in .dvc/config); MLflow parent ids, results, curves and tables are small
# and machine-specific, so they are not cached (cache: false).
"""


def _sections(path: Path) -> set[str]:
    import yaml

    return set(yaml.safe_load(path.read_text()) or {})


def dvc_yaml(pc: PipelineConfig, root: str | Path = ".") -> str:
    """``dvc.yaml`` for the default comparison (``tables.<default_table>``): per-seed stages
    over a matrix of its methods and its profile's seeds, read from workflow/config.yaml by
    DVC's templating (``vars``), so a change of seeds or methods there needs no regeneration."""
    tname = pc.default_table
    t = pc.table(tname)
    profile, dataset = t["profile"], t["dataset"]
    methods = available(root, pc.params_dir)["methods"]
    variants = [m for m in t["methods"] if m not in methods]
    if variants:
        raise ValueError(f"dvc.yaml: tables.{tname}.methods {', '.join(variants)} have no params "
                         f"file (variants): DVC's matrix reads params/methods/<method>.yaml; "
                         "build variants with Snakemake")
    spec = pc.tables[tname]
    if spec.title or spec.labels or spec.grid or spec.source or spec.datasets:
        raise ValueError(f"dvc.yaml: keep tables.{tname} to profile, dataset and methods "
                         "(DVC unpacks the mapping into the table command)")
    tv = f"tables.{tname}"
    wild = {"profile": f"${{{tv}.profile}}", "dataset": "${item.dataset}",
            "method": "${item.method}", "seed": "${item.seed}", "table": tname}
    wild["search_run"] = RUN.format(**wild)
    d = pc.params_dir
    files = {"datasets": f"{d}/datasets/${{item.dataset}}.yaml",
             "methods": f"{d}/methods/${{item.method}}.yaml",
             "profiles": f"{d}/profiles/{wild['profile']}.yaml"}
    overlay = Path(root) / d / "overlays" / f"{dataset}.yaml"
    if overlay.is_file():
        files = {"datasets": files["datasets"], "methods": files["methods"],
                 "overlays": f"{d}/overlays/${{item.dataset}}.yaml", "profiles": files["profiles"]}
    present = {"overlays": _sections(overlay) if overlay.is_file() else set()}
    param_args = " ".join(f"--params {f}" for f in files.values())
    special = {"cli": pc.cli, "files": param_args,
               "args": f"{param_args} --set search.seed=${{item.seed}}"
                       " --set retrain.seed=${item.seed}",
               "threads": "", "seeds": f"${{profiles.{profile}}}", "table": f"${{{tv}}}"}

    lines = [DVC_HEADER.format(table=tname, profile=profile), "vars:",
             "  - workflow/config.yaml:tables,profiles", "", "stages:"]
    anchored = False
    for stage in STAGES.values():
        def value(f: str, stage: Stage = stage) -> str:
            kind, _, key = f.partition(".")
            if f in special:
                return special[f]
            if kind == "input":
                return stage.inputs[key].format(**wild)
            if kind == "output":
                return stage.outputs[key].path.format(**wild)
            if kind == "value":
                return stage.values[key].format(**wild)
            return wild[f]

        doc = stage.doc.replace("{table}", tname)
        lines.append(f"  {stage.name}:" + (f"  # {doc}" if doc else ""))
        if stage.per == "run":
            if anchored:
                lines.append("    matrix: *runs")
            else:
                anchored = True
                lines += ["    matrix: &runs", f'      dataset: ["${{{tv}.dataset}}"]',
                          f"      method: ${{{tv}.methods}}",
                          f"      seed: ${{profiles.{profile}.seeds}}"]
        elif stage.per == "result":
            lines += ["    matrix:", f'      dataset: ["${{{tv}.dataset}}"]',
                      f"      method: ${{{tv}.methods}}"]
        lines += ["    cmd: >-"] + [f"      {part}" for part in
                                      _cmd_lines(_render(stage.command, value))]
        params = [(files[k], [s for s in stage.reads[k]
                              if k not in present or s in present[k]])
                  for k in files if k in stage.reads]
        params = [(f, secs) for f, secs in params if secs]
        if params:
            lines.append("    params:")
            for f, secs in params:
                lines.append(f"      - {f}:")
                lines += [f"          - {s}" for s in secs]
        deps = (list(stage.dvc_deps) if stage.dvc_deps is not None
                else list(stage.inputs.values()))
        if deps:
            lines.append("    deps:")
            lines += [f"      - {p.format(**wild)}" for p in deps]
        for kind in ("outs", "metrics", "plots"):
            outs = [o for o in stage.outputs.values() if o.kind == kind]
            if not outs:
                continue
            lines.append(f"    {kind}:" + ("  # the summary numbers (`dvc metrics show`, "
                                            "`dvc exp show`)" if kind == "metrics" else ""))
            for o in outs:
                path = o.path.format(**wild)
                props = ({} if o.cache else {"cache": "false"}) | dict(o.plot)
                lines.append(f"      - {path}" + (":" if props else ""))
                lines += [f"          {k}: {v}" for k, v in props.items()]
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def _cmd_lines(cmd: str) -> list[str]:
    """One line per option: the folded YAML block reads them back as one command."""
    import shlex

    out: list[str] = []
    for token in shlex.split(cmd):
        if token.startswith("--") or not out:
            out.append(token)
        else:
            out[-1] += f" {token}"
    return out
