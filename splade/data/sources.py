"""Readers for parallel-sentence TSVs and bilingual term lexicons, with errors that name file and line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from splade.errors import SpladeError, at_line
from splade.fileio import iter_lines


@dataclass(frozen=True)
class TextPair:
    """One aligned pair (Korean, English) and the 1-based line it came from."""

    ko: str
    en: str
    line: int


def read_pairs(path: str | Path, columns: Sequence[str] = ("ko", "en"),
               header: bool = True) -> list[TextPair]:
    """Read a tab-separated file of aligned (ko, en) text.

    With `header=True` the first line names the columns and must contain both `columns`; other columns (a
    KCD code, say) are ignored. With `header=False` the first two fields of each line are (ko, en); a line
    without a tab is split at its first run of whitespace (the MUSE dictionary's format).
    """
    path = Path(path)
    ko_col, en_col = columns
    pairs: list[TextPair] = []
    positions: tuple[int, int] | None = None if header else (0, 1)
    for number, line in iter_lines(path):
        fields = line.split("\t") if (header or "\t" in line) else line.split(None, 1)
        if positions is None:
            names = [f.strip().lower() for f in fields]
            missing = [c for c in (ko_col, en_col) if c not in names]
            if missing:
                raise at_line(path, number, f"header has no column {' or '.join(map(repr, missing))} "
                                            f"(found: {', '.join(names)}); expected tab-separated columns "
                                            f"{ko_col!r} and {en_col!r}")
            positions = (names.index(ko_col), names.index(en_col))
            continue
        need = max(positions) + 1
        if len(fields) < need:
            raise at_line(path, number, f"expected at least {need} tab-separated fields, found {len(fields)}")
        ko, en = fields[positions[0]].strip(), fields[positions[1]].strip()
        if not ko or not en:
            raise at_line(path, number, f"empty {ko_col!r} or {en_col!r} field")
        pairs.append(TextPair(ko, en, number))
    if positions is None:
        raise SpladeError(f"{path}: file is empty")
    return pairs


def read_parallel(path: str | Path, header: bool = True) -> list[TextPair]:
    """A parallel-sentence TSV with `ko` and `en` columns (`../shared/data/parallel/*.tsv`)."""
    return read_pairs(path, header=header)


def read_lexicon(path: str | Path, header: bool = True) -> list[TextPair]:
    """A term lexicon with `ko` and `en` columns (KCD names), or headerless `ko en` lines (MUSE)."""
    return read_pairs(path, header=header)
