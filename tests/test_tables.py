"""Every DropNAS paper table as a pipeline target.

Fast: the published numbers validate and cover every paper table; `snakemake -n` of each
paper table plans the full protocol (8 seeds, paper epochs); `--config profile=smoke
dataset=digits` re-plans any table on digits with the smoke profile; transfer targets
(`<dataset>_<method>@<source>`) and analysis targets; the table writer's Markdown / CSV / JSON
twins. Slow (CI): every table (`snakemake tables`) and one analysis end to end on digits.
"""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from nasflow.config import load_config
from nasflow.pipeline import (
    aggregate,
    build_paper_table,
    load_pipeline_config,
    paper_table_csv,
    paper_table_markdown,
)
from tests.test_pipeline import (
    CONFIG,
    ROOT,
    _by_rule,
    _env,
    _record,
    cli_params,
    copy_project,
    dry_run_jobs,
    shell_tokens,
    snakemake,
)

PAPER_TABLES = ["cifar10", "cifar100", "spaces", "droprate", "ablations", "imagenet"]
ABLATION_ROWS = ["full", "no alpha-adjust", "no partial decay", "no grouping"]


def _pc():
    return load_pipeline_config(CONFIG)


# ---- published numbers ----------------------------------------------------------------------
def test_published_numbers_cover_every_paper_table():
    pc = _pc()
    pub = pc.published.tables
    assert set(PAPER_TABLES) <= set(pub)
    for name in PAPER_TABLES:
        t = pc.table(name)
        for d in t["paper_datasets"]:
            assert set(pub[name][d]) == set(t["methods"]), (name, d)
    assert pub["cifar10"]["cifar10"]["dropnas"].model_dump(exclude={"source"}) == {
        "mean": 2.58, "std": 0.14, "best": 2.26, "n": 8, "top5": None, "params_m": 4.1,
        "params_convention": "dropnas", "gpu_days": 0.6}
    assert pub["cifar100"]["cifar100"]["dropnas"].best == 16.39
    grid = pc.table("droprate")["grid"]
    values = [[pub["droprate"]["cifar10"][m].mean for m in row] for row in grid["methods"]]
    assert values == [[2.60, 2.72, 2.64], [2.64, 2.58, 2.69], [2.65, 2.69, 2.63]]
    abl = pub["ablations"]
    assert [(abl["cifar10"][m].mean, abl["cifar100"][m].mean) for m in t_methods("ablations")] \
        == [(2.58, 16.95), (2.75, 17.40), (2.71, 17.62), (2.74, 17.98)]
    inet = pub["imagenet"]["imagenet"]
    assert (inet["dropnas"].mean, inet["dropnas"].top5, inet["darts"].mean) == (23.4, 6.7, 26.7)


def t_methods(name):
    return _pc().table(name)["methods"]


def test_droprate_variants_set_the_rates():
    """The drop-rate table is the expansion of `variant_grids.droprate`: 9 cells, the centre
    is `dropnas` itself, every other cell its own variant of dropnas' params file."""
    pc = _pc()
    grid = pc.table("droprate")["grid"]
    assert sum(len(r) for r in grid["methods"]) == 9
    assert grid["methods"][1][1] == "dropnas"
    for rnp, row in zip(grid["rows"], grid["methods"], strict=True):
        for rp, method in zip(grid["cols"], row, strict=True):
            run = pc.run_params("cifar10", method, "paper", ROOT)
            assert run.files[1] == "params/methods/dropnas.yaml", method
            cfg = load_config([str(ROOT / f) for f in run.files], run.overrides)
            assert cfg.method.r_parametric == pytest.approx(float(rp)), method
            assert cfg.method.r_nonparametric == pytest.approx(float(rnp)), method


# ---- dry runs ---------------------------------------------------------------------------------
def _search_epochs(method: str) -> int:
    return 76 if method.startswith("dropnas") else 50


