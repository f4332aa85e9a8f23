"""The OpenSearch backend for real over HTTP (osmem-server): same ranking as the embedded index, alias swaps,
bulk retries, query building, connection settings and one-line errors."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_index_local import random_batch

from splade.errors import SpladeError
from splade.indexer.base import IndexMetadata
from splade.indexer.bulk import BulkWriter
from splade.indexer.connection import OpenSearchSettings, make_client
from splade.indexer.local import LocalSparseIndex
from splade.indexer.opensearch import VECTOR_FIELD, OpenSearchSparseIndex
from splade.indexer.queries import DOT_ESCAPE, build_query, escape_token, prune_query
from splade.sparse import SparseBatch

VOCAB = 400
# token strings as a real WordPiece vocabulary has them, including ones with '.' that need escaping
TOKENS = [f"tok{i}" for i in range(VOCAB - 4)] + ["u.s", "...", "##.", "a.b.c"]
META = IndexMetadata("models/a", "hash-a", VOCAB)
QUANT = 0.01  # 9-significant-bit storage: < 0.4 % per weight, so sums agree within 1 %


def connect(url: str, name: str, **kwargs: Any) -> OpenSearchSparseIndex:
    settings = OpenSearchSettings(hosts=[url], timeout=30)
    return OpenSearchSparseIndex.connect(settings, name, TOKENS, META, must_exist=False, **kwargs)


def build(url: str, name: str, ids: list[str], vectors: SparseBatch, texts: list[str] | None = None,
          **kwargs: Any) -> OpenSearchSparseIndex:
    index = connect(url, name, **kwargs)
    with index.rebuild():
        index.add(ids, vectors, texts)
    return index


def assert_same_ranking(os_hits: list[tuple[str, float]], exact: dict[str, float], top_k: int) -> None:
    """OpenSearch hits carry the exact score (within quantisation) and are ordered as exact scores are."""
    assert len(os_hits) == min(top_k, sum(s > 0 for s in exact.values()))
    for doc_id, score in os_hits:
        assert score == pytest.approx(exact[doc_id], rel=QUANT)
    for (a, _), (b, _) in zip(os_hits, os_hits[1:], strict=False):
        assert exact[a] >= exact[b] * (1 - QUANT), (a, b)
    kth = exact[os_hits[-1][0]] if os_hits else 0.0
    must_have = {d for d, s in exact.items() if s > kth * (1 + QUANT)}
    assert must_have <= {d for d, _ in os_hits}


def test_ranking_equals_embedded_index(opensearch_url: str, tmp_path: Path) -> None:
    docs, queries = random_batch(300, 25, seed=3, vocab=VOCAB), random_batch(20, 6, seed=4, vocab=VOCAB)
    ids = [f"d{i}" for i in range(len(docs))]
    local = LocalSparseIndex.create(tmp_path / "idx", META)
    local.add(ids, docs)
    remote = build(opensearch_url, "rank-eq", ids, docs, query_mode="auto")
    assert remote.query_mode == "rank_feature"  # osmem has no neural-search plugin
    assert remote.count() == local.count() == 300
    exact = queries.to_dense().astype(np.float64) @ docs.to_dense().astype(np.float64).T
    local_hits, remote_hits = local.search(queries, 10), remote.search(queries, 10)
    for q in range(len(queries)):
        scores = dict(zip(ids, exact[q], strict=True))
        assert_same_ranking(remote_hits[q], scores, 10)
        assert_same_ranking(local_hits[q], scores, 10)
        assert [s for _, s in remote_hits[q]] == pytest.approx([s for _, s in local_hits[q]], rel=QUANT)


def test_dotted_tokens_and_unqueryable_weights(opensearch_url: str) -> None:
    dotted = TOKENS.index("u.s")
    docs = SparseBatch.from_rows([(np.array([1, dotted]), np.array([1.0, 2.0])),
                                  (np.array([2]), np.array([1.0]))], VOCAB)
    index = build(opensearch_url, "dots", ["a", "b"], docs, texts=["text a", "text b"])
    stored = index.client.get(index="dots", id="a")["_source"][VECTOR_FIELD]
    assert stored == {"tok1": 1.0, f"u{DOT_ESCAPE}s": 2.0}
    queries = SparseBatch.from_rows([(np.array([dotted]), np.array([0.5])),
                                     (np.array([1, 2]), np.array([-1.0, 0.0])),
                                     (np.array([2]), np.array([np.nan]))], VOCAB)
    assert index.search(queries, 5) == [[("a", pytest.approx(1.0, rel=QUANT))], [], []]
    assert index.fetch_texts(["b", "zz"]) == ["text b", None]
    assert index.delete(["a", "zz"]) == 1
    assert index.count() == 1


def test_query_building_caps_weights_and_prunes_clauses() -> None:
    tokens = {f"t{i}": float(i) for i in range(1, 1501)}
    pruned = prune_query(tokens)
    assert len(pruned) == 1024 and min(pruned.values()) == 64.0 and "t477" in pruned and "t476" not in pruned
    body = build_query({"a": 1.5}, "vec", "neural_sparse", 7)
    assert body["query"] == {"neural_sparse": {"vec": {"query_tokens": {"a": 1.5}}}} and body["size"] == 7
    clause = build_query({"a": 1.5}, "vec", "rank_feature", 7)["query"]["bool"]["should"][0]
    assert clause == {"rank_feature": {"field": "vec.a", "linear": {}, "boost": 1.5}}
    assert escape_token("u.s.") == f"u{DOT_ESCAPE}s{DOT_ESCAPE}"


def test_long_query_respects_clause_limit(opensearch_url: str) -> None:
    docs = SparseBatch.from_rows([(np.arange(VOCAB), np.full(VOCAB, 0.5))], VOCAB)
    index = build(opensearch_url, "long-q", ["all"], docs, max_clauses=100)
    query = SparseBatch.from_rows([(np.arange(VOCAB), np.linspace(0.01, 100.0, VOCAB))], VOCAB)
    body = index.query_body(*query.row(0), top_k=3)
    should = body["query"]["bool"]["should"]
    assert len(should) == 100 and max(c["rank_feature"]["boost"] for c in should) == 64.0
    [[(doc, score)]] = index.search(query, 3)
    expected = 0.5 * sum(c["rank_feature"]["boost"] for c in should)
    assert doc == "all" and score == pytest.approx(expected, rel=QUANT)


class RejectOne(OpenSearchSparseIndex):
    """Sends one document the strict mapping rejects, as a broken client or bad data would."""

    def _document_source(self, doc_id: str, row: Any, text: str | None) -> dict[str, Any]:
        source = super()._document_source(doc_id, row, text)
        if doc_id == "d7":
            source["unexpected_field"] = 1
        return source


def test_reindex_swaps_alias_and_a_failed_one_leaves_it(opensearch_url: str) -> None:
    docs = random_batch(60, 10, seed=5, vocab=VOCAB)
    ids = [f"d{i}" for i in range(60)]
    first = build(opensearch_url, "swap", ids[:40], docs.select(range(40)))
    [old_concrete] = first.concrete_indices()
    second = build(opensearch_url, "swap", ids, docs)
    [new_concrete] = second.concrete_indices()
    assert new_concrete != old_concrete and second.count() == 60
    assert not second.client.indices.exists(index=old_concrete)  # the old one is cleaned up

    settings = OpenSearchSettings(hosts=[opensearch_url])
    broken = RejectOne(make_client(settings), "swap", TOKENS, META, settings=settings)
    with pytest.raises(SpladeError, match=r"1 document\(s\) failed: d7: HTTP 400 strict_dynamic_mapping"), \
            broken.rebuild():
        broken.add(ids[:20], docs.select(range(20)))
    assert broken.concrete_indices() == [new_concrete]
    assert broken.count() == 60
    leftovers = [i for i in broken.client.indices.get(index="swap-*") if i != new_concrete]
    assert leftovers == []


def test_metadata_checked_and_missing_index(opensearch_url: str) -> None:
    build(opensearch_url, "meta", ["a"], random_batch(1, 5, seed=6, vocab=VOCAB))
    settings = OpenSearchSettings(hosts=[opensearch_url])
    other = IndexMetadata("models/a", "hash-b", VOCAB)
    with pytest.raises(SpladeError, match="vocabulary hash-a"):
        OpenSearchSparseIndex.connect(settings, "meta", TOKENS, other)
    with pytest.raises(SpladeError, match="OpenSearch index 'nope' not found"):
        OpenSearchSparseIndex.connect(settings, "nope", TOKENS, META)
    with pytest.raises(SpladeError, match="--index"):
        OpenSearchSparseIndex.connect(settings, "Bad Name", TOKENS, META)


def test_unreachable_cluster_is_one_line() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = OpenSearchSettings(hosts=[f"http://admin:s3cret@127.0.0.1:{port}"], timeout=2)
    with pytest.raises(SpladeError) as err:
        OpenSearchSparseIndex.connect(settings, "x", TOKENS, META)
    message = str(err.value)
    assert "cannot reach OpenSearch at http://***@127.0.0.1" in message and "s3cret" not in message
    assert "\n" not in message


@pytest.fixture()
def rejecting_server() -> Iterator[str]:
    """A loopback HTTP server answering 401 like OpenSearch's security plugin on a wrong password."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            body = json.dumps({"error": {"type": "security_exception", "reason": "Unauthorized"},
                               "status": 401}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_wrong_password_is_one_line_without_the_secret(rejecting_server: str) -> None:
    settings = OpenSearchSettings(hosts=[rejecting_server], user="admin", password="wrong-Pa55")
    with pytest.raises(SpladeError, match="rejected the credentials") as err:
        OpenSearchSparseIndex.connect(settings, "x", TOKENS, META)
    assert "wrong-Pa55" not in str(err.value)


