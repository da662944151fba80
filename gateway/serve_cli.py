"""The gateway's subcommands: ``lotex serve``, ``lotex keys``, ``lotex op`` and
``lotex watch``."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = "lotex-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_serve(subparsers)
    _register_keys(subparsers)
    _register_op(subparsers)
    _register_watch(subparsers)


def _data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                        help=f"the exchange's data directory (default ./{DEFAULT_DATA})")


# ---------------------------------------------------------------------------------
# lotex serve
# ---------------------------------------------------------------------------------

def _register_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the exchange: engine, journal and gateway",
        description="Run the exchange on a data directory: recover from its journal, then "
                    "serve brokers, operators and market data over ZeroMQ on 127.0.0.1. "
                    "A new directory gets server keys, default users and a config.")
    _data_arg(parser)
    parser.add_argument("--random-ports", action="store_true",
                        help="bind every socket to a free port (written to endpoints.json)")
    parser.add_argument("--durability", choices=("group", "every", "none"),
                        help="override the config's journal durability")
    parser.add_argument("--engine-cpu", type=int, metavar="N",
                        help="run the engine thread alone on CPU N, the server's other "
                             "threads on the others (overrides engine_cpu in the config)")
    parser.add_argument("--log-json", action="store_true", help="JSON logs even on a terminal")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from gateway import logs
    logs.configure(json_lines=True if args.log_json else None)
    from gateway.config import load_or_create
    from gateway.keys import initialise
    from gateway.server import Server, ServerStopped

    data = Path(args.data)
    config_path = data / "config.toml"
    try:
        config, config_path, config_new = load_or_create(data)
        if args.random_ports:
            config.broker_port = config.operator_port = config.feed_port = config.data_port = 0
        if args.durability:
            config.durability = args.durability
        if args.engine_cpu is not None:
            config.engine_cpu = args.engine_cpu
        config.validate()
        store, keys_new = initialise(data)
        server = Server(data, config)
    except ValueError as exc:                # tomllib's errors are ValueErrors
        sys.stderr.write(f"lotex serve: bad config ({config_path}): {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"lotex serve: cannot use {data}: {exc}\n")
        return 2
    endpoints = server.start()
    server.pin_engine_thread()          # this thread runs the loop: pinned before "ready"
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    out = sys.stdout
    out.write(f"lotex exchange serving {data.resolve()} "
              f"(journal seq {server.durable_seq}, durability {config.durability})\n")
    for name in ("broker", "operator", "feed", "data"):
        out.write(f"  {name:<9}{endpoints[name]}\n")
    out.write(f"  config   {config_path}{' (created)' if config_new else ''}\n")
    out.write(f"  client keys in {store.clients_dir.resolve()}"
              f"{' (created: ' + ', '.join(u for u in store.users()) + ')' if keys_new else ''}\n")
    out.write("ready\n")
    out.flush()
    try:
        server.run()
    except ServerStopped as exc:
        sys.stderr.write(f"lotex serve: stopped: {exc}\n")
        return 3
    finally:
        server.close()
    return 0


# ---------------------------------------------------------------------------------
# lotex keys
# ---------------------------------------------------------------------------------

def _register_keys(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys", help="server keys and users (add, list, revoke)",
        description="Manage the CURVE keys: the server's pair and one pair per user with "
                    "its role. A running server picks up changes within a second.")
    _data_arg(parser)
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create the server's key pair")
    init.add_argument("--defaults", action="store_true",
                      help="also add the default users (op, b1, b2, viewer)")
    init.add_argument("--replace", action="store_true",
                      help="replace an existing server key pair (clients need new key files)")
    add = sub.add_parser("add", help="add a user and write its client key file")
    add.add_argument("user")
    add.add_argument("--role", required=True, choices=("broker", "operator", "viewer"))
    add.add_argument("--client", action="append", default=[], metavar="NAME",
                     help="a client the broker acts for (repeatable; none: any)")
    add.add_argument("--cancel-on-disconnect", action="store_true",
                     help="cancel the broker's book orders when its session ends")
    sub.add_parser("list", help="list users")
    revoke = sub.add_parser("revoke", help="revoke a user's key (takes effect at once)")
    revoke.add_argument("user")
    parser.set_defaults(run=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    from gateway.keys import KeyStore, KeyStoreError, initialise
    store = KeyStore(args.data)
    try:
        if args.keys_command == "init":
            if args.defaults and not store.exists():
                initialise(args.data)
                print(f"server keys and default users created in {store.keys_dir}")
                print(f"client key files in {store.clients_dir}")
                return 0
            public = store.create_server_keys(replace=args.replace)
            print(f"server public key {public} in {store.server_file}")
            return 0
        if not store.exists():
            print(f"no key store in {args.data}: run `lotex keys --data {args.data} init` "
                  f"or `lotex serve`", file=sys.stderr)
            return 2
        if args.keys_command == "add":
            path = store.add_user(args.user, args.role, clients=args.client,
                                  cancel_on_disconnect=args.cancel_on_disconnect)
            print(f"added {args.role} {args.user}; give it {path} (then delete it here)")
            return 0
        if args.keys_command == "revoke":
            store.revoke(args.user)
            print(f"revoked {args.user}")
            return 0
        from rich.console import Console
        from rich.table import Table
        table = Table(title=f"users of {args.data}")
        for column in ("user", "role", "status", "clients", "cancel on disconnect",
                       "public key"):
            table.add_column(column)
        for user in store.users().values():
            table.add_row(user.id, user.role, "revoked" if user.revoked else "active",
                          ", ".join(user.clients) or ("any" if user.role == "broker" else ""),
                          "yes" if user.cancel_on_disconnect else "",
                          user.public_key)
        Console().print(table)
        return 0
    except KeyStoreError as exc:
        print(f"lotex keys: {exc}", file=sys.stderr)
        return 1


# ---------------------------------------------------------------------------------
# lotex op
# ---------------------------------------------------------------------------------

def _register_op(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "op", help="the operator's console over the gateway",
        description="Send operator commands through the gateway. Money is in minor units "
                    "(cents); times are 'now', '+10m', '+2h' or ISO 8601 (UTC).")
    _data_arg(parser)
    parser.add_argument("--user", default="op", help="operator user (key file "
                        "DIR/clients/USER.json; default op)")
    parser.add_argument("--key", help="client key file (overrides --user)")
    parser.add_argument("--endpoint", help="operator endpoint (default: DIR/endpoints.json)")
    parser.add_argument("--timeout", type=float, default=10.0)
    sub = parser.add_subparsers(dest="op_command", metavar="ACTION", required=True)

    send = sub.add_parser("send", help="send the commands of TOML or JSON files, in order")
    send.add_argument("files", nargs="+", type=Path)
    send.add_argument("--keep-going", action="store_true", help="go on after a reject")
    send.add_argument("--fresh", action="store_true",
                      help="new client ids (default: ids from the file's content, so sending "
                           "the same file twice the same day acts once)")

    session = sub.add_parser("session", help="create or close a session")
    ss = session.add_subparsers(dest="what", required=True)
    create = ss.add_parser("create")
    create.add_argument("session")
    create.add_argument("--name", required=True)
    create.add_argument("--currency", default="USD")
    create.add_argument("--starts", default="")
    create.add_argument("--ends", default="")
    close = ss.add_parser("close")
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
    approve.add_argument("--currency", default="USD")
    approve.add_argument("--agreement", required=True, help="agreement version signed")
    approve.add_argument("--score", type=int, default=0)
    refuse = ps.add_parser("refuse", help="record a failed credit review")
    refuse.add_argument("party", type=int)

    paddle = sub.add_parser("paddle", help="issue a paddle")
    pds = paddle.add_subparsers(dest="what", required=True)
    issue = pds.add_parser("issue")
    issue.add_argument("session")
    issue.add_argument("party", type=int)

    lot = sub.add_parser("lot", help="vet, schedule, open, relist, withdraw or sell a lot")
    ls = lot.add_subparsers(dest="what", required=True)
    create_lots = ls.add_parser("create", help="create (and optionally vet) lots from files")
    create_lots.add_argument("files", nargs="+", type=Path)
    create_lots.add_argument("--vet-score", type=int,
                             help="also approve every created lot with this score")
    vet = ls.add_parser("vet")
    vet.add_argument("serial")
    vet.add_argument("--score", type=int, required=True)
    group = vet.add_mutually_exclusive_group(required=True)
    group.add_argument("--approve", action="store_true")
    group.add_argument("--reject", action="store_true")
    vet.add_argument("--note", default="")
    schedule = ls.add_parser("schedule", help="publish and schedule a vetted lot")
    schedule.add_argument("serial")
    schedule.add_argument("--opens", default="")
    schedule.add_argument("--closes", default="")
    schedule.add_argument("--hard-end", default="")
    open_ = ls.add_parser("open", help="schedule a vetted lot to open now")
    open_.add_argument("serial")
    open_.add_argument("--closes", required=True, help="e.g. +10m")
    open_.add_argument("--hard-end", default="")
    relist = ls.add_parser("relist", help="put a passed lot up again")
    relist.add_argument("serial")
    relist.add_argument("--opens", default="now")
    relist.add_argument("--closes", required=True)
    relist.add_argument("--hard-end", default="")
    relist.add_argument("--reserve", type=int)
    withdraw = ls.add_parser("withdraw")
    withdraw.add_argument("serial")
    withdraw.add_argument("--reason", default="")
    sell = ls.add_parser("sell", help="record a negotiated sale of a passed lot")
    sell.add_argument("serial")
    sell.add_argument("paddle", type=int)
    sell.add_argument("amount", type=int, help="hammer price, minor units")

    instrument = sub.add_parser(
        "instrument", help="create, limit, call, uncross or close a continuous book",
        description="Continuous books of a session: unit licence rights or a bid-ask patent "
                    "lot. Prices and amounts in minor units.")
    ins = instrument.add_subparsers(dest="what", required=True)

    def book(action: str, text: str) -> argparse.ArgumentParser:
        parser = ins.add_parser(action, help=text)
        parser.add_argument("session")
        parser.add_argument("instrument")
        return parser
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
    i_units = book("issue-units", "credit new units to a paddle's party")
    i_units.add_argument("paddle", type=int)
    i_units.add_argument("qty", type=int)
    book("call", "start a call period")
    book("uncross", "end the call period with one price").add_argument(
        "--reference", type=int, default=0)
    book("close", "stop trading; resting orders are cancelled")

    rate = sub.add_parser("rate", help="set a display rate: 1 BASE shows as NUM/DEN QUOTE")
    rate.add_argument("base")
    rate.add_argument("quote")
    rate.add_argument("num", type=int)
    rate.add_argument("den", type=int)

    sub.add_parser("reload", help="make the server reload its key store now")
    from gateway import certificate  # settlement (issue 7): reads the journal, no gateway
    certificate.add_op_parser(sub)
    parser.set_defaults(run=run_op)


def _op_steps(args: argparse.Namespace, now: int) -> tuple[list[Any], list[str] | None]:
    """Return the steps (`gateway.console.Step`) an op invocation sends and
    their client ids (None: new ones)."""
    from gateway.console import Step, client_ids, load_steps

    action, what = args.op_command, getattr(args, "what", "")
    if action == "send" or (action == "lot" and what == "create"):
        from exchange.commands import CreateLot, VetLot
        steps: list[Step] = []
        names: set[str] = set()
        for path in args.files:
            steps.extend(load_steps(path, now, names))
        if action == "lot" and args.vet_score is not None:
            steps.extend(Step.plain(VetLot(serial=step.preview.serial, score=args.vet_score,
                                           approved=True))
                         for step in list(steps) if isinstance(step.preview, CreateLot))
        return steps, None if getattr(args, "fresh", False) else client_ids(steps)
    return [Step.plain(cmd) for cmd in _op_commands(args, now)], None


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
        if what == "issue-units":
            return [c.IssueUnits(**book, paddle=args.paddle, qty=args.qty)]
        if what == "call":
            return [c.StartCall(**book)]
        if what == "uncross":
            return [c.Uncross(**book, reference=args.reference)]
        return [c.CloseInstrument(**book)]
    if action == "rate":
        return [c.SetDisplayRate(base=args.base, quote=args.quote, num=args.num,
                                 den=args.den)]
    raise ValueError(f"unknown op action {action}")


def run_op(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from gateway.client import Client, ClientError, Endpoints, SessionRejectedError
    from gateway.keys import ClientKey

    console = Console() if sys.stdout.isatty() else Console(width=160)
    now = time.time_ns()
    key_path = Path(args.key) if args.key else Path(args.data) / "clients" / f"{args.user}.json"
    try:
        key = ClientKey.load(key_path)
        endpoint = args.endpoint or Endpoints.load(args.data).operator
    except (OSError, KeyError, ValueError) as exc:
        print(f"lotex op: cannot find the key or endpoints: {exc}", file=sys.stderr)
        return 2
    steps: list[Any] = []
    ids: list[str] | None = None
    if args.op_command != "reload":
        try:
            steps, ids = _op_steps(args, now)
        except (OSError, ValueError) as exc:
            print(f"lotex op: {exc}", file=sys.stderr)
            return 2
    failed = 0
    with Client(key, endpoint, timeout=args.timeout, notices=False) as client:
        try:
            client.connect()
            if args.op_command == "reload":
                console.print(f"key store reloaded: {client.reload_keys()} active users")
                return 0
            table = Table()
            for column in ("#", "command", "seq", "result"):
                table.add_column(column)
            table.add_column("events", overflow="fold")
            names: dict[str, int] = {}
            for index, step in enumerate(steps, 1):
                try:
                    cmd = step.command(names)
                except ValueError as exc:       # a name its command did not create
                    table.add_row(str(index), step.fields["type"], "",
                                  f"[red]not sent[/]: {exc}", "")
                    failed += 1
                    if not getattr(args, "keep_going", False):
                        break
                    continue
                try:
                    result = _request_once(client, cmd, ids[index - 1] if ids else None)
                except SessionRejectedError as exc:
                    if exc.code != "duplicate_client_id":
                        raise
                    table.add_row(str(index), type(cmd).__name__, "",
                                  "already sent today, with times relative to that sending: "
                                  "not sent again", "")
                    continue
                status = ("accepted" if result.accepted else f"[red]{result.code}[/]: {result.text}")
                if result.resent:
                    status += " (sent before)"
                table.add_row(str(index), type(cmd).__name__, str(result.seq), status,
                              ", ".join(_describe(e) for e in result.events
                                        if type(e).__name__ != "CommandRejected"))
                if not result.accepted:
                    failed += 1
                    if not getattr(args, "keep_going", False):
                        break
                elif step.name:
                    names[step.name] = step.named(result.events)
            console.print(table)
        except ClientError as exc:
            print(f"lotex op: {exc}", file=sys.stderr)
            return 1
    return 1 if failed else 0


RETRIES = 20


def _request_once(client: Any, cmd: Any, cid: str | None) -> Any:
    """Send ``cmd`` under ``cid`` (None: a new id); a command of a file that
    was refused when sent before is tried again under ``cid-r1``, ``cid-r2``
    ...: each sending walks the same ids, so it acts at most once."""
    result = client.request(cmd, cid)
    for attempt in range(1, RETRIES + 1):
        if cid is None or not result.resent or result.accepted:
            break
        result = client.request(cmd, f"{cid}-r{attempt}")
    return result


def _describe(event: Any) -> str:
    """Name an event with the ids it carries: PaddleIssued(paddle=101, party=4)."""
    ids = [f"{field}={value}" for field in ("paddle", "party", "serial", "instrument")
           if (value := getattr(event, field, None)) not in (None, "", 0)]
    if not ids and getattr(event, "session", ""):
        ids = [f"session={event.session}"]
    return f"{type(event).__name__}({', '.join(ids)})" if ids else type(event).__name__


# ---------------------------------------------------------------------------------
# lotex watch
# ---------------------------------------------------------------------------------

def _register_watch(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "watch", help="live board of a session from the market-data feed",
        description="A live terminal board from the public feed: lots, current price, "
                    "leading paddle, reserve met, time left; books.")
    _data_arg(parser)
    parser.add_argument("--user", default="viewer", help="key for the snapshot service "
                        "(default viewer)")
    parser.add_argument("--key", help="client key file (overrides --user)")
    parser.add_argument("--session", default="", help="only this session")
    parser.add_argument("--once", action="store_true",
                        help="print the board from a snapshot and exit")
    parser.add_argument("--seconds", type=float, default=0,
                        help="stop after this many seconds (0: until Ctrl-C)")
    parser.set_defaults(run=run_watch)


def run_watch(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from gateway.board import Board
    from gateway.client import ClientError, Endpoints, FeedClient
    from gateway.keys import ClientKey

    key_path = Path(args.key) if args.key else Path(args.data) / "clients" / f"{args.user}.json"
    try:
        key = ClientKey.load(key_path)
        endpoints = Endpoints.load(args.data)
    except (OSError, KeyError, ValueError) as exc:
        print(f"lotex watch: cannot find the key or endpoints: {exc}", file=sys.stderr)
        return 2
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    board = Board(session=args.session)
    with FeedClient(key, endpoints.feed, endpoints.data) as feed:
        try:
            snap = feed.start(session=args.session)
        except ClientError as exc:
            print(f"lotex watch: {exc}", file=sys.stderr)
            return 1
        board.apply(snap.events, snap.seq)
        if args.once:
            console.print(board.render(time.time_ns()))
            return 0
        stop_at = time.monotonic() + args.seconds if args.seconds else None
        try:
            with Live(board.render(time.time_ns()), console=console, refresh_per_second=4,
                      screen=False) as live:
                while stop_at is None or time.monotonic() < stop_at:
                    for market in feed.updates(timeout=0.25, max_messages=500):
                        board.apply(market.events, market.seq)
                    live.update(board.render(time.time_ns()))
        except KeyboardInterrupt:
            pass
    return 0
