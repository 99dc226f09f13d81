"""The aiomqtt adapter: its start-up check passes on the installed aiomqtt and names what a
changed one lacks, and an EdgeClient refuses to start without it."""

from __future__ import annotations

import asyncio
import importlib.metadata
import types
from collections.abc import Iterator

import aiomqtt
import pytest

from drivers.sparkplug import aiomqtt_adapter
from drivers.sparkplug.aiomqtt_adapter import missing_internals, require_aiomqtt
from drivers.sparkplug.broker import BrokerSettings
from drivers.sparkplug.edge import EdgeNode
from drivers.sparkplug.edgeclient import EdgeClient
from scada.core.errors import UnsupportedLibrary


@pytest.fixture(autouse=True)
def fresh_check() -> Iterator[None]:
    require_aiomqtt.cache_clear()
    yield
    require_aiomqtt.cache_clear()


def test_the_installed_aiomqtt_has_everything_the_adapter_uses() -> None:
    async def main() -> list[str]:
        require_aiomqtt()
        return missing_internals(aiomqtt.Client("127.0.0.1"))

    assert asyncio.run(main()) == []


def test_a_client_without_its_paho_client_is_named() -> None:
    assert missing_internals(types.SimpleNamespace()) == ["Client._client (its paho-mqtt client)"]


def test_a_paho_client_without_publish_is_named() -> None:
    stand_in = types.SimpleNamespace(_client=types.SimpleNamespace(socket=lambda: None))
    assert missing_internals(stand_in) == [
        "Client._client.publish",
        "Client._disconnected (why the connection ended, an asyncio.Future)",
    ]


def test_an_edge_client_refuses_to_start_on_an_aiomqtt_without_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = aiomqtt.Client.__init__

    def without_paho(self: aiomqtt.Client, *args: object, **kw: object) -> None:
        original(self, *args, **kw)  # type: ignore[arg-type]
        del self._client

    monkeypatch.setattr(aiomqtt.Client, "__init__", without_paho)
    version = importlib.metadata.version("aiomqtt")

    async def main() -> None:
        client = EdgeClient(EdgeNode("plant", "edge", {}), BrokerSettings(), identifier="t")
        with pytest.raises(UnsupportedLibrary) as refused:
            client.start()
        assert f"aiomqtt {version} " in str(refused.value)
        assert "Client._client" in str(refused.value)
        assert aiomqtt_adapter.ADAPTER in str(refused.value)
        assert not client.session_up

    asyncio.run(main())
