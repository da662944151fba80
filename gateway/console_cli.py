"""``lotex op`` and ``lotex broker``: the operator's and the broker's
consoles over the gateway. Each sends commands, given on the command line or
in command files (`gateway.console`), one at a time, and prints a table of
their results."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from gateway.serve_cli import _data_arg

# ---------------------------------------------------------------------------------
# lotex op
# ---------------------------------------------------------------------------------

def register_op(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "op", help="the operator's console over the gateway",
        description="Send operator commands through the gateway. Money is in minor units "
                    "(cents); times are 'now', '+10m', '+2h', ISO 8601 (UTC) or ns UTC.")
    _add_connection(parser, "op", "operator")
    sub = parser.add_subparsers(dest="op_command", metavar="ACTION", required=True)
    _add_send(sub)

    session = sub.add_parser("session", help="create or close a session")
    ss = session.add_subparsers(dest="what", required=True)
    create = ss.add_parser("create", help="open a sale: lots and books are added to it")
    create.add_argument("session")
    create.add_argument("--name", required=True)
    create.add_argument("--currency", default="USD", help="the session's currency (ISO 4217)")
    create.add_argument("--starts", default="",
                        help="when lots may open: now, +2h, an ISO time or ns UTC (default: any)")
    create.add_argument("--ends", default="",
                        help="by when every lot must end, as --starts (default: open-ended)")
    close = ss.add_parser("close", help="close a session: no new paddles, lots, books, bids "
                          "or orders; its books close, its lots not yet open are withdrawn")
    close.add_argument("session")

    party = sub.add_parser("party", help="register, approve or refuse a bidder")
    ps = party.add_subparsers(dest="what", required=True)
    register = ps.add_parser("register", help="register a party for a broker")
    register.add_argument("name")
    register.add_argument("--broker", required=True)
    register.add_argument("--country", default="")
    approve = ps.add_parser("approve", help="record a passed credit review")
    approve.add_argument("party", type=int)
    approve.add_argument("--limit", type=int, required=True, help="credit limit, minor units")
    approve.add_argument("--currency", default="USD", help="the credit limit's currency")
    approve.add_argument("--agreement", required=True, help="agreement version signed")
    approve.add_argument("--score", type=int, default=0)
    refuse = ps.add_parser("refuse", help="record a failed credit review")
    refuse.add_argument("party", type=int)

    paddle = sub.add_parser("paddle", help="issue a paddle")
    pds = paddle.add_subparsers(dest="what", required=True)
    issue = pds.add_parser("issue", help="give an approved party a paddle in a session")
    issue.add_argument("session")
    issue.add_argument("party", type=int)

    notice = sub.add_parser("notice", help="publish a saleroom notice about a session, a lot "
                            "or a book")
    notice.add_argument("session")
    notice.add_argument("text")
    notice.add_argument("--lot", default="", help="the lot it is about")
    notice.add_argument("--instrument", default="", help="the book it is about")

    lot = sub.add_parser("lot", help="vet, schedule, open, extend, relist, withdraw or sell "
                         "a lot")
    ls = lot.add_subparsers(dest="what", required=True)
    create_lots = ls.add_parser("create", help="create (and optionally vet) lots from files")
    create_lots.add_argument("files", nargs="+", type=Path)
    create_lots.add_argument("--vet-score", type=int,
                             help="also approve every created lot with this score")
    vet = ls.add_parser("vet", help="record the vetting of a created lot")
    vet.add_argument("serial")
    vet.add_argument("--score", type=int, required=True)
    group = vet.add_mutually_exclusive_group(required=True)
    group.add_argument("--approve", action="store_true")
    group.add_argument("--reject", action="store_true")
    vet.add_argument("--note", default="")
    schedule = ls.add_parser("schedule", help="publish and schedule a vetted lot, or "
                             "reschedule one not yet open")
    schedule.add_argument("serial")
    schedule.add_argument("--opens", default="")
    schedule.add_argument("--closes", default="")
    schedule.add_argument("--hard-end", default="")
    open_ = ls.add_parser("open", help="open a vetted (or scheduled) lot now")
    open_.add_argument("serial")
    open_.add_argument("--closes", required=True, help="e.g. +10m")
    open_.add_argument("--hard-end", default="")
    relist = ls.add_parser("relist", help="put a passed lot up again")
    relist.add_argument("serial")
    relist.add_argument("--opens", default="now")
    relist.add_argument("--closes", required=True)
    relist.add_argument("--hard-end", default="")
    relist.add_argument("--reserve", type=int)
    extend = ls.add_parser("extend", help="move an open lot's close later (e.g. after an "
                           "outage); the reason is published as a saleroom notice")
    extend.add_argument("serial")
    extend.add_argument("--closes", required=True, help="the new close, e.g. +30m from now")
    extend.add_argument("--hard-end", default="",
                        help="default: the old hard end moved as much as the close")
    extend.add_argument("--reason", required=True, help="published, e.g. 'outage 10:02-10:40'")
    withdraw = ls.add_parser("withdraw", help="take a lot out of the sale before it is sold")
    withdraw.add_argument("serial")
    withdraw.add_argument("--reason", default="")
    sell = ls.add_parser("sell", help="record a negotiated sale of a passed lot")
    sell.add_argument("serial")
    sell.add_argument("paddle", type=int)
    sell.add_argument("amount", type=int, help="hammer price, minor units")

    instrument = sub.add_parser(
        "instrument", help="create, limit, set price rules, halt, resume, call, uncross or "
                           "close a book",
        description="Continuous books of a session: unit licence rights or a bid-ask patent "
                    "lot. Prices and amounts in minor units.")
    ins = instrument.add_subparsers(dest="what", required=True)

    def book(action: str, text: str) -> argparse.ArgumentParser:
        return _book_parser(ins, action, text)
    i_create = book("create", "open a book")
    i_create.add_argument("--kind", choices=("units", "patent"), default="units")
    i_create.add_argument("--lot", default="", help="the bid_ask lot a patent book trades")
    i_create.add_argument("--currency", default="", help="default: the session's (the lot's)")
    i_create.add_argument("--stp", choices=("cancel_newest", "cancel_oldest", "cancel_both"),
                          default="cancel_newest", help="self-trade prevention")
    i_create.add_argument("--call", action="store_true", help="start in a call period")
    i_create.add_argument("--reference", type=int, default=0, help="call reference price")
    i_create.add_argument("--max-orders", type=int, default=0,
                          help="resting orders a paddle may hold (0: no limit)")
    book("limit", "change the resting orders a paddle may hold").add_argument(
        "max_orders", type=int, help="0: no limit")
    i_rules = book("rules", "set the tick and the price band")
    i_rules.add_argument("--tick", type=int, default=1,
                         help="limit prices are multiples of it (1: any)")
    i_rules.add_argument("--band-bp", type=int, default=0,
                         help="no buy above / sell below the last trade (or the reference) "
                              "by more than this many basis points (0: no band)")
    i_units = book("issue-units", "credit new units to a paddle's party")
    i_units.add_argument("paddle", type=int)
    i_units.add_argument("qty", type=int)
    book("halt", "halt trading: orders may then only be cancelled").add_argument(
        "reason", help="why, published on the feed")
    book("resume", "end a halt").add_argument(
        "--call", action="store_true", help="reopen in a call period (then uncross)")
    book("call", "start a call period")
    book("uncross", "end the call period with one price").add_argument(
        "--reference", type=int, default=0)
    book("close", "stop trading; resting orders are cancelled")

    lp = sub.add_parser(
        "lp", help="appoint, end or report a book's liquidity providers",
        description="A liquidity provider's own resting orders must buy MIN_QTY units and "
                    "sell MIN_QTY within MAX_SPREAD (minor units) of each other while the "
                    "book trades, for at least PRESENCE percent of the time; the engine "
                    "measures it.")
    lps = lp.add_subparsers(dest="what", required=True)

    def provider(action: str, text: str) -> argparse.ArgumentParser:
        parser = _book_parser(lps, action, text)
        parser.add_argument("paddle", type=int)
        return parser
    appoint = provider("appoint", "make a paddle a liquidity provider on a units book")
    appoint.add_argument("--max-spread", type=int, required=True,
                         help="widest spread of its quote, minor units")
    appoint.add_argument("--min-qty", type=int, required=True,
                         help="units it must quote on each side")
    appoint.add_argument("--presence", type=_percent_bp, required=True,
                         help="share of trading time it must quote, percent (e.g. 90 or 92.5)")
    provider("end", "end an appointment (its final report follows)")
    lp_report = _book_parser(lps, "report", "report every provider of a book so far")
    lp_report.add_argument("--reset", action="store_true",
                           help="close the period: the next report counts from now")

    rate = sub.add_parser("rate", help="set a display rate: 1 BASE shows as NUM/DEN QUOTE")
    rate.add_argument("base", help="the lots' currency, e.g. USD")
    rate.add_argument("quote", help="the display currency, e.g. CNY")
    rate.add_argument("num", type=int, help="numerator: 1 BASE shows as NUM/DEN QUOTE")
    rate.add_argument("den", type=int, help="denominator")

    _add_room(sub)
    _add_pricing(sub)
    _add_do(sub, "operator")
    _add_events(sub)
    op_status = sub.add_parser("status", help="print a broker's resting orders, live bids, "
                               "units and credit now")
    op_status.add_argument("broker", help="the broker's user id")
    op_status.add_argument("--session", default="", help="one session (default: all)")
    sub.add_parser("reload", help="make the server reload its key store now")
    from gateway import certificate  # settlement (issue 7): reads the journal, no gateway
    certificate.add_op_parser(sub)
    parser.set_defaults(run=run_op)


def _op_steps(args: argparse.Namespace, now: int) -> tuple[list[Any], list[str] | None]:
    """Return the steps (`gateway.console.Step`) an op invocation sends and
    their client ids (None: new ones)."""
    from gateway.console import Step

    action, what = args.op_command, getattr(args, "what", "")
    if action == "do":
        return _inline(args, now), None
    if action == "send" or (action == "lot" and what == "create"):
        from exchange.commands import CreateLot, VetLot
        steps, ids = _file_steps(args, now)
        if action == "lot" and args.vet_score is not None:
            steps.extend(Step.plain(VetLot(serial=step.preview.serial, score=args.vet_score,
                                           approved=True))
                         for step in list(steps) if isinstance(step.preview, CreateLot))
            ids = None if ids is None else _ids(steps)
        return steps, ids
    return [Step.plain(cmd) for cmd in _op_commands(args, now)], None


def _file_steps(args: argparse.Namespace, now: int) -> tuple[list[Any], list[str] | None]:
    """Return the steps of ``args.files``, read in order (names carry from
    one file to the next), and their client ids (None with ``--fresh``)."""
    from gateway.console import load_steps

    steps: list[Any] = []
    names: set[str] = set()
    for path in args.files:
        steps.extend(load_steps(path, now, names))
    return steps, None if getattr(args, "fresh", False) else _ids(steps)


def check_encodes(steps: list[Any]) -> None:
    """Raise ValueError naming the first step whose command no message can
    carry (an integer beyond 64 bits: a time too far off, an amount too
    large), before anything is sent. A name a step uses counts as 0 here:
    the exchange's numbers always fit."""
    from gateway.client import ClientError, encode_request

    for step in steps:
        try:
            encode_request("check", step.preview)
        except ClientError as exc:
            raise ValueError(f"{step.where}: {exc}" if step.where else str(exc)) from None


