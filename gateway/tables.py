"""Tables of the gateway's loop that grow by one entry per order, built so that
no single insert ever pauses the loop for a rebuild of the whole table.

A dict grows by rebuilding itself whole at 2/3 full (a day's client ids: 4 ms
at 87,000, 15 ms at 350,000, ~60 ms at 1.4 million), and a dict with one
entry in and one out per order rebuilds itself every ~110,000 orders (3 ms at
65,536 entries). Each such pause delays every order queued behind it.
"""

from __future__ import annotations

import bisect
from array import array
from typing import Any, Iterator

from exchange.codec import decode_entry
from gateway import protocol as p
from recorder.format import KIND_ENTRY

ID_SHARDS = 64                 # a power of two: 1,024 or 4,096 cost 2 us per order end to end
ID_MASK = ID_SHARDS - 1
ID_JOIN = "\x1f"               # in no user id and no client id (printable ASCII)


def id_key(user: str, client_id: str) -> str:
    """Return the key of ``user``'s ``client_id``: one string, ~140 bytes an
    id with its table entry and seq, against ~215 as a (user, id) tuple."""
    return f"{user}{ID_JOIN}{client_id}"


class ClientIds:
    """The client ids of one trading day: `id_key` (user, client id) -> journal
    seq. Kept in `ID_SHARDS` dicts chosen by the key's hash, so an insert
    rebuilds at most one of them (a 64th of the day: ~1 ms at a million ids).
    O(1) to add and look up; the server's hot path indexes ``shards`` itself
    with ``hash(key) & ID_MASK``. String hashes differ between processes, so
    a table read back from a snapshot is sorted into shards anew (`from_shards`)."""

    __slots__ = ("shards",)

    def __init__(self) -> None:
        self.shards: list[dict[str, int]] = [{} for _ in range(ID_SHARDS)]

    @classmethod
    def from_shards(cls, shards: list[dict[str, int]]) -> "ClientIds":
        """Return a table of the items of ``shards`` (another process's), each
        in the shard this process's hash picks. O(ids): ~0.2 s a million."""
        ids = cls()
        mine = ids.shards
        for shard in shards:
            for key, value in shard.items():
                mine[hash(key) & ID_MASK][key] = value
        return ids

    def get(self, key: str) -> int | None:
        return self.shards[hash(key) & ID_MASK].get(key)

    def put(self, key: str, value: int) -> None:
        self.shards[hash(key) & ID_MASK][key] = value

    def __len__(self) -> int:
        return sum(map(len, self.shards))

    def items(self) -> Iterator[tuple[str, int]]:
        """Yield every (key, value), in no meaningful order."""
        for shard in self.shards:
            yield from shard.items()


class RecentResults:
    """The (ts, events, command) of the last ``size`` journal entries by seq,
    in a fixed ring: adding one drops the one ``size`` back. O(1), no rebuild."""

    __slots__ = ("mask", "slots")

    def __init__(self, size: int) -> None:
        if size < 1 or size & (size - 1):
            raise ValueError("size must be a power of two")
        self.mask = size - 1
        self.slots: list[tuple[int, int, list[Any], Any] | None] = [None] * size

    def put(self, seq: int, ts: int, events: list[Any], cmd: Any) -> None:
        self.slots[seq & self.mask] = (seq, ts, events, cmd)

    def get(self, seq: int) -> tuple[int, list[Any]] | None:
        """Return (ts, events) of entry ``seq`` if it is still kept."""
        slot = self.slots[seq & self.mask]
        if slot is None or slot[0] != seq:
            return None
        return slot[1], slot[2]

    def original(self, seq: int) -> tuple[Any, list[Any]] | None:
        """Return (command, events) of entry ``seq`` if it is still kept."""
        slot = self.slots[seq & self.mask]
        if slot is None or slot[0] != seq:
            return None
        return slot[3], slot[2]

    def __contains__(self, seq: int) -> bool:
        slot = self.slots[seq & self.mask]
        return slot is not None and slot[0] == seq


MARK_EVERY = 64                # Market messages per remembered seq beyond the ring
# Journal entries per remembered (seq, the Market message before it), whether
# or not they published anything: a reading of the journal for a replay starts
# at most this many entries before what it is asked for (the journal's own
# index starts a read at most 128 records before), so private-only entries
# (rejects, sealed bids) cannot make one request read an unbounded run.
ENTRY_MARK_EVERY = 128


