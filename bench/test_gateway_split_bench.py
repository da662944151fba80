"""How far a front/engine split of the gateway could go on this machine.

Run: ``.venv/bin/python -m pytest bench/test_gateway_split_bench.py --benchmark-only
-p no:cacheprovider -s`` (``-s`` prints the figures).

`lotex serve` runs every order through one Python thread, so it uses one of
the machine's two cores (~30 us of CPU per order in Batch messages, ~31 k
orders/s). The only way for Python to use the second core is a second
process. This bench measures the best such split we could sketch, as a
ceiling for the design, not as a product: it leaves out what a real split
would also need (logon and sessions, operators, notices to other
connections, resends, timers, snapshots, recovery), so a real one would
only be slower.

- The *engine process* owns the `Engine` and the `Journal`: for each Batch
  forwarded to it, it decodes the requests, checks each client id (form and
  duplicates), wraps each command in an `Envelope`, applies it, encodes its
  journal `Entry`; then appends the turn's entries, one fdatasync, and sends
  the encoded entries back (the bytes just journaled, unencoded again).
- The *front process* owns the CURVE broker socket (with the ZAP handler, so
  the user comes from the authenticated connection): it forwards each Batch
  with its user to the engine process over IPC, and for the entries that
  come back sorts the events into what the sender sees and the public ones,
  encodes the `Results` and the `Market` messages, folds the public view,
  keeps the feed ring and publishes.
- The load generator is this test process, as in `test_gateway_bench.py`
  (16 brokers' connections, Batch messages of 100 orders, closed loop).

Both processes are forked from a server that the bench market was set up on
over real sockets and whose loop was then stopped, so they start from the
same state as `lotex serve` would. Each freezes the collector's objects every
`FREEZE_EVERY` entries as the server does (without it the engine process
grew from 18 to 27 us per order within 20 seconds).

Measured on this machine (2026-11-30, three runs): 29-48 k acked orders/s
(best with 4 connections and 3,000 orders in flight each: 41-48 k), the
engine process at 18-23 us of CPU per order, the front at 11-13 us, the
generator 3 us: 32-39 us in all, so even a perfect overlap on 2 cores would
top out at 52-63 k. `lotex serve` in the same conditions: 30-31 k at
30-32 us on one core.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import tempfile
import time
import traceback
from pathlib import Path

import msgspec
import pytest
import zmq

from exchange.codec import Entry, encode_entry
from exchange.commands import Envelope
from exchange.events import CommandRejected
from gateway import protocol as p
from gateway.server import FREEZE_EVERY, Server, _ResultsOut
from gateway.tables import ID_JOIN, ID_MASK
from gateway.zap import ZapHandler
from recorder.format import KIND_ENTRY

from test_gateway_bench import CONNECTIONS, Conn, CpuMeter, stopped_market_server, throughput

# The children only make new ZeroMQ contexts; nothing of the parent's threads is used.
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*use of fork\\(\\) may lead to deadlocks:DeprecationWarning")

SECONDS = float(os.environ.get("GATEWAY_BENCH_SECONDS", "3"))
BATCH = 100
WINDOWS = (1_000, 3_000)          # orders in flight per connection
NOBLOCK = zmq.NOBLOCK


def engine_process(server: Server, endpoint: str) -> None:
    """Serve the forwarded Batches until killed: apply, journal, send entries back."""
    context = zmq.Context()
    pair = context.socket(zmq.PAIR)
    pair.linger = 0
    pair.sndhwm = pair.rcvhwm = 0
    pair.bind(endpoint)
    engine, journal, ids = server.engine, server.journal, server.ids_today
    decode, encode = p.client_decoder.decode, msgspec.msgpack.Encoder().encode
    seq, last_ts = server.next_seq, server.last_ts
    next_freeze = seq
    while True:
        if not pair.poll(100):
            continue
        records: list[tuple[int, bytes]] = []
        replies = []
        for _ in range(64):
            try:
                tag, user_frame, body = pair.recv_multipart(NOBLOCK, copy=False)
            except zmq.Again:
                break
            user = user_frame.bytes.decode()
            entries = []
            for request in decode(body).requests:
                cid = request.client_id
                if not (0 < len(cid) <= p.MAX_CLIENT_ID and cid.isascii() and cid.isprintable()
                        and " " not in cid):
                    continue
                key = f"{user}{ID_JOIN}{cid}"
                shard = ids.shards[hash(key) & ID_MASK]
                if key in shard:
                    continue
                now = time.time_ns()
                ts = last_ts = now if now > last_ts else last_ts
                env = Envelope(seq=seq, ts=ts, actor=user, role="broker", cmd=request.cmd,
                               client_id=cid)
                entry = encode_entry(Entry(env, engine.apply(env)))
                records.append((ts, entry))
                entries.append(msgspec.Raw(entry))
                shard[key] = seq
                seq += 1
            replies.append(encode((int.from_bytes(tag.bytes, "little"), entries)))
        if records:
            journal.append_many(KIND_ENTRY, records)
            journal.commit()
        for reply in replies:
            pair.send(reply)
        if seq >= next_freeze:             # as the server does: see FREEZE_EVERY
            gc.freeze()
            next_freeze = seq + FREEZE_EVERY


def front_process(server: Server, data: Path, endpoint: str, port_out: int) -> None:
    """Serve the brokers until killed; write the broker port to ``port_out``."""
    context = zmq.Context()
    zap = ZapHandler(context, server.users)
    zap.start()
    keys = json.loads((data / "keys" / "server.json").read_text())
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.zap_domain = b"broker"
    router.curve_server = True
    router.curve_publickey = keys["public_key"].encode()
    router.curve_secretkey = keys["secret_key"].encode()
    router.sndhwm = router.rcvhwm = 100_000
    port = router.bind_to_random_port("tcp://127.0.0.1")
    feed = context.socket(zmq.PUB)
    feed.linger = 0
    feed.bind_to_random_port("tcp://127.0.0.1")
    pair = context.socket(zmq.PAIR)
    pair.linger = 0
    pair.sndhwm = pair.rcvhwm = 0
    pair.connect(endpoint)
    os.write(port_out, f"{port}\n".encode())
    view, ring, prev = server.view, server.ring, server.last_public_assigned
    routing_ids: list[bytes] = []
    tags: dict[bytes, int] = {}
    decode_back = msgspec.msgpack.Decoder(tuple[int, list[Entry]]).decode
    encode = p.encode
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    poller.register(pair, zmq.POLLIN)
    folded = 0
    while True:
        ready = dict(poller.poll(100))
        if router in ready:
            for _ in range(256):
                try:
                    rid_frame, body = router.recv_multipart(NOBLOCK, copy=False)
                except zmq.Again:
                    break
                rid = rid_frame.bytes
                if body.bytes == b"ping":               # the generator's hello
                    router.send_multipart([rid, b"pong"])
                    continue
                tag = tags.get(rid)
                if tag is None:
                    tag = tags[rid] = len(routing_ids)
                    routing_ids.append(rid)
                pair.send_multipart([tag.to_bytes(4, "little"),
                                     body.get("User-Id").encode(), body], copy=False)
        if pair in ready:
            for _ in range(256):
                try:
                    tag, entries = decode_back(pair.recv(NOBLOCK, copy=False))
                except zmq.Again:
                    break
                answers = []
                for entry in entries:
                    env = entry.env
                    seq, actor = env.seq, env.actor
                    public: list = []
                    seen: list = []
                    code = text = ""
                    for event in entry.events:
                        if not event.to:
                            public.append(event)
                            seen.append(event)
                            continue
                        if actor in event.to:
                            seen.append(event)
                        if not code and type(event) is CommandRejected and event.ref == seq:
                            code, text = event.code, event.text
                    answers.append(encode(p.Result(client_id=env.client_id, seq=seq,
                                                   accepted=not code, code=code, text=text,
                                                   events=seen)))
                    if public:
                        market = encode(p.Market(seq=seq, prev=prev, ts=env.ts, events=public))
                        prev = seq
                        feed.send(market, NOBLOCK)
                        view.fold(seq, public)
                        ring.append(seq, market)
                router.send(routing_ids[tag], zmq.SNDMORE)
                router.send(encode(_ResultsOut(results=[msgspec.Raw(a) for a in answers])),
                            NOBLOCK)
                folded += len(entries)
            if folded >= FREEZE_EVERY:
                gc.freeze()
                folded = 0


def fork(run, *args) -> int:
    """Run ``run(*args)`` in a child process (which never returns); return its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            run(*args)
        except BaseException:
            traceback.print_exc()
        os._exit(1)
    return pid


