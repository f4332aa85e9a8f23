"""Build a small SPLADE-ready BERT from scratch (no network): the embedded default and the test model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

from splade.model import SpladeModel

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 4000) -> PreTrainedTokenizerFast:
    """Train a WordPiece tokenizer; Hangul stays composed (no accent stripping), Latin is lower-cased.

    A piece inside a word has no `##` mark: the trainer numbers `##` pieces in hash-map order, which breaks
    ties between merges differently on every run, so the same texts gave a different vocabulary (and a
    different test model) each time. Without the mark the vocabulary is the same on every run; decoding
    then separates every piece with a space."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, min_frequency=1,
                                        continuing_subword_prefix="")
    tok.train_from_iterator(texts, trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512,
    )


def build_tiny_model(
    texts: Iterable[str],
    out_dir: str | Path | None = None,
    vocab_size: int = 4000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    max_length: int = 128,
    seed: int = 0,
    lexical_bias: float | None = None,
) -> SpladeModel:
    """A randomly initialised BERT masked LM over a WordPiece vocabulary trained on `texts`."""
    tokenizer = train_wordpiece(texts, vocab_size)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=hidden_size * 4, max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    mlm = BertForMaskedLM(config)
    if lexical_bias is not None:
        lexical_init(mlm, lexical_bias)
    model = SpladeModel(mlm, tokenizer, max_length=max_length).eval()
    if out_dir is not None:
        model.save_pretrained(out_dir)
    return model


def lexical_init(mlm: BertForMaskedLM, bias: float = -5.0, embedding_scale: float = 5.0) -> None:
    """Start a random BERT as a bag of its input tokens: each text activates exactly its own tokens.

    Every layer's residual branches (attention and feed-forward output projections) start at zero, so
    each position carries its own token embedding to the tied MLM decoder, whose transform starts as the
    identity; scaled-up embeddings make a token's logit for itself stand far above its logits for other
    tokens, and a negative decoder bias cuts those to zero. Training then learns expansion and weighting
    from there instead of from noise (a from-scratch model otherwise starts with thousands of random terms).
    """
    hidden = mlm.config.hidden_size
    with torch.no_grad():
        for layer in mlm.bert.encoder.layer:
            for projection in (layer.attention.output.dense, layer.output.dense):
                projection.weight.zero_()
                projection.bias.zero_()
        mlm.bert.embeddings.word_embeddings.weight.mul_(embedding_scale)
        transform = mlm.cls.predictions.transform
        transform.dense.weight.copy_(torch.eye(hidden))
        transform.dense.bias.zero_()
        mlm.cls.predictions.bias.fill_(bias)
