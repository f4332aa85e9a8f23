"""The completion records of one sharded OpenSearch build, kept in a small index beside its build index.

    <build>-ledger/shard-00000-of-00002   {"shard": 0, "documents": 1024}   written when shard 0 is loaded
    <build>-ledger/finish                 {"shard": 1}                      created once, by the finisher

Records are read with real-time `GET`/`mget` (no refresh needed). A shard that finds every record present
creates `finish` with `op_type=create`: exactly one shard succeeds (the others get 409) and moves the alias.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from splade.indexer.opensearch.connection import describe_error
from splade.ledger import FINISH, FINISHED, WAIT, Shard

if TYPE_CHECKING:
    from splade.indexer.opensearch.index import OpenSearchSparseIndex

LEDGER_MAPPING = {"_meta": {"splade_ledger": True}, "dynamic": "strict",
                  "properties": {"shard": {"type": "integer"}, "documents": {"type": "long"}}}


class IndexLedger:
    """Shard records of one build in the OpenSearch index `name`."""

    def __init__(self, index: OpenSearchSparseIndex, name: str, shard: Shard) -> None:
        self.index, self.name, self.shard = index, name, shard

    @property
    def _client(self) -> Any:
        return self.index.client

    def _id(self, index: int) -> str:
        return f"shard-{Shard(index, self.shard.count).tag}"

    def _ensure(self) -> None:
        # lazily, on purpose: opensearch-py loads only when a cluster is used
        from opensearchpy.exceptions import RequestError

        try:
            self._client.indices.create(index=self.name, body={
                "settings": {"index": {"number_of_shards": 1}}, "mappings": LEDGER_MAPPING})
        except RequestError as exc:
            if exc.error != "resource_already_exists_exception":  # else another shard created it first
                raise

    def _records(self, ids: list[str]) -> list[dict[str, Any] | None]:
        if not self.index._call(f"looking up {self.name!r}", self._client.indices.exists, index=self.name):
            return [None] * len(ids)
        found = self.index._call(f"reading {self.name!r}", self._client.mget, index=self.name,
                                 body={"ids": ids})
        return [doc.get("_source") if doc.get("found") else None for doc in found["docs"]]

    def marker(self, index: int) -> dict[str, Any] | None:
        """Shard `index`'s record, None when it has not finished loading."""
        return self._records([self._id(index)])[0]

    def mark_done(self, documents: int) -> None:
        """Record that this shard's `documents` are all loaded (acknowledged by the bulk API)."""
        self.index._call(f"writing to {self.name!r}", self._ensure)
        record = {"shard": self.shard.index, "documents": documents}
        self.index._call(f"writing to {self.name!r}", self._client.index, index=self.name,
                         id=self._id(self.shard.index), body=record)

    def finishing(self) -> tuple[str, list[Any]]:
        """`(FINISH, records)` when every shard is recorded and this shard won the claim, `(WAIT, missing
        shard indices)`, or `(FINISHED, [])` when another shard claimed (or completed) the finish."""
        # lazily, on purpose: opensearch-py loads only when a cluster is used
        from opensearchpy.exceptions import ConflictError, OpenSearchException

        records = self._records([self._id(i) for i in range(self.shard.count)])
        if records[self.shard.index] is None:
            return FINISHED, []  # recorded before this call: the ledger is gone, the build was published
        missing = [i for i, record in enumerate(records) if record is None]
        if missing:
            return WAIT, missing
        try:
            self._client.create(index=self.name, id="finish", body={"shard": self.shard.index})
        except ConflictError:
            return FINISHED, []
        except OpenSearchException as exc:
            raise describe_error(exc, self.index.settings, f"writing to {self.name!r}") from None
        return FINISH, records

    def release(self) -> None:
        """Give the finish claim up (the alias did not move), so that a shard run again can finish."""
        with contextlib.suppress(Exception):
            self._client.delete(index=self.name, id="finish")

    def remove(self) -> None:
        self.index._call(f"deleting {self.name!r}", self._client.indices.delete, index=self.name,
                         ignore_unavailable=True)
