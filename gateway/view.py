"""The public market view behind the snapshot service.

It folds every public event (``to == ()``), in journal order, into buckets:
one per session (events with a ``session`` field, or about a lot or
instrument first seen with one) and one for the whole market (events with
neither, such as display rates). Inside a bucket an event whose type has a
*last-value key* replaces the earlier event with the same key (a lot's
standing price, a Dutch clock, a book level): the bucket holds the current
state, not the whole history, so a snapshot stays as small as the state it
describes. Every other public event is kept (catalogue entries, openings,
closings, awards: a handful per lot). An event type listed in `ENDS`
removes the value it ends (a document taken out of a data room) and is not
kept itself.

A snapshot of a session is its bucket plus the market bucket; of a lot or
instrument (``key``), the events about that key of each bucket it is used
in, plus the market bucket; of the whole market, the market bucket and the
open sessions' (of a closed session, its `SessionClosed` only: a session
closed keeps its bucket, for a snapshot naming it, but not its index). Applying a snapshot's events in order and then every Market
message above its ``seq`` gives exactly what a subscriber that saw the whole
feed would hold. Only public events enter the view, so nothing private can
leave through it. Each bucket is also indexed by key, so a snapshot of one
lot or instrument looks at its events and the session's keyless ones only,
not at every level of every book of the session. Each fold is O(1); a
snapshot is O(the events it returns, log of them).
"""

from __future__ import annotations

from operator import attrgetter, itemgetter
from typing import Any, Iterable

# Fields that name the thing an event is about, in order of preference.
KEY_FIELDS = ("serial", "instrument", "book")

# Event type -> fields that, with the type and the key, identify the value it
# replaces. An empty tuple: one value per (type, key). Types not listed are kept.
LAST_VALUE: dict[str, tuple[str, ...]] = {
    # auctions: the standing state of a lot, repeated by every bid or step
    "BidAccepted": (),
    "DutchPriceChanged": (),
    "SealedBidCounted": (),
    "LotExtended": (),
    # continuous book: one value per level, the quote, the last trade, the phase
    "DepthChanged": ("side", "price"),
    "QuoteChanged": (),
    "TradeExecuted": (),
    "IndicativePrice": (),
    "PhaseChanged": (),
    "OrderLimitSet": (),
    "PriceRulesSet": (),
    "TradingHalted": (),
    # lots' data rooms and pricing panels: the current index, the last range
    "DocumentAdded": ("name",),
    "NdaRequired": (),
    "PriceRangePublished": (),
    # a lot's terms (a rescheduled lot's replace the earlier), an instrument's
    # last call auction, a display rate per pair of currencies (market-wide)
    "LotScheduled": (),
    "CallUncrossed": (),
    "DisplayRateSet": ("base", "quote"),
}

# Event types that end another type's last value and are not kept themselves:
# type -> (the ended type, the field naming the slot with it).
ENDS: dict[str, tuple[str, str]] = {
    "DocumentRemoved": ("DocumentAdded", "name"),
}

# Event types whose last-value entry is removed when this field is zero
# (an emptied book level).
DROP_WHEN_ZERO: dict[str, str] = {
    "DepthChanged": "qty",
}


# The event that closes a session: a whole-market snapshot leaves the session
# out from then on (it holds this event of it only), and the session's index
# by key is dropped (a snapshot of it, or of one of its keys, walks its bucket).
CLOSES = "SessionClosed"


