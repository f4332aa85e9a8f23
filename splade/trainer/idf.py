"""IDF over the model's vocabulary and the IDF-aware FLOPS penalty weights (guide 6.1 / 7.3 #1).

The review's point is that uniform FLOPS suppresses informative tokens. The penalty weight of a token
therefore falls as its IDF rises: `w_j = idf_max / idf_j` with the smooth IDF `1 + ln((N+1)/(df_j+1))`,
so the rarest (most informative) tokens pay the uniform penalty (1) and a token in every document pays
about `1 + ln(N+1)` times as much — bounded, no clipping needed.

Document frequencies come from token ids already computed (a sparse text x token matrix), so they cost
a twentieth of a second for the 75k documents of the full Korean training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from splade.errors import SpladeError, at_line
from splade.fileio import iter_json_objects
from splade.trainer.batches import TextTable


def corpus_texts(path: Path) -> list[str]:
    """Texts of an IDF corpus: a BEIR folder or `corpus.jsonl` (`title` + `text`), or triplet JSONL
    (its `positive` and `negative` texts)."""
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise SpladeError(f"{path}: IDF corpus not found (loss.idf_corpus)")
    texts: list[str] = []
    for number, record in iter_json_objects(path):
        if "text" in record:
            texts.append(f"{record.get('title') or ''} {record['text']}".strip())
        elif "positive" in record:
            texts.extend(str(record[k]) for k in ("positive", "negative") if record.get(k))
        else:
            raise at_line(path, number, "expected a 'text' (corpus) or 'positive' (triplet) field")
    if not texts:
        raise SpladeError(f"{path}: IDF corpus is empty")
    return texts


def token_matrix(table: TextTable, rows: np.ndarray, vocab_size: int) -> sp.csr_matrix:
    """The texts `rows` of `table` as a binary text x token matrix (each (text, token) once; at least
    `vocab_size` columns)."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = table.offsets[rows]
    lengths = table.offsets[rows + 1] - starts
    first = np.cumsum(lengths) - lengths  # where each text's ids start in the gathered array
    ids = table.ids[np.repeat(starts - first, lengths) + np.arange(int(lengths.sum()))]
    width = max(vocab_size, int(ids.max()) + 1 if len(ids) else 0)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    matrix = sp.csr_matrix((np.ones(len(ids), dtype=np.int8), ids, indptr), shape=(len(rows), width))
    matrix.sum_duplicates()
    matrix.data[:] = 1
    return matrix


def document_frequencies(table: TextTable, rows: np.ndarray, vocab_size: int) -> np.ndarray:
    """How many of the texts `rows` of `table` contain each token id (ids past `vocab_size` ignored): the
    count per column of their `token_matrix`."""
    matrix = token_matrix(table, rows, vocab_size)
    return np.bincount(matrix.indices[matrix.indices < vocab_size], minlength=vocab_size).astype(np.int64)


def smooth_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """`1 + ln((N + 1) / (df + 1))`: >= 1 for every token, largest for unseen tokens."""
    return 1.0 + np.log((n_docs + 1) / (df + 1.0))


def bm25_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """BM25's IDF `ln(1 + (N - df + 0.5) / (df + 0.5))`: near 0 for a token in every document."""
    return np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)


def idf_penalty_weights(df: np.ndarray, n_docs: int) -> torch.Tensor:
    """Per-token FLOPS penalty weights `idf_max / idf_j` (1 for rare tokens, larger for common ones)."""
    idf = smooth_idf(df, n_docs)
    return torch.tensor(idf.max() / idf, dtype=torch.float32)
