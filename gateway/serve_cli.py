"""The gateway's subcommands: ``lotex serve``, ``lotex keys``, ``lotex op`` and
``lotex watch``."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_DATA = "lotex-data"


def register(subparsers: argparse._SubParsersAction) -> None:
    _register_serve(subparsers)
    _register_keys(subparsers)
    from gateway import console_cli
    console_cli.register_op(subparsers)
    console_cli.register_broker(subparsers)
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
    from gateway.config import load_or_create, private_data_dir
    from gateway.keys import initialise
    from gateway.server import Server, ServerStopped

    data = Path(args.data)
    config_path = data / "config.toml"
    try:
        # sealed bids, reserves and identities: the owner's only (0700), an
        # existing directory tightened, before anything is written in it
        private_data_dir(data)
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
    try:
        endpoints = server.start()
    except Exception as exc:
        reason = _start_failure(exc, data, config_path)
        if reason is None:
            raise
        server.close()
        sys.stderr.write(f"lotex serve: cannot start: {reason}\n")
        return 2
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
    if server.close_error is not None:       # e.g. the last snapshot could not be written
        sys.stderr.write(f"lotex serve: stopped, but the shutdown failed: "
                         f"{server.close_error} (the journal holds everything; a restart "
                         f"replays it)\n")
        return 4
    return 0


def _start_failure(exc: Exception, data: Path, config_path: Path) -> str | None:
    """Say in a sentence why the server could not start, or None if unforeseen."""
    import zmq

    from gateway.keys import KeyStoreError
    from recorder.journal import JournalCorrupt, JournalFailed, JournalLocked
    from recorder.recovery import RecoveryError, ReplayDiverged

    if isinstance(exc, KeyStoreError):
        return (f"{exc}; nothing was started: mend that file of {data / 'keys'} (or put "
                f"back a backup's) and start again")
    if isinstance(exc, ReplayDiverged):
        return (f"journal entry {exc.seq} replays to other events than it recorded: this "
                f"lotex's engine rules differ from those of the lotex that wrote it (or the "
                f"engine is not deterministic); nothing was changed. Start the lotex that "
                f"wrote the journal and stop it cleanly (a clean stop snapshots the journal's "
                f"end), then this one; `lotex replay check {data}` shows the difference")
    if isinstance(exc, RecoveryError):
        return (f"recovery failed: {exc}; snapshots are only a shortcut: with "
                f"{data / 'snapshots'} moved aside the journal alone rebuilds the state")
    if isinstance(exc, JournalLocked):
        return f"{data} is in use by another lotex serve (its journal is locked)"
    if isinstance(exc, JournalCorrupt):
        return (f"the journal is damaged ({exc}); `lotex journal verify {data}` names the "
                f"first bad record")
    if isinstance(exc, zmq.ZMQError):
        return (f"cannot listen ({exc}); another program holds the port: change the ports "
                f"in {config_path} or use --random-ports")
    if isinstance(exc, JournalFailed) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__
    if isinstance(exc, OSError):
        return _file_failure(exc)
    return None


def _file_failure(exc: OSError) -> str:
    """Say which file failed how (a full disk, most likely), and that the
    journal lost nothing acknowledged: recovery cuts nothing from it before
    the cut bytes are durable in their ``.cut`` file."""
    name = errno.errorcode.get(exc.errno, f"errno {exc.errno}") if exc.errno else "no errno"
    where = f"{exc.filename}: " if exc.filename else ""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return (f"{where}{exc.strerror or exc} ({name}); the journal keeps every acknowledged "
            f"entry: {'make room on its file system' if full else 'mend that'} and start again")


# ---------------------------------------------------------------------------------
# lotex keys
# ---------------------------------------------------------------------------------

def _register_keys(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys", help="server keys and users (add, list, revoke, rotate)",
        description="Manage the CURVE keys: the server's pair and one pair per user with "
                    "its role. A running server picks up changes within a second, "
                    "without a restart.")
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
    revoke = sub.add_parser(
        "revoke", help="revoke a user's key (takes effect within a second, without a restart)",
        description="Revoke a user: a running server refuses its key and ends its sessions "
                    "within a second, without a restart. A revoked id stays revoked. The "
                    "last active operator is kept unless --force.")
    revoke.add_argument("user")
    revoke.add_argument("--force", action="store_true",
                        help="revoke the last active operator too (the exchange then has "
                             "no operator until one is added)")
    rotate = sub.add_parser(
        "rotate", help="give a user a new key pair (takes effect within a second, without "
                       "a restart)",
        description="Replace an active user's key pair (same id, role and clients): a new "
                    "client key file, and the new public key in the key store. A running "
                    "server refuses the old key within a second, without a restart. A "
                    "revoked user is refused.")
    rotate.add_argument("user")
    parser.set_defaults(run=run_keys)


def run_keys(args: argparse.Namespace) -> int:
    from gateway.config import private_data_dir
    from gateway.keys import KeyStore, KeyStoreError, initialise
    store = KeyStore(args.data)
    try:
        if args.keys_command == "init":
            private_data_dir(args.data)       # the data directory's journal will follow
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
            store.revoke(args.user, force=args.force)
            print(f"revoked {args.user}")
            return 0
        if args.keys_command == "rotate":
            path = store.rotate(args.user)
            print(f"new key pair for {args.user}; give it {path} (then delete it here); "
                  f"a running server refuses the old key within a second")
            return 0
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        table = Table(title=escape(f"users of {args.data}"))
        for column in ("user", "role", "status", "clients", "cancel on disconnect",
                       "public key"):
            table.add_column(column)
        for user in store.users().values():
            table.add_row(escape(user.id), user.role, "revoked" if user.revoked else "active",
                          escape(", ".join(user.clients))
                          or ("any" if user.role == "broker" else ""),
                          "yes" if user.cancel_on_disconnect else "",
                          escape(user.public_key))
        Console().print(table)
        return 0
    except KeyStoreError as exc:
        print(f"lotex keys: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:                    # a file of the store that cannot be read or written
        print(f"lotex keys: {exc}", file=sys.stderr)
        return 1


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
    parser.add_argument("--session", default="", help="only this session (shown also once "
                        "closed; without it, the open sessions)")
    parser.add_argument("--lot", default="", metavar="SERIAL",
                        help="also list this lot's data room: each document's version, "
                             "size and SHA-256 (to open one: lotex broker room open)")
    parser.add_argument("--once", action="store_true",
                        help="print the board from a snapshot and exit")
    from gateway.console_cli import _seconds_or_zero
    parser.add_argument("--seconds", type=_seconds_or_zero, default=0,
                        help="stop after this many seconds (0: until Ctrl-C)")
    parser.set_defaults(run=run_watch)


def run_watch(args: argparse.Namespace) -> int:
    """The board, once or live. A key file, endpoints file or endpoint that
    cannot be used is one line, exit 2; no answer or a refusal from the
    snapshot service (at the start, or while recovering a gap) one line, exit 1."""
    import zmq

    from gateway.client import FeedClient, server_gone
    from gateway.console_cli import _reason, load_endpoints, load_key

    key_path = Path(args.key) if args.key else Path(args.data) / "clients" / f"{args.user}.json"
    key = load_key("watch", key_path)
    if key is None:
        return 2
    endpoints = load_endpoints("watch", args.data)
    if endpoints is None:
        return 2
    gone = server_gone(args.data)
    if gone:
        print(f"lotex watch: {gone}", file=sys.stderr)
        return 1
    try:
        try:
            feed = FeedClient(key, endpoints.feed, endpoints.data)
        except (zmq.ZMQError, TypeError, ValueError) as exc:  # ClientSetupError among them
            print(f"lotex watch: cannot use the key {key_path} or the endpoints: "
                  f"{_reason(exc)}", file=sys.stderr)
            return 2
        with feed:
            return _watch(args, feed)
    except KeyboardInterrupt:      # Ctrl-C while it waits for the snapshot: no traceback
        print("lotex watch: interrupted", file=sys.stderr)    # (the live board's: exit 0)
        return 130


def _watch(args: argparse.Namespace, feed: Any) -> int:
    from rich.console import Console
    from rich.live import Live

    from gateway.board import Board
    from gateway.client import ClientError

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    board = Board(session=args.session, lot=args.lot)
    try:
        snap = feed.start(session=args.session)
    except ClientError as exc:
        print(f"lotex watch: {exc}", file=sys.stderr)
        return 1
    board.apply(snap.events, snap.seq)
    if args.once:
        console.print(board.render(feed.feed_time()))
        return 0
    stop_at = time.monotonic() + args.seconds if args.seconds else None
    silent_after = SILENT_HEARTBEATS * _feed_heartbeat_s(args.data)
    try:
        with Live(board.render(feed.feed_time()), console=console, refresh_per_second=4,
                  screen=False) as live:
            while stop_at is None or time.monotonic() < stop_at:
                for market in feed.updates(timeout=0.25, max_messages=500):
                    board.apply(market.events, market.seq)
                live.update(_with_silence(board.render(feed.feed_time()), feed.silent_for(),
                                          silent_after))
    except KeyboardInterrupt:
        pass
    except ClientError as exc:        # a gap's replay unanswered or refused (revoked)
        print(f"lotex watch: {exc}", file=sys.stderr)
        return 1
    return 0


SILENT_HEARTBEATS = 3
"""Feed heartbeat intervals without a message after which the live board
says the feed went silent."""


def _feed_heartbeat_s(data: str) -> float:
    """Return the feed's heartbeat interval in seconds: ``heartbeat_ms`` of
    the data directory's config, as `lotex serve` reads it (1 s if it
    cannot be read)."""
    from gateway.config import Config, load

    for name in ("config.toml", "config.json"):
        try:
            return load(Path(data) / name).heartbeat_ms / 1000
        except FileNotFoundError:
            continue
        except (OSError, ValueError, TypeError):
            break
    return Config().heartbeat_ms / 1000


def _with_silence(view: Any, silent: float, limit: float) -> Any:
    """Return the board, under it a line saying how long the feed has been
    silent once that is over ``limit`` s: the server may be down, and the
    board stale."""
    if silent <= limit:
        return view
    from rich.console import Group
    from rich.text import Text

    return Group(view, Text(f"feed silent for {silent:.0f} s (the server sends at least a "
                            f"heartbeat every {limit / SILENT_HEARTBEATS:g} s): it may be "
                            f"down or unreachable; the board may be stale", style="bold red"))
