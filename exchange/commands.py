"""Commands: what a user asks the engine to do, in the imperative.

Every command is a frozen msgspec Struct tagged with its class name in the
field ``type``. The same types are the wire format (gateway), the journal
format (recorder) and the replay format. Fields are named once and never
renamed; money is an int in minor units of the lot's currency, time an int
of nanoseconds UTC.

The gateway wraps each command in an `Envelope` that carries what only the
server may say: the sequence number, the time, and the authenticated user
and role. The engine trusts the envelope and nothing in the command body
about who sent it.

Sections: core (participants, sessions, clock), auctions (issue 2),
continuous book (issue 3), settlement (issue 7). Add to your own section.
"""

from __future__ import annotations

from typing import Literal, Union

import msgspec


class Command(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True, gc=False,
              forbid_unknown_fields=True):
    """Base of every command."""


Role = Literal["operator", "broker", "viewer", "system"]


# --------------------------------------------------------------------------
# core: clock, participants, sessions, display rates
# --------------------------------------------------------------------------

class Tick(Command, frozen=True):
    """Advance the engine clock to the envelope's time and fire what is due."""


class RegisterParty(Command, frozen=True):
    """Register a client (bidder or seller) of the sending broker.

    The party id is the envelope's sequence number. An operator may register
    a party for a broker by naming it in ``broker``; naming none, a party the
    operators hold (whose settlement steps any operator takes, rules 4).
    """

    name: str
    country: str = ""
    broker: str = ""


class ReviewCredit(Command, frozen=True):
    """Record an operator's credit review of a party (operator only)."""

    party: int
    approved: bool
    credit_limit: int = 0
    currency: str = "USD"
    agreement_version: str = ""
    score: int = 0


class CreateSession(Command, frozen=True):
    """Open a trading session that groups lots; may span days (operator only)."""

    session: str
    name: str
    currency: str = "USD"
    starts_at: int = 0
    ends_at: int = 0


class CloseSession(Command, frozen=True):
    """Close a session to new paddles and lots (operator only)."""

    session: str


class IssuePaddle(Command, frozen=True):
    """Issue an anonymous paddle number to an approved party (operator only)."""

    session: str
    party: int


class SetDisplayRate(Command, frozen=True):
    """Set the display rate from one currency to another: 1 unit of ``base``
    shows as ``num / den`` units of ``quote``. Display only (operator only)."""

    base: str
    quote: str
    num: int
    den: int


# --------------------------------------------------------------------------
# auctions (issue 2)
# --------------------------------------------------------------------------

Mechanism = Literal["english", "sealed_first", "sealed_second", "dutch", "reverse", "bid_ask"]
TieBreak = Literal["earliest", "lottery"]


