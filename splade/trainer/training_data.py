"""What a run trains on: the triplets, their token ids, the sampling pool after per-source caps, and the
IDF weights of the FLOPS penalty."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from splade.config import TrainConfig
from splade.data.triplets import TripletDataset, load_triplets
from splade.errors import SpladeError
from splade.fingerprint import files_fingerprint, key_of
from splade.model.tokenization import TextTokenizer
from splade.trainer.batches import TextTable, TripletRows, tokenize_table, tokenized_triplets
from splade.trainer.cache import ArrayCache
from splade.trainer.idf import corpus_texts, document_frequencies, idf_penalty_weights
from splade.trainer.neighbours import nearest_triplets

log = logging.getLogger(__name__)
MIX_FIELDS = ("source", "pair_type", "difficulty")


def capped_pool(sources: list[str], caps: dict[str, int], seed: int) -> np.ndarray:
    """Indices of the triplets kept for sampling: at most `caps[s]` of each source `s` (a seeded subset,
    in file order), all of an uncapped source."""
    rng = np.random.default_rng([seed, 7])
    column = np.asarray(sources, dtype=object)
    keep = np.ones(len(sources), dtype=bool)
    for source, cap in caps.items():
        members = np.flatnonzero(column == source)
        if len(members) > cap:
            keep[members] = False
            keep[np.sort(rng.choice(members, size=cap, replace=False))] = True
    return np.flatnonzero(keep)


def mix_report(dataset: TripletDataset, pool: np.ndarray) -> dict[str, Any]:
    """Rows and fractions per source, pair type and difficulty, in the files and in the sampling pool."""
    report: dict[str, Any] = {"rows": len(dataset), "pool_rows": len(pool)}
    for field in MIX_FIELDS:
        column = dataset.values(field)
        files, pooled = Counter(column), Counter(column[i] for i in pool)
        report[field] = {
            value: {
                "rows": files[value],
                "pool_rows": pooled.get(value, 0),
                "pool_fraction": round(pooled.get(value, 0) / max(1, len(pool)), 4),
            }
            for value in sorted(files, key=lambda v: -files[v])
        }
    return report


def table_length(config: TrainConfig) -> int:
    """The length training texts are tokenized (and IDF counted) at: the training length, or where a
    window of each document is read (`data.document_window: query`), the served document length."""
    data = config.data
    if data.document_window == "query":
        return max(data.max_length, config.model.doc_max_length or data.max_length)
    return data.max_length


@dataclass
class TrainingData:
    """The training set as the loop uses it."""

    dataset: TripletDataset
    table: TextTable
    rows: TripletRows
    pool: np.ndarray  # triplet indices the sampler draws from
    cache: ArrayCache
    files_key: str
    nearest: np.ndarray | None = None  # per pool position, its nearest triplets (see `find_neighbours`)

    @classmethod
    def load(cls, config: TrainConfig, tokenizer: TextTokenizer) -> TrainingData:
        data = config.data
        dataset = load_triplets(data.train_files, data.skip_invalid)
        if dataset.skipped:
            log.warning(
                "skipped %d invalid training lines, e.g. %s", dataset.skipped, dataset.skipped_examples[0]
            )
        cache = ArrayCache.for_files(list(data.train_files), data.cache_dir, config.output.dir / "cache")
        files_key = key_of(files_fingerprint(data.train_files), data.skip_invalid)
        table, rows = tokenized_triplets(dataset, tokenizer, table_length(config), cache, files_key)
        pool = capped_pool(dataset.values("source"), data.source_caps, config.training.seed)
        unknown = sorted(set(data.source_caps) - set(dataset.values("source")))
        if unknown:
            log.warning(
                "data.source_caps names sources absent from the training files: %s", ", ".join(unknown)
            )
        if len(pool) == 0:
            raise SpladeError("data.source_caps: no training triplets are left to sample")
        return cls(dataset, table, rows, pool, cache, files_key)

    def values(self, field: str) -> list[str]:
        """`field` of every pool triplet, in pool order (what the sampler's focus reads)."""
        column = self.dataset.values(field)
        return [column[i] for i in self.pool]

    def mix(self) -> dict[str, Any]:
        return mix_report(self.dataset, self.pool)

    def passage_rows(self) -> np.ndarray:
        """Text rows of the documents of the QA triplets (`pair_type` ending in `_qa`: the passages the
        model retrieves), or of every document when the files hold no QA triplets. Lexicon entries and
        sentence pairs are far shorter than passages and use the vocabulary otherwise."""
        qa = np.array([kind.endswith("_qa") for kind in self.dataset.values("pair_type")], dtype=bool)
        if not qa.any():
            return self.rows.documents()
        return np.unique(np.concatenate([self.rows.positive[qa], self.rows.negative[qa]]))

    def document_frequencies(
        self, config: TrainConfig, tokenizer: TextTokenizer, vocab_size: int
    ) -> tuple[np.ndarray, int]:
        """Document frequency of every token over the training passages (`loss.idf_documents`), every
        training document, or `loss.idf_corpus`, and the number of documents; cached."""
        corpus: Path | None = config.loss.idf_corpus
        max_length = table_length(config)
        if corpus is None:
            passages = config.loss.idf_documents == "passages"
            documents = self.passage_rows() if passages else self.rows.documents()
            table, source = self.table, key_of(self.files_key, config.loss.idf_documents)
        else:
            texts = corpus_texts(Path(corpus))
            table, documents = tokenize_table(texts, tokenizer, max_length), np.arange(len(texts))
            source = files_fingerprint(
                [Path(corpus) / "corpus.jsonl" if Path(corpus).is_dir() else Path(corpus)]
            )
        name = f"df-{key_of(source, tokenizer.fingerprint, max_length, vocab_size)}"
        cached = self.cache.load(name)
        if cached is None:
            df = document_frequencies(table, documents, vocab_size)
            self.cache.save(name, df=df, n_docs=np.asarray(len(documents)))
            return df, len(documents)
        return cached["df"], int(cached["n_docs"])

    def find_neighbours(self, config: TrainConfig, tokenizer: TextTokenizer, vocab_size: int) -> None:
        """Fill `nearest` when `data.neighbour_groups.size` > 1: for every pool triplet of the named pair
        types, the pool positions of its nearest (twice the group's need, so groups vary); cached."""
        groups = config.data.neighbour_groups
        if groups.size <= 1:
            self.nearest = None
            return
        count = 2 * (groups.size - 1)
        kinds = sorted(groups.pair_types)
        name = "near-" + key_of(
            self.files_key, tokenizer.fingerprint, table_length(config), vocab_size, count, kinds,
            sorted(config.data.source_caps.items()), config.training.seed,  # what the pool follows
        )
        cached = self.cache.load(name)
        if cached is not None:
            self.nearest = cached["nearest"]
            return
        sources = np.asarray(self.values("source"), dtype=object)
        eligible = np.isin(np.asarray(self.values("pair_type"), dtype=object), kinds)
        self.nearest = nearest_triplets(
            self.table, self.rows, self.pool, sources, eligible, vocab_size, count
        )
        self.cache.save(name, nearest=self.nearest)

    def idf_weights(self, config: TrainConfig, tokenizer: TextTokenizer, vocab_size: int) -> torch.Tensor:
        """FLOPS penalty weights from the document frequencies (see `document_frequencies`)."""
        return idf_penalty_weights(*self.document_frequencies(config, tokenizer, vocab_size))
