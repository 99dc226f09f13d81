"""`scada watch`: the live plant in a terminal, redrawn twice a second.

Not on a terminal (piped to a file or a program) it writes plain text blocks, no escape
codes, every PLAIN_EVERY_S seconds and at once when the status changes. The URL may be the
server's WebSocket (ws://, wss://) or its page (http://, https://: the socket is /ws there).

Truth first: the screen is redrawn on a timer, not per frame, so when frames stop (server
stopped, socket dead, gateway starved) it says "NO LIVE DATA since hh:mm:ss", dims every value
and shows line states as unknown; when it cannot connect it says so and why, with the attempt.
A server that says its plant data stopped (a cluster gateway whose bus went quiet: `data_status`
live false) gets the same screen with its reason, though its heartbeats still arrive. One
client serves every reconnect, so each new connection resumes with the alarm cursor and epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidStatus

from scada.tools.client import PlantClient, PolicyClose, backoff_delay

REDRAW_S = 0.5
PLAIN_EVERY_S = 5.0  # not a terminal: a block this often, and at every change of status
NO_DATA_AFTER_S = 2.0  # no frame for this long: the values on screen are not live
CLEAR = "\x1b[H\x1b[2J"
COLOURS = {"good": "", "uncertain": "\x1b[33m", "stale": "\x1b[2m", "bad": "\x1b[31m"}
DIM = "\x1b[2m"
REVERSE = "\x1b[7m"
RESET = "\x1b[0m"


@dataclass
class WatchState:
    """What the screen shows; written by the receive loop, read by the redraw loop."""

    url: str
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    connected: bool = False
    attempt: int = 0
    last_frame: float | None = None  # wall-clock seconds of the last frame
    last_data: float | None = None  # wall-clock seconds of the last plant data
    data_status: dict[str, Any] | None = None  # the server's word while its data are not live
    last_error: str | None = None
    fatal: str | None = None

    def live(self, now: float, no_data_after: float = NO_DATA_AFTER_S) -> bool:
        return (
            self.connected
            and self.data_status is None
            and self.last_frame is not None
            and now - self.last_frame <= no_data_after
        )

    def status(self, now: float, no_data_after: float = NO_DATA_AFTER_S) -> str:
        if self.fatal:
            return f"STOPPED: {self.fatal}"
        if self.live(now, no_data_after):
            return f"live {self.url}"
        since_at = self.last_frame
        if self.connected and self.data_status is not None:
            reason = self.data_status.get("reason") or ""
            what = "plant data not reaching the server" + (f" ({reason})" if reason else "")
            # The older of the server's word and our last data: a gateway notices a quiet
            # bus only after its read deadline.
            said = _epoch_seconds(self.data_status.get("since"))
            known = [t for t in (said, self.last_data) if t is not None]
            since_at = min(known) if known else None
        elif self.connected:
            what = "connected but no frames"
        elif self.last_frame is None and self.last_error is None:
            what = f"connecting to {self.url}"  # the first attempt has not ended yet
        elif self.last_frame is None:
            what = f"cannot connect to {self.url}: {self.last_error}"
        else:
            what = f"reconnecting to {self.url}: {self.last_error or 'connection lost'}"
        since = (
            time.strftime("%H:%M:%S", time.localtime(since_at)) if since_at is not None else "start"
        )
        attempt = "" if self.connected else f" (attempt {self.attempt})"
        return f"NO LIVE DATA since {since} — {what}{attempt}"


def _epoch_seconds(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _num(value: Any, width: int, decimals: int) -> str:
    if value is None:
        return "—".rjust(width)
    return f"{value:{width}.{decimals}f}"


def ws_url(url: str) -> str:
    """The WebSocket URL for what a user typed: ws(s) as given; http(s) of the server (its
    page) mapped to the socket on it; HOST:PORT taken as ws://HOST:PORT/ws. ValueError
    with a sentence for anything else."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        raise ValueError(
            f"not a server URL: {url!r}; give ws://HOST:PORT/ws, wss://…, or the page's "
            "http(s)://HOST:PORT/"
        )
    path = parts.path
    if parts.scheme.lower() in ("http", "https") and path in ("", "/"):
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path or "/ws", parts.query, ""))


