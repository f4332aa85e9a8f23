"""The sentence-transformers layout of an inference-free ("doc-only") model: a `Router` of two routes.

    modules.json                        [Router] (+ Normalize for a cosine model)
    router_config.json                  query -> query_0_SparseStaticEmbedding,
                                        document -> document_0_MLMTransformer, document_1_SpladePooling
    query_0_SparseStaticEmbedding/      the query weight table (`weight`, [vocab]) and the tokenizer
    document_0_MLMTransformer/          the masked LM: weights, config, tokenizer, max length
    document_1_SpladePooling/           max pooling of log(1 + ReLU)

splade saves its own files (`splade_config.json`, `idf.json`, the tokenizer) at the folder's root and
reads the masked LM from `document_0_MLMTransformer/`, so the weights are stored once.
`SparseStaticEmbedding` tokenizes a query without special tokens and truncates it at its tokenizer's
`model_max_length`: that is the query length less the special tokens splade counts in it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from splade.atomic import write_json
from splade.model.backbone import save_tokenizer
from splade.model.st_format import (
    DOCUMENT_DIR,
    DOCUMENT_POOLING_DIR,
    MLM_TYPE,
    MODULES_NAME,
    NORMALIZE_TYPE,
    POOLING_TYPE,
    QUERY_DIR,
    ROUTER_CONFIG_NAME,
    ROUTER_NORMALIZE_DIR,
    ROUTER_TYPE,
    STATIC_TYPE,
    read_json,
    remove_module_files,
    write_pooling_config,
    write_st_config,
    write_transformer_config,
)

ROOT_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "pytorch_model.bin",
                    "model.safetensors.index.json", "pytorch_model.bin.index.json")


def weights_folder(directory: Path, inference_free: bool) -> Path:
    """Where the masked LM is saved: `document_0_MLMTransformer/` for an inference-free model, else the
    folder itself. The other layout's copy is removed, so a re-saved folder never holds two."""
    if inference_free:
        for name in ROOT_MODEL_FILES:
            (directory / name).unlink(missing_ok=True)
        for pattern in ("model-*-of-*.safetensors", "pytorch_model-*-of-*.bin"):
            for shard in directory.glob(pattern):
                shard.unlink()
        return directory / DOCUMENT_DIR
    shutil.rmtree(directory / DOCUMENT_DIR, ignore_errors=True)
    return directory


def write_router_files(directory: Path, tokenizer: PreTrainedTokenizerBase, table: Tensor, doc_length: int,
                       query_length: int, similarity: str, frozen: bool) -> bool:
    """Write the router's files around the masked LM already saved in `document_0_MLMTransformer/`, so
    `SparseEncoder(directory)` encodes queries and documents as splade does. False (and no module files)
    when sentence-transformers cannot: its query table is exactly as wide as the tokenizer."""
    remove_module_files(directory)
    width = len(tokenizer.get_vocab())
    if int(table.shape[0]) != width:
        return False
    modules: list[dict[str, Any]] = [{"idx": 0, "name": "0", "path": "", "type": ROUTER_TYPE}]
    if similarity == "cosine":
        modules.append({"idx": 1, "name": "1", "path": ROUTER_NORMALIZE_DIR, "type": NORMALIZE_TYPE})
        (directory / ROUTER_NORMALIZE_DIR).mkdir()
    write_json(directory / MODULES_NAME, modules)
    write_json(directory / ROUTER_CONFIG_NAME, {
        "types": {QUERY_DIR: STATIC_TYPE, DOCUMENT_DIR: MLM_TYPE, DOCUMENT_POOLING_DIR: POOLING_TYPE},
        "structure": {"query": [QUERY_DIR], "document": [DOCUMENT_DIR, DOCUMENT_POOLING_DIR]},
        "parameters": {"default_route": "document", "allow_empty_key": True},  # what 5.0 takes too
    })
    write_transformer_config(directory / DOCUMENT_DIR, doc_length)
    write_pooling_config(directory / DOCUMENT_POOLING_DIR, width)
    _write_query_module(directory / QUERY_DIR, tokenizer, table, query_length, frozen)
    write_st_config(directory, similarity)
    return True


def _write_query_module(folder: Path, tokenizer: PreTrainedTokenizerBase, table: Tensor, query_length: int,
                        frozen: bool) -> None:
    """SparseStaticEmbedding's folder: `config.json`, the `weight` table and a tokenizer that truncates a
    query (tokenized without special tokens) where splade does."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", {"frozen": frozen})
    weight = table.detach().float().cpu().clamp_min(0.0)  # as splade serves it: never negative, and zero
    weight[[i for i in tokenizer.all_special_ids if 0 <= i < len(weight)]] = 0.0  # on special tokens
    save_file({"weight": weight.contiguous()}, str(folder / "model.safetensors"))
    save_tokenizer(tokenizer, folder)
    config_path = folder / "tokenizer_config.json"
    keep = max(1, query_length - tokenizer.num_special_tokens_to_add(pair=False))
    write_json(config_path, {**read_json(config_path), "model_max_length": keep})
