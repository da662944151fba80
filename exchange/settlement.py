"""Settlement: escrow after the hammer, default and re-award, disputes,
transaction certificates and publicity (issue 7).

Every sale opens a settlement (``state.settlements[id]``, ids counted from 1):
an auction award, a sale at the Ask, a negotiated sale, a re-award and a
patent traded on the book arrive as `LotSold` (a reaction, so the auction
and book code know nothing of settlement); an agreement transfer is recorded
here (`RecordAgreementTransfer`). Amounts come from the sale: the buyer owes
``total = price + premium`` into escrow, the seller is to receive ``net =
price - commission``, the venue keeps ``premium + commission``.

Escrow flow (``Settlement.status``)::

    awaiting_payment --RecordPayment (full; parts add up)--> paid
    paid --RecordDelivery (seller's broker)--> delivered
    delivered --ConfirmReceipt (buyer's broker)--> received
    (since rules 4 an operator takes a broker's step for a party the operators hold)
    received --ReleaseFunds (operator)--> completed  (+ certificates)
    paid|delivered --RaiseDispute (buyer's broker)--> disputed
    disputed --ResolveDispute (operator): release | partial_refund --> completed
                                          refund --> cancelled
    awaiting_payment --(due date passes: SettlementOverdue)--DeclareDefault--> cancelled

Every step is refused out of order, from the wrong role or from the wrong
party's broker, each with its own reason code. Release also waits for a
state-institution transfer's publicity period to end without objection
(or for an operator to dismiss the objections).

Terms (`SetSettlementRules`): the lot's, else the session's, else
`DEFAULT_RULES`, as they stand when each applies: the due date is
``payment_term`` after the sale, a re-award offer runs ``reaward_window``
from when it is made, publicity ``publicity_period`` from when it starts.
A timer marks the settlement overdue at its due date; an operator may then
declare the buyer in default: the sale is cancelled, any part payment refunded, the buyer's
party frozen (`participants.Party.frozen`; `LiftFreeze` lifts it), the lot
unsold (`lots.unsell`: passed, no negotiation window) and, with ``next =
"reaward"``, offered to the best runner-up (`lots.runners_up`: English, each
paddle's highest maximum; sealed, the revealed live bids) at its own last
price if that is at least the reserve and the starting bid. The runner-up's
broker answers within ``reaward_window`` (`AnswerReaward`); a decline or
silence passes the offer down the list; when it runs out the lot stays
passed for the operator to relist (`RelistLot`). Reverse tenders, book lots
and agreement transfers are not re-awarded.

Credit follows settlement: a lot sale's buyer keeps its total due committed
under ``("lot", serial)`` until the settlement completes
(`lots.mark_settled`) or is cancelled (`lots.unsell`). Agreement transfers
commit no credit (the parties agreed off the floor).

Partial refunds come out of the seller's net; the venue keeps its fees.
Money is conserved per settlement and per currency: what buyers paid in
equals what sellers, the venue and refunds took out plus the escrow balance
(`_settlement_check`). Every operation is O(1) except finding the next
runner-up, O(bids log bids), and finding a book lot's instrument, O(books).
"""

from __future__ import annotations

import msgspec

from exchange import credit, fees, lots, market
from exchange.commands import (AnswerReaward, ConfirmReceipt, DeclareDefault, ExtendDueDate,
                               LiftFreeze, MarkStateTransfer, RaiseDispute, RecordAgreementTransfer,
                               RecordDelivery, RecordObjection, RecordPayment, ReleaseFunds,
                               ResolveDispute, ResolveObjection, SetSettlementRules)
from exchange.engine import Ctx, State, handles, on_timer, private, reacts_to
from exchange.errors import MAX_DURATION, MAX_TIME, Reject, a_time, positive, register_reasons
from exchange.events import (AgreementTransferRecorded, BuyerDefaulted, CertificateIssued,
                             CertificateRecorded, DeliveryRecorded, DisputeRaised, DisputeResolved,
                             DueDateExtended, FreezeLifted, FundsRefunded, FundsReleased,
                             LotRelisted, LotSold, LotWithdrawn, ObjectionRecorded,
                             ObjectionResolved, PartyFrozen, PaymentRecorded, PublicityEnded,
                             CreditReviewed,
                             PublicityStarted, ReawardEnded, ReawardExhausted, ReawardOffered,
                             ReceiptConfirmed, SettlementCancelled, SettlementCompleted,
                             SettlementOpened, SettlementOverdue, SettlementRulesSet)
from exchange.invariants import invariant
from exchange.participants import (audience, get_party, get_session, held_by_operators,
                                   paddle_party, valid_currency)

register_reasons({
    "unknown_settlement": "no such settlement",
    "settlement_closed": "the settlement is completed or cancelled",
    "not_the_buyer": "only the buyer's broker (an operator, for a party the operators hold) "
                     "may take this step",
    "not_the_seller": "only the seller's broker (an operator, for a party the operators hold) "
                      "may take this step",
    "overpayment": "the payment exceeds what the buyer still owes",
    "not_paid": "the buyer has not paid in full yet",
    "already_paid": "the buyer has paid in full already",
    "not_delivered": "the seller has not recorded delivery yet",
    "already_delivered": "the seller has recorded delivery already",
    "not_received": "the buyer has not confirmed receipt yet",
    "already_received": "the buyer has confirmed receipt already",
    "in_dispute": "a dispute freezes the settlement until an operator resolves it",
    "no_dispute": "the settlement has no open dispute",
    "bad_refund": "a partial refund must be positive and at most the seller's net",
    "reason_required": "this step needs a reason",
    "not_overdue": "the settlement's due date has not passed",
    "not_later": "a new due date must be later than the current one",
    "not_reawardable": "this sale cannot be re-awarded to another bidder",
    "no_reaward_offer": "the paddle has no open re-award offer on the lot",
    "not_frozen": "the party's credit is not frozen",
    "same_party": "the buyer and the seller must be different parties",
    "not_publicizable": "only a negotiated sale or an agreement transfer is published",
    "already_published": "the transfer has been published already",
    "in_publicity": "the transfer's publicity period or its objections are not over",
    "not_in_publicity": "the transfer is not in its publicity period",
    "no_objections": "there are no objections waiting for a decision",
})

