"""The public view behind the snapshot service: a snapshot of one lot or
instrument looks at that key's events (and the session's keyless ones), not
at every slot of the session, and answers exactly what filtering the whole
session would."""

from __future__ import annotations

import os
import pickle
import random
from types import SimpleNamespace

from exchange.events import (BidAccepted, DepthChanged, DisplayRateSet, DocumentAdded,
                             DocumentRemoved, NoticePosted, SessionCreated, SettlementOpened,
                             TradeExecuted)
from gateway import view as view_module
from gateway.view import MarketView, key_of

SEED = int(os.environ.get("VIEW_SEED", "20261201"))


def _filtered(view: MarketView, session: str, key: str) -> list:
    """The snapshot as it was made before the index: every slot of the
    session's bucket filtered by what it is about."""
    chosen = list(view.buckets[""].values())
    if session:
        buckets = [view.buckets.get(session, {})]
    elif key and key in view.session_of:
        buckets = [view.buckets.get(s, {}) for s in view.sessions_of(key)]   # each it is in
    else:
        buckets = [b for s, b in view.buckets.items() if s]
    for bucket in buckets:
        chosen.extend(item for item in bucket.values()
                      if not key or key_of(item[1]) in (key, ""))
    chosen.sort(key=lambda item: item[0])
    return [event for _, event in chosen]


def _event(rng: random.Random, n: int):
    session = rng.choice(("S1", "S2"))
    lot = rng.choice(("L1", "L2", "L3"))
    inst = rng.choice(("U1", "U2"))
    kind = rng.randrange(9)
    if kind == 0:
        return DepthChanged(session=session, instrument=inst, side=rng.choice(("buy", "sell")),
                            price=rng.randint(1, 8), qty=rng.choice((0, 1, 5)), orders=1)
    if kind == 1:
        return BidAccepted(serial=lot, session=session, paddle=101, price=n, leader=101,
                           reserve_met=False, bids=n, closes_at=0, display_currency="",
                           display_price=0)
    if kind == 2:
        return NoticePosted(session=session, serial=rng.choice(("", lot)),
                            instrument=rng.choice(("", inst)), text=f"notice {n}")
    if kind == 3:
        return SessionCreated(session=session, name="s", currency="USD", starts_at=0,
                              ends_at=0)
    if kind == 4:
        return DocumentAdded(serial=lot, session=session, name=rng.choice(("a", "b")),
                             version=n, digest="d", size=1)
    if kind == 5:
        return DocumentRemoved(serial=lot, session=session, name=rng.choice(("a", "b")),
                               version=n)
    if kind == 6:
        return DisplayRateSet(base="USD", quote="CNY", num=n, den=1)
    if kind == 7:
        return TradeExecuted(session=session, instrument=inst, trade=n, price=1, qty=1,
                             currency="USD", buy_paddle=1, sell_paddle=2, aggressor="buy")
    return SettlementOpened(settlement=n, how="sale", session=session, serial=lot,
                            instrument="", mechanism="english", buyer_paddle=1,
                            seller_paddle=2, price=1, premium=0, total=1, commission=0, net=1,
                            currency="USD", opened_at=0, due_at=0, sale_seq=n)


def test_a_keyed_snapshot_answers_what_filtering_the_session_did():
    rng = random.Random(SEED)
    view = MarketView()
    asks = [(s, k) for s in ("", "S1", "S2", "S3")
            for k in ("", "L1", "L2", "L3", "U1", "U2", "NOPE")]
    for seq in range(1, 1501):
        view.fold(seq, [_event(rng, seq * 10 + i) for i in range(rng.randint(1, 4))])
        if seq % 100 == 0:
            for session, key in asks:
                assert view.snapshot(session, key) == _filtered(view, session, key), \
                    (seq, session, key)
    copy = pickle.loads(pickle.dumps(view))          # the index is rebuilt on loading
    for session, key in asks:
        assert copy.snapshot(session, key) == view.snapshot(session, key), (session, key)
    for seq in range(1501, 1601):
        events = [_event(rng, seq * 10 + i) for i in range(rng.randint(1, 4))]
        view.fold(seq, events)
        copy.fold(seq, events)
    for session, key in asks:
        assert copy.snapshot(session, key) == view.snapshot(session, key) \
            == _filtered(view, session, key), (session, key)


