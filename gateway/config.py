"""The server's configuration: ``<data>/config.toml``, written with defaults on
first start, read with `tomllib` afterwards. Unknown keys are refused so a
typo cannot silently fall back to a default."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

DURABILITIES = ("group", "every", "none")
# A turn holds at most max_backlog entries and one Batch more, all of them among
# the 65,536 recent results the server keeps to answer resends (server.RECENT_RESULTS).
MAX_BACKLOG = 32768

SETTINGS: dict[str, str] = {
    "host": "address every socket binds to",
    "broker_port": "brokers' ROUTER (CURVE)",
    "operator_port": "operators' ROUTER (CURVE)",
    "feed_port": "public market-data PUB",
    "data_port": "snapshot and replay ROUTER (CURVE)",
    "durability": "journal: group (one fdatasync per loop turn) | every (one per entry) | "
                  "none (never synced: tests only)",
    "preallocate_bytes": "zeros kept written ahead of the journal's end, so commits sync "
                         "data only (0: none)",
    "heartbeat_ms": "feed heartbeat and the default session heartbeat",
    "max_message_bytes": "a larger inbound frame drops the connection",
    "send_hwm": "messages queued per connection; beyond it they are dropped (it resends)",
    "max_queued_bytes": "bytes sent to a connection and not yet acknowledged by its TCP peer "
                        "(a client that does not read); beyond, messages to it are dropped "
                        "(it resends), one larger message alone excepted; a feed subscriber "
                        "that far behind is hung up",
    "recv_hwm": "messages queued from one connection before ZeroMQ pushes back",
    "feed_hwm": "messages queued per feed subscriber; beyond it they are dropped",
    "max_batch": "messages, requests and entries handled per loop turn, per socket",
    "max_backlog": f"entries applied before one commit, at most (1 to {MAX_BACKLOG})",
    "tick_ms": "clock resolution for timers when nothing else arrives",
    "snapshot_every": "journal entries between snapshots",
    "snapshot_seconds": "and at most this long between snapshots",
    "feed_ring": "Market messages kept in memory for replay requests",
    "keys_check_ms": "how often the key store is checked for changes (revocations)",
    "max_connections": "TCP connections each port (broker, operator, feed, data) holds at "
                       "once, handshakes and anonymous feed subscribers included; one beyond "
                       "is hung up (lowered to fit the process's descriptor limit)",
    "max_sessions_per_user": "logged-on connections one user may hold at once; a Logon "
                             "beyond is refused (a dead one ends after 3 missed heartbeats)",
    "max_requests_per_second": "requests one broker may send a second over all its "
                               "connections (a Batch's each count; bursts up to a second's "
                               "worth); beyond, each is refused `throttled` (0: no limit)",
    "engine_cpu": "CPU the engine thread runs on alone, the server's other threads on the "
                  "others (Linux; -1: not pinned)",
}


_TYPE_NAMES = {int: "an integer", str: "a string"}


@dataclass
class Config:
    """Every setting of `lotex serve`. Ports 0 mean "any free port" (tests)."""

    host: str = "127.0.0.1"
    broker_port: int = 7801
    operator_port: int = 7802
    feed_port: int = 7803
    data_port: int = 7804
    durability: str = "group"
    preallocate_bytes: int = 2 << 20
    heartbeat_ms: int = 1000
    max_message_bytes: int = 65536
    send_hwm: int = 10000
    max_queued_bytes: int = 16 << 20
    recv_hwm: int = 10000
    feed_hwm: int = 100000
    max_batch: int = 2048
    max_backlog: int = 20000
    tick_ms: int = 10
    snapshot_every: int = 100000
    snapshot_seconds: int = 300
    feed_ring: int = 65536
    keys_check_ms: int = 500
    max_connections: int = 1024
    max_sessions_per_user: int = 16
    max_requests_per_second: int = 10000
    engine_cpu: int = -1

    def validate(self) -> "Config":
        for f in fields(self):
            value = getattr(self, f.name)
            wanted = type(getattr(Config, f.name))
            if type(value) is not wanted:        # bool is not taken for int
                raise ValueError(f"{f.name} must be {_TYPE_NAMES[wanted]}, "
                                 f"not {json.dumps(value, default=repr)}")
        if self.durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, not {self.durability!r}")
        for name in ("broker_port", "operator_port", "feed_port", "data_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise ValueError(f"{name} {port} is not a TCP port")
        for name in ("heartbeat_ms", "max_message_bytes", "send_hwm", "max_queued_bytes",
                     "recv_hwm", "feed_hwm",
                     "max_batch", "max_backlog", "tick_ms", "snapshot_every", "snapshot_seconds", "feed_ring",
                     "keys_check_ms", "max_connections", "max_sessions_per_user"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.preallocate_bytes < 0:
            raise ValueError("preallocate_bytes must be >= 0")
        if self.max_backlog > MAX_BACKLOG:
            raise ValueError(f"max_backlog must be at most {MAX_BACKLOG}")
        if self.max_requests_per_second < 0:
            raise ValueError("max_requests_per_second must be >= 0 (0: no limit)")
        if self.engine_cpu < -1:
            raise ValueError("engine_cpu must be a CPU number, or -1 for none")
        return self

    def to_toml(self) -> str:
        """Return the settings as TOML, each under a comment saying what it does."""
        lines = ["# lotex server configuration (lotex serve). Ports 0 = any free port.", ""]
        for f in fields(self):
            value = getattr(self, f.name)
            lines.append(f"# {SETTINGS[f.name]}")
            lines.append(f"{f.name} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"


def load(path: str | os.PathLike) -> Config:
    """Read a config file (TOML, or JSON if it ends in .json)."""
    path = Path(path)
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown settings {', '.join(unknown)}")
    return Config(**data).validate()


def load_or_create(data_dir: str | os.PathLike) -> tuple[Config, Path, bool]:
    """Return the config of ``data_dir``, creating ``config.toml`` with the
    defaults if there is none; also its path and whether it was created."""
    data_dir = Path(data_dir)
    for name in ("config.toml", "config.json"):
        path = data_dir / name
        if path.exists():
            return load(path), path, False
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    config = Config()
    path = data_dir / "config.toml"
    path.write_text(config.to_toml())
    return config, path, True


PRIVATE_DIRS: dict[str, tuple[str, ...]] = {
    "journal": (), "snapshots": (), "gateway": (), "clients": (),
    "keys": ("users.json",)}
"""The directories of a data directory that are their owner's only, with
their files; each with the files in it that hold nothing secret (the
users' public keys), left as made."""


def private_data_dir(data_dir: str | os.PathLike) -> Path:
    """Make ``data_dir`` readable by its owner only (`recorder.layout.private_dir`),
    and its `PRIVATE_DIRS` with what is in them, an existing loose one
    tightened (a restore's 0755 and 0644: `recorder.layout.private_tree`):
    the journal, snapshots and secret keys hold sealed bids, reserves and
    identities."""
    from recorder.layout import private_dir, private_tree
    path = private_dir(data_dir)
    for name, public in PRIVATE_DIRS.items():
        private_tree(path / name, public)
    return path


def as_dict(config: Config) -> dict:
    return asdict(config)
