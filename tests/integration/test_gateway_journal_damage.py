"""A damaged journal and the running server: damage in an old closed
segment (which start-up does not read) refuses what needs it and the
exchange goes on; damage that would cut acknowledged entries stops the
start instead of dropping them."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from exchange.commands import CreateSession
from gateway.client import FeedClient, SessionRejectedError
from recorder import format as fmt
from recorder.journal import Journal, JournalCorrupt, verify_journal
from tests.integration.gateway_harness import client, running


def record_offset(segment: Path, seq: int) -> int:
    """Return the offset of record ``seq`` in ``segment`` (walking its records)."""
    data = segment.read_bytes()
    pos = fmt.HEADER_SIZE
    while pos + fmt.RECORD_OVERHEAD <= len(data):
        length, found = fmt.U32.unpack_from(data, pos + 4)[0], int.from_bytes(data[pos + 8:pos + 16], "little")
        if found == seq:
            return pos
        pos += fmt.RECORD_OVERHEAD + length
    raise AssertionError(f"no record {seq} in {segment.name}")


def flip_payload_byte(journal_dir: Path, seq: int) -> Path:
    """Flip a byte in record ``seq``'s payload (its CRC fails); return the segment."""
    segment = [path for path in sorted(journal_dir.glob("*.seg"))
               if int(path.name.split(".")[0]) <= seq][-1]
    data = bytearray(segment.read_bytes())
    data[record_offset(segment, seq) + 40] ^= 0x01
    segment.write_bytes(bytes(data))
    return segment


def log_events(err: str, event: str) -> list[dict]:
    lines = []
    for line in err.splitlines():
        if line.startswith("{") and f'"{event}"' in line:
            found = json.loads(line)
            if found.get("event") == event:
                lines.append(found)
    return lines


def test_damage_in_an_old_segment_is_refused_and_trading_goes_on(tmp_path, monkeypatch, capfd):
    import gateway.server
    monkeypatch.setattr(gateway.server.Journal, "open",
                        functools.partial(Journal.open.__func__, Journal, segment_bytes=4096))
    with running(tmp_path), client(tmp_path, "op") as op:
        first = op.ok(CreateSession(session="S0", name="x"), client_id="s-0")
        for n in range(1, 60):
            op.ok(CreateSession(session=f"S{n}", name="x"), client_id=f"s-{n}")
    assert len(list((tmp_path / "journal").glob("*.seg"))) > 3
    damaged = flip_payload_byte(tmp_path / "journal", first.seq)
    assert damaged != sorted((tmp_path / "journal").glob("*.seg"))[-1]    # a closed one
    with pytest.raises(JournalCorrupt):
        verify_journal(tmp_path / "journal")
    capfd.readouterr()
    with running(tmp_path, feed_ring=1) as server:           # the start reads after the snapshot
        with client(tmp_path, "op", timeout=5.0) as op:
            with pytest.raises(SessionRejectedError) as resent:
                op.request(CreateSession(session="S0", name="x"), client_id="s-0")
            assert resent.value.code == "journal_damaged"
            assert "s-0" in resent.value.text and "not done again" in resent.value.text
            with pytest.raises(SessionRejectedError) as recap:
                op.recap(first.seq)
            assert recap.value.code == "journal_damaged"
            with FeedClient.from_data_dir(tmp_path, "viewer", timeout=5.0) as feed:
                with pytest.raises(SessionRejectedError) as replay:
                    feed.replay(first.seq)
                assert replay.value.code == "journal_damaged"
                assert feed.snapshot().seq == server.last_public    # the data socket serves on
            from gateway.tables import id_key               # an id whose entry is not there
            server.ids_today.put(id_key("op", "ghost"), server.durable_seq + 1000)
            with pytest.raises(SessionRejectedError) as missing:
                op.request(CreateSession(session="G", name="x"), client_id="ghost")
            assert missing.value.code == "journal_damaged" and "not found" in missing.value.text
            after = op.ok(CreateSession(session="AFTER", name="x"), client_id="after-1")
            assert after.seq == server.durable_seq
            assert op.request(CreateSession(session="S59", name="x"), client_id="s-59").resent
        assert server.failed is None
    err = capfd.readouterr().err
    damage, missing_entry = log_events(err, "journal_damaged")    # once each
    assert damage["level"] == missing_entry["level"] == "critical"
    assert damaged.name in damage["error"] and "not found" in missing_entry["error"]
    assert len(log_events(err, "refused")) >= 3


