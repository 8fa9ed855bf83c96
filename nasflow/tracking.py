"""MLflow tracking: one parent run per result, one child run per stage, safe under parallel jobs.

* Explicit run ids through :class:`mlflow.MlflowClient` (no global active run), so stages in
  separate processes attach to their parent through the ``mlflow.parentRunId`` tag.
* The store is the project's SQLite file (:data:`DEFAULT_TRACKING_URI`, relative to the working
  directory); ``MLFLOW_TRACKING_URI`` overrides it (e.g. a shared ``mlflow server`` on a
  cluster, where SQLite on a network file system locks badly). Browse the default store with
  ``mlflow ui --backend-store-uri sqlite:///mlflow.db``.
* Artifacts go to ``mlartifacts/`` beside the SQLite file (DB stores) or to the server's
  artifact store (HTTP); MLflow's ``./mlruns`` default is never used, so a bare ``mlflow ui``
  is not switched to the (refused) file store.
* Parallel jobs: MLflow 3.x already sets ``PRAGMA busy_timeout = 20000`` on every SQLite
  session; on top of that every call goes through :func:`_retry` (exponential backoff with
  full jitter, ``NASFLOW_MLFLOW_RETRY_S`` seconds in all, default 60) on "database is locked",
  ``OperationalError`` and transient connection errors. The first use of a fresh SQLite file
  (MLflow's schema migrations, which corrupt the file when two processes run them at once) and
  experiment creation are serialised by a file lock; a lost experiment-creation race is
  resolved by re-reading. Each :meth:`Tracker.log_metrics` call (one step) is one ``log_batch``.
  :func:`ensure_store` opens the store up front (a pipeline's set-up step).
* Tracking never kills a training job: if the store is still unreachable after the retries,
  the tracker warns once on stderr and carries on as a no-op. (For an HTTP server MLflow
  itself retries first, ~4 min by default: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` shortens it.)
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import json
import logging
import math
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from nasflow.params import TrackingParams

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
RETRY_ENV = "NASFLOW_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 60.0
# MLflow's limits (mlflow.utils.validation); repeated here so that importing this module stays
# cheap (MLflow itself is imported on first use only).
MAX_PARAM_VAL_LENGTH = 6000
MAX_TAG_VAL_LENGTH = 8000
MAX_KEY_LENGTH = 250
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")

_T = TypeVar("_T")
_TRANSIENT_TEXT = (
    "database is locked", "database table is locked", "sqlite_busy", "disk i/o error",
    "temporarily_unavailable", "temporarily unavailable", "resource_exhausted",
    "request_limit_exceeded", "connection refused", "connection reset", "connection aborted",
    "max retries exceeded", "timed out", "remote end closed", "bad gateway",
    "service unavailable", "gateway timeout", "too many requests",
)
# OperationalErrors that no retry cures (wrong file, read-only folder, half-migrated DB).
_PERMANENT_TEXT = ("no such table", "no such column", "unable to open database file",
                   "readonly database", "already exists", "file is not a database")
_TRANSIENT_TYPES = ("OperationalError", "ConnectionError", "Timeout", "ConnectTimeout",
                    "ReadTimeout", "TimeoutError", "ConnectionResetError", "BrokenPipeError")
_WARNED: set[str] = set()
_CLIENTS: dict[str, Any] = {}
_EXPERIMENTS: dict[tuple[str, str], str] = {}


class TrackingUnavailable(Exception):
    """The store stayed unreachable (or refused) after the retries."""


# ---- store and retries ---------------------------------------------------------------------
def tracking_uri() -> str:
    """The configured store: ``MLFLOW_TRACKING_URI`` if set, else :data:`DEFAULT_TRACKING_URI`."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _sqlite_path(uri: str) -> Path | None:
    """The absolute file of a ``sqlite:///`` URI (None for other stores and in-memory DBs)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path).absolute()


def _resolved_uri() -> str:
    """:func:`tracking_uri` with a relative SQLite path made absolute (MLflow caches stores by
    URI string, so a relative one would follow the first working directory it was used in)."""
    uri = tracking_uri()
    db = _sqlite_path(uri)
    if db is None:
        return uri
    query = uri.split("?", 1)[1] if "?" in uri else ""
    return f"sqlite:///{db.as_posix()}" + (f"?{query}" if query else "")


def _retry_total_s() -> float:
    try:
        return max(0.0, float(os.environ.get(RETRY_ENV, DEFAULT_RETRY_S)))
    except ValueError:
        return DEFAULT_RETRY_S


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def is_transient(exc: BaseException) -> bool:
    """Lock contention or a connection problem that a later attempt may not hit."""
    chain = list(_chain(exc))
    if any(t in str(e).lower() for e in chain for t in _PERMANENT_TEXT):
        return False
    for e in chain:
        if type(e).__name__ in _TRANSIENT_TYPES:
            return True
        code = str(getattr(e, "error_code", "") or "")
        text = f"{code} {e}".lower()
        if any(t in text for t in _TRANSIENT_TEXT):
            return True
    return False


def _retry(fn: Callable[[], _T], what: str, total_s: float | None = None) -> _T:
    """Call ``fn``; on a transient error retry with exponential backoff and full jitter until
    ``total_s`` seconds have passed, then re-raise. Other errors are raised at once."""
    total_s = _retry_total_s() if total_s is None else total_s
    deadline = time.monotonic() + total_s
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:
            left = deadline - time.monotonic()
            if not is_transient(exc) or left <= 0:
                raise
            time.sleep(min(left, random.uniform(0.5 * delay, delay)))
            delay = min(delay * 2, 4.0)


def _warn_once(key: str, message: str) -> None:
    if key in _WARNED:
        return
    _WARNED.add(key)
    print(f"nasflow: warning: {message}", file=sys.stderr, flush=True)


class _DropRetriedLockErrors(logging.Filter):
    """MLflow logs a full traceback for every "database is locked" before raising it; the
    retry handles those, and the final failure is reported once by :func:`_warn_once`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "database is locked" not in record.getMessage()


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """Serialise MLflow's first use of a SQLite file (schema migrations) and experiment
    creation across processes on this machine. The lock file lives in the temp dir, keyed by
    the database path, so the project folder gets no stray file; it is removed again on
    release (see :func:`nasflow.io.locked_file`), so the temp dir keeps none either. Other stores: no
    lock."""
    db = _sqlite_path(uri)
    if db is None:
        yield
        return
    digest = hashlib.sha256(str(db).encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"nasflow-mlflow-{digest}.lock"
    from nasflow.io import locked_file

    with locked_file(path, timeout=max(_retry_total_s(), 1.0) + 60.0):
        yield


@contextlib.contextmanager
def _quiet_migrations() -> Iterator[None]:
    names = ("alembic", "mlflow.store.db.utils", "mlflow.store.db_migrations")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _client():
    """The process's MlflowClient for the configured store (created once, under the lock)."""
    uri = _resolved_uri()
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    from mlflow import MlflowClient

    if _sqlite_path(uri) is not None:
        # ~1 s of imports: done before taking the lock, so that parallel jobs hold it briefly.
        import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    db_logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(f, _DropRetriedLockErrors) for f in db_logger.filters):
        db_logger.addFilter(_DropRetriedLockErrors())
    with _store_lock(uri), _quiet_migrations():
        # MlflowClient builds (and for a fresh SQLite file, migrates) the store eagerly.
        client = _retry(lambda: MlflowClient(tracking_uri=uri), "connect")
    _CLIENTS[uri] = client
    return client


