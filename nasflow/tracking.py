"""MLflow tracking: one parent run per result, child runs per stage, safe under parallel jobs.

Uses ``MlflowClient`` with explicit run ids (no global active run), so stages in separate
processes attach to their parent through the ``mlflow.parentRunId`` tag. The default store is
the project's SQLite file; ``MLFLOW_TRACKING_URI`` overrides it (a shared ``mlflow server`` on
a cluster). SQLite serialises writers: every call goes through :func:`_retry` (exponential
backoff with jitter on "database is locked" and transient connection errors), and metrics are
sent in batches. Tracking never kills a training job: if the store stays unreachable after
the retries, the tracker warns once and carries on as a no-op.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from nasflow.params import TrackingParams

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_T = TypeVar("_T")
_TRANSIENT = ("database is locked", "database table is locked", "OperationalError",
              "Connection", "Timeout", "temporarily unavailable", "UNIQUE constraint")
MAX_PARAM_LEN = 6000


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _retry(fn: Callable[[], _T], what: str, total_s: float = 90.0) -> _T:
    delay, deadline = 0.05, time.monotonic() + total_s
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified below
            text = f"{type(exc).__name__}: {exc}"
            if not any(t in text for t in _TRANSIENT) or time.monotonic() > deadline:
                raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)


def _client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri())


def _experiment_id(client, name: str) -> str:
    def get_or_create():
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            # Artifacts beside the store, not in ./mlruns: a stray ./mlruns folder would switch
            # a bare `mlflow ui` to the file store.
            location = None
            if tracking_uri().startswith("sqlite:///"):
                db = Path(tracking_uri()[len("sqlite:///"):]).absolute()
                location = (db.parent / "mlartifacts").as_uri()
            return client.create_experiment(name, artifact_location=location)
        except Exception as exc:  # noqa: BLE001 - a concurrent job created it first
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise exc
            return exp.experiment_id

    return _retry(get_or_create, "experiment")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            text = json.dumps(v) if isinstance(v, list | tuple) else str(v)
            out[key] = text[:MAX_PARAM_LEN]
    return out


class Tracker:
    """One MLflow run; a context manager that ends the run FINISHED, or FAILED on error."""

    def __init__(self, client=None, run_id: str | None = None):
        self.client, self.run_id = client, run_id
        self._broken = client is None

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def start(cls, params: TrackingParams, *, stage: str, run_name: str,
              parent_run_id: str | None = None, params_dict: dict | None = None,
              tags: dict[str, str] | None = None) -> Tracker:
        if not params.enabled:
            return cls()
        try:
            client = _client()
            exp = _experiment_id(client, params.experiment)
            all_tags = {"nasflow.stage": stage, "nasflow.run_name": run_name, **(tags or {})}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = _retry(lambda: client.create_run(exp, tags=all_tags, run_name=run_name), "run")
            tracker = cls(client, run.info.run_id)
        except Exception as exc:  # noqa: BLE001 - tracking must not stop training
            print(f"nasflow: warning: MLflow at {tracking_uri()} unavailable ({exc}); "
                  "continuing without tracking", file=sys.stderr)
            return cls()
        if params_dict:
            tracker.log_params(flatten(params_dict))
        return tracker

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.end("FAILED" if exc_type else "FINISHED")

    # -- logging --------------------------------------------------------------------------
    def _call(self, fn: Callable[[], Any], what: str) -> None:
        if self._broken:
            return
        try:
            _retry(fn, what)
        except Exception as exc:  # noqa: BLE001
            print(f"nasflow: warning: MLflow {what} failed ({exc}); tracking disabled for this run",
                  file=sys.stderr)
            self._broken = True

    def log_params(self, flat: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in flat.items()]
        for i in range(0, len(items), 100):
            chunk = items[i:i + 100]
            self._call(lambda c=chunk: self.client.log_batch(self.run_id, params=c), "log_params")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = []
        for k, v in metrics.items():
            v = float(v)
            if math.isfinite(v):
                items.append(Metric(k.replace("/", "."), v, now, step))
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            self._call(lambda c=chunk: self.client.log_batch(self.run_id, metrics=c), "log_metrics")

    def set_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        self._call(lambda: self.client.log_batch(self.run_id, tags=items), "set_tags")

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        self._call(lambda: self.client.log_dict(self.run_id, obj, artifact_file), "log_dict")

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._call(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), "log_artifact")

    def log_figure(self, fig, artifact_file: str) -> None:
        import matplotlib.pyplot as plt

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / artifact_file
                fig.savefig(path, dpi=110, bbox_inches="tight")
                self.log_artifact(path, "plots")
        finally:
            plt.close(fig)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id and not self._broken:
            self._call(lambda: self.client.set_terminated(self.run_id, status), "end")


def create_parent_run(params: TrackingParams, run_name: str, tags: dict | None = None,
                      params_dict: dict | None = None) -> str | None:
    """Create the parent run of one result (ended at once; children attach by tag)."""
    tracker = Tracker.start(params, stage="result", run_name=run_name, tags=tags,
                            params_dict=params_dict)
    tracker.end("FINISHED")
    return tracker.run_id


def log_to_run(run_id: str, metrics: dict[str, float] | None = None,
               tags: dict[str, str] | None = None) -> None:
    """Add final metrics / tags to an existing run (e.g. the parent, once a result is in)."""
    tracker = Tracker(_client(), run_id)
    if metrics:
        tracker.log_metrics(metrics, step=0)
    if tags:
        tracker.set_tags(tags)


def read_run(run_id: str) -> dict[str, Any]:
    """Everything about a run, for tests and reports."""
    client = _client()
    run = _retry(lambda: client.get_run(run_id), "get_run")
    histories = {}
    for k in run.data.metrics:
        hist = _retry(lambda k=k: client.get_metric_history(run_id, k), "metric history")
        histories[k] = sorted((m.step, m.value) for m in hist)
    artifacts = _list_artifacts(client, run_id)
    return {"params": dict(run.data.params), "metrics": dict(run.data.metrics),
            "histories": histories, "tags": dict(run.data.tags), "status": run.info.status,
            "artifacts": artifacts}


def _list_artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(_list_artifacts(client, run_id, f.path) if f.is_dir else [f.path])
    return out
