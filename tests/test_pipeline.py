"""The pipeline layer: Snakefile + dvc.yaml + nasflow.pipeline.

Fast: config and schemas, `snakemake --lint`, dry-run plans (paper protocol, default target,
transfer), Snakefile and dvc.yaml declaring the same stages / outputs / commands, the record
and table code. Slow (`-m slow`, run in CI): the default target end to end in a copy of the
project (results, table, MLflow runs read back), then DVC adopting those outputs and, after
a DropNAS-only param edit, rerunning only the DropNAS stages.
"""

from __future__ import annotations

import functools
import json
import math
import operator
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nasflow.pipeline import (
    STD_KIND,
    PipelineConfig,
    aggregate,
    load_pipeline_config,
    markdown_table,
    pipeline_schema,
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIG = yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())


def _env(tmp: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Snakemake without SLURM: its SLURM plugin's start-up probe fails fast (see the file)
    env.setdefault("SLURM_CONF", str(ROOT / "tests" / "slurm_no_controller.conf"))
    cache = (tmp or ROOT) / ".cache"
    env.setdefault("XDG_CACHE_HOME", str(cache))
    env.update(extra)
    return env


def _run(args: list[str], cwd: Path = ROOT, env: dict | None = None, timeout: int = 600,
         check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def snakemake(*args: str, cwd: Path = ROOT, env: dict | None = None, check: bool = True,
              timeout: int = 600) -> subprocess.CompletedProcess:
    return _run([str(BIN / "snakemake"), *args], cwd, env, timeout, check)


def dry_run_jobs(*args: str, cwd: Path = ROOT) -> list[dict]:
    """Jobs of `snakemake -n -p`: rule, input, output, wildcards, shell."""
    out = snakemake("-n", "-p", "--cores", "2", *args, cwd=cwd)
    jobs: list[dict] = []
    for line in (out.stdout + out.stderr).splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
        if m:
            jobs.append({"rule": m.group(1), "input": [], "output": [], "wildcards": {},
                         "log": [], "shell": None})
            continue
        if not jobs:
            continue
        m = re.match(r"^    (input|output|log|wildcards|resources|threads): (.*)$", line)
        if m:
            key, value = m.groups()
            items = [v.strip() for v in value.split(", ") if v.strip()]
            if key in ("wildcards", "resources"):
                jobs[-1][key] = dict(i.split("=", 1) for i in items)
            elif key == "threads":
                jobs[-1][key] = int(value)
            else:
                jobs[-1][key] = items
        elif line.startswith("Shell command: "):
            jobs[-1]["shell"] = line[len("Shell command: "):]
    return jobs


def shell_tokens(cmd: str) -> list[str]:
    """A rule's shell command without its log redirection and runtime.threads (which DVC,
    running one stage at a time, leaves to the CLI's default)."""
    tokens = shlex.split(cmd.replace("(", " ").replace(")", " "))
    for marker in (">", "2>"):
        if marker in tokens:
            tokens = tokens[: tokens.index(marker)]
    out, i = [], 0
    while i < len(tokens):
        if tokens[i] == "--set" and tokens[i + 1].startswith("runtime.threads="):
            i += 2
            continue
        out.append(tokens[i])
        i += 1
    return out


def cli_params(tokens: list[str]) -> tuple[list[str], list[str]]:
    files = [tokens[i + 1] for i, t in enumerate(tokens) if t == "--params"]
    sets = [tokens[i + 1] for i, t in enumerate(tokens) if t == "--set"]
    return files, sets


# ---- config and schemas ----------------------------------------------------------------------
def test_workflow_config_is_valid():
    pc = load_pipeline_config(CONFIG)
    pc.check_names(ROOT)
    assert pc.profile == "paper", "short paths must mean the paper protocol"
    default = pc.table(pc.default_table)
    assert (default["profile"], default["dataset"]) == ("smoke", "digits")
    assert set(default["methods"]) == {"darts", "dropnas"}
    assert pc.seeds_of("paper") == list(range(8))
    # dvc.yaml unpacks the default table's mapping and the smoke seeds: keep them explicit
    raw = CONFIG["tables"][pc.default_table]
    assert set(raw) == {"profile", "dataset", "methods"}
    assert set(CONFIG["profiles"]["smoke"]) == {"seeds"}


def test_schemas_are_generated_and_current():
    from nasflow.config import json_schema

    schemas = ROOT / "workflow" / "schemas"
    assert json.loads((schemas / "pipeline.schema.json").read_text()) == pipeline_schema(), \
        "run `snakemake --forcerun schemas schemas` (or python -m nasflow.pipeline schema)"
    assert json.loads((schemas / "run_config.schema.json").read_text()) == json_schema(), \
        "run `snakemake --forcerun schemas schemas` (or nasflow schema --out ...)"


def test_pipeline_config_rejects_bad_values():
    with pytest.raises(ValueError, match="seeds"):
        load_pipeline_config({**CONFIG, "seeds": [1, 1]})
    with pytest.raises(ValueError, match="unknown_key"):
        load_pipeline_config({**CONFIG, "unknown_key": 1})
    with pytest.raises(ValueError, match="default_table"):
        load_pipeline_config({**CONFIG, "default_table": "nope"})
    pc = PipelineConfig.model_validate({**CONFIG, "methods": ["no_such_method"]})
    with pytest.raises(ValueError, match="no_such_method"):
        pc.check_names(ROOT)


# ---- Snakemake -------------------------------------------------------------------------------
def test_snakemake_lint_is_clean():
    out = snakemake("--lint")
    text = out.stdout + out.stderr
    assert "Lints for" not in text, text[-3000:]
    assert "good condition" in text, text[-3000:]


def test_snakemake_rejects_invalid_config():
    out = snakemake("-n", "--config", "seeds=[-1]", check=False)
    assert out.returncode != 0
    assert "seeds" in out.stdout + out.stderr
    out = snakemake("-n", "--config", "profile=nonexistent", check=False)
    assert out.returncode != 0
    assert "nonexistent" in out.stdout + out.stderr


def _by_rule(jobs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for j in jobs:
        out.setdefault(j["rule"], []).append(j)
    return out


@pytest.mark.parametrize(("method", "search", "retrain"), [
    ("dropnas", {"epochs": 76, "batch_size": 96, "layers": 14, "w_lr": 0.0375,
                 "w_grad_clip": 3.0, "train_portion": 1.0},
     {"epochs": 600, "batch_size": 192, "lr": 0.05, "grad_clip": 3.0, "layers": 20}),
    ("darts", {"epochs": 50, "batch_size": 64, "layers": 8, "w_lr": 0.025, "w_grad_clip": 5.0,
               "train_portion": 0.5},
     {"epochs": 600, "batch_size": 96, "lr": 0.025, "grad_clip": 5.0, "layers": 20}),
])
def test_paper_target_plans_the_paper_protocol(method, search, retrain):
    from nasflow.config import load_config

    jobs = _by_rule(dry_run_jobs(f"results/cifar10_{method}.json"))
    seeds = CONFIG["profiles"]["paper"]["seeds"]
    for rule in ("track_parent", "search", "derive", "retrain", "evaluate", "collect"):
        assert len(jobs[rule]) == len(seeds), rule
    assert len(jobs["aggregate"]) == len(jobs["short_result"]) == 1
    assert set(jobs) == {"track_parent", "search", "derive", "retrain", "evaluate", "collect",
                         "aggregate", "short_result"}

    run = "runs/paper/cifar10_{m}_s{s}"
    planned_seeds = set()
    for job in jobs["search"]:
        s = int(job["wildcards"]["seed"])
        planned_seeds.add(s)
        r = run.format(m=method, s=s)
        tokens = shell_tokens(job["shell"])
        assert tokens[:2] == ["nasflow", "search"]
        files, sets = cli_params(tokens)
        assert files == ["params/datasets/cifar10.yaml", f"params/methods/{method}.yaml",
                         "params/profiles/paper.yaml"]
        assert sets == [f"search.seed={s}", f"retrain.seed={s}"]
        assert set(files) <= set(job["input"]), "params files must be declared inputs"
        assert tokens[tokens.index("--out") + 1] == f"{r}/search"
        assert tokens[tokens.index("--checkpoint-dir") + 1].startswith("checkpoints/paper/")
        assert not any(o.startswith("checkpoints/")
                       for j in functools.reduce(operator.iadd, jobs.values(), [])
                       for o in j["output"]), "checkpoints must not be outputs"
        config = load_config([str(ROOT / f) for f in files], sets)
        for key, value in search.items():
            assert getattr(config.search, key) == value, key
        for key, value in retrain.items():
            assert getattr(config.retrain, key) == value, key
        assert config.search.seed == config.retrain.seed == s
    assert planned_seeds == set(seeds)

    # the chain search -> derive -> retrain -> evaluate -> collect -> aggregate, per seed
    for s in seeds:
        r = run.format(m=method, s=s)
        derive = next(j for j in jobs["derive"] if f"{r}/genotype.json" in j["output"])
        assert f"{r}/search/search.json" in derive["input"]
        retrain_job = next(j for j in jobs["retrain"] if f"{r}/retrain/model.pt" in j["output"])
        assert f"{r}/genotype.json" in retrain_job["input"]
        evaluate = next(j for j in jobs["evaluate"] if f"{r}/eval.json" in j["output"])
        assert {f"{r}/retrain/model.pt", f"{r}/genotype.json"} <= set(evaluate["input"])
        collect = next(j for j in jobs["collect"]
                       if f"results/paper/cifar10_{method}/s{s}.json" in j["output"])
        assert f"{r}/eval.json" in collect["input"]
    (agg,) = jobs["aggregate"]
    assert agg["output"] == [f"results/paper/cifar10_{method}.json",
                             f"results/paper/metrics/cifar10_{method}.json"]
    assert len(agg["input"]) == len(seeds)
    assert jobs["short_result"][0]["output"] == [f"results/cifar10_{method}.json"]


def test_paper_resources():
    jobs = _by_rule(dry_run_jobs("results/paper/cifar10_dropnas/s0.json"))
    (search,) = jobs["search"]
    assert search["wildcards"] == {"profile": "paper", "dataset": "cifar10", "method": "dropnas",
                                   "seed": "0"}
    for rule in ("search", "retrain", "evaluate"):
        (job,) = jobs[rule]
        res = CONFIG["resources"]["paper"][rule]
        assert job["threads"] == min(res["threads"], 2)  # capped by --cores 2
        for key in ("gpu", "mem_mb", "runtime"):
            assert job["resources"][key] == str(res[key]), (rule, key)


def test_bare_target_is_the_smoke_comparison():
    jobs = dry_run_jobs()
    rules = _by_rule(jobs)
    assert rules["all"][0]["input"] == ["results/tables/default.md"]
    assert rules["table"][0]["output"] == ["results/tables/default.md"]
    seeds = CONFIG["profiles"]["smoke"]["seeds"]
    assert len(rules["search"]) == 2 * len(seeds)
    for job in rules["search"]:
        assert job["wildcards"]["profile"] == "smoke"
        assert job["wildcards"]["dataset"] == "digits"
        assert job["wildcards"]["method"] in {"darts", "dropnas"}
        files, _ = cli_params(shell_tokens(job["shell"]))
        assert files[-1] == "params/profiles/smoke.yaml"


def test_short_paths_follow_the_profile_switch():
    jobs = _by_rule(dry_run_jobs("results/digits_darts.json", "results/digits_darts_s3.json",
                                 "--config", "profile=smoke", "seeds=[3]"))
    assert jobs["short_result"][0]["input"] == ["results/smoke/digits_darts.json"]
    assert jobs["short_seed_result"][0]["input"] == ["results/smoke/digits_darts/s3.json"]
    assert [j["wildcards"]["seed"] for j in jobs["search"]] == ["3"]


def test_transfer_dataset_uses_the_source_search():
    jobs = _by_rule(dry_run_jobs("results/paper/imagenet_dropnas/s0.json"))
    (search,) = jobs["search"]
    assert search["wildcards"]["dataset"] == "cifar10"
    (retrain,) = jobs["retrain"]
    assert "runs/paper/cifar10_dropnas_s0/genotype.json" in retrain["input"]
    files, _ = cli_params(shell_tokens(retrain["shell"]))
    assert files == ["params/datasets/imagenet.yaml", "params/methods/dropnas.yaml",
                     "params/overlays/imagenet.yaml", "params/profiles/paper.yaml"]


# ---- Snakefile and dvc.yaml agree --------------------------------------------------------------
def _dvc_stages():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return [{"name": s.name.split("@")[0], "address": s.addressing, "cmd": s.cmd,
                 "deps": [d.def_path for d in s.deps if d not in s.params],
                 "params": {p.def_path: list(p.params) for p in s.params},
                 "outs": [o.def_path for o in s.outs]} for s in repo.index.stages]


def test_snakefile_and_dvc_yaml_declare_the_same_stages():
    stages = _dvc_stages()
    jobs = [j for j in dry_run_jobs() if j["rule"] != "all"]
    assert {s["name"] for s in stages} == {j["rule"] for j in jobs} == {
        "track_parent", "search", "derive", "retrain", "evaluate", "collect", "aggregate", "table"}
    assert len(stages) == len(jobs)
    by_outputs = {frozenset(j["output"]): j for j in jobs}
    for stage in stages:
        job = by_outputs.get(frozenset(stage["outs"]))
        assert job is not None, f"{stage['address']}: no Snakemake job writes {stage['outs']}"
        assert job["rule"] == stage["name"], stage["address"]
        assert shell_tokens(job["shell"]) == shlex.split(stage["cmd"]), stage["address"]
        # DVC tracks params per section; Snakemake per file: the same files either way
        assert set(stage["params"]) <= set(job["input"]), stage["address"]
        for dep in stage["deps"]:
            if dep.endswith((".json", ".pt", ".csv", ".md")):
                assert dep in job["input"], f"{stage['address']}: {dep}"
            else:  # a folder dependency (aggregate / table): it holds every Snakemake input
                assert job["input"], stage["address"]
                assert all(i.startswith(dep + "/") for i in job["input"]
                           if not i.startswith("params/")), stage["address"]
        inputs = [i for i in job["input"] if not i.startswith("params/")]
        for i in inputs:
            assert i in stage["deps"] or any(i.startswith(d + "/") for d in stage["deps"]), \
                f"{stage['address']}: Snakemake input {i} is not a DVC dependency"


def test_dvc_yaml_is_generated_and_current():
    from nasflow.pipeline import dvc_yaml

    assert (ROOT / "dvc.yaml").read_text() == dvc_yaml(load_pipeline_config(CONFIG), ROOT), \
        "dvc.yaml is stale: run `python -m nasflow.pipeline dvc-yaml --out dvc.yaml`"


def test_snakefile_rules_use_the_stage_declaration():
    """The shared stages' shell commands come from nasflow.pipeline.stages, not the .smk files."""
    from nasflow.pipeline import STAGES

    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for name in STAGES:
        assert f'stage_shell("{name}")' in rules, name
    assert "--checkpoint-dir" not in rules
    assert "nasflow.pipeline collect" not in rules


def test_dvc_params_sections_exist_in_every_file():
    """DVC fails on a listed section that a file lacks; every file of a kind has them all."""
    for stage in _dvc_stages():
        for path, keys in stage["params"].items():
            kind = path.split("/")[1]
            for other in (ROOT / "params" / kind).glob("*.yaml"):
                data = yaml.safe_load(other.read_text())
                assert set(keys) <= set(data), f"{other}: lacks {set(keys) - set(data)}"


def test_dvc_remote_is_local_and_configured():
    text = (ROOT / ".dvc" / "config").read_text()
    assert "remote = local" in text
    assert "nasflow-dvc-remote" in text


# ---- records and tables ----------------------------------------------------------------------
def _record(seed: int, top1: float, report: str = "final") -> dict:
    return {"kind": "seed", "profile": "smoke", "dataset": "digits", "search_dataset": "digits",
            "method": "dropnas", "seed": seed,
            "test_error": {"top1": top1, "top5": 0.5, "selection": report,
                           "final_epoch_top1": top1, "best_epoch_top1": top1 - 0.1},
            "params_m": 0.1, "params_convention": "DARTS", "macs_m": 2.0,
            "search_cost": {"wall_time_s": 60.0, "device": "cpu (2 threads)", "gpu_days": None},
            "retrain_cost": {"wall_time_s": 30.0, "device": "cpu (2 threads)", "gpu_days": None},
            "genotype": {"seed": seed}, "mlflow": {"parent_run_id": f"p{seed}"},
            "resolved_params": {"search": {"search": {"seed": seed, "epochs": 3}},
                                "retrain": {"retrain": {"seed": seed}}}}


def test_aggregate_uses_population_std_and_names_it():
    agg = aggregate([_record(1, 3.0), _record(0, 2.0), _record(2, 4.0)])
    top1 = agg["test_error"]["top1"]
    assert agg["seeds"] == [0, 1, 2]
    assert agg["n_seeds"] == 3
    assert top1["mean"] == pytest.approx(3.0)
    assert top1["std"] == pytest.approx(math.sqrt(2 / 3))  # ddof=0, not sqrt(1)
    assert "population" in agg["std"] == STD_KIND
    assert agg["best_seed"]["seed"] == 0
    assert agg["best_seed"]["top1"] == 2.0
    assert agg["resolved_params_differ_in"] == ["retrain.seed", "search.seed"]
    assert agg["mlflow"]["1"]["parent_run_id"] == "p1"


def test_aggregate_and_table_refuse_to_mix():
    with pytest.raises(ValueError, match="selection"):
        aggregate([_record(0, 2.0, "final"), _record(1, 2.0, "best")])
    a = aggregate([_record(0, 2.0), _record(1, 3.0)])
    b = dict(a, test_error=dict(a["test_error"], selection="best"))
    with pytest.raises(ValueError, match="selection"):
        markdown_table([a, b])


def test_markdown_table_says_what_it_reports():
    a = aggregate([_record(0, 2.0), _record(1, 3.0)])
    darts = dict(a, method="darts")
    text = markdown_table([darts, a], "DARTS vs DropNAS")
    assert "mean ± std" in text
    assert "Best of N" in text
    assert "population" in text
    assert "final-epoch weights" in text
    rows = [line for line in text.splitlines() if line.startswith("| dropnas")]
    assert rows
    assert "2.50 ± 0.50" in rows[0]
    assert "2.00 (seed 0)" in rows[0]


def test_collect_assembles_the_record_and_curves(tmp_path):
    def put(name, obj):
        (tmp_path / name).write_text(json.dumps(obj))
        return tmp_path / name

    genotype = {"normal": [["sep_conv_3x3", 0]], "reduce": [["max_pool_3x3", 1]]}
    files = {
        "search": put("search.json", {
            "dataset": "digits", "seed": 1, "wall_time_s": 86400.0, "device": "cuda:H100",
            "epochs": 3, "mlflow_run_id": "s", "history": [
                {"epoch": e, "train_loss": 1.0 / (e + 1), "train_acc": 0.5, "lr": 0.1}
                for e in range(3)]}),
        "genotype": put("genotype.json", genotype),
        "retrain": put("retrain.json", {
            "seed": 1, "wall_time_s": 60.0, "device": "cpu (2 threads)", "best_test_acc": 0.9,
            "best_epoch": 1, "mlflow_run_id": "r", "weights": "model.pt", "history": [
                {"epoch": e, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.8} for e in range(2)]}),
        "evaluation": put("eval.json", {"top1_err": 12.5, "top5_err": 1.0, "params_m": 0.2,
                                        "macs_m": 3.0, "report": "final", "mlflow_run_id": "e"}),
        "parent": put("parent.json", {"run_id": "p"}),
        "search_config": put("search_config.json", {"search": {"seed": 1}}),
        "retrain_config": put("retrain_config.json", {"retrain": {"seed": 1}}),
    }
    out = tmp_path / "s1.json"
    curves = [tmp_path / "search.csv", tmp_path / "retrain.csv"]
    args = ["collect", "--profile", "smoke", "--dataset", "digits", "--method", "darts",
            "--seed", "1", "--out", str(out), "--curves", *map(str, curves)]
    for key, path in files.items():
        flag = {"evaluation": "--eval"}.get(key, "--" + key.replace("_", "-"))
        args += [flag, str(path)]
    from nasflow.pipeline import main

    assert main(args) == 0
    rec = json.loads(out.read_text())
    assert rec["test_error"]["top1"] == 12.5
    assert rec["test_error"]["selection"] == "final"
    assert rec["test_error"]["best_epoch_top1"] == pytest.approx(10.0)
    assert rec["search_cost"]["gpu_days"] == pytest.approx(1.0)
    assert rec["retrain_cost"]["gpu_days"] is None  # CPU: wall time only
    assert rec["mlflow"] == {"parent_run_id": "p", "search_run_id": "s", "retrain_run_id": "r",
                             "evaluate_run_id": "e"}
    assert rec["genotype"] == genotype
    assert rec["resolved_params"]["search"] == {"search": {"seed": 1}}
    assert curves[0].read_text().splitlines()[0] == "epoch,train_loss,train_acc,lr"
    assert len(curves[1].read_text().splitlines()) == 3
    from nasflow.pipeline import summary_metrics

    metrics = summary_metrics(aggregate([rec]))
    assert metrics["top1_err_mean"] == 12.5
    assert metrics["top1_err_std"] == 0.0
    assert metrics["n_seeds"] == 1
    assert metrics["search_gpu_days_mean"] == pytest.approx(1.0)


def test_pipeline_cli_errors_are_one_line(tmp_path):
    proc = _run([sys.executable, "-m", "nasflow.pipeline", "aggregate", "--out",
                 str(tmp_path / "x.json"), str(tmp_path / "missing.json")], check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "missing.json" in proc.stderr


# ---- end to end (slow) -------------------------------------------------------------------------
CHANCE_ERR = 90.0
E2E_SEEDS = [0]  # one seed per method keeps the file within minutes; aggregation over
# several seeds is covered by the unit tests above
COPY = ["Snakefile", "dvc.yaml", "workflow", "params", ".dvcignore", ".dvc/config"]


def copy_project(project: Path) -> Path:
    """A fresh copy of the pipeline files (not the package: rules call the installed CLI)."""
    project.mkdir(parents=True)
    for name in COPY:
        src, dst = ROOT / name, project / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    return project


@pytest.fixture(scope="module")
def smoke_project(tmp_path_factory):
    """A copy of the project (a git repo, as DVC needs) after `snakemake --cores 2`."""
    tmp = tmp_path_factory.mktemp("nasflow_e2e")
    project = copy_project(tmp / "project")
    config = yaml.safe_load((project / "workflow" / "config.yaml").read_text())
    config["profiles"]["smoke"]["seeds"] = E2E_SEEDS
    (project / "workflow" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # two full retraining epochs instead of the smoke profile's four: enough to be far from
    # chance (measured ~23% top-1 error on digits), which test_e2e_smoke_results_and_table checks
    smoke = project / "params" / "profiles" / "smoke.yaml"
    profile = yaml.safe_load(smoke.read_text())
    profile["retrain"].update(epochs=2)
    smoke.write_text(yaml.safe_dump(profile, sort_keys=False))
    env = _env(tmp, MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}",
               GIT_AUTHOR_NAME="nasflow-test", GIT_AUTHOR_EMAIL="test@nasflow.invalid",
               GIT_COMMITTER_NAME="nasflow-test", GIT_COMMITTER_EMAIL="test@nasflow.invalid")
    env["XDG_CACHE_HOME"] = str(tmp / ".cache")
    env.pop("NASFLOW_PARENT_RUN_ID", None)
    _run(["git", "init", "-q"], project, env)
    _run(["git", "config", "user.name", "nasflow-test"], project, env)
    _run(["git", "config", "user.email", "test@nasflow.invalid"], project, env)
    # the data folder the dataset files point at; the dataset code fills it
    (project / "data").mkdir()
    out = snakemake("--cores", "2", cwd=project, env=env, timeout=1500, check=False)
    if out.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in project.glob("runs/**/*.log"))
        raise AssertionError(f"snakemake failed:\n{out.stderr[-5000:]}\n{logs}")
    return project, env


@pytest.mark.slow
def test_e2e_smoke_results_and_table(smoke_project):
    project, env = smoke_project
    table = (project / "results" / "tables" / "default.md").read_text()
    for method in ("darts", "dropnas"):
        assert re.search(rf"^\| {method} \| \d+\.\d\d ± \d+\.\d\d \|", table, re.M), table
        agg = json.loads((project / "results" / "smoke" / f"digits_{method}.json").read_text())
        assert agg["seeds"] == E2E_SEEDS
        assert agg["std"] == STD_KIND
        metrics = json.loads((project / "results" / "smoke" / "metrics" / f"digits_{method}.json")
                             .read_text())
        assert metrics["top1_err_mean"] == agg["test_error"]["top1"]["mean"]
        assert metrics["n_seeds"] == len(E2E_SEEDS)
        assert agg["test_error"]["selection"] == "final"
        # 10 classes: chance is 90% top-1 error; 2 retraining epochs of a 5-cell net are far below
        assert 0 <= agg["test_error"]["top1"]["mean"] < CHANCE_ERR / 2, (method, agg["test_error"])
        assert agg["params_m"]["mean"] > 0
        assert agg["macs_m"]["mean"] > 0
        assert agg["search_cost"]["wall_time_s"]["mean"] > 0
        assert agg["resolved_params"]["search"]["method"]["name"] == method
        for seed in E2E_SEEDS:
            rec = json.loads((project / "results" / "smoke" / f"digits_{method}" / f"s{seed}.json")
                             .read_text())
            assert rec["seeds"] == {"search": seed, "retrain": seed}
            assert rec["genotype"]["normal"]
            assert rec["search_cost"]["device"]
            run = project / "runs" / "smoke" / f"digits_{method}_s{seed}"
            searched = json.loads((run / "search" / "search.json").read_text())
            assert searched["method"] == method
            assert len(searched["history"]) == 3
            assert (run / "search" / "config.json").is_file()  # resolved config beside output
            derived = json.loads((run / "genotype.json").read_text())
            assert derived["normal"] == searched["genotype"]["normal"]
            assert rec["resolved_params"]["search"]["search"]["epochs"] == 3
            assert all(rec["mlflow"].values()), rec["mlflow"]
            curve = (project / "results" / "smoke" / "curves" /
                     f"digits_{method}_s{seed}_search.csv").read_text().splitlines()
            assert curve[0].startswith("epoch,")
            assert len(curve) == 1 + 3
    # nothing left to do; checkpoints survive outside the declared outputs
    again = snakemake("-n", "--cores", "2", cwd=project, env=env)
    assert "Nothing to be done" in again.stdout + again.stderr
    assert any((project / "checkpoints" / "smoke").rglob("*.ckpt"))


@pytest.mark.slow
def test_e2e_mlflow_runs_read_back(smoke_project):
    from mlflow.tracking import MlflowClient

    project, _ = smoke_project
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    for method in ("darts", "dropnas"):
        for seed in E2E_SEEDS:
            rec = json.loads((project / "results" / "smoke" / f"digits_{method}" / f"s{seed}.json")
                             .read_text())
            ids = rec["mlflow"]
            parent = client.get_run(ids["parent_run_id"])
            assert parent.info.run_name == f"smoke/digits_{method}_s{seed}"
            for stage in ("search", "retrain", "evaluate"):
                run = client.get_run(ids[f"{stage}_run_id"])
                assert run.info.status == "FINISHED", (stage, run.info.status)
                assert run.data.tags.get("mlflow.parentRunId") == parent.info.run_id, stage
                assert run.data.metrics, f"{stage} run has no metrics"
                assert run.data.params, f"{stage} run has no params"
            evaluate = client.get_run(ids["evaluate_run_id"]).data.metrics
            assert evaluate["top1_err"] == pytest.approx(rec["test_error"]["final_epoch_top1"])
            search = client.get_run(ids["search_run_id"])
            per_epoch = [k for k in search.data.metrics
                         if len(client.get_metric_history(search.info.run_id, k)) == 3]
            assert per_epoch, "search metrics are not logged per epoch"


@pytest.mark.slow
def test_e2e_dvc_reruns_only_dependent_stages(smoke_project):
    project, env = smoke_project
    dvc = str(BIN / "dvc")
    # DVC adopts the Snakemake-built outputs: the same paths, so nothing is out of date
    _run([dvc, "commit", "--force", "--quiet"], project, env)
    status = _run([dvc, "status"], project, env).stdout
    assert "up to date" in status, status

    path = project / "params" / "methods" / "dropnas.yaml"
    text = path.read_text()
    assert "  r_parametric: 3.0e-5" in text
    path.write_text(text.replace("  r_parametric: 3.0e-5", "  r_parametric: 1.0e-4", 1))

    status = _run([dvc, "status"], project, env).stdout
    changed = set(re.findall(r"^(\S+@\S+):", status, re.M))
    assert changed == {f"search@digits-dropnas-{s}" for s in E2E_SEEDS}, status

    out = _run([dvc, "repro"], project, env, timeout=1500)
    text = out.stdout + out.stderr
    ran = set(re.findall(r"Running stage '([^']+)'", text))
    skipped = set(re.findall(r"Stage '([^']+)' didn't change", text))
    assert {f"search@digits-dropnas-{s}" for s in E2E_SEEDS} <= ran, text[-3000:]
    assert not {s for s in ran if "-darts-" in s or s.endswith("-darts")}, ran
    assert {f"search@digits-darts-{s}" for s in E2E_SEEDS} <= skipped
    assert "aggregate@digits-darts" in skipped
    assert "aggregate@digits-darts" not in ran
    assert all("dropnas" in s or s == "table" for s in ran), ran
    assert "up to date" in _run([dvc, "status"], project, env).stdout
    # the edit reached the DropNAS record, and only it
    rec = json.loads((project / "results" / "smoke" / "digits_dropnas" / "s0.json").read_text())
    assert rec["resolved_params"]["search"]["method"]["r_parametric"] == 1.0e-4
    # a local remote works out of the box
    _run([dvc, "push", "--quiet"], project, env)
    assert any((project.parent / "nasflow-dvc-remote").rglob("*"))
