"""Training batches from token ids computed once.

Every distinct text of the training files is tokenized once (and cached on disk); a batch then gathers
rows of ids and pads queries and documents separately, since queries are short. A batch keeps the text
rows of its queries, positives and negatives: they name the teacher's embeddings and reveal in-batch
false negatives.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from splade.data.triplets import TripletDataset
from splade.model.artifact import vocabulary_hash
from splade.model.tokenization import TextTokenizer, pad_rows
from splade.trainer.cache import ArrayCache, key_of

log = logging.getLogger(__name__)


@dataclass
class TextTable:
    """Distinct texts and their token ids (CSR: `ids[offsets[i]:offsets[i+1]]` is text `i`)."""

    texts: list[str]
    ids: np.ndarray
    offsets: np.ndarray

    def row(self, index: int) -> np.ndarray:
        return self.ids[self.offsets[index] : self.offsets[index + 1]]

    def rows(self, indices: np.ndarray) -> list[np.ndarray]:
        return [self.row(int(i)) for i in indices]


@dataclass
class TripletRows:
    """For every triplet, the text rows of its query, positive and negative."""

    query: np.ndarray
    positive: np.ndarray
    negative: np.ndarray

    def documents(self) -> np.ndarray:
        """Rows of every distinct document text (positives and negatives)."""
        return np.unique(np.concatenate([self.positive, self.negative]))


def _distinct_texts(dataset: TripletDataset) -> tuple[list[str], TripletRows]:
    position: dict[str, int] = {}
    columns: list[list[int]] = [[], [], []]
    for triplet in dataset.triplets:
        for column, text in zip(columns, (triplet.query, triplet.positive, triplet.negative), strict=True):
            column.append(position.setdefault(text, len(position)))
    rows = TripletRows(*(np.asarray(column, dtype=np.int32) for column in columns))
    return list(position), rows


def tokenize_table(texts: list[str], tokenizer: TextTokenizer, max_length: int) -> TextTable:
    encoded = tokenizer.encode(texts, max_length)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(row) for row in encoded], out=offsets[1:])
    ids = np.concatenate(encoded) if encoded else np.zeros(0, np.int32)
    return TextTable(texts, ids.astype(np.int32), offsets)


def tokenized_triplets(
    dataset: TripletDataset, tokenizer: TextTokenizer, max_length: int, cache: ArrayCache, files_key: str
) -> tuple[TextTable, TripletRows]:
    """The training texts' token ids, from the cache when the files, tokenizer and length are unchanged."""
    texts, rows = _distinct_texts(dataset)
    name = (
        f"tokens-{key_of(files_key, vocabulary_hash(tokenizer.tokenizer), tokenizer.fingerprint, max_length)}"
    )
    cached = cache.load(name)
    if cached is not None and len(cached["offsets"]) == len(texts) + 1:
        return TextTable(texts, cached["ids"], cached["offsets"]), rows
    started = time.perf_counter()
    table = tokenize_table(texts, tokenizer, max_length)
    cache.save(name, ids=table.ids, offsets=table.offsets)
    log.info(
        "tokenized %d distinct texts in %.1f s (cached as %s)",
        len(texts),
        time.perf_counter() - started,
        cache.path(name),
    )
    return table, rows


@dataclass
class TripletBatch:
    """One micro-batch: this process's padded queries and documents (positives, then negatives), and the
    text rows of the whole (global) batch's queries, positives and negatives."""

    query_ids: torch.Tensor
    query_mask: torch.Tensor
    doc_ids: torch.Tensor
    doc_mask: torch.Tensor
    query_rows: np.ndarray
    positive_rows: np.ndarray
    negative_rows: np.ndarray

    def __len__(self) -> int:
        """Triplets in the global batch."""
        return len(self.query_rows)

    @property
    def local_size(self) -> int:
        """Triplets this process encodes."""
        return int(self.query_ids.shape[0])

    def to(self, device: torch.device) -> TripletBatch:
        pinned = device.type == "cuda"
        moved = [
            (t.pin_memory() if pinned else t).to(device, non_blocking=pinned)
            for t in (self.query_ids, self.query_mask, self.doc_ids, self.doc_mask)
        ]
        return TripletBatch(*moved, self.query_rows, self.positive_rows, self.negative_rows)

    def false_negatives(self) -> torch.Tensor:
        """`[B, 2B]` True where document j also answers query i (j not i's own positive): another
        triplet of the same query, or a document with the text of i's positive."""
        queries, positives = self.query_rows, self.positive_rows
        documents = np.concatenate([positives, self.negative_rows])
        same_text = documents[None, :] == positives[:, None]
        same_query = np.zeros_like(same_text)
        same_query[:, : len(queries)] = queries[None, :] == queries[:, None]
        mask = same_text | same_query
        mask[np.arange(len(queries)), np.arange(len(queries))] = False
        return torch.from_numpy(mask).to(self.query_ids.device)


def truncate(ids: np.ndarray, max_length: int | None) -> np.ndarray:
    """Token ids cut to `max_length`, keeping the closing special token as the tokenizer would."""
    if max_length is None or len(ids) <= max_length:
        return ids
    return np.concatenate([ids[: max_length - 1], ids[-1:]])


def query_window(document: np.ndarray, query: np.ndarray, length: int) -> np.ndarray:
    """The `length` tokens of `document` (its special tokens kept at both ends) whose span holds the most
    occurrences of the query's tokens; the opening where no span holds more."""
    if len(document) <= length:
        return document
    body, span = document[1:-1], length - 2
    hits = np.isin(body, query[1:-1]).astype(np.int32)
    per_span = np.convolve(hits, np.ones(span, dtype=np.int32), "valid")  # hits in the span starting at i
    start = int(np.argmax(per_span))  # the first of the best: the opening on ties
    return np.concatenate([document[:1], body[start : start + span], document[-1:]])


def make_batch(
    table: TextTable,
    rows: TripletRows,
    indices: np.ndarray,
    pad_id: int,
    local: np.ndarray | None = None,
    query_length: int | None = None,
    document_length: int | None = None,
    window: str = "first",
) -> TripletBatch:
    """The micro-batch of triplets `indices`; this process encodes `local` (a part of them, default all).
    Queries are cut to `query_length`, documents to `document_length` (None: as the table holds them):
    their opening (`window` "first") or the span nearest their triplet's query ("query")."""
    local = indices if local is None else local
    q, p, n = rows.query[local], rows.positive[local], rows.negative[local]
    queries = [truncate(ids, query_length) for ids in table.rows(q)]
    query_ids, query_mask = pad_rows(queries, pad_id)
    documents = table.rows(np.concatenate([p, n]))
    if window == "query" and document_length is not None:
        pairs = zip(documents, queries * 2, strict=True)  # positives, then negatives, each beside its query
        documents = [query_window(d, query, document_length) for d, query in pairs]
    else:
        documents = [truncate(d, document_length) for d in documents]
    doc_ids, doc_mask = pad_rows(documents, pad_id)
    tensors = [torch.from_numpy(a) for a in (query_ids, query_mask, doc_ids, doc_mask)]
    return TripletBatch(*tensors, rows.query[indices], rows.positive[indices], rows.negative[indices])
