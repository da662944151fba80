"""`lotex op send` with command files that name parties and paddles
(``as`` / ``"@name"``), resent after a mend: the shipped example sale, and
what a file may not do, against a real server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.console import load_steps
from tests.integration.gateway_harness import client, running

EXAMPLE = Path(__file__).parents[2] / "examples" / "winter-sale.toml"


def send(data: Path, *files: Path, keep_going: bool = False) -> int:
    argv = ["op", "--data", str(data), "send", *map(str, files)]
    return main(argv + (["--keep-going"] if keep_going else []))


def test_the_example_sale_sets_up_a_whole_session_and_acts_once(tmp_path, capsys):
    with running(tmp_path) as server:
        assert send(tmp_path, EXAMPLE) == 0
        out = capsys.readouterr().out
        state = server.engine.state
        parties = {p.name: p.id for p in state.parties.values()}
        acme, nordlicht = parties["Acme Research"], parties["Nordlicht Optics GmbH"]
        assert f"PaddleIssued(paddle=101, party={acme})" in out
        assert state.lots["WS-001"].seller == nordlicht
        assert {serial: lot.status for serial, lot in state.lots.items()} == {
            "WS-001": "open", "WS-002": "open", "WS-003": "open"}
        entries = server.next_seq

        # sent again: nothing acts twice; the lines with relative times say so
        assert send(tmp_path, EXAMPLE) == 0
        out = capsys.readouterr().out
        assert out.count("(sent before)") == 19 and out.count("already sent today") == 4
        assert server.next_seq == entries

        # a broker bids with the paddle the file issued to its client
        with client(tmp_path, "b1") as b1:
            from exchange.commands import PlaceBid
            assert b1.ok(PlaceBid(serial="WS-001", paddle=101, amount=30_000_000)).accepted

        assert main(["watch", "--data", str(tmp_path), "--session", "WS-2026", "--once"]) == 0
        board = capsys.readouterr().out
        assert "Free-form lens moulding" in board and "ULR-LENS" in board


REFUSED_PADDLE = """
[[command]]
type = "CreateSession"
session = "S1"
name = "s"

[[command]]
type = "RegisterParty"
name = "Acme"
broker = "b1"
as = "acme"
{review}
[[command]]
type = "IssuePaddle"
session = "S1"
party = "@acme"
as = "acme-paddle"

[[command]]
type = "CreateInstrument"
session = "S1"
instrument = "U1"

[[command]]
type = "IssueUnits"
session = "S1"
instrument = "U1"
paddle = "@acme-paddle"
qty = 10
"""

REVIEW = """
[[command]]
type = "ReviewCredit"
party = "@acme"
approved = true
credit_limit = 1000
agreement_version = "v1"
"""


def test_a_mended_file_sent_again_acts_only_where_it_did_not_before(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    with running(tmp_path) as server:
        plan.write_text(REFUSED_PADDLE.format(review=""))
        assert send(tmp_path, plan, keep_going=True) == 1
        out = capsys.readouterr().out
        assert "party_not_approved" in out
        assert "not sent" in out and "@acme-paddle stands for nothing" in out
        assert not server.engine.state.sessions["S1"].paddles

        plan.write_text(REFUSED_PADDLE.format(review=REVIEW))      # the mend
        for _ in range(3):                 # then sent twice more: no paddle, no units twice
            assert send(tmp_path, plan) == 0
            capsys.readouterr()
            state = server.engine.state
            assert len(state.sessions["S1"].paddles) == 1
            assert sum(state.books["U1"].holdings.values()) == 10


@pytest.mark.parametrize("body, reason", [
    ('[[command]]\ntype = "IssuePaddle"\nsession = "S"\nparty = "@nobody"\n',
     "@nobody is not named by an earlier command"),
    ('[[command]]\ntype = "CreateSession"\nsession = "S"\nname = "s"\nas = "s"\n',
     "only RegisterParty and IssuePaddle may name what they create"),
    ('[[command]]\ntype = "RegisterParty"\nname = "A"\nas = "a"\n' * 2, "'a': named twice"),
    ('[[command]]\ntype = "RegisterParty"\nname = "A"\nas = "a b"\n', "a name is 1-64"),
    ('[[command]]\ntype = "RegisterParty"\nname = "A"\nas = "a"\n'
     '[[command]]\ntype = "ReviewCredit"\nparty = "@a"\napproved = "yes"\n',
     "command 2: Expected `bool`"),
])
def test_a_file_that_names_wrongly_is_refused_before_anything_is_sent(tmp_path, capsys, body,
                                                                       reason):
    plan = tmp_path / "plan.toml"
    plan.write_text(body)
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        load_steps(plan, now=0)
    with running(tmp_path) as server:
        assert send(tmp_path, plan) == 2
        assert reason in capsys.readouterr().err
        assert server.next_seq == 1


def test_names_carry_from_one_file_to_the_next_of_the_same_sending(tmp_path, capsys):
    first, second = tmp_path / "a.toml", tmp_path / "b.toml"
    first.write_text('[[command]]\ntype = "RegisterParty"\nname = "A"\nbroker = "b1"\n'
                     'as = "a"\n')
    second.write_text('[[command]]\ntype = "ReviewCredit"\nparty = "@a"\napproved = false\n')
    with running(tmp_path) as server:
        assert send(tmp_path, first, second) == 0
        (party,) = server.engine.state.parties.values()
        assert f"CreditReviewed(party={party.id}, currency=USD)" in capsys.readouterr().out


def test_settlement_terms_take_human_durations_and_a_bad_file_names_itself(tmp_path):
    from exchange.commands import ExtendDueDate, SetSettlementRules
    rules = tmp_path / "rules.toml"
    rules.write_text('[[command]]\ntype = "SetSettlementRules"\nsession = "S1"\n'
                     'payment_term = "2d"\nreaward_window = "12h"\npublicity_period = "30m"\n'
                     '[[command]]\ntype = "ExtendDueDate"\nsettlement = 3\ndue_at = "+1h"\n')
    (terms, extend) = [step.preview for step in load_steps(rules, now=10**18)]
    assert terms == SetSettlementRules(session="S1", payment_term=2 * 86_400 * 10**9,
                                       reaward_window=12 * 3_600 * 10**9,
                                       publicity_period=30 * 60 * 10**9)
    assert extend == ExtendDueDate(settlement=3, due_at=10**18 + 3_600 * 10**9)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[command\n")
    with pytest.raises(ValueError, match="broken.toml: "):
        load_steps(broken, now=0)


REFUSED_MIDWAY = """
[[command]]
type = "CreateSession"
session = "S1"
name = "s"

