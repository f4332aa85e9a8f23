"""IDF over the model's vocabulary and the IDF-aware FLOPS penalty weights (guide 6.1 / 7.3 #1).

The review's point is that uniform FLOPS suppresses informative tokens. The penalty weight of a token
therefore falls as its IDF rises: `w_j = idf_max / idf_j` with the smooth IDF `1 + ln((N+1)/(df_j+1))`,
so the rarest (most informative) tokens pay the uniform penalty (1) and a token in every document pays
about `1 + ln(N+1)` times as much — bounded, no clipping needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from splade.errors import SpladeError, at_line
from splade.fileio import iter_json_objects


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


def document_frequencies(
    texts: Sequence[str], tokenizer, vocab_size: int, max_length: int = 512, batch_size: int = 1000
) -> np.ndarray:  # noqa: ANN001 - any HF tokenizer
    """How many texts contain each token id."""
    df = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        ids = tokenizer(chunk, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"]
        for row in ids:
            uniq = np.unique(np.asarray(row, dtype=np.int64))
            df[uniq[uniq < vocab_size]] += 1
    return df


def smooth_idf(df: np.ndarray, n_docs: int) -> np.ndarray:
    """`1 + ln((N + 1) / (df + 1))`: >= 1 for every token, largest for unseen tokens."""
    return 1.0 + np.log((n_docs + 1) / (df + 1.0))


def idf_penalty_weights(
    texts: Iterable[str], tokenizer, vocab_size: int, max_length: int = 512
) -> torch.Tensor:  # noqa: ANN001
    """Per-token FLOPS penalty weights `idf_max / idf_j` (1 for rare tokens, larger for common ones)."""
    texts = list(texts)
    idf = smooth_idf(document_frequencies(texts, tokenizer, vocab_size, max_length), len(texts))
    return torch.tensor(idf.max() / idf, dtype=torch.float32)
