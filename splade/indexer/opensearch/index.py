"""`SparseIndex` on OpenSearch: one vector field per document, laid out as `.layouts` says
(`rank_features`, searched by `neural_sparse` or the equivalent portable `bool`/`rank_feature` query, or
`sparse_vector` with SEISMIC), re-indexed behind an alias.

`name` is always an alias. `rebuild()` creates a concrete index `<name>-<timestamp>`, loads it, checks
the document count and then moves the alias in one `update_aliases` call; on any failure the new
index is deleted and the alias still serves the old one. Every idempotent call is retried (see
`.retry`); after a failed alias call the cluster is asked where the alias points, and an
index that an alias names is never deleted. A sharded build loads one build index from
several processes (`load_into`) and the last of them moves the alias (`publish`). The model metadata
travels in the mapping's `_meta.splade` and the layout in `_meta.splade_layout`, so searching with
another model's vectors is refused and searching needs no layout option.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from splade.errors import SpladeError, at_option
from splade.indexer.base import (
    IndexMetadata,
    SearchHits,
    SparseIndex,
    check_add_arguments,
    check_search_arguments,
)
from splade.indexer.opensearch.bulk import BulkWriter
from splade.indexer.opensearch.capabilities import ServerInfo
from splade.indexer.opensearch.connection import OpenSearchSettings, describe_error, make_client
from splade.indexer.opensearch.layouts import TWO_PHASE_PIPELINE, Layout, two_phase_pipeline
from splade.indexer.opensearch.queries import MAX_CLAUSES, QUERY_MODES, prune_query
from splade.indexer.opensearch.retry import RetryPolicy, is_retryable
from splade.sparse import SparseBatch

__all__ = ["Layout", "OpenSearchSettings", "OpenSearchSparseIndex", "VECTOR_FIELD", "index_body",
           "make_client"]

log = logging.getLogger(__name__)
VECTOR_FIELD = "sparse_embedding"
_INDEX_NAME = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
BUILD_SUFFIX = r"(?:\d{20}|shards-[0-9a-f]{16})"  # rebuild() stamps, sharded builds' job keys


def index_body(metadata: IndexMetadata, layout: Layout | None = None) -> dict[str, Any]:
    """Settings and mapping of one concrete sparse index (also in docs/indexing.md and docker/opensearch/)."""
    layout = layout or Layout()
    return {
        "settings": {"index": layout.settings()},
        "mappings": {
            "_meta": {"splade": metadata.to_dict(), "splade_layout": layout.to_meta()},
            "dynamic": "strict",
            "properties": {
                "doc_id": {"type": "keyword"},
                "text": {"type": "text", "index": False},
                VECTOR_FIELD: layout.field(),
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

    where = "OpenSearch alias"
    takes_layout = True

    def __init__(self, client: Any, name: str, id_to_token: Sequence[str], metadata: IndexMetadata,
                 query_mode: str = "auto", settings: OpenSearchSettings | None = None,
                 max_clauses: int = MAX_CLAUSES, chunk_size: int = 500, search_batch: int = 64,
                 layout: Layout | None = None, retry: RetryPolicy | None = None) -> None:
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
        self.layout = layout or Layout()
        self._server: ServerInfo | None = None
        self._clipped_warned = False
        self.retry = retry or RetryPolicy()
        self._stale_removed: list[str] = []  # what `writer` cleaned up first

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

    # -- the backend's lifecycle -------------------------------------------------------------------
    @classmethod
    def _connect_to(cls, target: Any, meta: IndexMetadata, id_to_token: Sequence[str], **kwargs: Any
                    ) -> OpenSearchSparseIndex:
        """Connect to the alias `target.index` (an `IndexTarget`: settings, name, query mode)."""
        check_index_name(target.index)
        settings = target.opensearch or OpenSearchSettings.from_env()
        return cls.connect(settings, target.index, id_to_token, meta, getattr(target, "query_mode", "auto"),
                           **kwargs)

    @classmethod
    @contextlib.contextmanager
    def writer(cls, target: Any, meta: IndexMetadata, append: bool = False, *, keep_open: bool = False,
               id_to_token: Sequence[str] = (), layout: Layout | None = None, remove_stale: bool = True,
               **_: Any) -> Iterator[OpenSearchSparseIndex]:
        """Fill the alias `target.index` (an `IndexTarget`) and publish on a clean exit: a new concrete
        index loaded in the block, count-checked, and the alias moved to it in one call (`rebuild`); with
        `append`, documents go through the alias into the index it serves (same model, pruning and
        layout). On an exception the alias keeps serving the old index. Stale build indices an
        interrupted rebuild left are removed first unless `remove_stale=False` (`write_notes`)."""
        index = cls._connect_to(target, meta, id_to_token, must_exist=append, check_existing=append,
                                layout=layout)
        try:
            index._stale_removed = index.remove_stale_builds() if remove_stale else []
            if append:
                index.prepare_append(layout)
                yield index
            else:
                with index.rebuild():
                    yield index
        except BaseException:
            index.close()
            raise
        if not keep_open:
            index.close()

    def write_notes(self) -> list[str]:
        return [f"removed stale build index {name!r} (left by an interrupted rebuild)"
                for name in self._stale_removed]

    def prepare_append(self, layout: Layout | None = None) -> None:
        """Appending: the model and pruning of the index, and its own layout (another one is an error)."""
        self.stored_metadata().check_compatible(self._metadata, f"OpenSearch index {self.name!r}",
                                                check_pruning=True)
        stored = self.stored_layout()
        if layout is not None and layout != stored:
            raise at_option("--mapping", f"OpenSearch index {self.name!r} is laid out as {stored.name}, not "
                                         f"{layout.name}; rebuild it (without --append) to change that")
        self.layout = stored

    @classmethod
    def open_for_search(cls, target: Any, meta: IndexMetadata, check_model: bool = True,
                        id_to_token: Sequence[str] = ()) -> OpenSearchSparseIndex:
        """Connect to the existing alias to search it, with the metadata and layout it was built with."""
        index = cls._connect_to(target, meta, id_to_token, must_exist=True, check_model=check_model)
        index.use_stored_metadata()  # searching: the stored pruning is the index's own
        return index

    @classmethod
    def check_target(cls, target: Any, append: bool | None = None) -> None:
        """Reach the cluster once (a one-line `SpladeError`: unreachable cluster, wrong password)."""
        check_index_name(target.index)
        settings = target.opensearch or OpenSearchSettings.from_env()
        client = make_client(settings)
        try:
            RetryPolicy().call(client.info)
        except Exception as exc:
            raise describe_error(exc, settings, "connecting") from None
        finally:
            client.close()

    @classmethod
    def build_lock(cls, target: Any) -> contextlib.AbstractContextManager[None]:
        """No folder lock: the alias move is the one atomic step."""
        return contextlib.nullcontext()

    @classmethod
    def describe(cls, layout: Layout | None = None) -> str:
        return (layout or Layout()).description

    # -- helpers -----------------------------------------------------------------------------------
    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one idempotent client call, retried on 429 / 5xx / lost connections; client exceptions
        become one-line `SpladeError`s without secrets."""
        # lazily, on purpose: opensearch-py loads only when a cluster is used
        from opensearchpy.exceptions import OpenSearchException

        try:
            return self.retry.call(fn, *args, **kwargs)
        except OpenSearchException as exc:
            raise describe_error(exc, self.settings, what) from None

    def _call_once(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """`_call` without retries, for calls that retry themselves or must not be repeated blindly."""
        # lazily, on purpose: opensearch-py loads only when a cluster is used
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
        """Search with the metadata and layout the index was built with (its own pruning, field type and
        SEISMIC parameters), not the ones passed in."""
        self._metadata = self.stored_metadata()
        self.layout = self.stored_layout()

    def _stored_meta(self, index: str) -> dict[str, Any]:
        mappings = self._call(f"reading the mapping of {index!r}", self.client.indices.get_mapping,
                              index=index)
        for concrete, body in sorted(mappings.items()):
            meta = body.get("mappings", {}).get("_meta", {})
            if "splade" not in meta:
                raise SpladeError(f"OpenSearch index {concrete!r} was not built by splade (no _meta.splade)")
            return meta
        raise SpladeError(f"OpenSearch index {index!r} not found")

    def stored_metadata(self) -> IndexMetadata:
        return IndexMetadata.from_dict(self._stored_meta(self.name)["splade"])

    def stored_layout(self) -> Layout:
        return Layout.from_meta(self._stored_meta(self.name).get("splade_layout"))

    @property
    def server(self) -> ServerInfo:
        """The cluster's version and plugins (asked once)."""
        if self._server is None:
            hosts = self.settings.hosts_text if self.settings else "the cluster"
            self._server = ServerInfo.read(self.client, self._call, f"the cluster at {hosts}")
        return self._server

    @property
    def query_mode(self) -> str:
        """`auto`: `neural_sparse` where the version takes raw vectors and the neural-search plugin is
        listed, else the equivalent `rank_feature` query; `sparse_vector` fields take only `neural_sparse`."""
        if self.layout.mapping == "sparse_vector":
            if self._query_mode == "rank_feature":
                raise at_option("--query-mode", "sparse_vector fields are searched with neural_sparse only")
            return "neural_sparse"
        if self._query_mode == "auto":
            self._query_mode = self.server.query_mode("auto")
        return self._query_mode

    # -- writes ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def rebuild(self, keep_old: bool = False) -> Iterator[OpenSearchSparseIndex]:
        """Zero-downtime re-index: load a new concrete index inside the block, then swap the alias."""
        self._check_alias()
        concrete = self._create_concrete()
        self._target, self._building = concrete, set()
        old: list[str] = []
        try:
            yield self
            old = self._swap_alias(concrete, len(self._building))
        except BaseException:
            self._delete_unaliased([concrete])
            raise
        finally:
            self._target, self._building = self.name, None
        if not keep_old:
            self._delete_unaliased(old)

    def load_into(self, concrete: str) -> None:
        """Send `add`s to the concrete index `concrete`, created with this index's mapping unless another
        process of the same sharded build created it first (its metadata and layout must then match)."""
        self._check_alias()
        self._create_concrete(concrete, exist_ok=True)
        meta = self._stored_meta(concrete)
        if IndexMetadata.from_dict(meta["splade"]) != self._metadata or \
                Layout.from_meta(meta.get("splade_layout")) != self.layout:
            raise SpladeError(f"OpenSearch index {concrete!r} exists with other settings; delete it")
        self._target = concrete

    def publish(self, concrete: str, expected: int, keep_old: bool = False) -> None:
        """Move the alias to the loaded concrete index `concrete` once it holds `expected` documents."""
        old = self._swap_alias(concrete, expected)
        self._target = self.name
        if not keep_old:
            self._delete_unaliased(old)

    def _check_alias(self) -> None:
        if self.exists() and not self.concrete_indices():
            raise at_option("--index", f"{self.name!r} is a concrete OpenSearch index, not an alias; "
                                       "choose another name or delete it")

    def _swap_alias(self, concrete: str, expected: int) -> list[str]:
        """Check the count, then move the alias in one call; returns the indices it left."""
        self._target, self._needs_refresh = concrete, True
        self._refresh()
        found = self._call("counting documents", self.client.count, index=concrete)["count"]
        if found != expected:
            raise SpladeError(f"OpenSearch index {concrete!r} holds {found} documents, "
                              f"expected {expected}; the alias was not moved")
        old = [o for o in self.concrete_indices() if o != concrete]
        actions = [{"remove": {"index": o, "alias": self.name}} for o in old]
        actions.append({"add": {"index": concrete, "alias": self.name}})
        self._move_alias(actions, concrete, old)
        return old

    def _move_alias(self, actions: list[dict[str, Any]], concrete: str, old: list[str]) -> None:
        """Send the alias actions. An answer can be lost after the cluster acted, so after a failure the
        alias's real state decides: moved (done), unchanged (retried if the failure passes), else an error."""
        # lazily, on purpose: opensearch-py loads only when a cluster is used
        from opensearchpy.exceptions import OpenSearchException

        for attempt in range(self.retry.max_retries + 1):
            try:
                self.client.indices.update_aliases(body={"actions": actions})
                return
            except OpenSearchException as exc:
                exc.splade_tries = attempt + 1  # type: ignore[attr-defined]
                failed = describe_error(exc, self.settings, f"moving alias {self.name!r}")
                try:
                    now = self.concrete_indices()
                except SpladeError:
                    raise SpladeError(f"{failed}; where the alias points now could not be read, so no index "
                                      f"was deleted (check GET _alias/{self.name})") from None
                if now == [concrete]:
                    log.info("moving alias %r: the answer was lost but the alias moved", self.name)
                    return
                if now != sorted(old) or not is_retryable(exc) or attempt == self.retry.max_retries:
                    raise failed from None
                self.retry.wait(attempt, f"moving alias {self.name!r} failed", exc)

    def _aliases_of(self, index: str) -> list[str] | None:
        """The aliases naming concrete `index` ([] for none or a missing index, None when unreadable)."""
        try:
            found = self._call(f"reading the aliases of {index!r}", self.client.indices.get_alias,
                               index=index, ignore_unavailable=True)
        except SpladeError:
            return None
        return sorted(found.get(index, {}).get("aliases", {}))

    def _delete_unaliased(self, indices: list[str]) -> list[str]:
        """Delete those of `indices` that no alias names (asked right before); returns the deleted ones.
        An index whose aliases cannot be read is kept."""
        deleted = []
        for name in indices:
            aliases = self._aliases_of(name)
            if aliases is None or aliases:
                log.warning("kept OpenSearch index %r (%s)", name,
                            f"alias {', '.join(map(repr, aliases))} names it" if aliases
                            else "its aliases could not be read")
                continue
            with contextlib.suppress(SpladeError):
                self._call(f"deleting {name!r}", self.client.indices.delete, index=name,
                           ignore_unavailable=True)
                deleted.append(name)
        return deleted

    def remove_stale_builds(self) -> list[str]:
        """Delete this alias's build indices that no alias points to (a killed `rebuild` leaves one);
        returns their names. A rebuild of the same alias running at this moment loses its index and fails."""
        pattern = re.compile(rf"^{re.escape(self.name)}-{BUILD_SUFFIX}$")
        found = self._call("listing build indices", self.client.indices.get_alias, index=f"{self.name}-*",
                           ignore_unavailable=True)
        stale = sorted(name for name, body in found.items()
                       if pattern.match(name) and not body.get("aliases") and self._built_by_splade(name))
        if stale and not self.concrete_indices():
            # no index serves the alias: one of these may hold the last good copy of the corpus
            log.warning("kept build indices %s: alias %r names no index and one of them may be the last "
                        "good copy (point the alias at it, or delete them)", ", ".join(stale), self.name)
            return []
        for name in stale:
            ledger = [f"{name}-ledger"] if f"{name}-ledger" in found else []  # a sharded build's records
            for index in [name, *ledger]:
                self._call(f"deleting stale build index {index!r}", self.client.indices.delete, index=index,
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

    def _create_concrete(self, concrete: str | None = None, exist_ok: bool = False) -> str:
        """Create a concrete index with this layout (named with a new build stamp unless `concrete` is
        given); the cluster must support the layout, and a two-phase layout gets its pipeline first."""
        # lazily, on purpose: opensearch-py loads only when a cluster is used
        from opensearchpy.exceptions import OpenSearchException

        stamp = f"{time.strftime('%Y%m%d%H%M%S')}{int(time.time() * 1e6) % 1_000_000:06d}"
        concrete = concrete or f"{self.name}-{stamp}"
        if self.layout.mapping == "sparse_vector":
            self.server.require("sparse_vector", "--mapping")
        if self.layout.two_phase:
            self.server.require("two_phase", "--two-phase")
            self._call(f"creating search pipeline {TWO_PHASE_PIPELINE!r}", self.client.search_pipeline.put,
                       id=TWO_PHASE_PIPELINE, body=two_phase_pipeline())
        tries = 0

        def create() -> None:
            nonlocal tries
            tries += 1
            try:
                self.client.indices.create(index=concrete, body=index_body(self._metadata, self.layout))
            except OpenSearchException as exc:
                # a retry finds the index its lost first answer created (the build stamp is ours)
                if not ((exist_ok or tries > 1)
                        and getattr(exc, "error", None) == "resource_already_exists_exception"):
                    raise

        self._call(f"creating index {concrete!r}", create)
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
        self._warn_clipped(vectors)
        items = []
        for r, doc_id in enumerate(doc_ids):
            source = self._document_source(str(doc_id), vectors.row(r), None if texts is None else texts[r])
            items.append((str(doc_id), "index", source))
        writer = self._bulk_writer()
        result = self._call_once(f"bulk indexing into {self._target!r}", writer.run, items)
        self._needs_refresh = True
        if result.failed:
            raise SpladeError(f"OpenSearch index {self._target!r}: {result.summary()}")
        if self._building is not None:
            self._building.update(str(d) for d in doc_ids)

    def _bulk_writer(self) -> BulkWriter:
        return BulkWriter(self.client, self._target, chunk_size=self.chunk_size,
                          max_retries=self.retry.max_retries, initial_backoff=self.retry.initial_backoff,
                          max_backoff=self.retry.max_backoff, sleep=self.retry.sleep)

    def _warn_clipped(self, vectors: SparseBatch) -> None:
        """sparse_vector quantizes weights up to `quantization_ceiling_ingest`: say once if some exceed it."""
        if self.layout.mapping != "sparse_vector" or self._clipped_warned or not vectors.nnz:
            return
        largest, ceiling = float(vectors.values.max()), self.layout.ingest_ceiling
        if largest > ceiling:
            self._clipped_warned = True
            log.warning("document weights up to %.2f exceed quantization_ceiling_ingest=%g and are clipped "
                        "by OpenSearch; pass --seismic quantization_ceiling_ingest=%.1f to keep them",
                        largest, ceiling, largest)

    def _document_source(self, doc_id: str, row: tuple[Any, Any], text: str | None) -> dict[str, Any]:
        source: dict[str, Any] = {"doc_id": doc_id, VECTOR_FIELD: self.layout.vector(*row, self.id_to_token)}
        if text is not None:
            source["text"] = text
        return source

    def delete(self, doc_ids: Sequence[str]) -> int:
        writer = self._bulk_writer()
        result = self._call_once(f"deleting from {self._target!r}", writer.run,
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
        tokens = prune_query(self.layout.vector(ids, weights, self.id_to_token), self.max_clauses)
        return self.layout.query(tokens, VECTOR_FIELD, self.query_mode, top_k) if tokens else None

    def search(self, queries: SparseBatch, top_k: int = 10) -> list[SearchHits]:
        check_search_arguments(queries, top_k, self._metadata)
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