DAY = 86_400 * 10**9

OPEN = ("awaiting_payment", "paid", "delivered", "received", "disputed")
CLOSED = ("completed", "cancelled")
STATUSES = OPEN + CLOSED
PUBLICITY = ("", "running", "objected", "cleared", "withdrawn")
NOT_REAWARDED = ("reverse", "bid_ask")


class Rules(msgspec.Struct, frozen=True, kw_only=True):
    """Settlement terms, durations in ns."""

    payment_term: int
    reaward_window: int
    publicity_period: int


DEFAULT_RULES = Rules(payment_term=7 * DAY, reaward_window=2 * DAY, publicity_period=15 * DAY)
"""Seven days to pay, two days to answer a re-award offer, fifteen days of publicity."""


class Settlement(msgspec.Struct, kw_only=True):
    """One sale's settlement in ``state.settlements[id]``. ``holds_credit``:
    a lot sale whose buyer's commitment ``("lot", serial)`` this settlement owns."""

    id: int
    how: str
    session: str
    serial: str
    instrument: str
    mechanism: str
    title: str
    patents: tuple
    buyer: int
    seller: int
    buyer_paddle: int
    seller_paddle: int
    price: int
    premium: int
    total: int
    commission: int
    net: int
    currency: str
    sold_at: int
    sale_seq: int
    due_at: int
    holds_credit: bool
    status: str = "awaiting_payment"
    overdue: bool = False
    paid: int = 0                # paid into escrow so far
    escrow: int = 0              # held now
    to_seller: int = 0
    to_venue: int = 0
    refunded: int = 0
    paid_at: int = 0             # when the payment was complete
    delivered_at: int = 0
    delivery_ref: str = ""
    received_at: int = 0
    dispute: str = ""            # the open dispute's reason
    completed_at: int = 0
    cancelled_at: int = 0
    cancel_reason: str = ""
    publicity: str = ""          # see PUBLICITY
    publicity_ends: int = 0
    objections: list = []        # (objector, reason)


class ReawardOffer(msgspec.Struct, frozen=True, kw_only=True):
    """An open offer of a defaulted lot to a runner-up, at its own last price."""

    number: int
    serial: str
    session: str
    paddle: int
    party: int
    price: int
    expires_at: int
    settlement: int


class Ledger(msgspec.Struct, kw_only=True):
    """Money through escrow in one currency, since the start."""

    paid_in: int = 0
    to_sellers: int = 0
    to_venue: int = 0
    refunded: int = 0


class Desk(msgspec.Struct, kw_only=True):
    """Settlement's own state besides ``state.settlements``, in ``state.extra["settlement"]``."""

    next_id: int = 1
    offers_made: int = 0
    rules: dict = {}             # (session, lot or "") -> Rules
    by_lot: dict = {}            # serial -> id of the latest settlement of the lot
    agreements: dict = {}        # agreement serial -> settlement id
    offers: dict = {}            # serial -> ReawardOffer
    passed_over: dict = {}       # serial -> paddles not to offer the lot again (defaulted, declined)
    ledgers: dict = {}           # currency -> Ledger


_NO_DESK = Desk()
"""What `peek` returns before the first settlement; never written to."""


def desk(state: State) -> Desk:
    """Settlement's own state, created on first use: call only where it changes."""
    found = state.extra.get("settlement")
    if found is None:
        found = state.extra["settlement"] = Desk()
    return found


def peek(state: State) -> Desk:
    """Settlement's own state for reading (a refused command must change nothing)."""
    found = state.extra.get("settlement")
    return _NO_DESK if found is None else found


def rules_for(state: State, session: str, serial: str = "") -> Rules:
    """The terms of a lot: its own, else its session's, else the defaults."""
    table = peek(state).rules
    return table.get((session, serial)) or table.get((session, "")) or DEFAULT_RULES


def get_settlement(state: State, settlement_id: int, ctx: Ctx | None = None) -> Settlement:
    """Return the settlement; to a broker that is neither side's, one not
    published (no publicity notice) is unknown, as a missing one is. O(1)."""
    found = state.settlements.get(settlement_id)
    if found is not None and ctx is not None and not ctx.is_operator \
            and ctx.role != "system" and found.publicity in ("", "none") \
            and ctx.actor not in (state.parties[found.buyer].broker,
                                  state.parties[found.seller].broker):
        found = None
    if found is None:
        raise Reject("unknown_settlement", f"no settlement {settlement_id}")
    return found


def _audience(state: State, s: Settlement) -> tuple[str, ...]:
    return private(state.parties[s.buyer].broker, state.parties[s.seller].broker)


def _ledger(state: State, currency: str) -> Ledger:
    ledgers = desk(state).ledgers
    found = ledgers.get(currency)
    if found is None:
        found = ledgers[currency] = Ledger()
    return found


def _paddle_of(state: State, session: str, party: int) -> int:
    return state.sessions[session].by_party.get(party, 0)


def _duration(value: int, what: str) -> int:
    if value <= 0:
        raise Reject("non_positive", f"{what} must be greater than zero, got {value}")
    if value > MAX_DURATION:
        raise Reject("out_of_range", f"{what} {value} ns is above the maximum {MAX_DURATION}")
    return value


