"""Exact Okapi BM25 with the scores of `rank_bm25.BM25Okapi`, vectorised as one sparse matrix.

Every (document, term) weight `idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * |d| / avgdl))` is computed
once at build time, so scoring a batch of queries is a single sparse matrix product. The idf is rank-bm25's:
`log((N - df + 0.5) / (df + 0.5))`, with negative values replaced by `epsilon * mean(idf)`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse


class BM25:
    """BM25 index over pre-tokenized documents (tokens from `splade.data.korean` or any tokenizer)."""

    def __init__(self, corpus_tokens: Sequence[Sequence[str]], k1: float = 1.5, b: float = 0.75,
                 epsilon: float = 0.25) -> None:
        if len(corpus_tokens) == 0:
            raise ValueError("BM25 needs at least one document")
        self.k1, self.b, self.epsilon = k1, b, epsilon
        self.vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        doc_len = np.zeros(len(corpus_tokens), dtype=np.float64)
        for d, tokens in enumerate(corpus_tokens):
            doc_len[d] = len(tokens)
            for token in tokens:
                cols.append(self.vocab.setdefault(token, len(self.vocab)))
            rows.extend([d] * len(tokens))
        n_docs, n_terms = len(corpus_tokens), max(len(self.vocab), 1)
        tf = sparse.csr_matrix(
            (np.ones(len(cols), dtype=np.float64), (np.asarray(rows, dtype=np.int64), np.asarray(cols))),
            shape=(n_docs, n_terms),
        )
        tf.sum_duplicates()
        self.n_docs = n_docs
        self.doc_len = doc_len
        self.avgdl = float(doc_len.mean())
        self.idf = self._idf(np.bincount(tf.indices, minlength=n_terms).astype(np.float64), n_docs)
        # Per-entry BM25 weight, stored term-major (terms x docs): a query product reads only its postings.
        norm = k1 * (1.0 - b + b * doc_len / self.avgdl) if self.avgdl > 0 else np.full(n_docs, k1)
        entry_norm = np.repeat(norm, np.diff(tf.indptr))
        weights = self.idf[tf.indices] * tf.data * (k1 + 1.0) / (tf.data + entry_norm)
        self._weights = sparse.csr_matrix((weights.astype(np.float32), tf.indices, tf.indptr),
                                          shape=tf.shape).T.tocsr()
        self._doc_major: sparse.csr_matrix | None = None

    def _idf(self, df: np.ndarray, n_docs: int) -> np.ndarray:
        idf = np.log(n_docs - df + 0.5) - np.log(df + 0.5)
        floor = self.epsilon * idf.mean()
        idf[idf < 0] = floor
        return idf

    def _query_matrix(self, queries_tokens: Sequence[Sequence[str]]) -> sparse.csr_matrix:
        indptr, indices = [0], []
        for tokens in queries_tokens:
            indices.extend(self.vocab[t] for t in tokens if t in self.vocab)
            indptr.append(len(indices))
        data = np.ones(len(indices), dtype=np.float32)  # repeated query terms count again, as in rank-bm25
        matrix = sparse.csr_matrix((data, np.asarray(indices, dtype=np.int64), np.asarray(indptr)),
                                   shape=(len(queries_tokens), self._weights.shape[0]))
        matrix.sum_duplicates()
        return matrix

    def get_scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for one query (float64 array of length n_docs)."""
        return (self._query_matrix([query_tokens]) @ self._weights).toarray()[0].astype(np.float64)

    def score_pairs(self, queries_tokens: Sequence[Sequence[str]], doc_indices: Sequence[int]) -> np.ndarray:
        """Score of document `doc_indices[i]` for query `queries_tokens[i]`, for each i."""
        queries = self._query_matrix(queries_tokens)
        if self._doc_major is None:
            self._doc_major = self._weights.T.tocsr()
        docs = self._doc_major[np.asarray(doc_indices, dtype=np.int64)]
        return np.asarray(queries.multiply(docs).sum(axis=1), dtype=np.float64).ravel()

    def search(self, query_tokens: Sequence[str], top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """Best `top_k` documents (indices, scores), best first; documents sharing no term are left out."""
        return self.search_many([query_tokens], top_k)[0]

    def search_many(self, queries_tokens: Sequence[Sequence[str]], top_k: int, show_progress: bool = False,
                    batch_size: int = 256, desc: str = "bm25") -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` for many queries, scored `batch_size` at a time as one sparse product each."""
        results: list[tuple[np.ndarray, np.ndarray]] = []
        starts = range(0, len(queries_tokens), batch_size)
        if show_progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc=desc, unit="batch")
        for start in starts:
            block = (self._query_matrix(queries_tokens[start:start + batch_size]) @ self._weights).toarray()
            results.extend(top_k_of(row, top_k) for row in block)
        return results


def top_k_of(scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the best `top_k` positive entries of `scores`, best first (ties: lower index)."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > top_k:
        part = np.argpartition(-scores[positive], top_k - 1)[:top_k]
        positive = positive[part]
    order = np.lexsort((positive, -scores[positive]))  # best first, ties by document index
    best = positive[order]
    return best, scores[best].astype(np.float64)
