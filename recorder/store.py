"""The analyst store: the journal projected into SQLite (schema: README.md,
"Analyst store (SQLite)").

Two layers. Generic: one table ``ev_<snake_name>`` per event type with a
column per msgspec field, plus ``events`` (every event, by type),
``commands`` and ``rejections``. Curated: ``sessions``, ``lots``,
``patents``, ``paddles`` (numbers only), ``bids``, ``orders``, ``trades``,
``awards``, ``passed_lots``, ``settlements``, filled from the event types
they name. The store remembers the last projected seq and its chain hash:
`Store.update` adds only what is new (and refuses a journal that is not the
one it projected), `Store.rebuild` starts from scratch; both give the same
rows. With ``public=True`` only public events are projected and there are
no ``commands`` or ``rejections``: a store to share.

Cost: O(events) per update, one transaction per batch of entries.
"""

from __future__ import annotations

import os
import re
import sqlite3
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import msgspec
import sqlite_utils

from exchange.codec import decode_entry
from exchange.events import EVENT_TYPES, CommandRejected
from recorder.format import KIND_ENTRY, Record
from recorder.journal import Journal
from recorder.layout import private_file

SCHEMA_VERSION = 4      # 2: an order's row is keyed by its paddle and acceptance too; 3: BidVoided rows in bids;
                        # 4: a settlement's status is the engine's (awaiting_payment, paid, ...);
                        # a lot's row holds its latest round only, and its relists; defaulted kept
BATCH = 5000     # entries per transaction

_json = msgspec.json.Encoder()
_astuple = msgspec.structs.astuple
RESERVED = {"seq", "n", "ts", "audience"}


class StoreMismatch(Exception):
    """The store was projected from another journal (or a rewritten one)."""


class StoreBusy(Exception):
    """Another process is projecting into the same store."""

    def __init__(self, path: Any) -> None:
        super().__init__(f"another projection of {path} is running; try again when it ends")


class NotAStore(StoreMismatch):
    """The file is not an analyst store: a SQLite file with tables of its own
    but no ``_meta``, or no SQLite file at all. Nothing in it is touched."""


def check_store_file(path: str | os.PathLike) -> None:
    """Refuse (`NotAStore`) an existing file that is not an analyst store: one
    a store may not be written into. A missing or empty file, or a SQLite
    file with no tables, is fine. Read only. O(tables)."""
    path = Path(path)
    if not path.exists():
        return
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        raise NotAStore(f"{path} exists and is not a SQLite file; choose another name") from None
    if names and "_meta" not in names:
        raise NotAStore(f"{path} exists and is not a lotex analyst store; choose another name")


def own_table(name: str) -> bool:
    """Is ``name`` a table of the store's own (or of `replay export`'s LOBSTER pair)?"""
    return (name in ("_meta", "events", "commands", "rejections") or name in CURATED
            or name.startswith(("ev_", "lobster_")))


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def table_of(event_type: type) -> str:
    """The generic table of an event type, e.g. BidAccepted -> ev_bid_accepted."""
    return "ev_" + snake(event_type.__name__)


def _sql_type(t: Any) -> tuple[type, bool]:
    """Return (sqlite-utils column type, stored as JSON?) for a msgspec type."""
    inspect = msgspec.inspect
    if isinstance(t, (inspect.IntType, inspect.BoolType)):
        return int, False
    if isinstance(t, (inspect.StrType, inspect.EnumType)):
        return str, False
    if isinstance(t, inspect.BytesType):
        return bytes, False
    if isinstance(t, inspect.FloatType):
        return float, False
    if isinstance(t, inspect.LiteralType):
        kinds = {type(v) for v in t.values}
        if kinds == {str}:
            return str, False
        if kinds <= {int, bool}:
            return int, False
    if isinstance(t, inspect.UnionType):
        others = [x for x in t.types if not isinstance(x, inspect.NoneType)]
        if len(others) == 1:
            return _sql_type(others[0])
    return str, True


