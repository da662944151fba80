"""The client library: brokers and operators over the gateway, and the
market-data feed with snapshot and gap recovery. Synchronous (`Client`,
`FeedClient`) and asyncio (`AsyncClient`, `AsyncFeedClient`).

    from gateway.client import Client
    with Client.from_data_dir("lotex-data", "b1") as c:
        result = c.request(RegisterParty(name="Acme Research"))
        print(result.accepted, result.events)

Every command goes out as a `Request` with a client id (automatic, unique per
user and day, or your own); the client keeps every request without a result
and resends it, with the same id, whenever it logs on again or waits too
long, so a command acts once however often it travels. Results come back
as `protocol.Result` (``accepted``, ``code``, ``text``, ``events``).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import functools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, TypeVar

import msgspec
import zmq
import zmq.asyncio

from gateway import protocol as p
from gateway.keys import ClientKey

CLIENT_MAX_MESSAGE = 64 << 20


class ClientError(Exception):
    """The gateway refused a message or could not be reached in time."""


def encode_request(cid: str, cmd: Any) -> bytes:
    """Encode a `Request`; a command msgpack cannot carry (an integer beyond
    64 bits, a value of no wire type) is a `ClientError`, sent nowhere."""
    try:
        return p.encode(p.Request(client_id=cid, cmd=cmd))
    except (OverflowError, TypeError, ValueError, msgspec.EncodeError) as exc:
        raise ClientError(f"cannot send {type(cmd).__name__}: {exc}") from None


CURVE_OVERHEAD = 33
"""Bytes CURVE adds to each message on the wire (its MESSAGE command, nonce
and MAC): the server's ``max_message_bytes`` counts them."""


class MessageTooLarge(ClientError, ValueError):
    """A message larger than the server takes (``max_message_bytes`` of its
    `LogonAccepted`, CURVE's bytes included), sent nowhere: the server would
    drop the connection. ``code`` "message_too_large", ``size`` and ``limit``
    in bytes."""

    code = "message_too_large"

    def __init__(self, what: str, size: int, limit: int, advice: str) -> None:
        super().__init__(f"{what} is {size:,} bytes (encrypted); the server takes at most "
                         f"{limit:,} in one message (its max_message_bytes): not sent "
                         f"({advice}; the exchange's operator can raise max_message_bytes in "
                         f"the server's config.toml, read when lotex serve starts)")
        self.size = size
        self.limit = limit


class SessionRejectedError(ClientError):
    """A `SessionRejected` answer: ``code`` (see protocol.SESSION_REJECTS) and ``text``."""

    def __init__(self, code: str, text: str, client_id: str = "") -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text
        self.client_id = client_id


class ResultTimeout(ClientError):
    """No result for ``client_id`` in time. The command stays pending: the
    client resends it under the same id while it runs, and the exchange acts
    on it at most once, so wait again or resend it with the same id (a new id
    could make it act twice)."""

    def __init__(self, client_id: str) -> None:
        super().__init__(f"no result for client id {client_id!r} in time; it stays pending "
                         f"(resent under the same id): wait again, or resend it with the same "
                         f"id, never a new one")
        self.client_id = client_id


class BatchRejected(SessionRejectedError):
    """Some requests of a batch were refused at session level: ``code``,
    ``text`` and ``client_id`` are the first refusal's; ``results`` holds, in
    order, each request's `Result` or its `SessionRejectedError`."""

    def __init__(self, results: list[Any]) -> None:
        refused = [r for r in results if isinstance(r, SessionRejectedError)]
        first = refused[0]
        super().__init__(first.code, f"{first.text} ({len(refused)} of {len(results)} "
                                     f"requests refused)", first.client_id)
        self.results = results


def _batch_outcome(results: list[Any]) -> list[p.Result]:
    """Return the results, or raise `BatchRejected` if any request was refused."""
    if any(isinstance(r, SessionRejectedError) for r in results):
        raise BatchRejected(results)
    return results


class BusinessReject(ClientError):
    """The engine refused the command (raised by `ok`): its reason code and sentence."""

    def __init__(self, result: p.Result) -> None:
        super().__init__(f"{result.code}: {result.text}")
        self.result = result
        self.code = result.code
        self.text = result.text


@dataclass
class Endpoints:
    broker: str
    operator: str
    feed: str
    data: str
    server_public_key: str = ""

    @classmethod
    def load(cls, data_dir: str | os.PathLike) -> "Endpoints":
        """Read ``endpoints.json`` that `lotex serve` writes in its data directory."""
        raw = json.loads((Path(data_dir) / "endpoints.json").read_text())
        return cls(broker=raw["broker"], operator=raw["operator"], feed=raw["feed"],
                   data=raw["data"], server_public_key=raw.get("server_public_key", ""))


def server_gone(data_dir: str | os.PathLike) -> str | None:
    """Say why no local server can answer for ``data_dir`` (its
    ``endpoints.json`` names a process on this machine that no longer
    runs), or None if one may."""
    try:
        raw = json.loads((Path(data_dir) / "endpoints.json").read_text())
        pid, broker = int(raw["pid"]), str(raw["broker"])
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if not broker.startswith(("tcp://127.0.0.1:", "tcp://localhost:")):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"no lotex serve is running for {data_dir} (its process {pid} has ended)"
    except OSError:
        pass                           # alive, another user's
    return None


class ClientIds:
    """Automatic client ids: ``YYYYMMDD-<random>-<n>``, unique per user and day."""

    def __init__(self, prefix: str | None = None) -> None:
        day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
        self.prefix = prefix or f"{day}-{secrets.token_hex(4)}"
        self.counter = 0

    def next(self) -> str:
        self.counter += 1
        return f"{self.prefix}-{self.counter}"


class ClientSetupError(ValueError):
    """The client cannot start: its key is no CURVE key pair, or ZeroMQ cannot
    use the endpoint. Nothing was sent; the socket is closed."""


CURVE_KEYS = ((zmq.CURVE_SERVERKEY, "server_public_key"), (zmq.CURVE_PUBLICKEY, "public_key"),
              (zmq.CURVE_SECRETKEY, "secret_key"))


def _connect(sock: zmq.Socket, endpoint: str) -> None:
    """Connect ``sock`` to ``endpoint``; `ClientSetupError` if ZeroMQ cannot
    use it (the caller closes the socket)."""
    try:
        sock.connect(endpoint)
    except (zmq.ZMQError, TypeError, UnicodeError) as exc:
        raise ClientSetupError(f"cannot connect to the endpoint {endpoint!r}: {exc} "
                               f"(an endpoint looks like tcp://127.0.0.1:5555)") from None


