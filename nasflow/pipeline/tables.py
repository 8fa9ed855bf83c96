"""Tables: a Markdown table of aggregates (one row per method), and the paper tables: ours
beside the published numbers, one structure rendered as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nasflow.pipeline.config import PublishedEntry
from nasflow.pipeline.records import STD_KIND, read_record, write_record


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pm(stats: dict[str, Any], digits: int = 2) -> str:
    if stats["mean"] is None:
        return "-"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _cost_cell(cost: dict[str, Any]) -> str:
    gpu = cost["gpu_days"]
    if gpu["mean"] is not None:
        return f"{gpu['mean']:.2f} GPU-d"
    wall = cost["wall_time_s"]["mean"]
    if wall is None:
        return "-"
    if wall < 120:
        return f"{wall:.0f} s"
    return f"{wall / 60:.1f} min" if wall < 7200 else f"{wall / 3600:.1f} h"


def markdown_table(aggregates: Sequence[dict[str, Any]], title: str = "") -> str:
    """A Markdown table of aggregated records (one row per method). The header says N, the
    std convention and the selection, so mean-of-N and best-of-N are never mixed silently."""
    if not aggregates:
        raise ValueError("markdown_table: no records")
    for key in ("profile", "dataset"):
        vals = {a[key] for a in aggregates}
        if len(vals) > 1:
            raise ValueError(f"markdown_table: rows mix {key}s {sorted(vals)}")
    selections = {a["test_error"]["selection"] for a in aggregates}
    if len(selections) > 1:
        raise ValueError(f"markdown_table: rows mix test-error selections {sorted(selections)}")
    selection = selections.pop()
    a0 = aggregates[0]
    sel = ("final-epoch weights" if selection == "final"
           else "best epoch over retraining (selected on the test set)")
    lines = [f"## {title or a0['dataset']}", "",
             f"Dataset `{a0['dataset']}`, profile `{a0['profile']}`. Test error (%) of the "
             f"{sel}: mean ± std over N seeds (std: {STD_KIND}); *best of N* is the single best "
             "seed, reported separately. Params: "
             f"{a0.get('params_convention') or 'millions'}. MACs: multiply-accumulates (M). "
             "Cost: mean wall time per seed (GPU-days on a GPU).", "",
             "| Method | Test err. (%) mean ± std | Best of N (%) | N | Seeds | Params (M) | "
             "MACs (M) | Search cost | Retrain cost | Search device |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for a in aggregates:
        best = a["best_seed"]
        best_cell = "-" if best is None else f"{best['top1']:.2f} (seed {best['seed']})"
        lines.append(
            f"| {a['method']} | {_pm(a['test_error']['top1'])} | {best_cell} | {a['n_seeds']} | "
            f"{','.join(map(str, a['seeds']))} | {_pm(a['params_m'], 3)} | "
            f"{_fmt(a['macs_m']['mean'], 1)} | {_cost_cell(a['search_cost'])} | "
            f"{_cost_cell(a['retrain_cost'])} | {'; '.join(a['search_cost']['devices'])} |")
    return "\n".join(lines) + "\n"


# ---- the papers' numbers beside ours -------------------------------------------------------
def _ours(a: dict[str, Any] | None) -> dict[str, Any]:
    if a is None:
        return {"mean": None, "std": None, "best": None, "n": None, "top5": None,
                "params_m": None, "search_cost": None}
    te, best = a["test_error"], a["best_seed"] or {}
    return {"mean": te["top1"]["mean"], "std": te["top1"]["std"], "best": best.get("top1"),
            "best_seed": best.get("seed"), "n": a["n_seeds"], "seeds": a["seeds"],
            "top5": te["top5"]["mean"], "params_m": a["params_m"]["mean"],
            "search_cost": _cost_cell(a["search_cost"])}


def _paper(e: PublishedEntry | None) -> dict[str, Any]:
    if e is None:
        return {"mean": None, "std": None, "best": None, "n": None, "top5": None,
                "params_m": None, "params_convention": None, "gpu_days": None, "source": None}
    return e.model_dump()


def build_paper_table(spec: dict[str, Any], aggregates: dict[tuple[str, str], dict[str, Any]],
                      published: dict[str, dict[str, PublishedEntry]]) -> dict[str, Any]:
    """Rows of a paper table: ours (from the aggregates, keyed (dataset, result name)) beside
    the paper's numbers (``published[dataset][method]``). One structure, three renderings
    (Markdown, CSV, JSON), so the twins always hold the same rows."""
    aggs = list(aggregates.values())
    if not aggs:
        raise ValueError("paper table: no records")
    for key in ("profile",):
        vals = {a[key] for a in aggs}
        if len(vals) > 1:
            raise ValueError(f"paper table: rows mix {key}s {sorted(vals)}")
    selections = {a["test_error"]["selection"] for a in aggs}
    if len(selections) > 1:
        raise ValueError(f"paper table: rows mix test-error selections {sorted(selections)}")
    ns = sorted({a["n_seeds"] for a in aggs})
    if len(ns) > 1:
        raise ValueError(f"paper table: rows mix numbers of seeds {ns}")
    result = dict(zip(spec["methods"], spec["results"], strict=False))

    def row(method: str, label: str) -> dict[str, Any]:
        return {"label": label, "method": method,
                "ours": {d: _ours(aggregates.get((d, result[method]))) for d in spec["datasets"]},
                "paper": {d: _paper(published.get(d, {}).get(method))
                          for d in spec["paper_datasets"]}}

    grid = spec.get("grid")
    if grid:
        rows = [{"label": f"{grid['row_param']}={rv}",
                 "cells": [row(m, f"{grid['col_param']}={cv}")
                           for cv, m in zip(grid["cols"], ms, strict=False)]}
                for rv, ms in zip(grid["rows"], grid["methods"], strict=False)]
    else:
        rows = [row(m, spec["labels"].get(m, m)) for m in spec["methods"]]
    return {"table": spec.get("name"), "title": spec["title"], "profile": aggs[0]["profile"],
            "datasets": spec["datasets"], "paper_datasets": spec["paper_datasets"],
            "source": spec.get("source"), "overridden": spec.get("overridden", []),
            "selection": selections.pop(), "n_seeds": ns[0], "std": STD_KIND,
            "grid": grid, "rows": rows}


def _err_cell(c: dict[str, Any]) -> str:
    if c.get("mean") is None:
        return "-"
    return f"{c['mean']:.2f}" if c.get("std") is None else f"{c['mean']:.2f} ± {c['std']:.2f}"


def _columns(t: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(header, side, dataset, field) of a non-grid table, ours and paper side by side."""
    cols = []
    pairs = ([(d, d) for d in t["datasets"]] if t["datasets"] == t["paper_datasets"]
             else [(d, None) for d in t["datasets"]] + [(None, p) for p in t["paper_datasets"]])
    for d, p in pairs:
        if d is not None:
            cols += [(f"ours {d}", "ours", d, "err"), (f"ours {d} best", "ours", d, "best"),
                     (f"ours {d} params (M)", "ours", d, "params_m"),
                     (f"ours {d} search cost", "ours", d, "search_cost")]
        if p is not None:
            cols += [(f"paper {p}", "paper", p, "err"), (f"paper {p} best", "paper", p, "best"),
                     (f"paper {p} params (M)", "paper", p, "params_m"),
                     (f"paper {p} search cost (GPU-d)", "paper", p, "gpu_days")]
    return cols


