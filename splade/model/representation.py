"""The SPLADE representation: `max_i log(1 + ReLU(W h_i + b))` over a text's kept positions, `[batch, vocab]`.

`SpladeModel` is the one implementation every stage uses: training (with the pooling variant that is
fastest on its device), the PyTorch encoder, and the ONNX and TorchScript exports (`pooling="export"`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from splade.atomic import ordinary_modes
from splade.model.artifact import (
    FLOOR_SCOPES,
    LEXICAL_FLOOR_NAME,
    FloorScope,
    Similarity,
    SpladeArtifact,
    vocabulary_hash,
    weights_fingerprint,
)
from splade.model.backbone import (
    attached_decoder,
    detach_decoder,
    load_backbone,
    quiet_transformers,
    save_tokenizer,
    silenced_ids,
    special_token_ids,
    token_limit,
)
from splade.model.pooling import POOL_FUNCTIONS, plain_pool
from splade.model.query_weights import (
    query_length,
    read_query_weights,
    read_static_weights,
    read_token_weights,
    write_query_weights,
    write_token_weights,
)
from splade.model.st_format import DOCUMENT_DIR, read_module_files, remove_module_files, write_module_files
from splade.model.st_router import weights_folder, write_router_files
from splade.model.term_weights import (
    TermSaturation,
    bag_of_tokens,
    document_expansion_ratio,
    scale_expansion,
    term_scales,
)


class SpladeModel(nn.Module):
    """An MLM backbone whose vocabulary projection is max-pooled over positions and activated."""

    def __init__(
        self,
        mlm: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 128,
        expansion_weight: float = 1.0,
        similarity: Similarity = "dot",
        query_max_length: int | None = None,
    ) -> None:
        super().__init__()
        width = int(mlm.get_output_embeddings().weight.shape[0])
        self.mlm = mlm
        self.decoder = detach_decoder(mlm)
        self.tokenizer = tokenizer
        self.max_length = max_length  # documents (and queries of a model without `query_max_length`)
        self.query_max_length = query_max_length or max_length
        # terms a text does not contain weigh this much against its own tokens (1: plain SPLADE)
        self.expansion_weight = expansion_weight
        # served documents' expansion terms weigh this instead (None: expansion_weight, as trained)
        self.doc_expansion_weight: float | None = None
        # BM25's term-frequency saturation and length normalisation of every term (None: off)
        self.term_saturation: TermSaturation | None = None
        self.similarity = similarity
        self.head_built = False  # the backbone came without an MLM head (`from_pretrained` sets it)
        # inference-free ("doc-only") models weigh a query's own tokens by this table instead of encoding it
        self.query_weights: nn.Parameter | None = None
        # the lexical floor (`set_lexical_floor`): a fixed weight per token that a text's own tokens carry
        # whatever the encoder says, and the share of the encoder's weights added on top (None: off)
        self.register_buffer("lexical_floor", None, persistent=False)
        self.floor_share = 0.0
        self.floor_scope: FloorScope = "own"  # the terms whose encoder weights count `1 - floor_share`
        keep = torch.ones(width)
        keep[[i for i in special_token_ids(tokenizer) if i < width]] = 0.0
        keep[len(tokenizer) :] = 0.0  # a vocabulary padded past the tokenizer: those ids name no token
        self.register_buffer("vocab_keep", keep, persistent=False)

    @property
    def decoder_untied(self) -> bool:
        """The vocabulary projection has rows of its own (not the input embeddings)."""
        embeddings = self.mlm.get_input_embeddings().weight
        return self.decoder is not None and self.decoder.weight is not embeddings

    def untie_decoder(self) -> None:
        """Give the vocabulary projection rows of its own (a start that rescales them needs it)."""
        if self.decoder is not None and not self.decoder_untied:
            self.decoder.weight = nn.Parameter(self.decoder.weight.detach().clone())

    @property
    def inference_free(self) -> bool:
        """Queries are weighted by `query_weights` (no forward pass)."""
        return self.query_weights is not None

    def set_query_weights(self, weights: Tensor, trainable: bool = False) -> None:
        """Make the model inference-free: a query's vector is its own tokens' `weights` (`[vocab]`)."""
        table = weights.detach().float().to(self.vocab_keep.device) * self.vocab_keep
        self.query_weights = nn.Parameter(table.clamp_min(0.0), requires_grad=trainable)

    def set_lexical_floor(
        self, weights: Tensor | None, share: float = 0.0, scope: FloorScope = "own"
    ) -> None:
        """Give a text's own tokens at least `weights` (`[vocab]`, fixed), which are `share` of their start
        weights: the encoder's weights on those tokens then count `1 - share` on top, and its expansion
        terms count in full (`scope="own"`; `"all"`, older models: expansion counts `1 - share` too). None:
        no floor. The encoder keeps the scale it was calibrated to, so training moves it as fast as
        without a floor."""
        keep = self.vocab_keep
        if weights is None:
            self.lexical_floor, self.floor_share = None, 0.0
            return
        if not 0.0 < share < 1.0:
            raise ValueError(f"lexical floor share {share} is not in (0, 1)")
        if scope not in FLOOR_SCOPES:
            raise ValueError(f"lexical floor scope {scope!r} is not one of {', '.join(FLOOR_SCOPES)}")
        self.lexical_floor = weights.detach().float().to(keep.device).clamp_min(0) * keep
        self.floor_share, self.floor_scope = float(share), scope

    @property
    def vocab_size(self) -> int:
        """Width of the representation (the output layer, which may exceed the tokenizer)."""
        return int(self.vocab_keep.shape[0])

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pooling: str = "plain") -> Tensor:
        """`[batch, vocab]` non-negative term weights; `pooling` picks the implementation (same values)."""
        hidden = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        if self.decoder is None:  # a head we cannot split: `hidden` are the logits
            pooled = plain_pool(hidden, attention_mask, None, None)
        else:
            pooled = POOL_FUNCTIONS[pooling](hidden, attention_mask, self.decoder.weight, self.decoder.bias)
        # log(1 + ReLU) is monotone, so it commutes with the max: applied to [batch, vocab] only
        reps = torch.log1p(torch.relu(pooled)) * self.vocab_keep.to(pooled.dtype)
        scale, offset = self.term_affine(input_ids, attention_mask)
        if scale is not None:
            reps = reps * scale.to(reps.dtype)
        return reps if offset is None else reps + offset.to(reps.dtype)

    def term_affine(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """`[batch, vocab]` `(scale, offset)` that turn the encoder's activations `a` into the served weights
        `a · scale + offset` (None: 1, 0). The expansion weight and BM25's term-frequency part
        (`splade.model.term_weights`) multiply every term; a lexical floor weighs the encoder's activations
        on a text's own tokens (every term, scope `all`) `1 - share` and adds its weights to them (times
        the same term-frequency part)."""
        scales = term_scales(
            input_ids, attention_mask, self.vocab_keep, self.expansion_weight, self.term_saturation
        )
        if self.lexical_floor is None:
            return scales, None
        own = bag_of_tokens(input_ids, attention_mask, self.vocab_size)
        floor = own * self.lexical_floor
        if self.floor_scope == "own":
            encoder_share = 1.0 - self.floor_share * own
        else:
            encoder_share = torch.full_like(floor, 1.0 - self.floor_share)
        if scales is None:
            return encoder_share, floor
        return encoder_share * scales, floor * scales

    def encode_query_ids(self, input_ids: Tensor, attention_mask: Tensor, pooling: str = "plain") -> Tensor:
        """`[batch, vocab]` query vectors: the table's weights of the query's own tokens for an
        inference-free model, else the same forward as documents."""
        if self.query_weights is None:
            return self(input_ids, attention_mask, pooling=pooling)
        bag = bag_of_tokens(input_ids, attention_mask, self.vocab_size)
        return bag * self.query_weights.clamp_min(0.0)

    @property
    def document_expansion_ratio(self) -> float | None:
        """What a served document's expansion terms are multiplied by (None: served as trained)."""
        return document_expansion_ratio(self.expansion_weight, self.doc_expansion_weight, self.inference_free)

    def encode_document_ids(
        self, input_ids: Tensor, attention_mask: Tensor, pooling: str = "plain"
    ) -> Tensor:
        """`[batch, vocab]` document vectors as served: the forward, expansion at `doc_expansion_weight`.
        Training scores documents with the forward itself."""
        reps = self(input_ids, attention_mask, pooling=pooling)
        ratio = self.document_expansion_ratio
        return reps if ratio is None else scale_expansion(reps, input_ids, attention_mask, ratio)

    def term_logits(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """`[batch, seq, vocab]` MLM logits (for inspection and tests; the forward never builds them)."""
        hidden = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        return hidden if self.decoder is None else self.decoder(hidden)

    def tokenize(self, texts: list[str], max_length: int | None = None) -> dict[str, Tensor]:
        """Tokenize texts into padded `input_ids` / `attention_mask` tensors."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )

    @torch.no_grad()
    def encode(self, texts: list[str], max_length: int | None = None) -> Tensor:
        """Dense `[batch, vocab]` representation of `texts` (inference helper)."""
        batch = self.tokenize(texts, max_length)
        device = self.vocab_keep.device
        return self(batch["input_ids"].to(device), batch["attention_mask"].to(device))

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        max_length: int = 128,
        dropout: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SpladeModel:
        """Load any masked-LM backbone by hub id or path. A splade folder's `splade_config.json` sets the
        max length, expansion and similarity it was trained with; a SPLADE folder sentence-transformers
        trained is read through its module files (masked LM at the root or in a subfolder, max length,
        similarity, and an inference-free router's query table)."""
        folder = Path(name_or_path)
        artifact = SpladeArtifact.read(folder) if folder.is_dir() else None
        st_model = read_module_files(folder) if folder.is_dir() and artifact is None else None
        source = artifact.backbone_in(folder) if artifact else st_model.backbone if st_model else name_or_path
        mlm, tokenizer, head_built = load_backbone(source, dropout, dtype)
        if artifact is not None:
            model = cls(
                mlm,
                tokenizer,
                max_length=artifact.doc_length,
                expansion_weight=artifact.expansion_weight,
                similarity=artifact.similarity,
                query_max_length=artifact.query_length,
            )
            model.term_saturation = artifact.term_saturation
            model.doc_expansion_weight = artifact.doc_expansion_weight
            if artifact.query_encoder == "idf":
                model.set_query_weights(read_query_weights(folder, tokenizer, model.vocab_size))
            if artifact.lexical_floor:
                floor = read_token_weights(folder, LEXICAL_FLOOR_NAME, tokenizer, model.vocab_size)
                model.set_lexical_floor(floor, artifact.lexical_floor, artifact.lexical_floor_scope)
        elif st_model is not None:
            model = cls(
                mlm,
                tokenizer,
                max_length=st_model.max_length or token_limit(tokenizer, mlm),
                similarity=st_model.similarity,
                query_max_length=query_length(st_model.query_tokens, tokenizer),
            )  # type: ignore[arg-type]
            if st_model.query_table is not None:
                model.set_query_weights(read_static_weights(st_model.query_table, model.vocab_size))
        else:
            model = cls(mlm, tokenizer, max_length=max_length)
        model.head_built = head_built
        return model

    def artifact(self, model_id: str | None = None) -> SpladeArtifact:
        """This model's `splade_config.json`."""
        return SpladeArtifact(
            model_id=model_id,
            max_length=self.max_length,
            query_max_length=self.query_max_length,
            doc_max_length=self.max_length,
            query_encoder="idf" if self.inference_free else "model",
            backbone_path=DOCUMENT_DIR if self.inference_free else None,
            expansion_weight=self.expansion_weight,
            doc_expansion_weight=self.doc_expansion_weight if self.document_expansion_ratio else None,
            bm25=self.term_saturation.as_json() if self.term_saturation else None,
            lexical_floor=self.floor_share,
            lexical_floor_scope=self.floor_scope,
            similarity=self.similarity,
            vocab_size=self.vocab_size,
            vocab_hash=vocabulary_hash(self.tokenizer),
            special_token_ids=special_token_ids(self.tokenizer),
        )

    def save_pretrained(self, directory: str | Path, model_id: str | None = None) -> None:
        """Save backbone, tokenizer, `splade_config.json` and sentence-transformers' module files, so any
        stage, and `SparseEncoder(directory)`, loads it by path. `model_id` (default: a fingerprint of
        the saved weights) is what indexes record as the model.

        Ids the model never activates (special tokens, a padded vocabulary) are saved with a decoder bias
        that keeps them at zero, so sentence-transformers, which applies no vocabulary mask, gives the
        same vectors. A model it cannot reproduce (expansion weighed below own tokens, or no decoder
        bias, BM25 term weighting, a lexical floor) gets no module files.
        An inference-free model keeps its masked LM in the subfolder its sentence-transformers router
        names (`st_router`), once.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        quiet_transformers()
        silent = (self.vocab_keep == 0).nonzero().squeeze(1).to(self.vocab_keep.device)
        self.mlm.config.tie_word_embeddings = not self.decoder_untied
        weights = weights_folder(directory, self.inference_free)
        with attached_decoder(self.mlm, self.decoder) as mlm, silenced_ids(self.decoder, silent) as silenced:
            mlm.save_pretrained(weights)
        ordinary_modes([*weights.glob("*.safetensors"), *weights.glob("*.bin")])  # written privately
        save_tokenizer(self.tokenizer, directory)
        if weights != directory:
            save_tokenizer(self.tokenizer, weights)
        if self.query_weights is not None:
            write_query_weights(directory, self.tokenizer, self.query_weights.detach())
        if self.lexical_floor is not None:
            write_token_weights(directory, LEXICAL_FLOOR_NAME, self.tokenizer, self.lexical_floor)
        self.artifact(model_id or self._default_model_id(weights)).write(directory)
        plain = (self.expansion_weight == 1.0 and self.term_saturation is None and self.lexical_floor is None
                 and self.document_expansion_ratio is None)
        if not (silenced and plain):
            remove_module_files(directory)
        elif self.query_weights is not None:
            write_router_files(
                directory,
                self.tokenizer,
                self.query_weights.detach(),
                self.max_length,
                self.query_max_length,
                self.similarity,
                not self.query_weights.requires_grad,
            )
        else:
            write_module_files(directory, self.max_length, self.vocab_size, self.similarity)


    def _default_model_id(self, weights: Path) -> str:
        """A fingerprint of the saved weights, plus the document expansion weight they are served with
        (an index built at another weight holds other vectors)."""
        identity = f"splade-{weights_fingerprint(weights)}"
        if self.document_expansion_ratio is not None:
            identity += f"-doc-expansion-{self.doc_expansion_weight:g}"
        return identity


class ExportGraph(nn.Module):
    """`SpladeModel` with the export pooling as its forward: the module ONNX and TorchScript trace.
    `documents`: served document vectors (`encode_document_ids`), else the forward as trained (an ONNX
    encoder serves documents' expansion weight outside the graph)."""

    def __init__(self, model: SpladeModel, documents: bool = False) -> None:
        super().__init__()
        self.model = model
        self.documents = documents

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if self.documents:
            return self.model.encode_document_ids(input_ids, attention_mask, pooling="export")
        return self.model(input_ids, attention_mask, pooling="export")
