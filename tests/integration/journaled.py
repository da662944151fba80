"""Drive an engine as the gateway does: apply, journal the entry, commit."""

from __future__ import annotations

from typing import Any

from exchange.codec import Entry, encode_entry
from exchange.commands import (CreateSession, IssuePaddle, RegisterParty, ReviewCredit, SetDisplayRate)
from exchange.driver import Driver
from recorder.format import KIND_ENTRY

SECOND = 1_000_000_000
T0 = 1_767_225_600 * SECOND        # 2026-01-01T00:00:00Z


class JournaledDriver(Driver):
    """A `Driver` whose every command is journaled (one ENTRY per command)."""

    def __init__(self, journal: Any, **kw: Any) -> None:
        super().__init__(keep_log=True, **kw)
        self.journal = journal

    def send(self, cmd, **kw):  # type: ignore[override]
        events = super().send(cmd, **kw)
        env, _ = self.log[-1]
        seq = self.journal.append(env.ts, KIND_ENTRY, encode_entry(Entry(env, events)))
        assert seq == env.seq, (seq, env.seq)
        self.journal.commit()
        return events


def core_session(d: Driver, parties: int = 6, *, start: int = T0, session: str = "S1") -> list[int]:
    """Create a session, register and review parties, issue paddles, with a
    few refusals on the way; return the party ids. One command a second."""
    ts = start
    d.ok(CreateSession(session=session, name="Spring patents", currency="USD"), ts=ts)
    d.ok(SetDisplayRate(base="USD", quote="CNY", num=664, den=100), ts=ts)
    ids = []
    for i in range(parties):
        ts += SECOND
        broker = f"broker-{i % 3}"
        party = d.ok(RegisterParty(name=f"Party {i}", country="US" if i % 2 else "CN"), actor=broker,
                     role="broker", ts=ts)[0].party
        ids.append(party)
        d.refused(IssuePaddle(session=session, party=party), ts=ts)          # not approved yet
        d.ok(ReviewCredit(party=party, approved=i % 4 != 3, credit_limit=1_000_000 * (i + 1),
                          agreement_version="BRA-2026"), ts=ts)
        if i % 4 != 3:
            d.ok(IssuePaddle(session=session, party=party), ts=ts + 1)
    d.refused(CreateSession(session=session, name="again"), ts=ts + 2)
    return ids