def _text(value: str, what: str) -> str:
    if not value.strip():
        raise Reject("reason_required", f"{what} must not be empty")
    return value


def _still_open(s: Settlement) -> None:
    if s.status in CLOSED:
        raise Reject("settlement_closed", f"settlement {s.id} is {s.status}")


def _side_role(ctx: Ctx) -> None:
    """The roles that take a side's step: its broker; since rules 4 also an
    operator, for a party the operators hold (`_buyer_broker`, `_seller_broker`)."""
    if ctx.rules >= 4:
        ctx.require_role("broker", "operator")
    else:
        ctx.require_role("broker")


def _buyer_broker(state: State, ctx: Ctx, s: Settlement) -> None:
    _acts_for(state, ctx, s, s.buyer, "not_the_buyer", "buyer")


def _seller_broker(state: State, ctx: Ctx, s: Settlement) -> None:
    _acts_for(state, ctx, s, s.seller, "not_the_seller", "seller")


def _acts_for(state: State, ctx: Ctx, s: Settlement, party_id: int, code: str,
              side: str) -> None:
    party = state.parties[party_id]
    if ctx.role == "operator":           # only since rules 4 (`_side_role`)
        if not held_by_operators(party, ctx):
            raise Reject(code, f"settlement {s.id}'s {side} is a client of broker "
                               f"{party.broker!r}: its broker takes this step")
    elif party.broker != ctx.actor:
        raise Reject(code, f"{ctx.actor!r} is not the broker of settlement {s.id}'s {side}")


def _publicity_clear(s: Settlement) -> None:
    if s.publicity in ("running", "objected"):
        raise Reject("in_publicity", f"settlement {s.id}'s publicity is {s.publicity}"
                     + (f" until {s.publicity_ends}" if s.publicity == "running" else ""))


# --------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------

def open_settlement(state: State, ctx: Ctx, *, how: str, session: str, serial: str,
                    instrument: str, mechanism: str, title: str, patents: tuple, buyer: int,
                    seller: int, amounts: fees.Fees, currency: str, holds_credit: bool) -> Settlement:
    """Open a settlement for a sale that just happened and schedule its due date."""
    book = desk(state)
    rules = rules_for(state, session, serial)
    due_at = min(ctx.ts + rules.payment_term, MAX_TIME)
    s = Settlement(id=book.next_id, how=how, session=session, serial=serial,
                   instrument=instrument, mechanism=mechanism, title=title, patents=patents,
                   buyer=buyer, seller=seller, buyer_paddle=_paddle_of(state, session, buyer),
                   seller_paddle=_paddle_of(state, session, seller), price=amounts.hammer,
                   premium=amounts.premium, total=amounts.total, commission=amounts.commission,
                   net=amounts.net, currency=currency, sold_at=ctx.ts, sale_seq=ctx.seq,
                   due_at=due_at, holds_credit=holds_credit)
    book.next_id += 1
    state.settlements[s.id] = s
    book.by_lot[serial] = s.id
    state.schedule(due_at, "settlement_due", str(s.id), due_at)
    ctx.emit(SettlementOpened(to=_audience(state, s), settlement=s.id, how=how, session=session,
                              serial=serial, instrument=instrument, mechanism=mechanism,
                              buyer_paddle=s.buyer_paddle, seller_paddle=s.seller_paddle,
                              price=s.price, premium=s.premium, total=s.total,
                              commission=s.commission, net=s.net, currency=currency,
                              opened_at=ctx.ts, due_at=due_at, sale_seq=ctx.seq))
    return s


@reacts_to(LotSold)
def _on_lot_sold(state: State, ctx: Ctx, event: LotSold) -> None:
    """Every lot sale (auction, Ask, negotiated, re-award, book) opens a settlement."""
    lot = state.lots[event.serial]
    offer = peek(state).offers.get(event.serial)
    if offer is not None:
        _end_offer(state, ctx, offer, "superseded")
    instrument = ""
    if event.how == "book":
        for inst in state.books.values():
            if inst.kind == "patent" and inst.lot == event.serial:
                instrument = inst.id
    amounts = fees.Fees(hammer=event.hammer, premium=event.premium, total=event.total,
                        commission=event.commission, net=event.net)
    open_settlement(state, ctx, how=event.how, session=event.session, serial=event.serial,
                    instrument=instrument, mechanism=event.mechanism, title=lot.terms.title,
                    patents=lot.terms.patents, buyer=event.buyer, seller=event.seller,
                    amounts=amounts, currency=event.currency, holds_credit=True)


@handles(SetSettlementRules)
def set_rules(state: State, ctx: Ctx, cmd: SetSettlementRules) -> None:
    ctx.require_role("operator")
    get_session(state, cmd.session)
    to: tuple[str, ...] = ()
    if cmd.lot:
        lot = lots.get_lot(state, cmd.lot)
        if lot.session != cmd.session:
            raise Reject("unknown_lot", f"lot {cmd.lot!r} is not in session {cmd.session!r}")
        if not lot.opens_at:          # never published: the public does not know the serial
            to = audience(state, lot.seller)
    rules = Rules(payment_term=_duration(cmd.payment_term, "payment term"),
                  reaward_window=_duration(cmd.reaward_window, "re-award window"),
                  publicity_period=_duration(cmd.publicity_period, "publicity period"))
    desk(state).rules[(cmd.session, cmd.lot)] = rules
    ctx.emit(SettlementRulesSet(to=to, session=cmd.session, lot=cmd.lot,
                                payment_term=rules.payment_term,
                                reaward_window=rules.reaward_window,
                                publicity_period=rules.publicity_period))


