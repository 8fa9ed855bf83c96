"""Method variants as data (workflow/config.yaml `variants`, `variant_grids`): the declaration
is validated (unknown keys, unknown bases, cycles, overrides that would beat a profile), a
variant resolves to its base's params file plus --set overrides that survive the CLI's YAML
parsing, and a variant is a target like any method (dry runs, transfer, params-files)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from nasflow.pipeline import (
    PipelineConfig,
    VariantGrid,
    format_value,
    load_pipeline_config,
    resolve,
)
from tests.test_pipeline import CONFIG, ROOT, _by_rule, cli_params, dry_run_jobs, shell_tokens


def _config(**changes) -> dict:
    data = copy.deepcopy(CONFIG)
    for key, value in changes.items():
        data[key] = value
    return data


# ---- --set values -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1e-5, 3.0e-5, 1e-4, 0.1, 1e20, -2.5e-7, 2, 0, True, False,
                                   None, "off", "no", "3-skip", "1e-5", "a b", "", "x: y",
                                   [0.5, 0.999], ["skip_connect", "off"], {"a": 1e-5}])
def test_override_values_survive_the_cli(value):
    """`nasflow --set k=<text>` reads <text> as YAML: floats need a dot (YAML 1.1), `off` and
    `no` are booleans there, so format_value quotes or rewrites them."""
    assert yaml.safe_load(format_value(value)) == value
    assert type(yaml.safe_load(format_value(value))) is type(value)


def test_formatting_is_minimal():
    assert format_value(1e-5) == "1.0e-05"
    assert format_value("3-skip") == "3-skip"
    assert format_value("off") == '"off"'
    assert format_value(False) == "false"


# ---- the declaration ------------------------------------------------------------------------------
@pytest.mark.parametrize(("variants", "fragment"), [
    ({"x": {"base": "dropnas", "sett": {}}}, "variants.x.sett"),              # unknown key
    ({"x": {"set": {"method.grouping": False}}}, "variants.x.base"),          # no base
    ({"x": {"base": "dropnas", "set": {"dataset.name": "cifar10"}}}, "sections"),
    ({"x": {"base": "dropnas", "set": {"method": 1}}}, "dotted params key"),
    ({"x": {"base": "y"}, "y": {"base": "x"}}, "cycle"),
    ({"Bad": {"base": "dropnas"}}, "must match"),
], ids=["unknown-key", "no-base", "section", "not-dotted", "cycle", "name"])
def test_bad_declarations_are_one_line_errors(variants, fragment):
    with pytest.raises(ValueError, match=fragment) as err:
        load_pipeline_config(_config(variants=variants))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(("variants", "fragment"), [
    ({"x": {"base": "dropnaz"}}, "unknown base method 'dropnaz'"),
    ({"x": {"base": "y"}, "y": {"base": "nope"}}, "x -> y -> nope"),
    ({"dropnas": {"base": "darts"}}, "shadows params/methods/dropnas.yaml"),
    ({"x": {"base": "dropnas", "space": "nope"}}, "params/spaces/nope.yaml"),
    ({"x": {"base": "dropnas", "set": {"search.epochs": 5}}}, "params/profiles/smoke.yaml sets"),
    ({"x": {"base": "darts", "set": {"retrain.lr": 0.1}}}, "params/overlays/imagenet.yaml sets"),
], ids=["unknown-base", "chain", "shadows-file", "unknown-space", "beats-profile", "beats-overlay"])
def test_names_are_checked_against_params(variants, fragment):
    pc = load_pipeline_config(_config(variants={**CONFIG["variants"], **variants}))
    with pytest.raises(ValueError, match=fragment):
        pc.check_names(ROOT)


def test_grids_expand_and_are_checked():
    grid = CONFIG["variant_grids"]["droprate"]
    g = VariantGrid.model_validate(grid)
    cells = g.cells()
    assert len(cells) == 9
    assert sum(name == "dropnas" for _, name in cells) == 1
    assert len(g.expand()) == 8
    assert "dropnas_rp1e-4_rnp1e-5" in g.expand()
    with pytest.raises(ValueError, match="each axis"):
        VariantGrid.model_validate({**grid, "name": "dropnas_rp{r_p}"})
    with pytest.raises(ValueError, match="not a label"):
        VariantGrid.model_validate({**grid, "base_cell": {"r_np": "2e-5", "r_p": "3e-5"}})
    # a base cell that is not the base's own values
    bad = {**grid, "base_cell": {"r_np": "1e-5", "r_p": "3e-5"}}
    pc = load_pipeline_config(_config(variant_grids={"droprate": bad}))
    with pytest.raises(ValueError, match="not the base"):
        pc.check_names(ROOT)
    # a grid cell named like a declared variant
    clash = {**grid, "name": "dropnas_no_{r_p}{r_np}", "base_cell": None}
    with pytest.raises(ValueError, match="declared twice"):
        load_pipeline_config(_config(variant_grids={"droprate": clash},
                                     variants={**CONFIG["variants"],
                                               "dropnas_no_1e-51e-5": {"base": "dropnas"}}))
    tables = copy.deepcopy(CONFIG["tables"])
    tables["droprate"]["grid"] = "nope"
    with pytest.raises(ValueError, match="not in variant_grids"):
        load_pipeline_config(_config(tables=tables))


def test_resolution_follows_the_chain():
    pc = load_pipeline_config(CONFIG)
    r = pc.recipe("darts_1level_3skip")
    assert (r.method, r.space, r.chain) == ("darts", "darts",
                                            ("darts_1level_3skip", "darts_1level", "darts"))
    assert r.overrides == ("method.one_level=true", "search.train_portion=1.0",
                           "space.variant=3-skip")
    assert resolve("darts", pc.all_variants()).overrides == ()
    assert isinstance(pc, PipelineConfig)
    assert "dropnas_rp1e-5_rnp1e-5" in pc.method_names(ROOT)


# ---- targets ---------------------------------------------------------------------------------------
def test_variant_target_plans_base_file_and_overrides():
    from nasflow.config import load_config

    jobs = _by_rule(dry_run_jobs("results/paper/cifar10_dropnas_no_adjust/s0.json",
                                 "results/paper/cifar100_dropnas_1skip@cifar10/s1.json"))
    by_method = {j["wildcards"]["method"]: j for j in jobs["search"]}
    assert set(by_method) == {"dropnas_no_adjust", "dropnas_1skip"}
    files, sets = cli_params(shell_tokens(by_method["dropnas_no_adjust"]["shell"]))
    assert files == ["params/datasets/cifar10.yaml", "params/methods/dropnas.yaml",
                     "params/profiles/paper.yaml"]
    assert sets == ['method.alpha_adjust="off"', "search.seed=0", "retrain.seed=0"]
    assert load_config([str(ROOT / f) for f in files], sets).method.alpha_adjust == "off"
    files, sets = cli_params(shell_tokens(by_method["dropnas_1skip"]["shell"]))
    assert files[2] == "params/spaces/darts.yaml"
    assert set(files) <= set(
        by_method["dropnas_1skip"]["input"])
    assert sets[0] == "space.variant=1-skip"
    retrain = next(j for j in jobs["retrain"] if "@" in j["wildcards"]["method"])
    assert "runs/paper/cifar10_dropnas_1skip_s1/genotype.json" in retrain["input"]
    (parent,) = [j for j in jobs["track_parent"]
                 if j["wildcards"]["method"] == "dropnas_no_adjust"]
    assert cli_params(shell_tokens(parent["shell"]))[1] == ['method.alpha_adjust="off"']


def test_params_files_prints_files_and_overrides():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "nasflow.pipeline", "params-files", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    out = run("--dataset", "cifar10", "--method", "dropnas_3skip", "--profile", "paper")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "params/datasets/cifar10.yaml params/methods/dropnas.yaml params/spaces/darts.yaml "
        "params/profiles/paper.yaml", "--set space.variant=3-skip"]
    out = run("--dataset", "digits", "--method", "dropnas", "--profile", "smoke", "--args")
    assert out.stdout.strip() == ("--params params/datasets/digits.yaml --params "
                                  "params/methods/dropnas.yaml --params params/profiles/smoke.yaml")
    out = run("--dataset", "digits", "--method", "dropnas_no_adjst", "--profile", "smoke")
    assert out.returncode == 2
    assert "dropnas_no_adjst" in out.stderr