def zero_sector_after(journal_dir: Path, seq: int) -> tuple[Path, bytes]:
    """Zero the 512-byte sector after the start of record ``seq`` in the live
    segment (a lost write, not a crash); return the segment and its bytes."""
    segment = sorted(journal_dir.glob("*.seg"))[-1]
    data = bytearray(segment.read_bytes())
    sector = (record_offset(segment, seq) // 512 + 1) * 512
    data[sector:sector + 512] = bytes(512)
    segment.write_bytes(bytes(data))
    return segment, bytes(data)


def test_a_zeroed_sector_before_a_snapshot_stops_the_start_and_cuts_nothing(tmp_path):
    from gateway.server import Server
    from recorder import layout
    from recorder.snapshots import find_snapshot
    from tests.integration.gateway_harness import gateway_config

    with running(tmp_path) as server, client(tmp_path, "op") as op:
        results = [op.ok(CreateSession(session=f"S{n}", name="x"), client_id=f"s-{n}")
                   for n in range(40)]
        acked = server.durable_seq
    assert find_snapshot(layout.snapshot_dir(tmp_path)).seq == acked   # the clean stop's
    segment, damaged = zero_sector_after(tmp_path / "journal", results[10].seq)
    with pytest.raises(JournalCorrupt, match=f"but seq {acked} is known durable.*lotex journal "
                                             f"repair"):
        Server(tmp_path, gateway_config()).start()
    assert segment.read_bytes() == damaged and not list(segment.parent.glob("*.cut"))
    assert find_snapshot(layout.snapshot_dir(tmp_path)).seq == acked
    # the operator accepts the loss on purpose: the repair sets the snapshots aside too
    from gateway.cli import main
    assert main(["journal", "repair", str(tmp_path)]) == 0
    with running(tmp_path) as server, client(tmp_path, "op") as op:
        kept = server.durable_seq
        assert results[9].seq <= kept < results[12].seq
        for n in range(40, 40 + (acked - kept) + 5):          # past the old snapshot's seq
            op.ok(CreateSession(session=f"S{n}", name="x"), client_id=f"s-{n}")
        end = server.durable_seq
    with running(tmp_path) as server:
        assert server.durable_seq == end > acked


def test_a_cut_is_logged_and_snapshots_beyond_it_are_set_aside(tmp_path, capfd):
    """Durability none promises nothing after a machine crash: the start
    cuts, says so, and sets aside the snapshots the journal no longer holds,
    so that later snapshots are kept and later starts use them."""
    from recorder import layout
    from recorder.snapshots import _listed

    with running(tmp_path, durability="none") as server, client(tmp_path, "op") as op:
        results = [op.ok(CreateSession(session=f"S{n}", name="x"), client_id=f"s-{n}")
                   for n in range(40)]
        acked = server.durable_seq
    segment, _ = zero_sector_after(tmp_path / "journal", results[10].seq)
    capfd.readouterr()
    with running(tmp_path, durability="none", snapshot_every=5) as server, \
            client(tmp_path, "op") as op:
        kept = server.durable_seq
        assert results[9].seq <= kept < results[12].seq
        err = capfd.readouterr().err
        [cut] = log_events(err, "journal_cut")
        assert cut["segment"] == segment.name and cut["last_seq"] == kept
        assert cut["records"] >= acked - kept - 3 and cut["bytes"] > 0
        assert Path(cut["aside"]).is_file()
        [aside] = log_events(err, "snapshots_set_aside")
        moved = [Path(path) for path in aside["moved"]]
        assert {path.parent.parent for path in moved} == {layout.snapshot_dir(tmp_path),
                                                          layout.gateway_snapshot_dir(tmp_path)}
        assert all(int(path.name[:20]) > kept for path in moved)
        assert all(path.parent.stat().st_mode & 0o777 == 0o700 for path in moved)
        for n in range(40, 40 + (acked - kept) + 10):       # past the old snapshot's seq
            op.ok(CreateSession(session=f"S{n}", name="x"), client_id=f"s-{n}")
        end = server.durable_seq
    assert end > acked
    assert [seq for seq, _ in _listed(layout.snapshot_dir(tmp_path))][-1] == end
    with running(tmp_path, durability="none") as server:     # the new snapshots fit the journal
        assert server.durable_seq == end
