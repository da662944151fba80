"""The analyst store: the journal projected into SQLite."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from exchange.events import EVENT_TYPES
from recorder.journal import Journal
from recorder.store import CURATED, Store, StoreMismatch, table_of

from tests.integration.journaled import DAY, T0, JournaledDriver, core_session, market_day


@pytest.fixture(scope="module")
def journaled(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "journal"
    journal = Journal.open(path, segment_bytes=1 << 16)
    d = JournaledDriver(journal)
    market_day(d, seed=11)
    core_session(d, parties=4, start=T0 + 2 * DAY, session="S2")
    market_day(d, seed=12, start=T0 + 3 * DAY, session="S3")
    journal.close()
    return path, d.log


def count(db, sql: str, *params) -> int:
    return db.execute(sql, params).fetchone()[0]


def dump(path) -> dict[str, list]:
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return {t: sorted(db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


def test_row_counts_equal_event_counts(journaled, tmp_path):
    path, log = journaled
    with Store.open(tmp_path / "a.sqlite") as store:
        assert store.update(path) == len(log)
        assert store.last_seq == log[-1][0].seq
    db = sqlite3.connect(tmp_path / "a.sqlite")
    types = Counter(type(e).__name__ for _, events in log for e in events)
    for event_type in EVENT_TYPES:
        assert count(db, f'SELECT count(*) FROM "{table_of(event_type)}"') == types[event_type.__name__], event_type
    assert count(db, "SELECT count(*) FROM events") == sum(types.values())
    assert count(db, "SELECT count(*) FROM commands") == len(log)
    assert count(db, "SELECT count(*) FROM rejections") == types["CommandRejected"] > 0
    assert count(db, "SELECT sum(rejected) FROM commands") == len({e.ref for _, ev in log for e in ev
                                                                  if type(e).__name__ == "CommandRejected"})
    assert count(db, "SELECT count(*) FROM awards") == types["LotAwarded"] > 0
    assert count(db, "SELECT count(*) FROM passed_lots") == types["LotPassed"] > 0
    assert count(db, "SELECT count(*) FROM trades") == types["TradeExecuted"] > 0
    assert count(db, "SELECT count(*) FROM orders") == types["OrderAccepted"]
    assert count(db, "SELECT count(*) FROM lots") == types["LotScheduled"]
    assert count(db, "SELECT count(*) FROM sessions") == types["SessionCreated"] == 3
    assert count(db, "SELECT count(*) FROM paddles") == types["PaddleIssued"]
    assert count(db, "SELECT count(*) FROM settlements") == types["SettlementOpened"]
    scheduled = [e for _, ev in log for e in ev if type(e).__name__ == "LotScheduled"]
    assert count(db, "SELECT count(*) FROM patents") == sum(len(e.terms.patents) for e in scheduled)
    revealed = sum(len(e.bids) for _, ev in log for e in ev if type(e).__name__ == "SealedBidsRevealed")
    assert count(db, "SELECT count(*) FROM bids") == (types["BidAccepted"] + types["BidConfirmed"] + revealed
                                                      + types["BidWithdrawn"] + types["OfferMade"]
                                                      + types["BidVoided"])


def test_curated_rows_agree_with_the_events(journaled, tmp_path):
    path, log = journaled
    with Store.open(tmp_path / "a.sqlite") as store:
        store.update(path)
    db = sqlite3.connect(tmp_path / "a.sqlite")
    events = [(env.seq, e) for env, ev in log for e in ev]
    for seq, award in ((s, e) for s, e in events if type(e).__name__ == "LotAwarded"):
        assert db.execute("SELECT status, winner_paddle, hammer, total FROM lots WHERE serial = ?",
                          (award.serial,)).fetchone() == ("sold", award.paddle, award.hammer, award.total)
    for passed in (e for _, e in events if type(e).__name__ == "LotPassed"):
        assert db.execute("SELECT status FROM lots WHERE serial = ?", (passed.serial,)).fetchone() == ("passed",)
    check_orders(db, events)
    for opened in (e for _, e in events if type(e).__name__ == "SettlementOpened"):
        assert db.execute("SELECT serial, buyer_paddle, total, net, currency FROM settlements WHERE settlement = ?",
                          (opened.settlement,)).fetchone() == (opened.serial, opened.buyer_paddle, opened.total,
                                                                opened.net, opened.currency)
    body = json.loads(db.execute("SELECT terms FROM ev_lot_scheduled LIMIT 1").fetchone()[0])
    assert body["mechanism"] in ("english", "sealed_second") and body["patents"]


def check_orders(db: sqlite3.Connection, events: list[tuple[int, object]]) -> None:
    """Each accepted order is a row of its own (order numbers are a paddle's
    and reused once gone), with the fills of that order alone."""
    filled: Counter = Counter()
    live: dict[tuple[str, int, int], int] = {}          # (instrument, paddle, order) -> seq
    for seq, event in events:
        kind = type(event).__name__
        if kind == "OrderAccepted":
            live[(event.instrument, event.paddle, event.order)] = seq
        elif kind == "OrderFilled":
            key = (event.instrument, event.paddle, event.order)
            filled[(*key, live[key])] += event.qty
            if event.leaves == 0:
                del live[key]
        elif kind == "OrderCancelled":
            live.pop((event.instrument, event.paddle, event.order), None)
    rows = db.execute("SELECT instrument, paddle, order_id, accepted_seq, filled, remaining, qty, "
                      "status FROM orders").fetchall()
    assert len(rows) == sum(1 for _, e in events if type(e).__name__ == "OrderAccepted")
    assert sum(1 for row in rows if row[7] in ("open", "partial")) == len(live)
    for instrument, paddle, order, accepted, got, remaining, qty, status in rows:
        assert got == filled[(instrument, paddle, order, accepted)]
        assert 0 <= remaining <= qty - got
        assert status in ("open", "partial", "filled", "cancelled")


def test_orders_of_many_paddles_with_the_same_numbers_are_rows_of_their_own(tmp_path):
    from exchange.codec import decode_entry
    from recorder.journal import read_journal
    from tests.integration.replay_fixture import record_random
    record_random(tmp_path, seed=5, commands=800)
    with Store.open(tmp_path / "a.sqlite") as store:
        store.update(tmp_path / "journal")
    events = [(rec.seq, e) for rec in read_journal(tmp_path / "journal")
              for e in decode_entry(rec.payload).events]
    assert len({e.order for _, e in events if type(e).__name__ == "OrderAccepted"}) < \
        sum(1 for _, e in events if type(e).__name__ == "OrderAccepted")     # numbers reused
    check_orders(sqlite3.connect(tmp_path / "a.sqlite"), events)


def test_a_live_order_is_found_by_an_index_of_live_orders(tmp_path):
    """A paddle reuses its order numbers: without an index of the live orders
    alone, each fill or cancel walked every past order of its key (projection
    quadratic: 28 s for 100,000 entries, 408 s for 400,000)."""
    from recorder.store import _update_order
    from exchange.events import OrderCancelled
    with Store.open(tmp_path / "a.sqlite"):
        pass
    _, sql, params = _update_order(OrderCancelled(session="S", instrument="U", paddle=101,
                                                  party=1, order=7, qty=1, reason="requested"),
                                   9, "status = ?", ("cancelled",))
    plan = sqlite3.connect(tmp_path / "a.sqlite").execute(
        f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
    assert any("idx_orders_live" in row[-1] for row in plan), plan


def test_curated_tables_hold_paddle_numbers_never_identities(journaled, tmp_path):
    path, _ = journaled
    with Store.open(tmp_path / "a.sqlite") as store:
        store.update(path)
    db = sqlite3.connect(tmp_path / "a.sqlite")
    for table in CURATED:
        columns = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')}
        assert not columns & {"party", "buyer", "seller", "name", "actor", "broker", "reserve"}, table


def test_incremental_projection_equals_a_rebuild(tmp_path):
    journal = Journal.open(tmp_path / "journal", segment_bytes=1 << 15)
    d = JournaledDriver(journal)
    with Store.open(tmp_path / "inc.sqlite") as store:
        assert store.update(tmp_path / "journal") == 0
        market_day(d, seed=3, bids=60, orders=80)
        journal.commit()
        first = store.update(tmp_path / "journal")
        assert first == d.seq
        core_session(d, parties=3, start=T0 + 2 * DAY, session="S2")
        market_day(d, seed=4, bids=60, orders=80, start=T0 + 3 * DAY, session="S3")
        assert store.update(journal) == d.seq - first      # an open journal works too
        assert store.update(journal) == 0
    journal.close()
    with Store.open(tmp_path / "full.sqlite") as store:
        store.rebuild(tmp_path / "journal")
    with Store.open(tmp_path / "inc.sqlite") as store:   # rebuilding in place gives the same too
        store.rebuild(tmp_path / "journal")
    assert dump(tmp_path / "inc.sqlite") == dump(tmp_path / "full.sqlite")


def test_incremental_in_many_small_steps_equals_one_pass(journaled, tmp_path, monkeypatch):
    path, _ = journaled
    with Store.open(tmp_path / "one.sqlite") as store:
        store.update(path)
    import recorder.store as store_module
    monkeypatch.setattr(store_module, "BATCH", 7)
    with Store.open(tmp_path / "small.sqlite") as store:
        store.update(path)
    assert dump(tmp_path / "one.sqlite") == dump(tmp_path / "small.sqlite")


def test_public_store_holds_public_events_only(journaled, tmp_path):
    path, log = journaled
    with Store.open(tmp_path / "pub.sqlite", public=True) as store:
        store.update(path)
    db = sqlite3.connect(tmp_path / "pub.sqlite")
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "commands" not in names and "rejections" not in names
    public = Counter(type(e).__name__ for _, ev in log for e in ev if not e.to)
    assert count(db, "SELECT count(*) FROM events") == sum(public.values())
    assert count(db, "SELECT count(*) FROM ev_party_registered") == 0
    assert count(db, "SELECT count(*) FROM ev_bid_confirmed") == 0
    assert count(db, "SELECT count(*) FROM ev_trade_executed") == public["TradeExecuted"] > 0
    assert count(db, "SELECT count(*) FROM bids WHERE kind = 'bid'") == 0     # bids as made are private
    assert count(db, "SELECT count(*) FROM paddles") > 0                     # seen in public events
    with pytest.raises(StoreMismatch):
        Store.open(tmp_path / "pub.sqlite", public=False)


def test_a_store_refuses_another_journal(journaled, tmp_path):
    path, _ = journaled
    with Store.open(tmp_path / "a.sqlite") as store:
        store.update(path)
    other = Journal.open(tmp_path / "other")
    d = JournaledDriver(other)
    market_day(d, seed=99, bids=300, orders=400)
    other.close()
    with Store.open(tmp_path / "a.sqlite") as store:
        with pytest.raises(StoreMismatch):
            store.update(tmp_path / "other")
        assert store.rebuild(tmp_path / "other") == d.seq


def test_a_full_store_and_its_side_files_are_its_owners_only(journaled, tmp_path, loose_umask):
    """Made 0600 before SQLite opens it: SQLite gives its -journal, -wal and
    -shm files the database's mode. A public store keeps the usual mode."""
    import os
    import stat
    path, _ = journaled
    full = tmp_path / "full.sqlite"
    with Store.open(full) as store:
        store.db.execute("PRAGMA journal_mode = WAL")
        store.update(path)
        side = [full.with_name(full.name + suffix) for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in side)
        assert {stat.S_IMODE(os.stat(p).st_mode) for p in [full, *side]} == {0o600}
    with Store.open(tmp_path / "public.sqlite", public=True):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / "public.sqlite").st_mode) == 0o644


