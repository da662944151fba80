"""The key store: the server's CURVE key pair and every user's public key,
role and standing.

Layout under a data directory::

    keys/server.json       the server's key pair (secret; mode 0600)
    keys/users.json        user id -> role, public key, clients, revoked
    clients/<user>.json    a user's own key file: its key pair and the
                           server's public key (secret; mode 0600); hand it
                           to the user and delete it here

    keys/LOCK              taken (flock, exclusive) by every change of the store

Every change (`initialise`, `create_server_keys`, `add_user`, `rotate`,
`revoke`) holds an exclusive ``flock`` on ``keys/LOCK`` while it reads the
store, changes it and writes it back, so two `lotex keys` runs at once are
done one after the other and neither loses the other's change; the second
waits for the first. Every write replaces the file atomically (temporary
file, fsync, rename, fsync of the directory), so a reader (the server) never
takes the lock and never sees a half-written file, and the server can reload
``users.json`` whenever its stamp changes: that is how a revocation or a key
rotation takes effect without a restart (within the server's
``keys_check_ms``, half a second by default). ``keys/`` and ``clients/`` are
made readable by their owner only (0700). Keys are Z85 text, as ZeroMQ prints
them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import struct
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import zmq
from zmq.utils import z85

ROLES = ("broker", "operator", "viewer")
# Matched with fullmatch: with match and "$", "evil\n" would pass ("$" matches
# before a trailing newline) and name a client key file "evil\n.json".
USER_ID = re.compile(r"[a-z][a-z0-9_.-]{0,31}")
RESERVED_USERS = ("clock", "system", "gateway")


class KeyStoreError(Exception):
    """A key-store operation that cannot be done (unknown user, bad id, ...)."""


@dataclass
class User:
    """One user of the exchange as the key store records it."""

    id: str
    role: str
    public_key: str                       # Z85, 40 characters
    clients: list[str] = field(default_factory=list)  # brokers: clients acted for
    cancel_on_disconnect: bool = False    # brokers: cancel book orders on disconnect
    revoked: bool = False
    created_ns: int = 0
    revoked_ns: int = 0


@dataclass
class ClientKey:
    """What a client needs to connect: its key pair and the server's public key."""

    user: str
    role: str
    public_key: str
    secret_key: str
    server_public_key: str

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClientKey":
        data = json.loads(Path(path).read_text())
        return cls(**{k: data[k] for k in ("user", "role", "public_key", "secret_key",
                                          "server_public_key")})


_USER_FIELDS: dict[str, tuple[type, ...]] = {
    "role": (str,), "public_key": (str,), "clients": (list,),
    "cancel_on_disconnect": (bool,), "revoked": (bool,), "created_ns": (int,),
    "revoked_ns": (int,),
}
_REQUIRED_FIELDS = ("role", "public_key")


def parse_users(data: object, where: object = "users.json") -> dict[str, User]:
    """The users of a decoded ``users.json`` by id, every entry checked (see
    `KeyStore.users`); raise `KeyStoreError` at the first bad one."""
    def bad(why: str) -> KeyStoreError:
        return KeyStoreError(f"the key store {where} is damaged: {why}")

    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise bad('no table of users ("users")')
    users: dict[str, User] = {}
    for uid, fields in data["users"].items():
        if not USER_ID.fullmatch(uid):
            raise bad(f"user id {uid!r} is not 1-32 of a-z 0-9 _ . - starting with a letter")
        if not isinstance(fields, dict):
            raise bad(f"the entry of {uid!r} is not a table")
        for name, value in fields.items():
            kinds = _USER_FIELDS.get(name)
            if kinds is None:
                raise bad(f"the entry of {uid!r} has an unknown field {name!r}")
            if not isinstance(value, kinds) or (int in kinds and isinstance(value, bool)):
                raise bad(f"the entry of {uid!r} has a {name} of the wrong type")
        missing = [name for name in _REQUIRED_FIELDS if name not in fields]
        if missing:
            raise bad(f"the entry of {uid!r} has no {' or '.join(missing)}")
        if fields["role"] not in ROLES:
            raise bad(f"the entry of {uid!r} has role {fields['role']!r}, not one of "
                      f"{', '.join(ROLES)}")
        if not all(isinstance(client, str) for client in fields.get("clients", ())):
            raise bad(f"the clients of {uid!r} are not all text")
        try:
            key_bytes(fields["public_key"])
        except ValueError as exc:
            raise bad(f"the public key of {uid!r} is not a CURVE key ({exc})") from None
        users[uid] = User(id=uid, **fields)
    return users


def _active(users: dict[str, User], user_id: str, why_revoked: str) -> User:
    """Return the user ``user_id`` of ``users``; KeyStoreError if there is
    none or it is revoked (saying ``why_revoked`` after it, if given)."""
    user = users.get(user_id)
    if user is None:
        raise KeyStoreError(f"no user {user_id!r}")
    if user.revoked:
        raise KeyStoreError(f"user {user_id!r} is revoked: {why_revoked}" if why_revoked
                            else f"user {user_id!r} is revoked already")
    return user


