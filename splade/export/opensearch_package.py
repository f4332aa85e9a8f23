"""OpenSearch ML Commons packages: a `SPARSE_ENCODING` TorchScript model, or a `SPARSE_TOKENIZE` idf table.

ML Commons runs a custom sparse model from a zip holding exactly one model file and `tokenizer.json`.
Its sparse translator tokenizes one text, names the tensors `input1.input_ids` / `input1.attention_mask`
(a dict input called `input1` to TorchScript) and turns every non-zero entry of the model's
`output` `[batch, vocab]` into `token: weight`. Registration needs the SHA-256 and size of the zip.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from splade.atomic import atomic_dir, atomic_file, write_json
from splade.errors import SpladeError, at_option
from splade.export.onnx_export import load_for_export
from splade.export.parity import DEFAULT_TOLERANCES, PARITY_TEXTS, Tolerance, check_parity, parity_batches
from splade.fileio import iter_texts
from splade.model import ExportGraph
from splade.model.artifact import backbone_dir, trained_max_length
from splade.tokens import carrier_ids, has_duplicates, merge_by_name, token_names

ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed timestamps: the same model gives the same zip and hash
MAX_QUERY_WEIGHT = 64.0  # OpenSearch's neural_sparse (Lucene's FeatureField) takes query weights in (0, 64]
ZERO_QUERY_WEIGHT = 1e-6  # what a token the query table weighs 0 gets in idf.json (absent would be 1.0)


class MlCommonsSparseModule(nn.Module):
    """`{"input_ids", "attention_mask"} -> {"output": [batch, vocab]}`, the signature ML Commons calls.

    With `carriers` (see `splade.tokens`), ids that decode to the same string hand their largest weight
    to one id and output zero themselves, so ML Commons' `{token: weight}` equals `splade index`'s.
    """

    def __init__(self, graph: ExportGraph, carriers: torch.Tensor | None = None) -> None:
        super().__init__()
        self.graph = graph
        self.merge = carriers is not None
        self.register_buffer("carriers", torch.zeros(0, dtype=torch.long) if carriers is None else carriers)

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        reps = self.graph(inputs["input_ids"], inputs["attention_mask"])
        if self.merge:
            index = self.carriers.unsqueeze(0).expand(reps.shape[0], -1)
            reps = torch.zeros_like(reps).scatter_reduce(1, index, reps, reduce="amax", include_self=True)
        return {"output": reps}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def ml_tokenizer_json(tokenizer, max_length: int) -> str:
    """The fast tokenizer's JSON with truncation at `max_length` (ML Commons tokenizes with it as is)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise SpladeError("the checkpoint has no fast tokenizer (tokenizer.json), which ML Commons needs")
    backend = type(backend).from_str(backend.to_str())
    backend.enable_truncation(max_length=max_length)
    backend.no_padding()
    return backend.to_str()


