"""MLflow tracking: parent/child runs read back with MlflowClient, no-op and degraded modes, and
no lost run or metric with 8 concurrent writer processes on one SQLite file."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nasflow import tracking
from nasflow.params import TrackingParams
from nasflow.tracking import Tracker, create_parent_run, finish_parent_run, read_run

ROOT = Path(__file__).resolve().parents[1]


def _use_store(monkeypatch, folder: Path) -> Path:
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder}/mlflow.db")
    monkeypatch.setattr(tracking, "_WARNED", set())
    return folder


@pytest.fixture(scope="module")
def shared_folder(tmp_path_factory) -> Path:
    # One SQLite file for the single-process tests: MLflow's schema migrations on a fresh file
    # cost ~1-2 s each.
    return tmp_path_factory.mktemp("mlflow_shared")


@pytest.fixture
def store(shared_folder, monkeypatch) -> Path:
    return _use_store(monkeypatch, shared_folder)


def _client():
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def test_parent_child_params_metrics_artifacts(store, capsys):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = TrackingParams(experiment="t")
    parent = create_parent_run(params, "digits_dropnas_s0", tags={"nasflow.method": "dropnas"},
                               params_dict={"seed": 0})
    nested = {"search": {"epochs": 3, "alpha_betas": [0.5, 0.999], "augment": {"flip": True}},
              "dataset": {"root": Path("data"), "archive": None}, "long": "x" * 7000,
              **{f"many.p{i:03d}": i for i in range(230)}}
    with Tracker.start(params, stage="search", run_name="search", parent_run_id=parent,
                       params_dict=nested, tags={"nasflow.dataset": "digits"}) as t:
        for step in range(3):
            t.log_metrics({"loss": 1.0 / (step + 1), "bad": float("nan"), "inf": float("inf"),
                           "odd key>1": 2.0}, step=step)
        (store / "g.json").write_text("{}")
        t.log_artifact(store / "g.json")
        t.log_dict({"alphas": [[0.1, 0.9]]}, "records/alphas.json")
        fig, ax = plt.subplots()
        ax.plot([0, 1])
        t.log_figure(fig, "plots/curve.png")
        assert not plt.get_fignums()  # closed
        child = t.run_id
    finish_parent_run(parent, metrics={"test_error": 2.5})

    run = read_run(child)
    assert run["status"] == "FINISHED"
    assert run["tags"]["mlflow.parentRunId"] == parent
    assert run["tags"]["nasflow.stage"] == "search"
    assert run["tags"]["nasflow.run_name"] == "search" == run["run_name"]
    assert run["tags"]["nasflow.dataset"] == "digits"
    p = run["params"]
    assert p["search.epochs"] == "3"
    assert p["search.alpha_betas"] == "[0.5, 0.999]"
    assert p["search.augment.flip"] == "True"
    assert p["dataset.root"] == "data"
    assert p["dataset.archive"] == "None"
    assert len(p["long"]) == tracking.MAX_PARAM_VAL_LENGTH
    assert p["long"].endswith("...")
    assert sum(k.startswith("many.") for k in p) == 230  # three batches of <= 100
    assert run["histories"]["loss"] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert run["histories"]["odd key_1"] == [(0, 2.0), (1, 2.0), (2, 2.0)]
    assert "bad" not in run["metrics"]
    assert "inf" not in run["metrics"]
    err = capsys.readouterr().err
    assert err.count("'bad'") == 1
    assert err.count("'inf'") == 1
    assert run["artifacts"] == ["g.json", "plots/curve.png", "records/alphas.json"]

    client = _client()
    local = client.download_artifacts(child, "records/alphas.json", str(store))
    assert json.loads(Path(local).read_text()) == {"alphas": [[0.1, 0.9]]}
    art_uri = client.get_run(child).info.artifact_uri
    assert art_uri == (store / "mlartifacts" / "t" / child / "artifacts").as_uri()

    par = read_run(parent)
    assert par["status"] == "FINISHED"
    assert par["tags"]["nasflow.stage"] == "parent"
    assert par["metrics"] == {"test_error": 2.5}
    assert par["params"] == {"seed": "0"}
    exp = client.get_experiment_by_name("t")
    children = client.search_runs([exp.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert [r.info.run_id for r in children] == [child]
    assert not (store / "mlruns").exists()


def test_failed_stage_marks_run_failed(store):
    rid = None

    def failing_stage():
        nonlocal rid
        with Tracker.start(TrackingParams(), stage="x", run_name="x") as t:
            rid = t.run_id
            t.log_metrics({"a": 1.0}, step=0)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        failing_stage()
    run = read_run(rid)
    assert run["status"] == "FAILED"
    assert run["histories"]["a"] == [(0, 1.0)]
    assert read_run(rid)["end_time"] is not None


def test_disabled_tracking_writes_nothing(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _use_store(monkeypatch, tmp_path)
    off = TrackingParams(enabled=False)
    assert create_parent_run(off, "p") is None
    finish_parent_run(None, metrics={"a": 1.0})
    with Tracker.start(off, stage="x", run_name="x", params_dict={"a": 1}) as t:
        assert t.run_id is None
        assert not t.active
        t.log_metrics({"a": 1.0}, step=0)
        t.log_params({"a": 1})
        t.set_tags({"a": "b"})
        t.log_dict({"a": 1}, "a.json")
        t.log_artifact(tmp_path / "missing.txt")
        t.log_figure(plt.figure(), "f.png")
        assert not plt.get_fignums()  # the figure is closed even when tracking is off
    assert list(tmp_path.iterdir()) == []


def test_default_store_is_project_sqlite_never_mlruns(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == tracking.DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    (tmp_path / "a.txt").write_text("a")
    with Tracker.start(TrackingParams(), stage="x", run_name="x") as t:
        t.log_artifact(tmp_path / "a.txt", "files")
    assert (tmp_path / "mlflow.db").is_file()
    assert list((tmp_path / "mlartifacts").rglob("a.txt"))
    assert not (tmp_path / "mlruns").exists()


def test_retry_backs_off_on_locks_only():
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException

    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 4:
            orig = sqlalchemy.exc.OperationalError("INSERT", {}, Exception("database is locked"))
            raise MlflowException(str(orig), error_code=tracking_error("TEMPORARILY_UNAVAILABLE"))
        return "ok"

    assert tracking._retry(flaky, "test", total_s=10) == "ok"
    assert len(calls) == 4
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(g > 0.01 for g in gaps)  # it waited between attempts

    def bad():
        calls.append(0)
        raise MlflowException("Changing param values is not allowed",
                              error_code=tracking_error("INVALID_PARAMETER_VALUE"))

    calls.clear()
    with pytest.raises(MlflowException):
        tracking._retry(bad, "test", total_s=10)
    assert len(calls) == 1  # not retried

    def locked():
        raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("database is locked"))

    t0 = time.monotonic()
    with pytest.raises(sqlalchemy.exc.OperationalError):
        tracking._retry(locked, "test", total_s=0.5)
    assert 0.4 < time.monotonic() - t0 < 3.0  # gave up at the deadline


def tracking_error(name: str) -> int:
    from mlflow.protos import databricks_pb2

    return getattr(databricks_pb2, name)


def test_unreachable_store_degrades_to_noop(tmp_path, monkeypatch, capsys):
    _use_store(monkeypatch, tmp_path)
    monkeypatch.setenv(tracking.RETRY_ENV, "0.3")
    # a store that cannot be opened: its folder is a file
    (tmp_path / "blocker").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/blocker/mlflow.db")
    with pytest.raises(tracking.TrackingUnavailable):
        tracking.ensure_store()
    t = Tracker.start(TrackingParams(), stage="x", run_name="x")
    t2 = Tracker.start(TrackingParams(), stage="y", run_name="y")
    assert t.run_id is None
    assert t2.run_id is None
    with t:
        t.log_metrics({"a": 1.0}, step=0)
    assert capsys.readouterr().err.count("warning") == 1  # once per process

    # a store that goes away mid-run: lock errors until the retries run out
    class LockedClient:
        calls = 0

        def log_batch(self, *a, **k):
            LockedClient.calls += 1
            raise RuntimeError("(sqlite3.OperationalError) database is locked")

        set_terminated = log_batch

    t = Tracker(LockedClient(), "r1")
    t.log_metrics({"a": 1.0}, step=0)  # no exception: training goes on
    assert not t.active
    assert LockedClient.calls > 1
    calls = LockedClient.calls
    t.log_metrics({"a": 2.0}, step=1)
    t.end()
    assert LockedClient.calls == calls  # no-op from then on
    err = capsys.readouterr().err
    assert err.count("warning") == 1
    assert "continues without tracking" in err


def test_file_store_uri_is_refused_without_crash(tmp_path, monkeypatch, capsys):
    _use_store(monkeypatch, tmp_path)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", str(tmp_path / "mlruns"))
    t0 = time.monotonic()
    t = Tracker.start(TrackingParams(), stage="x", run_name="x")
    assert t.run_id is None
    assert time.monotonic() - t0 < 10
    assert "warning" in capsys.readouterr().err


# ---- processes -----------------------------------------------------------------------------
# One helper interpreter pays MLflow's ~2.5 s of imports once, then forks the jobs before any
# store is opened: each child is a separate process with its own engine and SQLite connections
# (what SQLite's locking sees), at a fraction of the CPU of N fresh interpreters. The children
# start together (they block on a pipe until all are forked) to maximise contention.
HELPER = r"""
import os, sys, traceback
import mlflow.store.tracking.sqlalchemy_store  # the heavy imports, once
from nasflow import tracking
from nasflow.params import TrackingParams