def chosen_ids(args: argparse.Namespace, steps: list[Any], ids: list[str] | None
               ) -> list[str] | None:
    """Return ``ids``, or ``--client-id`` for the one command of an action
    given on the command line; ValueError if it cannot be used."""
    from gateway.protocol import MAX_CLIENT_ID

    cid = getattr(args, "client_id", None)
    if cid is None:
        return ids
    if ids is not None or len(steps) != 1:
        raise ValueError("--client-id is the id of one command given on the command line; "
                         "a file's commands take their ids from the file")
    if not (0 < len(cid) <= MAX_CLIENT_ID and cid.isascii() and cid.isprintable()
            and " " not in cid):
        raise ValueError(f"--client-id {cid!r}: a client id is 1 to {MAX_CLIENT_ID} "
                         f"printable ASCII characters, no spaces")
    return [cid]


def _ids(steps: list[Any]) -> list[str]:
    from gateway.console import client_ids
    return client_ids(steps)


def _add_send(sub: Any) -> None:
    send = sub.add_parser("send", help="send the commands of TOML or JSON files, in order")
    send.add_argument("files", nargs="+", type=Path)
    send.add_argument("--keep-going", action="store_true", help="go on after a reject")
    send.add_argument("--fresh", action="store_true",
                      help="new client ids (default: ids from each command as written, so "
                           "sending a file again the same day acts only on what was not "
                           "accepted before; a command refused at each of 1,001 sendings "
                           "is not tried again)")


