"""Events: what happened, in the past tense.

Every event is a frozen msgspec Struct tagged with its class name in the
field ``type``, and says who may see it in ``to``: an empty tuple is public
market data (paddle numbers only, never identities); otherwise it lists the
user ids it is private to, and ``OPERATORS`` for every operator. The engine
decides ``to``; the gateway only routes. Sealed amounts and secret reserves
never appear in a public event before the close.

Sections follow `exchange.commands`. Add to your own section.
"""

from __future__ import annotations

from typing import Union

import msgspec

OPERATORS = "@operators"
"""Audience token for every user with the operator role."""


class Event(msgspec.Struct, frozen=True, tag=True, tag_field="type", kw_only=True, gc=False):
    """Base of every event. ``to=()`` means public."""

    to: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# core
# --------------------------------------------------------------------------

class CommandRejected(Event, frozen=True):
    """The command with sequence ``ref`` was refused and changed nothing."""

    ref: int
    code: str
    text: str


class PartyRegistered(Event, frozen=True):
    party: int
    name: str
    country: str
    broker: str


class CreditReviewed(Event, frozen=True):
    party: int
    approved: bool
    credit_limit: int
    currency: str
    agreement_version: str
    score: int


class SessionCreated(Event, frozen=True):
    session: str
    name: str
    currency: str
    starts_at: int
    ends_at: int


class SessionClosed(Event, frozen=True):
    session: str


class PaddleIssued(Event, frozen=True):
    session: str
    paddle: int
    party: int


class DisplayRateSet(Event, frozen=True):
    base: str
    quote: str
    num: int
    den: int


class CreditChanged(Event, frozen=True):
    """A party's committed exposure in a session changed (private)."""

    session: str
    party: int
    exposure: int
    credit_limit: int


# --------------------------------------------------------------------------
# auctions (issue 2)
# --------------------------------------------------------------------------
# Audiences: catalogue, bidding and results are public with paddle numbers
# only; reserves, proxy maxima, sealed amounts before the close, offers in a
# negotiation and party ids are private (the party's broker and operators).
# Money is in minor units of ``currency``; ``display_*`` fields repeat an
# amount in ``display_currency`` at the operator's rate (0 and "" when unset,
# or since rules 5 when the amount in it is above ``errors.MAX_DISPLAY``).

from exchange.commands import LotTerms  # noqa: E402  (catalogue terms are shared)


class LotCreated(Event, frozen=True):
    """A draft lot was submitted (private: the seller's broker and operators)."""

    serial: str
    session: str
    seller: int
    terms: LotTerms
    reserve: int


class LotVetted(Event, frozen=True):
    """The experts scored the lot and approved or rejected it (private)."""

    serial: str
    session: str
    score: int
    approved: bool
    note: str


class LotScheduled(Event, frozen=True):
    """The lot is in the public catalogue with its final schedule (public; no reserve)."""

    serial: str
    session: str
    terms: LotTerms


class LotOpened(Event, frozen=True):
    """Bidding opened (public). ``price``: the Dutch clock's start, else the starting bid."""

    serial: str
    session: str
    mechanism: str
    opens_at: int
    closes_at: int
    hard_end: int
    price: int


class BidAccepted(Event, frozen=True):
    """An open bid was accepted (public, English): the standing price after it,
    the leading paddle and whether the hidden reserve is met. Never the
    bidder's proxy maximum."""

    serial: str
    session: str
    paddle: int
    price: int
    leader: int
    reserve_met: bool
    bids: int
    closes_at: int
    display_currency: str = ""
    display_price: int = 0


class BidConfirmed(Event, frozen=True):
    """The bidder's own bid as recorded (private): its proxy maximum, sealed bid
    or offer, and whether it leads now (English; False for sealed)."""

    serial: str
    session: str
    paddle: int
    amount: int
    leading: bool


class SealedBidCounted(Event, frozen=True):
    """The number of live sealed bids or offers changed (public; no amounts)."""

    serial: str
    session: str
    bids: int


class BidWithdrawn(Event, frozen=True):
    """The paddle's live sealed bid or offer was withdrawn (private)."""

    serial: str
    session: str
    paddle: int


