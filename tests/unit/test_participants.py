"""Parties, credit reviews, sessions, paddles and credit exposure."""

import msgspec
import pytest

from exchange import Engine, credit
from exchange.codec import decode_envelope, decode_events, encode
from exchange.commands import (CreateSession, Envelope, IssuePaddle, RegisterParty, ReviewCredit,
                               SetDisplayRate, Tick)
from exchange.driver import Driver
from exchange.errors import Reject
from exchange.events import OPERATORS, PaddleIssued, PartyRegistered
from exchange.participants import display_amount


def setup_party(d: Driver, broker: str = "b1", limit: int = 1_000_000) -> int:
    ev = d.ok(RegisterParty(name="Acme Corp"), actor=broker, role="broker")
    party = ev[0].party
    d.ok(ReviewCredit(party=party, approved=True, credit_limit=limit, currency="USD",
                      agreement_version="BRA-2026"))
    return party


def test_register_review_and_paddle():
    d = Driver()
    d.ok(CreateSession(session="S1", name="Autumn", currency="USD"))
    party = setup_party(d)
    ev = d.ok(IssuePaddle(session="S1", party=party))
    assert ev == [PaddleIssued(to=("b1", OPERATORS), session="S1", paddle=101, party=party)]
    assert d.refused(IssuePaddle(session="S1", party=party)).code == "paddle_exists"


def test_identity_is_private_to_broker_and_operators():
    d = Driver()
    ev = d.ok(RegisterParty(name="Secret Buyer Ltd"), actor="b1", role="broker")
    assert isinstance(ev[0], PartyRegistered)
    assert ev[0].to == ("b1", OPERATORS)


def test_a_broker_may_name_itself_as_the_broker_but_no_other():
    d = Driver()
    ev = d.ok(RegisterParty(name="Own Client", broker="b1"), actor="b1", role="broker")
    assert ev[0].broker == "b1"
    refused = d.send(RegisterParty(name="Other", broker="b2"), actor="b1", role="broker")
    assert refused[0].code == "not_permitted"


def test_unapproved_party_gets_no_paddle():
    d = Driver()
    d.ok(CreateSession(session="S1", name="x"))
    party = d.ok(RegisterParty(name="A"), actor="b1", role="broker")[0].party
    assert d.refused(IssuePaddle(session="S1", party=party)).code == "party_not_approved"
    d.ok(ReviewCredit(party=party, approved=False))
    assert d.refused(IssuePaddle(session="S1", party=party)).code == "party_not_approved"


def test_broker_cannot_run_operator_commands():
    d = Driver()
    r = d.refused(CreateSession(session="S1", name="x"), actor="b1", role="broker")
    assert r.code == "not_permitted" and r.to == ("b1",)
    assert "S1" not in d.engine.state.sessions


@pytest.mark.parametrize("cmd,code", [
    (ReviewCredit(party=999, approved=True, credit_limit=1, agreement_version="v"), "unknown_party"),
    (CreateSession(session="S1", name="x", currency="usd"), "bad_field"),
    (SetDisplayRate(base="USD", quote="CNY", num=0, den=1), "bad_rate"),
    (SetDisplayRate(base="USD", quote="CNY", num=10**16, den=1), "out_of_range"),
])
def test_bad_input_is_refused_without_change(cmd, code):
    d = Driver()
    before = d.engine.snapshot()
    rejection = d.refused(cmd)
    assert rejection.code == code and rejection.text
    d.engine.state.last_seq = 0
    d.engine.state.now = 0
    assert d.engine.snapshot() == before


def test_credit_exposure_across_keys():
    d = Driver()
    d.ok(CreateSession(session="S1", name="x"))
    party = setup_party(d, limit=100)
    state = d.engine.state
    credit.check(state, "S1", party, ("lot", "A"), 60)
    credit.commit(state, "S1", party, ("lot", "A"), 60)
    with pytest.raises(Reject) as refused:
        credit.check(state, "S1", party, ("lot", "B"), 41)
    assert refused.value.code == "over_credit_limit"
    credit.check(state, "S1", party, ("lot", "A"), 100)  # replacing its own key is fine
    credit.release(state, "S1", party, ("lot", "A"))
    credit.check(state, "S1", party, ("lot", "B"), 100)
    assert credit.exposure(state, "S1", party).total == 0


def test_display_rate_rounds_half_up():
    d = Driver()
    d.ok(SetDisplayRate(base="USD", quote="CNY", num=66402, den=10000))
    assert display_amount(d.engine.state, 3_000_000, "USD", "CNY") == 19_920_600
    assert display_amount(d.engine.state, 1, "USD", "EUR") is None


def test_envelope_round_trips_through_msgpack():
    env = Envelope(seq=7, ts=123, actor="b1", role="broker", cmd=RegisterParty(name="A"), client_id="")
    assert decode_envelope(encode(env)) == env
    d = Driver()
    events = d.send(RegisterParty(name="A"), actor="b1", role="broker")
    assert decode_events(encode(events)) == events


def test_unknown_fields_and_tags_fail_to_decode():
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(encode({"seq": 1, "ts": 1, "actor": "a", "role": "broker",
                                "cmd": {"type": "Nope"}}))
    with pytest.raises(msgspec.ValidationError):
        decode_envelope(encode({"seq": 1, "ts": 1, "actor": "a", "role": "broker",
                                "cmd": {"type": "RegisterParty", "name": "x", "evil": 1}}))


def test_time_is_monotonic_and_tick_changes_nothing_else():
    d = Driver()
    d.tick(50)
    d.send(Tick(), actor="clock", role="system", ts=10)
    assert d.engine.state.now == 50


def test_snapshot_restore_round_trip():
    d = Driver()
    d.ok(CreateSession(session="S1", name="x"))
    setup_party(d)
    again = Engine.restore(d.engine.snapshot())
    assert again.snapshot() == d.engine.snapshot()


def test_texts_and_lists_over_the_engines_sizes_are_refused_too_long():
    from exchange.commands import CreateLot, LotTerms, Patent
    from exchange.errors import MAX_ITEMS, MAX_TEXT
    d = Driver()
    before = len(d.engine.state.parties)
    refusal = d.refused(RegisterParty(name="x" * (MAX_TEXT + 1)), actor="b1", role="broker")
    assert refusal.code == "too_long" and "name has 1001 characters" in refusal.text
    assert len(d.engine.state.parties) == before
    party = d.ok(RegisterParty(name="x" * MAX_TEXT), actor="b1", role="broker")[0].party
    d.ok(CreateSession(session="S", name="s"))
    patent = Patent(number="US1", title="t")
    long_title = LotTerms(title="t", patents=(Patent(number="US2", title="y" * 5000),))
    refusal = d.refused(CreateLot(serial="L1", session="S", seller=party, terms=long_title),
                        actor="b1", role="broker")
    assert refusal.code == "too_long" and "terms.patents[0].title" in refusal.text
    many = LotTerms(title="t", patents=(patent,) * (MAX_ITEMS + 1))
    refusal = d.refused(CreateLot(serial="L1", session="S", seller=party, terms=many),
                        actor="b1", role="broker")
    assert refusal.code == "too_long" and "terms.patents has 10001 items" in refusal.text
    assert "L1" not in d.engine.state.lots