def key_of(event: Any) -> str:
    """Return what the event is about (lot serial, instrument), or ""."""
    for name in KEY_FIELDS:
        value = getattr(event, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


def _rule(kind: type) -> tuple:
    """How events of ``kind`` fold: (name, key field, has a session field,
    a function giving the rest of the last-value slot or None for a kept
    event, field whose zero drops the value, the (type, field) it ends or
    None, whether it has several key fields, so that what it is about
    (`key_of`) is not simply its key field)."""
    fields = getattr(kind, "__struct_fields__", ())
    name = kind.__name__
    key_field = next((f for f in KEY_FIELDS if f in fields), "")
    identity = LAST_VALUE.get(name)
    slot_rest: Any = None
    if identity is not None:
        identity = tuple(f for f in identity if f in fields)
        if not identity:
            slot_rest = _NO_REST
        elif len(identity) == 1:
            slot_rest = _OneField(identity[0])
        else:
            slot_rest = attrgetter(*identity)     # returns a tuple
    zero_field = DROP_WHEN_ZERO.get(name)
    if zero_field not in fields:
        zero_field = None
    several = sum(1 for f in KEY_FIELDS if f in fields) > 1
    return (name, key_field, "session" in fields, slot_rest, zero_field, ENDS.get(name), several,
            name == CLOSES)


def _NO_REST(event: Any) -> tuple:
    return ()


class _OneField:
    """The rest of a last-value slot named by one field, as a 1-tuple
    (a class, not a closure: the view is pickled into the gateway snapshot)."""

    __slots__ = ("field",)

    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, event: Any) -> tuple:
        return (getattr(event, self.field),)


def _unindex(keyed: dict[str, dict[Any, None]] | None, about: str, slot: Any) -> None:
    """Take ``slot``, indexed under ``about``, out of a session's index."""
    if keyed is not None:
        index = keyed.get(about)
        if index is not None:
            index.pop(slot, None)


