"""``lotex replay ...`` and ``lotex whatif``: replay for analysts.

DIR is a lotex data directory (DIR/journal/, DIR/snapshots/, DIR/keys/) or a
journal directory. Every command reads the journal read-only and rebuilds
through the one recovery path; none changes a byte of DIR. Tables print as
aligned text, or ``--format csv|json`` (amounts then in int minor units).
The public view (paddle numbers only) is the default; ``--operator-key
FILE`` asks for the operator's view (see `replay.access`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from replay import table

MECHANISMS = ("english", "sealed_first", "sealed_second", "dutch", "reverse", "bid_ask")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay", help="replay a recorded session: state, history, results, audit, export",
        description="Replay a recorded lotex session for analysts, auditors and regulators.")
    actions = parser.add_subparsers(dest="replay_action", metavar="ACTION")
    parser.set_defaults(run=lambda args: _usage(parser))

    state = actions.add_parser("state", help="every lot and book as of a moment",
                               description="The state of every lot (or one) and every book as "
                                           "of a journal sequence number or a time.")
    _dir(state)
    moment = state.add_mutually_exclusive_group(required=True)
    moment.add_argument("--at", metavar="TIME",
                        help="ISO 8601 time (without an offset: in --tz), a date, or ns UTC")
    moment.add_argument("--seq", type=int, metavar="N", help="after journal entry N")
    state.add_argument("--lot", metavar="SERIAL", help="only this lot (or instrument)")
    state.add_argument("--levels", type=int, default=5, help="book levels per side (default 5)")
    _tz(state)
    _viewer(state)
    _format(state)
    state.set_defaults(run=run_state)

    history = actions.add_parser("history", help="a lot's complete bid and order history",
                                 description="A lot's (or instrument's) bid and order history "
                                             "in order, times in your zone, amounts also in the "
                                             "display currency.")
    _dir(history)
    history.add_argument("--lot", required=True, metavar="SERIAL", help="lot serial or instrument")
    _tz(history)
    history.add_argument("--currency", metavar="CODE", default=None,
                         help="second currency to show (default: the lot's display currency)")
    _viewer(history)
    _format(history)
    history.set_defaults(run=run_history)

    results = actions.add_parser("results", help="results table: sold, passed, negotiated",
                                 description="The results of a session: hammer, premium, total "
                                             "and net to the seller per lot.")
    _dir(results)
    results.add_argument("--session", default="", help="only this session")
    _viewer(results)
    _format(results)
    results.set_defaults(run=run_results)

    check = actions.add_parser("check", help="determinism audit: re-run every command",
                               description="Verify the journal, re-run every recorded command "
                                           "through a fresh engine and compare the events byte "
                                           "for byte. Exit 1 at the first difference.")
    _dir(check)
    check.set_defaults(run=run_check)

    export = actions.add_parser("export", help="export to SQLite or CSV (+ LOBSTER files)",
                                description="Export the analyst store: one table per kind of "
                                            "record; LOBSTER message and order-book files per "
                                            "continuous instrument. A full export (commands, "
                                            "actors, sealed amounts, party names) needs "
                                            "--operator-key and is written readable by its "
                                            "owner only; --public exports what the live feed "
                                            "showed.")
    _dir(export)
    target = export.add_mutually_exclusive_group(required=True)
    target.add_argument("--sqlite", metavar="FILE", help="SQLite file to write")
    target.add_argument("--csv", metavar="OUTDIR", help="directory for CSV files")
    export.add_argument("--public", action="store_true",
                        help="public market data only (a store to share; no key needed)")
    export.add_argument("--levels", type=int, default=10,
                        help="LOBSTER order-book levels per side (default 10)")
    export.add_argument("--no-lobster", action="store_true", help="skip the LOBSTER files")
    _viewer(export)
    export.set_defaults(run=run_export)

    comparables = actions.add_parser(
        "comparables", help="price disclosure: comparable lots and their prices",
        description="Past transactions of comparable lots with their prices, and for "
                    "continuous lots the bid-ask spread and activity over time.")
    _dir(comparables)
    which = comparables.add_mutually_exclusive_group(required=True)
    which.add_argument("--patent", metavar="NUMBER")
    which.add_argument("--family", metavar="ID")
    which.add_argument("--field", metavar="NAME")
    which.add_argument("--jurisdiction", metavar="CODE")
    which.add_argument("--status", choices=("pending", "granted"))
    comparables.add_argument("--bucket", choices=("hour", "day", "week"), default="day",
                             help="period of the spread and activity rows (default day)")
    _tz(comparables)
    _format(comparables)
    comparables.set_defaults(run=run_comparables)

    chart = actions.add_parser("chart", help="picture of a lot's price over time (PNG)",
                               description="Price over time with each bid marked, and the "
                                           "bid-ask spread for continuous lots.")
    _dir(chart)
    chart.add_argument("--lot", required=True, metavar="SERIAL")
    chart.add_argument("--out", required=True, metavar="FILE.png")
    _tz(chart)
    _viewer(chart)
    chart.set_defaults(run=run_chart)

    feed = actions.add_parser("feed", help="re-publish a session on a ZeroMQ PUB socket",
                              description="Re-publish the recorded public events as the live "
                                          "feed does (one Market message per entry), at a "
                                          "chosen speed.")
    _dir(feed)
    pace = feed.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0,
                      help="times real time (default 1; 10 = ten times faster)")
    pace.add_argument("--fast", action="store_true", help="as fast as possible")
    feed.add_argument("--endpoint", default="tcp://127.0.0.1:0",
                      help="where to bind the PUB socket (default a free port on 127.0.0.1)")
    feed.add_argument("--from-seq", type=int, default=1)
    feed.add_argument("--to-seq", type=int, default=0, help="0: to the end")
    feed.add_argument("--max-gap", type=float, default=5.0,
                      help="longest pause between messages, seconds (default 5)")
    feed.add_argument("--wait", type=float, default=2.0,
                      help="seconds to wait for a first subscriber (default 2; 0: none)")
    feed.add_argument("--limit", type=int, default=0, help="stop after N messages (0: all)")
    feed.add_argument("--data-endpoint", default="tcp://127.0.0.1:0",
                      help="where the snapshot/replay service binds when DIR has the server's "
                           "keys (default a free port)")
    feed.add_argument("--endpoints-out", metavar="OUTDIR",
                      help="write OUTDIR/endpoints.json for `lotex watch --data OUTDIR`")
    feed.add_argument("--linger", type=float, default=0.0,
                      help="seconds to keep answering snapshot/replay requests after the end")
    feed.set_defaults(run=run_feed)

    sample = actions.add_parser("sample", help="write the recorded demo session into DIR",
                                description="Record the deterministic demo session (English, "
                                            "sealed first and second price, Dutch, bid-ask, a "
                                            "negotiated sale, two books) into DIR to try the "
                                            "replay commands on.")
    sample.add_argument("dir", metavar="DIR", help="new data directory")
    sample.set_defaults(run=run_sample)

    whatif = subparsers.add_parser(
        "whatif", help="re-run bid histories under other auction rules",
        description="Re-run external bid histories (the eBay auction.csv layout) or a lotex "
                    "journal's lots under other rules through the real engine; print the "
                    "recorded and the new price per auction, then 'reproduced N of M closing "
                    "prices'. A journal's bids are private: re-running one needs "
                    "--operator-key.")
    whatif.add_argument("bids", metavar="BIDS.csv|DIR", help="a bid CSV or a lotex journal")
    whatif.add_argument("--rules", default="english",
                        choices=("english", "english-soft-close", "vickrey", "first-price"))
    whatif.add_argument("--increments", default=None,
                        help="increment table: ebay2003, otba, or 'lot' (a journal lot's own; "
                             "default ebay2003 for a CSV, lot for a journal)")
    whatif.add_argument("--soft-window", type=int, default=None,
                        help="soft-close window, minutes (default: a journal lot's own, else 5)")
    whatif.add_argument("--soft-extend", type=int, default=None,
                        help="soft-close extension, minutes (default: a journal lot's own, else 5)")
    whatif.add_argument("--limit", type=int, default=0, help="only the first N auctions")
    _viewer(whatif)
    _format(whatif)
    whatif.set_defaults(run=run_whatif)


# --------------------------------------------------------------------------
# arguments
# --------------------------------------------------------------------------

def _dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="data directory or journal directory")


def _tz(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tz", default="UTC", metavar="ZONE",
                        help="your time zone, an IANA name (default UTC)")


def _viewer(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator-key", metavar="FILE",
                        help="an operator's client key file: show identities and private "
                             "events (checked against the key store)")
    parser.add_argument("--key-store", metavar="DATA",
                        help="data directory holding keys/users.json (default DIR)")


def _format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=table.FORMATS, default="text",
                        help="text (default), csv or json lines")


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _fail(command: str, message: str, code: int = 2) -> int:
    print(f"lotex {command}: {message}", file=sys.stderr)
    return code


def _open(args: argparse.Namespace):
    from replay.source import Source
    return Source.open(args.dir)


def _viewer_of(args: argparse.Namespace, source: Any):
    from replay.access import PUBLIC, operator_viewer
    if not getattr(args, "operator_key", None):
        return PUBLIC
    store = args.key_store or (source.keys_dir.parent if source.keys_dir is not None else None)
    return operator_viewer(args.operator_key, store)


MAX_SECONDS = 86_400.0      # the longest --max-gap, --wait or --linger

SNAPSHOTS_ASIDE = ("; snapshots are only a shortcut: with DATA/snapshots moved aside the "
                   "journal alone rebuilds every state")


def _guard(command: str, fn: Any, args: argparse.Namespace) -> int:
    """Run ``fn(args)``; turn the expected failures into one line: exit 2 for
    bad usage or input, 1 for a damaged or unusable source."""
    from recorder.journal import JournalCorrupt
    from recorder.recovery import RecoveryError
    from recorder.store import StoreMismatch
    from replay.access import AccessDenied
    from replay.source import ReplayError
    try:
        return fn(args)
    except (ReplayError, AccessDenied) as exc:
        return _fail(command, str(exc))
    except StoreMismatch as exc:
        return _fail(command, f"{exc}; choose another file")
    except JournalCorrupt as exc:
        return _fail(command, f"BAD journal: {exc}", 1)
    except RecoveryError as exc:
        return _fail(command, f"cannot rebuild: {exc}{SNAPSHOTS_ASIDE}", 1)
    except BrokenPipeError:
        return 0
    except OSError as exc:
        return _fail(command, str(exc), 1)
    except KeyboardInterrupt:                  # Ctrl-C: one line, not a traceback
        return _fail(command, "interrupted", 130)


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------

def run_state(args: argparse.Namespace) -> int:
    return _guard("replay state", _state, args)


def _state(args: argparse.Namespace) -> int:
    from replay import state as st
    from replay.source import format_time, parse_time, zone
    source = _open(args)
    viewer = _viewer_of(args, source)
    tz = zone(args.tz)
    at = parse_time(args.at, tz) if args.at is not None else None
    view = st.state_at(source, seq=args.seq, at=at, viewer=viewer, levels=args.levels)
    text = args.format == "text"
    lots = view.lots(args.lot or "", major=text)
    books = view.books(args.lot or "", major=text)
    if args.lot is not None and not lots and not books:
        return _fail("replay state", f"no lot or instrument {args.lot!r} as of that moment")
    for row in lots:
        if row.get("closes_at"):
            row["closes_at"] = format_time(row["closes_at"], tz)
    moment = format_time(at if at is not None else view.engine.state.now, tz)
    lot_columns = st.LOT_COLUMNS + (st.OPERATOR_LOT_COLUMNS if viewer.operator else [])
    note = ""
    if view.past_end:
        end = format_time(view.journal_end, tz) if view.journal_end is not None else "nothing"
        note = (f"the journal ends earlier ({end}): this is the state at its end; nothing "
                f"after it is known, and no timer due later has fired")
        if not text:
            print(f"lotex replay state: note: {note}", file=sys.stderr)
    if text:
        print(f"state after journal entry {view.seq}, as of {moment} ({viewer.label})")
        if note:
            print(note)
        if lots:
            print()
            table.write(lot_columns, lots, money=st.MONEY, title="lots")
        if books:
            print()
            table.write(st.BOOK_COLUMNS, books, money=st.MONEY, title="books")
        return 0
    for row in lots:
        row["kind_of_row"] = "lot"
    for row in books:
        row["kind_of_row"] = "book"
    if args.format == "json":
        table.write(["kind_of_row", "seq"] + lot_columns, [dict(r, seq=view.seq) for r in lots],
                    "json")
        table.write(["kind_of_row", "seq"] + st.BOOK_COLUMNS,
                    [dict(r, seq=view.seq) for r in books], "json")
    else:
        table.write(lot_columns, lots, "csv")
        if books:
            print()
            table.write(st.BOOK_COLUMNS, books, "csv")
    return 0


def run_history(args: argparse.Namespace) -> int:
    return _guard("replay history", _history, args)


def _history(args: argparse.Namespace) -> int:
    from replay import history as hi
    from replay.source import zone
    source = _open(args)
    viewer = _viewer_of(args, source)
    columns, rows = hi.history_rows(source, args.lot, viewer=viewer, tz=zone(args.tz),
                                    currency=args.currency)
    if args.format == "text":
        print(f"history of {args.lot}, times in {args.tz} ({viewer.label})")
    table.write(columns, rows, args.format, money=hi.MONEY)
    return 0


def run_results(args: argparse.Namespace) -> int:
    return _guard("replay results", _results, args)


def _results(args: argparse.Namespace) -> int:
    from replay import results as re_
    source = _open(args)
    viewer = _viewer_of(args, source)
    columns, rows = re_.results(source, viewer, args.session)
    if args.format == "text":
        print(f"results ({viewer.label})")
    table.write(columns, rows, args.format, money=re_.MONEY)
    return 0


def run_check(args: argparse.Namespace) -> int:
    return _guard("replay check", _check, args)


def _check(args: argparse.Namespace) -> int:
    from replay.audit import check
    source = _open(args)
    audit = check(source)
    if audit.corrupt:
        print(f"FAIL journal: {audit.corrupt}")
        return 1
    if audit.difference is not None:
        print(f"FAIL after {audit.entries} identical entries: {audit.difference.describe()}")
        return 1
    print(f"ok {audit.entries} entries, {audit.events} events replayed byte-identical; "
          f"events sha256 {audit.digest}; journal head {audit.head_hash} at seq {audit.last_seq}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    return _guard("replay export", _export, args)


def _export(args: argparse.Namespace) -> int:
    from replay import export as ex
    from replay.access import AccessDenied
    ex.check_levels(args.levels)
    source = _open(args)
    viewer = _viewer_of(args, source)
    if not args.public and not viewer.operator:
        raise AccessDenied("a full export holds commands, actors, sealed amounts and party "
                           "names: give --operator-key FILE (an operator's key, checked "
                           "against the key store), or --public for what the live feed showed")
    if args.sqlite:
        report = ex.to_sqlite(source, args.sqlite, public=args.public,
                              lobster_levels=0 if args.no_lobster else args.levels)
    else:
        report = ex.to_csv(source, args.csv, public=args.public,
                           lobster_levels=0 if args.no_lobster else args.levels)
    for line in report:
        print(line)
    return 0


def run_comparables(args: argparse.Namespace) -> int:
    return _guard("replay comparables", _comparables, args)


def _comparables(args: argparse.Namespace) -> int:
    from replay import comparables as co
    from replay.source import zone
    source = _open(args)
    criterion = next((name, value) for name, value in (
        ("patent", args.patent), ("family", args.family), ("field", args.field),
        ("jurisdiction", args.jurisdiction), ("status", args.status)) if value is not None)
    found = co.comparables(source, *criterion, bucket=args.bucket, tz=zone(args.tz))
    if args.format == "text":
        print(f"comparables for {criterion[0]} {criterion[1]!r}: {len(found.lots)} lots "
              f"(public prices)")
        if found.lots:
            print()
            table.write(co.LOT_COLUMNS, found.lots, money=co.MONEY, title="transactions")
        if found.activity:
            print()
            table.write(co.ACTIVITY_COLUMNS, found.activity, money=co.MONEY,
                        title=f"continuous lots: spread and activity per {args.bucket}")
        return 0
    if args.format == "json":               # one stream: each row says what it is
        table.write(["kind_of_row"] + co.LOT_COLUMNS,
                    [dict(row, kind_of_row="lot") for row in found.lots], "json")
        table.write(["kind_of_row"] + co.ACTIVITY_COLUMNS,
                    [dict(row, kind_of_row="activity") for row in found.activity], "json")
        return 0
    table.write(co.LOT_COLUMNS, found.lots, args.format)
    if found.activity:
        print()
        table.write(co.ACTIVITY_COLUMNS, found.activity, args.format)
    return 0


def run_chart(args: argparse.Namespace) -> int:
    return _guard("replay chart", _chart, args)


def _chart(args: argparse.Namespace) -> int:
    from replay import chart
    from replay.source import zone
    source = _open(args)
    viewer = _viewer_of(args, source)
    points = chart.draw(source, args.lot, args.out, viewer=viewer, tz=zone(args.tz))
    print(f"wrote {args.out}: {points} points for {args.lot}")
    return 0


def run_feed(args: argparse.Namespace) -> int:
    return _guard("replay feed", _feed, args)


def _feed(args: argparse.Namespace) -> int:
    import math

    from replay import feed
    source = _open(args)
    if not args.fast and not (math.isfinite(args.speed) and args.speed > 0):
        return _fail("replay feed", "--speed must be above 0 (or use --fast)")
    for value, option in ((args.max_gap, "--max-gap"), (args.wait, "--wait"),
                          (args.linger, "--linger")):
        if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
            return _fail("replay feed", f"{option} must be 0 to {MAX_SECONDS} seconds, "
                                        f"not {value}")
    for value, option in ((args.limit, "--limit"), (args.to_seq, "--to-seq")):
        if value < 0:
            return _fail("replay feed", f"{option} must not be negative (0: no bound), "
                                        f"not {value}")
    if args.from_seq < 1:
        return _fail("replay feed", f"--from-seq must be at least 1, not {args.from_seq}")
    publisher = feed.Publisher(args.endpoint)
    data = None
    try:
        print(f"publishing on {publisher.endpoint}", flush=True)
        if source.keys_dir is not None and (source.keys_dir / "server.json").is_file():
            data = feed.DataService(source.keys_dir, args.data_endpoint, publisher.context)
            print(f"snapshot and replay service on {data.endpoint}", flush=True)
            if args.endpoints_out:
                path = feed.write_endpoints(args.endpoints_out, publisher.endpoint, data.endpoint,
                                            data.public_key)
                print(f"wrote {path}", flush=True)
        elif args.endpoints_out:
            return _fail("replay feed", "--endpoints-out needs the server's keys in DIR/keys")
        if args.wait > 0 and not publisher.wait_for_subscriber(args.wait):
            print("no subscriber yet; publishing anyway", file=sys.stderr)
        sent = feed.replay(source, publisher, speed=None if args.fast else args.speed,
                           from_seq=args.from_seq, to_seq=args.to_seq, max_gap=args.max_gap,
                           limit=args.limit, data=data)
        print(f"published {sent.messages} messages ({sent.events} public events) up to seq "
              f"{sent.last_seq}", flush=True)
        if data is not None and args.linger > 0:
            data.serve(args.linger)
        if data is not None:
            data.close()
            data = None
        publisher.close(drain=feed.DRAIN_SECONDS)    # the end reaches slow subscribers
    finally:
        if data is not None:
            data.close()
        publisher.close()
    return 0


def run_sample(args: argparse.Namespace) -> int:
    return _guard("replay sample", _sample, args)


def _sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from replay.sample import record_sample
    target = Path(args.dir)
    if target.exists() and not target.is_dir():
        return _fail("replay sample", f"{args.dir} is a file; give a new or empty directory")
    if target.is_dir() and any(target.iterdir()):
        return _fail("replay sample", f"{args.dir} is not empty (a journal or other files); "
                                      f"give a new or empty directory")
    from gateway.config import private_data_dir
    from gateway.keys import initialise           # so the operator's views can be tried
    private_data_dir(target)                      # sealed bids, reserves, identities
    session = record_sample(args.dir)
    store, _ = initialise(args.dir)
    print(f"recorded the demo session into {args.dir}: {session.last_seq} entries, "
          f"{session.events} events; an operator's key for the private views: "
          f"{store.clients_dir / 'op.json'}")
    return 0


def run_whatif(args: argparse.Namespace) -> int:
    return _guard("whatif", _whatif, args)


def _whatif(args: argparse.Namespace) -> int:
    from pathlib import Path

    from replay import whatif as wi
    from replay.access import PUBLIC
    from replay.source import Source
    viewer = PUBLIC
    if Path(args.bids).is_dir():            # a journal: private bids, operators only
        viewer = _viewer_of(args, Source.open(args.bids))
    report = wi.run_path(args.bids, rules=args.rules, increments=args.increments,
                         soft_window_min=args.soft_window, soft_extend_min=args.soft_extend,
                         limit=args.limit, viewer=viewer)
    table.write(wi.COLUMNS, report.rows, args.format, money=wi.MONEY)
    if args.format != "json":
        print(report.summary)
    else:
        import json
        print(json.dumps({"reproduced": report.reproduced, "of": report.total}))
    return 0
