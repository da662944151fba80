"""Bid-increment tables: price band -> minimum increment.

A table is a tuple of ``(band floor, increment)`` pairs in minor units,
floors ascending from 0; the increment at a price is that of the highest
floor at or below it. Named tables:

- ``ebay2003``: eBay's table of 2003 (see tests/data/ebay-auctions/README.md),
  in US cents; used to replay real eBay auctions.
- ``otba``: Ocean Tomo Bid-Ask's flat $30,000 (3,000,000 cents) at every price.
- ``custom``: the lot's own ``custom_increments``.

Lookup is O(log bands) with `bisect`.
"""

from __future__ import annotations

from bisect import bisect_right

from exchange.errors import MAX_INT, Reject

TABLES: dict[str, tuple[tuple[int, int], ...]] = {
    "ebay2003": (
        (0, 5),             # 0.01 - 0.99      -> 0.05
        (100, 25),          # 1.00 - 4.99      -> 0.25
        (500, 50),          # 5.00 - 24.99     -> 0.50
        (2_500, 100),       # 25.00 - 99.99    -> 1.00
        (10_000, 250),      # 100.00 - 249.99  -> 2.50
        (25_000, 500),      # 250.00 - 499.99  -> 5.00
        (50_000, 1_000),    # 500.00 - 999.99  -> 10.00
        (100_000, 2_500),   # 1,000 - 2,499.99 -> 25.00
        (250_000, 5_000),   # 2,500 - 4,999.99 -> 50.00
        (500_000, 10_000),  # 5,000 and up     -> 100.00
    ),
    "otba": ((0, 3_000_000),),
}


def resolve(name: str, custom: tuple[tuple[int, int], ...] = ()) -> tuple[tuple[int, int], ...]:
    """Return the table called ``name`` (``custom`` for the lot's own), or reject."""
    if name == "custom":
        validate(custom)
        return tuple((int(floor), int(step)) for floor, step in custom)
    table = TABLES.get(name)
    if table is None:
        raise Reject("bad_field", f"unknown increment table {name!r}; known: "
                                  f"{', '.join(sorted(TABLES))}, custom")
    return table


def validate(table: tuple[tuple[int, int], ...]) -> None:
    """Reject a table that does not start at 0, rise strictly, or has a non-positive step."""
    if not table:
        raise Reject("bad_field", "a custom increment table needs at least one band")
    if table[0][0] != 0:
        raise Reject("bad_field", "the first increment band must start at 0")
    previous = -1
    for floor, step in table:
        if floor <= previous:
            raise Reject("bad_field", "increment band floors must rise strictly")
        if step <= 0:
            raise Reject("non_positive", f"increment {step} must be greater than zero")
        if floor > MAX_INT or step > MAX_INT:
            raise Reject("out_of_range", f"increment band {floor}:{step} is above {MAX_INT}")
        previous = floor


class Ladder:
    """A table ready for lookups: floors and steps in two lists. O(log bands)."""

    __slots__ = ("floors", "steps")

    def __init__(self, table: tuple[tuple[int, int], ...]) -> None:
        self.floors = [floor for floor, _ in table]
        self.steps = [step for _, step in table]

    def at(self, price: int) -> int:
        """Return the increment at ``price``."""
        return self.steps[bisect_right(self.floors, price) - 1] if price >= 0 else self.steps[0]

    def __reduce__(self):  # pickled as its table
        return (Ladder, (tuple(zip(self.floors, self.steps)),))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Ladder) and self.floors == other.floors
                and self.steps == other.steps)

    __hash__ = None  # type: ignore[assignment]
