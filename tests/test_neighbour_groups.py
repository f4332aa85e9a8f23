"""Near triplets share a batch (`data.neighbour_groups`): their positives become in-batch negatives."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from conftest import tiny_config

from splade.config import FocusConfig, load_config
from splade.trainer.batches import TextTable, TripletRows
from splade.trainer.checkpoints import resume_settings
from splade.trainer.neighbours import nearest_triplets
from splade.trainer.sampler import epoch_indices

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
VOCAB = 100


def _table(*texts: list[int]) -> TextTable:
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    ids = np.concatenate(texts).astype(np.int32)
    return TextTable([f"text {i}" for i in range(len(texts))], ids, offsets)


def _article_triplets() -> tuple[TextTable, TripletRows, np.ndarray, np.ndarray]:
    """Six QA triplets: passages 0-2 of one article (tokens 10-12 shared), 3-4 of another (20-21), and a
    passage sharing nothing; the triplets' queries are texts 10-15, and the second and third triplets
    ask the same query (another positive of one query is never a negative)."""
    passages = [[10, 11, 12, 30], [10, 11, 12, 31], [10, 11, 12, 32], [20, 21, 40], [20, 21, 41], [50, 51]]
    queries = [[60], [61], [61], [63], [64], [65]]
    table = _table(*passages, *queries)
    query_rows = np.array([6, 7, 7, 9, 10, 11])
    rows = TripletRows(query_rows, np.arange(6), np.array([5, 5, 5, 0, 0, 0]))
    sources = np.array(["korquad"] * 6, dtype=object)
    return table, rows, np.arange(6), sources


def test_the_nearest_triplets_are_passages_of_the_same_article_with_another_query():
    table, rows, pool, sources = _article_triplets()
    nearest = nearest_triplets(table, rows, pool, sources, np.ones(6, bool), VOCAB, count=2)
    assert nearest[0].tolist() == [1, 2]  # same article, distinct positives
    assert nearest[1].tolist() == [0, -1]  # triplet 2 asks triplet 1's query: never its neighbour
    assert nearest[3].tolist() == [4, -1] and nearest[4].tolist() == [3, -1]
    assert nearest[5].tolist() == [-1, -1]  # nothing shared, no neighbour


def test_neighbours_keep_to_their_source_and_to_the_named_pair_types():
    table, rows, pool, _ = _article_triplets()
    sources = np.array(["korquad", "other", "korquad", "korquad", "korquad", "korquad"], dtype=object)
    eligible = np.array([True, True, True, True, False, True])
    nearest = nearest_triplets(table, rows, pool, sources, eligible, VOCAB, count=2)
    assert nearest[0].tolist() == [2, -1]  # triplet 1 is another source
    assert nearest[3].tolist() == [-1, -1]  # triplet 4 is not of a named pair type
    assert (nearest[4] == -1).all() and (nearest[1] == -1).all()


def test_a_drawn_triplet_brings_its_neighbours_into_its_group_and_the_focus_still_holds():
    n = 40
    values = {"pair_type": ["monolingual_qa"] * 20 + ["single_term"] * 20}
    nearest = np.full((n, 2), -1, dtype=np.int64)
    for i in range(0, 20, 4):  # QA triplets in articles of four
        article = np.arange(i, i + 4)
        for j in article:
            nearest[j] = [k for k in article if k != j][:2]
    focus = FocusConfig(by="pair_type", fractions={"monolingual_qa": 0.5})

    order = epoch_indices(values, focus, 32, seed=3, epoch=1, nearest=nearest, group_size=3)

    assert len(order) == 32
    kinds = Counter(values["pair_type"][i] for i in order)
    assert kinds == {"monolingual_qa": 16, "single_term": 16}

    def adjacent_in_one_article(indices: np.ndarray) -> int:
        pairs = zip(indices[:-1], indices[1:], strict=True)
        return sum(a < 20 and b < 20 and a // 4 == b // 4 for a, b in pairs)

    # 16 QA draws: five groups of three (two adjacent pairs each) and one group cut to a single triplet
    assert adjacent_in_one_article(order) >= 10
    assert adjacent_in_one_article(epoch_indices(values, focus, 32, seed=3, epoch=1)) < 10
    again = epoch_indices(values, focus, 32, seed=3, epoch=1, nearest=nearest, group_size=3)
    assert again.tolist() == order.tolist()  # a resumed run replays the epoch
    plain = epoch_indices(values, focus, 32, seed=3, epoch=1)
    assert plain.tolist() == epoch_indices(values, focus, 32, seed=3, epoch=1, nearest=nearest).tolist()


def test_v23_groups_its_qa_triplets_and_a_resume_checks_the_setting(tmp_path):
    v23 = load_config(CONFIGS / "train_v23.yaml")
    assert v23.data.neighbour_groups.size > 1
    assert set(v23.data.neighbour_groups.pair_types) == {"monolingual_qa", "cross_lingual_qa"}
    plain = tiny_config(tmp_path, tmp_path)
    assert plain.data.neighbour_groups.size == 1 and "data.neighbour_groups" not in resume_settings(plain)
    assert resume_settings(v23)["data.neighbour_groups"]["size"] == v23.data.neighbour_groups.size


def _article_file(path: Path) -> Path:
    """QA triplets over passages of three articles (each article's passages share its words)."""
    articles = {"서울": "seoul city river", "부산": "busan port sea", "제주": "jeju island stone"}
    rows = []
    for name, words in articles.items():
        for part in range(4):
            rows.append({
                "query": f"{name} 질문 {part}",
                "positive": f"{name} {words} part{part}",
                "negative": "unrelated text",
                "pair_type": "monolingual_qa",
                "difficulty": "hard",
                "source": "wiki",
            })
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_the_trainer_draws_neighbour_groups(tiny_model_dir: Path, tmp_path: Path):
    from splade.trainer.loop import Trainer

    train = _article_file(tmp_path / "articles.jsonl")
    cfg = tiny_config(
        tmp_path, tiny_model_dir, "output.tensorboard=false", "training.num_epochs=1",
        f"data.train_files=[{train}]", "data.neighbour_groups.size=2",
    )
    trainer = Trainer(cfg, None)
    data = trainer.parts.data
    assert data.nearest is not None and data.nearest.shape == (len(data.pool), 2)
    positives = data.dataset.values("positive")
    for row, near in enumerate(data.nearest):  # each triplet's nearest is a passage of its article
        assert near[0] >= 0 and positives[near[0]].split()[0] == positives[row].split()[0]
    assert trainer.run().global_step > 0
