"""The engine's C kernels: built and active, numerically right on every instruction set, and a bad
call is a Python exception naming the problem, never a crash or a silent fallback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench.engine import LlamaEngine, default_smollm2_path
from workbench.engine.model import KVCache, LlamaConfig
from workbench.engine.native import (
    BLOCK_BYTES,
    GGML_TYPE_IDS,
    ISA_NAMES,
    KernelError,
    NativeKernels,
    _build_from_source,
    _extension_path,
    compiler,
    load_kernels,
)

QTYPES = ["Q4_1", "Q4_0", "Q8_0"]


def random_blocks(qtype: str, n: int, k: int, seed: int = 0) -> torch.Tensor:
    """``n`` rows of ``k`` values as valid GGUF blocks (fp16 scales in a realistic range)."""
    rng = np.random.default_rng(seed)
    nb = k // 32
    out = np.zeros((n, nb, BLOCK_BYTES[qtype]), dtype=np.uint8)
    out[..., 0:2] = rng.uniform(0.005, 0.05, (n, nb)).astype(np.float16)[..., None].view(np.uint8)
    if qtype == "Q4_1":
        out[..., 2:4] = rng.uniform(-0.4, 0.0, (n, nb)).astype(np.float16)[..., None].view(np.uint8)
    payload = 2 if qtype != "Q4_1" else 4
    out[..., payload:] = rng.integers(0, 256, (n, nb, BLOCK_BYTES[qtype] - payload), dtype=np.uint8)
    return torch.from_numpy(out.reshape(n, -1))


@pytest.fixture(scope="module")
def kernels() -> NativeKernels:
    return load_kernels()


# -- built, loaded and active ---------------------------------------------------------------------
def test_kernels_load_where_they_can_be_built() -> None:
    """A machine with a C compiler (or an installed build) must have the kernels: no fallback there."""
    if compiler() is None and _extension_path() is None:
        with pytest.raises(Exception, match="compiler"):
            load_kernels()
        return
    k = load_kernels()
    assert k.origin in ("extension", "source build")
    assert k.isa in ISA_NAMES.values()


def test_installed_package_carries_the_built_extension() -> None:
    """`pip install -e .` (make test/run) builds csrc/wbkernels.c into the package via setup.py."""
    ext = _extension_path()
    assert ext is not None, "workbench was installed without its kernels: run `pip install -e .` (make test does)"
    assert load_kernels().origin == "extension"


def test_runtime_dispatch_picks_what_the_cpu_has(kernels: NativeKernels) -> None:
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    if "avx512bw" in flags and "avx512vl" in flags:
        assert kernels.isa == "avx512"
    elif "avx2" in flags and "fma" in flags:
        assert kernels.isa == "avx2"
    else:
        assert kernels.isa == "scalar"


@pytest.mark.skipif(compiler() is None, reason="needs a C compiler to build a second copy")
def test_source_builds_with_the_system_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The development path: the shipped source compiles on its own and exposes every entry."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    built = _build_from_source()
    assert built.is_file() and tmp_path in built.parents
    import ctypes

    lib = ctypes.CDLL(str(built))
    for name in ("wb_gemm", "wb_dequant", "wb_decode_step", "wb_decode_scratch", "wb_isa", "wb_abi_version"):
        assert hasattr(lib, name)


@pytest.mark.parametrize("weights", ["q4q16", "q4"])
def test_block_modes_really_run_with_native_decode(weights: str) -> None:
    """The parity tests compare these modes with transformers' fp32: they must never quietly run fp32."""
    engine = LlamaEngine.load(default_smollm2_path(), threads=1, weights=weights)  # type: ignore[arg-type]
    assert engine.weights == weights, engine.weights_note
    assert engine.requested_weights == weights and engine.fallback_reason is None
    assert engine.model.native_decode
    assert "C kernels" in engine.weights_note and "one native call" in engine.weights_note


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("rows", [1, 3, 4, 5])  # one row; the many-row kernel's groups of 3, 3+1, 3+2
def test_gemm_matches_dense_fp32(kernels: NativeKernels, qtype: str, rows: int) -> None:
    n, k = 200, 576  # n not a multiple of the chunk or pair size: the tails run too
    w = random_blocks(qtype, n, k, seed=rows)
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(1))
    dense = kernels.dequant(qtype, w, n, k)
    got = kernels.gemm(qtype, x, w, n)
    want = F.linear(x.double(), dense.double()).float()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    acc = torch.ones(rows, n)
    kernels.gemm(qtype, x, w, n, acc, accumulate=True)
    assert torch.allclose(acc, got + 1, atol=1e-5)


