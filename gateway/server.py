"""The exchange server: engine, journal and ZeroMQ sockets.

One thread does the work: the *engine thread* owns the `Engine`, the
`Journal` (it is the journal's single writer) and every socket but the ZAP
handler's. Each turn of the engine loop:

1. drains up to ``max_batch`` messages (and requests) from the broker and
   operator sockets;
   each is decoded with strict decoders, checked (logged-on connection,
   client id, permitted), wrapped in an `Envelope` whose ``actor`` and
   ``role`` come from the CURVE-authenticated connection, applied to the
   engine, and encoded as a journal `Entry`;
2. fires a `Tick` if timers are due and nothing else advanced the clock;
3. commits the turn's entries to the journal at once (group commit: one
   write, one fdatasync); what arrives meanwhile waits in ZeroMQ's queues
   and makes the next turn's group;
4. sends the replies, private notices and market data of the entries just
   made durable, and nothing else: each outgoing message waits for the entry
   it follows;
5. answers snapshot and replay requests (from durable data only),
   heartbeats, expiries, key-store reloads and periodic snapshots.

A turn applies at most ``max_batch`` messages, requests and entries of a
socket and ``max_backlog`` entries before its commit. The commit is made in
this thread, not handed to a journal thread: on 2 cores the hand-off (a
queue, a wake-up socket, the GIL passed back and forth) cost more than
overlapping the fdatasync with the next messages saved (measured at 10,000 orders/s: p50 1.0-1.4 -> 0.85 ms,
p99 3.9-4.5 -> 3.1-3.4 ms; saturated: 26-33 k -> 33-36 k orders/s).
Handing only the fdatasync away, so that the loop applies the next
messages while the disk works, was measured as well: to a helper process
over a socket pair, and to the kernel (Linux AIO ``IOCB_CMD_FDSYNC`` with an
eventfd in the poller; 25-30 us of this thread's CPU per sync instead of
62-66 us). At 10,000 orders/s both made p50 worse (0.68-0.80 -> 0.93-1.96
ms) and p99 no better, and Batch of 100 no faster (33-36 k vs 32-35 k):
on 2 cores the extra wake-ups cost more than the overlap saves.
After a crash nothing of an entry that was not durable was ever sent, and
recovery rebuilds exactly the durable prefix. No send ever blocks: a
connection whose queue is full loses that message (and the log says so); it
resends its request and gets the original result back. A journal failure
stops the server: nothing more is acknowledged.
"""

from __future__ import annotations

import gc
import datetime
import json
import os
import pickle
import resource
import signal
import threading
import time
import warnings
from collections import deque
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import msgspec
import zmq
from zmq.utils.monitor import parse_monitor_message

import exchange  # noqa: F401  (registers every handler)
from exchange.codec import Entry, decode_entry, decode_entry_envelope, encode_entry
from exchange.commands import RULES, Envelope, MassCancel, RegisterParty, Tick
from exchange.engine import Engine
from exchange.events import CommandRejected, OPERATORS
from exchange.status import broker_status, status_work
from gateway import logs
from gateway import protocol as p
from gateway import tcp
from gateway.config import Config, load_or_create
from gateway.keys import KeyStore, KeyStoreError, User
from gateway.tables import (ENTRY_MARK_EVERY, ID_JOIN, ID_MASK, ClientIds, FeedRing,
                            RecentResults, id_key)
from gateway.view import MarketView
from gateway.zap import KEY_PROPERTY, ROLE_PROPERTY, ZapHandler, key_map
from recorder import layout
from recorder.format import HARD_MAX_RECORD, KIND_ENTRY
from recorder.journal import Journal, JournalCorrupt, JournalFailed, RecordTooLarge

NS_PER_SECOND = 1_000_000_000
NS_PER_MS = 1_000_000
NS_PER_DAY = 86_400 * 10**9
RECENT_RESULTS = 65536          # entries whose events are kept to answer resends (a power of 2)
RING_SLACK = 1024               # Market messages over feed_ring before the oldest go
# Catch-up work (Recap and ReplayRequest answers) that one loop turn does for
# every connection together; an answer cut short by it says `more` and the
# client asks again. In units of about a microsecond of the loop here
# (measured: a Market message from the ring 0.2-0.4 us, an entry recapped
# from memory 2.1 us, an entry read back from the journal 7-8 us after
# 0.15-0.3 ms to find where to start), so a turn spends 2-3 ms on it at most,
# however many requests come. Unbounded, one Recap of 10,000 journal entries
# held the loop 75 ms, and a burst of replay requests 7.8 ms each.
CATCH_UP_PER_TURN = 2048
COST_RING = 1
COST_RECENT = 2
COST_JOURNAL = 8
COST_JOURNAL_START = 256
READ_BACK_SKIP = COST_JOURNAL_START // COST_JOURNAL   # a resend read back further ahead starts anew
STATUS_ITEMS_PER_UNIT = 8       # a status: ~0.08 us a paddle, book or resting order walked
STATUS_ITEMS_PER_REQUEST = 10   # ... and against a broker's throttle, 10 of them one request
SNAPSHOT_EVENTS_PER_UNIT = 4    # a Snapshot answer: 0.18-0.3 us an event (20,000 in 3.6-6 ms)
SNAPSHOT_BYTES_PER_UNIT = 64    # ... and encoding it: ~14 ns a byte (18 MB in 256 ms)
# A Logon or Logout counts as this many requests in a turn's `max_batch`:
# ~25 us each with its log line, against 1-4 us for a resend or a refusal
# (a client logging on 2,048 times a turn held the loop 52 ms).
SESSION_CHANGE_COST = 16
# client ids of a past day freed each housekeeping (each 50 ms): ~1-3 ms, so a
# day of 3 million is gone in 15 s without a pause (whole tables: 31-55 ms)
IDS_FREED_PER_HOUSEKEEPING = 10_000
# One command and all its events: the journal's hard limit, 1 GiB (a mass
# cancel takes ~190 bytes an order, so ~5.6 million orders). A larger entry
# is refused like a failed handler; at 16 MiB (~90,000 orders) it stopped
# the journal, and with it the exchange.
MAX_ENTRY_BYTES = HARD_MAX_RECORD
# Zeros are written ahead of the journal after turns of at most this many
# entries: a bigger turn means a saturated loop, where one fdatasync per
# hundreds of entries gains nothing from them and writing them costs ~5 %.
RESERVE_TURNS_UP_TO = 256
SNAPSHOT_CHILD_WAIT_S = 120     # on shutdown, then a snapshot child still writing is killed
PORTS = ("broker", "operator", "feed", "data")
FREEZE_EVERY = 1000             # entries between gc.freeze() calls (O(1) each)
REFUSALS_LOGGED = 100           # refusal log lines per user and port ...
REFUSAL_WINDOW_NS = 10 * 10**9  # ... in this window (connection lines: per port)
# Resent results one user is answered with, in events a second; beyond
# it a resend is answered `busy` (the client sends it again later). One Batch
# of 64 KiB repeating the resend of a 3,000-order mass cancel made 400 MiB of
# answers and held the loop seconds for everyone. A reconnecting client's
# honest resends (each once) are a few events each.
RESENT_EVENTS_PER_SECOND = 50_000
RESENT_WINDOW_NS = 10**9
# Replies queued to one data-socket connection (a client asks and waits, so it
# needs a few): with the broker's 10,000, a viewer that sent replay requests
# and never read made ZeroMQ hold up to 10,000 answers of up to 1 MiB each.
DATA_SEND_HWM = 64
# Frames of messages of more than one that one socket walks in a turn. The
# protocol has one frame a message, so such a message is refused
# `undecodable`; but ZeroMQ delivers a message whole, however many frames it
# has (its size limit is per frame, its queue limits count messages), and
# every frame must be received before the socket's next message. Walked all
# at once, one message of 3,000,000 empty frames held the loop 8-20 s; at
# ~2.5 us a frame this is ~5 ms a turn, the rest in the next turns.
FRAMES_PER_TURN = 2048
# A connection with more than `max_queued_bytes` sent and not acknowledged by
# its TCP peer (a client that does not read) loses the messages beyond, as at
# its queue's limit in messages (`send_hwm`: 10,000 Results of 97 KB each made
# ZeroMQ hold ~1 GB for one broker that never read). The kernel is asked
# (`tcp.bytes_acked`) only once that many are counted, then at most this often
# while the peer stays behind.
QUEUE_CHECK_NS = 10 * NS_PER_MS
CLOCK_BEHIND_NS = NS_PER_SECOND
"""How far the host's clock may read behind the exchange's last time before
the log says it was set back (then at most once a minute while it is)."""
HANDSHAKE_MS = 5000             # an unfinished CURVE handshake is dropped after this (libzmq: 30 s)
client_decode = p.client_decoder.decode
NOBLOCK = int(zmq.NOBLOCK)      # plain ints: enum.Flag arithmetic is Python code
MORE_NOBLOCK = int(zmq.SNDMORE | zmq.NOBLOCK)
SRCFD = int(zmq.SRCFD)          # a received frame's TCP socket
DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
ACCEPTED = int(zmq.EVENT_ACCEPTED)
# Descriptors kept for the server's own use (journal segments and their
# indexes, snapshots, key files, ZeroMQ's own) when `max_connections` is
# lowered to fit the process's descriptor limit: ~25 are open when it starts.
DESCRIPTORS_KEPT = 64


def raise_descriptor_limit(most: int = 1 << 16) -> int:
    """Raise this process's open-file limit to its hard limit (at most
    ``most``) and return it: every peer costs the server a descriptor, even an
    anonymous feed subscriber, and at the usual 1,024 a thousand of them left
    none for the journal."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = most if hard == resource.RLIM_INFINITY else min(hard, most)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            return want
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(configured: int, descriptors: int) -> int:
    """Return the connections a port may hold: ``configured``, lowered so that
    every port full leaves DESCRIPTORS_KEPT of the process's ``descriptors``
    (its open-file limit; RLIM_INFINITY: none)."""
    if descriptors == resource.RLIM_INFINITY or descriptors < 0:
        return configured
    return max(1, min(configured, (descriptors - DESCRIPTORS_KEPT) // len(PORTS)))


def trading_day(ts: int) -> int:
    """Return the trading day (days since the epoch, UTC) of ``ts``."""
    return ts // NS_PER_DAY


def day_text(day: int) -> str:
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def _client_ids_of(message: Any) -> list[str]:
    """Return the client ids a message that is valid msgpack but not a valid
    request says it carries (a `Request`'s, or a `Batch`'s up to `MAX_BATCH`,
    each well formed), or ``[""]`` when it names none. O(requests)."""
    try:
        found = msgspec.msgpack.decode(message)
    except (msgspec.DecodeError, RecursionError):        # deep nesting: no ids to tell
        return [""]
    if not isinstance(found, dict):
        return [""]
    if found.get("type") == "Request":
        requests = [found]
    elif found.get("type") == "Batch" and isinstance(found.get("requests"), list):
        requests = found["requests"][:p.MAX_BATCH]
    else:
        return [""]
    ids = [_client_id_in(r) for r in requests]
    return list(dict.fromkeys(cid for cid in ids if cid)) or [""]


def _client_id_in(request: Any) -> str:
    """The well-formed client id a decoded request names, or ""."""
    cid = request.get("client_id") if isinstance(request, dict) else None
    if (isinstance(cid, str) and 0 < len(cid) <= p.MAX_CLIENT_ID and cid.isascii()
            and cid.isprintable() and " " not in cid):
        return cid
    return ""


class _LooseBatch(msgspec.Struct, frozen=True, tag="Batch", tag_field="type",
                  forbid_unknown_fields=True):
    """A Batch whose requests are read one at a time."""

    requests: list[msgspec.Raw]


class _Unmatched(NamedTuple):
    """A request of a Batch that does not match the schema."""

    client_id: str
    detail: str


_loose_batch_decode = msgspec.msgpack.Decoder(_LooseBatch).decode
_request_decode = msgspec.msgpack.Decoder(p.Request).decode


def _split_batch(message: Any) -> list[p.Request | _Unmatched] | None:
    """Read a Batch of 1..`MAX_BATCH` requests that failed the schema one
    request at a time: each request decoded, or the reason it does not match
    with the client id it names ("" if none usable). None when the message
    is not such a Batch (its own fields are wrong). O(requests)."""
    try:
        loose = _loose_batch_decode(message)
    except (msgspec.DecodeError, RecursionError):
        return None
    if not 1 <= len(loose.requests) <= p.MAX_BATCH:
        return None
    out: list[p.Request | _Unmatched] = []
    for raw in loose.requests:
        try:
            out.append(_request_decode(raw))
        except (msgspec.DecodeError, RecursionError) as exc:
            try:
                found = msgspec.msgpack.decode(raw)
            except (msgspec.DecodeError, RecursionError):
                found = None
            out.append(_Unmatched(_client_id_in(found), str(exc)))
    return out


def wire_bytes(size: int) -> int:
    """The bytes a message of ``size`` takes on a CURVE connection (libzmq 4.3:
    a MESSAGE command of 33 bytes more, in a frame with a 2- or 9-byte header)."""
    return size + (35 if size <= 222 else 42)


class Outflow:
    """What was sent to one connection and what its TCP peer acknowledged,
    to bound the bytes queued for it (`Server._room`). ``zero`` None: not
    bounded (the kernel cannot tell)."""

    __slots__ = ()

    def count_from(self, fd: int) -> None:
        self.sent = 0                 # bytes handed to ZeroMQ (wire_bytes of each)
        self.seen = 0                 # ... of them acknowledged, when last asked
        self.zero = tcp.bytes_acked(fd)   # the kernel's count when counting began
        self.next_check = 0           # (monotonic ns) not asked again before this


class DataPeer(Outflow):
    """A connection on the data socket (it holds no session): what is sent to it."""

    __slots__ = ("rid", "user", "fd", "dropped", "last_out", "sent", "seen", "zero",
                 "next_check")

    def __init__(self, rid: bytes, user: str, fd: int) -> None:
        self.rid = rid
        self.user = user
        self.fd = fd
        self.dropped = 0
        self.last_out = 0
        self.count_from(fd)


class FeedPeer:
    """A feed subscriber's connection: the feed's byte count and its TCP
    peer's acknowledged bytes when counting (re)started (`Server._check_feed`)."""

    __slots__ = ("fd", "base", "zero")

    def __init__(self, fd: int, base: int) -> None:
        self.fd = fd
        self.base = base                  # Server.feed_bytes then
        self.zero = tcp.bytes_acked(fd)   # None: the kernel cannot tell; not bounded


