"""Crash recovery end to end: a real `lotex serve` process is killed with
SIGKILL while brokers send bids and orders; it is restarted on the same
data directory; the brokers' clients log on again and resend everything not
acknowledged. Then every acknowledged command is in the journal exactly once
(with the sequence number it was acknowledged with), every command sent was
eventually acknowledged, and the state the server recovered and went on from
equals a pure replay of the journal (same events, byte for byte, and the
same final state)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from exchange.codec import decode_entry
from exchange.commands import PlaceBid, PlaceOrder, RegisterParty
from exchange.engine import Engine
from gateway.client import Client, ClientError
from gateway.config import Config
from gateway.keys import initialise
from recorder import recovery
from recorder.journal import read_journal
from recorder.snapshots import find_snapshot
from tests.integration.gateway_harness import build_market, client

REPO = Path(__file__).resolve().parents[2]
PER_BROKER = 500          # commands each load thread sends
KILL_AFTER = (200, 550)   # acknowledged load commands before each kill
WINDOW = 16               # commands in flight per broker
DEADLINE = 120.0          # seconds for the whole load, kill and restart included


def free_ports(n: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


class ServerProcess:
    """`lotex serve` as a child process; `start` waits for its "ready" line."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.data / f"serve-{self.starts}.log", "wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--data", str(self.data)],
            stdout=subprocess.PIPE, stderr=log, env=env, cwd=REPO)
        log.close()
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"lotex serve exited: {self.proc.wait()}; see "
                                     f"{self.data}/serve-{self.starts}.log")
            if line.strip() == b"ready":
                return
        raise AssertionError("lotex serve did not get ready in time")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._close()

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self._close()
        return code

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._close()


def configured(data: Path, snapshot_every: int) -> ServerProcess:
    """Keys and a config on free ports in ``data``; the server, not started."""
    initialise(data)
    ports = free_ports(4)
    config = Config(broker_port=ports[0], operator_port=ports[1], feed_port=ports[2],
                    data_port=ports[3], heartbeat_ms=200, snapshot_every=snapshot_every)
    (data / "config.toml").write_text(config.to_toml())
    return ServerProcess(data)


class Loader(threading.Thread):
    """One broker sending a fixed list of commands with fixed client ids, at
    most WINDOW in flight (in Batch messages of up to ``batch`` when it is
    above 1), until every one has a result. With a ``gate``, the last
    ``gated`` commands wait until it is set."""

    def __init__(self, data: Path, user: str, commands: list[tuple[str, Any]],
                 acked: Counter, batch: int = 1, gate: threading.Event | None = None,
                 gated: int = 0) -> None:
        super().__init__(name=f"load-{user}", daemon=True)
        self.data = data
        self.user = user
        self.commands = commands
        self.acked = acked
        self.batch = batch
        self.gate = gate
        self.gated = gated if gate is not None else 0
        self.results: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            c = Client.from_data_dir(self.data, self.user, heartbeat_ms=200,
                                     resend_after=1.0, timeout=DEADLINE)
            try:
                self._load(c)
            finally:
                c.close()
        except BaseException as exc:  # noqa: BLE001  (reported by the test)
            self.error = exc

    def _load(self, c: Client) -> None:
        deadline = time.monotonic() + DEADLINE
        queue = list(self.commands)
        in_flight: set[str] = set()
        while queue or in_flight:
            while queue and len(in_flight) < WINDOW and (
                    len(queue) > self.gated or self.gate is None or self.gate.is_set()):
                n = min(self.batch, WINDOW - len(in_flight), len(queue))
                chunk, queue = queue[:n], queue[n:]
                if self.batch > 1:
                    c.send_batch([cmd for _, cmd in chunk], [cid for cid, _ in chunk])
                else:
                    c.send(chunk[0][1], client_id=chunk[0][0])
                in_flight.update(cid for cid, _ in chunk)
            if time.monotonic() > deadline:
                raise ClientError(f"{self.user}: {len(in_flight)} commands without result")
            c.poll(0.05)
            for cid in list(in_flight):
                found = c.session.take(cid)
                if found is not None:
                    self.results[cid] = found
                    in_flight.discard(cid)
                    self.acked[self.user] += 1


