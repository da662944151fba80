"""The gateway's per-order tables: client ids of a day in shards, the recent
results in a fixed ring, the feed ring with its marks."""

from __future__ import annotations

import os
import random

import pytest

from gateway.tables import ID_SHARDS, MARK_EVERY, ClientIds, FeedRing, RecentResults, id_key

SEED = int(os.environ.get("TABLES_SEED", "20261130"))


def test_client_ids_hold_what_a_dict_holds():
    rnd = random.Random(SEED)
    ids, ref = ClientIds(), {}
    for step in range(20000):
        key = id_key(rnd.choice(("b1", "b2", "op")), f"c-{rnd.randrange(5000)}")
        if rnd.random() < 0.5:
            ids.put(key, step)
            ref[key] = step
        assert ids.get(key) == ref.get(key), f"seed {SEED} step {step}"
    assert len(ids) == len(ref)
    assert dict(ids.items()) == ref
    assert sum(1 for shard in ids.shards if shard) > ID_SHARDS // 2   # spread out


def test_client_ids_from_another_processs_shards_are_found_here():
    """A snapshot's shards were chosen by another process's string hashes."""
    import pickle
    import subprocess
    import sys
    script = ("import pickle, sys; from gateway.tables import ClientIds, id_key; ids = ClientIds()\n"
              "for n in range(2000): ids.put(id_key('b1', f'c-{n}'), n)\n"
              "sys.stdout.buffer.write(pickle.dumps(ids.shards))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    shards = pickle.loads(subprocess.run([sys.executable, "-c", script], check=True,
                                         capture_output=True, env=env).stdout)
    ids = ClientIds.from_shards(shards)
    assert all(ids.get(id_key("b1", f"c-{n}")) == n for n in range(2000))
    assert len(ids) == 2000 and ids.get(id_key("b2", "c-1")) is None
    assert id_key("b1", "c-1") != id_key("b1c", "-1")


def test_recent_results_keep_the_last_size_entries():
    recent = RecentResults(8)
    for seq in range(1, 21):
        recent.put(seq, seq * 10, [f"event {seq}"], f"command {seq}")
    assert [seq for seq in range(1, 21) if seq in recent] == list(range(13, 21))
    assert recent.get(13) == (130, ["event 13"])
    assert recent.get(12) is None and recent.get(21) is None and 5 not in recent
    assert recent.original(20) == ("command 20", ["event 20"])
    assert recent.original(12) is None and recent.original(21) is None


def test_every_entry_of_a_turn_is_among_the_recent_results():
    """A resend within a turn finds the original command in memory: a turn
    (at most max_backlog entries and one Batch more) fits in the ring."""
    from gateway.config import MAX_BACKLOG
    from gateway.protocol import MAX_BATCH
    from gateway.server import RECENT_RESULTS
    assert MAX_BACKLOG + MAX_BATCH <= RECENT_RESULTS


def test_recent_results_need_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        RecentResults(1000)


def test_feed_ring_keeps_the_last_messages_and_marks_every_64th():
    ring = FeedRing(100, slack=10)
    seqs = list(range(3, 3 + 3 * 1000, 3))          # 1,000 messages, seqs 3, 6, 9 ...
    for seq in seqs:
        ring.append(seq, b"m%d" % seq)
        assert 100 <= len(ring.msgs) <= 110 or len(ring.msgs) == ring.count
        assert ring.seqs == seqs[ring.count - len(ring.seqs):ring.count]
    assert ring.msgs == [b"m%d" % seq for seq in ring.seqs]
    assert list(ring.marks) == seqs[::MARK_EVERY] and ring.count == 1000
    assert ring.first_kept() == ring.seqs[0]
    assert ring.seqs[ring.position(ring.seqs[5] - 1)] == ring.seqs[5]
    assert ring.mark_before(seqs[0]) == 0
    assert ring.mark_before(seqs[MARK_EVERY]) == seqs[0]
    assert ring.mark_before(seqs[MARK_EVERY] + 1) == seqs[MARK_EVERY]


def test_feed_ring_resized():
    ring = FeedRing(50)
    seqs = list(range(1, 301))
    for seq in seqs:
        ring.append(seq, b"m%d" % seq)
    ring.resize(20)
    assert ring.seqs == seqs[-20:] and len(ring.msgs) == 20
    ring.append(301, b"m301")
    assert ring.seqs[-1] == 301 and ring.count == 301


def test_a_log_budget_writes_so_many_lines_a_window_then_counts_the_rest():
    from gateway.logs import LogBudget
    budget = LogBudget(per_window=2, window_ns=100)
    assert [budget.allow("b1", t) for t in (0, 10, 20, 30)] == [
        (True, 0), (True, 0), (False, 0), (False, 0)]
    assert budget.allow("b2", 40) == (True, 0)           # keys apart
    assert budget.allow("b1", 100) == (True, 2)          # a new window says what went unwritten
    assert budget.allow("b1", 150) == (True, 0)
    assert budget.allow("b1", 250) == (True, 0)          # nothing left unwritten


