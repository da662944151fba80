"""Lots' data rooms: the index, the NDA register and the access log."""

from __future__ import annotations

import hashlib

import pytest

from exchange import dataroom
from exchange.commands import (AddDocument, CloseSession, OpenDocument, RegisterParty,
                               RemoveDocument, ReviewCredit, ScheduleLot, SignNda, VetLot,
                               WithdrawLot)
from exchange.engine import Engine
from exchange.events import (DataRoomInterest, DocumentAdded, DocumentReleased, DocumentRemoved,
                             LotAwarded, LotPassed, NdaSigned)
from tests.unit.auctionkit import DAY, HOUR, T0, USD, Market, of, one

SELLER_BROKER = "seller-broker"
CLAIMS = hashlib.sha256(b"claims chart").hexdigest()
FILE = hashlib.sha256(b"file history").hexdigest()


def add(name="claims.pdf", digest=CLAIMS, size=120_000, location="vdr://L1/claims-v1.pdf",
        serial="L1"):
    return AddDocument(serial=serial, name=name, digest=digest, size=size, location=location)


def market(schedule=True):
    m = Market()
    seller = m.seller()
    alice, bob = m.bidder("Alice"), m.bidder("Bob")
    m.lot("L1", seller=seller, schedule=schedule)
    return m, seller, alice, bob


def as_seller(m, cmd):
    return m.d.ok(cmd, actor=SELLER_BROKER, role="broker")


def as_bidder(m, paddle, cmd):
    return m.d.ok(cmd, actor=m.brokers[paddle], role="broker")


def test_a_draft_rooms_index_is_private_until_publication_lists_it():
    m, seller, alice, _ = market(schedule=False)
    added = one(as_seller(m, add()), DocumentAdded)
    assert added.to == (SELLER_BROKER, "@operators") and added.version == 1
    assert (added.name, added.digest, added.size) == ("claims.pdf", CLAIMS, 120_000)
    assert not hasattr(added, "location")
    events = m.d.ok(VetLot(serial="L1", score=80, approved=True))
    assert not of(events, DocumentAdded)
    events = m.d.ok(ScheduleLot(serial="L1"))
    listed = one(events, DocumentAdded)
    assert (listed.to, listed.name, listed.version, listed.digest) == ((), "claims.pdf", 1, CLAIMS)
    later = one(as_seller(m, add("file-history.pdf", FILE, 9_000, "vdr://L1/fh.pdf")),
                DocumentAdded)
    assert later.to == ()
    again = m.d.ok(ScheduleLot(serial="L1", opens_at=T0 + 2 * HOUR))   # rescheduled: no relist
    assert not of(again, DocumentAdded)


def test_the_nda_opens_the_room_and_the_seller_learns_counts_only():
    m, seller, alice, bob = market()
    as_seller(m, add())
    party = m.parties[alice]
    refused = m.unchanged(OpenDocument(serial="L1", party=party, name="claims.pdf"),
                          actor=m.brokers[alice])
    assert refused.code == "nda_required"
    events = as_bidder(m, alice, SignNda(serial="L1", party=party, nda="OT-NDA-2017"))
    signed = one(events, NdaSigned)
    assert signed.to == (m.brokers[alice], "@operators") and signed.nda == "OT-NDA-2017"
    interest = one(events, DataRoomInterest)
    assert interest.to == (SELLER_BROKER, "@operators")
    assert (interest.ndas, interest.readers, interest.opened) == (1, 0, 0)
    for _ in range(2):
        events = as_bidder(m, alice, OpenDocument(serial="L1", party=party, name="claims.pdf"))
    released = one(events, DocumentReleased)
    assert released.to == (m.brokers[alice], "@operators")
    assert (released.location, released.digest, released.version) == \
        ("vdr://L1/claims-v1.pdf", CLAIMS, 1)
    assert (one(events, DataRoomInterest).readers, one(events, DataRoomInterest).opened) == (1, 2)
    # nothing of it is public, and no event names Alice to the seller
    assert all(e.to for e in events)
    assert all(not hasattr(e, "party") for e in events if SELLER_BROKER in e.to)
    # Bob has not signed; a new version of the NDA may be signed again, not the same one
    assert m.unchanged(OpenDocument(serial="L1", party=m.parties[bob], name="claims.pdf"),
                       actor=m.brokers[bob]).code == "nda_required"
    assert m.unchanged(SignNda(serial="L1", party=party, nda="OT-NDA-2017"),
                       actor=m.brokers[alice]).code == "nda_on_file"
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="OT-NDA-2018"))
    assert dataroom.rooms(m.state)["L1"].ndas == {party: "OT-NDA-2018"}


