"""Encoding a corpus into a `SparseIndex` and running queries against one (the index stage's core loop)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from splade.data.beir import Document
from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata, SparseIndex
from splade.windows import ENCODE_WINDOW

if TYPE_CHECKING:
    from splade.encoders import Encoder

ENCODE_CHUNK = ENCODE_WINDOW  # documents encoded and handed to `index.add` at a time


def metadata_for(encoder: Encoder, top_k: int | None = None, threshold: float = 0.0) -> IndexMetadata:
    """The metadata an index built with `encoder` and this document pruning carries."""
    return IndexMetadata(encoder.model_name, encoder.vocab_hash, encoder.vocab_size, top_k, threshold)


def index_corpus(encoder: Encoder, documents: Sequence[Document], index: SparseIndex, batch_size: int = 32,
                 show_progress: bool = True) -> int:
    """Encode `documents` (title + text, pruned as `index.metadata` says) and add them; returns the count."""
    meta = index.metadata
    if encoder.vocab_hash != meta.vocab_hash:
        raise SpladeError("the encoder's vocabulary differs from the index's; "
                          "use the model the index was built with")
    done = 0
    with tqdm(total=len(documents), desc="indexing", unit="doc", disable=not show_progress) as bar:
        for start in range(0, len(documents), ENCODE_CHUNK):
            chunk = documents[start:start + ENCODE_CHUNK]
            texts = [d.full_text for d in chunk]
            vectors = encoder.encode(texts, batch_size=batch_size, top_k=meta.top_k, threshold=meta.threshold)
            index.add([d.doc_id for d in chunk], vectors, texts)
            done += len(chunk)
            bar.update(len(chunk))
    return done


def search_queries(encoder: Encoder, queries: dict[str, str], index: SparseIndex, top_k: int = 10,
                   batch_size: int = 32, show_progress: bool = False) -> dict[str, dict[str, float]]:
    """Encode and run `queries`; the result is a run `{query id: {doc id: score}}` (best first)."""
    qids = list(queries)
    vectors = encoder.encode_queries([queries[q] for q in qids], batch_size=batch_size,
                                     show_progress=show_progress, desc="queries")
    hits = index.search(vectors, top_k=top_k)
    return {qid: dict(row) for qid, row in zip(qids, hits, strict=True)}