def test_nanosecond_times_in_texts_print_as_utc_iso_times():
    from gateway.console import humane_times
    assert humane_times("expiry 1764526800500000000 is not after now (1764526800000000000)") \
        == "expiry 2025-11-30T18:20:00.5Z is not after now (2025-11-30T18:20:00Z)"
    # amounts (at most 16 digits), ids and decimals stay as they are
    assert humane_times("amount 1000000000000000, seq 17, 1.764526800500000000") == \
        "amount 1000000000000000, seq 17, 1.764526800500000000"
    # an id holding such a number is no time
    assert humane_times("lot LOT-1764526800000000000 (1764526800000000000_b)") == \
        "lot LOT-1764526800000000000 (1764526800000000000_b)"


def test_an_events_row_shows_its_time_fields_as_times_and_nothing_else():
    """A name or id holding a 19-digit number stays as written (the whole row
    once went through the text's time finder: LOT-2025-11-30T18:20:00Z, an id
    that does not exist); the time fields, nested ones too, read as times."""
    from exchange.commands import LotTerms
    from exchange.events import BidAccepted, LotScheduled, PartyRegistered
    from gateway.console import struct_text
    from gateway.console_cli import _describe
    assert _describe(PartyRegistered(party=4, name="Fund 1764526800500000000", country="",
                                     broker="b1")) == \
        "PartyRegistered(party=4, name=Fund 1764526800500000000)"
    assert _describe(BidAccepted(serial="LOT-1764526800000000000", session="S", paddle=7,
                                 price=5, leader=7, reserve_met=True,
                                 closes_at=1764526800500000000, bids=1)) == \
        ("BidAccepted(paddle=7, serial=LOT-1764526800000000000, price=5, leader=7, "
         "reserve_met=True, closes_at=2025-11-30T18:20:00.5Z)")
    terms = LotTerms(title="T 1764526800000000000", currency="USD", opens_at=1764526800000000000)
    text = struct_text(LotScheduled(serial="L", session="S", terms=terms))
    assert "title=T 1764526800000000000" in text and "opens_at=2025-11-30T18:20:00Z" in text


def test_a_past_days_client_ids_are_freed_a_bounded_number_at_a_time():
    from gateway.server import Server
    server = Server.__new__(Server)                 # only its table of ids to free
    server.ids_dropping = [{f"k{t}-{n}": n for n in range(size)}
                           for t, size in enumerate((5, 30_000, 12_000))]
    sizes = []
    while server.ids_dropping:
        before = sum(map(len, server.ids_dropping))
        server._free_ids(10_000)
        sizes.append(before - sum(map(len, server.ids_dropping)))
    assert sizes == [10_000, 10_000, 10_000, 10_000, 2_005]


class _CountingJournal:
    """A journal of entries whose public events the test chooses; counts the
    records a reading hands out."""

    def __init__(self, public: list[bool]) -> None:
        from exchange.codec import Entry, encode_entry
        from exchange.commands import RULES, Envelope, RegisterParty
        from exchange.events import DisplayRateSet, PartyRegistered
        from recorder.format import KIND_ENTRY, Record
        self.records = []
        for seq, is_public in enumerate(public, start=1):
            event = (DisplayRateSet(base="USD", quote="CNY", num=seq, den=1) if is_public else
                     PartyRegistered(party=seq, name="p", country="US", broker="b1",
                                     to=("b1",)))
            env = Envelope(seq=seq, ts=seq, actor="b1", role="broker",
                           cmd=RegisterParty(name="p"), client_id="", rules=RULES)
            self.records.append(Record(seq=seq, ts=seq, kind=KIND_ENTRY,
                                       payload=encode_entry(Entry(env, [event])), chain=b""))
        self.read_out = 0

    def read(self, from_seq: int):
        for record in self.records[from_seq - 1:]:
            self.read_out += 1
            yield record


def test_a_journal_reading_for_a_replay_starts_at_most_an_entry_mark_before():
    """Marks of Market messages are every 64th message, so a long run of
    private-only entries lies between two of them; the ring also marks every
    ENTRY_MARK_EVERY-th entry with the Market message before it, and a
    reading starts at the later mark: what it reads before ``first`` is at
    most ENTRY_MARK_EVERY - 1 entries, and every message comes out as a
    reading from the feed's first entry makes it."""
    from gateway.tables import ENTRY_MARK_EVERY
    rng = random.Random(SEED)
    public = [True] * 70 + [False] * 3000 + [rng.random() < 0.3 for _ in range(400)]
    journal = _CountingJournal(public)
    ring = FeedRing(0)
    last_public = 0
    for seq, is_public in enumerate(public, start=1):
        if not seq % ENTRY_MARK_EVERY:                   # as the server's _apply does
            ring.mark_entry(seq, last_public)
        if is_public:
            ring.append(seq, b"")
            last_public = seq
    whole = dict(FeedRing(0).from_journal(journal, 1, len(public)))   # no marks: from 1
    for first in (71, 72, 200, 1500, 3069, 3070, 3071, 3100, len(public)):
        journal.read_out = 0
        start, _ = ring.read_start(first)
        got = list(ring.from_journal(journal, first, first + 5))
        assert first - ENTRY_MARK_EVERY < start <= first
        assert journal.read_out <= first - start + 7       # what it read, one past the end
        assert got == [(seq, whole[seq]) for seq in range(first, min(first + 5,
                                                                      len(public)) + 1)]
