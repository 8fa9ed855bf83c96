"""Bad pipeline input: an unknown profile and a dataset name that escapes the project stop
Snakemake before any job, with a message naming the value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize(("config", "fragment"), [
    (["profile=nope"], "nope"),
    (["dataset=../../etc"], "../../etc"),
    (["methods=[no_such_method]"], "no_such_method"),
], ids=["unknown-profile", "dataset-escapes-project", "unknown-method"])
def test_snakemake_refuses_bad_config(tmp_path, config, fragment):
    from tests.test_pipeline import _env

    env = _env(tmp_path)
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--cores", "1", "results/cifar10_dropnas.json",
                           "--config", *config], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert fragment in proc.stderr + proc.stdout
    assert not (ROOT / "runs" / "nope").exists()
