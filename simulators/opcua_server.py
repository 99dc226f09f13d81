"""The simulated plant behind a real OPC UA server (asyncua), for `scada simulate opcua`.

Address space (namespace ``urn:scada-stream:plant``, string node ids)::

    Objects/Plant                          ns=2;s=Plant
      Line1 .. Line8                       ns=2;s=Plant/Line{id}
        BodyTemperature1..4, DieTemperature, Diameter, LineSpeed, MotorCurrent,
        MeltPressure (Double), State (Int32: 0 stopped, 1 starting, 2 running, 3 fault)
                                           ns=2;s=Plant/Line{id}/{Name}

Every variable has an ``EngineeringUnits`` property (UN/CEFACT EUInformation) and, when the tag
has a span, an ``EURange``. Values are written at 10 Hz from a SimulatedPlant with the plant's
sample time as SourceTimestamp. Faults act like a real device would:

- ``sensor_dropout`` on a tag: its node reports ``BadSensorFailure``;
- ``source_stop`` on a line: its nodes keep their last value, as ``UncertainLastUsableValue``;
- ``server_unresponsive``: the server stops reading its sockets: requests (reads, publish)
  hang and no keep-alive is sent, on open and new connections alike, until cleared;
- ``connection_drop``: every connection and session is dropped and the listening socket is
  closed (new connections are refused) until cleared.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, cast

from asyncua import Server, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import User, UserRole
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.opcua_trust import der_fingerprint, fingerprint, load_cert
from scada.core.config import PlantConfig, TagConfig, resolve_data_path
from scada.core.fixedrate import FixedRate
from simulators import asyncua_adapter as internals
from simulators.asyncua_adapter import InternalServer, QuietBinaryServer
from simulators.plant import COL, SIM_TAGS
from simulators.scenario import ScheduledFault, load_scenario
from simulators.simulation import SimulatedPlant

log = logging.getLogger(__name__)

NAMESPACE_URI = "urn:scada-stream:plant"
APPLICATION_URI = "urn:scada-stream:plant-simulator"
UPDATE_HZ = 10.0
# Simulator tag → OPC UA browse name.
NODE_NAMES: dict[str, str] = {
    "body_temperature_1": "BodyTemperature1",
    "body_temperature_2": "BodyTemperature2",
    "body_temperature_3": "BodyTemperature3",
    "body_temperature_4": "BodyTemperature4",
    "die_temperature": "DieTemperature",
    "diameter": "Diameter",
    "line_speed": "LineSpeed",
    "motor_current": "MotorCurrent",
    "melt_pressure": "MeltPressure",
    "state": "State",
}
# UN/CEFACT common codes for the units the plant config uses (OPC UA Part 8 §5.6.3).
_UNECE = {"°C": "CEL", "mm": "MMT", "m/min": "2X", "A": "AMP", "bar": "BAR", "%": "P1"}
_UNECE_URI = "http://www.opcfoundation.org/UA/units/un/cefact"

SecurityName = Literal["None", "Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"]
SECURITY_ALL: tuple[SecurityName, ...] = (
    "None",
    "Basic256Sha256_Sign",
    "Basic256Sha256_SignAndEncrypt",
)
_POLICY_TYPES: dict[str, ua.SecurityPolicyType] = {
    "None": ua.SecurityPolicyType.NoSecurity,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
}
SERVER_CERT_NAME = "server_cert.der"
SERVER_KEY_NAME = "server_key.pem"


def node_id(line_id: str, tag: str, ns: int = 2) -> str:
    """The string NodeId of one tag of one line, e.g. ``ns=2;s=Plant/Line3/Diameter``."""
    return f"ns={ns};s=Plant/Line{line_id}/{NODE_NAMES[tag]}"


def _sid(text: str, ns: int) -> ua.NodeId:
    return ua.NodeId(ua.String(text), ua.Int16(ns))


def unit_id(code: str) -> int:
    """UN/CEFACT common code → EUInformation.UnitId (Part 8: the code's ASCII bytes)."""
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value


# The driver's trust code: the fingerprint the simulator logs is the one `pinned_sha256` takes.
certificate_fingerprint = der_fingerprint


async def ensure_server_certificate(cert_dir: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """Create a self-signed server certificate and key in `cert_dir` unless present."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert, key = cert_dir / SERVER_CERT_NAME, cert_dir / SERVER_KEY_NAME
    await setup_self_signed_certificate(
        key,
        cert,
        APPLICATION_URI,
        socket.gethostname(),
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        {"commonName": "scada-stream plant simulator"},
    )
    return cert, key


class _Users:
    """asyncua user manager: username/password from a dict; anonymous only if allowed."""

    def __init__(self, users: dict[str, str] | None, allow_anonymous: bool) -> None:
        self.users = dict(users or {})
        self.allow_anonymous = allow_anonymous

    def get_user(
        self,
        iserver: InternalServer,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User) if self.allow_anonymous else None
        expected = self.users.get(username)
        if expected is None or password is None:
            return None
        if not hmac.compare_digest(expected.encode(), password.encode()):
            return None
        return User(role=UserRole.User, name=username)


class OpcUaSimulator:
    """An asyncua server exposing a SimulatedPlant; `start()` / `stop()` can be repeated.

    Each `start()` builds a fresh server (fresh sessions and subscriptions, as a rebooted PLC
    would have) on the same port, while the plant model keeps running across restarts.
    """

    def __init__(
        self,
        config: PlantConfig,
        *,
        host: str = "127.0.0.1",
        port: int = 4840,
        scenario: str | Path | list[ScheduledFault] | None = None,
        security: Sequence[SecurityName] = SECURITY_ALL,
        users: dict[str, str] | None = None,
        allow_anonymous: bool | None = None,
        cert_dir: str | Path | None = None,
        update_hz: float = UPDATE_HZ,
        plant: SimulatedPlant | None = None,
    ) -> None:
        unknown = [s for s in security if s not in _POLICY_TYPES]
        if unknown or not security:
            raise ValueError(f"security must be a non-empty subset of {SECURITY_ALL}: {unknown}")
        self.config = config
        self.host = host
        self.port = port
        self.security = tuple(security)
        self.users = dict(users or {})
        # Anonymous login stays open unless users are configured (then it must be asked for).
        self.allow_anonymous = (not self.users) if allow_anonymous is None else allow_anonymous
        self.cert_dir = Path(cert_dir) if cert_dir else resolve_data_path(config, None, "opcua-sim")
        self.update_interval = 1.0 / update_hz
        if plant is None:
            line_ids = [line.id for line in config.lines]
            path = scenario if scenario is not None else config.simulator.scenario
            events = load_scenario(path, line_ids) if isinstance(path, str | Path) else path
            plant = SimulatedPlant(config.lines, seed=config.simulator.seed, scenario=events)
        self._plant = plant
        self.server: Server | None = None
        self.frozen = False  # server_unresponsive in force
        self.dropped = False  # connection_drop in force
        self.server_certificate: Path | None = None
        self._nodes: list[tuple[int, int, ua.NodeId, ua.VariantType]] = []  # row, col, id, type
        self._task: asyncio.Task[None] | None = None
        self._bserver: QuietBinaryServer | None = None

    # -- public ----------------------------------------------------------------------------

    @property
    def plant(self) -> SimulatedPlant:
        return self._plant

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.server is not None

    async def start(self) -> None:
        if self.server is not None:
            return
        server = Server(user_manager=_Users(self.users, self.allow_anonymous))  # type: ignore[arg-type]
        internals.require_asyncua(server)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("scada-stream plant simulator")
        await server.set_application_uri(APPLICATION_URI)
        server.set_security_policy([_POLICY_TYPES[s] for s in self.security])
        tokens: list[type] = []
        if self.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        if self.users:
            tokens.append(ua.UserNameIdentityToken)
        server.set_identity_tokens(tokens)
        if any(s != "None" for s in self.security):
            cert, key = await ensure_server_certificate(self.cert_dir, self.host)
            await server.load_certificate(str(cert))
            await server.load_private_key(str(key))
            self.server_certificate = cert
            der = cert.read_bytes()
            log.info(
                "OPC UA simulator certificate %s, SHA-256 %s", cert, certificate_fingerprint(der)
            )
        await self._build_address_space(server)
        await self._write_all(server, datetime.now(UTC))
        await self._listen(server)
        self.server = server
        self._task = asyncio.create_task(self._update_loop(), name="opcua-sim-update")
        log.info("OPC UA simulator listening on %s (security %s)", self.endpoint, self.security)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        server, self.server = self.server, None
        if server is None:
            return
        self.frozen = False
        await self._close_sessions(server)
        with contextlib.suppress(Exception):
            if self._bserver is not None and not self.dropped:
                await self._bserver.stop()
            await server.iserver.stop()
        self._bserver = None
        self.dropped = False
        log.info("OPC UA simulator on %s stopped", self.endpoint)

    async def sync_faults(self) -> None:
        """Act on whole-source faults now rather than at the next 100 ms update."""
        if self.server is not None:
            await self._apply_source_faults(self.server)

    def subscription_count(self) -> int:
        """Subscriptions alive on the server (all sessions)."""
        if self.server is None:
            return 0
        return internals.subscription_count(self.server)

    def monitored_item_count(self) -> int:
        """Monitored items alive on the server, summed over every subscription."""
        if self.server is None:
            return 0
        return internals.monitored_item_count(self.server)

    def session_count(self) -> int:
        if self.server is None:
            return 0
        return internals.session_count(self.server)

    # -- address space ---------------------------------------------------------------------

    async def _build_address_space(self, server: Server) -> None:
        ns = await server.register_namespace(NAMESPACE_URI)
        plant_obj = await server.nodes.objects.add_object(
            _sid("Plant", ns), ua.QualifiedName("Plant", ns)
        )
        self._nodes = []
        for row, line in enumerate(self.config.lines):
            line_obj = await plant_obj.add_object(
                _sid(f"Plant/Line{line.id}", ns), ua.QualifiedName(f"Line{line.id}", ns)
            )
            for tag in SIM_TAGS:
                name = NODE_NAMES[tag]
                nid = _sid(f"Plant/Line{line.id}/{name}", ns)
                vtype = ua.VariantType.Int32 if tag == "state" else ua.VariantType.Double
                initial = ua.Variant(0 if tag == "state" else 0.0, vtype)
                var = await line_obj.add_variable(nid, ua.QualifiedName(name, ns), initial)
                await self._add_properties(var, ns, line.tags.get(tag))
                self._nodes.append((row, COL[tag], nid, vtype))

    async def _add_properties(self, var: Any, ns: int, tag: TagConfig | None) -> None:
        unit = tag.unit if tag is not None else ""
        eu = ua.EUInformation(
            NamespaceUri=_UNECE_URI,
            UnitId=unit_id(_UNECE[unit]) if unit in _UNECE else -1,
            DisplayName=ua.LocalizedText(unit),
            Description=ua.LocalizedText(tag.description if tag is not None else ""),
        )
        # Node ids in our namespace, browse names in namespace 0: these are the standard
        # properties of OPC UA Part 8, and clients look for `0:EngineeringUnits`/`0:EURange`.
        await var.add_property(
            ua.NodeId(ua.Int32(0), ua.Int16(ns)),
            ua.QualifiedName("EngineeringUnits", 0),
            eu,
            datatype=ua.NodeId(ua.Int32(ua.ObjectIds.EUInformation)),
        )
        if tag is not None and tag.span is not None:
            rng = ua.Range(Low=tag.span[0], High=tag.span[1])
            await var.add_property(
                ua.NodeId(ua.Int32(0), ua.Int16(ns)),
                ua.QualifiedName("EURange", 0),
                rng,
                datatype=ua.NodeId(ua.Int32(ua.ObjectIds.Range)),
            )

    # -- updates and faults ----------------------------------------------------------------

    async def _update_loop(self) -> None:
        rate = FixedRate(self.update_interval)
        while True:
            server = self.server
            if server is None:
                return
            try:
                await self._tick(server)
            except Exception:
                log.exception("OPC UA simulator update failed")
            await rate.sleep()

    async def _tick(self, server: Server) -> None:
        self._plant.advance_to(time.monotonic())
        await self._apply_source_faults(server)
        if not self.frozen:
            await self._write_all(server, datetime.now(UTC))

    async def _write_all(self, server: Server, now: datetime) -> None:
        values, valid = self._plant.sample()
        silent = self._plant.model.overrides.silent
        aspace = server.iserver.aspace
        for row, col, nid, vtype in self._nodes:
            if silent[row]:
                # The device behind this line went quiet: last value, flagged as such.
                old = aspace.read_attribute_value(nid, ua.AttributeIds.Value)
                if old.StatusCode is None or old.StatusCode.is_good():
                    status = ua.StatusCodes.UncertainLastUsableValue
                    await self._write(aspace, nid, old.Value, status, now)
                continue
            value = float(values[row, col])
            status = ua.StatusCodes.Good if valid[row, col] else ua.StatusCodes.BadSensorFailure
            if not math.isfinite(value):
                status = ua.StatusCodes.BadSensorFailure
                value = 0.0
            raw: int | float = int(value) if vtype == ua.VariantType.Int32 else value
            await self._write(aspace, nid, ua.Variant(raw, vtype), status, now)

    @staticmethod
    async def _write(
        aspace: Any, nid: ua.NodeId, variant: ua.Variant | None, status: int, now: datetime
    ) -> None:
        dv = ua.DataValue(
            Value=variant,
            StatusCode=ua.StatusCode(ua.UInt32(status)),
            SourceTimestamp=cast(ua.DateTime, now),
            ServerTimestamp=cast(ua.DateTime, now),
        )
        await aspace.write_attribute_value(nid, ua.AttributeIds.Value, dv)

    async def _apply_source_faults(self, server: Server) -> None:
        faults = self._plant.faults
        want_frozen = faults.source_fault("server_unresponsive")
        want_dropped = faults.source_fault("connection_drop")
        if want_frozen != self.frozen:
            self._set_frozen(server, want_frozen)
        if want_dropped and not self.dropped:
            await self._drop(server)
        elif not want_dropped and self.dropped:
            await self._listen(server)
            self.dropped = False
            log.info("OPC UA simulator accepts connections again")

    def _set_frozen(self, server: Server, frozen: bool) -> None:
        self.frozen = frozen
        internals.set_reading(server, not frozen)
        log.info("OPC UA simulator %s", "stopped answering" if frozen else "answers again")

    async def _drop(self, server: Server) -> None:
        self.dropped = True
        await self._close_sessions(server)
        if self._bserver is not None:
            await self._bserver.stop()
            self._bserver = None
        log.info("OPC UA simulator dropped every connection and refuses new ones")

    @staticmethod
    async def _close_sessions(server: Server) -> None:
        # A dropped or restarted device forgets its sessions and subscriptions at once.
        await internals.close_sessions(server)

    async def _listen(self, server: Server) -> None:
        # Server.start() with a listener of our own, whose connections stay silent while
        # frozen and which `connection_drop` can close and reopen.
        if self.server is None:
            await internals.start_internals(server)
        bserver = await internals.listen(server, self.host, self.port, lambda: self.frozen)
        self.port = bserver.port
        self._bserver = bserver


async def serve_opcua(
    config: PlantConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 4840,
    scenario: str | None = None,
    security: Sequence[SecurityName] = SECURITY_ALL,
    users: dict[str, str] | None = None,
    allow_anonymous: bool | None = None,
    cert_dir: str | Path | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the simulated plant over OPC UA until cancelled (`scada simulate opcua`)."""
    sim = OpcUaSimulator(
        config,
        host=host,
        port=port,
        scenario=scenario,
        security=security,
        users=users,
        allow_anonymous=allow_anonymous,
        cert_dir=cert_dir,
    )
    await sim.start()
    try:
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def server_certificate_info(path: Path) -> dict[str, str]:
    """Subject and SHA-256 fingerprint of a DER or PEM certificate (for logs and docs)."""
    cert = load_cert(path)
    return {"subject": cert.subject.rfc4514_string(), "sha256": fingerprint(cert)}


__all__ = [
    "APPLICATION_URI",
    "NAMESPACE_URI",
    "NODE_NAMES",
    "SECURITY_ALL",
    "OpcUaSimulator",
    "certificate_fingerprint",
    "ensure_server_certificate",
    "node_id",
    "serve_opcua",
    "server_certificate_info",
]
