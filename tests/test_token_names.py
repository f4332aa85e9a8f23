"""Token naming shared with OpenSearch ML Commons, on a SentencePiece-style vocabulary.

`▁치료` and `치료` both decode to `치료`, and the model's output layer is wider than the tokenizer (a padded
vocabulary): the encoder, the OpenSearch documents, the ML Commons package and `idf.json` must agree.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from splade.encoders.torch_backend import TorchEncoder
from splade.export.opensearch_package import build_ml_commons_package, compute_idf
from splade.indexer.queries import token_weights
from splade.model import SpladeModel
from splade.tokens import token_names

PIECES = ["▁치료", "치료", "▁당뇨병", "당뇨병", "▁방법", "▁diabetes", "diabetes", "▁care", "▁", "은", "는",
          "a.b"]
TEXTS = ["당뇨병 치료 방법", "diabetes care", "치료는 방법은", "당뇨병은 diabetes"]
PADDING = 7  # extra output rows past the tokenizer


def _metaspace_tokenizer() -> PreTrainedTokenizerFast:
    vocab = [("<pad>", 0.0), ("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)] + [(p, -1.0) for p in PIECES]
    tok = Tokenizer(models.Unigram(vocab, unk_id=1, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                       special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>")


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sp_model")
    tokenizer = _metaspace_tokenizer()
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer) + PADDING, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, pad_token_id=0)
    mlm = BertForMaskedLM(config)
    with torch.no_grad():  # make every real token active somewhere, so duplicates collide for real
        mlm.cls.predictions.bias.add_(2.0)
    SpladeModel(mlm, tokenizer, max_length=32).save_pretrained(out)
    return out


def _ml_commons_decode(output: np.ndarray, tokenizer) -> list[dict[str, float]]:
    """What ML Commons' sparse translator does with a model output: decode each non-zero id alone."""
    rows = []
    for row in output:
        tokens: dict[str, float] = {}
        for i in np.flatnonzero(row):
            name = tokenizer.backend_tokenizer.decode([int(i)], skip_special_tokens=True)
            if name:
                tokens[name] = float(row[i])
        rows.append(tokens)
    return rows


def test_names_are_ml_commons_decodings(sentencepiece_model: Path) -> None:
    encoder = TorchEncoder(sentencepiece_model, device="cpu")
    tokenizer = encoder.tokenizer
    assert encoder.vocab_size == len(tokenizer) + PADDING
    names = encoder.id_to_token
    assert len(names) == encoder.vocab_size
    ids = tokenizer.convert_tokens_to_ids(["▁치료", "치료"])
    assert names[ids[0]] == names[ids[1]] == "치료"
    assert names[tokenizer.convert_tokens_to_ids("a.b")] == "a.b"
    assert all(names[i] == "" for i in tokenizer.all_special_ids)
    assert names[len(tokenizer):] == [""] * PADDING
    batch = encoder.encode(TEXTS)
    assert batch.vocab_size == encoder.vocab_size
    assert all(int(i) < len(tokenizer) for ids, _ in batch.rows() for i in ids)  # padded ids never active


def test_opensearch_documents_equal_what_ml_commons_ingests(sentencepiece_model: Path,
                                                            tmp_path: Path) -> None:
    encoder = TorchEncoder(sentencepiece_model, device="cpu")
    package = build_ml_commons_package(sentencepiece_model, tmp_path / "pkg", name="sp")
    traced = torch.jit.load(io.BytesIO(zipfile.ZipFile(package).read("sp.pt")))
    ours = encoder.encode(TEXTS)
    merged_a_duplicate = False
    for text, (ids, weights) in zip(TEXTS, ours.rows(), strict=True):
        batch = dict(encoder.tokenizer([text], return_tensors="pt", return_token_type_ids=False))
        with torch.no_grad():
            output = traced(batch)["output"]
        ml_commons = _ml_commons_decode(output.numpy(), encoder.tokenizer)[0]
        indexed = token_weights(ids, weights, encoder.id_to_token)
        indexed = {key.replace("\u2024", "."): weight for key, weight in indexed.items()}
        assert indexed.keys() == ml_commons.keys()
        for token, weight in indexed.items():
            assert weight == pytest.approx(ml_commons[token], rel=1e-5, abs=1e-6)
        both = {encoder.tokenizer.convert_tokens_to_ids(p) for p in ("▁치료", "치료")}
        merged_a_duplicate |= both <= set(ids.tolist())
    assert merged_a_duplicate  # the check above really saw two ids with one name


def test_idf_keys_are_the_decoded_strings(sentencepiece_model: Path) -> None:
    tokenizer = SpladeModel.from_pretrained(sentencepiece_model).tokenizer
    idf = compute_idf(tokenizer, TEXTS, max_length=32)
    assert "치료" in idf and "▁치료" not in idf
    assert set(idf) <= set(token_names(tokenizer, len(tokenizer))) - {""}
    # "치료" occurs in 2 of 4 texts (as ▁치료 once and 치료 once): counted per document, not per id
    assert idf["치료"] == pytest.approx(np.log(1 + (4 - 2 + 0.5) / (2 + 0.5)), abs=1e-6)
