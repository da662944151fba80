"""Invariant checks, run after every command in tests and stress runs.

Each module adds its own checker with `@invariant`; `check(state)` runs them
all and raises AssertionError naming the first broken one.
"""

from __future__ import annotations

from typing import Callable

CHECKERS: list[Callable] = []


def invariant(fn: Callable) -> Callable:
    CHECKERS.append(fn)
    return fn


def check(state) -> None:
    for checker in CHECKERS:
        checker(state)


@invariant
def _exposure_totals(state) -> None:
    for (session, party), found in state.exposure.items():
        assert found.total == sum(found.items.values()), (session, party)
        assert all(v > 0 for v in found.items.values()), (session, party, found.items)
        holder = state.parties[party]
        assert found.total >= 0


@invariant
def _paddles_consistent(state) -> None:
    for session in state.sessions.values():
        assert len(session.paddles) == len(session.by_party)
        for paddle, party in session.paddles.items():
            assert session.by_party[party] == paddle
            assert paddle < session.next_paddle
