"""Re-publish a recorded session as if it were live.

The live gateway publishes, for every journal entry with public events, one
`gateway.protocol.Market` message (``seq``, ``prev``, ``ts``, the public
events) as one MessagePack frame on a PUB socket, and a `FeedHeartbeat`
when idle. `replay` sends exactly those messages, built from the journal,
on an XPUB socket (a PUB that also sees subscriptions, so it can wait for
the first subscriber instead of losing the opening messages), spaced as
recorded divided by ``speed`` (each pause at most ``max_gap`` seconds), or
as fast as possible. A `FeedHeartbeat` follows the last message.

With the server's key store in the data directory, `DataService` also
answers the snapshot and replay requests of `gateway.client.FeedClient`
(CURVE, the server's own keys, on a ROUTER) from what has been re-published
so far, and `write_endpoints` writes an ``endpoints.json`` for it, so that
``lotex watch --data OUT --key DIR/clients/viewer.json`` watches history as
if live. Started at ``from_seq`` N > 1, it first folds entries 1..N-1 into its
view and ring (publishing nothing), so its snapshots and replays are those
the live server gave when it published entry N, and the first message
published has the ``prev`` the live one had. Bounded: ``to_seq``, ``limit`` and ``max_gap`` bound the run.
As the gateway does, the service keeps the last `RING` messages sent
(`gateway.tables.FeedRing`) and reads older ones back from the journal, so
memory does not grow with the journal. O(entries read).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import msgspec
import zmq

from gateway import protocol as p
from gateway.config import Config
from gateway.tables import ENTRY_MARK_EVERY, FeedRing
from gateway.view import MarketView
from recorder.journal import Journal
from replay.source import ReplayError, Source

NS = 10**9
RING = Config.feed_ring          # Market messages the replay service keeps, as the gateway


@dataclass
class Sent:
    messages: int = 0
    events: int = 0
    last_seq: int = 0


def _bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind ``sock`` to ``endpoint`` (port 0 or *: a free one); return where it is bound."""
    host, _, port = endpoint.rpartition(":")
    try:
        if port in ("0", "*"):
            return f"{host}:{sock.bind_to_random_port(host)}"
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise ReplayError(f"cannot bind {endpoint!r}: {exc} (give e.g. tcp://127.0.0.1:5560)") \
            from None
    return endpoint