class FeedRing:
    """The Market messages sent, for replay requests: the last ``size`` in
    memory with their seqs, and the seq of every `MARK_EVERY`-th message ever
    sent, where a reading of the journal for older ones starts (8 bytes per 64
    messages for the server's life, not 8 per message), and every
    `ENTRY_MARK_EVERY`-th journal entry with the Market message before it
    (`mark_entry`, 16 bytes per 128 entries), so that a reading starts close
    to where it is asked whatever the entries between hold. Appending is O(1)
    amortised: the oldest go ``slack`` at a time, never half the ring at once."""

    __slots__ = ("size", "slack", "cap", "seqs", "msgs", "marks", "count", "entry_seqs",
                 "entry_prevs")

    def __init__(self, size: int, slack: int = 1024) -> None:
        self.size = size
        self.slack = slack
        self.cap = size + min(slack, size)
        self.seqs: list[int] = []          # of the messages in memory, ascending
        self.msgs: list[bytes] = []        # encoded, in the same order
        self.marks = array("q")            # seq of the 0th, 64th, 128th ... message sent
        self.count = 0                     # messages sent, ever
        self.entry_seqs = array("q")       # journal entries marked, ascending ...
        self.entry_prevs = array("q")      # ... and the last Market seq before each

    def mark_entry(self, seq: int, prev: int) -> None:
        """Remember that the last Market message before journal entry ``seq``
        was ``prev`` (0: none): a reading of the journal may start there. O(1)."""
        seqs = self.entry_seqs
        if not seqs or seqs[-1] < seq:
            seqs.append(seq)
            self.entry_prevs.append(prev)

    def append(self, seq: int, data: bytes) -> None:
        if not self.count % MARK_EVERY:
            self.marks.append(seq)
        self.count += 1
        self.seqs.append(seq)
        self.msgs.append(data)
        self.trim()

    def trim(self) -> None:
        """Drop the oldest beyond ``size`` once more than ``cap`` are kept."""
        if len(self.msgs) > self.cap:
            self._keep_last(self.size)

    def resize(self, size: int) -> None:
        """Keep ``size`` messages from now on (a changed ``feed_ring``)."""
        self.size = size
        self.cap = size + min(self.slack, size)
        self._keep_last(size)

    def _keep_last(self, size: int) -> None:
        drop = len(self.msgs) - size
        if drop > 0:
            del self.seqs[:drop]
            del self.msgs[:drop]

    def first_kept(self) -> int:
        """Return the seq of the oldest message in memory (0 if none)."""
        return self.seqs[0] if self.seqs else 0

    def position(self, seq: int) -> int:
        """Return the index in memory of the first message at or after ``seq``. O(log n)."""
        return bisect.bisect_left(self.seqs, seq)

    def mark_before(self, seq: int) -> int:
        """Return the seq of the last marked message before ``seq`` (0 if none):
        a journal reading from there meets every message from ``seq`` on and
        knows the one before it. O(log marks)."""
        k = bisect.bisect_left(self.marks, seq)
        return self.marks[k - 1] if k else 0

    def read_start(self, first: int, origin: int = 1) -> tuple[int, int]:
        """Return where a journal reading for the messages from ``first`` on
        starts and the ``prev`` it starts with: the later of the last marked
        message and the last marked entry before ``first``, else ``origin``.
        O(log marks)."""
        start, prev = self.mark_before(first) or origin, 0
        seqs = self.entry_seqs
        k = bisect.bisect_left(seqs, first)
        if k and seqs[k - 1] > start:
            start, prev = seqs[k - 1], self.entry_prevs[k - 1]
        return start, prev

    def from_journal(self, journal: Any, first: int, last: int,
                     origin: int = 1) -> Iterator[tuple[int, bytes | None]]:
        """Yield (seq, Market message) of the journal entries first..last, the
        message rebuilt as it was sent, None for an entry without public
        events: reading starts at the last mark before ``first`` (`read_start`)
        to learn the ``prev`` of the first one, else at ``origin``, the entry
        the feed started from (its first message has ``prev`` 0). O(entries
        from the mark on)."""
        start, prev = self.read_start(first, origin)
        for record in journal.read(start):
            if record.seq > last:
                return
            public = []
            if record.kind == KIND_ENTRY:
                entry = decode_entry(record.payload)
                public = [e for e in entry.events if not e.to]
            if record.seq >= first:
                yield record.seq, (p.encode(p.Market(seq=record.seq, prev=prev,
                                                     ts=entry.env.ts, events=public))
                                   if public else None)
            if public:
                prev = record.seq
