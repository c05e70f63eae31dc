"""Leaderboards: several fusion methods scored on the same pairs under one protocol.

A leaderboard folder holds one folder per method, each with ``<pair id>.<png|jpg|...>`` fused
images. Every method gets, per metric, its mean over all the pairs and its rank among the
methods (1 = best; methods with equal means share the better rank), in the direction the metric
is read: :data:`LOWER_IS_BETTER` lists the metrics where smaller is better, every other one is
better larger.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass

import numpy as np

from crossfuse import atomic
from crossfuse.errors import EvalError
from crossfuse.fusion.evaluate import MAX_WIDTH, Missing, Row, columns, missing_note
from crossfuse.manifest import IMAGE_SUFFIXES

#: Metrics read "smaller is better": the CDDFuse protocol's MSE; VIFB's cross entropy, RMSE and
#: Qcv (a weighted distance to the sources after a perceptual filter). Prefixed names
#: (``--protocol all``) follow their base name.
LOWER_IS_BETTER = {"MSE", "CE", "RMSE", "Qcv"}


def better_larger(column: str) -> bool:
    """Whether a larger value of ``column`` (a metric name, perhaps ``protocol:``-prefixed) is better."""
    return column.split(":")[-1] not in LOWER_IS_BETTER


def methods(folder: str) -> list[tuple[str, str]] | None:
    """The method folders of a leaderboard folder (sorted by name), or None when ``folder`` is one
    method's folder: it holds fused images itself, or no folders at all (then scoring it names
    the image it misses)."""
    if not os.path.isdir(folder):
        raise EvalError(f"{folder} is not a folder; --fused takes a folder of fused images <pair id>.png, or a "
                        "folder of method folders.")
    entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
    if any(os.path.splitext(e)[1].lower() in IMAGE_SUFFIXES for e in entries):
        return None
    found = [(e, os.path.join(folder, e)) for e in entries if os.path.isdir(os.path.join(folder, e))]
    return found or None


@dataclass(frozen=True, kw_only=True)
class Board:
    """Per method (in the order given): the mean of each metric and its rank."""

    columns: tuple[str, ...]
    means: dict[str, dict[str, float]]
    ranks: dict[str, dict[str, int | None]]

    def mean_rank(self, method: str) -> float:
        """The mean of the method's ranks, over the metrics it has one on (NaN when none)."""
        ranked = [r for r in self.ranks[method].values() if r is not None]
        return float(np.mean(ranked)) if ranked else math.nan

    def cell(self, method: str, column: str) -> str:
        """``mean (rank)``; a NaN mean (a 0 / 0 the protocol keeps) is unranked: ``nan (-)``."""
        rank = self.ranks[method][column]
        return f"{self.means[method][column]:.4f} ({'-' if rank is None else rank})"


def board(scored: dict[str, list[Row]]) -> Board:
    """The leaderboard of ``scored`` (method -> its rows, every method on the same pairs)."""
    names = columns(next(iter(scored.values())))
    means = {m: {c: float(np.mean([r.metrics[c] for r in rows])) for c in names} for m, rows in scored.items()}
    ranks: dict[str, dict[str, int | None]] = {m: {} for m in scored}
    for c in names:
        sign = -1.0 if better_larger(c) else 1.0
        keyed = {m: sign * means[m][c] for m in scored}
        for m in scored:  # a NaN mean is unranked, and beats nobody (NaN < x is false)
            ranks[m][c] = None if math.isnan(keyed[m]) else 1 + sum(1 for o in scored if keyed[o] < keyed[m])
    return Board(columns=names, means=means, ranks=ranks)


def _best_first(b: Board) -> list[str]:
    """Methods by mean rank, best first (ties, and a method with no rank, in the order given)."""
    def key(m: str) -> tuple[bool, float]:
        r = b.mean_rank(m)
        return (math.isnan(r), 0.0 if math.isnan(r) else r)

    return sorted(b.means, key=key)


def _arrow(column: str) -> str:
    return "↑" if better_larger(column) else "↓"


