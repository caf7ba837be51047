"""Retry policy: retry only what proves the message was not sent, honouring Retry-After."""

from __future__ import annotations

import math

from graphsend._rules.errors import (
    CURLE_COULDNT_RESOLVE_HOST,
    CURLE_COULDNT_RESOLVE_PROXY,
    PERMANENT_CURL_CODES,
    AuthenticationError,
    GraphError,
    NotFoundError,
    SendError,
    ServiceUnavailableError,
    ThrottledError,
    TransportError,
)
from graphsend._rules.retry_after import parse_retry_after as parse_retry_after  # re-exported

TYPE_CHECKING = False
if TYPE_CHECKING:
    from graphsend._rules.tokens import TokenSource


class Retry:
    """How a Client retries a failed send.

    Only outcomes that prove nothing was sent are retried: 429, 503, and transport failures
    before the request was written. 500/502/504 and timeouts or resets after the request was
    written may have delivered the message; they are retried only with ``retry_ambiguous=True``.
    Never retried: any 2xx or 3xx answer, and transport failures no retry can cure (an
    untrusted certificate, an unreadable CA bundle, a malformed URL, an unsupported proxy
    scheme, a request too large). A failed DNS lookup is retried once at most.
    ``Retry(max_attempts=1)`` turns retries off: exactly one request, even after a 401.

    ``reconcile_ambiguous=True``: a failure that may have sent the message is settled by asking
    the mailbox (``Client.reconcile``, giving it ``reconcile_wait`` seconds): proved sent, the
    send returns a Receipt with ``reconciled=True``; proved not sent, it is sent again (same
    client-request-id, counted as an attempt); otherwise the original error is raised.

    ``retry_ambiguous`` and ``reconcile_ambiguous`` must be bools; the numbers must be finite
    and not negative.

    Example:
        ::

            client = graphsend.Client(token, retry=graphsend.Retry(max_attempts=6))

    Attributes:
        max_attempts: Requests at most, the first one included.
        max_total_wait: Seconds of waiting between attempts, in all; a wait that would go
            past it is not made (the error is raised at once).
        backoff_base: The first backoff's upper bound, in seconds (doubled per attempt).
        backoff_max: The longest backoff, in seconds.
        retry_ambiguous: Also retry failures that may have sent the message (500, 502, 504,
            a timeout or reset after the request was written): risks duplicates.
        reconcile_ambiguous: Settle failures that may have sent the message by asking the
            mailbox; resend only what it proves unsent.
        reconcile_wait: Seconds the mailbox gets to show a sent message (the settling time).
    """

    max_attempts: int
    max_total_wait: float
    backoff_base: float
    backoff_max: float
    retry_ambiguous: bool
    reconcile_ambiguous: bool
    reconcile_wait: float

    __slots__ = (
        "backoff_base",
        "backoff_max",
        "max_attempts",
        "max_total_wait",
        "reconcile_ambiguous",
        "reconcile_wait",
        "retry_ambiguous",
    )

    def __init__(
        self,
        max_attempts: int = 4,
        max_total_wait: float = 180.0,
        backoff_base: float = 1.0,
        backoff_max: float = 60.0,
        retry_ambiguous: bool = False,
        reconcile_ambiguous: bool = False,
        reconcile_wait: float = 60.0,
    ) -> None:
        """Check and keep the policy.

        Args:
            max_attempts: Requests at most (1 turns retries off).
            max_total_wait: Seconds of waiting in all.
            backoff_base: Seconds: the first backoff's upper bound.
            backoff_max: Seconds: the longest backoff.
            retry_ambiguous: Retry failures that may have sent the message too.
            reconcile_ambiguous: Ask the mailbox about failures that may have sent the message,
                and resend only what it proves unsent.
            reconcile_wait: Seconds the mailbox gets to show a sent message.

        Raises:
            TypeError: A number that is not a number, a flag not a bool.
            ValueError: ``max_attempts`` below 1, a negative or infinite number.
        """
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError("max_attempts must be an int")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        for name, value in (
            ("max_total_wait", max_total_wait),
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
            ("reconcile_wait", reconcile_wait),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0")
        if not isinstance(retry_ambiguous, bool):
            raise TypeError("retry_ambiguous must be a bool")
        if not isinstance(reconcile_ambiguous, bool):
            raise TypeError("reconcile_ambiguous must be a bool")
        self.max_attempts = max_attempts
        self.max_total_wait = float(max_total_wait)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.retry_ambiguous = retry_ambiguous
        self.reconcile_ambiguous = reconcile_ambiguous
        self.reconcile_wait = float(reconcile_wait)

    def __repr__(self) -> str:
        return (
            f"Retry(max_attempts={self.max_attempts}, max_total_wait={self.max_total_wait}, "
            f"backoff_base={self.backoff_base}, backoff_max={self.backoff_max}, "
            f"retry_ambiguous={self.retry_ambiguous}, "
            f"reconcile_ambiguous={self.reconcile_ambiguous}, reconcile_wait={self.reconcile_wait})"
        )

    def is_retryable(self, error: SendError, *, idempotent: bool = False) -> bool:
        """Whether another attempt may help.

        Args:
            error: The failure of the last attempt.
            idempotent: The request sends no mail (an upload chunk), so an answer that may
                have reached Graph is retried too; what no retry can cure (2xx/3xx/4xx
                answers but 429, permanent transport failures) still is not.

        Returns:
            True when this policy retries ``error``.
        """
        if isinstance(error, (ThrottledError, ServiceUnavailableError)):
            return True
        if isinstance(error, GraphError) and error.status < 400:
            return False  # Graph answered: a 2xx/3xx other than 202 is no failure to retry
        if isinstance(error, TransportError) and error.curl_code in PERMANENT_CURL_CODES:
            return False
        if isinstance(error, TransportError) and not error.may_have_sent:
            return True
        if idempotent and isinstance(error, TransportError):
            return True
        if idempotent and isinstance(error, GraphError):
            return error.status >= 500
        return self.retry_ambiguous and error.may_have_sent

    def wait_before_retry(
        self, error: SendError, attempt: int, waited: float, *, idempotent: bool = False
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up and raise ``error``.

        Gives up at once (without sleeping first) when the wait would take the total past
        ``max_total_wait``. Retry-After wins over the backoff.

        Args:
            error: The failure of attempt ``attempt``.
            attempt: The attempt that failed (1 for the first).
            waited: Seconds already waited between earlier attempts.
            idempotent: As for :meth:`is_retryable`.

        Returns:
            Seconds to wait (0 for at once), or None.
        """
        if attempt >= self.max_attempts or not self.is_retryable(error, idempotent=idempotent):
            return None
        if attempt >= 2 and getattr(error, "curl_code", None) in _DNS_FAILURES:
            return None  # one more lookup may catch a resolver hiccup; more are wasted time
        wait = getattr(error, "retry_after", None)
        if wait is None:
            wait = self.backoff(attempt)
        if waited + wait > self.max_total_wait:
            return None
        return wait

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(max, base * 2**(attempt-1))].

        Args:
            attempt: The attempt that failed (1 for the first).

        Returns:
            Seconds to wait.
        """
        import random

        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))


