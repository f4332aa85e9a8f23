"""splade: train, export, index and evaluate Korean and Korean-English SPLADE models."""

__version__ = "0.1.0"
