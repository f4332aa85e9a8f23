"""The baselines SPLADE must beat: Okapi BM25 (Kiwi morphemes, a model's token pieces or whitespace tokens),
dense retrieval, and the teacher the trainer distils from (BM25 and dense fused per query)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from splade.data.beir import Document
from splade.errors import SpladeError, at_option, first_line
from splade.evaluation.base import RetrievalSystem, SearchOutput, stopwatch
from splade.evaluation.efficiency import average_terms, flops, term_sets_to_batch, widen
from splade.sparse import SparseBatch

TOKENIZERS = ("kiwi", "whitespace", "pieces")
WHOLE = "whole document"  # BM25 reads every token of a text
TEACHER_DEPTH = 1000  # documents of each system's ranking that the teacher fuses


class BM25System(RetrievalSystem):
    """Okapi BM25 (k1 1.5, b 0.75) over Kiwi content morphemes (the data builder's tokenizer), words, or the
    token pieces of a model's tokenizer (`pieces_model`: no special tokens, whole texts)."""

    kind = "bm25"

    def __init__(self, name: str = "bm25", tokenizer: str = "kiwi", baseline: bool = True,
                 pieces_model: str | Path | None = None) -> None:
        if tokenizer not in TOKENIZERS:
            raise ValueError(f"unknown BM25 tokenizer {tokenizer!r} (choose {', '.join(TOKENIZERS)})")
        if (tokenizer == "pieces") != (pieces_model is not None):
            raise ValueError("pieces_model is needed by, and only by, the pieces tokenizer")
        super().__init__(name, baseline)
        self.tokenizer = tokenizer
        self.pieces_model = pieces_model
        self._pieces = None if pieces_model is None else load_piece_tokenizer(pieces_model)
        self._bm25 = None
        self._doc_ids: list[str] = []
        self._vocabulary: dict[str, int] = {}
        self._doc_terms: SparseBatch | None = None

    @property
    def description(self) -> str:
        pieces = f"the token pieces of {Path(str(self.pieces_model)).name}'s tokenizer"
        words = {"kiwi": "Kiwi content morphemes", "whitespace": "lower-cased whitespace tokens",
                 "pieces": pieces}[self.tokenizer]
        return f"Okapi BM25 (k1 1.5, b 0.75) over {words}"

    @property
    def lengths(self) -> dict[str, int | str]:
        return {"bm25": WHOLE}

    def _tokenize(self, texts: Sequence[str], show_progress: bool = False) -> list[list[str]]:
        if self.tokenizer == "whitespace":
            return [text.lower().split() for text in texts]
        if self._pieces is not None:
            ids = self._pieces(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
            return [self._pieces.convert_ids_to_tokens(row) for row in ids]
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


def load_piece_tokenizer(folder: str | Path):  # noqa: ANN201 - a transformers tokenizer
    """The tokenizer of a model folder (a SPLADE, Hugging Face or sentence-transformers folder)."""
    from transformers import AutoTokenizer

    from splade.model.artifact import backbone_dir

    if not Path(folder).is_dir():
        raise at_option("--bm25-pieces", f"tokenizer folder {folder} not found")
    try:
        return AutoTokenizer.from_pretrained(str(backbone_dir(folder)))
    except (OSError, ValueError) as exc:
        message = f"cannot load a tokenizer from {folder} ({first_line(exc)})"
        raise at_option("--bm25-pieces", message) from None


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

    @property
    def lengths(self) -> dict[str, int | str]:
        return {"dense_max_length": int(self.model.max_seq_length)}

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


class TeacherSystem(RetrievalSystem):
    """The ensemble the trainer distils from (arXiv 2411.04403): per query, the top `TEACHER_DEPTH` of a BM25
    and of a dense system, each min-max normalised, mixed `w · bm25 + (1 − w) · dense` with `w` following
    the pair's languages (`splade.fusion`). Index its two systems first, on the same corpus."""

    kind = "teacher"

    def __init__(self, bm25: BM25System, dense: DenseSystem, bm25_weight: float = 0.4,
                 cross_lingual_weight: float = 0.0, name: str = "teacher", baseline: bool = True) -> None:
        super().__init__(name, baseline)
        self.bm25, self.dense = bm25, dense
        self.bm25_weight, self.cross_lingual_weight = bm25_weight, cross_lingual_weight
        self._doc_ids: list[str] = []
        self._position: dict[str, int] = {}
        self._doc_korean = np.zeros(0, dtype=bool)

    @property
    def description(self) -> str:
        return (f"the trainer's teacher: {self.bm25.name} and {self.dense.name} top {TEACHER_DEPTH} each, "
                f"min-max normalised per query, w·BM25 + (1 − w)·dense with w {self.bm25_weight:g} when "
                f"query and document are Korean, {self.cross_lingual_weight:g} otherwise")

    @property
    def lengths(self) -> dict[str, int | str]:
        return {**self.bm25.lengths, **self.dense.lengths}

    def index(self, documents: Sequence[Document], show_progress: bool = False) -> None:
        from splade.fusion import is_korean

        self._doc_ids = [doc.doc_id for doc in documents]
        if self.bm25._doc_ids != self._doc_ids or self.dense._doc_ids != self._doc_ids:
            raise RuntimeError("the teacher fuses its BM25 and dense systems: index them on this corpus "
                               "first")
        self._position = {doc_id: i for i, doc_id in enumerate(self._doc_ids)}
        with stopwatch() as index_time:
            self._doc_korean = is_korean([doc.full_text for doc in documents])
        self.doc_encode_s = self.bm25.doc_encode_s + self.dense.doc_encode_s
        self.index_s = self.bm25.index_s + self.dense.index_s + index_time[0]

    def search(self, queries: dict[str, str], top_k: int, show_progress: bool = False) -> SearchOutput:
        from splade.fusion import fuse_candidates, is_korean, pair_weights

        if len(self._doc_korean) != len(self._doc_ids) or not self._doc_ids:
            raise RuntimeError("index() a corpus before searching")
        lexical = self.bm25.search(queries, TEACHER_DEPTH, show_progress)
        semantic = self.dense.search(queries, TEACHER_DEPTH, show_progress)
        qids = list(queries)
        run = {}
        with stopwatch() as fuse_time:
            query_korean = is_korean([queries[q] for q in qids])
            for qid, korean in zip(qids, query_korean, strict=True):
                first, second = lexical.run.get(qid, {}), semantic.run.get(qid, {})
                candidates = list(dict.fromkeys([*first, *second]))
                bm25 = np.array([first.get(d, np.nan) for d in candidates], dtype=np.float64)
                dense = np.array([second.get(d, np.nan) for d in candidates], dtype=np.float64)
                docs = self._doc_korean[[self._position[d] for d in candidates]]
                weights = pair_weights(np.array([korean]), docs, self.bm25_weight,
                                       self.cross_lingual_weight)[0]
                fused = fuse_candidates(bm25, dense, weights) if candidates else np.zeros(0)
                order = np.argsort(-fused, kind="stable")[:top_k]
                run[qid] = {candidates[i]: float(fused[i]) for i in order}
        return SearchOutput(run, lexical.query_encode_s + semantic.query_encode_s,
                            lexical.search_s + semantic.search_s + fuse_time[0], float("nan"), None)

    @property
    def avg_doc_terms(self) -> float:
        return float("nan")

    @property
    def index_bytes(self) -> int:
        return self.bm25.index_bytes + self.dense.index_bytes