_DNS_FAILURES = (CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY)

EARLIER_AMBIGUOUS = "an earlier attempt ended ambiguously and may have delivered it"


def mark_maybe_delivered(error: SendError) -> None:
    """``error`` ends a send an earlier attempt of which may have delivered it: say so."""
    error.may_have_sent = True
    error.args = (f"{error.args[0]}; {EARLIER_AMBIGUOUS}",)


class RetryState:
    """The retry bookkeeping of one send, shared by Client, send_many and AsyncClient."""

    __slots__ = ("ambiguous", "attempt", "idempotent", "policy", "refreshed", "waited")

    def __init__(self, policy: Retry, *, idempotent: bool = False) -> None:
        """``idempotent``: a request that sends no mail and carries no token (an upload
        chunk): safe to repeat after an ambiguous failure, and a 401 is no token's fault."""
        self.policy = policy
        self.idempotent = idempotent
        self.attempt = 1
        self.waited = 0.0
        self.refreshed = False
        self.ambiguous = False

    def next_wait(self, error: SendError, tokens: TokenSource) -> float | None:
        """Seconds to wait before the next attempt, or None: then ``error`` is final and raised.

        A 401 with a token provider is retried once, at once, with a freshly fetched token
        (when the policy allows another attempt).
        """
        error.attempts = self.attempt
        if (
            isinstance(error, AuthenticationError)
            and error.status == 401
            and tokens.refreshable
            and not self.refreshed
            and not self.idempotent
            and self.attempt < self.policy.max_attempts
        ):
            tokens.invalidate()
            self.refreshed = True
            self.attempt += 1
            return 0.0
        if (
            self.ambiguous
            and isinstance(error, NotFoundError)
            and error.code == "ErrorItemNotFound"
        ):
            # The draft is gone: most likely an earlier, ambiguous attempt sent it. (Another 404,
            # such as ErrorInvalidUser, says nothing about the earlier attempt.)
            mark_maybe_delivered(error)
            return None
        wait = self.policy.wait_before_retry(
            error, self.attempt, self.waited, idempotent=self.idempotent
        )
        if wait is None:
            if (
                self.ambiguous
                and not error.may_have_sent
                and self.policy.is_retryable(error, idempotent=self.idempotent)
            ):
                # The attempts ran out on a passing failure (429, 503, a refused connection):
                # it proves nothing about an earlier attempt that may have delivered it. (A
                # lasting one, such as a 404 ErrorInvalidUser, would have failed that one too.)
                mark_maybe_delivered(error)
            return None
        self.ambiguous = self.ambiguous or (error.may_have_sent and not self.idempotent)
        self.waited += wait
        self.attempt += 1
        return wait
