"""The four runtime families, each against a real thing: a subprocess the tests own, an HTTP server on
127.0.0.1, a client library class, and an in-process function on a worker thread. Plus specs,
capabilities and chat messages with images."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
from pydantic import ValidationError

from tests.support.scripted import ScriptedActor
from workbench.actors import ActorEvent, ConcurrencyLimit, Message
from workbench.errors import (
    ActorFailed,
    MessageCancelled,
    ModelNotFound,
    NotSupported,
    RuntimeHTTPError,
    RuntimeProcessError,
    RuntimeProtocolError,
    RuntimeTimeout,
    RuntimeUnavailable,
    RuntimeUnreachable,
    SpecError,
    WorkbenchError,
)
from workbench.runtimes import (
    CLIModelRuntimeActor,
    ChatMessage,
    ChatRequest,
    Chunk,
    CommandLine,
    ExternalModelRuntimeActor,
    GenerateRequest,
    ModelRuntimeActor,
    RESTfulModelRuntimeActor,
    Usage,
    create_actor,
    parse_spec,
)
from workbench.runtimes.base import image_to_data_url
from workbench.runtimes.registry import runtime_names
from workbench.runtimes.types import Capabilities, decode_data_url, encode_data_url

FAKE_CLI = str(Path(__file__).with_name("fake_cli.py"))
BOUND_S = 20.0
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


def limit() -> ConcurrencyLimit:
    return ConcurrencyLimit(4)


def prompt_of(request: GenerateRequest | ChatRequest) -> str:
    return request.prompt if isinstance(request, GenerateRequest) else request.messages[-1].text


async def drain(reply: Any) -> tuple[list[str], BaseException | None]:
    """The text chunks a stream delivered, and the error it ended with (None: it completed)."""
    texts: list[str] = []
    try:
        async for chunk in reply:
            if chunk.text:
                texts.append(chunk.text)
    except Exception as error:  # noqa: BLE001 - returned for the test to inspect
        return texts, error
    return texts, None


# ----- CLI family: a real subprocess ------------------------------------------------------------------
class FakeCLI(CLIModelRuntimeActor):
    runtime: ClassVar[str] = "fake-cli"
    binary: ClassVar[str] = sys.executable

    def command_for(self, operation: str, request: GenerateRequest | ChatRequest) -> CommandLine:
        mode, *rest = prompt_of(request).split()
        if mode == "echo":
            return CommandLine([FAKE_CLI, "echo"], stdin=" ".join(rest).encode())
        return CommandLine([FAKE_CLI, mode, *rest])


async def test_cli_streams_output_while_the_program_runs(tmp_path: Path) -> None:
    actor = FakeCLI("m", limit=limit())
    gate = tmp_path / "gate"
    reply = actor.generate(f"gated {gate}")
    chunks = reply.__aiter__()
    first = await asyncio.wait_for(chunks.__anext__(), BOUND_S)
    assert first.text == "first"
    target = actor.memory_target()
    assert target is not None and psutil.pid_exists(target.pid)  # still running: output came as produced
    gate.touch()
    rest = [chunk async for chunk in chunks]
    assert "".join(chunk.text for chunk in rest) == " second"
    assert rest[-1].done and rest[-1].metrics is not None and rest[-1].metrics.ttft_s is not None
    assert actor.memory_target() is None  # the program has exited
    await actor.stop()


async def test_cli_sends_stdin_and_the_complete_form_collects_the_text() -> None:
    actor = FakeCLI("m", limit=limit())
    completion = await asyncio.wait_for(actor.chat("echo héllo wörld"), BOUND_S)
    assert completion.text == "HÉLLO WÖRLD"
    completion = await asyncio.wait_for(actor.generate("stream 4 0"), BOUND_S)
    assert completion.text == "t0 t1 t2 t3"
    await actor.stop()


async def test_cli_non_zero_exit_is_a_process_error_with_the_stderr_tail() -> None:
    actor = FakeCLI("m", limit=limit())
    texts, error = await drain(actor.generate("fail"))
    assert texts == ["partial"]
    assert isinstance(error, RuntimeProcessError)
    assert error.returncode == 3
    assert "exited with status 3" in str(error)
    assert "model 'nope' not found" in str(error)
    assert (await actor.generate("stream 2 0")).text == "t0 t1"  # the actor goes on
    await actor.stop()


async def test_cli_crash_mid_stream_gives_a_clear_error_after_the_partial_chunks() -> None:
    actor = FakeCLI("m", limit=limit())
    texts, error = await drain(actor.generate("crash"))
    assert "".join(texts) == "one two"
    assert isinstance(error, RuntimeProcessError)
    assert "killed by SIGKILL" in str(error)
    await actor.stop()


async def test_cli_cancel_kills_the_program() -> None:
    actor = FakeCLI("m", limit=limit())
    reply = actor.generate("hang")
    chunks = reply.__aiter__()
    first = await asyncio.wait_for(chunks.__anext__(), BOUND_S)
    pid = int(first.text.removeprefix("pid="))
    assert psutil.pid_exists(pid)
    reply.cancel()
    with pytest.raises(MessageCancelled):
        await asyncio.wait_for(chunks.__anext__(), BOUND_S)
    assert not psutil.pid_exists(pid)
    assert (await actor.generate("stream 1 0")).text == "t0"
    await actor.stop()


async def test_cli_missing_binary_is_unavailable_and_named() -> None:
    class Missing(FakeCLI):
        binary: ClassVar[str] = "workbench-no-such-program"

    availability = await Missing.availability()
    assert not availability.available and "workbench-no-such-program" in availability.reason
    actor = Missing("m", limit=limit())
    with pytest.raises(RuntimeUnavailable, match="workbench-no-such-program.*not found"):
        await actor.generate("stream 1 0")
    assert (await FakeCLI.availability()).available
    await actor.stop()


# ----- REST family: a real HTTP server on loopback ----------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _stream(self, content_type: str, lines: list[str], *, finish: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            self._chunk(line.encode())
        if finish:
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _json(self, status: int, body: Any, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/":
            self._json(200, {"status": "ok"})
        elif self.path == "/notjson":
            self._json(200, None, raw=b"<html>hello</html>")
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        words = body.get("words", ["w0", "w1", "w2"])
        ndjson = [json.dumps({"t": word}) + "\n" for word in words]
        if self.path == "/ndjson":
            self._stream("application/x-ndjson", [*ndjson, json.dumps({"done": True, "n": len(words)}) + "\n"])
        elif self.path == "/sse":
            events = [": a comment line\n", "event: message\n"]
            events += [f"data: {json.dumps({'t': word})}\n\n" for word in words]
            self._stream("text/event-stream", [*events, "data: [DONE]\n\n", f"data: {json.dumps({'t': 'after'})}\n\n"])
        elif self.path == "/notfound":
            self._json(404, {"error": "model 'ghost' not found"})
        elif self.path == "/nested-error":
            self._json(500, {"error": {"message": "CUDA out of memory", "type": "server_error"}})
        elif self.path == "/text-error":
            self._json(503, None, raw=b"service warming up")
        elif self.path == "/malformed":
            self._stream("application/x-ndjson", [ndjson[0], "this is not json\n"])
        elif self.path == "/stream-error":
            self._stream("application/x-ndjson", [ndjson[0], json.dumps({"error": "model runner crashed"}) + "\n"])
        elif self.path == "/cut":
            self._stream("application/x-ndjson", ndjson[:2], finish=False)
        elif self.path == "/slow":
            time.sleep(1.5)
            self._json(200, {"late": True})
        elif self.path == "/echo":
            self._json(200, body)
        else:
            self._json(404, {"error": f"no route {self.path}"})


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client closing its keep-alive is normal
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class FakeREST(RESTfulModelRuntimeActor):
    runtime: ClassVar[str] = "fake-rest"
    service: ClassVar[str] = "fake server"

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._stream(prompt_of(request))

    async def _stream(self, path: str) -> AsyncIterator[Chunk]:
        count = 0
        async for item in self.stream_json("POST", path, {"words": ["a", "b", "c"]}):
            if "t" in item:
                count += 1
                yield Chunk(text=item["t"], tokens=1)
        yield Chunk(done=True, usage=Usage(output_tokens=count))

    async def handle_call(self, message: Message) -> Any:
        """A plain (not streamed) request through the mailbox."""
        return await self.request_json("POST", message.payload, {})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("path", ["/ndjson", "/sse"])
async def test_rest_streams_ndjson_and_sse(server_url: str, path: str) -> None:
    actor = FakeREST("m", host=server_url, limit=limit())
    completion = await asyncio.wait_for(actor.chat(path), BOUND_S)
    assert completion.text == "abc"  # SSE stops at [DONE]; comments and event: lines are skipped
    assert completion.metrics is not None and completion.metrics.output_tokens == 3
    await actor.stop()


async def test_rest_error_statuses_carry_the_servers_message(server_url: str) -> None:
    actor = FakeREST("m", host=server_url, limit=limit())
    with pytest.raises(RuntimeHTTPError, match="HTTP 404 .*model 'ghost' not found") as caught:
        await actor.chat("/notfound")
    assert caught.value.status_code == 404 and caught.value.url.endswith("/notfound")
    with pytest.raises(RuntimeHTTPError, match="HTTP 500 .*CUDA out of memory"):
        await actor.chat("/nested-error")
    with pytest.raises(RuntimeHTTPError, match="HTTP 503 .*service warming up"):
        await actor.chat("/text-error")
    await actor.stop()


async def test_rest_bad_streams_fail_after_their_good_part(server_url: str) -> None:
    actor = FakeREST("m", host=server_url, limit=limit())
    texts, error = await drain(actor.chat("/malformed"))
    assert texts == ["a"]
    assert isinstance(error, RuntimeProtocolError) and "malformed line" in str(error)
    assert "this is not json" in str(error) and server_url in str(error)
    texts, error = await drain(actor.chat("/stream-error"))
    assert texts == ["a"] and isinstance(error, WorkbenchError) and "model runner crashed" in str(error)
    texts, error = await drain(actor.chat("/cut"))
    assert texts == ["a", "b"]
    assert isinstance(error, RuntimeProtocolError) and "closed the connection" in str(error)
    assert (await actor.chat("/ndjson")).text == "abc"  # the actor goes on
    await actor.stop()


async def test_rest_slow_server_hits_the_timeout(server_url: str) -> None:
    actor = FakeREST("m", host=server_url, timeout=0.3, limit=limit())
    with pytest.raises(RuntimeTimeout, match="did not answer in time"):
        await actor.send("call", "/slow")
    await actor.stop()


async def test_rest_refused_port_is_not_reachable_at_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    actor = FakeREST("m", host=url, limit=limit())
    with pytest.raises(RuntimeUnreachable, match=f"fake server not reachable at {url}"):
        await actor.chat("/ndjson")
    availability = await FakeREST.availability(url)
    assert not availability.available and url in availability.reason
    await actor.stop()


async def test_rest_request_json_and_availability(server_url: str) -> None:
    actor = FakeREST("m", host=server_url + "/", limit=limit())
    assert actor.base_url == server_url  # a trailing slash is dropped
    await actor.wait_ready()
    assert await actor.request_json("POST", "/echo", {"x": [1, 2]}) == {"x": [1, 2]}
    with pytest.raises(RuntimeProtocolError, match="not JSON"):
        await actor.request_json("GET", "/notjson")
    assert (await FakeREST.availability(server_url)).available
    await actor.stop()
    assert actor._client is None  # the actor's one client is closed with it


# ----- external-library family: a client library class of our own -------------------------------------
class LibError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


class TinyClient:
    """A client library in miniature: `chat(stream=True)` is awaitable and gives an async iterator."""

    def __init__(self) -> None:
        self.closed = False

    async def chat(self, prompt: str) -> AsyncIterator[str]:
        if prompt == "missing":
            raise LibError(404, "model not found")

        async def pieces() -> AsyncIterator[str]:
            for word in prompt.split():
                if word == "BOOM":
                    raise LibError(500, "server exploded")
                if word == "KEY":
                    raise KeyError("unexpected")
                await asyncio.sleep(0)
                yield word

        return pieces()

    async def close(self) -> None:
        self.closed = True


class TinyRuntime(ExternalModelRuntimeActor):
    runtime: ClassVar[str] = "tiny"
    library: ClassVar[str] = "json"  # a package that is surely installed

    def create_client(self) -> TinyClient:
        return TinyClient()

    def translate_error(self, error: Exception) -> Exception | None:
        if isinstance(error, LibError):
            if error.status == 404:
                return ModelNotFound(f"model {self.model!r} not found by tiny")
            return RuntimeHTTPError(error.status, str(error))
        return None

    def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
        return self._chat(prompt_of(request))

    async def _chat(self, prompt: str) -> AsyncIterator[Chunk]:
        async for word in self.stream(self.client.chat(prompt)):
            yield Chunk(text=word, tokens=1)
        yield Chunk(done=True)


async def test_external_family_wraps_a_client_library_and_translates_its_errors() -> None:
    actor = TinyRuntime("m", limit=limit())
    assert (await actor.chat("hello there")).text == "hellothere"
    with pytest.raises(ModelNotFound, match="model 'm' not found by tiny"):
        await actor.chat("missing")
    texts, error = await drain(actor.chat("one BOOM"))
    assert texts == ["one"] and isinstance(error, RuntimeHTTPError) and error.status_code == 500
    assert isinstance(error.__cause__, LibError)
    with pytest.raises(KeyError):  # an error it does not know passes through unchanged
        await actor.chat("KEY")
    assert await actor.call(asyncio.sleep(0, result=7)) == 7
    with pytest.raises(ModelNotFound):
        await actor.call(actor.client.chat("missing"))
    client = actor.client
    await actor.stop()
    assert client.closed
    assert (await TinyRuntime.availability()).available

    class Absent(TinyRuntime):
        library: ClassVar[str] = "workbench_no_such_library"

    availability = await Absent.availability()
    assert not availability.available and "workbench_no_such_library" in availability.reason


# ----- in-process family: a real function on a worker thread --------------------------------------------
class LoopWatcher(ScriptedActor):
    """Its load and its first token each block the worker thread until the event loop has ticked
    `TICKS` more times: they can only finish if the loop keeps running while the thread works."""

    TICKS = 20

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ticks = 0
        self.loaded_with_loop_alive = threading.Event()
        self.generated_with_loop_alive = threading.Event()
        self._targets: list[tuple[int, threading.Event]] = []
        self._lock = threading.Lock()

    def tick(self) -> None:
        """Called by the ticker task on the loop."""
        with self._lock:
            self.ticks += 1
            for target, event in self._targets:
                if self.ticks >= target:
                    event.set()

    def _await_ticks(self, event: threading.Event) -> None:
        with self._lock:
            self._targets.append((self.ticks + self.TICKS, event))
        event.wait(BOUND_S)  # returns early only if the loop ticked meanwhile

    def load(self, progress: Any) -> None:
        self._await_ticks(self.loaded_with_loop_alive)
        super().load(progress)

    def _words(self, text: str) -> Iterator[str]:
        self._await_ticks(self.generated_with_loop_alive)
        yield from super()._words(text)


async def test_in_process_work_never_blocks_the_event_loop() -> None:
    actor = LoopWatcher(limit=limit())
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            actor.tick()
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await actor.wait_ready()
    completion = await actor.generate("one two three")
    stop.set()
    await task
    assert actor.loaded_with_loop_alive.is_set()  # the loop ticked while the model loaded ...
    assert actor.generated_with_loop_alive.is_set()  # ... and while it generated
    assert completion.text == "one two three"
    await actor.stop()


async def test_in_process_load_progress_and_failure() -> None:
    actor = ScriptedActor(limit=limit())
    progress: list[Any] = []
    actor.on("progress", lambda event: progress.append(event.data))
    await actor.wait_ready()
    for _ in range(5):
        await asyncio.sleep(0)
    assert progress == [(0.0, "loading"), (1.0, "loaded")]
    assert actor.load_progress == (1.0, "loaded") and actor.loaded
    await actor.stop()
    assert not actor.loaded  # unload ran

    missing = ScriptedActor("missing", limit=limit())
    with pytest.raises(ActorFailed, match="model 'missing' does not exist"):
        await missing.wait_ready()
    with pytest.raises(ActorFailed):
        await missing.chat("hi")
    await missing.stop()


async def test_in_process_error_mid_stream_and_recovery() -> None:
    actor = ScriptedActor(limit=limit())
    errors: list[ActorEvent] = []
    actor.on("error", errors.append)
    reply = actor.chat("please FAIL here")
    texts, error = await drain(reply)
    assert texts == ["please"] and isinstance(error, ValueError)
    assert errors[0].correlation_id == reply.correlation_id
    embeddings = await actor.embed(["a b", "c"])
    assert embeddings.vectors == [[3.0, 2.0, 1.0], [1.0, 1.0, 1.0]]
    assert embeddings.metrics is not None and embeddings.metrics.correlation_id
    thought = await actor.think("why")
    assert thought.thinking == "considering" and thought.text == "why"
    stats = await actor.stats()
    assert stats.requests == 3 and stats.errors == 1 and stats.runtime == "scripted"
    await actor.stop()


# ----- capabilities and NotSupported ------------------------------------------------------------------------
async def test_an_operation_a_runtime_lacks_is_not_supported_and_its_capabilities_say_so() -> None:
    actor = ScriptedActor(limit=limit())
    assert not actor.capabilities.supports("summarize_image")
    with pytest.raises(NotSupported, match="scripted .* does not support summarize_image"):
        actor.summarize_image(PNG)
    cli = FakeCLI("m", limit=limit())
    assert not cli.capabilities.supports("embed")
    with pytest.raises(NotSupported, match="embed"):
        cli.embed("text")

    class Bare(ModelRuntimeActor):
        runtime: ClassVar[str] = "bare"
        capabilities = Capabilities(notes={"think": "no reasoning model"})

    bare = Bare("m", limit=limit())
    with pytest.raises(NotSupported, match="think: no reasoning model"):
        bare.think("hm")
    with pytest.raises(NotSupported, match="bare does not support chat"):
        await bare.chat("hm")  # declared but not implemented: the hook says so
    assert await bare.stats() is not None
    await asyncio.gather(actor.stop(), cli.stop(), bare.stop())


# ----- specs ------------------------------------------------------------------------------------------------
def test_parse_spec_forms() -> None:
    assert str(parse_spec("torch:smollm2")) == "torch:smollm2"
    spec = parse_spec("ollama:llama3.2:1b@http://gpu-box:11434")
    assert (spec.runtime, spec.model, spec.host) == ("ollama-rest", "llama3.2:1b", "http://gpu-box:11434")
    bare = parse_spec("smollm2")
    assert (bare.runtime, bare.model, bare.host) == ("transformers", "smollm2", None)
    assert parse_spec("hf:minilm").runtime == "transformers"
    with_credentials = parse_spec("ollama:llama3:8b@http://user:pw@gpu-box:11434")
    assert (with_credentials.model, with_credentials.host) == ("llama3:8b", "http://user:pw@gpu-box:11434")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty actor spec"),
        ("torch :x", "contains spaces"),
        ("nope:model", "unknown runtime 'nope'"),
        ("torch", "names a runtime but no model"),
        ("torch:", "has no model"),
        ("torch:model@", "names no host"),
    ],
)
def test_bad_specs_say_what_is_valid(text: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text)
    message = str(caught.value)
    assert problem in message
    assert "runtime:model[@host]" in message
    for name in runtime_names():
        assert name in message


def test_create_actor_errors_list_the_runtimes() -> None:
    with pytest.raises(SpecError, match="ollama-cli.*ollama-lib.*ollama-rest.*torch.*transformers"):
        create_actor("vllm:llama")


# ----- chat messages with images -------------------------------------------------------------------------
async def test_image_url_data_urls_validate_and_decode(tmp_path: Path) -> None:
    url = encode_data_url(PNG)
    message = ChatMessage.model_validate(
        {"role": "user", "content": [{"type": "text", "text": "what is "}, {"type": "text", "text": "this?"},
                                     {"type": "image_url", "image_url": {"url": url, "detail": "low"}}]}
    )
    assert message.text == "what is this?"
    assert message.images() == [PNG] and message.image_urls() == [url]
    assert decode_data_url("data:,hello%20there") == ("text/plain", b"hello there")
    image = tmp_path / "picture.png"
    image.write_bytes(PNG)
    assert image_to_data_url(image) == url == image_to_data_url(PNG) == image_to_data_url(url)
    assert image_to_data_url(b"\xff\xd8\xff rest").startswith("data:image/jpeg;base64,")

    class Seeing(ScriptedActor):
        capabilities = Capabilities(summarize_image=True)
        seen: list[ChatMessage] = []

        def stream_chat(self, request: ChatRequest, message: Message) -> AsyncIterator[Chunk]:
            Seeing.seen = request.messages
            return super().stream_chat(request, message)

    actor = Seeing(limit=limit())
    await actor.summarize_image(image, instruction="Describe it")
    assert Seeing.seen[-1].images() == [PNG] and Seeing.seen[-1].text == "Describe it"
    await actor.stop()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://example.com/cat.png", "must be a data: URL"),
        ("data:image/png;base64,***not base64***", "not valid base64"),
        ("/etc/passwd", "must be a data: URL"),
    ],
)
def test_bad_image_urls_give_clear_errors(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_data_url(url)
    with pytest.raises(ValidationError, match=problem):
        ChatMessage.model_validate({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})


def test_malformed_chat_messages_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="role"):
        ChatMessage.model_validate({"role": "wizard", "content": "hi"})
    with pytest.raises(ValidationError, match="audio"):
        ChatMessage.model_validate({"role": "user", "content": [{"type": "audio", "audio": "x"}]})
    with pytest.raises(FileNotFoundError, match="image file not found"):
        image_to_data_url(tmp_path / "absent.png")
