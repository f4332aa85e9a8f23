"""`SparseIndex` on OpenSearch: a `rank_features` field per document, searched by `neural_sparse`
(neural-search plugin) or the equivalent portable `bool`/`rank_feature` query, re-indexed behind an alias.

`name` is always an alias. `rebuild()` creates a concrete index `<name>-<timestamp>`, loads it, checks
the document count and then moves the alias in one `update_aliases` call; on any failure the new
index is deleted and the alias still serves the old one. The model metadata travels in the mapping's
`_meta.splade`, so searching with another model's vectors is refused.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from splade.errors import SpladeError, at_option
from splade.indexer.base import IndexMetadata, SearchHits, SparseIndex, check_add_arguments
from splade.indexer.bulk import BulkWriter
from splade.indexer.connection import OpenSearchSettings, describe_error, make_client
from splade.indexer.queries import MAX_CLAUSES, QUERY_MODES, build_query, prune_query, token_weights
from splade.sparse import SparseBatch

__all__ = ["OpenSearchSettings", "OpenSearchSparseIndex", "VECTOR_FIELD", "index_body", "make_client"]

VECTOR_FIELD = "sparse_embedding"
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


def index_body(metadata: IndexMetadata, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Settings and mapping of one concrete sparse index (also in docs/indexing.md)."""
    return {
        "settings": {"index": {"number_of_shards": shards, "number_of_replicas": replicas}},
        "mappings": {
            "_meta": {"splade": metadata.to_dict()},
            "dynamic": "strict",
            "properties": {
                "doc_id": {"type": "keyword"},
                "text": {"type": "text", "index": False},
                VECTOR_FIELD: {"type": "rank_features"},
            },
        },
    }


def check_index_name(name: str) -> str:
    if not _INDEX_NAME.match(name) or len(name) > 200:
        raise at_option("--index", f"{name!r} is not a valid OpenSearch index name "
                                   "(lowercase letters, digits, '-', '_', '.')")
    return name