class BidVoided(Event, frozen=True):
    """The exchange voided the paddle's standing bid: its party's credit was
    frozen after a default (``reason`` "party_frozen"), or, English, the
    voided bid led and this runner-up's party can no longer back its own
    maximum ("over_credit_limit"). English: public, with the lot's new standing
    ``price``, ``leader`` and ``reserve_met``, recomputed from the maxima left
    as eBay does when a bid is cancelled. Sealed: private to the bidder (and
    operators); the public count follows as `SealedBidCounted`, and the
    standing fields are 0."""

    serial: str
    session: str
    paddle: int
    reason: str
    price: int = 0
    leader: int = 0
    reserve_met: bool = False


class LotExtended(Event, frozen=True):
    """A late bid moved the close (soft close), never past the hard end; or an
    operator did (`ExtendLot`), moving the hard end too (public)."""

    serial: str
    session: str
    closes_at: int
    hard_end: int


class DutchPriceChanged(Event, frozen=True):
    """The Dutch clock stepped down (public). ``at_floor``: it will go no lower."""

    serial: str
    session: str
    price: int
    at_floor: bool
    display_currency: str = ""
    display_price: int = 0


class RevealedBid(msgspec.Struct, frozen=True, kw_only=True):
    """One sealed bid or offer, revealed at the close."""

    paddle: int
    amount: int


class LotClosed(Event, frozen=True):
    """Bidding ended (public). ``outcome``: "sold", "passed" or "choosing" (a
    reverse tender waiting for the buyer's choice until ``decision_by``)."""

    serial: str
    session: str
    outcome: str
    bids: int
    decision_by: int = 0


class SealedBidsRevealed(Event, frozen=True):
    """Every live sealed bid or offer at the close, best first (public, after the close)."""

    serial: str
    session: str
    bids: tuple[RevealedBid, ...]


class LotAwarded(Event, frozen=True):
    """A sale (public, paddle only). ``how``: "auction", "ask", "negotiated",
    "reaward" or "book". Reverse tender: ``paddle`` is the winning seller and
    the lot's owner pays. ``tie_break``: "none" if no tie decided the winner,
    else the policy applied ("earliest" or "lottery"). total = hammer +
    premium (due from the buyer); net = hammer - commission (to the seller)."""

    serial: str
    session: str
    mechanism: str
    how: str
    paddle: int
    hammer: int
    premium: int
    total: int
    commission: int
    net: int
    currency: str
    buyer_premium_bp: int
    seller_commission_bp: int
    tie_break: str
    display_currency: str = ""
    display_hammer: int = 0
    display_total: int = 0


class LotSold(Event, frozen=True):
    """The same sale with the parties, for operators and settlement (private to
    operators only). ``buyer`` pays ``total``; ``seller`` receives ``net``."""

    serial: str
    session: str
    mechanism: str
    how: str
    paddle: int
    buyer: int
    seller: int
    hammer: int
    premium: int
    total: int
    commission: int
    net: int
    currency: str
    buyer_premium_bp: int
    seller_commission_bp: int
    tie_break: str


class LotPassed(Event, frozen=True):
    """The lot did not sell (public). ``reason``: "no_bids", "reserve_not_met",
    "no_acceptable_offer", "no_choice", "expired", or "sale_cancelled" (its
    sale was cancelled in settlement: a default, a refund, an upheld
    objection). No amounts."""

    serial: str
    session: str
    mechanism: str
    reason: str
    bids: int
    negotiation_ends: int


class LotPassedDetail(Event, frozen=True):
    """The highest bid and the reserve of a passed lot (private: the seller's
    broker and operators). ``highest_paddle`` 0 when there was no bid."""

    serial: str
    session: str
    highest_bid: int
    highest_paddle: int
    reserve: int


class OfferMade(Event, frozen=True):
    """A private offer for a passed lot (to the bidder's and seller's brokers
    and operators; paddle only)."""

    serial: str
    session: str
    paddle: int
    amount: int


class OfferAnswered(Event, frozen=True):
    """The seller declined or countered an offer (same audience as `OfferMade`)."""

    serial: str
    session: str
    paddle: int
    action: str
    amount: int


class OfferWithdrawn(Event, frozen=True):
    """An offer ended without a sale: "withdrawn", "declined", "expired",
    "superseded", "party_frozen", "approval_withdrawn" or (rules 5)
    "session_closed" (same audience as `OfferMade`)."""

    serial: str
    session: str
    paddle: int
    reason: str


class ReserveLowered(Event, frozen=True):
    """The seller lowered the reserve of a passed lot (private: seller and operators)."""

    serial: str
    session: str
    reserve: int


class NegotiationEnded(Event, frozen=True):
    """The negotiation window of a passed lot closed without a sale (public)."""

    serial: str
    session: str


