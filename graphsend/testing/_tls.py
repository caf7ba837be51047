"""HTTPS mode: the certificate files made at start and the server's TLS context.

``cryptography`` is imported only when a certificate is made, so that graphsend.testing imports
(and serves plain HTTP) without it.
"""

from __future__ import annotations

import importlib.util
import shutil
import ssl
import tempfile
from typing import Final

_NEEDS_CRYPTOGRAPHY: Final = (
    "FakeGraph(https=True) needs the 'cryptography' package; "
    "install it with: pip install 'graphsend[testing]'"
)


_NEEDS_H2: Final = (
    "FakeGraph(http2=True) needs the 'h2' package; "
    "install it with: pip install 'graphsend[testing]'"
)


def require_cryptography() -> None:
    """Fail early, when FakeGraph(https=True) is made, rather than at start."""
    if importlib.util.find_spec("cryptography") is None:
        raise ImportError(_NEEDS_CRYPTOGRAPHY)


def require_h2() -> None:
    """Fail early, when FakeGraph(http2=True) is made, rather than at the first connection."""
    if importlib.util.find_spec("h2") is None:
        raise ImportError(_NEEDS_H2)


class TlsFiles:
    """One FakeGraph's certificate files: made by server_context(), deleted by remove()."""

    def __init__(self) -> None:
        self._directory: str | None = None
        #: Path of the CA certificate (PEM) while the files exist; else None.
        self.ca_bundle: str | None = None

    def server_context(self, host: str, *, http2: bool = False) -> ssl.SSLContext:
        """A server context with a fresh certificate for ``host``; with ``http2``, ALPN offers
        ``h2`` first and ``http/1.1`` for clients that do not speak HTTP/2."""
        try:
            from ._certificates import write_certificates
        except ImportError as exc:
            raise ImportError(_NEEDS_CRYPTOGRAPHY) from exc
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="fakegraph-tls-")
        try:
            ca_path, cert_path, key_path = write_certificates(self._directory, host)
        except BaseException:
            self.remove()
            raise
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
        self.ca_bundle = ca_path
        return context

    def remove(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._directory = self.ca_bundle = None
