"""`splade.fingerprint` gives the values its former homes gave: caches, checkpoints and job folders written
before still match."""

from __future__ import annotations

from pathlib import Path

from splade.data.beir import Document
from splade.evaluation.systems import corpus_key
from splade.fingerprint import fingerprint, json_fingerprint
from splade.indexer.base import IndexMetadata
from splade.indexer.sharded import job_key
from splade.ledger import Shard
from splade.model.artifact import weights_fingerprint
from splade.trainer.cache import files_fingerprint, key_of
from splade.trainer.checkpoints import settings_hash


def test_fingerprints_keep_their_values(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"hello" * 1000)
    (tmp_path / "model.safetensors").write_bytes(bytes(range(256)) * 9000)
    (tmp_path / "x.bin").write_bytes(b"xyz")
    docs = [Document("d1", "안녕 세계", "제목"), Document("d2", "", "text two")]
    meta = IndexMetadata("m", "h", 10, 5, 0.1)
    assert key_of("a", 1, None) == "4d4c921084b03999"
    assert files_fingerprint([tmp_path / "a.txt", tmp_path / "x.bin"]) == "c818f5977e664fb2"
    assert fingerprint(["a", "b"]) == "8fb20ef63ced4145"
    assert settings_hash({"b": 1, "a": [1, 2]}) == "3813f9409eb0095b"
    assert json_fingerprint({"a": [1, 2], "b": 1}) == "3813f9409eb0095b"
    assert weights_fingerprint(tmp_path) == "4fbeeb9d3bbc"
    assert job_key(docs, meta, Shard(0, 2), "append") == "cd59facda1d2be5d"
    assert corpus_key(docs) == "25d598400d44e417"
