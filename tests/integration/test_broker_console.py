"""`lotex broker`: a broker bids, trades, cancels, registers a client, sends
a command file and reads its own private events, against a real server on
127.0.0.1 set up by the example sale."""

from __future__ import annotations

from pathlib import Path

from gateway.cli import main
from tests.integration.gateway_harness import running

EXAMPLE = Path(__file__).parents[2] / "examples" / "winter-sale.toml"
ACME, PHOTONICS, NORDLICHT = 101, 102, 103      # the example's paddles, in issue order


def broker(data: Path, user: str, *argv: str) -> int:
    return main(["broker", "--data", str(data), "--user", user, *argv])


def events_column(out: str) -> str:
    """Return the events column of a console's result table, its wrapped
    lines joined and its spaces taken out."""
    return "".join("".join(line.split("│")[-2].split()) for line in out.splitlines()
                   if line.startswith("│"))


def test_a_broker_works_its_clients_paddles_from_the_console(tmp_path, capsys):
    with running(tmp_path) as server:
        assert main(["op", "--data", str(tmp_path), "send", str(EXAMPLE)]) == 0
        capsys.readouterr()
        state = server.engine.state

        assert broker(tmp_path, "b1", "bid", "WS-001", str(ACME), "30000000") == 0
        events = events_column(capsys.readouterr().out)
        assert "BidAccepted(paddle=101,serial=WS-001,price=25000000,leader=101,reserve_met=False" \
            in events and "BidConfirmed(paddle=101,serial=WS-001,amount=30000000,leading=True" \
            in events
        # outbid at once by 101's proxy: the row says so
        assert broker(tmp_path, "b2", "bid", "WS-001", str(PHOTONICS), "28000000") == 0
        events = events_column(capsys.readouterr().out)
        assert state.lots["WS-001"].leader == ACME
        assert f"BidAccepted(paddle=102,serial=WS-001,price={state.lots['WS-001'].price}," \
               f"leader=101,reserve_met=" in events
        assert "BidConfirmed(paddle=102,serial=WS-001,amount=28000000,leading=False" in events

        # a paddle of another broker's client: refused, with the engine's reason
        assert broker(tmp_path, "b1", "bid", "WS-002", str(PHOTONICS), "10000000") == 1
        assert "not_your_paddle" in capsys.readouterr().out

        assert broker(tmp_path, "b2", "order", "WS-2026", "ULR-LENS", str(NORDLICHT), "1",
                      "sell", "100", "1500") == 0
        assert broker(tmp_path, "b1", "order", "WS-2026", "ULR-LENS", str(ACME), "7", "buy",
                      "40", "1600") == 0
        events = events_column(capsys.readouterr().out)
        assert "TradeExecuted(instrument=ULR-LENS,price=1500,qty=40,currency=USD)" in events
        assert "OrderFilled(paddle=101,party=4,instrument=ULR-LENS,price=1500,side=buy,qty=40," \
            "currency=USD)" in events
        assert broker(tmp_path, "b2", "cancel", "WS-2026", "ULR-LENS", str(NORDLICHT),
                      "1") == 0
        assert "OrderCancelled" in capsys.readouterr().out
        assert not state.books["ULR-LENS"].book.orders

        # times in refusals print as UTC ISO times, not ns
        assert broker(tmp_path, "b1", "order", "WS-2026", "ULR-LENS", str(ACME), "9", "buy",
                      "1", "1400", "--tif", "gtd", "--expires", "2020-01-01T00:00:00") == 1
        refused = capsys.readouterr().out
        assert "bad_expiry" in refused and "expiry 2020-01-01T00:00:00Z is not after" in refused

        assert broker(tmp_path, "b1", "register", "Acme Labs GmbH", "--country", "DE") == 0
        assert "PartyRegistered(party=" in capsys.readouterr().out
        orders = tmp_path / "orders.toml"
        orders.write_text('[[command]]\ntype = "PlaceOrder"\nsession = "WS-2026"\n'
                          'instrument = "ULR-LENS"\npaddle = 101\norder = 8\nside = "buy"\n'
                          'qty = 5\nprice = 1400\n')
        for sent in ("accepted", "accepted (sent before)"):
            assert broker(tmp_path, "b1", "send", str(orders)) == 0
            assert sent in capsys.readouterr().out
        assert len(state.books["ULR-LENS"].book.orders) == 1

        # b1's status: its resting order 8 and its credit; nothing of b2's
        assert broker(tmp_path, "b1", "status", "--session", "WS-2026") == 0
        status = capsys.readouterr().out
        assert "resting orders" in status and "ULR-LENS" in status and "1400" in status
        assert f"│ {ACME} " in status
        assert f"│ {NORDLICHT} " not in status and f"│ {PHOTONICS} " not in status
        assert main(["op", "--data", str(tmp_path), "status", "b1", "--session",
                     "WS-2026"]) == 0                  # an operator asks about b1
        assert capsys.readouterr().out == status

        # b1's own events: its bid, its fill, its new client; none of b2's
        assert broker(tmp_path, "b1", "events") == 0
        mine = capsys.readouterr().out
        for seen in ("BidConfirmed(serial=WS-001", "amount=30000000", "OrderFilled(",
                     "role=taker", "PartyRegistered(", "name=Acme Labs GmbH"):
            assert seen in mine, seen
        assert "amount=28000000" not in mine and "paddle=103" not in mine
        assert broker(tmp_path, "b2", "events") == 0
        theirs = capsys.readouterr().out
        assert "amount=28000000" in theirs and "amount=30000000" not in theirs


