"""The core end to end through the `nasflow` command line: on the embedded digits data with the
smoke profile, `search` (DARTS and DropNAS), `derive`, `retrain` and `evaluate`, each verb run
on the real params files and reading only the previous verb's files (in-process, to spare four
torch start-ups per method; test_resume runs the verbs as separate processes). The retrained
network must be clearly better than chance on the held-out test split (10 classes: chance is
90 % top-1 error)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
CHANCE_ERR = 90.0


def _nasflow(*args: str, capsys) -> None:
    code = main(list(args))
    assert code == 0, f"nasflow {' '.join(args)}:\n{capsys.readouterr().err[-4000:]}"


@pytest.mark.slow
@pytest.mark.parametrize("method", ["darts", "dropnas"])
def test_search_derive_retrain_evaluate_beats_chance(tmp_path, monkeypatch, capsys, method):
    monkeypatch.chdir(tmp_path)
    params = []
    for f in ("datasets/digits.yaml", f"methods/{method}.yaml", "profiles/smoke.yaml"):
        params += ["--params", str(ROOT / "params" / f)]
    params += ["--set", "tracking.enabled=false", "--set", "retrain.epochs=2"]
    run = tmp_path / "run"
    ck = ["--checkpoint-dir", str(tmp_path / "ck")]

    _nasflow("search", *params, "--out", str(run / "search"), *ck, capsys=capsys)
    search = json.loads((run / "search" / "search.json").read_text())
    assert search["method"] == method and len(search["history"]) == 3
    assert (run / "search" / "config.json").is_file()  # the resolved config beside the output

    _nasflow("derive", *params, "--search", str(run / "search" / "search.json"),
             "--out", str(run / "genotype.json"), capsys=capsys)
    genotype = json.loads((run / "genotype.json").read_text())
    assert genotype["normal"] == search["genotype"]["normal"]

    _nasflow("retrain", *params, "--genotype", str(run / "genotype.json"),
             "--out", str(run / "retrain"), *ck, capsys=capsys)
    _nasflow("evaluate", *params, "--genotype", str(run / "genotype.json"),
             "--weights", str(run / "retrain" / "model.pt"), "--out", str(run / "eval.json"),
             capsys=capsys)
    result = json.loads((run / "eval.json").read_text())
    top1 = result["top1_err"]
    # 2 retraining epochs of a 5-cell network: far from chance, well short of a full run
    assert top1 < CHANCE_ERR / 2, f"{method}: top-1 error {top1:.1f}% (chance {CHANCE_ERR}%)"
    assert result["params_m"] > 0 and result["macs_m"] > 0
