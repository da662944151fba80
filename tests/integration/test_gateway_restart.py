"""Restarts and key changes: client ids, the feed and the snapshot service
survive a restart (ids and market data are rebuilt from the journal, the
engine from snapshot + journal); revoking a key takes effect without one."""

from __future__ import annotations

import asyncio

import pytest

from exchange.commands import PlaceBid, PlaceOrder, RegisterParty
from gateway import protocol as p
from gateway.client import Client, ClientError, Endpoints, FeedClient, SessionRejectedError
from gateway.keys import ClientKey, KeyStore
from tests.integration.gateway_harness import build_market, client, running, wait_for


def test_client_ids_feed_and_snapshots_survive_a_restart(tmp_path):
    sent = {}
    with running(tmp_path, snapshot_every=7):
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            market = build_market(op, b1, b2)
            for i in range(12):
                cmd = PlaceOrder(session="S1", instrument=market.instrument,
                                 paddle=market.paddles["Borealis"], order=i + 1, side="buy",
                                 qty=1 + i, price=200 + i)
                sent[f"day-order-{i}"] = (cmd, b2.ok(cmd, client_id=f"day-order-{i}"))
            with FeedClient.from_data_dir(tmp_path, "viewer") as feed:
                before = feed.snapshot(session="S1")
                history = feed.replay(1)
    assert list((tmp_path / "snapshots").glob("*.snap")), "snapshots were written"

    with running(tmp_path, snapshot_every=7) as server:
        assert server.last_public == before.seq
        with client(tmp_path, "b2") as b2:
            for cid, (cmd, result) in sent.items():
                again = b2.request(cmd, client_id=cid)
                assert again.resent and again.seq == result.seq and again.events == result.events
            with pytest.raises(SessionRejectedError) as refused:
                b2.request(RegisterParty(name="other"), client_id="day-order-3")
            assert refused.value.code == "duplicate_client_id"
            with FeedClient.from_data_dir(tmp_path, "viewer") as feed:
                after = feed.snapshot(session="S1")
                assert after.seq == before.seq and after.events == before.events
                assert feed.replay(1) == history
                feed.start()
                fresh = b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                         paddle=market.paddles["Borealis"], order=99,
                                         side="buy", qty=1, price=150))
                [market_msg] = list(feed.updates(timeout=2.0, max_messages=1))
                assert market_msg.seq == fresh.seq
                assert market_msg.prev == history[-1].seq     # the chain continues


def test_revocation_by_reload_ends_sessions_and_refuses_new_ones(tmp_path):
    with running(tmp_path), client(tmp_path, "op") as op, client(tmp_path, "b2") as b2:
        assert b2.ok(RegisterParty(name="before")).accepted
        KeyStore(tmp_path).revoke("b2")
        assert op.reload_keys() == 3                  # op, b1, viewer
        with pytest.raises(SessionRejectedError) as refused:
            b2.request(RegisterParty(name="after"))
        assert refused.value.code == "revoked"
        key = ClientKey.load(tmp_path / "clients" / "b2.json")
        again = Client(key, Endpoints.load(tmp_path).broker, timeout=1.0)
        with pytest.raises(ClientError):
            again.connect()
        again.close()
        with FeedClient(key, Endpoints.load(tmp_path).feed, Endpoints.load(tmp_path).data,
                        timeout=1.0) as feed:
            with pytest.raises(ClientError):
                feed.snapshot()


def test_revocation_and_new_users_apply_without_restart_or_reload(tmp_path):
    with running(tmp_path, keys_check_ms=100), client(tmp_path, "b1") as b1:
        store = KeyStore(tmp_path)
        path = store.add_user("b3", "broker", clients=["Cobalt Labs"])
        key = ClientKey.load(path)
        b3 = Client(key, Endpoints.load(tmp_path).broker, timeout=5.0)

        def connected() -> bool:
            try:
                b3.connect()
                return True
            except ClientError:
                return False
        assert wait_for(connected, timeout=10)
        assert b3.ok(RegisterParty(name="Cobalt Labs")).accepted
        with pytest.raises(SessionRejectedError) as refused:
            b3.request(RegisterParty(name="Someone Else"))
        assert refused.value.code == "not_your_client"
        b3.close()

        store.revoke("b1")

        def refused_now() -> bool:
            try:
                b1.request(RegisterParty(name="probe"), timeout=2.0)
                return False
            except SessionRejectedError as exc:
                return exc.code == "revoked"
        assert wait_for(refused_now, timeout=10)