def test_the_broker_console_refuses_a_key_of_another_role(tmp_path, capsys):
    with running(tmp_path) as server:
        assert broker(tmp_path, "op", "bid", "X", "101", "1") == 2
        assert "role operator; this console needs a key of role broker" in \
            capsys.readouterr().err
        assert main(["op", "--data", str(tmp_path), "--user", "b1", "session", "create", "S",
                     "--name", "s"]) == 2
        assert "role broker; this console needs a key of role operator" in \
            capsys.readouterr().err
        assert server.next_seq == 1


def test_the_consoles_say_at_once_when_the_server_is_gone(tmp_path, capsys):
    import json
    import subprocess

    with running(tmp_path):
        pass                                   # keys, endpoints; the server has stopped
    dead = subprocess.Popen(["true"])
    dead.wait()
    endpoints = json.loads((tmp_path / "endpoints.json").read_text())
    (tmp_path / "endpoints.json").write_text(json.dumps({**endpoints, "pid": dead.pid}))
    for argv in (["broker", "--data", str(tmp_path), "events"],
                 ["op", "--data", str(tmp_path), "session", "create", "S", "--name", "s"],
                 ["watch", "--data", str(tmp_path), "--once"]):
        assert main(argv) == 1                 # before trying to connect: no 10 s wait
        assert f"no lotex serve is running for {tmp_path} (its process {dead.pid} has ended)" \
            in capsys.readouterr().err


def test_any_command_from_the_console_and_the_operators_own_events(tmp_path, capsys):
    with running(tmp_path) as server:
        data = str(tmp_path)
        assert main(["op", "--data", data, "do", "CreateSession", "session=D1",
                     "name=Done by hand"]) == 0
        assert main(["op", "--data", data, "do", "SetSettlementRules", "session=D1",
                     "payment_term=2d", "reaward_window=1d", "publicity_period=1h"]) == 0
        assert capsys.readouterr().out.count("│ accepted") == 2
        assert server.engine.state.sessions["D1"].name == "Done by hand"
        assert main(["op", "--data", data, "do", "CreateSession", "session=D2"]) == 2
        assert "CreateSession: Object missing required field `name`" in capsys.readouterr().err
        assert main(["op", "--data", data, "do", "NoSuchCommand"]) == 2
        assert main(["op", "--data", data, "do", "CreateSession", "name"]) == 2
        assert "give each field as name=value" in capsys.readouterr().err
        assert main(["broker", "--data", data, "do", "RegisterParty", "name=By Hand Ltd",
                     "country=GB"]) == 0
        assert "PartyRegistered(party=" in capsys.readouterr().out
        assert main(["op", "--data", data, "events"]) == 0
        seen = capsys.readouterr().out            # private to b1 and the operators
        assert "PartyRegistered(" in seen and "name=By Hand Ltd" in seen


