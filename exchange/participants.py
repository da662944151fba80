"""Participants: parties, credit reviews, sessions, paddles, display rates.

A broker registers its clients (parties); an operator may register one for
a broker, or, naming none, for the exchange itself (a house or direct party
the operators hold: its broker is the operator's user id, and since rules 4
any operator takes its broker's steps in settlement). An operator reviews each party's
credit and records its limit and the agreement version signed; only then can
an operator issue the party a paddle in a session. Paddle numbers are issued
per session in order from 101 and reveal nothing of the party. Identities
appear only in events private to the party's broker and the operators.
"""

from __future__ import annotations

import msgspec

from exchange.commands import (CloseSession, CreateSession, IssuePaddle, RegisterParty,
                               ReviewCredit, SetDisplayRate)
from exchange.engine import Ctx, State, handles, on_timer, private
from exchange.errors import MAX_DISPLAY, Reject, a_time, non_negative, positive
from exchange.events import (DisplayRateSet, PaddleIssued, PartyRegistered, CreditReviewed,
                             SessionClosed, SessionCreated)

FIRST_PADDLE = 101


class Party(msgspec.Struct, kw_only=True):
    id: int
    name: str
    country: str
    broker: str
    approved: bool = False
    reviewed: bool = False
    credit_limit: int = 0
    currency: str = "USD"
    agreement_version: str = ""
    score: int = 0
    frozen: bool = False
    house: bool = False          # the operators hold it (rules 4: registered by one for itself)


class Session(msgspec.Struct, kw_only=True):
    id: str
    name: str
    currency: str
    starts_at: int
    ends_at: int
    open: bool = True
    next_paddle: int = FIRST_PADDLE
    paddles: dict[int, int] = {}       # paddle -> party id
    by_party: dict[int, int] = {}      # party id -> paddle
    lots: list[str] = []               # serials, in the order added


# ISO 4217's active codes (list one, 2026: currencies, funds, precious metals,
# XTS and XXX; HRK, BGN, CUC, SLL, ZWL and ANG withdrawn, XCG, ZWG and XAD in).
# Fixed with the engine's rules 6: a change of the list is a change of rules.
ISO_4217 = frozenset("""
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV
    BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP
    CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF
    GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT
    MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN
    PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE
    SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC
    XBD XCD XCG XDR XOF XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
""".split())


def valid_currency(code: str, rules: int) -> str:
    """Return a currency code, or reject one that is not three capital letters
    or (rules 6) not an active ISO 4217 code (`ISO_4217`)."""
    if len(code) != 3 or not code.isascii() or not code.isalpha() or not code.isupper():
        raise Reject("bad_field", f"currency {code!r} is not a three-letter ISO 4217 code")
    if rules >= 6 and code not in ISO_4217:
        raise Reject("bad_field", f"currency {code!r} is not an active ISO 4217 code")
    return code


def get_party(state: State, party_id: int) -> Party:
    party = state.parties.get(party_id)
    if party is None:
        raise Reject("unknown_party", f"no party {party_id}")
    return party


def get_session(state: State, session_id: str) -> Session:
    session = state.sessions.get(session_id)
    if session is None:
        raise Reject("unknown_session", f"no session {session_id!r}")
    return session


def held_by_operators(party: Party, ctx: Ctx) -> bool:
    """Whether ``party`` is one the operators hold, no broker: an operator
    registered it for itself (since rules 4 any operator acts for it; one
    registered so before, its broker being that operator's user id, by it)."""
    return party.house or party.broker == ctx.actor


def own_party(state: State, ctx: Ctx, party_id: int) -> Party:
    """Return the party if the sender may act for it: its broker or an operator.
    To a broker another's party and no party look the same, and the refusal
    names no id (it may be a lot's seller, which the broker was not told)."""
    if ctx.is_operator:
        return get_party(state, party_id)
    party = state.parties.get(party_id)
    if party is None or party.broker != ctx.actor:
        raise Reject("not_your_party", f"that party is not a client of {ctx.actor!r}")
    return party


def paddle_party(state: State, ctx: Ctx, session_id: str, paddle: int) -> Party:
    """Return the party behind ``paddle`` if the sender may bid with it and the
    party may bid: approved and not frozen."""
    return session_paddle_party(state, ctx, get_session(state, session_id), paddle)