def test_versions_and_removal():
    m, seller, alice, _ = market()
    party = m.parties[alice]
    as_seller(m, add())
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="N1"))
    second = one(as_seller(m, add(digest=FILE, size=130_000, location="vdr://L1/claims-v2.pdf")),
                 DocumentAdded)
    assert second.version == 2
    released = one(as_bidder(m, alice, OpenDocument(serial="L1", party=party,
                                                    name="claims.pdf")), DocumentReleased)
    assert (released.version, released.location) == (2, "vdr://L1/claims-v2.pdf")
    removed = one(m.d.ok(RemoveDocument(serial="L1", name="claims.pdf")), DocumentRemoved)
    assert (removed.to, removed.version) == ((), 2)
    assert m.unchanged(OpenDocument(serial="L1", party=party, name="claims.pdf"),
                       actor=m.brokers[alice]).code == "unknown_document"
    assert m.unchanged(RemoveDocument(serial="L1", name="claims.pdf"),
                       actor=SELLER_BROKER).code == "unknown_document"
    assert one(as_seller(m, add()), DocumentAdded).version == 3     # numbering goes on


def test_who_may_do_what():
    m, seller, alice, bob = market(schedule=False)
    as_seller(m, add())
    # an unpublished lot is unknown to other brokers
    assert m.unchanged(add(), actor=m.brokers[alice]).code == "unknown_lot"
    assert m.unchanged(SignNda(serial="L1", party=m.parties[alice], nda="N1"),
                       actor=m.brokers[alice]).code == "unknown_lot"
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="L1"))
    assert m.unchanged(add(), actor=m.brokers[alice]).code == "not_permitted"
    assert m.unchanged(RemoveDocument(serial="L1", name="claims.pdf"),
                       actor=m.brokers[alice]).code == "not_permitted"
    assert m.unchanged(SignNda(serial="L1", party=m.parties[bob], nda="N1"),
                       actor=m.brokers[alice]).code == "not_your_party"
    assert m.unchanged(SignNda(serial="L1", party=seller, nda="N1"),
                       actor=SELLER_BROKER).code == "own_lot"
    assert m.unchanged(add(), actor="v", role="viewer").code == "not_permitted"
    # the seller's side opens its own room without an NDA, and is not counted
    events = as_seller(m, OpenDocument(serial="L1", party=seller, name="claims.pdf"))
    assert one(events, DocumentReleased).to == (SELLER_BROKER, "@operators")
    assert not of(events, DataRoomInterest)
    # an operator acts for anyone
    m.d.ok(SignNda(serial="L1", party=m.parties[bob], nda="N1"))
    released = one(m.d.ok(OpenDocument(serial="L1", party=m.parties[bob], name="claims.pdf")),
                   DocumentReleased)
    assert released.to == (m.brokers[bob], "@operators")


@pytest.mark.parametrize("cmd, code", [
    (add(digest=CLAIMS.upper()), "bad_field"),
    (add(digest=CLAIMS[:-1]), "bad_field"),
    (add(size=0), "non_positive"),
    (add(size=10**16), "out_of_range"),
    (add(name=""), "bad_field"),
    (add(name=" claims.pdf"), "bad_field"),
    (add(name="claims\n.pdf"), "bad_field"),
    (add(name="x" * 201), "too_long"),
    (add(location=""), "bad_field"),
    (add(location="x" * 1001), "too_long"),
    (add(serial="L9"), "unknown_lot"),
    (SignNda(serial="L1", party=0, nda=""), "bad_field"),
    (SignNda(serial="L1", party=0, nda="N\t1"), "bad_field"),
    (SignNda(serial="L1", party=0, nda="N" * 201), "too_long"),
])
def test_bad_fields_are_refused_and_change_nothing(cmd, code):
    m, _, alice, _ = market()
    if isinstance(cmd, SignNda):
        cmd = SignNda(serial=cmd.serial, party=m.parties[alice], nda=cmd.nda)
    assert m.unchanged(cmd, actor="op", role="operator").code == code


def test_a_room_holds_at_most_so_many_documents(monkeypatch):
    monkeypatch.setattr(dataroom, "MAX_DOCUMENTS", 2)
    m, *_ = market()
    as_seller(m, add("a"))
    as_seller(m, add("b"))
    assert m.unchanged(add("c"), actor=SELLER_BROKER).code == "too_many_documents"
    as_seller(m, add("b", digest=FILE))                  # a new version of one is no more