def text(b: Board, *, max_width: int = MAX_WIDTH) -> str:
    """A plain-text leaderboard: one row per method, ``mean (rank)`` per metric, best mean rank
    first; when that is wider than ``max_width`` (``--protocol all``), one row per metric and a
    column per method instead."""
    order = _best_first(b)
    width = max(len(m) for m in order + ["method"])
    cell = max(14, *(len(c) + 2 for c in b.columns))
    head = f"{'method':<{width}}  " + "  ".join(f"{c + ' ' + _arrow(c):>{cell}}" for c in b.columns) + "  mean rank"
    if len(head) > max_width:
        return _text_by_metric(b, order)
    lines = [head, "-" * len(head)]
    for m in order:
        cells = "  ".join(f"{b.cell(m, c):>{cell}}" for c in b.columns)
        lines.append(f"{m:<{width}}  {cells}  {b.mean_rank(m):9.2f}")
    return "\n".join(lines)


def _text_by_metric(b: Board, order: list[str]) -> str:
    width = max(len(c) + 2 for c in b.columns + ("mean rank",))
    cells = [max(16, len(m)) for m in order]
    head = f"{'metric':<{width}}  " + "  ".join(f"{m:>{c}}" for m, c in zip(order, cells))
    lines = [head, "-" * len(head)]
    for col in b.columns:
        lines.append(f"{col + ' ' + _arrow(col):<{width}}  " + "  ".join(
            f"{b.cell(m, col):>{c}}" for m, c in zip(order, cells)))
    lines.append("-" * len(head))
    lines.append(f"{'mean rank':<{width}}  " + "  ".join(f"{b.mean_rank(m):>{c}.2f}" for m, c in zip(order, cells)))
    return "\n".join(lines)


def _cell(name: str) -> str:
    """A method name as one Markdown table cell: HTML escaped (``<script>`` shows as text), ``|``
    escaped, line breaks as spaces."""
    flat = " ".join(html.escape(name, quote=False).replace("|", "\\|").splitlines())
    return flat or " "


def markdown(b: Board, *, skipped: list[Missing] = ()) -> str:
    """The leaderboard as a Markdown table (best mean rank first, ties in the order given; each
    cell ``mean (rank)``; method names escaped); with ``skipped`` a line naming the pairs left
    out for want of a fused image."""
    order = _best_first(b)
    lines = ["| method | " + " | ".join(f"{c} {_arrow(c)}" for c in b.columns) + " | mean rank |",
             "|---|" + "---|" * (len(b.columns) + 1)]
    for m in order:
        lines.append(f"| {_cell(m)} | " + " | ".join(b.cell(m, c) for c in b.columns)
                     + f" | {b.mean_rank(m):.2f} |")
    if skipped:
        lines += ["", html.escape(missing_note(skipped), quote=False) + " (every method was scored without them)."]
    return "\n".join(lines) + "\n"


def write_csv(scored: dict[str, list[Row]], path: str) -> None:
    """One line per method and image (``method,dataset,name,<metrics>``), full precision."""
    names = columns(next(iter(scored.values())))
    atomic.write_csv(path, ("method", "dataset", "name") + names,
                     ([method, r.dataset, r.name] + [repr(r.metrics[c]) for c in names]
                      for method, rows in scored.items() for r in rows))


def write_json(scored: dict[str, list[Row]], b: Board, path: str, *, skipped: list[Missing] = ()) -> None:
    """The leaderboard (means, ranks, mean rank, direction of each metric) and every image's
    scores; with ``skipped``, the pairs every method was scored without (``--skip-missing``)."""
    doc = {"better": {c: "larger" if better_larger(c) else "smaller" for c in b.columns},
           "methods": {m: {"means": b.means[m], "ranks": b.ranks[m], "mean_rank": b.mean_rank(m)} for m in b.means},
           "images": [{"method": m, "dataset": r.dataset, "name": r.name, **r.metrics}
                      for m, rows in scored.items() for r in rows]}
    if skipped:
        doc["skipped_missing"] = [{"dataset": g.dataset, "name": g.name} for g in skipped]
    atomic.write_json(path, doc)  # strict JSON: a NaN or infinite value is null


def write_markdown(b: Board, path: str, *, skipped: list[Missing] = ()) -> None:
    """The Markdown table of :func:`markdown`, to ``path``."""
    atomic.write_text(path, markdown(b, skipped=skipped))
