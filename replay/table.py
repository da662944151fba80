"""Print rows for people (aligned text), spreadsheets (CSV) or programs (JSON lines).

A table is a list of column names and a list of rows (dicts) of raw
values. Amounts stay int minor units in CSV and JSON; text output prints
the columns named in ``money`` with two decimals and thousands separators
and right-aligns numeric columns.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
from typing import Any, Iterable, TextIO

FORMATS = ("text", "csv", "json")


# Text output sizes its columns from the first rows; later ones stream out
# with those widths (a wider value pushes its line out), so a history of
# millions of rows is written in constant memory.
WIDTH_ROWS = 10_000


def write(columns: list[str], rows: Iterable[dict[str, Any]], fmt: str = "text",
          out: TextIO | None = None, *, title: str = "", money: Iterable[str] = ()) -> None:
    """Write ``rows`` in ``fmt`` to ``out`` (stdout), as they come: memory
    O(`WIDTH_ROWS`) whatever the number of rows."""
    out = out or sys.stdout
    if fmt == "json":
        for row in rows:
            out.write(json.dumps({c: row.get(c) for c in columns}, ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        return
    if title:
        out.write(title + "\n")
    from replay.source import money as show_money
    amounts = set(money)

    def cells_of(row: dict[str, Any]) -> list[str]:
        return [show_money(row.get(c)) if c in amounts and isinstance(row.get(c), int)
                else _text(row.get(c)) for c in columns]
    rows = iter(rows)
    first = [cells_of(row) for row in itertools.islice(rows, WIDTH_ROWS)]
    widths = [max([len(c)] + [len(r[i]) for r in first]) for i, c in enumerate(columns)]
    numeric = [all(_numeric(r[i]) for r in first if r[i]) and any(r[i] for r in first)
               for i in range(len(columns))]
    out.write("  ".join(c.rjust(w) if n else c.ljust(w)
                        for c, w, n in zip(columns, widths, numeric)).rstrip() + "\n")
    for r in itertools.chain(first, map(cells_of, rows)):
        out.write("  ".join(v.rjust(w) if n else v.ljust(w)
                            for v, w, n in zip(r, widths, numeric)).rstrip() + "\n")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _numeric(text: str) -> bool:
    stripped = text.replace(",", "").replace(".", "").replace("-", "", 1)
    return stripped.isdigit()
