"""The `opcua` driver: an asyncua client reading a PLC or OPC UA server.

Two modes:

- ``subscription`` (default): one subscription whose monitored items sample every tag at
  ``sampling_interval_ms``; `read()` returns the latest value of every tag without a round
  trip. The subscription's publish responses (data or keep-alive) are the heartbeat: when
  none arrived for ``watchdog_ms``, or the connection dropped, `read()` raises, the poll loop
  marks the lines bad and reconnects through `close()` + `connect()`, which creates the
  subscription again, once. Its short lifetime lets the server delete a subscription left
  behind by a dead connection within a few seconds, so monitored items never pile up.
- ``read``: one batched Read request of all nodes per poll.

Tag map: a node id (or browse path) template with ``{line}``, ``{node}`` and ``{ns}``
placeholders plus a table of ``{node}`` names per tag, and optional per-line overrides; see
docs/opcua.md. StatusCodes map to quality (drivers.opcua_quality) and SourceTimestamps are
kept as the reading's source times.

Security: policy None or Basic256Sha256 (Sign / SignAndEncrypt) with a client certificate
and key; the server certificate must be in the trust directory (or signed by a CA there) or
match a pinned certificate / SHA-256 fingerprint, otherwise `connect()` fails with a
DriverError naming the certificate. Username/password login, the password preferably from an
environment variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from datetime import UTC
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from drivers.base import Driver, DriverContext, DriverSettings, Reading, register
from drivers.opcua_quality import map_status
from drivers.opcua_settings import (
    OpcUaSettings,
    relative_path,
    tag_addresses,
)
from drivers.opcua_trust import ServerTrust, first_der
from scada.core.config import DeviceConfig, PlantConfig
from scada.core.errors import DriverError
from scada.core.tags import Quality

log = logging.getLogger(__name__)

# A subscription left without publish requests (dead connection) expires on the server after
# about this long; it bounds how long an abandoned subscription's monitored items linger.
SUBSCRIPTION_LIFETIME_MS = 3000
_NAN = float("nan")


def _epoch(dv: ua.DataValue) -> float:
    ts = dv.SourceTimestamp or dv.ServerTimestamp
    if ts is None:
        return time.time()
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.timestamp()


@register("opcua")
class OpcUaDriver(Driver):
    settings_model: ClassVar[type[DriverSettings]] = OpcUaSettings
    settings: OpcUaSettings

    def __init__(self, device: DeviceConfig, settings: DriverSettings, context: DriverContext):
        super().__init__(device, settings, context)
        assert isinstance(settings, OpcUaSettings)
        self.settings = settings
        schema = context.schema
        triples = [
            (ref.index, line_id, ref.name)
            for line_id in self.line_ids
            for ref in schema.refs[schema.line_slices[line_id]]
        ]
        self.tags = tag_addresses(settings, triples)
        n = len(self.tags)
        self._idx = np.array([t.index for t in self.tags], dtype=np.intp)
        self._values = np.full(n, np.nan)
        self._quality = np.full(n, Quality.BAD, dtype=np.uint8)
        self._time = np.zeros(n)
        self._have = np.zeros(n, dtype=bool)
        self._reasons: dict[int, str] = {}
        self._node_ids: list[ua.NodeId | None] = [None] * n
        self._client: Client | None = None
        self._trust = ServerTrust(settings.security, device.name)
        self._subscription_id: int | None = None
        self._monitored: int = 0
        self._last_publish = 0.0
        self._lost: str | None = None
        self._initial = asyncio.Event()
        self._pending_initial = 0
        self._read_params: ua.ReadParameters | None = None
        self._read_positions = np.empty(0, dtype=np.intp)
        # Public counters for /ready, tests and benchmarks.
        self.subscriptions_created = 0
        self.connects = 0

    # -- config check ----------------------------------------------------------------------

    @classmethod
    def check(cls, device: DeviceConfig, config: PlantConfig, path: str) -> list[tuple[str, str]]:
        try:
            settings = OpcUaSettings.model_validate(device.settings)
        except ValidationError:
            return []  # reported by the settings model already
        base = f"{path}.settings"
        line_ids = config.device_lines(device)
        known_lines = {line.id for line in config.lines}
        tags_by_line = {lid: set(config.line(lid).tags) for lid in line_ids if lid in known_lines}
        all_tags = set().union(*tags_by_line.values()) if tags_by_line else set()
        problems: list[tuple[str, str]] = []
        for tag in settings.nodes:
            if tag not in all_tags:
                problems.append((f"{base}.nodes.{tag}", f"no tag {tag!r} on the device's lines"))
        for lid, tags in settings.overrides.items():
            if lid not in tags_by_line:
                problems.append(
                    (f"{base}.overrides.{lid}", f"line {lid!r} is not fed by this device")
                )
                continue
            for tag in tags:
                if tag not in tags_by_line[lid]:
                    problems.append(
                        (f"{base}.overrides.{lid}.{tag}", f"no tag {tag!r} on line {lid}")
                    )
        for lid in settings.line_keys:
            if lid not in tags_by_line:
                problems.append(
                    (f"{base}.line_keys.{lid}", f"line {lid!r} is not fed by this device")
                )
        unmapped: dict[str, list[str]] = {}
        for lid, line_tags in tags_by_line.items():
            for tag in sorted(line_tags):
                if tag not in settings.nodes and tag not in settings.overrides.get(lid, {}):
                    unmapped.setdefault(tag, []).append(lid)
        for tag, lids in unmapped.items():
            problems.append(
                (f"{base}.nodes.{tag}", f"no node for tag {tag!r} (line(s) {', '.join(lids)})")
            )
        return problems

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        s = self.settings
        client = Client(
            s.endpoint,
            timeout=s.request_timeout_ms / 1000,
            watchdog_intervall=s.watchdog_ms / 1000,
        )
        client.name = f"scada-stream {self.device.name}"
        client.description = client.name
        client.application_uri = s.security.application_uri
        client.session_timeout = s.session_timeout_ms
        if s.username is not None:
            client.set_user(s.username)
            client.set_password(self._password())
        self._reset_values()
        try:
            await self._trust.load()
            if s.security.has_trust:
                client.certificate_validator = self._trust
            if s.security.policy != "None":
                await self._secure(client)
            await client.connect()
            self._client = client
            await self._resolve(client)
            if s.mode == "subscription":
                await self._subscribe(client)
            else:
                self._prepare_read()
        except DriverError:
            await self._abandon(client)
            raise
        except asyncio.CancelledError:
            await self._abandon(client)
            raise
        except Exception as err:
            await self._abandon(client)
            raise DriverError(self._explain(err)) from err
        self.connects += 1

    def _password(self) -> str:
        s = self.settings
        if s.password_env is not None:
            value = os.environ.get(s.password_env)
            if value is None:
                raise DriverError(
                    f"device {self.device.name!r}: environment variable {s.password_env} "
                    "(password_env) is not set"
                )
            return value
        return s.password or ""

    async def _secure(self, client: Client) -> None:
        sec = self.settings.security
        policy = security_policies.SecurityPolicyBasic256Sha256
        mode = getattr(ua.MessageSecurityMode, sec.mode)
        endpoints = await client.connect_and_get_server_endpoints()
        try:
            ep = Client.find_endpoint(endpoints, mode, policy.URI)
        except ua.UaError:
            offered = sorted(
                {
                    f"{e.SecurityPolicyUri.rsplit('#', 1)[-1]}/{e.SecurityMode.name}"
                    for e in endpoints
                }
            )
            raise DriverError(
                f"device {self.device.name!r}: server offers no {sec.policy}/{sec.mode} "
                f"endpoint (it offers {', '.join(offered)})"
            ) from None
        if not ep.ServerCertificate:
            raise DriverError(f"device {self.device.name!r}: server sent no certificate")
        server_cert = x509.load_der_x509_certificate(first_der(ep.ServerCertificate))
        # Checked before any secure channel is opened with it.
        self._trust.verify(server_cert)
        key_password = None
        if sec.private_key_password_env is not None:
            key_password = os.environ.get(sec.private_key_password_env)
            if key_password is None:
                raise DriverError(
                    f"device {self.device.name!r}: environment variable "
                    f"{sec.private_key_password_env} (private_key_password_env) is not set"
                )
        assert sec.certificate is not None and sec.private_key is not None
        for label, p in (("certificate", sec.certificate), ("private_key", sec.private_key)):
            if not Path(p).is_file():
                raise DriverError(f"device {self.device.name!r}: security.{label} {p} not found")
        await client.set_security(
            policy,
            sec.certificate,
            sec.private_key,
            key_password,
            server_certificate=server_cert.public_bytes(Encoding.DER),
            mode=mode,
        )

    def _explain(self, err: BaseException) -> str:
        name = self.device.name
        if isinstance(err, ua.UaStatusCodeError):
            code = err.code
            if code == ua.StatusCodes.BadCertificateUntrusted and self._trust.last_error:
                return self._trust.last_error
            if code in (
                ua.StatusCodes.BadUserAccessDenied,
                ua.StatusCodes.BadIdentityTokenRejected,
                ua.StatusCodes.BadIdentityTokenInvalid,
            ):
                return f"device {name!r}: login refused for user {self.settings.username!r} ({err})"
            return f"device {name!r}: {self.settings.endpoint}: {err}"
        if isinstance(err, TimeoutError):
            return f"device {name!r}: {self.settings.endpoint}: no answer"
        if isinstance(err, OSError):
            return f"device {name!r}: cannot reach {self.settings.endpoint}: {err.strerror or err}"
        return f"device {name!r}: {self.settings.endpoint}: {type(err).__name__}: {err}"

    async def _resolve(self, client: Client) -> None:
        s = self.settings
        ns = None
        if s.namespace_uri is not None:
            try:
                ns = await client.get_namespace_index(s.namespace_uri)
            except ValueError:
                raise DriverError(
                    f"device {self.device.name!r}: server has no namespace {s.namespace_uri!r}"
                ) from None
        self._node_ids = [None] * len(self.tags)
        if s.browse_path is not None or s.node_id is None:
            await self._translate(client, ns)
            return
        for k, tag in enumerate(self.tags):
            if tag.address is None:
                self._reasons[tag.index] = "no node configured"
                continue
            text = tag.address.replace("{ns}", str(ns)) if ns is not None else tag.address
            try:
                self._node_ids[k] = ua.NodeId.from_string(text)
            except (ValueError, ua.UaStringParsingError) as err:
                self._reasons[tag.index] = f"bad node id {text!r}: {err}"

    async def _translate(self, client: Client, ns: int | None) -> None:
        # Overrides in browse_path mode are browse paths too; resolved in one request.
        todo = [k for k, t in enumerate(self.tags) if t.address is not None]
        for tag in self.tags:
            if tag.address is None:
                self._reasons[tag.index] = "no node configured"
        root = ua.NodeId(ua.Int32(ua.ObjectIds.RootFolder))
        paths = [
            ua.BrowsePath(
                StartingNode=root, RelativePath=relative_path(str(self.tags[k].address), ns)
            )
            for k in todo
        ]
        results = await client.uaclient.translate_browsepaths_to_nodeids(paths) if paths else []
        for k, result in zip(todo, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                target = result.Targets[0].TargetId
                self._node_ids[k] = ua.NodeId(target.Identifier, target.NamespaceIndex)
            else:
                _, reason = map_status(result.StatusCode.value)
                self._reasons[self.tags[k].index] = f"browse path {self.tags[k].address}: {reason}"

    def _prepare_read(self) -> None:
        positions = [k for k, nid in enumerate(self._node_ids) if nid is not None]
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        params.NodesToRead = [
            ua.ReadValueId(NodeId=self._node_ids[k], AttributeId=ua.AttributeIds.Value)
            for k in positions
        ]
        self._read_params = params
        self._read_positions = np.array(positions, dtype=np.intp)

    async def _subscribe(self, client: Client) -> None:
        s = self.settings
        publishing = s.publishing_ms
        keepalive = max(1, int(s.watchdog_ms / 2 // publishing))
        params = ua.CreateSubscriptionParameters(
            RequestedPublishingInterval=publishing,
            RequestedLifetimeCount=max(
                3 * keepalive, math.ceil(SUBSCRIPTION_LIFETIME_MS / publishing)
            ),
            RequestedMaxKeepAliveCount=keepalive,
            MaxNotificationsPerPublish=0,
            PublishingEnabled=True,
            Priority=0,
        )
        self._lost = None
        self._last_publish = time.monotonic()
        result = await client.uaclient.create_subscription(params, self._on_publish)
        self._subscription_id = result.SubscriptionId
        self.subscriptions_created += 1
        requests = []
        positions = []
        for k, nid in enumerate(self._node_ids):
            if nid is None:
                continue
            mp = ua.MonitoringParameters(
                ClientHandle=k,
                SamplingInterval=s.sampling_interval_ms,
                QueueSize=1,
                DiscardOldest=True,
            )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value),
                    MonitoringMode=ua.MonitoringMode.Reporting,
                    RequestedParameters=mp,
                )
            )
            positions.append(k)
        self._initial.clear()
        self._pending_initial = len(requests)
        create = ua.CreateMonitoredItemsParameters(
            SubscriptionId=result.SubscriptionId,
            TimestampsToReturn=ua.TimestampsToReturn.Both,
            ItemsToCreate=requests,
        )
        results = await client.uaclient.create_monitored_items(create) if requests else []
        self._monitored = 0
        for k, res in zip(positions, results, strict=True):
            if res.StatusCode.is_good():
                self._monitored += 1
            else:
                self._pending_initial -= 1
                _, reason = map_status(res.StatusCode.value)
                self._reasons[self.tags[k].index] = f"cannot monitor: {reason}"
                self._have[k] = True
                self._quality[k] = Quality.BAD
                self._values[k] = _NAN
                self._time[k] = time.time()
        if self._pending_initial <= 0:
            self._initial.set()
        # Initial values arrive with the first publish; wait so the first read is complete.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._initial.wait(), s.request_timeout_ms / 1000)

    def _on_publish(self, result: ua.PublishResult) -> None:
        """Publish response (data, status change or keep-alive) of our subscription."""
        self._last_publish = time.monotonic()
        data = result.NotificationMessage.NotificationData
        if not data:
            return
        for notification in data:
            if isinstance(notification, ua.DataChangeNotification):
                for item in notification.MonitoredItems:
                    self._store(item.ClientHandle, item.Value)
            elif isinstance(notification, ua.StatusChangeNotification):
                status = notification.Status
                if not status.is_good():
                    _, reason = map_status(status.value)
                    self._lost = f"subscription ended: {reason}"

    def _store(self, k: int, dv: ua.DataValue) -> None:
        if k < 0 or k >= len(self.tags):
            return
        if not self._have[k]:
            self._have[k] = True
            self._pending_initial -= 1
            if self._pending_initial <= 0:
                self._initial.set()
        code = dv.StatusCode.value if dv.StatusCode is not None else 0
        quality, reason = map_status(code)
        value = _NAN
        if quality != Quality.BAD:
            raw = dv.Value.Value if dv.Value is not None else None
            if isinstance(raw, int | float) and not isinstance(raw, complex):
                value = float(raw)
            else:
                quality, reason = Quality.BAD, f"value is not a number ({type(raw).__name__})"
        self._values[k] = value
        self._quality[k] = quality
        self._time[k] = _epoch(dv)
        index = self.tags[k].index
        if reason is None:
            self._reasons.pop(index, None)
        else:
            self._reasons[index] = reason

    def _reset_values(self) -> None:
        self._values[:] = np.nan
        self._quality[:] = Quality.BAD
        self._time[:] = 0.0
        self._have[:] = False
        self._reasons = {}
        self._subscription_id = None
        self._monitored = 0

    # -- reading ---------------------------------------------------------------------------

    async def read(self) -> Reading:
        client = self._client
        if client is None:
            raise DriverError(f"device {self.device.name!r}: not connected")
        if client.uaclient.state is not UaClientState.CONNECTED:
            raise DriverError(
                f"device {self.device.name!r}: connection to {self.settings.endpoint} lost"
            )
        if self.settings.mode == "read":
            await self._read_all(client)
        else:
            self._check_subscription()
        return self._reading()

    def _check_subscription(self) -> None:
        if self._lost is not None:
            raise DriverError(f"device {self.device.name!r}: {self._lost}")
        silent = time.monotonic() - self._last_publish
        if silent * 1000 > self.settings.watchdog_ms:
            raise DriverError(
                f"device {self.device.name!r}: no data or keep-alive from the server "
                f"for {silent * 1000:.0f} ms"
            )

    async def _read_all(self, client: Client) -> None:
        params = self._read_params
        if params is None:
            raise DriverError(f"device {self.device.name!r}: not connected")
        if not params.NodesToRead:
            self._mark_unmapped()
            return
        try:
            results = await client.uaclient.read(params)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise DriverError(self._explain(err)) from err
        for k, dv in zip(self._read_positions.tolist(), results, strict=True):
            self._store(k, dv)
        self._mark_unmapped()

    def _mark_unmapped(self) -> None:
        for k, nid in enumerate(self._node_ids):
            if nid is None and not self._have[k]:
                self._have[k] = True
                self._time[k] = time.time()

    def _reading(self) -> Reading:
        have = self._have
        if have.all():
            return Reading(
                self._idx.copy(),
                self._values.copy(),
                self._quality.copy(),
                self._time.copy(),
                dict(self._reasons),
            )
        reasons = {i: r for i, r in self._reasons.items()}
        return Reading(
            self._idx[have], self._values[have], self._quality[have], self._time[have], reasons
        )

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        client, self._client = self._client, None
        self._subscription_id = None
        self._read_params = None
        if client is not None:
            await self._abandon(client, graceful=True)

    async def _abandon(self, client: Client, *, graceful: bool = False) -> None:
        """Close the session (deleting its subscription) if the server answers; else drop it."""
        if self._client is client:
            self._client = None
        live = client.uaclient.state is UaClientState.CONNECTED
        try:
            if graceful and live:
                await asyncio.wait_for(client.disconnect(), self.settings.request_timeout_ms / 1000)
            else:
                client.uaclient.request_disconnect()
                await asyncio.wait_for(client.close_session(), 0.2)
        except (Exception, asyncio.CancelledError):
            pass
        with contextlib.suppress(Exception):
            client.disconnect_socket()

    def describe(self) -> dict[str, Any]:
        s = self.settings
        client = self._client
        return {
            "endpoint": s.endpoint,
            "mode": s.mode,
            "security": f"{s.security.policy}/{s.security.mode}"
            if s.security.policy != "None"
            else "None",
            # /ready is open to anyone: say how it logs in, not as whom.
            "login": "username" if s.username else "anonymous",
            "session": client.uaclient.state.value if client is not None else "closed",
            "subscription_id": self._subscription_id,
            "subscriptions_created": self.subscriptions_created,
            "monitored_items": self._monitored,
            "last_publish_age_ms": round((time.monotonic() - self._last_publish) * 1000)
            if s.mode == "subscription" and client is not None
            else None,
        }
