"""Knowledge distillation from a dense teacher (guide 7.3 #2): teacher scores of each query over
[its positive, its hard negative, the other in-batch documents]."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch

from splade.config import TeacherConfig
from splade.errors import SpladeError


class DenseTeacher:
    """A sentence-transformers model (path or hub id) scoring queries against documents by cosine.

    Embeddings are cached by text (most documents recur across epochs), bounded by `cache_size`.
    """

    def __init__(self, config: TeacherConfig, device: str = "cpu", cache_size: int = 200_000) -> None:
        from sentence_transformers import SentenceTransformer

        try:
            self.model = SentenceTransformer(config.name, device=device)
        except (OSError, ValueError) as exc:
            raise SpladeError(f"loss.teacher.name: cannot load {config.name!r} ({exc})") from exc
        self.model.max_seq_length = config.max_length
        self.config = config
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _embed(self, texts: Sequence[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            with torch.no_grad():
                vectors = self.model.encode(
                    missing,
                    batch_size=self.config.batch_size,
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            for text, vec in zip(missing, vectors.float().cpu(), strict=True):
                self._cache[text] = vec
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return torch.stack([self._cache[t] for t in texts])

    def scores(self, queries: Sequence[str], documents: Sequence[str]) -> torch.Tensor:
        """`[len(queries), len(documents)]` cosine scores with the configured prefixes."""
        q = self._embed([self.config.query_prefix + t for t in queries])
        d = self._embed([self.config.passage_prefix + t for t in documents])
        return q @ d.T
