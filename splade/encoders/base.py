"""The `Encoder` interface: texts -> sparse vectors, whatever runs the model.

Every backend shares the batching (sorted by length), pruning (top-k / threshold), the cosine
normalisation of a model trained for cosine scores, and the token-id -> token-string table; a backend
only implements `_encode_batch`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from splade.model.artifact import Similarity, vocabulary_hash
from splade.model.tokenization import TextTokenizer
from splade.sparse import SparseBatch
from splade.tokens import token_names
from splade.windows import ENCODE_WINDOW


class Encoder(ABC):
    """Texts -> `SparseBatch`. Subclasses implement `_encode_batch` for one padded batch."""

    backend: str = "abstract"

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int, model_name: str,
                 similarity: Similarity = "dot") -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
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
    ) -> SparseBatch:
        """Encode `texts`; keep weights above `threshold`, at most `top_k` a row.

        Texts are taken `ENCODE_WINDOW` at a time, tokenized and sorted by length within the window and
        encoded in batches: a text's vector depends only on its window, so encoding a corpus whole or in
        window-aligned shards gives the same vectors, bit for bit.
        """
        texts = list(texts)
        if not texts:
            return SparseBatch(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32),
                               self.vocab_size)
        parts: list[SparseBatch] = []
        with tqdm(total=len(texts), desc=desc, disable=not show_progress, unit="text") as bar:
            for start in range(0, len(texts), ENCODE_WINDOW):
                window = texts[start:start + ENCODE_WINDOW]
                parts.append(self._encode_window(window, batch_size, top_k, threshold, max_length, bar))
        return SparseBatch.concat(parts)

    def _encode_window(self, texts: list[str], batch_size: int, top_k: int | None, threshold: float,
                       max_length: int | None, bar: tqdm) -> SparseBatch:
        """One window of texts in length-sorted batches, returned in input order."""
        encoded = self.text_tokenizer.encode(texts, max_length or self.max_length)
        order = np.argsort([len(ids) for ids in encoded], kind="stable")[::-1]
        parts: list[SparseBatch] = []
        for start in range(0, len(texts), batch_size):
            ids, mask = self.text_tokenizer.pad([encoded[i] for i in order[start:start + batch_size]])
            dense = self._encode_batch(ids, mask)
            if self.similarity == "cosine":  # the model was trained to score by cosine: serve unit vectors
                dense = dense / np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
            parts.append(SparseBatch.from_dense(dense, top_k=top_k, threshold=threshold))
            bar.update(len(ids))
        merged = SparseBatch.concat(parts)
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        return merged.select(inverse)