class LotRelisted(Event, frozen=True):
    """A passed lot goes up again; a `LotScheduled` with its new schedule follows (public)."""

    serial: str
    session: str
    opens_at: int
    closes_at: int
    hard_end: int


class LotWithdrawn(Event, frozen=True):
    """The lot was withdrawn from sale (public)."""

    serial: str
    session: str
    reason: str


class NoticePosted(Event, frozen=True):
    """A saleroom notice of the operator's about the session, a lot
    (``serial``) or a book (``instrument``); "" where it is about neither
    (public). An `ExtendLot`'s reason comes as one, after its `LotExtended`."""

    session: str
    serial: str
    instrument: str
    text: str


class DocumentAdded(Event, frozen=True):
    """A document (``version`` 1) or a new version of it entered a lot's data
    room: public once the lot is published (the index, never the location),
    else to the seller's broker and the operators. Publishing a lot lists its
    room's documents this way."""

    serial: str
    session: str
    name: str
    version: int
    digest: str
    size: int


class DocumentRemoved(Event, frozen=True):
    """A document left a lot's data room (audience as `DocumentAdded`)."""

    serial: str
    session: str
    name: str
    version: int


class NdaRequired(Event, frozen=True):
    """The version of the NDA a lot's data room requires ("": any); audience
    as `DocumentAdded` (bidders must know what to sign)."""

    serial: str
    session: str
    nda: str


class NdaSigned(Event, frozen=True):
    """``party`` signed the lot's NDA, text version ``nda`` (to its broker and
    the operators)."""

    serial: str
    session: str
    party: int
    nda: str


class DocumentReleased(Event, frozen=True):
    """A data-room document given to ``party``, with where to fetch it and the
    digest to check it against (to its broker and the operators)."""

    serial: str
    session: str
    party: int
    name: str
    version: int
    digest: str
    size: int
    location: str


class DataRoomInterest(Event, frozen=True):
    """How many parties signed the lot's NDA (``ndas``), how many of them
    opened a document (``readers``) and how many openings there were
    (``opened``): counts only, no one named (to the seller's broker and the
    operators, after each signature and opening)."""

    serial: str
    session: str
    ndas: int
    readers: int
    opened: int


class ExpertRegistered(Event, frozen=True):
    """An expert joined the valuation pool (operators only)."""

    expert: int
    name: str
    fields: tuple[str, ...]


class ExpertRetired(Event, frozen=True):
    """An expert is drawn no more and its ranges on open panels stop counting;
    it stays in the pool's records (operators only)."""

    expert: int


class PanelDrawn(Event, frozen=True):
    """An inquiry panel was drawn for a lot: ``experts`` in draw order
    (operators only: who values a lot is never published)."""

    serial: str
    session: str
    round: int
    experts: tuple[int, ...]
    field: str


class ValuationRecorded(Event, frozen=True):
    """A panel expert's range for the lot (operators only)."""

    serial: str
    session: str
    round: int
    expert: int
    low: int
    high: int


class PanelDiscarded(Event, frozen=True):
    """A lot's open panel ended without a range: cancelled by an operator, or
    the lot opened, was withdrawn or its session closed (operators only)."""

    serial: str
    session: str
    round: int
    reason: str


class PriceRangePublished(Event, frozen=True):
    """The panel's price range for the lot: the medians of its experts' lows
    and highs, from ``valuations`` of ``panel`` experts. Public once the lot is
    published; before, to the seller's broker and the operators, and the
    publication of the lot lists it publicly."""

    serial: str
    session: str
    round: int
    low: int
    high: int
    currency: str
    valuations: int
    panel: int


class LotSettled(Event, frozen=True):
    """The lot's sale settled (public; emitted through `exchange.lots.mark_settled`)."""

    serial: str
    session: str


# --------------------------------------------------------------------------
# continuous book and call auction (issue 3)
# --------------------------------------------------------------------------

# Public: market data with paddle numbers only. Private (``to`` = the party's
# broker and the operators): the order's own life, with the party id.

class InstrumentCreated(Event, frozen=True):
    session: str
    instrument: str
    kind: str
    lot: str
    currency: str
    stp: str
    phase: str
    reference: int


class PhaseChanged(Event, frozen=True):
    """The instrument entered ``phase``: "call", "continuous", "halted" or "closed"."""

    session: str
    instrument: str
    phase: str


