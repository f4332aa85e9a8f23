"""The lexical half of the distillation teacher: Okapi BM25 over Kiwi content morphemes between training
texts, scored for any (query, document) pair of a batch.

The statistics (document frequencies, mean length) come from a seeded sample of the training documents;
texts are tokenized as batches first need them and remembered, so a short CPU run pays only for what it
sees.
"""

from __future__ import annotations

import logging
import math
from collections import Counter

import numpy as np

from splade.data.korean import get_korean_tokenizer

log = logging.getLogger(__name__)
STATISTICS_SAMPLE = 5000  # training documents the IDF and mean length are estimated on
K1, B = 1.5, 0.75  # the values of the project's Kiwi BM25 baseline


class BM25Teacher:
    """BM25 scores between training texts, by text row."""

    def __init__(self, texts: list[str], document_rows: np.ndarray, seed: int = 0) -> None:
        self.texts = texts
        self.tokenizer = get_korean_tokenizer()
        self.terms: dict[int, Counter[str]] = {}
        rng = np.random.default_rng([seed, 11])
        rows = np.unique(document_rows)
        sample = rng.choice(rows, size=min(len(rows), STATISTICS_SAMPLE), replace=False)
        self._remember(sample)
        df: Counter[str] = Counter()
        for row in sample:
            df.update(self.terms[int(row)].keys())
        n = len(sample)
        self.idf = {t: max(0.0, math.log((n - f + 0.5) / (f + 0.5))) for t, f in df.items()}
        self.unseen_idf = math.log((n + 0.5) / 0.5)  # a term no sampled document holds
        self.mean_length = max(1.0, float(np.mean([sum(self.terms[int(r)].values()) for r in sample])))

    def _remember(self, rows: np.ndarray) -> None:
        missing = [int(r) for r in np.unique(rows) if int(r) not in self.terms]
        if missing:
            tokens = self.tokenizer.tokenize_many([self.texts[r] for r in missing])
            self.terms.update((r, Counter(t)) for r, t in zip(missing, tokens, strict=True))

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