@handles(RecordAgreementTransfer)
def record_agreement_transfer(state: State, ctx: Ctx, cmd: RecordAgreementTransfer) -> None:
    ctx.require_role("operator")
    session = get_session(state, cmd.session)
    if not session.open:
        raise Reject("session_closed", f"session {cmd.session!r} is closed")
    if not cmd.serial.strip():
        raise Reject("bad_field", "a transfer needs a serial number")
    if cmd.serial in state.lots or cmd.serial in peek(state).agreements:
        raise Reject("lot_exists", f"serial {cmd.serial!r} is taken by a lot or a transfer")
    if not cmd.title.strip():
        raise Reject("bad_field", "a transfer needs a title")
    for patent in cmd.patents:
        if not patent.number.strip():
            raise Reject("bad_field", "every patent needs a number")
    seller = get_party(state, cmd.seller)
    buyer = get_party(state, cmd.buyer)
    if seller.id == buyer.id:
        raise Reject("same_party", f"party {buyer.id} cannot buy from itself")
    for party in (buyer, seller):
        if not party.approved:
            raise Reject("party_not_approved", f"party {party.id} has not passed the credit review")
    if buyer.frozen:
        raise Reject("party_frozen", f"the buyer's (party {buyer.id}) credit is frozen")
    positive(cmd.price, "price")
    currency = valid_currency(cmd.currency or session.currency, ctx.rules)
    for bp, what in ((cmd.buyer_premium_bp, "buyer's premium"),
                     (cmd.seller_commission_bp, "seller commission")):
        if not 0 <= bp <= lots.MAX_BP:
            raise Reject("out_of_range", f"{what} {bp} bp is not within 0..{lots.MAX_BP}")
    amounts = fees.compute(cmd.price, cmd.buyer_premium_bp, cmd.seller_commission_bp)
    book = desk(state)
    book.agreements[cmd.serial] = book.next_id
    ctx.emit(AgreementTransferRecorded(
        to=private(buyer.broker, seller.broker), session=cmd.session, serial=cmd.serial,
        title=cmd.title, patents=cmd.patents,
        buyer_paddle=_paddle_of(state, cmd.session, buyer.id),
        seller_paddle=_paddle_of(state, cmd.session, seller.id), price=cmd.price,
        currency=currency, state_institution=cmd.state_institution))
    s = open_settlement(state, ctx, how="agreement", session=cmd.session, serial=cmd.serial,
                        instrument="", mechanism="agreement", title=cmd.title,
                        patents=cmd.patents, buyer=buyer.id, seller=seller.id, amounts=amounts,
                        currency=currency, holds_credit=False)
    if cmd.state_institution:
        _start_publicity(state, ctx, s)


# --------------------------------------------------------------------------
# the escrow flow
# --------------------------------------------------------------------------

@handles(RecordPayment)
def record_payment(state: State, ctx: Ctx, cmd: RecordPayment) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    positive(cmd.amount, "payment")
    if s.status == "disputed":
        raise Reject("in_dispute", f"settlement {s.id} is in dispute")
    if s.status != "awaiting_payment":
        raise Reject("already_paid", f"settlement {s.id} is paid in full")
    outstanding = s.total - s.paid
    if cmd.amount > outstanding:
        raise Reject("overpayment", f"settlement {s.id} has {outstanding} {s.currency} "
                                    f"outstanding, not {cmd.amount}")
    s.paid += cmd.amount
    s.escrow += cmd.amount
    _ledger(state, s.currency).paid_in += cmd.amount
    if s.paid == s.total:
        s.status = "paid"
        s.paid_at = ctx.ts
        s.overdue = False
    ctx.emit(PaymentRecorded(to=_audience(state, s), settlement=s.id, amount=cmd.amount,
                             paid=s.paid, outstanding=s.total - s.paid, reference=cmd.reference))


@handles(RecordDelivery)
def record_delivery(state: State, ctx: Ctx, cmd: RecordDelivery) -> None:
    _side_role(ctx)
    s = get_settlement(state, cmd.settlement, ctx)
    _seller_broker(state, ctx, s)
    _still_open(s)
    if not cmd.reference.strip():
        raise Reject("bad_field", "a delivery needs the documents' reference")
    if s.status == "awaiting_payment":
        raise Reject("not_paid", f"settlement {s.id}: {s.total - s.paid} {s.currency} "
                                 f"is still to be paid into escrow")
    if s.status == "disputed":
        raise Reject("in_dispute", f"settlement {s.id} is in dispute")
    if s.status != "paid":
        raise Reject("already_delivered", f"settlement {s.id}'s documents were delivered")
    s.status = "delivered"
    s.delivered_at = ctx.ts
    s.delivery_ref = cmd.reference
    ctx.emit(DeliveryRecorded(to=_audience(state, s), settlement=s.id, reference=cmd.reference))


@handles(ConfirmReceipt)
def confirm_receipt(state: State, ctx: Ctx, cmd: ConfirmReceipt) -> None:
    _side_role(ctx)
    s = get_settlement(state, cmd.settlement, ctx)
    _buyer_broker(state, ctx, s)
    _still_open(s)
    if s.status == "disputed":
        raise Reject("in_dispute", f"settlement {s.id} is in dispute")
    if s.status == "received":
        raise Reject("already_received", f"settlement {s.id}'s receipt is confirmed")
    if s.status != "delivered":
        raise Reject("not_delivered", f"settlement {s.id} has no delivery to confirm")
    s.status = "received"
    s.received_at = ctx.ts
    ctx.emit(ReceiptConfirmed(to=_audience(state, s), settlement=s.id))


