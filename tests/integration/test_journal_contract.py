"""The journal interface, checked the same way against every backend.

`JournalContract` holds the tests; each backend subclass says how to open,
reopen after a crash, and break a sync. A new backend passes when a
subclass of `JournalContract` for it passes.
"""

from __future__ import annotations

import os

import pytest

from exchange.codec import Entry, decode_entry, encode_entry
from exchange.commands import Envelope, RegisterParty
from exchange.events import PartyRegistered
from recorder import format as fmt
from recorder.journal import Journal, JournalFailed, RecordTooLarge
from recorder.memory import MemoryJournal, MemoryStorage

MODES = ("group", "every", "none")


def reference_chain(records: list[tuple[int, int, bytes]]) -> str:
    """Chain hash of records (ts, kind, payload) numbered from 1, computed from the format spec."""
    chain = fmt.GENESIS
    for seq, (ts, kind, payload) in enumerate(records, start=1):
        _, chain = fmt.encode_record(seq, ts, kind, payload, chain)
    return chain.hex()


class JournalContract:
    """Tests every journal backend must pass."""

    def open(self, **options):  # -> journal over this test's storage
        raise NotImplementedError

    def open_readonly(self):
        raise NotImplementedError

    def crash(self, journal) -> None:
        """Drop the journal as a killed process would: no commit, no close."""
        raise NotImplementedError

    def break_sync(self, monkeypatch) -> None:
        """Make every later sync fail."""
        raise NotImplementedError

    # ------------------------------------------------------------------

    def test_first_seq_is_one_and_seqs_follow(self):
        journal = self.open()
        assert journal.last_seq == 0 and journal.durable_seq == 0
        assert journal.head_hash == fmt.GENESIS.hex()
        assert [journal.append(100 + i, 1, b"p%d" % i) for i in range(5)] == [1, 2, 3, 4, 5]
        assert journal.last_seq == 5
        journal.close()

    @pytest.mark.parametrize("mode", ["group", "none"])
    def test_records_are_durable_only_after_commit(self, mode):
        journal = self.open(durability=mode)
        journal.append(1, 1, b"a")
        journal.append(2, 1, b"b")
        assert journal.durable_seq == 0
        assert journal.commit() == 2 and journal.durable_seq == 2
        journal.append(3, 1, b"c")
        assert journal.durable_seq == 2
        self.crash(journal)
        reopened = self.open(durability=mode)
        assert [r.payload for r in reopened.read()] == [b"a", b"b"]
        assert reopened.last_seq == 2
        reopened.close()

    def test_every_mode_makes_each_append_durable(self):
        journal = self.open(durability="every")
        journal.append(1, 1, b"a")
        assert journal.durable_seq == 1
        journal.append(2, 1, b"b")
        assert journal.durable_seq == 2
        self.crash(journal)
        reopened = self.open(durability="every")
        assert [r.seq for r in reopened.read()] == [1, 2]
        reopened.close()

    def test_commit_with_nothing_buffered_returns_durable_seq(self):
        journal = self.open()
        assert journal.commit() == 0
        journal.append(5, 1, b"x")
        journal.commit()
        assert journal.commit() == 1
        journal.close()

    @pytest.mark.parametrize("mode", MODES)
    def test_read_returns_each_record_as_appended(self, mode):
        journal = self.open(durability=mode)
        written = [(1_000 + 7 * i, 1 + i % 3, os.urandom(i % 40)) for i in range(300)]
        for ts, kind, payload in written:
            journal.append(ts, kind, payload)
        journal.commit()
        records = list(journal.read())
        assert [(r.ts, r.kind, r.payload) for r in records] == written
        assert [r.seq for r in records] == list(range(1, 301))
        assert records[-1].chain.hex() == journal.head_hash == reference_chain(written)
        journal.close()

    def test_read_from_seq_and_from_ts(self):
        journal = self.open()
        for i in range(1, 3001):
            journal.append(i * 10, 1, b"%d" % i)
        journal.commit()
        assert [r.seq for r in journal.read(2999)] == [2999, 3000]
        assert next(iter(journal.read(from_ts=12_345))).seq == 1235
        assert next(iter(journal.read(from_ts=10))).seq == 1
        assert next(iter(journal.read(1500, from_ts=10))).seq == 1500
        assert next(iter(journal.read(10, from_ts=20_000))).seq == 2000
        assert list(journal.read(3001)) == []
        assert list(journal.read(from_ts=30_001)) == []
        assert len(list(journal.read(0))) == 3000
        journal.close()

    def test_read_from_ts_keeps_every_record_after_the_first_match(self):
        journal = self.open()
        for ts in (5, 50, 7, 60, 8):
            journal.append(ts, 1, b"")
        journal.commit()
        assert [r.ts for r in journal.read(from_ts=50)] == [50, 7, 60, 8]
        journal.close()

    def test_verified_read_checks_the_chain(self):
        journal = self.open()
        for i in range(50):
            journal.append(i, 1, b"v%d" % i)
        journal.commit()
        assert [r.seq for r in journal.read(verify_chain=True)] == list(range(1, 51))
        journal.close()

    def test_same_appends_give_the_same_head_on_every_backend(self):
        journal = self.open()
        written = [(i, 1, b"same-%d" % i) for i in range(20)]
        for ts, kind, payload in written:
            journal.append(ts, kind, payload)
        journal.commit()
        assert journal.head_hash == reference_chain(written)
        journal.close()

    @pytest.mark.parametrize("mode", MODES)
    def test_append_many_is_that_many_appends(self, mode):
        records = [(1000 + i, b"payload %d " % i * (i % 7 + 1)) for i in range(3000)]
        journal = self.open(durability=mode)
        journal.append(999, 2, b"first")
        assert journal.append_many(1, records[:1500]) == 1501
        assert journal.append_many(1, []) == 1501
        assert journal.append_many(1, records[1500:]) == 3001
        journal.commit()
        expected = [(999, 2, b"first")] + [(ts, 1, payload) for ts, payload in records]
        assert journal.head_hash == reference_chain(expected)
        assert [(r.seq, r.ts, r.kind, r.payload) for r in journal.read(1)] == \
            [(seq, *rec) for seq, rec in enumerate(expected, start=1)]
        assert [r.seq for r in journal.read(from_ts=2500)] == list(range(1502, 3002))
        journal.close()
        reopened = self.open()
        assert reopened.last_seq == 3001 and reopened.head_hash == reference_chain(expected)
        reopened.close()

    def test_append_many_refuses_a_record_too_large_keeping_those_before(self):
        journal = self.open(max_record=64)
        with pytest.raises(RecordTooLarge):
            journal.append_many(1, [(1, b"a"), (2, b"b" * 65), (3, b"c")])
        assert journal.last_seq == 1
        journal.commit()
        assert [r.payload for r in journal.read(1)] == [b"a"]
        journal.close()

    def test_reopening_continues_seq_and_chain(self):
        journal = self.open()
        for i in range(10):
            journal.append(i, 1, b"first")
        journal.close()
        journal = self.open()
        assert journal.last_seq == journal.durable_seq == 10
        assert journal.append(99, 1, b"second") == 11
        journal.commit()
        written = [(i, 1, b"first") for i in range(10)] + [(99, 1, b"second")]
        assert journal.head_hash == reference_chain(written)
        journal.close()

    def test_max_record_is_enforced_on_write(self):
        journal = self.open(max_record=100)
        journal.append(1, 1, b"x" * 100)
        with pytest.raises(RecordTooLarge):
            journal.append(2, 1, b"x" * 101)
        assert journal.append(3, 1, b"ok") == 2   # still usable, nothing skipped
        journal.commit()
        assert [len(r.payload) for r in journal.read()] == [100, 2]
        journal.close()

    @pytest.mark.parametrize("mode", ["group", "every"])
    def test_failed_sync_is_fatal(self, mode, monkeypatch):
        journal = self.open(durability=mode)
        journal.append(1, 1, b"kept")
        journal.commit()
        self.break_sync(monkeypatch)
        with pytest.raises(JournalFailed):
            journal.append(2, 1, b"lost")
            journal.commit()
        assert journal.durable_seq == 1
        with pytest.raises(JournalFailed):
            journal.append(3, 1, b"refused")
        with pytest.raises(JournalFailed):
            journal.commit()
        monkeypatch.undo()
        self.crash(journal)
        reopened = self.open(durability=mode)
        assert [r.payload for r in reopened.read()][0] == b"kept"
        assert reopened.durable_seq >= 1
        reopened.close()

    def test_closed_journal_refuses_appends(self):
        journal = self.open()
        journal.append(1, 1, b"x")
        journal.close()
        with pytest.raises(ValueError):
            journal.append(2, 1, b"y")

    def test_close_commits_what_is_buffered(self):
        journal = self.open()
        journal.append(1, 1, b"x")
        journal.close()
        assert [r.payload for r in self.open().read()] == [b"x"]

    def test_read_only_view_sees_committed_records_and_refuses_appends(self):
        journal = self.open()
        for i in range(5):
            journal.append(i, 1, b"r%d" % i)
        journal.commit()
        view = self.open_readonly()
        assert [r.seq for r in view.read()] == [1, 2, 3, 4, 5]
        assert view.last_seq == 5 and view.head_hash == journal.head_hash
        with pytest.raises(ValueError):
            view.append(9, 1, b"no")
        journal.close()

    def test_entries_round_trip(self):
        journal = self.open()
        env = Envelope(seq=1, ts=1_700_000_000_000_000_000, actor="broker-1", role="broker",
                       cmd=RegisterParty(name="Acme Licensing", country="US"), client_id="c-1")
        entry = Entry(env, [PartyRegistered(to=("broker-1", "@operators"), party=1, name="Acme Licensing",
                                            country="US", broker="broker-1")])
        seq = journal.append(env.ts, fmt.KIND_ENTRY, encode_entry(entry))
        journal.commit()
        assert seq == env.seq
        (record,) = journal.read()
        assert record.kind == fmt.KIND_ENTRY and decode_entry(record.payload) == entry
        journal.close()