def feed_wire_bytes(size: int) -> int:
    """The bytes a message of ``size`` takes on a plain ZMTP 3 connection
    (the feed's: a frame with a 2- or 9-byte header)."""
    return size + (2 if size <= 255 else 9)


class Conn(Outflow):
    """A logged-on connection on the broker or operator socket."""

    __slots__ = ("port", "sock", "rid", "user", "role", "hb_ns", "last_in", "last_out", "cod",
                 "notices", "dropped", "fd", "sent", "seen", "zero", "next_check")

    def __init__(self, port: str, sock: zmq.Socket, rid: bytes, user: str, role: str,
                 hb_ns: int, now: int, cod: bool, notices: bool, fd: int = -1) -> None:
        self.port = port
        self.sock = sock
        self.rid = rid
        self.user = user
        self.role = role
        self.hb_ns = hb_ns
        self.last_in = now
        self.last_out = now
        self.cod = cod
        self.notices = notices
        self.dropped = 0
        self.fd = fd                  # the peer's TCP socket: its routing id may pass to another
        self.count_from(fd)


def stale_connection(user: User | None, frame: zmq.Frame) -> str | None:
    """None if the connection ``frame`` came on was made with ``user``'s
    current key under its current role; else why it is refused `revoked`
    (the detail of the refusal, "" for the code's own text): the user is
    unknown or revoked, its key was replaced (`lotex keys rotate`), or its
    role in the key store changed since the handshake."""
    if user is None or user.revoked:
        return ""
    if frame.get(KEY_PROPERTY) != user.public_key:
        return ("the key this connection was made with was replaced: connect again with the "
                "new one")
    if frame.get(ROLE_PROPERTY) != user.role:
        return (f"the user's role changed to {user.role} since this connection was made: "
                f"connect again")
    return None


class ServerStopped(Exception):
    """The server stopped because its journal failed."""


class EntryMissing(LookupError):
    """A journal entry a client id points at is not in the journal."""


class _ResultsOut(msgspec.Struct, tag="Results", tag_field="type", kw_only=True):
    """Encode-only twin of `protocol.Results` that embeds pre-encoded answers."""

    results: list[msgspec.Raw]


