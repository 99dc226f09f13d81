"""The Sparkplug topic namespace (spec chapter 4):

    spBv1.0/<group_id>/<message_type>/<edge_node_id>[/<device_id>]
    spBv1.0/STATE/<host_id>

plus the JSON payload of STATE messages. Pure functions; ids are checked where they are
configured, so a bad id is a config problem, never a malformed topic on the wire.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from scada.core.errors import ScadaError

NAMESPACE = "spBv1.0"  # [tck-id-topic-structure-namespace-a]
NODE_TYPES = ("NBIRTH", "NDEATH", "NDATA", "NCMD")
DEVICE_TYPES = ("DBIRTH", "DDEATH", "DDATA", "DCMD")
MessageType = Literal["NBIRTH", "NDEATH", "NDATA", "NCMD", "DBIRTH", "DDEATH", "DDATA", "DCMD"]
_RESERVED = frozenset("+/#")


class PayloadError(ScadaError):
    """A payload that is not a Sparkplug B protobuf (or STATE JSON), or a metric that breaks
    its rules. Here, not in spbcodec, so settings and topics load without protobuf."""


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a group, edge node, device or host id, or None
    ([tck-id-topic-structure-namespace-valid-group-id], -valid-edge-node-id, -valid-device-id)."""
    if not value:
        return "must not be empty"
    bad = sorted(_RESERVED & set(value))
    if bad:
        return f"must not contain {' '.join(bad)} (reserved in MQTT topics)"
    if any(ord(c) < 32 for c in value):
        return "must not contain control characters"
    return None


def check_id(value: str) -> str:
    """For pydantic AfterValidator: the id, or ValueError."""
    problem = id_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    group: str
    message_type: MessageType
    edge_node: str
    device: str | None = None

    def __str__(self) -> str:
        base = f"{NAMESPACE}/{self.group}/{self.message_type}/{self.edge_node}"
        return base if self.device is None else f"{base}/{self.device}"


@dataclass(frozen=True, slots=True)
class StateTopic:
    host_id: str

    def __str__(self) -> str:
        return state_topic(self.host_id)


def node_topic(group: str, message_type: MessageType, edge_node: str) -> str:
    """[tck-id-topic-structure-namespace-device-id-non-associated-message-types]"""
    assert message_type in NODE_TYPES
    return f"{NAMESPACE}/{group}/{message_type}/{edge_node}"


def device_topic(group: str, message_type: MessageType, edge_node: str, device: str) -> str:
    """[tck-id-topic-structure-namespace-device-id-associated-message-types]"""
    assert message_type in DEVICE_TYPES
    return f"{NAMESPACE}/{group}/{message_type}/{edge_node}/{device}"


def state_topic(host_id: str) -> str:
    """[tck-id-host-topic-phid-birth-topic]"""
    return f"{NAMESPACE}/STATE/{host_id}"


def parse_topic(topic: str) -> Topic | StateTopic | None:
    """The parts of a Sparkplug B topic; None for anything else (another namespace, a wrong
    number of levels, a device id on a node message or none on a device message)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != NAMESPACE:
        return None
    if parts[1] == "STATE":
        return StateTopic(parts[2]) if len(parts) == 3 and parts[2] else None
    if len(parts) == 4 and parts[2] in NODE_TYPES:
        return Topic(parts[1], parts[2], parts[3])  # type: ignore[arg-type]
    if len(parts) == 5 and parts[2] in DEVICE_TYPES and parts[4]:
        return Topic(parts[1], parts[2], parts[3], parts[4])  # type: ignore[arg-type]
    return None


def state_payload(online: bool, timestamp: int) -> bytes:
    """STATE birth/death: JSON with exactly `online` and `timestamp` (ms since the epoch)
    ([tck-id-host-topic-phid-birth-payload], [tck-id-host-topic-phid-death-payload])."""
    return json.dumps({"online": online, "timestamp": timestamp}, separators=(",", ":")).encode()


def parse_state(data: bytes) -> tuple[bool, int]:
    """(online, timestamp) of a STATE payload; PayloadError if it is not one."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        raise PayloadError(f"STATE payload is not JSON: {err}") from err
    if not isinstance(obj, dict):
        raise PayloadError("STATE payload is not a JSON object")
    online, ts = obj.get("online"), obj.get("timestamp")
    if not isinstance(online, bool):
        raise PayloadError("STATE payload: 'online' must be true or false")
    if not isinstance(ts, int | float) or isinstance(ts, bool) or ts < 0:
        raise PayloadError("STATE payload: 'timestamp' must be milliseconds since the epoch")
    return online, int(ts)