def _cell(c: dict[str, Any], field: str, dataset: str = "") -> str:
    if field == "err":
        text = _err_cell(c)
        # top-1 / top-5 as the papers print ImageNet; CIFAR-style tables show top-1 only
        if dataset == "imagenet" and c.get("top5") is not None and text != "-":
            text += f" / {c['top5']:.1f}"
        return text
    v = c.get(field)
    if v is None:
        return "-"
    if field == "params_m":
        return f"{v:.2f}" + (f" ({c['params_convention']})" if c.get("params_convention")
                             else "")
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def paper_table_header(t: dict[str, Any]) -> str:
    sel = ("final-epoch weights" if t["selection"] == "final"
           else "best epoch over retraining (selected on the test set)")
    over = (f" Overridden on the command line: {', '.join(t['overridden'])} (the paper columns "
            "keep the paper's datasets)." if t["overridden"] else "")
    src = f" Cells searched on `{t['source']}`." if t.get("source") else ""
    return (f"Profile `{t['profile']}`, ours on {', '.join(t['datasets'])}.{src}{over} "
            f"**ours**: test error (%) of the {sel}, mean ± {t['std']} over N={t['n_seeds']} "
            "seeds; best = the best single seed; ImageNet-style cells read top-1 / top-5. "
            "Params: ours in the DARTS convention (no auxiliary head, /1e6). **paper**: the "
            "published numbers (mean ± std over 8 seeds where the paper reports it; its own "
            "params convention, in brackets).")


