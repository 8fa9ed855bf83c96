"""``python -m nasflow.pipeline``: the command line of the pipeline layer (records, tables,
params lookup, generated files). Every error is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from nasflow.pipeline.config import PipelineConfig, load_pipeline_config, pipeline_schema
from nasflow.pipeline.lookup import available, check_params, params_args, run_params
from nasflow.pipeline.records import (
    aggregate,
    collect_result,
    read_record,
    summary_metrics,
    write_curves,
    write_record,
)
from nasflow.pipeline.tables import markdown_table, write_paper_table


def _cmd_schema(args) -> None:
    write_record(args.out, pipeline_schema())


def init_tracking_store() -> str:
    """Create (or open) the MLflow store once, before parallel jobs start, under the same
    machine-wide lock the trackers use (a fresh SQLite store is otherwise created by several
    jobs at once and one fails). Returns the resolved store URI."""
    from nasflow.tracking import ensure_store

    return ensure_store()


def _cmd_init_tracking(args) -> None:
    print(f"nasflow.pipeline: MLflow store ready: {init_tracking_store()}", file=sys.stderr)


def _workflow_config(args) -> PipelineConfig | None:
    """The workflow config (for its variants), if the file exists."""
    path = Path(args.root) / args.config
    if not path.is_file():
        return None
    import yaml

    return load_pipeline_config(yaml.safe_load(path.read_text()) or {})


def _cmd_params_files(args) -> None:
    pc = _workflow_config(args)
    variants = pc.all_variants() if pc is not None else {}
    run = run_params(args.dataset, args.method, args.profile, args.root, args.params_dir,
                     variants)
    missing = [f for f in run.files if not (Path(args.root) / f).is_file()]
    if missing:
        raise ValueError(f"no params file {', '.join(missing)} (a method needs "
                         f"{args.params_dir}/methods/<name>.yaml or a `variants` entry in "
                         f"{args.config})")
    if args.args:
        print(run.args())
        return
    print(" ".join(run.files))
    if run.overrides:
        print(params_args([], run.overrides))


def _cmd_check_params(args) -> None:
    pc = _workflow_config(args)
    if pc is not None:
        pc.check_names(args.root)
    variants = pc.all_variants() if pc is not None else {}
    errors = check_params(args.root, args.params_dir, variants)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        raise SystemExit(2)
    known = available(args.root, args.params_dir)
    print(f"ok: {len(known['datasets'])} datasets x {len(known['methods'])} methods + "
          f"{len(variants)} variants x {len(known['profiles'])} profiles compose into valid "
          "run configs")


def _cmd_dvc_yaml(args) -> None:
    from nasflow.io import write_text
    from nasflow.pipeline.stages import dvc_yaml

    pc = _workflow_config(args)
    if pc is None:
        raise ValueError(f"dvc-yaml: no workflow config {Path(args.root) / args.config}")
    write_text(args.out, dvc_yaml(pc, args.root))


def _cmd_collect(args) -> None:
    record = collect_result(
        search=args.search, genotype=args.genotype, retrain=args.retrain,
        evaluation=args.evaluation, parent=args.parent, search_config=args.search_config,
        retrain_config=args.retrain_config, profile=args.profile, dataset=args.dataset,
        method=args.method, seed=args.seed)
    record["path"] = str(args.out)
    write_record(args.out, record)
    if args.curves:
        write_curves(read_record(args.search), read_record(args.retrain), args.curves[0], args.curves[1])


def _cmd_aggregate(args) -> None:
    files = list(args.inputs)
    if args.dir is not None:
        if not args.seeds:
            raise ValueError("aggregate --dir needs --seeds")
        files += [Path(args.dir) / f"s{s}.json" for s in args.seeds]
    if not files:
        raise ValueError("aggregate: give per-seed files, or --dir and --seeds")
    agg = aggregate([read_record(f) for f in files])
    write_record(args.out, agg)
    if args.metrics is not None:
        write_record(args.metrics, summary_metrics(agg))


def _cmd_table(args) -> None:
    from nasflow.io import write_text

    files = list(args.inputs) or [Path(args.results) / args.profile / f"{args.dataset}_{m}.json"
                                  for m in args.methods]
    if not files:
        raise ValueError("table: give aggregate files, or --profile, --dataset and --methods")
    write_text(args.out, markdown_table([read_record(f) for f in files], args.title or ""))


def _cmd_paper_table(args) -> None:
    import json

    write_paper_table(json.loads(args.spec), args.results, args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nasflow.pipeline",
                                     description="nasflow pipeline helpers (records, tables).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("schema", help="write the JSON schema of workflow/config.yaml")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_schema)

    p = sub.add_parser("init-tracking", help="create the MLflow SQLite store once, if missing")
    p.set_defaults(func=_cmd_init_tracking)

    for name, func, helptext in (
            ("params-files", _cmd_params_files,
             "print one run's params files, in order (then its --set overrides, if any)"),
            ("check-params", _cmd_check_params,
             "compose every dataset x method (and variant) x profile into a valid run config"),
            ("dvc-yaml", _cmd_dvc_yaml, "write dvc.yaml from the stage declaration")):
        p = sub.add_parser(name, help=helptext)
        if name == "params-files":
            p.add_argument("--dataset", required=True)
            p.add_argument("--method", required=True, help="a method or a variant")
            p.add_argument("--profile", required=True)
            p.add_argument("--args", action="store_true",
                           help="print one line of --params / --set arguments instead")
        if name == "dvc-yaml":
            p.add_argument("--out", type=Path, required=True)
        p.add_argument("--root", default=".")
        p.add_argument("--params-dir", default="params")
        p.add_argument("--config", default="workflow/config.yaml",
                       help="the workflow config (its variants), relative to --root")
        p.set_defaults(func=func)

    p = sub.add_parser("collect", help="assemble one seed's final record")
    for opt in ("search", "genotype", "retrain"):
        p.add_argument(f"--{opt}", type=Path, required=True)
    p.add_argument("--eval", dest="evaluation", type=Path, required=True)
    p.add_argument("--parent", type=Path, default=None, help="track-parent's run JSON")
    p.add_argument("--search-config", type=Path, default=None)
    p.add_argument("--retrain-config", type=Path, default=None)
    p.add_argument("--profile", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--curves", type=Path, nargs=2, metavar=("SEARCH_CSV", "RETRAIN_CSV"))
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("aggregate", help="mean +- population std over seeds, plus best seed")
    p.add_argument("inputs", nargs="*", type=Path, help="per-seed records")
    p.add_argument("--dir", type=Path, default=None, help="folder of s<seed>.json records")
    p.add_argument("--seeds", type=int, nargs="*", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--metrics", type=Path, default=None, help="also write summary numbers here")
    p.set_defaults(func=_cmd_aggregate)

    p = sub.add_parser("table", help="Markdown table of aggregated records")
    p.add_argument("inputs", nargs="*", type=Path, help="aggregate records, one row each")
    p.add_argument("--results", default="results")
    p.add_argument("--profile")
    p.add_argument("--dataset")
    p.add_argument("--methods", nargs="*", default=[])
    p.add_argument("--title", default=None)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_table)

    p = sub.add_parser("paper-table",
                       help="a paper table: ours beside the published numbers (.md/.csv/.json)")
    p.add_argument("--spec", required=True, help="the resolved table (PipelineConfig.table), JSON")
    p.add_argument("--results", default="results")
    p.add_argument("--out", type=Path, required=True, help="<name>.md; .csv and .json beside it")
    p.set_defaults(func=_cmd_paper_table)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    args = build_parser().parse_args(None if argv is None else list(argv))
    from nasflow.errors import NasflowError

    try:
        args.func(args)
    except (NasflowError, ValueError, KeyError) as exc:
        msg = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
        print(f"nasflow.pipeline: error: {msg}", file=sys.stderr)
        return 2
    return 0