def test_a_snapshot_of_one_key_looks_at_that_keys_events_only(monkeypatch):
    """A session with 5,000 book levels: a snapshot of a lot, or of a key no
    one uses, looks at the session's keyless events and the key's, never at
    the levels (each was looked at before, though the answer held none of
    them); ``walked`` says what it looked at."""
    view = MarketView()
    view.fold(1, [SessionCreated(session="S1", name="s", currency="USD", starts_at=0,
                                 ends_at=0)])
    view.fold(2, [DepthChanged(session="S1", instrument="U1", side="sell", price=p, qty=1,
                               orders=1) for p in range(1, 5001)])
    view.fold(3, [BidAccepted(serial="L1", session="S1", paddle=101, price=5, leader=101,
                              reserve_met=False, bids=1, closes_at=0, display_currency="",
                              display_price=0)])
    looked = [0]

    def counted(event):
        looked[0] += 1
        return key_of(event)
    monkeypatch.setattr(view_module, "key_of", counted)
    for key, expected in (("NO-SUCH-KEY", 1), ("L1", 2)):
        looked[0] = 0
        events = view.snapshot(session="S1", key=key)
        assert looked[0] == 0 and len(events) == expected
        assert view.walked <= expected + 1
    whole = view.snapshot(session="S1")
    assert len(whole) == 5002 and view.walked >= 5002       # the session, whole


def test_a_view_pickled_before_the_index_loads_in_the_same_order():
    """Views pickled before held each event with its seq, in fold order per
    bucket, and no index: loading one numbers them in that order and builds
    the index, and every snapshot is what it was."""
    rng = random.Random(SEED + 1)
    view = MarketView()
    seq_of: dict[int, int] = {}                    # place in the fold order -> seq
    for seq in range(1, 801):
        before = view._counter
        view.fold(seq, [_event(rng, seq * 10 + i) for i in range(rng.randint(1, 4))])
        seq_of.update({place: seq for place in range(before + 1, view._counter + 1)})
    state = {"buckets": {session: {slot: (seq_of[place], event)
                                   for slot, (place, event) in bucket.items()}
                         for session, bucket in view.buckets.items()},
             "session_of": dict(view.session_of), "_counter": view._counter,
             "seq": view.seq, "_rules": {}}
    old = MarketView.__new__(MarketView)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert old.also_in == view.also_in             # keys in several sessions: found again
    before = SimpleNamespace(buckets=state["buckets"], session_of=state["session_of"],
                             sessions_of=old.sessions_of)
    asks = [(s, k) for s in ("", "S1", "S2") for k in ("", "L1", "U2", "NOPE")]
    for session, key in asks:                      # as its snapshots were
        assert old.snapshot(session, key) == _filtered(before, session, key), (session, key)
    for seq in range(801, 851):                    # and it goes on as a new one
        events = [_event(rng, seq * 10 + i) for i in range(rng.randint(1, 4))]
        old.fold(seq, events)
        view.fold(seq, events)
    for session, key in asks:                      # (same events; ties of a seq aside)
        assert sorted(map(repr, old.snapshot(session, key))) == \
            sorted(map(repr, view.snapshot(session, key))), (session, key)


def _session(session: str) -> SessionCreated:
    return SessionCreated(session=session, name=session, currency="USD", starts_at=0, ends_at=0)


def _bid(serial: str, session: str, price: int) -> BidAccepted:
    return BidAccepted(serial=serial, session=session, paddle=101, price=price, leader=101,
                       reserve_met=False, bids=1, closes_at=0, display_currency="",
                       display_price=0)


