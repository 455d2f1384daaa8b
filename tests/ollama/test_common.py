"""OLLAMA_HOST parsing (Ollama's own test table), request bodies and the server-side metrics."""

from __future__ import annotations

import pytest

from workbench.runtimes.ollama_common import (
    chunks_from_item,
    ollama_messages,
    options_from_ollama,
    parse_ollama_host,
    request_fields,
    same_model,
    server_metrics,
)
from workbench.runtimes.types import ChatMessage, GenerationOptions, encode_data_url

# envconfig/config_test.go TestHost: OLLAMA_HOST value -> Host().String()
HOST_TABLE = [
    ("", "http://127.0.0.1:11434"),
    ("1.2.3.4", "http://1.2.3.4:11434"),
    (":1234", "http://:1234"),
    ("1.2.3.4:1234", "http://1.2.3.4:1234"),
    ("example.com", "http://example.com:11434"),
    ("example.com:1234", "http://example.com:1234"),
    (":0", "http://:0"),
    (":66000", "http://:11434"),
    (":-1", "http://:11434"),
    ("[::1]", "http://[::1]:11434"),
    ("[::]", "http://[::]:11434"),
    ("::1", "http://[::1]:11434"),
    ("[::1]:1337", "http://[::1]:1337"),
    (" 1.2.3.4 ", "http://1.2.3.4:11434"),
    ('"1.2.3.4"', "http://1.2.3.4:11434"),
    (' " 1.2.3.4 " ', "http://1.2.3.4:11434"),
    ("'1.2.3.4'", "http://1.2.3.4:11434"),
    ("http://1.2.3.4", "http://1.2.3.4:80"),
    ("http://1.2.3.4:4321", "http://1.2.3.4:4321"),
    ("https://1.2.3.4", "https://1.2.3.4:443"),
    ("https://1.2.3.4:4321", "https://1.2.3.4:4321"),
    ("https://example.com/ollama", "https://example.com:443/ollama"),
    ("ollama.com", "https://ollama.com:443"),
]


@pytest.mark.parametrize(("value", "expected"), HOST_TABLE)
def test_host_parses_as_ollama_does(value: str, expected: str) -> None:
    assert parse_ollama_host(value).url == expected


# TestConnectableHost, plus the `:port` form a client must dial on loopback.
@pytest.mark.parametrize(("value", "expected"), [
    ("", "http://127.0.0.1:11434"),
    ("0.0.0.0", "http://127.0.0.1:11434"),
    ("0.0.0.0:1234", "http://127.0.0.1:1234"),
    ("[::]", "http://[::1]:11434"),
    ("[::]:1234", "http://[::1]:1234"),
    ("[::1]:1234", "http://[::1]:1234"),
    ("192.168.1.5:8080", "http://192.168.1.5:8080"),
    ("https://0.0.0.0:4321", "https://127.0.0.1:4321"),
    (":5678", "http://127.0.0.1:5678"),
])
def test_connectable_host(value: str, expected: str) -> None:
    assert parse_ollama_host(value).connect_url == expected


def test_host_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "10.0.0.7:9999")
    assert parse_ollama_host(None).url == "http://10.0.0.7:9999"
    monkeypatch.delenv("OLLAMA_HOST")
    assert parse_ollama_host(None).url == "http://127.0.0.1:11434"


@pytest.mark.parametrize(("value", "local"), [("", True), ("localhost:1", True), ("[::1]", True),
                                              ("0.0.0.0", True), ("10.1.2.3", False), ("gpu-box", False)])
def test_local_hosts(value: str, local: bool) -> None:
    assert parse_ollama_host(value).is_local is local


def test_messages_carry_images_as_bare_base64() -> None:
    png = b"\x89PNG\r\n\x1a\n...."
    message = ChatMessage.model_validate({"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": encode_data_url(png)}},
    ]})
    [converted] = ollama_messages([message])
    assert converted == {"role": "user", "content": "what is this?", "images": ["iVBORw0KGgouLi4u"]}


def test_options_map_to_ollama_names_and_top_level_fields() -> None:
    options = GenerationOptions(max_tokens=32, temperature=0.0, top_k=5, seed=7, stop=["\n"], think="high",
                                extra={"num_ctx": 4096, "keep_alive": "5m", "format": "json"})
    assert request_fields(options) == {
        "options": {"temperature": 0.0, "top_k": 5, "seed": 7, "num_predict": 32, "stop": ["\n"], "num_ctx": 4096},
        "think": "high", "keep_alive": "5m", "format": "json",
    }
    assert request_fields(GenerationOptions()) == {}


