"""Bulk requests in chunks, retried with exponential backoff (or the server's `Retry-After`) on 429 / 5xx and
lost connections; every failed document by id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from splade.indexer.opensearch.retry import RETRY_STATUS, is_retryable, retry_after

log = logging.getLogger(__name__)


@dataclass
class BulkResult:
    """Outcome of one bulk run: how many documents succeeded and why each failed one failed."""

    succeeded: int = 0
    missing: int = 0  # deletes of ids that were not there
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self, limit: int = 5) -> str:
        shown = "; ".join(f"{doc_id}: {reason}" for doc_id, reason in list(self.failed.items())[:limit])
        more = f" (and {len(self.failed) - limit} more)" if len(self.failed) > limit else ""
        return f"{len(self.failed)} document(s) failed: {shown}{more}"


@dataclass
class BulkWriter:
    """Send `(doc_id, action, source)` triples with `client.bulk`, `chunk_size` documents a request."""

    client: Any
    index: str
    chunk_size: int = 500
    max_retries: int = 5
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    sleep: Callable[[float], None] = time.sleep

    def run(self, items: Iterable[tuple[str, str, dict[str, Any] | None]]) -> BulkResult:
        result = BulkResult()
        chunk: list[tuple[str, str, dict[str, Any] | None]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) >= self.chunk_size:
                self._send(chunk, result)
                chunk = []
        if chunk:
            self._send(chunk, result)
        return result

    def _send(self, chunk: list[tuple[str, str, dict[str, Any] | None]], result: BulkResult) -> None:
        """Send one chunk; resend only the documents that got a retryable status, with backoff."""
        pending = chunk
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self.client.bulk(body=self._body(pending))
            except Exception as exc:  # classified below, re-raised when not retryable
                status = getattr(exc, "status_code", None)
                if not is_retryable(exc) or last:
                    exc.splade_tries = attempt + 1  # type: ignore[attr-defined]  # for the message
                    raise
                self._backoff(attempt, f"bulk request failed ({status or type(exc).__name__})",
                              retry_after(exc))
                continue
            retry = []
            for (doc_id, action, source), item in zip(pending, response["items"], strict=True):
                outcome = item.get(action, {})
                status = int(outcome.get("status", 500))
                if status < 300:
                    result.succeeded += 1
                elif action == "delete" and status == 404:
                    result.missing += 1
                elif status in RETRY_STATUS and not last:
                    retry.append((doc_id, action, source))
                else:
                    result.failed[doc_id] = _item_reason(outcome, status)
            if not retry:
                return
            pending = retry
            self._backoff(attempt, f"{len(retry)} document(s) got 429/5xx")

    def _body(self, chunk: list[tuple[str, str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
        body: list[dict[str, Any]] = []
        for doc_id, action, source in chunk:
            body.append({action: {"_index": self.index, "_id": doc_id}})
            if source is not None:
                body.append(source)
        return body

    def _backoff(self, attempt: int, why: str, asked: float | None = None) -> None:
        delay = min(self.max_backoff, self.initial_backoff * 2**attempt if asked is None else asked)
        log.warning("%s; retrying in %.1f s", why, delay)
        self.sleep(delay)


def _item_reason(outcome: dict[str, Any], status: int) -> str:
    error = outcome.get("error")
    if isinstance(error, dict):
        reason = f"{error.get('type')}: {error.get('reason')}"
        cause = error.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            reason += f" ({cause['reason']})"
        return f"HTTP {status} {reason}"
    return f"HTTP {status}"