@handles(RaiseDispute)
def raise_dispute(state: State, ctx: Ctx, cmd: RaiseDispute) -> None:
    _side_role(ctx)
    s = get_settlement(state, cmd.settlement, ctx)
    _buyer_broker(state, ctx, s)
    _still_open(s)
    _text(cmd.reason, "a dispute's reason")
    if s.status == "awaiting_payment":
        raise Reject("not_paid", f"settlement {s.id} is not paid in full; nothing to dispute yet")
    if s.status == "disputed":
        raise Reject("in_dispute", f"settlement {s.id} is in dispute already")
    if s.status == "received":
        raise Reject("already_received", f"settlement {s.id}'s receipt is confirmed")
    s.status = "disputed"
    s.dispute = cmd.reason
    ctx.emit(DisputeRaised(to=_audience(state, s), settlement=s.id, reason=cmd.reason))


@handles(ResolveDispute)
def resolve_dispute(state: State, ctx: Ctx, cmd: ResolveDispute) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.status != "disputed":
        raise Reject("no_dispute", f"settlement {s.id} is {s.status}, not in dispute")
    _text(cmd.reason, "a resolution's reason")
    refund = 0
    if cmd.outcome == "partial_refund":
        if not 0 < cmd.amount <= s.net:
            raise Reject("bad_refund", f"a partial refund of settlement {s.id} is 1..{s.net}, "
                                       f"not {cmd.amount}")
        refund = cmd.amount
    elif cmd.amount:
        raise Reject("bad_field", f"outcome {cmd.outcome!r} takes no amount")
    if cmd.outcome != "refund":
        _publicity_clear(s)
    ctx.emit(DisputeResolved(to=_audience(state, s), settlement=s.id, outcome=cmd.outcome,
                             amount=s.escrow if cmd.outcome == "refund" else refund,
                             reason=cmd.reason))
    s.dispute = ""
    if cmd.outcome == "refund":
        _cancel(state, ctx, s, "refund")
    else:
        _complete(state, ctx, s, refund)


@handles(ReleaseFunds)
def release_funds(state: State, ctx: Ctx, cmd: ReleaseFunds) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.status == "disputed":
        raise Reject("in_dispute", f"settlement {s.id} is in dispute")
    if s.status == "awaiting_payment":
        raise Reject("not_paid", f"settlement {s.id} is not paid in full")
    if s.status == "paid":
        raise Reject("not_delivered", f"settlement {s.id}'s documents are not delivered")
    if s.status != "received":
        raise Reject("not_received", f"settlement {s.id}'s buyer has not confirmed receipt")
    _publicity_clear(s)
    _complete(state, ctx, s, 0)


def _complete(state: State, ctx: Ctx, s: Settlement, refund: int) -> None:
    """Pay out the escrow (``refund`` of the seller's net back to the buyer),
    settle the lot, release the buyer's credit and issue the certificates."""
    to_seller = s.net - refund
    to_venue = s.premium + s.commission
    s.escrow -= to_seller + to_venue + refund
    s.to_seller += to_seller
    s.to_venue += to_venue
    s.refunded += refund
    ledger = _ledger(state, s.currency)
    ledger.to_sellers += to_seller
    ledger.to_venue += to_venue
    ledger.refunded += refund
    s.status = "completed"
    s.completed_at = ctx.ts
    ctx.emit(FundsReleased(to=_audience(state, s), settlement=s.id, to_seller=to_seller,
                           to_venue=to_venue, refunded=refund, currency=s.currency))
    ctx.emit(SettlementCompleted(to=_audience(state, s), settlement=s.id, session=s.session,
                                 serial=s.serial, completed_at=ctx.ts))
    if s.holds_credit:
        lots.mark_settled(state, ctx, s.serial)
    _certificates(state, ctx, s, "transaction")


def _cancel(state: State, ctx: Ctx, s: Settlement, reason: str) -> None:
    """Cancel the sale: refund the escrow, unsell the lot (its buyer's credit
    released), withdraw a running publicity notice; since rules 4 a patent
    sold on the book goes back to its seller."""
    refund = s.escrow
    s.escrow = 0
    s.refunded += refund
    _ledger(state, s.currency).refunded += refund
    s.status = "cancelled"
    s.cancelled_at = ctx.ts
    s.cancel_reason = reason
    if refund:
        ctx.emit(FundsRefunded(to=_audience(state, s), settlement=s.id, amount=refund,
                               currency=s.currency, reason=reason))
    ctx.emit(SettlementCancelled(to=_audience(state, s), settlement=s.id, session=s.session,
                                 serial=s.serial, reason=reason, refunded=refund))
    if s.publicity == "running":
        s.publicity = "withdrawn"
        ctx.emit(PublicityEnded(settlement=s.id, session=s.session, serial=s.serial,
                                outcome="withdrawn", objections=len(s.objections)))
    if s.how == "book":
        if ctx.rules >= 4:                       # the patent goes back to the seller
            market.return_patent(state, s.instrument, s.buyer, s.seller)
        elif s.instrument in state.books:        # (rules 3 left it with the buyer)
            state.books[s.instrument].unit_kept = True
    if s.holds_credit:
        lots.unsell(state, ctx, s.serial)


