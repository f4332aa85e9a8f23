"""Vectors out (`splade encode --input FILE --output FILE`): a corpus or query file as JSONL sparse vectors.

`jsonl` is pyserini's / Anserini's JsonVectorCollection: `{"id", "contents", "vector": {token: weight}}`
a line (`quantize` N writes `round(weight * N)` integers, the impacts an Anserini impact index takes).
`opensearch` writes what OpenSearch takes: for queries `{"id", "query_tokens": {token: weight}}` (the
`neural_sparse` form, at most 1,024 tokens, weights capped at 64); for documents the `_source` of a splade
index document, `{"doc_id", "text", "sparse_embedding": {token: weight}}` (`rank_features`-safe keys).
Token names are OpenSearch ML Commons' (`splade.tokens`), the same in every format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from splade.atomic import atomic_file
from splade.errors import at_option
from splade.windows import ENCODE_WINDOW

if TYPE_CHECKING:
    from splade.encoders import Encoder

FORMATS = ("jsonl", "opensearch")


def read_items(path: str | Path, queries: bool) -> list[tuple[str, str]]:
    """`(id, text)` of every document of a BEIR corpus (folder or `corpus.jsonl`; title + text), or with
    `queries` of every query of `queries.jsonl` / a TSV `id<TAB>text` file."""
    path = Path(path)
    if queries:
        from splade.indexer.batch import load_query_file

        return list(load_query_file(path).items())
    from splade.data.beir import load_corpus

    corpus_file = path / "corpus.jsonl" if path.is_dir() else path
    if not corpus_file.is_file():
        raise at_option("--input", f"{corpus_file}: file not found")
    return [(doc.doc_id, doc.full_text) for doc in load_corpus(corpus_file).values()]


def vector_row(item_id: str, text: str, weights: dict[str, float], fmt: str, queries: bool,
               quantize: int | None) -> dict[str, Any]:
    """One output line for `weights` (`{token name: weight}`) in `fmt`."""
    if fmt == "opensearch":
        from splade.indexer.queries import escape_token, prune_query

        escaped = {escape_token(token): weight for token, weight in weights.items()}
        if queries:
            return {"id": item_id, "query_tokens": prune_query(escaped)}
        from splade.indexer.opensearch import VECTOR_FIELD

        return {"doc_id": item_id, "text": text, VECTOR_FIELD: escaped}
    if quantize:
        weights = {token: round(weight * quantize) for token, weight in weights.items()}
        weights = {token: weight for token, weight in weights.items() if weight > 0}
    return {"id": item_id, "contents": text, "vector": weights}


def write_vectors(encoder: Encoder, items: list[tuple[str, str]], output: str | Path, fmt: str = "jsonl",
                  queries: bool = False, batch_size: int = 32, top_k: int | None = None,
                  threshold: float = 0.0, quantize: int | None = None, show_progress: bool = True) -> int:
    """Encode `items` a window at a time and write one JSON line each to `output` (atomically)."""
    from splade.tokens import named_weights

    if fmt not in FORMATS:
        raise at_option("--format", f"choose one of {', '.join(FORMATS)}, not {fmt!r}")
    if quantize is not None and (quantize < 1 or fmt != "jsonl"):
        raise at_option("--quantize", "a positive factor, with --format jsonl")
    names = encoder.id_to_token
    with atomic_file(output) as handle, tqdm(total=len(items), desc="encoding", unit="text",
                                              disable=not show_progress) as bar:
        for start in range(0, len(items), ENCODE_WINDOW):
            window = items[start:start + ENCODE_WINDOW]
            vectors = encoder.encode([text for _, text in window], batch_size=batch_size, top_k=top_k,
                                     threshold=threshold, kind="query" if queries else "document")
            for (item_id, text), (ids, weights) in zip(window, vectors.rows(), strict=True):
                keep = np.isfinite(weights) & (weights > 0)
                named = {token: round(weight, 6) for token, weight in
                         named_weights(ids[keep].tolist(), weights[keep].tolist(), names).items()}
                row = vector_row(item_id, text, named, fmt, queries, quantize)
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            bar.update(len(window))
    return len(items)
