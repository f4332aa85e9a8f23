"""Batch search to a TREC run file (`splade search --queries FILE --output run.trec`), as pyserini does.

Queries come from a BEIR `queries.jsonl` (`_id`, `text`) or a TSV file (`id<TAB>text` a line). Sharded
(`--shard i/n`, or torchrun's RANK/WORLD_SIZE), shard `i` searches a contiguous run of whole encoder
windows of the queries and writes its part into `RUN.parts/`; the last shard to finish joins the parts,
in query order, into the run file (`splade.ledger.FolderLedger`), as `splade index` does.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tqdm.auto import tqdm

from splade.atomic import atomic_file
from splade.data.beir import load_queries
from splade.errors import SpladeError, at_line, at_option
from splade.fileio import iter_lines
from splade.fingerprint import fingerprint
from splade.indexer.pipeline import _load_encoder, backend_of, metadata_for, open_index
from splade.ledger import FINISH, WAIT, FolderLedger, Shard, resolve_shard
from splade.windows import ENCODE_WINDOW

if TYPE_CHECKING:
    from splade.config.index import SearchConfig
    from splade.encoders import Encoder
    from splade.indexer.base import SparseIndex

Hits = list[tuple[str, float]]


def load_query_file(path: str | Path) -> dict[str, str]:
    """Queries by id from `queries.jsonl` (BEIR) or a TSV file of `id<TAB>text` lines."""
    path = Path(path)
    if not path.is_file():
        raise at_option("--queries", f"{path}: file not found")
    queries = load_queries(path) if path.suffix in (".jsonl", ".json") else {}
    if path.suffix not in (".jsonl", ".json"):
        for number, line in iter_lines(path):
            qid, sep, text = line.partition("\t")
            if not sep or not qid.strip() or not text.strip():
                raise at_line(path, number, "expected `id<TAB>text`")
            if qid.strip() in queries:
                raise at_line(path, number, f"query id {qid.strip()!r} repeats an earlier line")
            queries[qid.strip()] = text.strip()
    if not queries:
        raise at_option("--queries", f"{path}: no queries")
    for qid in queries:
        if re.search(r"\s", qid):
            raise at_option("--queries", f"{path}: query id {qid!r} holds white space, which a TREC run "
                                         "cannot hold")
    return queries


def trec_lines(qid: str, hits: Hits, run_name: str) -> Iterable[str]:
    """`QID Q0 DOC_ID RANK SCORE RUN` lines of one query's hits, best first."""
    for rank, (doc_id, score) in enumerate(hits, start=1):
        if re.search(r"\s", doc_id):
            raise SpladeError(f"document id {doc_id!r} holds white space, which a TREC run cannot hold")
        yield f"{qid} Q0 {doc_id} {rank} {score:.6f} {run_name}\n"


def run_name_of(model: str | Path) -> str:
    """The run column: the model folder's name without white space."""
    return re.sub(r"\s+", "_", Path(model).name) or "splade"


def search_run(encoder: Encoder, index: SparseIndex, queries: dict[str, str], handle: TextIO, top_k: int,
               run_name: str, batch_size: int = 32, show_progress: bool = True,
               query_top_k: int | None = None) -> int:
    """Encode and search `queries` a window at a time (each pruned to its `query_top_k` heaviest terms),
    writing TREC lines to `handle`; the lines written."""
    qids, written = list(queries), 0
    with tqdm(total=len(qids), desc="searching", unit="query", disable=not show_progress) as bar:
        for start in range(0, len(qids), ENCODE_WINDOW):
            window = qids[start:start + ENCODE_WINDOW]
            vectors = encoder.encode_queries([queries[q] for q in window], batch_size=batch_size,
                                             top_k=query_top_k)
            for qid, hits in zip(window, index.search(vectors, top_k=top_k), strict=True):
                for line in trec_lines(qid, hits, run_name):
                    handle.write(line)
                    written += 1
            bar.update(len(window))
    return written


def search_to_run(config: SearchConfig, show_progress: bool = True) -> dict[str, Any]:
    """`splade search --queries FILE --output RUN`: every query's `top_k` hits as a TREC run file."""
    assert config.queries is not None and config.output is not None
    queries = load_query_file(config.queries)
    output = Path(config.output)
    if output.is_dir():
        raise at_option("--output", f"{output} is a folder; name the run file")
    backend_of(config).check_target(config)  # fail fast, before loading the model
    shard = resolve_shard(config.shard)
    device = shard.device(config.device) if shard else config.device
    encoder = _load_encoder(config.model, device)
    run_name = run_name_of(config.model)
    index = open_index(config, encoder, check_model=not config.allow_other_model)
    with contextlib.closing(index):
        if shard is None:
            with atomic_file(output) as handle:
                lines = search_run(encoder, index, queries, handle, config.top_k, run_name,
                                   config.batch_size, show_progress, config.query_top_k)
            return {"queries": len(queries), "lines": lines,
                    "message": f"wrote {lines} lines for {len(queries)} queries to {output}"}
        meta = json.dumps(metadata_for(encoder).to_dict(), sort_keys=True)
        return _search_shard(encoder, index, queries, output, shard, config, run_name, meta, show_progress)


def _search_shard(encoder: Encoder, index: SparseIndex, queries: dict[str, str], output: Path, shard: Shard,
                  config: SearchConfig, run_name: str, meta: str, show_progress: bool) -> dict[str, Any]:
    """This shard's part of the run; the last shard to finish joins the parts into `output`."""
    key = fingerprint([meta, str(config.index), str(config.top_k), str(config.query_top_k), run_name,
                       str(shard.count),
                       *(f"{q}\t{t}" for q, t in queries.items())])
    ledger = FolderLedger(output.parent / f"{output.name}.parts", key, shard)
    part = ledger.folder / f"part-{shard.tag}.trec"
    positions = shard.positions(len(queries), ENCODE_WINDOW)
    mine = dict(list(queries.items())[positions.start:positions.stop])
    if ledger.marker(shard.index) is None:
        with atomic_file(part) as handle:
            search_run(encoder, index, mine, handle, config.top_k, run_name, config.batch_size, show_progress,
                       config.query_top_k)
        ledger.mark_done({"queries": len(mine)})
    done = f"shard {shard.label}: searched {len(mine)} queries"
    with ledger.finishing() as (state, found):
        if state == FINISH:
            with atomic_file(output) as handle:
                for i in range(shard.count):
                    with open(ledger.folder / f"part-{Shard(i, shard.count).tag}.trec",
                              encoding="utf-8") as source:
                        for line in source:
                            handle.write(line)
            return {"queries": len(mine), "state": state,
                    "message": f"{done}; wrote the run of {len(queries)} queries from {shard.count} shards "
                               f"to {output}"}
    if state == WAIT:
        missing = ", ".join(map(str, found))
        return {"queries": len(mine), "state": state,
                "message": f"{done}; waiting for shard(s) {missing}: the last shard to finish writes "
                           f"{output}"}
    return {"queries": len(mine), "state": state, "message": f"{done}; another shard wrote {output}"}
