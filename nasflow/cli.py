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
import traceback
from collections.abc import Iterator
from pathlib import Path

from nasflow.errors import NasflowError

EXIT_USAGE = 2
EXIT_INTERNAL = 1
MESSAGE_LIMIT = 1000


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
    p.add_argument("--images", type=_count, default=1000, help="images for the feature/accuracy studies")
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

    p = sub.add_parser("lookup", help="NAS-Bench-201 accuracies of a cell (offline)",
                       description="Read the 200-epoch test (and validation) accuracy of an "
                                   "NB201 cell on cifar10, cifar100 and ImageNet16-120, mean "
                                   "over the benchmark's seeds, from a NAS-Bench-201 (v1_0 / "
                                   "v1_1) or NATS-Bench topology file you supply. Nothing is "
                                   "downloaded.")
    p.add_argument("--genotype", required=True,
                   help="an NB201 cell string |op~0|+|op~0|op~1|+|op~0|op~1|op~2|, a published "
                        "name (NB201_RESNET, ...), or a genotype / search / result JSON")
    p.add_argument("--benchmark", type=Path, required=True,
                   help="NAS-Bench-201-v1_*.pth, NATS-tss-*.pickle.pbz2 or its archive folder")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result to this file")
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a file that the safe loaders refuse with plain pickle (runs "
                        "whatever code the file names: only for files from a trusted source)")
    _add_debug(parser, sub)
    return parser


