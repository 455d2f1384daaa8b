"""`workbench serve` against hostile requests (issue 11): wrong types are 400 in each API's error shape,
never 500; a prompt or body too large is refused by its size before anything reads or tokenizes it; the
request head is bounded apart from the body; slow and idle clients are cut off; `Expect: 100-continue`
is answered. Raw sockets on loopback, so the test sees exactly what the server sends."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.scripted import ScriptedActor
from workbench.server.app import APIServer
from workbench.server.bodies import MAX_PROMPT_CHARS
from workbench.server.http import ServerLimits

LIMITS = ServerLimits(max_body_bytes=4 * 1024 * 1024, header_timeout_s=0.5, body_timeout_s=0.5, idle_timeout_s=0.5)


class Counting(ScriptedActor):
    """Counts the requests that reached the model."""

    reached = 0

    def stream_chat(self, request, message):  # type: ignore[no-untyped-def]
        Counting.reached += 1
        return super().stream_chat(request, message)


class Chatty(ScriptedActor):
    """Answers anything with 5 000 pieces of 10 KB, `delay_s` apart: more than loopback buffers hold."""

    def _words(self, text: str):  # type: ignore[no-untyped-def]
        for _ in range(5_000):
            time.sleep(self.delay_s)
            yield "y" * 10_000


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[APIServer]:
    actor = Counting("echo")
    actor.start()
    await actor.wait_ready()
    served = APIServer([actor], port=0, limits=LIMITS)
    await served.start()
    yield served
    await served.close()
    await actor.stop()


async def _exchange(server: APIServer, data: bytes, *, wait_s: float = 3.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http.port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), wait_s)
    finally:
        writer.close()


def _head(path: str, length: int, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(("body", "words"), [
    ({"name": "echo", "messages": [{"role": "user", "content": "hi"}]}, "model is required"),
    ({"model": "echo", "messages": [{"role": "user", "content": "hi", "images": 5}]}, "messages.0.images"),
    ({"model": "echo", "messages": [{"role": "user", "content": "hi", "thinking": 5}]}, "messages.0.thinking"),
    ({"model": "echo", "messages": "hi"}, "messages"),
    ({"model": "echo", "messages": [{"role": "user", "content": "hi"}], "options": 5}, "options"),
    ({"model": 5, "messages": []}, "model"),
])
async def test_wrong_types_are_400_in_ollamas_shape(server: APIServer, body: dict, words: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        answer = await http.post("/api/chat", json=body)
        assert answer.status_code == 400, answer.text
        assert set(answer.json()) == {"error"} and words in answer.json()["error"]
        assert (await http.post("/api/chat", json={"model": "echo", "messages": [
            {"role": "user", "content": "still here"}], "stream": False})).json()["message"]["content"] == "still here"


async def test_deep_nesting_is_400_in_both_apis(server: APIServer) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    async with httpx.AsyncClient(base_url=server.url) as http:
        ollama = await http.post("/api/generate", content=deep)
        assert ollama.status_code == 400 and "nested too deeply" in ollama.json()["error"]
        oai = await http.post("/v1/chat/completions", content=deep)
        assert oai.status_code == 400 and "nested too deeply" in oai.json()["error"]["message"]
        typed = await http.post("/v1/chat/completions", json={"model": "echo", "messages": [{"role": "user", "content": 5}]})
        assert typed.status_code == 400 and typed.json()["error"]["type"] == "invalid_request_error"


async def test_a_long_prompt_is_refused_before_the_model_sees_it(server: APIServer) -> None:
    before = Counting.reached
    prompt = "word " * (MAX_PROMPT_CHARS // 5 + 1)
    async with httpx.AsyncClient(base_url=server.url) as http:
        started = time.perf_counter()
        answer = await http.post("/api/chat", json={"model": "echo", "messages": [{"role": "user", "content": prompt}]})
        elapsed = time.perf_counter() - started
        oai = await http.post("/v1/completions", json={"model": "echo", "prompt": prompt})
    assert answer.status_code == 413 and "characters" in answer.json()["error"]
    assert oai.status_code == 413 and oai.json()["error"]["code"] == "prompt_too_long"
    assert Counting.reached == before and elapsed < 5


async def test_a_body_too_large_is_refused_by_its_declared_size(server: APIServer) -> None:
    started = time.perf_counter()
    answer = await _exchange(server, _head("/api/chat", 50_000_000))  # not one byte of the body sent
    assert answer.startswith(b"HTTP/1.1 413 ") and b"limit" in answer
    assert time.perf_counter() - started < 2
    openai_shaped = await _exchange(server, _head("/v1/chat/completions", 50_000_000))
    assert json.loads(openai_shaped.split(b"\r\n\r\n", 1)[1])["error"]["type"] == "invalid_request_error"


async def test_a_chunked_body_is_bounded_as_it_arrives(server: APIServer) -> None:
    piece = b"x" * 65536
    head = b"POST /api/chat HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"".join(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" for _ in range(70))  # 4.4 MiB
    answer = await _exchange(server, head + body)
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_the_request_head_is_bounded_apart_from_the_body(server: APIServer) -> None:
    big_header = "X-Filler: " + "a" * 20_000
    answer = await _exchange(server, _head("/api/chat", 2, big_header) + b"{}")
    assert answer.startswith(b"HTTP/1.1 431 ")
    fine = "X-Filler: " + "a" * 8_000  # under 16 KiB: served
    body = json.dumps({"model": "echo", "prompt": "ok", "stream": False}).encode()
    answer = await _exchange(server, _head("/api/generate", len(body), fine) + body)
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_expect_100_continue(server: APIServer) -> None:
    body = json.dumps({"model": "echo", "prompt": "continued", "stream": False}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http.port)
    writer.write(_head("/api/generate", len(body), "Expect: 100-continue"))
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(body)
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert final.startswith(b"HTTP/1.1 200 ")
    writer.close()
    refused = await _exchange(server, _head("/api/generate", 50_000_000, "Expect: 100-continue"))
    assert refused.startswith(b"HTTP/1.1 413 ")  # no 100: the client never sends the body


@pytest.mark.parametrize("sent", [
    b"",  # idle: connected, nothing sent
    b"POST /api/chat HTTP/1.1\r\nHost: x\r\n",  # a head that never ends
    _head("/api/chat", 100) + b'{"model":',  # a body that never ends
])
async def test_slow_and_idle_clients_are_cut_off(server: APIServer, sent: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.http.port)
    writer.write(sent)
    await writer.drain()
    started = time.perf_counter()
    data = await asyncio.wait_for(reader.read(), 5)  # read() returns once the server closes
    assert time.perf_counter() - started < 3
    assert data == b"" or data.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_a_client_that_stops_reading_is_dropped_and_its_generation_cancelled() -> None:
    import socket

    actor = Chatty("chatty", delay_s=0.002)
    actor.start()
    await actor.wait_ready()
    served = APIServer([actor], port=0, limits=ServerLimits(write_timeout_s=0.3))
    await served.start()
    body = json.dumps({"model": "chatty", "prompt": "talk"}).encode()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(("127.0.0.1", served.http.port))
        client.sendall(_head("/api/generate", len(body)) + body)  # ...and never reads the answer
        loop = asyncio.get_running_loop()
        started = loop.time()
        while str(actor.state) != "busy":
            assert loop.time() - started < 5
            await asyncio.sleep(0.01)
        while str(actor.state) != "idle":  # the whole answer (50 MB) would take 10 s or more
            assert loop.time() - started < 8, "the server kept generating for a client that does not read"
            await asyncio.sleep(0.05)
    finally:
        client.close()
        await served.close()
        await actor.stop()


class Stubborn(ScriptedActor):
    """A model whose reply does not settle when cancelled (as the actor-core race of issue 11 left it):
    its stream swallows the cancellation and goes on for a while."""

    def stream_generate(self, request, message):  # type: ignore[no-untyped-def]
        from workbench.runtimes.types import Chunk

        async def run():  # type: ignore[no-untyped-def]
            yield Chunk(text="first", tokens=1)
            for _ in range(80):
                try:
                    await asyncio.sleep(0.05)
                except asyncio.CancelledError:
                    continue  # ignores the cancel: the reply stays open for 4 s
            yield Chunk(done=True)

        return run()


async def test_a_client_that_half_closes_gets_its_socket_closed() -> None:
    import socket

    actor = Stubborn("stubborn")
    actor.start()
    await actor.wait_ready()
    served = APIServer([actor], port=0)
    await served.start()
    body = json.dumps({"model": "stubborn", "prompt": "hi"}).encode()
    client = socket.socket()
    client.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await loop.sock_connect(client, ("127.0.0.1", served.http.port))
        await loop.sock_sendall(client, _head("/api/generate", len(body)) + body)
        await asyncio.sleep(0.2)  # the answer has begun
        client.shutdown(socket.SHUT_WR)  # half-close: "I am gone"
        started = loop.time()
        while await asyncio.wait_for(loop.sock_recv(client, 65536), 4):
            pass  # read to the server's FIN; a socket left in CLOSE_WAIT would time out here
        assert loop.time() - started < 2.5  # the reply itself stays open for 4 s
    finally:
        client.close()
        await served.close()
        await actor.stop(drain=False)
