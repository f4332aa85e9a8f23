"""Index stage: one `SparseIndex` interface; an embedded on-disk index (default) and an OpenSearch index."""

from splade.indexer.base import IndexMetadata, SparseIndex
from splade.indexer.corpus import index_corpus, metadata_for, search_queries
from splade.indexer.local import LocalSparseIndex
from splade.indexer.pipeline import IndexTarget

__all__ = ["IndexMetadata", "IndexTarget", "LocalSparseIndex", "SparseIndex", "index_corpus", "metadata_for",
           "search_queries"]