@pytest.mark.parametrize("qtype", ["Q4_1", "Q4_0"])
@pytest.mark.parametrize("k", [64, 16384, 16416])
def test_q4_rows_right_on_both_sides_of_the_permuted_width(kernels: NativeKernels, qtype: str, k: int) -> None:
    """The vector Q4 kernel reorders x on the stack up to 16384 wide and widens bytes past it:
    each side matches the dense product."""
    n = 5
    w = random_blocks(qtype, n, k, seed=k)
    x = torch.randn(2, k, generator=torch.Generator().manual_seed(k))
    dense = kernels.dequant(qtype, w, n, k)
    want = F.linear(x.double(), dense.double()).float()
    got = kernels.gemm(qtype, x, w, n)
    assert torch.allclose(got, want, atol=1e-3, rtol=1e-4), (got - want).abs().max()


def test_dequant_equals_gguf_reference(kernels: NativeKernels) -> None:
    import gguf

    for qtype in QTYPES:
        w = random_blocks(qtype, 8, 64)
        ref = gguf.quants.dequantize(w.numpy(), gguf.GGMLQuantizationType[qtype]).reshape(8, 64)
        assert torch.equal(kernels.dequant(qtype, w, 8, 64), torch.from_numpy(np.ascontiguousarray(ref))), qtype


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gemm_does_not_depend_on_thread_count(kernels: NativeKernels, threads: int) -> None:
    w = random_blocks("Q4_1", 1000, 576)
    x = torch.randn(1, 576, generator=torch.Generator().manual_seed(2))
    assert torch.equal(kernels.gemm("Q4_1", x, w, 1000, threads=threads), kernels.gemm("Q4_1", x, w, 1000, threads=1))


def _rounded_product_bound(dense: torch.Tensor, x: torch.Tensor, levels: int) -> torch.Tensor:
    """The largest |error| x rounded per 32-block to integers in [-levels, levels] can put in
    x @ W.T: each value moves at most half a step (block amax / levels / 2), plus fp32 slack."""
    amax = x.abs().reshape(x.shape[0], -1, 32).amax(dim=-1, keepdim=True)
    step = (amax / levels / 2).expand(-1, -1, 32).reshape(x.shape).double()
    slack = 1e-5 * (x.double().abs() @ dense.double().abs().T)
    return step @ dense.double().abs().T + slack


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize(("activations", "levels"), [("q16", 32767), ("q8", 127)])
def test_integer_activation_rows_are_the_rounded_product(kernels: NativeKernels, qtype: str, activations: str,
                                                         levels: int) -> None:
    """The q4q16 / q4q8 row kernels of every block type (not only the ones SmolLM2 has) are the
    dense product up to the rounding of x: within the bound, and 16 bits far closer than 8."""
    n, k = 200, 576
    w = random_blocks(qtype, n, k, seed=7)
    x = torch.randn(3, k, generator=torch.Generator().manual_seed(8)) * torch.linspace(0.1, 4, k)
    dense = kernels.dequant(qtype, w, n, k)
    want = F.linear(x.double(), dense.double())
    got = kernels.gemm(qtype, x, w, n, activations=activations)
    err = (got.double() - want).abs()
    assert (err <= _rounded_product_bound(dense, x, levels)).all(), err.max()
    assert err.max() > 0  # really the rounded path
    acc = torch.ones(3, n)
    kernels.gemm(qtype, x, w, n, acc, accumulate=True, activations=activations)
    assert torch.allclose(acc, got + 1, atol=1e-5)
    if activations == "q16":
        coarse = (kernels.gemm(qtype, x, w, n, activations="q8").double() - want).abs()
        assert err.max() * 50 < coarse.max()
    with pytest.raises(KernelError, match="activations"):
        kernels.gemm(qtype, x, w, n, activations="q4")