def _add_connection(parser: argparse.ArgumentParser, user: str, role: str) -> None:
    _data_arg(parser)
    parser.add_argument("--user", default=user, help=f"{role} user (key file "
                        f"DIR/clients/USER.json; default {user})")
    parser.add_argument("--key", help="client key file (overrides --user)")
    parser.add_argument("--endpoint", help=f"{role} endpoint (default: DIR/endpoints.json)")
    parser.add_argument("--timeout", type=_seconds, default=10.0,
                        help="seconds to wait for each answer (default 10)")
    parser.add_argument("--client-id", metavar="ID",
                        help="the client id of the one command sent (default: a new one); "
                             "after a timeout, the same command with the id it printed acts "
                             "at most once (not for send: a file's commands take theirs from "
                             "the file)")


def _seconds(text: str) -> float:
    """Parse a positive, finite number of seconds (argparse type)."""
    try:
        value = _seconds_or_zero(text)
    except argparse.ArgumentTypeError:
        value = 0.0
    if not value:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _seconds_or_zero(text: str) -> float:
    """Parse a finite number of seconds, 0 or more (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 <= value < math.inf):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return value


def _op_commands(args: argparse.Namespace, now: int) -> list[Any]:
    """Return the command of an op action given on the command line."""
    from exchange import commands as c
    from gateway.console import parse_time

    def when(text: str) -> int:
        return parse_time(text, now) if text else 0

    action, what = args.op_command, getattr(args, "what", "")
    if action == "session":
        if what == "create":
            return [c.CreateSession(session=args.session, name=args.name, currency=args.currency,
                                    starts_at=when(args.starts), ends_at=when(args.ends))]
        return [c.CloseSession(session=args.session)]
    if action == "party":
        if what == "register":
            return [c.RegisterParty(name=args.name, country=args.country,
                                    broker=args.broker)]
        if what == "approve":
            return [c.ReviewCredit(party=args.party, approved=True, credit_limit=args.limit,
                                   currency=args.currency, agreement_version=args.agreement,
                                   score=args.score)]
        return [c.ReviewCredit(party=args.party, approved=False)]
    if action == "paddle":
        return [c.IssuePaddle(session=args.session, party=args.party)]
    if action == "lot":
        if what == "vet":
            return [c.VetLot(serial=args.serial, score=args.score, approved=args.approve,
                             note=args.note)]
        if what == "schedule":
            return [c.ScheduleLot(serial=args.serial, opens_at=when(args.opens),
                                  closes_at=when(args.closes),
                                  hard_end=when(args.hard_end))]
        if what == "open":
            return [c.ScheduleLot(serial=args.serial, opens_at=now, closes_at=when(args.closes),
                                  hard_end=when(args.hard_end))]
        if what == "relist":
            return [c.RelistLot(serial=args.serial, opens_at=when(args.opens),
                                closes_at=when(args.closes), hard_end=when(args.hard_end),
                                reserve=args.reserve)]
        if what == "extend":
            return [c.ExtendLot(serial=args.serial, closes_at=when(args.closes),
                                hard_end=when(args.hard_end), reason=args.reason)]
        if what == "withdraw":
            return [c.WithdrawLot(serial=args.serial, reason=args.reason)]
        return [c.RecordNegotiatedSale(serial=args.serial, paddle=args.paddle,
                                       amount=args.amount)]
    if action == "instrument":
        book = {"session": args.session, "instrument": args.instrument}
        if what == "create":
            return [c.CreateInstrument(**book, kind=args.kind, lot=args.lot,
                                       currency=args.currency, stp=args.stp, call=args.call,
                                       reference=args.reference,
                                       max_orders=args.max_orders)]
        if what == "limit":
            return [c.SetOrderLimit(**book, max_orders=args.max_orders)]
        if what == "rules":
            return [c.SetPriceRules(**book, tick=args.tick, band_bp=args.band_bp)]
        if what == "issue-units":
            return [c.IssueUnits(**book, paddle=args.paddle, qty=args.qty)]
        if what == "halt":
            return [c.HaltTrading(**book, reason=args.reason)]
        if what == "resume":
            return [c.ResumeTrading(**book, phase="call" if args.call else "continuous")]
        if what == "call":
            return [c.StartCall(**book)]
        if what == "uncross":
            return [c.Uncross(**book, reference=args.reference)]
        return [c.CloseInstrument(**book)]
    if action == "lp":
        book = {"session": args.session, "instrument": args.instrument}
        if what == "appoint":
            return [c.AppointLiquidityProvider(**book, paddle=args.paddle,
                                               max_spread=args.max_spread,
                                               min_qty=args.min_qty, presence_bp=args.presence)]
        if what == "end":
            return [c.EndLiquidityProvider(**book, paddle=args.paddle)]
        return [c.ReportLiquidity(**book, reset=args.reset)]
    if action == "notice":
        return [c.PostNotice(session=args.session, text=args.text, serial=args.lot,
                             instrument=args.instrument)]
    if action == "rate":
        return [c.SetDisplayRate(base=args.base, quote=args.quote, num=args.num,
                                 den=args.den)]
    if action == "room":
        return _room_commands(args)
    if action == "expert":
        if what == "register":
            return [c.RegisterExpert(name=args.name, fields=tuple(args.field))]
        return [c.RetireExpert(expert=args.expert)]
    if action == "panel":
        if what == "draw":
            return [c.DrawPanel(serial=args.serial, size=args.size, field=args.field)]
        if what == "value":
            return [c.RecordValuation(serial=args.serial, expert=args.expert, low=args.low,
                                      high=args.high)]
        if what == "cancel":
            return [c.CancelPanel(serial=args.serial, reason=args.reason)]
        return [c.PublishPriceRange(serial=args.serial)]
    raise ValueError(f"unknown op action {action}")


def _book_parser(subparsers: Any, action: str, text: str) -> argparse.ArgumentParser:
    """Add an action about one book: its SESSION and INSTRUMENT."""
    parser = subparsers.add_parser(action, help=text)
    parser.add_argument("session")
    parser.add_argument("instrument")
    return parser


def _percent_bp(text: str) -> int:
    """Parse a percentage with at most two decimals into basis points, exactly."""
    whole, _, part = text.strip().partition(".")
    if not whole.isdigit() or (part and not (part.isdigit() and len(part) <= 2)) \
            or not whole.isascii() or not part.isascii():
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage like 90 or 92.5")
    return int(whole) * 100 + int(part.ljust(2, "0") or 0)


def _add_pricing(sub: Any) -> None:
    expert = sub.add_parser("expert", help="the pool of experts that value lots")
    es = expert.add_subparsers(dest="what", required=True)
    register = es.add_parser("register", help="add an expert (its id is in the result)")
    register.add_argument("name")
    register.add_argument("--field", action="append", default=[],
                          help="a technology field it values (repeat; none: any field)")
    retire = es.add_parser("retire", help="take an expert out of future draws")
    retire.add_argument("expert", type=int)
    panel = sub.add_parser("panel", help="value a lot by an inquiry panel drawn at random")
    ps = panel.add_subparsers(dest="what", required=True)
    draw = ps.add_parser("draw", help="draw the lot's panel from the pool")
    draw.add_argument("serial")
    draw.add_argument("--size", type=int, default=5, help="how many experts (default 5)")
    draw.add_argument("--field", default="", help="only experts of this field")
    value = ps.add_parser("value", help="record a panel expert's range (minor units)")
    value.add_argument("serial")
    value.add_argument("expert", type=int)
    value.add_argument("low", type=int)
    value.add_argument("high", type=int)
    publish = ps.add_parser("publish", help="close the panel and publish its range (the "
                            "medians of the experts' lows and highs)")
    publish.add_argument("serial")
    cancel = ps.add_parser("cancel", help="discard the open panel without a range")
    cancel.add_argument("serial")
    cancel.add_argument("--reason", required=True, help="why (the operators' record)")


def _add_room(sub: Any) -> None:
    room = sub.add_parser("room", help="a lot's data room: add or remove documents, sign "
                          "the NDA for a party, open a document")
    rs = room.add_subparsers(dest="what", required=True)
    add = rs.add_parser("add", help="index a document (or a new version of it): its SHA-256 "
                        "and size are read from FILE; the file stays where --location says")
    add.add_argument("serial")
    add.add_argument("name", help="the document's name in the room, e.g. claims-chart.pdf")
    add.add_argument("file", type=Path, help="the document, to read its digest and size")
    add.add_argument("--location", required=True,
                     help="where the venue's document store keeps it (told only to the "
                          "seller's side and to parties that signed the NDA)")
    remove = rs.add_parser("remove", help="take a document out of the room")
    remove.add_argument("serial")
    remove.add_argument("name")
    require = rs.add_parser("require", help="name the NDA version the room requires "
                            "(\"\": any); a new one makes every reader sign it")
    require.add_argument("serial")
    require.add_argument("version")
    nda = rs.add_parser("nda", help="record that a party signed the lot's NDA")
    nda.add_argument("serial")
    nda.add_argument("party", type=int)
    nda.add_argument("version", help="the version of the NDA text signed")
    open_ = rs.add_parser("open", help="get a document's location and digest for a party "
                          "that signed the NDA (journaled: the access log)")
    open_.add_argument("serial")
    open_.add_argument("party", type=int)
    open_.add_argument("name")
    open_.add_argument("--verify", type=Path, metavar="FILE",
                       help="also check FILE, fetched from the location, against the digest")


def file_digest(path: Path) -> tuple[str, int]:
    """Return the SHA-256 (hex) and size of a file, read in 1 MiB blocks."""
    import hashlib

    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _room_commands(args: argparse.Namespace) -> list[Any]:
    from exchange import commands as c

    if args.what == "add":
        digest, size = file_digest(args.file)
        return [c.AddDocument(serial=args.serial, name=args.name, digest=digest, size=size,
                              location=args.location)]
    if args.what == "remove":
        return [c.RemoveDocument(serial=args.serial, name=args.name)]
    if args.what == "nda":
        return [c.SignNda(serial=args.serial, party=args.party, nda=args.version)]
    if args.what == "require":
        return [c.RequireNda(serial=args.serial, nda=args.version)]
    if args.verify is not None:             # before the opening is journaled and counted
        with open(args.verify, "rb"):
            pass
    return [c.OpenDocument(serial=args.serial, party=args.party, name=args.name)]


def _send_and_verify(client: Any, console: Any, steps: list[Any],
                     args: argparse.Namespace, ids: list[str] | None = None) -> int:
    """Send the steps; then, for ``room open --verify FILE``, check FILE against
    the digest and size released. 1 if refused or if FILE does not match."""
    from rich.markup import escape

    results: list[Any] = []
    failed = _send_steps(client, console, steps, ids, args, results)
    path = getattr(args, "verify", None)
    if failed or path is None:
        return failed
    released = [e for r in results for e in r.events if type(e).__name__ == "DocumentReleased"]
    if not released:
        console.print("[red]no document was released[/]: nothing to check the file against")
        return 1
    doc = released[-1]
    try:
        digest, size = file_digest(path)
    except OSError as exc:
        console.print(f"[red]cannot read {escape(str(path))}[/]: {escape(str(exc))}")
        return 1
    what, name = escape(str(path)), escape(doc.name)
    if (digest, size) == (doc.digest, doc.size):
        console.print(f"{what} matches {name} v{doc.version} (sha256 {digest})")
        return 0
    console.print(f"[red]{what} does not match[/] {name} v{doc.version}: sha256 {digest}, "
                  f"{size:,} bytes; expected {doc.digest}, {doc.size:,} bytes")
    return 1


DO_EXAMPLES = {
    "operator": ("RecordPayment settlement=12 amount=500000",
                 "ExtendDueDate settlement=12 due_at=+2d"),
    "broker": ("WithdrawBid serial=WS-001 paddle=101",
               "MassCancel session=WS-2026 instrument=ULR-LENS"),
}


def _add_do(sub: Any, role: str) -> None:
    first, second = DO_EXAMPLES[role]
    do = sub.add_parser(
        "do", help="send any command: TYPE field=value ... (PROTOCOL.md lists them)",
        description=f"Send one command of PROTOCOL.md given as its type and field=value "
                    f"pairs, e.g. `do {first}` or `do {second}`. Values are JSON when they "
                    f"parse (numbers, true/false, lists), else text; times and durations as "
                    f"in command files.")
    do.add_argument("type", help=f"the command's type, e.g. {first.split()[0]}")
    do.add_argument("fields", nargs="*", metavar="FIELD=VALUE")


def _add_events(sub: Any) -> None:
    events = sub.add_parser("events", help="print this user's private events (fills, "
                            "outbids, awards, settlement steps...) from a sequence number on")
    events.add_argument("--from", dest="from_seq", type=int, default=1, metavar="SEQ",
                        help="first journal sequence (default 1: the whole journal)")


def _inline(args: argparse.Namespace, now: int) -> list[Any]:
    from gateway.console import inline_step
    return [inline_step(args.type, args.fields, now)]


def _no_client_id(args: argparse.Namespace, prog: str, action: str) -> bool:
    """Tell whether ``--client-id`` was given to an action that sends no
    command, after one line saying so."""
    if getattr(args, "client_id", None) is None:
        return False
    print(f"lotex {prog}: --client-id is for an action that sends a command, not {action}",
          file=sys.stderr)
    return True


def run_op(args: argparse.Namespace) -> int:
    if args.op_command in ("events", "status", "reload") and \
            _no_client_id(args, "op", args.op_command):
        return 2
    if args.op_command == "events":
        return _events(args, "op", "operator")
    if args.op_command == "status":
        return _with_client(args, "op", "operator", lambda client, console: _print_status(
            client, console, args.session, args.broker))
    if args.op_command == "reload":
        def reload(client: Any, console: Any) -> int:
            console.print(f"key store reloaded: {client.reload_keys()} active users")
            return 0
        return _with_client(args, "op", "operator", reload)
    try:
        steps, ids = _op_steps(args, time.time_ns())
        check_encodes(steps)
        ids = chosen_ids(args, steps, ids)
    except (OSError, ValueError) as exc:
        print(f"lotex op: {exc}", file=sys.stderr)
        return 2
    if args.op_command == "room":
        return _with_client(args, "op", "operator",
                            lambda client, console: _send_and_verify(client, console, steps, args,
                                                                     ids))
    return _with_client(args, "op", "operator",
                        lambda client, console: _send_steps(client, console, steps, ids, args))


def _with_client(args: argparse.Namespace, prog: str, port: str,
                 body: Callable[[Any, Any], int]) -> int:
    """Connect and log on with the user's key to ``port`` and run ``body``
    with the client and a console; a client error (no answer, a refusal) is
    one line, exit 1; a key file, endpoints file or endpoint that cannot be
    used is one line, exit 2."""
    import zmq
    from rich.console import Console

    from gateway.client import Client, ClientError, server_gone

    key_path = Path(args.key) if args.key else Path(args.data) / "clients" / f"{args.user}.json"
    key = load_key(prog, key_path)
    if key is None:
        return 2
    endpoints = None if args.endpoint else load_endpoints(prog, args.data)
    if endpoints is None and not args.endpoint:
        return 2
    endpoint = args.endpoint or getattr(endpoints, port)
    gone = None if args.endpoint else server_gone(args.data)
    if gone:
        print(f"lotex {prog}: {gone}", file=sys.stderr)
        return 1
    if key.role != port:
        print(f"lotex {prog}: {key_path} is the key of a user with role {key.role}; "
              f"this console needs a key of role {port}", file=sys.stderr)
        return 2
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        with Client(key, endpoint, timeout=args.timeout, notices=False) as client:
            try:
                client.connect()
            except ClientError as exc:
                print(f"lotex {prog}: {exc}", file=sys.stderr)
                return 1
            except (zmq.ZMQError, TypeError, ValueError) as exc:  # ClientSetupError among them
                print(f"lotex {prog}: cannot use the key {key_path} or the endpoint: "
                      f"{_reason(exc)}", file=sys.stderr)
                return 2
            try:
                return body(client, console)
            except ClientError as exc:
                print(f"lotex {prog}: {exc}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:                  # Ctrl-C while it waits: one line, no traceback
        print(f"lotex {prog}: interrupted", file=sys.stderr)
        return 130


def load_key(prog: str, path: Path) -> Any:
    """Return the client key of ``path``, or None after one line saying why
    it cannot be read."""
    from gateway.keys import ClientKey
    try:
        return ClientKey.load(path)
    except OSError as exc:
        print(f"lotex {prog}: cannot read the key file: {_reason(exc)}", file=sys.stderr)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"lotex {prog}: {path} is not a lotex client key file (a JSON object with "
              f"user, role, public_key, secret_key, server_public_key): {_reason(exc)}",
              file=sys.stderr)
    return None


def load_endpoints(prog: str, data_dir: str) -> Any:
    """Return the `Endpoints` of ``data_dir``, or None after one line saying
    why they cannot be read."""
    from gateway.client import Endpoints
    try:
        return Endpoints.load(data_dir)
    except OSError as exc:
        print(f"lotex {prog}: cannot read the endpoints (is lotex serve running on "
              f"{data_dir}?): {_reason(exc)}", file=sys.stderr)
    except (KeyError, TypeError, ValueError) as exc:
        print(f"lotex {prog}: {Path(data_dir) / 'endpoints.json'} is not what lotex serve "
              f"writes: {_reason(exc)}", file=sys.stderr)
    return None


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong: a KeyError names the missing field."""
    if isinstance(exc, KeyError):
        return f"no field {exc}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _send_steps(client: Any, console: Any, steps: list[Any], ids: list[str] | None,
                args: argparse.Namespace, results: list[Any] | None = None) -> int:
    """Send the steps one at a time, print their results; return 1 if any was
    refused. Each result is also appended to ``results`` if given."""
    from rich.markup import escape
    from rich.table import Table

    from gateway.client import ClientError, ResultTimeout, SessionRejectedError
    from gateway.console import humane_times

    table = Table()
    for column in ("#", "command", "seq", "result"):
        table.add_column(column)
    table.add_column("events", overflow="fold")
    names: dict[str, int] = {}
    failed = 0
    keep_going = getattr(args, "keep_going", False)
    chosen = bool(getattr(args, "client_id", None))     # the id is the user's: as given
    unknown: tuple[int, str, str] | None = None
    for index, step in enumerate(steps, 1):
        try:
            cmd = step.command(names)
        except ValueError as exc:               # a name its command did not create
            table.add_row(str(index), escape(str(step.fields["type"])), "",
                          f"[red]not sent[/]: {escape(str(exc))}", "")
            failed += 1
            if not keep_going:
                break
            continue
        cid = ids[index - 1] if ids else None
        if cid is not None and not chosen:
            cid = step.client_id(cid, names)
        try:
            result = _request_once(client, cmd, cid, retry_refused=not chosen)
        except KeyboardInterrupt:               # the rows so far, then the one line
            table.add_row(str(index), type(cmd).__name__, "",
                          "[red]interrupted[/]: outcome unknown (`events` shows what acted)",
                          "")
            console.print(table)
            raise
        except RetriesSpent as exc:
            table.add_row(str(index), type(cmd).__name__, str(exc.result.seq),
                          f"[red]{exc.result.code}[/]: "
                          f"{escape(humane_times(exc.result.text))} (sent before; refused at "
                          f"each of its {RETRIES + 1} sendings today, the most a file's "
                          f"command is tried: send it alone with --fresh to try it again)", "")
            failed += 1
            if not keep_going:
                break
            continue
        except ResultTimeout as exc:            # it may have acted, or may yet act
            table.add_row(str(index), type(cmd).__name__, "",
                          f"[red]no answer in time[/]: outcome unknown (client id "
                          f"{escape(exc.client_id)})", "")
            failed += 1
            unknown = (index, type(cmd).__name__, exc.client_id)
            break
        except SessionRejectedError as exc:
            if exc.code == "duplicate_client_id" and chosen:
                table.add_row(str(index), type(cmd).__name__, "",
                              f"[red]not sent[/]: client id {escape(exc.client_id)} was used "
                              f"today for another command (or for this one with its "
                              f"relative times resolved then); `events` shows what it did",
                              "")
                failed += 1
                break
            if exc.code == "duplicate_client_id" and step.relative:
                table.add_row(str(index), type(cmd).__name__, "",
                              "already sent today, with times relative to that sending: "
                              "not sent again (if it was refused then, send this with "
                              "--fresh)", "")
                continue
            if exc.code == "duplicate_client_id":   # no time from now: not this command
                table.add_row(str(index), type(cmd).__name__, "",
                              f"[red]not sent[/]: client id {escape(exc.client_id)} was used "
                              f"today for a different command (send this with --fresh); "
                              f"`events` shows what it did", "")
                failed += 1
                if not keep_going:
                    break
                continue
            table.add_row(str(index), type(cmd).__name__, "",
                          f"[red]refused by the gateway[/]: {escape(exc.code)}: "
                          f"{escape(exc.text)}", "")
            failed += 1
            if not keep_going or client.session.fatal is not None:   # (revoked: all would be)
                break
            continue
        except ClientError as exc:
            table.add_row(str(index), type(cmd).__name__, "", f"[red]failed[/]: "
                          f"{escape(str(exc))}", "")
            failed += 1
            if not keep_going:
                break
            continue
        if results is not None:
            results.append(result)
        status = ("accepted" if result.accepted
                  else f"[red]{result.code}[/]: {escape(humane_times(result.text))}")
        if result.resent:
            status += " (sent before)"
        table.add_row(str(index), type(cmd).__name__, str(result.seq), status,
                      escape(", ".join(_describe(e) for e in result.events
                                       if type(e).__name__ != "CommandRejected")))
        if not result.accepted:
            failed += 1
            if not keep_going:
                break
        elif step.name:
            names[step.name] = step.named(result.events)
    console.print(table)
    if unknown is not None:
        print(_unknown_outcome(args, unknown, files=ids is not None and not chosen,
                               alone=len(steps) == 1), file=sys.stderr)
    return 1 if failed else 0


