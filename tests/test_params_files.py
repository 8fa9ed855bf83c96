"""The params files: every dataset x method (or variant) x profile composes into a valid
RunConfig, the method files and variants hold the papers' protocols, profiles shrink sizes
without changing semantics, and every file keeps the section layout that dvc.yaml's
per-section `params:` relies on."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
import yaml

from nasflow.config import RunConfig, compose, load_config
from nasflow.pipeline import available, load_pipeline_config, params_files, run_params

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"
KNOWN = available(ROOT)
SEEDS = ["search.seed=0", "retrain.seed=0"]
# the method variants of workflow/config.yaml (`variants`, `variant_grids`)
VARIANTS = load_pipeline_config(
    yaml.safe_load((ROOT / "workflow" / "config.yaml").read_text())).all_variants()
METHODS = sorted({*KNOWN["methods"], *VARIANTS})

# The sections each kind of file declares (all of them, possibly empty): dvc.yaml tracks params
# per file and section, and DVC fails on a section that a file does not have.
SECTIONS = {
    "datasets": {"dataset", "search", "retrain"},
    "methods": {"method", "search", "derive", "retrain"},
    "profiles": {"dataset", "search", "derive", "retrain", "evaluate", "runtime", "tracking"},
    "spaces": {"space"},
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def _files(dataset: str, method: str, profile: str) -> list[str]:
    return [str(ROOT / f) for f in params_files(dataset, method, profile, ROOT,
                                                variants=VARIANTS)]


def _config(dataset: str, method: str, profile: str) -> RunConfig:
    run = run_params(dataset, method, profile, ROOT, variants=VARIANTS)
    return load_config([str(ROOT / f) for f in run.files], [*run.overrides, *SEEDS])


def _leaves(data, prefix=()):
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, (*prefix, k))
    else:
        yield prefix, data


def test_expected_files_exist():
    assert {"digits", "fashion_mnist", "cifar10", "cifar100", "imagenet"} <= set(KNOWN["datasets"])
    # one params file per method; the papers' variants are data (workflow/config.yaml)
    assert set(KNOWN["methods"]) == {"darts", "dropnas", "beta_darts"}
    assert {"darts_2nd", "darts_1level", "dropnas_no_adjust", "dropnas_no_decay",
            "dropnas_no_group", "dropnas_3skip", "darts_1level_1skip"} <= set(VARIANTS)
    assert {"paper", "smoke"} <= set(KNOWN["profiles"])
    assert {"darts", "rdarts_s1"} <= set(KNOWN["spaces"])


@pytest.mark.parametrize("path", sorted(PARAMS.rglob("*.yaml")), ids=lambda p: str(p.relative_to(PARAMS)))
def test_file_is_clean_yaml(path: Path):
    data = _load(path)
    assert isinstance(data, dict), f"{path}: must be a non-empty mapping"
    assert data, f"{path}: must be a non-empty mapping"
    assert set(data) <= set(RunConfig.model_fields), f"{path}: unknown sections {set(data)}"
    for key, value in _leaves(data):
        # YAML 1.1 traps: 3e-4 (no dot) is a string, a bare off / no is a bool
        if isinstance(value, str):
            assert not re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value), \
                f"{path}: {'.'.join(key)}: {value!r} is read as a string; write 3.0e-4"


@pytest.mark.parametrize("kind", ["datasets", "methods", "profiles", "spaces"])
def test_section_layout(kind: str):
    for name in KNOWN[kind]:
        data = _load(PARAMS / kind / f"{name}.yaml")
        assert set(data) == SECTIONS[kind], f"{kind}/{name}.yaml: sections {sorted(data)}"


def test_file_names_match_contents():
    for name in KNOWN["datasets"]:
        assert _load(PARAMS / "datasets" / f"{name}.yaml")["dataset"]["name"] == name


@pytest.mark.parametrize(("dataset", "method", "profile"), list(itertools.product(
    KNOWN["datasets"], METHODS, KNOWN["profiles"])))
def test_every_combination_composes(dataset: str, method: str, profile: str):
    config = _config(dataset, method, profile)
    assert config.dataset.name == dataset


def test_darts_paper_protocol():
    c = _config("cifar10", "darts", "paper")
    s, r = c.search, c.retrain
    assert (c.method.name, c.method.order, c.method.one_level) == ("darts", 1, False)
    assert (s.epochs, s.batch_size, s.layers, s.init_channels) == (50, 64, 8, 16)
    assert (s.w_lr, s.w_lr_min, s.w_grad_clip, s.train_portion) == (0.025, 0.001, 5.0, 0.5)
    assert (s.w_weight_decay, s.alpha_lr, s.alpha_weight_decay) == (3e-4, 3e-4, 1e-3)
    assert (r.epochs, r.batch_size, r.lr, r.grad_clip) == (600, 96, 0.025, 5.0)
    assert (r.layers, r.init_channels, r.auxiliary, r.drop_path_prob) == (20, 36, True, 0.2)
    assert r.augment.cutout == 16
    assert _config("cifar10", "darts_2nd", "paper").method.order == 2
    one = _config("cifar10", "darts_1level", "paper")
    assert one.method.one_level
    assert one.search.train_portion == 1.0


def test_dropnas_paper_protocol():
    c = _config("cifar10", "dropnas", "paper")
    s, r, m = c.search, c.retrain, c.method
    assert (m.r_parametric, m.r_nonparametric, m.grouping, m.partial_decay) == (3e-5, 3e-5, True, True)
    assert (s.epochs, s.batch_size, s.layers, s.init_channels) == (76, 96, 14, 16)
    assert (s.w_lr, s.w_lr_min, s.w_grad_clip, s.train_portion) == (0.0375, 0.0015, 3.0, 1.0)
    assert (s.w_weight_decay, s.alpha_weight_decay) == (3e-4, 1e-3)
    # the paper's single search seed is recorded in the file (the pipeline sets seeds per run)
    assert _load(PARAMS / "methods" / "dropnas.yaml")["search"]["seed"] == 666
    assert (r.epochs, r.batch_size, r.lr, r.grad_clip) == (600, 192, 0.05, 3.0)


@pytest.mark.parametrize(("variant", "key", "value"), [
    ("dropnas_no_adjust", "alpha_adjust", "off"),
    ("dropnas_no_decay", "partial_decay", False),
    ("dropnas_no_group", "grouping", False),
])
def test_ablations_differ_from_dropnas_in_one_key(variant, key, value):
    base = _config("cifar10", "dropnas", "paper").model_dump()
    other = _config("cifar10", variant, "paper").model_dump()
    assert other["method"][key] == value
    other["method"][key] = base["method"][key]
    assert other == base


def test_space_variants():
    for method in METHODS:
        c = _config("cifar10", method, "paper")
        if "rdarts_s" in method:  # a RobustDARTS space: fixed per-edge lists, no variant
            assert c.space.name == method[method.index("rdarts_s"):], method
            continue
        expected = "3-skip" if "3skip" in method else "1-skip" if "1skip" in method else "original"
        assert c.space.name == "darts", method
        assert c.space.variant == expected, method


@pytest.mark.parametrize("method", METHODS)
def test_paper_profile_contradicts_nothing(method: str):
    """Every key the dataset / method files set survives the paper profile unchanged."""
    base, _ = compose(_files("cifar10", method, "paper")[:-1])
    merged, _ = compose(_files("cifar10", method, "paper"))
    for key, value in _leaves(base):
        got = merged
        for k in key:
            got = got[k]
        assert got == value, f"paper profile changes {'.'.join(key)}"


@pytest.mark.parametrize("method", METHODS)
def test_smoke_profile_shrinks_but_keeps_semantics(method: str):
    paper, smoke = _config("digits", method, "paper"), _config("digits", method, "smoke")
    assert smoke.method == paper.method
    assert smoke.space == paper.space
    assert smoke.search.train_portion == paper.search.train_portion
    assert (smoke.search.epochs, smoke.search.layers, smoke.search.init_channels) == (3, 5, 4)
    assert smoke.search.steps_per_epoch
    assert smoke.retrain.epochs <= 10
    assert smoke.retrain.layers == 5
    assert smoke.retrain.epochs < paper.retrain.epochs
    assert not smoke.retrain.auxiliary
    assert smoke.search.augment.crop_padding == 1  # 8x8 digits
    assert smoke.tracking.enabled


def test_imagenet_overlay_wins_over_method_recipe():
    for method in METHODS:
        files = params_files("imagenet", method, "paper", ROOT, variants=VARIANTS)
        assert files[-2:] == ["params/overlays/imagenet.yaml", "params/profiles/paper.yaml"]
        c = _config("imagenet", method, "paper")
        assert (c.retrain.network, c.retrain.layers, c.retrain.init_channels) == ("imagenet", 14, 48)
        assert (c.retrain.epochs, c.retrain.label_smoothing) == (250, 0.1)
    assert params_files("cifar10", "darts", "paper", ROOT) == [
        "params/datasets/cifar10.yaml", "params/methods/darts.yaml", "params/profiles/paper.yaml"]


def _leaf_dict(config: RunConfig) -> dict:
    return dict(_leaves(config.model_dump(mode="json")))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_differs_from_its_base_only_in_its_overrides(variant: str):
    """A variant is its base plus its overrides: every other resolved key is the base's."""
    from nasflow.pipeline import resolve

    recipe = resolve(variant, VARIANTS)
    base, other = _leaf_dict(_config("cifar10", recipe.method, "paper")), \
        _leaf_dict(_config("cifar10", variant, "paper"))
    changed = {k for k in base.keys() | other.keys() if base.get(k) != other.get(k)}
    keys = {tuple(o.split("=", 1)[0].split(".")) for o in recipe.overrides}
    if recipe.space:  # a space file may replace the whole space section
        keys |= {k for k in changed if k[0] == "space"}
    assert changed, (variant, changed, keys)
    assert changed <= keys, (variant, changed, keys)


def test_composition_order_with_a_space():
    run = run_params("imagenet", "dropnas_3skip", "smoke", ROOT, variants=VARIANTS)
    assert run.files == ["params/datasets/imagenet.yaml", "params/methods/dropnas.yaml",
                         "params/spaces/darts.yaml", "params/overlays/imagenet.yaml",
                         "params/profiles/smoke.yaml"]
    assert run.overrides == ["space.variant=3-skip"]
    grid = run_params("cifar10", "dropnas_rp1e-4_rnp1e-5", "paper", ROOT, variants=VARIANTS)
    assert grid.files[1] == "params/methods/dropnas.yaml"
    c = _config("cifar10", "dropnas_rp1e-4_rnp1e-5", "paper")
    assert (c.method.r_parametric, c.method.r_nonparametric) == (1e-4, 1e-5)
