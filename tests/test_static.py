"""Static checks that CI enforces: ruff over the package, tests and benchmarks, and mypy over
the layers with a public extension contract (``nasflow/spaces``, ``nasflow/methods``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (it is in requirements.lock: run make setup)")
    return str(path)


def test_ruff_clean():
    out = subprocess.run([_tool("ruff"), "check", "nasflow", "tests", "benchmarks"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_clean_on_spaces_and_methods():
    out = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
