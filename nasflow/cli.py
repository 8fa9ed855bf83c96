"""``nasflow`` command line: search | derive | retrain | evaluate | track-parent | schema.

Each verb reads composed params (``--params`` files merged in order, then ``--set`` overrides),
takes its input and output paths as arguments, writes its outputs atomically, and on bad input
prints one line naming the file and key and exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nasflow.errors import NasflowError

EXIT_USAGE = 2


def _add_params(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", action="append", required=True, metavar="FILE",
                   help="params YAML; repeat to compose (dataset, method, profile: later wins)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one value, e.g. --set search.seed=3 (repeatable)")


def _add_tracking(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run-name", default=None, help="MLflow run name (default: from the output)")
    p.add_argument("--parent-run-id", default=os.environ.get("NASFLOW_PARENT_RUN_ID"),
                   help="MLflow parent run id, or a JSON file written by `track-parent` "
                        "(default: $NASFLOW_PARENT_RUN_ID)")


def _add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="where per-epoch checkpoints live (default: checkpoints/<out>); a re-run "
                        "resumes from the last one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasflow", description="Differentiable NAS (DARTS, DropNAS, ...) as pipeline stages.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("search", help="train the supernet and the architecture parameters",
                       description="Search a cell: writes OUT/search.json and OUT/config.json.")
    _add_params(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_checkpoint(p)
    _add_tracking(p)

    p = sub.add_parser("derive", help="read a discrete genotype off a search's alphas",
                       description="Derive the genotype (DARTS rule, see params `derive`).")
    _add_params(p)
    p.add_argument("--search", type=Path, required=True, help="search.json of a search run")
    p.add_argument("--out", type=Path, required=True, help="genotype JSON to write")

    p = sub.add_parser("retrain", help="train the derived network from scratch",
                       description="Retrain a genotype: writes OUT/retrain.json, OUT/model.pt.")
    _add_params(p)
    p.add_argument("--genotype", required=True,
                   help="genotype JSON, or a published name (DARTS_V1, DARTS_V2, DropNAS_C10)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _add_checkpoint(p)
    _add_tracking(p)

    p = sub.add_parser("evaluate", help="test error, params, MACs of retrained weights",
                       description="Evaluate retrained weights on the held-out test split.")
    _add_params(p)
    p.add_argument("--genotype", required=True, help="genotype JSON or published name")
    p.add_argument("--weights", type=Path, required=True, help="model.pt from `retrain`")
    p.add_argument("--out", type=Path, required=True, help="result JSON to write")
    _add_tracking(p)

    p = sub.add_parser("analyze", help="Matthew effect, co-adaptation, alpha vs stand-alone accuracy",
                       description="The DropNAS paper's analyses of one search: writes "
                                   "OUT/analysis.json and PNG plots.")
    _add_params(p)
    p.add_argument("--search", type=Path, required=True, help="search output folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--images", type=int, default=1000, help="images for the feature/accuracy studies")
    _add_tracking(p)

    p = sub.add_parser("track-parent", help="open the MLflow parent run of one result",
                       description="Create an MLflow parent run; write {'run_id': ...} to OUT.")
    _add_params(p)
    p.add_argument("--name", required=True, help="run name, e.g. digits_dropnas_s0")
    p.add_argument("--out", type=Path, required=True, help="JSON file for the run id")

    sub.add_parser("spaces", help="list the registered search spaces",
                   description="One line per registered space: name, cell types, edges, "
                               "nodes, ops per edge, ops.")

    p = sub.add_parser("schema", help="write the JSON schema of a run config",
                       description="JSON schema generated from the pydantic params models.")
    p.add_argument("--out", type=Path, required=True)
    return parser


# ---- helpers -------------------------------------------------------------------------------
def _config(args):
    from nasflow.config import load_config

    out = getattr(args, "out", None)
    if out is not None:
        if not out.is_absolute() and ".." in out.parts:
            raise NasflowError(f"--out {out}: escapes the project folder ('..' is not allowed)")
        _check_writable(out)
    return load_config(args.params, args.overrides)


def _check_writable(out: Path) -> None:
    """Fail before any work if ``out`` could not be written (nothing is created here)."""
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise NasflowError(f"--out {out}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise NasflowError(f"--out {out}: output folder {parent} is not writable")


def _parent_id(value: str | None) -> str | None:
    if value and value.endswith(".json"):
        from nasflow.io import read_json

        return read_json(value).get("run_id")
    return value or None


def _checkpoint_dir(args) -> Path:
    if args.checkpoint_dir is not None:
        return args.checkpoint_dir
    out = args.out
    if out.is_absolute():
        return out.parent / f".{out.name}.checkpoints"
    return Path("checkpoints") / out


@contextlib.contextmanager
def _atomic_dir(out: Path) -> Iterator[Path]:
    """Build a folder beside ``out`` and swap it in at the end: no half-written outputs."""
    from nasflow.io import atomic_path

    with atomic_path(out.parent / f".{out.name}.probe"):
        pass  # creates and checks the parent folder; raises a clear error if unwritable
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _tracker(config, stage: str, args, run_name: str):
    from nasflow.config import resolved

    if not config.tracking.enabled or int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    from nasflow.tracking import Tracker

    with Tracker.start(config.tracking, stage=stage, run_name=args.run_name or run_name,
                       parent_run_id=_parent_id(args.parent_run_id),
                       params_dict=resolved(config),
                       tags={"nasflow.dataset": config.dataset.name,
                             "nasflow.method": config.method.name}) as tracker:
        yield tracker


def _is_main_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _say(msg: str) -> None:
    if not _is_main_rank():
        return
    print(f"nasflow: {msg}", file=sys.stderr)


# ---- verbs ---------------------------------------------------------------------------------
def cmd_search(args) -> None:
    from nasflow.config import resolved
    from nasflow.io import save_checkpoint, write_json
    from nasflow.train.search import run_search

    config = _config(args)
    ckpt = _checkpoint_dir(args)
    _say(f"search {config.method.name} on {config.dataset.name}: outputs -> {args.out}, "
         f"checkpoints -> {ckpt}")
    with _tracker(config, "search", args, f"search:{args.out}") as tracker:
        if tracker is not None and tracker.run_id:
            from nasflow.tracking import tracking_uri

            _say(f"MLflow run {tracker.run_id} at {tracking_uri()} (browse: mlflow ui)")
        supernet, record = run_search(config, ckpt, tracker)
        if not _is_main_rank():
            return
        record["mlflow_run_id"] = getattr(tracker, "run_id", None)
        with _atomic_dir(args.out) as tmp:
            save_checkpoint(tmp / "supernet.pt", supernet)
            write_json(tmp / "search.json", record)
            write_json(tmp / "config.json", resolved(config))
            write_json(tmp / "genotype.json", record["genotype"])
        if tracker is not None:
            _log_search_artifacts(tracker, args.out, record)
    _say(f"search done in {record['wall_time_s']:.1f}s; genotype in {args.out / 'genotype.json'}")


def _log_search_artifacts(tracker, out: Path, record: dict) -> None:
    import numpy as np

    from nasflow.genotype import Genotype
    from nasflow.report import plots
    from nasflow.spaces import genotype_from_json

    tracker.log_artifact(out / "search.json")
    tracker.log_artifact(out / "genotype.json")
    genotype = genotype_from_json(record["genotype"], str(out / "search.json"))
    for cell in record["cell_types"]:
        if isinstance(genotype, Genotype):  # the DARTS-macro cell diagram
            tracker.log_figure(plots.cell_diagram(genotype, cell), f"cell_{cell}.png")
        probs = np.asarray(record["probabilities"][cell])
        tracker.log_figure(plots.alpha_heatmap(probs, record["edge_ops"][cell],
                                               f"{record['method']} {cell} softmax(alpha)"),
                           f"alpha_heatmap_{cell}.png")
        traj = [np.asarray(h["probabilities"][cell]) for h in record["history"]]
        tracker.log_figure(plots.alpha_trajectories(traj, record["edge_ops"][cell], None,
                                                    f"{record['method']} {cell}"),
                           f"alpha_trajectories_{cell}.png")
    tracker.log_figure(plots.learning_curves(record["history"], ["train_loss", "train_acc"],
                                             "search"), "search_curves.png")


def cmd_derive(args) -> None:
    from nasflow.io import read_json, write_json
    from nasflow.train.search import derive_from_record

    config = _config(args)
    genotype = derive_from_record(config, read_json(args.search), str(args.search))
    write_json(args.out, genotype.model_dump(mode="json"))
    _say(f"{config.space.name} genotype ({config.method.name} readout, {config.derive.rank_by} "
         f"ranking) -> {args.out}")


def cmd_spaces(args) -> None:
    from nasflow.spaces import load_builtin_spaces, space_by_name

    for name in load_builtin_spaces():
        print(space_by_name(name).describe())


def _genotype_for(config, ref: str):
    """The genotype ``ref`` (a published name or a file), checked against params' space."""
    from nasflow.spaces import build_space, check_genotype_space, resolve_genotype

    genotype = resolve_genotype(ref)
    check_genotype_space(genotype, build_space(config.space), ref)
    return genotype