class Server:
    """The whole exchange on one data directory. `start()` recovers and binds;
    `run()` serves until `stop()`; `close()` releases everything."""

    def __init__(self, data_dir: str | os.PathLike, config: Config | None = None) -> None:
        self.data_dir = Path(data_dir)
        if config is None:
            config, _, _ = load_or_create(self.data_dir)
        self.config = config.validate()
        # (the engine thread's CPU, the other threads' CPUs), or None: not pinned
        self.cpus = cpu_plan(self.config.engine_cpu)
        self.keystore = KeyStore(self.data_dir)
        self.log = logs.get(component="server")
        self.context: zmq.Context | None = None
        self.endpoints: dict[str, str] = {}
        self._stop = threading.Event()
        self.failed: BaseException | None = None
        self.close_error: BaseException | None = None   # what stopped `close` (logged)
        self.ready = threading.Event()

    # ------------------------------------------------------------------ start-up

    def start(self) -> dict[str, str]:
        """Recover the engine from snapshot + journal, start the ZAP handler,
        bind the sockets; return the endpoints."""
        from recorder import recovery  # the one recovery path

        cfg = self.config
        # the key store first: a damaged one (KeyStoreError) stops the start
        # before anything is opened. Its stamp is taken before it is read: a
        # change made in between is read again at the first check.
        self.keys_stamp = self.keystore.stamp()
        self.users: dict[str, User] = self.keystore.users()
        self.keys_failed: tuple[int, int, int] | None = None   # stamp of a bad store logged
        descriptors = raise_descriptor_limit()
        self.journal_dir = layout.journal_dir(self.data_dir)
        self.snapshot_dir = layout.snapshot_dir(self.data_dir)
        started = time.monotonic()
        # a snapshot proves the journal held its seq durably: never cut below it
        floor = recovery.snapshot_floor(self.data_dir) if cfg.durability != "none" else 0
        self.journal = Journal.open(self.journal_dir, durability=cfg.durability,
                                    max_record=MAX_ENTRY_BYTES, preallocate=cfg.preallocate_bytes,
                                    durable_upto=floor)
        cut = self.journal.cut
        if cut is not None:
            self.log.warning("journal_cut", segment=cut.segment, offset=cut.offset,
                             bytes=cut.bytes, records=cut.records, last_seq=cut.last_seq,
                             aside=str(cut.aside))
        aside = recovery.set_aside_snapshots(self.data_dir, self.journal.last_seq)
        if aside:          # durability none: the journal lost records a snapshot covers
            self.log.warning("snapshots_set_aside", last_seq=self.journal.last_seq,
                             moved=[str(path) for path in aside])
        # check_events: an entry that replays to other events than it recorded (a lotex
        # with other rules wrote it) stops the start; ~+30 % on the journal after the
        # snapshot (100,000 entries: 1.0 -> 1.3 s)
        self.engine: Engine = recovery.rebuild(self.data_dir, journal=self.journal,
                                               check_events=True)
        if self.engine.state.last_seq != self.journal.last_seq:
            raise RuntimeError(f"recovered engine at seq {self.engine.state.last_seq} but the "
                               f"journal ends at {self.journal.last_seq}")
        self.next_seq = self.journal.last_seq + 1
        self.last_ts = self.engine.state.now      # the latest time given out: entries, feed
        self.clock_behind_logged = 0               # monotonic ns of the last such line
        self.durable_seq = self.journal.last_seq

        # gateway state rebuilt from the journal: feed, view, client ids, recent results
        self.view = MarketView()
        self.ring = FeedRing(self.config.feed_ring, RING_SLACK)   # Market messages sent
        self.last_public = 0              # seq of the last Market message sent
        self.last_public_assigned = 0     # ... or made (the next one's prev)
        self.ids_today = ClientIds()
        self.ids_yesterday = ClientIds()
        self.ids_dropping: list[dict] = []   # shards of a past day's ids, freed a few a time
        self.today = trading_day(max(time.time_ns(), self.last_ts))
        self.recent = RecentResults(RECENT_RESULTS)           # seq -> (ts, events, command)
        self.gateway_snapshot_dir = layout.gateway_snapshot_dir(self.data_dir)
        covered, ids_covered = self._restore_gateway_state()
        self._scan_journal(covered, ids_covered)

        self.sessions: dict[str, dict[bytes, Conn]] = {"broker": {}, "operator": {}}
        self.by_fd: dict[tuple[str, int], Conn] = {}   # (port, the peer's socket) -> session
        # user -> [start of its second, events of resent results sent in it]
        self.resent: dict[str, list[int]] = {}
        # broker -> when its allowance is next due (`_throttled`)
        self.allowance: dict[str, int] = {}
        self.user_conns: dict[str, list[Conn]] = {}
        # audience token (user id or OPERATORS) -> connections that take notices
        self.listeners: dict[str, list[Conn]] = {}
        self.refusals = logs.LogBudget(REFUSALS_LOGGED, REFUSAL_WINDOW_NS)  # (user, port)
        self.connection_lines = logs.LogBudget(REFUSALS_LOGGED, REFUSAL_WINDOW_NS)  # port
        # waiting for durability: (seq it follows, socket, routing id, bytes)
        self.outbox: deque[tuple[int, zmq.Socket, bytes, bytes]] = deque()
        # Market messages waiting for durability: (seq, public events, bytes)
        self.pub_pending: deque[tuple[int, list[Any], bytes]] = deque()
        self.records: list[tuple[int, bytes]] = []   # (ts, entry) not yet committed
        self.answers: list[bytes] | None = None            # a Batch's answers, while handled
        self.catch_up_left = CATCH_UP_PER_TURN   # this turn's (see CATCH_UP_PER_TURN)
        self.requests_left = 0            # of the socket being drained (see `_drain`)
        self.reloads_asked: list[tuple[zmq.Socket, bytes]] = []   # this turn's Reloads
        self.status_work: dict[tuple[str, str], int] = {}  # this turn's bounds of a status
        # a socket in the middle of a message of several frames: [routing id, frames so far]
        self.skipping: dict[zmq.Socket, list[Any]] = {}
        self.frames_left = FRAMES_PER_TURN        # of the socket being read, this turn
        self.multipart_refused = {port: 0 for port in PORTS}   # such messages, by port
        # where the last resend read back from the journal left off: (next seq, records)
        self.read_back: tuple[int, Iterator[Any]] | None = None
        # segments ("": entries missing) whose damage was logged (`_journal_damaged`)
        self.damage_logged: set[str] = set()
        # entries a restart would scan again: snapshot soon if they are many
        self.entries_since_snapshot = self.durable_seq - covered
        self.snapshot_seq = covered          # what the last snapshot written covers
        self.snapshot_tried_seq = covered    # ... and the last one begun, written or not
        self.entries_since_freeze = 0
        self.last_snapshot_wall = time.monotonic()
        # (pid, seq it covers, when forked, how long the loop paused for the fork in ms)
        self._snapshot_child: tuple[int, int, float, float] | None = None
        self.last_env_ns = 0
        self.last_feed_out = time.monotonic_ns()
        # feed subscribers by descriptor, and the bytes published to each (all
        # of them subscribe to everything): see _check_feed
        self.feed_peers: dict[int, FeedPeer] = {}
        self.feed_bytes = 0
        self.feed_check_at = 0
        self.feed_hung_up = 0
        self.last_housekeeping = 0
        self.last_keys_check = 0

        # read before any thread or socket starts: a damaged file stops nothing half-made
        server_public, server_secret = self.keystore.server_keys()
        self.context = zmq.Context()
        if self.cpus is not None:
            for cpu in sorted(self.cpus[1]):   # ZeroMQ's threads start with the first socket
                self.context.set(zmq.THREAD_AFFINITY_CPU_ADD, cpu)
            starter = os.sched_getaffinity(0)
            os.sched_setaffinity(0, self.cpus[1])  # the ZAP thread inherits it
        try:
            self.zap = ZapHandler(self.context, self.users)
            self.zap.start()
        finally:
            if self.cpus is not None:
                os.sched_setaffinity(0, starter)
        self.sockets: dict[str, zmq.Socket] = {}
        self.bound_ports: dict[str, int] = {}
        # each port's accepted TCP connections (descriptors), at most max_connections
        self.connections: dict[str, set[int]] = {name: set() for name in PORTS}
        self.connections_refused = {name: 0 for name in PORTS}
        self.max_connections = connection_cap(cfg.max_connections, descriptors)
        if self.max_connections < cfg.max_connections:
            self.log.warning("max_connections_lowered", configured=cfg.max_connections,
                             per_port=self.max_connections, descriptor_limit=descriptors)
        self.monitors: dict[zmq.Socket, str] = {}
        self.monitor_of: dict[str, zmq.Socket] = {}
        for name in PORTS:
            sock = self.context.socket(zmq.PUB if name == "feed" else zmq.ROUTER)
            sock.linger = 0
            self.sockets[name] = sock          # closed by close() even if it cannot bind
            if name == "feed":
                sock.sndhwm = cfg.feed_hwm
            else:
                sock.curve_server = True
                sock.curve_publickey = server_public
                sock.curve_secretkey = server_secret
                sock.zap_domain = name.encode()
                sock.router_mandatory = 1
                sock.sndhwm = DATA_SEND_HWM if name == "data" else cfg.send_hwm
                sock.rcvhwm = cfg.recv_hwm
                sock.handshake_ivl = HANDSHAKE_MS
                sock.maxmsgsize = cfg.max_message_bytes
                sock.heartbeat_ivl = max(cfg.heartbeat_ms, 100)
                sock.heartbeat_timeout = 3 * max(cfg.heartbeat_ms, 100)
            # libzmq's I/O thread sends monitor events with a blocking send:
            # an unread backlog of ~2,000 (a stalled loop, a burst of
            # connections) would stop every socket. The reader's receive
            # HWM of 0, set before it connects, makes that pipe unbounded.
            # (The feed's: its connections, counted against max_connections.)
            address = f"inproc://lotex-monitor-{name}"     # this server's own context
            sock.monitor(address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED if name == "feed"
                         else zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
                         | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                         | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
            monitor = self.context.socket(zmq.PAIR)
            monitor.rcvhwm = 0
            monitor.connect(address)
            self.monitors[monitor] = name
            self.monitor_of[name] = monitor
            port = getattr(cfg, f"{name}_port")
            if port == 0:
                port = sock.bind_to_random_port(f"tcp://{cfg.host}")
            else:
                sock.bind(f"tcp://{cfg.host}:{port}")
            self.endpoints[name] = f"tcp://{cfg.host}:{port}"
            self.bound_ports[name] = port
        self.broker = self.sockets["broker"]
        self.operator = self.sockets["operator"]
        self.feed = self.sockets["feed"]
        self.data = self.sockets["data"]
        # socket -> its sessions by routing id (none on the data socket)
        self.sessions_of: dict[zmq.Socket, dict[bytes, Conn]] = {
            self.broker: self.sessions["broker"], self.operator: self.sessions["operator"],
            self.data: {}}
        self.poller = zmq.Poller()
        self.poller.register(self.data, zmq.POLLIN)
        for monitor in self.monitors:
            self.poller.register(monitor, zmq.POLLIN)
        self.poller.register(self.broker, zmq.POLLIN)
        self.poller.register(self.operator, zmq.POLLIN)
        self._write_endpoints(server_public.decode())
        gc.freeze()                   # what recovery built is long-lived
        self.log.info("started", data_dir=str(self.data_dir), last_seq=self.durable_seq,
                      recovered_in_ms=int((time.monotonic() - started) * 1000),
                      durability=cfg.durability,
                      **{f"{name}_endpoint": ep for name, ep in self.endpoints.items()})
        self.ready.set()
        return dict(self.endpoints)

    def _write_endpoints(self, server_public: str) -> None:
        path = self.data_dir / "endpoints.json"
        tmp = path.with_name(f".endpoints.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**self.endpoints, "server_public_key": server_public,
                                   "pid": os.getpid()}, indent=2) + "\n")
        os.replace(tmp, path)

    def _scan_journal(self, after: int = 0, ids_covered: bool = False) -> None:
        """Rebuild the feed ring, the public view and the recent results from
        the journal entries after ``after`` (what a gateway snapshot covers),
        and the client ids of today and yesterday from that day's first entry
        on, unless the snapshot held them (``ids_covered``). O(entries after
        ``after``, + entries of the last two days without the ids)."""
        first_day = self.today - 1
        last = self.journal.last_seq
        if after and not ids_covered:  # ids from entries the snapshot covers: envelopes only
            for record in self.journal.read(from_ts=first_day * NS_PER_DAY):
                if record.seq > after:
                    break
                if record.kind == KIND_ENTRY:
                    self._remember_id(decode_entry_envelope(record.payload))
        ring = self.ring
        for record in self.journal.read(after + 1):
            if not record.seq % ENTRY_MARK_EVERY:   # as `_apply` marks them
                ring.mark_entry(record.seq, self.last_public_assigned)
            if record.kind != KIND_ENTRY:
                continue
            entry = decode_entry(record.payload)
            env = entry.env
            public = [e for e in entry.events if not e.to]
            if public:
                data = self._market(env.seq, env.ts, public)
                self._published(env.seq, public, data)
            self._remember_id(env)
            if record.seq > last - RECENT_RESULTS:
                self.recent.put(env.seq, env.ts, entry.events, env.cmd)

    def _remember_id(self, env: Envelope) -> None:
        """Keep the client id of a journaled envelope of today or yesterday."""
        if env.client_id:
            day = trading_day(env.ts)
            if day >= self.today - 1:
                ids = self.ids_today if day >= self.today else self.ids_yesterday
                ids.put(id_key(env.actor, env.client_id), env.seq)

    def _gateway_state(self) -> dict[str, Any]:
        """Return the feed's state (view, Market seqs, ring) and the client ids
        of today and yesterday as of the last applied entry, for the gateway
        snapshot. It is pickled at once (in the snapshot child, or in place at
        shutdown: ~0.45 s a million ids), so nothing is copied; a start reads
        it instead of the envelopes of two days (~4 us an id)."""
        return {"view": pickle.dumps(self.view, protocol=pickle.HIGHEST_PROTOCOL),
                "ring": self.ring,
                "last_public": self.last_public,
                "last_public_assigned": self.last_public_assigned,
                "ids_day": self.today,
                "ids_today": self.ids_today.shards,
                "ids_yesterday": self.ids_yesterday.shards}

    def _restore_gateway_state(self) -> tuple[int, bool]:
        """Load the newest intact gateway snapshot that the journal holds (its
        chain hash must match the journal's at its seq); return the seq it
        covers (0: scan the whole journal) and whether it held the client ids."""
        from recorder.snapshots import find_snapshot
        snap = find_snapshot(self.gateway_snapshot_dir, upto_seq=self.journal.last_seq)
        if snap is None:
            return 0, False
        covered = next(iter(self.journal.read(snap.seq)), None)
        if covered is None or covered.seq != snap.seq or covered.chain != snap.chain:
            self.log.warning("gateway_snapshot_ignored", seq=snap.seq,
                             reason="it does not match the journal")
            return 0, False
        try:
            state = pickle.loads(snap.data)
            view = pickle.loads(state["view"])
            ring = state.get("ring")
            if ring is None or not hasattr(ring, "entry_seqs"):
                # written before FeedRing, or before it marked journal entries:
                # without the marks a replay of older messages could read an
                # unbounded run of private entries, so scan once instead
                raise ValueError("the feed ring holds no journal entry marks")
            ring.resize(self.config.feed_ring)
            last_public, assigned = state["last_public"], state["last_public_assigned"]
            ids = None                          # snapshots from before held no ids
            day = self.today
            if "ids_day" in state:
                today, yesterday = ClientIds(), ClientIds()
                if state["ids_day"] >= self.today:  # later: the clock went back; keep its day
                    day = state["ids_day"]
                    today = ClientIds.from_shards(state["ids_today"])
                    yesterday = ClientIds.from_shards(state["ids_yesterday"])
                elif state["ids_day"] == self.today - 1:
                    yesterday = ClientIds.from_shards(state["ids_today"])
                ids = (today, yesterday)
        except Exception as exc:  # noqa: BLE001  (a snapshot of another version: scan instead)
            self.log.warning("gateway_snapshot_ignored", seq=snap.seq, reason=repr(exc))
            return 0, False
        self.view, self.ring = view, ring
        self.last_public, self.last_public_assigned = last_public, assigned
        if ids is None:
            return snap.seq, False
        self.ids_today, self.ids_yesterday = ids
        self.today = day
        return snap.seq, True

    # ------------------------------------------------------------------ the loop

    def stop(self) -> None:
        """Ask the loop to stop (thread-safe); it finishes the turn it is in."""
        self._stop.set()

    def pin_engine_thread(self) -> None:
        """Run the calling thread, the one that will run `run`, alone on
        ``engine_cpu`` (no-op when not pinned or already done)."""
        if self.cpus is not None and os.sched_getaffinity(0) != {self.cpus[0]}:
            os.sched_setaffinity(0, {self.cpus[0]})   # this thread only
            self.log.info("engine_pinned", cpu=self.cpus[0], others=sorted(self.cpus[1]))

    def run(self) -> None:
        """Serve until `stop()`. Raises `ServerStopped` after a journal failure."""
        broker, operator, data, poll = self.broker, self.operator, self.data, self.poller.poll
        self.pin_engine_thread()
        while not self._stop.is_set():
            ready = dict(poll(self._poll_timeout_ms()))
            first = self.next_seq
            self.catch_up_left = CATCH_UP_PER_TURN
            self.status_work.clear()
            self.read_back = None
            for monitor in self.monitors:      # first: a session whose peer is gone gets nothing
                if monitor in ready:
                    self._log_monitor(monitor)
            if broker in ready:
                self._drain(broker, "broker")
            if operator in ready:
                self._drain(operator, "operator")
            if self.reloads_asked:
                self._answer_reloads()
            if self._tick_due():
                self._apply(Tick(), "clock", "system", "", None)
            self._commit()
            if self.failed is not None:
                raise ServerStopped(str(self.failed)) from self.failed
            self._flush()
            if self.next_seq - first <= RESERVE_TURNS_UP_TO:
                self._reserve()
            if data in ready:
                self._serve_data()
            self._housekeeping()

    def _poll_timeout_ms(self) -> int:
        """Sleep until the next timer is due, a heartbeat or housekeeping is due."""
        timeout = 100
        timers = self.engine.state.timers
        if timers:
            wait = (max(timers[0][0], self.last_env_ns + self.config.tick_ms * NS_PER_MS)
                    - time.time_ns()) // NS_PER_MS
            timeout = max(0, min(timeout, wait + 1))
        return timeout

    def _tick_due(self) -> bool:
        timers = self.engine.state.timers
        if not timers:
            return False
        now = time.time_ns()
        return timers[0][0] <= now and now - self.last_env_ns >= self.config.tick_ms * NS_PER_MS

    def _drain(self, sock: zmq.Socket, port: str) -> None:
        """Receive and handle what is queued on ``sock``: at most ``max_batch``
        messages, ``max_batch`` requests, ``max_batch`` entries and
        ``max_backlog`` entries not yet committed. A ROUTER delivers a
        message whole: its routing id, then its frames; a message of more
        than one is walked `FRAMES_PER_TURN` frames a turn (`_skip_frames`)."""
        recv = sock.recv
        on_message = self._on_message
        max_batch = self.config.max_batch
        self.frames_left = FRAMES_PER_TURN
        if sock in self.skipping and not self._skip_frames(sock, port):
            return                             # the rest of that message in the next turn
        # A Batch message holds up to 1,000 requests: the turn ends after
        # max_batch requests (resends and refusals make no entry but take
        # 1-4 us each: unbounded, one broker's Batches of resends held the
        # loop 6 s a turn), max_batch entries or at the backlog limit,
        # however few messages that was.
        self.requests_left = max_batch
        stop_at = min(self.next_seq + max_batch, self.durable_seq + 1 + self.config.max_backlog)
        for _ in range(max_batch):
            try:
                rid = recv(NOBLOCK)
            except zmq.Again:
                return
            body = recv(NOBLOCK, copy=False)
            if body.more:                      # more frames than the protocol ever has
                self.skipping[sock] = [rid, 1]
                self.frames_left -= 1
                if not self._skip_frames(sock, port):
                    return
                continue
            on_message(sock, port, rid, body, 1)
            if self.next_seq >= stop_at or self.requests_left <= 0:
                return

    def _skip_frames(self, sock: zmq.Socket, port: str) -> bool:
        """Receive the next frames of the message of several frames ``sock``
        is in the middle of, at most ``frames_left`` this turn, keeping none;
        once its last is in, refuse it `undecodable` (or `revoked`) and return
        True; else False: the rest in the next turn. O(frames walked)."""
        state = self.skipping[sock]
        rid, frames = state
        recv = sock.recv
        left = self.frames_left
        last = None
        try:
            while left > 0:
                last = recv(NOBLOCK, copy=False)
                frames += 1
                left -= 1
                if not last.more:
                    break
        except zmq.Again:                      # (ZeroMQ hands a message over whole)
            last = None
        self.frames_left = left
        if last is None or last.more:
            state[1] = frames
            return False
        del self.skipping[sock]
        self.multipart_refused[port] += 1
        user_id = last.get("User-Id")
        stale = stale_connection(self.users.get(user_id), last)
        if stale is not None:
            self._end_session(port, rid, "revoked")
            self._reject(sock, rid, "revoked", user_id, port, detail=stale)
        else:
            self._reject(sock, rid, "undecodable", user_id, port,
                         detail=f"expected one frame per message, got {frames:,}")
        return True

    # ------------------------------------------------------------------ durability

    def _commit(self) -> None:
        """Append the entries made since the last commit and make them durable
        (one write, one fdatasync with ``group``). After a journal failure
        nothing waiting is sent and the loop stops."""
        records = self.records
        if not records or self.failed is not None:
            return
        self.records = []
        journal = self.journal
        try:
            journal.append_many(KIND_ENTRY, records)
            self.durable_seq = journal.commit()
        except (JournalFailed, RecordTooLarge, OSError) as exc:
            self.failed = exc
            self.outbox.clear()
            self.pub_pending.clear()
            self.log.critical("journal_failed", error=str(exc))

    def _reserve(self) -> None:
        """Keep zeros written ahead of the journal's end (`Journal.reserve`),
        after the turn's replies went out: commits then sync data only
        (fdatasync p50 170 -> 115 us here; at 10,000 orders/s, ack p50
        0.85 -> 0.55 ms)."""
        try:
            self.journal.reserve()
        except OSError as exc:
            self.log.warning("journal_preallocation_failed", error=str(exc))

    def _flush(self) -> None:
        """Send every queued message whose entry is durable, in order."""
        durable = self.durable_seq
        outbox = self.outbox
        if outbox and outbox[0][0] <= durable:
            now = time.monotonic_ns()
            sessions = self.sessions_of
            popleft = outbox.popleft
            more, last = MORE_NOBLOCK, NOBLOCK
            cap = self.config.max_queued_bytes
            while outbox and outbox[0][0] <= durable:
                _, sock, rid, data = popleft()
                conn = sessions[sock].get(rid)
                if conn is not None and conn.zero is not None:
                    size = len(data)
                    size += 35 if size <= 222 else 42       # wire_bytes, inlined
                    if conn.sent - conn.seen + size > cap and not self._room(conn, size, now):
                        self._dropped(sock, conn)
                        continue
                try:
                    sock.send(rid, more)    # ROUTER_MANDATORY: refused whole or sent whole
                    sock.send(data, last)
                except zmq.ZMQError as exc:
                    self._send_failed(sock, rid, conn, exc)
                    continue
                if conn is not None:
                    conn.last_out = now
                    if conn.zero is not None:
                        conn.sent += size
        pending = self.pub_pending
        if pending and pending[0][0] <= durable:
            feed_send = self.feed.send
            fold = self.view.fold
            keep = self.ring.append
            seq = 0
            sent = self.feed_bytes
            while pending and pending[0][0] <= durable:
                seq, public, data = pending.popleft()
                feed_send(data, NOBLOCK)
                size = len(data)
                sent += size + (2 if size <= 255 else 9)    # feed_wire_bytes, inlined
                fold(seq, public)           # _published, inlined
                keep(seq, data)
            self.last_public = seq
            self.last_feed_out = time.monotonic_ns()
            self.feed_bytes = sent
            if sent >= self.feed_check_at and self.feed_peers:
                self._check_feed()

    def _queue(self, sock: zmq.Socket, rid: bytes, data: bytes) -> None:
        """Send ``data`` once everything applied so far is durable; while a
        Batch is handled, keep it for the batch's Results instead."""
        if self.answers is not None:
            self.answers.append(data)
        else:
            self.outbox.append((self.next_seq - 1, sock, rid, data))

    # ------------------------------------------------------------------ one message

    def _reject(self, sock: zmq.Socket, rid: bytes, code: str, user: str, port: str,
                client_id: str = "", detail: str = "") -> None:
        text = detail or p.SESSION_REJECTS[code]
        data = p.encode(p.SessionRejected(code=code, text=text, client_id=client_id))
        if sock is self.data:
            self._send(sock, rid, data, time.monotonic_ns())
        else:
            self._queue(sock, rid, data)
        # one log line per refusal, but at most REFUSALS_LOGGED per user and
        # port in each REFUSAL_WINDOW_NS; the rest are counted in one line
        write, unwritten = self.refusals.allow((user, port), time.monotonic_ns())
        if unwritten:
            self.log.warning("refused_unlogged", user=user, port=port, count=unwritten)
        if write:
            self.log.warning("refused", code=code, user=user, port=port, client_id=client_id,
                             detail=text[:200])

    def _on_message(self, sock: zmq.Socket, port: str, rid: bytes, last: zmq.Frame,
                    frames: int) -> None:
        """Handle one inbound message of the broker or operator socket: its
        routing id, its last frame and how many frames it had."""
        user_id = last.get("User-Id")
        user = self.users.get(user_id)
        stale = stale_connection(user, last)
        if stale is not None:
            self._end_session(port, rid, "revoked")
            self._reject(sock, rid, "revoked", user_id, port, detail=stale)
            return
        conn = self.sessions[port].get(rid)
        now = time.monotonic_ns()
        if conn is not None:
            if conn.fd != last.get(SRCFD) or conn.user != user_id:
                # another peer holds the routing id now (a client may choose
                # its own): the session was the earlier peer's, so end it
                self._end_session(port, rid, "peer changed")
                conn = None
            else:
                conn.last_in = now           # anything it sends, refused or not, is a sign of life
        if frames != 1:
            self._reject(sock, rid, "undecodable", user_id, port,
                         detail=f"expected one frame per message, got {frames}")
            return
        try:
            msg = client_decode(last)        # a Frame is a buffer: no memoryview, no copy
        except msgspec.ValidationError as exc:
            if conn is not None:
                split = _split_batch(last)
                if split is not None:        # a Batch with requests that do not match the schema
                    self._on_split_batch(sock, conn, user, split)
                    return
            # answered under each client id it carries, so the sender stops resending;
            # each answer counts in the turn and, for a broker, against its throttle
            ids = _client_ids_of(last)
            self.requests_left -= len(ids)
            rate = self.config.max_requests_per_second
            if port == "broker" and rate and self._throttled(user_id, len(ids)):
                self._reject(sock, rid, "throttled", user_id, port,
                             detail=f"{user_id!r} sent more than {rate:,} requests in a second, "
                                    f"the most it may (max_requests_per_second); nothing was "
                                    f"done")
                return
            for client_id in ids:
                self._reject(sock, rid, "invalid_message", user_id, port, client_id=client_id,
                             detail=str(exc))
            return
        except msgspec.DecodeError as exc:
            self._reject(sock, rid, "undecodable", user_id, port, detail=str(exc))
            return
        kind = type(msg)
        if kind is p.Request:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port, client_id=msg.client_id)
            else:
                self._on_request(sock, conn, user, msg)
        elif kind is p.Batch:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port)
            elif not 1 <= len(msg.requests) <= p.MAX_BATCH:
                self._reject(sock, rid, "bad_batch", user_id, port)
            else:
                self._on_batch(sock, conn, user, msg)
        elif kind is p.Heartbeat:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port)
        elif kind is p.Logon:
            self.requests_left -= SESSION_CHANGE_COST
            self._logon(sock, port, rid, user, msg, now, last.get(SRCFD))
        elif kind is p.Logout:
            self.requests_left -= SESSION_CHANGE_COST
            reason = "logout" if conn is not None else "not logged on"
            self._end_session(port, rid, "logout")
            self._queue(sock, rid, p.encode(p.LoggedOut(reason=reason)))
        elif kind is p.Recap:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port)
            else:
                try:
                    self._recap(sock, conn, msg)
                except OSError as exc:
                    self._journal_unreadable(sock, rid, user_id, port, exc)
                except JournalCorrupt as exc:
                    self._journal_damaged(sock, rid, user_id, port, exc)
        elif kind is p.StatusRequest:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port)
            else:
                self._status(sock, conn, msg)
        elif kind is p.Reload:
            if conn is None:
                self._reject(sock, rid, "not_logged_on", user_id, port)
            elif conn.role != "operator":
                self._reject(sock, rid, "not_permitted", user_id, port,
                             detail="only an operator reloads the key store")
            else:
                self.reloads_asked.append((sock, rid))   # answered after the drain
        else:
            self._reject(sock, rid, "invalid_message", user_id, port)

    def _recap(self, sock: zmq.Socket, conn: Conn, msg: p.Recap) -> None:
        """Send again, as Notices, the user's private events of the durable
        entries from ``from_seq`` on (at most ``limit`` entries scanned, fewer
        once the turn's catch-up budget is spent)."""
        if msg.from_seq < 1 or not 1 <= msg.limit <= 10000:
            self._reject(sock, conn.rid, "bad_request", conn.user, conn.port,
                         detail="from_seq >= 1 and 1 <= limit <= 10000")
            return
        upto = min(self.durable_seq, msg.from_seq + msg.limit - 1)
        user, operator = conn.user, conn.role == "operator"
        through = msg.from_seq - 1
        left, recent = self.catch_up_left, self.recent
        if msg.from_seq <= upto and msg.from_seq not in recent:
            left -= COST_JOURNAL_START
        if left > 0:
            for seq, ts, events in self._entries(msg.from_seq, upto):
                mine = [e for e in events
                        if e.to and (user in e.to or (operator and OPERATORS in e.to))]
                if mine:
                    self._queue(sock, conn.rid, p.encode(p.Notice(seq=seq, ts=ts, events=mine)))
                through = seq
                left -= COST_RECENT if seq in recent else COST_JOURNAL
                if left <= 0:
                    break
            self.catch_up_left = left
        self._queue(sock, conn.rid, p.encode(p.RecapDone(
            through=through, more=through < self.durable_seq)))

    def _status(self, sock: zmq.Socket, conn: Conn, msg: p.StatusRequest) -> None:
        """Answer a broker's status (`exchange.status.broker_status`) as of every
        entry applied so far, sent once they are durable. It shares the turn's
        catch-up budget (a look through N items, `status_work`, costs
        N / STATUS_ITEMS_PER_UNIT, charged before; one alone in a turn is
        answered whatever its cost) and counts against a broker's throttle as
        1 + N / STATUS_ITEMS_PER_REQUEST requests: polling it cannot hold the
        engine thread."""
        broker = msg.broker or conn.user
        refusal = ""
        if len(msg.ref) > 64:
            code, refusal = "bad_request", "a status request's ref is at most 64 characters"
        elif conn.role == "broker" and broker != conn.user:
            code, refusal = "not_permitted", "a broker asks for its own status only"
        elif conn.role == "operator" and not msg.broker:
            code, refusal = "bad_request", "an operator names the broker it asks about"
        elif conn.role != "broker" and conn.role != "operator":
            code, refusal = "not_permitted", "only brokers and operators ask for a status"
        if refusal:
            self._reject(sock, conn.rid, code, conn.user, conn.port, client_id=msg.ref,
                         detail=refusal)
            return
        self.requests_left -= 1
        state = self.engine.state
        asked = (msg.session, broker)
        work = self.status_work.get(asked)           # a bound, once a turn a session and broker
        if work is None:
            work = self.status_work[asked] = status_work(state, msg.session, broker)
        cost = COST_RECENT + work // STATUS_ITEMS_PER_UNIT
        if cost > self.catch_up_left and self.catch_up_left < CATCH_UP_PER_TURN:
            self._reject(sock, conn.rid, "busy", conn.user, conn.port,   # (alone in a turn: yes)
                         client_id=msg.ref,
                         detail="the exchange cannot answer this now: ask again shortly")
            return
        rate = self.config.max_requests_per_second
        requests = min(1 + work // STATUS_ITEMS_PER_REQUEST, rate)   # never beyond a second's
        if conn.role == "broker" and rate and self._throttled(conn.user, requests):
            # no count in the text: it would tell the broker what every broker holds
            self._reject(sock, conn.rid, "throttled", conn.user, conn.port, client_id=msg.ref,
                         detail="a status counts as 1 request and 1 more for each 10 paddles, "
                                "lots, books and orders it looks through, more than the "
                                "broker may send now: ask again later")
            return
        self.catch_up_left -= cost
        status = broker_status(state, broker, msg.session)
        self._queue(sock, conn.rid, p.encode(p.Status(
            seq=self.next_seq - 1, session=msg.session, broker=broker, ref=msg.ref,
            orders=status.orders, bids=status.bids, holdings=status.holdings,
            credit=status.credit, rooms=status.rooms)))

    def _logon(self, sock: zmq.Socket, port: str, rid: bytes, user: User, msg: p.Logon,
               now: int, fd: int) -> None:
        if not 100 <= msg.heartbeat_ms <= 60000:
            self._reject(sock, rid, "bad_heartbeat", user.id, port)
            return
        if msg.cancel_on_disconnect and user.role != "broker":
            self._reject(sock, rid, "not_permitted", user.id, port,
                         detail="cancel-on-disconnect applies to brokers only")
            return
        old = self.sessions[port].get(rid)
        if old is not None:
            self._forget(old)
        # the earlier peer of this fd disconnected before this one connected:
        # take its event now, or it would end this session a turn later
        self._log_monitor(self.monitor_of[port])
        stale = self.by_fd.get((port, fd))
        if stale is not None:             # no event seen for it, but the fd is reused
            self._end_session(port, stale.rid, "peer gone")
        # every private event goes to each listening connection of its user:
        # a cap on them keeps one user from multiplying the loop's sends
        if len(self.user_conns.get(user.id, ())) >= self.config.max_sessions_per_user:
            self._reject(sock, rid, "too_many_sessions", user.id, port,
                         detail=f"{user.id!r} already has {self.config.max_sessions_per_user} "
                                f"sessions (max_sessions_per_user); log out of one, or wait for "
                                f"a dead one to miss three heartbeats")
            return
        cod = user.cancel_on_disconnect if msg.cancel_on_disconnect is None \
            else msg.cancel_on_disconnect
        conn = Conn(port, sock, rid, user.id, user.role, msg.heartbeat_ms * NS_PER_MS, now, cod,
                    msg.notices, fd)
        self.sessions[port][rid] = conn
        self.by_fd[(port, fd)] = conn
        self.user_conns.setdefault(user.id, []).append(conn)
        if conn.notices:
            self.listeners.setdefault(user.id, []).append(conn)
            if user.role == "operator":
                self.listeners.setdefault(OPERATORS, []).append(conn)
        self._queue(sock, rid, p.encode(p.LogonAccepted(
            user=user.id, role=user.role, heartbeat_ms=msg.heartbeat_ms,
            cancel_on_disconnect=cod, trading_day=day_text(self.today),
            last_seq=self.next_seq - 1, max_message_bytes=self.config.max_message_bytes)))
        self.log.info("logon", user=user.id, role=user.role, port=port, rid=rid.hex(),
                      heartbeat_ms=msg.heartbeat_ms, cancel_on_disconnect=cod)

    def _on_batch(self, sock: zmq.Socket, conn: Conn, user: User, msg: p.Batch) -> None:
        """Handle each request of a Batch as if alone; answer with one Results
        message, queued behind the last entry the batch made. O(requests)."""
        answers = self.answers = []
        try:
            for request in msg.requests:
                self._on_request(sock, conn, user, request)
        finally:
            self.answers = None
        self._queue(sock, conn.rid, p.encode(_ResultsOut(results=[msgspec.Raw(a)
                                                                   for a in answers])))

    def _on_split_batch(self, sock: zmq.Socket, conn: Conn, user: User,
                        requests: list[p.Request | _Unmatched]) -> None:
        """Handle a Batch some of whose requests do not match the schema: each
        of those is refused `invalid_message` alone in the Results, the others
        are handled as in any Batch. O(requests)."""
        answers = self.answers = []
        try:
            for request in requests:
                if type(request) is _Unmatched:
                    self.requests_left -= 1
                    self._refuse_request(sock, conn, "invalid_message", request.client_id,
                                         request.detail)
                else:
                    self._on_request(sock, conn, user, request)
        finally:
            self.answers = None
        self._queue(sock, conn.rid, p.encode(_ResultsOut(results=[msgspec.Raw(a)
                                                                   for a in answers])))

    def _on_request(self, sock: zmq.Socket, conn: Conn, user: User, msg: p.Request) -> None:
        self.requests_left -= 1
        cid = msg.client_id
        if not (0 < len(cid) <= p.MAX_CLIENT_ID and cid.isascii() and cid.isprintable()
                and " " not in cid):       # 1..64 printable ASCII, no space
            self._refuse_request(sock, conn, "bad_client_id", cid[:p.MAX_CLIENT_ID])
            return
        cmd = msg.cmd
        kind = type(cmd)
        if kind is Tick:
            self._refuse_request(sock, conn, "not_permitted", cid,
                                 "Tick is sent by the exchange clock only")
            return
        if kind is RegisterParty and user.clients and cmd.name not in user.clients:
            self._refuse_request(sock, conn, "not_your_client", cid,
                                 f"{cmd.name!r} is not among the clients of {user.id!r} "
                                 f"in the key store")
            return
        now = time.time_ns()
        # the day rolls forward only: a clock set back keeps the later day's ids
        if (now if now > self.last_ts else self.last_ts) // NS_PER_DAY > self.today:
            self._roll_day(trading_day(max(now, self.last_ts)))
        key = f"{user.id}{ID_JOIN}{cid}"            # id_key, inlined
        shard = hash(key) & ID_MASK               # ClientIds.get, inlined
        known = self.ids_today.shards[shard].get(key)
        if known is None:
            known = self.ids_yesterday.shards[shard].get(key)
        if known is not None:
            seq = known
            try:
                found = self._original(seq)
            except OSError as exc:            # out of file descriptors, a disk error
                self._journal_unreadable(sock, conn.rid, user.id, conn.port, exc, cid)
                return
            except (JournalCorrupt, EntryMissing) as exc:    # the entry cannot be read back
                self._journal_damaged(sock, conn.rid, user.id, conn.port, exc, cid,
                                      detail=f"client id {cid!r} was used for journal entry "
                                             f"{seq}, whose result cannot be read back: the "
                                             f"journal is damaged on the server ({exc}); it "
                                             f"is not done again: ask the exchange's operator")
                return
            if found is None:
                self._reject(sock, conn.rid, "busy", user.id, conn.port, client_id=cid,
                             detail=f"client id {cid!r} is older than the results kept in "
                                    f"memory and this turn's journal reads are spent: "
                                    f"resend it later")
                return
            original, events = found
            clock = time.monotonic_ns()
            window = self.resent.get(user.id)       # per user: a new logon starts no new one
            if window is None or clock - window[0] >= RESENT_WINDOW_NS:
                window = self.resent[user.id] = [clock, 0]
            if window[1] + len(events) >= RESENT_EVENTS_PER_SECOND and window[1]:
                self._reject(sock, conn.rid, "busy", user.id, conn.port, client_id=cid,
                             detail=f"{user.id!r} was sent {window[1]} events of resent "
                                    f"results in the last second, the most it may: resend "
                                    f"it later")
                return
            window[1] += len(events) + 1
            if original != cmd:
                self._reject(sock, conn.rid, "duplicate_client_id", user.id, conn.port,
                             client_id=cid,
                             detail=f"client id {cid!r} was used for journal entry {seq} "
                                    f"with a different command")
                return
            self._queue(sock, conn.rid, self._result(cid, seq, events, conn.user, conn.role,
                                                     resent=True))
            return
        # after the known ids: a resend of what acted is answered, never throttled
        if conn.role == "broker" and self.config.max_requests_per_second \
                and self._throttled(user.id):
            rate = self.config.max_requests_per_second
            self._reject(sock, conn.rid, "throttled", user.id, conn.port, client_id=cid,
                         detail=f"{user.id!r} sent more than {rate:,} requests in a second, "
                                f"the most it may (max_requests_per_second); nothing was done")
            return
        self._apply(cmd, user.id, conn.role, cid, conn, now)

    def _refuse_request(self, sock: zmq.Socket, conn: Conn, code: str, cid: str,
                        detail: str = "") -> None:
        """Refuse a request at session level. A broker's refused request
        counts against its throttle like any other (each makes an answer:
        a Batch of 1,000 refused requests, 41 KB in, made 97 KB out), and
        beyond it is refused `throttled` instead."""
        rate = self.config.max_requests_per_second
        if conn.role == "broker" and rate and self._throttled(conn.user):
            code, detail = "throttled", (f"{conn.user!r} sent more than {rate:,} requests in a "
                                         f"second, the most it may (max_requests_per_second); "
                                         f"nothing was done")
        self._reject(sock, conn.rid, code, conn.user, conn.port, client_id=cid, detail=detail)

    def _throttled(self, user_id: str, cost: int = 1) -> bool:
        """Count ``cost`` requests of the broker; True if it is over its rate.
        The generic cell rate algorithm (a token bucket of one second's worth)
        in integers: each request moves the broker's theoretical arrival time
        on by 1/rate s (here: by 10^9 in units of 1/rate ns); a request that
        would move it more than a second ahead of now is refused. O(1)."""
        rate = self.config.max_requests_per_second
        now = time.monotonic_ns() * rate
        due = self.allowance.get(user_id, 0)
        if due < now:
            due = now
        due += NS_PER_SECOND * cost
        if due - now > NS_PER_SECOND * rate:
            return True
        self.allowance[user_id] = due
        return False

    # ------------------------------------------------------------------ apply

    def _apply(self, cmd: Any, actor: str, role: str, cid: str, origin: Conn | None,
               now: int = 0) -> None:
        """Sequence and apply one command and encode its journal entry; queue
        its reply, notices and market data until the entry is durable. One
        pass over the events sorts them into the public ones (the Market
        message), the ones the sender sees (its Result) and the private
        notices of the other listening connections. O(events x audience)."""
        if not now:
            now = time.time_ns()
        if now > self.last_ts:
            ts = now
        else:
            ts = self.last_ts
            if ts - now > CLOCK_BEHIND_NS:
                self._clock_behind(now)
        if ts // NS_PER_DAY > self.today:
            self._roll_day(ts // NS_PER_DAY)
        seq = self.next_seq
        env = Envelope(seq=seq, ts=ts, actor=actor, role=role, cmd=cmd, client_id=cid,
                       rules=RULES)
        try:
            events = self.engine.apply(env)
            entry = encode_entry(Entry(env, events))
        except Exception as exc:   # a bug in a handler, or events it cannot record (an
            # integer beyond msgpack's 64 bits): the state may be damaged
            self.log.error("engine_error", seq=seq, command=type(cmd).__name__, actor=actor,
                           error=repr(exc), exc_info=exc)
            self._unapply(env, origin, "internal_error")
            return
        if len(entry) > MAX_ENTRY_BYTES:
            self.log.error("entry_too_large", seq=seq, command=type(cmd).__name__, actor=actor,
                           bytes=len(entry), events=len(events), limit=MAX_ENTRY_BYTES)
            self._unapply(env, origin, "entry_too_large")
            return
        self.records.append((ts, entry))
        if not seq % ENTRY_MARK_EVERY:            # where a replay's journal reading may start
            self.ring.mark_entry(seq, self.last_public_assigned)
        self.next_seq = seq + 1
        self.last_ts = ts
        self.last_env_ns = now
        self.entries_since_snapshot += 1
        self.entries_since_freeze += 1
        if cid:
            key = f"{actor}{ID_JOIN}{cid}"        # id_key and ClientIds.put, inlined
            self.ids_today.shards[hash(key) & ID_MASK][key] = seq
        recent = self.recent                      # results kept for resends (put, inlined)
        recent.slots[seq & recent.mask] = (seq, ts, events, cmd)

        public: list[Any] = []
        seen: list[Any] = []                      # what the sender may see
        code = text = ""
        operator = role == "operator"
        private_to: dict[Conn, list[Any]] | None = None
        listeners = self.listeners
        for event in events:
            audience = event.to
            if not audience:
                public.append(event)
                seen.append(event)
                continue
            if actor in audience or (operator and OPERATORS in audience):
                seen.append(event)
            if not code and type(event) is CommandRejected and event.ref == seq:
                code, text = event.code, event.text
            if not listeners:
                continue
            for target in audience:
                conns = listeners.get(target)
                if not conns:
                    continue
                for conn in conns:
                    if conn is origin:
                        continue
                    if private_to is None:
                        private_to = {}
                    bucket = private_to.get(conn)
                    if bucket is None:
                        private_to[conn] = [event]
                    elif bucket[-1] is not event:
                        bucket.append(event)
        outbox = self.outbox
        if origin is not None:
            reply = p.encode(p.Result(client_id=cid, seq=seq, accepted=not code, code=code,
                                      text=text, events=seen))
            if self.answers is not None:
                self.answers.append(reply)
            else:
                outbox.append((seq, origin.sock, origin.rid, reply))
        if private_to:
            for conn, evs in private_to.items():
                outbox.append((seq, conn.sock, conn.rid,
                               p.encode(p.Notice(seq=seq, ts=ts, events=evs))))
        if public:
            self.pub_pending.append((seq, public, self._market(seq, ts, public)))

    def _clock_behind(self, now: int) -> None:
        """Say (at most once a minute) that the host's clock reads behind the
        exchange's time: set back. The exchange's time never runs back, so it
        stands still until the host's clock catches up; timers are times of
        day (UTC), so a lot closes when the clock reaches its close."""
        clock = time.monotonic_ns()
        if self.clock_behind_logged and clock - self.clock_behind_logged < 60 * NS_PER_SECOND:
            return
        self.clock_behind_logged = clock
        self.log.warning("clock_behind", behind_ms=(self.last_ts - now) // NS_PER_MS,
                         exchange_ts=self.last_ts, host_ts=now)

    def _feed_time(self) -> int:
        """Return the exchange's time now for a message that is no entry (a
        feed heartbeat, a snapshot): the host's clock, never behind a time
        given out before, and the next entry's time never behind it (a clock
        set back must not run a watcher's board back)."""
        now = time.time_ns()
        if now > self.last_ts:
            self.last_ts = now
            return now
        return self.last_ts

    def _market(self, seq: int, ts: int, public: list[Any]) -> bytes:
        """Encode the Market message of entry ``seq``, chained to the previous one."""
        data = p.encode(p.Market(seq=seq, prev=self.last_public_assigned, ts=ts,
                                 events=public))
        self.last_public_assigned = seq
        return data

    def _published(self, seq: int, public: list[Any], data: bytes) -> None:
        """A Market message went out: keep it for replay and fold it into the view."""
        self.last_public = seq
        self.view.fold(seq, public)
        self.ring.append(seq, data)

    def _original(self, seq: int) -> tuple[Any, list[Any]] | None:
        """Return the command and events of entry ``seq``, for a resent client
        id: kept with the recent results, which hold every entry of the turn
        (`MAX_BACKLOG`), else read back from the journal in the turn's
        catch-up budget; None once that is spent. The ids of the day keep no
        command: ~100 instead of 200 bytes an order."""
        kept = self.recent.original(seq)
        if kept is not None:
            return kept
        return self._read_back(seq)

    def _read_back(self, seq: int) -> tuple[Any, list[Any]] | None:
        """Read entry ``seq`` (durable: the writer's own view holds it) from
        the journal: on from where the last one of this turn left off if
        ``seq`` is a little ahead of it (resends after a reconnection come in
        order: 8 units each), else from a new start (~0.13 ms, 256 units).
        Return None, reading nothing, once the turn's catch-up budget is
        spent. O(records between the start and ``seq``)."""
        if self.catch_up_left <= 0:
            return None
        cursor = self.read_back
        if cursor is not None and cursor[0] <= seq < cursor[0] + READ_BACK_SKIP:
            records = cursor[1]
        else:
            records = self.journal.read(seq)
            self.catch_up_left -= COST_JOURNAL_START
        for record in records:
            self.catch_up_left -= COST_JOURNAL
            if record.seq >= seq:
                if record.seq > seq:
                    break
                self.read_back = (seq + 1, records)
                entry = decode_entry(record.payload)
                return entry.env.cmd, entry.events
        raise EntryMissing(f"journal entry {seq} not found")

    def _entries(self, first: int, last: int) -> Iterator[tuple[int, int, list[Any]]]:
        """Yield (seq, ts, events) of durable entries first..last: from the
        journal below the recent ones, then from memory. O(entries)."""
        seq = first
        if seq <= last and seq not in self.recent:
            for record in self.journal.read(seq):
                if record.seq > last or record.seq in self.recent:
                    break
                entry = decode_entry(record.payload)
                yield record.seq, entry.env.ts, entry.events
                seq = record.seq + 1
        while seq <= last:
            ts, events = self.recent.get(seq)    # kept: above the journal part
            yield seq, ts, events
            seq += 1

    @staticmethod
    def _visible(events: list[Any], user: str, role: str) -> list[Any]:
        out = []
        for event in events:
            to = event.to
            if not to or user in to or (role == "operator" and OPERATORS in to):
                out.append(event)
        return out

    def _result(self, cid: str, seq: int, events: list[Any], user: str, role: str, *,
                resent: bool = False) -> bytes:
        code = text = ""
        for event in events:
            if type(event) is CommandRejected and event.ref == seq:
                code, text = event.code, event.text
                break
        return p.encode(p.Result(client_id=cid, seq=seq, accepted=not code, code=code,
                                 text=text, events=self._visible(events, user, role),
                                 resent=resent))

    def _roll_day(self, day: int) -> None:
        gone = [self.ids_yesterday] if day == self.today + 1 else [self.ids_yesterday,
                                                                   self.ids_today]
        for ids in gone:                  # freed a few shards per housekeeping, not at once
            self.ids_dropping.extend(ids.shards)
        self.ids_yesterday = self.ids_today if day == self.today + 1 else ClientIds()
        self.ids_today = ClientIds()
        self.today = day

    def _unapply(self, env: Envelope, origin: Conn | None, code: str) -> None:
        """Take back a command the engine applied but that cannot be recorded
        (its handler raised, or its entry is over `MAX_ENTRY_BYTES`): make
        durable what was applied before, rebuild the engine from the journal
        (the one recovery path; seconds on a long journal) and refuse the
        command with ``code``; nothing of it was recorded or sent."""
        from recorder import recovery
        self._commit()
        self.engine = recovery.rebuild(self.data_dir,
                                       journal=Journal.open_readonly(self.journal_dir))
        if origin is not None:
            self._queue(origin.sock, origin.rid, p.encode(
                p.SessionRejected(code=code, text=p.SESSION_REJECTS[code],
                                  client_id=env.client_id)))

    # ------------------------------------------------------------------ sending

    def _send(self, sock: zmq.Socket, rid: bytes, data: bytes, now: int) -> None:
        conn = self.sessions_of[sock].get(rid)
        size = wire_bytes(len(data))
        if conn is not None and conn.zero is not None \
                and conn.sent - conn.seen + size > self.config.max_queued_bytes \
                and not self._room(conn, size, now):
            self._dropped(sock, conn)
            return
        try:
            sock.send(rid, MORE_NOBLOCK)
            sock.send(data, NOBLOCK)
        except zmq.ZMQError as exc:
            self._send_failed(sock, rid, conn, exc)
            return
        if conn is not None:
            conn.last_out = now
            if conn.zero is not None:
                conn.sent += size

    def _room(self, conn: Outflow, size: int, now: int) -> bool:
        """Whether a message of ``size`` may be sent to ``conn``, whose count
        of bytes sent and not acknowledged says it would go over
        `max_queued_bytes`: ask the kernel what its peer acknowledged (at most
        every QUEUE_CHECK_NS while it stays behind). A message goes if the
        bytes still queued and it fit, or nothing is queued (a larger one
        alone), or the kernel holds nothing unacknowledged (whatever waits in
        ZeroMQ is on its way: counting starts anew). O(1), a system call."""
        if now < conn.next_check:
            return False
        acked = tcp.bytes_acked(conn.fd)
        if acked is None:                       # cannot tell: this connection is not bounded
            conn.zero = None
            return True
        conn.seen = acked - conn.zero
        queued = conn.sent - conn.seen
        if queued <= 0 or queued + size <= self.config.max_queued_bytes:
            return True
        if tcp.unacked(conn.fd) == 0:
            conn.zero = acked - conn.sent
            conn.seen = conn.sent
            return True
        conn.next_check = now + QUEUE_CHECK_NS
        return False

    def _dropped(self, sock: zmq.Socket, conn: Outflow) -> None:
        """A message for ``conn`` was not sent: it has `max_queued_bytes` or
        more waiting that its peer has not taken (the client resends what it
        misses; notices come back by `Recap`)."""
        conn.dropped += 1
        if conn.dropped == 1 or conn.dropped % 1000 == 0:
            port = ("broker" if sock is self.broker else "operator" if sock is self.operator
                    else "data")
            self.log.warning("slow_client_dropped", user=conn.user, port=port,
                             rid=conn.rid.hex(), dropped=conn.dropped,
                             queued_bytes=conn.sent - conn.seen)

    def _send_failed(self, sock: zmq.Socket, rid: bytes, conn: Conn | None,
                     exc: zmq.ZMQError) -> None:
        """A send was refused: the peer's queue is full (the message is lost,
        the client resends) or the peer is gone (its session ends)."""
        port = "broker" if sock is self.broker else "operator" if sock is self.operator else "data"
        if exc.errno == zmq.EAGAIN:
            if conn is not None:
                conn.dropped += 1
                if conn.dropped == 1 or conn.dropped % 1000 == 0:
                    self.log.warning("slow_client_dropped", user=conn.user, port=port,
                                     rid=rid.hex(), dropped=conn.dropped)
            return
        if exc.errno == zmq.EHOSTUNREACH:
            if conn is not None:
                self.log.info("peer_gone", user=conn.user, port=port, rid=rid.hex())
                if port == "data":
                    self._forget_data_peer(conn)
                else:
                    self._end_session(port, rid, "peer gone")
            return
        raise exc

    # ------------------------------------------------------------------ sessions

    def _forget(self, conn: Conn) -> None:
        self.sessions[conn.port].pop(conn.rid, None)
        if self.by_fd.get((conn.port, conn.fd)) is conn:
            del self.by_fd[(conn.port, conn.fd)]
        for table, key in ((self.user_conns, conn.user), (self.listeners, conn.user),
                           (self.listeners, OPERATORS)):
            conns = table.get(key)
            if conns and conn in conns:
                conns.remove(conn)
                if not conns:
                    del table[key]

    def _sessions_with_orders_of(self, broker: str) -> list[str]:
        """The sessions whose books hold resting orders and in which ``broker``
        has a paddle: where its cancel on disconnect has something to cancel
        (not every session that ever had a book: a closed one's would be an
        empty journal entry each time). O(books + paddles of those sessions)."""
        state = self.engine.state
        out: dict[str, None] = {}
        for inst in state.books.values():
            session = getattr(inst, "session", "")
            if not session or session in out or not inst.book.orders:
                continue
            found = state.sessions.get(session)
            if found is not None and any(state.parties[party].broker == broker
                                         for party in found.paddles.values()):
                out[session] = None
        return list(out)

    def _end_session(self, port: str, rid: bytes, reason: str) -> None:
        """End a session; apply cancel-on-disconnect (book orders only)."""
        if port not in self.sessions:
            return
        conn = self.sessions[port].get(rid)
        if conn is None:
            return
        self._forget(conn)
        self.log.info("session_ended", user=conn.user, port=port, rid=rid.hex(), reason=reason)
        if conn.cod and self.failed is None:
            if any(c.cod for c in self.user_conns.get(conn.user, [])):
                return   # another connection of the user still wants its orders kept
            sessions = self._sessions_with_orders_of(conn.user)
            for session in sessions:
                self._apply(MassCancel(session=session), conn.user, conn.role, "", None)
            self.log.info("cancel_on_disconnect", user=conn.user, reason=reason,
                          sessions=len(sessions))

    def _housekeeping(self) -> None:
        now = time.monotonic_ns()
        if now - self.last_housekeeping < 50 * NS_PER_MS:
            return
        self.last_housekeeping = now
        for port in ("broker", "operator"):
            sock = self.sockets[port]
            for conn in list(self.sessions[port].values()):
                if now - conn.last_in > 3 * conn.hb_ns:
                    self._end_session(port, conn.rid, "heartbeat timeout")
                    self._queue(sock, conn.rid, p.encode(p.LoggedOut(reason="heartbeat timeout")))
                elif now - conn.last_out >= conn.hb_ns:
                    conn.last_out = now
                    self._queue(sock, conn.rid, p.encode(p.Heartbeat()))
        if now - self.last_feed_out >= self.config.heartbeat_ms * NS_PER_MS:
            beat = p.encode(p.FeedHeartbeat(seq=self.last_public, ts=self._feed_time()))
            self.feed.send(beat, zmq.NOBLOCK)
            self.feed_bytes += feed_wire_bytes(len(beat))
            self.last_feed_out = now
        if now - self.last_keys_check >= self.config.keys_check_ms * NS_PER_MS:
            self.last_keys_check = now
            self._reload_keys()
        self._commit()
        self._flush()
        self._maybe_snapshot()
        if self.ids_dropping:
            self._free_ids(IDS_FREED_PER_HOUSEKEEPING)
        if self.entries_since_freeze >= FREEZE_EVERY:
            # Long-lived objects (state, ids, ring) leave the collector's
            # generations: collections stay short however large the state grows.
            # Every 1000 entries, not 20000: what the collector then scans in a
            # full collection is at most ~1000 entries' survivors (measured at
            # 10,000 orders/s: gen-2 pauses of 12-28 ms before, none above
            # 1.3 ms after). Frozen objects are still freed by refcount.
            gc.freeze()
            self.entries_since_freeze = 0

    def _free_ids(self, most: int) -> None:
        """Free up to ``most`` client ids of a past day, a few at a time (a whole
        table of a busy day took 8-50 ms to free, cold in memory). O(most)."""
        dropping = self.ids_dropping
        while most > 0 and dropping:
            table = dropping[-1]
            if len(table) <= most:
                most -= len(table)
                dropping.pop()
                continue
            pop = table.popitem
            for _ in range(most):
                pop()
            return

    def _answer_reloads(self) -> None:
        """Reload the key store once for every `Reload` of the turn (each was
        received before it) and answer them: ~0.2 ms a reload with 20 users,
        more with more, so a flood of them costs one reload a turn, not one each."""
        self._reload_keys(force=True)
        active = sum(1 for u in self.users.values() if not u.revoked)
        answer = p.encode(p.Reloaded(users=active))
        for sock, rid in self.reloads_asked:
            self._queue(sock, rid, answer)
        self.reloads_asked.clear()

    def _reload_keys(self, force: bool = False) -> None:
        """Read ``users.json`` again if its stamp changed (or ``force``: an
        operator's `Reload`). The whole store is checked and the ZAP key map
        made before anything is replaced: a store that cannot be read or is
        damaged changes nothing (the users read before stay in force) and is
        logged as `keys_reload_failed` once per version of the file (stamp),
        not at every check. It is tried again at every check (a read error
        such as running out of descriptors passes; a damaged file costs a
        read of it), so a mended file, or one readable again, is taken."""
        stamp = self.keystore.stamp()
        if stamp == self.keys_stamp and not force:
            return
        try:
            users = self.keystore.users()
            by_key = key_map(users)
        except (OSError, KeyStoreError, ValueError) as exc:
            if stamp != self.keys_failed:
                self.keys_failed = stamp
                self.log.error("keys_reload_failed", error=str(exc),
                               kept=sum(1 for u in self.users.values() if not u.revoked))
            return
        self.keys_stamp = stamp
        self.keys_failed = None
        before = self.users
        self.users = users
        self.zap.set_key_map(by_key)
        # a session ends if its user is gone or revoked, its key was replaced,
        # or its role is no longer the one it logged on with (a broker made a
        # viewer keeps no broker session); its connection's next message is
        # refused `revoked` (`stale_connection`), on the data socket too
        for port in ("broker", "operator"):
            sock = self.sockets[port]
            for conn in list(self.sessions[port].values()):
                user, was = users.get(conn.user), before.get(conn.user)
                if user is None or user.revoked:
                    why = "revoked"
                elif was is not None and was.public_key != user.public_key:
                    why = "key replaced"
                elif user.role != conn.role:
                    why = "role changed"
                else:
                    continue
                self._end_session(port, conn.rid, why)
                self._queue(sock, conn.rid, p.encode(p.LoggedOut(reason="revoked")))
        self.log.info("keys_reloaded", users=sum(1 for u in users.values() if not u.revoked))

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot(self, force: bool = False) -> None:
        """Snapshot the engine and the feed's state every ``snapshot_every``
        entries or ``snapshot_seconds``, once every entry is durable (a
        snapshot must not cover more than the journal holds). A forked child
        pickles and writes both from its copy-on-write image of the process,
        as Redis does, so the loop pauses for the fork (~2-4 ms for the
        bench's state) instead of the pickling (~22 ms there, growing with
        the state); pages the child touches are copied meanwhile. On shutdown
        (``force``) it is done in place, after any child has finished. One
        that failed is tried again a period after it, or at the clean stop."""
        if self._snapshot_child is not None and not self._reap_snapshot(block=force):
            return                        # the previous one is still being written
        if self.entries_since_snapshot == 0 or self.failed is not None:
            return
        entries_since_tried = self.engine.state.last_seq - self.snapshot_tried_seq
        due = (force or entries_since_tried >= self.config.snapshot_every
               or time.monotonic() - self.last_snapshot_wall >= self.config.snapshot_seconds)
        if not due:
            return
        self._commit()
        if self.failed is not None:
            return
        seq = self.engine.state.last_seq
        if seq != self.durable_seq:
            raise RuntimeError(f"engine at seq {seq} but the journal is durable to "
                               f"{self.durable_seq}")
        self._flush()                 # every Market message up to seq is in the ring
        self.entries_since_snapshot = 0
        self.snapshot_tried_seq = seq
        started = self.last_snapshot_wall = time.monotonic()
        pid = -1
        if not force and hasattr(os, "fork"):
            try:
                with warnings.catch_warnings():   # Python 3.12+ warns of fork beside threads
                    warnings.simplefilter("ignore", DeprecationWarning)
                    pid = os.fork()
            except OSError as exc:                # no memory or processes left: write it here
                self.log.warning("snapshot_fork_failed", seq=seq, error=str(exc))
        if pid < 0:
            try:
                written = self._write_snapshots()
            except OSError as exc:
                self.log.error("snapshot_failed", seq=seq, error=str(exc))
                self._snapshot_not_written(seq)
            else:
                self.snapshot_seq = seq
                self.log.info("snapshot_written", seq=seq, **written)
            return
        if pid == 0:                      # the child: no logging, no ZeroMQ, no return
            code = 2
            try:
                gc.disable()
                if self.cpus is not None:         # not beside the engine thread
                    os.sched_setaffinity(0, self.cpus[1])
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # listening ports, the journal lock
                self._write_snapshots()
                code = 0
            except OSError:
                code = 1
            finally:
                os._exit(code)
        self._snapshot_child = (pid, seq, started, round((time.monotonic() - started) * 1000, 1))

    def _write_snapshots(self) -> dict[str, int]:
        """Write the engine's and the gateway's snapshots at the last seq
        (durable); return their sizes. Raises `OSError`."""
        from recorder.snapshots import write_snapshot
        seq, ts = self.engine.state.last_seq, self.engine.state.now
        chain = bytes.fromhex(self.journal.head_hash)
        data = self.engine.snapshot()
        write_snapshot(self.snapshot_dir, seq, data, ts=ts, chain=chain)
        gateway = pickle.dumps(self._gateway_state(), protocol=pickle.HIGHEST_PROTOCOL)
        write_snapshot(self.gateway_snapshot_dir, seq, gateway, ts=ts, chain=chain)
        return {"bytes": len(data), "gateway_bytes": len(gateway)}

    def _reap_snapshot(self, block: bool) -> bool:
        """Collect the snapshot child if it has ended (or wait for it, at most
        SNAPSHOT_CHILD_WAIT_S, then kill it) and log how it went; return
        whether it has ended."""
        assert self._snapshot_child is not None
        pid, seq, started, pause_ms = self._snapshot_child
        deadline = time.monotonic() + SNAPSHOT_CHILD_WAIT_S
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:         # reaped elsewhere: written or not, unknown
                self._snapshot_child = None
                self._snapshot_not_written(seq)
                return True
            if done or not block:
                break
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                done, status = os.waitpid(pid, 0)
                break
            time.sleep(0.005)
        if done == 0:
            return False
        self._snapshot_child = None
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            self.snapshot_seq = seq
            self.log.info("snapshot_written", seq=seq, pause_ms=pause_ms,
                          ms=round((time.monotonic() - started) * 1000, 1))
        else:
            self.log.error("snapshot_failed", seq=seq, exit_code=code,
                           error="could not write the files" if code == 1 else
                           "the snapshot process failed")
            self._snapshot_not_written(seq)
        return True

    def _snapshot_not_written(self, seq: int) -> None:
        """Count again the entries a snapshot of ``seq`` that failed was to
        cover (those after the last one written): the next period (the
        entries or seconds of a period after the failed one) or the clean
        stop tries again."""
        self.entries_since_snapshot += seq - self.snapshot_seq

    # ------------------------------------------------------------------ data socket

    def _snapshot_answer(self, request: p.SnapshotRequest) -> bytes:
        """The encoded `Snapshot` for ``request``, charged to the turn's
        catch-up budget for the events looked at and the bytes encoded (a
        large one is the turn's last catch-up work)."""
        view = self.view
        events = view.snapshot(request.session, request.key)
        data = p.encode(p.Snapshot(seq=self.last_public, session=request.session,
                                   key=request.key, events=events, ts=self._feed_time()))
        self.catch_up_left -= (1 + view.walked // SNAPSHOT_EVENTS_PER_UNIT
                               + len(data) // SNAPSHOT_BYTES_PER_UNIT)
        return data

    def _serve_data(self) -> None:
        """Answer snapshot and replay requests from what has been published,
        while the turn's catch-up budget lasts; the rest wait in the socket
        for the next turn (a snapshot is whole: the budget may go below 0)."""
        sock = self.data
        recv = sock.recv
        peers = self.sessions_of[sock]          # routing id -> DataPeer
        now = time.monotonic_ns()
        self.frames_left = FRAMES_PER_TURN
        if sock in self.skipping and not self._skip_frames(sock, "data"):
            return                             # the rest of that message in the next turn
        for _ in range(64):
            if self.catch_up_left <= 0:
                return
            try:
                rid = recv(NOBLOCK)
            except zmq.Again:
                return
            body = recv(NOBLOCK, copy=False)    # frame by frame: none kept but this one
            if body.more:
                self.skipping[sock] = [rid, 1]
                self.frames_left -= 1
                if not self._skip_frames(sock, "data"):
                    return
                continue
            user_id = body.get("User-Id")
            fd = body.get(SRCFD)
            peer = peers.get(rid)
            if peer is None or peer.fd != fd:    # a new connection (or its routing id reused)
                peer = self._data_peer(rid, user_id, fd)
            stale = stale_connection(self.users.get(user_id), body)
            if stale is not None:
                self._reject(sock, rid, "revoked", user_id, "data", detail=stale)
                continue
            try:
                request = p.data_request_decoder.decode(body.buffer)
            except msgspec.ValidationError as exc:
                self._reject(sock, rid, "invalid_message", user_id, "data", detail=str(exc))
                continue
            except msgspec.DecodeError as exc:
                self._reject(sock, rid, "undecodable", user_id, "data", detail=str(exc))
                continue
            if type(request) is p.SnapshotRequest:
                self._send(sock, rid, self._snapshot_answer(request), now)
            else:
                try:
                    self._replay(sock, rid, user_id, request)
                except OSError as exc:           # out of file descriptors, a disk error
                    self._journal_unreadable(sock, rid, user_id, "data", exc)
                except JournalCorrupt as exc:
                    self._journal_damaged(sock, rid, user_id, "data", exc)

    def _data_peer(self, rid: bytes, user_id: str, fd: int) -> DataPeer:
        """Start tracking a data-socket connection. Another peer that held its
        descriptor is gone (live connections' descriptors differ), even if its
        disconnection was read before its last request made it a peer: it is
        forgotten, so such peers never pile up. O(1)."""
        self._forget_data_peer(self.sessions_of[self.data].get(rid))
        self._forget_data_peer(self.by_fd.get(("data", fd)))
        peer = self.sessions_of[self.data][rid] = DataPeer(rid, user_id, fd)
        self.by_fd[("data", fd)] = peer
        return peer

    def _forget_data_peer(self, peer: DataPeer | None) -> None:
        """A data-socket connection ended (or its routing id was reused)."""
        if peer is not None:
            if self.by_fd.get(("data", peer.fd)) is peer:
                del self.by_fd[("data", peer.fd)]
            peers = self.sessions_of[self.data]
            if peers.get(peer.rid) is peer:
                del peers[peer.rid]

    def _journal_unreadable(self, sock: zmq.Socket, rid: bytes, user_id: str, port: str,
                            exc: OSError, client_id: str = "") -> None:
        """Answer a request the journal could not be read for (a catch-up, an
        old resend): `busy`, ask again later; the server goes on serving."""
        self.log.error("journal_read_failed", error=str(exc))
        self._reject(sock, rid, "busy", user_id, port, client_id=client_id,
                     detail=f"the journal could not be read now ({exc.strerror or exc}): "
                            f"ask again later")

    def _journal_damaged(self, sock: zmq.Socket, rid: bytes, user_id: str, port: str,
                         exc: Exception, client_id: str = "", detail: str = "") -> None:
        """Answer a request whose journal entries cannot be read back (damage
        in a closed segment that start-up does not read, an entry missing):
        `journal_damaged`, charged as a journal read; log it as critical once
        per damaged segment. The server goes on serving."""
        self.read_back = None                  # the cursor's reader died with the error
        self.catch_up_left -= COST_JOURNAL_START
        where = exc.segment if isinstance(exc, JournalCorrupt) else ""
        if where not in self.damage_logged:
            self.damage_logged.add(where)
            self.log.critical("journal_damaged", error=str(exc),
                              action="restore the journal from a backup; the exchange goes "
                                     "on, refusing what needs the damaged entries")
        self._reject(sock, rid, "journal_damaged", user_id, port, client_id=client_id,
                     detail=detail or f"the journal entries this needs are damaged on the "
                                      f"server ({exc}); nothing was done: ask the exchange's "
                                      f"operator")

    def _replay(self, sock: zmq.Socket, rid: bytes, user_id: str, req: p.ReplayRequest) -> None:
        """Answer with the Market messages in [from_seq, to_seq]: from the ring
        in memory, or from the journal when older; fewer (``more``) once the
        turn's catch-up budget is spent. O(messages + entries read)."""
        if req.from_seq < 1 or req.to_seq < 0 or not 1 <= req.limit <= 10000 \
                or (req.to_seq and req.to_seq < req.from_seq):
            self._reject(sock, rid, "bad_request", user_id, "data",
                         detail="from_seq >= 1, to_seq 0 or >= from_seq, 1 <= limit <= 10000")
            return
        published = self.durable_seq if not self.pub_pending else self.pub_pending[0][0] - 1
        upto = min(req.to_seq or published, published)
        budget = self.config.max_message_bytes * 16
        messages: list[msgspec.Raw] = []
        size = 0
        through = req.from_seq - 1
        ring = self.ring
        kept = ring.first_kept() or published + 1
        left = self.catch_up_left
        if req.from_seq < kept and req.from_seq <= upto:   # older than the ring: the journal
            # every entry read is charged, those before from_seq too (from the
            # mark the reading starts at: at most ENTRY_MARK_EVERY - 1 of them)
            start, _ = ring.read_start(req.from_seq)
            left -= COST_JOURNAL_START + COST_JOURNAL * (req.from_seq - start)
        full = left <= 0
        if full:                                        # nothing read, nothing spent
            left = self.catch_up_left
        elif req.from_seq < kept:
            for seq, data in ring.from_journal(self.journal, req.from_seq, min(upto, kept - 1)):
                if data is not None:
                    if len(messages) >= req.limit or size >= budget:
                        full = True
                        break
                    messages.append(msgspec.Raw(data))
                    size += len(data)
                through = seq
                left -= COST_JOURNAL
                if left <= 0:                           # the rest in the next request
                    full = True
                    break
            if not full and upto >= kept:
                through = kept - 1
        if not full and upto >= kept:
            seqs, msgs = ring.seqs, ring.msgs
            i = ring.position(req.from_seq)
            while i < len(seqs) and seqs[i] <= upto:
                if len(messages) >= req.limit or size >= budget or left <= 0:
                    full = True
                    break
                data = msgs[i]
                messages.append(msgspec.Raw(data))
                size += len(data)
                through = seqs[i]
                left -= COST_RING
                i += 1
        self.catch_up_left = left
        if not full:
            through = max(upto, through)
        self._send(sock, rid, p.encode(p.ReplayOut(messages=messages, through=through,
                                                  more=through < upto)), time.monotonic_ns())

    def _log_monitor(self, monitor: zmq.Socket, end_sessions: bool = True) -> None:
        port = self.monitors[monitor]
        while True:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            event = parse_monitor_message(frames)
            kind, fd = event["event"], int(event["value"])
            if kind == ACCEPTED and end_sessions:
                live = self.connections[port]
                if len(live) >= self.max_connections:
                    self._refuse_connection(port, fd)
                    continue
                live.add(fd)
                if port == "feed":
                    self.feed_peers[fd] = FeedPeer(fd, self.feed_bytes)
            elif kind == DISCONNECTED:
                self.connections[port].discard(fd)
                if port == "feed":
                    self.feed_peers.pop(fd, None)
            self._connection_line(self.log.info, "connection", port,
                                  what=zmq.Event(event["event"]).name.lower(), fd=event["value"],
                                  endpoint=event["endpoint"].decode(errors="replace"))
            if kind == DISCONNECTED and end_sessions:
                # the session ends with its connection, at once: its routing id
                # may come back with another peer, which must get none of its
                # messages (and cancel-on-disconnect need not wait for heartbeats)
                conn = self.by_fd.get((port, fd))
                if port == "data":
                    self._forget_data_peer(conn)
                elif conn is not None:
                    self._end_session(port, conn.rid, "disconnected")

    def _check_feed(self) -> None:
        """Hang up every feed subscriber with more than `max_queued_bytes`
        published since its counting began and not acknowledged by its TCP
        peer, while its kernel still holds some unacknowledged (one that
        does not read: ZeroMQ would queue it up to `feed_hwm` messages, and a
        thousand such peers, gigabytes). It reconnects by itself and
        recovers as after any gap. A peer whose kernel holds nothing
        unacknowledged has everything on its way: counting starts anew (a
        subscriber to less than everything is sent less than counted). Runs
        once each quarter of `max_queued_bytes` published; O(subscribers)
        system calls."""
        cap = self.config.max_queued_bytes
        sent = self.feed_bytes
        self.feed_check_at = sent + max(cap // 4, 1 << 16)
        feed_port = self.bound_ports["feed"]
        for fd, peer in list(self.feed_peers.items()):
            if peer.zero is None:
                continue
            acked = tcp.bytes_acked(fd)
            if acked is None or acked < peer.zero:     # not its connection any more
                peer.base, peer.zero = sent, acked
                continue
            if (sent - peer.base) - (acked - peer.zero) <= cap:
                continue
            if tcp.unacked(fd) == 0:
                peer.base, peer.zero = sent, acked
                continue
            if tcp.local_port(fd) != feed_port or not tcp.hang_up(fd):
                continue
            del self.feed_peers[fd]
            self.feed_hung_up += 1
            self._connection_line(self.log.warning, "slow_subscriber_hung_up", "feed", fd=fd,
                                  behind_bytes=(sent - peer.base) - (acked - peer.zero),
                                  max_queued_bytes=cap, hung_up=self.feed_hung_up)

    def _refuse_connection(self, port: str, fd: int) -> None:
        """A connection beyond ``port``'s `max_connections`: hang it up (ZeroMQ
        then closes its descriptor; a client that reconnects is hung up again
        while the port is full). Only a TCP socket of that port's own is."""
        if tcp.local_port(fd) != self.bound_ports[port] or not tcp.hang_up(fd):
            return
        self.connections_refused[port] += 1
        self._connection_line(self.log.warning, "connection_refused", port, fd=fd,
                              max_connections=self.max_connections,
                              refused=self.connections_refused[port])

    def _connection_line(self, write: Any, event: str, port: str, **fields: Any) -> None:
        """Log a line about ``port``'s connections, at most so many a window
        (`connection_lines`); the ones left out are counted in one line."""
        allowed, unwritten = self.connection_lines.allow(port, time.monotonic_ns())
        if unwritten:
            self.log.warning("connections_unlogged", port=port, count=unwritten)
        if allowed:
            write(event, port=port, **fields)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> None:
        """Make everything durable, send what waits, snapshot, then close the
        sockets (linger 0) and the journal."""
        try:
            if self.failed is None and getattr(self, "journal", None) is not None:
                try:
                    self._commit()
                    self._flush()
                    self._maybe_snapshot(force=True)
                except Exception as exc:  # noqa: BLE001  (shutting down: log and go on)
                    self.close_error = exc
                    self.log.error("close_failed", error=str(exc))
        finally:
            if self.context is not None:
                # libzmq sends each monitor event with a blocking send, holding
                # a lock that disable_monitor needs: stop the monitors while
                # their readers are open and drained, then close the readers
                # (the other order deadlocked when an event came in between).
                for monitor in self.monitors:   # no session ends: nothing is journaled now
                    self._log_monitor(monitor, end_sessions=False)
                for name, sock in self.sockets.items():
                    if name in self.monitor_of:
                        sock.disable_monitor()
                for monitor in self.monitors:
                    monitor.close(linger=0)
                for sock in self.sockets.values():
                    sock.close(linger=0)
                self.zap.stop()
                self.zap.join(timeout=2)
                self.context.term()
                self.context = None
            if getattr(self, "journal", None) is not None:
                self.journal.close()
            self.log.info("stopped", last_seq=getattr(self, "durable_seq", 0))


def cpu_plan(engine_cpu: int) -> tuple[int, set[int]] | None:
    """Return the engine thread's CPU and the CPUs left for the server's
    other threads (ZeroMQ's I/O and reaper, ZAP, the snapshot child), or None
    for -1 (not pinned). Raise ValueError if the CPU is not one this process
    may use or would leave it no other (Linux only)."""
    if engine_cpu == -1:
        return None
    if not hasattr(os, "sched_setaffinity"):
        raise ValueError("engine_cpu needs Linux (sched_setaffinity); set it to -1")
    allowed = os.sched_getaffinity(0)
    if engine_cpu not in allowed:
        raise ValueError(f"engine_cpu {engine_cpu} is not among the CPUs this process may "
                         f"use: {', '.join(map(str, sorted(allowed)))}")
    others = allowed - {engine_cpu}
    if not others:
        raise ValueError(f"engine_cpu {engine_cpu} is the only CPU this process may use: "
                         f"nothing would be left for the other threads; set it to -1")
    return engine_cpu, others


def serve_in_thread(data_dir: str | os.PathLike, config: Config | None = None
                    ) -> tuple[Server, threading.Thread]:
    """Start a server and run it in a daemon thread (tests, demo); return both.
    Stop it with `stop_thread`."""
    server = Server(data_dir, config)
    server.start()
    return server, run_in_thread(server)


def run_in_thread(server: Server) -> threading.Thread:
    """Run a started server's loop in a daemon thread, again after a `stop`
    too (tests); return the thread. Stop it with `stop_thread`."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # noqa: BLE001  (reported by stop_thread)
            errors.append(exc)

    server._stop.clear()
    thread = threading.Thread(target=run, name="lotex-engine", daemon=True)
    thread.errors = errors  # type: ignore[attr-defined]
    thread.start()
    return thread


def stop_thread(server: Server, thread: threading.Thread) -> None:
    """Stop a server started by `serve_in_thread` and close it."""
    server.stop()
    thread.join(timeout=10)
    server.close()
    errors = getattr(thread, "errors", [])
    if errors:
        raise errors[0]
    if server.close_error is not None:        # e.g. a snapshot that cannot be written
        raise server.close_error