class PriceRulesSet(Event, frozen=True):
    """Limit prices on the instrument must now be multiples of ``tick``, and
    no order may buy above or sell below the reference by more than
    ``band_bp`` basis points (0: no band). Public."""

    session: str
    instrument: str
    tick: int
    band_bp: int


class TradingHalted(Event, frozen=True):
    """Trading on the instrument is halted, for ``reason``, until a
    `PhaseChanged` out of "halted". Public; a `PhaseChanged` to "halted" follows."""

    session: str
    instrument: str
    reason: str


class LiquidityProviderAppointed(Event, frozen=True):
    """The paddle is a liquidity provider on the instrument with this quoting
    obligation (private: its broker and the operators; see
    `AppointLiquidityProvider`)."""

    session: str
    instrument: str
    paddle: int
    party: int
    max_spread: int
    min_qty: int
    presence_bp: int


class LiquidityReport(Event, frozen=True):
    """A liquidity provider's presence from ``since`` to ``until`` (ns UTC):
    of ``trading_ns`` of continuous trading, its quote met the obligation for
    ``quoting_ns``; ``presence_bp`` is their ratio in basis points (rounded
    down; 10,000 with no trading time), ``met`` whether it reaches
    ``required_bp``. ``final``: the appointment ended (`EndLiquidityProvider`
    or the book closed). Private: the provider's broker and the operators."""

    session: str
    instrument: str
    paddle: int
    party: int
    since: int
    until: int
    trading_ns: int
    quoting_ns: int
    presence_bp: int
    required_bp: int
    met: bool
    final: bool


class OrderLimitSet(Event, frozen=True):
    """The resting orders a paddle may hold on the instrument are now at most
    ``max_orders`` (0: no limit)."""

    session: str
    instrument: str
    max_orders: int


class OrderAccepted(Event, frozen=True):
    """The order was accepted (private). ``price`` 0 for a market order."""

    session: str
    instrument: str
    paddle: int
    party: int
    order: int
    side: str
    price: int
    qty: int
    tif: str
    post_only: bool
    expires: int


class OrderFilled(Event, frozen=True):
    """Part or all of the order traded (private). ``leaves`` is what it has
    left resting; ``role`` is "maker", "taker" or "auction"."""

    session: str
    instrument: str
    paddle: int
    party: int
    order: int
    trade: int
    side: str
    price: int
    qty: int
    leaves: int
    role: str
    currency: str


class OrderCancelled(Event, frozen=True):
    """The order's open ``qty`` was cancelled (private). ``reason``:
    "requested", "mass_cancel", "expired", "ioc" (unfilled rest of an IOC or
    market order), "fok" (could not fill completely), "self_trade",
    "auction_ioc" (IOC rest after an uncross), "closed" (instrument closed),
    "party_frozen" (the party defaulted: its credit is frozen)."""

    session: str
    instrument: str
    paddle: int
    party: int
    order: int
    qty: int
    reason: str


class OrderModified(Event, frozen=True):
    """The order now rests at ``price`` with ``qty`` open (private), before any
    trade the modify causes. ``priority_kept`` False: it went to the back."""

    session: str
    instrument: str
    paddle: int
    party: int
    order: int
    price: int
    qty: int
    priority_kept: bool


class TradeExecuted(Event, frozen=True):
    """A trade (public): paddles only. ``aggressor`` is the taker's side, ""
    in a call auction uncross. ``trade`` numbers the instrument's trades."""

    session: str
    instrument: str
    trade: int
    price: int
    qty: int
    currency: str
    buy_paddle: int
    sell_paddle: int
    aggressor: str


class TradeRecorded(Event, frozen=True):
    """The trade with both parties, for settlement (operators only)."""

    session: str
    instrument: str
    trade: int
    price: int
    qty: int
    currency: str
    buyer: int
    seller: int
    buy_paddle: int
    sell_paddle: int
    buy_order: int
    sell_order: int


class QuoteChanged(Event, frozen=True):
    """Best bid and ask with their quantities (public); 0 means none."""

    session: str
    instrument: str
    bid: int
    bid_qty: int
    ask: int
    ask_qty: int


class DepthChanged(Event, frozen=True):
    """The level of ``side`` at ``price`` now holds ``qty`` in ``orders``
    orders (public); ``qty`` 0: the level is gone."""

    session: str
    instrument: str
    side: str
    price: int
    qty: int
    orders: int


class IndicativePrice(Event, frozen=True):
    """During a call period: the price and volume an uncross would have now,
    and the unmatched quantity at that price (public; 0 0 0: no match)."""

    session: str
    instrument: str
    price: int
    volume: int
    imbalance: int


