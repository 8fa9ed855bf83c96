"""benchmarks/bench.py keeps working: every kind of case (search, retraining, data pipeline and
the reference codes' per-image pipeline) on its seconds-long ``tiny`` configs, and one whole
run of the script writing its JSON record. The figures themselves are recorded in
benchmarks/results/, never asserted here."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("nasflow_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("case", [
    ("search", {"method": "darts", "order": 1, "layers": 3, "C": 4, "batch": 4}),
    ("search", {"method": "darts", "order": 2, "layers": 3, "C": 4, "batch": 4}),
    ("search", {"method": "dropnas", "layers": 3, "C": 4, "batch": 4}),
    ("retrain", {"layers": 3, "C": 8, "batch": 8}),
    ("data", {"dataset": "digits", "batch": 32}),
], ids=["darts1", "darts2", "dropnas", "retrain", "data"])
def test_every_kind_of_case_runs_plain_and_fast(case):
    bench = _bench()
    kind, cfg = case
    for switches in (bench.PLAIN, bench.FAST["cpu"]):
        res = bench.run_case(kind, cfg, switches, warmup=0, steps=1)
        assert res["images_per_s"] > 0
        assert res["peak_memory_mb"] > 0
        assert res["batch"] == cfg["batch"]
        if kind != "data":
            assert len(res["step_times_s"]) == 1
            assert res["median_step_s"] == pytest.approx(cfg["batch"] / res["images_per_s"])
    if kind == "data":
        ref = bench.run_case(kind, cfg, {"reference": True}, warmup=0, steps=1)
        assert ref["images_per_s"] > 0
        assert ref["workers"] >= 1


def test_script_writes_a_record_with_ratios_over_repeats(tmp_path):
    out = tmp_path / "tiny.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--suite", "tiny", "--only", "retrain",
                           "--warmup", "0", "--steps", "1", "--repeats", "2", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["suite"] == "tiny"
    assert record["machine"]["cpu_count"] >= 1
    [row] = record["results"]
    assert row["kind"] == "retrain"
    assert row["plain"]["switches"]["channels_last"] is False
    assert row["fast"]["switches"]["channels_last"] is True
    assert row["speedup"] == row["fast"]["images_per_s"] / row["plain"]["images_per_s"]
    for variant in ("plain", "fast"):  # --repeats 2: the median of two alternating runs
        runs = row[variant]["runs"]
        assert row[variant]["repeats"] == len(runs) == 2
        assert row[variant]["images_per_s"] == pytest.approx(
            (runs[0]["images_per_s"] + runs[1]["images_per_s"]) / 2)


def test_unknown_fast_switch_is_refused():
    proc = subprocess.run([sys.executable, str(BENCH), "--suite", "tiny", "--fast", "warp=1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown switch 'warp'" in proc.stderr