def paper_table_markdown(t: dict[str, Any]) -> str:
    lines = [f"## {t['title']}", "", paper_table_header(t), ""]
    if t["grid"]:
        g = t["grid"]
        head = ([f"ours {g['col_param']}={c}" for c in g["cols"]]
                + [f"paper {g['col_param']}={c}" for c in g["cols"]])
        lines += [f"| {g['row_param']} \\ {g['col_param']} | " + " | ".join(head) + " |",
                  "|---" * (len(head) + 1) + "|"]
        for r in t["rows"]:
            ours = [_err_cell(next(iter(c["ours"].values()))) for c in r["cells"]]
            paper = [_err_cell(next(iter(c["paper"].values()))) for c in r["cells"]]
            lines.append(f"| {r['label']} | " + " | ".join(ours + paper) + " |")
    else:
        cols = _columns(t)
        lines += ["| Method | " + " | ".join(h for h, *_ in cols) + " |",
                  "|---" * (len(cols) + 1) + "|"]
        for r in t["rows"]:
            lines.append(f"| {r['label']} | " + " | ".join(
                _cell(r[side][d], f, d) for _, side, d, f in cols) + " |")
    return "\n".join(lines) + "\n"


def paper_table_csv(t: dict[str, Any]) -> str:
    """The Markdown rows, with numbers in their own columns (mean, std, best, ...)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = ("mean", "std", "best", "n", "top5", "params_m")
    if t["grid"]:
        g = t["grid"]
        header = [g["row_param"]]
        for side in ("ours", "paper"):
            header += [f"{side} {g['col_param']}={c} {f}" for c in g["cols"]
                       for f in ("mean", "std", "n")]
        w.writerow(header)
        for r in t["rows"]:
            out = [r["label"].split("=", 1)[1]]
            for side in ("ours", "paper"):
                for c in r["cells"]:
                    v = next(iter(c[side].values()))
                    out += [v.get(f) for f in ("mean", "std", "n")]
            w.writerow(["" if v is None else v for v in out])
        return buf.getvalue()
    groups = [("ours", d) for d in t["datasets"]] + [("paper", p) for p in t["paper_datasets"]]
    header = ["label", "method"]
    for side, d in groups:
        header += [f"{side} {d} {f}" for f in fields]
    w.writerow(header)
    for r in t["rows"]:
        out = [r["label"], r["method"]]
        for side, d in groups:
            out += [r[side][d].get(f) for f in fields]
        w.writerow(["" if v is None else v for v in out])
    return buf.getvalue()


def write_paper_table(spec: dict[str, Any], results: str | Path,
                      out_md: str | Path) -> dict[str, Any]:
    """Read the aggregates of `spec` (PipelineConfig.table, with its published numbers) under
    ``results``; write <out>.md, .csv and .json."""
    from nasflow.io import write_text

    pub = {d: {m: PublishedEntry.model_validate(e) for m, e in ms.items()}
           for d, ms in spec.get("published", {}).items()}
    aggs = {}
    for d in spec["datasets"]:
        for r in spec["results"]:
            aggs[(d, r)] = read_record(Path(results) / spec["profile"] / f"{d}_{r}.json")
    t = build_paper_table(spec, aggs, pub)
    out_md = Path(out_md)
    write_text(out_md, paper_table_markdown(t))
    write_text(out_md.with_suffix(".csv"), paper_table_csv(t))
    write_record(out_md.with_suffix(".json"), t)
    return t
