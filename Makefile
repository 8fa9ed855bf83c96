# nasflow: `make run` (set up, then the default pipeline target) and `make test`.
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nasflow-setup

.PHONY: setup run test test-fast lint bench-cpu mlflow-ui clean
setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	@touch $@

## the default target: DARTS vs DropNAS on the embedded digits data (smoke profile)
run: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores all

## the whole test suite, end-to-end pipeline tests included
test: setup
	$(BIN)/python -m pytest -q --durations=15

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

lint: setup
	$(BIN)/ruff check nasflow tests benchmarks
	$(BIN)/mypy
	$(BIN)/snakemake --lint

bench-cpu: setup
	$(BIN)/python benchmarks/bench.py --suite cpu --out benchmarks/results/cpu.json

mlflow-ui: setup
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --workers 1

clean:
	rm -rf runs results checkpoints .snakemake
