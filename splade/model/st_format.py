"""sentence-transformers module files: written beside every saved SPLADE model, read from a SPLADE folder
that sentence-transformers trained.

A `SparseEncoder` folder is `modules.json` naming its modules in order: a masked-LM transformer (in the
folder itself or a subfolder, with `sentence_bert_config.json` holding its max length) and
`SpladePooling` (`pooling_strategy`, `activation_function`), optionally `Normalize` (cosine scores).
sentence-transformers' `relu` activation is splade's `log(1 + ReLU)`; its `log1p_relu` applies log1p
twice. `config_sentence_transformers.json` says `model_type: SparseEncoder` and the similarity.
An inference-free model is a `Router` instead (`st_router`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from splade.atomic import write_json
from splade.errors import SpladeError

MODULES_NAME = "modules.json"
ST_CONFIG_NAME = "config_sentence_transformers.json"
TRANSFORMER_CONFIG_NAME = "sentence_bert_config.json"
ROUTER_CONFIG_NAME = "router_config.json"
POOLING_DIR = "1_SpladePooling"
NORMALIZE_DIR = "2_Normalize"
# an inference-free model's router: the query table, and the masked LM (its weights live only here) + pooling
QUERY_DIR = "query_0_SparseStaticEmbedding"
DOCUMENT_DIR = "document_0_MLMTransformer"
DOCUMENT_POOLING_DIR = "document_1_SpladePooling"
ROUTER_NORMALIZE_DIR = "1_Normalize"
MLM_TYPE = "sentence_transformers.sparse_encoder.models.MLMTransformer"
POOLING_TYPE = "sentence_transformers.sparse_encoder.models.SpladePooling"
NORMALIZE_TYPE = "sentence_transformers.models.Normalize"
ROUTER_TYPE = "sentence_transformers.models.Router"
STATIC_TYPE = "sentence_transformers.sparse_encoder.models.SparseStaticEmbedding"
ROUTER_NAMES = ("Router", "Asym")
WRITTEN = (MODULES_NAME, ST_CONFIG_NAME, TRANSFORMER_CONFIG_NAME, POOLING_DIR, NORMALIZE_DIR,
           ROUTER_CONFIG_NAME, QUERY_DIR, DOCUMENT_POOLING_DIR, ROUTER_NORMALIZE_DIR)


UNLIMITED = 1_000_000  # a tokenizer `model_max_length` at or past this sets no limit (transformers' 1e30)


@dataclass
class SentenceTransformersSplade:
    """What splade needs from a sentence-transformers SPLADE folder."""

    backbone: Path  # the folder holding the masked LM's weights and tokenizer
    max_length: int | None  # `max_seq_length`; None: the tokenizer's own limit
    similarity: str  # dot or cosine
    query_table: Path | None = None  # inference-free: the SparseStaticEmbedding's folder (weights, tokenizer)
    query_tokens: int | None = None  # the query tokens it keeps, special tokens not counted (None: no limit)


def write_module_files(folder: str | Path, max_length: int, vocab_size: int, similarity: str) -> None:
    """Write the module files that let `SparseEncoder(folder)` compute the same vectors as splade:
    the MLM at the folder's root, max pooling of `log(1 + ReLU)` and, for cosine, normalisation."""
    folder = Path(folder)
    remove_module_files(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": MLM_TYPE},
               {"idx": 1, "name": "1", "path": POOLING_DIR, "type": POOLING_TYPE}]
    if similarity == "cosine":
        modules.append({"idx": 2, "name": "2", "path": NORMALIZE_DIR, "type": NORMALIZE_TYPE})
        (folder / NORMALIZE_DIR).mkdir()
    write_json(folder / MODULES_NAME, modules)
    write_transformer_config(folder, max_length)
    write_pooling_config(folder / POOLING_DIR, vocab_size)
    write_st_config(folder, similarity)


def write_transformer_config(folder: Path, max_length: int) -> None:
    """The masked-LM module's `sentence_bert_config.json` (its max length)."""
    write_json(folder / TRANSFORMER_CONFIG_NAME, {"max_seq_length": max_length, "do_lower_case": False})


def write_pooling_config(folder: Path, vocab_size: int) -> None:
    """SpladePooling's config: max pooling of `log(1 + ReLU)` (sentence-transformers' `relu`)."""
    write_json(folder / "config.json", {"pooling_strategy": "max", "activation_function": "relu",
                                        "word_embedding_dimension": vocab_size})


def write_st_config(folder: Path, similarity: str) -> None:
    """`config_sentence_transformers.json`: a SparseEncoder scoring by `similarity`, no prompts."""
    write_json(folder / ST_CONFIG_NAME,
               {"model_type": "SparseEncoder", "similarity_fn_name": similarity,
                "prompts": {"query": "", "document": ""}, "default_prompt_name": None})


