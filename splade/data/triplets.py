"""Training triplets from JSONL: `query, positive, negative` (+ optional `pair_type`, `difficulty`, `source`).

A malformed line, a missing field or an empty text stops with an error naming file and line, or, with
`skip_invalid`, is skipped and counted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from splade.errors import SpladeError, at_line
from splade.fileio import decode_line, iter_raw_lines, parse_json_object

TEXT_FIELDS = ("query", "positive", "negative")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Triplet:
    """One training example."""

    query: str
    positive: str
    negative: str
    pair_type: str = UNKNOWN
    difficulty: str = UNKNOWN
    source: str = UNKNOWN


@dataclass
class TripletDataset:
    """Triplets loaded from one or more JSONL files, with counts of what was skipped."""

    triplets: list[Triplet]
    skipped: int = 0
    skipped_examples: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> Triplet:
        return self.triplets[index]

    def values(self, name: str) -> list[str]:
        """The `pair_type`, `difficulty` or `source` of every triplet, in order."""
        return [getattr(t, name) for t in self.triplets]

    def distribution(self, name: str) -> dict[str, int]:
        return dict(Counter(self.values(name)))

    def texts(self) -> list[str]:
        """Every distinct document text (positives and negatives), in first-seen order."""
        return list(dict.fromkeys(t for trip in self.triplets for t in (trip.positive, trip.negative)))


def _parse_line(path: Path, number: int, line: str) -> Triplet:
    record = parse_json_object(path, number, line)
    texts = {}
    for name in TEXT_FIELDS:
        if name not in record:
            raise at_line(path, number, f"missing field {name!r}")
        value = record[name]
        if not isinstance(value, str):
            raise at_line(path, number, f"field {name!r} must be a string")
        if not value.strip():
            raise at_line(path, number, f"field {name!r} is empty")
        texts[name] = value
    extra = {}
    for name in ("pair_type", "difficulty", "source"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            raise at_line(path, number, f"field {name!r} must be a string")
        extra[name] = value or UNKNOWN
    return Triplet(**texts, **extra)


def load_triplets(paths: Sequence[str | Path], skip_invalid: bool = False) -> TripletDataset:
    """Read triplet JSONL files; blank lines are ignored. Lines are decoded one by one, so a line that is
    not UTF-8 is an error naming file and line (or skipped with `skip_invalid`) like any other bad line."""
    triplets: list[Triplet] = []
    skipped, examples = 0, []
    for raw_path in paths:
        path = Path(raw_path)
        if not path.is_file():
            raise SpladeError(f"{path}: triplet file not found (build one with `splade data build`)")
        for number, raw in iter_raw_lines(path):
            try:
                line = decode_line(path, number, raw)
                if line.strip():
                    triplets.append(_parse_line(path, number, line))
            except SpladeError as exc:
                if not skip_invalid:
                    raise
                skipped += 1
                if len(examples) < 5:
                    examples.append(str(exc))
    if not triplets:
        raise SpladeError(f"{', '.join(str(p) for p in paths)}: no valid triplets")
    return TripletDataset(triplets, skipped, examples)