class CallUncrossed(Event, frozen=True):
    """The call auction cleared ``volume`` at ``price`` (public)."""

    session: str
    instrument: str
    price: int
    volume: int


class UnitsIssued(Event, frozen=True):
    """Units credited to a holding (private); ``holding`` is the new total."""

    session: str
    instrument: str
    paddle: int
    party: int
    qty: int
    holding: int


class UnitsPaymentRecorded(Event, frozen=True):
    """The party paid ``amount`` for units bought on the instrument (private);
    ``outstanding`` is what it still owes for them."""

    session: str
    instrument: str
    paddle: int
    party: int
    amount: int
    outstanding: int
    reference: str


class UnitsConsumed(Event, frozen=True):
    """The holder used ``qty`` units (private); ``holding`` is what is left."""

    session: str
    instrument: str
    paddle: int
    party: int
    qty: int
    holding: int



# --------------------------------------------------------------------------
# settlement (issue 7)
# --------------------------------------------------------------------------

# Audiences: a settlement's life is private to the buyer's and the seller's
# brokers and the operators, with paddles (0: the party holds none in the
# session), never party ids. Public: the settlement rules, the transaction
# and no-objection certificates and the publicity notices, paddles only (since
# rules 5 a non-public agreement transfer's certificate is private as its
# settlement is).
# Operators alone get the certificates with identities (`CertificateRecorded`).
# Money in minor units of ``currency``; times int ns UTC.

from exchange.commands import Patent  # noqa: E402  (certificates list the patents)


class SettlementRulesSet(Event, frozen=True):
    """Settlement terms of a session or (``lot`` non-empty) one lot (public)."""

    session: str
    lot: str
    payment_term: int
    reaward_window: int
    publicity_period: int


class AgreementTransferRecorded(Event, frozen=True):
    """An operator recorded an agreed, non-public transfer (private to both
    parties' brokers and operators); a `SettlementOpened` follows."""

    session: str
    serial: str
    title: str
    patents: tuple[Patent, ...]
    buyer_paddle: int
    seller_paddle: int
    price: int
    currency: str
    state_institution: bool


class SettlementOpened(Event, frozen=True):
    """A sale opened settlement ``settlement``. ``how``: "auction", "ask",
    "negotiated", "reaward", "book" or "agreement". The buyer owes ``total``
    (``price`` + ``premium``) into escrow by ``due_at``; the seller is to
    receive ``net`` (``price`` - ``commission``). ``sale_seq``: the sequence
    number of the sale."""

    settlement: int
    how: str
    session: str
    serial: str
    instrument: str
    mechanism: str
    buyer_paddle: int
    seller_paddle: int
    price: int
    premium: int
    total: int
    commission: int
    net: int
    currency: str
    opened_at: int
    due_at: int
    sale_seq: int


class PaymentRecorded(Event, frozen=True):
    """A payment into escrow; ``paid`` so far, ``outstanding`` still due."""

    settlement: int
    amount: int
    paid: int
    outstanding: int
    reference: str


class SettlementOverdue(Event, frozen=True):
    """The due date passed with ``outstanding`` unpaid: an operator may
    declare the buyer in default."""

    settlement: int
    due_at: int
    outstanding: int


class DueDateExtended(Event, frozen=True):
    settlement: int
    due_at: int


class DeliveryRecorded(Event, frozen=True):
    """The seller delivered the assignment documents ``reference``."""

    settlement: int
    reference: str


class ReceiptConfirmed(Event, frozen=True):
    """The buyer confirmed receipt of the documents."""

    settlement: int


class DisputeRaised(Event, frozen=True):
    settlement: int
    reason: str


class DisputeResolved(Event, frozen=True):
    """``outcome``: "release", "refund" or "partial_refund" (``amount`` refunded)."""

    settlement: int
    outcome: str
    amount: int
    reason: str


class FundsReleased(Event, frozen=True):
    """Escrow paid out: ``to_seller`` (the net, less any partial refund),
    ``to_venue`` (commission and premium) and ``refunded`` to the buyer."""

    settlement: int
    to_seller: int
    to_venue: int
    refunded: int
    currency: str


class FundsRefunded(Event, frozen=True):
    """Escrow returned to the buyer when its sale was cancelled."""

    settlement: int
    amount: int
    currency: str
    reason: str


class SettlementCompleted(Event, frozen=True):
    settlement: int
    session: str
    serial: str
    completed_at: int