class EventTable:
    """How one event type maps to its generic table."""

    def __init__(self, event_type: type) -> None:
        self.name = table_of(event_type)
        info = {f.name: f.type for f in msgspec.inspect.type_info(event_type).fields}
        order = event_type.__struct_fields__
        self.to_index = order.index("to")
        self.fields = [f for f in order if f != "to"]
        self.columns: dict[str, type] = {"seq": int, "n": int, "ts": int, "audience": str}
        self.json_fields: list[int] = []
        for i, field in enumerate(self.fields):
            kind, as_json = _sql_type(info[field])
            self.columns[field + "_" if field in RESERVED else field] = kind
            if as_json:
                self.json_fields.append(i)
        names = ", ".join(f'"{c}"' for c in self.columns)
        self.insert = f'INSERT INTO "{self.name}" ({names}) VALUES ({", ".join("?" * len(self.columns))})'

    def row(self, seq: int, n: int, ts: int, audience: str, event: Any) -> tuple:
        values = _astuple(event)
        i = self.to_index
        values = values[:i] + values[i + 1:]
        if self.json_fields:
            values = list(values)
            for i in self.json_fields:
                values[i] = _json.encode(values[i]).decode()
        return (seq, n, ts, audience, *values)


# --------------------------------------------------------------------------
# curated tables
# --------------------------------------------------------------------------

CURATED: dict[str, dict[str, Any]] = {
    "sessions": dict(columns={"session": str, "title": str, "currency": str, "starts_at": int, "ends_at": int,
                              "closed": int, "created_seq": int, "closed_seq": int}, pk="session"),
    "lots": dict(columns={"serial": str, "session": str, "title": str, "mechanism": str, "currency": str,
                          "starting_bid": int, "ask": int, "opens_at": int, "closes_at": int, "hard_end": int,
                          "buyer_premium_bp": int, "seller_commission_bp": int, "patent_count": int,
                          "status": str, "outcome": str, "bids": int, "winner_paddle": int, "hammer": int,
                          "total": int, "relists": int, "scheduled_seq": int, "last_seq": int}, pk="serial"),
    "patents": dict(columns={"serial": str, "number": str, "title": str, "family_id": str,
                             "jurisdiction": str, "status": str, "field": str, "priority_date": int,
                             "expiry_date": int}, pk=("serial", "number")),
    "paddles": dict(columns={"session": str, "paddle": int, "first_seq": int, "first_ts": int},
                    pk=("session", "paddle")),
    "bids": dict(columns={"seq": int, "n": int, "ts": int, "session": str, "serial": str, "paddle": int,
                          "amount": int, "kind": str, "leader": int}, pk=("seq", "n", "paddle")),
    "orders": dict(columns={"session": str, "instrument": str, "order_id": int, "paddle": int, "side": str,
                            "price": int, "qty": int, "filled": int, "remaining": int, "tif": str,
                            "post_only": int, "status": str, "reason": str, "accepted_seq": int,
                            "accepted_ts": int, "last_seq": int},
                   pk=("instrument", "paddle", "order_id", "accepted_seq")),
    "trades": dict(columns={"seq": int, "n": int, "ts": int, "session": str, "instrument": str, "trade": int,
                            "price": int, "qty": int, "currency": str, "buy_paddle": int, "sell_paddle": int,
                            "aggressor": str}, pk=("seq", "n")),
    "awards": dict(columns={"seq": int, "n": int, "ts": int, "session": str, "serial": str, "mechanism": str,
                            "how": str, "paddle": int, "hammer": int, "premium": int, "total": int,
                            "commission": int, "net": int, "currency": str, "tie_break": str},
                   pk=("seq", "n")),
    "passed_lots": dict(columns={"seq": int, "n": int, "ts": int, "session": str, "serial": str,
                                 "mechanism": str, "reason": str, "bids": int, "negotiation_ends": int},
                        pk=("seq", "n")),
    "settlements": dict(columns={"settlement": int, "session": str, "serial": str, "instrument": str,
                                 "how": str, "mechanism": str, "buyer_paddle": int, "seller_paddle": int,
                                 "price": int, "premium": int, "total": int, "commission": int, "net": int,
                                 "currency": str, "opened_seq": int, "opened_at": int, "due_at": int,
                                 "paid": int, "outstanding": int, "to_seller": int, "to_venue": int,
                                 "refunded": int, "status": str, "reason": str, "completed_at": int,
                                 "last_seq": int}, pk="settlement"),
}

