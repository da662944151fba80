"""The engine: ``state + envelope -> events``, with no I/O.

One `Engine` owns one `State`. `Engine.apply` takes a sequenced `Envelope`,
first fires every scheduled action due at or before the envelope's time
(closings, soft-close ends, Dutch steps, expiries, due dates; since rules 6
each with its reactions before the next), then runs the command's handler.
A handler validates everything before it changes anything and raises
`Reject` to refuse; the engine then emits a `CommandRejected` to the sender
alone and keeps the state unchanged.

Mechanism modules register handlers with `@handles(CommandType)`, timer
actions with `@on_timer("kind")` and reactions to events with
`@reacts_to(EventType)`; `exchange/__init__.py` imports them all.
"""

from __future__ import annotations

import heapq
import pickle
from typing import Any, Callable

from exchange.commands import (CancelOrder, Command, Envelope, ModifyOrder, PlaceBid, PlaceOrder,
                               Tick)
from exchange.errors import Reject, check_sizes
from exchange.events import CommandRejected, Event, OPERATORS

Handler = Callable[["State", "Ctx", Any], None]
TimerAction = Callable[["State", "Ctx", str, int], None]

Reaction = Callable[["State", "Ctx", Any], None]

HANDLERS: dict[type[Command], Handler] = {}
TIMER_ACTIONS: dict[str, TimerAction] = {}
# kind -> whether a timer of that kind can no longer do anything (`stale_when`)
STALE_TIMERS: dict[str, Callable[["State", str, int], bool]] = {}
COMPACT_TIMERS_FROM = 4096
"""Timers held before `State.schedule` looks for stale ones to drop."""
REACTIONS: dict[type[Event], list[Reaction]] = {}
# Commands whose texts are ids looked up (refused when unknown) and that come
# at full speed: not walked by `check_sizes` (~1 us a command).
NOT_WALKED: frozenset[type[Command]] = frozenset((PlaceOrder, CancelOrder, ModifyOrder, PlaceBid))


def handles(command_type: type[Command]) -> Callable[[Handler], Handler]:
    """Register the handler of a command type; one handler per type."""
    def register(fn: Handler) -> Handler:
        if command_type in HANDLERS:
            raise KeyError(f"{command_type.__name__} has a handler already")
        HANDLERS[command_type] = fn
        return fn
    return register


def stale_when(kind: str) -> Callable[[Callable], Callable]:
    """Register a test of whether a timer of ``kind`` (its ``ref`` and ``arg``)
    would do nothing if it fired, so that `State.schedule` may drop it early."""
    def register(fn: Callable) -> Callable:
        STALE_TIMERS[kind] = fn
        return fn
    return register


def on_timer(kind: str) -> Callable[[TimerAction], TimerAction]:
    """Register the action fired for timers of ``kind``."""
    def register(fn: TimerAction) -> TimerAction:
        if kind in TIMER_ACTIONS:
            raise KeyError(f"timer kind {kind!r} has an action already")
        TIMER_ACTIONS[kind] = fn
        return fn
    return register


def reacts_to(event_type: type[Event]) -> Callable[[Reaction], Reaction]:
    """Register a reaction to an event type: it runs, in registration order,
    after each such event is emitted within the same envelope (for example
    settlement opening on an award). A reaction must not refuse; the events it
    emits are reacted to in turn."""
    def register(fn: Reaction) -> Reaction:
        REACTIONS.setdefault(event_type, []).append(fn)
        return fn
    return register


