"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real server (osmem-server in the tests).

For every request `rule(method, path)` picks what happens: None forwards it; "reset" resets the client's
connection without forwarding; "reset_after" forwards it (the server acts) and then resets the connection,
so the answer is lost; "429" and "503" answer that status without forwarding (429 with `Retry-After`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import random
import socket
import struct
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

Rule = Callable[[str, str], "str | None"]
ACTIONS = ("reset", "reset_after", "429", "503")


class FaultProxy:
    """`with FaultProxy(upstream_url, rule) as proxy:` serves on `proxy.url`; `proxy.faults` lists the
    `(method, path, action)` of every injected fault."""

    def __init__(self, upstream: str, rule: Rule, retry_after: str = "0") -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.rule = rule
        self.retry_after = retry_after
        self.faults: list[tuple[str, str, str]] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        reader = client.makefile("rb")
        try:
            while True:
                request = _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                with self._lock:
                    self.requests += 1
                    action = self.rule(method, path)
                    if action is not None:
                        self.faults.append((method, path.split("?")[0], action))
                if action == "reset":
                    return _reset(client)
                if action in ("429", "503"):
                    client.sendall(self._error(int(action)))
                    continue
                upstream.request(method, path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                if action == "reset_after":
                    return _reset(client)
                client.sendall(_response_bytes(response, data))
        except OSError:
            return
        finally:
            upstream.close()
            with contextlib.suppress(OSError):
                reader.close()
                client.close()

    def _error(self, status: int) -> bytes:
        body = json.dumps({"error": {"type": "injected_fault", "reason": f"injected {status}"},
                           "status": status}).encode()
        reason = "Too Many Requests" if status == 429 else "Service Unavailable"
        extra = f"Retry-After: {self.retry_after}\r\n" if status == 429 else ""
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{extra}"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode() + body


def _read_request(reader) -> tuple[str, str, dict[str, str], bytes] | None:  # noqa: ANN001
    line = reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = reader.readline().decode("latin-1")
        if header in ("\r\n", "\n", ""):
            break
        name, value = header.split(":", 1)
        headers[name.strip()] = value.strip()
    length = int(next((v for k, v in headers.items() if k.lower() == "content-length"), "0"))
    return method, path, headers, reader.read(length) if length else b""


def _response_bytes(response: http.client.HTTPResponse, data: bytes) -> bytes:
    skip = {"content-length", "transfer-encoding", "connection"}
    lines = [f"HTTP/1.1 {response.status} {response.reason}"]
    lines += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in skip]
    lines.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data


def _reset(client: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def once(method: str, path: str, action: str) -> Rule:
    """Inject `action` on the first request `method path` only."""
    fired = []

    def rule(m: str, p: str) -> str | None:
        if not fired and m == method and p.split("?")[0] == path:
            fired.append(True)
            return action
        return None

    return rule


def random_faults(rate: float, seed: int, actions: tuple[str, ...] = ACTIONS) -> Rule:
    """Inject one of `actions` into a share `rate` of all requests (seeded)."""
    rng = random.Random(seed)

    def rule(method: str, path: str) -> str | None:
        return rng.choice(actions) if rng.random() < rate else None

    return rule