def ensure_store() -> str:
    """Open (for a fresh SQLite file: create and migrate) the configured store now, serialised
    with every other nasflow process on this machine; returns the resolved URI. For a
    pipeline's set-up step: unlike the trackers, it raises :class:`TrackingUnavailable`."""
    try:
        _client()
    except Exception as exc:
        raise TrackingUnavailable(f"MLflow store {tracking_uri()}: {_short(exc)}") from exc
    return _resolved_uri()


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment keeps artifacts: ``mlartifacts/<experiment>/`` beside a SQLite
    file (in the working directory for other DB stores); the server's choice for HTTP stores."""
    folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
    db = _sqlite_path(uri)
    if db is not None:
        return (db.parent / "mlartifacts" / folder).as_uri()
    if uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql", "mssql"):
        return (Path.cwd() / "mlartifacts" / folder).as_uri()
    return None


def _experiment_id(client, name: str) -> str:
    """Get or create the experiment; safe when N processes create it at the same moment."""
    uri = _resolved_uri()
    if (uri, name) in _EXPERIMENTS:
        return _EXPERIMENTS[(uri, name)]

    def get_or_create() -> str:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                return client.create_experiment(name,
                                                artifact_location=_artifact_location(uri, name))
            except Exception as exc:
                if is_transient(exc):
                    raise
                exp = client.get_experiment_by_name(name)  # another job created it first
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    with _store_lock(uri):
        exp_id = _retry(get_or_create, "experiment")
    _EXPERIMENTS[(uri, name)] = exp_id
    return exp_id


