"""The gateway end to end over 127.0.0.1, beside a bare pyzmq echo and a
durable echo.

Run: ``make bench`` or
``.venv/bin/python -m pytest bench/test_gateway_bench.py --benchmark-only -p no:cacheprovider -s``
(``-s`` prints the figures). Environment: ``GATEWAY_BENCH_SECONDS`` (length
of each measured run, default 3), ``GATEWAY_BENCH_WINDOW`` (orders in
flight per connection in the throughput runs, default 256; with Batches, at
least 10 batches). A shallow window measures the round trip, not the
server: at 64 the server waited for acknowledgements to come back between
bursts (~28 k/s at 4 connections, the machine ~60 % busy); at 256 it is
saturated (~34-37 k/s).

What runs where: `lotex serve` in its own process with ``group`` durability
(one write and one fdatasync per batch) on a temporary directory; the load
generator in the test process: N DEALER sockets with CURVE keys of N
different brokers (``bench1`` ...), each logged on, each sending `PlaceOrder`
in pairs (a resting buy of one of its paddles, then a sell of its other
paddle that trades against it), so every second order trades and the book
stays small. An order counts once its `Result` arrives: journaled, durable,
applied, its trade published.

The latency runs come first, on the freshly started server, each after a
second of quiet; then the throughput runs.

- Throughput: closed loop, ``WINDOW`` orders in flight per connection, for
  1, 4 and 16 connections: acknowledged orders per second.
- Latency: open loop at fixed offered rates (1,000, 10,000 and 30,000 per
  second) over 4 connections. Each order has a scheduled send time
  (start + i / rate); latency is its ack time minus its *scheduled* time, so
  a stall delays every order behind it and shows up in the figures (no
  coordinated omission). p50, p99, p99.9 and max. The 10,000/s run is
  repeated ``GATEWAY_BENCH_LATENCY_ROUNDS`` times (default 5) and the round
  with the median p99 reported, every round listed beside it.
- Echo: a bare ROUTER that sends every message straight back (same CURVE
  keys, no ZAP, no decoding), in its own process, driven by the same load
  generator with the same message sizes. Its figures are the ceiling the
  transport and the Python socket calls set on this machine; the ratios say
  what the gateway costs on top.
- Durable echo: the same echo, but each turn first writes what it drained
  to a file (overwriting zeros written ahead, as the journal does) and
  fdatasyncs it, then sends it all back: journal-first group commit with no
  decoding and no engine. Its latency is the floor of any server that
  acknowledges only what is durable, over this transport, on this disk and
  these 2 cores shared with the load generator.

- CPU per order: the server process's CPU time (every thread: engine,
  journal, ZeroMQ I/O; from /proc) and the load generator's, divided by the
  orders acknowledged. Unlike orders per second, it hardly depends on how
  much of the machine the server got.
- fdatasync: 200 appends of 4 KiB, each synced, on the data directory's disk,
  at start and again just before each latency run; with group durability
  every acknowledgement waits for at least one fdatasync, so it bounds the
  latency figures from below.

The machine is shared and small (2 cores): the load generator (its Python
thread and its ZeroMQ I/O thread) and the server compete for them, so
figures vary run to run. ``GATEWAY_BENCH_PIN=1`` runs the server's engine
thread alone on the last CPU (``engine_cpu``) and its other threads, the
load generator and its ZeroMQ thread on the others; each echo does the same
with its one thread (same CPUs, same neighbours). It made no difference
here: at 10,000/s, three interleaved runs of 5 rounds each, p99 median 5.8
ms unpinned (rounds 4.4-9.2) and 6.2 ms pinned (3.4-17.2).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest
import zmq

from exchange.commands import (CreateInstrument, CreateSession, IssuePaddle, IssueUnits,
                               PlaceOrder, RegisterParty, ReviewCredit)
from gateway import protocol as p
from gateway.client import Client
from gateway.config import Config
from gateway.keys import ClientKey, KeyStore, initialise
from gateway.server import Server, serve_in_thread, stop_thread

REPO = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("GATEWAY_BENCH_SECONDS", "3"))
WINDOW = int(os.environ.get("GATEWAY_BENCH_WINDOW", "256"))
CONNECTIONS = (1, 4, 16)
BATCHES = (10, 100)          # orders per Batch message in the batched throughput runs
RATES = (1_000, 10_000, 30_000)
# The 10,000/s run, whose p99 the issue sets a goal for, is repeated: on this
# shared 2-core machine one run's p99 varies 1.4-3.5 ms. The round with the
# median p99 is reported, with every round's figures beside it.
LATENCY_ROUNDS = {10_000: int(os.environ.get("GATEWAY_BENCH_LATENCY_ROUNDS", "5"))}
LATENCY_CONNECTIONS = 4
INSTRUMENT = "ULR-B"
# The engine thread's CPU (and each echo's), or -1; the load generator gets the others.
_CPUS = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
ENGINE_CPU = (max(_CPUS) if os.environ.get("GATEWAY_BENCH_PIN", "0") == "1" and len(_CPUS) > 1
              else -1)

RESULTS: dict[str, Any] = {}


@contextlib.contextmanager
def _cpus(cpus: set[int]) -> Iterator[None]:
    """Run this thread, and what it starts meanwhile (threads, processes), on ``cpus``."""
    if ENGINE_CPU < 0:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def off_engine_cpu() -> contextlib.AbstractContextManager[None]:
    """The load generator's CPUs: all but ENGINE_CPU."""
    return _cpus(_CPUS - {ENGINE_CPU})


