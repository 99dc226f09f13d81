"""Settings of the `opcua` driver (`[devices.settings]`) and its tag map expansion: pure, no
connection. See docs/opcua.md."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, cast

from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.base import DriverSettings
from drivers.opcua_trust import normalise_fingerprint


class SecuritySettings(BaseModel):
    """Secure channel and server certificate trust (`[devices.settings.security]`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["Sign", "SignAndEncrypt"] = "SignAndEncrypt"
    certificate: str | None = Field(default=None, description="client certificate, DER or PEM")
    private_key: str | None = Field(default=None, description="client private key, PEM or DER")
    private_key_password_env: str | None = None
    # The client's ApplicationUri; must match the URI in the client certificate.
    application_uri: str = "urn:scada-stream:client"
    # Trust: server certificates (or CA certificates) in a directory, a pinned certificate
    # file, or pinned SHA-256 fingerprints (hex, colons optional). At least one when secure.
    trust_dir: str | None = None
    pinned_certificate: str | None = None
    pinned_sha256: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _secure_needs_material(self) -> SecuritySettings:
        if self.policy != "None" and (self.certificate is None or self.private_key is None):
            raise ValueError(f"policy {self.policy} needs certificate and private_key")
        for fp in self.pinned_sha256:
            if len(normalise_fingerprint(fp)) != 64:
                raise ValueError(f"pinned_sha256 {fp!r} is not a SHA-256 fingerprint (64 hex)")
        return self

    @property
    def has_trust(self) -> bool:
        return bool(self.trust_dir or self.pinned_certificate or self.pinned_sha256)


class OpcUaSettings(DriverSettings):
    endpoint: str = Field(default="opc.tcp://127.0.0.1:4840", pattern=r"^opc\.tcp://")
    mode: Literal["subscription", "read"] = "subscription"
    sampling_interval_ms: float = Field(default=100.0, ge=0)
    # Defaults to the sampling interval.
    publishing_interval_ms: float | None = Field(default=None, gt=0)
    # Subscription mode: no data or keep-alive for this long means the server is gone. The
    # keep-alive period is chosen so at least two fit in this window.
    watchdog_ms: int = Field(default=500, ge=100, le=60_000)
    request_timeout_ms: int = Field(default=800, ge=50, le=60_000)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    # Tag map. One of node_id / browse_path, a template with {line}, {node} and {ns}.
    node_id: str | None = None
    browse_path: str | None = None
    namespace_uri: str | None = None  # its index replaces {ns}, looked up at connect
    nodes: dict[str, str] = Field(default_factory=dict)  # tag name → {node}
    line_keys: dict[str, str] = Field(default_factory=dict)  # line id → {line}
    # line id → tag → full node id (or full browse path), for tags off the template.
    overrides: dict[str, dict[str, str]] = Field(default_factory=dict)
    username: str | None = None
    password: str | None = None  # prefer password_env: keeps the secret out of the file
    password_env: str | None = None
    security: SecuritySettings = SecuritySettings()

    @model_validator(mode="after")
    def _consistent(self) -> OpcUaSettings:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("set exactly one of node_id and browse_path (the tag map template)")
        template = self.template
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        unknown = fields - {"line", "node", "ns"}
        if unknown:
            raise ValueError(f"unknown placeholder(s) {sorted(unknown)} in {template!r}")
        if "ns" in fields and self.namespace_uri is None:
            raise ValueError("the template uses {ns}: set namespace_uri")
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if (self.password is not None or self.password_env) and self.username is None:
            raise ValueError("a password needs a username")
        if self.security.policy != "None" and not self.security.has_trust:
            raise ValueError(
                "security: a secure policy needs trust_dir, pinned_certificate or "
                "pinned_sha256 to validate the server certificate"
            )
        if self.username is not None and not self.security.has_trust:
            raise ValueError(
                "a username login needs trust_dir, pinned_certificate or pinned_sha256 "
                "in security: the password must not go to an unverified server"
            )
        return self

    @property
    def template(self) -> str:
        return self.node_id if self.node_id is not None else (self.browse_path or "")

    @property
    def publishing_ms(self) -> float:
        if self.publishing_interval_ms is not None:
            return self.publishing_interval_ms
        return max(self.sampling_interval_ms, 10.0)


@dataclass(frozen=True)
class TagAddress:
    index: int  # schema position
    line_id: str
    tag: str
    address: str | None  # node id or browse path, {ns} not yet resolved; None: unmapped


def tag_addresses(
    settings: OpcUaSettings, line_tags: list[tuple[int, str, str]]
) -> list[TagAddress]:
    """Expand the tag map for (schema index, line id, tag name) triples. Pure."""
    out = []
    for index, line_id, tag in line_tags:
        override = settings.overrides.get(line_id, {}).get(tag)
        if override is not None:
            out.append(TagAddress(index, line_id, tag, override))
        elif tag in settings.nodes:
            key = settings.line_keys.get(line_id, line_id)
            address = settings.template.format(line=key, node=settings.nodes[tag], ns="{ns}")
            out.append(TagAddress(index, line_id, tag, address))
        else:
            out.append(TagAddress(index, line_id, tag, None))
    return out


def relative_path(path: str, ns: int | None) -> ua.RelativePath:
    """'0:Objects/2:Plant/2:Line1/2:Diameter' (from the Root folder) → RelativePath."""
    elements = []
    for part in path.strip("/").split("/"):
        name = part.replace("{ns}", str(ns)) if ns is not None else part
        elements.append(
            ua.RelativePathElement(
                ReferenceTypeId=ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences)),
                IsInverse=cast(ua.Boolean, False),
                IncludeSubtypes=cast(ua.Boolean, True),
                TargetName=ua.QualifiedName.from_string(name),
            )
        )
    return ua.RelativePath(Elements=elements)