def cmd_retrain(args) -> None:
    from nasflow.config import resolved
    from nasflow.io import write_json
    from nasflow.train.retrain import run_retrain

    config = _config(args)
    genotype = _genotype_for(config, args.genotype)
    ckpt = _checkpoint_dir(args)
    _say(f"retrain on {config.dataset.name}: outputs -> {args.out}, checkpoints -> {ckpt}")
    with _tracker(config, "retrain", args, f"retrain:{args.out}") as tracker:
        if not _is_main_rank():
            run_retrain(config, genotype, Path(tempfile.mkdtemp()), ckpt, None)
            return
        with _atomic_dir(args.out) as tmp:
            record = run_retrain(config, genotype, tmp, ckpt, tracker)
            record["weights"] = str(args.out / "model.pt")
            record["mlflow_run_id"] = getattr(tracker, "run_id", None)
            write_json(tmp / "retrain.json", record)
            write_json(tmp / "config.json", resolved(config))
        if tracker is not None:
            tracker.log_artifact(args.out / "retrain.json")
            from nasflow.report import plots

            tracker.log_figure(plots.learning_curves(
                record["history"], ["train_loss", "train_acc", "test_acc"], "retrain"),
                "retrain_curves.png")
    _say(f"retrain done in {record['wall_time_s']:.1f}s; final test acc "
         f"{record['final_test_acc']}")


