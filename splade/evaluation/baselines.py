"""The baselines SPLADE must beat: Okapi BM25 (Kiwi morphemes or whitespace tokens) and dense retrieval."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from splade.data.beir import Document
from splade.errors import SpladeError
from splade.evaluation.base import RetrievalSystem, SearchOutput, stopwatch
from splade.evaluation.efficiency import average_terms, flops, term_sets_to_batch, widen
from splade.sparse import SparseBatch

TOKENIZERS = ("kiwi", "whitespace")


class BM25System(RetrievalSystem):
    """Okapi BM25 (k1 1.5, b 0.75) over Kiwi content morphemes (the data builder's tokenizer) or words."""

    kind = "bm25"

    def __init__(self, name: str = "bm25", tokenizer: str = "kiwi", baseline: bool = True) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown BM25 tokenizer {tokenizer!r} (choose {', '.join(TOKENIZERS)})")
        super().__init__(name, baseline)
        self.tokenizer = tokenizer
        self._bm25 = None
        self._doc_ids: list[str] = []
        self._vocabulary: dict[str, int] = {}
        self._doc_terms: SparseBatch | None = None

    @property
    def description(self) -> str:
        words = "Kiwi content morphemes" if self.tokenizer == "kiwi" else "lower-cased whitespace tokens"
        return f"Okapi BM25 (k1 1.5, b 0.75) over {words}"

    def _tokenize(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        if self.tokenizer == "whitespace":
            return [text.lower().split() for text in texts]
        from splade.data.korean import get_korean_tokenizer

        return get_korean_tokenizer().tokenize_many(list(texts), show_progress=show_progress,
                                                    desc=f"{self.name} documents")

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        from splade.data.bm25 import BM25

        self._tokenize(["준비"])  # load the analyser's model outside the timed part
        with stopwatch() as encode_time:
            tokens = self._tokenize([doc.full_text for doc in documents], show_progress)
        with stopwatch() as index_time:
            self._bm25 = BM25(tokens)
        self.doc_encode_s, self.index_s = encode_time[0], index_time[0]
        self._doc_ids = [doc.doc_id for doc in documents]
        self._vocabulary = {}
        self._doc_terms = term_sets_to_batch(tokens, self._vocabulary)

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        if self._bm25 is None or self._doc_terms is None:
            raise RuntimeError("index() a corpus before searching")
        qids = list(queries)
        with stopwatch() as encode_time:
            tokens = self._tokenize([queries[q] for q in qids])
        with stopwatch() as search_time:
            hits = self._bm25.search_many(tokens, top_k, show_progress=show_progress,
                                          desc=f"{self.name} queries")
        run = {
            qid: {self._doc_ids[int(i)]: float(s) for i, s in zip(indices, scores, strict=True) if s > 0}
            for qid, (indices, scores) in zip(qids, hits, strict=True)
        }
        vocabulary = dict(self._vocabulary)  # query-only terms must not leak into the next query set
        query_terms = term_sets_to_batch(tokens, vocabulary)
        size = len(vocabulary)
        cost = flops(widen(query_terms, size), widen(self._doc_terms, size))
        return SearchOutput(run, encode_time[0], search_time[0], average_terms(query_terms), cost)

    @property
    def avg_doc_terms(self) -> float:
        return average_terms(self._doc_terms) if self._doc_terms is not None else 0.0

    @property
    def index_bytes(self) -> int:
        """Inverted-index size: one (int32 doc id, float32 weight) posting per distinct term of a document."""
        if self._doc_terms is None:
            return 0
        vocabulary_bytes = sum(len(term.encode("utf-8")) + 8 for term in self._vocabulary)
        return self._doc_terms.nnz * 8 + vocabulary_bytes


class DenseSystem(RetrievalSystem):
    """A sentence-transformers bi-encoder: normalised embeddings, exact cosine top-k by matrix product."""

    kind = "dense"

    def __init__(self, model: str | Path, name: str = "dense", query_prefix: str = "query: ",
                 passage_prefix: str = "passage: ", max_length: int = 256, batch_size: int = 32,
                 device: str | None = None, baseline: bool = True) -> None:
        super().__init__(name, baseline)
        self.model_path = str(model)
        self.query_prefix, self.passage_prefix = query_prefix, passage_prefix
        self.batch_size = batch_size
        self.model = _load_sentence_transformer(self.model_path, device)
        self.model.max_seq_length = max_length
        self._doc_ids: list[str] = []
        self._embeddings = np.zeros((0, 0), dtype=np.float32)

    @property
    def description(self) -> str:
        return (f"dense {Path(self.model_path).name} (cosine, prefixes {self.query_prefix!r} / "
                f"{self.passage_prefix!r}, max length {self.model.max_seq_length})")

    def _embed(self, texts: list[str], show_progress: bool, desc: str) -> np.ndarray:
        """Normalised float32 embeddings, under one progress bar of ours (texts, not batches)."""
        from tqdm.auto import tqdm

        parts = []
        step = self.batch_size * 8
        with tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress) as bar:
            for start in range(0, len(texts), step):
                chunk = texts[start:start + step]
                parts.append(np.asarray(self.model.encode(
                    chunk, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=False), dtype=np.float32))
                bar.update(len(chunk))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        with stopwatch() as encode_time:
            texts = [self.passage_prefix + d.full_text for d in documents]
            self._embeddings = self._embed(texts, show_progress, f"{self.name} documents")
        self.doc_encode_s, self.index_s = encode_time[0], 0.0
        self._doc_ids = [doc.doc_id for doc in documents]

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        qids = list(queries)
        with stopwatch() as encode_time:
            embedded = self._embed([self.query_prefix + queries[q] for q in qids], show_progress,
                                   f"{self.name} queries")
        run = {}
        with stopwatch() as search_time:
            k = min(top_k, len(self._doc_ids))
            for start in range(0, len(qids), 256):
                scores = embedded[start:start + 256] @ self._embeddings.T
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                for row, qid in enumerate(qids[start:start + 256]):
                    best = top[row][np.argsort(-scores[row, top[row]], kind="stable")]
                    run[qid] = {self._doc_ids[i]: float(scores[row, i]) for i in best}
        dim = float(self._embeddings.shape[1])
        return SearchOutput(run, encode_time[0], search_time[0], dim, dim)

    @property
    def avg_doc_terms(self) -> float:
        return float(self._embeddings.shape[1])

    @property
    def index_bytes(self) -> int:
        return int(self._embeddings.nbytes)


def _load_sentence_transformer(path: str, device: str | None):
    """Load in float32 (stored float16 weights are slow and lossy on CPU); a bad path is one clear line."""
    import torch
    from sentence_transformers import SentenceTransformer

    from splade.model.backbone import dtype_argument, quiet_transformers

    quiet_transformers()
    local = Path(path)
    if (local.is_absolute() or path.startswith(".")) and not local.exists():
        raise SpladeError(f"--dense: model folder {path} not found")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return SentenceTransformer(path, device=device, model_kwargs=dtype_argument(torch.float32))
    except (OSError, ValueError) as exc:
        raise SpladeError(f"--dense: cannot load sentence-transformers model {path}: {exc}") from None
