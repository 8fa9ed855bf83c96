"""Every input checked at the boundary: for each class of wrong input (encodings, duplicate
keys, wrong-shaped JSON, cross-field relations, records and weights of another configuration,
output paths that are folders, over-long values) the CLI exits with status 2 and prints one
line naming the file and the key, with no traceback, nothing at ``--out``, and no checkpoint
or temporary folder left behind. A bug still escaping is one ``internal error`` line, exit 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nasflow.cli import main

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ROOT / "params"
BASE = [PARAMS / "datasets" / "digits.yaml", PARAMS / "methods" / "darts.yaml",
        PARAMS / "profiles" / "smoke.yaml"]
TINY = ["search.epochs=1", "search.steps_per_epoch=1", "search.layers=3", "search.batch_size=16",
        "retrain.epochs=1", "retrain.steps_per_epoch=1", "retrain.layers=3",
        "retrain.init_channels=4", "retrain.batch_size=16", "tracking.enabled=false"]


def argv(verb: str, *extra, params=(), sets=()) -> list[str]:
    out = [verb]
    for f in (*BASE, *params):
        out += ["--params", str(f)]
    for s in (*TINY, *sets):
        out += ["--set", s]
    return out + [str(e) for e in extra]


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def stray(folder: Path) -> list[str]:
    """Temporary files / folders and probes left in ``folder`` (recursively)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*")
                  if p.name.endswith((".tmp", ".probe", ".lock")))