def test_a_data_room_from_the_consoles(tmp_path, capsys):
    claims = tmp_path / "claims.pdf"
    claims.write_bytes(b"%PDF-1.7 claim charts of US7000001\n" * 100)
    other = tmp_path / "tampered.pdf"
    other.write_bytes(b"%PDF-1.7 something else\n")
    with running(tmp_path) as server:
        assert main(["op", "--data", str(tmp_path), "send", str(EXAMPLE)]) == 0
        capsys.readouterr()
        acme = server.engine.state.sessions["WS-2026"].paddles[ACME]
        # the seller's broker (b2) indexes a document; b1 may not
        assert broker(tmp_path, "b2", "room", "add", "WS-001", "claims.pdf", str(claims),
                      "--location", "vdr://winter-sale/WS-001/claims.pdf") == 0
        out = capsys.readouterr().out
        assert "DocumentAdded(serial=WS-001, name=claims.pdf, version=1" in out
        assert broker(tmp_path, "b1", "room", "add", "WS-001", "x.pdf", str(claims),
                      "--location", "vdr://x") == 1
        assert "not_permitted" in capsys.readouterr().out
        # anyone with a key sees the index (never a location) on the board
        assert main(["watch", "--data", str(tmp_path), "--lot", "WS-001", "--once"]) == 0
        board = capsys.readouterr().out
        assert "data room of WS-001" in board and "claims.pdf" in board
        assert "vdr://" not in board
        # Acme's broker: no NDA, no document; then the NDA, the document and its check
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims.pdf") == 1
        assert "nda_required" in capsys.readouterr().out
        assert broker(tmp_path, "b2", "room", "require", "WS-001", "OT-NDA-2026") == 0
        assert broker(tmp_path, "b1", "room", "nda", "WS-001", str(acme), "OT-NDA-2025") == 1
        assert "wrong_nda" in capsys.readouterr().out
        assert broker(tmp_path, "b1", "room", "nda", "WS-001", str(acme), "OT-NDA-2026") == 0
        assert f"NdaSigned(party={acme}, serial=WS-001, nda=OT-NDA-2026)" in \
            capsys.readouterr().out
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims.pdf",
                      "--verify", str(claims)) == 0
        out = capsys.readouterr().out
        assert "location=vdr://winter-sale/WS-001/claims.pdf" in out
        assert f"{claims} matches claims.pdf v1" in out.replace("\n", "")
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims.pdf",
                      "--verify", str(other)) == 1
        assert "does not match" in capsys.readouterr().out
        # b1's status lists its client's signature and openings
        assert broker(tmp_path, "b1", "status", "--session", "WS-2026") == 0
        status = capsys.readouterr().out
        assert "data rooms" in status and "OT-NDA-2026" in status
        # a --verify file that cannot be read stops the opening before it is sent
        state = server.engine.state
        journaled = state.last_seq
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims.pdf",
                      "--verify", str(tmp_path / "typo.pdf")) == 2
        assert "typo.pdf" in capsys.readouterr().err and state.last_seq == journaled
        # names and locations are shown as sent, never read as console markup
        assert broker(tmp_path, "b2", "room", "add", "WS-001", "claims[/].pdf", str(claims),
                      "--location", "s3://vdr/[b]WS-001[/b]/c.pdf") == 0
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims[/].pdf",
                      "--verify", str(claims)) == 0
        out = capsys.readouterr().out.replace("\n", "")
        assert "s3://vdr/[b]WS-001[/b]/c.pdf" in out and "matches claims[/].pdf v1" in out
        # an operator takes the document out; it is released to no one after
        assert main(["op", "--data", str(tmp_path), "room", "remove", "WS-001",
                     "claims.pdf"]) == 0
        capsys.readouterr()
        assert broker(tmp_path, "b1", "room", "open", "WS-001", str(acme), "claims.pdf") == 1
        assert "unknown_document" in capsys.readouterr().out