def _curve_socket(context: zmq.Context, kind: int, key: ClientKey, endpoint: str
                  ) -> zmq.Socket:
    """Return a socket with ``key``'s CURVE keys, connected to ``endpoint``.
    A key that is no CURVE key or an endpoint ZeroMQ cannot use is a
    `ClientSetupError`, and the socket is closed (a socket left open would
    make the context's term() wait for ever)."""
    sock = context.socket(kind)
    try:
        sock.linger = 0
        for option, field in CURVE_KEYS:
            try:
                sock.setsockopt(option, getattr(key, field).encode())
            except (AttributeError, UnicodeError, zmq.ZMQError):
                raise ClientSetupError(
                    f"the {field} of the key of user {key.user!r} is not a CURVE key "
                    f"(40 Z85 characters)") from None
        sock.maxmsgsize = CLIENT_MAX_MESSAGE
        sock.sndhwm = 100000
        sock.rcvhwm = 100000
        _connect(sock, endpoint)
    except BaseException:
        sock.close(linger=0)
        raise
    return sock


def _port_of(key: ClientKey) -> str:
    if key.role not in ("broker", "operator"):
        raise ClientError(f"a {key.role} key cannot send commands; use FeedClient")
    return key.role


RECAP_REFUSALS = ("bad_request", "busy", "journal_damaged")
"""The refusals (of no client id) that can answer a `Recap`; `RELOAD_REFUSALS`
those of a `Reload`. Others of no client id (a Request or Batch the server
could not read) are about another message."""
RELOAD_REFUSALS = ("not_permitted",)

REQUEST_TOO_LARGE = "a command goes whole in one message, a lot with all its patents"

MAX_UNCLAIMED = 100_000
"""Results kept for requests nobody has asked the result of yet (`send` and
forget): beyond this many the oldest are dropped."""

MAX_UNCLAIMED_NOTICES = 100_000
"""Notices kept for a program that has not taken them (`Client.notices`):
beyond this many the oldest are dropped and counted in
``session.notices_dropped`` (a `Client.recap` from the first one not taken
gets them back from the journal)."""


class _Session:
    """What both clients share: pending requests, results, notices, timers.
    Pure bookkeeping; the drivers do the I/O."""

    def __init__(self, key: ClientKey, heartbeat_ms: int, cancel_on_disconnect: bool | None,
                 notices: bool, ids: ClientIds | None) -> None:
        self.key = key
        self.heartbeat_ms = heartbeat_ms
        self.cod = cancel_on_disconnect
        self.want_notices = notices
        self.ids = ids or ClientIds()
        # cid -> (command, last sent), in the order last sent (`sent` keeps it)
        self.pending: dict[str, tuple[Any, float]] = {}
        # cid -> copies sent since the last logon and not answered yet: a
        # refusal of one copy is not the answer while another may still act
        self.copies: dict[str, int] = {}
        self.results: dict[str, p.Result] = {}
        self.errors: dict[str, SessionRejectedError] = {}
        # client ids whose result or refusal came in, for a driver that
        # resolves each waiter as its answer comes (None: not kept)
        self.answered: list[str] | None = None
        self.notices: deque[p.Notice] = deque()
        self.notices_dropped = 0
        self.logged_on: p.LogonAccepted | None = None
        self.max_message_bytes = 0        # the last LogonAccepted's (0: none yet)
        self.logon_error: SessionRejectedError | None = None
        self.last_in = time.monotonic()
        self.last_out = 0.0
        self.kept_alive = time.monotonic()   # when heartbeats and resends were last seen to
        self.logged_out: str | None = None
        self.fatal: SessionRejectedError | None = None
        self.reloaded: int | None = None
        self.recap_done: p.RecapDone | None = None
        self.status: p.Status | None = None
        self.logons = 0                   # LogonAccepted received (1 + times logged on again)
        self.logon_sent = 0.0             # when the Logon now awaiting its answer went out
        # messages from the server this client cannot read (a newer server's
        # message or event type): skipped, counted, the last one's error kept
        self.undecodable = 0
        self.undecodable_error = ""

    def logon_message(self) -> bytes:
        """Return a Logon and note that one is on its way."""
        self.logon_sent = time.monotonic()
        return p.encode(p.Logon(heartbeat_ms=self.heartbeat_ms,
                                cancel_on_disconnect=self.cod, notices=self.want_notices))

    def logon_awaited(self) -> bool:
        """Tell whether a Logon went out less than three heartbeats ago and
        has no answer yet: one is enough, however many requests are refused
        ``not_logged_on`` meanwhile."""
        return bool(self.logon_sent) and \
            time.monotonic() - self.logon_sent < 3 * self.heartbeat_ms / 1000

    def sent(self, cid: str, cmd: Any, now: float) -> None:
        """Note that ``cid`` went out (again) at ``now``: it moves to the end of
        `pending`, which stays in the order last sent."""
        pending = self.pending
        pending.pop(cid, None)
        pending[cid] = (cmd, now)
        self.copies[cid] = self.copies.get(cid, 0) + 1

    def copy_answered(self, cid: str) -> int:
        """Note that a copy of ``cid`` was answered; return how many are still out."""
        left = self.copies.pop(cid, 0) - 1
        if left > 0:
            self.copies[cid] = left
        return max(left, 0)

    def resendable(self, now: float, resend_after: float) -> list[str]:
        """Return the pending client ids due for a resend: none while logged
        off (they all go again once the Logon is accepted). `pending` is in
        the order last sent, so this walks the due ones and one more."""
        if self.logged_on is None:
            return []
        due = []
        for cid, (_, sent) in self.pending.items():
            if now - sent < resend_after:
                break
            due.append(cid)
        return due

    def batch_message(self, cmds: list[Any], client_ids: list[str] | None
                      ) -> tuple[list[str], bytes]:
        """Register ``cmds`` as pending; return their client ids and one Batch."""
        if not 1 <= len(cmds) <= p.MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {p.MAX_BATCH} commands, not {len(cmds)}")
        ids = list(client_ids) if client_ids is not None else [self.ids.next() for _ in cmds]
        if len(ids) != len(cmds):
            raise ValueError("one client id per command")
        try:
            data = p.encode(p.Batch(requests=[p.Request(client_id=cid, cmd=cmd)
                                              for cid, cmd in zip(ids, cmds)]))
        except (OverflowError, TypeError, ValueError, msgspec.EncodeError) as exc:
            raise ClientError(f"cannot send this batch: {exc}") from None
        self.check_size(data, "the batch", "send fewer commands at a time")
        now = time.monotonic()
        for cid, cmd in zip(ids, cmds):
            self.sent(cid, cmd, now)
        return ids, data

    def check_size(self, data: bytes, what: str, advice: str) -> None:
        """Raise `MessageTooLarge` if ``data`` is more than the server takes in
        one message."""
        limit = self.max_message_bytes
        if limit and len(data) + CURVE_OVERHEAD > limit:
            raise MessageTooLarge(what, len(data) + CURVE_OVERHEAD, limit, advice)

    def handle(self, data: bytes) -> str:
        """Absorb one server message; return what the driver must do:
        "" nothing, "relogon" (log on again and resend everything pending).
        One this client cannot decode is counted (`undecodable`) and skipped."""
        self.last_in = time.monotonic()
        try:
            msg = p.server_decoder.decode(data)
        except msgspec.DecodeError as exc:     # skipped: the session goes on (an answer
            self.undecodable += 1              # in it stays pending and is resent)
            self.undecodable_error = f"{exc} ({len(data)} bytes)"
            return ""
        if type(msg) is p.Results:        # each answer as if it came alone
            for answer in msg.results:
                self._absorb(answer)
            return ""
        return self._absorb(msg)

    def _absorb(self, msg: Any) -> str:
        kind = type(msg)
        if kind is p.Result:
            self.copy_answered(msg.client_id)
            if msg.client_id in self.pending:      # later copies (resends) are dropped
                del self.pending[msg.client_id]
                results = self.results
                results[msg.client_id] = msg
                if len(results) > MAX_UNCLAIMED:   # sent and never asked for: oldest first
                    del results[next(iter(results))]
                if self.answered is not None:
                    self.answered.append(msg.client_id)
        elif kind is p.Notice:
            notices = self.notices
            if len(notices) >= MAX_UNCLAIMED_NOTICES:   # never taken: oldest first
                notices.popleft()
                self.notices_dropped += 1
            notices.append(msg)
        elif kind is p.LogonAccepted:
            self.copies.clear()           # copies sent before it: lost or refused; resent now
            self.logged_on = msg
            self.max_message_bytes = msg.max_message_bytes
            self.logged_out = None
            self.logons += 1
            self.logon_sent = 0.0
            return "resend"
        elif kind is p.SessionRejected:
            error = SessionRejectedError(msg.code, msg.text, msg.client_id)
            if msg.code == "revoked":
                self.fatal = error
                self.logged_on = None
                return ""
            if msg.code == "not_logged_on":
                self.logged_on = None
                return "" if self.logon_awaited() else "relogon"
            cid = msg.client_id
            if cid in self.copies or cid in self.results:
                # a copy's refusal says nothing was done by that copy: another
                # copy's Result (come, or on its way) says what the command did
                if self.copy_answered(cid) or cid not in self.pending:
                    return ""
            if msg.code == "busy" and cid in self.pending:
                return ""          # still pending: resent after resend_after, same id
            if msg.client_id:
                self.pending.pop(msg.client_id, None)
                self.errors[msg.client_id] = error
                if self.answered is not None:
                    self.answered.append(msg.client_id)
            elif self.logged_on is None:
                self.logon_error = error
            else:
                self.errors[""] = error
        elif kind is p.Reloaded:
            self.reloaded = msg.users
        elif kind is p.RecapDone:
            self.recap_done = msg
        elif kind is p.Status:
            self.status = msg
        elif kind is p.LoggedOut:
            self.logged_on = None
            self.logged_out = msg.reason
            if msg.reason not in ("logout", "not logged on", "revoked"):
                return "relogon"
        return ""

    def take(self, cid: str) -> p.Result | None:
        """Return the result of ``cid`` if it came, else raise its refusal if
        one came: a result wins over a refusal of another copy."""
        if self.fatal is not None:
            raise self.fatal
        found = self.results.pop(cid, None)
        error = self.errors.pop(cid, None)
        if found is None and error is not None:
            raise error
        return found


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Run ``method`` holding the client's lock (the socket has one user at a time)."""
    @functools.wraps(method)
    def run(self: "Client", *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)
    return run  # type: ignore[return-value]