def refused(code: int, err: str, *fragments: str, project: Path | None = None,
            out: Path | None = None) -> None:
    assert code == 2, err
    assert err.count("\n") == 1, err
    assert err.startswith("nasflow: error: "), err
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert len(err) < 1100, len(err)
    for frag in fragments:  # a tuple: any one of them
        assert any(f in err for f in ((frag,) if isinstance(frag, str) else frag)), (frag, err)
    if out is not None:
        assert not out.exists(), out
    if project is not None:
        assert not (project / "checkpoints").exists()
        assert stray(project) == []


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One real (tiny) search: its output folder."""
    folder = tmp_path_factory.mktemp("searched")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main(argv("search", "--out", "s", "--checkpoint-dir", "ck"))
    finally:
        os.chdir(cwd)
    assert code == 0
    assert stray(folder) == []  # no .s.probe, no .s.*.tmp
    return folder / "s"


@pytest.fixture(scope="module")
def retrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("retrained")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main(argv("retrain", "--genotype", "DARTS_V2", "--out", "rt", "--checkpoint-dir", "ck"))
    finally:
        os.chdir(cwd)
    assert code == 0
    assert stray(folder) == []
    return folder / "rt"


# ---- params files: encodings, syntax, duplicate keys ---------------------------------------
GOOD_YAML = "search:\n  epochs: 1\n  augment:\n    flip: true\n"
ENCODINGS = {
    "utf16-bom": ("\ufeff" + GOOD_YAML).encode("utf-16-le"),
    "utf16-be-bom": GOOD_YAML.encode("utf-16"),
    "utf16-no-bom": GOOD_YAML.encode("utf-16-le"),
    "utf32": GOOD_YAML.encode("utf-32"),
    "latin1": "# r\xe9sum\xe9 of the run\n".encode("latin-1") + GOOD_YAML.encode(),
    "binary": bytes(range(256)) * 4,
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40),
    "nul-in-text": GOOD_YAML.encode() + b"\x00\n",
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_params_file_not_utf8(project, capsys, name):
    (project / "bad.yaml").write_bytes(ENCODINGS[name])
    code, err = run(argv("search", "--out", "out", params=["bad.yaml"]), capsys)
    refused(code, err, "bad.yaml", project=project, out=project / "out")
    assert any(w in err for w in ("UTF-8", "UTF-16", "UTF-32", "binary")), err


def test_utf8_bom_is_accepted(project):
    from nasflow.config import load_config

    (project / "bom.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD_YAML.encode())
    assert load_config([*BASE, "bom.yaml"], TINY).search.epochs == 1


DUPLICATES = {
    "section": ("search:\n  epochs: 1\nsearch:\n  epochs: 2\n", "search"),
    "key": ("search:\n  epochs: 1\n  batch_size: 8\n  epochs: 2\n", "search.epochs"),
    "depth-3": ("search:\n  augment:\n    flip: true\n    cutout: 0\n    flip: false\n",
                "search.augment.flip"),
    "flow-style": ("search: {epochs: 1, epochs: 2}\n", "search.epochs"),
    "in-a-list": ("space:\n  variant: custom\n  edge_ops:\n    normal:\n      - {a: 1, a: 2}\n",
                  "space.edge_ops.normal[0].a"),
    "equal-numbers": ("search:\n  epochs: 1\n  0x10: 1\n  16: 2\n", "search.16"),
}


@pytest.mark.parametrize("name", list(DUPLICATES))
def test_duplicate_yaml_keys_are_refused(project, capsys, name):
    text, key = DUPLICATES[name]
    (project / "dup.yaml").write_text(text)
    code, err = run(argv("search", "--out", "out", params=["dup.yaml"]), capsys)
    refused(code, err, "dup.yaml", key, "duplicate key", project=project, out=project / "out")


@pytest.mark.parametrize(("text", "fragments"), [
    ("search:\n\tepochs: 1\n", ["bad.yaml", "line 2"]),
    ("search: [1,\n", ["bad.yaml", "YAML"]),
    ("- search\n- retrain\n", ["bad.yaml", "mapping of sections"]),
    ("just a string\n", ["bad.yaml", "mapping of sections"]),
    ("derive: null\n", ["bad.yaml", "derive", "mapping", "derive: {}"]),
    ("derive: 5\n", ["bad.yaml", "derive", "mapping"]),
    ("derive: [1, 2]\n", ["bad.yaml", "derive", "mapping"]),
    ("search:\n  augment: 3\n", ["bad.yaml", "search.augment", "mapping"]),
    ("on: {epochs: 1}\n", ["bad.yaml", "not a string", "quote"]),
    ("search:\n  1: 2\n", ["bad.yaml", "search", "not a string"]),
    ("search:\n  ? [a, b]\n  : 1\n", ["bad.yaml", "search", "key"]),
    ("search: !!python/object:os.system {}\n", ["bad.yaml", "YAML"]),
    ("search: &a [*a]\n", ["bad.yaml"]),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     ["bad.yaml", "expands"]),
    ("search:\n  epochs: " + "9" * 5000 + "\n", ["bad.yaml", "YAML"]),
    ("a: 1\n---\nb: 2\n", ["bad.yaml", "YAML"]),
], ids=["tab", "unclosed", "list", "string", "null-section", "scalar-section", "list-section",
        "scalar-subsection", "yaml11-bool-key", "int-key", "list-key", "python-tag",
        "recursive-alias", "alias-bomb", "huge-int", "two-documents"])
def test_malformed_params_file(project, capsys, text, fragments):
    (project / "bad.yaml").write_text(text)
    code, err = run(argv("search", "--out", "out", params=["bad.yaml"]), capsys)
    refused(code, err, *fragments, project=project, out=project / "out")


def test_null_section_in_a_later_file_names_that_file(project, capsys):
    (project / "later.yaml").write_text("evaluate: null\n")
    code, err = run(argv("search", "--out", "out", params=["later.yaml"]), capsys)
    refused(code, err, "later.yaml", "evaluate", project=project)
    assert "smoke.yaml" not in err
    assert "digits.yaml" not in err


@pytest.mark.parametrize(("path", "fragment"), [
    ("missing.yaml", "not found"), (".", "is a folder"), ("afile/x.yaml", "not found"),
])
def test_params_path_that_is_no_file(project, capsys, path, fragment):
    (project / "afile").write_text("x")
    code, err = run(argv("search", "--out", "out", params=[path]), capsys)
    refused(code, err, path, fragment, project=project)


# ---- --set values --------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "fragments"), [
    ("search.epochs=[1", ["--set search.epochs=[1", "search.epochs", "YAML"]),
    ("search.epochs={a: 1", ["search.epochs", "YAML"]),
    ("search.epochs=" + "9" * 5000, ["search.epochs", "characters"]),
    ("search.seed=" + "9" * 40, ["search.seed", "less than or equal"]),
    ("search=5", ["--set search=5", "search", "mapping"]),
    ("search=", ["--set search=", "search", "mapping"]),
    ("search..epochs=1", ["empty part"]),
    ("=1", ["empty part"]),
    ("search.epochs", ["key.path=value"]),
    ("search.epochs=!!python/object/apply:os.system [ls]", ["search.epochs", "YAML"]),
    ("search.epochs=1\n---\n2", ["search.epochs", "YAML"]),
    ("search.epochz=3", ["search.epochz", "unknown key", "search.epochs?"]),
], ids=["unclosed-list", "unclosed-map", "5000-digits", "huge-int", "section-scalar",
        "section-null", "empty-part", "empty-key", "no-equals", "python-tag", "two-docs",
        "misspelt"])
def test_bad_override(project, capsys, override, fragments):
    code, err = run(argv("search", "--out", "out", sets=[override]), capsys)
    refused(code, err, *fragments, project=project, out=project / "out")


def test_over_long_override_is_cut(project, capsys):
    code, err = run(argv("search", "--out", "out", sets=["search.notakey=" + "x" * 100_000]), capsys)
    refused(code, err, "search.notakey", "unknown key", "100,015 characters", project=project)


@pytest.mark.parametrize("override", ["search.w_lr=.nan", "search.w_lr=.inf", "retrain.lr=-.inf",
                                      "search.w_grad_clip=.inf", "search.alpha_betas=[.nan, 0.9]",
                                      "retrain.label_smoothing=.NaN"])
def test_nan_and_infinity_are_not_numbers(project, capsys, override):
    code, err = run(argv("search", "--out", "out", sets=[override]), capsys)
    refused(code, err, override.split("=")[0], "finite number", project=project)
    assert "less than" not in err
    assert "greater than" not in err


def test_nan_in_a_file(project, capsys):
    (project / "nan.yaml").write_text("search:\n  w_lr: .NaN\n")
    code, err = run(argv("search", "--out", "out", params=["nan.yaml"]), capsys)
    refused(code, err, "nan.yaml", "search.w_lr", "finite", project=project)


# ---- relations between fields --------------------------------------------------------------
@pytest.mark.parametrize(("sets", "fragments"), [
    (["search.w_lr_min=0.5"], ["search.w_lr_min", "search.w_lr"]),
    (["retrain.lr=0.01", "retrain.lr_min=0.1"], ["retrain.lr_min", "retrain.lr"]),
    (["search.train_portion=1.0"], ["search.train_portion", "method.name", "bilevel"]),
    (["space.variant=custom", "space.ops=[none]"], ["space.ops", "none"]),
    (["space.variant=custom", "space.ops=[none, none]"], ["space.ops", "none"]),
    (["derive.edges_per_node=3"], ["derive.edges_per_node", "2 input"]),
    (["dataset.limit_train=40", "search.batch_size=32"],
     ["dataset.limit_train", "search.batch_size", "search.train_portion"]),
    (["dataset.limit_train=20", "search.batch_size=8", "retrain.batch_size=64"],
     ["dataset.limit_train", "retrain.batch_size"]),
    (["search.train_portion=0.01", "dataset.limit_train=100", "search.batch_size=8"],
     ["search.train_portion", "dataset.limit_train"]),
], ids=["w_lr_min>w_lr", "lr_min>lr", "bilevel-portion-1", "only-none", "only-nones",
        "edges-per-node", "limit<2-batches", "limit<retrain-batch", "tiny-portion"])
def test_cross_field_relations(project, capsys, sets, fragments):
    code, err = run(argv("search", "--out", "out", sets=sets), capsys)
    refused(code, err, "--set", *fragments, project=project, out=project / "out")


def test_relations_name_the_file_that_set_the_keys(project, capsys):
    (project / "lr.yaml").write_text("retrain:\n  lr_min: 0.5\n")
    code, err = run(argv("search", "--out", "out", params=["lr.yaml"]), capsys)
    refused(code, err, "lr.yaml", "retrain.lr_min", project=project)


def test_relations_accept_the_valid_edges():
    from nasflow.config import load_config

    one_level = load_config([*BASE[:1], PARAMS / "methods" / "dropnas.yaml", BASE[2]],
                            [*TINY, "search.train_portion=1.0"])
    assert one_level.search.train_portion == 1.0  # one-level: the whole set, no split needed
    c = load_config(BASE, [*TINY, "search.w_lr_min=0.025", "search.w_lr=0.025"])
    assert c.search.w_lr_min == c.search.w_lr
    c = load_config(BASE, [*TINY, "space.variant=custom", "space.ops=[none, skip_connect]"])
    assert c.space.ops == ["none", "skip_connect"]


# ---- output paths --------------------------------------------------------------------------
def test_file_outputs_that_are_folders(project, capsys, searched):
    (project / "adir").mkdir()
    for args in (argv("derive", "--search", searched / "search.json", "--out", "adir"),
                 argv("evaluate", "--genotype", "DARTS_V2", "--weights", "w.pt", "--out", "adir"),
                 argv("track-parent", "--name", "x", "--out", "adir"),
                 ["schema", "--out", "adir"]):
        code, err = run(args, capsys)
        refused(code, err, "--out adir", "is a folder", project=project)
        assert list((project / "adir").iterdir()) == []


def test_folder_outputs_that_are_files(project, capsys):
    (project / "afile").write_text("keep me")
    for verb, extra in (("search", []), ("retrain", ["--genotype", "DARTS_V2"]),
                        ("analyze", ["--search", "nowhere"])):
        code, err = run(argv(verb, *extra, "--out", "afile"), capsys)
        refused(code, err, "--out afile", "is a file", project=project)
    assert (project / "afile").read_text() == "keep me"


def test_output_paths_are_checked_before_the_first_epoch(project, capsys, monkeypatch):
    import nasflow.train.retrain as retrain_mod
    import nasflow.train.search as search_mod

    def no_work(*a, **k):
        raise AssertionError("training started although an output path is unusable")

    monkeypatch.setattr(search_mod, "run_search", no_work)
    monkeypatch.setattr(retrain_mod, "run_retrain", no_work)
    (project / "afile").write_text("x")
    cases = [
        (argv("search", "--out", "afile/s"), "afile"),
        (argv("search", "--out", "s", "--checkpoint-dir", "afile"), "--checkpoint-dir afile"),
        (argv("search", "--out", "s", "--checkpoint-dir", "afile/ck"), "afile"),
        (argv("retrain", "--genotype", "DARTS_V2", "--out", "r", "--checkpoint-dir", "afile"),
         "--checkpoint-dir afile"),
        (argv("search", "--out", "s", "--checkpoint-dir", "s/ck"), "inside --out"),
        (argv("search", "--out", "."), "current folder"),
        (argv("search", "--out", str(project)), "current folder"),
    ]
    for args, fragment in cases:
        code, err = run(args, capsys)
        refused(code, err, fragment, project=project)
        assert not (project / "s").exists()
        assert not (project / "r").exists()


def test_unwritable_checkpoint_dir(project, capsys):
    if os.geteuid() == 0:
        pytest.skip("root ignores permission bits")
    (project / "ro").mkdir(mode=0o500)
    code, err = run(argv("search", "--out", "s", "--checkpoint-dir", "ro/ck"), capsys)
    refused(code, err, "--checkpoint-dir", "not writable", project=project)


def test_output_may_not_replace_an_input(project, capsys, searched):
    import shutil

    shutil.copytree(searched, project / "s")
    code, err = run(argv("derive", "--search", "s/search.json", "--out", "s/search.json"), capsys)
    refused(code, err, "--search", "destroy")
    code, err = run(argv("analyze", "--search", "s", "--out", "s"), capsys)
    refused(code, err, "--search", "replaced whole")
    (project / "p").mkdir()
    (project / "p" / "extra.yaml").write_text("search: {}\n")
    code, err = run(argv("search", "--out", "p", params=["p/extra.yaml"]), capsys)
    refused(code, err, "--params", "replaced whole")
    assert (project / "s" / "search.json").is_file()
    assert (project / "p" / "extra.yaml").is_file()


# ---- stray files ---------------------------------------------------------------------------
def test_stale_temp_folders_of_killed_runs_are_removed(project):
    """A killed run leaves ``.<out>.<host>-<pid>.*.tmp``; the next run of the same output
    removes it (a dead pid of this host), and keeps one of a live process."""
    from nasflow.cli import _atomic_dir
    from nasflow.io import temp_prefix

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = temp_prefix(project / "rt").replace(f"-{os.getpid()}.", f"-{proc.pid}.")
    stale = project / f"{dead}abc123.tmp"
    stale.mkdir()
    (stale / "model.pt").write_bytes(b"x")
    live = project / f"{temp_prefix(project / 'rt')}live.tmp"
    live.mkdir()
    with _atomic_dir(project / "rt") as tmp:
        (tmp / "retrain.json").write_text("{}")
    assert not stale.exists()
    assert live.exists()
    live.rmdir()
    assert sorted(p.name for p in project.iterdir()) == ["rt"]


def test_atomic_dir_leaves_nothing_on_failure(project):
    from nasflow.cli import _atomic_dir

    def killed_midway():
        with _atomic_dir(project / "a" / "b" / "out") as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed_midway()
    assert list(project.iterdir()) == []  # not even the folders a/b it created


def test_failed_write_of_a_file_output_leaves_nothing(project):
    from nasflow.io import atomic_path

    def killed_midway():
        with atomic_path(project / "x" / "y.json") as tmp:
            tmp.write_text("{")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        killed_midway()
    assert list(project.iterdir()) == []


def test_invalid_input_leaves_no_checkpoint_folder(project, capsys, monkeypatch):
    import nasflow.train.search as search_mod
    from nasflow.errors import DataError

    def fails_late(config, ckpt, tracker=None):
        Path(ckpt).mkdir(parents=True, exist_ok=True)
        (Path(ckpt) / "search.ckpt").write_bytes(b"partial")
        raise DataError("digits: the data turned out to be unusable")

    monkeypatch.setattr(search_mod, "run_search", fails_late)
    code, err = run(argv("search", "--out", "s"), capsys)
    assert code == 2
    assert err.splitlines()[-1] == "nasflow: error: digits: the data turned out to be unusable"
    assert list(project.iterdir()) == []  # no checkpoints/s, no checkpoints/
    (project / "ck").mkdir()  # a folder that existed before the run is kept
    code, err = run(argv("search", "--out", "s", "--checkpoint-dir", "ck"), capsys)
    assert code == 2
    assert (project / "ck").is_dir()


def test_mlflow_lock_file_is_removed(tmp_path):
    import tempfile

    from nasflow.tracking import _store_lock

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    before = set(Path(tempfile.gettempdir()).glob("nasflow-mlflow-*.lock"))
    with _store_lock(uri):
        held = set(Path(tempfile.gettempdir()).glob("nasflow-mlflow-*.lock")) - before
        assert len(held) == 1
    assert set(Path(tempfile.gettempdir()).glob("nasflow-mlflow-*.lock")) - before == set()


def test_locked_file_excludes_other_processes(tmp_path):
    """The removable lock still serialises: four processes increment a counter 25 times each."""
    counter = tmp_path / "count"
    counter.write_text("0")
    code = ("import sys, time; from pathlib import Path; from nasflow.io import locked_file\n"
            "p = Path(sys.argv[1])\n"
            "for _ in range(25):\n"
            "    with locked_file(p.with_suffix('.lock'), timeout=60):\n"
            "        n = int(p.read_text()); time.sleep(0.001); p.write_text(str(n + 1))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(counter)], env=env) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert counter.read_text() == "100"
    assert not counter.with_suffix(".lock").exists()


# ---- tracking files ------------------------------------------------------------------------
@pytest.mark.parametrize(("content", "fragments"), [
    ("[1, 2]", ["parent.json", "not a list"]),
    ('"abc"', ["parent.json", "not a string"]),
    ('{"run_id": 5}', ["parent.json", "run_id"]),
    ('{"name": "x"}', ["parent.json", "run_id"]),
    ('{"run_id": "a", "run_id": "b"}', ["parent.json", "duplicate key", "run_id"]),
    ("{", ["parent.json", "not valid JSON", "line 1"]),
    (b"\xff\xfe{\x00}\x00", ["parent.json", "UTF-16"]),
    (b"\x80\x81", ["parent.json", "not UTF-8"]),
], ids=["list", "string", "int-id", "no-id", "duplicate", "syntax", "utf16", "binary"])
def test_bad_parent_run_file(project, capsys, content, fragments):
    path = project / "parent.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = run(argv("search", "--out", "s", "--parent-run-id", "parent.json"), capsys)
    refused(code, err, *fragments, project=project, out=project / "s")


def test_parent_run_id_that_is_neither(project, capsys):
    code, err = run(argv("search", "--out", "s", "--parent-run-id", "not an id!"), capsys)
    refused(code, err, "--parent-run-id", "run id", project=project)
    code, err = run(argv("search", "--out", "s", "--parent-run-id", "missing.json"), capsys)
    refused(code, err, "missing.json", "not found", project=project)


# ---- genotype files ------------------------------------------------------------------------
def _genotype_json() -> dict:
    from nasflow.genotype import PUBLISHED

    return PUBLISHED["DARTS_V2"].model_dump(mode="json")


@pytest.mark.parametrize(("content", "fragments"), [
    (b"[1, 2, 3]", ["g.json"]),
    (b'"DARTS_V2"', ["g.json"]),
    (b"null", ["g.json"]),
    (b'{"normal": [], "normal": []}', ["g.json", "duplicate key", "normal"]),
    (b"\xff\xfe" + json.dumps({"normal": []}).encode("utf-16-le"), ["g.json", "UTF-16"]),
    ('{"normal": [["caf\u00e9", 0]]}'.encode("latin-1"), ["g.json", "UTF-8"]),
    (json.dumps({**_genotype_json(), "normal": "sep_conv_3x3"}).encode(), ["g.json", "normal"]),
    (json.dumps({**_genotype_json(), "normal": [[1, "x"]] * 8}).encode(), ["g.json", "normal"]),
    (json.dumps({**_genotype_json(), "normal_concat": [99]}).encode(), ["g.json", "normal_concat"]),
    (json.dumps({**_genotype_json(), "extra": 1}).encode(), ["g.json", "extra"]),
    (b"[" * 100_000, ["g.json", "JSON"]),
    (b'{"normal": ' + b"9" * 5000 + b"}", ["g.json", "JSON"]),
], ids=["list", "string", "null", "duplicate", "utf16", "latin1", "wrong-type", "swapped-pair",
        "concat", "unknown-field", "deep", "huge-int"])
def test_bad_genotype_file(project, capsys, monkeypatch, content, fragments):
    import nasflow.train.retrain as retrain_mod

    monkeypatch.setattr(retrain_mod, "run_retrain", lambda *a, **k: pytest.fail("not refused"))
    (project / "g.json").write_bytes(content)
    code, err = run(argv("retrain", "--genotype", "g.json", "--out", "rt"), capsys)
    refused(code, err, *fragments, project=project, out=project / "rt")


def test_genotype_path_that_is_a_folder(project, capsys):
    (project / "g.json").mkdir()
    code, err = run(argv("retrain", "--genotype", "g.json", "--out", "rt"), capsys)
    refused(code, err, "g.json", "folder", project=project)
    assert "not found" not in err


# ---- search records of another configuration -----------------------------------------------
def _record(searched: Path) -> dict:
    return json.loads((searched / "search.json").read_text())


def _mutated(project: Path, record) -> Path:
    path = project / "search.json"
    path.write_text(json.dumps(record))
    return path


@pytest.mark.parametrize(("sets", "fragments"), [
    (["space.nodes=2"], ["nodes"]),
    (["space.variant=1-skip"], [("edge_ops", "space.variant")]),
    (["space.name=rdarts_s1"], ["space"]),
], ids=["nodes", "op-set", "space"])
def test_derive_from_a_search_of_another_space(project, capsys, searched, sets, fragments):
    code, err = run(argv("derive", "--search", searched / "search.json", "--out", "g.json",
                         sets=sets), capsys)
    refused(code, err, "search.json", *fragments, project=project, out=project / "g.json")


@pytest.mark.parametrize(("mutate", "fragments"), [
    (lambda r: r["alphas"]["normal"].pop(), ["alphas.normal"]),
    (lambda r: r["alphas"]["normal"][2].pop(), ["alphas.normal"]),
    (lambda r: r["alphas"]["reduce"][0].__setitem__(1, float("nan")), ["alphas.reduce", "NaN"]),
    (lambda r: r["alphas"].__setitem__("normal", "x"), ["alphas.normal"]),
    (lambda r: r.__setitem__("alphas", [1, 2]), ["alphas"]),
    (lambda r: r.__delitem__("alphas"), ["alphas", "search.json"]),
    (lambda r: r["edge_ops"]["normal"].pop(), [("edge_ops.normal", "edge_ops has 13 edges")]),
], ids=["row-missing", "short-row", "nan", "string-cell", "alphas-list", "no-alphas", "edge-ops"])
def test_derive_from_a_malformed_record(project, capsys, searched, mutate, fragments):
    record = _record(searched)
    mutate(record)
    path = _mutated(project, record)
    code, err = run(argv("derive", "--search", path, "--out", "g.json"), capsys)
    refused(code, err, "search.json", *fragments, out=project / "g.json")


@pytest.mark.parametrize("content", [b"[]", b"42", b'"search"', b"{}", b"\x00\x01binary"],
                         ids=["list", "number", "string", "empty", "binary"])
def test_derive_from_a_json_of_the_wrong_shape(project, capsys, content):
    (project / "search.json").write_bytes(content)
    code, err = run(argv("derive", "--search", "search.json", "--out", "g.json"), capsys)
    refused(code, err, "search.json", project=project, out=project / "g.json")


def test_search_record_checks_in_the_loader(searched):
    """:func:`nasflow.loaders.check_search_record` against a configuration (what derive and
    analyze call): space, supernet size, alpha shapes, history shapes, finiteness."""
    from nasflow.config import load_config
    from nasflow.errors import InputError
    from nasflow.loaders import MADE_FOR, check_search_record, load_search_record, made_for

    path = searched / "search.json"
    config = load_config(BASE, TINY)
    record = load_search_record(path, made_for(config, MADE_FOR["search"]))
    for sets, fragment in ((["space.nodes=2"], "made with space.nodes = 4, params say space.nodes = 2"),
                           (["search.layers=5"], "search.layers = 3, params say search.layers = 5"),
                           (["search.init_channels=8"], "search.init_channels"),
                           (["space.variant=3-skip"], "space.variant")):
        other = load_config(BASE, [*TINY, *sets])
        with pytest.raises(InputError, match=fragment.replace(".", r"\.")):
            check_search_record(record, path, made_for(other, MADE_FOR["search"]))
    bad = json.loads(json.dumps(record))
    bad["history"][0]["probabilities"]["normal"] = [[0.5]]
    with pytest.raises(InputError, match=r"history\[0\]\.probabilities\.normal"):
        check_search_record(bad, path)
    bad = json.loads(json.dumps(record))
    bad["probabilities"]["reduce"][3] = [0.1]
    with pytest.raises(InputError, match=r"probabilities\.reduce"):
        check_search_record(bad, path)
    from nasflow.spaces import build_space

    small = build_space(load_config(BASE, [*TINY, "space.nodes=2"]).space)
    legacy = {k: v for k, v in record.items() if k not in ("space_params", "made_for")}
    with pytest.raises(InputError, match="14 edges per normal cell, the params' space has 5"):
        check_search_record(legacy, path, edge_ops=small.edge_ops)


def test_analyze_a_supernet_of_another_size(project, capsys, searched):
    code, err = run(argv("analyze", "--search", searched, "--out", "an", "--images", "16",
                         sets=["search.init_channels=8"]), capsys)
    refused(code, err, "search", "search.init_channels", project=project, out=project / "an")


def test_analyze_a_record_with_a_malformed_history(project, capsys, searched):
    import shutil

    shutil.copytree(searched, project / "s")
    record = _record(searched)
    record["history"][0]["probabilities"]["normal"] = "oops"
    (project / "s" / "search.json").write_text(json.dumps(record))
    code, err = run(argv("analyze", "--search", "s", "--out", "an", "--images", "16"), capsys)
    refused(code, err, "search.json", "history[0].probabilities.normal", out=project / "an")


# ---- weights of another network ------------------------------------------------------------
def test_weights_checks_in_the_loader(retrained):
    """:func:`nasflow.loaders.load_weights` against the configured network (what evaluate
    calls): other width, other depth, another file's made_for."""
    import torch

    from nasflow.errors import InputError
    from nasflow.io import load_weights
    from nasflow.loaders import check_state_dict

    weights = retrained / "model.pt"
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 4, 3))
    wide = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.Conv2d(8, 8, 3))
    deep = torch.nn.Sequential(*net, torch.nn.Conv2d(4, 4, 3))
    with pytest.raises(InputError, match=r"model\.0\.weight: shape \[4, 1, 3, 3\] in the file, the "
                                         r"configured network needs \[8, 1, 3, 3\]"):
        check_state_dict(net.state_dict(), wide, weights)
    with pytest.raises(InputError, match="lacks 2 tensor"):
        check_state_dict(net.state_dict(), deep, weights)
    with pytest.raises(InputError, match="made for another network"):
        load_weights(weights, net, key="model")
    from nasflow.io import load_checkpoint, save_checkpoint

    state = load_checkpoint(weights)
    state["made_for"] = {"retrain.init_channels": 4}
    save_checkpoint(retrained.parent / "tagged.pt", state)
    with pytest.raises(InputError, match=r"retrain.init_channels = 4, params say retrain.init_channels = 8"):
        load_weights(retrained.parent / "tagged.pt", net, expected={"retrain.init_channels": 8})


