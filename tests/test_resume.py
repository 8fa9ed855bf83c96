"""Resume after SIGKILL: the re-run continues from the last checkpoint and, in deterministic
mode, ends with exactly the alphas, genotype and metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

PARAMS = {
    "dataset": {"name": "digits"},
    "method": {"name": "dropnas", "r_parametric": 0.01, "r_nonparametric": 0.01},
    "search": {"epochs": 4, "batch_size": 32, "layers": 3, "init_channels": 4, "steps_per_epoch": 6,
               "augment": {"crop_padding": 1, "flip": True, "cutout": 0}},
    "retrain": {"epochs": 3, "batch_size": 64, "layers": 3, "init_channels": 4, "steps_per_epoch": 4,
                "auxiliary": False, "drop_path_prob": 0.2,
                "augment": {"crop_padding": 1, "flip": True, "cutout": 2}},
    "runtime": {"deterministic": True, "progress": False, "threads": 1},
    "tracking": {"enabled": False},
}


def _cmd(stage, tmp_path, out, ckpt, extra=()):
    return [sys.executable, "-m", "nasflow.cli", stage, "--params", str(tmp_path / "p.yaml"),
            "--out", str(out), "--checkpoint-dir", str(ckpt), *extra]


def _kill_after_first_checkpoint(cmd, ckpt_file: Path, cwd):
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.time() + 240
    while not ckpt_file.exists():
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: the next epoch is in flight
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("stage", ["search", "retrain"])
def test_sigkill_then_rerun_matches_uninterrupted(tmp_path, stage):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PARAMS))
    extra = ("--genotype", "DARTS_V2") if stage == "retrain" else ()
    cwd = Path(__file__).resolve().parents[1]
    full = subprocess.run(_cmd(stage, tmp_path, tmp_path / "full", tmp_path / "ck_full", extra),
                          cwd=cwd, capture_output=True, text=True)
    assert full.returncode == 0, full.stderr

    ck = tmp_path / "ck_killed"
    cmd = _cmd(stage, tmp_path, tmp_path / "resumed", ck, extra)
    _kill_after_first_checkpoint(cmd, ck / f"{stage}.ckpt", cwd)
    assert not (tmp_path / "resumed").exists()  # no half-written output
    again = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr

    a = json.loads((tmp_path / "full" / f"{stage}.json").read_text())
    b = json.loads((tmp_path / "resumed" / f"{stage}.json").read_text())
    assert a["genotype"] == b["genotype"]
    keys = ["train_loss", "train_acc"] + (["test_acc"] if stage == "retrain" else [])
    assert [[h[k] for k in keys] for h in a["history"]] == [[h[k] for k in keys] for h in b["history"]]
    if stage == "search":
        assert a["alphas"] == b["alphas"]
    else:
        assert a["final_test_acc"] == b["final_test_acc"]


# ---- the same Snakemake target, after the job was killed ---------------------------------------
def _pids_running(fragment: str) -> list[int]:
    """Processes whose command line contains ``fragment`` (from /proc: no extra dependency)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmdline:
            pids.append(int(entry.name))
    return pids


def _smoke_project(tmp: Path) -> Path:
    from tests.test_pipeline import copy_project

    project = copy_project(tmp / "project")
    smoke = project / "params" / "profiles" / "smoke.yaml"
    profile = yaml.safe_load(smoke.read_text())
    profile["search"].update(epochs=3, steps_per_epoch=4)
    profile["tracking"]["enabled"] = False
    smoke.write_text(yaml.safe_dump(profile, sort_keys=False))
    (project / "data").mkdir()
    return project


@pytest.mark.slow
def test_snakemake_target_resumes_after_the_job_is_killed(tmp_path):
    """A pre-empted search job (SIGKILL) fails its Snakemake run; running the same target again
    resumes from the per-epoch checkpoint (which is not a Snakemake output, so the failure did
    not delete it) and ends with exactly the alphas of an uninterrupted run."""
    from tests.test_pipeline import _env, snakemake

    target = "runs/smoke/digits_dropnas_s0/search/search.json"
    args = ("--cores", "2", target, "--config", "seeds=[0]")
    env = _env(tmp_path)
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")

    full = _smoke_project(tmp_path / "full")
    snakemake(*args, cwd=full, env=env, timeout=600)

    killed = _smoke_project(tmp_path / "killed")
    ckpt = killed / "checkpoints/smoke/digits_dropnas_s0/search/search.ckpt"
    cmd = [str(Path(sys.executable).parent / "snakemake"), *args]
    proc = subprocess.Popen(cmd, cwd=killed, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    jobs = _pids_running("search --params params/datasets/digits.yaml")
    jobs = [p for p in jobs if Path(f"/proc/{p}/cwd").resolve() == killed.resolve()]
    assert jobs, "the search job is not running"
    for pid in jobs:
        os.kill(pid, signal.SIGKILL)  # the job dies (pre-emption, OOM killer), Snakemake lives
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out
    assert not (killed / target).exists()
    assert ckpt.exists(), "the failed job's checkpoint was deleted"

    again = snakemake(*args, cwd=killed, env=env, timeout=600)
    log = (killed / "runs/smoke/digits_dropnas_s0/logs/search.log").read_text()
    assert "resuming from" in log, log[-2000:] + again.stderr[-2000:]
    a = json.loads((full / target).read_text())
    b = json.loads((killed / target).read_text())
    assert a["alphas"] == b["alphas"]
    assert a["genotype"] == b["genotype"]
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