Op = tuple[str, str, tuple]     # (table, sql, parameters)
Curator = Callable[[int, int, int, Any], list[Op]]
CURATORS: dict[str, Curator] = {}


def curates(*type_names: str) -> Callable[[Curator], Curator]:
    """Register the curated rows made from events of the named types."""
    def register(fn: Curator) -> Curator:
        for name in type_names:
            CURATORS[name] = fn
        return fn
    return register


def _get(event: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(event, name, None)
        if value is not None:
            return value
    return default


@lru_cache(maxsize=None)
def _upsert_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c not in key) or f'"{key[0]}" = "{key[0]}"'
    return (f'INSERT INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(columns))}) '
            f'ON CONFLICT ({", ".join(key)}) DO UPDATE SET {sets}')


@lru_cache(maxsize=None)
def _insert_sql(table: str, columns: tuple[str, ...], ignore: bool) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    verb = "INSERT OR IGNORE" if ignore else "INSERT"
    return f'{verb} INTO "{table}" ({cols}) VALUES ({", ".join("?" * len(columns))})'


@lru_cache(maxsize=None)
def _update_lot_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f'"{c}" = ?' for c in columns)
    return f"UPDATE lots SET {sets} WHERE serial = ?"


def _upsert(table: str, values: dict[str, Any], key: tuple[str, ...]) -> Op:
    return table, _upsert_sql(table, tuple(values), key), tuple(values.values())


def _insert(table: str, values: dict[str, Any], *, ignore: bool = False) -> Op:
    return table, _insert_sql(table, tuple(values), ignore), tuple(values.values())


def _update_lot(serial: str, seq: int, **values: Any) -> Op:
    values["last_seq"] = seq
    return "lots", _update_lot_sql(tuple(values)), (*values.values(), serial)


def _paddle(session: str, paddle: int, seq: int, ts: int) -> Op:
    return _insert("paddles", dict(session=session, paddle=paddle, first_seq=seq, first_ts=ts), ignore=True)


@curates("SessionCreated")
def _session_created(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_upsert("sessions", dict(session=ev.session, title=ev.name, currency=ev.currency,
                                     starts_at=ev.starts_at, ends_at=ev.ends_at, closed=0, created_seq=seq),
                    ("session",))]


@curates("SessionClosed")
def _session_closed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [("sessions", "UPDATE sessions SET closed = 1, closed_seq = ? WHERE session = ?", (seq, ev.session))]


@curates("PaddleIssued")
def _paddle_issued(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_paddle(ev.session, ev.paddle, seq, ts)]          # the paddle number only, never the party


@curates("LotScheduled")
def _lot_scheduled(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    terms = ev.terms
    patents = tuple(getattr(terms, "patents", ()))
    # a relist schedules the lot again: its new terms, no outcome of the round before
    values = dict(serial=ev.serial, session=ev.session, title=terms.title, mechanism=terms.mechanism,
                  currency=terms.currency, starting_bid=terms.starting_bid, ask=terms.ask,
                  opens_at=terms.opens_at, closes_at=terms.closes_at, hard_end=terms.hard_end,
                  buyer_premium_bp=terms.buyer_premium_bp, seller_commission_bp=terms.seller_commission_bp,
                  patent_count=len(patents), status="scheduled", outcome=None, bids=None, winner_paddle=None,
                  hammer=None, total=None, scheduled_seq=seq, last_seq=seq)
    ops = [_upsert("lots", values, ("serial",)),
           ("lots", "UPDATE lots SET relists = 0 WHERE serial = ? AND relists IS NULL", (ev.serial,)),
           ("patents", "DELETE FROM patents WHERE serial = ?", (ev.serial,))]
    for p in patents:
        ops.append(_insert("patents", dict(serial=ev.serial, number=p.number, title=p.title, family_id=p.family_id,
                                           jurisdiction=p.jurisdiction, status=p.status, field=p.field,
                                           priority_date=p.priority_date, expiry_date=p.expiry_date),
                           ignore=True))
    return ops


@curates("LotOpened")
def _lot_opened(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_lot(ev.serial, seq, status="open", opens_at=ev.opens_at, closes_at=ev.closes_at,
                        hard_end=ev.hard_end)]


@curates("LotExtended")
def _lot_extended(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_lot(ev.serial, seq, closes_at=ev.closes_at, hard_end=ev.hard_end)]


@curates("LotClosed")
def _lot_closed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_lot(ev.serial, seq, status="closed", outcome=ev.outcome, bids=ev.bids)]