def test_snapshot_of_a_lot_and_of_the_market(tmp_path):
    with running(tmp_path), client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
            client(tmp_path, "b2") as b2:
        market = build_market(op, b1, b2)
        for amount, c, who in ((3_000_000, b1, "Acme"), (6_000_000, b2, "Borealis"),
                               (9_000_000, b1, "Acme")):
            c.ok(PlaceBid(serial=market.english, paddle=market.paddles[who], amount=amount))
        with FeedClient.from_data_dir(tmp_path, "viewer") as feed:
            lot = feed.snapshot(session="S1", key=market.english)
            names = [type(e).__name__ for e in lot.events]
            assert names.count("BidAccepted") == 1            # last value only
            assert {getattr(e, "serial", market.english) for e in lot.events} == {market.english}
            standing = [e for e in lot.events if type(e).__name__ == "BidAccepted"][0]
            assert standing.bids == 3
            everything = feed.snapshot()
            assert any(type(e).__name__ == "SessionCreated" for e in everything.events)
            with pytest.raises(SessionRejectedError):
                feed._ask(p.ReplayRequest(from_seq=3, to_seq=1))


def test_old_results_and_market_data_come_back_from_the_journal(tmp_path, monkeypatch):
    import gateway.server
    import gateway.tables
    monkeypatch.setattr(gateway.server, "RECENT_RESULTS", 8)
    monkeypatch.setattr(gateway.tables, "MARK_EVERY", 3)    # journal reads start at marks
    monkeypatch.setattr(gateway.server, "ENTRY_MARK_EVERY", 2)    # ... and at entry marks
    monkeypatch.setattr(gateway.server, "CATCH_UP_PER_TURN",    # 4 journal entries a turn
                        gateway.server.COST_JOURNAL_START + 4 * gateway.server.COST_JOURNAL)
    with running(tmp_path, feed_ring=4), client(tmp_path, "op") as op, \
            client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
        first = b1.ok(RegisterParty(name="Early Client"), client_id="early-1")
        with FeedClient.from_data_dir(tmp_path, "viewer") as feed:
            feed.start()
            market = build_market(op, b1, b2)
            for i in range(1, 11):
                b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                 paddle=market.paddles["Borealis"], order=i, side="buy",
                                 qty=i, price=300 + i))
            live = list(feed.updates(timeout=1.0))
            assert len(live) > 8
            # older than the ring of 4: rebuilt from the journal, identical
            assert feed.replay(1) == live                   # in several answers
            first_answer = feed._ask(p.ReplayRequest(from_seq=1))
            assert first_answer.more and len(first_answer.messages) <= 4
            assert first_answer.through < live[-1].seq
            assert feed.replay(live[1].seq, live[3].seq) == live[1:4]
            for i in range(len(live) - 1):                 # each start: its prev is right
                assert feed.replay(live[i].seq, live[i + 1].seq) == live[i:i + 2], i
                assert feed.replay(live[i].seq + 1)[0] == live[i + 1], i
        # older than the 8 results kept in memory: read back from the journal
        again = b1.request(RegisterParty(name="Early Client"), client_id="early-1")
        assert again.resent and again.seq == first.seq and again.events == first.events


def test_a_journal_failure_stops_the_server_before_anything_is_acknowledged(tmp_path,
                                                                          monkeypatch):
    import os

    from exchange.codec import decode_entry
    from gateway.keys import initialise
    from gateway.server import ServerStopped, serve_in_thread, stop_thread
    from recorder.journal import read_journal
    from tests.integration.gateway_harness import gateway_config

    initialise(tmp_path)
    server, thread = serve_in_thread(tmp_path, gateway_config())
    try:
        with client(tmp_path, "b1", timeout=2.0) as b1:
            kept = b1.ok(RegisterParty(name="durable"), client_id="keep-1")

            def failing_fdatasync(fd: int) -> None:
                raise OSError(5, "Input/output error (injected)")
            monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
            with pytest.raises(ClientError):       # never acknowledged
                b1.request(RegisterParty(name="not acknowledged"), client_id="lost-1")
            thread.join(timeout=10)
            assert not thread.is_alive()
            monkeypatch.undo()
    finally:
        with pytest.raises(ServerStopped):
            stop_thread(server, thread)
    # restarted, the unacknowledged command resent by its id acts exactly once
    with running(tmp_path), client(tmp_path, "b1") as b1:
        assert b1.request(RegisterParty(name="durable"), client_id="keep-1").seq == kept.seq
        b1.ok(RegisterParty(name="not acknowledged"), client_id="lost-1")
    ids = [decode_entry(r.payload).env.client_id for r in read_journal(tmp_path / "journal")]
    assert ids.count("lost-1") == 1 and ids.count("keep-1") == 1


