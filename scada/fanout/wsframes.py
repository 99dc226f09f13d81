"""WebSocket frames built once and shared by every client: headers, shared deflate, framing.

Pure frame code: it imports no server. Server frames are unmasked, so the same bytes are valid
on every connection; `scada.server.uvicorn_adapter` writes them to transports, `scada.fanout.asgisink` to any
other ASGI server.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

TEXT = 0x81  # FIN + text opcode
TEXT_DEFLATED = 0xC1  # FIN + RSV1 (permessage-deflate) + text opcode

# How a sink takes broadcast frames (Broadcaster._fan_out picks the path per client).
PLAIN = 0  # finished frame bytes: header + prefix + seq tail, shared by every client
SHARED_DEFLATE = 1  # the prefix deflated once per tick, the tail as a stored block
OTHER = 2  # sink.write(payload): per-client deflate, or the ASGI fallback

COMPRESSION_MODES = ("off", "per-client", "shared")


def frame_header(length: int, first: int = TEXT) -> bytes:
    """Header of an unmasked, final text frame carrying `length` payload bytes."""
    if length < 126:
        return bytes((first, length))
    if length < 65536:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def frame_payload(frame: bytes) -> bytes:
    """The payload of an unmasked frame built by `frame_header` (the inverse)."""
    n = frame[1] & 0x7F
    return frame[2 + (2 if n == 126 else 8 if n == 127 else 0) :]


def deflate_prefix(prefix: bytes) -> bytes:
    """Raw deflate of `prefix`, sync-flushed: byte-aligned, so stored blocks may follow.

    With no context takeover each message is a fresh deflate stream, so these bytes start
    the message for every client that negotiated permessage-deflate (RFC 7692).
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, 8)
    return compressor.compress(prefix) + compressor.flush(zlib.Z_SYNC_FLUSH)


def stored_tail(tail: bytes) -> bytes:
    """`tail` as a non-final stored deflate block, then the empty block RFC 7692 strips.

    The message ends with an empty stored block whose LEN/NLEN (00 00 ff ff) the sender
    removes and the receiver appends back; only its header byte (0x00) stays.
    """
    n = len(tail)
    return b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF) + tail + b"\x00"


def deflate_offer(compression: str) -> ServerPerMessageDeflateFactory | None:
    """What the server accepts of a client's permessage-deflate offer, per compression mode.

    Shared: the server never keeps a compression context, so one compressed frame is valid
    for every client (and no per-connection zlib state is allocated).
    """
    if compression == "off":
        return None
    shared = compression == "shared"
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=shared,
        server_max_window_bits=None if shared else 12,
        client_max_window_bits=None if shared else 12,
        compress_settings={"memLevel": 5},
    )


def framing_for(
    extensions: Iterable[Extension], compression: str
) -> tuple[int, PerMessageDeflate | None]:
    """The fan-out path for a connection that negotiated `extensions`.

    PLAIN without deflate; SHARED_DEFLATE for deflate without server context takeover and a
    32 KB window; a client that asked for a smaller window under `shared` gets plain frames
    (allowed); OTHER with the per-client deflate extension that compresses each message.
    """
    for ext in extensions:
        if isinstance(ext, PerMessageDeflate):
            if compression != "shared":
                return OTHER, ext
            if ext.local_no_context_takeover and ext.local_max_window_bits == 15:
                return SHARED_DEFLATE, None
    return PLAIN, None


class FrameSink(Protocol):
    framing: int  # PLAIN, SHARED_DEFLATE or OTHER
    kind: str  # "raw" (finished frames to the transport) or "asgi" (the fallback)

    @property
    def dead(self) -> bool:
        """The connection takes no more frames."""

    def send(self, frame: bytes) -> object:
        """Write a finished frame without checks (the caller checked `dead`)."""

    def write(self, payload: bytes) -> bool:
        """Queue one text message; False when the connection is already gone."""

    def write_frame(self, frame: bytes) -> bool:
        """Queue one finished frame (header included); False when the connection is gone."""

    def probe(self, now: float) -> None:
        """Sample whether the peer still takes data (feeds `blocked_for`)."""

    def buffered(self) -> int:
        """Bytes accepted but not yet handed to the kernel."""

    def blocked_for(self, now: float) -> float:
        """Seconds the connection has refused to drain (0 when it is draining)."""

    def close(self, code: int, reason: str) -> None: ...

    def detach(
        self,
        on_message: Callable[[Mapping[str, Any]], Awaitable[bool]],
        on_gone: Callable[[], None],
    ) -> bool:
        """Take the client's messages as callbacks, so the ASGI handler may return.

        True: the connection now calls `on_message` per message (False back ends it) and
        `on_gone` once when it ends. False: not supported here; keep the receive loop.
        """