class Client:
    """A synchronous broker or operator client on one DEALER socket.

    A keeper thread keeps the session alive while the program does other
    things: every half heartbeat interval, if no call is using the socket, it
    takes what arrived (results, notices) and sends a Heartbeat when one is
    due, so an idle client is not logged out (and its cancel-on-disconnect
    does not fire). ``keepalive=False`` leaves heartbeats to the calls: then
    a client idle for three intervals is logged out by the server and logs
    on again at its next call, resending what was pending. Calls from
    several threads are serialised by a lock. Notices (``notices=True``) are
    kept until `notices` takes them, at most `MAX_UNCLAIMED_NOTICES` (then
    the oldest go, counted in ``session.notices_dropped``): a program that
    never takes them passes ``notices=False``."""

    def __init__(self, key: ClientKey | str | os.PathLike, endpoint: str, *,
                 heartbeat_ms: int = 1000, cancel_on_disconnect: bool | None = None,
                 notices: bool = True, timeout: float = 10.0, resend_after: float = 2.0,
                 ids: ClientIds | None = None, context: zmq.Context | None = None,
                 keepalive: bool = True) -> None:
        self.key = key if isinstance(key, ClientKey) else ClientKey.load(key)
        self.port = _port_of(self.key)
        self.endpoint = endpoint
        self.timeout = timeout
        self.resend_after = resend_after
        self.session = _Session(self.key, heartbeat_ms, cancel_on_disconnect, notices, ids)
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket: zmq.Socket | None = None
        self._lock = threading.RLock()
        self._keepalive = keepalive
        self._stopping = threading.Event()
        self._keeper: threading.Thread | None = None
        self._status_calls = 0

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike, user: str, **kw: Any) -> "Client":
        """Connect as ``user`` with ``<data>/clients/<user>.json`` and ``endpoints.json``."""
        key = ClientKey.load(Path(data_dir) / "clients" / f"{user}.json")
        endpoints = Endpoints.load(data_dir)
        gone = server_gone(data_dir)
        if gone:
            raise ClientError(gone)
        client = cls(key, getattr(endpoints, _port_of(key)), **kw)
        client.connect()
        return client

    # -- connection ---------------------------------------------------------------

    @_locked
    def connect(self) -> p.LogonAccepted:
        """Open a socket and log on; return the server's LogonAccepted. A
        socket whose logon failed is replaced: ZeroMQ does not reconnect after
        the server refused the key, so a new attempt needs a new socket."""
        if self.socket is not None and self.session.logged_on is None:
            self.socket.close(linger=0)
            self.socket = None
        if self.socket is None:
            self.socket = _curve_socket(self.context, zmq.DEALER, self.key, self.endpoint)
        accepted = self.logon()
        if self._keepalive and self._keeper is None:
            self._stopping = threading.Event()     # its own: an earlier one stays stopped
            self._keeper = threading.Thread(target=self._keep, args=(self._stopping,),
                                            name="lotex-client-keeper", daemon=True)
            self._keeper.start()
        return accepted

    def _keep(self, stopping: threading.Event) -> None:
        """The keeper thread: pump the socket when no call is using it, until
        ``stopping`` is set."""
        interval = self.session.heartbeat_ms / 2000
        while not stopping.wait(interval):
            if not self._lock.acquire(blocking=False):
                continue                   # a call is pumping the socket itself
            try:
                while self.socket is not None and self._pump(time.monotonic(), once=True):
                    pass
            finally:
                self._lock.release()

    def _stop_keeper(self) -> None:
        self._stopping.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join()
        self._keeper = None

    @_locked
    def logon(self) -> p.LogonAccepted:
        session = self.session
        session.logged_on = None
        session.logon_error = None
        self._send(session.logon_message())
        deadline = time.monotonic() + self.timeout
        while session.logged_on is None:
            if session.fatal is not None:
                raise session.fatal
            if session.logon_error is not None:
                raise session.logon_error
            if not self._pump(deadline):
                raise ClientError(f"no answer to Logon from {self.endpoint} in {self.timeout} s "
                                  f"(is the server running, and does it know this key?)")
        return session.logged_on

    def drop(self) -> None:
        """Close the socket without a Logout, as a crashed program would (the
        server ends the session; cancel-on-disconnect applies)."""
        self._stop_keeper()
        with self._lock:
            if self.socket is not None:
                self.socket.close(linger=0)
                self.socket = None

    def close(self) -> None:
        """Log out (best effort) and close the socket."""
        self._stop_keeper()            # it never waits for the lock: no deadlock here
        with self._lock:
            if self.socket is not None:
                try:
                    if self.session.logged_on is not None:
                        self.socket.send(p.encode(p.Logout()), zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
                self.socket.close(linger=0)
                self.socket = None
            if self._own_context and not self.context.closed:
                self.context.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands -----------------------------------------------------------------

    @_locked
    def send(self, cmd: Any, client_id: str | None = None) -> str:
        """Send a command without waiting; return its client id. One larger
        than the server takes in a message is `MessageTooLarge`, not sent."""
        cid = client_id or self.session.ids.next()
        data = encode_request(cid, cmd)          # before it is pending: never resent if not
        self.session.check_size(data, f"{type(cmd).__name__} {cid!r}", REQUEST_TOO_LARGE)
        self.session.sent(cid, cmd, time.monotonic())
        self._send(data)
        return cid

    @_locked
    def result(self, cid: str, timeout: float | None = None) -> p.Result:
        """Wait for the result of ``cid``, resending it while it is pending."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            found = self.session.take(cid)
            if found is not None:
                return found
            if not self._pump(deadline):
                raise ResultTimeout(cid)

    def request(self, cmd: Any, client_id: str | None = None,
                timeout: float | None = None) -> p.Result:
        """Send a command and wait for its result (accepted or business reject)."""
        return self.result(self.send(cmd, client_id), timeout)

    @_locked
    def send_batch(self, cmds: list[Any], client_ids: list[str] | None = None) -> list[str]:
        """Send up to 1000 commands in one `Batch` without waiting; return their
        client ids (each is resent alone while pending)."""
        ids, data = self.session.batch_message(cmds, client_ids)
        self._send(data)
        return ids

    def request_batch(self, cmds: list[Any], client_ids: list[str] | None = None,
                      timeout: float | None = None) -> list[p.Result]:
        """Send a `Batch` and wait for every result, in order; raise
        `BatchRejected` (holding every outcome) if any was refused at session
        level."""
        results: list[Any] = []
        for cid in self.send_batch(cmds, client_ids):
            try:
                results.append(self.result(cid, timeout))
            except SessionRejectedError as refused:
                if refused.client_id != cid:       # revoked, or not about this request
                    raise
                results.append(refused)
        return _batch_outcome(results)

    def ok(self, cmd: Any, client_id: str | None = None, timeout: float | None = None
           ) -> p.Result:
        """Like `request`, but raise `BusinessReject` if the engine refused it."""
        found = self.request(cmd, client_id, timeout)
        if not found.accepted:
            raise BusinessReject(found)
        return found

    @_locked
    def reload_keys(self) -> int:
        """Make the server reload its key store now (operators); return the
        number of active users. Asked again if the client logs on again
        meanwhile (a Reload that reached the server before the Logon was
        refused)."""
        session = self.session
        session.reloaded = None
        session.errors.pop("", None)       # an earlier refusal, of another message
        asked = p.encode(p.Reload())
        self._send(asked)
        logons = session.logons
        deadline = time.monotonic() + self.timeout
        while session.reloaded is None:
            self._raise_refusal(RELOAD_REFUSALS)
            if session.logons != logons and session.logged_on is not None:
                logons = session.logons               # logged on again: ask again
                self._send(asked)
            if not self._pump(deadline):
                raise ClientError("no answer to Reload in time")
        return session.reloaded

    def _raise_refusal(self, codes: tuple[str, ...]) -> None:
        """Raise the session's fatal error, or a refusal of no client id
        whose code could answer the message awaited (``codes``); a refusal
        of another code is about another message and stays."""
        session = self.session
        if session.fatal is not None:
            raise session.fatal
        error = session.errors.get("")
        if error is not None and error.code in codes:
            del session.errors[""]
            raise error

    @_locked
    def status(self, session: str = "", broker: str = "") -> p.Status:
        """Return a broker's resting orders, live bids, units and credit now (brokers:
        their own; operators name the broker), in ``session`` or all. Each call
        has its own ``ref``: a late answer or refusal of an earlier one is not
        taken for its own; `busy` is asked again until the timeout."""
        state = self.session
        self._status_calls += 1
        ref = f"status-{os.getpid()}-{id(self):x}-{self._status_calls}"
        asked = p.encode(p.StatusRequest(session=session, broker=broker, ref=ref))
        state.status = None
        self._send(asked)
        logons = state.logons
        deadline = time.monotonic() + self.timeout
        while True:
            answer = state.status
            if answer is not None and answer.ref == ref:
                return answer                       # (a late answer to an earlier call: not it)
            error = state.errors.pop(ref, None)
            if error is not None and error.code == "busy":
                self._send(asked)                   # the server's turn was full: again
            elif error is not None:
                raise error
            if state.fatal is not None:
                raise state.fatal
            if state.logons != logons and state.logged_on is not None:
                logons = state.logons               # logged on again: ask again
                self._send(asked)
            if not self._pump(deadline):
                raise ClientError("no answer to StatusRequest in time")

    @_locked
    def recap(self, from_seq: int, limit: int = 1000) -> list[p.Notice]:
        """Return the private notices of every durable journal entry from
        ``from_seq`` on (after a disconnection), asking as often as needed,
        and again if the client logs on again meanwhile (a Recap that reached
        the server before the Logon was refused). Live notices received
        meanwhile are kept for `notices`; duplicates with them share their
        ``seq``. Each ``seq`` is returned once."""
        session = self.session
        out: list[p.Notice] = []
        seen: set[int] = set()      # seqs taken: a live copy read meanwhile stays for notices
        while True:
            session.recap_done = None
            session.errors.pop("", None)   # an earlier refusal, of another message
            before, dropped = len(session.notices), session.notices_dropped
            asked = p.encode(p.Recap(from_seq=from_seq, limit=limit))
            self._send(asked)
            logons = session.logons
            deadline = time.monotonic() + self.timeout
            while session.recap_done is None:
                self._raise_refusal(RECAP_REFUSALS)
                if session.logons != logons and session.logged_on is not None:
                    logons = session.logons           # logged on again: ask again
                    self._send(asked)
                if not self._pump(deadline):
                    raise ClientError("no answer to Recap in time")
            through = session.recap_done.through
            lost = session.notices_dropped - dropped
            if lost > before:           # some of this recap's own notices were dropped
                raise ClientError(f"{session.notices_dropped:,} notices were dropped unread "
                                  f"(more than {MAX_UNCLAIMED_NOTICES:,} kept): take them "
                                  f"with notices() and recap again")
            got = list(session.notices)[before - lost:]
            taken = []
            for n in got:
                if from_seq <= n.seq <= through and n.seq not in seen:
                    seen.add(n.seq)
                    taken.append(n)
            out.extend(taken)
            taken_ids = {id(n) for n in taken}        # O(1) a notice (was O(taken))
            keep = [n for n in session.notices if id(n) not in taken_ids]
            session.notices.clear()
            session.notices.extend(keep)
            if not session.recap_done.more:
                return out
            from_seq = session.recap_done.through + 1

    @_locked
    def notices(self) -> list[p.Notice]:
        """Return (and forget) the private notices received so far."""
        self.poll(0)
        out = list(self.session.notices)
        self.session.notices.clear()
        return out

    @_locked
    def poll(self, timeout: float = 0.0) -> None:
        """Handle what arrives within ``timeout`` seconds (and keep the session)."""
        deadline = time.monotonic() + timeout
        while self._pump(deadline, once=True):
            pass

    # -- I/O ------------------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Send without blocking; when the gateway is unreachable the message is
        dropped here and pending requests go again at the next resend."""
        assert self.socket is not None, "connect() first"
        try:
            self.socket.send(data, zmq.NOBLOCK)
        except zmq.Again:
            return
        self.session.last_out = time.monotonic()

    def _pump(self, deadline: float, once: bool = False) -> bool:
        """Receive one message (or time out at ``deadline``); keep heartbeats and
        resends going. Return False at the deadline."""
        session = self.session
        hb = session.heartbeat_ms / 1000
        while True:
            now = time.monotonic()
            if now >= deadline and not once:
                return False
            sock = self.socket
            assert sock is not None
            if sock.poll(max(0, int(min(deadline - now, hb) * 1000)), zmq.POLLIN):
                action = session.handle(sock.recv())
                if action == "relogon":
                    self._send(session.logon_message())
                elif action == "resend":
                    self._resend_all()
                # a stream of notices must not keep the session from its own
                # heartbeats and resends (the server ends a silent session)
                if time.monotonic() - session.kept_alive >= hb / 2:
                    self._keep_alive(hb)
                return True
            self._keep_alive(hb)
            if once or time.monotonic() >= deadline:
                return False

    def _keep_alive(self, hb: float) -> None:
        """Send a heartbeat if nothing went out for ``hb`` seconds; log on again
        (on a new socket if the handshake was refused) if nothing came in for
        three; else resend the requests due. O(requests due)."""
        session = self.session
        now = session.kept_alive = time.monotonic()
        if now - session.last_out >= hb:
            self._send(p.encode(p.Heartbeat()))
        if now - session.last_in > 3 * hb:
            session.last_in = now              # the server went quiet: log on again
            if session.logged_on is None and self.socket is not None:
                self.socket.close(linger=0)    # a refused handshake never reconnects
                self.socket = _curve_socket(self.context, zmq.DEALER, self.key, self.endpoint)
            session.logged_on = None
            self._send(session.logon_message())
        else:
            for cid in session.resendable(now, self.resend_after):
                self._resend(cid)

    def _resend(self, cid: str) -> None:
        cmd, _ = self.session.pending[cid]
        self.session.sent(cid, cmd, time.monotonic())
        self._send(p.encode(p.Request(client_id=cid, cmd=cmd)))

    def _resend_all(self) -> None:
        for cid in list(self.session.pending):
            self._resend(cid)


