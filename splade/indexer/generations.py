"""Moved to `splade.indexer.local.generations`; kept for old imports.

The same module object under both names, so patching either patches both."""

import sys

from splade.indexer.local import generations as _moved

sys.modules[__name__] = _moved