def key_bytes(public_key: str) -> bytes:
    """A Z85 public key (40 characters) as its 32 bytes; ValueError if it is not one."""
    try:
        raw = z85.decode(public_key.encode("ascii"))
    except (UnicodeEncodeError, ValueError, KeyError, IndexError, TypeError,
            struct.error) as exc:
        raise ValueError(f"{public_key!r} is not Z85 text: {exc}") from None
    if len(raw) != 32:
        raise ValueError(f"{public_key!r} is {len(raw)} bytes, not 32")
    return raw


def _write_atomic(path: Path, text: str, *, secret: bool = False) -> None:
    """Replace ``path`` with ``text`` atomically (temp file, fsync, rename).
    A directory it creates is the owner's only (0700)."""
    os.makedirs(path.parent, mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)         # a dead run's: O_EXCL below makes it with our mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if secret else 0o644)
    try:
        try:
            data = memoryview(text.encode())
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)       # the rename itself survives a crash
    finally:
        os.close(dir_fd)


class KeyStore:
    """Server keys and users under ``data_dir``. Reading is cheap and takes no
    lock; every change holds ``keys/LOCK`` (`locked`) and rewrites
    ``users.json`` atomically."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.data_dir = Path(data_dir)
        self.keys_dir = self.data_dir / "keys"
        self.clients_dir = self.data_dir / "clients"
        self.server_file = self.keys_dir / "server.json"
        self.users_file = self.keys_dir / "users.json"
        self.lock_file = self.keys_dir / "LOCK"
        self._lock_depth = 0

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's exclusive lock (``flock`` on ``keys/LOCK``) for the
        block, waiting for another process's change to finish first. Every
        read-modify-write of the store runs inside it and reads the store
        after taking it. Re-entrant within this object (one process's nested
        changes, as `initialise` makes); the lock goes with the process, so a
        killed run leaves none held."""
        if self._lock_depth:
            self._lock_depth += 1
            try:
                yield
            finally:
                self._lock_depth -= 1
            return
        os.makedirs(self.keys_dir, mode=0o700, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._lock_depth = 1
            try:
                yield
            finally:
                self._lock_depth = 0
        finally:
            os.close(fd)               # releases the lock

    # -- server keys -------------------------------------------------------

    def exists(self) -> bool:
        return self.server_file.exists()

    def create_server_keys(self, *, replace: bool = False) -> str:
        """Create the server key pair; return its public key. Refuses to replace
        an existing pair unless ``replace`` (every client key file then needs
        the new server key)."""
        with self.locked():
            if self.server_file.exists() and not replace:
                raise KeyStoreError(f"server keys exist already in {self.server_file}")
            public, secret = zmq.curve_keypair()
            _write_atomic(self.server_file, json.dumps(
                {"public_key": public.decode(), "secret_key": secret.decode()}, indent=2)
                + "\n", secret=True)
            if not self.users_file.exists():
                self._save({})
            return public.decode()

    def server_keys(self) -> tuple[bytes, bytes]:
        """Return the server's (public, secret) key pair as Z85 bytes. Raise
        `KeyStoreError` naming ``server.json`` if it is not a key pair this
        module would write; OSError if it cannot be read."""
        text = self.server_file.read_text()
        try:
            data = json.loads(text)
        except ValueError as exc:          # JSONDecodeError, UnicodeDecodeError
            raise KeyStoreError(f"the key store {self.server_file} is damaged: not JSON "
                                f"({exc})") from None
        pair = []
        for name in ("public_key", "secret_key"):
            value = data.get(name) if isinstance(data, dict) else None
            if not isinstance(value, str):
                raise KeyStoreError(f"the key store {self.server_file} is damaged: no "
                                    f"{name} (text)")
            try:
                key_bytes(value)
            except ValueError as exc:       # a secret is never printed, even a damaged one
                why = f" ({exc})" if name == "public_key" else ""
                raise KeyStoreError(f"the key store {self.server_file} is damaged: its "
                                    f"{name} is not a CURVE key{why}") from None
            pair.append(value.encode())
        return pair[0], pair[1]

    # -- users ---------------------------------------------------------------

    def users(self) -> dict[str, User]:
        """Return every user, revoked ones included, by id. Raise
        `KeyStoreError` (saying what is wrong, in a sentence) if ``users.json``
        is not a store this module would write: not JSON, no table of users,
        an entry with a field missing, unknown or of the wrong type, a role
        not in ROLES, a public key that is not 40 characters of Z85 (32
        bytes); OSError if it cannot be read. Nothing of a bad store is used."""
        try:
            text = self.users_file.read_text()
        except FileNotFoundError:
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:          # JSONDecodeError, UnicodeDecodeError
            raise KeyStoreError(f"the key store {self.users_file} is damaged: not JSON "
                                f"({exc})") from None
        return parse_users(data, self.users_file)

    def stamp(self) -> tuple[int, int, int]:
        """Return (mtime ns, size, inode) of ``users.json``: it changes on every
        write. The inode is there because a rotation keeps the size (a new key
        is as long as the old one) and two writes can share a coarse mtime;
        every write is a rename of a new file, so a new inode."""
        try:
            st = os.stat(self.users_file)
        except FileNotFoundError:
            return (0, 0, 0)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _save(self, users: dict[str, User]) -> None:
        body = {"version": 1, "users": {}}
        for uid, user in users.items():
            fields = asdict(user)
            del fields["id"]
            body["users"][uid] = fields
        _write_atomic(self.users_file, json.dumps(body, indent=2, sort_keys=True) + "\n")

    def add_user(self, user_id: str, role: str, *, clients: list[str] | tuple[str, ...] = (),
                 cancel_on_disconnect: bool = False) -> Path:
        """Create a key pair for a new user, record its public key and role, and
        write its client key file; return that file's path."""
        if not USER_ID.fullmatch(user_id) or user_id in RESERVED_USERS:
            raise KeyStoreError(f"user id {user_id!r} must be 1-32 of a-z 0-9 _ . - starting "
                                f"with a letter, and not one of {', '.join(RESERVED_USERS)}")
        if role not in ROLES:
            raise KeyStoreError(f"role {role!r} is not one of {', '.join(ROLES)}")
        if clients and role != "broker":
            raise KeyStoreError("only a broker acts for clients")
        if cancel_on_disconnect and role != "broker":
            raise KeyStoreError("cancel-on-disconnect applies to brokers only")
        with self.locked():      # read after taking it: another run's change is in
            users = self.users()
            if user_id in users:
                raise KeyStoreError(f"user {user_id!r} exists already"
                                    + (" (revoked)" if users[user_id].revoked else ""))
            user = User(id=user_id, role=role, public_key="", clients=list(clients),
                        cancel_on_disconnect=cancel_on_disconnect, created_ns=time.time_ns())
            path = self._new_key_pair(user)
            users[user_id] = user
            self._save(users)
            return path

    def rotate(self, user_id: str) -> Path:
        """Give an active user a new key pair (same id, role, clients): replace
        its client key file and its public key in ``users.json``; return the
        file's path. The old key is refused from then on, as after a
        revocation (a running server re-reads ``users.json``)."""
        with self.locked():      # read after taking it: another run's change is in
            users = self.users()
            user = _active(users, user_id, "a revoked user stays revoked and gets no new key "
                                           "(add a user with another id)")
            path = self._new_key_pair(user)
            self._save(users)
            return path

    def _new_key_pair(self, user: User) -> Path:
        """Make a key pair for ``user``, set its public key and write its client
        key file (0600, atomically); return the file's path. ``users.json`` is
        the caller's to save, after the file: a crash between the two leaves a
        key file the store does not know yet (add or rotate again), never a
        store key without its file."""
        server_public, _ = self.server_keys()
        public, secret = zmq.curve_keypair()
        user.public_key = public.decode()
        path = self.client_key_path(user.id)
        _write_atomic(path, json.dumps({
            "user": user.id, "role": user.role, "public_key": public.decode(),
            "secret_key": secret.decode(), "server_public_key": server_public.decode(),
        }, indent=2) + "\n", secret=True)
        return path

    def revoke(self, user_id: str, *, force: bool = False) -> User:
        """Revoke a user: its key is refused from now on, by a running server
        too. The last active operator is kept unless ``force``: an exchange
        without an operator cannot be run."""
        with self.locked():      # read after taking it: another run's change is in
            users = self.users()
            user = _active(users, user_id, "")
            if user.role == "operator" and not force and not any(
                    other.role == "operator" and not other.revoked and other.id != user_id
                    for other in users.values()):
                raise KeyStoreError(f"{user_id!r} is the last active operator, and an exchange "
                                    f"without an operator cannot be run: add another operator "
                                    f"first, or revoke with --force")
            user.revoked = True
            user.revoked_ns = time.time_ns()
            self._save(users)
            return user

    def client_key_path(self, user_id: str) -> Path:
        return self.clients_dir / f"{user_id}.json"


DEFAULT_USERS = (
    ("op", "operator", ()),
    ("b1", "broker", ()),
    ("b2", "broker", ()),
    ("viewer", "viewer", ()),
)


def initialise(data_dir: str | os.PathLike) -> tuple[KeyStore, bool]:
    """Create server keys and the default users if the store is new; return the
    store and whether it was created now. Done under the store's lock: two
    starts at once (`lotex serve`, `lotex keys init --defaults`) make one
    key pair and one set of users, never a second server key that the first
    one's client key files do not name."""
    store = KeyStore(data_dir)
    if store.exists():
        return store, False
    with store.locked():
        if store.exists():                   # made meanwhile by another run
            return store, False
        store.create_server_keys()
        for user_id, role, clients in DEFAULT_USERS:
            store.add_user(user_id, role, clients=clients)
    return store, True
