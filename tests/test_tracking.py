"""MLflow tracking: parent/child runs across processes, read-back, and no lost run or metric
with 8 concurrent writers on one SQLite store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nasflow.params import TrackingParams
from nasflow.tracking import Tracker, create_parent_run, read_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    return tmp_path


def test_parent_child_params_metrics_artifacts(store):
    params = TrackingParams(experiment="t")
    parent = create_parent_run(params, "digits_dropnas_s0", tags={"nasflow.method": "dropnas"})
    with Tracker.start(params, stage="search", run_name="search", parent_run_id=parent,
                       params_dict={"search": {"epochs": 3, "alpha_betas": [0.5, 0.999]}}) as t:
        for step in range(3):
            t.log_metrics({"loss": 1.0 / (step + 1), "bad": float("nan")}, step=step)
        (store / "g.json").write_text("{}")
        t.log_artifact(store / "g.json")
        child = t.run_id
    run = read_run(child)
    assert run["status"] == "FINISHED"
    assert run["tags"]["mlflow.parentRunId"] == parent
    assert run["params"]["search.epochs"] == "3"
    assert run["params"]["search.alpha_betas"] == "[0.5, 0.999]"
    assert run["histories"]["loss"] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    assert "bad" not in run["metrics"]  # NaN skipped, not a crash
    assert run["artifacts"] == ["g.json"]
    assert not (store / "mlruns").exists()


def test_failed_stage_marks_run_failed(store):
    with pytest.raises(RuntimeError), Tracker.start(TrackingParams(), stage="x", run_name="x") as t:
        rid = t.run_id
        raise RuntimeError("boom")
    assert read_run(rid)["status"] == "FAILED"


def test_disabled_tracking_writes_nothing(store):
    with Tracker.start(TrackingParams(enabled=False), stage="x", run_name="x") as t:
        t.log_metrics({"a": 1.0}, step=0)
        assert t.run_id is None
    assert not (store / "mlflow.db").exists()


WORKER = """
import sys
from nasflow.params import TrackingParams
from nasflow.tracking import Tracker
parent, i = sys.argv[1], int(sys.argv[2])
with Tracker.start(TrackingParams(experiment="load"), stage="search", run_name=f"job{i}",
                   parent_run_id=parent, params_dict={"job": i}) as t:
    for step in range(30):
        t.log_metrics({"loss": float(step), "acc": step / 30.0}, step=step)
    print(t.run_id)
"""


def test_eight_concurrent_jobs_lose_nothing(store):
    parent = create_parent_run(TrackingParams(experiment="load"), "parent")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, parent, str(i)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(8)]
    run_ids = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert "warning" not in err.lower(), err  # no write was dropped
        run_ids.append(out.strip().splitlines()[-1])
    assert len(set(run_ids)) == 8
    for rid in run_ids:
        run = read_run(rid)
        assert run["tags"]["mlflow.parentRunId"] == parent
        assert [s for s, _ in run["histories"]["loss"]] == list(range(30))
        assert len(run["histories"]["acc"]) == 30