class OpenSearchSparseIndex(SparseIndex):
    """A sparse index behind the OpenSearch alias `name`."""

    def __init__(self, client: Any, name: str, id_to_token: Sequence[str], metadata: IndexMetadata,
                 query_mode: str = "auto", settings: OpenSearchSettings | None = None,
                 max_clauses: int = MAX_CLAUSES, chunk_size: int = 500, search_batch: int = 64) -> None:
        if query_mode not in QUERY_MODES:
            raise at_option("--query-mode", f"choose one of {', '.join(QUERY_MODES)}, not {query_mode!r}")
        if len(id_to_token) != metadata.vocab_size:
            raise ValueError("id_to_token does not match the metadata's vocabulary size")
        self.client = client
        self.name = check_index_name(name)
        self.id_to_token = id_to_token
        self._metadata = metadata
        self._query_mode = query_mode
        self.settings = settings
        self.max_clauses = max_clauses
        self.chunk_size = chunk_size
        self.search_batch = search_batch
        self._target = self.name  # where `add` writes: the alias, or the index being rebuilt
        self._building: set[str] | None = None
        self._needs_refresh = False
        self._exists_checked = False

    @classmethod
    def connect(cls, settings: OpenSearchSettings, name: str, id_to_token: Sequence[str],
                metadata: IndexMetadata, query_mode: str = "auto", must_exist: bool = True,
                check_model: bool = True, check_existing: bool = True,
                **kwargs: Any) -> OpenSearchSparseIndex:
        """Connect (checking reachability and credentials) and, if the index exists, its model metadata."""
        index = cls(make_client(settings), name, id_to_token, metadata, query_mode, settings, **kwargs)
        index._call("connecting", index.client.info)
        if index.exists():
            if check_existing:
                index.stored_metadata().check_compatible(metadata, f"OpenSearch index {name!r}",
                                                        check_model)
        elif must_exist:
            raise SpladeError(f"OpenSearch index {name!r} not found at {settings.hosts_text} "
                              "(build it with: splade index --backend opensearch)")
        return index

    @property
    def metadata(self) -> IndexMetadata:
        return self._metadata

    # -- helpers -----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one client call; client exceptions become one-line `SpladeError`s without secrets."""
        from opensearchpy.exceptions import OpenSearchException

        try:
            return fn(*args, **kwargs)
        except OpenSearchException as exc:
            raise describe_error(exc, self.settings, what) from None

    def _refresh(self) -> None:
        if self._needs_refresh:
            self._call(f"refreshing {self._target!r}", self.client.indices.refresh, index=self._target)
            self._needs_refresh = False

    def exists(self) -> bool:
        return bool(self._call(f"looking up {self.name!r}", self.client.indices.exists, index=self.name))

    def concrete_indices(self) -> list[str]:
        """The concrete indices the alias points to (empty when there is no such alias)."""
        if not self._call("reading aliases", self.client.indices.exists_alias, name=self.name):
            return []
        return sorted(self._call("reading aliases", self.client.indices.get_alias, name=self.name))

    def use_stored_metadata(self) -> None:
        """Search with the metadata the index was built with (its own pruning), not the one passed in."""
        self._metadata = self.stored_metadata()

    def stored_metadata(self) -> IndexMetadata:
        mappings = self._call(f"reading the mapping of {self.name!r}", self.client.indices.get_mapping,
                              index=self.name)
        for concrete, body in sorted(mappings.items()):
            meta = body.get("mappings", {}).get("_meta", {}).get("splade")
            if meta is None:
                raise SpladeError(f"OpenSearch index {concrete!r} was not built by splade (no _meta.splade)")
            return IndexMetadata.from_dict(meta)
        raise SpladeError(f"OpenSearch index {self.name!r} not found")

    @property
    def query_mode(self) -> str:
        """`neural_sparse` where the neural-search plugin is installed (when `auto`), else `rank_feature`."""
        if self._query_mode == "auto":
            try:
                plugins = self.client.cat.plugins(format="json")
                names = {str(p.get("component", "")) for p in plugins or []}
                found = any("neural-search" in n for n in names)
            except Exception:  # a user without cluster:monitor rights still gets the portable query
                found = False
            self._query_mode = "neural_sparse" if found else "rank_feature"
        return self._query_mode

    # -- writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def rebuild(self, keep_old: bool = False) -> Iterator[OpenSearchSparseIndex]:
        """Zero-downtime re-index: load a new concrete index inside the block, then swap the alias."""
        client = self.client
        if self.exists() and not self.concrete_indices():
            raise at_option("--index", f"{self.name!r} is a concrete OpenSearch index, not an alias; "
                                       "choose another name or delete it")
        concrete = self._create_concrete()
        self._target, self._building = concrete, set()
        old: list[str] = []
        try:
            yield self
            self._needs_refresh = True
            self._refresh()
            found = self._call("counting documents", client.count, index=concrete)["count"]
            if found != len(self._building):
                raise SpladeError(f"OpenSearch index {concrete!r} holds {found} documents, "
                                  f"expected {len(self._building)}; the alias was not moved")
            old = self.concrete_indices()
            actions = [{"remove": {"index": o, "alias": self.name}} for o in old]
            actions.append({"add": {"index": concrete, "alias": self.name}})
            self._call(f"moving alias {self.name!r}", client.indices.update_aliases,
                       body={"actions": actions})
        except BaseException:
            with contextlib.suppress(Exception):
                client.indices.delete(index=concrete, ignore_unavailable=True)
            raise
        finally:
            self._target, self._building = self.name, None
        if not keep_old:
            for o in old:
                with contextlib.suppress(Exception):
                    client.indices.delete(index=o, ignore_unavailable=True)

    def remove_stale_builds(self) -> list[str]:
        """Delete this alias's build indices that no alias points to (a killed `rebuild` leaves one);
        returns their names. A rebuild of the same alias running at this moment loses its index and fails."""
        pattern = re.compile(rf"^{re.escape(self.name)}-\d{{20}}$")
        found = self._call("listing build indices", self.client.indices.get_alias, index=f"{self.name}-*",
                           ignore_unavailable=True)
        stale = sorted(name for name, body in found.items()
                       if pattern.match(name) and not body.get("aliases") and self._built_by_splade(name))
        for name in stale:
            self._call(f"deleting stale build index {name!r}", self.client.indices.delete, index=name,
                       ignore_unavailable=True)
        return stale

    def _built_by_splade(self, concrete: str) -> bool:
        mappings = self._call(f"reading the mapping of {concrete!r}", self.client.indices.get_mapping,
                              index=concrete)
        return any("splade" in body.get("mappings", {}).get("_meta", {}) for body in mappings.values())

    def drop(self) -> None:
        """Delete the alias's concrete indices (and with them the alias)."""
        for concrete in self.concrete_indices():
            self._call(f"deleting {concrete!r}", self.client.indices.delete, index=concrete,
                       ignore_unavailable=True)
        self._exists_checked = False

    def _create_concrete(self) -> str:
        concrete = f"{self.name}-{time.strftime('%Y%m%d%H%M%S')}{int(time.time() * 1e6) % 1_000_000:06d}"
        self._call(f"creating index {concrete!r}", self.client.indices.create, index=concrete,
                   body=index_body(self._metadata))
        return concrete

    def ensure_exists(self) -> None:
        """Create the alias over a new empty concrete index when there is none (writes outside `rebuild`)."""
        if self._exists_checked or self._building is not None:
            return
        if not self.exists():
            concrete = self._create_concrete()
            self._call(f"creating alias {self.name!r}", self.client.indices.put_alias, index=concrete,
                       name=self.name)
        self._exists_checked = True

    def add(self, doc_ids: Sequence[str], vectors: SparseBatch, texts: Sequence[str] | None = None) -> None:
        check_add_arguments(doc_ids, vectors, texts, self._metadata)
        self.ensure_exists()
        items = []
        for r, doc_id in enumerate(doc_ids):
            source = self._document_source(str(doc_id), vectors.row(r), None if texts is None else texts[r])
            items.append((str(doc_id), "index", source))
        writer = BulkWriter(self.client, self._target, chunk_size=self.chunk_size)
        result = self._call(f"bulk indexing into {self._target!r}", writer.run, items)
        self._needs_refresh = True
        if result.failed:
            raise SpladeError(f"OpenSearch index {self._target!r}: {result.summary()}")
        if self._building is not None:
            self._building.update(str(d) for d in doc_ids)

    def _document_source(self, doc_id: str, row: tuple[Any, Any], text: str | None) -> dict[str, Any]:
        source: dict[str, Any] = {"doc_id": doc_id, VECTOR_FIELD: token_weights(*row, self.id_to_token)}
        if text is not None:
            source["text"] = text
        return source

    def delete(self, doc_ids: Sequence[str]) -> int:
        writer = BulkWriter(self.client, self._target, chunk_size=self.chunk_size)
        result = self._call(f"deleting from {self._target!r}", writer.run,
                            [(str(d), "delete", None) for d in doc_ids])
        self._needs_refresh = True
        if result.failed:
            raise SpladeError(f"OpenSearch index {self._target!r}: {result.summary()}")
        return result.succeeded

    # -- reads -------------------------------------------------------------------------------------
    def count(self) -> int:
        self._refresh()
        return int(self._call(f"counting {self._target!r}", self.client.count, index=self._target)["count"])

    def size_bytes(self) -> int:
        stats = self._call(f"reading stats of {self.name!r}", self.client.indices.stats, index=self.name,
                           metric="store")
        return int(stats.get("_all", {}).get("primaries", {}).get("store", {}).get("size_in_bytes", 0))

    def query_body(self, ids: Any, weights: Any, top_k: int) -> dict[str, Any] | None:
        """The search body for one sparse query row; None when no token can be queried."""
        tokens = prune_query(token_weights(ids, weights, self.id_to_token), self.max_clauses)
        return build_query(tokens, VECTOR_FIELD, self.query_mode, top_k) if tokens else None

    def search(self, queries: SparseBatch, top_k: int = 10) -> list[SearchHits]:
        if queries.vocab_size != self._metadata.vocab_size:
            raise SpladeError(f"queries have vocabulary size {queries.vocab_size}, "
                              f"the index {self._metadata.vocab_size}")
        if top_k < 1:
            raise SpladeError(f"top_k must be at least 1, got {top_k}")
        self._refresh()
        bodies = [self.query_body(ids, weights, top_k) for ids, weights in queries.rows()]
        results: list[SearchHits] = [[] for _ in bodies]
        asked = [i for i, body in enumerate(bodies) if body is not None]
        for start in range(0, len(asked), self.search_batch):
            chunk = asked[start:start + self.search_batch]
            lines: list[dict[str, Any]] = []
            for i in chunk:
                lines += [{"index": self._target}, bodies[i]]
            answer = self._call(f"searching {self._target!r}", self.client.msearch, body=lines)
            for i, response in zip(chunk, answer["responses"], strict=True):
                if "error" in response:
                    err = response["error"]
                    reason = f"{err.get('type')}: {err.get('reason')}" if isinstance(err, dict) else str(err)
                    raise SpladeError(f"OpenSearch search in {self._target!r} failed: {reason}")
                results[i] = [(str(h.get("_source", {}).get("doc_id", h["_id"])), float(h["_score"]))
                              for h in response["hits"]["hits"]]
        return results

    def fetch_texts(self, doc_ids: Sequence[str]) -> list[str | None]:
        if not doc_ids:
            return []
        answer = self._call(f"fetching from {self._target!r}", self.client.mget, index=self._target,
                            body={"ids": list(doc_ids)}, _source_includes=["text"])
        return [d.get("_source", {}).get("text") if d.get("found") else None for d in answer["docs"]]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