class SettlementCancelled(Event, frozen=True):
    """The sale was cancelled: ``reason`` "default", "refund" (a dispute) or
    "objection" (an upheld objection); ``refunded`` went back to the buyer."""

    settlement: int
    session: str
    serial: str
    reason: str
    refunded: int


class BuyerDefaulted(Event, frozen=True):
    """An operator declared the buyer in default. ``next``: "reaward" or "relist"."""

    settlement: int
    session: str
    serial: str
    paddle: int
    reason: str
    next: str


class PartyFrozen(Event, frozen=True):
    """The party's credit is frozen after its default (private: its broker, operators)."""

    party: int
    settlement: int
    reason: str


class FreezeLifted(Event, frozen=True):
    party: int
    reason: str


class ReawardOffered(Event, frozen=True):
    """After a default the lot is offered to ``paddle`` at its own last bid
    ``price`` until ``expires_at`` (private: its broker, the seller's, operators)."""

    serial: str
    session: str
    paddle: int
    price: int
    expires_at: int
    settlement: int


class ReawardEnded(Event, frozen=True):
    """A re-award offer ended without a sale: "declined", "expired",
    "superseded" (the lot was sold, relisted or withdrawn otherwise),
    "party_frozen" (the offeree defaulted elsewhere) or "approval_withdrawn"."""

    serial: str
    session: str
    paddle: int
    reason: str


class ReawardExhausted(Event, frozen=True):
    """No runner-up is left to offer the lot to; it stays passed for relisting
    (private: the seller's broker and operators)."""

    serial: str
    session: str


class PublicityStarted(Event, frozen=True):
    """A state-institution transfer at an agreed price is published until
    ``ends_at``; objections may be lodged until then (public, paddles only)."""

    settlement: int
    session: str
    serial: str
    title: str
    patents: tuple[Patent, ...]
    buyer_paddle: int
    seller_paddle: int
    price: int
    currency: str
    ends_at: int


class ObjectionRecorded(Event, frozen=True):
    """An objection to a published transfer; ``objections`` so far."""

    settlement: int
    objector: str
    reason: str
    objections: int


class PublicityEnded(Event, frozen=True):
    """The publicity period ended (public): ``outcome`` "no_objection" (a
    no-objection certificate follows) or "objected" (an operator decides)."""

    settlement: int
    session: str
    serial: str
    outcome: str
    objections: int


class ObjectionResolved(Event, frozen=True):
    """``action``: "dismiss" (settlement goes on) or "uphold" (sale cancelled)."""

    settlement: int
    action: str
    reason: str


class CertificateIssued(Event, frozen=True):
    """A certificate (public, paddles only; since rules 5 a non-public
    agreement transfer's goes to its settlement's audience). ``kind``: "transaction" (the
    settlement completed) or "no_objection" (publicity ended without one).
    ``seq``: the journal sequence number it is recorded at; the journal's
    chain hash at ``seq`` proves it (see `gateway.certificate`). Dates 0
    where the step has not happened."""

    kind: str
    settlement: int
    session: str
    serial: str
    title: str
    how: str
    patents: tuple[Patent, ...]
    buyer_paddle: int
    seller_paddle: int
    price: int
    premium: int
    total: int
    commission: int
    net: int
    refunded: int
    currency: str
    sold_at: int
    paid_at: int
    delivered_at: int
    received_at: int
    completed_at: int
    issued_at: int
    seq: int


class CertificateRecorded(Event, frozen=True):
    """The operators' copy of a certificate, with the parties' identities."""

    kind: str
    settlement: int
    session: str
    serial: str
    title: str
    how: str
    patents: tuple[Patent, ...]
    buyer: int
    buyer_name: str
    buyer_country: str
    buyer_paddle: int
    seller: int
    seller_name: str
    seller_country: str
    seller_paddle: int
    price: int
    premium: int
    total: int
    commission: int
    net: int
    refunded: int
    currency: str
    sold_at: int
    paid_at: int
    delivered_at: int
    received_at: int
    completed_at: int
    issued_at: int
    seq: int


# --------------------------------------------------------------------------
# keep last: the union of every event
# --------------------------------------------------------------------------

def _concrete(base: type) -> list[type]:
    found: list[type] = []
    for sub in base.__subclasses__():
        found.append(sub)
        found.extend(_concrete(sub))
    return found


EVENT_TYPES: tuple[type[Event], ...] = tuple(_concrete(Event))
AnyEvent = Union[EVENT_TYPES]  # type: ignore[valid-type]
