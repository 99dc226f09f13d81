"""Whether a peer still takes data, from the kernel's TCP_INFO (one getsockopt, Linux)."""

from __future__ import annotations

import socket
import struct
from typing import Any

# struct tcp_info (linux/tcp.h): tcpi_unacked (u32) at 24, tcpi_bytes_acked (u64) at 120,
# tcpi_notsent_bytes (u32) at 144.
TCP_INFO_LEN = 148
TCP_INFO = getattr(socket, "TCP_INFO", 11)
_FIELDS = struct.Struct("=24xI92xQ16xI")  # the three fields above, in one unpack


def tcp_progress(sock: Any) -> tuple[int, bool] | None:
    """(bytes the peer acknowledged so far, whether data still waits for it), or None.

    None when the kernel cannot say: no TCP_INFO here, or the socket is already closed. A
    just-closed socket raises OSError under asyncio and ValueError ("negative file
    descriptor") under uvloop, whose socket object outlives its descriptor.
    """
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, TCP_INFO_LEN)
    except (OSError, ValueError):
        return None
    if len(info) < TCP_INFO_LEN:
        return None
    unacked, acked, notsent = _FIELDS.unpack(info)
    return acked, bool(unacked or notsent)


class BorrowedSocket(socket.socket):
    """A socket object on a descriptor the event loop's transport owns: it never closes it,
    not even when garbage collected (`__del__` only forgets the number)."""

    __slots__ = ()

    def __del__(self) -> None:
        self.detach()


def borrow(sock: Any) -> socket.socket | None:
    """A handle for fast getsockopt on a transport's socket, or None when it has none.

    uvloop's `get_extra_info("socket")` builds a socket object on every getsockopt (5 µs a
    probe against 1.3 µs here). The caller `detach()`es it when the transport is done, so a
    later descriptor with the same number is never probed (reading it would be harmless).
    """
    try:
        fd = sock.fileno()
        return BorrowedSocket(fileno=fd) if fd >= 0 else None
    except (OSError, ValueError, AttributeError):
        return None
