"""What the kernel knows of a ZeroMQ connection's TCP socket, by its descriptor
(ZeroMQ gives it as a received frame's ``SRCFD`` and in its monitor events).
ZeroMQ owns these descriptors: nothing here closes one. Linux; elsewhere each
answer is None and the server does without it."""

from __future__ import annotations

import fcntl
import socket
import struct
import termios

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked, a u64 at this offset (Linux 4.1+)
_BYTES_ACKED = 120
_TCP_INFO = getattr(socket, "TCP_INFO", None)


def bytes_acked(fd: int) -> int | None:
    """Return how many bytes sent on TCP socket ``fd`` its peer has
    acknowledged (received into its kernel, not necessarily read), or None
    if that cannot be told (not a TCP socket, an older kernel). O(1)."""
    if _TCP_INFO is None or fd < 0:
        return None
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 256)
    except OSError:
        return None
    finally:
        sock.detach()                  # ZeroMQ's descriptor: left open
    if len(raw) < _BYTES_ACKED + 8:
        return None
    return struct.unpack_from("=Q", raw, _BYTES_ACKED)[0]


def unacked(fd: int) -> int | None:
    """Return the bytes in TCP socket ``fd``'s send queue that its peer has
    not acknowledged yet (SIOCOUTQ), or None if that cannot be told."""
    try:
        raw = fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return None
    return struct.unpack("=i", raw)[0]


def local_port(fd: int) -> int | None:
    """Return the local TCP port of socket ``fd``, or None if it is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        address = sock.getsockname()
    except OSError:
        return None
    finally:
        sock.detach()
    return address[1] if isinstance(address, tuple) and len(address) >= 2 else None


def hang_up(fd: int) -> bool:
    """Shut TCP socket ``fd`` down both ways; ZeroMQ sees the connection end
    and closes the descriptor itself. Return whether it was shut."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        return False
    try:
        sock.shutdown(socket.SHUT_RDWR)
        return True
    except OSError:
        return False
    finally:
        sock.detach()
