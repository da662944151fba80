"""The orders that left a book and how, oldest forgotten first, in bounded steps.

An `OrderedDict` of the last 65,536 keys, with one key in and one out per
order, rebuilds its whole table every ~110,000 orders (a 6 ms pause in the
gateway's loop). `GoneOrders` keeps the same memory in many small dicts
chosen by the key's hash plus a queue in leaving order, so no step rebuilds
more than one small dict. It remembers exactly what the OrderedDict did.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Hashable, Iterable, Iterator

SHARDS = 256                  # a power of two
_MASK = SHARDS - 1


class GoneOrders:
    """Keys of orders that left a book -> how ("filled" | "cancelled"), most
    recent last. `put` moves a key to the end and forgets the oldest beyond
    the limit it is given. Every operation is O(1) amortised."""

    __slots__ = ("shards", "queue", "live", "stamp")

    def __init__(self, items: Iterable[tuple[Hashable, Any]] = ()) -> None:
        self.shards: list[dict[Hashable, tuple[Any, int]]] = [{} for _ in range(SHARDS)]
        self.queue: deque[tuple[int, Hashable]] = deque()   # (stamp, key) in leaving order
        self.live = 0
        self.stamp = 0
        for key, how in items:
            self.put(key, how, 1 << 62)

    def get(self, key: Hashable, default: Any = None) -> Any:
        found = self.shards[hash(key) & _MASK].get(key)
        return default if found is None else found[0]

    def __contains__(self, key: Hashable) -> bool:
        return key in self.shards[hash(key) & _MASK]

    def __len__(self) -> int:
        return self.live

    def pop(self, key: Hashable, default: Any = None) -> Any:
        """Forget ``key`` (its place in the queue goes stale)."""
        found = self.shards[hash(key) & _MASK].pop(key, None)
        if found is None:
            return default
        self.live -= 1
        return found[0]

    def put(self, key: Hashable, how: Any, limit: int) -> None:
        """Remember ``key`` as the most recent; forget the oldest while more
        than ``limit`` are remembered."""
        shards, queue = self.shards, self.queue
        shard = shards[hash(key) & _MASK]
        if shard.pop(key, None) is not None:
            self.live -= 1
        stamp = self.stamp = self.stamp + 1
        shard[key] = (how, stamp)
        queue.append((stamp, key))
        self.live += 1
        while queue:                  # the front: the oldest, or a stale place
            first, old = queue[0]
            old_shard = shards[hash(old) & _MASK]
            found = old_shard.get(old)
            if found is not None and found[1] == first:
                if self.live <= limit:
                    break
                del old_shard[old]
                self.live -= 1
            queue.popleft()
        if len(queue) > 2 * self.live + 1024:   # stale places behind a long-remembered key
            self.queue = deque((s, k) for s, k in queue
                               if shards[hash(k) & _MASK].get(k, (None, 0))[1] == s)

    def items(self) -> Iterator[tuple[Hashable, Any]]:
        """Yield (key, how), oldest first. O(remembered + stale places)."""
        shards = self.shards
        for stamp, key in self.queue:
            found = shards[hash(key) & _MASK].get(key)
            if found is not None and found[1] == stamp:
                yield key, found[0]

    def __reduce__(self) -> tuple[Any, ...]:
        return (GoneOrders, (list(self.items()),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GoneOrders):
            return NotImplemented
        return list(self.items()) == list(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"GoneOrders({list(self.items())!r})"
