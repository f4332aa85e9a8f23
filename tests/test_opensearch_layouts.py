"""OpenSearch 3.x: server version detection, the sparse_vector (SEISMIC) and two-phase layouts.

osmem-server has no neural-search plugin: no `neural_sparse`, no `sparse_vector` field, no search pipelines.
Against it these tests check the detection and the one-line refusals; the request bodies of the calls it
lacks (index creation with SEISMIC, `neural_sparse` with `method_parameters`, the two-phase pipeline,
documents keyed by token id) are checked as built, field by field, against OpenSearch's documented forms.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_index_opensearch import META, TOKENS, VOCAB, build, connect

from splade.errors import SpladeError
from splade.indexer.capabilities import NEURAL_SEARCH, ServerInfo
from splade.indexer.layouts import TWO_PHASE_PIPELINE, Layout, two_phase_pipeline
from splade.indexer.opensearch import VECTOR_FIELD, OpenSearchSparseIndex, index_body
from splade.sparse import SparseBatch

PLUGINS = [{"name": "node-1", "component": NEURAL_SEARCH, "version": "x"},
           {"name": "node-1", "component": "opensearch-ml", "version": "x"}]


def server(version: str, plugins: list | None = PLUGINS, distribution: str = "opensearch") -> ServerInfo:
    return ServerInfo.parse({"version": {"number": version, "distribution": distribution}}, plugins)


# -- version detection --------------------------------------------------------------------------------

def test_versions_decide_the_query_form_and_what_can_be_built() -> None:
    assert server("2.11.1").query_mode("auto") == "rank_feature"  # neural_sparse without query_tokens
    assert server("2.13.0").query_mode("auto") == "rank_feature"
    assert server("2.14.0").query_mode("auto") == "neural_sparse"
    assert server("3.3.0-SNAPSHOT").version == (3, 3, 0)
    assert server("3.3.0", plugins=[]).query_mode("auto") == "rank_feature"  # no neural-search plugin
    assert server("3.3.0", plugins=None).query_mode("auto") == "rank_feature"  # plugins unknown: portable
    assert server("3.3.0", plugins=None).query_mode("neural_sparse") == "neural_sparse"
    with pytest.raises(SpladeError, match=r"^--query-mode: neural_sparse with query_tokens needs OpenSearch "
                                          r"2.14 or later; the cluster runs OpenSearch 2.13.0"):
        server("2.13.0").query_mode("neural_sparse")
    assert not server("2.19.1").supports("sparse_vector") and server("3.3.0").supports("sparse_vector")
    assert not server("2.14.0").supports("two_phase") and server("2.15.0").supports("two_phase")
    assert not server("8.13.0", distribution="elasticsearch").supports("query_tokens")


def test_a_missing_feature_is_one_line_naming_the_option() -> None:
    with pytest.raises(SpladeError, match=r"^--mapping: sparse_vector fields with the SEISMIC method needs "
                                          r"OpenSearch 3.3 or later; the cluster runs OpenSearch 3.2.0$"):
        server("3.2.0").require("sparse_vector", "--mapping")
    with pytest.raises(SpladeError, match=r"^--two-phase: .* needs the opensearch-neural-search plugin"):
        server("3.3.0", plugins=[]).require("two_phase", "--two-phase")
    server("3.3.0", plugins=None).require("sparse_vector", "--mapping")  # plugins unknown: by the version


def test_osmem_server_is_read_as_opensearch_without_the_plugin(opensearch_url: str) -> None:
    index = connect(opensearch_url, "detect")
    info = index.server
    assert info.distribution == "opensearch" and info.version >= (2, 0, 0)
    assert info.neural_search is False and index.query_mode == "rank_feature"
    vectors = SparseBatch.from_rows([(np.array([3, 5]), np.array([1.0, 2.0]))], VOCAB)
    for layout, option in ((Layout.build("sparse_vector"), "--mapping"), (Layout.build(two_phase=True),
                                                                           "--two-phase")):
        other = connect(opensearch_url, f"refused-{layout.name}", layout=layout)
        with pytest.raises(SpladeError, match=f"^{option}: .* needs the {NEURAL_SEARCH} plugin") as err, \
                other.rebuild():
            other.add(["a"], vectors)
        assert "\n" not in str(err.value)
        assert not other.exists()  # nothing was created


def test_the_layout_is_stored_and_searching_uses_the_stored_one(opensearch_url: str) -> None:
    docs = SparseBatch.from_rows([(np.array([1, 2]), np.array([1.0, 0.5]))], VOCAB)
    build(opensearch_url, "stored-layout", ["a"], docs)
    index = connect(opensearch_url, "stored-layout", layout=Layout.build("sparse_vector"))
    index.use_stored_metadata()
    assert index.layout == Layout() and index.query_mode == "rank_feature"
    [concrete] = index.concrete_indices()
    meta = index.client.indices.get_mapping(index=concrete)[concrete]["mappings"]["_meta"]
    assert meta["splade_layout"] == {"mapping": "rank_features", "two_phase": False, "seismic": {}}


# -- the bodies of the calls osmem-server lacks --------------------------------------------------------

def test_sparse_vector_index_body_with_seismic_parameters() -> None:
    layout = Layout.build("sparse_vector", seismic=["n_postings=300", "cluster_ratio=0.1",
                                                    "summary_prune_ratio=0.4", "approximate_threshold=0",
                                                    "quantization_ceiling_ingest=5", "top_n=20"])
    body = index_body(META, layout)
    assert body["settings"] == {"index": {"number_of_shards": 1, "number_of_replicas": 0, "sparse": True}}
    assert body["mappings"]["properties"][VECTOR_FIELD] == {
        "type": "sparse_vector",
        "method": {"name": "seismic", "parameters": {
            "n_postings": 300, "cluster_ratio": 0.1, "summary_prune_ratio": 0.4, "approximate_threshold": 0,
            "quantization_ceiling_ingest": 5.0}}}
    assert isinstance(body["mappings"]["properties"][VECTOR_FIELD]["method"]["parameters"]["n_postings"], int)
    assert Layout.build("sparse_vector").field() == {"type": "sparse_vector", "method": {"name": "seismic"}}


def test_sparse_vector_documents_and_queries_use_token_ids() -> None:
    layout = Layout.build("sparse_vector", seismic=["top_n=20", "heap_factor=1.2"])
    index = OpenSearchSparseIndex(None, "sv", TOKENS, META, layout=layout)
    dotted = TOKENS.index("u.s")
    ids, weights = np.array([2, dotted, 7]), np.array([0.5, 1.5, np.nan], dtype=np.float32)
    assert index._document_source("d1", (ids, weights), "text")[VECTOR_FIELD] == {"2": 0.5, str(dotted): 1.5}
    assert index.query_mode == "neural_sparse"
    body = index.query_body(ids, weights, 100)
    assert body["query"] == {"neural_sparse": {VECTOR_FIELD: {
        "query_tokens": {str(dotted): 1.5, "2": 0.5},
        "method_parameters": {"k": 100, "top_n": 20, "heap_factor": 1.2}}}}
    assert body["size"] == 100
    with pytest.raises(SpladeError, match="--query-mode"):
        OpenSearchSparseIndex(None, "sv", TOKENS, META, query_mode="rank_feature", layout=layout).query_body(
            ids, weights, 10)


def test_two_phase_pipeline_and_index_setting() -> None:
    assert two_phase_pipeline()["request_processors"] == [{"neural_sparse_two_phase_processor": {
        "tag": "splade-two-phase", "enabled": True,
        "two_phase_parameter": {"prune_ratio": 0.4, "expansion_rate": 5.0, "max_window_size": 10000}}}]
    body = index_body(META, Layout.build(two_phase=True))
    assert body["settings"]["index"]["search"] == {"default_pipeline": TWO_PHASE_PIPELINE}
    assert body["mappings"]["properties"][VECTOR_FIELD] == {"type": "rank_features"}
    index = OpenSearchSparseIndex(None, "tp", TOKENS, META, query_mode="neural_sparse",
                                  layout=Layout.build(two_phase=True))
    query = index.query_body(np.array([1]), np.array([2.0]), 10)["query"]
    assert query == {"neural_sparse": {VECTOR_FIELD: {"query_tokens": {"tok1": 2.0}}}}  # the pipeline splits


def test_layout_options_are_checked() -> None:
    with pytest.raises(SpladeError, match="^--mapping: choose one of rank_features, sparse_vector"):
        Layout.build("dense")
    with pytest.raises(SpladeError, match="^--two-phase: "):
        Layout.build("sparse_vector", two_phase=True)
    with pytest.raises(SpladeError, match="^--seismic: SEISMIC parameters need --mapping sparse_vector"):
        Layout.build(seismic=["top_n=3"])
    with pytest.raises(SpladeError, match="^--seismic: expected KEY=VALUE"):
        Layout.build("sparse_vector", seismic=["k=3"])
    with pytest.raises(SpladeError, match="^--seismic: n_postings must be a number"):
        Layout.build("sparse_vector", seismic=["n_postings=many"])
    assert Layout.from_meta(Layout.build("sparse_vector", seismic=["top_n=4"]).to_meta()) == Layout.build(
        "sparse_vector", seismic=["top_n=4"])
    assert Layout.from_meta(None) == Layout()


@pytest.mark.parametrize(("name", "layout"), [
    ("sparse-index.json", Layout()),
    ("sparse-vector-index.json", Layout.build("sparse_vector", seismic=["approximate_threshold=0",
                                                                          "quantization_ceiling_ingest=5"])),
])
def test_the_example_index_bodies_are_what_splade_sends(name: str, layout: Layout) -> None:
    import json

    from conftest import REPO_ROOT

    from splade.indexer.base import IndexMetadata

    placeholder = IndexMetadata("<model folder>", "<16 hex>", 0)
    example = json.loads((REPO_ROOT / "docker" / "opensearch" / name).read_text(encoding="utf-8"))
    assert example == json.loads(json.dumps(index_body(placeholder, layout)))


def test_primary_shards_and_replicas_shape_a_new_index(opensearch_url: str) -> None:
    layout = Layout.build(shards=3, replicas=1)
    assert layout == Layout() and layout.to_meta() == Layout().to_meta()  # searching need not know them
    with pytest.raises(SpladeError, match="^--primary-shards: must be at least 1"):
        Layout.build(shards=0)
    with pytest.raises(SpladeError, match="^--replicas: must be at least 0"):
        Layout.build(replicas=-1)
    index = build(opensearch_url, "shaped", ["a"], SparseBatch.from_rows([(np.array([1]), np.array([1.0]))],
                                                                        VOCAB), layout=layout)
    [concrete] = index.concrete_indices()
    settings = index.client.indices.get_settings(index=concrete)[concrete]["settings"]["index"]
    assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("3", "1")
