"""Download public Korean retrieval sets from the Hugging Face hub into BEIR layout (needs network and the
optional `datasets` package below version 4, `pip install 'splade[hub]'`, since both sets are loading
scripts; never used by the tests, which exercise the same BEIR loader on local folders).

    splade data build --hub miracl-ko --out data/miracl      # or a `{type: hub, name: mrtydi-ko}` source
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from splade.atomic import atomic_dir
from splade.errors import SpladeError


@dataclass(frozen=True)
class HubSet:
    """Where a public set lives on the hub: topics (queries + judged passages) and the passage corpus."""

    topics: str
    topics_config: str
    corpus: str
    corpus_config: str
    splits: tuple[str, ...]


HUB_SETS: dict[str, HubSet] = {
    "miracl-ko": HubSet("miracl/miracl", "ko", "miracl/miracl-corpus", "ko", ("train", "dev")),
    "mrtydi-ko": HubSet("castorini/mr-tydi", "korean", "castorini/mr-tydi-corpus", "korean",
                        ("train", "dev", "test")),
}


def default_cache() -> Path:
    """`$SPLADE_DATA_HOME` or `~/.cache/splade/data`."""
    return Path(os.environ.get("SPLADE_DATA_HOME", Path.home() / ".cache" / "splade" / "data"))


def download_beir(name: str, target: Path | None = None) -> Path:
    """The BEIR folder of hub set `name`, downloaded on first use (later calls reuse it)."""
    if name not in HUB_SETS:
        raise SpladeError(f"hub set {name!r} is unknown (choose: {', '.join(sorted(HUB_SETS))})")
    target = Path(target) if target else default_cache() / name
    if (target / "corpus.jsonl").is_file():
        return target
    try:
        import datasets
    except ImportError:
        raise SpladeError(f"loading {name!r} needs the 'datasets' package (< 4): "
                          "pip install 'splade[hub]'") from None
    spec = HUB_SETS[name]
    try:
        corpus = datasets.load_dataset(spec.corpus, spec.corpus_config, split="train", trust_remote_code=True)
        topics = {split: datasets.load_dataset(spec.topics, spec.topics_config, split=split,
                                               trust_remote_code=True) for split in spec.splits}
    except Exception as exc:  # network, auth or hub errors
        raise SpladeError(f"could not download {name!r} from the Hugging Face hub: {exc}") from None
    with atomic_dir(target) as tmp:
        _write_beir(tmp, corpus, topics)
    return target


def _write_beir(root: Path, corpus: Iterable[dict], topics: dict[str, Iterable[dict]]) -> None:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as handle:
        for doc in corpus:
            row = {"_id": doc["docid"], "title": doc.get("title", ""), "text": doc["text"]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    queries: dict[str, str] = {}
    for split, rows in topics.items():
        with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as handle:
            handle.write("query-id\tcorpus-id\tscore\n")
            for row in rows:
                qid = str(row["query_id"])
                queries[qid] = row["query"]
                for passage in row.get("positive_passages") or []:
                    handle.write(f"{qid}\t{passage['docid']}\t1\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as handle:
        for qid, text in queries.items():
            handle.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
