"""Knowledge distillation (guide 7.3 #2): the teacher's scores of each query against [the batch's
positives; its hard negatives], min-max normalised per query. The teacher is a dense sentence-transformers
model, or (with `bm25_weight`) the heterogeneous ensemble of that model and Kiwi BM25 (`splade.fusion`).

The teacher embeds each distinct text once. Embeddings are kept on disk (`TeacherStore`), keyed by the
teacher and the text, so epochs, resumes and reruns reuse them. With `precompute: all` (a GPU's default)
every training text is embedded before the first step, in length-sorted batches (bf16 on a GPU, float32
on a CPU); with `lazy` (a CPU's default, where a short run sees a fraction of the texts) each batch's new
texts are embedded as they come and written to the store at every checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from splade.config import TeacherConfig
from splade.errors import SpladeError
from splade.fusion import fuse, is_korean, minmax_rows, pair_weights
from splade.model.artifact import model_identity
from splade.model.tokenization import TextTokenizer, pad_rows
from splade.trainer.bm25_teacher import BM25Teacher
from splade.trainer.cache import ArrayCache, key_of

log = logging.getLogger(__name__)


def text_keys(prefix: str, texts: Sequence[str]) -> np.ndarray:
    """A 64-bit key of each `prefix + text`."""
    return np.fromiter(
        (
            int.from_bytes(hashlib.blake2b((prefix + t).encode("utf-8"), digest_size=8).digest(), "little")
            for t in texts
        ),
        dtype=np.uint64,
        count=len(texts),
    )


class TeacherStore:
    """Teacher embeddings on disk: `teacher-<key>-<part>.npz` entries of (`keys`, float16 `vectors`)."""

    def __init__(self, cache: ArrayCache, teacher_key: str) -> None:
        self.cache = cache
        self.prefix = f"teacher-{teacher_key}-"

    def load(self) -> tuple[np.ndarray, np.ndarray] | None:
        keys, vectors = [], []
        for name in self.cache.names(self.prefix):
            part = self.cache.load(name)
            if part is not None:
                keys.append(part["keys"])
                vectors.append(part["vectors"])
        if not keys:
            return None
        return np.concatenate(keys), np.concatenate(vectors)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            part = key_of(*keys[:4], len(keys), time.time_ns())
            self.cache.save(f"{self.prefix}{part}", keys=keys, vectors=vectors.astype(np.float16))


class TeacherScores:
    """The teacher's scores between training texts, by text row."""

    def __init__(
        self,
        config: TeacherConfig,
        texts: list[str],
        cache: ArrayCache,
        device: torch.device,
        document_rows: np.ndarray | None = None,
    ) -> None:
        self.config = config
        self.texts = texts
        self.device = device
        self.store = TeacherStore(
            cache,
            key_of(
                model_identity(config.name), config.query_prefix, config.passage_prefix, config.max_length
            ),
        )
        self._model = None
        self._tokenizer: TextTokenizer | None = None
        self.vectors: dict[str, torch.Tensor] = {}  # "query" / "passage" -> [texts, dim] on the device
        self.known: dict[str, np.ndarray] = {}  # which rows hold an embedding
        self.keys = {kind: text_keys(self.prefix(kind), texts) for kind in ("query", "passage")}
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.embedded = 0  # texts embedded by this run (not read from the store)
        self.seconds = 0.0
        self._load_store()
        self.bm25: BM25Teacher | None = None
        if config.bm25_weight > 0 or config.cross_lingual_bm25_weight > 0:
            documents = document_rows if document_rows is not None else np.arange(len(texts))
            self.bm25 = BM25Teacher(texts, documents, text_keys("", texts), cache)
        self.korean = is_korean(texts)

    def prefix(self, kind: str) -> str:
        return self.config.query_prefix if kind == "query" else self.config.passage_prefix

    def _load_store(self) -> None:
        stored = self.store.load()
        for kind in ("query", "passage"):
            self.known[kind] = np.zeros(len(self.texts), dtype=bool)
        if stored is None:
            return
        keys, vectors = stored
        position = {int(k): i for i, k in enumerate(keys)}
        for kind in ("query", "passage"):
            found = np.array([position.get(int(k), -1) for k in self.keys[kind]])
            have = found >= 0
            if have.any():
                self._ensure(kind, vectors.shape[1])
                self.vectors[kind][torch.from_numpy(np.flatnonzero(have)).to(self.device)] = torch.from_numpy(
                    vectors[found[have]].astype(np.float32)
                ).to(self.device, self._dtype())
                self.known[kind] |= have
        log.info(
            "teacher: %d embeddings read from %s",
            int(sum(k.sum() for k in self.known.values())),
            self.store.cache.folder,
        )

    def _dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def _ensure(self, kind: str, dim: int) -> None:
        if kind not in self.vectors:
            self.vectors[kind] = torch.zeros(len(self.texts), dim, dtype=self._dtype(), device=self.device)

    def _load_model(self):  # noqa: ANN202 - a SentenceTransformer
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            try:
                model = SentenceTransformer(
                    self.config.name, device=str(self.device), model_kwargs={"dtype": self._dtype()}
                )
            except (OSError, ValueError) as exc:
                raise SpladeError(f"loss.teacher.name: cannot load {self.config.name!r} ({exc})") from exc
            self._model = model.eval()
            self._tokenizer = TextTokenizer(model.tokenizer)
        return self._model

    @torch.no_grad()
    def _embed(self, kind: str, rows: np.ndarray, show_progress: bool = False) -> None:
        """Embed texts `rows` (all missing) in length-sorted batches and remember them."""
        started = time.perf_counter()
        model = self._load_model()
        prefix = self.prefix(kind)
        encoded = self._tokenizer.encode([prefix + self.texts[r] for r in rows], self.config.max_length)
        order = np.argsort([-len(e) for e in encoded], kind="stable")
        size = self.config.batch_size
        chunks = range(0, len(order), size)
        for start in tqdm(chunks, desc=f"teacher ({kind})", unit="batch", disable=not show_progress):
            picked = order[start : start + size]
            ids, mask = pad_rows([encoded[i] for i in picked], self._tokenizer.pad_id)
            features = {
                "input_ids": torch.from_numpy(ids).to(self.device),
                "attention_mask": torch.from_numpy(mask).to(self.device),
            }
            vectors = model(features)["sentence_embedding"]
            self._ensure(kind, vectors.shape[1])
            targets = torch.from_numpy(rows[picked].astype(np.int64)).to(self.device)
            self.vectors[kind][targets] = vectors.to(self._dtype())
            self._pending.append((self.keys[kind][rows[picked]], vectors.float().cpu().numpy()))
        self.known[kind][rows] = True
        self.embedded += len(rows)
        self.seconds += time.perf_counter() - started

    def _complete(self, kind: str, rows: np.ndarray, show_progress: bool = False) -> None:
        rows = np.unique(rows)
        missing = rows[~self.known[kind][rows]]
        if len(missing):
            self._embed(kind, missing, show_progress)

    def precompute(self, query_rows: np.ndarray, document_rows: np.ndarray) -> None:
        """Embed every query and document text not yet in the store, then save them."""
        self._complete("query", query_rows, show_progress=True)
        self._complete("passage", document_rows, show_progress=True)
        self.flush()

    def dense_scores(self, query_rows: np.ndarray, document_rows: np.ndarray) -> torch.Tensor:
        """`[len(query_rows), len(document_rows)]` float32 cosine scores of the dense teacher."""
        self._complete("query", query_rows)
        self._complete("passage", document_rows)
        q = self.vectors["query"][torch.from_numpy(query_rows.astype(np.int64)).to(self.device)]
        d = self.vectors["passage"][torch.from_numpy(document_rows.astype(np.int64)).to(self.device)]
        return (q @ d.T).float()

    def scores(self, query_rows: np.ndarray, document_rows: np.ndarray) -> torch.Tensor:
        """`[len(query_rows), len(document_rows)]` teacher scores in [0, 1] per query, on the device."""
        dense = self.dense_scores(query_rows, document_rows)
        if self.bm25 is None:
            return minmax_rows(dense)
        lexical = torch.from_numpy(self.bm25.scores(query_rows, document_rows)).to(self.device)
        weights = pair_weights(
            self.korean[query_rows],
            self.korean[document_rows],
            self.config.bm25_weight,
            self.config.cross_lingual_bm25_weight,
        )
        return fuse(lexical, dense, torch.from_numpy(weights).to(self.device))

    def flush(self) -> None:
        """Write the embeddings (and Kiwi tokens) computed since the last flush to the store."""
        if self.bm25 is not None:
            self.bm25.flush()
        if self._pending:
            keys = np.concatenate([k for k, _ in self._pending])
            vectors = np.concatenate([v for _, v in self._pending])
            self.store.add(keys, vectors)
            self._pending.clear()
