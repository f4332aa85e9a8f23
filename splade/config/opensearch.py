"""OpenSearch connection settings, shared by `splade index`, `search` and `eval`: command-line options
over `OPENSEARCH_*` environment variables; passwords and API keys never appear in a message."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, unquote

from pydantic import Field, field_validator, model_validator

from splade.config.loading import OptionsModel

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
DEFAULT_HOSTS = ["http://localhost:9200"]
_URL_CREDENTIALS = re.compile(r"//[^/@\s]+@")


def redact(text: str) -> str:
    """Remove `user:password@` from any URL in `text`."""
    return _URL_CREDENTIALS.sub("//***@", text)


def quote_credentials(host: str) -> str:
    """`host` with its `user:password@` percent-encoded, so that a password holding `#`, `/`, `@` or `:`
    parses (an already encoded one stays as it is)."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        scheme, rest = "", host
    userinfo, at, address = rest.rpartition("@")
    if not at:
        return host
    user, colon, password = userinfo.partition(":")
    quoted = quote(unquote(user), safe="") + (":" + quote(unquote(password), safe="") if colon else "")
    return f"{scheme}{sep}{quoted}@{address}"


class OpenSearchSettings(OptionsModel):
    """Where and how to connect. Its `repr` masks the password and API key and strips URL credentials."""

    option_names: ClassVar[dict[str, str]] = {name: f"--{name.replace('_', '-')} / {var}"
                                              for name, var in ENV.items()}

    hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_HOSTS))
    user: str | None = None
    password: str | None = None
    api_key: str | None = None
    ca_certs: str | None = None
    verify: bool = True  # verify TLS certificates (off only for local demo certificates)
    timeout: float = Field(default=30.0, gt=0)

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [quote_credentials(h.strip()) for h in value if isinstance(h, str) and h.strip()]
            if not value:
                raise ValueError("no OpenSearch host given")
        return value

    @field_validator("ca_certs", mode="before")
    @classmethod
    def _existing_ca_file(cls, value: Any) -> Any:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"file not found: {value}")
        return None if value is None else str(value)

    @model_validator(mode="after")
    def _user_with_password(self) -> OpenSearchSettings:
        if self.password and not self.user:
            raise ValueError(f"--password / {ENV['password']}: given without --user / {ENV['user']}")
        return self

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in SECRET_FIELDS and value:
                value = "***"
            elif name == "hosts":
                value = [redact(h) for h in value]
            yield name, value

    def __str__(self) -> str:
        return repr(self)

    @property
    def hosts_text(self) -> str:
        """The hosts, without credentials, for messages."""
        return ", ".join(redact(h) for h in self.hosts)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: Any) -> OpenSearchSettings:
        """Settings from `OPENSEARCH_*` variables; keyword `overrides` that are not None (options) win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[var] for name, var in ENV.items() if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def settings_from_env(data: Any) -> Any:
    """Raw settings of a stage (a `mode="before"` validator): with `backend: opensearch` and no
    `opensearch` settings, those of the `OPENSEARCH_*` variables."""
    if isinstance(data, dict) and data.get("backend") == "opensearch" and data.get("opensearch") is None:
        return {**data, "opensearch": OpenSearchSettings.from_env()}
    return data
