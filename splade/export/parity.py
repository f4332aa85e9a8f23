"""Parity between an exported graph and the PyTorch model: max |diff| and top-k term overlap."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from splade.errors import SpladeError
from splade.fileio import iter_texts

# Real Korean and English sentences of mixed length (short queries to long passages), so the check
# runs on batches and sequence lengths unlike the single example the graph was traced with.
PARITY_TEXTS: tuple[str, ...] = (
    "당뇨병 치료 방법",
    "서울은 대한민국의 수도이며 가장 큰 도시이다.",
    "고혈압을 예방하려면 소금 섭취를 줄이고 규칙적으로 운동하는 것이 좋다.",
    "인공지능 검색 모델은 질의와 문서를 희소 벡터로 표현하여 역색인에서 빠르게 검색한다.",
    "감기에 걸렸을 때는 충분히 쉬고 물을 많이 마셔야 한다. 열이 사흘 이상 계속되면 병원을 찾는 것이 좋다.",
    "조선 왕조는 1392년에 건국되어 500년 넘게 한반도를 다스렸으며, 한글은 세종대왕 때 창제되었다.",
    "커피 한 잔",
    "what is the capital of South Korea",
    "Type 1 diabetes mellitus is an autoimmune disease in which the pancreas makes little or no insulin.",
    "Neural sparse retrieval expands queries and documents into weighted vocabulary terms.",
    "The Han River flows through Seoul and divides the city into northern and southern halves; "
    "dozens of bridges cross it.",
    "hypertension",
    "How long should I boil an egg? About nine minutes for a firm yolk, six for a soft one.",
    "한국어와 영어가 섞인 query: SPLADE 모델의 ONNX export 속도",
)


@dataclass(frozen=True)
class Tolerance:
    """Pass criteria: the largest absolute weight difference and the smallest mean top-k overlap."""

    max_abs_diff: float
    min_topk_overlap: float


# Defaults per precision; fp32 differs only by kernel order, fp16 and int8 change the arithmetic.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(1e-3, 0.99),
    "fp16": Tolerance(0.1, 0.9),
    "int8": Tolerance(1.0, 0.8),
}


@dataclass
class ParityResult:
    """Figures of one parity check (all texts, all batches)."""

    variant: str
    max_abs_diff: float
    mean_abs_diff: float
    topk_overlap: float
    k: int
    n_texts: int
    tolerance: Tolerance
    ran: bool = True
    note: str = ""

    @property
    def passed(self) -> bool:
        if not self.ran:
            return True
        return (self.max_abs_diff <= self.tolerance.max_abs_diff
                and self.topk_overlap >= self.tolerance.min_topk_overlap)

    def summary(self) -> str:
        if not self.ran:
            return f"{self.variant}: parity not run ({self.note})"
        verdict = "ok" if self.passed else "FAILED"
        return (f"{self.variant}: max|diff| {self.max_abs_diff:.2e} (tol {self.tolerance.max_abs_diff:g}), "
                f"top-{self.k} overlap {self.topk_overlap:.3f} (min {self.tolerance.min_topk_overlap:g}) "
                f"on {self.n_texts} texts: {verdict}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["passed"] = self.passed
        return out


def topk_overlap(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Mean over rows of |top-k'(reference) ∩ top-k'(candidate)| / k'.

    k' = min(k, active terms of the reference row), so short texts are not judged on zero-weight ties.
    """
    scores = []
    for ref, cand in zip(reference, candidate, strict=True):
        k_eff = min(k, int((ref > 0).sum()))
        if k_eff == 0:
            scores.append(1.0 if not (cand > 0).any() else 0.0)
            continue
        top_ref = set(np.argpartition(-ref, k_eff - 1)[:k_eff].tolist())
        top_cand = set(np.argpartition(-cand, k_eff - 1)[:k_eff].tolist())
        scores.append(len(top_ref & top_cand) / k_eff)
    return float(np.mean(scores))


def load_parity_texts(path: str | Path | None) -> list[str]:
    """Built-in Korean/English sentences plus texts from a file: JSONL (`title`/`text`) or one a line."""
    texts = list(PARITY_TEXTS)
    if path is None:
        return texts
    path = Path(path)
    if not path.is_file():
        raise SpladeError(f"--parity-texts: {path} is not a file")
    for text in iter_texts(path):
        texts.append(text)
        if len(texts) >= 256:
            break
    return texts


DenseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def check_parity(
    reference: DenseFn,
    candidate: DenseFn,
    batches: Sequence[tuple[np.ndarray, np.ndarray]],
    variant: str,
    tolerance: Tolerance,
    k: int = 32,
) -> ParityResult:
    """Run both functions on the same padded `(input_ids, attention_mask)` batches and compare outputs."""
    refs, cands = [], []
    for ids, mask in batches:
        refs.append(np.asarray(reference(ids, mask), dtype=np.float32))
        cands.append(np.asarray(candidate(ids, mask), dtype=np.float32))
    ref, cand = np.concatenate(refs), np.concatenate(cands)
    if ref.shape != cand.shape:
        raise SpladeError(f"{variant}: output shape {cand.shape} differs from PyTorch {ref.shape}")
    if not np.isfinite(cand).all():
        return ParityResult(variant, float("inf"), float("inf"), 0.0, k, len(ref), tolerance,
                            note="non-finite outputs")
    diff = np.abs(ref - cand)
    return ParityResult(variant, float(diff.max()), float(diff.mean()), topk_overlap(ref, cand, k), k,
                        len(ref), tolerance)


def parity_batches(tokenizer, texts: Sequence[str], max_length: int,
                   batch_sizes: Sequence[int] = (1, 3, 8)) -> list[tuple[np.ndarray, np.ndarray]]:
    """Padded batches of several sizes over `texts` (so shapes differ from the export example)."""
    batches = []
    texts = list(texts)
    for size in batch_sizes:
        for start in range(0, len(texts), size):
            enc = tokenizer(texts[start:start + size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="np", return_token_type_ids=False)
            batches.append((enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)))
            if size == 1 and start >= 2:
                break  # a few single-text batches are enough to cover batch 1
    return batches
