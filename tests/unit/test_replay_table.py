"""Replay's tables for people, spreadsheets and programs (`replay.table`)."""

from __future__ import annotations


def test_replay_tables_stream_their_rows():
    """A history of millions of rows is written as it is read: CSV and JSON
    row by row, text after sizing its columns on the first WIDTH_ROWS."""
    import io

    from replay import table
    pulled = [0]

    def rows(n: int):
        for i in range(n):
            pulled[0] += 1
            yield {"seq": i, "what": "x" * (3 if i < 10 else 12)}

    class Out(io.StringIO):
        seen: list[int] = []

        def write(self, text: str) -> int:
            self.seen.append(pulled[0])
            return super().write(text)

    for fmt, most in (("csv", 1), ("json", 1), ("text", table.WIDTH_ROWS)):
        pulled[0] = 0
        out = Out()
        Out.seen = []
        table.write(["seq", "what"], rows(table.WIDTH_ROWS + 5_000), fmt, out)
        assert Out.seen[0] <= most, fmt            # something out before the rest is read
        lines = out.getvalue().splitlines()
        assert len(lines) == table.WIDTH_ROWS + 5_000 + (fmt != "json")   # + a header
        assert "x" * 12 in lines[-1]                 # wider than the sized column: whole