def test_scalar_and_vector_paths_agree(tmp_path: Path) -> None:
    """Forcing the scalar code in a fresh process gives the same products (up to rounding order),
    for every block type, with fp32 and with 16-bit activations."""
    w = {q: random_blocks(q, 64, 576) for q in QTYPES}
    x = torch.randn(2, 576, generator=torch.Generator().manual_seed(3))
    torch.save({"w": w, "x": x}, tmp_path / "in.pt")
    script = (
        "import sys, torch\n"
        "from workbench.engine.native import load_kernels\n"
        "d = torch.load(sys.argv[1])\n"
        "k = load_kernels()\n"
        "print(k.isa)\n"
        "torch.save({(q, a): k.gemm(q, d['x'], d['w'][q], 64, activations=a) for q in d['w'] for a in ('f32', 'q16')},"
        " sys.argv[2])\n"
    )
    env = {**os.environ, "WORKBENCH_KERNEL_ISA": "scalar"}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "in.pt"), str(tmp_path / "out.pt")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "scalar"
    scalar = torch.load(tmp_path / "out.pt")
    assert len(scalar) == 2 * len(QTYPES)
    for (qtype, act), product in scalar.items():
        vector = load_kernels().gemm(qtype, x, w[qtype], 64, activations=act)
        assert torch.allclose(product, vector, atol=1e-4, rtol=1e-5), (qtype, act, (product - vector).abs().max())


# -- bad calls are exceptions -----------------------------------------------------------------------
def test_python_entries_check_dtype_layout_and_shape(kernels: NativeKernels) -> None:
    w = random_blocks("Q4_1", 64, 576)
    x = torch.randn(1, 576)
    with pytest.raises(KernelError, match="float32"):
        kernels.gemm("Q4_1", x.double(), w, 64)
    with pytest.raises(KernelError, match="contiguous"):
        kernels.gemm("Q4_1", torch.randn(576, 2).t(), w, 64)
    with pytest.raises(KernelError, match="64 rows|rows of 576"):
        kernels.gemm("Q4_1", x, w, 65)
    with pytest.raises(KernelError, match="uint8"):
        kernels.gemm("Q4_1", x, w.float(), 64)
    with pytest.raises(KernelError, match="out must have shape"):
        kernels.gemm("Q4_1", x, w, 64, torch.empty(1, 63))
    with pytest.raises(KernelError, match="Q5_K"):
        kernels.gemm("Q5_K", x, w, 64)
    with pytest.raises(KernelError, match="rows of 500"):
        kernels.dequant("Q4_1", w, 64, 500)


def test_c_entries_check_sizes_before_touching_memory(kernels: NativeKernels) -> None:
    """Straight into C with lying sizes: an error code, nothing written, no crash."""
    w = random_blocks("Q4_1", 64, 576)
    x = torch.randn(1, 576)
    y = torch.full((1, 64), 7.0)
    q41 = GGML_TYPE_IDS["Q4_1"]
    gemm = kernels._gemm
    assert gemm(q41, x.data_ptr(), 575, 1, 576, w.data_ptr(), w.numel(), 64, y.data_ptr(), 64, 1, 0) == -3
    assert gemm(q41, x.data_ptr(), 576, 1, 576, w.data_ptr(), w.numel() - 1, 64, y.data_ptr(), 64, 1, 0) == -3
    assert gemm(q41, x.data_ptr(), 576, 1, 576, w.data_ptr(), w.numel(), 64, y.data_ptr(), 63, 1, 0) == -3
    assert gemm(q41, x.data_ptr(), 576, 1, 570, w.data_ptr(), w.numel(), 64, y.data_ptr(), 64, 1, 0) == -2
    assert gemm(q41, None, 576, 1, 576, w.data_ptr(), w.numel(), 64, y.data_ptr(), 64, 1, 0) == -1
    assert gemm(99, x.data_ptr(), 576, 1, 576, w.data_ptr(), w.numel(), 64, y.data_ptr(), 64, 1, 0) == -4
    assert torch.equal(y, torch.full((1, 64), 7.0))


