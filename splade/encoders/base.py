"""The `Encoder` interface: texts -> sparse vectors, whatever runs the model.

Every backend shares the batching (sorted by length), pruning (top-k / threshold), the cosine
normalisation of a model trained for cosine scores, and the token-id -> token-string table; a backend
only implements `_encode_batch`.

Queries and documents are encoded at their own lengths (`kind`). An inference-free model's queries never
reach the backend: their vector is the weight table's entries for their own tokens. A model served with a
document expansion weight of its own (`doc_expansion_weight`) has its documents' expansion terms rescaled
here, after the backend: an exported graph computes the vectors as trained.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from splade.model.artifact import Similarity, vocabulary_hash
from splade.model.tokenization import TextTokenizer
from splade.sparse import SparseBatch
from splade.tokens import token_names
from splade.windows import ENCODE_WINDOW

TextKind = Literal["query", "document"]
TEXT_KINDS = ("query", "document")
FEW_QUERIES = 16  # up to this many queries a call, weighing them one by one in Python beats numpy's overhead


class Encoder(ABC):
    """Texts -> `SparseBatch`. Subclasses implement `_encode_batch` for one padded batch."""

    backend: str = "abstract"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, model_name: str,
                 similarity: Similarity = "dot", query_max_length: int | None = None,
                 query_weights: np.ndarray | None = None, document_expansion_ratio: float | None = None
                 ) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length  # documents
        self.query_max_length = query_max_length or max_length
        self.query_weights = query_weights  # an inference-free model's `[vocab]` query weight table
        # what documents' expansion terms are multiplied by (None: served as trained)
        self.document_expansion_ratio = document_expansion_ratio
        self.model_name = model_name
        self.similarity = similarity
        self.text_tokenizer = TextTokenizer(tokenizer)
        self._id_to_token: list[str] | None = None

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Width of the output vectors (the model's output layer, which may exceed the tokenizer)."""

    @property
    def id_to_token(self) -> list[str]:
        """Token string of every output id as OpenSearch ML Commons names it (`""`: never indexed)."""
        if self._id_to_token is None:
            self._id_to_token = token_names(self.tokenizer, self.vocab_size)
        return self._id_to_token

    @property
    def vocab_hash(self) -> str:
        return vocabulary_hash(self.tokenizer)

    @property
    def device_description(self) -> str:
        """Which device / execution provider does the work, in words."""
        return self.backend

    @abstractmethod
    def _encode_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Return the dense `[batch, vocab]` float32 representation of one padded batch."""

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        top_k: int | None = None,
        threshold: float = 0.0,
        max_length: int | None = None,
        show_progress: bool = False,
        desc: str = "encoding",
        kind: TextKind = "document",
    ) -> SparseBatch:
        """Encode `texts` (`kind`: queries or documents, each at its own length); keep weights above
        `threshold`, at most `top_k` a row.

        Texts are taken `ENCODE_WINDOW` at a time, tokenized and sorted by length within the window and
        encoded in batches: a text's vector depends only on its window, so encoding a corpus whole or in
        window-aligned shards gives the same vectors, bit for bit.
        """
        texts = list(texts)
        if not texts:
            return SparseBatch(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                               self.vocab_size)
        if kind not in TEXT_KINDS:
            raise ValueError(f"kind must be one of {TEXT_KINDS}, not {kind!r}")
        length = max_length or (self.query_max_length if kind == "query" else self.max_length)
        if kind == "query" and self.query_weights is not None:
            return self._weigh_queries(texts, length, top_k, threshold)
        parts: list[SparseBatch] = []
        with tqdm(total=len(texts), desc=desc, disable=not show_progress, unit="text") as bar:
            for start in range(0, len(texts), ENCODE_WINDOW):
                window = texts[start:start + ENCODE_WINDOW]
                parts.append(self._encode_window(window, batch_size, top_k, threshold, length, bar, kind))
        return SparseBatch.concat(parts)

    def encode_queries(self, texts: Sequence[str], **options) -> SparseBatch:  # noqa: ANN003 - see encode
        """`encode(texts, kind="query", ...)`."""
        return self.encode(texts, kind="query", **options)

    def encode_documents(self, texts: Sequence[str], **options) -> SparseBatch:  # noqa: ANN003 - see encode
        """`encode(texts, kind="document", ...)`."""
        return self.encode(texts, kind="document", **options)

    def _weigh_queries(self, texts: list[str], max_length: int, top_k: int | None,
                       threshold: float) -> SparseBatch:
        """An inference-free model's queries: each own token weighs its table entry (no forward)."""
        encoded = self.text_tokenizer.encode(texts, max_length)
        return weigh_tokens(encoded, self.query_weights, top_k, threshold, self.similarity == "cosine")

    def _finish(self, dense: np.ndarray, top_k: int | None, threshold: float) -> SparseBatch:
        """Dense rows as served: unit length for a cosine model, pruned."""
        if self.similarity == "cosine":  # the model was trained to score by cosine: serve unit vectors
            dense = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
        return SparseBatch.from_dense(dense, top_k=top_k, threshold=threshold)

    def _encode_window(self, texts: list[str], batch_size: int, top_k: int | None, threshold: float,
                       max_length: int | None, bar: tqdm, kind: TextKind = "document") -> SparseBatch:
        """One window of texts in length-sorted batches, returned in input order."""
        encoded = self.text_tokenizer.encode(texts, max_length or self.max_length)
        order = np.argsort([len(ids) for ids in encoded], kind="stable")[::-1]
        ratio = self.document_expansion_ratio if kind == "document" else None
        parts: list[SparseBatch] = []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.text_tokenizer.pad([encoded[i] for i in order[start:start + batch_size]])
            dense = self._encode_batch(ids, mask)
            if ratio is not None:
                dense = scale_expansion(dense, ids, mask, ratio)
            parts.append(self._finish(dense, top_k, threshold))
            bar.update(len(ids))
        merged = SparseBatch.concat(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return merged.select(inverse)


def scale_expansion(dense: np.ndarray, input_ids: np.ndarray, attention_mask: np.ndarray,
                    ratio: float) -> np.ndarray:
    """`dense` rows with every term their text does not contain multiplied by `ratio` (numpy's
    `splade.model.term_weights.scale_expansion`)."""
    scaled = dense * np.float32(ratio)
    rows, positions = np.nonzero(attention_mask)
    own = input_ids[rows, positions]
    scaled[rows, own] = dense[rows, own]
    return scaled


def weigh_tokens(encoded: Sequence[np.ndarray], table: np.ndarray, top_k: int | None = None,
                 threshold: float = 0.0, cosine: bool = False) -> SparseBatch:
    """CSR rows of `table[id]` for each text's distinct token ids, built from the ids alone (no dense
    `[texts, vocab]` rows): unit length when `cosine`, then entries above `threshold`, at most `top_k`
    a row, as `Encoder._finish` prunes a model's rows."""
    width = int(table.shape[0])
    if len(encoded) <= FEW_QUERIES:
        return _weigh_few(encoded, table, top_k, threshold, cosine)
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    rows = np.repeat(np.arange(len(encoded), dtype=np.int64), lengths)
    ids = np.concatenate(encoded).astype(np.int64)
    keys = np.unique(rows * width + ids)  # distinct (row, id) pairs, by row then id
    rows, ids = keys // width, keys % width
    values = table[ids].astype(np.float32)
    kept = values > 0.0
    rows, ids, values = rows[kept], ids[kept], values[kept]
    if cosine:
        norms = np.sqrt(np.bincount(rows, weights=values.astype(np.float64) ** 2, minlength=len(encoded)))
        values = (values / np.maximum(norms[rows], 1e-12)).astype(np.float32)
    kept = values > threshold
    rows, ids, values = rows[kept], ids[kept], values[kept]
    counts = np.bincount(rows, minlength=len(encoded))
    if top_k is not None and 0 < top_k < width and counts.max(initial=0) > top_k:
        order = np.lexsort((-values, rows))  # each row's entries, heaviest first
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        best = np.sort(order[np.arange(len(order)) - starts < top_k])  # back to row, then id order
        rows, ids, values = rows[best], ids[best], values[best]
        counts = np.bincount(rows, minlength=len(encoded))
    indptr = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return SparseBatch(indptr, ids.astype(np.int32), values, width)


def _weigh_few(encoded: Sequence[np.ndarray], table: np.ndarray, top_k: int | None, threshold: float,
               cosine: bool) -> SparseBatch:
    """`weigh_tokens` for a few queries (a served query is one a call): the same rows, a row at a time."""
    width = int(table.shape[0])
    indptr, ids, values = [0], [], []
    for row in encoded:
        distinct = sorted(set(row.tolist()))
        pairs = [(i, w) for i, w in zip(distinct, table[distinct].tolist(), strict=True) if w > 0.0]
        if cosine and pairs:
            norm = max(math.sqrt(sum(w * w for _, w in pairs)), 1e-12)
            pairs = [(i, w / norm) for i, w in pairs]
        pairs = [(i, w) for i, w in pairs if w > threshold]
        if top_k is not None and 0 < top_k < min(len(pairs), width):
            pairs = sorted(sorted(pairs, key=lambda pair: -pair[1])[:top_k])
        ids += [i for i, _ in pairs]
        values += [w for _, w in pairs]
        indptr.append(len(ids))
    return SparseBatch(np.array(indptr, dtype=np.int64), np.array(ids, dtype=np.int32),
                       np.array(values, dtype=np.float32), width)