def cmd_evaluate(args) -> None:
    from nasflow.config import resolved
    from nasflow.io import read_json, write_json
    from nasflow.train.retrain import run_evaluate

    config = _config(args)
    genotype = _genotype_for(config, args.genotype)
    retrain_json = args.weights.parent / "retrain.json"
    retrain_record = read_json(retrain_json) if retrain_json.exists() else None
    with _tracker(config, "evaluate", args, f"evaluate:{args.out}") as tracker:
        result = run_evaluate(config, genotype, args.weights, retrain_record)
        result["genotype"] = genotype.model_dump(mode="json")
        result["config"] = resolved(config)
        result["mlflow_run_id"] = getattr(tracker, "run_id", None)
        if tracker is not None:
            tracker.log_metrics({k: float(v) for k, v in result.items()
                                 if isinstance(v, int | float) and not isinstance(v, bool)}, step=0)
        write_json(args.out, result)
    _say(f"test error {result['top1_err']:.2f}% (top-5 {result['top5_err']:.2f}%), "
         f"{result['params_m']:.3f}M params, {result['macs_m']:.1f}M MACs -> {args.out}")


def cmd_analyze(args) -> None:
    from nasflow.io import read_json

    from nasflow.spaces import build_space
    from nasflow.train.search import check_search_record

    config = _config(args)
    space = build_space(config.space)
    if space.genotype_kind != "darts":
        raise NasflowError(f"analyze: the DropNAS analyses read the DARTS cell (normal cell, "
                           f"edge E(0,2)); space.name: {space.name} is not a DARTS-macro space")
    record = read_json(args.search / "search.json")
    check_search_record(record, space, str(args.search / "search.json"))
    title = f"{config.method.name} on {config.dataset.name}"
    with _tracker(config, "analyze", args, f"analyze:{args.out}") as tracker:
        _analyze_into(config, args, record, title, tracker)