def test_decode_step_rejects_out_of_range_token_and_position() -> None:
    engine = LlamaEngine.load(default_smollm2_path(), threads=1)
    model = engine.model
    cache = model.new_cache(16)
    with torch.inference_mode():
        with pytest.raises(KernelError, match="out of range"):
            model.forward(torch.tensor([model.config.vocab_size]), 0, cache)
        with pytest.raises(ValueError, match="exceeds the KV cache"):
            model.forward(torch.tensor([1]), 16, cache)
        logits = model.forward(torch.tensor([1]), 0, cache)  # the engine still works afterwards
    assert logits.shape == (1, model.config.vocab_size) and torch.isfinite(logits).all()


def test_prefill_step_rejects_bad_tokens_positions_and_buffers() -> None:
    engine = LlamaEngine.load(default_smollm2_path(), threads=1)
    model = engine.model
    native = model._native
    cache = model.new_cache(16)
    with torch.inference_mode():
        with pytest.raises(KernelError, match="out of range"):
            model.forward(torch.tensor([1, 2, model.config.vocab_size]), 0, cache)
        with pytest.raises(KernelError, match="out of range"):
            model.forward(torch.tensor([1, -1]), 0, cache)
        with pytest.raises(ValueError, match="exceeds the KV cache"):
            model.forward(torch.tensor([1, 2, 3]), 14, cache)
        model._ensure_rope(16)
        small = torch.empty(8)
        with pytest.raises(KernelError, match="smaller"):
            native.k.prefill_step(native.ptrs, native.cfg_t, 1e-5, torch.tensor([1, 2], dtype=torch.int32), 0,
                                  cache.data, model._cos, model._sin, small, native.logits, 1)
        with pytest.raises(KernelError, match="int32"):
            native.k.prefill_step(native.ptrs, native.cfg_t, 1e-5, torch.tensor([1, 2]), 0,
                                  cache.data, model._cos, model._sin, small, native.logits, 1)
        logits = model.forward(torch.tensor([1, 2, 3]), 0, cache)  # the engine still works afterwards
    assert logits.shape == (1, model.config.vocab_size) and torch.isfinite(logits).all()


def test_kv_cache_grows_and_keeps_what_it_holds() -> None:
    cfg = LlamaConfig(
        vocab_size=10, hidden_size=64, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1,
        head_dim=32, rope_theta=1e4, rope_scale=1.0, rms_eps=1e-5, context_length=4096, tie_embeddings=True,
        bos_token_id=None, eos_token_id=None,
    )
    cache = KVCache(cfg, 1000)
    assert cache.allocated == KVCache.INITIAL < 1000
    cache.data[..., :5, :] = 3.0
    cache.ensure(300)
    assert 300 <= cache.allocated <= 1000
    assert (cache.data[..., :5, :] == 3.0).all() and (cache.data[..., 5:, :] == 0).all()
    with pytest.raises(ValueError, match="exceeds"):
        cache.ensure(1001)


def _decode_step_logits(engine: LlamaEngine) -> torch.Tensor:
    """Logits of one decode step (token 504) after the France prompt."""
    ids = torch.tensor(engine.chat_input_ids([{"role": "user", "content": "What is the capital of France?"}]))
    with torch.inference_mode():
        cache = engine.model.new_cache(ids.numel() + 1)
        engine.model.forward(ids, 0, cache)
        return engine.model.forward(torch.tensor([504]), ids.numel(), cache)[0]


def test_default_decodes_with_16_bit_activations_within_a_hair_of_fp32_math() -> None:
    """The default `q4q16` is really another computation than `q4` (16-bit activations), says so,
    and its logits stay within 1e-3 of the largest logit of `q4`'s (fp32 math): measured 3e-4
    at most over 128 decode steps of four chat prompts. Greedy parity is test_llama_engine's."""
    from workbench.engine import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS == "q4q16"
    default = LlamaEngine.load(default_smollm2_path(), threads=1)
    exact = LlamaEngine.load(default_smollm2_path(), threads=1, weights="q4")
    assert default.weights == "q4q16" and "16-bit activations" in default.weights_note
    assert "INEXACT" not in default.weights_note and "fp32 math" in exact.weights_note
    a, b = _decode_step_logits(default), _decode_step_logits(exact)
    assert not torch.equal(a, b)  # really a different computation
    assert float((a - b).abs().max()) < 1e-3 * float(b.abs().max()), (a - b).abs().max()
    assert int(a.argmax()) == int(b.argmax())