def _unknown_outcome(args: argparse.Namespace, unknown: tuple[int, str, str], files: bool,
                     alone: bool) -> str:
    """Say that a command got no answer in time, so that it may have acted or
    may act yet, and how to send it again without its acting twice."""
    index, kind, cid = unknown
    prog = getattr(args, "command", None) or "op"
    what = f"command {index} ({kind}, client id {cid})" if not alone else \
        f"{kind} (client id {cid})"
    if files:
        again = ("send the same files again: each command keeps its client id, so it "
                 "acts at most once")
    elif alone:
        again = (f"run the same command again with --client-id {cid}: it acts at most once "
                 f"(one with times relative to now differs when run again, and is refused)")
    else:
        again = "nothing sends it again"
    return (f"lotex {prog}: no answer in time to {what}: it may have acted, or may act yet; "
            f"{again}; `lotex {prog} events` (and `status`) show what acted")


RETRIES = 1000
"""Sendings of a file's command tried again after a refusal (under -r1 ...
-r1000) in a day; the last walks 1,001 known ids (~0.2 s on one machine)."""


class RetriesSpent(Exception):
    """A file's command was refused at each of its ``RETRIES`` + 1 sendings
    today; ``result`` is the last refusal."""

    def __init__(self, result: Any) -> None:
        super().__init__(result.code)
        self.result = result


