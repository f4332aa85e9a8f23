"""OpenSearch through a fault-injecting proxy (a real osmem-server behind it): a lost alias answer keeps the
good copy, idempotent calls are retried (honouring Retry-After), and 15 % faulty requests lose nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from faultproxy import FaultProxy, once, random_faults
from test_index_local import random_batch
from test_index_opensearch import META, TOKENS, VOCAB, build, connect

from splade.errors import SpladeError
from splade.indexer.connection import OpenSearchSettings
from splade.indexer.opensearch import OpenSearchSparseIndex
from splade.indexer.retry import RetryPolicy

pytestmark = pytest.mark.faults
FAST = RetryPolicy(max_retries=8, initial_backoff=0.01, max_backoff=0.05)


def through(url: str, name: str, **kwargs: Any) -> OpenSearchSparseIndex:
    return connect(url, name, retry=kwargs.pop("retry", FAST), **kwargs)


def rebuild(index: OpenSearchSparseIndex, ids: list[str], vectors: Any) -> None:
    with index.rebuild():
        index.add(ids, vectors, [f"text {i}" for i in ids])


def test_a_lost_alias_answer_keeps_the_moved_alias_and_deletes_only_the_old_copy(opensearch_url: str) -> None:
    docs = random_batch(60, 10, seed=11, vocab=VOCAB)
    ids = [f"d{i}" for i in range(60)]
    [old] = build(opensearch_url, "lost-alias", ids[:40], docs.select(range(40))).concrete_indices()
    with FaultProxy(opensearch_url, once("POST", "/_aliases", "reset_after")) as proxy:
        rebuild(through(proxy.url, "lost-alias"), ids, docs)  # the alias moved: the rebuild succeeded
    assert proxy.faults == [("POST", "/_aliases", "reset_after")]
    direct = connect(opensearch_url, "lost-alias")
    [new] = direct.concrete_indices()
    assert new != old and direct.count() == 60
    assert not direct.client.indices.exists(index=old)


def test_an_alias_call_reset_before_the_server_saw_it_is_retried(opensearch_url: str) -> None:
    docs = random_batch(20, 10, seed=12, vocab=VOCAB)
    ids = [f"d{i}" for i in range(20)]
    [old] = build(opensearch_url, "reset-alias", ids[:5], docs.select(range(5))).concrete_indices()
    with FaultProxy(opensearch_url, once("POST", "/_aliases", "reset")) as proxy:
        rebuild(through(proxy.url, "reset-alias"), ids, docs)
    assert len(proxy.faults) == 1
    direct = connect(opensearch_url, "reset-alias")
    assert direct.count() == 20 and direct.concrete_indices() != [old]


def test_an_unreadable_alias_state_deletes_nothing(opensearch_url: str) -> None:
    docs = random_batch(20, 10, seed=13, vocab=VOCAB)
    ids = [f"d{i}" for i in range(20)]
    [old] = build(opensearch_url, "dark-alias", ids[:5], docs.select(range(5))).concrete_indices()
    seen: list[str] = []

    def rule(method: str, path: str) -> str | None:
        """Lose the alias answer, then every later request."""
        if seen or (method == "POST" and path.startswith("/_aliases")):
            seen.append(path)
            return "reset_after" if len(seen) == 1 else "reset"
        return None

    index = through(opensearch_url, "dark-alias", retry=RetryPolicy(2, 0.01, 0.01))
    with FaultProxy(opensearch_url, rule) as proxy:
        index.client = through(proxy.url, "dark-alias").client
        with pytest.raises(SpladeError, match="could not be read, so no index was deleted") as err:
            rebuild(index, ids, docs)
    assert "\n" not in str(err.value)
    direct = connect(opensearch_url, "dark-alias")
    [new] = direct.concrete_indices()  # the cluster moved it; both copies are still there
    assert new != old and direct.client.indices.exists(index=old) and direct.count() == 20


def test_stale_builds_are_kept_when_no_index_serves_the_alias(opensearch_url: str) -> None:
    docs = random_batch(10, 10, seed=14, vocab=VOCAB)
    first = build(opensearch_url, "orphan", [f"d{i}" for i in range(10)], docs)
    [only] = first.concrete_indices()
    first.client.indices.delete_alias(index=only, name="orphan")  # the alias points nowhere now
    assert connect(opensearch_url, "orphan").remove_stale_builds() == []
    assert first.client.indices.exists(index=only)
    # once an alias serves another index, the unaliased build is stale and goes
    build(opensearch_url, "orphan", ["x"], random_batch(1, 5, seed=15, vocab=VOCAB))
    assert connect(opensearch_url, "orphan").remove_stale_builds() == [only]


def test_idempotent_calls_are_retried_and_honour_retry_after(opensearch_url: str) -> None:
    waits: list[float] = []
    policy = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=5.0, sleep=waits.append)
    with FaultProxy(opensearch_url, once("GET", "/", "429"), retry_after="2") as proxy:
        through(proxy.url, "retry-after", retry=policy)
    assert waits == [2.0] and proxy.faults == [("GET", "/", "429")]
    waits.clear()
    with FaultProxy(opensearch_url, once("HEAD", "/retry-after", "reset")) as proxy:
        index = through(proxy.url, "retry-after", retry=policy)
        assert not index.exists()
    assert waits == [0.01] and proxy.faults == [("HEAD", "/retry-after", "reset")]


def test_resets_that_persist_are_one_line_not_cannot_reach(opensearch_url: str) -> None:
    settings = OpenSearchSettings(hosts=[opensearch_url], user="admin", password="pa#ss/word", timeout=5)
    with FaultProxy(opensearch_url, lambda m, p: "reset") as proxy:
        settings = settings.model_copy(update={"hosts": [proxy.url]})
        with pytest.raises(SpladeError) as err:
            OpenSearchSparseIndex.connect(settings, "gone", TOKENS, META, must_exist=False,
                                          retry=RetryPolicy(2, 0.01, 0.01))
    message = str(err.value)
    assert "lost the connection to OpenSearch" in message and "(3 tries)" in message
    assert "cannot reach" not in message and "pa#ss" not in message and "\n" not in message


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_rebuilds_at_a_15_percent_fault_rate_lose_no_document(opensearch_url: str, seed: int) -> None:
    docs = random_batch(200, 12, seed=20 + seed, vocab=VOCAB)
    ids = [f"d{i}" for i in range(200)]
    name = f"faulty-{seed}"
    with FaultProxy(opensearch_url, random_faults(0.15, seed)) as proxy:
        index = through(proxy.url, name, chunk_size=10)
        index.remove_stale_builds()
        rebuild(index, ids, docs)
        assert index.count() == 200
        hits = index.search(docs.select(range(10)), 3)
    assert len(proxy.faults) >= 2 and proxy.requests > 30, proxy.faults
    assert all(hit for hit in hits)
    direct = connect(opensearch_url, name)
    assert direct.count() == 200 and len(direct.concrete_indices()) == 1
    found = direct.client.mget(index=name, body={"ids": ids})["docs"]
    assert all(d["found"] for d in found)
    assert [i for i in direct.client.indices.get(index=f"{name}-*")] == direct.concrete_indices()


SECRET = "pa#ss/w@rd"


def test_a_password_with_hash_slash_and_at_in_hosts_parses_and_never_shows(opensearch_url: str,
                                                                          tiny_model_dir: Path) -> None:
    from urllib.parse import quote

    host = opensearch_url.replace("http://", f"http://admin:{SECRET}@")
    index = OpenSearchSparseIndex.connect(OpenSearchSettings(hosts=[host]), "secret-idx", TOKENS, META,
                                          must_exist=False)
    with index.rebuild():
        index.add(["a"], random_batch(1, 5, seed=30, vocab=VOCAB))
    assert index.count() == 1
    assert SECRET not in repr(index.settings) and quote(SECRET, safe="") not in repr(index.settings)
    command = [sys.executable, "-m", "splade", "search", "q", "--model", str(tiny_model_dir), "--index", "x",
               "--backend", "opensearch", "--hosts", f"http://admin:{SECRET}@127.0.0.1:9", "--timeout", "2"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    [line] = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "cannot reach OpenSearch at http://***@127.0.0.1:9" in line, line
    for fragment in ("pa#", "pa%23", "w@rd", "w%40rd", "ss/w"):
        assert fragment not in line
