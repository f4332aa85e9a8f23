"""The lexical half of the distillation teacher: Okapi BM25 over Kiwi content morphemes between training
texts, scored for any (query, document) pair of a batch.

The statistics (document frequencies, mean length) come from a seeded sample of the training documents;
texts are tokenized as batches first need them and remembered, so a short CPU run pays only for what it
sees. Tokens are kept on disk beside the teacher's embeddings (`kiwi-<part>.npz`: text keys, a term
vocabulary and each text's term ids), so reruns, resumes and epochs tokenize nothing twice.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter

import numpy as np

from splade.data.korean import get_korean_tokenizer
from splade.trainer.cache import ArrayCache, key_of

log = logging.getLogger(__name__)
STATISTICS_SAMPLE = 5000  # training documents the IDF and mean length are estimated on
K1, B = 1.5, 0.75  # the values of the project's Kiwi BM25 baseline
STORE_PREFIX = "kiwi-"


class BM25Teacher:
    """BM25 scores between training texts, by text row."""

    def __init__(
        self, texts: list[str], document_rows: np.ndarray, keys: np.ndarray, cache: ArrayCache, seed: int = 0
    ) -> None:
        """`keys`: a 64-bit key of every text (what the disk cache is keyed by)."""
        self.texts = texts
        self.keys = keys
        self.cache = cache
        self.tokenizer = get_korean_tokenizer()
        self.terms: dict[int, Counter[str]] = {}
        self._pending: list[int] = []
        self._load_store()
        rng = np.random.default_rng([seed, 11])
        rows = np.unique(document_rows)
        sample = rng.choice(rows, size=min(len(rows), STATISTICS_SAMPLE), replace=False)
        self._remember(sample)
        df: Counter[str] = Counter()
        for row in sample:
            df.update(self.terms[int(row)].keys())
        n = len(sample)
        # Lucene's IDF, `ln(1 + (N - df + 0.5) / (df + 0.5))`: positive also for a term in most documents
        self.idf = {t: math.log1p((n - f + 0.5) / (f + 0.5)) for t, f in df.items()}
        self.unseen_idf = math.log1p((n + 0.5) / 0.5)  # a term no sampled document holds
        self.mean_length = max(1.0, float(np.mean([sum(self.terms[int(r)].values()) for r in sample])))

    def _remember(self, rows: np.ndarray) -> None:
        missing = [int(r) for r in np.unique(rows) if int(r) not in self.terms]
        if missing:
            tokens = self.tokenizer.tokenize_many([self.texts[r] for r in missing])
            self.terms.update((r, Counter(t)) for r, t in zip(missing, tokens, strict=True))
            self._pending += missing

    def _load_store(self) -> None:
        position = {int(k): i for i, k in enumerate(self.keys)}
        for name in self.cache.names(STORE_PREFIX):
            part = self.cache.load(name)
            if part is None:
                continue
            vocabulary, offsets, ids, counts = (
                part["vocabulary"],
                part["offsets"],
                part["ids"],
                part["counts"],
            )
            for i, key in enumerate(part["keys"]):
                row = position.get(int(key))
                if row is not None:
                    span = slice(offsets[i], offsets[i + 1])
                    self.terms[row] = Counter(
                        dict(zip(vocabulary[ids[span]].tolist(), counts[span].tolist(), strict=True))
                    )

    def flush(self) -> None:
        """Write the texts tokenized since the last flush to the disk cache."""
        if not self._pending:
            return
        rows, self._pending = self._pending, []
        vocabulary = sorted({t for r in rows for t in self.terms[r]})
        index = {t: i for i, t in enumerate(vocabulary)}
        ids = [index[t] for r in rows for t in self.terms[r]]
        counts = [c for r in rows for c in self.terms[r].values()]
        offsets = np.cumsum([0] + [len(self.terms[r]) for r in rows])
        part = key_of(int(self.keys[rows[0]]), len(rows), time.time_ns())
        self.cache.save(
            f"{STORE_PREFIX}{part}",
            keys=self.keys[rows],
            vocabulary=np.asarray(vocabulary, dtype=np.str_),
            offsets=offsets.astype(np.int64),
            ids=np.asarray(ids, dtype=np.int32),
            counts=np.asarray(counts, dtype=np.int32),
        )

    def scores(self, query_rows: np.ndarray, document_rows: np.ndarray) -> np.ndarray:
        """`[len(query_rows), len(document_rows)]` BM25 scores."""
        self._remember(np.concatenate([query_rows, document_rows]))
        out = np.zeros((len(query_rows), len(document_rows)), dtype=np.float32)
        documents = [self.terms[int(r)] for r in document_rows]
        norms = [K1 * (1 - B + B * sum(d.values()) / self.mean_length) for d in documents]
        for i, row in enumerate(query_rows):
            for term in self.terms[int(row)]:
                idf = self.idf.get(term, self.unseen_idf)
                for j, (doc, norm) in enumerate(zip(documents, norms, strict=True)):
                    tf = doc.get(term, 0)
                    if tf:
                        out[i, j] += idf * tf * (K1 + 1) / (tf + norm)
        return out