def every_cpu() -> contextlib.AbstractContextManager[None]:
    """A server's or echo's CPUs: all (each pins its own threads)."""
    return _cpus(_CPUS)


class Ack(msgspec.Struct):
    """Just enough of a server message to count it (other fields are skipped)."""

    type: str
    client_id: str = ""
    accepted: bool = True
    code: str = ""


ack_decoder = msgspec.msgpack.Decoder(Ack)


class Acks(msgspec.Struct):
    """A `Result`, or the `Results` of a Batch, just enough to count orders."""

    type: str
    accepted: bool = True
    results: list[Ack] = []


acks_decoder = msgspec.msgpack.Decoder(Acks)


# ---------------------------------------------------------------------------------
# the exchange under test and the echo
# ---------------------------------------------------------------------------------

# each connection is a broker of its own, sending at up to ~50,000/s: the throttle
# is checked (as in production) but never reached
THROTTLE_OUT_OF_REACH = 10**9


def start_server(data: Path, durability: str = "group") -> tuple[subprocess.Popen, dict]:
    initialise(data)
    store = KeyStore(data)
    for i in range(1, max(CONNECTIONS) + 1):
        store.add_user(f"bench{i}", "broker")
    config = Config(broker_port=0, operator_port=0, feed_port=0, data_port=0,
                    durability=durability, snapshot_every=10**9, snapshot_seconds=10**6,
                    engine_cpu=ENGINE_CPU, max_requests_per_second=THROTTLE_OUT_OF_REACH)
    (data / "config.toml").write_text(config.to_toml())
    with open(data / "serve.log", "wb") as log, every_cpu():
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--data",
                                 str(data)], stdout=subprocess.PIPE, stderr=log, cwd=REPO,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout is not None
    while (line := proc.stdout.readline()) and line.strip() != b"ready":
        pass
    assert line.strip() == b"ready", "lotex serve did not start"
    return proc, json.loads((data / "endpoints.json").read_text())