READER_YIELD_EVERY = 64      # messages an AsyncClient reads before it lets other tasks run


class AsyncClient:
    """An asyncio broker or operator client; a background task reads and keeps
    the session alive (heartbeats, logon again, resends)."""

    def __init__(self, key: ClientKey | str | os.PathLike, endpoint: str, *,
                 heartbeat_ms: int = 1000, cancel_on_disconnect: bool | None = None,
                 notices: bool = True, timeout: float = 10.0, resend_after: float = 2.0,
                 ids: ClientIds | None = None) -> None:
        self.key = key if isinstance(key, ClientKey) else ClientKey.load(key)
        self.port = _port_of(self.key)
        self.endpoint = endpoint
        self.timeout = timeout
        self.resend_after = resend_after
        self.session = _Session(self.key, heartbeat_ms, cancel_on_disconnect, notices, ids)
        self.session.answered = []          # each answer resolves its own future
        self.context = zmq.asyncio.Context()
        self.socket: zmq.asyncio.Socket | None = None
        self._waiters: dict[str, asyncio.Future] = {}
        self._logon_waiter: asyncio.Future | None = None
        self._tasks: list[asyncio.Task] = []
        self._notice_event = asyncio.Event()     # set when notices come, and at close
        self._closed = False

    @classmethod
    async def from_data_dir(cls, data_dir: str | os.PathLike, user: str, **kw: Any
                            ) -> "AsyncClient":
        key = ClientKey.load(Path(data_dir) / "clients" / f"{user}.json")
        endpoints = Endpoints.load(data_dir)
        gone = server_gone(data_dir)
        if gone:
            raise ClientError(gone)
        client = cls(key, getattr(endpoints, _port_of(key)), **kw)
        try:
            await client.connect()
        except BaseException:
            await client.close()
            raise
        return client

    async def connect(self) -> p.LogonAccepted:
        """Open a socket, start the reader and keeper tasks and log on. A new
        call after a failed logon starts over with a new socket (ZeroMQ does
        not reconnect a socket whose key the server refused)."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self._new_socket()
        self._tasks = [asyncio.create_task(self._reader()), asyncio.create_task(self._keeper())]
        return await self.logon()

    def _new_socket(self) -> None:
        """Replace the socket with a new one; if none can be made (a
        `ClientSetupError`, or a `zmq.ZMQError` such as too many open
        files), the old one stays."""
        fresh = _curve_socket(self.context, zmq.DEALER, self.key, self.endpoint)
        old, self.socket = self.socket, fresh  # type: ignore[assignment]
        if old is not None:
            old.close(linger=0)

    async def _renew(self) -> None:
        """Go on with a new socket (the keeper, when a logon went unanswered:
        a refused handshake never reconnects). The reader has ended before
        its socket is closed; if no new socket can be made now, the old one
        stays and the keeper tries again three heartbeats later."""
        reader = self._tasks[0]
        reader.cancel()
        await asyncio.wait([reader])
        try:
            self._new_socket()
        except (ClientSetupError, zmq.ZMQError):
            pass
        self._tasks[0] = asyncio.create_task(self._reader())

    async def logon(self) -> p.LogonAccepted:
        loop = asyncio.get_running_loop()
        self._logon_waiter = loop.create_future()
        self.session.logged_on = None
        await self._send(self.session.logon_message())
        try:
            return await asyncio.wait_for(self._logon_waiter, self.timeout)
        except asyncio.TimeoutError:
            raise ClientError(f"no answer to Logon from {self.endpoint} in {self.timeout} s "
                              f"(is the server running, and does it know this key?)") from None

    async def close(self) -> None:
        """Log out (best effort), close the socket, and fail every request
        still waiting with `ClientError`."""
        closed = ClientError("the client was closed")
        self._closed = True
        self._notice_event.set()             # ends `notices`
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(closed)
                future.exception()           # retrieved: no "never retrieved" warning
        self._waiters.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.socket is not None:
            try:
                if self.session.logged_on is not None:
                    await self.socket.send(p.encode(p.Logout()), zmq.NOBLOCK)
            except zmq.ZMQError:
                pass
            self.socket.close(linger=0)
            self.socket = None
        self.context.term()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, cmd: Any, client_id: str | None = None) -> asyncio.Future:
        """Send a command; return a future of its `Result`. One larger than
        the server takes in a message is `MessageTooLarge`, not sent."""
        cid = client_id or self.session.ids.next()
        data = encode_request(cid, cmd)          # before it is pending: never resent if not
        self.session.check_size(data, f"{type(cmd).__name__} {cid!r}", REQUEST_TOO_LARGE)
        future = self._waiters.get(cid)
        if future is None or future.done():     # (done: cancelled by its caller)
            future = self._waiters[cid] = asyncio.get_running_loop().create_future()
        self.session.sent(cid, cmd, time.monotonic())
        await self._send(data)
        self._settle((cid,))
        return future

    async def request(self, cmd: Any, client_id: str | None = None,
                      timeout: float | None = None) -> p.Result:
        """Send a command and wait for its result (accepted or business reject);
        `ResultTimeout` if none came in time (it stays pending)."""
        cid = client_id or self.session.ids.next()
        future = await self.send(cmd, cid)
        try:
            return await asyncio.wait_for(asyncio.shield(future),
                                          self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise ResultTimeout(cid) from None

    async def send_batch(self, cmds: list[Any], client_ids: list[str] | None = None
                         ) -> list[asyncio.Future]:
        """Send up to 1000 commands in one `Batch`; return a future of each `Result`."""
        return (await self._send_batch(cmds, client_ids))[1]

    async def _send_batch(self, cmds: list[Any], client_ids: list[str] | None
                          ) -> tuple[list[str], list[asyncio.Future]]:
        ids, data = self.session.batch_message(cmds, client_ids)
        loop = asyncio.get_running_loop()
        futures = []
        for cid in ids:
            future = self._waiters.get(cid)
            if future is None or future.done():
                future = self._waiters[cid] = loop.create_future()
            futures.append(future)
        await self._send(data)
        self._settle(ids)
        return ids, futures

    async def request_batch(self, cmds: list[Any], client_ids: list[str] | None = None,
                            timeout: float | None = None) -> list[p.Result]:
        """Send a `Batch` and wait for every result, in order; raise
        `BatchRejected` (holding every outcome) if any was refused at session
        level."""
        ids, futures = await self._send_batch(cmds, client_ids)
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(asyncio.shield(f) for f in futures), return_exceptions=True),
                self.timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            raise ResultTimeout(next(cid for cid, f in zip(ids, futures) if not f.done())) \
                from None
        for outcome in results:
            if isinstance(outcome, BaseException) and \
                    not isinstance(outcome, SessionRejectedError):
                raise outcome
        return _batch_outcome(list(results))

    async def ok(self, cmd: Any, client_id: str | None = None,
                 timeout: float | None = None) -> p.Result:
        found = await self.request(cmd, client_id, timeout)
        if not found.accepted:
            raise BusinessReject(found)
        return found

    async def notices(self) -> AsyncIterator[p.Notice]:
        """Yield private notices as they come; end once the client is closed,
        or raise the session's fatal error (revoked) after the last one."""
        while True:
            while self.session.notices:
                yield self.session.notices.popleft()
            if self.session.fatal is not None:
                raise self.session.fatal
            if self._closed:
                return
            self._notice_event.clear()
            await self._notice_event.wait()

    async def _send(self, data: bytes) -> None:
        if self.socket is None:
            raise ClientError("the client is closed")
        try:
            await self.socket.send(data, zmq.NOBLOCK)
        except zmq.Again:
            return
        self.session.last_out = time.monotonic()

    def _settle(self, cids: Iterable[str]) -> None:
        """Resolve the futures of ``cids`` whose result or refusal came in (and
        every future, with the error, once the session is revoked): O(1) for
        each client id, however many requests are in flight."""
        session = self.session
        waiters = self._waiters
        if session.fatal is not None:
            for future in waiters.values():
                if not future.done():
                    future.set_exception(session.fatal)
            waiters.clear()
            self._notice_event.set()         # `notices` raises it
            return
        errors, results = session.errors, session.results
        for cid in cids:
            future = waiters.get(cid)
            if future is None:
                continue                    # sent with no waiter: kept for a later send
            if future.done():               # cancelled by its caller
                del waiters[cid]
            elif cid in results:                # (a result wins over a refusal)
                future.set_result(results.pop(cid))
                errors.pop(cid, None)
                del waiters[cid]
            elif cid in errors:
                future.set_exception(errors.pop(cid))
                del waiters[cid]

    async def _reader(self) -> None:
        assert self.socket is not None
        session = self.session
        handled = 0
        while True:
            data = await self.socket.recv()
            handled += 1
            if not handled % READER_YIELD_EVERY:
                # a recv that finds a message queued returns without yielding:
                # while messages keep coming, let the keeper (heartbeats,
                # resends) and the application's tasks run now and then
                await asyncio.sleep(0)
            action = session.handle(data)
            if session.logged_on is not None and self._logon_waiter is not None \
                    and not self._logon_waiter.done():
                self._logon_waiter.set_result(session.logged_on)
            if session.logon_error is not None and self._logon_waiter is not None \
                    and not self._logon_waiter.done():
                self._logon_waiter.set_exception(session.logon_error)
                session.logon_error = None
            if action == "relogon":
                await self._send(session.logon_message())
            elif action == "resend":
                for cid in list(session.pending):
                    await self._resend(cid)
            if session.notices:
                self._notice_event.set()
            answered, session.answered = session.answered, []
            self._settle(answered)

    async def _resend(self, cid: str) -> None:
        cmd, _ = self.session.pending[cid]
        self.session.sent(cid, cmd, time.monotonic())
        await self._send(p.encode(p.Request(client_id=cid, cmd=cmd)))

    async def _keeper(self) -> None:
        session = self.session
        hb = session.heartbeat_ms / 1000
        while True:
            await asyncio.sleep(min(hb / 2, self.resend_after / 2))
            now = time.monotonic()
            if now - session.last_out >= hb:
                await self._send(p.encode(p.Heartbeat()))
            if now - session.last_in > 3 * hb:
                session.last_in = now              # the server went quiet: log on again
                if session.logged_on is None:      # ... on a new socket if that failed too
                    await self._renew()
                session.logged_on = None
                await self._send(session.logon_message())
            else:
                for cid in session.resendable(now, self.resend_after):
                    if cid in session.pending:
                        await self._resend(cid)


