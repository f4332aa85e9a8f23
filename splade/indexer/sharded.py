"""Sharded builds: every shard encodes its share of the corpus; the last shard to finish publishes the index.

Embedded index `PATH`: shard `i` writes an embedded index of its documents into `PATH.parts/part-i-of-n/`,
then its marker (`splade.ledger.FolderLedger`). The shard that completes the set takes PATH's
writer lock and publishes one generation holding every part's segments, in shard order (hard links: no
re-encoding), then removes `PATH.parts`. Readers keep the previous generation until then.

OpenSearch alias `NAME`: every shard bulk-loads into one build index, `NAME-shards-<job>` (whichever shard
comes first creates it), and records its document count in the ledger index `NAME-shards-<job>-ledger`
(`splade.indexer.opensearch.ledger`). The shard that finds every shard recorded claims the finish, checks
the build index's count against the recorded sums and moves the alias in one call.

`<job>` fingerprints the corpus, the model, the pruning and the shard count: a shard run again for the same
job skips its work once its part is recorded, and parts of another job never mix in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splade.data.beir import Document
from splade.fingerprint import corpus_fingerprint
from splade.indexer.base import IndexMetadata
from splade.indexer.corpus import index_corpus
from splade.indexer.local import LocalSparseIndex
from splade.indexer.opensearch import OpenSearchSettings, OpenSearchSparseIndex
from splade.indexer.opensearch.layouts import Layout
from splade.indexer.opensearch.ledger import IndexLedger
from splade.ledger import FINISH, FINISHED, WAIT, FolderLedger, Shard
from splade.windows import ENCODE_WINDOW

if TYPE_CHECKING:
    from splade.config.index import IndexTarget
    from splade.encoders import Encoder


@dataclass
class ShardOutcome:
    """What one shard did: its documents, and whether it published the index (`state` FINISH), left it to
    the missing shards (WAIT), or found it published by another shard (FINISHED)."""

    shard: Shard
    encoded: int  # documents this shard encoded now (0 when its part was already recorded)
    state: str
    missing: list[int] = field(default_factory=list)
    total: int = 0  # documents in the index this shard published
    notes: list[str] = field(default_factory=list)

    def message(self, where: str) -> str:
        done = f"shard {self.shard.label}: encoded {self.encoded} documents"
        if self.state == FINISH:
            return f"{done}; published {where} with {self.total} documents from {self.shard.count} shards"
        if self.state == WAIT:
            waiting = ", ".join(str(i) for i in self.missing)
            return f"{done}; waiting for shard(s) {waiting}: the last shard to finish publishes {where}"
        return f"{done}; another shard published {where}"


def job_key(documents: Sequence[Document], meta: IndexMetadata, shard: Shard, *settings: str) -> str:
    """The fingerprint of one sharded build: corpus (ids and texts), model, pruning, shard count, settings."""
    head = json.dumps(meta.to_dict(), sort_keys=True)
    return corpus_fingerprint(documents, head, str(shard.count), *settings)


def my_documents(documents: Sequence[Document], shard: Shard) -> Sequence[Document]:
    """This shard's contiguous run of whole encoding windows."""
    positions = shard.positions(len(documents), ENCODE_WINDOW)
    return documents[positions.start:positions.stop]


def parts_folder(path: Path) -> Path:
    return path.parent / f"{path.name}.parts"