@pytest.mark.parametrize("name", PAPER_TABLES)
def test_paper_table_plans_the_full_protocol(name):
    pc = _pc()
    t = pc.table(name)
    jobs = _by_rule(dry_run_jobs(f"results/tables/{name}.md"))
    (table,) = jobs["paper_table"]
    assert table["output"] == [f"results/tables/{name}.{x}" for x in ("md", "csv", "json")]
    search_datasets = [t["source"]] if t["source"] else t["datasets"]
    planned = {(j["wildcards"]["dataset"], j["wildcards"]["method"], int(j["wildcards"]["seed"]))
               for j in jobs["search"]}
    assert planned == {(d, m, s) for d in search_datasets for m in t["methods"]
                       for s in range(8)}
    assert len(jobs["retrain"]) == len(t["datasets"]) * len(t["methods"]) * 8
    assert len(jobs["aggregate"]) == len(t["datasets"]) * len(t["methods"])
    for job in jobs["search"] + jobs["retrain"]:
        method = job["wildcards"]["method"].split("@")[0]
        seed = int(job["wildcards"]["seed"])
        assert job["wildcards"]["profile"] == "paper"
        files, sets = cli_params(shell_tokens(job["shell"]))
        assert files[-1] == "params/profiles/paper.yaml"
        # a variant: its base's params file, its overrides, then the seeds
        recipe = pc.recipe(method)
        assert files[1] == f"params/methods/{recipe.method}.yaml"
        assert sets == [*recipe.overrides, f"search.seed={seed}", f"retrain.seed={seed}"]
        cfg = load_config([str(ROOT / f) for f in files], sets)
        assert cfg.search.epochs == _search_epochs(method), job["wildcards"]
        # CIFAR: 600 epochs (DropNAS / DARTS); ImageNet: params/overlays/imagenet.yaml's recipe
        # (DARTS' 250 epochs; the DropNAS draft says 600 with its own recipe)
        expected = 250 if job["wildcards"]["dataset"] == "imagenet" else 600
        assert cfg.retrain.epochs == expected, job["wildcards"]
    if t["source"]:
        for job in jobs["retrain"]:
            w = job["wildcards"]
            assert w["method"].endswith(f"@{t['source']}")
            base = w["method"].split("@")[0]
            assert f"runs/paper/{t['source']}_{base}_s{w['seed']}/genotype.json" in job["input"]


@pytest.mark.parametrize("name", ["ablations", "spaces", "imagenet"])
def test_smoke_digits_override_replans_any_table(name):
    t = _pc().table(name)
    jobs = _by_rule(dry_run_jobs(f"results/tables/{name}.md", "--config", "profile=smoke",
                                 "dataset=digits"))
    seeds = CONFIG["profiles"]["smoke"]["seeds"]
    planned = {(j["wildcards"]["profile"], j["wildcards"]["dataset"], j["wildcards"]["method"],
                int(j["wildcards"]["seed"])) for j in jobs["search"]}
    assert planned == {("smoke", "digits", m, s) for m in t["methods"] for s in seeds}
    for job in jobs["search"] + jobs["retrain"]:
        files, _ = cli_params(shell_tokens(job["shell"]))
        assert files[0] == "params/datasets/digits.yaml"
        assert files[-1] == "params/profiles/smoke.yaml"
    (table,) = jobs["paper_table"]
    assert sorted(table["input"]) == sorted(
        [f"results/smoke/digits_{m}.json" for m in t["methods"]])


def test_transfer_target_retrains_the_source_cell():
    jobs = _by_rule(dry_run_jobs("results/cifar100_dropnas@cifar10.json",
                                 "--config", "seeds=[0,1]"))
    assert {j["wildcards"]["dataset"] for j in jobs["search"]} == {"cifar10"}
    assert {j["wildcards"]["method"] for j in jobs["search"]} == {"dropnas"}
    assert len(jobs["retrain"]) == 2
    for job in jobs["retrain"]:
        s = job["wildcards"]["seed"]
        assert job["wildcards"]["dataset"] == "cifar100"
        assert f"runs/paper/cifar10_dropnas_s{s}/genotype.json" in job["input"]
        files, _ = cli_params(shell_tokens(job["shell"]))
        assert files[:2] == ["params/datasets/cifar100.yaml", "params/methods/dropnas.yaml"]
    (short,) = jobs["short_result"]
    assert short["input"] == ["results/paper/cifar100_dropnas@cifar10.json"]
    assert short["output"] == ["results/cifar100_dropnas@cifar10.json"]