def test_async_client_logs_on_again_and_resends_across_a_restart(tmp_path):
    import asyncio
    import socket

    from gateway.client import AsyncClient
    from gateway.keys import initialise
    from gateway.server import serve_in_thread, stop_thread
    from tests.integration.gateway_harness import gateway_config

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    ports = dict(broker_port=free_port(), operator_port=free_port(), feed_port=free_port(),
                 data_port=free_port())
    initialise(tmp_path)

    async def scenario() -> None:
        server, thread = serve_in_thread(tmp_path, gateway_config(**ports))
        b1 = await AsyncClient.from_data_dir(tmp_path, "b1", heartbeat_ms=200,
                                             resend_after=0.5, timeout=20)
        try:
            first = await b1.ok(RegisterParty(name="before"), client_id="a-1")
            stop_thread(server, thread)
            pending = await b1.send(RegisterParty(name="while down"), client_id="a-2")
            await asyncio.sleep(0.8)                  # the client notices the silence
            server, thread = serve_in_thread(tmp_path, gateway_config(**ports))
            result = await asyncio.wait_for(pending, 20)
            assert result.accepted and result.seq == first.seq + 1
            again = await b1.request(RegisterParty(name="before"), client_id="a-1")
            assert again.resent and again.seq == first.seq
        finally:
            await b1.close()
            stop_thread(server, thread)

    asyncio.run(scenario())


def test_client_ids_are_remembered_for_the_trading_day_and_the_one_before(tmp_path,
                                                                         shifted_clock):
    day = 86_400 * 10**9
    offset = shifted_clock
    offset[0] = -2 * day
    cmd = RegisterParty(name="Acme Research")
    with running(tmp_path), client(tmp_path, "b1") as b1:
        first = b1.ok(cmd, client_id="daily-1")
        offset[0] = -day                               # the next trading day
        again = b1.request(cmd, client_id="daily-1")
        assert again.resent and again.seq == first.seq
        offset[0] = 0                                  # two days later: forgotten
        fresh = b1.ok(cmd, client_id="daily-1")
        assert not fresh.resent and fresh.seq > first.seq
    with running(tmp_path), client(tmp_path, "b1") as b1:   # the same after a restart
        assert b1.request(cmd, client_id="daily-1").seq == fresh.seq
        other = b1.ok(RegisterParty(name="Other"), client_id="daily-2")
        offset[0] = day
        assert b1.request(RegisterParty(name="Other"), client_id="daily-2").seq == other.seq


def _start_image(data, scanned: list[tuple[int, int]]) -> dict:
    """Start a server on ``data`` (no sockets served), note (entries scanned
    after its gateway snapshot, last seq) in ``scanned``, return its
    `_gateway_image` and close it without writing new snapshots."""
    from gateway.server import Server
    from tests.integration.gateway_harness import gateway_config

    server = Server(data, gateway_config())
    server.start()
    scanned.append((server.entries_since_snapshot, server.durable_seq))
    try:
        return _gateway_image(server)
    finally:
        server.entries_since_snapshot = 0              # leave the snapshots as they are
        server.close()


def _gateway_image(server) -> dict:
    """What the gateway rebuilds at start-up, comparable between two starts."""
    ring = server.ring
    return {"view": server.view.snapshot(), "marks": list(ring.marks), "count": ring.count,
            "entry_marks": (list(ring.entry_seqs), list(ring.entry_prevs)),
            "ring": (ring.seqs, ring.msgs), "last_public": server.last_public,
            "assigned": server.last_public_assigned, "today": dict(server.ids_today.items()),
            "yesterday": dict(server.ids_yesterday.items())}


