"""Versions of splade and of the libraries that decide its numbers (for `--version` and reports)."""

from __future__ import annotations

from importlib import metadata

from splade import __version__

LIBRARIES = ("torch", "transformers", "tokenizers", "onnxruntime", "onnxruntime-gpu", "sentence-transformers",
             "numpy", "kiwipiepy")


def library_versions() -> dict[str, str]:
    """Installed version of each library splade's results depend on (those not installed are left out)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def version_line() -> str:
    """`splade X (torch Y, transformers Z, ...)`: what `splade --version` prints."""
    libraries = ", ".join(f"{name} {version}" for name, version in library_versions().items())
    return f"splade {__version__} ({libraries})"
