"""Moved to `splade.indexer.opensearch.queries`; kept for old imports.

The same module object under both names, so patching either patches both."""

import sys

from splade.indexer.opensearch import queries as _moved

sys.modules[__name__] = _moved