def test_decode_step_refuses_an_unknown_activation_mode() -> None:
    engine = LlamaEngine.load(default_smollm2_path(), threads=1)
    native = engine.model._native
    native.cfg_t[-1] = 3  # ACT_F32, ACT_Q8 and ACT_Q16 are 0, 1 and 2
    cache = engine.model.new_cache(8)
    with torch.inference_mode(), pytest.raises(KernelError, match="decode step"):
        engine.model.forward(torch.tensor([1]), 0, cache)


def test_fast_inexact_mode_is_labelled_close_and_never_default() -> None:
    """`q4q8` (8-bit activations, integer dot products) is opt-in, says it is inexact, and stays close."""
    from workbench.engine import DEFAULT_WEIGHTS, SamplingParams

    assert DEFAULT_WEIGHTS != "q4q8"
    fast = LlamaEngine.load(default_smollm2_path(), threads=1, weights="q4q8")
    exact = LlamaEngine.load(default_smollm2_path(), threads=1, weights="q4")  # fp32 math
    assert fast.weights == "q4q8" and "INEXACT" in fast.weights_note and "INEXACT" not in exact.weights_note
    a, b = _decode_step_logits(fast), _decode_step_logits(exact)
    assert not torch.equal(a, b)  # really a different computation
    # 8-bit activations put single-step logits at cosine 0.991-0.9997 from fp32 (10 decode steps
    # of this prompt, measured with two attention codes): a rounding change anywhere upstream flips
    # some 8-bit roundings and moves a step anywhere in that range
    assert float(F.cosine_similarity(a, b, dim=0)) > 0.98
    assert int(a.argmax()) == int(b.argmax())
    ids = fast.chat_input_ids([{"role": "user", "content": "What is the capital of France?"}])
    text = "".join(fast.generate_text(ids, SamplingParams(max_new_tokens=24)))
    assert "Paris" in text


@pytest.mark.parametrize("weights", ["q4q16", "q4"])
def test_scalar_build_runs_the_whole_model_like_the_vector_one(tmp_path: Path, weights: str) -> None:
    """The native prefill and decode steps on the scalar code (a CPU without AVX2) give the vector
    code's logits up to rounding order."""
    script = (
        "import sys, torch\n"
        "from workbench.engine import LlamaEngine\n"
        f"engine = LlamaEngine.load(threads=1, weights={weights!r})\n"
        "ids = torch.tensor(engine.chat_input_ids([{'role': 'user', 'content': 'What is the capital of France?'}]))\n"
        "cache = engine.model.new_cache(ids.numel() + 2)\n"
        "with torch.inference_mode():\n"
        "    prefill = engine.model.forward(ids, 0, cache)[0]\n"
        "    step = engine.model.forward(torch.tensor([504]), ids.numel(), cache)[0]\n"
        "print(engine.model._kernels.isa)\n"
        "torch.save({'prefill': prefill, 'step': step}, sys.argv[1])\n"
    )
    got = {}
    for isa in ("scalar", "avx2"):
        env = {**os.environ, "WORKBENCH_KERNEL_ISA": isa}
        out = subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{isa}.pt")], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        got[isa] = (out.stdout.strip(), torch.load(tmp_path / f"{isa}.pt"))
    assert got["scalar"][0] == "scalar"
    assert got["avx2"][0] == ("avx2" if "avx2" in Path("/proc/cpuinfo").read_text() else "scalar")
    for key in ("prefill", "step"):
        a, b = got["scalar"][1][key], got["avx2"][1][key]
        if key == "step" and weights == "q4q16":
            # 16-bit rounding of the activations amplifies the codes' different addition orders (a
            # value on a rounding edge goes one way or the other): each is as close to fp32 math as
            # the other (measured 0.005 and 0.006 of max 24.6 from q4's step), so 1e-3 of the max
            assert float((a - b).abs().max()) < 1e-3 * float(b.abs().max()), (a - b).abs().max()
        else:
            assert torch.allclose(a, b, atol=2e-3, rtol=1e-4), (key, (a - b).abs().max())
        assert int(a.argmax()) == int(b.argmax())
