"""Which OPC UA server certificates to trust: pinned fingerprints, a trust directory, or
CAs in it. Used by the `opcua` driver and by the OPC UA simulator (its fingerprint log line)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.truststore import TrustStore
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from scada.core.errors import DriverError

if TYPE_CHECKING:
    from drivers.opcua_settings import SecuritySettings

# asyncua logs ~1,000 INFO lines when a server starts and dumps every endpoint (certificate
# bytes included) on each connect. Our own lines say what matters; keep the library at
# WARNING unless the user configured its logger explicitly. (Imported by the driver and the
# simulator, so this runs before either uses asyncua.)
_asyncua_log = logging.getLogger("asyncua")
if _asyncua_log.level == logging.NOTSET:
    _asyncua_log.setLevel(logging.WARNING)


def normalise_fingerprint(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch in "0123456789abcdef")


def der_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as colon-separated hex (what `pinned_sha256` expects)."""
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint(cert: x509.Certificate) -> str:
    return der_fingerprint(cert.public_bytes(Encoding.DER))


def load_cert(path: Path) -> x509.Certificate:
    """A DER or PEM certificate file."""
    data = path.read_bytes()
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


def first_der(chain: bytes) -> bytes:
    """The leaf certificate of a DER chain (servers may send the whole chain)."""
    if len(chain) < 4 or chain[0] != 0x30:
        return chain
    if chain[1] & 0x80:
        n = chain[1] & 0x7F
        length = int.from_bytes(chain[2 : 2 + n], "big") + 2 + n
    else:
        length = chain[1] + 2
    return chain[:length]


class ServerTrust:
    """Decides whether a server certificate is trusted. Never trusts by default."""

    def __init__(self, security: SecuritySettings, device: str) -> None:
        self.security = security
        self.device = device
        self.pinned: set[str] = {normalise_fingerprint(fp) for fp in security.pinned_sha256}
        self._ca_store: TrustStore | None = None
        self.last_error: str | None = None

    async def load(self) -> None:
        sec = self.security
        try:
            if sec.pinned_certificate:
                cert = load_cert(Path(sec.pinned_certificate))
                self.pinned.add(normalise_fingerprint(fingerprint(cert)))
            if sec.trust_dir:
                directory = Path(sec.trust_dir)
                if not directory.is_dir():
                    raise DriverError(f"device {self.device!r}: trust_dir {directory} is missing")
                has_ca = False
                for path in sorted(directory.iterdir()):
                    if path.suffix.lower() not in (".der", ".pem", ".crt", ".cer"):
                        continue
                    cert = load_cert(path)
                    self.pinned.add(normalise_fingerprint(fingerprint(cert)))
                    has_ca = has_ca or is_ca(cert)
                if has_ca:
                    # CA-signed server certificates: verified by asyncua's trust store.
                    self._ca_store = TrustStore([directory], [])
                    await self._ca_store.load()
        except (OSError, ValueError) as err:
            raise DriverError(
                f"device {self.device!r}: cannot load trusted certificates: {err}"
            ) from err

    def verify(self, cert: x509.Certificate) -> None:
        """Raise DriverError unless `cert` is pinned, in the trust dir, or signed by a CA there."""
        now = datetime.now(UTC)
        fp = fingerprint(cert)
        who = f"{cert.subject.rfc4514_string()}, SHA-256 {fp}"
        if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
            self._fail(f"server certificate outside its validity period ({who})")
        if normalise_fingerprint(fp) in self.pinned:
            return
        if self._ca_store is not None and self._ca_store.is_trusted(cert):
            return
        where = []
        if self.security.trust_dir:
            where.append(f"copy it into trust_dir {self.security.trust_dir}")
        where.append("pin its fingerprint in pinned_sha256")
        self._fail(
            f"server certificate not trusted ({who}); if it is the right server, "
            + " or ".join(where)
        )

    def _fail(self, message: str) -> None:
        self.last_error = f"device {self.device!r}: {message}"
        raise DriverError(self.last_error)

    async def __call__(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """asyncua certificate_validator hook (CreateSession's server certificate)."""
        try:
            self.verify(cert)
        except DriverError as err:
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted) from err


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False