def _boards(feed: list, cut: int, session: str = "", key: str = "") -> tuple:
    """(a board that folded the whole feed, one that folded a snapshot taken
    after the first ``cut`` entries and then the rest)."""
    from gateway.board import Board
    view, whole = MarketView(), Board(session=session)
    for seq, events in feed[:cut]:
        view.fold(seq, events)
    mine = Board(session=session)
    mine.apply(view.snapshot(session, key))
    for seq, events in feed:
        whole.apply(events)
    for seq, events in feed[cut:]:
        mine.apply(events)
    return whole, mine


def test_a_keyed_snapshot_of_a_key_used_in_two_sessions_holds_both():
    """A lot serial of one session can be an instrument id of another: a
    snapshot of that key holds what is about it in each session."""
    feed = [(1, [_session("S1")]), (2, [_bid("X1", "S1", 5)]),
            (3, [_session("S2")]),
            (4, [TradeExecuted(session="S2", instrument="X1", trade=1, price=7, qty=2,
                               currency="USD", buy_paddle=1, sell_paddle=2,
                               aggressor="buy")]),
            (5, [DepthChanged(session="S2", instrument="X1", side="buy", price=6, qty=3,
                              orders=1)])]
    view = MarketView()
    for seq, events in feed:
        view.fold(seq, events)
    assert view.sessions_of("X1") == ["S1", "S2"]
    kinds = [type(e).__name__ for e in view.snapshot(key="X1")]
    assert kinds == ["SessionCreated", "BidAccepted", "SessionCreated", "TradeExecuted",
                     "DepthChanged"]
    for cut in range(len(feed) + 1):
        whole, mine = _boards(feed, cut, key="X1")
        assert mine.lots.get("X1") == whole.lots.get("X1")
        assert mine.books.get("X1") == whole.books.get("X1")
    copy = pickle.loads(pickle.dumps(view))
    assert copy.snapshot(key="X1") == view.snapshot(key="X1")


def _public_feed(log: list) -> list:
    feed = [(env.seq, [e for e in events if not e.to]) for env, events in log]
    return [(seq, events) for seq, events in feed if events]


def test_events_that_replace_one_another_are_kept_once():
    """A display rate per pair of currencies, an instrument's last call
    auction, a lot's terms: each change replaces the last, so a snapshot
    stays as small as the state however often they change, and folding it
    then the rest of the feed still gives the whole feed's state."""
    from exchange.commands import (CreateInstrument, ScheduleLot, SetDisplayRate, StartCall,
                                   Uncross)
    from tests.unit.auctionkit import Market

    m = Market(log=True)
    m.lot("L1", seller=m.seller())
    m.d.ok(CreateInstrument(session="S1", instrument="U1"))
    for i in range(60):
        m.d.ok(SetDisplayRate(base="USD", quote="EUR", num=90 + i % 7, den=100))
        m.d.ok(SetDisplayRate(base="USD", quote="GBP", num=70 + i % 5, den=100))
    for _ in range(40):
        m.d.ok(StartCall(session="S1", instrument="U1"))
        m.d.ok(Uncross(session="S1", instrument="U1"))
    for _ in range(20):
        m.d.send(ScheduleLot(serial="L1"))
    feed = _public_feed(m.d.log)
    view = MarketView()
    for seq, events in feed:
        view.fold(seq, events)
    kinds = [type(e).__name__ for e in view.snapshot(key="L1")]
    assert kinds.count("DisplayRateSet") == 2 and kinds.count("LotScheduled") == 1, kinds
    kinds = [type(e).__name__ for e in view.snapshot(key="U1")]
    assert kinds.count("CallUncrossed") == 1, kinds
    assert len(view.snapshot()) < 20
    rates = [e for e in view.snapshot() if type(e).__name__ == "DisplayRateSet"]
    assert [(e.quote, e.num) for e in rates] == [("EUR", 90 + 59 % 7), ("GBP", 70 + 59 % 5)]
    for cut in range(0, len(feed) + 1, 7):
        for key in ("", "L1", "U1"):
            whole, mine = _boards(feed, cut, key=key)
            if key:                                # a key's snapshot: its state
                assert mine.lots.get(key) == whole.lots.get(key), (cut, key)
                assert mine.books.get(key) == whole.books.get(key), (cut, key)
            else:
                assert mine.lots == whole.lots and mine.books == whole.books, cut