class Publisher:
    """An XPUB socket bound to ``endpoint`` (``tcp://127.0.0.1:0`` for a free port)."""

    def __init__(self, endpoint: str, context: zmq.Context | None = None) -> None:
        self._own = context is None
        self.context = context or zmq.Context()
        self.sock = self.context.socket(zmq.XPUB)
        self.sock.linger = 0
        self.sock.sndhwm = 1_000_000
        try:
            self.endpoint = _bind(self.sock, endpoint)
        except ReplayError:
            self.close()
            raise
        self.subscribers = 0

    def wait_for_subscriber(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for a subscription; True if one came."""
        deadline = time.monotonic() + seconds
        while self.subscribers == 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                self._drain()
        return True

    def _drain(self) -> None:
        while True:
            try:
                frame = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if frame[:1] == b"\x01":
                self.subscribers += 1
            elif frame[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)

    def send(self, data: bytes) -> None:
        self._drain()
        self.sock.send(data)

    def close(self, drain: float = 0.0) -> None:
        """Close; with ``drain`` seconds, first let subscribers take what is
        still queued for them (at most that long: a subscriber slower than a
        --fast replay would otherwise lose the end of the stream unseen)."""
        if self.sock.closed:
            return
        self.sock.close(linger=int(drain * 1000))
        if self._own:
            self.context.term()       # waits for the queued messages, ``drain`` at most


DRAIN_SECONDS = 30.0                # what a publisher waits at the end for slow subscribers


class DataService:
    """The snapshot and replay service of the live gateway, for a replayed feed."""

    def __init__(self, keys_dir: Path, endpoint: str, context: zmq.Context, *,
                 ring: int = RING) -> None:
        keys = keys_dir / "server.json"
        self.sock = context.socket(zmq.ROUTER)
        self.sock.linger = 0
        try:
            data = json.loads(keys.read_text())
            self.public_key = data["public_key"]
            self.sock.curve_server = True
            self.sock.curve_publickey = data["public_key"].encode()
            self.sock.curve_secretkey = data["secret_key"].encode()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, zmq.ZMQError) as exc:
            self.close()
            raise ReplayError(f"cannot use the server's keys {keys}: {exc}") from None
        try:
            self.endpoint = _bind(self.sock, endpoint)
        except ReplayError:
            self.close()
            raise
        self.view = MarketView()
        self.ring = FeedRing(ring, min(1024, ring))   # the last messages, each as sent
        self.last = 0                            # seq of the last message published
        self.last_ts = 0                         # ... and its ts
        self.answered = 0
        self._source: Source | None = None
        self._origin = 1
        self._journal: Journal | None = None

    def replaying(self, source: Source, from_seq: int) -> None:
        """Messages published from now on are those of ``source`` from entry
        ``from_seq`` on. The entries before it are folded in first, as the
        live gateway had them when it published entry ``from_seq``, so that
        snapshots and replays are answered as the live server's were: the
        feed's history starts at entry 1 (older messages are read back from
        the journal). O(entries before ``from_seq``)."""
        self._source, self._origin, self._journal = source, 1, None
        for _, entry in source.entries(1, label="catching up", upto_seq=from_seq - 1):
            env = entry.env
            if env.seq >= from_seq:
                break
            self.entry(env.seq)
            public = [event for event in entry.events if not event.to]
            if public:
                market = p.Market(seq=env.seq, prev=self.last, ts=env.ts, events=public)
                self.published(market, p.encode(market))

    def entry(self, seq: int) -> None:
        """Journal entry ``seq`` is about to be published (or not, without
        public events): mark it every `ENTRY_MARK_EVERY` entries, as the
        gateway does, so that a replay read back from the journal starts near
        what it asks for. O(1)."""
        if not seq % ENTRY_MARK_EVERY:
            self.ring.mark_entry(seq, self.last)

    def published(self, market: p.Market, data: bytes) -> None:
        """Keep ``market``, published as ``data``, for replay requests."""
        self.view.fold(market.seq, market.events)
        self.ring.append(market.seq, data)
        self.last = market.seq
        self.last_ts = market.ts              # the replay's time: its snapshots carry it

    def serve(self, timeout_s: float) -> None:
        """Answer requests for up to ``timeout_s`` seconds (returns at once on 0)."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if not self.sock.poll(max(0, int(left * 1000)), zmq.POLLIN):
                if left <= 0:
                    return
                continue
            rid, data = self.sock.recv_multipart()[:2]
            self.sock.send_multipart((rid, self._answer(data)))
            self.answered += 1

    def _answer(self, data: bytes) -> bytes:
        try:
            request = p.data_request_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return p.encode(p.SessionRejected(code="invalid_message",
                                              text=p.SESSION_REJECTS["invalid_message"]))
        last = self.last
        if type(request) is p.SnapshotRequest:
            return p.encode(p.Snapshot(seq=last, session=request.session, key=request.key,
                                       events=self.view.snapshot(request.session, request.key),
                                       ts=self.last_ts))
        if request.from_seq < 1 or not 1 <= request.limit <= 10000 \
                or (request.to_seq and request.to_seq < request.from_seq):
            return p.encode(p.SessionRejected(code="bad_request",
                                              text=p.SESSION_REJECTS["bad_request"]))
        upto = min(request.to_seq or last, last)
        messages: list[msgspec.Raw] = []
        through = max(upto, request.from_seq - 1)
        more = False
        for seq, message in self._sent(request.from_seq, upto):
            if len(messages) == request.limit:     # one more than asked: through the last sent
                more = True
                break
            messages.append(msgspec.Raw(message))
            last = seq
        if more:
            through = last
        return p.encode(p.ReplayOut(messages=messages, through=through, more=more))

    def _sent(self, first: int, last: int) -> Iterator[tuple[int, bytes]]:
        """Yield (seq, message as sent) of the messages published in
        first..last: older than the ring from the journal, then from the
        ring. O(messages + entries read)."""
        ring = self.ring
        kept = ring.first_kept()
        if not kept or first > last:
            return
        if first < kept:
            if self._journal is None:            # opened after what it must hold was sent
                if self._source is None:
                    raise RuntimeError("messages published without `replaying` their source")
                self._journal = self._source.journal()
            for seq, message in ring.from_journal(self._journal, first, min(last, kept - 1),
                                                  self._origin):
                if message is not None:
                    yield seq, message
        seqs, msgs = ring.seqs, ring.msgs
        i = ring.position(first)
        while i < len(seqs) and seqs[i] <= last:
            yield seqs[i], msgs[i]
            i += 1

    def close(self) -> None:
        self.sock.close(linger=0)