def test_the_room_closes_with_the_sale_and_with_withdrawal():
    m, seller, alice, bob = market()
    as_seller(m, add())
    party = m.parties[alice]
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="N1"))
    m.bid("L1", alice, 1_000 * USD, ts=T0 + 2 * HOUR)
    assert one(m.tick(T0 + DAY), LotAwarded).paddle == alice
    for cmd, actor in ((OpenDocument(serial="L1", party=party, name="claims.pdf"),
                        m.brokers[alice]),
                       (SignNda(serial="L1", party=m.parties[bob], nda="N1"), m.brokers[bob]),
                       (add("late.pdf"), SELLER_BROKER)):
        assert m.unchanged(cmd, actor=actor).code == "bad_status", cmd
    m.lot("L2", seller=seller, opens_at=T0 + 2 * DAY, closes_at=T0 + 3 * DAY)
    m.d.ok(WithdrawLot(serial="L2", reason="seller withdrew"))
    assert m.unchanged(add(serial="L2"), actor=SELLER_BROKER).code == "bad_status"


def test_rooms_survive_a_snapshot():
    m, seller, alice, _ = market()
    as_seller(m, add())
    as_bidder(m, alice, SignNda(serial="L1", party=m.parties[alice], nda="N1"))
    restored = Engine.restore(m.d.engine.snapshot())
    room = dataroom.rooms(restored.state)["L1"]
    assert room.ndas == {m.parties[alice]: "N1"} and room.documents["claims.pdf"].digest == CLAIMS


def test_the_board_counts_a_rooms_documents_from_public_events():
    from gateway.board import Board

    m = Market(log=True)
    seller = m.seller()
    m.lot("L1", seller=seller, schedule=False)
    as_seller(m, add())
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    m.d.ok(ScheduleLot(serial="L1"))
    as_seller(m, add(digest=FILE))                       # a new version: still one document
    as_seller(m, add("file-history.zip", FILE))
    m.d.ok(RemoveDocument(serial="L1", name="claims.pdf"))
    board = Board(session="S1", lot="L1")
    board.apply(e for _, events in m.d.log for e in events if not e.to)
    assert board.lots["L1"].documents == {"file-history.zip": (1, 120_000, FILE)}
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(board.render(T0))
    text = console.export_text()
    assert "docs" in text and "data room of L1" in text and FILE in text


def test_only_a_bidder_of_the_session_may_sign_and_read():
    m, seller, alice, _ = market()
    as_seller(m, add())
    broker = m.brokers[alice]
    walk_in = m.d.ok(RegisterParty(name="Walk-in"), actor=broker, role="broker")[0].party
    assert m.unchanged(SignNda(serial="L1", party=walk_in, nda="N1"),
                       actor=broker).code == "no_paddle"
    party = m.parties[alice]
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="N1"))
    m.state.parties[party].frozen = True                # as after a default elsewhere
    assert m.unchanged(OpenDocument(serial="L1", party=party, name="claims.pdf"),
                       actor=broker).code == "party_frozen"
    m.state.parties[party].frozen = False
    m.d.ok(ReviewCredit(party=party, approved=False))   # approval withdrawn
    assert m.unchanged(OpenDocument(serial="L1", party=party, name="claims.pdf"),
                       actor=broker).code == "party_not_approved"


def test_the_room_closes_with_its_session():
    m, seller, alice, _ = market()
    as_seller(m, add())
    m.d.ok(CloseSession(session="S1"))
    assert m.state.lots["L1"].status == "withdrawn"      # not yet open: withdrawn with it
    m2, seller2, alice2, _ = market()
    as_seller(m2, add())
    as_bidder(m2, alice2, SignNda(serial="L1", party=m2.parties[alice2], nda="N1"))
    assert one(m2.tick(T0 + DAY), LotPassed)             # no bids: passed
    m2.d.ok(CloseSession(session="S1"))
    for cmd, actor in ((OpenDocument(serial="L1", party=m2.parties[alice2], name="claims.pdf"),
                        m2.brokers[alice2]), (add("late.pdf"), SELLER_BROKER)):
        assert m2.unchanged(cmd, actor=actor).code == "session_closed", cmd


def test_a_room_remembers_at_most_so_many_names(monkeypatch):
    monkeypatch.setattr(dataroom, "MAX_NAMES", 3)
    m, *_ = market()
    for name in ("a", "b", "c"):
        as_seller(m, add(name))
        m.d.ok(RemoveDocument(serial="L1", name=name))
    assert m.unchanged(add("d"), actor=SELLER_BROKER).code == "too_many_documents"
    assert one(as_seller(m, add("a")), DocumentAdded).version == 2