[[command]]
type = "PostNotice"
session = "S1"
text = "first"

[[command]]
type = "Tick"

[[command]]
type = "PostNotice"
session = "S1"
text = "after the tick"
"""


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_refusal_by_the_gateway_midway_keeps_the_table_of_what_was_done(
        tmp_path, capsys, keep_going):
    plan = tmp_path / "plan.toml"
    plan.write_text(REFUSED_MIDWAY)
    with running(tmp_path) as server:
        assert send(tmp_path, plan, keep_going=keep_going) == 1
        out = capsys.readouterr().out
        assert "refused by the gateway" in out and "not_permitted" in out
        assert out.count("│ accepted") == (3 if keep_going else 2)
        assert ("PostNotice" in out.split("not_permitted")[1]) is keep_going
        assert server.next_seq == (4 if keep_going else 3)


def test_a_command_no_message_can_carry_is_refused_before_anything_is_sent(tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    plan.write_text('[[command]]\ntype = "CreateSession"\nsession = "S1"\nname = "s"\n\n'
                    '[[command]]\ntype = "CreateSession"\nsession = "S2"\nname = "t"\n'
                    'ends_at = "+99999999999d"\n')
    with running(tmp_path) as server:
        assert send(tmp_path, plan) == 2
        err = capsys.readouterr().err
        assert "command 2: cannot send CreateSession" in err and "Traceback" not in err
        assert server.next_seq == 1


def test_ctrl_c_midway_keeps_the_table_of_what_was_done(tmp_path, capsys, monkeypatch):
    from gateway.client import Client

    plan = tmp_path / "plan.toml"
    plan.write_text(REFUSED_MIDWAY)
    real_result = Client.result
    calls = []

    def interrupted_at_the_second(self: Client, cid: str, timeout: float | None = None) -> object:
        calls.append(cid)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_result(self, cid, timeout)

    with running(tmp_path):
        monkeypatch.setattr(Client, "result", interrupted_at_the_second)
        assert send(tmp_path, plan) == 130
        out, err = capsys.readouterr()
        assert out.count("│ accepted") == 1 and "interrupted: outcome unknown" in out
        assert "lotex op: interrupted" in err and "Traceback" not in err


TEMPLATE = """
[[command]]
type = "CreateSession"
session = "TM-1"
name = "Template"

[[command]]
type = "RegisterParty"
name = "{name}"
broker = "b1"
as = "bidder"

[[command]]
type = "ReviewCredit"
party = "@bidder"
approved = true
credit_limit = 100_000_000
agreement_version = "BRA"

