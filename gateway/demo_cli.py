"""``lotex demo``: start an exchange on a temporary directory and run a whole
OTBA-style session through the real gateway with simulated brokers."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run a whole auction session on a demo exchange",
        description="Start `lotex serve` on a new data directory, then run a whole "
                    "OTBA-style session through the gateway: 1,070 patents in 45 lots, "
                    "every mechanism, a reverse tender and a unit-licence book, with "
                    "simulated brokers. Prints the results and where the journal is.")
    parser.add_argument("--data", metavar="DIR",
                        help="data directory (default: a new temporary directory)")
    parser.add_argument("--seed", type=int, default=2017, help="the simulation's seed")
    parser.add_argument("--in-process", action="store_true",
                        help="run the engine in this process, on simulated time, without "
                             "the gateway or a journal")
    parser.set_defaults(run=run_demo)


class Terminated(BaseException):
    """SIGTERM arrived: raised where the demo is, so that it stops its server."""


def _terminate_raises() -> Any:
    """Make SIGTERM raise `Terminated` (in the main thread only); return the
    handler it replaces, or None if it was not replaced."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated()
    return signal.signal(signal.SIGTERM, terminated)


def run_demo(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from gateway.client import ClientError
    from gateway.demo import (DemoFailed, DemoRefused, DemoSession, GatewayVenue,
                              InProcessVenue, demo_dir_refusal)

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    say = lambda line: console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}")
    if args.in_process:
        venue = InProcessVenue()
        report = DemoSession(venue, seed=args.seed, say=say).run()
        print_report(console, report)
        return 0
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="lotex-demo-"))
    refusal = demo_dir_refusal(data)
    if refusal:
        print(f"lotex demo: {refusal}", file=sys.stderr)
        return 2
    previous = _terminate_raises()
    try:
        say(f"starting the exchange on {escape(str(data))}")
        venue = GatewayVenue(str(data))        # stops its server itself if it fails
        try:
            say("exchange up; brokers and operator logged on over CURVE")
            report = DemoSession(venue, seed=args.seed, say=say).run()
        finally:
            venue.close()
    except DemoRefused as exc:
        print(f"lotex demo: {exc}", file=sys.stderr)
        return 2
    except (DemoFailed, ClientError) as exc:
        print(f"lotex demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lotex demo: interrupted; the demo's exchange was stopped", file=sys.stderr)
        return 130
    except Terminated:
        print("lotex demo: terminated (SIGTERM); the demo's exchange was stopped",
              file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print_report(console, report)
    journal = data / "journal"
    console.print(f"journal: {journal}", markup=False)
    try:
        from recorder.journal import Journal
        reader = Journal.open_readonly(journal)
        console.print(f"journal head: {reader.last_seq} records, chain head {reader.head_hash}")
        reader.close()
    except (ImportError, AttributeError):
        pass
    console.print(f"replay it:   lotex replay results {data}", markup=False)
    console.print(f"audit it:    lotex replay check {data}", markup=False)
    return 0


def money(minor: int, currency: str = "USD") -> str:
    """Whole dollars without cents; CNY, converted at the display rate, always
    with its two decimals so that its column lines up."""
    symbol = {"USD": "$", "CNY": "¥"}.get(currency, currency + " ")
    if minor % 100 == 0 and currency == "USD":
        return f"{symbol}{minor // 100:,}"
    return f"{symbol}{minor // 100:,}.{minor % 100:02d}"


def print_report(console, report) -> None:
    from rich.table import Table

    table = Table(title="Results of session OT-2017", show_lines=False)
    for column, justify in (("lot", "left"), ("mechanism", "left"), ("outcome", "left"),
                            ("paddle", "right"), ("hammer", "right"), ("premium", "right"),
                            ("total due", "right"), ("net to seller", "right"),
                            ("total (CNY)", "right")):
        table.add_column(column, justify=justify)
    sold = passed = 0
    hammer_sum = total_sum = 0
    for row in report.lots:
        if "hammer" in row:
            sold += 1
            hammer_sum += row["hammer"]
            total_sum += row["total"]
            cny = money(row["display_total"], "CNY") if row.get("display_currency") else ""
            table.add_row(row["serial"], row["mechanism"], row["outcome"], str(row["paddle"]),
                          money(row["hammer"]), money(row["premium"]), money(row["total"]),
                          money(row["net"]), cny)
        else:
            passed += 1
            table.add_row(row["serial"], row["mechanism"], row["outcome"], "", "", "", "", "", "")
    console.print(table)
    console.print(f"{sold} lots sold, {passed} not sold; hammer total {money(hammer_sum)}, "
                  f"due from buyers {money(total_sum)}; unit-licence book: {report.trades} "
                  f"trades, {report.units_traded:,} units, {report.halts} trading halt "
                  f"reopened by a call auction; {len(report.rejected)} commands refused with "
                  f"a reason (late bids, credit limits, filled orders, the halt)")
    console.print(f"data rooms: {report.documents} documents listed; {report.ndas} NDAs "
                  f"signed, {report.documents_opened} documents opened by their signers; "
                  f"{report.valued} lots listed with the price range of an expert panel "
                  f"drawn at random")
    console.print(f"settlement: {report.settled} sales paid through escrow, delivered and "
                  f"released; {report.certificates} transaction certificates; "
                  f"{report.defaults} buyer default, {report.reawarded} lot re-awarded to the "
                  f"runner-up; {report.units_payers} buyers of units paid "
                  f"{money(report.units_paid)}, their credit released")
    lp = report.liquidity
    if lp is not None:
        console.print(f"liquidity provider paddle {lp.paddle} on the unit-licence book: "
                      f"quoted {lp.presence_bp / 100:.2f} % of the trading time against an "
                      f"obligation of {lp.required_bp / 100:.2f} %: "
                      f"{'met' if lp.met else 'not met'}")