def set_up_market(data: Path) -> dict[str, tuple[int, int]]:
    """Session, a units book, and for each bench broker a buyer and a seller
    paddle (approved, with units). Return user -> (buy paddle, sell paddle)."""
    paddles: dict[str, tuple[int, int]] = {}
    with Client.from_data_dir(data, "op", notices=False) as op:
        op.ok(CreateSession(session="B", name="bench"))
        op.ok(CreateInstrument(session="B", instrument=INSTRUMENT, kind="units"))
        for i in range(1, max(CONNECTIONS) + 1):
            user = f"bench{i}"
            with Client.from_data_dir(data, user, notices=False) as broker:
                pair = []
                for role in ("buyer", "seller"):
                    party = broker.ok(RegisterParty(name=f"{user} {role}")).seq
                    op.ok(ReviewCredit(party=party, approved=True, credit_limit=10**15,
                                       agreement_version="bench"))
                    paddle = op.ok(IssuePaddle(session="B", party=party)).events[0].paddle
                    pair.append(paddle)
                op.ok(IssueUnits(session="B", instrument=INSTRUMENT, paddle=pair[1],
                                 qty=10**12))
                paddles[user] = (pair[0], pair[1])
    return paddles


def stopped_market_server(data: Path) -> tuple[Server, dict[str, tuple[int, int]]]:
    """Start a server in this process on ``data``, set the bench market up over
    real sockets, then stop its loop: its engine, journal and tables are left
    for the caller to drive (and to close). Return it and `set_up_market`'s paddles."""
    initialise(data)
    store = KeyStore(data)
    for i in range(1, max(CONNECTIONS) + 1):
        store.add_user(f"bench{i}", "broker")
    config = Config(broker_port=0, operator_port=0, feed_port=0, data_port=0,
                    snapshot_every=10**9, snapshot_seconds=10**6,
                    max_requests_per_second=THROTTLE_OUT_OF_REACH)
    server, thread = serve_in_thread(data, config)
    try:
        paddles = set_up_market(data)
    except BaseException:
        stop_thread(server, thread)
        raise
    server.stop()
    thread.join(timeout=10)
    return server, paddles


ECHO = """
import os, sys, zmq
ctx = zmq.Context()
cpu = int(sys.argv[3])            # as the server's engine_cpu: this thread alone there
if cpu >= 0:
    for other in sorted(os.sched_getaffinity(0) - {cpu}):
        ctx.set(zmq.THREAD_AFFINITY_CPU_ADD, other)
    os.sched_setaffinity(0, {cpu})
sock = ctx.socket(zmq.ROUTER)
sock.linger = 0
sock.curve_server = True
sock.curve_publickey, sock.curve_secretkey = sys.argv[1].encode(), sys.argv[2].encode()
sock.sndhwm = sock.rcvhwm = 10000
fd = -1
ZEROS = 64 << 20                  # the durable echo: zeros written once, overwritten in a circle
if len(sys.argv) > 4:
    fd = os.open(sys.argv[4], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, bytes(ZEROS))
    os.fsync(fd)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
poller = zmq.Poller()
poller.register(sock, zmq.POLLIN)
offset = 0
while True:
    poller.poll()
    drained = []
    for _ in range(2048):
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
        if fd < 0:
            sock.send_multipart(frames, zmq.NOBLOCK)
        else:
            drained.append(frames)
    if drained:                   # durable: one write and one fdatasync, then the replies
        data = b"".join(frames[-1] for frames in drained)
        if offset + len(data) > ZEROS:
            offset = 0
        os.pwrite(fd, data, offset)
        offset += len(data)
        os.fdatasync(fd)
        for frames in drained:
            sock.send_multipart(frames, zmq.NOBLOCK)
"""


