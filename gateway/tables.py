"""Tables of the gateway's loop that grow by one entry per order, built so that
no single insert ever pauses the loop for a rebuild of the whole table.

A dict grows by rebuilding itself whole at 2/3 full (a day's client ids: 4 ms
at 87,000, 15 ms at 350,000, ~60 ms at 1.4 million), and a dict with one
entry in and one out per order rebuilds itself every ~110,000 orders (3 ms at
65,536 entries). Each such pause delays every order queued behind it.
"""

from __future__ import annotations

from typing import Any, Iterator

ID_SHARDS = 4096               # a power of two


class ClientIds:
    """The client ids of one trading day: (user, client id) -> (seq, command).
    Kept in `ID_SHARDS` dicts chosen by the key's hash, so an insert rebuilds
    at most one of them (a 4096th of the day). O(1) to add and look up."""

    __slots__ = ("shards",)

    def __init__(self) -> None:
        self.shards: list[dict[tuple[str, str], tuple[int, Any]]] = [
            {} for _ in range(ID_SHARDS)]

    def get(self, key: tuple[str, str]) -> tuple[int, Any] | None:
        return self.shards[hash(key) & (ID_SHARDS - 1)].get(key)

    def put(self, key: tuple[str, str], value: tuple[int, Any]) -> None:
        self.shards[hash(key) & (ID_SHARDS - 1)][key] = value

    def __len__(self) -> int:
        return sum(map(len, self.shards))

    def items(self) -> Iterator[tuple[tuple[str, str], tuple[int, Any]]]:
        """Yield every (key, value), in no meaningful order."""
        for shard in self.shards:
            yield from shard.items()


class RecentResults:
    """The (ts, events) of the last ``size`` journal entries by seq, in a
    fixed ring: adding one drops the one ``size`` back. O(1), no rebuild."""

    __slots__ = ("mask", "slots")

    def __init__(self, size: int) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("size must be a power of two")
        self.mask = size - 1
        self.slots: list[tuple[int, int, list[Any]] | None] = [None] * size

    def put(self, seq: int, ts: int, events: list[Any]) -> None:
        self.slots[seq & self.mask] = (seq, ts, events)

    def get(self, seq: int) -> tuple[int, list[Any]] | None:
        """Return (ts, events) of entry ``seq`` if it is still kept."""
        slot = self.slots[seq & self.mask]
        if slot is None or slot[0] != seq:
            return None
        return slot[1], slot[2]

    def __contains__(self, seq: int) -> bool:
        slot = self.slots[seq & self.mask]
        return slot is not None and slot[0] == seq
