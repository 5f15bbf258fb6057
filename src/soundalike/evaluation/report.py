"""Evaluation reports: one markdown table (plus per-label tables), or JSON."""

from __future__ import annotations

import json
import math

from . import Row
from .metrics import bootstrap_intervals


def as_dict(row: Row) -> dict:
    r = row.retrieval
    return {"embedder": row.embedder, "aggregate": row.variant.aggregate, "hop": row.variant.hop,
            "excerpt": row.variant.excerpt, "centred": row.variant.centre, "queries": r.queries,
            **{f"precision_at_{k}": r.precision_at[k] for k in r.ks},
            "map": r.mean_average_precision, "nn_accuracy": r.nn_accuracy,
            "intervals_95": {name: list(bounds) for name, bounds in bootstrap_intervals(r).items()},
            "probe_accuracy": None if math.isnan(row.probe) else row.probe,
            "tag_roc_auc": row.tag_auc[0] if row.tag_auc else None,
            "tag_pr_auc": row.tag_auc[1] if row.tag_auc else None,
            "per_label": {label: {"queries": n, **{f"precision_at_{k}": p[k] for k in r.ks}, "ap": ap}
                          for label, (n, p, ap) in r.per_label.items()}}


def to_json(rows: list[Row], context: dict) -> str:
    return json.dumps({**context, "results": [as_dict(r) for r in rows]}, indent=2)


def _f(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def to_markdown(rows: list[Row], context: dict) -> str:
    ks = rows[0].retrieval.ks
    lines = [f"# Evaluation: {context.get('dataset', '')}", ""]
    lines += [f"- {k}: {v}" for k, v in context.items() if k != "dataset"]
    lines += ["", "Leave-one-out cosine retrieval; items of the query's own group never count; in brackets, "
              "95 % bootstrap intervals over queries. Probe: logistic regression, cross-validated by group.", ""]
    head = ["embedder", "variant", *(f"P@{k}" for k in ks), "mAP", "1-NN acc", "probe acc", "tag ROC-AUC", "tag PR-AUC"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        r = row.retrieval
        bounds = bootstrap_intervals(r)

        def cell(name: str, value: float) -> str:
            return f"{_f(value)} [{_f(bounds[name][0])}, {_f(bounds[name][1])}]"

        cells = [row.embedder, row.variant.describe(), *(cell(f"P@{k}", r.precision_at[k]) for k in ks),
                 cell("mAP", r.mean_average_precision), cell("1-NN", r.nn_accuracy), _f(row.probe),
                 _f(row.tag_auc[0] if row.tag_auc else None), _f(row.tag_auc[1] if row.tag_auc else None)]
        lines.append("| " + " | ".join(cells) + " |")
    best = max(rows, key=lambda row: row.retrieval.mean_average_precision)
    lines += ["", f"## Per label: {best.embedder} ({best.variant.describe()}), the best mAP", "",
              "| label | queries | " + " | ".join(f"P@{k}" for k in ks) + " | AP |",
              "|---|---|" + "---|" * len(ks) + "---|"]
    for label, (n, p, ap) in best.retrieval.per_label.items():
        lines.append(f"| {label} | {n} | " + " | ".join(_f(p[k]) for k in ks) + f" | {_f(ap)} |")
    return "\n".join(lines) + "\n"