def render(
    lines: dict[str, dict[str, Any]],
    alarms: dict[str, dict[str, Any]],
    status: str,
    *,
    live: bool = True,
    plain: bool = False,
) -> str:
    """The screen. Not live: banner in reverse video, states unknown, every value dimmed.
    plain: no escape codes (not a terminal); a banner that is not live starts with "!! "."""
    head = f"SCADA plant — {status} — {time.strftime('%H:%M:%S %Z')}"
    if not live:
        head = f"!! {head}" if plain else f"{REVERSE}{head}{RESET}"
    out = [head, ""]
    out.append(
        f"{'line':>4} {'state':<9}{'quality':<10}{'zones °C':^27} {'die':>6} "
        f"{'diam mm':>8} {'m/min':>6} {'A':>6} {'bar':>6}"
    )
    for line_id in sorted(lines, key=lambda s: (len(s), s)):
        s = lines[line_id]
        zones = " ".join(_num(v, 6, 1) for v in s.get("body_temperatures") or [])
        quality = s.get("quality", "good") if live else "no data"
        known = (
            live
            and quality != "stale"
            and s.get("state")
            and "state" not in (s.get("bad_tags") or [])
        )
        state = s["state"] if known else "unknown"
        colour = "" if plain else COLOURS.get(quality, "") if live else DIM
        out.append(
            f"{colour}{line_id:>4} {state:<9}{quality:<10}{zones:<27} "
            f"{_num(s.get('die_temperature'), 6, 1)} {_num(s.get('diameter'), 8, 3)} "
            f"{_num(s.get('line_speed'), 6, 2)} {_num(s.get('motor_current'), 6, 1)} "
            f"{_num(s.get('melt_pressure'), 6, 1)}{RESET if colour else ''}"
        )
    active = [a for a in alarms.values() if a.get("state") != "normal"]
    out.append("")
    out.append(f"alarms: {len(active)}" + ("" if live else " (as last seen)"))
    for a in sorted(active, key=lambda a: str(a.get("raised_at")), reverse=True)[:10]:
        out.append(
            f"  [{a.get('severity', ''):>8}] {a.get('state', ''):<16} {a.get('message', '')}"
        )
    return "\n".join(out)


def _apply(st: WatchState, frame: dict[str, Any], only: list[str] | None) -> None:
    kind = frame.get("type")
    data: Any = frame.get("data")
    if kind == "snapshot":
        st.lines = {s["production_line_id"]: s for s in data["lines"]}
        if only:
            st.lines = {k: v for k, v in st.lines.items() if k in only}
        # The truth, whole: also after a resume the server could not serve (recovered: false),
        # whose events before it may belong to another epoch.
        st.alarms = {a["alarm"]: a for a in data.get("alarms", [])}
        if data.get("data_live") is not False:
            st.last_data = time.time()
    elif kind == "production_data":
        st.last_data = time.time()
        for s in data:
            st.lines[s["production_line_id"]] = s
    elif kind == "alarm":
        st.alarms[data["alarm"]] = data


async def receive(st: WatchState, *, lines: list[str] | None, token: str | None) -> None:
    """Connect, stream into `st`, and reconnect with backoff; stops on 401/403 and 1008."""
    client = PlantClient(st.url, token=token, reconnect=False)  # keeps cursor and epoch
    while True:
        try:
            await client.connect()
            st.connected = True
            st.last_error = None
            if lines and client.connects == 1:  # a reconnect sends it again by itself
                await client.subscribe(lines=lines)
            while True:
                frame = await client.recv()  # raises ConnectionClosed with the close code
                st.last_frame = time.time()
                st.attempt = 0
                st.data_status = client.data_status
                _apply(st, frame, lines)
        except InvalidStatus as err:
            code = err.response.status_code
            if code in (401, 403):
                st.fatal = f"server refused the connection ({code}); check --token"
                return
            st.last_error = f"HTTP {code}"
        except PolicyClose as err:
            st.fatal = f"server closed the session: {err}"
            return
        except ConnectionClosed as err:
            code = err.rcvd.code if err.rcvd is not None else 1006
            if code == 1008:
                st.fatal = f"server closed the session: {err.rcvd.reason if err.rcvd else ''}"
                return
            st.last_error = f"connection closed ({code})"
        except (OSError, TimeoutError) as err:
            st.last_error = str(err) or type(err).__name__
        finally:
            st.connected = False
            st.data_status = None
            with contextlib.suppress(Exception):
                await client.close()
        await asyncio.sleep(backoff_delay(st.attempt))
        st.attempt += 1


async def watch(
    url: str,
    *,
    lines: list[str] | None = None,
    token: str | None = None,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    terminal = out.isatty()
    st = WatchState(url)
    task = asyncio.create_task(receive(st, lines=lines, token=token))
    last_kind: tuple[bool, str] | None = None
    next_plain = 0.0
    try:
        while True:
            now = time.time()
            live = st.live(now)
            status = st.status(now)
            kind = (live, status.split(" — ")[0] if not live else "live")
            if terminal:
                out.write(CLEAR + render(st.lines, st.alarms, status, live=live) + "\n")
            elif kind != last_kind or time.monotonic() >= next_plain:
                next_plain = time.monotonic() + PLAIN_EVERY_S
                out.write(render(st.lines, st.alarms, status, live=live, plain=True) + "\n\n")
            last_kind = kind
            out.flush()
            if task.done():
                if st.fatal:
                    raise SystemExit(f"scada watch: {st.fatal}")
                task.result()
                return
            await asyncio.sleep(REDRAW_S)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