def test_options_from_ollama_invert_the_mapping_and_reject_bad_values() -> None:
    options = options_from_ollama({"num_predict": 8, "temperature": 0.5, "num_ctx": 2048, "stop": "END"},
                                  think=True, keep_alive="1m")
    assert (options.max_tokens, options.temperature, options.stop, options.think) == (8, 0.5, ["END"], True)
    assert options.extra == {"num_ctx": 2048, "keep_alive": "1m"}
    assert options_from_ollama({"num_predict": -1}).max_tokens is None
    with pytest.raises(ValueError, match="temperature"):
        options_from_ollama({"temperature": -1})


def test_final_metrics_become_labelled_seconds_and_rates() -> None:
    final = {"done": True, "total_duration": 2_000_000_000, "load_duration": 500_000_000, "prompt_eval_count": 10,
             "prompt_eval_duration": 250_000_000, "eval_count": 20, "eval_duration": 1_000_000_000}
    server = server_metrics(final)
    assert server["ollama_total_duration_s"] == 2.0
    assert server["ollama_load_duration_s"] == 0.5
    assert server["ollama_eval_tokens_per_s"] == 20.0
    assert server["ollama_prompt_eval_tokens_per_s"] == 40.0
    # every field may be absent
    assert server_metrics({"done": True, "eval_count": 3}) == {"ollama_eval_count": 3.0}


def test_stream_items_become_thinking_then_answer_then_final() -> None:
    [thinking] = chunks_from_item({"message": {"role": "assistant", "content": "", "thinking": "hmm"}, "done": False})
    assert thinking.thinking == "hmm" and not thinking.text
    [answer] = chunks_from_item({"response": "Paris", "done": False})
    assert answer.text == "Paris"
    [final] = chunks_from_item({"response": "", "done": True, "done_reason": "length", "eval_count": 4})
    assert final.done and final.finish_reason == "length" and final.usage.output_tokens == 4


def test_model_names_default_to_latest() -> None:
    assert same_model("llama3.2:latest", "llama3.2")
    assert not same_model("llama3.2:1b", "llama3.2")


def test_api_show_narrows_capabilities_only_where_it_says_no() -> None:
    from workbench.runtimes.ollama_common import refine_capabilities
    from workbench.runtimes.types import Capabilities

    full = Capabilities(think=True, embed=True, summarize_image=True)
    narrowed = refine_capabilities(full, "llama3.2", {"capabilities": ["completion"]})
    assert not narrowed.summarize_image and not narrowed.embed and narrowed.think and narrowed.chat
    assert narrowed.notes["summarize_image"] == "/api/show says llama3.2 has no vision capability"
    assert "embedding" in narrowed.notes["embed"]
    assert refine_capabilities(full, "llava", {"capabilities": ["completion", "vision", "embedding"]}) == full
    assert refine_capabilities(full, "old", {}) == full  # an older server that does not say


def test_each_model_reports_its_own_ps_size_beside_the_shared_server_tree() -> None:
    from workbench.runtimes.ollama_common import stats_fields

    ps = {"models": [{"name": "llama3.2:latest", "size": 3_000_000_000, "size_vram": 2_000_000_000},
                     {"name": "qwen3:0.6b", "size": 900_000_000, "size_vram": 0}]}
    tree = 5_000_000_000
    llama, qwen = stats_fields("llama3.2", None, ps, tree), stats_fields("qwen3:0.6b", None, ps, tree)
    assert (llama["memory_bytes"], qwen["memory_bytes"]) == (3_000_000_000, 900_000_000)  # not the tree twice
    assert llama["details"]["ps_size_vram_bytes"] == 2_000_000_000
    for fields in (llama, qwen):
        assert fields["details"]["server_tree_rss_bytes"] == tree and fields["details"]["server_models_loaded"] == 2
        assert fields["details"]["memory_bytes_source"] == "/api/ps size of this model"
    idle = stats_fields("mistral", None, ps, tree)  # not loaded: only the shared tree is known, and says so
    assert idle["memory_bytes"] == tree and "shared" in idle["details"]["memory_bytes_source"]