def _certificates(state: State, ctx: Ctx, s: Settlement, kind: str) -> None:
    """Issue a certificate: public with paddles, the operators' copy with identities.
    Since rules 5 the paddles' copy of a non-public agreement transfer (one whose
    publicity never started: not a state-institution transfer, not marked as
    one) goes to the settlement's own audience, as its every other event does.
    It records ``ctx.seq``; the journal's chain hash there is added outside the engine."""
    common = dict(kind=kind, settlement=s.id, session=s.session, serial=s.serial, title=s.title,
                  how=s.how, patents=s.patents, buyer_paddle=s.buyer_paddle,
                  seller_paddle=s.seller_paddle, price=s.price, premium=s.premium, total=s.total,
                  commission=s.commission, net=s.net, refunded=s.refunded, currency=s.currency,
                  sold_at=s.sold_at, paid_at=s.paid_at, delivered_at=s.delivered_at,
                  received_at=s.received_at, completed_at=s.completed_at, issued_at=ctx.ts,
                  seq=ctx.seq)
    buyer = state.parties[s.buyer]
    seller = state.parties[s.seller]
    ctx.emit(CertificateIssued(to=_certificate_audience(state, ctx, s), **common))
    ctx.emit(CertificateRecorded(to=private(), buyer=buyer.id, buyer_name=buyer.name,
                                 buyer_country=buyer.country, seller=seller.id,
                                 seller_name=seller.name, seller_country=seller.country,
                                 **common))


def _certificate_audience(state: State, ctx: Ctx, s: Settlement) -> tuple[str, ...]:
    """Public, but since rules 5 a non-public agreement transfer's (see
    `_certificates`): the buyer's and the seller's brokers and the operators."""
    if ctx.rules >= 5 and s.how == "agreement" and not s.publicity:
        return _audience(state, s)
    return ()


# --------------------------------------------------------------------------
# due dates, default and re-award
# --------------------------------------------------------------------------

@on_timer("settlement_due")
def _due(state: State, ctx: Ctx, ref: str, due_at: int) -> None:
    s = state.settlements.get(int(ref))
    if s is None or s.status != "awaiting_payment" or s.due_at != due_at or s.overdue:
        return
    s.overdue = True
    ctx.emit(SettlementOverdue(to=_audience(state, s), settlement=s.id, due_at=s.due_at,
                               outstanding=s.total - s.paid))


@handles(ExtendDueDate)
def extend_due_date(state: State, ctx: Ctx, cmd: ExtendDueDate) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.status != "awaiting_payment":
        raise Reject("already_paid", f"settlement {s.id} is paid in full")
    a_time(cmd.due_at, "due date")
    if cmd.due_at <= s.due_at or cmd.due_at <= ctx.ts:
        raise Reject("not_later", f"settlement {s.id} is due at {s.due_at}; the new due date "
                                  f"must be later than that and than now")
    s.due_at = cmd.due_at
    s.overdue = False
    state.schedule(cmd.due_at, "settlement_due", str(s.id), cmd.due_at)
    ctx.emit(DueDateExtended(to=_audience(state, s), settlement=s.id, due_at=cmd.due_at))


@handles(DeclareDefault)
def declare_default(state: State, ctx: Ctx, cmd: DeclareDefault) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.status != "awaiting_payment":
        raise Reject("already_paid", f"settlement {s.id} is paid in full; no default")
    if not s.overdue:
        raise Reject("not_overdue", f"settlement {s.id} is due at {s.due_at}")
    if cmd.next == "reaward" and (not s.holds_credit or s.mechanism in NOT_REAWARDED):
        raise Reject("not_reawardable", f"a {s.mechanism} sale is relisted, not re-awarded")
    buyer = state.parties[s.buyer]
    ctx.emit(BuyerDefaulted(to=_audience(state, s), settlement=s.id, session=s.session,
                            serial=s.serial, paddle=s.buyer_paddle, reason=cmd.reason,
                            next=cmd.next))
    _cancel(state, ctx, s, "default")
    if not buyer.frozen:
        buyer.frozen = True
        ctx.emit(PartyFrozen(to=audience(state, buyer.id), party=buyer.id, settlement=s.id,
                             reason=cmd.reason or "default"))
    if s.holds_credit:
        desk(state).passed_over.setdefault(s.serial, []).append(s.buyer_paddle)
        if cmd.next == "reaward":
            _offer_next(state, ctx, state.lots[s.serial], s.id)


def _offer_next(state: State, ctx: Ctx, lot: lots.Lot, settlement_id: int) -> None:
    """Offer ``lot`` to the best runner-up not passed over, frozen or below
    the reserve, at its own last price; else report that none is left."""
    book = desk(state)
    passed = book.passed_over.get(lot.serial, [])
    floor = max(lot.reserve, lot.terms.starting_bid)
    for bid in lots.runners_up(state, lot.serial):
        if bid.amount < floor:
            break
        party = state.parties[bid.party]
        if bid.paddle in passed or party.frozen or not party.approved or party.id == lot.seller:
            continue
        window = rules_for(state, lot.session, lot.serial).reaward_window
        book.offers_made += 1
        offer = ReawardOffer(number=book.offers_made, serial=lot.serial, session=lot.session,
                             paddle=bid.paddle, party=party.id, price=bid.amount,
                             expires_at=min(ctx.ts + window, MAX_TIME), settlement=settlement_id)
        book.offers[lot.serial] = offer
        state.schedule(offer.expires_at, "reaward_expiry", lot.serial, offer.number)
        ctx.emit(ReawardOffered(to=_offer_audience(state, lot, party.id), serial=lot.serial,
                                session=lot.session, paddle=bid.paddle, price=bid.amount,
                                expires_at=offer.expires_at, settlement=settlement_id))
        return
    ctx.emit(ReawardExhausted(to=audience(state, lot.seller), serial=lot.serial,
                              session=lot.session))


def _offer_audience(state: State, lot: lots.Lot, party: int) -> tuple[str, ...]:
    return private(state.parties[party].broker, state.parties[lot.seller].broker)


