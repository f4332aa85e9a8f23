"""The redistributable sample bundled in the package: training triplets and a small BEIR evaluation set.

Built by `splade data sample` from `configs/data_sample.yaml` (Tatoeba, Korean-English news, KorSTS / STS-B,
KCD disease names; never internal data), so the quickstart runs on a fresh machine without `../shared`.
"""

from __future__ import annotations

from pathlib import Path

from splade.errors import SpladeError

SAMPLE_EVAL_NAME = "sample-koen"
SAMPLE_CONFIG = Path("configs") / "data_sample.yaml"  # the bundled copy outside a checkout

ATTRIBUTION = """\
# Attribution of the bundled sample

`train.jsonl`, `val.jsonl` and `beir/sample-koen/` are derived (sampled, paired with mined negatives)
from these redistributable sources; each row's `source` field names its origin:

- `tatoeba`: Tatoeba (tatoeba.org) Korean-English sentence pairs. CC BY 2.0 FR.
- `news`: Korean-English news parallel corpus, dev part (jungyeul/korean-parallel-corpora).
  CC BY-SA 3.0.
- `korsts`: KorSTS (kakaobrain/KorNLUDatasets) aligned with the English STS Benchmark sentences.
  CC BY-SA 4.0 (KorSTS); STS Benchmark per-source terms.
- `kcd`: Korean Standard Classification of Diseases, Korean and English disease names (a public
  classification; packaging by the auw authors, MIT license).

The sample is shared under the same terms (share-alike for the KorSTS and news parts).
Rebuild it with `splade data sample` (needs the source files under ../shared/data).
"""


def sample_dir() -> Path:
    """Folder of the bundled sample (`train.jsonl`, `val.jsonl`, `summary.json`, `beir/<name>/`)."""
    path = Path(__file__).resolve().parent.parent / "resources" / "sample"
    if not (path / "train.jsonl").is_file():
        raise SpladeError(f"the bundled sample is missing from {path} (reinstall splade or run "
                          "`splade data sample`)")
    return path


def sample_beir_dir() -> Path:
    """BEIR folder of the sample's evaluation set (`corpus.jsonl`, `queries.jsonl`, `qrels/dev.tsv`)."""
    return sample_dir() / "beir" / SAMPLE_EVAL_NAME


def build_sample(config_path: str | Path = SAMPLE_CONFIG, out: str | Path | None = None,
                 show_progress: bool = False, log=None) -> Path:
    """Rebuild the bundled sample from its config (the default output is the package's own folder)."""
    from splade.config.data import load_build_config
    from splade.config.inputs import build_inputs, check_inputs
    from splade.data.build import build_training_data

    config = load_build_config(config_path)
    if config.eval_set is None or config.eval_set.name != SAMPLE_EVAL_NAME:
        raise SpladeError(f"{config_path}: eval_set.name must be {SAMPLE_EVAL_NAME!r} for the bundled sample")
    try:
        check_inputs(build_inputs(config), str(config_path))
    except SpladeError as exc:
        raise SpladeError(f"{exc}; the sample is rebuilt from its redistributable sources (see "
                          f"ATTRIBUTION.md): point --config at a copy of data_sample.yaml naming where they "
                          f"are. The installed sample needs no rebuild: {sample_dir()}") from None
    target = Path(out) if out else Path(__file__).resolve().parent.parent / "resources" / "sample"
    build_training_data(config, target, show_progress=show_progress, log=log,
                        extra_files={"ATTRIBUTION.md": ATTRIBUTION})
    return target