def test_a_start_from_a_gateway_snapshot_equals_a_full_scan(tmp_path):
    import shutil

    def trade(b1, b2, market, first: int, n: int) -> None:
        for i in range(first, first + n):
            b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                             paddle=market.paddles["Borealis"], order=i, side="buy", qty=1,
                             price=300 + i), client_id=f"buy-{i}")
            b1.ok(PlaceOrder(session="S1", instrument=market.instrument,
                             paddle=market.paddles["Seller"], order=i, side="sell", qty=1,
                             price=300 + i), client_id=f"sell-{i}")
        b1.ok(PlaceBid(serial=market.english, paddle=market.paddles["Acme"],
                       amount=3_000_000 + first * 100_000), client_id=f"bid-{first}")

    with running(tmp_path):
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            market = build_market(op, b1, b2)
            trade(b1, b2, market, 1, 10)
    first_snapshot = sorted((tmp_path / "gateway").glob("*.snap"))
    assert first_snapshot, "the gateway state was snapshotted at close"
    kept = tmp_path / "kept.snap"
    shutil.copy(first_snapshot[-1], kept)
    with running(tmp_path):                                  # entries after the snapshot
        with client(tmp_path, "b1") as b1, client(tmp_path, "b2") as b2:
            trade(b1, b2, market, 11, 10)

    scanned: list[tuple[int, int]] = []          # (entries scanned, last seq) per start

    def start_image() -> dict:
        return _start_image(tmp_path, scanned)

    for snap in (tmp_path / "gateway").glob("*.snap"):       # restore the older one + scan
        snap.unlink()
    shutil.copy(kept, tmp_path / "gateway" / first_snapshot[-1].name)
    from_snapshot = start_image()
    shutil.rmtree(tmp_path / "gateway")                      # the whole journal
    full_scan = start_image()
    assert from_snapshot == full_scan
    assert 0 < scanned[0][0] < scanned[0][1] and scanned[1][0] == scanned[1][1]
    assert full_scan["count"] > 40 and len(full_scan["today"]) > 42

    # a damaged snapshot is ignored: the journal is scanned instead
    (tmp_path / "gateway").mkdir()
    broken = tmp_path / "gateway" / first_snapshot[-1].name
    broken.write_bytes(kept.read_bytes()[:-10] + b"0123456789")
    assert start_image() == full_scan and scanned[2][0] == scanned[2][1]


def test_restored_client_ids_roll_with_the_trading_day(tmp_path, shifted_clock):
    day = 86_400 * 10**9
    offset = shifted_clock
    offset[0] = -2 * day
    cmd = RegisterParty(name="Acme Research")
    with running(tmp_path), client(tmp_path, "b1") as b1:
        first = b1.ok(cmd, client_id="roll-1")
    assert list((tmp_path / "gateway").glob("*.snap"))
    offset[0] = -day                                          # restarted the next day
    with running(tmp_path), client(tmp_path, "b1") as b1:
        assert b1.request(cmd, client_id="roll-1").seq == first.seq
        b1.ok(RegisterParty(name="Borealis"), client_id="roll-2")
    offset[0] = 0                                             # two days after roll-1
    with running(tmp_path), client(tmp_path, "b1") as b1:
        assert b1.request(RegisterParty(name="Borealis"), client_id="roll-2").resent
        fresh = b1.ok(cmd, client_id="roll-1")
        assert not fresh.resent and fresh.seq > first.seq


def test_the_server_writes_over_preallocated_zeros_and_drops_them_when_it_stops(tmp_path):
    from recorder.journal import Journal, verify_journal

    journal_dir = tmp_path / "journal"
    with running(tmp_path, preallocate_bytes=1 << 20) as server:
        with client(tmp_path, "b1") as b1:
            first = b1.ok(RegisterParty(name="Zero One"), client_id="z-1")
            for i in range(20):
                b1.ok(RegisterParty(name=f"Zero {i + 2}"))
            live = sorted(journal_dir.glob("*.seg"))[-1]
            view = Journal.open_readonly(journal_dir)
            assert view.last_seq == server.durable_seq       # readers stop at the zeros
            assert live.stat().st_size >= view.segments()[-1].size + (512 << 10)
            assert verify_journal(journal_dir).count == server.durable_seq
        last = server.durable_seq
    with running(tmp_path, preallocate_bytes=0) as server:   # stopped: the zeros are gone
        assert server.durable_seq == last
        assert live.stat().st_size == Journal.open_readonly(journal_dir).segments()[-1].size
        assert not list(journal_dir.glob("*.cut"))
        with client(tmp_path, "b1") as b1:
            assert b1.request(RegisterParty(name="Zero One"), client_id="z-1").seq == first.seq
            assert b1.ok(RegisterParty(name="Zero after")).seq == last + 1


