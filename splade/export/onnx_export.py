"""`splade export`: a SPLADE checkpoint -> an ONNX graph of the whole representation, checked for parity.

The graph takes `input_ids`, `attention_mask` (int64, dynamic batch and sequence axes) and returns
`output` `[batch, vocab]`: the MLM logits, `log(1 + ReLU)`, the masked max pool and the special-token
mask are all inside it. Variants: `model.onnx` (fp32, fused by the ONNX Runtime transformer optimizer),
`model_fp16.onnx` (GPU) and `model_int8.onnx` (dynamic int8 quantization, CPU). The folder also holds the
model as `save_pretrained` writes it (weights, tokenizer, sentence-transformers module files), so
`SparseEncoder(folder)` and the PyTorch encoder load it too.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
import torch

from splade.atomic import atomic_dir, refuse_foreign_dir, write_json
from splade.config.export import ExportConfig, Exporter
from splade.errors import SpladeError, at_option, first_line
from splade.export.parity import (
    DEFAULT_TOLERANCES,
    ParityResult,
    Tolerance,
    check_parity,
    load_parity_texts,
    parity_batches,
)
from splade.model import (
    ONNX_INPUT_NAMES,
    ONNX_OUTPUT_NAME,
    ONNX_VARIANT_FILES,
    ExportGraph,
    SpladeModel,
    model_identity,
)
from splade.model.card import write_model_card

log = logging.getLogger(__name__)

INPUT_NAMES = list(ONNX_INPUT_NAMES)
EXPORTERS = get_args(Exporter)


def load_for_export(checkpoint: str | Path, max_length: int | None = None) -> SpladeModel:
    """Load a checkpoint in fp32 eval mode with eager attention (the form ORT's fusions recognise)."""
    try:
        model = SpladeModel.from_pretrained(checkpoint, dtype=torch.float32)
    except ValueError as exc:  # e.g. a decoder-only (GPT-2) folder: transformers lists every MLM class
        kind = model_type(Path(checkpoint))
        what = f" (its model_type is {kind!r})" if kind else ""
        raise at_option("CHECKPOINT", f"cannot load {checkpoint} as a masked language model{what}: splade "
                                      "needs an encoder with an MLM head such as BERT or XLM-R "
                                      f"({first_line(exc)[:80]})") from None
    if max_length:
        model.max_length = max_length
    setter = getattr(model.mlm, "set_attn_implementation", None)
    if setter is not None:
        try:
            setter("eager")
        except (ValueError, AttributeError):
            log.info("backbone keeps its attention implementation")
    return model.eval()


def model_type(folder: Path) -> str | None:
    """The `model_type` of a folder's config.json (None when unreadable)."""
    try:
        return str(json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type"))
    except (OSError, ValueError, AttributeError):
        return None


def _example(model: SpladeModel) -> tuple[torch.Tensor, torch.Tensor]:
    batch = model.tokenize(["SPLADE export example", "짧은 예시 문장입니다"])
    return batch["input_ids"], batch["attention_mask"]


def export_graph(model: SpladeModel, path: Path, opset: int, exporter: str) -> None:
    """Trace `ExportGraph(model)` to ONNX with dynamic batch and sequence axes."""
    graph = ExportGraph(model).eval()
    ids, mask = _example(model)
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                    ONNX_OUTPUT_NAME: {0: "batch"}}
            torch.onnx.export(graph, (ids, mask), str(path), input_names=INPUT_NAMES,
                              output_names=[ONNX_OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
        elif exporter == "dynamo":
            # its registry warns once per missing torchvision operator, which a SPLADE graph never uses
            logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
            shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
            program = torch.onnx.export(graph, (ids, mask), input_names=INPUT_NAMES,
                                        output_names=[ONNX_OUTPUT_NAME], dynamic_shapes=shapes,
                                        opset_version=max(opset, 18), dynamo=True, verbose=False)
            program.save(str(path))
        else:
            raise at_option("--exporter", f"unknown exporter {exporter!r} (choose {', '.join(EXPORTERS)})")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ONNX Runtime's tooling, which prints and logs (to the root logger) advice, not errors."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def optimize_graph(src: Path, dst: Path, model: SpladeModel) -> dict[str, int]:
    """Fuse attention, LayerNorm, GELU and bias with ONNX Runtime's transformer optimizer (portable graph)."""
    from onnxruntime.transformers.optimizer import optimize_model

    config = model.mlm.config
    with _quiet():
        optimized = optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                                   hidden_size=int(config.hidden_size), opt_level=0)
    optimized.save_model_to_file(str(dst))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def convert_fp16(src: Path, dst: Path) -> None:
    """Cast weights and activations to fp16, keeping int64 inputs and an fp32 output."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    onnx_model = OnnxModel(onnx.load(str(src)))
    onnx_model.convert_float_to_float16(keep_io_types=True)
    onnx_model.save_model_to_file(str(dst))


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8 quantization of the encoder's MatMul/Attention weights, per channel.

    The vocabulary projection stays fp32: its input carries the `-MASK_OFFSET` column, which would
    swamp a dynamic activation scale, and it decides which terms survive.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(src), load_external_data=False).graph
    pooled_inputs = {node.input[0] for node in graph.node if node.op_type == "ReduceMax"}
    keep_fp32 = [node.name for node in graph.node
                 if node.op_type == "MatMul" and node.output[0] in pooled_inputs]

    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Attention"], nodes_to_exclude=keep_fp32,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


@dataclass
class ExportReport:
    """What an export wrote and how closely each graph matches PyTorch."""

    out_dir: Path
    exporter: str
    opset: int
    providers: list[str]
    files: list[str]
    parity: dict[str, ParityResult]
    fusions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def max_abs_diff(self) -> float:
        return self.parity["fp32"].max_abs_diff

    @property
    def topk_overlap(self) -> float:
        return self.parity["fp32"].topk_overlap

    def to_dict(self) -> dict:
        return {
            "exporter": self.exporter, "opset": self.opset, "providers": self.providers, "files": self.files,
            "fusions": self.fusions, "seconds": round(self.seconds, 2),
            "parity": {name: result.to_dict() for name, result in self.parity.items()},
        }


def _ort_runner(path: Path):
    from splade.encoders.onnx_backend import make_session

    session = make_session(path, ["CPUExecutionProvider"])

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run([ONNX_OUTPUT_NAME], {"input_ids": ids, "attention_mask": mask})[0]

    return run, session.get_providers()


def _torch_runner(model: SpladeModel):
    @torch.inference_mode()
    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    return run


def _check(variant: str, path: Path, reference, batches,
           tolerance: Tolerance) -> tuple[ParityResult, list[str]]:
    try:
        candidate, providers = _ort_runner(path)
    except Exception as exc:  # ORT raises its own exception types, per provider
        if variant == "fp16":
            note = f"the CPU provider cannot run this fp16 graph ({type(exc).__name__}); check it on a GPU"
            return ParityResult(variant, float("nan"), float("nan"), float("nan"), 0, 0, tolerance,
                                ran=False, note=note), []
        raise SpladeError(f"{variant}: ONNX Runtime cannot load {path.name}: {exc}") from exc
    return check_parity(reference, candidate, batches, variant, tolerance), providers


def export_onnx(config: ExportConfig, tolerances: dict[str, Tolerance] | None = None,
                say: Callable[[str], None] | None = None) -> ExportReport:
    """Export `config.checkpoint` to `config.out` (replaced atomically) and check every graph against
    PyTorch; `tolerances` overrides the default parity tolerance of a variant; `say` hears each step.

    Raises `SpladeError` with the parity figures, writing nothing, when a graph misses its tolerance.
    """
    checkpoint, out_dir = config.checkpoint, config.out
    refuse_foreign_dir(out_dir, "export_report.json", "--out", "export")
    limits = dict(DEFAULT_TOLERANCES, **(tolerances or {}))
    if config.tolerance is not None:
        limits["fp32"] = Tolerance(config.tolerance, limits["fp32"].min_topk_overlap)
    started = time.perf_counter()
    say = say or (lambda _: None)
    say(f"loading {checkpoint}")
    model = load_for_export(checkpoint, config.max_length)
    texts = load_parity_texts(config.parity_texts)
    batches = parity_batches(model.tokenizer, texts, model.max_length)
    reference = _torch_runner(model)
    parity: dict[str, ParityResult] = {}
    with tempfile.TemporaryDirectory(prefix="splade-export-") as scratch, atomic_dir(out_dir) as tmp:
        raw = Path(scratch) / "raw.onnx"
        say(f"tracing the ONNX graph ({config.exporter} exporter, opset {config.opset})")
        export_graph(model, raw, opset=config.opset, exporter=config.exporter)
        main = tmp / ONNX_VARIANT_FILES["fp32"]
        if config.optimize:
            say("fusing attention, LayerNorm and GELU (ONNX Runtime optimizer)")
        fusions = optimize_graph(raw, main, model) if config.optimize else {}
        if not config.optimize:
            shutil.copyfile(raw, main)
        say(f"parity check of the fp32 graph against PyTorch ({len(texts)} texts)")
        parity["fp32"], providers = _check("fp32", main, reference, batches, limits["fp32"])
        variants = (("fp16", config.fp16, convert_fp16), ("int8", config.int8, quantize_int8))
        for variant, wanted, convert in variants:
            if wanted:
                say(f"writing and checking the {variant} graph")
                convert(main, tmp / ONNX_VARIANT_FILES[variant])
                parity[variant], _ = _check(variant, tmp / ONNX_VARIANT_FILES[variant], reference, batches,
                                            limits[variant])
        failed = [result.summary() for result in parity.values() if not result.passed]
        if failed:
            raise SpladeError("export failed its parity check, nothing written: " + "; ".join(failed))
        say("saving the weights, tokenizer and model card beside the graph")
        model.save_pretrained(tmp, model_id=model_identity(checkpoint))  # for sentence-transformers, torch
        _write_config(checkpoint, tmp, model, config.exporter, config.opset)
        export_facts = {"graphs": sorted(p.name for p in tmp.glob("*.onnx")), "exporter": config.exporter,
                        "opset": config.opset,
                        "parity_max_abs_diff": float(f"{parity['fp32'].max_abs_diff:.2e}")}
        write_model_card(tmp, {"export": export_facts}, source=checkpoint,
                         name=config.name or Path(out_dir).name)
        report = ExportReport(Path(out_dir), config.exporter, config.opset, providers, [], parity, fusions)
        report.files = sorted(p.name for p in tmp.iterdir()) + ["export_report.json"]
        report.seconds = time.perf_counter() - started
        write_json(tmp / "export_report.json", report.to_dict())
    return report


def _write_config(checkpoint: str | Path, tmp: Path, model: SpladeModel, exporter: str, opset: int) -> None:
    """`splade_config.json` beside the graph: the model's settings plus how the graph was made; the model
    id is the checkpoint's, so an index built with either serves queries encoded by the other."""
    artifact = model.artifact(model_identity(checkpoint))
    artifact.onnx = {"exporter": exporter, "opset": opset, "input_names": INPUT_NAMES,
                     "output_name": ONNX_OUTPUT_NAME, "source": Path(checkpoint).name}
    artifact.write(tmp)