def test_analysis_targets():
    jobs = _by_rule(dry_run_jobs("analysis"))
    planned = {(j["wildcards"]["profile"], j["wildcards"]["dataset"], j["wildcards"]["method"])
               for j in jobs["analyze"]}
    assert planned == {("paper", "cifar10", "darts_1level"), ("paper", "cifar10", "dropnas")}
    jobs = _by_rule(dry_run_jobs("analysis", "--config", "profile=smoke", "dataset=digits"))
    for job in jobs["analyze"]:
        assert job["output"][0] == (f"results/smoke/analysis/digits_{job['wildcards']['method']}"
                                    "_s0/analysis.json")
        tokens = shell_tokens(job["shell"])
        assert tokens[:2] == ["nasflow", "analyze"]
        assert tokens[tokens.index("--images") + 1] == "300"
        assert tokens[tokens.index("--search") + 1] == (
            f"runs/smoke/digits_{job['wildcards']['method']}_s0/search")


# ---- the writer ---------------------------------------------------------------------------------
def test_paper_table_twins_hold_the_same_rows():
    pc = _pc()
    pc.set_table_overrides("smoke", "digits")
    spec = pc.table("ablations")
    aggs = {("digits", m): aggregate([dict(_record(0, 2.0 + i), method=m),
                                      dict(_record(1, 3.0 + i), method=m)])
            for i, m in enumerate(spec["methods"])}
    pub = pc.published.tables["ablations"]
    t = build_paper_table(spec, aggs, pub)
    md = paper_table_markdown(t)
    assert "population" in md
    assert "N=2" in md
    assert "final-epoch weights" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    assert "ours digits" in header
    assert "paper cifar10" in header
    assert "paper cifar100" in header
    assert [r.split("|")[1].strip() for r in body] == ABLATION_ROWS
    assert "2.50 ± 0.50" in body[0]
    assert "2.58" in body[0]
    assert "16.95" in body[0]
    table = list(csv.DictReader(paper_table_csv(t).splitlines()))
    assert [r["label"] for r in table] == ABLATION_ROWS
    assert float(table[1]["ours digits mean"]) == 3.5
    assert float(table[1]["paper cifar100 mean"]) == 17.40
    b = dict(aggs[("digits", "dropnas")])
    b["test_error"] = dict(b["test_error"], selection="best")
    with pytest.raises(ValueError, match="selection"):
        build_paper_table(spec, {**aggs, ("digits", "dropnas"): b}, pub)


# ---- end to end (slow, CI) ---------------------------------------------------------------------


def _md_rows(md: str) -> tuple[list[str], dict[str, list[str]]]:
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    split = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    # rows[0] is the header; the |---| rule does not start with '| '
    return split[0], {r[0]: r for r in split[1:]}


def _paper_cell(entry: dict | None, dataset: str) -> str:
    """What a paper column must show for a published entry (written out here, not imported)."""
    if entry is None or entry.get("mean") is None:
        return "-"
    text = f"{entry['mean']:.2f}"
    if entry.get("std") is not None:
        text += f" ± {entry['std']:.2f}"
    if dataset == "imagenet" and entry.get("top5") is not None:
        text += f" / {entry['top5']:.1f}"
    return text


