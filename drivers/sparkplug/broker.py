"""Where and how to reach the MQTT broker: one settings model for the driver, the simulator
and the edge node, and the aiomqtt client built from it.

`url` is mqtt://host[:1883] or mqtts://host[:8883] (TLS, the system's CA store plus `ca_file`).
Credentials: `username` with `password` or (better, kept out of the file) `password_env`.
A password over plain mqtt:// to anything but this machine is refused: it would cross the
network in clear text.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class BrokerSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    password_env: str | None = None
    ca_file: str | None = None  # extra CA to trust (a private CA), PEM
    client_cert: str | None = None  # TLS client certificate and key, PEM
    client_key: str | None = None
    keepalive: int = Field(default=10, ge=2, le=600)  # seconds; a dead peer's will after 1.5x
    connect_timeout: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _consistent(self) -> BrokerSettings:
        parts = urlsplit(self.url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ValueError("url must be mqtt://host[:port] or mqtts://host[:port]")
        try:
            _ = parts.port
        except ValueError as err:
            raise ValueError(f"url: {err}") from None
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if (self.password is not None or self.password_env) and self.username is None:
            raise ValueError("a password needs a username")
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if (self.ca_file or self.client_cert) and parts.scheme != "mqtts":
            raise ValueError("ca_file and client_cert need an mqtts:// url")
        secret = self.password is not None or self.password_env is not None
        if secret and parts.scheme == "mqtt" and not _is_loopback(parts.hostname):
            raise ValueError("a password over plain mqtt:// to another host: use mqtts://")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or DEFAULT_PORTS[parts.scheme]

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def endpoint(self) -> str:
        """For logs and status: the url without credentials."""
        return f"{urlsplit(self.url).scheme}://{self.host}:{self.port}"

    def password_value(self) -> str | None:
        if self.password is not None:
            return self.password
        if self.password_env:
            return os.environ.get(self.password_env, "")
        return None

    def problems(self) -> list[tuple[str, str]]:
        """What check-config reports beyond the model: unset environment, unreadable files."""
        out: list[tuple[str, str]] = []
        if self.password_env and not os.environ.get(self.password_env):
            out.append(("password_env", f"environment variable {self.password_env} is unset"))
        for key in ("ca_file", "client_cert", "client_key"):
            path = getattr(self, key)
            if path is not None and not os.access(path, os.R_OK):
                out.append((key, f"cannot read {path}"))
        return out

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_cert is not None:
            context.load_cert_chain(self.client_cert, self.client_key)
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of aiomqtt.Client for this broker (besides will and identifier)."""
        return {
            "hostname": self.host,
            "port": self.port,
            "username": self.username,
            "password": self.password_value(),
            "tls_context": self.tls_context(),
            "keepalive": self.keepalive,
            "timeout": self.connect_timeout,
            "clean_session": True,
        }


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
