"""Hard-negative mining: retrieve candidates for an anchor text, drop relevant and near-duplicate ones, label
the difficulty of each negative from its score relative to the positive's.

Two retrievers share one interface: `LexicalRetriever` (Kiwi + BM25, the default) and `SpladeRetriever`
(a trained SPLADE model through `splade.encoders.load_encoder`, for curriculum phase 3).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import sparse

from splade.config.data import MiningSettings

DIFFICULTIES = ("hard", "medium", "easy")


@dataclass(frozen=True)
class Negative:
    """A mined negative: pool index, retrieval score, rank among the candidates, difficulty label."""

    index: int
    score: float
    rank: int
    difficulty: str


@dataclass(frozen=True)
class MiningTask:
    """One positive to find negatives for: anchor text (query or positive), the positive's pool index, the
    pool indices that must never be negatives (all judged-relevant documents), and how many to pick."""

    anchor: str
    positive: int
    excluded: frozenset[int]
    count: int = 1


class Retriever(Protocol):
    """Candidates from a fixed pool of texts."""

    def candidates(self, anchors: Sequence[str], positives: Sequence[int],
                   top_k: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Best `top_k` (pool indices, scores) per anchor, and the score of each anchor's positive."""
        ...


class LexicalRetriever:
    """BM25 over Kiwi content morphemes (the tokenizer of the BM25 baseline)."""

    def __init__(self, pool: Sequence[str], show_progress: bool = False, label: str = "") -> None:
        from splade.data.bm25 import BM25
        from splade.data.korean import get_korean_tokenizer

        self.tokenizer = get_korean_tokenizer()
        self.bm25 = BM25(self.tokenizer.tokenize_many(pool, show_progress=show_progress, desc=f"{label}pool"))
        self._show_progress, self._label = show_progress, label

    def candidates(self, anchors: Sequence[str], positives: Sequence[int],
                   top_k: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        tokens = self.tokenizer.tokenize_many(anchors)
        hits = self.bm25.search_many(tokens, top_k, show_progress=self._show_progress,
                                     desc=f"{self._label}negatives")
        return hits, self.bm25.score_pairs(tokens, positives)


class SpladeRetriever:
    """Exact sparse dot-product retrieval with a trained SPLADE encoder (torch checkpoint or ONNX folder)."""

    def __init__(self, pool: Sequence[str], model: str, backend: str = "auto", batch_size: int = 32,
                 show_progress: bool = False, label: str = "") -> None:
        from splade.encoders import load_encoder

        self.encoder = load_encoder(model, backend=backend)
        self.batch_size = batch_size
        self._show_progress, self._label = show_progress, label
        self.docs = self._encode(pool, f"{label}pool", "document")

    def _encode(self, texts: Sequence[str], desc: str, kind: str) -> sparse.csr_matrix:
        batch = self.encoder.encode(list(texts), batch_size=self.batch_size,
                                    show_progress=self._show_progress, desc=desc, kind=kind)
        shape = (len(batch), batch.vocab_size)
        return sparse.csr_matrix((batch.values, batch.indices, batch.indptr), shape=shape)

    def candidates(self, anchors: Sequence[str], positives: Sequence[int],
                   top_k: int) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        from splade.data.bm25 import top_k_of

        queries = self._encode(anchors, f"{self._label}negatives", "query")  # anchors are the queries
        doc_t = self.docs.T.tocsr()
        hits = []
        for start in range(0, queries.shape[0], 256):
            block = (queries[start:start + 256] @ doc_t).toarray()
            hits.extend(top_k_of(row, top_k) for row in block)
        docs = self.docs[np.asarray(positives, dtype=np.int64)]
        return hits, np.asarray(queries.multiply(docs).sum(axis=1), dtype=np.float64).ravel()


_SPACE = re.compile(r"\s+")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LETTER = re.compile(r"[^\W\d_]")


def is_korean(text: str) -> bool:
    """True when most letters of `text` are Hangul."""
    letters = len(_LETTER.findall(text))
    return letters > 0 and len(_HANGUL.findall(text)) * 2 >= letters


def trigrams(text: str) -> frozenset[str]:
    """Character trigrams of the lower-cased, whitespace-normalised text (language-independent)."""
    norm = _SPACE.sub(" ", text.lower()).strip()
    if len(norm) < 3:
        return frozenset([norm])
    return frozenset(norm[i:i + 3] for i in range(len(norm) - 2))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """Jaccard similarity of two sets (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def difficulty(neg_score: float, pos_score: float, settings: MiningSettings) -> str:
    """`hard` / `medium` / `easy` from the negative's score relative to the positive's under the same anchor.

    A negative scoring at least `hard_ratio` of the positive (or more than it) is hard to tell apart.
    """
    if pos_score <= 0:
        return "hard" if neg_score > 0 else "easy"
    ratio = neg_score / pos_score
    if ratio >= settings.hard_ratio:
        return "hard"
    if ratio >= settings.medium_ratio:
        return "medium"
    return "easy"


def make_retriever(pool: Sequence[str], settings: MiningSettings, show_progress: bool = False,
                   label: str = "") -> Retriever:
    """The SPLADE retriever when `settings.model` names a model, BM25 otherwise. With `show_progress`,
    one bar indexes the pool and one mines the negatives, named `<label> pool` / `<label> negatives`."""
    prefix = f"{label} " if label else ""
    if settings.model:
        return SpladeRetriever(pool, settings.model, backend=settings.backend, show_progress=show_progress,
                               label=prefix)
    return LexicalRetriever(pool, show_progress=show_progress, label=prefix)


def mine_negatives(pool: Sequence[str], tasks: Sequence[MiningTask], retriever: Retriever,
                   settings: MiningSettings, rng: random.Random) -> list[list[Negative]]:
    """Negatives for each task: retrieved candidates minus excluded and near-duplicate ones.

    A candidate survives when it is in the positive's language (Korean or not), is not excluded and is
    not a near-duplicate of the positive. Each negative is drawn among the best `sample_depth` survivors.
    When retrieval leaves fewer than `count`, random surviving pool texts fill in (`easy`, rank -1).
    """
    if not tasks:
        return []
    hits, pos_scores = retriever.candidates([t.anchor for t in tasks], [t.positive for t in tasks],
                                            settings.top_k)
    grams: dict[int, frozenset[str]] = {}
    korean: dict[int, bool] = {}

    def gram(i: int) -> frozenset[str]:
        if i not in grams:
            grams[i] = trigrams(pool[i])
        return grams[i]

    def lang(i: int) -> bool:
        if i not in korean:
            korean[i] = is_korean(pool[i])
        return korean[i]

    def usable(i: int, task: MiningTask) -> bool:
        if i in task.excluded or i == task.positive or lang(i) != lang(task.positive):
            return False
        a, b = gram(i), gram(task.positive)
        if min(len(a), len(b)) < settings.near_duplicate * max(len(a), len(b)):
            return True  # Jaccard <= size ratio: cannot be a near-duplicate
        return jaccard(a, b) < settings.near_duplicate

    out: list[list[Negative]] = []
    for task, (indices, scores), pos_score in zip(tasks, hits, pos_scores, strict=True):
        survivors: list[tuple[int, int, float]] = []
        for rank, (i, s) in enumerate(zip(indices.tolist(), scores.tolist(), strict=True)):
            if len(survivors) == settings.sample_depth:
                break
            if usable(i, task):
                survivors.append((rank, i, s))
        picked = rng.sample(survivors, min(task.count, len(survivors)))
        picked.sort()
        negatives = [Negative(i, s, rank, difficulty(s, float(pos_score), settings)) for rank, i, s in picked]
        taken = {n.index for n in negatives}
        for _ in range(50 * task.count):
            if len(negatives) >= task.count or len(pool) <= len(task.excluded) + 1:
                break
            i = rng.randrange(len(pool))
            if i not in taken and usable(i, task):
                negatives.append(Negative(i, 0.0, -1, "easy"))
                taken.add(i)
        out.append(negatives)
    return out