@pytest.mark.slow
def test_e2e_every_table_and_analysis_on_digits(tmp_path):
    """`snakemake tables` (every configured table) with the smoke profile on digits, one seed:
    each table has its rows and columns, and every number of ours is the one in the aggregate
    record it names (no constant), beside the paper's published numbers."""
    project = copy_project(tmp_path / "project")
    smoke = project / "params" / "profiles" / "smoke.yaml"
    profile = yaml.safe_load(smoke.read_text())
    profile["search"].update(epochs=2, steps_per_epoch=2)  # plumbing, not accuracy: 19 runs
    profile["retrain"].update(epochs=1, steps_per_epoch=2)
    profile["tracking"]["enabled"] = False  # MLflow is covered by test_pipeline's e2e run
    smoke.write_text(yaml.safe_dump(profile, sort_keys=False))
    (project / "data").mkdir()
    env = _env(tmp_path)
    env["XDG_CACHE_HOME"] = str(tmp_path / ".cache")
    analysis = project / "results/smoke/analysis/digits_dropnas_s0"
    # 19 method variants, each a few seconds of work and several process start-ups: run two
    # single-threaded jobs at a time rather than one two-threaded job
    out = snakemake("tables", "results/smoke/analysis/digits_dropnas_s0/analysis.json",
                    "--cores", "2", "--set-threads", "search=1", "retrain=1", "evaluate=1",
                    "analyze=1", "--config", "profile=smoke", "dataset=digits", "seeds=[0]",
                    cwd=project, env=env, timeout=1500, check=False)
    if out.returncode != 0:
        logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in project.glob("runs/**/*.log"))
        raise AssertionError(f"snakemake failed:\n{out.stderr[-4000:]}\n{logs}")

    pc = _pc()
    pc.set_table_overrides("smoke", "digits")

    def ours(result: str) -> dict:
        rec = json.loads((project / f"results/smoke/digits_{result}.json").read_text())
        assert rec["seeds"] == [0]
        assert rec["profile"] == "smoke"
        return rec

    for name in PAPER_TABLES:
        spec = pc.table(name)
        result_of = dict(zip(spec["methods"], spec["results"], strict=True))
        md = (project / f"results/tables/{name}.md").read_text()
        assert "N=1" in md, name
        assert "population" in md, name
        header, cells = _md_rows(md)
        twin = json.loads((project / f"results/tables/{name}.json").read_text())
        table_csv = list(csv.DictReader((project / f"results/tables/{name}.csv").open()))
        if spec["grid"]:
            g = spec["grid"]
            assert header[1:] == ([f"ours {g['col_param']}={c}" for c in g["cols"]]
                                  + [f"paper {g['col_param']}={c}" for c in g["cols"]])
            assert list(cells) == [f"{g['row_param']}={r}" for r in g["rows"]]
            assert len(table_csv) == len(g["rows"])
            for rv, row_methods, jrow in zip(g["rows"], g["methods"], twin["rows"], strict=True):
                line = cells[f"{g['row_param']}={rv}"]
                for j, method in enumerate(row_methods):
                    top1 = ours(result_of[method])["test_error"]["top1"]
                    assert line[1 + j] == f"{top1['mean']:.2f} ± {top1['std']:.2f}", (name, method)
                    assert jrow["cells"][j]["method"] == method
                    paper = _paper_cell(spec["published"]["cifar10"].get(method), "cifar10")
                    assert line[1 + len(g["cols"]) + j] == paper, (name, method)
            continue
        labels = [spec["labels"].get(m, m) for m in spec["methods"]]
        assert list(cells) == labels, name
        assert "ours digits" in header, name
        for p in spec["paper_datasets"]:
            assert f"paper {p}" in header, (name, p)
        assert [r["label"] for r in table_csv] == labels
        for method, label in zip(spec["methods"], labels, strict=True):
            rec = ours(result_of[method])
            top1 = rec["test_error"]["top1"]
            line = cells[label]
            assert line[header.index("ours digits")] == f"{top1['mean']:.2f} ± {top1['std']:.2f}"
            assert line[header.index("ours digits best")] == f"{rec['best_seed']['top1']:.2f}"
            row = next(r for r in twin["rows"] if r["method"] == method)
            assert row["ours"]["digits"]["mean"] == top1["mean"]
            crow = next(r for r in table_csv if r["method"] == method)
            assert float(crow["ours digits mean"]) == pytest.approx(top1["mean"])
            for p in spec["paper_datasets"]:
                paper = _paper_cell(spec["published"].get(p, {}).get(method), p)
                assert line[header.index(f"paper {p}")] == paper, (name, method, p)

    # spot checks against the paper's numbers, by hand
    _, abl = _md_rows((project / "results/tables/ablations.md").read_text())
    head, _ = _md_rows((project / "results/tables/ablations.md").read_text())
    assert list(abl) == ABLATION_ROWS
    assert abl["full"][head.index("paper cifar10")] == "2.58"
    assert abl["no grouping"][head.index("paper cifar100")] == "17.98"
    head, inet = _md_rows((project / "results/tables/imagenet.md").read_text())
    assert inet["DropNAS"][head.index("paper imagenet")] == "23.40 / 6.7"
    default = (project / "results/tables/default.md").read_text()
    for method in ("darts", "dropnas"):
        top1 = ours(method)["test_error"]["top1"]
        assert f"| {method} | {top1['mean']:.2f} ± {top1['std']:.2f} |" in default

    result = json.loads((analysis / "analysis.json").read_text())
    assert result["method"] == "dropnas"
    assert "coadaptation" in result
    for name in ("alpha_trajectories_normal.png", "alpha_grad_normal.png", "coadaptation.png"):
        assert (analysis / name).stat().st_size > 0, name
    assert list(analysis.glob("standalone_edge*.png"))
