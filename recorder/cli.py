"""``lotex journal ...``: verify, head, dump and project the journal.

DIR may be a data directory (with DIR/journal/) or a journal directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import msgspec

from recorder import layout
from recorder.format import KIND_ENTRY
from recorder.journal import Journal, JournalCorrupt, verify_journal


def register(subparsers: Any) -> None:
    backup = subparsers.add_parser(
        "backup", help="copy a data directory, even while lotex serve runs, as a "
        "consistent image a server can start on",
        description="Copy DATA into DEST (new or empty): the configuration, the key store, "
                    "the snapshots and the journal, in an order that keeps the copy "
                    "consistent while the server goes on writing. The copy holds every "
                    "entry up to one sequence number (printed) and nothing after it; "
                    "`lotex serve --data DEST` starts on it. The analyst store and the "
                    "logs are left out (`lotex journal project` rebuilds the store).")
    backup.add_argument("data", metavar="DATA", help="the data directory")
    backup.add_argument("dest", metavar="DEST", help="where the copy goes (new or empty)")
    backup.set_defaults(run=run_backup)
    parser = subparsers.add_parser("journal", help="verify, inspect and project the journal",
                                   description="Verify, inspect and project a lotex journal.")
    actions = parser.add_subparsers(dest="journal_action", metavar="ACTION")
    parser.set_defaults(run=lambda args: _usage(parser))

    verify = actions.add_parser("verify", help="check every checksum, sequence number and chain hash")
    verify.add_argument("dir", help="data directory or journal directory")
    verify.set_defaults(run=run_verify)

    head = actions.add_parser("head", help="print the head hash (to publish it)")
    head.add_argument("dir", help="data directory or journal directory")
    head.add_argument("--json", action="store_true", help="print seq and head as JSON")
    head.set_defaults(run=run_head)

    dump = actions.add_parser("dump", help="print records as JSON lines")
    dump.add_argument("dir", help="data directory or journal directory")
    dump.add_argument("--from-seq", type=int, default=1)
    dump.add_argument("--from-ts", type=int, default=None, help="ns UTC")
    dump.add_argument("--limit", type=int, default=None)
    dump.set_defaults(run=run_dump)

    repair = actions.add_parser(
        "repair", help="cut the live segment at its first bad record, good records after it "
                       "included (when the server refuses a damaged journal)",
        description="Cut the live segment at its first bad record and move every byte from "
                    "there on aside to NAME.seg.OFFSET.cut, good records after the damage "
                    "included; then move the snapshots beyond the journal's new end (DATA/"
                    "snapshots, DATA/gateway) aside into a dated aside-... directory in each. "
                    "`lotex serve` refuses to start on such damage, and on a journal ending "
                    "before its newest snapshot, rather than drop acknowledged records; run "
                    "this only when no better copy of the journal exists (a backup or a "
                    "replica), with the server stopped.")
    repair.add_argument("dir", help="data directory or journal directory")
    repair.set_defaults(run=run_repair)

    project = actions.add_parser("project", help="bring the SQLite analyst store up to date")
    project.add_argument("dir", help="data directory or journal directory")
    project.add_argument("--db", default=None, help=f"store file (default: DATA/{layout.STORE})")
    project.add_argument("--rebuild", action="store_true", help="drop the store and project from scratch")
    project.add_argument("--public", action="store_true",
                         help="public market data only: no private events, no commands or actors")
    project.set_defaults(run=run_project)


def _journal(where: str, action: str) -> Path | None:
    """Return the journal directory of ``where``, or None (said on stderr) if it holds none."""
    path = layout.find_journal(where)
    if not layout.holds_journal(path):
        print(f"lotex journal {action}: no lotex journal in {where}", file=sys.stderr)
        return None
    return path


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run(action: str, args: argparse.Namespace, body: Callable[[Path], int]) -> int:
    """Run ``body`` on the journal of ``args.dir``; say in a line if there is
    none (exit 2) or it is damaged (exit 1)."""
    path = _journal(args.dir, action)
    if path is None:
        return 2
    try:
        return body(path)
    except FileNotFoundError:
        print(f"lotex journal {action}: no journal at {path}", file=sys.stderr)
        return 2
    except JournalCorrupt as bad:
        print(f"BAD {bad}", file=sys.stderr)
        return 1
    except OSError as exc:          # permissions, an I/O error: nothing said of the journal
        print(f"lotex journal {action}: cannot read the journal: {exc}", file=sys.stderr)
        return 2


def run_backup(args: argparse.Namespace) -> int:
    from recorder.backup import BackupError, SourceDamaged, backup

    try:
        report = backup(args.data, args.dest)
    except SourceDamaged as exc:
        print(f"lotex backup: {exc}", file=sys.stderr)
        return 1
    except BackupError as exc:
        print(f"lotex backup: {exc}", file=sys.stderr)
        return 2
    except (OSError, JournalCorrupt) as exc:
        print(f"lotex backup: the copy failed: {exc}; nothing of it was kept: try again",
              file=sys.stderr)
        return 1
    print(f"backed up {args.data} to {args.dest}: journal up to seq {report.last_seq} "
          f"({report.segments} segment{'' if report.segments == 1 else 's'}), "
          f"{report.snapshots} snapshots, {report.bytes:,} bytes; head {report.head_hash}"
          + (f"; cut {report.cut_bytes:,} bytes at its end ({report.cut_records} good "
             f"records), written while the copy read them" if report.cut_bytes else ""))
    return 0


def run_verify(args: argparse.Namespace) -> int:
    def verify(path: Path) -> int:
        report = verify_journal(path)
        print(f"ok {report.count} records in {report.segments} "
              f"segment{'' if report.segments == 1 else 's'}, last seq "
              f"{report.last_seq}, head {report.head_hash}")
        return 0
    return _run("verify", args, verify)


def run_repair(args: argparse.Namespace) -> int:
    from recorder.journal import JournalLocked
    from recorder.recovery import set_aside_snapshots

    path = _journal(args.dir, "repair")
    if path is None:
        return 2
    try:
        before = verify_journal(path)
    except JournalCorrupt as bad:
        print(f"damaged: {bad}")
        before = None
    except OSError as exc:
        print(f"lotex journal repair: cannot read the journal: {exc}; nothing was cut",
              file=sys.stderr)
        return 2
    try:
        journal = Journal.open(path, cut_damage=True)    # holds the lock: no server meanwhile
    except JournalLocked as exc:
        print(f"lotex journal repair: {exc}: stop the server first", file=sys.stderr)
        return 2
    except JournalCorrupt as bad:
        print(f"lotex journal repair: cannot repair: {bad}", file=sys.stderr)
        return 1
    except OSError as exc:          # a full disk, a read-only file system, permissions
        print(f"lotex journal repair: cannot repair: {exc}; nothing was cut (a segment is "
              f"cut only once the bytes it loses are copied aside whole): mend that and run "
              f"it again", file=sys.stderr)
        return 2
    try:
        cut, last = journal.cut, journal.last_seq
        if cut is not None:
            print(f"moved {cut.bytes:,} bytes ({cut.records:,} good records among them) "
                  f"aside to {cut.aside}")
        # snapshots of seqs the journal no longer holds would outrank new ones
        in_data = path == layout.journal_dir(path.parent)
        try:
            moved = set_aside_snapshots(path.parent, last) if in_data else []
        except OSError as exc:
            print(f"lotex journal repair: the journal ends at seq {last}, but the snapshots "
                  f"beyond its end could not be moved aside: {exc}; `lotex serve` will not "
                  f"start until they are: mend that and run it again", file=sys.stderr)
            return 2
        for aside in moved:
            print(f"moved snapshot {aside.name} (beyond the journal's end) aside to "
                  f"{aside.parent}")
    finally:
        journal.close()
    if before is not None and not moved:
        print(f"nothing to repair: ok {before.count} records, last seq {before.last_seq}")
        return 0
    try:
        verify_journal(path)
    except JournalCorrupt as bad:
        print(f"lotex journal repair: cannot repair: {bad} (a closed segment: restore it "
              f"from a backup)", file=sys.stderr)
        return 1
    print(f"the journal now ends at seq {last}")
    return 0


def run_head(args: argparse.Namespace) -> int:
    def head(path: Path) -> int:
        journal = Journal.open_readonly(path)
        seq, chain = journal.last_seq, journal.head_hash
        print(json.dumps({"seq": seq, "head": chain}) if args.json else chain)
        return 0
    return _run("head", args, head)


def run_dump(args: argparse.Namespace) -> int:
    from exchange.codec import decode_entry

    def dump(path: Path) -> int:
        out = sys.stdout
        records = Journal.open_readonly(path).read(args.from_seq, from_ts=args.from_ts)
        try:
            for n, rec in enumerate(records):
                if args.limit is not None and n >= args.limit:
                    break
                line: dict[str, Any] = {"seq": rec.seq, "ts": rec.ts, "kind": rec.kind,
                                        "chain": rec.chain.hex()}
                try:
                    if rec.kind != KIND_ENTRY:
                        raise ValueError(f"record kind {rec.kind}")
                    line["entry"] = msgspec.to_builtins(decode_entry(rec.payload))
                except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                    line["payload"] = rec.payload.hex()
                    line["undecoded"] = str(exc)
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
        except BrokenPipeError:
            pass
        return 0
    return _run("dump", args, dump)


def run_project(args: argparse.Namespace) -> int:
    import sqlite3

    from recorder.store import Store, StoreBusy, StoreMismatch

    def project(path: Path) -> int:
        from replay.progress import CountingJournal     # the bar of the other long commands
        db = args.db or path.parent / layout.STORE
        try:
            with Store.open(db, public=args.public) as store:
                if not args.rebuild and any(t.startswith("lobster_") for t in store.db.table_names()):
                    # `replay export` wrote them; projecting more would leave them stale
                    print(f"lotex journal project: {db} holds the LOBSTER tables of `lotex replay "
                          f"export`, which projecting would leave stale: export it again, project "
                          f"into another --db, or --rebuild it (which drops them)", file=sys.stderr)
                    return 2
                journal = CountingJournal(Journal.open_readonly(path), "projecting")
                try:
                    added = store.rebuild(journal) if args.rebuild else store.update(journal)
                finally:
                    journal.finish()
                print(f"projected {added} entries into {db} (up to seq {store.last_seq})")
        except (StoreMismatch, StoreBusy) as exc:
            print(f"lotex journal project: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:       # the batch being written is rolled back
            print(f"lotex journal project: interrupted; {db} holds what was projected before",
                  file=sys.stderr)
            return 130
        except (sqlite3.Error, OSError) as exc:
            if isinstance(exc, FileNotFoundError) and not path.is_dir():
                raise
            print(f"lotex journal project: cannot use {db} as an analyst store: {exc}",
                  file=sys.stderr)
            return 2
        return 0
    return _run("project", args, project)
