"""Reading every file a user can hand nasflow, checked at the boundary.

Each loader checks, in order, that the path is a readable regular file of a sane size, that
its bytes are UTF-8 text (not binary, UTF-16 or Latin-1), its syntax (YAML / JSON), that no
mapping repeats a key (PyYAML and ``json`` let the later value win silently), and then its
type and shape (pydantic models, tensor shapes). Every failure is one :class:`InputError`
that names the file and the key or field, with echoed values cut short.

Records (search records, supernets, weights) carry ``made_for``: the config values they were
made with (:func:`made_for`). Consumers check them against their own params
(:func:`check_made_for`, :func:`check_search_record`, :func:`check_state_dict`) before any
tensor is loaded, so a file from another configuration gives "search.json: made with
space.nodes = 2, params say space.nodes = 4", not an ``IndexError`` deep inside.

API:

* text: :func:`read_text`, :func:`decode_text`
* YAML: :func:`load_yaml`, :func:`parse_yaml`
* JSON: :func:`load_json`, :func:`parse_json`, :func:`load_model` (JSON validated by a pydantic
  model), :func:`validate`
* records: :func:`made_for`, :data:`MADE_FOR`, :func:`check_made_for`,
  :func:`check_search_record`, :func:`load_search_record`, :func:`load_parent_run`,
  :func:`load_retrain_record`
* tensors: :func:`check_state_dict`, :func:`check_tensor_shapes` (:func:`nasflow.io.load_weights`
  reads weights with them)
* messages: :func:`clip`, :func:`one_line`
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from nasflow.errors import InputError

_M = TypeVar("_M", bound=BaseModel)

KB, MB = 1 << 10, 1 << 20
YAML_LIMIT = 8 * MB  # a params file is a few KB
JSON_LIMIT = 512 * MB  # a search record with a long history is a few MB
YAML_MAX_VALUES = 200_000  # values after alias expansion ("billion laughs" guard)
ECHO_LIMIT = 80  # characters of a user's value echoed in a message


# ---- messages ------------------------------------------------------------------------------
def clip(text: Any, limit: int = ECHO_LIMIT) -> str:
    """``text`` on one line, cut to about ``limit`` characters (saying how long it was)."""
    text = one_line(str(text))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def one_line(text: str) -> str:
    """Line breaks and tabs become spaces, so that an error is one line."""
    return " ".join(str(text).split()) if any(c in str(text) for c in "\n\r\t\v\f") else str(text)


def _fmt(value: Any, limit: int = ECHO_LIMIT) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return clip(text, limit)


# ---- text ----------------------------------------------------------------------------------
_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"), (b"\xff\xfe", "UTF-16"),
)


def read_bytes(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> bytes:
    """The bytes of a regular file; a missing path, a folder, a device, an unreadable or an
    over-large file is an :class:`InputError` naming it."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise InputError(p, f"{what} not found") from None
    except NotADirectoryError:
        raise InputError(p, f"{what} not found (a part of the path is a file, not a folder)") from None
    except PermissionError:
        raise InputError(p, f"{what} cannot be read (permission denied)") from None
    except OSError as exc:
        raise InputError(p, f"{what} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(p, f"is a folder, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(p, f"is not a regular file (a device, pipe or socket), not a {what}")
    if limit is not None and st.st_size > limit:
        raise InputError(p, f"is {st.st_size / MB:.1f} MB, more than a {what} can be "
                            f"({limit / MB:.0f} MB): wrong file?")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise InputError(p, f"{what} cannot be read ({exc.strerror or exc})") from None


def decode_text(data: bytes, source: str | os.PathLike, what: str = "file") -> str:
    """UTF-8 text (a UTF-8 BOM is dropped); binary, UTF-16/32 and other encodings are refused
    with the position of the first bad byte."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise InputError(source, f"{what} is {name} text; save it as UTF-8")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data:
        head = data[:512]
        quarter = len(head) // 4
        if len(head) >= 4 and (head[1::2].count(0) >= quarter or head[0::2].count(0) >= quarter):
            raise InputError(source, f"{what} looks like UTF-16 text; save it as UTF-8")
        offset = data.index(b"\x00")
        raise InputError(source, f"{what} is a binary file, not text (NUL byte at offset {offset})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise InputError(source, f"{what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at line "
                                 f"{line}, column {col}); save it as UTF-8 (it may be Latin-1 or "
                                 "another legacy encoding)") from None


def read_text(path: str | os.PathLike, what: str = "file", limit: int | None = None) -> str:
    return decode_text(read_bytes(path, what, limit), path, what)


# ---- YAML ----------------------------------------------------------------------------------
def parse_yaml(text: str, source: str | os.PathLike, what: str = "YAML") -> Any:
    """Safe YAML with every mapping's keys unique (at any depth, named by their path), alias
    expansion bounded, and any parser / constructor failure as one :class:`InputError`."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader checks the characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_yaml_nodes(loader, node, source)
        return loader.construct_document(node)
    except InputError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(parse)"
        problem = exc.problem or exc.context or "syntax error"
        raise InputError(source, f"not valid {what}: {clip(problem, 200)}", key=where) from None
    except yaml.reader.ReaderError as exc:
        ch = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise InputError(source, f"not valid {what}: character #x{ch:04x} is not allowed in YAML "
                                 "(a control character?)", key=f"offset {exc.position}") from None
    except yaml.YAMLError as exc:
        raise InputError(source, f"not valid {what}: {clip(exc, 200)}") from None
    except RecursionError:
        raise InputError(source, f"not valid {what}: nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. int() of a 5,000-digit number
        raise InputError(source, f"not valid {what}: a value cannot be read ({clip(exc, 120)})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _check_yaml_nodes(loader, root, source) -> None:
    import yaml

    sizes: dict[int, int] = {}
    in_progress: set[int] = set()
    # iterative post-order walk: duplicate keys (with their path) and expanded size
    stack: list[tuple[Any, tuple[str, ...], bool]] = [(root, (), False)]
    while stack:
        node, path, done = stack.pop()
        nid = id(node)
        if done:
            in_progress.discard(nid)
            children = _yaml_children(node)
            sizes[nid] = 1 + sum(sizes[id(c)] for c, _ in children)
            if sizes[nid] > YAML_MAX_VALUES:
                raise InputError(source, f"expands to more than {YAML_MAX_VALUES:,} values "
                                         "(anchors and aliases); not a params file?")
            continue
        if nid in sizes:
            continue
        if nid in in_progress:
            raise InputError(source, "an alias refers to the collection it is in (recursive "
                                     "anchor)", key=_join(path) or None)
        in_progress.add(nid)
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    where = f"{_join(path) or '(top level)'} (line {key_node.start_mark.line + 1})"
                    raise InputError(source, "a key is a list or mapping; keys must be plain values",
                                     key=where)
                key = loader.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise InputError(source, f"duplicate key (lines {seen[key]} and {line}); the "
                                             "later one would silently win: keep one",
                                     key=_join((*path, str(key))))
                seen[key] = line
        stack.append((node, path, True))
        for child, sub in _yaml_children(node, path):
            if id(child) not in sizes:
                stack.append((child, sub, False))


def _yaml_children(node, path: tuple[str, ...] = ()) -> list[tuple[Any, tuple[str, ...]]]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        out = []
        for k, v in node.value:
            name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
            out.append((k, (*path, name)))
            out.append((v, (*path, name)))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [(v, (*path, f"[{i}]")) for i, v in enumerate(node.value)]
    return []


def _join(path: Iterable[str]) -> str:
    out = ""
    for part in path:
        out += part if part.startswith("[") or not out else f".{part}"
    return out


def load_yaml(path: str | os.PathLike, what: str = "YAML file", limit: int = YAML_LIMIT) -> Any:
    return parse_yaml(read_text(path, what, limit), path, "YAML")


# ---- JSON ----------------------------------------------------------------------------------
class _DuplicateKey(Exception):
    def __init__(self, key: str):
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_json(text: str, source: str | os.PathLike) -> Any:
    """JSON with unique keys; syntax errors give line and column."""
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except _DuplicateKey as exc:
        raise InputError(source, "duplicate key in one object; the later one would silently win",
                         key=clip(exc.key)) from None
    except json.JSONDecodeError as exc:
        raise InputError(source, f"not valid JSON: {exc.msg}",
                         key=f"line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise InputError(source, "not valid JSON: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # int() of a 5,000-digit number
        raise InputError(source, f"not valid JSON: a value cannot be read ({clip(exc, 120)})") from None


def load_json(path: str | os.PathLike, what: str = "JSON file", limit: int = JSON_LIMIT) -> Any:
    return parse_json(read_text(path, what, limit), path)


def loc_key(loc: Sequence[Any]) -> str:
    """pydantic's ``("normal", 3, 1)`` as ``normal[3][1]``."""
    return _join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc)


def validate(model: type[_M], data: Any, source: str | os.PathLike, what: str | None = None,
             prefix: str = "") -> _M:
    """``model.model_validate(data)``; the first error as an :class:`InputError` naming the
    field (``history[3].probabilities``), with the number of further errors."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        err = errors[0]
        key = _join(filter(None, [prefix, loc_key(err["loc"])])) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        if err["type"] == "finite_number":
            msg = (f"is {clip(err.get('input'), 20)}, not a finite number "
                   "(NaN or infinity: did the run diverge?)")
        if err["type"] in ("model_type", "dict_type") and not err["loc"] and what:
            msg = f"{msg}: not a {what}?"
        if len(errors) > 1:
            msg += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise InputError(source, clip(msg, 300), key=clip(key, 120)) from None


def load_model(path: str | os.PathLike, model: type[_M], what: str | None = None) -> _M:
    """A JSON file validated by a pydantic model (``what`` names the expected kind of file)."""
    return validate(model, load_json(path, f"{what or 'JSON'} file"), path, what)


# ---- made_for: what a record was made with -------------------------------------------------
#: the config keys that shape each kind of record (prefixes: a whole section, or one key)
MADE_FOR: dict[str, tuple[str, ...]] = {
    # search.json, supernet.pt: the space, the supernet's size and the data it classifies
    "search": ("dataset.name", "space", "search.layers", "search.init_channels"),
    # what derive needs to match: the space only (dvc.yaml tracks `space` and `derive` for it)
    "derive": ("space",),
    # model.pt (retrain): the network's architecture and the data it classifies
    "retrain": ("dataset.name", "retrain.network", "retrain.layers", "retrain.init_channels",
                "retrain.auxiliary"),
}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def made_for(config: Any, keys: Iterable[str]) -> dict[str, Any]:
    """The values of ``keys`` (sections or dotted keys) of a run config, flattened, as plain
    JSON data: what a record carries under ``made_for`` and what a consumer expects there.
    ``config`` is a :class:`~nasflow.config.RunConfig` or its resolved dict."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else dict(config)
    flat = flatten(data)
    out: dict[str, Any] = {}
    for key in keys:
        hits = {k: v for k, v in flat.items() if k == key or k.startswith(f"{key}.")}
        out.update(hits)
    return out


def check_made_for(found: Any, expected: Mapping[str, Any] | None, source: str | os.PathLike,
                   what: str = "file") -> None:
    """Refuse a record whose ``made_for`` differs from ``expected`` on a key both have (a
    record without ``made_for``, from an older nasflow, is checked by shape only)."""
    if not expected or found is None:
        return
    if not isinstance(found, Mapping):
        raise InputError(source, f"must be a mapping of config keys, not {type(found).__name__}",
                         key="made_for")
    found = flatten(found)
    wrong = [k for k, v in expected.items() if k in found and not _same(found[k], v)]
    if not wrong:
        return
    k = wrong[0]
    more = f" (and {len(wrong) - 1} more: {', '.join(wrong[1:4])}{', ...' if len(wrong) > 4 else ''})" \
        if len(wrong) > 1 else ""
    raise InputError(source, f"{what} was made with {k} = {_fmt(found[k])}, params say "
                             f"{k} = {_fmt(expected[k])}{more}; pass the params it was made "
                             "with, or make it again with these")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


# ---- search records ------------------------------------------------------------------------
Matrix = list[list[float]]


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class SearchHistoryEntry(_Loose):
    epoch: int | None = None
    probabilities: dict[str, Matrix] | None = None
    alpha_grad_abs: dict[str, Matrix] | None = None


class SearchRecord(_Loose):
    """The fields of a ``search.json`` that derive / analyze read (others are kept). ``alphas``
    holds one matrix per cell type, and may hold method-specific values (``beta.normal``)."""

    alphas: dict[str, Any]
    edge_ops: dict[str, list[list[str]]]
    probabilities: dict[str, Matrix] | None = None
    history: list[SearchHistoryEntry] = []
    genotype: dict[str, Any] | None = None
    method: str | None = None
    made_for: dict[str, Any] | None = None


class _Matrices(RootModel[dict[str, Matrix]]):
    model_config = ConfigDict(allow_inf_nan=False)


def record_made_for(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a record says it was made with, as flat config keys: its ``made_for``, or the
    fields a search record carries (``space``, ``space_params``, ``supernet_size``)."""
    out: dict[str, Any] = {}
    if isinstance(record.get("space_params"), Mapping):
        out.update(flatten(record["space_params"], "space."))
    if isinstance(record.get("space"), str):
        out["space.name"] = record["space"]
    size = record.get("supernet_size")
    if isinstance(size, Mapping):
        out.update(flatten(size, "search."))
    if isinstance(record.get("dataset"), str):
        out["dataset.name"] = record["dataset"]
    made = record.get("made_for")
    if made is not None and not isinstance(made, Mapping):
        return made  # check_made_for names the wrong type
    out.update(flatten(made or {}))
    return out or None


def check_search_record(record: Any, source: str | os.PathLike,
                        expected: Mapping[str, Any] | None = None,
                        edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None) -> dict:
    """Validate a search record (as read from JSON) and check it against the configuration.

    * shape: ``alphas`` and ``edge_ops`` name the same cell types; per cell one alpha row per
      edge, rows of equal length covering the edge's ops, finite values; ``probabilities``
      (top level and per history epoch) of the same shape.
    * ``expected``: config values it must have been made with (``made_for(config,
      MADE_FOR["derive"])``), checked against the record's ``made_for``.
    * ``edge_ops``: the configured space's op lists per cell type (``space.edge_ops``); the
      record's must be the same (edge count and ops).

    Returns the record (a dict) unchanged.
    """
    if not isinstance(record, Mapping):
        raise InputError(source, f"a search record is a JSON object, not {_kind(record)}; "
                                 "not a search.json?")
    if "alphas" not in record or "edge_ops" not in record:
        missing = [k for k in ("alphas", "edge_ops") if k not in record]
        raise InputError(source, "missing; not a search.json?", key=", ".join(missing))
    check_made_for(record_made_for(record), expected, source, "this search record")
    rec = validate(SearchRecord, record, source, "search record")
    cells = list(rec.edge_ops)
    if not cells:
        raise InputError(source, "no cell types", key="edge_ops")
    missing = [c for c in cells if c not in rec.alphas]
    if missing:
        raise InputError(source, f"no alphas for cell type(s) {', '.join(missing)} of edge_ops",
                         key="alphas")
    alphas = validate(_Matrices, {c: rec.alphas[c] for c in cells}, source, prefix="alphas")
    for cell in cells:
        ops = rec.edge_ops[cell]
        for e, edge in enumerate(ops):
            if not edge:
                raise InputError(source, "an edge without ops", key=f"edge_ops.{cell}[{e}]")
        _check_matrix(alphas.root[cell], ops, source, f"alphas.{cell}")
        if rec.probabilities is not None:
            _check_matrix(rec.probabilities.get(cell), ops, source, f"probabilities.{cell}")
        width = len(alphas.root[cell][0]) if alphas.root[cell] else 0
        for i, h in enumerate(rec.history):
            for field in ("probabilities", "alpha_grad_abs"):
                mats = getattr(h, field)
                if mats is None:
                    continue
                _check_matrix(mats.get(cell), ops, source, f"history[{i}].{field}.{cell}", width)
    if edge_ops is not None:
        _check_edge_ops(rec.edge_ops, edge_ops, source)
    return dict(record)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_matrix(rows: Matrix | None, ops: list[list[str]], source, key: str,
                  width: int | None = None) -> None:
    if rows is None:
        raise InputError(source, "missing for this cell type", key=key)
    if len(rows) != len(ops):
        raise InputError(source, f"{len(rows)} rows, but edge_ops has {len(ops)} edges", key=key)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise InputError(source, f"rows of different lengths {sorted(widths)}", key=key)
    w = widths.pop() if widths else 0
    if width is not None and w != width:
        raise InputError(source, f"rows of {w} values, the alphas have {width}", key=key)
    for e, edge in enumerate(ops):
        if w < len(edge):
            raise InputError(source, f"{w} values for the {len(edge)} ops of this edge",
                             key=f"{key}[{e}]")


def _check_edge_ops(found: Mapping[str, list[list[str]]], want: Mapping[str, Sequence[Sequence[str]]],
                    source) -> None:
    if set(found) != set(want):
        raise InputError(source, f"made for cell types {sorted(found)}, the params' space has "
                                 f"{sorted(want)}", key="edge_ops")
    for cell, ops in want.items():
        got = found[cell]
        if len(got) != len(ops):
            raise InputError(source, f"made for a space with {len(got)} edges per {cell} cell, the "
                                     f"params' space has {len(ops)} (another space.nodes?)",
                             key=f"edge_ops.{cell}")
        for e, (a, b) in enumerate(zip(got, ops, strict=True)):
            if list(a) != list(b):
                raise InputError(source, f"made for the ops {_fmt(list(a))}, the params' space has "
                                         f"{_fmt(list(b))} (another space.variant / op set?)",
                                 key=f"edge_ops.{cell}[{e}]")


def load_search_record(path: str | os.PathLike, expected: Mapping[str, Any] | None = None,
                       edge_ops: Mapping[str, Sequence[Sequence[str]]] | None = None) -> dict:
    """Read and check a ``search.json`` (see :func:`check_search_record`)."""
    return check_search_record(load_json(path, "search record"), path, expected, edge_ops)


# ---- other JSON files ----------------------------------------------------------------------
class ParentRunFile(BaseModel):
    """What ``nasflow track-parent`` writes."""

    model_config = ConfigDict(extra="allow")
    run_id: str | None
    name: str | None = None


def load_parent_run(path: str | os.PathLike) -> str | None:
    """The run id in a ``track-parent`` file (None when tracking was disabled)."""
    data = load_json(path, "parent-run file")
    if not isinstance(data, Mapping):
        raise InputError(path, f"a parent-run file is a JSON object {{\"run_id\": ...}}, not "
                               f"{_kind(data)}; written by `nasflow track-parent`?")
    return validate(ParentRunFile, data, path, "parent-run file").run_id


class RetrainRecord(_Loose):
    """The fields of a ``retrain.json`` that evaluate reads."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=True)
    best_test_acc: float | None = None
    best_epoch: int | None = None
    final_test_acc: float | None = None
    genotype: dict[str, Any] | None = None


def load_retrain_record(path: str | os.PathLike) -> dict:
    data = load_json(path, "retrain record")
    if not isinstance(data, Mapping):
        raise InputError(path, f"a retrain record is a JSON object, not {_kind(data)}")
    validate(RetrainRecord, data, path, "retrain record")
    return dict(data)


# ---- tensors -------------------------------------------------------------------------------
def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def check_tensor_shapes(found: Any, expected: Mapping[str, tuple[int, ...]], source,
                        key: str = "model", hint: str = "") -> None:
    """``found`` maps names to tensors whose shapes must equal ``expected`` (names and shapes).
    ``hint`` names the params that set the shapes, for the message."""
    hint = f" ({hint})" if hint else ""
    if not isinstance(found, Mapping):
        raise InputError(source, f"must map names to tensors, not {_kind(found)}", key=key)
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} tensor(s) of the configured network "
                         f"(e.g. {clip(missing[0])})")
        if extra:
            parts.append(f"has {len(extra)} the configured network lacks (e.g. {clip(extra[0])})")
        raise InputError(source, f"made for another network: it {' and '.join(parts)}{hint}",
                         key=key)
    for name, want in expected.items():
        got = _shape(found[name])
        if got is None:
            raise InputError(source, f"is {_kind(found[name])}, not a tensor",
                             key=f"{key}.{clip(name)}")
        if got != tuple(want):
            raise InputError(source, f"shape {list(got)} in the file, the configured network needs "
                                     f"{list(want)}: made for another network{hint}",
                             key=f"{key}.{clip(name)}")


def check_state_dict(found: Any, model: Any, source, key: str = "model", hint: str = "") -> None:
    """Check a state dict read from ``source`` against ``model`` (a ``torch.nn.Module``, or a
    mapping of names to tensors / shapes) before ``load_state_dict``: same names, same shapes."""
    ref = model.state_dict() if hasattr(model, "state_dict") else model
    expected = {k: (_shape(v) if _shape(v) is not None else tuple(v)) for k, v in ref.items()}
    check_tensor_shapes(found, expected, source, key, hint)