def _notice(session: str, serial: str, text: str) -> NoticePosted:
    return NoticePosted(session=session, serial=serial, instrument="", text=text)


def test_a_whole_market_snapshot_holds_the_open_sessions():
    """A closed session leaves the whole-market snapshot (its SessionClosed
    stays, so a board knows to ignore it) and the index; a snapshot naming
    it, or one of its lots, still gives its final state. A whole-market board
    drops a session at its close, so one that folded the whole feed and one
    that joined by a snapshot agree at every cut, whatever comes later."""
    from exchange.events import SessionClosed
    feed = [(1, [_session("S1"), _session("S2")]),
            (2, [_bid("L1", "S1", 5), _bid("L2", "S2", 6), _notice("S1", "L1", "a")]),
            (3, [_notice("S2", "L2", "b"), _notice("S1", "", "c")]),
            (4, [DisplayRateSet(base="USD", quote="EUR", num=9, den=10)]),
            (5, [_bid("L1", "S1", 7), SessionClosed(session="S1"), _bid("L1", "S1", 8)]),
            (6, [_bid("L1", "S1", 9), _notice("S1", "L1", "after"), _bid("L2", "S2", 10)]),
            (7, [_session("S3"), _bid("L3", "S3", 1)] + [_notice("S3", "L3", str(n))
                                                          for n in range(8)])]
    view = MarketView()
    for seq, events in feed:
        view.fold(seq, events)
    whole = view.snapshot()
    assert {getattr(e, "session", "") for e in whole} == {"", "S1", "S2", "S3"}
    assert [type(e).__name__ for e in whole if getattr(e, "session", "") == "S1"] == \
        ["SessionClosed"]
    assert "S1" not in view._keyed and list(view.closed) == ["S1"]
    named = view.snapshot("S1")                      # its final state, by name
    assert [e.price for e in named if type(e) is BidAccepted] == [9]
    assert view.snapshot("S1", "L1") == [e for e in named if key_of(e) in ("", "L1")]
    assert view.snapshot(key="L1") == view.snapshot("S1", "L1")
    copy = pickle.loads(pickle.dumps(view))
    for session, key in (("", ""), ("S1", ""), ("", "L1"), ("S2", "L2"), ("", "L2")):
        assert copy.snapshot(session, key) == view.snapshot(session, key), (session, key)
    assert "S1" not in copy._keyed
    for cut in range(len(feed) + 1):
        full, mine = _boards(feed, cut)
        assert full == mine, cut
        if cut >= 5:
            assert "S1" not in full.sessions and "L1" not in full.lots
        one, joined = _boards(feed, cut, session="S1")   # a board of S1 keeps it
        assert one == joined and (cut < 2 or one.lots["L1"].session == "S1"), cut
    assert [n[2] for n in full.notices] == ["b"] + [str(n) for n in range(3, 8)]


def test_a_snapshot_answer_is_charged_for_its_encoding():
    """The gateway charges a snapshot's encoded bytes to the turn's catch-up
    budget, not only the events looked at."""
    from gateway import protocol as p
    from gateway.server import SNAPSHOT_BYTES_PER_UNIT, SNAPSHOT_EVENTS_PER_UNIT, Server
    view = MarketView()
    view.fold(1, [_session("S1")] + [_bid(f"L{n}", "S1", n) for n in range(400)])
    server = SimpleNamespace(view=view, last_public=1, catch_up_left=100_000,
                             _feed_time=lambda: 1)
    answer = Server._snapshot_answer(server, p.SnapshotRequest())
    cost = 100_000 - server.catch_up_left
    assert p.data_reply_decoder.decode(answer).events == view.snapshot()
    assert cost == 1 + view.walked // SNAPSHOT_EVENTS_PER_UNIT \
        + len(answer) // SNAPSHOT_BYTES_PER_UNIT and len(answer) // SNAPSHOT_BYTES_PER_UNIT > 400
