"""Our PyTorch llama engine against transformers, plus its sampling/streaming/cancel behaviour.

Each model loads once per session (module-scoped fixtures); the transformers reference runs its
greedy generations once and the parity tests compare against that cached output.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from workbench.engine import GGUFError, LlamaEngine, SamplingParams, default_smollm2_path
from workbench.engine.gguf_weights import GGUFFile, unpermute_rope_rows

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain recursion in one paragraph.",
]
NEW_TOKENS = 64
THREADS = 1  # one thread: the reference runs on one too, and the machine is shared


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    return default_smollm2_path()


@pytest.fixture(scope="module")
def engine_q4(gguf_path: Path) -> LlamaEngine:
    return LlamaEngine.load(gguf_path, threads=THREADS, weights="q4")


@pytest.fixture(scope="module")
def engine_q4q16(gguf_path: Path) -> LlamaEngine:
    return LlamaEngine.load(gguf_path, threads=THREADS, weights="q4q16")


@pytest.fixture(scope="module")
def engine_fp32(gguf_path: Path) -> LlamaEngine:
    return LlamaEngine.load(gguf_path, threads=THREADS, weights="fp32")


@pytest.fixture(scope="module")
def prompt_ids(engine_q4: LlamaEngine) -> dict[str, list[int]]:
    return {p: engine_q4.chat_input_ids([{"role": "user", "content": p}]) for p in PROMPTS}


@pytest.fixture(scope="module")
def reference_greedy(gguf_path: Path, prompt_ids: dict[str, list[int]]) -> Iterator[dict[str, list[int]]]:
    """transformers' fp32 greedy continuations (EOS masked for NEW_TOKENS, as min_new_tokens does)."""
    from workbench.engine.reference import load_transformers_reference

    torch.set_num_threads(THREADS)
    model = load_transformers_reference(gguf_path)
    out: dict[str, list[int]] = {}
    with torch.inference_mode():
        for prompt, ids in prompt_ids.items():
            x = torch.tensor([ids])
            gen = model.generate(
                x, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2
            )
            out[prompt] = gen[0, x.shape[1] :].tolist()
    yield out
    del model


def _greedy(engine: LlamaEngine, ids: list[int], n: int = NEW_TOKENS) -> list[int]:
    params = SamplingParams(max_new_tokens=n, min_new_tokens=n)
    return list(engine.generate(ids, params))


# -- parity -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["q4q16", "q4", "fp32"])
@pytest.mark.parametrize("prompt", PROMPTS)
def test_greedy_matches_transformers(
    mode: str,
    prompt: str,
    request: pytest.FixtureRequest,
    prompt_ids: dict[str, list[int]],
    reference_greedy: dict[str, list[int]],
) -> None:
    engine: LlamaEngine = request.getfixturevalue(f"engine_{mode}")
    ours = _greedy(engine, prompt_ids[prompt])
    ref = reference_greedy[prompt]
    assert len(ref) == NEW_TOKENS
    first_diff = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    assert ours == ref, f"{mode}: first difference at token {first_diff}: {engine.tokenizer.decode(ours)!r}"


