"""Drive an engine in-process: number commands, stamp times, keep the log.

Used by tests, the stress runs, `lotex whatif` and anything else that runs
the engine without the gateway. The clock is whatever the caller says.
"""

from __future__ import annotations

from typing import Any

from exchange.commands import RULES, Command, Envelope, Tick
from exchange.engine import Engine
from exchange.events import CommandRejected, Event


class Driver:
    """Sequence commands into an engine, as the gateway would. O(1) per send
    plus the engine's own cost."""

    def __init__(self, engine: Engine | None = None, *, start_ts: int = 0,
                 keep_log: bool = False) -> None:
        self.engine = engine if engine is not None else Engine()
        self.seq = self.engine.state.last_seq
        self.ts = max(start_ts, self.engine.state.now)
        self.log: list[tuple[Envelope, list[Event]]] | None = [] if keep_log else None
        self.rules = RULES                 # the rules version its envelopes carry

    def send(self, cmd: Command, *, actor: str = "op", role: str = "operator",
             ts: int | None = None, client_id: str = "") -> list[Event]:
        """Apply ``cmd`` as ``actor`` at ``ts`` (default: the last time) and return its events."""
        if ts is not None:
            self.ts = max(self.ts, ts)
        self.seq += 1
        env = Envelope(seq=self.seq, ts=self.ts, actor=actor, role=role, cmd=cmd,
                       client_id=client_id, rules=self.rules)
        events = self.engine.apply(env)
        self.record(env, events)
        if self.log is not None:
            self.log.append((env, events))
        return events

    def record(self, env: Envelope, events: list[Event]) -> None:
        """Keep what an envelope caused; a subclass journals it. Here: nothing."""

    def tick(self, ts: int) -> list[Event]:
        """Advance the clock to ``ts`` and return what fired."""
        return self.send(Tick(), actor="clock", role="system", ts=ts)

    def ok(self, cmd: Command, **kw: Any) -> list[Event]:
        """Send and assert the command was not rejected (for tests and demos)."""
        events = self.send(cmd, **kw)
        rejected = [e for e in events if isinstance(e, CommandRejected)]
        if rejected:
            raise AssertionError(f"{type(cmd).__name__} rejected: {rejected[0].code}: {rejected[0].text}")
        return events

    def refused(self, cmd: Command, **kw: Any) -> CommandRejected:
        """Send and return the rejection; assert there is one (for tests)."""
        events = self.send(cmd, **kw)
        rejected = [e for e in events if isinstance(e, CommandRejected)]
        if not rejected:
            raise AssertionError(f"{type(cmd).__name__} was accepted: {events}")
        return rejected[-1]
