"""Moved to `splade.indexer.opensearch.capabilities`; kept for old imports.

The same module object under both names, so patching either patches both."""

import sys

from splade.indexer.opensearch import capabilities as _moved

sys.modules[__name__] = _moved
