"""A smoke-profile run (search -> derive -> retrain -> evaluate -> aggregate) through
Snakemake's SLURM executor on a real single-node SLURM
(Debian's slurm-wlm + munge, started by scripts/slurm_single_node.sh; .ci/run installs them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.test_pipeline import copy_project

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLUSTER = ROOT / "scripts" / "slurm_single_node.sh"

SLURM_AVAILABLE = shutil.which("slurmctld") is not None and os.geteuid() == 0
needs_slurm = pytest.mark.skipif(
    not SLURM_AVAILABLE,
    reason="needs root and Debian's slurm-wlm and munge (installed by .ci/run)")


@dataclass
class SlurmRun:
    project: Path
    proc: subprocess.Popen
    stderr: Path


def start_slurm_run(tmp: Path) -> SlurmRun:
    """Start the cluster and the Snakemake run in the background. Most of the run is waiting
    (SLURM queueing, the executor's status-check backoff), so the session fixture in
    conftest.py starts it before the other tests and the test collects it at the end."""
    subprocess.run(["bash", str(CLUSTER), "start"], check=True, capture_output=True, text=True,
                   timeout=120)
    project = copy_project(tmp / "project")
    (project / "data").mkdir()
    config = yaml.safe_load((project / "workflow" / "config.yaml").read_text())
    config["profiles"]["smoke"]["seeds"] = [0]
    (project / "workflow" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # the scheduling is under test, not the training: the shortest smoke run
    smoke = project / "params" / "profiles" / "smoke.yaml"
    profile = yaml.safe_load(smoke.read_text())
    profile["search"].update(epochs=2, steps_per_epoch=3)
    profile["retrain"].update(epochs=1, steps_per_epoch=3)
    smoke.write_text(yaml.safe_dump(profile, sort_keys=False))
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["XDG_CACHE_HOME"] = str(tmp / ".cache")
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
    cmd = [str(BIN / "snakemake"), "--profile", str(ROOT / "workflow" / "profiles" / "slurm"),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
           "--seconds-between-status-checks", "2",
           "--slurm-keep-successful-logs", "--latency-wait", "5",
           # one method's chain is the whole SLURM path (the default target adds a second
           # method's identical jobs and the table, ~100 s of queueing in CI)
           "results/smoke/digits_dropnas.json"]
    stderr = tmp / "snakemake.stderr"
    with stderr.open("w") as err:
        proc = subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                text=True)
    return SlurmRun(project, proc, stderr)


def stop_slurm_run(run: SlurmRun) -> None:
    if run.proc.poll() is None:
        run.proc.kill()
        run.proc.wait()
    subprocess.run(["bash", str(CLUSTER), "stop"], capture_output=True, timeout=60)


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_smoke_pipeline_through_slurm_executor(slurm_run):
    project = slurm_run.project
    returncode = slurm_run.proc.wait(timeout=1500)
    stderr = slurm_run.stderr.read_text()
    assert returncode == 0, stderr[-5000:]
    # the heavy rules really went through SLURM: the executor logs their job ids
    submitted = [line for line in stderr.splitlines()
                 if "SLURM run ID" in line or "jobid" in line.lower()]
    assert submitted, stderr[-3000:]
    slurm_logs = list((project / ".snakemake" / "slurm_logs").rglob("*.log"))
    # layout: .snakemake/slurm_logs/rule_<name>/<wildcards>/<jobid>.log
    rules = {part.removeprefix("rule_") for p in slurm_logs for part in p.parts if part.startswith("rule_")}
    assert {"search", "retrain", "evaluate"} <= rules, rules
    agg = json.loads((project / "results" / "smoke" / "digits_dropnas.json").read_text())
    assert agg["n_seeds"] == 1
    assert agg["method"] == "dropnas"
    evaluated = json.loads((project / "runs" / "smoke" / "digits_dropnas_s0" / "eval.json").read_text())
    assert agg["test_error"]["top1"]["mean"] == pytest.approx(evaluated["top1_err"])