# ---------------------------------------------------------------------------------
# market data
# ---------------------------------------------------------------------------------

class _FeedState:
    """Exactly-once ordering of Market messages from a snapshot, the live feed
    and replays. ``covered``: every Market message at or below it is applied."""

    def __init__(self) -> None:
        self.covered = -1          # -1: no snapshot yet
        self.buffer: list[p.Market] = []

    def gap(self, msg: p.Market | p.FeedHeartbeat) -> tuple[int, int] | None:
        """Return the (from, to) range to replay before ``msg``, if any."""
        if type(msg) is p.FeedHeartbeat:
            return (self.covered + 1, msg.seq) if msg.seq > self.covered else None
        if msg.prev > self.covered:
            return (self.covered + 1, msg.prev)
        return None


def _feed_sockets(context: zmq.Context, key: ClientKey, feed_endpoint: str,
                  data_endpoint: str) -> tuple[zmq.Socket, zmq.Socket]:
    """Return the feed's SUB socket (everything subscribed) and the CURVE DEALER of
    the snapshot and replay service, both connected."""
    sub = context.socket(zmq.SUB)
    try:
        sub.linger = 0
        sub.maxmsgsize = CLIENT_MAX_MESSAGE
        sub.rcvhwm = 1_000_000
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        _connect(sub, feed_endpoint)
        data = _curve_socket(context, zmq.DEALER, key, data_endpoint)
    except BaseException:
        sub.close(linger=0)
        raise
    return sub, data