class MarketView:
    """Public state by session, as the public events that make it."""

    def __init__(self) -> None:
        # bucket (session id, "" for the market) -> slot -> (place in the fold
        # order, event); a kept event's slot is its place
        self.buckets: dict[str, dict[Any, tuple[int, Any]]] = {"": {}}
        self.session_of: dict[str, str] = {}     # lot serial / instrument -> first session
        # a key seen in more sessions (a lot serial that is an instrument id of
        # another session): key -> the other sessions, in first-seen order
        self.also_in: dict[str, list[str]] = {}
        self._counter = 0                         # events folded in, ever
        self._ordered = True                      # (places, not seqs: see __setstate__)
        self.seq = 0                              # last journal seq folded in
        self._rules: dict[type, tuple] = {}
        # each session's slots by what their event is about (`key_of`, "" for
        # nothing): session id -> key -> slots (a dict as an ordered set)
        self._keyed: dict[str, dict[str, dict[Any, None]]] = {}
        self.walked = 0                           # events the last snapshot looked at
        # closed sessions -> (place, their SessionClosed), in closing order
        self.closed: dict[str, tuple[int, Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rules"] = {}                      # a cache: rebuilt on the next fold
        del state["_keyed"]                       # rebuilt from the buckets on loading
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rules = {}                          # a pickle of an older view may hold one
        self.walked = 0
        if not state.get("_ordered"):
            # pickled before: each value held its seq, each bucket in fold
            # order; number them in the order its snapshots had (by seq, then
            # by bucket, then in the bucket) after every slot number used
            items = sorted((value[0], b, n, session, slot)
                           for b, (session, bucket) in enumerate(self.buckets.items())
                           for n, (slot, value) in enumerate(bucket.items()))
            for place, (*_, session, slot) in enumerate(items, start=self._counter + 1):
                bucket = self.buckets[session]
                bucket[slot] = (place, bucket[slot][1])
            self._counter += len(items)
            self._ordered = True
        if "closed" not in state:                 # pickled before: sessions closed then stay open
            self.closed = {}
        self._keyed = {}
        rebuild = "also_in" not in state          # pickled before keys in several sessions
        if rebuild:
            self.also_in = {}
        for session, bucket in self.buckets.items():
            if session:
                keyed = {} if session in self.closed else self._keyed.setdefault(session, {})
                for slot, (_, event) in bucket.items():
                    about = key_of(event)
                    keyed.setdefault(about, {})[slot] = None
                    if rebuild and about and self.session_of.get(about, session) != session:
                        self._also(about, session)

    def fold(self, seq: int, events: Iterable[Any]) -> None:
        """Fold the public events of journal entry ``seq``. O(events)."""
        self.seq = seq
        rules = self._rules
        session_of = self.session_of
        buckets = self.buckets
        keyed_of = self._keyed
        closed = self.closed
        place = self._counter
        for event in events:
            if event.to:
                continue
            kind = type(event)
            rule = rules.get(kind)
            if rule is None:
                rule = rules[kind] = _rule(kind)
            name, key_field, has_session, slot_rest, zero_field, ended, several, closes = rule
            key = getattr(event, key_field) if key_field else ""
            session = event.session if has_session else ""
            if session:
                if key:
                    first = session_of.get(key)
                    if first is None:
                        session_of[key] = session
                    elif first != session:
                        self._also(key, session)
            elif key:
                session = session_of.get(key, "")
            bucket = buckets.get(session)
            if bucket is None:
                bucket = buckets[session] = {}
            if ended is not None:
                slot = (ended[0], key, getattr(event, ended[1]))
                gone = bucket.pop(slot, None)
                if gone is not None and session:
                    _unindex(keyed_of.get(session), key_of(gone[1]) if several else key, slot)
                continue
            place += 1
            if slot_rest is None:
                slot = place
                gone = None
            else:
                if slot_rest is _NO_REST:
                    slot = (name, key)
                else:
                    slot = (name, key, *slot_rest(event))
                gone = bucket.pop(slot, None)     # re-inserted last: keeps the fold order
                if zero_field is not None and getattr(event, zero_field) == 0:
                    if gone is not None and session:
                        _unindex(keyed_of.get(session), key_of(gone[1]) if several else key,
                                 slot)
                    continue
            bucket[slot] = (place, event)
            if gone is None and session:          # a new slot (a replaced one keeps its key)
                if closes:                        # no index from now on
                    closed[session] = (place, event)
                    keyed_of.pop(session, None)
                    continue
                keyed = keyed_of.get(session)
                if keyed is None:
                    if session in closed:
                        continue
                    keyed = keyed_of[session] = {}
                about = key_of(event) if several else key
                index = keyed.get(about)
                if index is None:
                    keyed[about] = {slot: None}
                else:
                    index[slot] = None
        self._counter = place

    def _also(self, key: str, session: str) -> None:
        """Remember that ``key`` is also about something of ``session``."""
        others = self.also_in.get(key)
        if others is None:
            self.also_in[key] = [session]
        elif session not in others:
            others.append(session)

    def sessions_of(self, key: str) -> list[str]:
        """The sessions ``key`` is seen in, in first-seen order ([] if none)."""
        first = self.session_of.get(key)
        if first is None:
            return []
        return [first, *self.also_in.get(key, ())]

    def snapshot(self, session: str = "", key: str = "") -> list[Any]:
        """Return the events of a session (every open session if "", with the
        `SessionClosed` of each closed one), restricted to ``key`` if given,
        after the market-wide ones, in fold order; set ``walked`` to the
        events and sessions it looked at. O(that, and its log): with a key,
        only the key's events and the session's keyless ones are looked at
        (the whole bucket of a closed session)."""
        chosen: list[tuple[int, Any]] = list(self.buckets[""].values())
        closed = self.closed
        if session:
            sessions = [session]
        elif key and key in self.session_of:
            sessions = self.sessions_of(key)      # a serial may be another session's instrument
        else:
            sessions = [s for s in self.buckets if s and s not in closed]
            if not key:
                chosen.extend(closed.values())
        walked = len(chosen) + len(sessions)
        for name in sessions:
            bucket = self.buckets.get(name)
            if not bucket:
                continue
            if not key:
                chosen.extend(bucket.values())
                walked += len(bucket)
                continue
            keyed = self._keyed.get(name)
            if keyed is None:
                if name in closed:                # no index: its whole bucket
                    chosen.extend(item for item in bucket.values()
                                  if key_of(item[1]) in ("", key))
                    walked += len(bucket)
                continue
            for about in ("", key):
                slots = keyed.get(about)
                if slots:
                    chosen.extend(bucket[slot] for slot in slots)
                    walked += len(slots)
        chosen.sort(key=itemgetter(0))
        self.walked = walked
        return [event for _, event in chosen]
