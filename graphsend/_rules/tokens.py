"""Token sources: a str, a callable, an azure-identity style credential, or an MSAL result.

Providers are always called from Python with the GIL held, never from the native layer. A
source hands out the whole ``Authorization`` header line, so the hot path builds no strings.
"""

from __future__ import annotations

import threading
import time

from graphsend._rules.errors import AuthenticationError
from graphsend._rules.request import check_token

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, Protocol, TypeAlias

    class AccessTokenLike(Protocol):
        """What ``get_token`` returns: azure-identity's ``AccessToken`` (a token and its
        expiry, in seconds since the epoch)."""

        # Read-only: azure-identity's AccessToken is a NamedTuple.
        @property
        def token(self) -> str: ...
        @property
        def expires_on(self) -> int: ...

    class CredentialLike(Protocol):
        """An azure-identity style credential (``ClientSecretCredential``, ...)."""

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike:
            """Return a token for ``scopes`` (graphsend asks for one: the cloud's
            ``https://<graph host>/.default``)."""
            ...

    TokenArg: TypeAlias = str | Callable[[], str | dict[str, Any]] | CredentialLike

# Refresh a credential's token this long before it expires.
EXPIRY_MARGIN = 300.0


class TokenSource:
    """Base: ``header()`` returns the Authorization header line; ``invalidate()`` drops a cache.

    ``header()`` raises only :class:`AuthenticationError` (status 0, ``may_have_sent=False``,
    the provider's own exception as ``__cause__``): a failing provider sent nothing.
    """

    refreshable = True

    def header(self) -> str:
        """Return the ``Authorization: Bearer ...`` header line for the next attempt.

        Raises:
            AuthenticationError: The provider failed or gave an unusable token.
        """
        raise NotImplementedError

    def invalidate(self) -> None:
        """Forget any cached token so the next ``header()`` asks the provider again."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class StaticToken(TokenSource):
    refreshable = False

    __slots__ = ("_header",)

    def __init__(self, token: object) -> None:
        self._header = "Authorization: Bearer " + check_token(token)

    def header(self) -> str:
        return self._header


class CallableToken(TokenSource):
    """Calls the provider before every attempt: it owns its caching (MSAL and most do)."""

    def __init__(self, provider: Callable[[], object]) -> None:
        self._provider = provider

    def header(self) -> str:
        try:
            result = self._provider()
        except AuthenticationError:
            raise
        except Exception as exc:
            raise provider_failed(exc) from exc
        return "Authorization: Bearer " + token_from_result(result)


class CredentialToken(TokenSource):
    """An object with ``get_token(scope)``; the token is cached until 5 minutes before expiry."""

    def __init__(self, credential: CredentialLike, scope: str) -> None:
        self._credential = credential
        self._scope = scope
        self._lock = threading.Lock()
        self._header: str | None = None
        self._refresh_at = 0.0

    def header(self) -> str:
        header = self._header
        if header is not None and time.time() < self._refresh_at:
            return header
        with self._lock:
            if self._header is None or time.time() >= self._refresh_at:
                try:
                    access = self._credential.get_token(self._scope)
                except AuthenticationError:
                    raise
                except Exception as exc:  # azure-identity's ClientAuthenticationError and kin
                    raise provider_failed(exc) from exc
                try:
                    header = "Authorization: Bearer " + check_token(access.token)
                    refresh_at = float(access.expires_on) - EXPIRY_MARGIN
                except Exception as exc:
                    raise provider_failed(exc, "returned an unusable token") from exc
                self._header, self._refresh_at = header, refresh_at
            return self._header

    def invalidate(self) -> None:
        with self._lock:
            self._header = None


def token_from_result(result: object) -> str:
    """A provider's answer: a token str, or an MSAL result dict."""
    try:
        if isinstance(result, dict):
            if "access_token" in result:
                return check_token(result["access_token"])
        else:
            return check_token(result)
    except (TypeError, ValueError) as exc:
        raise provider_failed(exc, "returned an unusable token") from exc
    # An MSAL error dict: report it for a person, without sending anything.
    code = result.get("error")
    code = code if isinstance(code, str) and code else "token_provider_error"
    message = str(result.get("error_description") or "no token and no description")
    correlation = result.get("correlation_id")
    if isinstance(correlation, str) and correlation and correlation not in message:
        message = f"{message} (correlation_id {correlation})"
    err = AuthenticationError(0, code=code, message=message, may_have_sent=False)
    err.args = (f"the token provider returned an error: {code}: {message}",)
    raise err


def provider_failed(exc: Exception, what: str = "failed") -> AuthenticationError:
    """The AuthenticationError for a provider that raised (the caller chains ``exc``)."""
    text = str(exc).strip() or "no message"
    err = AuthenticationError(0, code=type(exc).__name__, message=text, may_have_sent=False)
    err.args = (f"the token provider {what}: {type(exc).__name__}: {text}",)
    return err


def token_source(token: object, scope: str) -> TokenSource:
    if isinstance(token, str):
        return StaticToken(token)
    if callable(getattr(token, "get_token", None)):
        return CredentialToken(token, scope)  # type: ignore[arg-type]
    if callable(token):
        return CallableToken(token)
    raise TypeError(
        "token must be a str, a callable returning a token, or a credential with get_token()"
    )