def _count(text: str) -> int:
    """A positive integer argument (argparse reports the error in one line, exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if not 1 <= value <= 10_000_000:
        raise argparse.ArgumentTypeError(f"must be in 1..10000000, not {value}")
    return value


def _add_debug(parser: argparse.ArgumentParser, sub) -> None:
    """``--debug`` before or after the verb: show the traceback of an error."""
    text = "on an error, also print the traceback (also: NASFLOW_DEBUG=1)"
    parser.add_argument("--debug", action="store_true", help=text)
    for p in sub.choices.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=text)


# ---- helpers -------------------------------------------------------------------------------
#: what each verb writes at --out (checked before any work)
OUT_KINDS = {"search": "folder", "retrain": "folder", "analyze": "folder", "derive": "file",
             "evaluate": "file", "track-parent": "file", "schema": "file", "lookup": "file"}
#: arguments naming input files or folders (an output may not replace one)
INPUT_ARGS = ("params", "search", "genotype", "weights", "parent_run_id", "benchmark")


def _config(args):
    """Check every output path (and the parent-run file), then load the params: all before
    any work, so that nothing is trained for an output that cannot be written."""
    from nasflow.config import load_config

    _check_outputs(args)
    if getattr(args, "parent_run_id", None):
        _parent_id(args.parent_run_id)
    return load_config(args.params, args.overrides)


def _check_outputs(args) -> None:
    out = getattr(args, "out", None)
    if out is not None:
        kind = OUT_KINDS.get(getattr(args, "command", ""))
        if not out.is_absolute() and ".." in out.parts:
            raise NasflowError(f"--out {_clip(out)}: escapes the project folder ('..' is not allowed)")
        _check_writable(out, kind)
        if kind == "folder":
            _check_not_around_inputs(args, out)
        _check_not_an_input(args, out)
    if getattr(args, "checkpoint_dir", _MISSING) is not _MISSING and out is not None:
        ckpt = _checkpoint_dir(args)
        _check_writable(ckpt, "folder", "--checkpoint-dir")
        if OUT_KINDS.get(args.command) == "folder" and _inside(ckpt, out):
            raise NasflowError(f"--checkpoint-dir {_clip(ckpt)}: is inside --out {_clip(out)}, which "
                               "is replaced at the end of the run: put checkpoints elsewhere")


_MISSING = object()


def _clip(value, limit: int = 120) -> str:
    from nasflow.loaders import clip

    return clip(value, limit)


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _inputs(args) -> list[tuple[str, Path]]:
    out = []
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        for v in value if isinstance(value, list) else [value]:
            if v and os.path.exists(str(v)):
                out.append((f"--{name.replace('_', '-')}", Path(v)))
    return out


def _check_not_an_input(args, out: Path) -> None:
    for flag, path in _inputs(args):
        try:
            same = out.exists() and os.path.samefile(out, path)
        except OSError:
            same = False
        if same:
            raise NasflowError(f"--out {_clip(out)}: is also the input {flag}; writing it would "
                               "destroy the input: choose another --out")


def _check_not_around_inputs(args, out: Path) -> None:
    """A folder output is replaced whole: it must not hold an input, nor the working folder."""
    cwd = Path.cwd().resolve()
    target = out.resolve()
    if out.name in ("", ".", "..") or target == cwd or target in cwd.parents:
        raise NasflowError(f"--out {_clip(out)}: would replace the current folder (or one above "
                           "it): name a new output folder")
    if not out.exists():
        return
    for flag, path in _inputs(args):
        if _inside(path, out):
            raise NasflowError(f"--out {_clip(out)}: holds the input {flag} {_clip(path)}, and the "
                               "output folder is replaced whole: choose another --out")


def _check_writable(out: Path, kind: str | None = None, flag: str = "--out") -> None:
    """Fail before any work if ``out`` could not be written (nothing is created here): a file
    output that is an existing folder, a folder output that is an existing file, a path under
    a file, or an unwritable folder."""
    try:
        exists = out.exists()
        if exists and kind == "file" and out.is_dir():
            raise NasflowError(f"{flag} {_clip(out)}: is a folder, but a file is written there "
                               "(remove it, or name a file)")
        if exists and kind == "folder" and not out.is_dir():
            raise NasflowError(f"{flag} {_clip(out)}: is a file, but a folder is written there "
                               "(remove it, or name a new folder)")
        if exists and kind == "folder" and flag == "--checkpoint-dir" \
                and not os.access(out, os.W_OK | os.X_OK):
            raise NasflowError(f"{flag} {_clip(out)}: folder is not writable")
        parent = out.absolute().parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            raise NasflowError(f"{flag} {_clip(out)}: {_clip(parent)} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise NasflowError(f"{flag} {_clip(out)}: output folder {_clip(parent)} is not writable")
    except OSError as exc:  # a name too long, a symlink loop, ...
        raise NasflowError(f"{flag} {_clip(out)}: cannot be used ({exc.strerror or exc})") from None


def _parent_id(value: str | None) -> str | None:
    """A run id, or the run id in a JSON file written by ``nasflow track-parent``."""
    if not value:
        return None
    if value.endswith(".json") or os.sep in value or os.path.exists(value):
        from nasflow.loaders import load_parent_run

        return load_parent_run(value)
    if not all(c.isalnum() or c in "-_" for c in value) or len(value) > 64:
        raise NasflowError(f"--parent-run-id {_clip(value, 80)}: not an MLflow run id (32 hex "
                           "digits) nor a JSON file written by `nasflow track-parent`")
    return value


def _checkpoint_dir(args) -> Path:
    if args.checkpoint_dir is not None:
        return args.checkpoint_dir
    out = args.out
    if out.is_absolute():
        return out.parent / f".{out.name}.checkpoints"
    return Path("checkpoints") / out


@contextlib.contextmanager
def _atomic_dir(out: Path) -> Iterator[Path]:
    """Build a folder beside ``out`` and swap it in at the end: no half-written outputs.

    Nothing is left beside ``out`` afterwards: not on success, not on an error (folders this
    created above ``out`` are removed again when empty), and the temporary folders of killed
    runs (``.<out>.<host>-<pid>.*.tmp``) are removed by the next run."""
    from nasflow.io import make_parent, remove_empty, remove_stale_temps, temp_prefix

    if out.exists() and not out.is_dir():
        raise NasflowError(f"--out {_clip(out)}: is a file, but a folder is written there")
    created = make_parent(out)
    remove_stale_temps(out)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".tmp", dir=out.parent))
    except OSError as exc:
        remove_empty(created)
        raise NasflowError(f"--out {_clip(out)}: cannot write beside it ({exc.strerror})") from None
    done = False
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700
        old = None
        if out.exists():  # move the old output aside, swap the new one in, then delete the old
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".tmp", dir=out.parent))
            os.replace(out, old / "old")
        os.replace(tmp, out)
        done = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            remove_empty(created)


def _missing_folders(path: Path | None) -> list[Path]:
    """``path`` and the folders above it that do not exist yet (deepest first)."""
    out: list[Path] = []
    if path is None:
        return out
    p = path.absolute()
    try:
        while not p.exists() and p != p.parent:
            out.append(p)
            p = p.parent
    except OSError:
        return []
    return out


def _remove_new_checkpoints(folders: list[Path]) -> None:
    """After a run that failed on its input: remove the checkpoint folder it created (and the
    folders above it it created, where empty). A folder that existed before is kept."""
    if not folders:
        return
    shutil.rmtree(folders[0], ignore_errors=True)
    for folder in folders[1:]:
        with contextlib.suppress(OSError):
            folder.rmdir()


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
            with tempfile.TemporaryDirectory() as scratch:  # rank > 0 writes nothing kept
                run_retrain(config, genotype, Path(scratch), ckpt, None)
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
    from nasflow.io import write_json
    from nasflow.loaders import load_retrain_record
    from nasflow.train.retrain import run_evaluate

    config = _config(args)
    genotype = _genotype_for(config, args.genotype)
    retrain_json = args.weights.parent / "retrain.json"
    retrain_record = load_retrain_record(retrain_json) if retrain_json.is_file() else None
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
    from nasflow.loaders import MADE_FOR, made_for
    from nasflow.spaces import build_space
    from nasflow.train.search import check_search_record

    config = _config(args)
    space = build_space(config.space)
    if space.genotype_kind != "darts":
        raise NasflowError(f"analyze: the DropNAS analyses read the DARTS cell (normal cell, "
                           f"edge E(0,2)); space.name: {space.name} is not a DARTS-macro space")
    record = read_json(args.search / "search.json")
    check_search_record(record, space, str(args.search / "search.json"),
                        made_for(config, MADE_FOR["search"]))
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


def cmd_lookup(args) -> None:
    import json

    from nasflow.spaces.nb201.benchmark import Nb201Benchmark, format_record, resolve_cell

    _check_outputs(args)
    if args.out is not None and args.out.exists() and args.benchmark.exists() \
            and os.path.samefile(args.out, args.benchmark):
        raise NasflowError(f"--out {args.out}: is the --benchmark file; choose another --out")
    genotype = resolve_cell(args.genotype)
    bench = Nb201Benchmark.load(args.benchmark, trust_pickle=args.trust_pickle)
    record = bench.lookup(genotype)
    result = {**record.to_json(), "benchmark": str(args.benchmark)}
    if args.out is not None:
        from nasflow.io import write_json

        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else format_record(record, str(args.benchmark)))


COMMANDS = {"search": cmd_search, "derive": cmd_derive, "retrain": cmd_retrain,
            "evaluate": cmd_evaluate, "analyze": cmd_analyze, "track-parent": cmd_track_parent,
            "schema": cmd_schema, "spaces": cmd_spaces, "lookup": cmd_lookup}


def main(argv: list[str] | None = None) -> int:
    """Run one verb. Exit status: 0 done; 2 bad input (one line naming the file and key, no
    traceback, nothing written); 1 internal error (a bug: one line, the traceback with
    ``--debug`` or ``NASFLOW_DEBUG=1``); 130 interrupted."""
    args = build_parser().parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("NASFLOW_DEBUG", "") not in ("", "0")
    new_ckpt: list[Path] = []
    if getattr(args, "checkpoint_dir", _MISSING) is not _MISSING and getattr(args, "out", None):
        new_ckpt = _missing_folders(_checkpoint_dir(args))
    try:
        _check_outputs(args)  # every verb, also those without params (schema)
        COMMANDS[args.command](args)
        from nasflow.train.distributed import barrier, shutdown

        barrier()
        shutdown()
    except NasflowError as exc:
        from nasflow.errors import DivergenceError

        if debug:
            traceback.print_exc()
        if not isinstance(exc, DivergenceError):  # a diverged run keeps its last good checkpoint
            _remove_new_checkpoints(new_ckpt)
        _error(f"error: {_user_message(exc)}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("nasflow: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    except _oom_types() as exc:
        if debug:
            traceback.print_exc()
        _error(f"error: out of memory ({_first_line(exc)}); lower search.batch_size / "
               "retrain.batch_size, or use runtime.amp: bf16")
        return EXIT_USAGE
    except Exception as exc:
        if debug:
            traceback.print_exc()
        _error(f"internal error: {type(exc).__name__}: {_first_line(exc)} (a bug in nasflow, not "
               "in your input: rerun with --debug for the traceback, and report it)")
        return EXIT_INTERNAL
    return 0


def _user_message(exc: BaseException) -> str:
    """The message of a user-facing error; for one re-raised from a DataLoader worker (whose
    message embeds the worker's traceback) the original message only."""
    text = str(exc)
    if "Original Traceback" in text:
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if last.startswith(("nasflow.errors.", "nasflow.")) else last
    return text


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return _clip(lines[0] if lines else "", 300)


def _error(message: str) -> None:
    """One line on stderr, cut to a readable length (a value echoed whole could be 100 kB)."""
    from nasflow.loaders import clip

    print(f"nasflow: {clip(message, MESSAGE_LIMIT)}", file=sys.stderr, flush=True)


def _oom_types() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.OutOfMemoryError, MemoryError)


if __name__ == "__main__":
    sys.exit(main())