def test_capital_of_france_answers_paris(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    text = "".join(engine_q4.generate_text(prompt_ids[PROMPTS[0]], SamplingParams(max_new_tokens=32)))
    assert "Paris" in text


def test_q4_logits_close_to_fp32(
    engine_q4: LlamaEngine, engine_fp32: LlamaEngine, prompt_ids: dict[str, list[int]]
) -> None:
    """The block kernels compute the same function as dequantized fp32 weights (prefill + decode)."""
    ids = torch.tensor(prompt_ids[PROMPTS[1]])
    with torch.inference_mode():
        outs = []
        for eng in (engine_q4, engine_fp32):
            cache = eng.model.new_cache(ids.numel() + 4)
            prefill = eng.model.forward(ids, 0, cache)
            step = eng.model.forward(torch.tensor([42]), ids.numel(), cache)
            outs.append((prefill, step))
    for a, b in zip(outs[0], outs[1]):
        assert torch.allclose(a, b, atol=2e-3, rtol=0), (a - b).abs().max()


# -- sampling, stops, cancel ------------------------------------------------------------------------
def test_seeded_sampling_is_reproducible(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    ids = prompt_ids[PROMPTS[1]]
    params = SamplingParams(max_new_tokens=24, min_new_tokens=24, temperature=1.0, top_p=0.95, top_k=50, seed=7)
    first = list(engine_q4.generate(ids, params))
    again = list(engine_q4.generate(ids, params))
    other = list(engine_q4.generate(ids, SamplingParams(**{**params.__dict__, "seed": 8})))
    assert first == again
    assert len(first) == 24
    assert first != other


def test_top_k_one_is_greedy(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    ids = prompt_ids[PROMPTS[2]]
    sampled = list(engine_q4.generate(ids, SamplingParams(max_new_tokens=16, temperature=0.9, top_k=1, seed=3)))
    assert sampled == list(engine_q4.generate(ids, SamplingParams(max_new_tokens=16)))


def test_stop_string_stops_before_it(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    ids = prompt_ids[PROMPTS[0]]
    full = engine_q4.tokenizer.decode(list(engine_q4.generate(ids, SamplingParams(max_new_tokens=32))))
    assert "Paris" in full
    stopped_ids = list(engine_q4.generate(ids, SamplingParams(max_new_tokens=32, stop=["Paris"])))
    stopped = engine_q4.tokenizer.decode(stopped_ids)
    assert "Paris" not in stopped
    assert full.startswith(stopped)
    assert len(stopped) <= full.index("Paris")
    assert len(stopped) > 0


def test_eos_is_not_yielded_and_ends_generation(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    ids = prompt_ids[PROMPTS[0]]
    out = list(engine_q4.generate(ids, SamplingParams(max_new_tokens=200)))
    eos = engine_q4.config.eos_token_id
    assert eos not in out
    assert len(out) < 200  # the short answer ends with <|im_end|>


def test_cancel_stops_within_one_token(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    cancel = threading.Event()
    got: list[int] = []
    for tid in engine_q4.generate(prompt_ids[PROMPTS[2]], SamplingParams(max_new_tokens=64), cancel):
        got.append(tid)
        if len(got) == 3:
            cancel.set()
    assert len(got) == 3


def test_cancel_set_before_start_yields_nothing(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    cancel = threading.Event()
    cancel.set()
    assert list(engine_q4.generate(prompt_ids[PROMPTS[0]], SamplingParams(max_new_tokens=8), cancel)) == []


def test_cancel_from_another_thread(engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]]) -> None:
    cancel = threading.Event()
    got: list[int] = []
    first = threading.Event()

    def consume() -> None:
        for tid in engine_q4.generate(prompt_ids[PROMPTS[2]], SamplingParams(max_new_tokens=500, stop_token_ids=[]), cancel):
            got.append(tid)
            first.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert first.wait(60)
    cancel.set()
    worker.join(30)
    assert not worker.is_alive()
    assert 1 <= len(got) < 500


# -- detokenisation ---------------------------------------------------------------------------------
def test_stream_decoder_keeps_multibyte_characters_whole(engine_q4: LlamaEngine) -> None:
    tok = engine_q4.tokenizer
    text = "Grüße, naïve café — 世界 👋🏽 ok"
    ids = tok.encode(text)
    dec = tok.stream_decoder()
    pieces = [dec.push(t) for t in ids]
    pieces.append(dec.flush())
    assert "".join(pieces) == tok.decode(ids) == text
    assert all("\ufffd" not in p for p in pieces)
    assert "" in pieces[:-1]  # some character really was split across tokens


def test_streamed_text_equals_full_decode(engine_q4: LlamaEngine) -> None:
    ids = engine_q4.chat_input_ids([{"role": "user", "content": "Say hello in Japanese and Chinese."}])
    params = SamplingParams(max_new_tokens=40)
    streamed = "".join(engine_q4.generate_text(ids, params))
    assert streamed == engine_q4.tokenizer.decode(list(engine_q4.generate(ids, params)))


# -- loading, facts -------------------------------------------------------------------------------
def test_missing_gguf_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(GGUFError, match="model.gguf"):
        LlamaEngine.load(missing)


def test_junk_gguf_names_the_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"this is not a gguf file" * 10)
    with pytest.raises(GGUFError, match="junk.gguf"):
        LlamaEngine.load(junk)


def test_unknown_weights_mode_is_rejected(gguf_path: Path) -> None:
    with pytest.raises(ValueError, match="weights mode"):
        LlamaEngine.load(gguf_path, weights="int3")  # type: ignore[arg-type]


def test_config_and_sizes(engine_q4: LlamaEngine, engine_fp32: LlamaEngine, gguf_path: Path) -> None:
    cfg = engine_q4.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (30, 576, 9, 3)
    assert cfg.rope_theta == 100000.0 and cfg.tie_embeddings
    assert 134_000_000 < engine_q4.num_parameters < 135_000_000  # SmolLM2-135M: 134.5M
    assert engine_q4.threads == THREADS
    # never a skip: q4 must really run (tests/engine/test_native_kernels.py says why when it cannot)
    assert engine_q4.weights == "q4", engine_q4.weights_note
    assert engine_q4.memory_bytes() * 4 < engine_fp32.memory_bytes()
    assert engine_q4.memory_bytes() < gguf_path.stat().st_size * 1.1


def test_hidden_states_and_embedding(engine_q4: LlamaEngine) -> None:
    ids = engine_q4.tokenizer.encode("The sea is calm tonight.")
    h = engine_q4.hidden_states(ids)
    assert h.shape == (len(ids), engine_q4.config.hidden_size)
    assert torch.isfinite(h).all()
    a = torch.tensor(engine_q4.embed("The sea is calm tonight."))
    b = torch.tensor(engine_q4.embed("The ocean is quiet this evening."))
    c = torch.tensor(engine_q4.embed("def parse(x): return int(x)"))
    assert abs(float(a.norm()) - 1.0) < 1e-4
    assert float(a @ b) > float(a @ c)


def test_rope_unpermute_inverts_llama_cpp_permutation() -> None:
    """llama.cpp permutes rows as reshape(h, 2, d/2).swap -> (h, d/2, 2); we must invert exactly."""
    heads, dim = 3, 8
    w = torch.arange(heads * dim * 4, dtype=torch.float32).reshape(heads * dim, 4).numpy()
    permuted = w.reshape(heads, 2, dim // 2, 4).swapaxes(1, 2).reshape(w.shape)
    assert (unpermute_rope_rows(permuted, heads) == w).all()


def test_gguf_metadata_reader(gguf_path: Path) -> None:
    f = GGUFFile(gguf_path)
    assert f.architecture == "llama"
    assert "im_start" in f.require("tokenizer.chat_template")
    with pytest.raises(GGUFError, match="no.such.key"):
        f.require("no.such.key")


def test_gguf_type_table_equals_gguf_py() -> None:
    """Our copy of the GGML type table (kept so loading needs no gguf-py import) is gguf-py's."""
    import gguf

    from workbench.engine.gguf_weights import GGML_TYPES

    theirs = {int(t): (t.name, block, size) for t, (block, size) in gguf.GGML_QUANT_SIZES.items()}
    assert GGML_TYPES == theirs


def test_vocabulary_strings_are_read_on_demand_and_equal_the_file(gguf_path: Path) -> None:
    """The vocabulary and merges are GGUFStrings (decoded when read), equal to gguf-py's reading."""
    import gguf

    from workbench.engine.gguf_weights import LAZY_STRINGS_FROM, GGUFStrings

    f = GGUFFile(gguf_path)
    reader = gguf.GGUFReader(gguf_path)
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        ours = f.get(key)
        assert isinstance(ours, GGUFStrings) and len(ours) >= LAZY_STRINGS_FROM
        field = reader.fields[key]
        theirs = [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        assert ours == theirs and list(ours) == theirs
        assert ours[-3:] == theirs[-3:] and ours[len(theirs) // 2] == theirs[len(theirs) // 2]
        f.release_header_pages()  # dropped pages are read again from the file
        assert ours[100] == theirs[100]


def test_truncated_vocabulary_names_the_file(gguf_path: Path, tmp_path: Path) -> None:
    """A file cut inside its vocabulary is refused at open, naming the file."""
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf_path.read_bytes()[:600_000])
    with pytest.raises(GGUFError, match="cut.gguf"):
        GGUFFile(cut)


def test_loading_does_not_import_gguf_py() -> None:
    """Loading and answering in the default mode reads the file with our own parser only (gguf-py's import, with
    yaml, was 2.4 MiB of every worker's memory)."""
    code = (
        "import sys; from workbench.engine import LlamaEngine, SamplingParams\n"
        "e = LlamaEngine.load(threads=1)\n"
        "ids = e.chat_input_ids([{'role': 'user', 'content': 'Hi'}])\n"
        "n = len(list(e.generate(ids, SamplingParams(max_new_tokens=4))))\n"
        "print(e.weights, n, sorted(m for m in ('gguf', 'yaml') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    weights, n, imported = done.stdout.split(maxsplit=2)
    assert weights == "q4q16" and int(n) > 0 and imported.strip() == "[]"


def test_sampling_between_native_steps_runs_on_one_thread(
    engine_q4: LlamaEngine, prompt_ids: dict[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The small torch ops between decode steps (penalties, sampling) run on one intra-op thread,
    so no OpenMP worker is woken (or left spinning) beside our kernel pool; the count is restored."""
    from workbench.engine import SamplingParams

    seen: list[int] = []

    class Recording(SamplingParams):
        def sampler(self):  # noqa: ANN202
            pick = super().sampler()

            def record(logits):  # noqa: ANN001, ANN202
                seen.append(torch.get_num_threads())
                return pick(logits)

            return record

    monkeypatch.setattr(engine_q4, "threads", 2)
    saved = torch.get_num_threads()
    try:
        params = Recording(max_new_tokens=6, min_new_tokens=6, repetition_penalty=1.1)
        tokens = list(engine_q4.generate(next(iter(prompt_ids.values())), params))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
    assert len(tokens) == 6 and seen == [1] * 6


def test_short_prefills_run_natively_on_every_thread_long_ones_through_blas(engine_q4: LlamaEngine, monkeypatch) -> None:
    """q4: a prefill of up to 48 rows per thread is one native call on all threads (no torch op per
    layer); a longer one dequantizes and uses BLAS; both leave the same cache and logits."""
    import torch

    from workbench.engine.quant import DENSE_ROWS_PER_THREAD

    model = engine_q4.model
    native_calls: list[tuple[int, int]] = []
    torch_calls: list[int] = []
    prefill_step, run_layers = model._kernels.prefill_step, model._run_layers

    def spy_native(ptrs, cfg, eps, tokens, pos, *rest):  # noqa: ANN001, ANN202
        native_calls.append((int(tokens.numel()), rest[-1]))
        return prefill_step(ptrs, cfg, eps, tokens, pos, *rest)

    def spy_torch(ids, start, cache):  # noqa: ANN001, ANN202
        torch_calls.append(int(ids.shape[0]))
        return run_layers(ids, start, cache)

    words = engine_q4.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 40
    long_rows = 2 * DENSE_ROWS_PER_THREAD + 1
    ids = torch.tensor(words[:long_rows])
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(model._kernels, "prefill_step", spy_native)
        monkeypatch.setattr(model, "_run_layers", spy_torch)
        with torch.inference_mode():
            short_native = model.forward(ids[:14], 0, model.new_cache(200))
            long_cache = model.new_cache(200)
            model.forward(ids, 0, long_cache)
            torch_side = model.forward(ids[:14], 0, model.new_cache(200), all_logits=True)[-1]
    finally:
        torch.set_num_threads(saved)
    assert native_calls == [(14, 2)] and torch_calls == [long_rows, 14]
    assert torch.allclose(short_native[0], torch_side, atol=1e-3), (short_native[0] - torch_side).abs().max()


def test_a_short_torch_path_prefill_runs_on_one_thread(engine_fp32: LlamaEngine, monkeypatch) -> None:
    """Modes without the native prefill (fp32 here) run short prefills serially and restore the
    thread count; long ones use every thread."""
    import torch

    from workbench.engine.model import SERIAL_PREFILL_ROWS

    model = engine_fp32.model
    seen: list[tuple[int, int]] = []
    run_layers = model._run_layers

    def spy(ids, start, cache):  # noqa: ANN001, ANN202
        seen.append((int(ids.shape[0]), torch.get_num_threads()))
        return run_layers(ids, start, cache)

    ids = torch.tensor((engine_fp32.tokenizer.encode("The quick brown fox jumps over the lazy dog. ") * 8)[:64])
    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        monkeypatch.setattr(model, "_run_layers", spy)
        model.forward(ids[:SERIAL_PREFILL_ROWS], 0, model.new_cache(80))
        assert torch.get_num_threads() == 2  # restored
        model.forward(ids, 0, model.new_cache(80))
    finally:
        torch.set_num_threads(saved)
    assert seen == [(SERIAL_PREFILL_ROWS, 1), (64, 2)]
