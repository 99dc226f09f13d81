"""Client → server messages: parse, validate and dispatch; every failure is an error frame.

Nothing here raises to the caller: bad JSON, oversize, unknown types and invalid fields turn
into `error` frames and leave the connection's state unchanged.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from scada.core.errors import Refused
from scada.core.roles import role_allows
from scada.fanout.broadcaster import ALL_TYPES, Client

log = logging.getLogger(__name__)

RequestId = Annotated[str | int, Field(union_mode="left_to_right")] | None


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: RequestId = None
    timestamp: str | None = None


class SubscribeData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lines: list[str] | Literal["*"] = "*"
    types: list[Literal["production_data", "alarm"]] | None = None  # None: every type


class Subscribe(_Msg):
    type: Literal["subscribe"]
    data: SubscribeData = SubscribeData()


class Heartbeat(_Msg):
    type: Literal["heartbeat"]
    data: Any = None


MAX_BULK_ACK = 1000


class AckData(BaseModel):
    """One occurrence (`alarm_id`) or several (`alarm_ids`, one comment for all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alarm_id: int | None = None
    alarm_ids: list[int] | None = Field(default=None, min_length=1, max_length=MAX_BULK_ACK)
    comment: str = Field(default="", max_length=2000)

    @model_validator(mode="after")
    def _one_or_many(self) -> AckData:
        if (self.alarm_id is None) == (self.alarm_ids is None):
            raise ValueError("give exactly one of alarm_id or alarm_ids")
        return self


class Ack(_Msg):
    type: Literal["ack"]
    data: AckData


class ShelveData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alarm: str = Field(min_length=1, max_length=200)
    minutes: float = Field(default=60, gt=0)
    comment: str = Field(default="", max_length=2000)


class Shelve(_Msg):
    type: Literal["shelve"]
    data: ShelveData


class UnshelveData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    alarm: str = Field(min_length=1, max_length=200)
    comment: str = Field(default="", max_length=2000)


class Unshelve(_Msg):
    type: Literal["unshelve"]
    data: UnshelveData


class ResumeData(BaseModel):
    """`epoch`: the one the cursor belongs to (`snapshot.epoch`); None: the server's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    alarm_cursor: int = Field(ge=0)
    epoch: str | None = Field(default=None, min_length=1, max_length=200)


class Resume(_Msg):
    type: Literal["resume"]
    data: ResumeData


Request = Annotated[
    Subscribe | Heartbeat | Ack | Shelve | Unshelve | Resume, Field(discriminator="type")
]
_REQUEST = TypeAdapter(Request)
KNOWN_TYPES = frozenset({"subscribe", "heartbeat", "ack", "shelve", "unshelve", "resume"})
# Minimum role per request type (viewer < operator < engineer < admin).
REQUIRED_ROLE = {"ack": "operator", "shelve": "operator", "unshelve": "operator"}


class Services(Protocol):
    """What the handler needs from the rest of the server (the hub implements it)."""

    @property
    def line_ids(self) -> list[str]: ...

    def resubscribe(
        self, client: Client, lines: frozenset[str] | None, types: frozenset[str]
    ) -> None: ...

    async def ack(self, client: Client, data: AckData) -> Any: ...

    async def shelve(self, client: Client, data: ShelveData) -> Any: ...

    async def unshelve(self, client: Client, data: UnshelveData) -> Any: ...

    async def resume(self, client: Client, cursor: int, epoch: str | None = None) -> None: ...

    async def audit_refusal(self, client: Client, action: str, target: str) -> None: ...


# A request understood but refused becomes `reply ok:false error:<code>`; the one refusal
# type of the project, under the name this module has always used.
RequestError = Refused


class MessageHandler:
    def __init__(self, services: Services, *, max_bytes: int) -> None:
        self.services = services
        self.max_bytes = max_bytes

    async def handle(self, client: Client, raw: str | bytes) -> None:
        size = len(raw.encode() if isinstance(raw, str) else raw)
        if size > self.max_bytes:
            self._error(
                client,
                "message_too_large",
                f"message of {size} bytes is over the {self.max_bytes} byte limit",
            )
            return
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            self._error(client, "invalid_json", f"not JSON: {err}")
            return
        if not isinstance(parsed, dict):
            self._error(client, "invalid_message", "a message must be a JSON object", parsed)
            return
        kind = parsed.get("type")
        if kind not in KNOWN_TYPES:
            known = ", ".join(sorted(KNOWN_TYPES))
            self._error(client, "unknown_type", f"unknown type {kind!r}; one of {known}", parsed)
            return
        try:
            request = _REQUEST.validate_python(parsed)
        except ValidationError as err:
            self._error(client, "invalid_message", _describe(err), parsed)
            return
        await self._dispatch(client, request, parsed)

    async def _dispatch(self, client: Client, request: Any, original: dict[str, Any]) -> None:
        needed = REQUIRED_ROLE.get(request.type)
        if needed is not None and not role_allows(client.role, needed):
            await self.services.audit_refusal(client, request.type, _target(request))
            self._reply(
                client,
                request.id,
                ok=False,
                error="forbidden",
                message=f"{request.type} needs role {needed}; you are {client.role}",
            )
            return
        try:
            result = await self._run(client, request)
        except Refused as err:
            if err.code == "invalid_message":
                self._error(client, err.code, err.message, original)
            if err.code != "invalid_message" or request.id is not None:
                self._reply(client, request.id, ok=False, error=err.code, message=err.message)
            return
        if request.type == "heartbeat":
            client.send("heartbeat", request.data if request.data is not None else {})
        if request.id is not None:
            self._reply(client, request.id, ok=True, result=result)

    async def _run(self, client: Client, request: Any) -> Any:
        if isinstance(request, Subscribe):
            return self._subscribe(client, request.data)
        if isinstance(request, Heartbeat):
            return {}
        if isinstance(request, Resume):
            await self.services.resume(client, request.data.alarm_cursor, request.data.epoch)
            return {"resumed_from": request.data.alarm_cursor}
        if isinstance(request, Ack):
            return await self.services.ack(client, request.data)
        if isinstance(request, Shelve):
            return await self.services.shelve(client, request.data)
        return await self.services.unshelve(client, request.data)

    def _subscribe(self, client: Client, data: SubscribeData) -> dict[str, Any]:
        lines: frozenset[str] | None = None
        if data.lines != "*":
            unknown = [line for line in data.lines if line not in self.services.line_ids]
            if unknown:
                raise RequestError("invalid_message", f"unknown line(s): {', '.join(unknown)}")
            lines = frozenset(data.lines)
        types = ALL_TYPES if data.types is None else frozenset(data.types)
        self.services.resubscribe(client, lines, types)
        return {"lines": "*" if lines is None else sorted(lines), "types": sorted(types)}

    def _reply(self, client: Client, request_id: Any, *, ok: bool, **fields: Any) -> None:
        if request_id is None and ok:
            return
        if request_id is None:
            # A refused request without an id still deserves an answer.
            self._error(client, fields.get("error", "refused"), fields.get("message", ""))
            return
        body: dict[str, Any] = {"id": request_id, "ok": ok}
        body.update({k: v for k, v in fields.items() if v is not None})
        client.send("reply", body)

    def _error(self, client: Client, code: str, message: str, original: Any = None) -> None:
        data: dict[str, Any] = {"code": code, "message": message}
        if original is not None and _echoable(original):
            data["original_message"] = original
        client.send("error", data)


def _echoable(original: Any) -> bool:
    """Whether the offending message can be echoed back: JSON nested deeper than orjson
    writes (255 levels) parses but cannot be re-encoded, and must not cost a 1011."""
    try:
        orjson.dumps(original)
    except orjson.JSONEncodeError:
        return False
    return True


def _describe(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"][1:]) or "message"
        parts.append(f"{loc}: {e['msg']}")
    return "; ".join(parts)


def _target(request: Any) -> str:
    data = getattr(request, "data", None)
    for attr in ("alarm_id", "alarm_ids", "alarm"):
        value = getattr(data, attr, None) if data is not None else None
        if value is not None:
            return ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return ""