def write_endpoints(path: str | os.PathLike, feed: str, data: str, server_public_key: str) -> Path:
    """Write ``endpoints.json`` (as `lotex serve` does) for `lotex watch --data`."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "endpoints.json"
    target.write_text(json.dumps({"broker": "", "operator": "", "feed": feed, "data": data,
                                  "server_public_key": server_public_key,
                                  "pid": os.getpid()}, indent=2) + "\n")
    return target


def replay(source: Source, publisher: Publisher, *, speed: float | None = 1.0,
           from_seq: int = 1, to_seq: int = 0, max_gap: float = 5.0, limit: int = 0,
           data: DataService | None = None, sleep: Any = None,
           clock: Any = time.monotonic) -> Sent:
    """Publish the public events of entries ``from_seq..to_seq`` as Market messages.

    ``speed`` None: as fast as possible; else recorded gaps / speed, each at
    most ``max_gap`` s, kept on a schedule from the start (no drift).
    ``limit`` > 0 stops after that many messages. ``sleep(seconds)`` and
    ``clock()`` may be given (tests); by default the data service is served
    while waiting."""
    sent = Sent()
    prev = 0
    last_ts: int | None = None
    due = clock()
    wait = sleep or _wait(data)
    if data is not None:
        data.replaying(source, from_seq)      # folds the entries before from_seq
        prev = data.last                      # the Market message before, as live
    for _, entry in source.entries(from_seq, label="publishing", upto_seq=to_seq):
        env = entry.env
        if to_seq and env.seq > to_seq:
            break
        if data is not None:
            data.entry(env.seq)
        public = [event for event in entry.events if not event.to]
        if not public:
            continue
        if speed is not None and last_ts is not None:
            gap = max(0, env.ts - last_ts) / NS / speed
            due += min(gap, max_gap)
            wait(due - clock())
        elif data is not None:
            data.serve(0)
        last_ts = env.ts
        market = p.Market(seq=env.seq, prev=prev, ts=env.ts, events=public)
        encoded = p.encode(market)
        publisher.send(encoded)
        if data is not None:
            data.published(market, encoded)
        prev = env.seq
        sent.messages += 1
        sent.events += len(public)
        sent.last_seq = env.seq
        if limit and sent.messages >= limit:
            break
    publisher.send(p.encode(p.FeedHeartbeat(seq=prev, ts=last_ts or 0)))
    return sent


def _wait(data: DataService | None) -> Any:
    def wait(seconds: float) -> None:
        if seconds <= 0:
            if data is not None:
                data.serve(0)
            return
        if data is not None:
            data.serve(seconds)
        else:
            time.sleep(seconds)
    return wait