kind, n, parent, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

def job(i):
    if kind == "parent":
        return tracking.create_parent_run(TrackingParams(experiment="fresh"), f"p{i}")
    with tracking.Tracker.start(TrackingParams(experiment="load"), stage="search",
                                run_name=f"job{i}", parent_run_id=parent,
                                params_dict={"job": i, "cfg": {"lr": 0.1}}) as t:
        for step in range(30):
            t.log_metrics({"loss": float(step), "acc": step / 30.0, "job": float(i)}, step=step)
        return t.run_id

r, w = os.pipe()
pids = []
for i in range(n):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)  # the barrier: EOF once every copy of the write end is closed
        code = 1
        try:
            with open(os.path.join(out, f"result-{i}"), "w") as fh:
                fh.write(str(job(i)))
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    pids.append(pid)
os.close(w)
failed = [pid for pid in pids if os.waitpid(pid, 0)[1] != 0]
sys.exit(1 if failed else 0)
"""


def _run_jobs(kind: str, n: int, folder: Path, parent: str = "-") -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_CURRENT_TEST", None)
    proc = subprocess.run([sys.executable, "-c", HELPER, kind, str(n), parent, str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr.lower()
    # no write was dropped
    assert "warning" not in err, proc.stderr
    assert "error" not in err, proc.stderr
    return [(folder / f"result-{i}").read_text() for i in range(n)]


def test_first_use_of_fresh_store_by_parallel_jobs(tmp_path, monkeypatch):
    # Jobs meeting a fresh file at once: MLflow's schema migrations must run once (run
    # concurrently they fail and can leave a half-migrated file for good) and the experiment
    # must be created once.
    _use_store(monkeypatch, tmp_path)
    ids = _run_jobs("parent", 4, tmp_path)
    assert tracking.ensure_store() == f"sqlite:///{tmp_path}/mlflow.db"
    assert len(set(ids)) == 4
    assert "None" not in ids
    client = _client()
    assert len(client.search_experiments(filter_string="name = 'fresh'")) == 1
    assert all(read_run(i)["status"] == "FINISHED" for i in ids)


def test_eight_concurrent_jobs_lose_nothing(tmp_path, monkeypatch):
    _use_store(monkeypatch, tmp_path)
    parent = create_parent_run(TrackingParams(experiment="result"), "parent")
    # the 8 jobs also race to create their experiment ("load")
    run_ids = _run_jobs("child", 8, tmp_path, parent)
    assert len(set(run_ids)) == 8
    assert "None" not in run_ids
    for i, rid in enumerate(run_ids):
        run = read_run(rid)
        assert run["status"] == "FINISHED"
        assert run["tags"]["mlflow.parentRunId"] == parent
        assert run["params"] == {"job": str(i), "cfg.lr": "0.1"}
        assert [s for s, _ in run["histories"]["loss"]] == list(range(30))
        assert run["histories"]["acc"] == [(s, pytest.approx(s / 30.0)) for s in range(30)]
        assert run["histories"]["job"] == [(s, float(i)) for s in range(30)]
    client = _client()
    exps = client.search_experiments(filter_string="name = 'load'")
    assert len(exps) == 1
    runs = client.search_runs([exps[0].experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids)
    assert not (tmp_path / "mlruns").exists()
