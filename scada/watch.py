"""`scada watch`: the live plant in a terminal, redrawn twice a second."""

from __future__ import annotations

import sys
import time
from typing import Any

from scada.client import PlantClient

REDRAW_S = 0.5
CLEAR = "\x1b[H\x1b[2J"
COLOURS = {"good": "", "uncertain": "\x1b[33m", "stale": "\x1b[2m", "bad": "\x1b[31m"}
RESET = "\x1b[0m"


def _num(value: Any, width: int, decimals: int) -> str:
    if value is None:
        return "—".rjust(width)
    return f"{value:{width}.{decimals}f}"


def render(lines: dict[str, dict[str, Any]], alarms: dict[str, dict[str, Any]], status: str) -> str:
    out = [f"SCADA plant — {status} — {time.strftime('%H:%M:%S')}", ""]
    out.append(
        f"{'line':>4} {'state':<9}{'quality':<10}{'zones °C':^27} {'die':>6} "
        f"{'diam mm':>8} {'m/min':>6} {'A':>6} {'bar':>6}"
    )
    for line_id in sorted(lines, key=lambda s: (len(s), s)):
        s = lines[line_id]
        zones = " ".join(_num(v, 6, 1) for v in s.get("body_temperatures") or [])
        colour = COLOURS.get(s.get("quality", "good"), "")
        out.append(
            f"{colour}{line_id:>4} {s.get('state') or '—':<9}{s.get('quality', ''):<10}{zones:<27} "
            f"{_num(s.get('die_temperature'), 6, 1)} {_num(s.get('diameter'), 8, 3)} "
            f"{_num(s.get('line_speed'), 6, 2)} {_num(s.get('motor_current'), 6, 1)} "
            f"{_num(s.get('melt_pressure'), 6, 1)}{RESET if colour else ''}"
        )
    active = [a for a in alarms.values() if a.get("state") != "normal"]
    out.append("")
    out.append(f"alarms: {len(active)}")
    for a in sorted(active, key=lambda a: str(a.get("raised_at")), reverse=True)[:10]:
        out.append(
            f"  [{a.get('severity', ''):>8}] {a.get('state', ''):<16} {a.get('message', '')}"
        )
    return "\n".join(out)


async def watch(url: str, *, lines: list[str] | None = None, token: str | None = None) -> None:
    latest: dict[str, dict[str, Any]] = {}
    alarms: dict[str, dict[str, Any]] = {}
    last_draw = 0.0
    async with PlantClient(url, token=token) as client:
        if lines:
            await client.subscribe(lines=lines)
        async for frame in client:
            kind = frame.get("type")
            data: Any = frame.get("data")
            if kind == "snapshot":
                latest = {s["production_line_id"]: s for s in data["lines"]}
                if lines:
                    latest = {k: v for k, v in latest.items() if k in lines}
                alarms = {a["alarm"]: a for a in data.get("alarms", [])}
            elif kind == "production_data":
                for s in data:
                    latest[s["production_line_id"]] = s
            elif kind == "alarm":
                alarms[data["alarm"]] = data
            now = time.monotonic()
            if now - last_draw >= REDRAW_S:
                last_draw = now
                sys.stdout.write(CLEAR + render(latest, alarms, f"{client.state} {url}") + "\n")
                sys.stdout.flush()