def remove_module_files(folder: str | Path) -> None:
    """Remove module files an earlier save wrote (a model sentence-transformers cannot reproduce has none)."""
    for name in WRITTEN:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_json(path: Path) -> Any:
    """A JSON file's contents ({} when it is missing); invalid JSON is a one-line error."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpladeError(f"{path}: not valid JSON ({exc})") from None


def _is_mlm(module_type: str, config: dict[str, Any]) -> bool:
    name = module_type.rsplit(".", 1)[-1]
    fill_mask = config.get("transformer_task") == "fill-mask"
    return name == "MLMTransformer" or (name == "Transformer" and fill_mask)


def read_module_files(folder: str | Path) -> SentenceTransformersSplade | None:
    """The SPLADE settings of a sentence-transformers folder (None without `modules.json`, or for a dense
    sentence-transformers model, whose transformer serves as a plain backbone).

    An inference-free folder is a `Router` whose query route is one `SparseStaticEmbedding` and whose
    document route is the SPLADE chain (see `st_router`). Anything splade cannot compute the same way (sum
    pooling, a double log1p, other routes, extra layers) is a one-line `SpladeError` naming the file.
    """
    folder = Path(folder)
    modules_path = folder / MODULES_NAME
    if not modules_path.is_file():
        return None
    modules = read_json(modules_path)
    if not isinstance(modules, list):
        raise SpladeError(f"{modules_path}: expected a list of modules")
    modules = sorted(modules, key=lambda m: m.get("idx", 0))
    types = [str(module.get("type", "")) for module in modules]
    if read_json(folder / ST_CONFIG_NAME).get("model_type") != "SparseEncoder" and not any(
            t.endswith("SpladePooling") for t in types):
        return None  # a dense sentence-transformers model (a backbone SPLADE training may start from)
    if types and types[0].rsplit(".", 1)[-1] in ROUTER_NAMES:
        st_model = read_router(folder, modules[0], modules[1:], modules_path)
    else:
        chain = [(t, folder / str(m.get("path", "")), str(m.get("path", ""))) for t, m in zip(types, modules,
                                                                                              strict=True)]
        st_model = SentenceTransformersSplade(*read_chain(chain, modules_path))
    if read_json(folder / ST_CONFIG_NAME).get("similarity_fn_name") == "cosine":
        st_model.similarity = "cosine"
    return st_model


def read_chain(chain: list[tuple[str, Path, str]], where: Path) -> tuple[Path, int | None, str]:
    """`(backbone, max_length, similarity)` of a SPLADE module chain, given as `(type, folder, label)`:
    a masked-LM transformer, SpladePooling, optionally Normalize."""
    backbone, max_length, pooled, similarity = None, None, False, "dot"
    for module_type, path, label in chain:
        name = module_type.rsplit(".", 1)[-1]
        config = read_json(path / (TRANSFORMER_CONFIG_NAME if "Transformer" in name else "config.json"))
        if backbone is None and _is_mlm(module_type, config):
            backbone, max_length = path, config.get("max_seq_length")
        elif name == "SpladePooling" and backbone is not None and not pooled:
            _check_pooling(path / "config.json", config)
            pooled = True
        elif name == "Normalize" and pooled:
            similarity = "cosine"
        else:
            raise unsupported(where, module_type, label,
                              "splade reads a masked-LM transformer, SpladePooling, Normalize")
    if backbone is None or not pooled:
        raise SpladeError(f"{where}: not a SPLADE model (a masked-LM transformer and SpladePooling)")
    return backbone, int(max_length) if max_length else None, similarity


def unsupported(where: Path, module_type: str, label: str, why: str) -> SpladeError:
    """The one-line error for a module splade cannot compute alike."""
    return SpladeError(f"{where}: module {module_type or '?'} ({label!r}) is not supported: {why}")


def _check_pooling(path: Path, config: dict[str, Any]) -> None:
    strategy = config.get("pooling_strategy", "max")
    activation = config.get("activation_function", "relu")
    if strategy != "max":
        raise SpladeError(f"{path}: pooling_strategy {strategy!r} is not supported (splade max-pools)")
    if activation != "relu":
        raise SpladeError(f"{path}: activation_function {activation!r} is not supported (splade computes "
                          "log(1 + ReLU), sentence-transformers' 'relu')")


def read_router(folder: Path, router: dict[str, Any], rest: list[dict[str, Any]],
                modules_path: Path) -> SentenceTransformersSplade:
    """An inference-free folder: the router's document route is the SPLADE chain, its query route one
    SparseStaticEmbedding; after the router only Normalize may follow."""
    label = str(router.get("path", ""))
    base = folder / label
    config_path = base / ROUTER_CONFIG_NAME
    config = read_json(config_path) or read_json(base / "config.json")  # the older Asym's file name
    types, structure = config.get("types"), config.get("structure")
    if not isinstance(types, dict) or not isinstance(structure, dict):
        raise unsupported(modules_path, str(router.get("type", "")), label,
                          f"{config_path} names no routes")
    query, document = structure.get("query"), structure.get("document")
    if not query or not document or set(structure) != {"query", "document"}:
        raise SpladeError(f"{config_path}: splade reads a router of a query and a document route, "
                          f"not {sorted(structure)}")
    chain = [(str(types.get(name, "")), base / name, name) for name in document]
    backbone, max_length, similarity = read_chain(chain, config_path)
    if similarity == "cosine":
        raise SpladeError(f"{config_path}: a Normalize module in the document route only is not supported "
                          "(splade normalises queries and documents alike)")
    query_types = [str(types.get(name, "")) for name in query]
    if len(query) != 1 or not query_types[0].endswith(".SparseStaticEmbedding"):
        raise SpladeError(f"{config_path}: the query route must be one SparseStaticEmbedding "
                          f"(an inference-free model), not {query_types}")
    for module in rest:
        module_type = str(module.get("type", ""))
        if module_type.rsplit(".", 1)[-1] != "Normalize":
            raise unsupported(modules_path, module_type, str(module.get("path", "")),
                              "after a Router splade reads only Normalize")
        similarity = "cosine"
    query_dir = base / query[0]
    limit = read_json(query_dir / "tokenizer_config.json").get("model_max_length")
    query_tokens = int(limit) if isinstance(limit, int | float) and 0 < limit < UNLIMITED else None
    return SentenceTransformersSplade(backbone, max_length, similarity, query_dir, query_tokens)
