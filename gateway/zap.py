"""The ZAP handler: the server side of CURVE authentication.

ZeroMQ asks this handler, over ``inproc://zeromq.zap.01``, whether a client's
public key may connect to a socket (identified by its ZAP domain). Without a
running handler CURVE accepts any client key, so the server starts this thread
before it binds a single socket. A known, unrevoked key whose role the domain
admits is accepted and the connection's ``User-Id`` is set to the user id;
every message from it carries that id (``zmq.Frame.get("User-Id")``), the
public key it authenticated with (``zmq.Frame.get(KEY_PROPERTY)``) and the
role the key store gave the user then (``zmq.Frame.get(ROLE_PROPERTY)``), so
that a connection made with a key since replaced (`lotex keys rotate`), or
under a role since changed in the key store, is known.
"""

from __future__ import annotations

import threading
import time

import zmq
from zmq.utils import z85

from gateway import logs
from gateway.keys import User, key_bytes

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
KEY_PROPERTY = "X-Public-Key"
ROLE_PROPERTY = "X-Role"


def _key_metadata(public_key: str, role: str) -> bytes:
    """Encode the connection's metadata as ZMTP properties: the key (Z85)
    and the user's role."""
    out = b""
    for name, value in ((KEY_PROPERTY, public_key), (ROLE_PROPERTY, role)):
        name_b, value_b = name.encode(), value.encode()
        out += bytes((len(name_b),)) + name_b + len(value_b).to_bytes(4, "big") + value_b
    return out

def key_map(users: dict[str, User]) -> dict[bytes, User]:
    """The unrevoked users by public key (32 bytes), to answer ZAP requests
    from; ValueError if a key is not a CURVE key. Made whole before it
    replaces the handler's map, so a bad key changes nothing."""
    return {key_bytes(user.public_key): user for user in users.values() if not user.revoked}


# ZAP domain of each server socket -> roles it admits.
DOMAIN_ROLES: dict[str, tuple[str, ...]] = {
    "broker": ("broker",),
    "operator": ("operator",),
    "data": ("broker", "operator", "viewer"),
}


class ZapHandler(threading.Thread):
    """Answer ZAP requests from ``users`` (replaced atomically by `set_users`)."""

    def __init__(self, context: zmq.Context, users: dict[str, User]) -> None:
        super().__init__(name="lotex-zap", daemon=True)
        self.context = context
        self._stop_event = threading.Event()
        self.set_users(users)
        self.socket = context.socket(zmq.REP)
        self.socket.linger = 0
        self.socket.bind(ZAP_ENDPOINT)
        self.log = logs.get(component="zap")
        self.refusals = logs.LogBudget()       # per domain: a peer may retry without end
        self.acceptances = logs.LogBudget()    # per domain and user: it may reconnect without end

    def set_users(self, users: dict[str, User]) -> None:
        """Replace the key map (safe from another thread: one reference swap).
        ValueError, and the map unchanged, if a key is not a CURVE key."""
        self.set_key_map(key_map(users))

    def set_key_map(self, by_key: dict[bytes, User]) -> None:
        """Replace the key map with one `key_map` made (one reference swap)."""
        self._by_key = by_key

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        try:
            while not self._stop_event.is_set():
                if not poller.poll(100):
                    continue
                self._answer(self.socket.recv_multipart())
        finally:
            self.socket.close(linger=0)

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) < 6:
            self.log.warning("zap_malformed", frames=len(frames))
            return
        version, request_id, domain, address, _identity, mechanism = frames[:6]
        domain_s = domain.decode(errors="replace")
        user = None
        if mechanism == b"CURVE" and len(frames) >= 7 and len(frames[6]) == 32:
            user = self._by_key.get(frames[6])
        roles = DOMAIN_ROLES.get(domain_s, ())
        if user is not None and user.role in roles:
            self.socket.send_multipart([version, request_id, b"200", b"OK",
                                        user.id.encode(),
                                        _key_metadata(user.public_key, user.role)])
            write, unwritten = self.acceptances.allow((domain_s, user.id), time.monotonic_ns())
            if unwritten:
                self.log.info("auth_accepted_unlogged", domain=domain_s, user=user.id,
                              count=unwritten)
            if write:
                self.log.info("auth_accepted", domain=domain_s, address=address.decode(),
                              user=user.id, role=user.role)
            return
        reason = ("unknown or revoked key" if user is None
                  else f"role {user.role} not admitted on {domain_s}")
        if mechanism != b"CURVE":
            reason = f"mechanism {mechanism.decode(errors='replace')} not allowed"
        self.socket.send_multipart([version, request_id, b"400", reason.encode(), b"", b""])
        write, unwritten = self.refusals.allow(domain_s, time.monotonic_ns())
        if unwritten:
            self.log.warning("auth_refused_unlogged", domain=domain_s, count=unwritten)
        if not write:
            return
        self.log.warning("auth_refused", domain=domain_s, address=address.decode(),
                         reason=reason, key=z85.encode(frames[6]).decode()
                         if len(frames) >= 7 and len(frames[6]) == 32 else "")