def _end_offer(state: State, ctx: Ctx, offer: ReawardOffer, reason: str) -> None:
    book = desk(state)
    del book.offers[offer.serial]
    if reason != "superseded":
        book.passed_over.setdefault(offer.serial, []).append(offer.paddle)
    lot = state.lots[offer.serial]
    ctx.emit(ReawardEnded(to=_offer_audience(state, lot, offer.party), serial=offer.serial,
                          session=offer.session, paddle=offer.paddle, reason=reason))


@handles(AnswerReaward)
def answer_reaward(state: State, ctx: Ctx, cmd: AnswerReaward) -> None:
    ctx.require_role("broker", "operator")
    lot = lots.visible_lot(state, ctx, cmd.serial)
    if not ctx.is_operator:              # whose paddle first: no oracle of who holds the offer
        party_id = state.sessions[lot.session].paddles.get(cmd.paddle)
        if party_id is None or state.parties[party_id].broker != ctx.actor:
            raise Reject("not_your_paddle", f"paddle {cmd.paddle} is not one of {ctx.actor!r}'s")
    offer = peek(state).offers.get(cmd.serial)
    if offer is None or offer.paddle != cmd.paddle:
        raise Reject("no_reaward_offer", f"paddle {cmd.paddle} has no re-award offer on lot "
                                         f"{cmd.serial}")
    if cmd.accept:
        party = paddle_party(state, ctx, lot.session, cmd.paddle)
        lots.check_credit(state, lot, party.id, lots.total_due(lot, offer.price))
        del desk(state).offers[cmd.serial]
        lots.reaward(state, ctx, lot.serial, cmd.paddle, party.id, offer.price)
        return
    _end_offer(state, ctx, offer, "declined")
    _offer_next(state, ctx, lot, offer.settlement)


@on_timer("reaward_expiry")
def _offer_expired(state: State, ctx: Ctx, serial: str, number: int) -> None:
    offer = peek(state).offers.get(serial)
    if offer is None or offer.number != number:
        return
    _end_offer(state, ctx, offer, "expired")
    _offer_next(state, ctx, state.lots[serial], offer.settlement)


@reacts_to(LotRelisted)
def _on_lot_relisted(state: State, ctx: Ctx, event: LotRelisted) -> None:
    book = peek(state)
    offer = book.offers.get(event.serial)
    if offer is not None:
        _end_offer(state, ctx, offer, "superseded")
    if event.serial in book.passed_over:
        del book.passed_over[event.serial]


@reacts_to(PartyFrozen)
def _on_party_frozen(state: State, ctx: Ctx, event: PartyFrozen) -> None:
    """A re-award offer to a party now frozen ends ("party_frozen"), and
    its lot goes to the next runner-up. O(offers)."""
    _end_offers_to(state, ctx, event.party, "party_frozen")


@reacts_to(CreditReviewed)
def _on_credit_reviewed(state: State, ctx: Ctx, event: CreditReviewed) -> None:
    """Since rules 3, a re-award offer to a party whose approval is withdrawn
    ends likewise ("approval_withdrawn"). O(offers)."""
    if not event.approved and ctx.rules >= 3:
        _end_offers_to(state, ctx, event.party, "approval_withdrawn")


def _end_offers_to(state: State, ctx: Ctx, party: int, reason: str) -> None:
    book = peek(state)
    for offer in [o for o in book.offers.values() if o.party == party]:
        _end_offer(state, ctx, offer, reason)
        _offer_next(state, ctx, state.lots[offer.serial], offer.settlement)


@reacts_to(LotWithdrawn)
def _on_lot_withdrawn(state: State, ctx: Ctx, event: LotWithdrawn) -> None:
    offer = peek(state).offers.get(event.serial)
    if offer is not None:
        _end_offer(state, ctx, offer, "superseded")


@handles(LiftFreeze)
def lift_freeze(state: State, ctx: Ctx, cmd: LiftFreeze) -> None:
    ctx.require_role("operator")
    party = get_party(state, cmd.party)
    if not party.frozen:
        raise Reject("not_frozen", f"party {party.id}'s credit is not frozen")
    party.frozen = False
    ctx.emit(FreezeLifted(to=audience(state, party.id), party=party.id, reason=cmd.reason))


# --------------------------------------------------------------------------
# publicity of state-institution transfers
# --------------------------------------------------------------------------

def _start_publicity(state: State, ctx: Ctx, s: Settlement) -> None:
    s.publicity = "running"
    period = rules_for(state, s.session, s.serial).publicity_period
    s.publicity_ends = min(ctx.ts + period, MAX_TIME)
    state.schedule(s.publicity_ends, "publicity_end", str(s.id), s.publicity_ends)
    ctx.emit(PublicityStarted(settlement=s.id, session=s.session, serial=s.serial, title=s.title,
                              patents=s.patents, buyer_paddle=s.buyer_paddle,
                              seller_paddle=s.seller_paddle, price=s.price, currency=s.currency,
                              ends_at=s.publicity_ends))


@handles(MarkStateTransfer)
def mark_state_transfer(state: State, ctx: Ctx, cmd: MarkStateTransfer) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.how not in ("negotiated", "agreement"):
        raise Reject("not_publicizable", f"settlement {s.id} is a sale by {s.how}, not at an "
                                         f"agreed price")
    if s.publicity:
        raise Reject("already_published", f"settlement {s.id}'s publicity is {s.publicity}")
    _start_publicity(state, ctx, s)


@handles(RecordObjection)
def record_objection(state: State, ctx: Ctx, cmd: RecordObjection) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.publicity != "running":
        raise Reject("not_in_publicity", f"settlement {s.id} is not in a publicity period")
    _text(cmd.objector, "the objector")
    _text(cmd.reason, "an objection's reason")
    s.objections.append((cmd.objector, cmd.reason))
    ctx.emit(ObjectionRecorded(to=_audience(state, s), settlement=s.id, objector=cmd.objector,
                               reason=cmd.reason, objections=len(s.objections)))