def test_a_pricing_panel_from_the_operators_console(tmp_path, capsys):
    from exchange import pricing

    def op(*argv: str) -> int:
        return main(["op", "--data", str(tmp_path), *argv])

    with running(tmp_path) as server:
        assert op("send", str(EXAMPLE)) == 0
        state = server.engine.state
        seller = state.lots["WS-001"].seller
        assert op("do", "CreateLot", "serial=WS-009", "session=WS-2026", f"seller={seller}",
                  'terms={"title": "Optics family, valued before listing", '
                  '"starting_bid": 3000000}') == 0
        for name in ("Dr. Li Wei", "Prof. Anna Berg", "Dr. [b]Okafor[/b]", "Dr. Sato"):
            assert op("expert", "register", name, "--field", "optics") == 0
        assert op("expert", "register", "Dr. Ruiz", "--field", "printing") == 0
        out = capsys.readouterr().out
        assert "ExpertRegistered(name=Dr. [b]Okafor[/b]" in out.replace("\n", "")
        assert op("panel", "draw", "WS-009", "--size", "3", "--field", "optics") == 0
        assert "PanelDrawn(serial=WS-009, round=1, experts=" in capsys.readouterr().out
        panel = pricing.pool(state).panels["WS-009"].experts
        printing = [e.id for e in pricing.pool(state).experts.values() if "printing" in e.fields]
        assert not set(panel) & set(printing)
        assert op("panel", "publish", "WS-009") == 1
        assert "too_few_valuations" in capsys.readouterr().out
        for expert, low, high in zip(panel, (40_000_00, 55_000_00, 35_000_00),
                                     (90_000_00, 80_000_00, 60_000_00)):
            assert op("panel", "value", "WS-009", str(expert), str(low), str(high)) == 0
        capsys.readouterr()
        assert op("panel", "publish", "WS-009") == 0
        out = capsys.readouterr().out
        assert "PriceRangePublished(serial=WS-009" in out
        assert "low=4000000, high=8000000, valuations=3" in out
        assert op("expert", "retire", str(printing[0])) == 0
        assert op("expert", "retire", str(printing[0])) == 1
        assert "unknown_expert" in capsys.readouterr().out
        # brokers have no say in pricing
        assert broker(tmp_path, "b2", "do", "DrawPanel", "serial=WS-009", "size=1") == 1
        assert "not_permitted" in capsys.readouterr().out


def test_a_number_beyond_64_bits_is_one_line_not_a_traceback(tmp_path, capsys):
    with running(tmp_path):
        assert main(["op", "--data", str(tmp_path), "do", "RetireExpert",
                     f"expert={10**30}"]) == 2          # a command that does not parse
        err = capsys.readouterr().err
        assert "cannot send RetireExpert" in err and "Traceback" not in err
        assert main(["op", "--data", str(tmp_path), "expert", "register", "Dr. Li"]) == 0


def test_after_no_answer_in_time_the_same_command_with_its_client_id_acts_once(
        tmp_path, capsys, monkeypatch):
    import re

    from gateway.client import Client, ResultTimeout

    real_result = Client.result

    def answer_lost(self: Client, cid: str, timeout: float | None = None) -> object:
        self.poll(0.5)                              # it reaches the server and acts ...
        raise ResultTimeout(cid)                    # ... but no answer comes in time

    with running(tmp_path) as server:
        monkeypatch.setattr(Client, "result", answer_lost)
        assert broker(tmp_path, "b1", "register", "Acme Research") == 1
        monkeypatch.setattr(Client, "result", real_result)
        out, err = capsys.readouterr()
        assert "no answer in time: outcome unknown" in out
        line, = [line for line in err.splitlines() if line.startswith("lotex broker:")]
        assert line.startswith("lotex broker: no answer in time to RegisterParty") and \
            "may have acted" in line
        cid = re.search(r"--client-id (\S+):", line).group(1)
        entries = server.next_seq
        assert broker(tmp_path, "b1", "--client-id", cid, "register", "Acme Research") == 0
        assert "accepted (sent before)" in capsys.readouterr().out
        assert server.next_seq == entries
        assert [p.name for p in server.engine.state.parties.values()] == ["Acme Research"]