def build_local_shard(encoder: Encoder, documents: Sequence[Document], target: IndexTarget,
                      meta: IndexMetadata, shard: Shard, batch_size: int, append: bool, show_progress: bool,
                      layout: Layout | None = None) -> dict[str, Any]:
    """Write this shard's part of the embedded index `target.index`; publish the index if it is the last
    part. Parts and the index are written by `LocalSparseIndex.writer`; the folder ledger says who merges."""
    path = Path(target.index)
    ledger = FolderLedger(parts_folder(path), job_key(documents, meta, shard, "append" if append else ""),
                          shard)
    encoded = 0
    if ledger.marker(shard.index) is None:
        with LocalSparseIndex.writer(ledger.folder / f"part-{shard.tag}", meta, layout=layout) as part:
            encoded = index_corpus(encoder, my_documents(documents, shard), part, batch_size, show_progress)
        ledger.mark_done({"documents": encoded})
    with ledger.finishing() as (state, found):
        outcome = ShardOutcome(shard, encoded, state, missing=found if state == WAIT else [])
        if state == FINISH:
            parts = [ledger.folder / f"part-{Shard(i, shard.count).tag}" for i in range(shard.count)]
            with LocalSparseIndex.build_lock(path) as lock, \
                    LocalSparseIndex.writer(path, meta, append=append, lock=lock, keep_open=True) as index:
                index.adopt(parts)
            outcome.total, outcome.notes = index.count(), index.write_notes()
    return summary(outcome, f"the local index {target.index}")


def build_opensearch_shard(encoder: Encoder, documents: Sequence[Document], target: IndexTarget,
                           meta: IndexMetadata, shard: Shard, batch_size: int, append: bool,
                           show_progress: bool, layout: Layout | None = None) -> dict[str, Any]:
    """Load this shard's documents into the shared build index; move the alias if it is the last shard.
    Appends are not atomic on OpenSearch anyway: each shard adds its share through the alias's writer."""
    if append:
        with OpenSearchSparseIndex.writer(target, meta, append=True, id_to_token=encoder.id_to_token,
                                          layout=layout, remove_stale=False) as index:
            count = index_corpus(encoder, my_documents(documents, shard), index, batch_size, show_progress)
        return {"documents": count, "notes": index.write_notes(),
                "message": f"shard {shard.label}: appended {count} documents to {target.index!r}"}
    index = OpenSearchSparseIndex.connect(target.opensearch or OpenSearchSettings.from_env(), target.index,
                                          encoder.id_to_token, meta, target.query_mode, must_exist=False,
                                          check_existing=False, layout=layout)
    with index:
        outcome = _opensearch_shard(encoder, documents, index, shard, batch_size, show_progress)
    return summary(outcome, f"the OpenSearch alias {target.index!r}")


def _opensearch_shard(encoder: Encoder, documents: Sequence[Document], index: OpenSearchSparseIndex,
                      shard: Shard, batch_size: int, show_progress: bool) -> ShardOutcome:
    """The shards share one build index; the ledger index says who moves the alias (`publish`)."""
    key = job_key(documents, index.metadata, shard, json.dumps(index.layout.to_meta(), sort_keys=True))
    build = f"{index.name}-shards-{key}"
    if build in index.concrete_indices():
        return ShardOutcome(shard, 0, FINISHED, notes=[f"{index.name!r} already serves this build ({build})"])
    ledger = IndexLedger(index, f"{build}-ledger", shard)
    encoded = 0
    if ledger.marker(shard.index) is None:
        index.load_into(build)
        encoded = index_corpus(encoder, my_documents(documents, shard), index, batch_size, show_progress)
        ledger.mark_done(encoded)
    state, found = ledger.finishing()
    outcome = ShardOutcome(shard, encoded, state, missing=found if state == WAIT else [])
    if state == FINISH:
        outcome.total = sum(int(marker["documents"]) for marker in found)
        try:
            index.publish(build, outcome.total)
        except BaseException:
            ledger.release()
            raise
        ledger.remove()
        outcome.notes = [f"removed stale build index {name!r} (left by an interrupted build)"
                         for name in index.remove_stale_builds()]
    return outcome


def summary(outcome: ShardOutcome, where: str) -> dict[str, Any]:
    """The part of `build_index`'s result a sharded build adds."""
    return {"shard": outcome.shard.label, "state": outcome.state, "message": outcome.message(where),
            "notes": outcome.notes}


SHARD_BUILDERS = {"local": build_local_shard, "opensearch": build_opensearch_shard}