def _analyze_into(config, args, record, title, tracker) -> None:
    import numpy as np

    from nasflow import analysis
    from nasflow.io import write_json

    with _atomic_dir(args.out) as tmp:
        from nasflow.report import plots

        result: dict = {"method": config.method.name, "dataset": config.dataset.name}
        figures = {}
        for cell in record.get("cell_types", ("normal", "reduce")):
            traj = [np.asarray(h["probabilities"][cell]) for h in record["history"]]
            figures[f"alpha_trajectories_{cell}.png"] = plots.alpha_trajectories(
                traj, record["edge_ops"][cell], None, f"{title}: softmax(alpha), {cell} cells")
            series = analysis.grad_magnitude_series(record["history"], record["edge_ops"][cell], cell)
            result[f"alpha_grad_abs_{cell}"] = series
            figures[f"alpha_grad_{cell}.png"] = analysis.plot_series(
                series, f"{title}: mean |grad alpha| per op, {cell}", "|grad alpha|")
        co = analysis.coadaptation(config, args.search, n_images=args.images)
        result["coadaptation"] = co
        figures["coadaptation.png"] = analysis.plot_coadaptation(co, title)
        result["standalone"] = []
        for edge in (0, len(record["edge_ops"]["normal"]) - 1):  # E(0,2) and the last edge
            st = analysis.standalone_correlation(config, args.search, edge, n_images=args.images)
            result["standalone"].append(st)
            figures[f"standalone_edge{edge}.png"] = analysis.plot_standalone(st, f"{title}, edge {edge}")
        for name, fig in figures.items():
            plots.save(fig, tmp / name)
        write_json(tmp / "analysis.json", result)
    if tracker is not None:
        for f in sorted(args.out.iterdir()):
            tracker.log_artifact(f, "analysis")
    _say(f"analysis -> {args.out}")


def cmd_track_parent(args) -> None:
    from nasflow.config import resolved
    from nasflow.io import write_json

    config = _config(args)
    run_id = None
    if config.tracking.enabled:
        from nasflow.tracking import create_parent_run

        run_id = create_parent_run(config.tracking, args.name,
                                   tags={"nasflow.dataset": config.dataset.name,
                                         "nasflow.method": config.method.name},
                                   params_dict=resolved(config))
    write_json(args.out, {"run_id": run_id, "name": args.name})


def cmd_schema(args) -> None:
    from nasflow.config import json_schema
    from nasflow.io import write_json

    write_json(args.out, json_schema())


COMMANDS = {"search": cmd_search, "derive": cmd_derive, "retrain": cmd_retrain,
            "evaluate": cmd_evaluate, "analyze": cmd_analyze, "track-parent": cmd_track_parent,
            "schema": cmd_schema, "spaces": cmd_spaces}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
        from nasflow.train.distributed import barrier, shutdown

        barrier()
        shutdown()
    except NasflowError as exc:
        print(f"nasflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nasflow: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except _oom_types() as exc:  # noqa: B030 - tuple built at runtime
        print(f"nasflow: error: out of memory ({str(exc).splitlines()[0]}); lower "
              "search.batch_size / retrain.batch_size, or use runtime.amp: bf16", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _oom_types() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError, MemoryError)


if __name__ == "__main__":
    sys.exit(main())