def test_a_client_id_is_for_one_command_given_on_the_command_line(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[command]]\ntype = "RegisterParty"\nname = "A"\n')
    with running(tmp_path) as server:
        assert broker(tmp_path, "b1", "--client-id", "x-1", "send", str(plan)) == 2
        assert "a file's commands take their ids from the file" in capsys.readouterr().err
        assert broker(tmp_path, "b1", "--client-id", "x 1", "register", "A") == 2
        assert "no spaces" in capsys.readouterr().err
        assert broker(tmp_path, "b1", "--client-id", "x-1", "status") == 2
        assert server.next_seq == 1
        assert broker(tmp_path, "b1", "--client-id", "x-1", "register", "A") == 0
        assert broker(tmp_path, "b1", "--client-id", "x-1", "register", "B") == 1
        assert "client id x-1 was used today for another command" in capsys.readouterr().out
        assert server.next_seq == 2


LOT_NOT_YET_OPEN = """
[[command]]
type = "CreateLot"
serial = "WS-011"
session = "WS-2026"
seller = 3
[command.terms]
title = "Retry lot"
mechanism = "english"
starting_bid = 1_000_000
opens_at = "+1h"
closes_at = "+2h"
patents = [ { number = "US2222222", title = "y" } ]
[[command]]
type = "VetLot"
serial = "WS-011"
score = 70
approved = true
[[command]]
type = "ScheduleLot"
serial = "WS-011"
"""

BID = '[[command]]\ntype = "PlaceBid"\nserial = "WS-011"\npaddle = 101\namount = 1000000\n'


def test_a_bid_file_sent_until_its_lot_opens_acts_once_it_may(tmp_path, capsys):
    lot, bid = tmp_path / "lot.toml", tmp_path / "bid.toml"
    lot.write_text(LOT_NOT_YET_OPEN)
    bid.write_text(BID)
    with running(tmp_path) as server:
        assert main(["op", "--data", str(tmp_path), "send", str(EXAMPLE), str(lot)]) == 0
        for _ in range(25):                     # more sendings than the old bound of 21
            assert broker(tmp_path, "b1", "send", str(bid)) == 1
            assert "lot_not_open" in capsys.readouterr().out
        assert main(["op", "--data", str(tmp_path), "lot", "open", "WS-011", "--closes",
                     "+20m"]) == 0
        capsys.readouterr()
        assert broker(tmp_path, "b1", "send", str(bid)) == 0
        out = capsys.readouterr().out
        assert "accepted" in out and "sent before" not in out
        assert broker(tmp_path, "b1", "send", str(bid)) == 0       # acted: never twice
        assert "accepted (sent before)" in capsys.readouterr().out
        assert server.engine.state.lots["WS-011"].bids == 1


def test_a_file_command_refused_at_every_sending_it_may_have_says_to_send_it_fresh(
        tmp_path, capsys, monkeypatch):
    from gateway import console_cli
    monkeypatch.setattr(console_cli, "RETRIES", 2)
    lot, bid = tmp_path / "lot.toml", tmp_path / "bid.toml"
    lot.write_text(LOT_NOT_YET_OPEN)
    bid.write_text(BID)
    with running(tmp_path) as server:
        assert main(["op", "--data", str(tmp_path), "send", str(EXAMPLE), str(lot)]) == 0
        for _ in range(3):
            assert broker(tmp_path, "b1", "send", str(bid)) == 1
        capsys.readouterr()
        assert main(["op", "--data", str(tmp_path), "lot", "open", "WS-011", "--closes",
                     "+20m"]) == 0
        entries = server.next_seq
        assert broker(tmp_path, "b1", "send", str(bid)) == 1
        out = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert "refused at each of its 3 sendings today" in out and "--fresh" in out
        assert server.next_seq == entries
        assert broker(tmp_path, "b1", "send", "--fresh", str(bid)) == 0
        assert server.engine.state.lots["WS-011"].bids == 1