[[command]]
type = "IssuePaddle"
session = "TM-1"
party = "@bidder"
as = "paddle"
"""


def test_a_template_sent_again_for_another_party_acts_for_it_and_each_at_most_once(
        tmp_path, capsys):
    plan = tmp_path / "plan.toml"
    with running(tmp_path) as server:
        for name in ("Foo Labs", "Bar Optics"):       # the same file, another party
            plan.write_text(TEMPLATE.format(name=name))
            assert send(tmp_path, plan) == 0
            assert "already sent" not in capsys.readouterr().out
        state = server.engine.state
        parties = {p.name: p.id for p in state.parties.values()}
        assert set(parties) == {"Foo Labs", "Bar Optics"}
        assert all(p.approved for p in state.parties.values())
        assert sorted(state.sessions["TM-1"].paddles.values()) == sorted(parties.values())
        entries = server.next_seq
        for name in ("Foo Labs", "Bar Optics", "Foo Labs"):   # resent unchanged: nothing acts
            plan.write_text(TEMPLATE.format(name=name))
            assert send(tmp_path, plan) == 0
            assert capsys.readouterr().out.count("(sent before)") == 4
        assert server.next_seq == entries


def test_a_client_id_used_for_another_command_is_a_failure_that_says_so(tmp_path, capsys):
    from exchange.commands import PostNotice
    from gateway.console import client_ids

    plan = tmp_path / "plan.toml"
    plan.write_text('[[command]]\ntype = "CreateSession"\nsession = "S1"\nname = "s"\n')
    (cid,) = client_ids(load_steps(plan, now=0))
    with running(tmp_path) as server:
        with client(tmp_path, "op") as op:
            assert not op.request(PostNotice(session="S9", text="x"), cid).accepted
        assert send(tmp_path, plan) == 1
        out = capsys.readouterr().out
        assert "already sent" not in out
        assert "not sent" in out and "used today for a different command" in out
        assert "S1" not in server.engine.state.sessions


@pytest.mark.parametrize("body, reason", [
    ('[[command]]\ntype = "CreateSession"\nsession = "A"\nname = "a"\n'
     '[[commands]]\ntype = "CreateSession"\nsession = "B"\nname = "b"\n',
     "give one list of commands, under \"command\" or \"commands\", not both"),
    ('title = "spring"\n[[command]]\ntype = "CreateSession"\nsession = "A"\nname = "a"\n',
     "unknown top-level key 'title'"),
    ('[[commands]]\ntype = "CreateSession"\nsession = "A"\nname = "a"\n[[comand]]\ntype = "x"\n',
     "unknown top-level key 'comand'"),
])
def test_a_file_with_other_top_level_keys_than_its_list_of_commands_is_refused(tmp_path, body,
                                                                               reason):
    plan = tmp_path / "plan.toml"
    plan.write_text(body)
    with pytest.raises(ValueError, match=reason):
        load_steps(plan, now=0)


def test_files_are_read_as_people_save_them(tmp_path):
    from exchange.commands import CreateSession
    body = '[[command]]\ntype = "CreateSession"\nsession = "S"\nname = "München"\n'
    wanted = [CreateSession(session="S", name="München")]
    bom = tmp_path / "notepad.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + body.encode())          # UTF-8 with a BOM
    upper = tmp_path / "Winter.TOML"
    upper.write_text(body, encoding="utf-8")
    bom_json = tmp_path / "notepad.JSON"
    bom_json.write_bytes(b"\xef\xbb\xbf" + b'[{"type": "CreateSession", "session": "S", '
                         b'"name": "M\\u00fcnchen"}]')
    for path in (bom, upper, bom_json):
        assert [step.preview for step in load_steps(path, now=0)] == wanted
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes(body.encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.toml: not UTF-8 text .*byte 0xfc"):
        load_steps(latin1, now=0)


def test_a_bad_time_deep_in_a_command_names_its_field(tmp_path):
    import json
    patents = [{"number": f"US{k}", "title": "p",
                "priority_date": "2015-02-30" if k == 537 else "2015-02-01"} for k in range(1000)]
    plan = tmp_path / "lots.json"
    plan.write_text(json.dumps([{"type": "CreateLot", "serial": "X", "session": "S",
                                 "seller": 3, "terms": {"title": "t", "patents": patents}},
                                {"type": "SetSettlementRules", "session": "S",
                                 "payment_term": "2 days"}]))
    with pytest.raises(ValueError, match=r"lots.json: command 1: day is out of range for "
                                         r"month - at `\$\.terms\.patents\[537\]\."
                                         r"priority_date`"):
        load_steps(plan, now=0)
    plan.write_text(json.dumps([{"type": "SetSettlementRules", "session": "S",
                                 "payment_term": "2 days"}]))
    with pytest.raises(ValueError, match=r"command 1: '2 days' is not a duration .* - at "
                                         r"`\$\.payment_term`"):
        load_steps(plan, now=0)


@pytest.mark.parametrize("name", [0, "", False, ["a"], "a\n"])
def test_a_name_that_is_not_one_is_refused(tmp_path, name):
    import json
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps([{"type": "RegisterParty", "name": "A", "as": name}]))
    with pytest.raises(ValueError, match="a name is 1-64"):
        load_steps(plan, now=0)
