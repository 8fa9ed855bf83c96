"""Bad input: each case gives one clear error naming the file and the key or value, exit
status 2, and no output written."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from nasflow.cli import main
from nasflow.genotype import PUBLISHED

SMOKE = {
    "search": {"epochs": 1, "batch_size": 16, "layers": 3, "init_channels": 4, "steps_per_epoch": 2,
               "augment": {"crop_padding": 1, "flip": True, "cutout": 0}},
    "retrain": {"epochs": 1, "batch_size": 32, "layers": 3, "init_channels": 4, "steps_per_epoch": 2,
                "auxiliary": False, "augment": {"crop_padding": 1, "flip": True, "cutout": 0}},
    "runtime": {"progress": False},
    "tracking": {"enabled": False},
}


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj) if path.suffix == ".json" else _yaml(obj))
    return path


def _yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(obj)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "dataset.yaml", {"dataset": {"name": "digits"}})
    _write(tmp_path / "method.yaml", {"method": {"name": "dropnas"}})
    _write(tmp_path / "smoke.yaml", SMOKE)
    return tmp_path


def _params(*files):
    out = []
    for f in files:
        out += ["--params", str(f)]
    return out


def run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


BASE = ["dataset.yaml", "method.yaml", "smoke.yaml"]

# (id, extra params file content or None, --set overrides, expected fragments in the error)
PARAM_CASES = [
    ("unknown-top-key", {"serach": {"epochs": 1}}, [], ["bad.yaml", "serach", "unknown key"]),
    ("unknown-nested-key", {"search": {"epochz": 1}}, [], ["bad.yaml", "search.epochz", "unknown key"]),
    ("wrong-type", {"search": {"epochs": "many"}}, [], ["bad.yaml", "search.epochs", "integer"]),
    ("out-of-range", {"search": {"train_portion": 1.5}}, [], ["bad.yaml", "search.train_portion"]),
    ("negative-lr", {"retrain": {"lr": -0.1}}, [], ["bad.yaml", "retrain.lr", "greater than 0"]),
    ("unknown-method", {"method": {"name": "nasnet"}}, [], ["bad.yaml", "method.name", "nasnet"]),
    ("method-key-of-other-method", {"method": {"name": "dropnas", "order": 2}}, [],
     ["bad.yaml", "method.order", "unknown key"]),
    ("second-order-one-level", {"method": {"name": "darts", "order": 2, "one_level": True}}, [],
     ["bad.yaml", "method", "bilevel"]),
    ("unknown-dataset", {"dataset": {"name": "cifar11"}}, [], ["bad.yaml", "dataset.name", "cifar11"]),
    ("unknown-op", {"space": {"variant": "custom", "ops": ["sep_conv_3x3", "conv_9x9"]}}, [],
     ["bad.yaml", "space", "conv_9x9"]),
    ("custom-without-ops", {"space": {"variant": "custom"}}, [], ["bad.yaml", "space", "custom"]),
    ("edge-ops-wrong-count", {"space": {"variant": "custom", "edge_ops": {"normal": [["skip_connect"]]}}},
     [], ["bad.yaml", "edge_ops.normal", "14"]),
    ("dataset-root-escapes", {"dataset": {"name": "digits", "root": "../../etc"}}, [],
     ["bad.yaml", "dataset.root", "escapes"]),
    ("bad-betas", {"search": {"alpha_betas": [0.5, 1.5]}}, [], ["bad.yaml", "search.alpha_betas"]),
    ("override-wrong-type", None, ["search.batch_size=big"], ["--set search.batch_size=big", "batch_size"]),
    ("override-malformed", None, ["search.batch_size"], ["--set", "key.path=value"]),
    ("limit-too-small", {"dataset": {"name": "digits", "limit_train": 2}}, [], ["dataset.limit_train"]),
]


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_bad_params_name_file_and_key(project, capsys, case):
    _, bad, overrides, fragments = case
    files = list(BASE)
    if bad is not None:
        _write(project / "bad.yaml", bad)
        files.append("bad.yaml")
    argv = ["search", *_params(*files), "--out", "out"]
    for o in overrides:
        argv += ["--set", o]
    code, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1, err  # one line
    for frag in fragments:
        assert frag in err, (frag, err)
    assert not (project / "out").exists()
    assert not (project / "checkpoints").exists()


def test_missing_params_file(project, capsys):
    code, err = run(["search", *_params("dataset.yaml", "nope.yaml"), "--out", "out"], capsys)
    assert code == 2
    assert "nope.yaml" in err
    assert "not found" in err


def test_invalid_yaml(project, capsys):
    (project / "broken.yaml").write_text("search: {epochs: [1,\n")
    code, err = run(["search", *_params(*BASE, "broken.yaml"), "--out", "out"], capsys)
    assert code == 2
    assert "broken.yaml" in err
    assert "YAML" in err


@pytest.mark.parametrize(("mutate", "fragment"), [
    (lambda d: d["normal"].__setitem__(0, ["conv_9x9", 0]), "unknown op"),
    (lambda d: d["reduce"].__setitem__(3, ["max_pool_3x3", 9]), "input index 9"),
], ids=["unknown-op", "bad-input-index"])
def test_bad_genotype_json(project, capsys, mutate, fragment):
    data = PUBLISHED["DARTS_V2"].model_dump(mode="json")
    mutate(data)
    _write(project / "geno.json", data)
    code, err = run(["retrain", *_params(*BASE), "--genotype", "geno.json", "--out", "rt"], capsys)
    assert code == 2
    assert "geno.json" in err
    assert fragment in err
    assert not (project / "rt").exists()


def test_out_escaping_project(project, capsys):
    code, err = run(["search", *_params(*BASE), "--out", "../elsewhere"], capsys)
    assert code == 2
    assert "escapes the project" in err


def test_unwritable_output_folder(project, capsys):
    if os.geteuid() == 0:
        # root ignores permission bits: use a path under a regular file instead
        (project / "afile").write_text("x")
        out = "afile/out"
    else:
        (project / "ro").mkdir(mode=0o500)
        out = "ro/out"
    code, err = run(["derive", *_params(*BASE), "--search", "missing.json", "--out", out], capsys)
    assert code == 2
    code, err = run(["retrain", *_params(*BASE), "--genotype", "DARTS_V2", "--out", out,
                     "--checkpoint-dir", "ck"], capsys)
    assert code == 2, err
    assert "afile" in err or "ro/" in err, err
    assert "not writable" in err or "not a folder" in err


def test_missing_cifar_offline(project, capsys, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as tvu

    def no_network(*a, **k):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(tvu, "download_url", no_network)
    monkeypatch.setattr(tvu, "download_and_extract_archive", no_network)
    _write(project / "c10.yaml", {"dataset": {"name": "cifar10", "root": "data"}})
    code, err = run(["search", *_params(*BASE, "c10.yaml"), "--out", "out"], capsys)
    assert code == 2
    assert "cifar" in err.lower()
    assert "data" in err
    assert not (project / "out").exists()


def test_corrupt_archive(project, capsys):
    (project / "c10.tar.gz").write_bytes(b"\x1f\x8b\x08 this is not a real archive")
    _write(project / "c10.yaml", {"dataset": {"name": "cifar10", "archive": "c10.tar.gz",
                                              "download": False}})
    code, err = run(["search", *_params(*BASE, "c10.yaml"), "--out", "out"], capsys)
    assert code == 2
    assert "c10.tar.gz" in err


def test_tar_path_traversal(project, capsys):
    evil = project / "cifar-10-binary.tar.gz"
    payload = project / "payload.bin"
    payload.write_bytes(b"x" * 10)
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../evil.bin")
    _write(project / "c10.yaml", {"dataset": {"name": "cifar10", "archive": str(evil),
                                              "download": False}})
    code, err = run(["search", *_params(*BASE, "c10.yaml"), "--out", "out"], capsys)
    assert code == 2
    assert "evil" in err
    assert not (project.parent / "evil.bin").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(project, capsys, monkeypatch):
    from nasflow.io import load_checkpoint
    from nasflow.methods.dropnas import DropNAS

    original = DropNAS.loss

    def diverging(self, x, y, masks=None):  # the loss turns NaN in epoch 2, as a diverging run's would
        loss, logits = original(self, x, y, masks)
        return (loss * float("nan") if self.epoch >= 2 else loss), logits

    monkeypatch.setattr(DropNAS, "loss", diverging)
    argv = ["search", *_params(*BASE), "--out", "s", "--set", "search.epochs=3", "--checkpoint-dir", "ck"]
    code, err = run(argv, capsys)
    assert code == 2
    assert "NaN" in err
    assert "step 0" in err
    assert "epoch 2" in err
    assert not (project / "s").exists()
    assert load_checkpoint(project / "ck" / "search.ckpt")["epoch"] == 1  # the last good one
    monkeypatch.setattr(DropNAS, "loss", original)
    code, err = run(argv, capsys)  # the fixed re-run resumes from it and finishes
    assert code == 0, err
    assert (project / "s" / "search.json").exists()


def test_corrupt_checkpoint_is_refused(project, capsys):
    code, _ = run(["search", *_params(*BASE), "--out", "s1", "--checkpoint-dir", "ck"], capsys)
    assert code == 0
    ck = project / "ck" / "search.ckpt"
    ck.write_bytes(ck.read_bytes()[:100])  # truncated
    code, err = run(["search", *_params(*BASE), "--out", "s1b", "--checkpoint-dir", "ck"], capsys)
    assert code == 2
    assert "search.ckpt" in err
    assert "corrupt" in err


def test_out_of_memory_gives_a_batch_size_hint(project, capsys, monkeypatch):
    import torch

    import nasflow.train.search as search_mod

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(search_mod, "run_search", oom)
    code, err = run(["search", *_params(*BASE), "--out", "out"], capsys)
    assert code == 2
    assert "batch_size" in err
    assert "out of memory" in err


def test_weights_for_another_genotype(project, capsys):
    code, _ = run(["retrain", *_params(*BASE), "--genotype", "DARTS_V2", "--out", "rt"], capsys)
    assert code == 0
    code, err = run(["evaluate", *_params(*BASE), "--genotype", "DARTS_V1",
                     "--weights", "rt/model.pt", "--out", "ev.json"], capsys)
    assert code == 2
    assert "different genotype" in err
    assert not (project / "ev.json").exists()


def test_derive_from_non_search_json(project, capsys):
    _write(project / "x.json", {"hello": 1})
    code, err = run(["derive", *_params(*BASE), "--search", "x.json", "--out", "g.json"], capsys)
    assert code == 2
    assert "x.json" in err
    assert "search.json" in err
    assert not (project / "g.json").exists()
