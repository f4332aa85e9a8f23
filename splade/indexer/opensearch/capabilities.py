"""What an OpenSearch cluster can do, read from its version (`GET /`) and plugins (`GET _cat/plugins`).

- `neural_sparse` with `query_tokens` (raw vectors): 2.14+ (2.11-2.13 take only `query_text`);
- search pipelines with the `neural_sparse_two_phase_processor`: 2.15+;
- `sparse_vector` fields with the SEISMIC method: 3.3+;

each with the neural-search plugin (in the default OpenSearch image).

Plugins are unknown (None) when the user may not list them (no `cluster:monitor` rights): features are then
judged by the version alone, and a missing plugin shows as the server's own error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from splade.errors import SpladeError, at_option

NEURAL_SEARCH = "opensearch-neural-search"
FEATURES = {  # name: (first version, what it is)
    "query_tokens": ((2, 14), "neural_sparse with query_tokens"),
    "two_phase": ((2, 15), "the neural_sparse two-phase search pipeline"),
    "sparse_vector": ((3, 3), "sparse_vector fields with the SEISMIC method"),
}


@dataclass(frozen=True)
class ServerInfo:
    """Distribution, version and plugin names of one cluster."""

    distribution: str
    version: tuple[int, int, int]
    plugins: frozenset[str] | None
    hosts: str = "the cluster"

    @staticmethod
    def parse(info: dict[str, Any], plugins: list[dict[str, Any]] | None,
              hosts: str = "the cluster") -> ServerInfo:
        """From the answers of `GET /` and `GET _cat/plugins?format=json` (None: not allowed to list)."""
        version = info.get("version", {}) if isinstance(info, dict) else {}
        number = str(version.get("number", "0")).split("-")[0]  # "3.3.0-SNAPSHOT" -> "3.3.0"
        numbers = [int(part) if part.isdigit() else 0 for part in number.split(".")[:3]]
        names = None if plugins is None else frozenset(str(p.get("component", "")) for p in plugins)
        return ServerInfo(str(version.get("distribution", "elasticsearch")), (*numbers, 0, 0, 0)[:3], names,
                          hosts)

    @staticmethod
    def read(client: Any, call: Callable[..., Any], hosts: str = "the cluster") -> ServerInfo:
        """Ask the cluster; `call(what, fn)` turns client errors into one-line errors."""
        info = call("reading the server version", client.info)
        try:
            plugins = call("listing plugins", client.cat.plugins, format="json")
        except SpladeError:  # a user without cluster:monitor rights: judge by the version alone
            plugins = None
        return ServerInfo.parse(info, plugins, hosts)

    @property
    def text(self) -> str:
        name = "OpenSearch" if self.distribution == "opensearch" else self.distribution
        return f"{name} {'.'.join(map(str, self.version))}"

    @property
    def neural_search(self) -> bool | None:
        """Whether the neural-search plugin is installed (None: unknown)."""
        return None if self.plugins is None else NEURAL_SEARCH in self.plugins

    def supports(self, feature: str) -> bool:
        """True when the version has `feature` and the plugin is installed (or cannot be listed)."""
        first, _ = FEATURES[feature]
        return self.distribution == "opensearch" and self.version >= first and self.neural_search is not False

    def require(self, feature: str, option: str) -> None:
        """A one-line error naming `option` when the cluster lacks `feature`."""
        first, what = FEATURES[feature]
        if self.distribution != "opensearch" or self.version < first:
            raise at_option(option, f"{what} needs OpenSearch {first[0]}.{first[1]} or later; {self.hosts} "
                                    f"runs {self.text}")
        if self.neural_search is False:
            raise at_option(option, f"{what} needs the {NEURAL_SEARCH} plugin, which {self.hosts} does not "
                                    "list (GET _cat/plugins)")

    def query_mode(self, requested: str) -> str:
        """`auto`: `neural_sparse` where it takes raw vectors and the plugin is known to be there, else the
        equivalent `rank_feature` query; an explicit `neural_sparse` the version cannot run is an error."""
        if requested == "rank_feature":
            return requested
        if requested == "neural_sparse":
            first, what = FEATURES["query_tokens"]
            if self.distribution == "opensearch" and self.version < first:
                raise at_option("--query-mode", f"{what} needs OpenSearch 2.14 or later; {self.hosts} runs "
                                                f"{self.text} (use --query-mode rank_feature)")
            return requested
        if requested != "auto":
            raise SpladeError(f"--query-mode: choose auto, neural_sparse or rank_feature, not {requested!r}")
        return "neural_sparse" if self.supports("query_tokens") and self.neural_search else "rank_feature"
