"""Summaries of score lists and the plain-text / markdown tables every report is made of."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

SUMMARY_COLUMNS = ("best", "mean", "median", "min", "std")


@dataclass
class Table:
    """A small table of already formatted cells, rendered as aligned text or as markdown.

    Cells are strings so that each producer decides its own number format once; the renderers only
    lay them out.
    """

    headers: list[str]
    rows: list[list[str]]
    title: str | None = None
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table {self.title!r}: row {i} has {len(row)} cells, "
                                 f"the header has {len(self.headers)}")

    def text(self) -> str:
        """Aligned plain text: first column left-aligned (labels), the others right (numbers)."""
        cells = [self.headers] + self.rows
        widths = [max(len(str(r[c])) for r in cells) for c in range(len(self.headers))]

        def line(row: Sequence[str]) -> str:
            parts = [str(row[0]).ljust(widths[0])]
            parts += [str(v).rjust(w) for v, w in zip(row[1:], widths[1:])]
            return "  ".join(parts).rstrip()

        out = [self.title] if self.title else []
        out.append(line(self.headers))
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in self.rows]
        out += self.notes
        return "\n".join(out)

    def markdown(self) -> str:
        """GitHub-flavoured markdown; numeric columns right-aligned like the text form."""
        out = [f"**{self.title}**", ""] if self.title else []
        out.append("| " + " | ".join(self.headers) + " |")
        out.append("|" + "|".join([":---"] + ["---:"] * (len(self.headers) - 1)) + "|")
        out += ["| " + " | ".join(str(v) for v in r) + " |" for r in self.rows]
        if self.notes:
            out += [""] + self.notes
        return "\n".join(out)

    def __str__(self) -> str:
        return self.text()


def summary(values: Iterable[float]) -> dict[str, float]:
    """best (max), mean, median, min and std of a list of scores, as in RPG Table 1.

    std is the population standard deviation (ddof=0): one sampled model then has std 0 instead
    of an undefined value, and the number describes the spread of exactly the models evaluated.
    An empty list gives NaN everywhere rather than an exception, so a report can still be written.
    """
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.size == 0:
        return {k: math.nan for k in SUMMARY_COLUMNS}
    return {
        "best": float(arr.max()),
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "min": float(arr.min()),
        "std": float(arr.std(ddof=0)),
    }


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction in [0, 1] as a percentage string; '-' where there is no number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100.0 * value:.{digits}f}"


def num(value: float | None, digits: int = 3) -> str:
    """A plain number with fixed decimals; '-' where there is no number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def comparison_table(original_scores: Sequence[float], generated_scores: Sequence[float],
                     metric: str = "accuracy") -> Table:
    """RPG Table 1 layout: rows original / generated; columns best, mean, median, min, std (%)."""
    rows = []
    for name, scores in (("original", original_scores), ("generated", generated_scores)):
        s = summary(scores)
        rows.append([name, str(len(scores))] + [pct(s[c]) for c in SUMMARY_COLUMNS])
    return Table(headers=["models", "n"] + [f"{c} (%)" for c in SUMMARY_COLUMNS], rows=rows,
                 title=f"{metric.replace('_', ' ')} of original vs generated models")
