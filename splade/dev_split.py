"""Two fixed halves of every dev split: training selects its best model on one, reports use the other.

A query's half is a hash of its id, so the split needs no stored list and is the same for every run, model
and machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Literal

Half = Literal["select", "report", "all"]
HALVES = ("select", "report", "all")


def query_half(query_id: str) -> str:
    """`select` or `report`: the half of the dev split the query belongs to."""
    digest = hashlib.blake2b(query_id.encode("utf-8"), digest_size=2).digest()
    return "select" if digest[0] % 2 == 0 else "report"


def in_half(query_ids: Iterable[str], half: str) -> list[str]:
    """The ids of `query_ids` in `half` (`all`: every one), in their order."""
    if half == "all":
        return list(query_ids)
    return [q for q in query_ids if query_half(q) == half]
