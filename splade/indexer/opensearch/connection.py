"""An OpenSearch client for `OpenSearchSettings`, and client errors as one line that never leaks a secret."""

from __future__ import annotations

import logging
from typing import Any

from splade.config.opensearch import ENV, OpenSearchSettings, redact
from splade.errors import SpladeError
from splade.indexer.opensearch.retry import connection_class, is_refused

__all__ = ["ENV", "OpenSearchSettings", "describe_error", "make_client", "redact"]


def make_client(settings: OpenSearchSettings) -> Any:
    """An `opensearchpy.OpenSearch` client for `settings` (basic auth or API key, TLS with a CA file)."""
    # lazily, on purpose: opensearch-py loads only when a cluster is used
    from opensearchpy import OpenSearch

    # failures are reported once, as a `SpladeError`; the client's own per-attempt warnings would repeat them
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {
        "hosts": settings.hosts,
        "timeout": settings.timeout,
        "verify_certs": settings.verify,
        "ssl_show_warn": settings.verify,
        "max_retries": 0,  # retries with backoff are ours (`.retry`), honouring Retry-After
        "connection_class": connection_class(),
    }
    if any(h.startswith("https://") for h in settings.hosts):
        kwargs["use_ssl"] = True
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.user:
        kwargs["http_auth"] = (settings.user, settings.password or "")
    if settings.api_key:
        kwargs["headers"] = {"Authorization": f"ApiKey {settings.api_key}"}
    try:
        return OpenSearch(**kwargs)
    except ValueError:  # its message may quote part of a URL's password
        raise SpladeError(f"--hosts / {ENV['hosts']}: cannot parse {settings.hosts_text} as OpenSearch URLs "
                          "(scheme://[user:password@]host:port)") from None


def _https_hint(settings: OpenSearchSettings | None) -> str:
    """The hint for an http:// host that did not answer: a cluster with the security plugin speaks https."""
    if settings is None or not any(h.startswith("http://") for h in settings.hosts):
        return ""
    return ("; a cluster with the security plugin, such as the compose stack, speaks https: "
            "--hosts https://localhost:9200 with --no-verify or --ca-certs")


def describe_error(exc: Exception, settings: OpenSearchSettings | None, what: str) -> SpladeError:
    """Turn a client exception into one clear line that names the cluster but never a secret."""
    # lazily, on purpose: opensearch-py loads only when a cluster is used
    from opensearchpy import exceptions as ose

    hosts = settings.hosts_text if settings else "the cluster"
    tries = getattr(exc, "splade_tries", 1)
    after = f" ({tries} tries)" if tries > 1 else ""
    if isinstance(exc, ose.ConnectionTimeout):
        message = f"OpenSearch at {hosts} did not answer in time while {what}{after} (raise --timeout?)"
    elif isinstance(exc, ose.SSLError):
        message = f"TLS handshake with OpenSearch at {hosts} failed while {what} (check --ca-certs)"
    elif isinstance(exc, ose.ConnectionError) and is_refused(exc):
        message = f"cannot reach OpenSearch at {hosts} while {what}{after} (is it running? check --hosts)"
        message += _https_hint(settings)
    elif isinstance(exc, ose.ConnectionError):
        # a cluster with the security plugin resets a plain-http connection: say so
        message = f"lost the connection to OpenSearch at {hosts} while {what}{after}" + _https_hint(settings)
    elif isinstance(exc, ose.AuthenticationException):
        message = (f"OpenSearch at {hosts} rejected the credentials while {what} "
                   "(check --user/--password or --api-key)")
    elif isinstance(exc, ose.AuthorizationException):
        message = f"OpenSearch at {hosts}: permission denied while {what}"
    elif isinstance(exc, ose.NotFoundError):
        message = f"OpenSearch at {hosts}: not found while {what} ({_reason(exc)})"
    elif isinstance(exc, ose.TransportError):
        message = f"OpenSearch at {hosts} failed while {what}: HTTP {exc.status_code} {_reason(exc)}{after}"
    else:
        message = f"OpenSearch request failed while {what}: {type(exc).__name__}"
    return SpladeError(mask_secrets(redact(message), settings))


def mask_secrets(message: str, settings: OpenSearchSettings | None) -> str:
    """`message` without the password or API key, plain or percent-encoded (as in a host URL)."""
    from urllib.parse import quote, unquote

    secrets = [settings.password, settings.api_key] if settings else []
    for host in settings.hosts if settings else []:
        userinfo = host.partition("://")[2].rpartition("@")[0]
        if ":" in userinfo:
            secrets.append(unquote(userinfo.partition(":")[2]))
    for secret in filter(None, secrets):
        for form in {secret, quote(secret, safe="")}:
            message = message.replace(form, "***")
    return message


def _reason(exc: Any) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        err = info["error"]
        return f"{err.get('type')}: {err.get('reason')}"
    return str(getattr(exc, "error", "")) or type(exc).__name__