def _request_once(client: Any, cmd: Any, cid: str | None, retry_refused: bool = True) -> Any:
    """Send ``cmd`` under ``cid`` (None: a new id); a command of a file that
    was refused when sent before is tried again under ``cid-r1``, ``cid-r2``
    ...: each sending walks the same ids, up to the first it has not used
    (so it acts at most once) or the one that was accepted. Each earlier
    refused sending costs one resend, answered from the record; past
    ``RETRIES`` of them raise `RetriesSpent`. An id the user chose
    (``retry_refused`` False) is sent as it is."""
    result = client.request(cmd, cid)
    if cid is None or not retry_refused:
        return result
    attempt = 0
    while result.resent and not result.accepted:
        if attempt == RETRIES:
            raise RetriesSpent(result)
        attempt += 1
        result = client.request(cmd, f"{cid}-r{attempt}")
    return result


DESCRIBED = ("settlement", "paddle", "party", "serial", "instrument", "amount", "hammer",
             "premium", "total", "commission", "net", "to_seller", "to_venue", "refunded",
             "credit_limit", "paid", "outstanding", "status", "name", "version", "nda",
             "location", "digest", "ndas", "readers", "opened", "expert", "round", "experts",
             "low", "high", "valuations", "price", "leader", "leading", "reserve_met",
             "closes_at", "side", "qty", "leaves", "outcome", "reason", "currency")
