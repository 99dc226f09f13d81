"""Whether a peer still takes data, from the kernel's TCP_INFO (one getsockopt, Linux)."""

from __future__ import annotations

import socket
import struct
from typing import Any

# struct tcp_info (linux/tcp.h): tcpi_unacked (u32) at 24, tcpi_bytes_acked (u64) at 120,
# tcpi_notsent_bytes (u32) at 144.
TCP_INFO_LEN = 148
TCP_INFO = getattr(socket, "TCP_INFO", 11)


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
    unacked: int = struct.unpack_from("I", info, 24)[0]
    acked: int = struct.unpack_from("Q", info, 120)[0]
    notsent: int = struct.unpack_from("I", info, 144)[0]
    return acked, bool(unacked or notsent)