class State:
    """Everything the engine knows. Plain containers, iterated in insertion
    or sorted order only, so that replay is byte-for-byte deterministic."""

    def __init__(self) -> None:
        self.now = 0                       # ns UTC of the last applied envelope
        self.last_seq = 0                  # sequence of the last applied envelope
        self.parties: dict[int, Any] = {}  # party id -> participants.Party
        self.sessions: dict[str, Any] = {} # session id -> participants.Session
        self.rates: dict[tuple[str, str], tuple[int, int]] = {}
        self.exposure: dict[tuple[str, int], Any] = {}  # (session, party) -> credit.Exposure
        self.lots: dict[str, Any] = {}     # serial -> auction lot (issue 2)
        self.books: dict[str, Any] = {}    # instrument -> book (issue 3)
        self.settlements: dict[int, Any] = {}  # settlement id -> settlement (issue 7)
        self.extra: dict[str, Any] = {}    # per-module state that needs no field of its own
        # a heap of (when, order, kind, ref, arg): fired in time order, then in
        # the order set; ``timers[0]`` is the next due
        self.timers: list[tuple[int, int, str, str, int]] = []
        self._timer_order = 0

    def schedule(self, when: int, kind: str, ref: str, arg: int = 0) -> None:
        """Schedule timer ``kind`` for ``ref`` at ``when``. O(log n) (a heap).

        Timers are never cancelled: an action checks that it is still
        relevant (the lot still open, the close time unchanged) and otherwise
        does nothing. Once the heap has doubled since it was last looked at,
        the timers of a kind with a `stale_when` test that would do nothing
        are dropped (an order modified again and again left one each until
        its expiry): O(n) every time n doubles, so O(1) amortised.
        """
        self._timer_order += 1
        timers = self.timers
        heapq.heappush(timers, (when, self._timer_order, kind, ref, arg))
        if len(timers) >= 2 * max(getattr(self, "timers_kept", 0), COMPACT_TIMERS_FROM // 2):
            self.compact_timers()

    def compact_timers(self) -> None:
        """Drop the timers their kind's `stale_when` test says would do nothing;
        the rest fire in the same order as before (each has its own order number)."""
        timers = self.timers                 # in place: a firing loop holds this list
        timers[:] = [timer for timer in timers
                     if not (timer[2] in STALE_TIMERS and STALE_TIMERS[timer[2]](self, timer[3],
                                                                                 timer[4]))]
        heapq.heapify(timers)
        self.timers_kept = len(timers)


class Ctx:
    """What a handler knows of the command at hand, and where its events go."""

    __slots__ = ("seq", "ts", "actor", "role", "client_id", "rules", "out", "due")

    def __init__(self, env: Envelope, out: list[Event]) -> None:
        self.seq = env.seq
        self.ts = env.ts
        self.actor = env.actor
        self.role = env.role
        self.client_id = env.client_id
        self.rules = env.rules        # the rules version to apply (`commands.RULES`)
        self.out = out
        # since rules 6, while a timer and the reactions to it run: the time it was
        # due (at or before ``ts``); else 0
        self.due = 0

    def emit(self, event: Event) -> None:
        self.out.append(event)

    def require_role(self, *roles: str) -> None:
        if self.role not in roles:
            raise Reject("not_permitted",
                         f"role {self.role!r} may not send this command; it needs {' or '.join(roles)}")

    @property
    def is_operator(self) -> bool:
        return self.role == "operator" or self.role == "system"


class Engine:
    """Apply sequenced commands to a state and return the events they cause."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state if state is not None else State()
        self.check_invariants = False

    def apply(self, env: Envelope) -> list[Event]:
        """Apply one envelope: fire due timers, then the command. Never raises on
        a bad command; a refused command leaves the state unchanged."""
        state = self.state
        out: list[Event] = []
        ctx = Ctx(env, out)
        if env.ts > state.now:
            state.now = env.ts
        else:
            ctx.ts = state.now        # time never runs backwards inside the engine
        state.last_seq = env.seq
        timers = state.timers
        if timers and timers[0][0] <= state.now:
            self._fire_due(ctx)
            if REACTIONS and out and ctx.rules < 6:
                self._react(ctx, 0)   # reactions to what the timers did come before the command
        start = len(out)
        cmd = env.cmd
        handler = HANDLERS.get(type(cmd))
        if type(cmd) is Tick:
            pass
        elif handler is None:
            out.append(CommandRejected(to=(env.actor,), ref=env.seq, code="unknown_command",
                                       text=f"no handler for {type(cmd).__name__}"))
        else:
            mark = len(out)
            try:
                if type(cmd) not in NOT_WALKED:
                    check_sizes(cmd)
                handler(state, ctx, cmd)
            except Reject as refusal:
                del out[mark:]
                out.append(CommandRejected(to=(env.actor,), ref=env.seq,
                                           code=refusal.code, text=refusal.text))
        if REACTIONS and not REACTIONS.keys().isdisjoint(map(type, out[start:])):
            self._react(ctx, start)
        if self.check_invariants:
            from exchange.invariants import check
            check(state)
        return out

    def _fire_due(self, ctx: Ctx) -> None:
        """Fire every timer due by now, in time order. Since rules 6 the
        reactions to what each one emitted run before the next one fires (a
        lot passed at its close closes its book before a later expiry), with
        ``ctx.due`` set to its time; before, they ran after the last one."""
        timers = self.state.timers
        now = self.state.now
        out = ctx.out
        each = ctx.rules >= 6
        while timers and timers[0][0] <= now:
            when, _, kind, ref, arg = heapq.heappop(timers)
            start = len(out)
            if each:
                ctx.due = when
            TIMER_ACTIONS[kind](self.state, ctx, ref, arg)
            if each and REACTIONS and len(out) > start:
                self._react(ctx, start)
        ctx.due = 0

    def _react(self, ctx: Ctx, index: int) -> None:
        """Run the reactions to ``ctx.out[index:]`` and to what they emit in turn."""
        out = ctx.out
        while index < len(out):
            reactions = REACTIONS.get(type(out[index]))
            if reactions:
                for reaction in reactions:
                    reaction(self.state, ctx, out[index])
            index += 1

    def snapshot(self) -> bytes:
        """Serialise the whole state (covers ``state.last_seq``)."""
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, data: bytes) -> "Engine":
        """Rebuild an engine from `snapshot` bytes written by this engine."""
        state = pickle.loads(data)
        if not isinstance(state.timers, list):  # snapshots from before timers were a heap
            state.timers = list(state.timers)   # a sorted sequence is a valid heap
        from exchange.market import GoneOrders
        for inst in state.books.values():
            if isinstance(inst.gone, dict):     # snapshots from before GoneOrders
                inst.gone = GoneOrders(inst.gone.items())
            if not hasattr(inst.book, "owned"):  # snapshots from before the owners' index
                inst.book.index_owners()
        return cls(state)


def private(*users: str) -> tuple[str, ...]:
    """Return an audience of the given users plus every operator, without repeats."""
    seen: list[str] = []
    for user in users:
        if user and user not in seen:
            seen.append(user)
    if OPERATORS not in seen:
        seen.append(OPERATORS)
    return tuple(seen)