# -- settlements and lots as the engine has them ------------------------------------------------

class Projected:
    """A unit-test market's log journaled and projected, step by step (incremental)."""

    def __init__(self, m, tmp_path) -> None:
        from exchange.codec import Entry, encode_entry
        from recorder.format import KIND_ENTRY
        self.m, self.done = m, 0
        self.path, self.db = tmp_path / "journal", tmp_path / "store.sqlite"
        self._entry = lambda env, events: (env.ts, KIND_ENTRY, encode_entry(Entry(env, events)))

    def rows(self, sql: str, *params) -> list:
        journal = Journal.open(self.path)
        for env, events in self.m.d.log[self.done:]:
            journal.append(*self._entry(env, events))
        journal.commit()
        journal.close()
        self.done = len(self.m.d.log)
        with Store.open(self.db) as store:
            store.update(self.path)
        return sqlite3.connect(self.db).execute(sql, params).fetchall()


def engine_status(s) -> str:
    """The store's settlement status for the engine's settlement ``s``."""
    if s.status == "awaiting_payment" and s.overdue:
        return "overdue"
    return s.status


def test_a_settlement_row_has_the_engines_status_after_every_step(tmp_path):
    from exchange.commands import DeclareDefault, ExtendDueDate
    from tests.unit.auctionkit import DAY as UDAY, USD
    from tests.unit.test_settlement_default import english, overdue

    def check(m, sale, p):
        assert p.rows("SELECT status, paid, outstanding, due_at FROM settlements WHERE settlement = ?",
                      sale.sid) == [(engine_status(sale.s), sale.s.paid, sale.s.total - sale.s.paid,
                                     sale.s.due_at)]

    m, sale, *_ = english(log=True)                     # overdue, a part payment, then paid in full
    p = Projected(m, tmp_path / "paid")
    check(m, sale, p)
    overdue(sale)
    check(m, sale, p)
    sale.pay(100 * USD)
    check(m, sale, p)
    sale.pay()
    check(m, sale, p)
    assert engine_status(sale.s) == "paid"
    for step in (sale.deliver, sale.confirm, sale.release):
        step()
        check(m, sale, p)
    assert engine_status(sale.s) == "completed"

    m, sale, *_ = english(log=True)                     # overdue, then a later due date
    p = Projected(m, tmp_path / "extended")
    overdue(sale)
    sale.op(ExtendDueDate(settlement=sale.sid, due_at=m.d.ts + 5 * UDAY))
    check(m, sale, p)
    assert engine_status(sale.s) == "awaiting_payment"
    m.tick(sale.s.due_at)                               # overdue again at the new date
    assert sale.s.overdue
    check(m, sale, p)
    sale.op(DeclareDefault(settlement=sale.sid, reason="unpaid", next="relist"))
    assert p.rows("SELECT status, reason FROM settlements") == [("defaulted", "unpaid")]


