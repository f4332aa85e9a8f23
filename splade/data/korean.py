"""Korean lexical tokenizer for BM25: Kiwi content morphemes (shared by the miner and the BM25 baseline).

Kept morphemes are those whose part-of-speech tag starts with N (nouns, numerals, pronouns), V (verb and
adjective stems), XR (roots), SL (Latin words, lower-cased), SN (numbers) or SH (Hanja). Particles, endings,
affixes and punctuation are dropped. Kiwi restores irregular stems (`걸어서` -> `걷`), so verbs and adjectives
appear as their stem form.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence

CONTENT_TAG_PREFIXES: tuple[str, ...] = ("N", "V", "XR", "SL", "SN", "SH")
MAX_PIECE_CHARS = 512
_SENTENCE_END = re.compile(r"(?<=[.!?。])\s+|[\r\n]+")

_CACHE: dict[int, KoreanTokenizer] = {}
_CACHE_LOCK = threading.Lock()


class KoreanTokenizer:
    """Kiwi morphological analysis reduced to content morphemes.

    `num_workers` is Kiwi's thread count: -1 analyses on the calling thread (best on a busy 2-core box),
    n >= 2 lets `tokenize_many` spread a batch over n threads.
    """

    def __init__(self, num_workers: int = -1, tag_prefixes: Sequence[str] = CONTENT_TAG_PREFIXES) -> None:
        import warnings

        from kiwipiepy import Kiwi

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self._kiwi = Kiwi(num_workers=num_workers)
        self.num_workers = num_workers
        self.tag_prefixes = tuple(tag_prefixes)
        self._keep_cache: dict[str, bool] = {}

    def _keep(self, tag: str) -> bool:
        keep = self._keep_cache.get(tag)
        if keep is None:
            keep = tag.startswith(self.tag_prefixes)
            self._keep_cache[tag] = keep
        return keep

    def _terms(self, tokens) -> list[str]:
        keep = self._keep
        return [tok.form.lower() if tok.tag == "SL" else tok.form for tok in tokens if keep(tok.tag)]

    def tokenize(self, text: str) -> list[str]:
        """Content morphemes of one text, in order (duplicates kept: BM25 needs term frequencies)."""
        return self.tokenize_many([text])[0]

    def tokenize_many(self, texts: Sequence[str], show_progress: bool = False,
                      desc: str = "kiwi") -> list[list[str]]:
        """Content morphemes of many texts through Kiwi's batch API (order preserved).

        Texts are cut at sentence ends first: Kiwi's cost grows faster than linearly with input length, and
        morphemes do not cross sentence boundaries, so the pieces analyse ~3x faster to the same result.
        """
        pieces: list[str] = []
        counts: list[int] = []
        for text in texts:
            parts = split_sentences(text)
            pieces.extend(parts)
            counts.append(len(parts))
        results = self._kiwi.tokenize(pieces) if pieces else iter(())
        if show_progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(pieces), desc=desc, unit="sentence")
        analysed = iter(results)
        out: list[list[str]] = []
        for count in counts:
            terms: list[str] = []
            for _ in range(count):
                terms.extend(self._terms(next(analysed)))
            out.append(terms)
        return out


def split_sentences(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Cut `text` after sentence-final punctuation and at line breaks; pieces over `max_chars` are cut at
    the last space before the limit. Empty pieces are dropped."""
    pieces = []
    for part in _SENTENCE_END.split(text or ""):
        part = part.strip()
        while len(part) > max_chars:
            cut = part.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(part[:cut])
            part = part[cut:].strip()
        if part:
            pieces.append(part)
    return pieces


def get_korean_tokenizer(num_workers: int = -1) -> KoreanTokenizer:
    """A process-wide cached tokenizer (loading Kiwi's model takes about a second)."""
    with _CACHE_LOCK:
        tokenizer = _CACHE.get(num_workers)
        if tokenizer is None:
            tokenizer = KoreanTokenizer(num_workers=num_workers)
            _CACHE[num_workers] = tokenizer
        return tokenizer
