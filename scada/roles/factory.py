"""Which application a role serves, imported only when that role runs."""

from __future__ import annotations

from scada.server.serve import AppFactory, ServeRole


def app_factory(role: ServeRole) -> AppFactory:
    """The application of a role, imported only when that role runs: a gateway process never
    imports the alarm engine, the drivers or the historian (tests/unit/test_layers.py)."""
    if role == "ingest":
        from scada.roles.ingest.app import create_ingest_app

        return create_ingest_app
    if role == "gateway":
        from scada.roles.gateway.app import create_gateway_app

        return create_gateway_app
    from scada.roles.allinone import create_app

    return create_app