def test_evaluate_weights_of_another_width(project, capsys, retrained):
    code, err = run(argv("evaluate", "--genotype", "DARTS_V2", "--weights", retrained / "model.pt",
                         "--out", "ev.json", sets=["retrain.init_channels=8"]), capsys)
    refused(code, err, "model.pt", "init_channels", project=project, out=project / "ev.json")


@pytest.mark.parametrize(("content", "fragment"), [
    (b"", "bad header"), (b"PK\x03\x04 a zip", "bad header"), (None, "folder"),
], ids=["empty", "zip", "folder"])
def test_evaluate_unreadable_weights(project, capsys, content, fragment):
    path = project / "model.pt"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    code, err = run(argv("evaluate", "--genotype", "DARTS_V2", "--weights", "model.pt",
                         "--out", "ev.json"), capsys)
    refused(code, err, "model.pt", fragment, out=project / "ev.json")


def test_checkpoint_of_the_wrong_shape(tmp_path):
    import torch

    from nasflow.errors import CheckpointError
    from nasflow.io import load_checkpoint, save_checkpoint
    from nasflow.train.checkpoint import CheckpointManager

    save_checkpoint(tmp_path / "list.pt", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CheckpointError, match="not the mapping"):
        load_checkpoint(tmp_path / "list.pt")
    manager = CheckpointManager(tmp_path, "search", "fp")
    save_checkpoint(manager.path, {"fingerprint": "fp", "epoch": "three"})
    with pytest.raises(CheckpointError, match="epoch"):
        manager.load()
    net = torch.nn.Linear(2, 3)
    save_checkpoint(manager.path, {"fingerprint": "fp", "epoch": 0,
                                   "model": torch.nn.Linear(2, 4).state_dict()})
    assert manager.load(expect={"model": net}) is None  # another network's: moved aside
    assert manager.path.with_suffix(".stale").is_file()
    assert not manager.path.exists()
    save_checkpoint(manager.path, {"fingerprint": "fp", "epoch": 0, "model": net.state_dict()})
    assert manager.load(expect={"model": net})["epoch"] == 0