@on_timer("publicity_end")
def _publicity_due(state: State, ctx: Ctx, ref: str, ends_at: int) -> None:
    s = state.settlements.get(int(ref))
    if s is None or s.publicity != "running" or s.publicity_ends != ends_at:
        return
    objected = bool(s.objections)
    s.publicity = "objected" if objected else "cleared"
    ctx.emit(PublicityEnded(settlement=s.id, session=s.session, serial=s.serial,
                            outcome="objected" if objected else "no_objection",
                            objections=len(s.objections)))
    if not objected:
        _certificates(state, ctx, s, "no_objection")


@handles(ResolveObjection)
def resolve_objection(state: State, ctx: Ctx, cmd: ResolveObjection) -> None:
    ctx.require_role("operator")
    s = get_settlement(state, cmd.settlement, ctx)
    _still_open(s)
    if s.publicity == "running":
        raise Reject("in_publicity", f"settlement {s.id}'s publicity runs until {s.publicity_ends}")
    if s.publicity != "objected":
        raise Reject("no_objections", f"settlement {s.id} has no objections to decide")
    _text(cmd.reason, "a decision's reason")
    ctx.emit(ObjectionResolved(to=_audience(state, s), settlement=s.id, action=cmd.action,
                               reason=cmd.reason))
    if cmd.action == "dismiss":
        s.publicity = "cleared"
    else:
        s.dispute = ""
        _cancel(state, ctx, s, "objection")


# --------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------

@invariant
def _settlement_check(state: State) -> None:
    """Money conserved per settlement and per currency; each step's dates and
    amounts consistent with its status; every sold lot has exactly one open
    settlement holding its buyer's total due; every settled lot's last
    settlement completed; re-award offers only on passed lots."""
    book = state.extra.get("settlement")
    if book is None:
        assert not state.settlements
        assert not any(lot.status in ("sold", "settled") for lot in state.lots.values())
        return
    totals: dict[str, list[int]] = {}
    open_lots: dict[str, int] = {}
    for sid, s in state.settlements.items():
        where = (sid, s.status)
        assert s.id == sid and 0 < sid < book.next_id, where
        assert s.status in STATUSES and s.publicity in PUBLICITY, where
        assert s.total == s.price + s.premium and s.net == s.price - s.commission, where
        assert s.price > 0 and s.premium >= 0 and 0 <= s.commission <= s.price, where
        assert 0 <= s.paid <= s.total, where
        assert min(s.escrow, s.to_seller, s.to_venue, s.refunded) >= 0, where
        assert s.paid == s.escrow + s.to_seller + s.to_venue + s.refunded, where
        if s.status == "awaiting_payment":
            assert s.paid < s.total and s.escrow == s.paid and not s.paid_at, where
        elif s.status in OPEN:
            assert s.paid == s.total == s.escrow and s.paid_at, where
        if s.status in ("delivered", "received"):
            assert s.delivered_at and s.delivery_ref, where
        if s.status == "received":
            assert s.received_at, where
        assert bool(s.dispute) == (s.status == "disputed"), where
        assert not s.overdue or (s.status != "awaiting_payment" or state.now >= s.due_at), where
        if s.status == "completed":
            assert s.escrow == 0 and s.paid == s.total and s.completed_at, where
            assert s.to_venue == s.premium + s.commission, where
            assert s.to_seller + s.refunded == s.net, where
            assert s.publicity in ("", "cleared"), where
        if s.status == "cancelled":
            assert s.escrow == 0 and s.to_seller == 0 and s.to_venue == 0, where
            assert s.refunded == s.paid and s.cancelled_at, where
            assert s.publicity != "running", where
        if s.publicity == "running":
            assert s.publicity_ends > 0, where
        money = totals.setdefault(s.currency, [0, 0, 0, 0, 0])
        for index, amount in enumerate((s.paid, s.escrow, s.to_seller, s.to_venue, s.refunded)):
            money[index] += amount
        if s.holds_credit:
            lot = state.lots[s.serial]
            if s.status in OPEN:
                assert s.serial not in open_lots, (where, s.serial, open_lots[s.serial])
                open_lots[s.serial] = sid
                assert lot.status == "sold" and lot.sale is not None, (where, lot.status)
                assert lot.sale.seq == s.sale_seq and lot.sale.buyer == s.buyer, where
                assert credit.committed(state, s.session, s.buyer, lots.lot_key(lot)) == s.total, where
        else:
            assert book.agreements.get(s.serial) == sid, where
    for currency, (paid, escrow, to_seller, to_venue, refunded) in totals.items():
        ledger = book.ledgers.get(currency, Ledger())
        assert (ledger.paid_in, ledger.to_sellers, ledger.to_venue, ledger.refunded) == \
            (paid, to_seller, to_venue, refunded), (currency, ledger, totals[currency])
        assert paid == to_seller + to_venue + refunded + escrow, (currency, totals[currency])
    for currency in book.ledgers:
        assert currency in totals, currency
    for serial, lot in state.lots.items():
        if lot.status == "sold":
            assert open_lots.get(serial) == book.by_lot.get(serial), serial
            assert serial in open_lots, serial
        elif lot.status == "settled":
            assert state.settlements[book.by_lot[serial]].status == "completed", serial
    for serial, offer in book.offers.items():
        lot = state.lots[serial]
        assert offer.serial == serial and lot.status == "passed", (serial, lot.status)
        assert offer.paddle not in book.passed_over.get(serial, []), (serial, offer)
        assert state.settlements[offer.settlement].status == "cancelled", (serial, offer)
