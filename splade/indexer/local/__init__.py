"""The embedded on-disk backend: `LocalSparseIndex` (`index`) and its helpers, the generations a folder
publishes (`generations`), their immutable segments (`segment`) and the segments' checksums (`integrity`).
The writer lock is `splade.lock`."""

from splade.indexer.local.index import LocalSparseIndex, build_lock

__all__ = ["LocalSparseIndex", "build_lock"]