def test_settings_from_env_and_masked(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {"OPENSEARCH_HOSTS": "https://a:9200, https://b:9200", "OPENSEARCH_USER": "admin",
           "OPENSEARCH_PASSWORD": "Secret-1", "OPENSEARCH_API_KEY": "key-2", "OPENSEARCH_CA_CERTS": str(ca),
           "OPENSEARCH_TIMEOUT": "12", "OPENSEARCH_VERIFY_CERTS": "false"}
    settings = OpenSearchSettings.from_env(env, user="other")
    assert settings.hosts == ["https://a:9200", "https://b:9200"] and settings.user == "other"
    assert settings.timeout == 12.0 and settings.verify is False and settings.ca_certs == str(ca)
    assert "Secret-1" not in repr(settings) and "key-2" not in str(settings) and "***" in repr(settings)
    with pytest.raises(SpladeError, match="--ca-certs"):
        OpenSearchSettings.from_env({"OPENSEARCH_CA_CERTS": str(tmp_path / "missing.pem")})
    with pytest.raises(SpladeError, match="--timeout"):
        OpenSearchSettings.from_env({}, timeout="soon")


class FlakyClient:
    """A client whose bulk endpoint answers 503 once, then 429 for one document, then succeeds."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []

    def bulk(self, body: list[dict[str, Any]]) -> dict[str, Any]:
        from opensearchpy.exceptions import TransportError

        self.calls.append(body)
        if len(self.calls) == 1:
            raise TransportError(503, "unavailable", {})
        actions = [line["index"]["_id"] for line in body if "index" in line]
        items = []
        for doc_id in actions:
            if doc_id == "busy" and len(self.calls) == 2:
                items.append({"index": {"_id": doc_id, "status": 429}})
            elif doc_id == "bad":
                items.append({"index": {"_id": doc_id, "status": 400,
                                        "error": {"type": "mapper_parsing_exception", "reason": "nope"}}})
            else:
                items.append({"index": {"_id": doc_id, "status": 201}})
        return {"errors": True, "items": items}


def test_bulk_retries_429_and_5xx_and_reports_failures_by_id() -> None:
    client, delays = FlakyClient(), []
    writer = BulkWriter(client, "i", chunk_size=10, sleep=delays.append)
    result = writer.run([(d, "index", {"x": 1}) for d in ("a", "busy", "bad", "b")])
    assert result.succeeded == 3 and list(result.failed) == ["bad"]
    assert "mapper_parsing_exception" in result.summary()
    assert delays == [0.5, 1.0]
    assert [len(c) // 2 for c in client.calls] == [4, 4, 1]  # only "busy" is resent


def test_cli_index_and_search_on_opensearch(opensearch_url: str, tmp_path: Path,
                                            tiny_model_dir: Path) -> None:
    from test_index_local import write_beir
    from typer.testing import CliRunner

    from splade.cli import _register_all, app

    _register_all()
    corpus = write_beir(tmp_path / "beir", ["당뇨병 치료", "Seoul is the capital of Korea", "coffee is good"])
    common = ["--model", str(tiny_model_dir), "--index", "cli-idx", "--backend", "opensearch"]
    env = {"OPENSEARCH_HOSTS": opensearch_url, "COLUMNS": "200"}
    result = CliRunner().invoke(app, ["index", "--corpus", str(corpus), *common], env=env)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["search", "capital of Korea", *common, "--query-mode", "rank_feature"],
                                env=env)
    assert result.exit_code == 0, result.output
    assert "doc1" in result.output and "Seoul" in result.output
    # the same connection from options (they win over the variables), with the shared TLS flag
    options = ["--hosts", opensearch_url, "--no-verify", "--timeout", "20", "--format", "json"]
    result = CliRunner().invoke(app, ["search", "capital of Korea", *common, *options],
                                env={"OPENSEARCH_HOSTS": "http://127.0.0.1:9"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["hits"][0]["doc_id"] == "doc1"


def test_neural_sparse_mode_on_a_cluster_without_the_plugin_is_one_line(opensearch_url: str) -> None:
    vectors = random_batch(1, 5, seed=7, vocab=VOCAB)
    index = build(opensearch_url, "ns", ["a"], vectors, query_mode="neural_sparse")
    assert index.query_mode == "neural_sparse"
    with pytest.raises(SpladeError, match=r"search in 'ns' failed: .*neural_sparse"):
        index.search(vectors, 3)


def test_add_without_rebuild_creates_the_mapped_index_behind_the_alias(opensearch_url: str) -> None:
    settings = OpenSearchSettings(hosts=[opensearch_url])
    index = OpenSearchSparseIndex(make_client(settings), "plain", TOKENS, META, settings=settings)
    docs = random_batch(30, 8, seed=8, vocab=VOCAB)
    index.add([f"d{i}" for i in range(20)], docs.select(range(20)))
    index.add([f"d{i}" for i in range(20, 30)], docs.select(range(20, 30)))
    [concrete] = index.concrete_indices()
    mapping = index.client.indices.get_mapping(index=concrete)[concrete]["mappings"]
    assert mapping["properties"][VECTOR_FIELD] == {"type": "rank_features"}
    assert index.count() == 30
    exact = docs.to_dense().astype(np.float64) @ docs.to_dense().astype(np.float64)[4]
    assert_same_ranking(index.search(docs.select([4]), 5)[0], {f"d{i}": s for i, s in enumerate(exact)}, 5)