def session_paddle_party(state: State, ctx: Ctx, session: Session, paddle: int) -> Party:
    """`paddle_party` for a session already looked up (the order path). O(1)."""
    party_id = session.paddles.get(paddle)
    role = ctx.role
    if role == "operator" or role == "system":
        if party_id is None:
            raise Reject("unknown_paddle", f"no paddle {paddle} in session {session.id!r}")
        party = state.parties[party_id]
    else:                   # to a broker another's paddle and no paddle look the same
        party = state.parties[party_id] if party_id is not None else None
        if party is None or party.broker != ctx.actor:
            raise Reject("not_your_paddle", f"paddle {paddle} is not one of {ctx.actor!r}'s")
    if party.frozen:
        raise Reject("party_frozen", f"the credit of paddle {paddle} is frozen")
    if not party.approved:
        raise Reject("party_not_approved", f"paddle {paddle}'s party is not approved")
    return party


_AUDIENCES: dict[str, tuple[str, ...]] = {}
"""Memo of `private(broker)` by broker: a pure function of the broker's user
id, so sharing one tuple between events changes no byte of any of them."""
_AUDIENCE_MEMO = 4096


def audience(state: State, party_id: int) -> tuple[str, ...]:
    """Return the audience of an event private to a party: its broker and the
    operators. O(1): one tuple per broker, built once."""
    broker = state.parties[party_id].broker
    found = _AUDIENCES.get(broker)
    if found is None:
        if len(_AUDIENCES) >= _AUDIENCE_MEMO:
            _AUDIENCES.clear()
        found = _AUDIENCES[broker] = private(broker)
    return found


@handles(RegisterParty)
def register_party(state: State, ctx: Ctx, cmd: RegisterParty) -> None:
    ctx.require_role("broker", "operator")
    if not cmd.name.strip():
        raise Reject("bad_field", "a party needs a name")
    broker = ctx.actor
    if cmd.broker and cmd.broker != ctx.actor:     # naming itself is no claim
        if ctx.role != "operator":
            raise Reject("not_permitted", "only an operator registers a party for another broker")
        broker = cmd.broker
    party = Party(id=ctx.seq, name=cmd.name, country=cmd.country, broker=broker,
                  house=ctx.rules >= 4 and ctx.role == "operator" and broker == ctx.actor)
    state.parties[party.id] = party
    ctx.emit(PartyRegistered(to=private(broker), party=party.id, name=party.name,
                             country=party.country, broker=broker))


@handles(ReviewCredit)
def review_credit(state: State, ctx: Ctx, cmd: ReviewCredit) -> None:
    ctx.require_role("operator")
    party = get_party(state, cmd.party)
    non_negative(cmd.credit_limit, "credit limit")
    valid_currency(cmd.currency, ctx.rules)
    if cmd.approved and not cmd.agreement_version:
        raise Reject("bad_field", "an approval needs the version of the agreement the party signed")
    if cmd.currency != party.currency and ctx.rules >= 5:
        _no_commitments(state, party, cmd.currency)
    party.reviewed = True
    party.approved = cmd.approved
    party.credit_limit = cmd.credit_limit if cmd.approved else 0
    party.currency = cmd.currency
    party.agreement_version = cmd.agreement_version
    party.score = cmd.score
    ctx.emit(CreditReviewed(to=private(party.broker), party=party.id, approved=party.approved,
                            credit_limit=party.credit_limit, currency=party.currency,
                            agreement_version=party.agreement_version, score=party.score))


def _no_commitments(state: State, party: Party, currency: str) -> None:
    """Since rules 5, refuse to change the currency of a party's credit while
    it has commitments in any session (bids and offers it backs, resting buy
    orders, lots won and units bought but not yet paid for): they are in the
    old currency, and would be summed against a limit in the new one.
    O(sessions)."""
    exposures = state.exposure
    held = [session for session in state.sessions
            if (found := exposures.get((session, party.id))) is not None and found.items]
    if held:
        raise Reject("open_commitments",
                     f"party {party.id} has commitments in {party.currency} in session"
                     f"{'s' if len(held) > 1 else ''} {', '.join(repr(s) for s in held[:5])}"
                     f"{' and more' if len(held) > 5 else ''}: its credit cannot change to "
                     f"{currency} until they are released; cancel its resting buy orders, "
                     f"withdraw its offers on passed lots (a session's close drops them), "
                     f"let its bids end or withdraw its approval in {party.currency} (which "
                     f"voids them), and have what it bought paid for, then review it again")


