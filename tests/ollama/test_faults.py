"""Fault cases against a misbehaving Ollama-like server: each ends in a clear error, and the actor
serves its next message."""

from __future__ import annotations

import pytest

from tests.ollama.support import STAND_IN, FaultServer
from workbench.errors import (
    ModelNotFound,
    RuntimeHTTPError,
    RuntimeProcessError,
    RuntimeProtocolError,
    RuntimeTimeout,
    WorkbenchError,
)
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.ollama_cli import OllamaCLIRuntimeActor
from workbench.runtimes.ollama_lib import OllamaLibRuntimeActor
from workbench.runtimes.ollama_rest import OllamaRESTRuntimeActor

CLASSES = [OllamaRESTRuntimeActor, OllamaLibRuntimeActor]

CASES = [
    ("killed", RuntimeProtocolError, r"closed the connection before the answer was complete"),
    ("malformed", RuntimeProtocolError, r"malformed line in the stream .*this is not json"),
    ("midstream", WorkbenchError, r"error during the stream .*out of memory"),
    ("missing", ModelNotFound, r"ollama pull missing"),
    ("broken", RuntimeHTTPError, r"HTTP 500 .*llama runner process has terminated"),
    ("busy", RuntimeHTTPError, r"HTTP 429 .*server busy"),
]


async def _good_after(actor: ModelRuntimeActor) -> None:
    """The same actor answers a well-behaved request right after the fault."""
    actor.model = "good"
    completion = await actor.generate("hi")
    assert completion.text == "Hello"
    assert completion.metrics.server["ollama_eval_tokens_per_s"] == 20.0
    assert completion.metrics.server["ollama_load_duration_s"] == 0.5


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.runtime)
@pytest.mark.parametrize(("model", "error", "message"), CASES, ids=[case[0] for case in CASES])
async def test_fault_is_clear_and_the_actor_goes_on(
    cls: type[ModelRuntimeActor], model: str, error: type[Exception], message: str, fault_server: FaultServer
) -> None:
    actor = cls(model, host=fault_server.url)
    try:
        with pytest.raises(error, match=message):
            await actor.generate("hi")
        await _good_after(actor)
    finally:
        await actor.stop()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.runtime)
async def test_slow_server_hits_the_timeout(cls: type[ModelRuntimeActor], fault_server: FaultServer) -> None:
    actor = cls("slow", host=fault_server.url, timeout=0.3)
    try:
        with pytest.raises(RuntimeTimeout, match="did not answer in time"):
            await actor.chat("hi")
        await _good_after(actor)
    finally:
        await actor.stop()


async def test_chunks_before_a_fault_reach_the_caller(fault_server: FaultServer) -> None:
    actor = OllamaRESTRuntimeActor("killed", host=fault_server.url)
    seen: list[str] = []
    try:
        with pytest.raises(RuntimeProtocolError):
            async for chunk in actor.chat("hi"):
                seen.append(chunk.text)
        assert seen == ["Hel"]
    finally:
        await actor.stop()


@pytest.mark.parametrize(("model", "error", "message"), [
    ("midstream", RuntimeProcessError, r"ollama run midstream failed: an error was encountered .*out of memory"),
    ("broken", RuntimeProcessError, r"500 Internal Server Error: llama runner process has terminated"),
])
async def test_cli_faults_come_from_the_error_line(model: str, error: type[Exception], message: str,
                                                   fault_server: FaultServer) -> None:
    actor = OllamaCLIRuntimeActor(model, host=fault_server.url, binary=str(STAND_IN))
    try:
        with pytest.raises(error, match=message):
            await actor.generate("hi")
        actor.model = "good"
        completion = await actor.generate("hi")
        assert completion.text == "Hello"
        assert completion.metrics.server["ollama_total_duration_s"] == 2.0  # "2s" on stderr, parsed back
        assert completion.metrics.server["ollama_load_duration_s"] == 0.5  # "500ms"
    finally:
        await actor.stop()