@curates("LotAwarded")
def _lot_awarded(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_insert("awards", dict(seq=seq, n=n, ts=ts, session=ev.session, serial=ev.serial,
                                   mechanism=ev.mechanism, how=ev.how, paddle=ev.paddle, hammer=ev.hammer,
                                   premium=ev.premium, total=ev.total, commission=ev.commission, net=ev.net,
                                   currency=ev.currency, tie_break=ev.tie_break)),
            _update_lot(ev.serial, seq, status="sold", outcome="sold", winner_paddle=ev.paddle,
                        hammer=ev.hammer, total=ev.total),
            _paddle(ev.session, ev.paddle, seq, ts)]


@curates("LotPassed")
def _lot_passed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_insert("passed_lots", dict(seq=seq, n=n, ts=ts, session=ev.session, serial=ev.serial,
                                        mechanism=ev.mechanism, reason=ev.reason, bids=ev.bids,
                                        negotiation_ends=ev.negotiation_ends)),
            _update_lot(ev.serial, seq, status="passed", outcome="passed")
            if ev.reason != "sale_cancelled" else      # the sale stands no more
            _update_lot(ev.serial, seq, status="passed", outcome="passed", winner_paddle=0,
                        hammer=0, total=0)]


@curates("LotWithdrawn", "LotSettled")
def _lot_status(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    status = {"LotWithdrawn": "withdrawn", "LotSettled": "settled"}[type(ev).__name__]
    return [_update_lot(ev.serial, seq, status=status)]


@curates("LotRelisted")
def _lot_relisted(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    """One relist more; the LotScheduled after it (same command) gives the status."""
    return [("lots", "UPDATE lots SET relists = COALESCE(relists, 0) + 1, last_seq = ? WHERE serial = ?",
             (seq, ev.serial))]


@curates("SettlementOpened")
def _settlement_opened(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    ops = [_upsert("settlements", dict(
        settlement=ev.settlement, session=ev.session, serial=ev.serial, instrument=_get(ev, "instrument"),
        how=ev.how, mechanism=_get(ev, "mechanism"), buyer_paddle=ev.buyer_paddle,
        seller_paddle=ev.seller_paddle, price=ev.price, premium=ev.premium, total=ev.total,
        commission=ev.commission, net=ev.net, currency=ev.currency, opened_seq=seq,
        opened_at=_get(ev, "opened_at", default=ts), due_at=ev.due_at, paid=0, outstanding=ev.total,
        to_seller=0, to_venue=0, refunded=0, status="awaiting_payment", reason="", completed_at=0, last_seq=seq),
        ("settlement",))]
    for paddle in (ev.buyer_paddle, ev.seller_paddle):
        if paddle:
            ops.append(_paddle(ev.session, paddle, seq, ts))
    return ops


def _update_settlement(ev: Any, seq: int, **values: Any) -> Op:
    values["last_seq"] = seq
    return "settlements", _update_settlement_sql(tuple(values)), (*values.values(), ev.settlement)


@lru_cache(maxsize=None)
def _update_settlement_sql(columns: tuple[str, ...]) -> str:
    sets = ", ".join(f'"{c}" = ?' for c in columns)
    return f"UPDATE settlements SET {sets} WHERE settlement = ?"


# A settlement's status is the engine's `exchange.settlement.Settlement.status`
# (awaiting_payment, paid, delivered, received, disputed, completed, cancelled),
# with "overdue" for awaiting_payment while its overdue flag is set: the
# flag is cleared by a payment in full and by a later due date.

@curates("PaymentRecorded")
def _payment(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [("settlements", "UPDATE settlements SET paid = ?, outstanding = ?, "
                            "status = CASE WHEN ? = 0 THEN 'paid' ELSE status END, last_seq = ? "
                            "WHERE settlement = ?",
             (ev.paid, ev.outstanding, ev.outstanding, seq, ev.settlement))]


@curates("DueDateExtended")
def _due_extended(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_settlement(ev, seq, due_at=ev.due_at, status="awaiting_payment")]   # overdue no more


@curates("SettlementOverdue", "DeliveryRecorded", "ReceiptConfirmed", "DisputeRaised")
def _settlement_step(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    status = {"SettlementOverdue": "overdue", "DeliveryRecorded": "delivered", "ReceiptConfirmed": "received",
              "DisputeRaised": "disputed"}[type(ev).__name__]
    return [_update_settlement(ev, seq, status=status)]


@curates("DisputeResolved")
def _dispute_resolved(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_settlement(ev, seq)]     # still disputed: completed or cancelled by the events after it


@curates("FundsReleased")
def _released(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_settlement(ev, seq, to_seller=ev.to_seller, to_venue=ev.to_venue, refunded=ev.refunded)]


@curates("FundsRefunded")
def _refunded(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [("settlements", "UPDATE settlements SET refunded = refunded + ?, last_seq = ? WHERE settlement = ?",
             (ev.amount, seq, ev.settlement))]


@curates("SettlementCompleted")
def _completed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_settlement(ev, seq, status="completed", completed_at=_get(ev, "completed_at", default=ts))]


@curates("SettlementCancelled")
def _cancelled(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    if ev.reason == "default":          # after BuyerDefaulted: its reason stays
        return [_update_settlement(ev, seq, status="defaulted")]
    return [_update_settlement(ev, seq, status="cancelled", reason=ev.reason)]


@curates("BuyerDefaulted")
def _defaulted(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_settlement(ev, seq, status="defaulted", reason=ev.reason or "default")]


def _bid(seq: int, n: int, ts: int, ev: Any, paddle: int, amount: int | None, kind: str,
         leader: int | None = None) -> list[Op]:
    return [_insert("bids", dict(seq=seq, n=n, ts=ts, session=ev.session, serial=ev.serial, paddle=paddle,
                                 amount=amount, kind=kind, leader=leader)),
            _paddle(ev.session, paddle, seq, ts)]


@curates("BidAccepted")
def _bid_accepted(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return _bid(seq, n, ts, ev, ev.paddle, ev.price, "standing", ev.leader)   # the standing price, public


@curates("BidConfirmed")
def _bid_confirmed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return _bid(seq, n, ts, ev, ev.paddle, ev.amount, "bid")                  # the bid as made (private)


@curates("BidWithdrawn")
def _bid_withdrawn(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return _bid(seq, n, ts, ev, ev.paddle, None, "withdrawn")


@curates("BidVoided")
def _bid_voided(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    """A standing bid the exchange voided: English (public) with the lot's new
    standing price and leader, as a "standing" row has; sealed (private) with none."""
    if ev.to:
        return _bid(seq, n, ts, ev, ev.paddle, None, "voided")
    return _bid(seq, n, ts, ev, ev.paddle, ev.price, "voided", ev.leader)


@curates("OfferMade")
def _offer_made(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return _bid(seq, n, ts, ev, ev.paddle, ev.amount, "offer")


@curates("SealedBidsRevealed")
def _sealed_revealed(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    ops: list[Op] = []
    for bid in ev.bids:
        ops.extend(_bid(seq, n, ts, ev, bid.paddle, bid.amount, "revealed"))
    return ops


@curates("OrderAccepted")
def _order_accepted(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_upsert("orders", dict(session=ev.session, instrument=ev.instrument, order_id=ev.order,
                                   paddle=ev.paddle, side=ev.side, price=ev.price, qty=ev.qty, filled=0,
                                   remaining=ev.qty, tif=ev.tif, post_only=int(ev.post_only), status="open",
                                   reason="", accepted_seq=seq, accepted_ts=ts, last_seq=seq),
                    ("instrument", "paddle", "order_id", "accepted_seq")),
            _paddle(ev.session, ev.paddle, seq, ts)]


def _update_order(ev: Any, seq: int, sets: str, params: tuple) -> Op:
    """Update the live order the event names: order numbers are the paddle's
    own and reused once an order is gone, so the key is (instrument, paddle,
    order) among orders still open."""
    return ("orders", f"UPDATE orders SET {sets}, last_seq = ? WHERE instrument = ? AND paddle = ? "
                      f"AND order_id = ? AND status IN ('open', 'partial')",
            (*params, seq, ev.instrument, ev.paddle, ev.order))


@curates("OrderFilled")
def _order_filled(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_order(ev, seq, "filled = filled + ?, remaining = ?, status = ?",
                          (ev.qty, ev.leaves, "filled" if ev.leaves == 0 else "partial"))]


@curates("OrderCancelled")
def _order_cancelled(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_order(ev, seq, "remaining = MAX(remaining - ?, 0), status = ?, reason = ?",
                          (ev.qty, "cancelled", ev.reason))]


@curates("OrderModified")
def _order_modified(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_update_order(ev, seq, "price = ?, remaining = ?, qty = filled + ?",
                          (ev.price, ev.qty, ev.qty))]


@curates("TradeExecuted")
def _trade(seq: int, n: int, ts: int, ev: Any) -> list[Op]:
    return [_insert("trades", dict(seq=seq, n=n, ts=ts, session=ev.session, instrument=ev.instrument,
                                   trade=ev.trade, price=ev.price, qty=ev.qty, currency=ev.currency,
                                   buy_paddle=ev.buy_paddle, sell_paddle=ev.sell_paddle,
                                   aggressor=ev.aggressor)),
            _paddle(ev.session, ev.buy_paddle, seq, ts),
            _paddle(ev.session, ev.sell_paddle, seq, ts)]


# --------------------------------------------------------------------------
# the store
# --------------------------------------------------------------------------

class Store:
    """A SQLite projection of one journal."""

    def __init__(self, db: sqlite_utils.Database, path: Path, public: bool) -> None:
        self.db = db
        self.path = path
        self.public = public
        self.tables = {t.__name__: EventTable(t) for t in EVENT_TYPES}
        self.by_table = {t.name: t for t in self.tables.values()}
        self._expected = 0          # the last seq this projection knows the store to hold

    @classmethod
    def open(cls, path: str | os.PathLike, *, public: bool = False) -> "Store":
        """Open (creating) the store at ``path``. A store keeps the scope
        (public or full) it was created with. A full store (commands, actors,
        sealed amounts) is its owner's only: made mode 0600, or tightened to
        it (SQLite's side files take the database's mode)."""
        path = Path(path)
        check_store_file(path)          # never into (nor chmod) a file of something else
        if not public and not path.exists():
            private_file(path)
        db = sqlite_utils.Database(path)
        db.execute("PRAGMA synchronous = NORMAL")
        store = cls(db, path, public)
        meta = store._meta()
        if meta:
            if int(meta.get("public", "0")) != int(public):
                db.close()
                kind = "public" if meta.get("public") == "1" else "full"
                raise StoreMismatch(f"{path} is a {kind} store: a {'public' if public else 'full'} "
                                    f"one needs a file of its own (--db)")
        if not public:
            try:
                private_file(path)
            except OSError:
                db.close()
                raise
        try:
            with store._immediate():
                if int(store._meta().get("schema_version", SCHEMA_VERSION)) != SCHEMA_VERSION:
                    store._drop_tables()          # an older schema: rebuilt from scratch
                store._create_tables()
        except BaseException:
            db.close()
            raise
        return store

    @contextmanager
    def _immediate(self) -> Iterator[None]:
        """One write transaction, begun IMMEDIATE: what it reads of the store
        no other projection changes before it commits (`StoreBusy` if one
        holds the store past SQLite's busy timeout, 5 s)."""
        conn = self.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise StoreBusy(self.path) from None
            raise
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()

    # schema ---------------------------------------------------------------

    def _meta(self) -> dict[str, str]:
        if "_meta" not in self.db.table_names():
            return {}
        return {row["key"]: row["value"] for row in self.db["_meta"].rows}

    def _set_meta(self, **values: Any) -> None:
        self.db.conn.executemany('INSERT OR REPLACE INTO _meta (key, value) VALUES (?, ?)',
                                 [(k, str(v)) for k, v in values.items()])

    def _create_tables(self) -> None:
        """Create the tables (in the caller's transaction)."""
        db = self.db
        if "_meta" not in db.table_names():
            db["_meta"].create({"key": str, "value": str}, pk="key")
            self._set_meta(schema_version=SCHEMA_VERSION, public=int(self.public), last_seq=0, chain="")
        existing = set(db.table_names())
        for table in self.tables.values():
            self._ensure(table.name, table.columns, ("seq", "n"), existing)
        self._ensure("events", {"seq": int, "n": int, "ts": int, "type": str, "public": int},
                     ("seq", "n"), existing)
        if not self.public:
            self._ensure("commands", {"seq": int, "ts": int, "actor": str, "role": str, "client_id": str,
                                      "type": str, "body": str, "rejected": int}, ("seq",), existing)
            self._ensure("rejections", {"seq": int, "n": int, "ts": int, "actor": str, "command": str,
                                        "code": str, "text": str}, ("seq", "n"), existing)
        for name, spec in CURATED.items():
            pk = spec["pk"] if isinstance(spec["pk"], tuple) else (spec["pk"],)
            self._ensure(name, spec["columns"], pk, existing)
        for name, column in (("events", "type"), ("bids", "serial"), ("awards", "serial"),
                             ("lots", "session"), ("orders", "instrument"), ("trades", "instrument")):
            db[name].create_index([column], if_not_exists=True)
        # the live orders alone (`_update_order`): a paddle reuses its order
        # numbers, so the key's past orders pile up (quadratic without it:
        # 28 s / 111 s / 408 s for 100 k / 200 k / 400 k entries)
        db.execute("CREATE INDEX IF NOT EXISTS idx_orders_live ON orders "
                   "(instrument, paddle, order_id) WHERE status IN ('open', 'partial')")

    def _ensure(self, name: str, columns: dict[str, type], pk: tuple[str, ...], existing: set[str]) -> None:
        """Create the table, or add the columns a newer schema has."""
        table = self.db[name]
        if name not in existing:
            table.create(columns, pk=pk if len(pk) > 1 else pk[0])
            return
        have = set(table.columns_dict)
        for column, kind in columns.items():
            if column not in have:
                table.add_column(column, kind)

    def _drop_tables(self) -> None:
        """Drop the store's own tables (`own_table`), nothing else in the file
        (in the caller's transaction)."""
        for name in self.db.table_names():
            if own_table(name):
                self.db[name].drop()

    # projection -------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        return int(self._meta().get("last_seq", "0"))

    def update(self, journal: str | os.PathLike | Any) -> int:
        """Project the entries the store has not seen yet; return how many."""
        self._expected = self.last_seq
        return self._update(journal)

    def _update(self, journal: str | os.PathLike | Any) -> int:
        """Project what follows `_expected`, the last seq this projection knows of."""
        reader = Journal.open_readonly(journal) if isinstance(journal, (str, os.PathLike)) else journal
        meta = self._meta()
        last = int(meta.get("last_seq", "0"))
        if last != self._expected:
            raise StoreBusy(self.path)
        chain = meta.get("chain", "")
        records = iter(reader.read(last if last else 1))
        if last:
            covered = next(records, None)
            if covered is None or covered.seq != last or covered.chain.hex() != chain:
                raise StoreMismatch(f"{self.path} was projected from another journal (record {last} differs); "
                                    "rebuild it")
        return self._project(records)

    def rebuild(self, journal: str | os.PathLike | Any) -> int:
        """Drop everything and project the whole journal again."""
        with self._immediate():
            self._drop_tables()
            self._create_tables()
        self._expected = 0
        return self._update(journal)

    def _project(self, records: Iterator[Record]) -> int:
        total = 0
        batch: list[Record] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= BATCH:
                total += self._write(batch)
                batch = []
        if batch:
            total += self._write(batch)
        return total

    def _write(self, batch: list[Record]) -> int:
        """Project one batch of records in one transaction."""
        public_only = self.public
        rows: dict[str, list[tuple]] = {}
        curated: dict[str, list[tuple[str, tuple]]] = {}   # table -> ops in journal order
        events_rows = rows.setdefault("events", [])
        commands: list[tuple] = []
        rejections: list[tuple] = []
        tables = self.tables
        entries = 0
        for rec in batch:
            if rec.kind != KIND_ENTRY:
                continue
            entries += 1
            entry = decode_entry(rec.payload)
            env = entry.env
            seq, ts = env.seq, env.ts
            rejected = 0
            for n, ev in enumerate(entry.events):
                public = not ev.to
                if public_only and not public:
                    continue
                name = type(ev).__name__
                table = tables[name]
                rows.setdefault(table.name, []).append(
                    table.row(seq, n, ts, "[]" if public else _json.encode(ev.to).decode(), ev))
                events_rows.append((seq, n, ts, name, int(public)))
                if type(ev) is CommandRejected and ev.ref == seq:
                    rejected = 1
                    rejections.append((seq, n, ts, env.actor, type(env.cmd).__name__, ev.code, ev.text))
                curator = CURATORS.get(name)
                if curator is not None:
                    for table_name, sql, params in curator(seq, n, ts, ev):
                        curated.setdefault(table_name, []).append((sql, params))
            if not public_only:
                cmd = env.cmd
                body = msgspec.to_builtins(cmd)
                body.pop("type", None)
                commands.append((seq, ts, env.actor, env.role, env.client_id, type(cmd).__name__,
                                 _json.encode(body).decode(), rejected))
        conn = self.db.conn
        with self._immediate():
            if self.last_seq != self._expected:     # another projection wrote meanwhile
                raise StoreBusy(self.path)
            for table_name, table_rows in rows.items():
                if table_name == "events":
                    sql = 'INSERT INTO events (seq, n, ts, type, public) VALUES (?, ?, ?, ?, ?)'
                else:
                    sql = self.by_table[table_name].insert
                conn.executemany(sql, table_rows)
            if commands:
                conn.executemany('INSERT INTO commands (seq, ts, actor, role, client_id, type, body, rejected) '
                                 'VALUES (?, ?, ?, ?, ?, ?, ?, ?)', commands)
            if rejections:
                conn.executemany('INSERT INTO rejections (seq, n, ts, actor, command, code, text) '
                                 'VALUES (?, ?, ?, ?, ?, ?, ?)', rejections)
            for ops in curated.values():
                _run_in_order(conn, ops)
            last = batch[-1]
            self._set_meta(last_seq=last.seq, chain=last.chain.hex())
        self._expected = last.seq
        return entries

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _run_in_order(conn: Any, ops: Iterable[tuple[str, tuple]]) -> None:
    """Execute ops in order, each run of one statement as one executemany."""
    run_sql, run = None, []
    for sql, params in ops:
        if sql != run_sql:
            if run:
                conn.executemany(run_sql, run)
            run_sql, run = sql, []
        run.append(params)
    if run:
        conn.executemany(run_sql, run)
