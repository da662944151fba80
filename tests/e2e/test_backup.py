"""`lotex backup` of a data directory while a real `lotex serve` takes a load:
the copy holds every command acknowledged before the backup began, its
journal is a prefix of the server's, it replays to the events it recorded,
and a server starts on it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

import pytest

from exchange.commands import PlaceOrder, RegisterParty
from recorder import recovery
from recorder.journal import read_journal
from tests.e2e.test_crash_recovery import DEADLINE, REPO, Loader, ServerProcess, configured
from tests.integration.gateway_harness import build_market, client

PER_BROKER = 400
BACKUP_AFTER = 250        # acknowledged load commands before the backup starts
AFTER_BACKUP = 40         # each broker's last commands, sent once the backup is done


@pytest.mark.slow
def test_a_backup_taken_under_load_is_a_consistent_prefix_a_server_starts_on(tmp_path):
    data, copy = tmp_path / "exchange", tmp_path / "backup"
    server = configured(data, snapshot_every=100)
    try:
        server.start()
        with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
            market = build_market(op, b1, b2)
        seller, borealis = market.paddles["Seller"], market.paddles["Borealis"]
        plans: dict[str, list[tuple[str, Any]]] = {"b1": [], "b2": []}
        for i in range(PER_BROKER):
            if i % 10 == 9:
                plans["b1"].append((f"b1-{i}", RegisterParty(name=f"Client {i}")))
            else:
                plans["b1"].append((f"b1-{i}", PlaceOrder(
                    session="S1", instrument=market.instrument, paddle=seller, order=i,
                    side="sell", qty=1, price=500 + i % 5)))
            plans["b2"].append((f"b2-{i}", PlaceOrder(
                session="S1", instrument=market.instrument, paddle=borealis, order=i,
                side="buy", qty=1, price=500 + i % 3)))
        acked: Counter = Counter()
        backed_up = threading.Event()        # so some of the load surely comes after the copy
        loaders = [Loader(data, user, plan, acked, batch=4, gate=backed_up, gated=AFTER_BACKUP)
                   for user, plan in plans.items()]
        for loader in loaders:
            loader.start()
        deadline = time.monotonic() + DEADLINE
        while sum(acked.values()) < BACKUP_AFTER and time.monotonic() < deadline:
            time.sleep(0.005)
        before = {loader.user: dict(loader.results) for loader in loaders}
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "backup", str(data),
                               str(copy)], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        backed_up.set()
        assert done.returncode == 0, done.stderr
        assert "backed up" in done.stdout
        for loader in loaders:
            loader.join(timeout=DEADLINE)
            assert loader.error is None and not loader.is_alive(), loader.error
        during = sum(acked.values())
        assert server.stop() == 0
    finally:
        server.cleanup()
    assert sum(len(r) for r in before.values()) >= BACKUP_AFTER
    assert during == 2 * PER_BROKER

    original = {r.seq: r.payload for r in read_journal(data / "journal")}
    copied = {r.seq: r.payload for r in read_journal(copy / "journal")}
    last = max(copied)
    assert list(copied) == list(range(1, last + 1)) and last < max(original), \
        "the backup was taken during the load"
    assert all(copied[seq] == original[seq] for seq in copied), "not a prefix"
    for user, results in before.items():
        assert all(result.seq <= last for result in results.values()), \
            f"{user}: a command acknowledged before the backup is not in it"
    recovery.rebuild(copy, check_events=True)            # replays to what it recorded

    copy_server = ServerProcess(copy)                    # starts on the copy
    try:
        copy_server.start()
        with client(copy, "b2") as b2:
            assert b2.session.logged_on.last_seq >= last
        assert copy_server.stop() == 0
    finally:
        copy_server.cleanup()
