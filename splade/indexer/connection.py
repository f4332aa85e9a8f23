"""OpenSearch connection settings (options or environment variables) and a client that never leaks secrets."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from splade.errors import SpladeError

ENV = {
    "hosts": "OPENSEARCH_HOSTS",
    "user": "OPENSEARCH_USER",
    "password": "OPENSEARCH_PASSWORD",
    "api_key": "OPENSEARCH_API_KEY",
    "ca_certs": "OPENSEARCH_CA_CERTS",
    "verify": "OPENSEARCH_VERIFY_CERTS",
    "timeout": "OPENSEARCH_TIMEOUT",
}
SECRET_FIELDS = ("password", "api_key")
_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def redact(text: str) -> str:
    """Remove `user:password@` from any URL in `text`."""
    return _URL_CREDENTIALS.sub("//***@", text)


@dataclass
class OpenSearchSettings:
    """Where and how to connect. `repr` masks the password and API key."""

    hosts: list[str] = field(default_factory=lambda: ["http://localhost:9200"])
    user: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify: bool = True
    timeout: float = 30.0

    def __repr__(self) -> str:
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value:
                value = "***"
            elif f.name == "hosts":
                value = [redact(h) for h in value]
            parts.append(f"{f.name}={value!r}")
        return f"OpenSearchSettings({', '.join(parts)})"

    __str__ = __repr__

    @property
    def hosts_text(self) -> str:
        """The hosts, without credentials, for messages."""
        return ", ".join(redact(h) for h in self.hosts)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> OpenSearchSettings:
        """Settings from `OPENSEARCH_*` variables; non-None keyword `overrides` (CLI options) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw not in (None, ""):
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - set(ENV)
        if unknown:
            raise TypeError(f"unknown OpenSearch settings: {sorted(unknown)}")
        if isinstance(values.get("hosts"), str):
            values["hosts"] = [h.strip() for h in values["hosts"].split(",") if h.strip()]
        if isinstance(values.get("verify"), str):
            values["verify"] = values["verify"].strip().lower() not in ("0", "false", "no", "off")
        if "timeout" in values:
            try:
                values["timeout"] = float(values["timeout"])
            except ValueError:
                raise SpladeError(f"--timeout / {ENV['timeout']}: not a number: {values['timeout']!r}") \
                    from None
            if values["timeout"] <= 0:
                raise SpladeError(f"--timeout / {ENV['timeout']}: must be positive")
        settings = cls(**values)
        if not settings.hosts:
            raise SpladeError(f"--hosts / {ENV['hosts']}: no OpenSearch host given")
        if settings.ca_certs and not Path(settings.ca_certs).is_file():
            raise SpladeError(f"--ca-certs / {ENV['ca_certs']}: file not found: {settings.ca_certs}")
        if settings.password and not settings.user:
            raise SpladeError(f"--password / {ENV['password']}: given without --user / {ENV['user']}")
        return settings


def make_client(settings: OpenSearchSettings) -> Any:
    """An `opensearchpy.OpenSearch` client for `settings` (basic auth or API key, TLS with a CA file)."""
    from opensearchpy import OpenSearch

    # failures are reported once, as a `SpladeError`; the client's own per-attempt warnings would repeat them
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {
        "hosts": settings.hosts,
        "timeout": settings.timeout,
        "verify_certs": settings.verify,
        "ssl_show_warn": settings.verify,
        "max_retries": 0,  # retries with backoff are ours (bulk), so failures surface quickly
    }
    if any(h.startswith("https://") for h in settings.hosts):
        kwargs["use_ssl"] = True
    if settings.ca_certs:
        kwargs["ca_certs"] = settings.ca_certs
    if settings.user:
        kwargs["http_auth"] = (settings.user, settings.password or "")
    if settings.api_key:
        kwargs["headers"] = {"Authorization": f"ApiKey {settings.api_key}"}
    return OpenSearch(**kwargs)


def describe_error(exc: Exception, settings: OpenSearchSettings | None, what: str) -> SpladeError:
    """Turn a client exception into one clear line that names the cluster but never a secret."""
    from opensearchpy import exceptions as ose

    hosts = settings.hosts_text if settings else "the cluster"
    if isinstance(exc, ose.ConnectionTimeout):
        message = f"OpenSearch at {hosts} did not answer in time while {what} (raise --timeout?)"
    elif isinstance(exc, ose.SSLError):
        message = f"TLS handshake with OpenSearch at {hosts} failed while {what} (check --ca-certs)"
    elif isinstance(exc, ose.ConnectionError):
        message = f"cannot reach OpenSearch at {hosts} while {what} (is it running? check --hosts)"
    elif isinstance(exc, ose.AuthenticationException):
        message = (f"OpenSearch at {hosts} rejected the credentials while {what} "
                   "(check --user/--password or --api-key)")
    elif isinstance(exc, ose.AuthorizationException):
        message = f"OpenSearch at {hosts}: permission denied while {what}"
    elif isinstance(exc, ose.NotFoundError):
        message = f"OpenSearch at {hosts}: not found while {what} ({_reason(exc)})"
    elif isinstance(exc, ose.TransportError):
        message = f"OpenSearch at {hosts} failed while {what}: HTTP {exc.status_code} {_reason(exc)}"
    else:
        message = f"OpenSearch request failed while {what}: {type(exc).__name__}"
    message = redact(message)
    for secret in (settings.password, settings.api_key) if settings else ():
        if secret:
            message = message.replace(secret, "***")
    return SpladeError(message)


def _reason(exc: Any) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        err = info["error"]
        return f"{err.get('type')}: {err.get('reason')}"
    return str(getattr(exc, "error", "")) or type(exc).__name__