"""Fields an event's row shows when set: its ids, amounts (of a sale, a
release, a credit review), where a bid or an order stands (the standing
price and leader, whether the bidder's own bid leads, the reserve met, the
close; what filled and what is left), and the currency of its amounts."""

SHOWN_WHEN_FALSE = ("leading", "reserve_met")
"""Flags a bidder needs to see false too: an outbid bid, a reserve not met."""


def _describe(event: Any) -> str:
    """Name an event with the ids, amounts and standing it carries:
    PaddleIssued(paddle=101, party=4), BidConfirmed(paddle=102, serial=WS-001,
    amount=28000000, leading=False)."""
    from gateway.console import field_text

    ids = [f"{field}={field_text(field, value)}" for field in DESCRIBED
           if (value := getattr(event, field, None)) not in (None, "", 0)
           or (field in SHOWN_WHEN_FALSE and value is False)]
    if not ids and getattr(event, "session", ""):
        ids = [f"session={event.session}"]
    return f"{type(event).__name__}({', '.join(ids)})" if ids else type(event).__name__


# ---------------------------------------------------------------------------------
# lotex broker
# ---------------------------------------------------------------------------------

def register_broker(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "broker", help="the broker's console over the gateway",
        description="Send a broker's commands through the gateway, for the paddles of its "
                    "own clients, and read its private events. Money is in minor units "
                    "(cents); times are 'now', '+10m', '+2h', ISO 8601 (UTC) or ns UTC.")
    _add_connection(parser, "b1", "broker")
    sub = parser.add_subparsers(dest="broker_command", metavar="ACTION", required=True)
    _add_send(sub)
    register = sub.add_parser("register", help="register a client as a party (its id is "
                              "in the result); an operator then reviews its credit")
    register.add_argument("name")
    register.add_argument("--country", default="", help="ISO 3166 code, e.g. DE")
    bid = sub.add_parser("bid", help="bid on a lot (a proxy maximum on English lots)")
    bid.add_argument("serial")
    bid.add_argument("paddle", type=int)
    bid.add_argument("amount", type=int, help="minor units")
    order = sub.add_parser("order", help="place an order in a continuous book")
    order.add_argument("session")
    order.add_argument("instrument")
    order.add_argument("paddle", type=int)
    order.add_argument("order", type=int, help="your number for it, unique among the "
                       "paddle's live orders on the instrument")
    order.add_argument("side", choices=("buy", "sell"))
    order.add_argument("qty", type=int)
    order.add_argument("price", type=int, nargs="?", default=0,
                       help="limit price, minor units (none for --tif market)")
    order.add_argument("--tif", choices=("gtc", "gtd", "ioc", "fok", "market"),
                       default="gtc", help="time in force (default gtc)")
    order.add_argument("--expires", default="", help="for gtd: e.g. +1h")
    order.add_argument("--post-only", action="store_true",
                       help="refused if it would trade on arrival")
    cancel = sub.add_parser("cancel", help="cancel an order")
    cancel.add_argument("session")
    cancel.add_argument("instrument")
    cancel.add_argument("paddle", type=int)
    cancel.add_argument("order", type=int)
    _add_room(sub)
    _add_do(sub, "broker")
    _add_events(sub)
    status = sub.add_parser("status", help="print my clients' resting orders, live bids, "
                            "units and credit now")
    status.add_argument("--session", default="", help="one session (default: all)")
    parser.set_defaults(run=run_broker)