def test_periodic_snapshots_are_written_by_a_forked_child_while_the_loop_serves(
        tmp_path, monkeypatch, capsys):
    import json
    import os

    from gateway import server as server_module

    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid
    monkeypatch.setattr(server_module.os, "fork", counting_fork)
    snapshots = tmp_path / "snapshots"
    with running(tmp_path, snapshot_every=5) as server, client(tmp_path, "b1") as b1:
        for i in range(6):
            b1.ok(RegisterParty(name=f"Snap {i}"))
        assert wait_for(lambda: list(snapshots.glob("*.snap")) and server._snapshot_child is None)
        assert forks, "the snapshot was written by a child process"
        written = sorted(snapshots.glob("*.snap"))
        assert int(written[-1].stem) >= 5
        assert (tmp_path / "gateway" / written[-1].name).exists()
        # a child that cannot write is reported and the loop goes on serving
        server.snapshot_dir = tmp_path / "not-a-directory"
        server.snapshot_dir.write_text("")
        for i in range(6):
            b1.ok(RegisterParty(name=f"Later {i}"))
        assert wait_for(lambda: len(forks) >= 2 and server._snapshot_child is None)
        assert b1.ok(RegisterParty(name="Still served")).accepted
        server.snapshot_dir = snapshots
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    assert any(e["event"] == "snapshot_written" and e["seq"] >= 5 and e["pause_ms"] < 1000
               for e in logged)
    assert any(e["event"] == "snapshot_failed" and e["exit_code"] == 1 for e in logged)
    with running(tmp_path) as server:               # restarts from the newest snapshot
        assert server.durable_seq >= 13


def test_a_snapshot_is_written_in_place_when_the_server_cannot_fork(tmp_path, monkeypatch,
                                                                     capsys):
    import errno
    import json

    from gateway import server as server_module

    def no_fork() -> int:
        raise OSError(errno.ENOMEM, "Cannot allocate memory (injected)")
    monkeypatch.setattr(server_module.os, "fork", no_fork)
    with running(tmp_path, snapshot_every=3) as server, client(tmp_path, "b1") as b1:
        for i in range(4):
            b1.ok(RegisterParty(name=f"No fork {i}"))
        assert wait_for(lambda: list((tmp_path / "snapshots").glob("*.snap")))
        assert b1.ok(RegisterParty(name="Still served")).accepted
        assert server.failed is None
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    assert any(e["event"] == "snapshot_fork_failed" for e in logged)
    assert any(e["event"] == "snapshot_written" and "bytes" in e for e in logged)


def test_shutdown_kills_a_snapshot_child_that_hangs_and_snapshots_in_place(
        tmp_path, monkeypatch, capsys):
    import json
    import os
    import time

    from gateway import server as server_module

    parent = os.getpid()
    write = server_module.Server._write_snapshots

    def hanging_in_the_child(self):
        if os.getpid() != parent:
            time.sleep(600)
        return write(self)
    monkeypatch.setattr(server_module.Server, "_write_snapshots", hanging_in_the_child)
    monkeypatch.setattr(server_module, "SNAPSHOT_CHILD_WAIT_S", 0.5)
    started = time.monotonic()
    with running(tmp_path, snapshot_every=3) as server, client(tmp_path, "b1") as b1:
        for i in range(4):
            b1.ok(RegisterParty(name=f"Hang {i}"))
        assert wait_for(lambda: server._snapshot_child is not None)
        b1.ok(RegisterParty(name="served while the child hangs"))
    assert time.monotonic() - started < 30
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    assert any(e["event"] == "snapshot_failed" and e["exit_code"] == -9 for e in logged)
    assert sorted((tmp_path / "snapshots").glob("*.snap"))[-1].stem == f"{server.durable_seq:020d}"


