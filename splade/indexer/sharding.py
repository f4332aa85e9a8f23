"""Moved: sharded jobs' ledger to `splade.ledger`, their fingerprint to `splade.fingerprint`; kept for old
imports."""

from splade.fingerprint import fingerprint
from splade.ledger import FINISH, FINISHED, WAIT, FolderLedger, Shard, resolve_shard

__all__ = ["FINISH", "FINISHED", "WAIT", "FolderLedger", "Shard", "fingerprint", "resolve_shard"]
