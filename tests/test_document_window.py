"""A cut training document keeps the span nearest its query (`data.document_window: query`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import tiny_config

from splade.config import load_config
from splade.trainer.batches import TextTable, TripletRows, make_batch, query_window
from splade.trainer.training_data import table_length

CLS, SEP, PAD = 1, 2, 0
CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _text(*ids: int) -> np.ndarray:
    return np.asarray([CLS, *ids, SEP], dtype=np.int32)


def _table(*texts: np.ndarray) -> TextTable:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return TextTable([f"text {i}" for i in range(len(texts))], np.concatenate(texts), offsets)


def test_the_window_is_the_span_with_most_query_tokens_between_the_special_tokens():
    document = _text(*range(10, 30), 7, 8, 7, 8, *range(30, 40))  # the query's tokens 7 and 8 late
    window = query_window(document, _text(7, 8), 6)
    assert window.tolist() == [CLS, 7, 8, 7, 8, SEP]


def test_a_document_without_query_tokens_keeps_its_opening_and_a_short_one_stays_whole():
    document = _text(*range(10, 30))
    assert query_window(document, _text(5), 6).tolist() == [CLS, 10, 11, 12, 13, SEP]
    short = _text(10, 11)
    assert query_window(short, _text(5), 6) is short


def test_a_batch_cuts_positives_and_negatives_around_their_own_triplets_query():
    long_positive = _text(*range(100, 140), 7, 8)  # relevant words after the first window
    long_negative = _text(*range(200, 240), 9)
    table = _table(_text(7, 8), long_positive, _text(9), long_negative)
    rows = TripletRows(np.array([0, 2]), np.array([1, 3]), np.array([3, 1]))

    windowed = make_batch(table, rows, np.arange(2), PAD, document_length=8, window="query")
    first = make_batch(table, rows, np.arange(2), PAD, document_length=8)

    assert windowed.doc_ids.shape == first.doc_ids.shape == (4, 8)
    positive = windowed.doc_ids[0].tolist()
    assert positive[0] == CLS and positive[-1] == SEP and positive[-3:-1] == [7, 8]
    assert 9 in windowed.doc_ids[1].tolist()  # the second positive, around query 2's token
    assert 7 not in first.doc_ids[0].tolist() and first.doc_ids[0, 1].item() == 100  # the opening
    # the same text as triplet 2's negative is cut around query 2's token, which it lacks: its opening
    assert windowed.doc_ids[3, 1].item() == 100


def test_a_query_window_reads_documents_at_the_served_length(tmp_path):
    v23 = load_config(CONFIGS / "train_v23.yaml")
    assert v23.data.document_window == "query" and table_length(v23) == v23.model.doc_max_length == 512
    plain = tiny_config(tmp_path, tmp_path, "data.max_length=32", "model.doc_max_length=64")
    assert table_length(plain) == 32  # the opening: texts are tokenized at the training length
    windowed = tiny_config(
        tmp_path, tmp_path, "data.max_length=32", "model.doc_max_length=64", "data.document_window=query"
    )
    assert table_length(windowed) == 64


def test_the_trainer_reads_whole_documents_and_trains_on_windows_of_them(
    tiny_model_dir: Path, tmp_path: Path
):
    from splade.trainer.loop import Trainer

    overrides = ["data.max_length=6", "model.doc_max_length=64", "data.document_window=query"]
    cfg = tiny_config(
        tmp_path, tiny_model_dir, "output.tensorboard=false", "training.num_epochs=1", *overrides
    )
    trainer = Trainer(cfg, None)
    data = trainer.parts.data
    longest = max(len(data.table.row(r)) for r in data.rows.documents())
    assert longest > 6  # the table holds documents at the served length
    batch = trainer._batch(np.arange(4))
    assert batch.doc_ids.shape[1] == 6  # the batch holds windows at the training length
    assert trainer.run().global_step > 0  # and it trains on them