def test_a_relisted_lots_row_holds_its_new_round_only(tmp_path):
    from exchange.commands import DeclareDefault, RelistLot
    from tests.unit.auctionkit import DAY as UDAY, HOUR
    from tests.unit.test_settlement_default import english, overdue

    m, sale, a, *_ = english(log=True)
    p = Projected(m, tmp_path)
    columns = "SELECT status, outcome, bids, winner_paddle, hammer, total FROM lots WHERE serial = 'L1'"
    assert p.rows(columns) == [("sold", "sold", 4, a, sale.s.price, sale.s.total)]
    assert p.rows("SELECT relists FROM lots") == [(0,)]
    overdue(sale)
    sale.op(DeclareDefault(settlement=sale.sid, reason="unpaid", next="relist"))
    t = m.d.ts
    sale.op(RelistLot(serial="L1", opens_at=t + HOUR, closes_at=t + UDAY))
    assert p.rows(columns) == [("scheduled", None, None, None, None, None)]
    m.tick(t + 2 * HOUR)
    assert m.state.lots["L1"].status == "open" and m.state.lots["L1"].bids == 0
    assert p.rows(columns) == [("open", None, None, None, None, None)]
    assert p.rows("SELECT relists FROM lots") == [(1,)]



@pytest.mark.parametrize("rebuild", [False, True])
def test_a_second_projection_of_the_same_store_at_once_is_refused_in_a_line(journaled, tmp_path,
                                                                            monkeypatch, rebuild):
    import recorder.store as store_module
    from recorder.store import StoreBusy
    path, log = journaled
    monkeypatch.setattr(store_module, "BATCH", 50)
    db = tmp_path / "a.sqlite"
    first, second = Store.open(db), Store.open(db)

    class Racing:
        """The journal, and the other projection running once the first batch is read."""
        def __init__(self):
            self.journal = Journal.open_readonly(path)

        def read(self, from_seq=1, **kw):
            for k, rec in enumerate(self.journal.read(from_seq, **kw)):
                if k == 60:
                    second.update(path)
                yield rec

    with pytest.raises(StoreBusy, match="another projection of .* is running"):
        first.rebuild(Racing()) if rebuild else first.update(Racing())
    first.close()
    second.close()
    with Store.open(db) as store:           # the other projection's store is whole
        assert store.last_seq == log[-1][0].seq
        assert store.update(path) == 0
    with Store.open(tmp_path / "b.sqlite") as store:
        store.update(path)
    assert dump(db) == dump(tmp_path / "b.sqlite")