class TestFileJournal(JournalContract):
    @pytest.fixture(autouse=True)
    def _dir(self, tmp_path):
        self.path = tmp_path / "journal"

    def open(self, **options):
        return Journal.open(self.path, **options)

    def open_readonly(self):
        return Journal.open_readonly(self.path)

    def crash(self, journal) -> None:
        journal._release()   # the kernel closes a killed process's files; buffered records die with it

    def break_sync(self, monkeypatch) -> None:
        def failing(fd):
            raise OSError(5, "Input/output error")
        monkeypatch.setattr(os, "fdatasync", failing)
        monkeypatch.setattr(os, "fsync", failing)


class TestPreallocatedFileJournal(TestFileJournal):
    """The file journal writing over zeros it reserved ahead (`Journal.reserve`):
    every record of these tests lands in preallocated space."""

    def open(self, **options):
        journal = Journal.open(self.path, preallocate=1 << 20, **options)
        while journal.reserve():          # a quarter per call
            pass
        return journal


class TestMemoryJournal(JournalContract):
    @pytest.fixture(autouse=True)
    def _storage(self):
        self.storage = MemoryStorage()

    def open(self, **options):
        return MemoryJournal.open(self.storage, **options)

    def open_readonly(self):
        return MemoryJournal.open_readonly(self.storage)

    def crash(self, journal) -> None:
        pass

    def break_sync(self, monkeypatch) -> None:
        monkeypatch.setattr(self.storage, "fail_syncs", True)