def _broker_commands(args: argparse.Namespace, now: int) -> list[Any]:
    """Return the command of a broker action given on the command line."""
    from exchange import commands as c
    from gateway.console import parse_time

    action = args.broker_command
    if action == "register":
        return [c.RegisterParty(name=args.name, country=args.country)]
    if action == "bid":
        return [c.PlaceBid(serial=args.serial, paddle=args.paddle, amount=args.amount)]
    if action == "room":
        return _room_commands(args)
    book = {"session": args.session, "instrument": args.instrument, "paddle": args.paddle,
            "order": args.order}
    if action == "order":
        return [c.PlaceOrder(**book, side=args.side, qty=args.qty, price=args.price,
                             tif=args.tif, post_only=args.post_only,
                             expires=parse_time(args.expires, now) if args.expires else 0)]
    return [c.CancelOrder(**book)]


def run_broker(args: argparse.Namespace) -> int:
    from gateway.console import Step

    if args.broker_command in ("events", "status") and \
            _no_client_id(args, "broker", args.broker_command):
        return 2

    if args.broker_command == "events":
        return _events(args, "broker", "broker")
    if args.broker_command == "status":
        return _with_client(args, "broker", "broker", lambda client, console: _print_status(
            client, console, args.session))
    now = time.time_ns()
    try:
        if args.broker_command == "send":
            steps, ids = _file_steps(args, now)
        elif args.broker_command == "do":
            steps, ids = _inline(args, now), None
        else:
            steps, ids = [Step.plain(cmd) for cmd in _broker_commands(args, now)], None
        check_encodes(steps)
        ids = chosen_ids(args, steps, ids)
    except (OSError, ValueError) as exc:
        print(f"lotex broker: {exc}", file=sys.stderr)
        return 2
    if args.broker_command == "room":
        return _with_client(args, "broker", "broker",
                            lambda client, console: _send_and_verify(client, console, steps, args,
                                                                     ids))
    return _with_client(args, "broker", "broker",
                        lambda client, console: _send_steps(client, console, steps, ids, args))