def canonical(value: Any) -> Any:
    """A comparable form of engine state (structs, containers, slotted objects)."""
    if isinstance(value, (str, int, bytes, bool, type(None))):
        return value
    if isinstance(value, dict):
        return ("dict", tuple((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)) or type(value).__name__ in ("SortedList", "deque"):
        return (type(value).__name__, tuple(canonical(v) for v in value))
    fields = getattr(value, "__struct_fields__", None)
    if fields is None:
        slots = [s for cls in type(value).__mro__ for s in getattr(cls, "__slots__", ())]
        fields = slots or sorted(vars(value))
    return (type(value).__name__, tuple((f, canonical(getattr(value, f))) for f in fields
                                        if hasattr(value, f)))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 8], ids=["requests", "batches"])
def test_sigkill_during_load_then_restart_loses_and_duplicates_nothing(tmp_path, batch):
    data = tmp_path / "exchange"
    server = configured(data, snapshot_every=150)
    try:
        server.start()
        with client(data, "op") as op, client(data, "b1") as b1, client(data, "b2") as b2:
            market = build_market(op, b1, b2)
        acme, borealis, seller = (market.paddles[n] for n in ("Acme", "Borealis", "Seller"))
        plans: dict[str, list[tuple[str, Any]]] = {"b1": [], "b2": []}
        for i in range(PER_BROKER):
            price = 500 + i % 7
            if i % 5 == 0:
                plans["b1"].append((f"b1-{i}", PlaceBid(serial=market.english, paddle=acme,
                                                        amount=3_000_000 * (i + 1))))
                plans["b2"].append((f"b2-{i}", PlaceBid(serial=market.english, paddle=borealis,
                                                        amount=3_000_000 * (i + 1) + 1_500_000)))
            elif i % 5 == 4:
                plans["b1"].append((f"b1-{i}", RegisterParty(name=f"Client {i}")))
                plans["b2"].append((f"b2-{i}", RegisterParty(name=f"Client {i}")))
            else:
                plans["b1"].append((f"b1-{i}", PlaceOrder(
                    session="S1", instrument=market.instrument, paddle=seller, order=i,
                    side="sell", qty=1 + i % 3, price=price)))
                plans["b2"].append((f"b2-{i}", PlaceOrder(
                    session="S1", instrument=market.instrument, paddle=borealis, order=i,
                    side="buy", qty=1 + i % 4, price=price)))
        acked: Counter = Counter()
        loaders = [Loader(data, user, plan, acked, batch) for user, plan in plans.items()]
        for loader in loaders:
            loader.start()
        deadline = time.monotonic() + DEADLINE
        acked_at_kills = []
        for threshold in KILL_AFTER:
            while sum(acked.values()) < threshold and time.monotonic() < deadline:
                time.sleep(0.005)
            acked_at_kills.append(sum(acked.values()))
            assert acked_at_kills[-1] >= threshold, "the load stalled"
            server.kill()
            time.sleep(0.3)
            server.start()
        for loader in loaders:
            loader.join(timeout=DEADLINE)
            assert not loader.is_alive(), f"{loader.name} did not finish"
            assert loader.error is None, loader.error
        assert server.stop() == 0
    finally:
        server.cleanup()

    # --- every acknowledged command is in the journal exactly once ------------
    entries = [decode_entry(r.payload) for r in read_journal(data / "journal")]
    by_seq = {e.env.seq: e for e in entries}
    counts = Counter((e.env.actor, e.env.client_id) for e in entries if e.env.client_id)
    assert all(n == 1 for n in counts.values()), [k for k, n in counts.items() if n > 1][:5]
    for loader in loaders:
        sent = dict(loader.commands)
        assert set(loader.results) == set(sent), f"{loader.user}: commands without result"
        for cid, result in loader.results.items():
            entry = by_seq[result.seq]
            assert (entry.env.actor, entry.env.client_id) == (loader.user, cid)
            assert entry.env.cmd == sent[cid]
        assert sum(1 for actor, _ in counts if actor == loader.user) >= len(sent)
    assert acked_at_kills[-1] < sum(len(p) for p in plans.values()), "killed during the load"
    resent = sum(r.resent for loader in loaders for r in loader.results.values())
    print(f"acknowledged at the kills {acked_at_kills}, journal entries "
          f"{len(entries)}, results answered as resends {resent}")

    # --- the recovered server behaved as a pure replay of the journal --------
    replayed = recovery.rebuild(data, use_snapshot=False, check_events=True)
    last = find_snapshot(data / "snapshots")
    assert last is not None and last.seq == entries[-1].env.seq, "final snapshot at close"
    live = Engine.restore(last.data)
    assert canonical(live.state) == canonical(replayed.state)
