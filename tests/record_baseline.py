"""Record (``python -m tests.record_baseline``) or compute the fixed-seed digits smoke search
of DARTS and DropNAS in deterministic mode: the alphas and genotype that a refactor must keep.

The recorded file ``tests/data/search_baseline.json`` was written before the space registry and
method building blocks replaced the hard-wired DARTS cell; ``test_contracts`` compares a fresh
run with it."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

BASELINE = Path(__file__).parent / "data" / "search_baseline.json"
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("darts", "dropnas")


def smoke_search(method: str) -> dict:
    from nasflow.config import load_config
    from nasflow.train.search import run_search

    files = [ROOT / "params/datasets/digits.yaml", ROOT / f"params/methods/{method}.yaml",
             ROOT / "params/profiles/smoke.yaml"]
    config = load_config(files, ["search.seed=3", "search.epochs=2", "search.steps_per_epoch=4",
                                 # a large alpha step, so the alphas move well past their init
                                 "search.alpha_lr=0.05",
                                 "tracking.enabled=false", "runtime.threads=2",
                                 f"dataset.root={ROOT / 'data'}"])
    if method == "dropnas":  # drop often enough that masks shape every step
        config = config.model_copy(update={"method": config.method.model_copy(
            update={"r_parametric": 0.05, "r_nonparametric": 0.05})})
    with tempfile.TemporaryDirectory() as tmp:
        _, record = run_search(config, Path(tmp) / "ckpt")
    return {"alphas": record["alphas"], "genotype": record["genotype"]}


def main() -> int:
    BASELINE.parent.mkdir(exist_ok=True)
    out = {m: smoke_search(m) for m in METHODS}
    BASELINE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {BASELINE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
