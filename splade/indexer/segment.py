"""Moved to `splade.indexer.local.segment`; kept for old imports.

The same module object under both names, so patching either patches both."""

import sys

from splade.indexer.local import segment as _moved

sys.modules[__name__] = _moved