class FeedClock:
    """The feed's own clock: the latest feed message's ``ts`` (a `Market`'s
    or a `FeedHeartbeat`'s, ns UTC), advanced by the wall time since it
    came. A live feed's time is the server's; a replayed feed's, the
    replay's (however long ago it was recorded)."""

    def __init__(self) -> None:
        self.ts = 0                 # the latest message's ts; 0: none came yet
        self.heard_at = 0           # time.monotonic_ns() when it came

    def heard(self, ts: int, at: int) -> None:
        """Note a feed message of time ``ts`` that came at monotonic ``at`` ns."""
        if ts:
            self.ts, self.heard_at = ts, at

    def now(self, at: int) -> int:
        """Return the feed's time at monotonic ``at`` ns; the wall clock's
        before any message with a time came."""
        return self.ts + max(0, at - self.heard_at) if self.ts else time.time_ns()


class FeedClient:
    """The market-data feed with exact recovery: subscribe, take a snapshot,
    drop what it covers, ask a replay for every gap. Synchronous.

        feed = FeedClient.from_data_dir("lotex-data", "viewer")
        events = feed.start(session="S1")          # the snapshot's events
        for market in feed.updates(timeout=1.0):   # Market messages, in order, once
            ...
    """

    def __init__(self, key: ClientKey | str | os.PathLike, feed_endpoint: str,
                 data_endpoint: str, *, timeout: float = 10.0,
                 context: zmq.Context | None = None) -> None:
        self.key = key if isinstance(key, ClientKey) else ClientKey.load(key)
        self.timeout = timeout
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.data_endpoint = data_endpoint
        try:
            self.sub, self.data = _feed_sockets(self.context, self.key, feed_endpoint,
                                                data_endpoint)
        except BaseException:
            if self._own_context:
                self.context.term()
            raise
        self.state = _FeedState()
        self.gaps_recovered = 0
        self.last_heartbeat = 0.0
        self.last_message = time.monotonic()   # when the feed last sent anything (or start)
        self.clock = FeedClock()

    def feed_time(self) -> int:
        """Return the feed's time now, ns UTC (`FeedClock`): what a lot's
        time left counts down against, live or replayed."""
        return self.clock.now(time.monotonic_ns())

    def _heard(self, data: bytes) -> p.Market | p.FeedHeartbeat:
        """Decode a message the feed sent now, and set the feed's clock by it."""
        msg = p.feed_decoder.decode(data)
        self.clock.heard(msg.ts, time.monotonic_ns())
        return msg

    def silent_for(self) -> float:
        """Return the seconds since the feed last sent anything, a Market
        message or a heartbeat (or since `start`): a live server sends one at
        least every ``heartbeat_ms`` of its config."""
        return time.monotonic() - self.last_message

    @classmethod
    def from_data_dir(cls, data_dir: str | os.PathLike, user: str, **kw: Any) -> "FeedClient":
        key = ClientKey.load(Path(data_dir) / "clients" / f"{user}.json")
        endpoints = Endpoints.load(data_dir)
        return cls(key, endpoints.feed, endpoints.data, **kw)

    def close(self) -> None:
        self.sub.close(linger=0)
        self.data.close(linger=0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> "FeedClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ask(self, request: Any) -> Any:
        """Send one request to the snapshot service and return its answer. A
        request left unanswered takes its socket with it: answers carry no
        request id, so a late one must never be read as the next one's."""
        try:
            self.data.send(p.encode(request), zmq.NOBLOCK)
        except zmq.Again:
            self._renew_data()
            raise ClientError("the snapshot service is not reachable") from None
        if not self.data.poll(int(self.timeout * 1000), zmq.POLLIN):
            self._renew_data()
            raise ClientError("no answer from the snapshot service in time")
        reply = p.data_reply_decoder.decode(self.data.recv())
        if type(reply) is p.SessionRejected:
            raise SessionRejectedError(reply.code, reply.text)
        return reply

    def _renew_data(self) -> None:
        self.data.close(linger=0)
        self.data = _curve_socket(self.context, zmq.DEALER, self.key, self.data_endpoint)

    def snapshot(self, session: str = "", key: str = "") -> p.Snapshot:
        return self._ask(p.SnapshotRequest(session=session, key=key))

    def replay(self, from_seq: int, to_seq: int = 0, limit: int = 1000) -> list[p.Market]:
        """Every Market message with from_seq <= seq <= to_seq (0: latest)."""
        out: list[p.Market] = []
        while True:
            reply = self._ask(p.ReplayRequest(from_seq=from_seq, to_seq=to_seq, limit=limit))
            out.extend(reply.messages)
            if not reply.more:
                return out
            from_seq = reply.through + 1

    def start(self, session: str = "", key: str = "", settle: float = 0.2) -> p.Snapshot:
        """Subscribe (already done), wait ``settle`` s for the subscription to
        take, then take the snapshot; updates continue above its seq."""
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            if self.sub.poll(int((deadline - time.monotonic()) * 1000) + 1, zmq.POLLIN):
                self.state.buffer.append(self._heard(self.sub.recv()))
        snap = self.snapshot(session, key)
        self.state.covered = snap.seq
        self.last_message = time.monotonic()
        self.clock.heard(snap.ts, time.monotonic_ns())   # a finished replay sends no more
        return snap

    def updates(self, timeout: float | None = None, max_messages: int | None = None
                ) -> Iterator[p.Market]:
        """Yield Market messages above the snapshot, in order, each once,
        recovering gaps by replay; stop after ``timeout`` s without one."""
        state = self.state
        if state.covered < 0:
            raise ClientError("call start() first")
        wait = self.timeout if timeout is None else timeout
        idle_until = time.monotonic() + wait
        sent = 0
        while max_messages is None or sent < max_messages:
            if state.buffer:
                msg = state.buffer.pop(0)
            elif self.sub.poll(max(0, int((idle_until - time.monotonic()) * 1000)), zmq.POLLIN):
                msg = self._heard(self.sub.recv())
                self.last_message = time.monotonic()
            else:
                return
            gap = state.gap(msg)
            if gap is not None:
                try:
                    missed = self.replay(gap[0], gap[1])
                except ClientError:
                    state.buffer.insert(0, msg)     # the gap is found again next time
                    raise
                self.gaps_recovered += 1
                for old in missed:
                    if old.seq > state.covered:
                        state.covered = old.seq
                        sent += 1
                        yield old
                state.covered = max(state.covered, gap[1])
            if type(msg) is p.FeedHeartbeat:
                self.last_heartbeat = time.monotonic()
                continue
            if msg.seq <= state.covered:
                continue
            state.covered = msg.seq
            sent += 1
            yield msg
            idle_until = time.monotonic() + wait


class AsyncFeedClient:
    """`FeedClient` for asyncio."""

    def __init__(self, key: ClientKey | str | os.PathLike, feed_endpoint: str,
                 data_endpoint: str, *, timeout: float = 10.0) -> None:
        self.key = key if isinstance(key, ClientKey) else ClientKey.load(key)
        self.timeout = timeout
        self.context = zmq.asyncio.Context()
        self.data_endpoint = data_endpoint
        try:
            self.sub, self.data = _feed_sockets(self.context, self.key, feed_endpoint,
                                                data_endpoint)
        except BaseException:
            self.context.term()
            raise
        self.state = _FeedState()
        self.gaps_recovered = 0

    def close(self) -> None:
        self.sub.close(linger=0)
        self.data.close(linger=0)
        self.context.term()

    async def _ask(self, request: Any) -> Any:
        """As `FeedClient._ask`: a request left unanswered takes its socket with it."""
        try:
            await self.data.send(p.encode(request), zmq.NOBLOCK)
            data = await asyncio.wait_for(self.data.recv(), self.timeout)
        except (zmq.Again, asyncio.TimeoutError):
            self.data.close(linger=0)
            self.data = _curve_socket(self.context, zmq.DEALER, self.key, self.data_endpoint)
            raise ClientError("no answer from the snapshot service in time") from None
        reply = p.data_reply_decoder.decode(data)
        if type(reply) is p.SessionRejected:
            raise SessionRejectedError(reply.code, reply.text)
        return reply

    async def snapshot(self, session: str = "", key: str = "") -> p.Snapshot:
        return await self._ask(p.SnapshotRequest(session=session, key=key))

    async def replay(self, from_seq: int, to_seq: int = 0, limit: int = 1000) -> list[p.Market]:
        out: list[p.Market] = []
        while True:
            reply = await self._ask(p.ReplayRequest(from_seq=from_seq, to_seq=to_seq,
                                                    limit=limit))
            out.extend(reply.messages)
            if not reply.more:
                return out
            from_seq = reply.through + 1

    async def start(self, session: str = "", key: str = "", settle: float = 0.2) -> p.Snapshot:
        """As `FeedClient.start`: buffer what the feed sends for ``settle`` s
        in all (however busy it is), then take the snapshot."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle
        while (left := deadline - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(self.sub.recv(), left)
            except asyncio.TimeoutError:
                break
            self.state.buffer.append(p.feed_decoder.decode(data))
        snap = await self.snapshot(session, key)
        self.state.covered = snap.seq
        return snap

    async def updates(self, timeout: float | None = None) -> AsyncIterator[p.Market]:
        state = self.state
        wait = self.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        idle_until = loop.time() + wait
        while True:
            if state.buffer:
                msg = state.buffer.pop(0)
            else:
                try:
                    data = await asyncio.wait_for(self.sub.recv(),
                                                  max(0.0, idle_until - loop.time()))
                except asyncio.TimeoutError:
                    return
                msg = p.feed_decoder.decode(data)
            gap = state.gap(msg)
            if gap is not None:
                try:
                    missed = await self.replay(gap[0], gap[1])
                except ClientError:
                    state.buffer.insert(0, msg)     # the gap is found again next time
                    raise
                self.gaps_recovered += 1
                for old in missed:
                    if old.seq > state.covered:
                        state.covered = old.seq
                        yield old
                state.covered = max(state.covered, gap[1])
            if type(msg) is p.FeedHeartbeat or msg.seq <= state.covered:
                continue
            state.covered = msg.seq
            yield msg
            idle_until = loop.time() + wait


def decode_json_commands(text: str | bytes) -> list[Any]:
    """Decode a JSON list of commands (or one command) in the engine's schema."""
    from exchange.commands import AnyCommand
    data = msgspec.json.decode(text)
    items = data if isinstance(data, list) else [data]
    return [msgspec.convert(item, AnyCommand) for item in items]
