"""The model card: a `README.md` in every saved model folder, in the sentence-transformers style.

YAML front matter (the hub's metadata, plus a `splade:` block with what is known of the model: how it was
trained, its dev figures, how it was exported), then what the model is (backbone, lengths, scoring) and
how to use it with splade, with sentence-transformers' `SparseEncoder` and with OpenSearch. An export
carries over the `splade:` block of its checkpoint's card, so the figures travel with the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from splade.atomic import atomic_file
from splade.model.artifact import saved_expansion_weight

CARD_NAME = "README.md"
FRONT = "---\n"


def training_facts(config: Any, state: Any) -> dict[str, Any]:
    """What a card says of a training run: the config's settings and data, the steps done and the best
    evaluation (`config`: a `TrainConfig`; `state`: the trainer's state)."""
    data, t = config.data, config.training
    facts: dict[str, Any] = {
        "backbone": config.model.name,
        "config_version": config.version,
        "train_files": [str(p) for p in data.train_files],
        "val_files": [str(p) for p in data.val_files],
        "source_caps": dict(data.source_caps) or None,
        "max_length": data.max_length,
        "batch_size": data.batch_size,
        "epoch_size": data.epoch_size,
        "learning_rate": t.learning_rate,
        "epochs": t.num_epochs,
        "max_steps": t.max_steps,
        "steps_done": state.global_step,
        "similarity": config.loss.similarity,
        "distillation": config.loss.teacher.name if config.loss.teacher and config.loss.lambda_kd else None,
        "curriculum": [p.name or f"epochs {p.start_epoch}-{p.end_epoch}" for p in config.curriculum_phases],
        "dev_sets": [str(p) for p in config.dev.sets],
    }
    facts = {key: value for key, value in facts.items() if value not in (None, [], {})}
    dev: dict[str, Any] = {}
    if state.best_metric is not None and state.monitored:
        value = state.best_metric if state.monitored == "train/loss" else -state.best_metric
        dev = {state.monitored: round(float(value), 4), "step": state.best_step, "epoch": state.best_epoch}
    else:
        facts["weights"] = f"the last ones, step {state.global_step} (no evaluation selected a best model)"
    return {"training": facts, "dev": dev}


def read_card_facts(folder: str | Path) -> dict[str, Any]:
    """The `splade:` block of a folder's card ({} when it has no card or the card has none)."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith(FRONT):
        return {}
    front, sep, _ = text[len(FRONT):].partition(f"\n{FRONT}")
    try:
        meta = yaml.safe_load(front) if sep else None
    except yaml.YAMLError:
        return {}
    block = meta.get("splade") if isinstance(meta, dict) else None
    return block if isinstance(block, dict) else {}


def write_model_card(folder: str | Path, facts: dict[str, Any] | None = None,
                     source: str | Path | None = None, name: str | None = None) -> Path:
    """Write `folder/README.md` for the model saved there. `facts`: {"training": ..., "dev": ...,
    "export": ...}, what is known; `source`: the folder it was made from (its card's facts carry over)."""
    folder = Path(folder)
    merged = dict(read_card_facts(source)) if source is not None else {}
    merged.update({key: value for key, value in (facts or {}).items() if value})
    config = _read_json(folder / "splade_config.json")
    backbone = _read_json(folder / (config.get("backbone_path") or "") / "config.json")
    title = name or (Path(source).name if source is not None else folder.name)
    meta = {"language": ["ko", "en"], "library_name": "sentence-transformers",
            "pipeline_tag": "feature-extraction",
            "tags": ["sentence-transformers", "sparse-encoder", "sparse", "splade", "neural-sparse"],
            "splade": {"model_id": config.get("model_id"), **merged}}
    text = FRONT + yaml.safe_dump(meta, allow_unicode=True, sort_keys=False) + FRONT
    text += "\n".join([f"# {title}", "", _summary(config, backbone), "", *_details(config, backbone, merged),
                       *_usage(folder, config), ""])
    target = folder / CARD_NAME
    with atomic_file(target) as handle:
        handle.write(text)
    return target


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _summary(config: dict[str, Any], backbone: dict[str, Any]) -> str:
    kind = backbone.get("model_type", "transformer")
    return (f"A SPLADE neural sparse retrieval model for Korean and Korean-English search, on a {kind} "
            f"backbone: each text becomes a weighted bag of vocabulary tokens "
            f"({config.get('vocab_size', '?')} dimensions), scored by "
            f"{'cosine' if config.get('similarity') == 'cosine' else 'dot product'}.")


def _expansion(config: dict[str, Any]) -> str:
    weight = float(saved_expansion_weight(config))
    if weight == 0.0:
        return "no (a text's own tokens only)"
    text = "yes" if weight == 1.0 else f"yes, weighed {weight:g} against a text's own tokens"
    doc_weight = config.get("doc_expansion_weight")
    return text if doc_weight is None else f"{text} (documents served at {float(doc_weight):g})"


def _term_weighting(config: dict[str, Any]) -> str | None:
    bm25 = config.get("bm25")
    if not isinstance(bm25, dict):
        return None
    return (f"BM25's term-frequency part: k1 {bm25.get('k1')}, b {bm25.get('b')}, average document length "
            f"{bm25.get('average_length', 0):.1f} tokens")


def _lexical_floor(config: dict[str, Any]) -> str | None:
    share = config.get("lexical_floor")
    if not share:
        return None
    scaled = "on them" if config.get("lexical_floor_scope") == "own" else "on every term"
    return (f"own tokens carry at least `lexical_floor.json`'s weights, {share} of their start weights; "
            f"the encoder's weights {scaled} count {1 - share:g} on top")


def _details(config: dict[str, Any], backbone: dict[str, Any], facts: dict[str, Any]) -> list[str]:
    rows = [("model id (what indexes record)", config.get("model_id")),
            ("max sequence length", config.get("max_length")),
            ("backbone max positions", backbone.get("max_position_embeddings")),
            ("output dimensions", config.get("vocab_size")),
            ("pooling / activation",
             f"{config.get('pooling', 'max')} / {config.get('activation', 'log1p_relu')}"),
            ("expansion", _expansion(config)),
            ("term weighting", _term_weighting(config)),
            ("lexical floor", _lexical_floor(config)),
            ("similarity", config.get("similarity", "dot"))]
    if config.get("query_encoder") == "idf":
        rows.insert(2, ("queries", "inference-free: their own tokens weighed by `idf.json` (no forward), "
                                   f"cut at {config.get('query_max_length')} tokens"))
    lines = ["## Model details", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in rows if value is not None]
    if config.get("onnx"):
        onnx = config["onnx"]
        lines.append(f"| ONNX | exported from `{onnx.get('source')}` ({onnx.get('exporter')}, opset "
                     f"{onnx.get('opset')}) |")
    lines += ["", "## Training", ""]
    training = facts.get("training") or {}
    if training:
        lines += ["| | |", "|---|---|"] + [f"| {key.replace('_', ' ')} | {_cell(value)} |"
                                           for key, value in training.items()]
    else:
        lines.append("Not recorded (the folder was not written by `splade train`).")
    lines += ["", "## Dev figures", ""]
    dev = facts.get("dev") or {}
    if dev:
        lines += ["| | |", "|---|---|"] + [f"| {key} | {_cell(value)} |" for key, value in dev.items()]
        lines += ["", "The best evaluation of the run, the one `best_model` holds; `splade eval` measures a "
                      "model against BM25 and dense retrieval on any BEIR set."]
    else:
        lines.append("Not measured during training; `splade eval --splade FOLDER --dataset BEIR_FOLDER` "
                     "measures it.")
    export = facts.get("export") or {}
    if export:
        lines += ["", "## Export", "", "| | |", "|---|---|"]
        lines += [f"| {key.replace('_', ' ')} | {_cell(value)} |" for key, value in export.items()]
    return lines + [""]


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(f"`{v}`" for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value).replace("|", "\\|")


def _usage(folder: Path, config: dict[str, Any]) -> list[str]:
    has_st = (folder / "modules.json").is_file()
    onnx = (folder / "model.onnx").is_file()
    lines = ["## Usage", "", "### splade", "", "```bash",
             'splade encode --model MODEL_FOLDER "당뇨병 치료 방법"            # the top terms',
             "splade index  --model MODEL_FOLDER --corpus data/beir/korquad --index korquad.idx",
             'splade search --model MODEL_FOLDER --index korquad.idx "서울의 인구는?"',
             "splade search --model MODEL_FOLDER --index korquad.idx --queries queries.tsv --output run.trec",
             "splade encode --model MODEL_FOLDER --input corpus.jsonl --output vectors.jsonl  # pyserini"]
    if not onnx:
        lines.append("splade export MODEL_FOLDER --out MODEL_FOLDER-onnx --int8     # ONNX for serving")
    lines += ["```", "", "### sentence-transformers (5 or later)", ""]
    if has_st:
        lines += ["```python", "from sentence_transformers import SparseEncoder", "",
                  'model = SparseEncoder("MODEL_FOLDER")',
                  'queries = model.encode_query(["당뇨병 치료 방법"])',
                  'docs = model.encode_document(["제1형 당뇨병은 인슐린 치료가 필요하다"])',
                  "print(model.similarity(queries, docs))", "print(model.decode(queries, top_k=10))", "```"]
    else:
        lines.append("This model has no sentence-transformers module files (it cannot be reproduced there: "
                     "no expansion or no decoder bias); use splade's encoders.")
    lines += ["", "### OpenSearch", ""]
    if (folder / "opensearch").is_dir():
        lines.append("`opensearch/` holds an ML Commons `SPARSE_ENCODING` package and its "
                     "`register_model.json`: register, deploy, then search with `neural_sparse` and "
                     "`query_text`.")
    else:
        lines.append("`splade export MODEL_FOLDER --out OUT --opensearch-package` builds an ML Commons "
                     "`SPARSE_ENCODING` package.")
    if config.get("query_encoder") == "idf":
        lines.append("Queries need no model: `--sparse-tokenize` builds the `SPARSE_TOKENIZE` package of the "
                     "query table (`opensearch-tokenizer/`), for `neural_sparse` with its model id.")
    lines += ["An index built with `splade index --backend opensearch` holds `rank_features`; queries can be "
              "encoded outside the cluster and sent as `query_tokens`:", "", "```bash",
              "splade encode --model MODEL_FOLDER --input queries.tsv --queries --format opensearch "
              "--output tokens.jsonl",
              "```", "",
              f"Texts are cut at {config.get('max_length', '?')} tokens, the length the model was trained "
              "with."]
    return lines