@pytest.fixture(scope="module")
def split():
    tmp = tempfile.TemporaryDirectory(prefix="lotex-split-bench-")
    data = Path(tmp.name)
    server, paddles = stopped_market_server(data)
    children: list[int] = []
    try:
        endpoint = f"ipc://{data}/engine.ipc"
        children.append(fork(engine_process, server, endpoint))
        port_in, port_out = os.pipe()
        children.append(fork(front_process, server, data, endpoint, port_out))
        os.close(port_out)                 # a front that dies first: end of file, not a hang
        with os.fdopen(port_in) as pipe:
            port = int(pipe.readline())
        yield data, f"tcp://127.0.0.1:{port}", paddles, children
    finally:
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        server.close()
        tmp.cleanup()



@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("n", CONNECTIONS)
def test_split_batch_throughput(benchmark, split, n, window):
    data, endpoint, paddles, (engine_pid, front_pid) = split
    context = zmq.Context()
    try:
        conns = [Conn(context, data, f"bench{i}", endpoint, paddles[f"bench{i}"], logon=False)
                 for i in range(1, n + 1)]
        measured: dict[str, float] = {}

        def run() -> None:
            with CpuMeter(engine_pid) as engine_cpu, CpuMeter(front_pid) as front_cpu:
                measured["orders_per_s"] = throughput(conns, SECONDS, window, echo=False,
                                                      batch=BATCH)
            orders = measured["orders_per_s"] * engine_cpu.seconds
            measured["engine_cpu_us"] = engine_cpu.per(orders)["server_cpu_us"]
            measured["front_cpu_us"] = front_cpu.per(orders)["server_cpu_us"]
            measured["generator_cpu_us"] = front_cpu.per(orders)["generator_cpu_us"]
        benchmark.pedantic(run, rounds=1, iterations=1)
        benchmark.extra_info.update(measured)
        total = measured["engine_cpu_us"] + measured["front_cpu_us"] + measured["generator_cpu_us"]
        print(f"\nsplit gateway, {n:>2} connections, Batch of {BATCH}, {window:,} in flight "
              f"each: {measured['orders_per_s']:,.0f} acked orders/s; CPU per order: engine "
              f"process {measured['engine_cpu_us']:.1f} us, front {measured['front_cpu_us']:.1f}"
              f" us, generator {measured['generator_cpu_us']:.1f} us; {total:.0f} us in all, "
              f"so 2 cores at most {2e6 / total:,.0f} orders/s")
    finally:
        context.destroy(linger=0)