@pytest.mark.parametrize("where", ["child", "in place"])
def test_a_snapshot_that_failed_is_written_at_the_clean_stop(tmp_path, monkeypatch, capsys,
                                                             where):
    """A periodic snapshot that fails (a full disk), in a forked child or in
    place, leaves its entries to be snapshotted: the clean stop right after,
    with no entry since, snapshots the journal's end."""
    import errno
    import json
    import os

    from gateway import server as server_module

    parent = os.getpid()
    write = server_module.Server._write_snapshots
    failing = [True]

    def full_disk_once(self):
        if where == "child" and os.getpid() != parent or where == "in place" and failing[0]:
            failing[0] = False
            raise OSError(errno.ENOSPC, "No space left on device (injected)")
        return write(self)
    monkeypatch.setattr(server_module.Server, "_write_snapshots", full_disk_once)
    forks: list[int] = []
    real_fork = os.fork

    def counting_fork() -> int:
        if where == "in place":
            forks.append(0)
            raise OSError(errno.ENOMEM, "Cannot allocate memory (injected)")
        pid = real_fork()
        if pid:
            forks.append(pid)
        return pid
    monkeypatch.setattr(server_module.os, "fork", counting_fork)
    with running(tmp_path, snapshot_every=3) as server, client(tmp_path, "b1") as b1:
        for i in range(3):
            b1.ok(RegisterParty(name=f"Full disk {i}"))
        # the try was made and failed: its entries are counted again
        assert wait_for(lambda: forks and server.entries_since_snapshot == 3)
        acked = server.durable_seq
    logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()
              if line.startswith("{")]
    failed = [e for e in logged if e["event"] == "snapshot_failed"]
    assert len(failed) == 1 and failed[0]["seq"] == acked
    assert [e["seq"] for e in logged if e["event"] == "snapshot_written"] == [acked]
    for directory in ("snapshots", "gateway"):
        assert [path.name for path in (tmp_path / directory).glob("*.snap")] == \
            [f"{acked:020d}.snap"]


@pytest.mark.parametrize("before", ["the feed ring", "entry marks"])
def test_a_gateway_snapshot_written_before_entry_marks_is_scanned_instead(tmp_path, before):
    """A gateway snapshot that holds every Market seq and the last messages
    (as written before `FeedRing`), or a ring without journal entry marks, is
    not used: the journal is scanned once instead, to the same feed state."""
    import pickle
    import shutil
    from array import array

    from recorder.snapshots import find_snapshot, write_snapshot

    with running(tmp_path):
        with client(tmp_path, "op") as op, client(tmp_path, "b1") as b1, \
                client(tmp_path, "b2") as b2:
            market = build_market(op, b1, b2)
            for i in range(1, 6):
                b2.ok(PlaceOrder(session="S1", instrument=market.instrument,
                                 paddle=market.paddles["Borealis"], order=i, side="buy",
                                 qty=1, price=300 + i))
    snap = find_snapshot(tmp_path / "gateway")
    state = pickle.loads(snap.data)
    ring = state.pop("ring")
    assert ring.count == len(ring.seqs) > 5            # all of them still in memory
    if before == "the feed ring":
        state["public_seqs"], state["ring_msgs"] = array("q", ring.seqs), list(ring.msgs)
    else:                                              # a FeedRing pickled without them
        state["ring"] = _RingBeforeEntryMarks(ring)
    for old in (tmp_path / "gateway").glob("*.snap"):
        old.unlink()
    write_snapshot(tmp_path / "gateway", snap.seq, pickle.dumps(state), ts=snap.ts,
                   chain=snap.chain)

    scanned: list[tuple[int, int]] = []          # (entries scanned, last seq) per start

    def start_image() -> dict:
        return _start_image(tmp_path, scanned)

    converted = start_image()
    shutil.rmtree(tmp_path / "gateway")
    assert converted == start_image()
    assert scanned[0][0] == scanned[0][1] and scanned[1][0] == scanned[1][1]  # not used
    with running(tmp_path), FeedClient.from_data_dir(tmp_path, "viewer") as feed:
        assert [m.seq for m in feed.replay(1)] == converted["ring"][0]


