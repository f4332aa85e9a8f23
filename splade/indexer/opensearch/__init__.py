"""The OpenSearch backend: `OpenSearchSparseIndex` (`index`) and its helpers, the connection and its
errors (`connection`), retries (`retry`), bulk loading (`bulk`), the cluster's abilities (`capabilities`),
mappings and query shapes (`layouts`, `queries`), and the ledger index of sharded builds (`ledger`)."""

from splade.indexer.opensearch.connection import OpenSearchSettings, make_client
from splade.indexer.opensearch.index import (
    BUILD_SUFFIX,
    VECTOR_FIELD,
    OpenSearchSparseIndex,
    check_index_name,
    index_body,
)
from splade.indexer.opensearch.layouts import Layout

__all__ = ["BUILD_SUFFIX", "VECTOR_FIELD", "Layout", "OpenSearchSettings", "OpenSearchSparseIndex",
           "check_index_name", "index_body", "make_client"]