def start_echo(data: Path, durable: bool = False) -> tuple[subprocess.Popen, str]:
    """Start the echo (or the durable echo, writing in ``data``); return it and its endpoint."""
    keys = json.loads((data / "keys" / "server.json").read_text())
    args = [sys.executable, "-c", ECHO, keys["public_key"], keys["secret_key"], str(ENGINE_CPU)]
    if durable:
        args.append(str(data / "durable-echo"))
    with every_cpu():
        proc = subprocess.Popen(args, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"tcp://127.0.0.1:{port}"


# ---------------------------------------------------------------------------------
# the load generator
# ---------------------------------------------------------------------------------

class Conn:
    """One broker connection of the load generator."""

    def __init__(self, context: zmq.Context, data: Path, user: str, endpoint: str,
                 paddles: tuple[int, int], logon: bool) -> None:
        key = ClientKey.load(data / "clients" / f"{user}.json")
        self.sock = context.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.sndhwm = self.sock.rcvhwm = 100000
        self.sock.curve_serverkey = key.server_public_key.encode()
        self.sock.curve_publickey = key.public_key.encode()
        self.sock.curve_secretkey = key.secret_key.encode()
        self.sock.connect(endpoint)
        self.user = user
        self.buyer, self.seller = paddles
        self.order = 0
        self.prefix = f"{user}-{time.time_ns()}-"
        if logon:
            self.sock.send(p.encode(p.Logon(heartbeat_ms=10000, notices=False)))
            while True:
                assert self.sock.poll(10000), "no LogonAccepted"
                if ack_decoder.decode(self.sock.recv()).type == "LogonAccepted":
                    break
        else:
            self.sock.send(b"ping")
            assert self.sock.poll(10000), "no echo"
            self.sock.recv()

    def next_message(self) -> tuple[str, bytes]:
        self.order += 1
        n = self.order
        buy = n % 2 == 1
        cid = self.prefix + str(n)
        cmd = PlaceOrder(session="B", instrument=INSTRUMENT,
                         paddle=self.buyer if buy else self.seller, order=n,
                         side="buy" if buy else "sell", qty=1, price=1000)
        return cid, p.encode(p.Request(client_id=cid, cmd=cmd))

    def next_batch(self, size: int) -> bytes:
        """A Batch of the next ``size`` orders (each its own client id)."""
        requests = []
        for _ in range(size):
            self.order += 1
            n = self.order
            buy = n % 2 == 1
            requests.append(p.Request(client_id=self.prefix + str(n), cmd=PlaceOrder(
                session="B", instrument=INSTRUMENT, paddle=self.buyer if buy else self.seller,
                order=n, side="buy" if buy else "sell", qty=1, price=1000)))
        return p.encode(p.Batch(requests=requests))


def throughput(conns: list[Conn], seconds: float, window: int, echo: bool,
               batch: int = 0) -> float:
    """Closed loop: keep ``window`` orders in flight per connection (in
    messages of one Request, or of Batches of ``batch`` orders); return
    acknowledged orders per second (an echoed Batch counts ``batch``)."""
    poller = zmq.Poller()
    for conn in conns:
        poller.register(conn.sock, zmq.POLLIN)
    by_sock = {conn.sock: conn for conn in conns}
    in_flight = {conn.sock: 0 for conn in conns}
    acked = 0
    rejected = 0
    start = time.perf_counter()
    end = start + seconds
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        for sock, conn in by_sock.items():
            while in_flight[sock] < window:
                data = conn.next_batch(batch) if batch else conn.next_message()[1]
                sock.send(data, zmq.NOBLOCK)
                in_flight[sock] += batch or 1
        for sock, _ in poller.poll(100):
            for _ in range(window):
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if echo:
                    acked += batch or 1
                    in_flight[sock] -= batch or 1
                    continue
                msg = acks_decoder.decode(data)
                if msg.type == "Result":
                    acked += 1
                    in_flight[sock] -= 1
                    rejected += not msg.accepted
                elif msg.type == "Results":
                    acked += len(msg.results)
                    in_flight[sock] -= len(msg.results)
                    rejected += sum(not r.accepted for r in msg.results)
    elapsed = time.perf_counter() - start
    drain(conns, sum(in_flight.values()) // (batch or 1), echo)
    assert rejected == 0, f"{rejected} orders rejected"
    return acked / elapsed


def drain(conns: list[Conn], expected: int, echo: bool) -> None:
    """Receive what is still in flight (not counted) so runs do not overlap."""
    poller = zmq.Poller()
    for conn in conns:
        poller.register(conn.sock, zmq.POLLIN)
    deadline = time.monotonic() + 30
    while expected > 0 and time.monotonic() < deadline:
        for sock, _ in poller.poll(200):
            while True:
                try:
                    data = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if echo or acks_decoder.decode(data).type in ("Result", "Results"):
                    expected -= 1


class Waiter:
    """Sleep until a socket has something to read or a deadline passes, with
    microsecond timeouts: zmq_poll counts whole milliseconds, which would
    either delay sends or make the load generator spin on a shared core."""

    def __init__(self, socks: list[zmq.Socket]) -> None:
        self.poller = zmq.Poller()
        for sock in socks:
            self.poller.register(sock, zmq.POLLIN)
        self.fds = [sock.getsockopt(zmq.FD) for sock in socks]

    def readable(self, timeout: float) -> list[zmq.Socket]:
        """Return the sockets with messages, waiting at most ``timeout`` s for one."""
        ready = self.poller.poll(0)
        if ready or timeout <= 0:
            return [sock for sock, _ in ready]
        # ZMQ_FD signals edge-triggered; the poll above re-armed it
        select.select(self.fds, [], [], timeout)
        return [sock for sock, _ in self.poller.poll(0)]


def latency(conns: list[Conn], rate: int, seconds: float, echo: bool) -> dict[str, float]:
    """Open loop at ``rate`` orders/s; latency from each order's scheduled time.
    Every message is encoded before the clock starts, so the schedule only
    waits for sends; an order sent late (the generator or the machine
    stalled) counts from when it should have left."""
    total = int(rate * seconds)
    interval = 1.0 / rate
    plan = [(conns[i % len(conns)].sock, *conns[i % len(conns)].next_message())
            for i in range(total)]
    scheduled: dict[str, float] = {}
    latencies: list[float] = []
    waiter = Waiter([conn.sock for conn in conns])
    decode = ack_decoder.decode
    clock = time.perf_counter
    events, pollin, noblock = zmq.EVENTS, zmq.POLLIN, zmq.NOBLOCK
    sent = 0
    start = clock() + 0.01
    deadline = start + seconds + 30
    while len(latencies) < total:
        now = clock()
        if now > deadline:
            break
        while sent < total and start + sent * interval <= now:
            sock, cid, data = plan[sent]
            scheduled[cid] = start + sent * interval
            sock.send(data, noblock)
            sent += 1
        wait = (start + sent * interval - clock()) if sent < total else 0.1
        for sock in waiter.readable(wait):
            while True:          # recv what is there; EVENTS, not an exception, ends it
                data = sock.recv(noblock)
                arrived = clock()
                when = scheduled.pop(decode(data).client_id, None)  # an echo is the Request
                if when is not None:
                    latencies.append(arrived - when)
                if not sock.getsockopt(events) & pollin:
                    break
    assert len(latencies) == total, f"{total - len(latencies)} orders unanswered"
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6
    return {"p50_us": pct(0.50), "p99_us": pct(0.99), "p999_us": pct(0.999),
            "max_us": latencies[-1] * 1e6, "orders": total}


# ---------------------------------------------------------------------------------
# the benchmark
# ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rig():
    tmp = tempfile.TemporaryDirectory(prefix="lotex-bench-")
    data = Path(tmp.name)
    server, endpoints = start_server(data)       # started before this process leaves the CPU
    echo, echo_endpoint = start_echo(data)
    durable, durable_endpoint = start_echo(data, durable=True)
    try:
        with off_engine_cpu():
            paddles = set_up_market(data)
            RESULTS["fdatasync"] = fdatasync_latency(data)
            yield data, endpoints, echo_endpoint, paddles, server.pid, durable_endpoint
    finally:
        stop(server, echo, durable)
        tmp.cleanup()
        report()


def stop(*procs: subprocess.Popen) -> None:
    """End the servers and echoes this bench started."""
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=60)
        if proc.stdout is not None:
            proc.stdout.close()


def connections(rig: Any, n: int, target: str, context: zmq.Context) -> list[Conn]:
    """``n`` broker connections to the ``target``: "gateway", "echo" or "durable" (echo)."""
    data, endpoints, echo_endpoint, paddles, _, durable_endpoint = rig
    endpoint = {"gateway": endpoints["broker"], "echo": echo_endpoint,
                "durable": durable_endpoint}[target]
    return [Conn(context, data, f"bench{i}", endpoint, paddles[f"bench{i}"],
                 logon=target == "gateway") for i in range(1, n + 1)]


@pytest.mark.parametrize("rate", RATES)
def test_gateway_latency(benchmark, rig, rate):
    context = zmq.Context()
    try:
        conns = connections(rig, LATENCY_CONNECTIONS, "gateway", context)
        echo_conns = connections(rig, LATENCY_CONNECTIONS, "echo", context)
        durable_conns = connections(rig, LATENCY_CONNECTIONS, "durable", context)
        measured: dict[str, Any] = {}

        def median_p99(rounds: list[dict[str, float]]) -> dict[str, float]:
            return sorted(rounds, key=lambda r: r["p99_us"])[len(rounds) // 2]

        def run() -> None:
            measured["fdatasync"] = fdatasync_latency(rig[0])
            rounds, durable_rounds = [], []
            for _ in range(LATENCY_ROUNDS.get(rate, 1)):   # interleaved: the same weather
                time.sleep(1.0)
                with CpuMeter(rig[4]) as cpu:
                    found = latency(conns, rate, SECONDS, echo=False)
                found.update(cpu.per(found["orders"]))
                rounds.append(found)
                time.sleep(1.0)
                durable_rounds.append(latency(durable_conns, rate, SECONDS, echo=True))
            measured["gateway"] = median_p99(rounds)
            measured["rounds"] = rounds
            measured["durable"] = median_p99(durable_rounds)
            measured["durable_rounds"] = durable_rounds
            measured["echo"] = latency(echo_conns, rate, SECONDS, echo=True)
        benchmark.pedantic(run, rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        RESULTS[f"latency_{rate}"] = measured
    finally:
        context.destroy(linger=0)


def test_gateway_latency_without_fsync(benchmark, rig):
    """The 10,000/s latency run against a second server with ``none``
    durability (written, never synced): what the disk's fdatasync adds to
    the acknowledgement latency, and the floor without it on this machine."""
    context = zmq.Context()
    tmp = tempfile.TemporaryDirectory(prefix="lotex-bench-nosync-")
    data = Path(tmp.name)
    server, endpoints = start_server(data, durability="none")
    try:
        conns = connections((data, endpoints, "", set_up_market(data), server.pid, ""),
                            LATENCY_CONNECTIONS, "gateway", context)
        measured: dict[str, dict[str, float]] = {}

        def run() -> None:
            time.sleep(1.0)
            with CpuMeter(server.pid) as cpu:
                measured["gateway"] = latency(conns, 10_000, SECONDS, echo=False)
            measured["gateway"].update(cpu.per(measured["gateway"]["orders"]))
        benchmark.pedantic(run, rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        RESULTS["latency_nosync"] = measured
    finally:
        context.destroy(linger=0)
        stop(server)
        tmp.cleanup()


@pytest.mark.parametrize("n", CONNECTIONS)
def test_gateway_throughput(benchmark, rig, n):
    context = zmq.Context()
    try:
        conns = connections(rig, n, "gateway", context)
        echo_conns = connections(rig, n, "echo", context)
        durable_conns = connections(rig, n, "durable", context)
        measured: dict[str, float] = {}

        def run() -> None:
            with CpuMeter(rig[4]) as cpu:
                measured["gateway"] = throughput(conns, SECONDS, WINDOW, echo=False)
            measured.update(cpu.per(measured["gateway"] * cpu.seconds))
            measured["echo"] = throughput(echo_conns, SECONDS, WINDOW, echo=True)
            measured["durable"] = throughput(durable_conns, SECONDS, WINDOW, echo=True)
        benchmark.pedantic(run, rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        RESULTS[f"throughput_{n}"] = measured
    finally:
        context.destroy(linger=0)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("n", CONNECTIONS)
def test_gateway_batch_throughput(benchmark, rig, n, batch):
    """The same load with orders sent in Batch messages of ``batch`` orders
    (mass order entry): the per-message costs (ZeroMQ, CURVE, decode, reply)
    are paid once per batch. The echo sends back Batches of the same size."""
    context = zmq.Context()
    try:
        conns = connections(rig, n, "gateway", context)
        echo_conns = connections(rig, n, "echo", context)
        durable_conns = connections(rig, n, "durable", context)
        window = max(WINDOW, 10 * batch)
        measured: dict[str, float] = {}

        def run() -> None:
            with CpuMeter(rig[4]) as cpu:
                measured["gateway"] = throughput(conns, SECONDS, window, echo=False, batch=batch)
            measured.update(cpu.per(measured["gateway"] * cpu.seconds))
            measured["echo"] = throughput(echo_conns, SECONDS, window, echo=True, batch=batch)
            measured["durable"] = throughput(durable_conns, SECONDS, window, echo=True,
                                             batch=batch)
        benchmark.pedantic(run, rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        RESULTS[f"batch_{n}_{batch}"] = measured
    finally:
        context.destroy(linger=0)


class CpuMeter:
    """CPU seconds the server process (all its threads, from /proc) and this
    load generator spend over a block: the server's figure per order does not
    depend on how many cores it got, unlike orders per second on a shared
    machine."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def server_cpu(self) -> float:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> "CpuMeter":
        self.start = (time.perf_counter(), self.server_cpu(), time.process_time())
        return self

    def __exit__(self, *exc: object) -> None:
        self.end = (time.perf_counter(), self.server_cpu(), time.process_time())
        self.seconds = self.end[0] - self.start[0]

    def per(self, orders: float) -> dict[str, float]:
        """Server and generator CPU in microseconds per order."""
        return {"server_cpu_us": (self.end[1] - self.start[1]) / orders * 1e6,
                "generator_cpu_us": (self.end[2] - self.start[2]) / orders * 1e6}


def fdatasync_latency(directory: Path, rounds: int = 200) -> dict[str, float]:
    """What one group commit costs at least on this disk: append 4 KiB, fdatasync."""
    fd = os.open(directory / "fsync-probe", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    times = []
    try:
        for _ in range(rounds):
            os.write(fd, b"\0" * 4096)
            start = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    times.sort()
    return {"p50_us": times[rounds // 2] * 1e6, "p99_us": times[int(rounds * 0.99)] * 1e6,
            "max_us": times[-1] * 1e6}


GOAL_ORDERS_PER_S = 50_000
GOAL_P99_US = 2_000             # at 10,000 orders/s


def goal_lines() -> list[str]:
    """The issue's two goals against this run: the best throughput, and how
    many latency rounds at 10,000/s had p99 under 2 ms, the gateway's and
    the durable echo's (the floor of any server that acknowledges only what
    is durable, over this transport, disk and cores)."""
    lines = []
    best = max((found["gateway"] for key, found in RESULTS.items()
                if key.startswith(("throughput_", "batch_"))), default=None)
    if best is not None:
        lines.append(f"  goal {GOAL_ORDERS_PER_S:,} acked orders/s: best here {best:,.0f} "
                     f"({best / GOAL_ORDERS_PER_S:.2f} of it)")
    found = RESULTS.get("latency_10000")
    if found and found.get("rounds"):
        def under(rounds: list[dict[str, float]]) -> str:
            return f"{sum(r['p99_us'] < GOAL_P99_US for r in rounds)} of {len(rounds)}"
        lines.append(f"  goal p99 < {GOAL_P99_US / 1000:.0f} ms at 10,000/s: rounds under it: "
                     f"gateway {under(found['rounds'])}, durable echo "
                     f"{under(found['durable_rounds'])}")
    return lines


def report() -> None:
    lines = ["", "gateway vs bare pyzmq DEALER-ROUTER echo and durable echo (one write and one "
             "fdatasync a turn) (127.0.0.1, CURVE, group durability)",
             f"  engine thread and each echo alone on CPU {ENGINE_CPU}, the rest on the others"
             if ENGINE_CPU >= 0 else "  threads not pinned (GATEWAY_BENCH_PIN=1 pins them)"]
    probe = RESULTS.get("fdatasync")
    if probe:
        lines.append(f"  fdatasync of a 4 KiB append on the data disk: p50 {probe['p50_us']:,.0f} us"
                     f"  p99 {probe['p99_us']:,.0f} us (every acknowledgement waits for one)")
    def throughput_line(label: str, found: dict[str, float], echo_unit: str) -> str:
        return (f"  {label}: {found['gateway']:>9,.0f} acked orders/s   echo "
                f"{found['echo']:>9,.0f} {echo_unit}   ratio {found['gateway'] / found['echo']:.2f}"
                f"   durable echo {found['durable']:>9,.0f}   ratio "
                f"{found['gateway'] / found['durable']:.2f}"
                f"   CPU per order: server {found['server_cpu_us']:.0f} us, generator "
                f"{found['generator_cpu_us']:.0f} us")
    for n in CONNECTIONS:
        found = RESULTS.get(f"throughput_{n}")
        if found:
            lines.append(throughput_line(f"{n:>2} connections", found, "msg/s"))
    for batch in BATCHES:
        for n in CONNECTIONS:
            found = RESULTS.get(f"batch_{n}_{batch}")
            if found:
                lines.append(throughput_line(f"{n:>2} connections, Batch of {batch:>3}", found,
                                             "orders/s"))
    for rate in RATES:
        found = RESULTS.get(f"latency_{rate}")
        if found:
            g, e, f, d = found["gateway"], found["echo"], found["fdatasync"], found["durable"]
            lines.append(f"  {rate:>6,}/s offered: gateway p50 {g['p50_us']:>7,.0f} us  p99 "
                         f"{g['p99_us']:>7,.0f} us  p99.9 {g['p999_us']:>7,.0f} us  max "
                         f"{g['max_us']:>7,.0f} us | echo p50 {e['p50_us']:>5,.0f}  p99 "
                         f"{e['p99_us']:>6,.0f}  p99.9 {e['p999_us']:>6,.0f} us | durable echo "
                         f"p50 {d['p50_us']:>5,.0f}  p99 {d['p99_us']:>6,.0f}  p99.9 "
                         f"{d['p999_us']:>6,.0f} us")
            lines.append(f"  {'':>16} gateway / echo: p50 {g['p50_us'] / e['p50_us']:.1f}x  p99 "
                         f"{g['p99_us'] / e['p99_us']:.1f}x; gateway / durable echo: p50 "
                         f"{g['p50_us'] / d['p50_us']:.1f}x  p99 {g['p99_us'] / d['p99_us']:.1f}x")
            lines.append(f"  {'':>16} fdatasync just before: p50 {f['p50_us']:,.0f} us  p99 "
                         f"{f['p99_us']:,.0f} us  max {f['max_us']:,.0f} us; CPU per order: "
                         f"server {g['server_cpu_us']:.0f} us, generator "
                         f"{g['generator_cpu_us']:.0f} us")
            if len(found.get("rounds", [])) > 1:
                lines.append(f"  {'':>16} {len(found['rounds'])} rounds (the median p99 above), "
                             "p50 / p99 / p99.9 us: " + ", ".join(
                                 f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} / {r['p999_us']:,.0f}"
                                 for r in found["rounds"]))
                lines.append(f"  {'':>16} durable echo, interleaved with them: " + ", ".join(
                    f"{r['p50_us']:,.0f} / {r['p99_us']:,.0f} / {r['p999_us']:,.0f}"
                    for r in found["durable_rounds"]))
    lines.extend(goal_lines())
    found = RESULTS.get("latency_nosync")
    if found:
        g = found["gateway"]
        lines.append(f"  10,000/s offered, durability none (no fdatasync): p50 {g['p50_us']:>7,.0f} us"
                     f"  p99 {g['p99_us']:>7,.0f} us  p99.9 {g['p999_us']:>7,.0f} us  max "
                     f"{g['max_us']:>7,.0f} us; CPU per order: server {g['server_cpu_us']:.0f} us")
    print("\n".join(lines))
