"""Retries of OpenSearch calls: which failures are passing (429, 5xx, a lost connection), how long to wait
(exponential backoff, or the server's `Retry-After`), and a client connection that keeps `Retry-After`."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
T = TypeVar("T")


def is_retryable(exc: BaseException) -> bool:
    """429 / 5xx answers and lost connections (resets, timeouts) pass; refused connections (nothing
    listens: fail fast), TLS and other errors do not."""
    # lazily, on purpose: opensearch-py loads only when a cluster is used
    from opensearchpy import exceptions as ose

    if isinstance(exc, ose.SSLError):
        return False
    if isinstance(exc, ose.ConnectionError):
        return not is_refused(exc)
    return isinstance(exc, ose.TransportError) and exc.status_code in RETRY_STATUS


def is_refused(exc: BaseException) -> bool:
    """Whether a connection error means nothing answered at all (not a connection lost midway)."""
    text = f"{getattr(exc, 'error', '')} {getattr(exc, 'info', '')}"
    return any(sign in text for sign in ("NewConnectionError", "Connection refused", "Name or service",
                                         "nodename nor servname", "No route to host", "getaddrinfo"))


def retry_after(exc: BaseException) -> float | None:
    """The seconds of the `Retry-After` header of the answer that raised `exc` (None when absent)."""
    value = getattr(exc, "retry_after", None)
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # an HTTP date: fall back to the backoff
    return None if seconds is None or seconds < 0 else seconds


@dataclass(frozen=True)
class RetryPolicy:
    """Up to `max_retries` retries, waiting `initial_backoff * 2**attempt` (at most `max_backoff`) or what
    the server's `Retry-After` asks (also at most `max_backoff`)."""

    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, exc: BaseException | None = None) -> float:
        asked = retry_after(exc) if exc is not None else None
        delay = asked if asked is not None else self.initial_backoff * 2**attempt
        return min(self.max_backoff, delay)

    def wait(self, attempt: int, why: str, exc: BaseException | None = None) -> None:
        delay = self.delay(attempt, exc)
        log.info("%s; retrying in %.1f s", why, delay)
        self.sleep(delay)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)`, retried on passing failures; the last failure is raised."""
        for attempt in range(self.max_retries + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if attempt == self.max_retries or not is_retryable(exc):
                    with contextlib.suppress(AttributeError):
                        exc.splade_tries = attempt + 1  # type: ignore[attr-defined]  # for the message
                    raise
                self.wait(attempt, f"OpenSearch call failed ({describe_failure(exc)})", exc)
        raise AssertionError("unreachable")


def describe_failure(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if isinstance(status, int) else type(exc).__name__


_answer = threading.local()


def connection_class() -> type:
    """An `Urllib3HttpConnection` whose HTTP errors carry the answer's `Retry-After` as `retry_after`."""
    # lazily, on purpose: opensearch-py loads only when a cluster is used
    from opensearchpy import Urllib3HttpConnection

    # lazily, on purpose: opensearch-py loads only when a cluster is used
    from opensearchpy.exceptions import TransportError

    class RetryAfterConnection(Urllib3HttpConnection):  # type: ignore[misc, valid-type]
        def get_response_headers(self, response: Any) -> Any:
            headers = super().get_response_headers(response)
            _answer.retry_after = headers.get("retry-after")  # read right before `_raise_error`
            return headers

        def _raise_error(self, status_code: int, raw_data: Any, content_type: str | None = None) -> None:
            try:
                super()._raise_error(status_code, raw_data, content_type)
            except TransportError as exc:
                exc.retry_after = getattr(_answer, "retry_after", None)
                _answer.retry_after = None
                raise

    return RetryAfterConnection
