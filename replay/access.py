"""Who is looking: the public (paddle numbers only) or an operator (identities).

Replay shows the public view unless the viewer proves to be an operator of
the exchange that recorded the journal: ``--operator-key FILE`` names the
operator's client key file (as `lotex keys add` writes it, with its secret
key), checked against the server's key store (DIR/keys/users.json, or the
one ``--key-store DIR`` names when the journal was copied elsewhere):

- the file's secret key must derive its public key (it is a real key pair,
  not a copied public key);
- the key store must list the user with the operator role, the same public
  key, and not revoked.

Without a key store there is nothing to check against, and the operator
view is refused. The public view holds only public events (``to == ()``):
what every subscriber of the live feed saw, never a party, a proxy maximum,
a sealed amount before the close or a reserve.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any



class AccessDenied(Exception):
    """The operator view was asked for and cannot be granted."""


@dataclass(frozen=True)
class Viewer:
    """The public, or one operator (``user``)."""

    operator: bool = False
    user: str = ""

    def sees(self, event: Any) -> bool:
        """Whether this viewer may see ``event``: the public sees public events;
        an operator, auditing the record, sees every event (refusals too)."""
        return self.operator or not event.to

    @property
    def label(self) -> str:
        return f"operator {self.user}" if self.operator else "public (paddle numbers only)"


PUBLIC = Viewer()


def operator_viewer(key_file: str | os.PathLike, key_store: str | os.PathLike | None) -> Viewer:
    """Return the operator viewer for ``key_file`` or raise `AccessDenied` saying why."""
    try:
        key = json.loads(Path(key_file).read_text())
        user, public, secret = key["user"], key["public_key"], key["secret_key"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AccessDenied(f"cannot read the operator key file {key_file}: {exc}") from None
    if not all(isinstance(value, str) for value in (user, public, secret)) or not user:
        raise AccessDenied(f"{key_file} is not a client key file: its user, public_key and "
                           f"secret_key must be strings")
    import zmq
    try:
        derived = zmq.curve_public(secret.encode()).decode()
    except (zmq.ZMQError, ValueError, AttributeError):
        raise AccessDenied(f"{key_file} holds no valid secret key") from None
    if derived != public:
        raise AccessDenied(f"{key_file}: its secret key does not match its public key")
    if key_store is None:
        raise AccessDenied("no key store to check the operator key against; give --key-store "
                           "DIR (the server's data directory with keys/users.json)")
    users_file = Path(key_store) / "keys" / "users.json"
    if not users_file.is_file() and (Path(key_store) / "users.json").is_file():
        users_file = Path(key_store) / "users.json"
    try:
        users = json.loads(users_file.read_text())["users"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AccessDenied(f"cannot read the key store {users_file}: {exc}") from None
    if not isinstance(users, dict):
        raise AccessDenied(f"the key store {users_file} is damaged: its users are not a "
                           f"table of user names")
    entry = users.get(user)
    if entry is None:
        raise AccessDenied(f"user {user!r} is not in the key store {users_file}")
    if not isinstance(entry, dict):
        raise AccessDenied(f"the key store {users_file} is damaged: the entry of {user!r} "
                           f"is not a table")
    if entry.get("role") != "operator":
        raise AccessDenied(f"user {user!r} is a {entry.get('role')}, not an operator")
    if entry.get("public_key") != public:
        raise AccessDenied(f"the key of {user!r} is not the one the key store holds")
    if entry.get("revoked"):
        raise AccessDenied(f"the key of {user!r} was revoked")
    return Viewer(operator=True, user=user)
