"""One Encoder interface, two backends: batching, pruning, token strings, provider selection, IO binding."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from splade.encoders import Encoder, load_encoder
from splade.encoders.onnx_backend import OnnxEncoder, pick_variant
from splade.encoders.providers import CPU, CUDA, TRT, provider_names, select_providers, uses_gpu
from splade.encoders.torch_backend import TorchEncoder
from splade.errors import SpladeError
from splade.sparse import SparseBatch

TEXTS = ["당뇨병 치료 방법", "diabetes mellitus treatment and prevention of complications in adults",
         "서울", "neural sparse retrieval model", "커피는 건강에 좋다 coffee is good for health"]


@pytest.fixture(scope="module")
def onnx_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from splade.config.export import ExportConfig
    from splade.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("enc") / "onnx"
    export_onnx(ExportConfig(checkpoint=tiny_model_dir, out=out, fp16=True))
    return out


# --- provider selection: decided by what onnxruntime.get_available_providers() reports ---------------

def test_cpu_only_install_uses_cpu():
    assert select_providers([CPU]) == [CPU]
    assert select_providers(["AzureExecutionProvider", CPU], "auto") == [CPU]


def test_cuda_install_prefers_cuda_then_cpu():
    chosen = select_providers([CUDA, CPU])
    assert provider_names(chosen) == [CUDA, CPU]
    assert chosen[0][1]["device_id"] == 0
    assert uses_gpu(provider_names(chosen))


def test_tensorrt_goes_first_when_present_with_engine_cache(tmp_path):
    chosen = select_providers([TRT, CUDA, CPU], "cuda:1", trt_cache_dir=tmp_path)
    assert provider_names(chosen) == [TRT, CUDA, CPU]
    assert chosen[0][1]["device_id"] == 1 and chosen[1][1]["device_id"] == 1
    assert chosen[0][1]["trt_engine_cache_path"] == str(tmp_path)
    assert provider_names(select_providers([TRT, CUDA, CPU], use_tensorrt=False)) == [CUDA, CPU]


def test_explicit_cpu_ignores_gpu_and_missing_gpu_is_an_error():
    assert select_providers([TRT, CUDA, CPU], "cpu") == [CPU]
    with pytest.raises(SpladeError, match="--device.*no CUDA provider"):
        select_providers([CPU], "cuda")
    with pytest.raises(SpladeError, match="--device"):
        select_providers([CUDA, CPU], "tpu")
    with pytest.raises(SpladeError, match="--device"):
        select_providers([CUDA, CPU], "cuda:x")


def test_uses_gpu_only_when_the_main_provider_is_a_gpu_one():
    assert not uses_gpu([CPU])
    assert not uses_gpu([])
    assert uses_gpu([TRT, CUDA, CPU])


def test_variant_choice(onnx_dir):
    assert pick_variant(onnx_dir, "auto", gpu=False).name == "model.onnx"
    assert pick_variant(onnx_dir, "auto", gpu=True).name == "model_fp16.onnx"
    with pytest.raises(SpladeError, match="--int8"):
        pick_variant(onnx_dir, "int8", gpu=False)
    with pytest.raises(SpladeError, match="--variant"):
        pick_variant(onnx_dir, "bf16", gpu=False)


# --- the Encoder interface ------------------------------------------------------------------------------

def test_load_encoder_picks_onnx_after_export_and_torch_for_checkpoints(onnx_dir, tiny_model_dir):
    onnx_encoder = load_encoder(onnx_dir)
    assert isinstance(onnx_encoder, OnnxEncoder)
    assert isinstance(load_encoder(onnx_dir / "model.onnx"), OnnxEncoder)
    assert isinstance(load_encoder(tiny_model_dir), TorchEncoder)
    with pytest.raises(SpladeError, match="--backend"):
        load_encoder(onnx_dir, backend="tensorflow")


def test_onnx_on_cpu_says_so_and_does_not_bind_io(onnx_dir):
    encoder = OnnxEncoder(onnx_dir, device="cpu")
    assert encoder.providers == [CPU]
    assert not encoder.use_io_binding
    assert "CPU" in encoder.device_description and "model.onnx" in encoder.device_description


def test_a_cuda_provider_that_cannot_start_falls_back_to_the_cpu_with_one_warning(onnx_dir, caplog):
    """This onnxruntime is a CPU build. Told that the CUDA provider is installed, the session starts
    without it, as on a machine where onnxruntime-gpu finds no usable GPU: the encoder warns in one line and
    runs the fp32 graph on the CPU (not the fp16 one meant for the GPU); asking for cuda is an error."""
    with caplog.at_level(logging.WARNING, logger="splade.encoders.onnx_backend"):
        encoder = OnnxEncoder(onnx_dir, available_providers=[CUDA, CPU])
    assert encoder.providers == [CPU] and not encoder.use_io_binding
    assert encoder.model_path.name == "model.onnx"
    [warning] = [r.getMessage() for r in caplog.records if r.name == "splade.encoders.onnx_backend"]
    assert "CUDA provider could not start" in warning and "encoding on the CPU" in warning
    assert "\n" not in warning
    expected = OnnxEncoder(onnx_dir, device="cpu").encode(TEXTS).to_dense()
    np.testing.assert_array_equal(encoder.encode(TEXTS).to_dense(), expected)
    with pytest.raises(SpladeError, match="^--device: cuda asked for, but onnxruntime's CUDA provider could "
                                          "not start"):
        OnnxEncoder(onnx_dir, device="cuda", available_providers=[CUDA, CPU])


def test_onnx_on_a_cpu_runs_long_batches_in_slices_with_the_same_vectors(onnx_dir, monkeypatch):
    """The graph's `[batch, seq, vocab]` logits stay under CPU_LOGITS_PER_RUN a run (ONNX Runtime's CPU arena
    keeps its peak): a batch runs in slices, and the vectors are those of whole batches."""
    from splade.encoders import onnx_backend

    encoder = OnnxEncoder(onnx_dir, device="cpu")
    whole = encoder.encode(TEXTS, batch_size=8).to_dense()
    seen: list[tuple[int, int]] = []
    run_cpu = encoder._run_cpu
    encoder._run_cpu = lambda ids, mask: seen.append(ids.shape) or run_cpu(ids, mask)
    longest = max(len(ids) for ids in encoder.text_tokenizer.encode(TEXTS, encoder.max_length))
    monkeypatch.setattr(onnx_backend, "CPU_LOGITS_PER_RUN", 2 * longest * encoder.vocab_size)
    sliced = encoder.encode(TEXTS, batch_size=8).to_dense()
    assert max(rows for rows, _ in seen) == 2 and sum(rows for rows, _ in seen) == len(TEXTS)
    np.testing.assert_allclose(sliced, whole, rtol=1e-5, atol=1e-6)


def test_encoding_a_corpus_whole_or_in_window_aligned_parts_gives_the_same_vectors(tiny_model_dir):
    """Texts are batched within windows of ENCODE_WINDOW: shards cut at whole windows encode bit for bit
    what one process encodes (the batches and their padding are the same)."""
    from splade.windows import ENCODE_WINDOW

    encoder = TorchEncoder(tiny_model_dir, device="cpu")
    texts = [f"{TEXTS[i % len(TEXTS)]} {' '.join(['서울'] * (i % 17))}" for i in range(ENCODE_WINDOW + 40)]
    whole = encoder.encode(texts, batch_size=64)
    parts = [encoder.encode(texts[:ENCODE_WINDOW], batch_size=64), encoder.encode(texts[ENCODE_WINDOW:],
                                                                                    batch_size=64)]
    for got, want in zip(SparseBatch.concat(parts).rows(), whole.rows(), strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_backends_agree_and_share_vocabulary(onnx_dir, tiny_model_dir):
    torch_encoder = TorchEncoder(tiny_model_dir, device="cpu")
    onnx_encoder = OnnxEncoder(onnx_dir, device="cpu")
    assert onnx_encoder.vocab_hash == torch_encoder.vocab_hash
    assert onnx_encoder.vocab_size == torch_encoder.vocab_size
    assert onnx_encoder.id_to_token == torch_encoder.id_to_token
    a = torch_encoder.encode(TEXTS, batch_size=2).to_dense()
    b = onnx_encoder.encode(TEXTS, batch_size=3).to_dense()
    assert np.abs(a - b).max() < 1e-4


def test_length_sorted_batching_keeps_input_order(tiny_model_dir):
    encoder = TorchEncoder(tiny_model_dir, device="cpu")
    one_by_one = np.concatenate([encoder.encode([t]).to_dense() for t in TEXTS])
    batched = encoder.encode(TEXTS, batch_size=4).to_dense()
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_top_k_and_threshold_pruning(onnx_dir):
    encoder: Encoder = load_encoder(onnx_dir)
    full = encoder.encode(TEXTS)
    pruned = encoder.encode(TEXTS, top_k=5)
    assert (pruned.active_counts() <= 5).all() and (full.active_counts() > 5).any()
    for r in range(len(TEXTS)):
        ids, weights = full.row(r)
        top = set(ids[np.argsort(-weights)[:5]].tolist())
        assert set(pruned.row(r)[0].tolist()) == top
    cut = float(np.median(full.values))
    assert (encoder.encode(TEXTS, threshold=cut).values > cut).all()
    assert len(encoder.encode([])) == 0


def test_token_strings(onnx_dir):
    encoder = load_encoder(onnx_dir)
    terms = encoder.encode(["diabetes treatment"], top_k=50).to_token_dicts(encoder.id_to_token)[0]
    assert terms and all(isinstance(t, str) and w > 0 for t, w in terms.items())
    assert "[CLS]" not in terms and "[PAD]" not in terms


def test_onnx_encoder_on_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(SpladeError, match="no exported model folder"):
        OnnxEncoder(tmp_path / "nope")
