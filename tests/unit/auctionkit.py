"""A small market for the auction tests: a session, bidders with paddles, lots."""

from __future__ import annotations

from typing import Any

from exchange.commands import (CreateLot, CreateSession, IssuePaddle, LotTerms, Patent, PlaceBid,
                               RegisterParty, ReviewCredit, ScheduleLot, VetLot)
from exchange.driver import Driver
from exchange.events import CommandRejected

SECOND = 10**9
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_767_225_600 * SECOND  # 2026-01-01T00:00:00Z
USD = 100                    # cents per dollar


def of(events: list, kind: type) -> list:
    """The events of one type, in order."""
    return [event for event in events if isinstance(event, kind)]


def one(events: list, kind: type) -> Any:
    found = of(events, kind)
    assert len(found) == 1, (kind.__name__, events)
    return found[0]


class Market:
    """One engine with session "S1" (USD) and helpers to add parties and lots."""

    def __init__(self, *, check: bool = True, session: str = "S1", log: bool = False,
                 ends_at: int = 0) -> None:
        self.d = Driver(start_ts=T0, keep_log=log)
        self.d.engine.check_invariants = check
        self.session = session
        self.brokers: dict[int, str] = {}   # paddle -> broker
        self.parties: dict[int, int] = {}   # paddle -> party
        self.d.ok(CreateSession(session=session, name="Test session", currency="USD",
                                ends_at=ends_at))

    @property
    def state(self):
        return self.d.engine.state

    def party(self, name: str, broker: str, limit: int = 10**12, currency: str = "USD") -> int:
        party = self.d.ok(RegisterParty(name=name), actor=broker, role="broker")[0].party
        self.d.ok(ReviewCredit(party=party, approved=True, credit_limit=limit, currency=currency,
                               agreement_version="BRA-2026"))
        return party

    def bidder(self, name: str, limit: int = 10**12, broker: str | None = None,
               currency: str = "USD") -> int:
        broker = broker or f"broker-{name}"
        party = self.party(name, broker, limit, currency)
        paddle = self.d.ok(IssuePaddle(session=self.session, party=party))[0].paddle
        self.brokers[paddle] = broker
        self.parties[paddle] = party
        return paddle

    def seller(self, name: str = "Seller", broker: str = "seller-broker", limit: int = 0) -> int:
        return self.party(name, broker, limit)

    def terms(self, **fields: Any) -> LotTerms:
        base: dict[str, Any] = dict(
            title="Printing portfolio", currency="USD", mechanism="english",
            starting_bid=1_000 * USD, increments="custom", custom_increments=((0, 100 * USD),),
            opens_at=T0 + HOUR, closes_at=T0 + DAY,
            patents=(Patent(number="US7000001", title="Inkjet nozzle array", family_id="F1",
                            jurisdiction="US", status="granted", field="printing",
                            priority_date=T0 - 3000 * DAY, expiry_date=T0 + 3000 * DAY),))
        base.update(fields)
        return LotTerms(**base)

    def lot(self, serial: str, *, seller: int, reserve: int = 0, schedule: bool = True,
            broker: str = "seller-broker", **fields: Any) -> list:
        events = self.d.ok(CreateLot(serial=serial, session=self.session, seller=seller,
                                     terms=self.terms(**fields), reserve=reserve),
                           actor=broker, role="broker")
        if schedule:
            events += self.d.ok(VetLot(serial=serial, score=80, approved=True))
            events += self.d.ok(ScheduleLot(serial=serial))
        return events

    def send(self, cmd: Any, paddle: int, ts: int | None = None) -> list:
        return self.d.send(cmd, actor=self.brokers[paddle], role="broker", ts=ts)

    def bid(self, serial: str, paddle: int, amount: int, ts: int | None = None) -> list:
        events = self.send(PlaceBid(serial=serial, paddle=paddle, amount=amount), paddle, ts)
        rejected = of(events, CommandRejected)
        assert not rejected, (rejected[0].code, rejected[0].text)
        return events

    def refused(self, serial: str, paddle: int, amount: int, ts: int | None = None) -> CommandRejected:
        events = self.send(PlaceBid(serial=serial, paddle=paddle, amount=amount), paddle, ts)
        return one(events, CommandRejected)

    def tick(self, ts: int) -> list:
        return self.d.tick(ts)

    def exposure(self, paddle: int) -> int:
        found = self.state.exposure.get((self.session, self.parties[paddle]))
        return 0 if found is None else found.total

    def unchanged(self, cmd: Any, *, actor: str, role: str = "broker") -> CommandRejected:
        """Send ``cmd`` and assert it is refused and leaves the state as it was."""
        self.d.tick(self.d.ts)  # fire anything due first, so only the command is compared
        before = self._image()
        events = self.d.send(cmd, actor=actor, role=role)
        assert self._image() == before, "a refused command changed the state"
        return one(events, CommandRejected)

    def send_checked(self, cmd: Any, actor: str, role: str, *, compare: bool,
                     where: str) -> tuple[list, CommandRejected | None]:
        """Send ``cmd`` for a stress run: an invariant failure names ``where``; a
        refusal must be the one last event and, with ``compare``, change nothing
        (``compare`` first fires what is due, so only the command is compared)."""
        if compare:
            self.d.tick(self.d.ts)
        before = self._image() if compare else b""
        try:
            events = self.d.send(cmd, actor=actor, role=role)
        except AssertionError as broken:
            raise AssertionError(f"{where}, {cmd}: invariant broken: {broken}") from broken
        rejected = [e for e in events if isinstance(e, CommandRejected)]
        if not rejected:
            return events, None
        assert len(rejected) == 1 and events[-1] is rejected[0], f"{where}: {events}"
        assert not compare or self._image() == before, \
            f"{where}: refused {cmd} ({rejected[0].code}) changed the state"
        return events, rejected[0]

    def _image(self) -> bytes:
        return state_image(self.d.engine)