def _write_zip(zip_path: Path, members: dict[str, Path | str]) -> None:
    """A deterministic zip: fixed member order and timestamps."""
    with atomic_file(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.read_bytes() if isinstance(content, Path) else content.encode("utf-8")
            archive.writestr(info, data)


def register_body(name: str, function_name: str, zip_path: Path, description: str, version: str,
                  url: str | None) -> dict:
    """The body of `POST /_plugins/_ml/models/_register` for this package."""
    body = {
        "name": name,
        "version": version,
        "description": description,
        "function_name": function_name,
        "model_format": "TORCH_SCRIPT",
        "model_content_size_in_bytes": zip_path.stat().st_size,
        "model_content_hash_value": sha256_file(zip_path),
        "created_time": int(time.time() * 1000),
    }
    if url:
        body["url"] = url
    return body


def trace_sparse_module(graph: ExportGraph, tokenizer, max_length: int,
                        carriers: np.ndarray | None = None) -> torch.jit.ScriptModule:
    """Trace the dict-in / dict-out module on an example batch (dynamic shapes survive tracing)."""
    module = MlCommonsSparseModule(graph, None if carriers is None else torch.from_numpy(carriers)).eval()
    example = tokenizer(["SPLADE export example", "짧은 예시 문장입니다"], padding=True, truncation=True,
                        max_length=max_length, return_tensors="pt", return_token_type_ids=False)
    inputs = {"input_ids": example["input_ids"], "attention_mask": example["attention_mask"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.jit.trace(module, (inputs,), strict=False, check_trace=False)


def build_ml_commons_package(
    checkpoint: str | Path,
    out_dir: str | Path,
    name: str | None = None,
    version: str = "1.0.0",
    description: str | None = None,
    url: str | None = None,
    max_length: int | None = None,
    tolerance: Tolerance | None = None,
) -> Path:
    """Write `out_dir/<name>.zip` (one TorchScript model + `tokenizer.json`) and `register_model.json`.

    The traced module is checked against the PyTorch model on Korean and English text, one text at a
    time as ML Commons runs it; a miss raises `SpladeError` with the figures and writes nothing.
    The module encodes documents as served (a model's `doc_expansion_weight` included): it is what an
    ingest pipeline runs. `splade search` sends `query_tokens` encoded as queries.
    Returns the zip's path.
    """
    model = load_for_export(checkpoint, max_length)
    name = name or Path(checkpoint).resolve().name
    graph = ExportGraph(model, documents=True).eval()  # what ingest encodes (documents, as served)
    names = token_names(model.tokenizer, model.vocab_size)
    carriers = carrier_ids(names) if has_duplicates(names) else None
    traced = trace_sparse_module(graph, model.tokenizer, model.max_length, carriers)

    @torch.no_grad()
    def reference(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        dense = model.encode_document_ids(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        return dense if carriers is None else merge_by_name(dense, carriers)

    @torch.no_grad()
    def candidate(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = traced({"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)})
        return out["output"].numpy()

    batches = parity_batches(model.tokenizer, PARITY_TEXTS, model.max_length, batch_sizes=(1, 4))
    limit = tolerance or DEFAULT_TOLERANCES["fp32"]
    parity = check_parity(reference, candidate, batches, "torchscript", limit)
    if not parity.passed:
        raise SpladeError(f"ML Commons package failed its parity check, nothing written: {parity.summary()}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model_file = tmp / f"{name.replace('/', '_')}.pt"
        torch.jit.save(traced, str(model_file))
        zip_path = tmp / f"{model_file.stem}.zip"
        _write_zip(zip_path, {model_file.name: model_file,
                              "tokenizer.json": ml_tokenizer_json(model.tokenizer, model.max_length)})
        model_file.unlink()  # it lives in the zip; the folder keeps only what is registered
        body = register_body(name, "SPARSE_ENCODING", zip_path,
                             description or f"SPLADE sparse encoder exported from {Path(checkpoint).name}",
                             version, url)
        write_json(tmp / "register_model.json", body)
        write_json(tmp / "parity.json", parity.to_dict())
    return out_dir / zip_path.name


def read_corpus_texts(path: str | Path) -> Iterable[str]:
    """Texts of a corpus: BEIR `corpus.jsonl` (title + text), another `.jsonl` with `text`, or one a line."""
    path = Path(path)
    if path.is_dir():
        path = path / "corpus.jsonl"
    if not path.is_file():
        raise at_option("--idf-corpus", f"{path} is not a file")
    yield from iter_texts(path)


def compute_idf(tokenizer, texts: Iterable[str], max_length: int = 512,
                batch_size: int = 256) -> dict[str, float]:
    """BM25 idf `log(1 + (N - df + 0.5) / (df + 0.5))` of every token that occurs in `texts`.

    Keys are the token strings ML Commons produces when it decodes one id (`splade.tokens`); a document
    counts once for a string even when several of its ids decode to it; special tokens are left out.
    """
    names = token_names(tokenizer, len(tokenizer))
    df: Counter[str] = Counter()
    n_docs = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal n_docs
        encoded = tokenizer(batch, truncation=True, max_length=max_length, add_special_tokens=False)
        for ids in encoded["input_ids"]:
            df.update({names[i] for i in ids if i < len(names)} - {""})
        n_docs += len(batch)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if n_docs == 0:
        raise at_option("--idf-corpus", "the corpus holds no texts")
    idf = {token: round(math.log(1.0 + (n_docs - count + 0.5) / (count + 0.5)), 6)
           for token, count in df.items()}
    return dict(sorted(idf.items()))


def table_idf(tokenizer, table: np.ndarray) -> dict[str, float]:
    """An inference-free model's query table as a SPARSE_TOKENIZE `idf.json`: every token string ML
    Commons can produce, with the largest weight of the ids that decode to it.

    ML Commons weighs a token missing from `idf.json` 1.0 and OpenSearch takes query weights in (0, 64],
    so a token the table weighs 0 is listed with `ZERO_QUERY_WEIGHT` (it scores nothing measurable).
    """
    names = token_names(tokenizer, len(table))
    merged: dict[str, float] = {}
    for name, weight in zip(names, table.tolist(), strict=True):
        if name:
            merged[name] = max(merged.get(name, 0.0), weight)
    heaviest = max(merged.values(), default=0.0)
    if heaviest > MAX_QUERY_WEIGHT:
        raise SpladeError(f"the query table weighs a token {heaviest:.3g}: OpenSearch takes query weights up "
                          f"to {MAX_QUERY_WEIGHT:g}")
    return {name: max(round(weight, 6), ZERO_QUERY_WEIGHT) for name, weight in sorted(merged.items())}


def build_sparse_tokenize_package(
    checkpoint: str | Path,
    out_dir: str | Path,
    idf_corpus: str | Path | None = None,
    name: str | None = None,
    version: str = "1.0.0",
    description: str | None = None,
    url: str | None = None,
    max_length: int | None = None,
) -> Path:
    """Write `out_dir/<name>-tokenizer.zip` (`tokenizer.json` + `idf.json`) and its `register_model.json`.

    The query side of a doc-only deployment: documents are encoded by the model at ingest time, queries
    are only tokenized and each query token weighs its `idf.json` entry. An inference-free model brings
    its own trained table (and query length); for any other model the weights are the idf over
    `idf_corpus`, and `max_length` (default: the trained one) cuts the queries.
    """
    from transformers import AutoTokenizer

    from splade.model.query_weights import load_query_table

    own = load_query_table(checkpoint)
    if own is not None:
        if idf_corpus is not None:
            raise at_option("--idf-corpus", f"{checkpoint} is inference-free: its package carries the "
                                            "model's own query weights (drop --idf-corpus)")
        tokenizer, table, limit = own
        idf = table_idf(tokenizer, table)
        what = f"query tokenizer with the trained query weights of {Path(checkpoint).name}"
    else:
        if idf_corpus is None:
            raise at_option("--idf-corpus", f"{checkpoint} encodes its queries with the model: name a "
                                            "corpus to compute the package's idf weights from")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir(checkpoint)))
        except (OSError, ValueError) as exc:
            raise SpladeError(f"{checkpoint}: cannot load the tokenizer ({exc})") from exc
        limit = max_length or trained_max_length(checkpoint) or min(tokenizer.model_max_length, 512)
        idf = compute_idf(tokenizer, read_corpus_texts(idf_corpus), max_length=limit)
        what = f"query tokenizer with idf weights for {Path(checkpoint).name}"
    name = name or f"{Path(checkpoint).resolve().name}-tokenizer"
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        zip_path = tmp / f"{name.replace('/', '_')}.zip"
        _write_zip(zip_path, {"tokenizer.json": ml_tokenizer_json(tokenizer, limit),
                              "idf.json": json.dumps(idf, ensure_ascii=False)})
        body = register_body(name, "SPARSE_TOKENIZE", zip_path, description or what, version, url)
        write_json(tmp / "register_model.json", body)
    return out_dir / zip_path.name
