"""Print rows for people (aligned text), spreadsheets (CSV) or programs (JSON lines).

A table is a list of column names and a list of rows (dicts) of raw
values. Amounts stay int minor units in CSV and JSON; text output prints
the columns named in ``money`` with two decimals and thousands separators
and right-aligns numeric columns.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import Any, Iterable, TextIO

FORMATS = ("text", "csv", "json")


def write(columns: list[str], rows: Iterable[dict[str, Any]], fmt: str = "text",
          out: TextIO | None = None, *, title: str = "", money: Iterable[str] = ()) -> None:
    """Write ``rows`` in ``fmt`` to ``out`` (stdout)."""
    out = out or sys.stdout
    rows = list(rows)
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
    cells = [[show_money(row.get(c)) if c in amounts and isinstance(row.get(c), int)
              else _text(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(_numeric(r[i]) for r in cells if r[i]) and any(r[i] for r in cells)
               for i in range(len(columns))]
    out.write("  ".join(c.rjust(w) if n else c.ljust(w)
                        for c, w, n in zip(columns, widths, numeric)).rstrip() + "\n")
    for r in cells:
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