def state_image(engine: Any) -> bytes:
    """The engine's state as bytes, but the sequence number and clock a
    refused command moves: equal before and after it, if it changed nothing."""
    state = engine.state
    seq, now = state.last_seq, state.now
    state.last_seq = 0
    try:
        return engine.snapshot()
    finally:
        state.last_seq, state.now = seq, now


def mechanism_terms(rng: Any, mechanism: str, start: int, reserve: int, closes: int) -> dict:
    """Random terms a lot of ``mechanism`` adds to the common ones (for the
    stress runs): an Ask, a soft close, a Dutch clock."""
    fields: dict = {}
    if mechanism in ("english", "sealed_first", "sealed_second") and rng.random() < 0.3:
        fields["ask"] = rng.choice((3, 6, 10)) * start
    if mechanism == "english" and rng.random() < 0.5:
        fields.update(soft_window=30 * MINUTE, soft_extend=20 * MINUTE,
                      hard_end=closes + rng.choice((0, HOUR, 3 * HOUR)))
    if mechanism == "dutch":
        fields.update(dutch_start=8 * start + reserve, dutch_step=start // 2,
                      dutch_interval=rng.choice((10 * MINUTE, HOUR)))
    return fields


def bid_amount(rng: Any, lot: Any) -> int:
    """A random bid on ``lot`` near where it stands (for the stress runs):
    under or over a tender's ceiling, around the next English step, the Dutch
    clock or the starting bid."""
    if lot.mechanism == "reverse":
        return rng.randrange(lot.terms.starting_bid // 3, lot.terms.starting_bid + 2 * USD)
    if lot.mechanism == "english" and lot.leader:
        base = lot.price + lot.ladder.at(lot.price)
    else:
        base = max(lot.clock, lot.terms.starting_bid)
    return base + rng.randrange(-1, 12) * 100 * USD