def test_retrain_record_of_the_wrong_shape(tmp_path):
    from nasflow.errors import InputError
    from nasflow.loaders import load_retrain_record

    (tmp_path / "retrain.json").write_text("[1]")
    with pytest.raises(InputError, match=r"retrain.json: a retrain record is a JSON object"):
        load_retrain_record(tmp_path / "retrain.json")
    (tmp_path / "retrain.json").write_text('{"best_test_acc": "high"}')
    with pytest.raises(InputError, match="best_test_acc"):
        load_retrain_record(tmp_path / "retrain.json")


# ---- the boundary itself: internal errors and --debug ---------------------------------------
def test_internal_error_is_one_line_exit_1(project, capsys, monkeypatch):
    import nasflow.cli as cli

    def bug(args):
        raise IndexError("list index out of range\nsecond line")

    monkeypatch.setitem(cli.COMMANDS, "schema", bug)
    code = main(["schema", "--out", "x.json"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("\n") == 1, err
    assert err.startswith("nasflow: internal error: IndexError: list index out of range")
    assert "--debug" in err
    assert "Traceback" not in err
    code = main(["schema", "--out", "x.json", "--debug"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" in err
    assert err.rstrip().endswith("report it)")
    code = main(["--debug", "schema", "--out", "x.json"])
    assert code == 1
    assert "Traceback" in capsys.readouterr().err


def test_no_traceback_from_a_subprocess(tmp_path):
    """The installed entry point, end to end: bad input -> exit 2 and one line; a bug -> exit 1,
    one line, and the traceback only with --debug."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    (tmp_path / "bad.yaml").write_bytes("search:\n  epochs: 1\n".encode("utf-16"))
    proc = subprocess.run([sys.executable, "-m", "nasflow.cli", "search", "--params", "bad.yaml",
                           "--out", "o"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert "bad.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr
    bug = ("import sys, nasflow.cli as c\n"
           "c.COMMANDS['schema'] = lambda a: {}['missing']\n"
           "sys.exit(c.main(sys.argv[1:]))\n")
    proc = subprocess.run([sys.executable, "-c", bug, "schema", "--out", "s.json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("nasflow: internal error: KeyError")
    assert "--debug" in proc.stderr
    # (the traceback with --debug: test_internal_error_is_one_line_exit_1)
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "s.json").exists()


def test_dataloader_worker_message_is_unwrapped():
    from nasflow.cli import _user_message
    from nasflow.errors import DataError

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback "
                        "(most recent call last):\n  File \"x.py\", line 1\n"
                        "nasflow.errors.DataError: img.JPEG: cannot read this image\n")
    assert _user_message(wrapped) == "img.JPEG: cannot read this image"


# ---- the loaders, directly -----------------------------------------------------------------
def test_loader_messages(tmp_path):
    from nasflow.errors import InputError
    from nasflow.loaders import clip, load_json, load_yaml, parse_yaml

    assert clip("x" * 10, 5) == "xxxxx... (10 characters)"
    assert clip("a\nb") == "a b"
    (tmp_path / "d.json").write_text('{"a": {"b": 1, "b": 2}}')
    with pytest.raises(InputError, match=r"d\.json: b: duplicate key"):
        load_json(tmp_path / "d.json")
    (tmp_path / "l.yaml").write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(InputError, match="line 2, column 7"):
        load_yaml(tmp_path / "l.yaml")
    with pytest.raises(InputError, match="is a folder"):
        load_json(tmp_path)
    assert parse_yaml("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n", "m.yaml")["other"] == {"x": 1, "y": 2}
    (tmp_path / "big.yaml").write_bytes(b"a: 1\n" + b"#" * (9 << 20))
    with pytest.raises(InputError, match="MB"):
        load_yaml(tmp_path / "big.yaml")


# ---- property-style: mutated versions of every valid input the project ships ---------------
class _Reached(BaseException):
    """Raised instead of training: the mutated input was accepted (a valid mutation)."""


_VALUES = [None, True, -1, 0, 2**70, float("inf"), float("nan"), "x" * 3000, [], {}, [1, "a"],
           "none", "../../etc", -0.5, 1.5, {"unknown": 1}]
_JUNK = ["\t", ":", "- ", "{", "[", "]", "&a ", "*a", "!!binary ", "\x00", "'", '"', "#", "\n  ",
         "---\n", "%", ",", "?", "|", "\\", "null", "<<: *x\n"]


def _leaves(data, path=()):
    if isinstance(data, dict):
        yield path, data
        for k, v in data.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(data, list):
        yield path, data
        for i, v in enumerate(data):
            yield from _leaves(v, (*path, i))
    else:
        yield path, data


def _set(data, path, value):
    if not path:
        return value
    node = data
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return data


def _mutate(rng, raw: bytes, kind: str) -> bytes:
    """One random mutation of a YAML / JSON file: of its bytes, its lines, or its structure."""
    import copy

    op = rng.randrange(10)
    if op == 0 and raw:  # one byte replaced
        i = rng.randrange(len(raw))
        return raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1:]
    if op == 1 and raw:  # truncated
        return raw[: rng.randrange(len(raw))]
    lines = raw.split(b"\n")
    if op == 2:  # a line repeated (duplicate keys) or removed
        i = rng.randrange(len(lines))
        lines[i:i + 1] = [lines[i]] * rng.choice([0, 2])
        return b"\n".join(lines)
    if op == 3:  # junk inserted
        i = rng.randrange(len(raw) + 1)
        return raw[:i] + rng.choice(_JUNK).encode() + raw[i:]
    if op == 4:  # another encoding
        text = raw.decode() + ("# r\u00e9sum\u00e9\n" if kind == "yaml" else "")
        return text.encode(rng.choice(["utf-16", "utf-16-le", "latin-1", "utf-32"]), "replace")
    data = yaml.safe_load(raw) if kind == "yaml" else json.loads(raw)
    data = copy.deepcopy(data)
    nodes = list(_leaves(data))
    path, node = rng.choice(nodes)
    if op == 5 and isinstance(node, dict):  # an unknown key
        node[rng.choice(["epochz", "nodes ", "x" * 300, "NORMAL"])] = rng.choice(_VALUES)
    elif op == 6 and isinstance(node, list) and node:  # an item dropped or repeated
        i = rng.randrange(len(node))
        node[i:i + 1] = [node[i]] * rng.choice([0, 2])
    else:  # a value (or a whole section) replaced
        data = _set(data, path, rng.choice(_VALUES))
    if kind == "yaml":
        return yaml.safe_dump(data, allow_unicode=True).encode()
    return json.dumps(data).encode()


def _check_outcome(code: int | None, err: str, out: Path) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    if code == 2:
        last = err.splitlines()[-1]
        assert last.startswith("nasflow: error: "), err
        assert len(last) < 1100, err
        assert not out.exists()
    else:
        assert code in (0, None), err


def test_mutated_inputs_never_give_a_traceback(project, capsys, monkeypatch, searched):
    """~500 mutations (fixed seed; NASFLOW_FUZZ_SEED picks another) of every params file in
    params/, a published genotype, a search record and a parent-run file, through the CLI: each
    is refused with exit 2 and one line, or accepted; never a traceback or an internal error.
    Training is stubbed out: an accepted search / retrain stops where it would start."""
    import contextlib
    import random

    import nasflow.train.retrain as retrain_mod
    import nasflow.train.search as search_mod
    from nasflow.genotype import PUBLISHED

    def reached(*a, **k):
        raise _Reached

    monkeypatch.setattr(search_mod, "run_search", reached)
    monkeypatch.setattr(retrain_mod, "run_retrain", reached)
    rng = random.Random(int(os.environ.get("NASFLOW_FUZZ_SEED", "20240607")))
    counts = {"refused": 0, "accepted": 0}

    def attempt(args: list[str], out: Path) -> None:
        try:
            code = main(args)
        except _Reached:
            code = None
        err = capsys.readouterr().err
        if code not in (0, 2, None):  # show the traceback of what escaped
            with contextlib.suppress(_Reached):
                main([*args, "--debug"])
            err += capsys.readouterr().err + f"\nargs: {args}"
        _check_outcome(code, err, out)
        counts["refused" if code == 2 else "accepted"] += 1

    files = sorted(PARAMS.rglob("*.yaml"))
    assert len(files) >= 5
    n = 0
    for f in files:
        raw = f.read_bytes()
        for _ in range(10):
            n += 1
            (project / "m.yaml").write_bytes(_mutate(rng, raw, "yaml"))
            params = ["m.yaml" if b.parent.name == f.parent.name else b for b in BASE]
            if f.parent.name not in ("datasets", "methods", "profiles"):
                params = [*BASE, "m.yaml"]
            args = ["search"]
            for p in params:
                args += ["--params", str(p)]
            for s in TINY:
                args += ["--set", s]
            attempt([*args, "--out", f"o{n}"], project / f"o{n}")
    genotype = json.dumps(PUBLISHED["DARTS_V2"].model_dump(mode="json")).encode()
    for _ in range(100):
        n += 1
        (project / "g.json").write_bytes(_mutate(rng, genotype, "json"))
        attempt(argv("retrain", "--genotype", "g.json", "--out", f"o{n}"), project / f"o{n}")
    record = (searched / "search.json").read_bytes()
    for _ in range(100):
        n += 1
        (project / "s.json").write_bytes(_mutate(rng, record, "json"))
        attempt(argv("derive", "--search", "s.json", "--out", f"o{n}.json"), project / f"o{n}.json")
    parent = json.dumps({"run_id": "0123456789abcdef0123456789abcdef", "name": "x"}).encode()
    for _ in range(30):
        n += 1
        (project / "parent.json").write_bytes(_mutate(rng, parent, "json"))
        attempt(argv("search", "--out", f"o{n}", "--parent-run-id", "parent.json"), project / f"o{n}")
    assert counts["refused"] > n // 3, counts
    assert counts["accepted"] > 0, counts
    assert not (project / "checkpoints").exists()
    assert stray(project) == []
