"""The three Ollama actors end to end against `workbench serve` on loopback (CLI: the stand-in binary)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.ollama.support import STAND_IN
from workbench.errors import ModelNotFound, NotSupported, RuntimeProcessError, RuntimeUnavailable, WorkbenchError
from workbench.runtimes.base import ModelRuntimeActor
from workbench.runtimes.ollama_cli import OllamaCLIRuntimeActor
from workbench.runtimes.ollama_lib import OllamaLibRuntimeActor
from workbench.runtimes.ollama_rest import OllamaRESTRuntimeActor
from workbench.runtimes.registry import create_actor
from workbench.server.ollama_api import OllamaAPIServer

KINDS = ["ollama-rest", "ollama-lib", "ollama-cli"]


def make(kind: str, model: str, server: OllamaAPIServer) -> ModelRuntimeActor:
    options: dict[str, Any] = {"binary": str(STAND_IN)} if kind == "ollama-cli" else {}
    return create_actor(f"{kind}:{model}@{server.url}", **options)


@pytest.mark.parametrize("kind", KINDS)
async def test_chat_streams_with_both_kinds_of_metrics(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "echo", scripted_server)
    try:
        pieces = [chunk async for chunk in actor.chat("the capital of France")]
        text = "".join(chunk.text for chunk in pieces)
        assert text == "the capital of France"
        final = pieces[-1]
        assert final.done and final.metrics is not None
        metrics = final.metrics
        assert metrics.ttft_s is not None and metrics.e2e_s >= metrics.ttft_s  # ours, client side
        assert metrics.output_tokens == 4 and metrics.input_tokens == 4  # from the server's counts
        assert metrics.server["ollama_eval_count"] == 4.0  # the server's, labelled
        assert metrics.server["ollama_eval_tokens_per_s"] > 0
        assert "ollama_total_duration_s" in metrics.server
    finally:
        await actor.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_think_separates_thinking_from_the_answer(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "thinker", scripted_server)
    try:
        completion = await (actor.think("why is the sky blue") if kind == "ollama-cli"
                            else actor.generate("why is the sky blue", options={"think": True}))
        assert completion.thinking == "Let me think.\nThe user said: why is the sky blue"
        assert completion.text == "why is the sky blue"
    finally:
        await actor.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_unknown_model_says_how_to_pull_and_actor_keeps_serving(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "llama9", scripted_server)
    try:
        with pytest.raises(ModelNotFound, match=r"ollama pull llama9"):
            await actor.chat("hello")
        with pytest.raises(ModelNotFound):
            await actor.chat("hello again")
        assert actor.errors == 2 and str(actor.state) == "idle"
    finally:
        await actor.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_failure_mid_stream_then_the_next_message(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "echo", scripted_server)
    try:
        with pytest.raises((WorkbenchError, RuntimeProcessError), match="scripted failure"):
            await actor.chat("one FAIL two")
        assert (await actor.chat("still here")).text == "still here"
    finally:
        await actor.stop()


@pytest.mark.parametrize("kind", KINDS)
async def test_embed(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "embedder", scripted_server)
    try:
        result = await actor.embed(["a b", "c d e"])
        assert len(result.vectors) == 2 and result.dimensions == 3
        assert result.normalized
        assert all(abs(sum(x * x for x in v) - 1.0) < 1e-6 for v in result.vectors)
    finally:
        await actor.stop()


@pytest.mark.parametrize("kind", ["ollama-rest", "ollama-lib"])
async def test_complete_is_raw_and_stats_read_show_and_ps(kind: str, scripted_server: OllamaAPIServer) -> None:
    actor = make(kind, "echo", scripted_server)
    try:
        assert (await actor.complete("Once upon a time")).text == "Once upon a time"
        stats = await actor.stats()
        assert stats.details["loaded"] is True and stats.details["family"] == "scripted"
        assert "completion" in stats.details["capabilities"]
        # the server listens in this very process: its tree is found and measured locally
        target = actor.memory_target()
        import os

        assert target is not None and target.pid == os.getpid() and target.include_children
        assert stats.details["server_tree_rss_bytes"] > 0
    finally:
        await actor.stop()


async def test_vision_and_embedding_capabilities_follow_api_show(scripted_server: OllamaAPIServer) -> None:
    actor = make("ollama-rest", "embedder", scripted_server)
    try:
        await actor.wait_ready()
        assert actor.capabilities.embed
        with pytest.raises(NotSupported, match="no vision"):
            actor.summarize_image(b"\x89PNG....")
    finally:
        await actor.stop()


async def test_cli_cannot_complete_and_says_why(scripted_server: OllamaAPIServer) -> None:
    actor = make("ollama-cli", "echo", scripted_server)
    with pytest.raises(NotSupported, match="raw mode"):
        actor.complete("x")


async def test_cli_without_a_binary_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_BINARY", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    actor = OllamaCLIRuntimeActor("echo")
    try:
        with pytest.raises(RuntimeUnavailable, match="'ollama' not found on PATH.*OLLAMA_BINARY"):
            await actor.chat("hello")
        assert not (await OllamaCLIRuntimeActor.availability()).available
    finally:
        await actor.stop()


async def test_cli_passes_ollama_host_and_multi_turn_chat(scripted_server: OllamaAPIServer) -> None:
    actor = make("ollama-cli", "echo", scripted_server)
    try:
        completion = await actor.chat([
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "bye"},
        ])
        # the echo model answers with the words of the transcript it was given
        assert completion.text == "User: hi Assistant: hello User: bye Assistant:"
    finally:
        await actor.stop()


@pytest.mark.parametrize("cls", [OllamaRESTRuntimeActor, OllamaLibRuntimeActor])
async def test_server_down_says_not_reachable(cls: type[ModelRuntimeActor]) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    actor = cls("echo", host=f"127.0.0.1:{port}")
    try:
        with pytest.raises(RuntimeUnavailable, match=rf"Ollama not reachable at http://127.0.0.1:{port}"):
            await actor.chat("hello")
    finally:
        await actor.stop()


async def test_availability_probes_the_server_and_the_binary(
    scripted_server: OllamaAPIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cls in (OllamaRESTRuntimeActor, OllamaLibRuntimeActor):
        report = await cls.availability(scripted_server.url)
        assert report.available, report.reason
    monkeypatch.setenv("OLLAMA_BINARY", str(STAND_IN))
    report = await OllamaCLIRuntimeActor.availability()
    assert report.available and str(STAND_IN) in report.reason
