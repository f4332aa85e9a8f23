"""Options several verbs share, declared once: the OpenSearch connection group (`index`, `search`, `eval`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

CONNECTION = "OpenSearch connection (with --backend opensearch)"

_OPTIONS: dict[str, Any] = {
    "hosts": Annotated[str | None, typer.Option(
        "--hosts", help="Comma-separated URLs, default http://localhost:9200 (env OPENSEARCH_HOSTS); the "
        "compose stack serves https://localhost:9200 (its demo certificates: see below).",
        rich_help_panel=CONNECTION)],
    "user": Annotated[str | None, typer.Option(
        "--user", help="Basic-auth user (env OPENSEARCH_USER).", rich_help_panel=CONNECTION)],
    "password": Annotated[str | None, typer.Option(
        "--password", help="Basic-auth password (prefer env OPENSEARCH_PASSWORD).",
        rich_help_panel=CONNECTION)],
    "api_key": Annotated[str | None, typer.Option(
        "--api-key", help="API key (prefer env OPENSEARCH_API_KEY).", rich_help_panel=CONNECTION)],
    "ca_certs": Annotated[Path | None, typer.Option(
        "--ca-certs", help="CA bundle for TLS (env OPENSEARCH_CA_CERTS).", rich_help_panel=CONNECTION)],
    "verify": Annotated[bool | None, typer.Option(
        "--verify/--no-verify", help="Verify TLS certificates (env OPENSEARCH_VERIFY_CERTS; default: "
        "verify). --no-verify accepts the compose stack's demo certificates.", rich_help_panel=CONNECTION)],
    "timeout": Annotated[float | None, typer.Option(
        "--timeout", help="Request timeout in seconds (env OPENSEARCH_TIMEOUT; default 30).",
        rich_help_panel=CONNECTION)],
}


def opensearch_options(verb: Callable[..., Any]) -> Callable[..., Any]:
    """Give a verb the OpenSearch connection options. The verb declares `backend` and `opensearch`; it
    receives `opensearch` as the `OpenSearchSettings` (options over `OPENSEARCH_*` variables) when
    `--backend opensearch`, else None."""
    signature = inspect.signature(verb, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "opensearch"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)
             for name, annotation in _OPTIONS.items()]

    @functools.wraps(verb)
    def with_connection(**kwargs: Any) -> Any:
        overrides = {name: kwargs.pop(name) for name in _OPTIONS}
        kwargs["opensearch"] = None
        if kwargs.get("backend") == "opensearch":
            from splade.config.opensearch import OpenSearchSettings

            if overrides["ca_certs"] is not None:
                overrides["ca_certs"] = str(overrides["ca_certs"])
            kwargs["opensearch"] = OpenSearchSettings.from_env(**overrides)
        return verb(**kwargs)

    with_connection.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    return with_connection