@handles(CreateSession)
def create_session(state: State, ctx: Ctx, cmd: CreateSession) -> None:
    ctx.require_role("operator")
    if not cmd.session:
        raise Reject("bad_field", "a session needs an id")
    if cmd.session in state.sessions:
        raise Reject("session_exists", f"session {cmd.session!r} exists already")
    valid_currency(cmd.currency, ctx.rules)
    a_time(cmd.starts_at, "starts_at")
    a_time(cmd.ends_at, "ends_at")
    if cmd.ends_at and cmd.ends_at < cmd.starts_at:
        raise Reject("bad_field", "a session cannot end before it starts")
    if cmd.ends_at and cmd.ends_at <= ctx.ts and ctx.rules >= 2:
        raise Reject("bad_field", f"a session cannot end at {cmd.ends_at}, not after now "
                                  f"({ctx.ts})")
    state.sessions[cmd.session] = Session(id=cmd.session, name=cmd.name, currency=cmd.currency,
                                          starts_at=cmd.starts_at, ends_at=cmd.ends_at)
    ctx.emit(SessionCreated(session=cmd.session, name=cmd.name, currency=cmd.currency,
                            starts_at=cmd.starts_at, ends_at=cmd.ends_at))
    if cmd.ends_at and ctx.rules >= 2:          # rules 1: it stays open until CloseSession
        state.schedule(cmd.ends_at, "session_end", cmd.session)


@handles(CloseSession)
def close_session(state: State, ctx: Ctx, cmd: CloseSession) -> None:
    ctx.require_role("operator")
    session = get_session(state, cmd.session)
    if not session.open:
        raise Reject("session_closed", f"session {cmd.session!r} is closed already")
    session.open = False
    ctx.emit(SessionClosed(session=cmd.session))


@on_timer("session_end")
def _session_end(state: State, ctx: Ctx, session_id: str, _: int) -> None:
    """Close a session still open at its ``ends_at``, as `CloseSession` does,
    after everything else due by then (a lot closing at the same time is
    awarded first; sessions ending together close in the order created).
    O(timers), once or twice a session."""
    session = state.sessions[session_id]
    if not session.open:
        return
    ends = session.ends_at
    if any(when <= ends and kind != "session_end" for when, _, kind, _, _ in state.timers):
        state.schedule(ends, "session_end", session_id)   # behind the others due by then
        return
    session.open = False
    ctx.emit(SessionClosed(session=session_id))


@handles(IssuePaddle)
def issue_paddle(state: State, ctx: Ctx, cmd: IssuePaddle) -> None:
    ctx.require_role("operator")
    session = get_session(state, cmd.session)
    if not session.open:
        raise Reject("session_closed", f"session {cmd.session!r} is closed")
    party = get_party(state, cmd.party)
    if not party.approved:
        raise Reject("party_not_approved", f"party {party.id} has not passed the credit review")
    if party.frozen:
        raise Reject("party_frozen", f"party {party.id}'s credit is frozen")
    if party.id in session.by_party:
        raise Reject("paddle_exists", f"party {party.id} holds paddle "
                                      f"{session.by_party[party.id]} in {session.id!r} already")
    paddle = session.next_paddle
    session.next_paddle += 1
    session.paddles[paddle] = party.id
    session.by_party[party.id] = paddle
    ctx.emit(PaddleIssued(to=private(party.broker), session=session.id, paddle=paddle,
                          party=party.id))


@handles(SetDisplayRate)
def set_display_rate(state: State, ctx: Ctx, cmd: SetDisplayRate) -> None:
    ctx.require_role("operator")
    valid_currency(cmd.base, ctx.rules)
    valid_currency(cmd.quote, ctx.rules)
    if cmd.num <= 0 or cmd.den <= 0:
        raise Reject("bad_rate", f"rate {cmd.num}/{cmd.den} must have positive terms")
    positive(cmd.num, "rate numerator")
    positive(cmd.den, "rate denominator")
    state.rates[(cmd.base, cmd.quote)] = (cmd.num, cmd.den)
    ctx.emit(DisplayRateSet(base=cmd.base, quote=cmd.quote, num=cmd.num, den=cmd.den))


def display_amount(state: State, amount: int, base: str, quote: str,
                   limit: int | None = None) -> int | None:
    """Return ``amount`` (minor units of ``base``) in minor units of ``quote`` at the
    operator's display rate, rounded half up, or None when no rate is set, or
    when the converted amount is above ``limit`` (None: no limit).
    Both currencies are taken to have two decimal places of minor units."""
    rate = state.rates.get((base, quote))
    if rate is None:
        return None
    num, den = rate
    shown = (amount * num * 2 + den) // (2 * den)
    return None if limit is not None and shown > limit else shown


def display_limit(ctx: Ctx) -> int | None:
    """The largest display amount an event of ``ctx`` may carry: since rules 5
    `MAX_DISPLAY` (a signed 64-bit integer's largest); before it none, so that
    a journal written then replays as written (MessagePack took amounts up to
    2**64 - 1 as unsigned; an entry with a larger one could not be journaled)."""
    return MAX_DISPLAY if ctx.rules >= 5 else None
