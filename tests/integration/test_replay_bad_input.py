"""Bad input to `lotex replay` and `lotex whatif`: one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zmq

from gateway.cli import main
from gateway.keys import initialise
from replay.sample import OPEN, record_sample
from replay.source import ReplayError, parse_time

EBAY = Path(__file__).resolve().parent.parent / "data" / "ebay-auctions" / "auction.csv"


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("sample")
    record_sample(data)
    initialise(data)
    return data


def refused(capsys, args, says, code=2):
    """Run ``lotex ARGS``; it must exit ``code`` with one line saying ``says``."""
    assert main(args) == code, args
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert says in err, err


def test_export_targets_that_cannot_be_written(sample_dir, tmp_path, capsys):
    export = ["replay", "export", str(sample_dir), "--operator-key",
              str(sample_dir / "clients" / "op.json")]
    refused(capsys, export + ["--sqlite", str(tmp_path / "no" / "such" / "x.sqlite")],
            "no directory")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(capsys, export + ["--csv", str(a_file)], "is a file")
    refused(capsys, export + ["--sqlite", str(tmp_path)], "is a directory")
    deep = tmp_path / "deep.sqlite"
    refused(capsys, export + ["--sqlite", str(deep), "--levels", "1000"], "--levels must be")
    assert not deep.exists()
    for levels in ("0", "-3"):
        refused(capsys, export + ["--sqlite", str(deep), "--levels", levels], "--levels must be")
        refused(capsys, export + ["--csv", str(tmp_path / "csv"), "--levels", levels],
                "--levels must be")
    assert not deep.exists() and not (tmp_path / "csv").exists()
    full = tmp_path / "full.sqlite"
    assert main(export + ["--sqlite", str(full)]) == 0
    capsys.readouterr()
    refused(capsys, export + ["--sqlite", str(full), "--public"], "is a full store")


def test_chart_output_that_cannot_be_written(sample_dir, tmp_path, capsys):
    chart = ["replay", "chart", str(sample_dir), "--lot", "L-ENG", "--out"]
    refused(capsys, chart + [str(tmp_path / "no" / "x.png")], "no directory")
    refused(capsys, chart + [str(tmp_path)], "is a directory")


def test_empty_names_are_refused(sample_dir, capsys):
    refused(capsys, ["replay", "comparables", str(sample_dir), "--family", ""], "empty")
    refused(capsys, ["replay", "history", str(sample_dir), "--lot", ""], "no lot")
    refused(capsys, ["replay", "state", str(sample_dir), "--seq", "5", "--lot", ""], "no lot")
    refused(capsys, ["replay", "results", str(sample_dir), "--session", "NOPE"],
            "no session 'NOPE'")
    assert main(["replay", "results", str(sample_dir), "--session", "S1"]) == 0


def test_feed_bad_endpoint_and_bounds(sample_dir, capsys):
    feed = ["replay", "feed", str(sample_dir), "--fast", "--wait", "0"]
    refused(capsys, feed + ["--endpoint", "garbage"], "cannot bind 'garbage'")
    refused(capsys, feed + ["--limit", "-1"], "--limit must not be negative")
    refused(capsys, feed + ["--to-seq", "-1"], "--to-seq must not be negative")
    refused(capsys, feed + ["--from-seq", "0"], "--from-seq must be at least 1")
    refused(capsys, ["replay", "feed", str(sample_dir), "--speed", "nan"], "--speed")
    refused(capsys, feed + ["--max-gap", "-1"], "--max-gap must be")


def test_whatif_on_a_file_that_is_not_a_csv(sample_dir, tmp_path, capsys):
    """Random bytes, a journal segment, a field past the csv module's limit:
    one line each, exit 2."""
    binary = tmp_path / "random.csv"
    binary.write_bytes(bytes(range(256)) * 2)
    refused(capsys, ["whatif", str(binary)], "is not UTF-8 text")
    segment = next((sample_dir / "journal").glob("*.seg"))
    refused(capsys, ["whatif", str(segment)], "is not UTF-8 text")
    huge = tmp_path / "huge.csv"
    huge.write_text('auctionid,bid\n"' + "a" * 200_000 + '",1\n')
    refused(capsys, ["whatif", str(huge)], "is not a readable CSV file")


def test_whatif_bad_options(sample_dir, capsys):
    for value in ("0", "-1"):
        refused(capsys, ["whatif", str(EBAY), "--rules", "english-soft-close", "--soft-window",
                         value], "--soft-window must be 1 to")
        refused(capsys, ["whatif", str(EBAY), "--rules", "english-soft-close", "--soft-extend",
                         value], "--soft-extend must be 1 to")
    refused(capsys, ["whatif", str(EBAY), "--limit", "-1"], "--limit must not be negative")


def test_currency_and_zone_are_checked(sample_dir, capsys):
    history = ["replay", "history", str(sample_dir), "--lot", "L-ENG"]
    refused(capsys, history + ["--currency", "XYZ"], "no display rate from USD to XYZ")
    refused(capsys, history + ["--currency", "cny"], "not a currency code")
    refused(capsys, history + ["--currency", "EURO"], "not a currency code")
    refused(capsys, history + ["--tz", ""], "time zone is empty")
    refused(capsys, ["replay", "state", str(sample_dir), "--seq", "5", "--tz", ""],
            "time zone is empty")
    refused(capsys, history + ["--tz", "Europe"], "unknown time zone 'Europe'")
    refused(capsys, history + ["--tz", "Europe/" + "x" * 5_000], "unknown time zone 'Europe/xxx")
    assert main(history + ["--currency", "CNY"]) == 0
    assert main(history + ["--currency", "USD"]) == 0
    refused(capsys, ["replay", "state", str(sample_dir), "--seq", "5", "--levels", "-1"],
            "--levels must be at least 1")
    refused(capsys, ["replay", "state", str(sample_dir), "--seq", "5", "--levels", "0"],
            "--levels must be at least 1")


def test_fractions_of_a_second_are_exact_with_either_decimal_mark():
    half = OPEN + 20 * 60 * 10**9 + 500_000_000
    assert parse_time("2026-03-02T01:20:00,5") == half
    assert parse_time("2026-03-02T01:20:00.5") == half
    assert parse_time("2026-03-02T01:20:00,123456789Z") == half - 500_000_000 + 123_456_789
    assert parse_time("2026-03-02T01:20:00.000001+00:00") == half - 500_000_000 + 1_000
    assert parse_time("20260302T012000,25") == half - 250_000_000
    with pytest.raises(ReplayError, match="nine decimals"):
        parse_time("2026-03-02T01:20:00,1234567891")
    with pytest.raises(ReplayError, match="fraction only on the seconds"):
        parse_time("2026-03-02T01:20,5")          # half a minute is not half a second


def test_times_outside_the_engines_are_refused(sample_dir, capsys):
    """--at past what datetime or the engine (int64 ns: 1970 to 2262) holds, or
    not a plain integer: one line, exit 2 (not 1, the exit of a damaged journal)."""
    state = ["replay", "state", str(sample_dir)]
    for at in ("99999999999999999999999", "1" + "0" * 40, "9" * 5000, "9223372036854775808",
               "-1", "-99999999999999999999", "9999-12-31T23:59:59", "2262-04-12",
               "0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59.999999999Z"):
        refused(capsys, state + [f"--at={at}"], "outside the times lotex records")
    for at in ("--5", "\u00b2", "\u0663", "1e5"):      # not ASCII digits
        refused(capsys, state + [f"--at={at}"], "cannot read the time")
    assert parse_time("0") == 0 and parse_time("1970-01-01") == 0
    assert parse_time(str(2**63 - 1)) == 2**63 - 1
    assert parse_time("2262-04-11T23:47:16.854775807Z") == 2**63 - 1
    assert main(state + [f"--at={2**63 - 1}"]) == 0
    assert "2262-04-11T23:47:16.854775807Z" in capsys.readouterr().out


def test_sample_refuses_a_non_empty_directory_or_a_file(sample_dir, tmp_path, capsys):
    journal = sample_dir / "journal"
    before = sorted(p.name for p in journal.iterdir())
    refused(capsys, ["replay", "sample", str(journal)], "not empty")
    assert sorted(p.name for p in journal.iterdir()) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    refused(capsys, ["replay", "sample", str(other)], "not empty")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    refused(capsys, ["replay", "sample", str(a_file)], "is a file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["replay", "sample", str(empty)]) == 0


def test_ctrl_c_stops_a_replay_command_with_one_line(sample_dir, capsys, monkeypatch):
    from replay import history
    def interrupted(*args, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(history, "history_rows", interrupted)
    assert main(["replay", "history", str(sample_dir), "--lot", "OT-2026-001"]) == 130
    assert capsys.readouterr().err == "lotex replay history: interrupted\n"


@pytest.mark.parametrize("user", [[], {}, 7, ""])
def test_a_key_file_whose_user_is_not_a_name_is_refused(sample_dir, tmp_path, capsys, user):
    """Refuse a real key pair whose user is not a name in one line."""
    public, secret = zmq.curve_keypair()
    key = tmp_path / "key.json"
    key.write_text(json.dumps({"user": user, "public_key": public.decode(),
                               "secret_key": secret.decode()}))
    refused(capsys, ["replay", "results", str(sample_dir), "--operator-key", str(key)],
            "is not a client key file")


@pytest.mark.parametrize("users, says", [('{"users": ["op"]}', "users are not a table"),
                                         ('{"users": {"op": "operator"}}', "is not a table"),
                                         ('{"users": {"op": []}}', "is not a table"),
                                         ('["op"]', "cannot read the key store")])
def test_a_damaged_key_store_is_refused(sample_dir, tmp_path, capsys, users, says):
    """Refuse a key store whose users or entries are not tables in one line."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "users.json").write_text(users)
    refused(capsys, ["replay", "results", str(sample_dir), "--operator-key",
                     str(sample_dir / "clients" / "op.json"), "--key-store", str(tmp_path)],
            says)
