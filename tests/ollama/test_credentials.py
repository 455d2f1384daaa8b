"""An Ollama reached through an authenticating proxy: `ollama:MODEL@http://user:password@host:port`
parses, and both HTTP actors send the credentials as HTTP basic auth (issue 11: "Invalid port")."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from workbench.errors import WorkbenchError
from workbench.runtimes.ollama_common import parse_ollama_host
from workbench.runtimes.registry import create_actor, parse_spec
from workbench.runtimes.rest import split_credentials
from workbench.server.ollama_api import OllamaAPIServer

USER, PASSWORD = "alice", "p@ss:word"
QUOTED_PASSWORD = "p%40ss%3Aword"


class BasicAuthProxy:
    """A loopback TCP proxy in front of a server that answers 401 unless a connection's first request
    carries `Authorization: Basic` for USER/PASSWORD (as nginx's `auth_basic` does)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[str | None] = []
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        authorization = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                              if line.lower().startswith(b"authorization:")), None)
        self.seen.append(authorization)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if authorization != expected:
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 26\r\nConnection: close\r\n\r\n{\"error\": \"unauthorized\"}\n")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        up_writer.write(head)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except ConnectionError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def proxy(scripted_server: OllamaAPIServer) -> AsyncIterator[BasicAuthProxy]:
    port = int(scripted_server.url.rsplit(":", 1)[1].rstrip("/"))
    proxy = BasicAuthProxy(port)
    await proxy.start()
    yield proxy
    await proxy.close()


def test_a_spec_with_user_and_password_parses_without_leaking_them_into_the_display_url() -> None:
    spec = parse_spec(f"ollama:llama3.2@http://{USER}:{QUOTED_PASSWORD}@example.com:8080")
    host = parse_ollama_host(spec.host)
    assert (host.host, host.port) == ("example.com", 8080)
    assert host.url == "http://example.com:8080"
    assert host.connect_url == f"http://{USER}:{QUOTED_PASSWORD}@example.com:8080"
    url, auth = split_credentials(host.connect_url)
    assert url == "http://example.com:8080" and auth is not None
    header = next(auth.auth_flow(httpx.Request("GET", url))).headers["Authorization"]
    assert header == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize("kind", ["ollama-rest", "ollama-lib"])
async def test_both_http_actors_send_the_urls_credentials(kind: str, proxy: BasicAuthProxy) -> None:
    actor = create_actor(f"{kind}:echo@http://{USER}:{QUOTED_PASSWORD}@127.0.0.1:{proxy.port}")
    try:
        completion = await actor.chat("through the proxy")
        assert completion.text == "through the proxy"
        assert proxy.seen and all(seen and seen.startswith("Basic ") for seen in proxy.seen)
        assert PASSWORD not in actor.base_url and QUOTED_PASSWORD not in actor.base_url  # nothing shows it
    finally:
        await actor.stop()
    wrong = create_actor(f"{kind}:echo@http://{USER}:nope@127.0.0.1:{proxy.port}")
    try:
        with pytest.raises(WorkbenchError, match="unauthorized|401") as refused:
            await wrong.chat("refused")
        assert "nope" not in str(refused.value)
    finally:
        await wrong.stop()
