"""The gateway's commands: `lotex keys`, `lotex op` (subcommands and command
files, idempotent when a file is sent twice) and `lotex watch --once`,
against a real server on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from gateway.cli import main
from gateway.keys import KeyStore
from tests.integration.gateway_harness import running

SESSION_FILE = """
# a session, a display rate and two parties of b1
[[command]]
type = "CreateSession"
session = "OT-2017"
name = "HP patents"
starts_at = "2020-01-01T09:00:00"
ends_at = "2040-01-04T17:00:00+08:00"

[[command]]
type = "SetDisplayRate"
base = "USD"
quote = "CNY"
num = 6640
den = 1000

[[command]]
type = "RegisterParty"
name = "Acme Research"
country = "US"
broker = "b1"

[[command]]
type = "RegisterParty"
name = "Shenzhen Optics"
country = "CN"
broker = "b1"
"""


def lot_file(seller: int) -> str:
    return json.dumps({"command": [{
        "type": "CreateLot", "serial": "OT-2017-001", "session": "OT-2017", "seller": seller,
        "reserve": 9_000_000,
        "terms": {"title": "Printing portfolio 1", "mechanism": "english",
                  "starting_bid": 3_000_000, "opens_at": "now", "closes_at": "+2h",
                  "soft_window": "5m", "soft_extend": "5m", "hard_end": "+3h",
                  "display_currency": "CNY",
                  "patents": [{"number": "US7000001", "title": "Inkjet nozzle array"}]},
    }]})


def test_keys_commands(tmp_path, capsys):
    assert main(["keys", "--data", str(tmp_path), "init", "--defaults"]) == 0
    assert main(["keys", "--data", str(tmp_path), "add", "b9", "--role", "broker",
                 "--client", "Cobalt Labs", "--client", "Lab [/b] X",
                 "--cancel-on-disconnect"]) == 0
    assert (tmp_path / "clients" / "b9.json").exists()
    assert main(["keys", "--data", str(tmp_path), "add", "b9", "--role", "broker"]) == 1
    assert main(["keys", "--data", str(tmp_path), "add", "Bad Name", "--role", "broker"]) == 1
    assert main(["keys", "--data", str(tmp_path), "revoke", "b9"]) == 0
    capsys.readouterr()
    assert main(["keys", "--data", str(tmp_path), "list"]) == 0
    listing = capsys.readouterr().out
    assert "b9" in listing and "revoked" in listing and "Cobalt Labs" in listing
    assert "Lab [/b] X" in listing                    # printed as text, not rich markup
    assert "viewer" in listing and "operator" in listing
    users = KeyStore(tmp_path).users()
    assert users["b9"].revoked and users["b9"].cancel_on_disconnect
    assert (tmp_path / "clients" / "b9.json").stat().st_mode & 0o077 == 0


def test_op_console_and_watch(tmp_path, capsys):
    with running(tmp_path):
        data = str(tmp_path)
        sessions = tmp_path / "session.toml"
        sessions.write_text(SESSION_FILE)
        assert main(["op", "--data", data, "send", str(sessions)]) == 0
        first = capsys.readouterr().out
        assert "CreateSession" in first and "accepted" in first
        # sending the same file again acts once: every command answers "sent before"
        assert main(["op", "--data", data, "send", str(sessions)]) == 0
        assert capsys.readouterr().out.count("sent before") == 4
        relative = tmp_path / "relative.toml"
        relative.write_text('[[command]]\ntype = "CreateSession"\nsession = "R1"\n'
                            'name = "r"\nends_at = "+1h"\n')
        assert main(["op", "--data", data, "send", str(relative)]) == 0
        assert main(["op", "--data", data, "send", str(relative)]) == 0
        assert "already sent" in capsys.readouterr().out

        acme, optics = 3, 4                # party ids are the seqs of their registrations
        for party in (acme, optics):
            assert main(["op", "--data", data, "party", "approve", str(party),
                         "--limit", "100000000", "--agreement", "BRA-2017"]) == 0
            assert main(["op", "--data", data, "paddle", "issue", "OT-2017", str(party)]) == 0
        lots = tmp_path / "lots.json"
        lots.write_text(lot_file(seller=optics))
        assert main(["op", "--data", data, "lot", "create", str(lots), "--vet-score", "85"]) == 0
        assert main(["op", "--data", data, "lot", "schedule", "OT-2017-001"]) == 0
        out = capsys.readouterr().out
        assert "LotScheduled" in out or "ScheduleLot" in out

        # a business reject makes the console exit 1 with the reason
        assert main(["op", "--data", data, "paddle", "issue", "OT-2017", str(acme)]) == 1
        assert "paddle_exists" in capsys.readouterr().out
        assert main(["op", "--data", data, "reload"]) == 0
        assert "4 active users" in capsys.readouterr().out

        assert main(["watch", "--data", data, "--session", "OT-2017", "--once"]) == 0
        board = capsys.readouterr().out
        assert "OT-2017-001" in board and "Printing portfolio 1" in board and "open" in board
        assert "30,000.00 USD" in board

        # the operator extends the open lot after an outage and posts a notice
        assert main(["op", "--data", data, "lot", "extend", "OT-2017-001", "--closes", "+4h",
                     "--reason", "gateway outage 10:02-10:40"]) == 0
        assert main(["op", "--data", data, "lot", "extend", "OT-2017-001", "--closes", "+1h",
                     "--reason", "earlier"]) == 1
        assert "bad_field" in capsys.readouterr().out
        assert main(["op", "--data", data, "notice", "OT-2017", "patent 2 of the lot lapsed",
                     "--lot", "OT-2017-001"]) == 0
        assert main(["watch", "--data", data, "--session", "OT-2017", "--once"]) == 0
        board = capsys.readouterr().out
        assert "saleroom notices" in board and "gateway outage 10:02-10:40" in board
        assert "patent 2 of the lot lapsed" in board and "3h 59m" in board

        # a continuous book from the console: created with a limit, limit changed, closed
        assert main(["op", "--data", data, "instrument", "create", "OT-2017", "ULR-1",
                     "--max-orders", "3"]) == 0
        assert main(["op", "--data", data, "instrument", "issue-units", "OT-2017", "ULR-1",
                     "101", "500"]) == 0
        assert main(["op", "--data", data, "instrument", "limit", "OT-2017", "ULR-1",
                     "5"]) == 0
        assert main(["op", "--data", data, "instrument", "rules", "OT-2017", "ULR-1",
                     "--tick", "5", "--band-bp", "1000"]) == 0
        assert main(["op", "--data", data, "instrument", "halt", "OT-2017", "ULR-1",
                     "court order pending"]) == 0
        before = capsys.readouterr().out
        assert main(["watch", "--data", data, "--session", "OT-2017", "--once"]) == 0
        assert "halted: court order pending" in capsys.readouterr().out
        assert main(["op", "--data", data, "instrument", "halt", "OT-2017", "ULR-1",
                     "again"]) == 1
        assert "wrong_phase" in capsys.readouterr().out
        assert main(["op", "--data", data, "instrument", "resume", "OT-2017", "ULR-1",
                     "--call"]) == 0
        assert main(["op", "--data", data, "instrument", "uncross", "OT-2017", "ULR-1",
                     "--reference", "100"]) == 0
        assert main(["op", "--data", data, "instrument", "call", "OT-2017", "ULR-1"]) == 0
        assert main(["op", "--data", data, "instrument", "uncross", "OT-2017", "ULR-1",
                     "--reference", "100"]) == 0
        # a liquidity provider: appointed, reported on, and reported for the last time
        # when the book closes
        assert main(["op", "--data", data, "lp", "appoint", "OT-2017", "ULR-1", "101",
                     "--max-spread", "10", "--min-qty", "5", "--presence", "92.5"]) == 0
        assert "LiquidityProviderAppointed" in capsys.readouterr().out
        assert main(["op", "--data", data, "lp", "appoint", "OT-2017", "ULR-1", "101",
                     "--max-spread", "10", "--min-qty", "5", "--presence", "90"]) == 1
        assert "provider_exists" in capsys.readouterr().out
        assert main(["op", "--data", data, "lp", "report", "OT-2017", "ULR-1", "--reset"]) == 0
        assert "LiquidityReport" in capsys.readouterr().out
        with pytest.raises(SystemExit):           # argparse: usage, exit 2
            main(["op", "--data", data, "lp", "appoint", "OT-2017", "ULR-1", "102",
                  "--max-spread", "10", "--min-qty", "5", "--presence", "9.999"])
        assert "not a percentage" in capsys.readouterr().err
        assert main(["op", "--data", data, "instrument", "close", "OT-2017", "ULR-1"]) == 0
        closing = capsys.readouterr().out
        assert "LiquidityReport" in closing
        out = before + closing
        for event in ("InstrumentCreated", "UnitsIssued", "OrderLimitSet", "PriceRulesSet",
                      "PhaseChanged", "TradingHalted"):
            assert event in out, event
        assert main(["op", "--data", data, "instrument", "limit", "OT-2017", "ULR-1",
                     "-1"]) == 1
        assert "instrument_closed" in capsys.readouterr().out

        # a file with an invalid command is refused before anything is sent
        broken = tmp_path / "broken.toml"
        broken.write_text('[[command]]\ntype = "CreateSession"\nsession = 5\nname = "x"\n')
        assert main(["op", "--data", data, "send", str(broken)]) == 2
        assert "command 1" in capsys.readouterr().err


def test_command_files_hold_one_command_a_list_or_a_list_under_command(tmp_path):
    from exchange.commands import CreateSession
    from gateway.console import load_commands
    one = tmp_path / "one.json"
    one.write_text('{"type": "CreateSession", "session": "S", "name": "x"}')
    many = tmp_path / "many.json"
    many.write_text('[{"type": "CreateSession", "session": "S", "name": "x"}]')
    table = tmp_path / "table.toml"
    table.write_text('[[command]]\ntype = "CreateSession"\nsession = "S"\nname = "x"\n')
    for path in (one, many, table):
        assert load_commands(path, now=0) == [CreateSession(session="S", name="x")]
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"type": "NoSuchCommand"}')
    with pytest.raises(ValueError, match="command 1: Invalid value 'NoSuchCommand'"):
        load_commands(unknown, now=0)
    shapeless = tmp_path / "shapeless.json"
    shapeless.write_text('{"session": "S"}')
    with pytest.raises(ValueError, match="expected one command"):
        load_commands(shapeless, now=0)