class Patent(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One patent or application in a lot's catalogue entry (dates: int ns UTC)."""

    number: str
    title: str
    family_id: str = ""
    jurisdiction: str = "US"
    status: Literal["granted", "pending"] = "granted"
    field: str = ""
    priority_date: int = 0
    expiry_date: int = 0


class LotTerms(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A lot's public catalogue entry and rules. Everything here is public once
    the lot is scheduled; the reserve is NOT here (see `CreateLot.reserve`).

    Money in minor units of ``currency`` ("": the session's, filled in when the
    lot is created; rules 5 refused it); times int ns UTC; rates in basis
    points (1 bp = 0.01 %). ``increments`` names a table of
    `exchange.increments` ("otba", "ebay2003", "custom" = ``custom_increments``,
    pairs of (band floor, increment) ascending from 0). ``hard_end`` 0 means
    ``closes_at``. Soft close: a bid in the last ``soft_window`` ns extends the
    close by ``soft_extend`` ns, never past ``hard_end``. Dutch: the clock
    starts at ``dutch_start`` and steps down by ``dutch_step`` every
    ``dutch_interval`` ns. Reverse: ``starting_bid`` is the public budget;
    ``reverse_choice`` "lowest" awards the lowest acceptable offer at the close,
    "buyer" lets the buyer choose within ``choice_window`` ns.
    ``negotiation_window`` ns after a pass: private offers to the seller.
    ``display_currency``: events also show amounts in it at the operator rate.
    """

    title: str
    patents: tuple[Patent, ...] = ()
    currency: str = ""
    mechanism: Mechanism = "english"
    starting_bid: int = 0
    ask: int = 0
    increments: str = "otba"
    custom_increments: tuple[tuple[int, int], ...] = ()
    opens_at: int = 0
    closes_at: int = 0
    hard_end: int = 0
    soft_window: int = 0
    soft_extend: int = 0
    buyer_premium_bp: int = 0
    seller_commission_bp: int = 0
    tie_break: TieBreak = "earliest"
    dutch_start: int = 0
    dutch_step: int = 0
    dutch_interval: int = 0
    reverse_choice: Literal["lowest", "buyer"] = "lowest"
    choice_window: int = 0
    negotiation_window: int = 0
    display_currency: str = ""


class CreateLot(Command, frozen=True):
    """Submit a lot as a draft (the seller's broker or an operator). For a
    reverse tender ``seller`` is the party that buys (the seeker) and
    ``reserve`` its secret ceiling. ``reserve`` 0 means no reserve."""

    serial: str
    session: str
    seller: int
    terms: LotTerms
    reserve: int = 0


class VetLot(Command, frozen=True):
    """Record the experts' score and approve or reject a draft (operator only)."""

    serial: str
    score: int
    approved: bool
    note: str = ""


class ScheduleLot(Command, frozen=True):
    """Publish a vetted lot in the catalogue and schedule it (operator only).
    Non-zero times override the terms' schedule."""

    serial: str
    opens_at: int = 0
    closes_at: int = 0
    hard_end: int = 0


class PlaceBid(Command, frozen=True):
    """Bid on a lot with a paddle. English: ``amount`` is the proxy maximum.
    Sealed: the one live bid of the paddle (replaces an earlier one). Dutch:
    accepts the clock at its current price if ``amount`` is at least that.
    Reverse: a sealed offer to sell at ``amount``. ``currency`` "" means the
    lot's; any other value must equal it."""

    serial: str
    paddle: int
    amount: int
    currency: str = ""


class WithdrawBid(Command, frozen=True):
    """Withdraw the paddle's live sealed bid or reverse offer before the close."""

    serial: str
    paddle: int


class BuyAtAsk(Command, frozen=True):
    """Buy a scheduled or open lot at once at its Ask."""

    serial: str
    paddle: int


class ChooseOffer(Command, frozen=True):
    """The buyer of a reverse tender chooses an acceptable offer (its broker or
    an operator), within the choice window."""

    serial: str
    paddle: int


class MakeOffer(Command, frozen=True):
    """Make (or replace) a private offer for a passed lot in its negotiation window."""

    serial: str
    paddle: int
    amount: int


class WithdrawOffer(Command, frozen=True):
    """Withdraw the paddle's private offer for a passed lot."""

    serial: str
    paddle: int


class AnswerOffer(Command, frozen=True):
    """The seller (its broker or an operator) accepts, declines or counters a
    private offer. A counter needs ``amount`` above the offer."""

    serial: str
    paddle: int
    action: Literal["accept", "decline", "counter"]
    amount: int = 0


class AcceptCounter(Command, frozen=True):
    """The bidder accepts the seller's counter to its offer: a sale at the counter."""

    serial: str
    paddle: int


class LowerReserve(Command, frozen=True):
    """The seller lowers the reserve of a passed lot in its negotiation window;
    the best live offer at or above the new reserve sells at once."""

    serial: str
    reserve: int


class RecordNegotiatedSale(Command, frozen=True):
    """Record a sale of a passed lot agreed off the floor (operator only)."""

    serial: str
    paddle: int
    amount: int


class RelistLot(Command, frozen=True):
    """Put a passed lot up again with a new schedule (operator only); ``reserve``
    None keeps the current one."""

    serial: str
    opens_at: int
    closes_at: int
    hard_end: int = 0
    reserve: int | None = None


class WithdrawLot(Command, frozen=True):
    """Withdraw a lot that is not sold (the seller's broker before it opens, or an
    operator at any time before a sale); every commitment on it is released."""

    serial: str
    reason: str = ""


class ExtendLot(Command, frozen=True):
    """Move an open lot's close later (operator only), e.g. after an outage that
    kept bidders out. ``reason`` is published as a notice. ``hard_end``: the
    latest a soft close may then reach (0: the old one moved by as much as the
    close). Not for a Dutch lot, whose clock sets its end."""

    serial: str
    closes_at: int
    reason: str
    hard_end: int = 0


class PostNotice(Command, frozen=True):
    """Publish a saleroom notice (operator only): an announcement or a
    correction to the catalogue, about a session, one of its lots (``serial``)
    or one of its books (``instrument``)."""

    session: str
    text: str
    serial: str = ""
    instrument: str = ""


class AddDocument(Command, frozen=True):
    """Put a document in a lot's data room, or a new version of one of the
    same ``name`` (the seller's broker or an operator). lotex keeps the index,
    not the file: ``digest`` is the file's SHA-256 (64 lowercase hex digits),
    ``size`` its bytes, ``location`` where the venue's document store keeps
    it, told only to the seller's side and to parties that signed the lot's
    non-disclosure agreement (`SignNda`)."""

    serial: str
    name: str
    digest: str
    size: int
    location: str


class RemoveDocument(Command, frozen=True):
    """Take a document out of a lot's data room (the seller's broker or an
    operator); it is released to no one after."""

    serial: str
    name: str


class RequireNda(Command, frozen=True):
    """Name the version of the NDA a lot's data room requires (the seller's
    broker or an operator): from then on only a party whose last signature is
    of that version opens a document; "" accepts any version signed."""

    serial: str
    nda: str


class SignNda(Command, frozen=True):
    """Record that ``party`` signed the lot's non-disclosure agreement, text
    version ``nda``, which opens the lot's data room to it (its broker or an
    operator). Signing a new version again is allowed."""

    serial: str
    party: int
    nda: str


class RegisterExpert(Command, frozen=True):
    """Add an expert to the exchange's valuation pool (operator only). The
    expert id is the envelope's sequence number. ``fields``: the technology
    fields the expert may value (none: any)."""

    name: str
    fields: tuple[str, ...] = ()


class RetireExpert(Command, frozen=True):
    """Take an expert out of future draws (operator only); on a panel still
    open it keeps its seat, but its ranges stop counting and it gives none."""

    expert: int


class DrawPanel(Command, frozen=True):
    """Draw an inquiry panel of ``size`` experts at random from the pool to
    value a lot (operator only): those of ``field`` if given, never the same
    expert twice. The draw is a pure function of the lot, the panel's round
    and the envelope's sequence number and time stamp (which its sender
    cannot know in advance), so anyone holding the journal can check it."""

    serial: str
    size: int
    field: str = ""


class RecordValuation(Command, frozen=True):
    """Record a panel expert's price range for the lot, in its currency
    (operator only); a later one of the same expert replaces it."""

    serial: str
    expert: int
    low: int
    high: int


class CancelPanel(Command, frozen=True):
    """Discard the lot's open panel without a range (operator only), e.g. when
    its experts do not answer; a new one may then be drawn."""

    serial: str
    reason: str


class PublishPriceRange(Command, frozen=True):
    """Close the lot's panel and publish its price range: the medians of the
    experts' lows and highs (operator only); at least half the panel must
    have valued it."""

    serial: str


class OpenDocument(Command, frozen=True):
    """Ask for a data-room document for ``party`` (its broker or an operator):
    its location and digest come back to the party's broker alone, once the
    party signed the lot's NDA. Every opening is journaled (the access log)."""

    serial: str
    party: int
    name: str


# --------------------------------------------------------------------------
# continuous book and call auction (issue 3)
# --------------------------------------------------------------------------

BookSide = Literal["buy", "sell"]
TimeInForce = Literal["gtc", "gtd", "ioc", "fok", "market"]
SelfTradePrevention = Literal["cancel_newest", "cancel_oldest", "cancel_both"]


class CreateInstrument(Command, frozen=True):
    """Open a continuous book in a session (operator only). ``kind`` "units":
    fungible unit licence rights, any quantity. "patent": the patent lot
    ``lot`` (a ``bid_ask`` lot of the same session), quantity 1, sold by the
    lot's seller. ``currency`` "" means the session's (a patent's is its lot's).
    ``call`` True starts in a call period (a primary offering or an opening
    cross). ``reference`` is the call auction's reference price (0: none; the
    last trade price once there is one). ``max_orders``: resting orders a
    paddle may hold on the instrument at once (0: no limit); an order that
    could rest beyond it is refused ``too_many_orders``."""

    session: str
    instrument: str
    kind: Literal["units", "patent"] = "units"
    lot: str = ""
    currency: str = ""
    stp: SelfTradePrevention = "cancel_newest"
    call: bool = False
    reference: int = 0
    max_orders: int = 0


class IssueUnits(Command, frozen=True):
    """Credit ``qty`` newly issued units of a units instrument to a paddle's
    party, e.g. the issuer before its primary offering (operator only)."""

    session: str
    instrument: str
    paddle: int
    qty: int


class PlaceOrder(Command, frozen=True):
    """Place an order with a paddle. ``order`` is the client's id, unique among
    the paddle's live orders on the instrument and reusable once the order is
    gone. ``tif``: "gtc" rests until cancelled, "gtd" until ``expires`` (int
    ns UTC), "ioc" cancels its unfilled rest, "fok" fills completely at once
    or is cancelled, "market" is an IOC without a price (``price`` 0).
    ``post_only`` (gtc/gtd): refused if it would trade on arrival."""

    session: str
    instrument: str
    paddle: int
    order: int
    side: BookSide
    qty: int
    price: int = 0
    tif: TimeInForce = "gtc"
    post_only: bool = False
    expires: int = 0


class CancelOrder(Command, frozen=True):
    """Cancel a resting order of the paddle."""

    session: str
    instrument: str
    paddle: int
    order: int


class ModifyOrder(Command, frozen=True):
    """Change a resting order's price and open quantity (``qty`` is what it is
    to have left). A reduction at the same price keeps time priority; a
    price change or an increase re-queues it, and it trades at once at the
    resting orders' prices if it crosses."""

    session: str
    instrument: str
    paddle: int
    order: int
    price: int
    qty: int


class MassCancel(Command, frozen=True):
    """Cancel many resting orders at once: of one ``paddle``, or of every
    paddle of a ``broker`` ("" with a broker role: the sender's own), on one
    ``instrument`` or ("") every book of the session. An operator naming
    neither paddle nor broker cancels every order."""

    session: str
    instrument: str = ""
    paddle: int = 0
    broker: str = ""


class StartCall(Command, frozen=True):
    """Begin a call period: orders collect without trading until `Uncross`
    (operator only)."""

    session: str
    instrument: str


class Uncross(Command, frozen=True):
    """End the call period: trade at the single price of maximum volume, then
    trade continuously (operator only). ``reference`` 0 uses the instrument's."""

    session: str
    instrument: str
    reference: int = 0


class CloseInstrument(Command, frozen=True):
    """Stop trading an instrument and cancel its resting orders (operator only)."""

    session: str
    instrument: str


class SetOrderLimit(Command, frozen=True):
    """Change how many resting orders a paddle may hold on a live instrument
    (``max_orders``, 0: no limit; operator only). Orders already resting stay
    (a paddle above a lowered limit places no resting order until it is under
    it again); the limit applies to the orders that come after."""

    session: str
    instrument: str
    max_orders: int


class SetPriceRules(Command, frozen=True):
    """Set a live instrument's tick and price band (operator only). ``tick``:
    every limit price must be a multiple of it (1: any price). ``band_bp``: an
    order may not buy above, or sell below, the reference by more than this
    many basis points (0: no band); the reference is the last trade price, or
    the instrument's ``reference`` before its first trade (no band without
    either). A market order trades only within the band. Resting orders stay
    as they are; the rules apply to the orders and price changes that come after."""

    session: str
    instrument: str
    tick: int = 1
    band_bp: int = 0


class HaltTrading(Command, frozen=True):
    """Halt trading on a live instrument (operator only), e.g. news pending on
    the patents behind it. No order may enter or change while it is halted;
    resting orders stay and may be cancelled. ``reason`` (1..200 characters)
    is public."""

    session: str
    instrument: str
    reason: str


class ResumeTrading(Command, frozen=True):
    """End a halt (operator only), into the ``phase`` given: "continuous", or
    "call" for a reopening call period that `Uncross` ends. A book left
    crossed, or holding call orders, by a halt during a call reopens in a call."""

    session: str
    instrument: str
    phase: Literal["continuous", "call"] = "continuous"


class AppointLiquidityProvider(Command, frozen=True):
    """Make a paddle a liquidity provider on a units instrument (operator
    only), with its quoting obligation: while the book trades continuously,
    its own resting orders must buy ``min_qty`` units at some price and sell
    ``min_qty`` at a price at most ``max_spread`` above it, for at least
    ``presence_bp`` basis points of the time (10,000: always). The engine
    measures the time from the journal's clock; `ReportLiquidity` and the
    end of the appointment report it."""

    session: str
    instrument: str
    paddle: int
    max_spread: int
    min_qty: int
    presence_bp: int


class EndLiquidityProvider(Command, frozen=True):
    """End a paddle's appointment as liquidity provider (operator only): its
    final report follows."""

    session: str
    instrument: str
    paddle: int


class ReportLiquidity(Command, frozen=True):
    """Report the presence of every liquidity provider of the instrument so
    far (operator only); ``reset``: the report closes a period (a day, a
    month) and the next one counts from now."""

    session: str
    instrument: str
    reset: bool = False


class ConsumeUnits(Command, frozen=True):
    """Record that the paddle's party used ``qty`` units: they leave its holding."""

    session: str
    instrument: str
    paddle: int
    qty: int


class RecordUnitsPayment(Command, frozen=True):
    """Record that the paddle's party paid ``amount`` (minor units, in the
    instrument's currency) for units it bought on ``instrument`` (operator
    only): what it owes for them falls by ``amount``, and so does its credit
    exposure. ``reference``: the payment's bank or escrow reference."""

    session: str
    instrument: str
    paddle: int
    amount: int
    reference: str = ""



# --------------------------------------------------------------------------
# settlement (issue 7)
# --------------------------------------------------------------------------

class SetSettlementRules(Command, frozen=True):
    """Set the settlement terms of a session, or of one lot (``lot`` non-empty)
    which then override the session's (operator only). Durations in ns:
    ``payment_term`` from the sale to the due date of the buyer's payment,
    ``reaward_window`` for a runner-up to answer a re-award offer,
    ``publicity_period`` for a state-institution transfer's publication.
    Defaults (no rules set): 7 days, 2 days, 15 days."""

    session: str
    payment_term: int
    reaward_window: int
    publicity_period: int
    lot: str = ""


class RecordAgreementTransfer(Command, frozen=True):
    """Record a non-public transfer the parties agreed (operator only): it is
    a sale at ``price`` and opens a settlement at once. ``serial`` is the
    transaction's serial number (unique among lots and transfers).
    ``state_institution``: a state research institute transfers at an agreed
    price; the sale is published for the publicity period first."""

    session: str
    serial: str
    title: str
    seller: int
    buyer: int
    price: int
    patents: tuple[Patent, ...] = ()
    currency: str = ""
    buyer_premium_bp: int = 0
    seller_commission_bp: int = 0
    state_institution: bool = False


class RecordPayment(Command, frozen=True):
    """Record the buyer's payment into escrow, in full or in part (operator
    only). ``reference`` is the bank's reference of the transfer."""

    settlement: int
    amount: int
    reference: str = ""


class RecordDelivery(Command, frozen=True):
    """The seller's broker records delivery of the assignment documents to
    the buyer, after the buyer paid in full. ``reference``: the documents'
    identifier or digest."""

    settlement: int
    reference: str


class ConfirmReceipt(Command, frozen=True):
    """The buyer's broker confirms the documents arrived and are in order."""

    settlement: int


class RaiseDispute(Command, frozen=True):
    """The buyer's broker disputes the delivery (or its absence) after paying
    in full and before confirming receipt: release is frozen until an
    operator resolves the dispute."""

    settlement: int
    reason: str


class ResolveDispute(Command, frozen=True):
    """An operator resolves a dispute (operator only): "release" pays out as
    agreed; "refund" returns everything to the buyer and cancels the sale;
    "partial_refund" returns ``amount`` (at most the seller's net) to the
    buyer out of the seller's net and pays out the rest. ``reason`` required."""

    settlement: int
    outcome: Literal["release", "refund", "partial_refund"]
    reason: str
    amount: int = 0


class ReleaseFunds(Command, frozen=True):
    """Pay out a settlement whose buyer confirmed receipt: the net to the
    seller, the commission and premium to the venue (operator only)."""

    settlement: int


class ExtendDueDate(Command, frozen=True):
    """Move an unpaid settlement's due date later (operator only)."""

    settlement: int
    due_at: int


class DeclareDefault(Command, frozen=True):
    """Declare the buyer in default after the due date passed unpaid (operator
    only): the sale is cancelled, any part payment refunded, the buyer's
    credit frozen, and the lot offered to the next-highest bidder at its own
    last price (``next`` "reaward") or left passed for relisting ("relist")."""

    settlement: int
    reason: str = ""
    next: Literal["reaward", "relist"] = "reaward"


class AnswerReaward(Command, frozen=True):
    """The runner-up's broker accepts or declines the re-award offer of a lot
    within the offer's window; accepting buys the lot at the offered price."""

    serial: str
    paddle: int
    accept: bool


class LiftFreeze(Command, frozen=True):
    """Lift the credit freeze a default put on a party (operator only)."""

    party: int
    reason: str = ""


class MarkStateTransfer(Command, frozen=True):
    """Mark a negotiated sale or agreement transfer as a state-institution
    transfer at an agreed price: it is published for the publicity period
    before its funds may be released (operator only)."""

    settlement: int


class RecordObjection(Command, frozen=True):
    """Record an objection received during a publicity period (operator only)."""

    settlement: int
    objector: str
    reason: str


class ResolveObjection(Command, frozen=True):
    """Decide the objections to a published transfer after its period
    (operator only): "dismiss" lets settlement go on; "uphold" cancels the
    sale and refunds the buyer. ``reason`` required."""

    settlement: int
    action: Literal["dismiss", "uphold"]
    reason: str


# --------------------------------------------------------------------------
# keep last: the union of every command and the envelope
# --------------------------------------------------------------------------

def _concrete(base: type) -> list[type]:
    found: list[type] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_concrete(sub))
    return found


COMMAND_TYPES: tuple[type[Command], ...] = tuple(_concrete(Command))
AnyCommand = Union[COMMAND_TYPES]  # type: ignore[valid-type]


# The engine's rules, by version. An envelope carries the version it is to be
# applied under, so a journal replays under the rules that first applied it,
# whatever lotex replays it. 1: the rules before session end times; 2: a
# session with ``ends_at`` closes by itself then, and one may not end in the past;
# 3: a call auction uncrosses on the instrument's tick and may trade at the
# highest legal price; a buy order's modify that commits no more is not checked
# against credit; an order that self-trade prevention cancels as it enters a
# call period is remembered as cancelled; a lot sold at its Ask before it
# opened, then relisted, opens at its new time; a Dutch clock that is several
# steps late moves to its current price in one step; a rescheduled lot without
# a hard end gets one from its original terms; a lot may not take an agreement
# transfer's serial; a party whose approval is withdrawn loses its standing bids,
# offers and re-award offers as a frozen one does; a relisted lot starts a round.
# 4: a book sale cancelled in settlement gives the patent's unit back to the
# seller, and a relisted patent's new book takes the unit from its old one (one
# unit per patent); an operator takes the seller's and buyer's settlement steps
# (RecordDelivery, ConfirmReceipt, RaiseDispute) for a party the operators hold
# (registered by an operator naming no broker); a pricing panel still open when
# its lot sells without opening is discarded ("the lot sold"); a lot that is
# not an English auction may not have a soft close (it never moved one); a
# sealed lot sold at its Ask reveals its live bids as at a close; a seller's
# AnswerOffer and LowerReserve are refused once the session is closed.
# 5: a display amount (``display_*`` of BidAccepted, DutchPriceChanged,
# LotAwarded) above MAX_DISPLAY (2**63 - 1) is not given, as without a rate (a
# LotAwarded whose total is too large gives neither display amount); a
# ReviewCredit may not change the currency of a party's credit while the party
# has commitments (open_commitments); a lot whose mechanism applies no tie-break
# policy (English, Dutch, a tender of the buyer's choice, a book) may not have
# tie_break "lottery", which it ignored; the transaction certificate of an
# agreement transfer whose publicity never started (not a state-institution
# transfer, not marked as one) goes to its settlement's audience, not the public;
# closing a session drops the negotiation offers standing on its passed lots
# (OfferWithdrawn "session_closed"), releasing their credit.
# 6: when one clock command fires several timers, the reactions to each run
# before the next fires (a lot passed at its close closes its book before an
# order on it expires later), and liquidity providers' time is counted up to
# when the timer was due (a session's scheduled end, an order's expiry), not
# to the clock command that fired it; a lot's windows (``negotiation_window``,
# ``choice_window``, ``soft_*``, ``dutch_interval``) may be up to MAX_DURATION
# (ten years, as settlement terms) rather than MAX_INT ns (~11.6 days), and a
# window's end is at most MAX_TIME; a lot that passes after its session
# closed opens no negotiation window (negotiation_ends 0, no NegotiationEnded);
# a lot's ``currency`` "" (now LotTerms' default, "USD" before) means its
# session's, written into its terms when it is created (rules 5 refused "");
# a currency must be an active ISO 4217 code (participants.ISO_4217), not
# only three capital letters.
RULES = 6


class Envelope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A sequenced command as the engine receives it and the journal keeps it.
    ``client_id``: the sender's id for it ("" for none). ``rules``: the version
    of the engine's rules it is applied under (`RULES` when made; 1, left out
    of the encoding, as in entries journaled before versions were recorded)."""

    seq: int
    ts: int
    actor: str
    role: Role
    cmd: AnyCommand
    client_id: str
    rules: int = 1
