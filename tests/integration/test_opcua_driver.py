"""The OPC UA driver against the real OPC UA simulator (asyncua server) on loopback.

The simulator runs in its own thread and event loop (module-scoped: an asyncua server takes
seconds to start); each test drives the client side with `asyncio.run`. Waiting is always
"poll until a deadline", never a sleep standing in for synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from drivers.base import DriverContext
from drivers.opcua import OpcUaDriver
from drivers.registry import create_driver
from scada.core.config import PlantConfig, load_config
from scada.core.errors import DriverError, FaultError
from scada.core.tags import Quality, TagSchema
from scada.plant.poller import Poller
from scada.plant.tagstore import TagStore
from simulators.faults import FaultRequest
from simulators.opcua_server import OpcUaSimulator
from simulators.plant import COL
from tests.conftest import eventually_async, scaled

ROOT = Path(__file__).resolve().parents[2]
CLIENT_URI = "urn:scada-stream:client"
T = TypeVar("T")


class ServerThread:
    """An OpcUaSimulator living on its own event loop in a background thread."""

    def __init__(self, sim: OpcUaSimulator) -> None:
        self.sim = sim
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def inject(self, request: FaultRequest) -> int:
        """Inject a fault and have the server act on it at once; returns the fault id."""

        async def go() -> int:
            fault = self.sim.plant.inject(request)
            await self.sim.sync_faults()
            return fault.id

        return self.run(go())

    def clear(self, fault_id: int) -> None:
        async def go() -> None:
            with contextlib.suppress(FaultError):
                self.sim.plant.clear(fault_id)
            await self.sim.sync_faults()

        self.run(go())

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def close(self) -> None:
        self.run(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def plant_config() -> PlantConfig:
    return load_config(ROOT / "config" / "opcua.toml")


@pytest.fixture(scope="module")
def server(
    plant_config: PlantConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    cert_dir = tmp_path_factory.mktemp("sim-pki")
    sim = OpcUaSimulator(plant_config, port=free_port(), security=("None",), cert_dir=cert_dir)
    st = ServerThread(sim)
    st.run(sim.start())
    yield st
    st.close()


@pytest.fixture(scope="module")
def secure_server(
    plant_config: PlantConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    cert_dir = tmp_path_factory.mktemp("secure-sim-pki")
    sim = OpcUaSimulator(
        plant_config,
        port=free_port(),
        security=("Basic256Sha256_Sign", "Basic256Sha256_SignAndEncrypt"),
        users={"operator": "s3cret"},
        cert_dir=cert_dir,
    )
    st = ServerThread(sim)
    st.run(sim.start())
    yield st
    st.close()


def make_driver(config: PlantConfig, **settings: Any) -> OpcUaDriver:
    """The driver of the plant's device with `settings` over its own. The subscription
    watchdog is a deadline like any other: scaled (500 ms -> 1.5 s by default), since the
    simulator's thread shares this process's GIL and a busy box starved it for 535 ms once
    (test_sensor_dropout_is_a_bad_status beside two CPU-bound processes)."""
    settings.setdefault("watchdog_ms", round(scaled(0.5) * 1000))
    base = config.devices[0]
    device = base.model_copy(update={"settings": {**base.settings, **settings}})
    cfg = config.model_copy(update={"devices": [device]})
    driver = create_driver(device, DriverContext(cfg, TagSchema(cfg.lines)))
    assert isinstance(driver, OpcUaDriver)
    return driver


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, what: str
) -> float:
    """Poll `predicate` every 10 ms until true (conftest's eventually); the seconds it took."""
    start = time.monotonic()
    await eventually_async(predicate, timeout, interval=0.01, what=what)
    return time.monotonic() - start


# Per-tag tolerance between a value read through OPC UA and the simulator's current value:
# the plant moves (noise, lag) between the server's sample and ours.
TOLERANCE = {
    "diameter": 0.05,
    "line_speed": 0.5,
    "motor_current": 3.0,
    "melt_pressure": 8.0,
    "state": 0.0,
}


def assert_matches_plant(
    driver: OpcUaDriver, values: np.ndarray, quality: np.ndarray, sim: OpcUaSimulator
) -> None:
    sample, valid = sim.plant.sample()
    assert (quality == Quality.GOOD).all()
    for k, tag in enumerate(driver.tags):
        row = sim.plant.line_ids.index(tag.line_id)
        expected = sample[row, COL[tag.tag]]
        tol = TOLERANCE.get(tag.tag, 1.0)  # temperatures: 1 °C
        assert valid[row, COL[tag.tag]]
        assert abs(values[k] - expected) <= tol, (tag, values[k], expected)


@pytest.mark.parametrize("mode", ["subscription", "read"])
def test_values_match_the_simulator(
    server: ServerThread, plant_config: PlantConfig, mode: str
) -> None:
    driver = make_driver(plant_config, endpoint=server.sim.endpoint, mode=mode)

    async def scenario() -> None:
        await driver.connect()
        try:
            reading = await driver.read()
            assert len(reading.indices) == 80
            assert sorted(reading.indices.tolist()) == list(range(80))
            assert reading.reasons == {}
            # Source timestamps are the server's sample times, not ours.
            assert np.all(np.abs(reading.source_time - time.time()) < 5.0)
            order = np.argsort(reading.indices)
            server.call(
                lambda: assert_matches_plant(
                    driver, reading.values[order], reading.quality[order], server.sim
                )
            )
            if mode == "subscription":
                assert driver.subscriptions_created == 1
                assert server.call(server.sim.monitored_item_count) == 80
        finally:
            await driver.close()
        if mode == "subscription":
            await until(
                lambda: server.call(server.sim.monitored_item_count) == 0,
                5,
                "close() deletes the subscription",
            )

    asyncio.run(scenario())


def test_engineering_units_and_range_use_namespace_0_browse_names(
    server: ServerThread, plant_config: PlantConfig
) -> None:
    """Standard clients browse for 0:EngineeringUnits and 0:EURange (OPC UA Part 8)."""
    from asyncua import Client

    from simulators.opcua_server import node_id

    tag = plant_config.lines[0].tags["diameter"]

    async def scenario() -> None:
        async with Client(server.sim.endpoint) as client:
            var = client.get_node(node_id(plant_config.lines[0].id, "diameter"))
            eu = await (await var.get_child("0:EngineeringUnits")).read_value()
            rng = await (await var.get_child("0:EURange")).read_value()
            assert eu.DisplayName.Text == tag.unit
            assert tag.span is not None and (rng.Low, rng.High) == tuple(tag.span)

    asyncio.run(scenario())


def test_asyncua_logs_nothing_below_warning(
    server: ServerThread, plant_config: PlantConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A connect, subscription and close through asyncua, with INFO on: no asyncua INFO lines
    (the endpoint dump with certificate bytes among them)."""
    driver = make_driver(plant_config, endpoint=server.sim.endpoint)

    async def scenario() -> None:
        await driver.connect()
        try:
            await driver.read()
        finally:
            await driver.close()

    with caplog.at_level(logging.DEBUG):
        asyncio.run(scenario())
    chatty = [r for r in caplog.records if r.name.startswith("asyncua") and r.levelno < 30]
    assert chatty == []


def test_sensor_dropout_is_a_bad_status(server: ServerThread, plant_config: PlantConfig) -> None:
    driver = make_driver(plant_config, endpoint=server.sim.endpoint)
    schema = TagSchema(plant_config.lines)
    target = schema.index("3", "diameter")
    request = FaultRequest(line="3", kind="sensor_dropout", tag="diameter")
    fault = server.inject(request)

    async def scenario() -> None:
        await driver.connect()
        try:

            async def dropped() -> bool:
                r = await driver.read()
                pos = np.flatnonzero(r.indices == target)
                return bool(len(pos)) and r.quality[pos[0]] == Quality.BAD

            await until(dropped, 3, "dropout shows as bad")
            r = await driver.read()
            assert "BadSensorFailure" in r.reasons[target]
            assert np.isnan(r.values[r.indices == target][0])
            others = r.indices != target
            assert (r.quality[others] == Quality.GOOD).all()
            server.clear(fault)

            async def recovered() -> bool:
                r = await driver.read()
                return bool((r.quality == Quality.GOOD).all())

            await until(recovered, 3, "value good again after the dropout clears")
        finally:
            await driver.close()

    try:
        asyncio.run(scenario())
    finally:
        server.clear(fault)


@pytest.mark.parametrize("mode", ["subscription", "read"])
def test_server_restart_detected_and_subscription_recreated_once(
    server: ServerThread, plant_config: PlantConfig, mode: str
) -> None:
    driver = make_driver(plant_config, endpoint=server.sim.endpoint, mode=mode)
    store = TagStore(TagSchema(plant_config.lines))

    async def scenario() -> None:
        poller = Poller(driver, store, interval=0.1)
        poller.start()
        try:
            await until(lambda: bool((store.quality == Quality.GOOD).all()), 5, "first values")
            stopping = server.submit(server.sim.stop())
            await until(
                lambda: bool((store.quality == Quality.BAD).all()), 3, "lines bad after stop"
            )
            await asyncio.wrap_future(stopping)
            assert not poller.status.healthy
            await asyncio.wrap_future(server.submit(server.sim.start()))
            before = store.writes
            await until(
                lambda: poller.status.healthy and store.writes > before + 3,
                10,
                "fresh values after restart",
            )
            assert (store.quality == Quality.GOOD).all()
            assert poller.status.reconnects == 1
            if mode == "subscription":
                assert driver.subscriptions_created == 2  # once at start, once after restart
                assert server.call(server.sim.subscription_count) == 1
                assert server.call(server.sim.monitored_item_count) == 80
        finally:
            await poller.stop()

    try:
        asyncio.run(scenario())
    finally:
        if not server.sim.running:  # leave the shared server up for the next tests
            server.run(server.sim.start())


def test_silent_subscription_detected_and_no_duplicates_after(
    server: ServerThread, plant_config: PlantConfig
) -> None:
    """server_unresponsive: the connection stays up but nothing comes back."""
    driver = make_driver(plant_config, endpoint=server.sim.endpoint)
    store = TagStore(TagSchema(plant_config.lines))
    request = FaultRequest(kind="server_unresponsive")

    async def scenario() -> None:
        poller = Poller(driver, store, interval=0.1)
        poller.start()
        try:
            await until(lambda: bool((store.quality == Quality.GOOD).all()), 5, "first values")
            fault = server.inject(request)
            try:
                await until(
                    lambda: bool((store.quality == Quality.BAD).all()), 3, "silence detected"
                )
            finally:
                server.clear(fault)
            await until(lambda: poller.status.healthy, 10, "reconnected")
            assert driver.subscriptions_created == 2
            # The subscription of the abandoned session expires on the server (its lifetime
            # runs out without publish requests): exactly one set of monitored items remains.
            await until(
                lambda: server.call(server.sim.monitored_item_count) == 80,
                10,
                "abandoned subscription expired",
            )
            assert server.call(server.sim.subscription_count) == 1
            assert (store.quality == Quality.GOOD).all()
        finally:
            await poller.stop()

    asyncio.run(scenario())


def test_connection_drop_fault(server: ServerThread, plant_config: PlantConfig) -> None:
    driver = make_driver(plant_config, endpoint=server.sim.endpoint, mode="read")
    store = TagStore(TagSchema(plant_config.lines))
    request = FaultRequest(kind="connection_drop")

    async def scenario() -> None:
        poller = Poller(driver, store, interval=0.1)
        poller.start()
        try:
            await until(lambda: bool((store.quality == Quality.GOOD).all()), 5, "first values")
            fault = server.inject(request)
            try:
                await until(lambda: bool((store.quality == Quality.BAD).all()), 3, "drop detected")
                # Refused while the fault lasts.
                with pytest.raises(DriverError, match="cannot reach"):
                    await make_driver(plant_config, endpoint=server.sim.endpoint).connect()
            finally:
                server.clear(fault)
            await until(lambda: poller.status.healthy, 10, "reconnected after the drop")
        finally:
            await poller.stop()

    asyncio.run(scenario())


def test_check_reports_tag_map_problems_with_key_paths(plant_config: PlantConfig) -> None:
    from drivers.registry import device_problems

    device = plant_config.devices[0]
    settings = dict(device.settings)
    settings["nodes"] = {k: v for k, v in settings["nodes"].items() if k != "state"}
    settings["nodes"]["diametr"] = "Diameter"
    settings["overrides"] = {"9": {"diameter": "ns=1;i=1"}, "1": {"bogus": "ns=1;i=2"}}
    bad = device.model_copy(update={"settings": settings})
    problems = dict(device_problems(plant_config.model_copy(update={"devices": [bad]})))
    assert "devices[0].settings.nodes.diametr" in problems
    assert "devices[0].settings.nodes.state" in problems
    assert "devices[0].settings.overrides.9" in problems
    assert "devices[0].settings.overrides.1.bogus" in problems
    assert device_problems(plant_config) == []


# -- security ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    pki = tmp_path_factory.mktemp("client-pki")
    cert, key = pki / "client_cert.der", pki / "client_key.pem"
    asyncio.run(
        setup_self_signed_certificate(
            key, cert, CLIENT_URI, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {}
        )
    )
    return cert, key


def secure_settings(
    secure_server: ServerThread, client_pki: tuple[Path, Path], trust_dir: Path
) -> dict[str, Any]:
    cert, key = client_pki
    return {
        "endpoint": secure_server.sim.endpoint,
        "username": "operator",
        "password_env": "TEST_OPCUA_PASSWORD",
        "security": {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(cert),
            "private_key": str(key),
            "application_uri": CLIENT_URI,
            "trust_dir": str(trust_dir),
        },
    }


def test_basic256sha256_sign_and_encrypt_with_username(
    secure_server: ServerThread,
    plant_config: PlantConfig,
    client_pki: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", "s3cret")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    assert secure_server.sim.server_certificate is not None
    shutil.copy(secure_server.sim.server_certificate, trusted / "simulator.der")
    driver = make_driver(plant_config, **secure_settings(secure_server, client_pki, trusted))

    async def scenario() -> None:
        await driver.connect()
        try:
            reading = await driver.read()
            assert len(reading.indices) == 80
            assert (reading.quality == Quality.GOOD).all()
            assert driver.describe()["security"] == "Basic256Sha256/SignAndEncrypt"
        finally:
            await driver.close()

    asyncio.run(scenario())

    # A wrong password is refused with a clear error.
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", "wrong")
    bad = make_driver(plant_config, **secure_settings(secure_server, client_pki, trusted))
    with pytest.raises(DriverError, match="operator"):
        asyncio.run(bad.connect())


def test_untrusted_server_certificate_is_refused(
    secure_server: ServerThread,
    plant_config: PlantConfig,
    client_pki: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_OPCUA_PASSWORD", "s3cret")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    # The trust store holds some other certificate (our own), not the server's.
    shutil.copy(client_pki[0], trusted / "someone_else.der")
    driver = make_driver(plant_config, **secure_settings(secure_server, client_pki, trusted))
    with pytest.raises(DriverError, match="server certificate not trusted"):
        asyncio.run(driver.connect())
    assert secure_server.call(secure_server.sim.session_count) == 0

    # Pinning the right fingerprint instead is accepted.
    from drivers.opcua_trust import fingerprint, load_cert

    assert secure_server.sim.server_certificate is not None
    pin = fingerprint(load_cert(secure_server.sim.server_certificate))
    settings = secure_settings(secure_server, client_pki, trusted)
    settings["security"] = {**settings["security"], "trust_dir": None, "pinned_sha256": [pin]}
    pinned = make_driver(plant_config, **settings)

    async def scenario() -> None:
        await pinned.connect()
        try:
            assert len((await pinned.read()).indices) == 80
        finally:
            await pinned.close()

    asyncio.run(scenario())
