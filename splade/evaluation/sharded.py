"""Sharded evaluation: every shard encodes its share of each corpus with each SPLADE model; the last shard to
finish runs the evaluation with all the vectors (indexing, searching, baselines, report).

The shards meet in a folder they share (`EncodingJob.shard_dir`; `splade eval` uses `<out>.shards`)::

    LOCK, shard-00000-of-00002.json      the ledger (`splade.ledger.FolderLedger`)
    0-v23/part-00000-of-00002.npz        shard 0's vectors of corpus group 0 with the system `v23`

Shares are runs of whole encoder windows, so the vectors equal those of an unsharded evaluation bit for
bit, and so do the runs and metrics. The report's document-encoding time is the shards' sum.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from splade.data.beir import Document
from splade.errors import SpladeError
from splade.evaluation.base import stopwatch
from splade.evaluation.systems import SpladeSystem, corpus_key
from splade.fingerprint import fingerprint
from splade.ledger import FINISH, WAIT, FolderLedger, Shard
from splade.model.artifact import model_identity
from splade.sparse import SparseBatch
from splade.windows import ENCODE_WINDOW

Encoded = dict[tuple[int, str], tuple[SparseBatch, float]]  # (group, system name) -> vectors, seconds


@dataclass(frozen=True)
class EncodingJob:
    """What the shards of an evaluation encode: the SPLADE models, how, and where the shards meet."""

    splade: list[tuple[str, Path]]
    shard_dir: Path | None
    encoder_backend: str = "auto"
    device: str | None = None
    batch_size: int = 32
    doc_top_k: int | None = None
    show_progress: bool = False
    doc_max_length: int | None = None  # None: each model's own document length


def encode_share(job: EncodingJob, shard: Shard, corpora: Sequence[Sequence[Document]],
                 log: Callable[[str], None]) -> Encoded | None:
    """Encode this shard's share of every corpus; the vectors of all shards when this shard is the last to
    finish (it evaluates), None otherwise (the reason is logged)."""
    if not job.splade:
        raise SpladeError("--shard: sharding splits the SPLADE document encoding; give --splade")
    if job.shard_dir is None:
        raise SpladeError("--shard: a sharded evaluation needs a folder its shards share (shard_dir)")
    ledger = FolderLedger(job.shard_dir, _job_key(job, shard, corpora), shard)
    if ledger.marker(shard.index) is None:
        ledger.mark_done({"seconds": _encode(job, shard, corpora, ledger.folder, log)})
    with ledger.finishing() as (state, found):
        if state == FINISH:
            return _gather(job, shard, corpora, ledger.folder, found)
    if state == WAIT:
        log(f"shard {shard.label}: documents encoded; waiting for shard(s) {', '.join(map(str, found))}: "
            "the last shard to finish evaluates and writes the report")
    else:
        log(f"shard {shard.label}: documents encoded; another shard evaluates and writes the report")
    return None


def _job_key(job: EncodingJob, shard: Shard, corpora: Sequence[Sequence[Document]]) -> str:
    models = [f"{name}={model_identity(path)}" for name, path in job.splade]
    settings = json.dumps({"doc_top_k": job.doc_top_k, "encoder": job.encoder_backend,
                           "batch": job.batch_size, "doc_max_length": job.doc_max_length}, sort_keys=True)
    return fingerprint([str(shard.count), settings, *models, *(corpus_key(docs) for docs in corpora)])


def _part(folder: Path, group: int, name: str, shard: Shard) -> Path:
    return folder / f"{group}-{name}" / f"part-{shard.tag}.npz"


def _encode(job: EncodingJob, shard: Shard, corpora: Sequence[Sequence[Document]], folder: Path,
            log: Callable[[str], None]) -> dict[str, float]:
    """Encode and save this shard's share of each corpus with each model; seconds per part."""
    seconds: dict[str, float] = {}
    for name, path in job.splade:
        system = SpladeSystem(name, path, encoder_backend=job.encoder_backend,
                              device=shard.device(job.device), batch_size=job.batch_size,
                              doc_top_k=job.doc_top_k, doc_max_length=job.doc_max_length)
        for group, documents in enumerate(corpora):
            share = shard.positions(len(documents), ENCODE_WINDOW)
            log(f"shard {shard.label}: {name} encoding documents {share.start:,}-{share.stop:,} of "
                f"{len(documents):,}")
            with stopwatch() as clock:
                vectors = system.encode_documents(documents[share.start:share.stop], job.show_progress)
            target = _part(folder, group, name, shard)
            target.parent.mkdir(parents=True, exist_ok=True)
            scratch = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npz")
            vectors.save(scratch)
            os.replace(scratch, target)
            seconds[f"{group}-{name}"] = clock[0]
    return seconds


def _gather(job: EncodingJob, shard: Shard, corpora: Sequence[Sequence[Document]], folder: Path,
            markers: list[dict]) -> Encoded:
    """Every shard's vectors, joined in shard order, with the shards' encoding seconds summed."""
    encoded: Encoded = {}
    for group in range(len(corpora)):
        for name, _ in job.splade:
            parts = [SparseBatch.load(_part(folder, group, name, Shard(i, shard.count)))
                     for i in range(shard.count)]
            seconds = sum(float(marker["seconds"][f"{group}-{name}"]) for marker in markers)
            encoded[(group, name)] = (SparseBatch.concat(parts), seconds)
    return encoded