def test_the_feed_snapshot_holds_the_current_index_only():
    from gateway.board import Board
    from gateway.view import MarketView

    m = Market(log=True)
    seller = m.seller()
    m.lot("L1", seller=seller)
    for i in range(50):
        as_seller(m, add(f"draft-{i}.pdf"))
        m.d.ok(RemoveDocument(serial="L1", name=f"draft-{i}.pdf"))
    for _ in range(3):
        as_seller(m, add())                              # versions 1 to 3 of one name
    view = MarketView()
    whole = Board(session="S1")
    for env, events in m.d.log:
        public = [e for e in events if not e.to]
        view.fold(env.seq, public)
        whole.apply(public)
    shown = [e for e in view.snapshot(session="S1") if "Document" in type(e).__name__]
    assert [(e.name, e.version) for e in shown] == [("claims.pdf", 3)]
    joined = Board(session="S1")
    joined.apply(view.snapshot(session="S1"))
    assert joined.lots["L1"].documents == whole.lots["L1"].documents
    assert {name: version for name, (version, _, _) in joined.lots["L1"].documents.items()} \
        == {"claims.pdf": 3}


def test_the_view_with_a_data_room_pickles_into_the_gateway_snapshot():
    import pickle

    from gateway.view import MarketView

    m = Market(log=True)
    m.lot("L1", seller=m.seller())
    as_seller(m, add())
    view = MarketView()
    for env, events in m.d.log:
        view.fold(env.seq, [e for e in events if not e.to])
    copy = pickle.loads(pickle.dumps(view))
    assert copy.snapshot(session="S1") == view.snapshot(session="S1")
    as_seller(m, add(digest=FILE))
    env, events = m.d.log[-1]
    copy.fold(env.seq, [e for e in events if not e.to])
    assert [e.version for e in copy.snapshot(session="S1") if type(e) is DocumentAdded] == [2]


def test_the_board_shows_users_texts_as_text_not_console_markup():
    from rich.console import Console

    from exchange.commands import CreateSession, PostNotice
    from gateway.board import Board

    m = Market(log=True)
    m.d.ok(CreateSession(session="S2", name="Spring [/] sale"))
    m.lot("[/]L1", seller=m.seller(), title="Printing [b]portfolio[/b] [/]")
    m.d.ok(PostNotice(session="S1", serial="[/]L1", text="lot [/] corrected"))
    public = [e for _, events in m.d.log for e in events if not e.to]
    for board in (Board(), Board(session="S2")):
        board.apply(public)
        console = Console(width=250, record=True)
        console.print(board.render(T0))             # a MarkupError before
        text = console.export_text()
        if board.session:
            assert "Spring [/] sale" in text        # the session's name in the title
        else:
            assert "Printing [b]portfolio[/b] [/]" in text and "lot [/] corrected" in text


def test_a_required_nda_version_makes_everyone_sign_it():
    from exchange.commands import RequireNda
    from exchange.events import NdaRequired

    m, seller, alice, bob = market(schedule=False)
    as_seller(m, add())
    required = one(as_seller(m, RequireNda(serial="L1", nda="OT-NDA-2017")), NdaRequired)
    assert required.to == (SELLER_BROKER, "@operators")            # not published yet
    m.d.ok(VetLot(serial="L1", score=80, approved=True))
    listed = one(m.d.ok(ScheduleLot(serial="L1")), NdaRequired)
    assert (listed.to, listed.nda) == ((), "OT-NDA-2017")          # bidders learn what to sign
    party = m.parties[alice]
    assert m.unchanged(SignNda(serial="L1", party=party, nda="OT-NDA-2016"),
                       actor=m.brokers[alice]).code == "wrong_nda"
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="OT-NDA-2017"))
    as_bidder(m, alice, OpenDocument(serial="L1", party=party, name="claims.pdf"))
    assert one(as_seller(m, RequireNda(serial="L1", nda="OT-NDA-2018")), NdaRequired).to == ()
    refused = m.unchanged(OpenDocument(serial="L1", party=party, name="claims.pdf"),
                          actor=m.brokers[alice])
    assert refused.code == "nda_required" and "OT-NDA-2018" in refused.text
    as_bidder(m, alice, SignNda(serial="L1", party=party, nda="OT-NDA-2018"))
    as_bidder(m, alice, OpenDocument(serial="L1", party=party, name="claims.pdf"))
    assert m.unchanged(RequireNda(serial="L1", nda="OT-NDA-2018"),
                       actor=SELLER_BROKER).code == "bad_field"        # no change
    assert m.unchanged(RequireNda(serial="L1", nda="x"),
                       actor=m.brokers[bob]).code == "not_permitted"
    one(as_seller(m, RequireNda(serial="L1", nda="")), NdaRequired)  # any version again
    as_bidder(m, bob, SignNda(serial="L1", party=m.parties[bob], nda="whatever"))