# ---- values --------------------------------------------------------------------------------
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


def clean_key(key: Any) -> str:
    """A key MLflow accepts: alphanumerics, ``_ - . / : space``; no empty path parts."""
    text = _BAD_KEY_CHARS.sub("_", str(key))
    text = "/".join(p for p in text.split("/") if p not in ("", ".", ".."))
    return (text or "_")[:MAX_KEY_LENGTH]


def _tag_key(key: Any) -> str:
    key = str(key)
    return key if key.startswith("mlflow.") else clean_key(key)


def _text(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, os.PathLike):
        text = os.fspath(value)
    elif hasattr(value, "tolist") and not isinstance(value, int | float):  # numpy values
        text = json.dumps(value.tolist(), default=str)
    elif isinstance(value, list | tuple | set | frozenset):
        try:
            text = json.dumps(list(value) if isinstance(value, set | frozenset) else value,
                              default=str)
        except (TypeError, ValueError):
            text = str(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; other values are kept as they are."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _context_tags() -> dict[str, str]:
    tags = {"mlflow.source.name": os.path.basename(sys.argv[0] or "python"),
            "mlflow.source.type": "LOCAL", "nasflow.host": socket.gethostname()}
    with contextlib.suppress(Exception):
        tags["mlflow.user"] = getpass.getuser()
    for env in ("SLURM_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        if os.environ.get(env):
            tags[f"nasflow.{env.lower()}"] = os.environ[env]
    return tags


# ---- the tracker ---------------------------------------------------------------------------
class Tracker:
    """One MLflow run. A context manager: the run ends FINISHED, FAILED on an exception, KILLED
    on Ctrl-C. ``Tracker()`` (what a disabled or unreachable store gives) is a no-op twin whose
    ``run_id`` is None."""

    def __init__(self, client=None, run_id: str | None = None):
        self.client, self.run_id = client, run_id
        self._active = client is not None and run_id is not None
        self._ended = False
        self._warned: set[str] = set()

    @property
    def active(self) -> bool:
        """False for the no-op twin, and once the store has become unreachable."""
        return self._active

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def start(cls, params: TrackingParams, *, stage: str, run_name: str,
              parent_run_id: str | None = None, params_dict: dict | None = None,
              tags: dict[str, str] | None = None) -> Tracker:
        """Create a run in ``params.experiment`` (created if missing), tagged with its stage,
        name and parent; log ``params_dict`` (flattened). Never raises for store problems."""
        if not params.enabled:
            return cls()
        all_tags = {**_context_tags(), "nasflow.stage": stage, "nasflow.run_name": run_name,
                    **{k: v for k, v in (tags or {}).items() if v is not None}}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        all_tags = {_tag_key(k): _text(v, MAX_TAG_VAL_LENGTH) for k, v in all_tags.items()}
        try:
            client = _client()
            exp_id = _experiment_id(client, params.experiment)
            # Tags go in with the run (one transaction): a child is never left unlinked.
            run = _retry(lambda: client.create_run(exp_id, tags=all_tags, run_name=run_name),
                         "create_run")
        except Exception as exc:
            _warn_once("unavailable", f"MLflow store {tracking_uri()} unavailable "
                       f"({_short(exc)}); continuing without tracking")
            return cls()
        tracker = cls(client, run.info.run_id)
        if params_dict:
            tracker.log_params(params_dict)
        return tracker

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED")

    def __repr__(self) -> str:
        return f"Tracker(run_id={self.run_id!r}, active={self._active})"

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], what: str) -> bool:
        """Run one MLflow call with retries. A store still unreachable after the retries turns
        this tracker into a no-op (one warning); any other error skips this call only."""
        if not self._active:
            return False
        try:
            _retry(fn, what)
            return True
        except Exception as exc:
            if is_transient(exc):
                self._active = False
                _warn_once(f"lost:{self.run_id}",
                           f"MLflow store {tracking_uri()} unreachable during {what} "
                           f"({_short(exc)}); run {self.run_id} continues without tracking")
            elif what not in self._warned:
                self._warned.add(what)
                print(f"nasflow: warning: MLflow {what} failed for run {self.run_id}: "
                      f"{_short(exc)}", file=sys.stderr, flush=True)
            return False

    # -- logging --------------------------------------------------------------------------
    def log_params(self, flat: Mapping[str, Any]) -> None:
        """Log params; nested dicts become ``a.b`` keys, values are stringified (lists as JSON)
        and cut to MLflow's value limit, in batches of at most 100."""
        if not self._active:
            return
        from mlflow.entities import Param

        values = {clean_key(k): _text(v, MAX_PARAM_VAL_LENGTH) for k, v in flatten(flat).items()}
        items = [Param(k, v) for k, v in values.items()]  # keys made unique by the dict
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[i:i + MAX_PARAMS_TAGS_PER_BATCH]
            self._call(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log_params")

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Log one step's metrics as one ``log_batch``. NaN/inf and non-numbers are skipped
        with a warning (once per key)."""
        if not self._active:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for key, value in metrics.items():
            try:
                v = float(value)
            except (TypeError, ValueError):
                v = math.nan
            if not math.isfinite(v):
                if f"metric:{key}" not in self._warned:
                    self._warned.add(f"metric:{key}")
                    print(f"nasflow: warning: metric {key!r} = {value!r} at step {step} is not a "
                          "finite number; not logged (further ones skipped silently)",
                          file=sys.stderr, flush=True)
                continue
            items.append(Metric(clean_key(key), v, now, int(step)))
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            chunk = items[i:i + MAX_METRICS_PER_BATCH]
            self._call(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c), "log_metrics")

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if not self._active:
            return
        from mlflow.entities import RunTag

        values = {_tag_key(k): _text(v, MAX_TAG_VAL_LENGTH) for k, v in tags.items() if v is not None}
        items = [RunTag(k, v) for k, v in values.items()]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[i:i + MAX_PARAMS_TAGS_PER_BATCH]
            self._call(lambda c=chunk: self.client.log_batch(self.run_id, tags=c), "set_tags")

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        """Copy a file (or a folder's contents) into the run's artifacts."""
        if not self._active:
            return
        path = Path(path)
        if not path.exists():
            print(f"nasflow: warning: artifact {path} does not exist; not logged", file=sys.stderr)
            return
        if path.is_dir():
            self._call(lambda: self.client.log_artifacts(self.run_id, str(path), artifact_path),
                       "log_artifact")
        else:
            self._call(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path),
                       "log_artifact")

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """``obj`` as a JSON artifact at ``artifact_file`` (numpy arrays, paths and pydantic
        models are converted)."""
        if not self._active:
            return
        from nasflow.io import write_json

        with tempfile.TemporaryDirectory(prefix="nasflow-artifact-") as tmp:
            local = Path(tmp) / Path(artifact_file).name
            write_json(local, obj)
            self.log_artifact(local, _artifact_dir(artifact_file))

    def log_figure(self, fig, artifact_file: str) -> None:
        """Save a matplotlib figure as ``artifact_file`` (format from its suffix, PNG by
        default) in the run's artifacts, and close the figure (also when tracking is off)."""
        try:
            if self._active:
                name = Path(artifact_file).name
                if not Path(name).suffix:
                    name += ".png"
                with tempfile.TemporaryDirectory(prefix="nasflow-figure-") as tmp:
                    local = Path(tmp) / name
                    fig.savefig(local, dpi=110, bbox_inches="tight")
                    self.log_artifact(local, _artifact_dir(artifact_file))
        finally:
            _close_figure(fig)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run terminated (``FINISHED``, ``FAILED`` or ``KILLED``); idempotent."""
        if self._ended:
            return
        self._ended = True
        status = status.upper()
        if status not in RUN_STATUSES:
            raise ValueError(f"run status must be one of {', '.join(RUN_STATUSES)}, not {status!r}")
        self._call(lambda: self.client.set_terminated(self.run_id, status), "end")


def _artifact_dir(artifact_file: str) -> str | None:
    parent = Path(artifact_file).parent.as_posix()
    return None if parent in ("", ".") else parent


def _close_figure(fig) -> None:
    # Only pyplot-made figures hold global state (plots.py builds figures without pyplot).
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close(fig)


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- parent runs and read-back -------------------------------------------------------------
def create_parent_run(params: TrackingParams, run_name: str, tags: dict | None = None,
                      params_dict: dict | None = None) -> str | None:
    """Create the parent run of one result and end it FINISHED at once (the stages run later,
    in other processes, and attach their own runs through the ``mlflow.parentRunId`` tag).
    Returns its id; None when tracking is disabled or the store is unavailable."""
    tracker = Tracker.start(params, stage="parent", run_name=run_name, tags=tags,
                            params_dict=params_dict)
    tracker.end("FINISHED")
    return tracker.run_id


def finish_parent_run(run_id: str | None, status: str = "FINISHED",
                      metrics: dict[str, float] | None = None,
                      tags: dict[str, str] | None = None) -> None:
    """Add a result's final metrics / tags to its parent run and (re)mark it terminated with
    ``status``. A None ``run_id`` (tracking disabled) is a no-op; store problems only warn."""
    if not run_id:
        return
    try:
        client = _client()
    except Exception as exc:
        _warn_once("unavailable", f"MLflow store {tracking_uri()} unavailable ({_short(exc)}); "
                   f"parent run {run_id} not updated")
        return
    tracker = Tracker(client, run_id)
    if tags:
        tracker.set_tags(tags)
    if metrics:
        tracker.log_metrics(metrics, step=0)
    tracker.end(status)


def log_to_run(run_id: str | None, metrics: dict[str, float] | None = None,
               tags: dict[str, str] | None = None) -> None:
    """Add metrics / tags to an existing run without changing its status."""
    if not run_id:
        return
    try:
        tracker = Tracker(_client(), run_id)
    except Exception as exc:
        _warn_once("unavailable", f"MLflow store {tracking_uri()} unavailable ({_short(exc)})")
        return
    if tags:
        tracker.set_tags(tags)
    if metrics:
        tracker.log_metrics(metrics, step=0)


def read_run(run_id: str) -> dict[str, Any]:
    """Everything about one run (tests, reports): ``params``, ``metrics`` (latest values),
    ``histories`` (key -> sorted ``[(step, value)]``), ``tags``, ``status``, ``run_name``,
    ``experiment_id``, ``start_time``/``end_time`` (ms) and ``artifacts`` (relative paths)."""
    client = _client()
    run = _retry(lambda: client.get_run(run_id), "get_run")
    histories = {}
    for key in run.data.metrics:
        hist = _retry(lambda k=key: client.get_metric_history(run_id, k), "get_metric_history")
        histories[key] = sorted((m.step, m.value) for m in hist)
    return {
        "params": dict(run.data.params), "metrics": dict(run.data.metrics),
        "histories": histories, "tags": dict(run.data.tags), "status": run.info.status,
        "run_name": run.info.run_name, "experiment_id": run.info.experiment_id,
        "start_time": run.info.start_time, "end_time": run.info.end_time,
        "artifacts": sorted(_list_artifacts(client, run_id)),
    }


def _list_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out: list[str] = []
    for f in _retry(lambda: client.list_artifacts(run_id, path), "list_artifacts"):
        out.extend(_list_artifacts(client, run_id, f.path) if f.is_dir else [f.path])
    return out
