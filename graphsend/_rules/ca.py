"""Which CA certificates verify Graph's TLS certificate when ``ca_bundle=`` is not given.

1. ``ca_bundle=`` (checked by the caller).
2. ``SSL_CERT_FILE``, then ``CURL_CA_BUNDLE``: set on purpose (a company's TLS-inspecting proxy,
   a private CA), so a path there that is missing or not PEM is an error, never skipped.
3. Only with the libcurl bundled in the binary wheel: the first existing well-known system bundle
   (:data:`SYSTEM_BUNDLES`), else certifi's when certifi is installed, else an error at the first
   HTTPS send that names these options.

A build against the system's libcurl stops after step 2 and leaves the choice to libcurl: its
compiled-in default is the distribution's own store (a file, a directory or the OS keychain), which
a list of paths could only get wrong. The wheel's libcurl has no default compiled in on purpose: a
path baked in on the build machine is wrong on the next distribution (pycurl #834, #835).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ENV_VARS = ("SSL_CERT_FILE", "CURL_CA_BUNDLE")

#: Debian/Ubuntu, RHEL/Fedora (two spellings), SUSE, Alpine; the first that exists is used.
SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def bundled_libcurl() -> bool:
    """True in the binary wheel, whose libcurl has no CA store of its own."""
    try:
        from graphsend import _wheel  # written by packaging/mark-wheel.sh, in the wheel only
    except ImportError:
        return False
    return _wheel is not None


def missing_message() -> str:
    """What to do when no CA certificates were found (raised at the first HTTPS send)."""
    return (
        "no CA certificates to verify the server with: pass ca_bundle= a PEM file of CAs, or "
        "set SSL_CERT_FILE (or CURL_CA_BUNDLE) to one, or install the system's CA certificates "
        f"(looked for {', '.join(SYSTEM_BUNDLES)}), or pip install certifi"
    )


def from_environment() -> tuple[str, str] | None:
    """(variable, path) of the first of :data:`ENV_VARS` that is set and not empty."""
    for name in ENV_VARS:
        value = os.environ.get(name)
        if value:
            return name, value
    return None


def discover() -> str | None:
    """The first existing well-known system bundle, else certifi's, else None."""
    for path in SYSTEM_BUNDLES:
        if os.path.isfile(path):
            return path
    try:
        import certifi  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    bundle: str = certifi.where()
    return bundle if os.path.isfile(bundle) else None


def resolve(
    value: str | os.PathLike[str] | None,
    *,
    https: bool,
    check: Callable[[str | os.PathLike[str] | None], str | None],
) -> tuple[str | None, str | None]:
    """Return (the CA file libcurl is given, None for libcurl's own default; the error to raise
    at the first HTTPS send, None when there is none). ``check`` validates a path (the rules of
    ``ca_bundle=``); plain http to loopback needs no CA and looks for none."""
    if value is not None or not https:
        return check(value), None
    env = from_environment()
    if env is not None:
        name, path = env
        try:
            return check(path), None
        except (FileNotFoundError, ValueError) as exc:
            # The same rules as ca_bundle=, under the name the user set.
            raise type(exc)(str(exc).replace("ca_bundle", name, 1)) from None
    if not bundled_libcurl():
        return None, None
    found = discover()
    return found, None if found is not None else missing_message()