class _RingBeforeEntryMarks:
    """Pickles as a `FeedRing` of before entry marks: its slots without them."""

    def __init__(self, ring) -> None:
        self.ring = ring

    def __reduce__(self):
        from gateway.tables import FeedRing
        ring = self.ring
        return (object.__new__, (FeedRing,),
                (None, {name: getattr(ring, name) for name in
                        ("size", "slack", "cap", "seqs", "msgs", "marks", "count")}))


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_a_feed_request_left_unanswered_never_takes_the_next_ones_answer(tmp_path, flavour):
    """Answers of the snapshot service carry no request id: after a request
    times out, its late answer must not be read as the next request's."""
    from exchange.commands import CreateSession
    from gateway.client import AsyncFeedClient
    from gateway.server import run_in_thread, stop_thread
    from tests.integration.test_gateway_turn_limits import _serve
    server, thread = _serve(tmp_path)
    try:
        with client(tmp_path, "op") as op:
            op.ok(CreateSession(session="S1", name="late answers"))
        endpoints = Endpoints.load(tmp_path)
        key = ClientKey.load(tmp_path / "clients" / "viewer.json")
        server.stop()
        thread.join(timeout=10)                   # the loop answers nothing now
        if flavour == "sync":
            feed = FeedClient(key, endpoints.feed, endpoints.data, timeout=0.3)
            with pytest.raises(ClientError, match="in time"):
                feed.replay(1)
            thread = run_in_thread(server)
            feed.timeout = 10
            snap = feed.snapshot(session="S1")
            feed.close()
        else:
            async def scenario():
                feed = AsyncFeedClient(key, endpoints.feed, endpoints.data, timeout=0.3)
                with pytest.raises(ClientError, match="in time"):
                    await feed.replay(1)
                nonlocal thread
                thread = run_in_thread(server)
                feed.timeout = 10
                try:
                    return await feed.snapshot(session="S1")
                finally:
                    feed.close()
            snap = asyncio.run(scenario())
        assert type(snap).__name__ == "Snapshot" and snap.session == "S1"
    finally:
        stop_thread(server, thread)


def test_a_start_takes_the_days_client_ids_from_the_gateway_snapshot(tmp_path, monkeypatch):
    """Reading the envelopes of two trading days took ~4 us an id at start (13 s
    after 3 million orders): the gateway snapshot holds the ids instead."""
    from gateway.server import Server
    with running(tmp_path), client(tmp_path, "b1") as b1:
        first = b1.ok(RegisterParty(name="Acme Research"), client_id="snap-1")
        for i in range(20):
            b1.ok(RegisterParty(name=f"Party {i}"))
    remembered: list[int] = []                     # the close snapshotted every entry
    remember = Server._remember_id
    monkeypatch.setattr(Server, "_remember_id",
                        lambda self, env: (remembered.append(env.seq), remember(self, env)))
    with running(tmp_path) as server, client(tmp_path, "b1") as b1:
        assert len(server.ids_today) == 21
        again = b1.request(RegisterParty(name="Acme Research"), client_id="snap-1")
        assert again.resent and again.seq == first.seq
    assert remembered == []


class _ShiftedTime:
    """The time module with ``time_ns`` moved by ``offset``."""

    offset = 0

    def __getattr__(self, name):
        import time as real_time
        return getattr(real_time, name)

    def time_ns(self):
        import time as real_time
        return real_time.time_ns() + _ShiftedTime.offset


def test_client_ids_survive_a_restart_with_the_clock_behind_the_snapshots_day(tmp_path,
                                                                            monkeypatch):
    """A resend just after midnight rolled the gateway's day (no entry); the
    clean stop snapshotted the ids under the new day; the restarted server's
    clock is behind it: the ids are kept under the snapshot's day."""
    import time as real_time

    import gateway.server as gateway_server
    day = 86_400 * 10**9
    monkeypatch.setattr(gateway_server, "time", _ShiftedTime())
    _ShiftedTime.offset = 0
    with running(tmp_path), client(tmp_path, "b1") as b1:
        first = b1.ok(RegisterParty(name="Acme Research"), client_id="c-1")
        now = real_time.time_ns()
        _ShiftedTime.offset = (now // day + 1) * day + 10**9 - now    # past midnight
        assert b1.request(RegisterParty(name="Acme Research"), client_id="c-1").resent
    _ShiftedTime.offset = 0
    with running(tmp_path), client(tmp_path, "b1") as b1:
        again = b1.request(RegisterParty(name="Acme Research"), client_id="c-1")
        assert again.resent and again.seq == first.seq


def test_a_shutdown_that_fails_is_raised_not_only_logged(tmp_path):
    from exchange.commands import CreateSession
    from gateway.server import serve_in_thread, stop_thread
    from tests.integration.gateway_harness import client, gateway_config, initialise

    initialise(tmp_path)
    server, thread = serve_in_thread(tmp_path, gateway_config())
    with client(tmp_path, "op") as op:
        op.ok(CreateSession(session="S1", name="one entry to snapshot"))
    server._gateway_state = lambda: (lambda: None)    # cannot be pickled
    with pytest.raises(Exception, match="pickle"):
        stop_thread(server, thread)
    assert server.close_error is not None