def _events(args: argparse.Namespace, prog: str, port: str) -> int:
    return _with_client(args, prog, port,
                        lambda client, console: _print_events(client, console, args.from_seq))


def _print_status(client: Any, console: Any, session: str, broker: str = "") -> int:
    """Print a broker's resting orders, holdings and credit (`Client.status`)."""
    from rich.markup import escape
    from rich.table import Table

    from gateway.console import field_text

    status = client.status(session=session, broker=broker)
    parts = (("resting orders", ("session", "instrument", "paddle", "order", "side", "price",
                                 "qty", "tif", "post_only", "expires"), status.orders),
             ("live bids", ("session", "serial", "paddle", "mechanism", "amount", "leading",
                            "price"), status.bids),
             ("units", ("session", "instrument", "paddle", "party", "units", "offered"),
              status.holdings),
             ("credit", ("session", "paddle", "party", "exposure", "credit_limit", "currency",
                         "frozen"), status.credit),
             ("data rooms", ("session", "serial", "paddle", "party", "nda", "current",
                             "opened"), status.rooms))
    for title, columns, rows in parts:
        table = Table(title=f"{title} (as of seq {status.seq})")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(field_text(column, getattr(row, column)))
                            for column in columns))
        console.print(table)
    return 0


def _print_events(client: Any, console: Any, from_seq: int) -> int:
    """Print the user's private events of the journal from ``from_seq`` on."""
    import datetime

    from rich.markup import escape
    from rich.table import Table

    from gateway.console import struct_text

    table = Table()
    for column in ("seq", "time (UTC)"):
        table.add_column(column)
    table.add_column("event", overflow="fold")
    for notice in client.recap(from_seq):
        moment = datetime.datetime.fromtimestamp(notice.ts / 1e9, datetime.timezone.utc)
        for event in notice.events:
            table.add_row(str(notice.seq), moment.strftime("%Y-%m-%d %H:%M:%S"),
                          escape(struct_text(event)))
    console.print(table)
    return 0
