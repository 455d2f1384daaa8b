"""Small C kernels that multiply fp32 activations by GGUF Q4_1/Q4_0/Q8_0 blocks in place.

Why: this torch build's 4-bit/8-bit CPU matmuls are fast only with bfloat16 activations and
bfloat16 outputs, which is enough noise to change greedy choices against an fp32 reference. These
kernels read the GGUF blocks as stored (0.625 bytes/param for Q4_1), dequantize in registers and
accumulate in fp32, so results match the dequantized fp32 model up to summation order while moving
~6x fewer bytes than fp32 weights. They are compiled once per machine with the system C compiler
(``cc``/``gcc``) into a user cache directory and loaded with ctypes; OpenMP comes from the
``libgomp.so.1`` torch already loaded, so both share one thread pool setting per call.

If no compiler is available, :func:`load_kernels` raises :class:`NativeUnavailable` and the engine
falls back to another weights mode.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch  # noqa: F401  (loads the libgomp the kernels share)

from ._cache import engine_cache_dir

__all__ = ["NativeKernels", "NativeUnavailable", "load_kernels"]

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float h2f(const uint8_t *p) {
    _Float16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* Per-block sums of x; the Q4 minimum/offset term is m * sum(x_block). */
static float *block_sums(const float *x, int M, int K) {
    const int nb = K / 32;
    float *xs = (float *)malloc(sizeof(float) * (size_t)M * nb);
    if (!xs) return NULL;
    for (int r = 0; r < M; r++)
        for (int b = 0; b < nb; b++) {
            float s = 0.0f;
            for (int i = 0; i < 32; i++) s += x[(size_t)r * K + b * 32 + i];
            xs[(size_t)r * nb + b] = s;
        }
    return xs;
}

/* Dot products of one activation row with one weight row of blocks. Explicit AVX-512 / AVX2
   paths because the compiler does not vectorize the nibble unpacking well on its own. */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
static inline float dot_q4(const uint8_t *row, int nb, int bsz, int has_min, const float *x,
                           const float *xs) {
    __m512 acc = _mm512_setzero_ps();
    const __m128i mask = _mm_set1_epi8(0x0F);
    float macc = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bsz;
        const float d = h2f(blk);
        const uint8_t *q = blk + (has_min ? 4 : 2);
        const __m128i qb = _mm_loadu_si128((const __m128i *)q);
        const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(qb, mask)));
        const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qb, 4), mask)));
        const float *xb = x + b * 32;
        __m512 t = _mm512_mul_ps(lo, _mm512_loadu_ps(xb));
        t = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), t);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), t, acc);
        macc += (has_min ? h2f(blk + 2) : -8.0f * d) * xs[b];
    }
    return _mm512_reduce_add_ps(acc) + macc;
}
#define WB_HAVE_DOT4 1
/* Four rows at once: independent accumulator chains keep the FMA units busy. */
static inline void dot4_q4(const uint8_t *row, size_t stride, int nb, int bsz, int has_min,
                           const float *x, const float *xs, float *out) {
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float macc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const __m128i mask = _mm_set1_epi8(0x0F);
    const int off = has_min ? 4 : 2;
    for (int b = 0; b < nb; b++) {
        const float *xb = x + b * 32;
        const __m512 x0 = _mm512_loadu_ps(xb), x1 = _mm512_loadu_ps(xb + 16);
        for (int j = 0; j < 4; j++) {
            const uint8_t *blk = row + j * stride + (size_t)b * bsz;
            const float d = h2f(blk);
            const __m128i qb = _mm_loadu_si128((const __m128i *)(blk + off));
            const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(qb, mask)));
            const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qb, 4), mask)));
            const __m512 t = _mm512_fmadd_ps(hi, x1, _mm512_mul_ps(lo, x0));
            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(d), t, acc[j]);
            macc[j] += (has_min ? h2f(blk + 2) : -8.0f * d) * xs[b];
        }
    }
    for (int j = 0; j < 4; j++) out[j] = _mm512_reduce_add_ps(acc[j]) + macc[j];
}
static inline float dot_q8(const uint8_t *row, int nb, const float *x) {
    __m512 acc = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        const float d = h2f(blk);
        const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
        const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
        const float *xb = x + b * 32;
        __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(xb));
        t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(xb + 16), t);
        acc = _mm512_fmadd_ps(_mm512_set1_ps(d), t, acc);
    }
    return _mm512_reduce_add_ps(acc);
}
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline __m256 u8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
static inline __m256 i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
static inline float dot_q4(const uint8_t *row, int nb, int bsz, int has_min, const float *x,
                           const float *xs) {
    __m256 acc = _mm256_setzero_ps();
    const __m128i mask = _mm_set1_epi8(0x0F);
    float macc = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bsz;
        const float d = h2f(blk);
        const uint8_t *q = blk + (has_min ? 4 : 2);
        const __m128i qb = _mm_loadu_si128((const __m128i *)q);
        const __m128i lo = _mm_and_si128(qb, mask);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(qb, 4), mask);
        const float *xb = x + b * 32;
        __m256 t = _mm256_mul_ps(u8x8(lo), _mm256_loadu_ps(xb));
        t = _mm256_fmadd_ps(u8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xb + 8), t);
        t = _mm256_fmadd_ps(u8x8(hi), _mm256_loadu_ps(xb + 16), t);
        t = _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xb + 24), t);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), t, acc);
        macc += (has_min ? h2f(blk + 2) : -8.0f * d) * xs[b];
    }
    return hsum256(acc) + macc;
}
static inline float dot_q8(const uint8_t *row, int nb, const float *x) {
    __m256 acc = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        const float d = h2f(blk);
        const float *xb = x + b * 32;
        __m256 t = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            const __m128i qj = _mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * j));
            t = _mm256_fmadd_ps(i8x8(qj), _mm256_loadu_ps(xb + 8 * j), t);
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), t, acc);
    }
    return hsum256(acc);
}
#else
static inline float dot_q4(const uint8_t *row, int nb, int bsz, int has_min, const float *x,
                           const float *xs) {
    float acc[16] = {0};
    float macc = 0.0f;
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * bsz;
        const float d = h2f(blk);
        const uint8_t *q = blk + (has_min ? 4 : 2);
        const float *xb = x + b * 32;
        for (int i = 0; i < 16; i++)
            acc[i] += d * ((float)(q[i] & 15) * xb[i] + (float)(q[i] >> 4) * xb[i + 16]);
        macc += (has_min ? h2f(blk + 2) : -8.0f * d) * xs[b];
    }
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += acc[i];
    return s + macc;
}
static inline float dot_q8(const uint8_t *row, int nb, const float *x) {
    float acc[32] = {0};
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * 34;
        const float d = h2f(blk);
        const int8_t *q = (const int8_t *)(blk + 2);
        const float *xb = x + b * 32;
        for (int i = 0; i < 32; i++) acc[i] += d * ((float)q[i] * xb[i]);
    }
    float s = 0.0f;
    for (int i = 0; i < 32; i++) s += acc[i];
    return s;
}
#endif

static int q4_gemm(const float *x, int M, int K, const uint8_t *w, int N, float *y, int nthreads,
                   int acc, int bsz, int has_min) {
    const int nb = K / 32;
    float *xsum = block_sums(x, M, K);
    if (!xsum) return -1;
    const size_t stride = (size_t)nb * bsz;
#ifdef WB_HAVE_DOT4
    const int N4 = N / 4;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int g = 0; g < N4; g++) {
        const int n = g * 4;
        for (int r = 0; r < M; r++) {
            float out[4];
            dot4_q4(w + n * stride, stride, nb, bsz, has_min, x + (size_t)r * K, xsum + (size_t)r * nb, out);
            for (int j = 0; j < 4; j++) y[(size_t)r * N + n + j] = out[j] + (acc ? y[(size_t)r * N + n + j] : 0.0f);
        }
    }
    for (int n = N4 * 4; n < N; n++)
#else
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int n = 0; n < N; n++)
#endif
    {
        const uint8_t *row = w + (size_t)n * stride;
        for (int r = 0; r < M; r++)
            y[(size_t)r * N + n] = dot_q4(row, nb, bsz, has_min, x + (size_t)r * K, xsum + (size_t)r * nb)
                                   + (acc ? y[(size_t)r * N + n] : 0.0f);
    }
    free(xsum);
    return 0;
}

/* y[M,N] (+)= x[M,K] . W[N,K]^T for W rows stored as GGUF blocks; acc != 0 adds into y
   (the residual connection, saving a separate add). */
int wb_q4_1_gemm(const float *x, int M, int K, const uint8_t *w, int N, float *y, int nthreads, int acc) {
    return q4_gemm(x, M, K, w, N, y, nthreads, acc, 20, 1);
}

int wb_q4_0_gemm(const float *x, int M, int K, const uint8_t *w, int N, float *y, int nthreads, int acc) {
    return q4_gemm(x, M, K, w, N, y, nthreads, acc, 18, 0);
}

int wb_q8_0_gemm(const float *x, int M, int K, const uint8_t *w, int N, float *y, int nthreads, int acc) {
    const int nb = K / 32;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int n = 0; n < N; n++) {
        const uint8_t *row = w + (size_t)n * nb * 34;
        for (int r = 0; r < M; r++)
            y[(size_t)r * N + n] = dot_q8(row, nb, x + (size_t)r * K) + (acc ? y[(size_t)r * N + n] : 0.0f);
    }
    return 0;
}
"""

_DEQUANT_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float h2f(const uint8_t *p) {
    _Float16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* Exactly gguf-py's arithmetic ((d*q) + m, no fused multiply-add), so prefill through a
   dequantized matrix sees the same weights as the fp32 reference. Compiled with
   -ffp-contract=off for that reason. */
#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif
void wb_q4_1_dequant(const uint8_t *w, int N, int K, float *out, int nthreads) {
    const int nb = K / 32;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int n = 0; n < N; n++) {
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + ((size_t)n * nb + b) * 20;
            const float d = h2f(blk), m = h2f(blk + 2);
            float *o = out + (size_t)n * K + b * 32;
#if defined(__AVX512F__) && defined(__AVX512BW__)
            /* separate multiply and add: the same two roundings as gguf-py */
            const __m128i qb = _mm_loadu_si128((const __m128i *)(blk + 4));
            const __m128i mask = _mm_set1_epi8(0x0F);
            const __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);
            const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(qb, mask)));
            const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qb, 4), mask)));
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_mul_ps(vd, lo), vm));
            _mm512_storeu_ps(o + 16, _mm512_add_ps(_mm512_mul_ps(vd, hi), vm));
            continue;
#endif
            for (int i = 0; i < 16; i++) {
                float lo = d * (float)(blk[4 + i] & 15);
                float hi = d * (float)(blk[4 + i] >> 4);
                o[i] = lo + m;
                o[i + 16] = hi + m;
            }
        }
    }
}

void wb_q4_0_dequant(const uint8_t *w, int N, int K, float *out, int nthreads) {
    const int nb = K / 32;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int n = 0; n < N; n++) {
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + ((size_t)n * nb + b) * 18;
            const float d = h2f(blk);
            float *o = out + (size_t)n * K + b * 32;
            for (int i = 0; i < 16; i++) {
                o[i] = d * (float)((int)(blk[2 + i] & 15) - 8);
                o[i + 16] = d * (float)((int)(blk[2 + i] >> 4) - 8);
            }
        }
    }
}

/* Decode-step helpers (one token). Written in the reference's operation order and compiled
   without FMA contraction so they round like the torch ops they replace. */
void wb_rmsnorm(const float *x, const float *w, int K, float eps, float *out) {
    float ss = 0.0f;
    for (int i = 0; i < K; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)K + eps);
    for (int i = 0; i < K; i++) out[i] = w[i] * (x[i] * r);
}

void wb_silu_mul(const float *gu, int I, float *out) {
    for (int i = 0; i < I; i++) {
        const float g = gu[i];
        out[i] = (g / (1.0f + expf(-g))) * gu[I + i];
    }
}

/* Rotary embedding on the Q and K heads of one fused qkv row (rotate-half layout), K/V written
   into the cache at `pos`, then causal attention of every query head over positions 0..pos
   (grouped-query: query head h reads kv head h / (nh / nkv)). */
int wb_rope_attend(float *qkv, const float *cos_row, const float *sin_row, float *kc, float *vc,
                   int pos, int cap, int nh, int nkv, int hd, float *out) {
    const int half = hd / 2;
    for (int h = 0; h < nh + nkv; h++) {
        float *v = qkv + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            const float a = v[i], b = v[i + half];
            v[i] = a * cos_row[i] + (-b) * sin_row[i];
            v[i + half] = b * cos_row[i + half] + a * sin_row[i + half];
        }
    }
    for (int j = 0; j < nkv; j++) {
        memcpy(kc + ((size_t)j * cap + pos) * hd, qkv + (size_t)(nh + j) * hd, sizeof(float) * hd);
        memcpy(vc + ((size_t)j * cap + pos) * hd, qkv + (size_t)(nh + nkv + j) * hd, sizeof(float) * hd);
    }
    float *p = (float *)malloc(sizeof(float) * (size_t)(pos + 1));
    if (!p) return -1;
    const float scale = 1.0f / sqrtf((float)hd);
    const int rep = nh / nkv;
    for (int h = 0; h < nh; h++) {
        const int j = h / rep;
        const float *q = qkv + (size_t)h * hd;
        const float *kj = kc + (size_t)j * cap * hd;
        const float *vj = vc + (size_t)j * cap * hd;
        float mx = -INFINITY;
        for (int t = 0; t <= pos; t++) {
            float s = 0.0f;
            for (int d = 0; d < hd; d++) s += q[d] * kj[(size_t)t * hd + d];
            s *= scale;
            p[t] = s;
            if (s > mx) mx = s;
        }
        float sum = 0.0f;
        for (int t = 0; t <= pos; t++) {
            p[t] = expf(p[t] - mx);
            sum += p[t];
        }
        float *o = out + (size_t)h * hd;
        for (int d = 0; d < hd; d++) o[d] = 0.0f;
        for (int t = 0; t <= pos; t++) {
            const float w = p[t] / sum;
            for (int d = 0; d < hd; d++) o[d] += w * vj[(size_t)t * hd + d];
        }
    }
    free(p);
    return 0;
}

void wb_q8_0_dequant(const uint8_t *w, int N, int K, float *out, int nthreads) {
    const int nb = K / 32;
    #pragma omp parallel for schedule(static) num_threads(nthreads)
    for (int n = 0; n < N; n++) {
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + ((size_t)n * nb + b) * 34;
            const float d = h2f(blk);
            const int8_t *q = (const int8_t *)(blk + 2);
            float *o = out + (size_t)n * K + b * 32;
            for (int i = 0; i < 32; i++) o[i] = d * (float)q[i];
        }
    }
}
"""

_FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared"]
BLOCK_BYTES = {"Q4_1": 20, "Q4_0": 18, "Q8_0": 34}


class NativeUnavailable(RuntimeError):
    """The C kernels could not be built or loaded on this machine."""


class NativeKernels:
    """ctypes handles to the compiled kernels."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self._lib = lib
        vp, i = ctypes.c_void_p, ctypes.c_int
        self.gemm = {}
        self.dequant = {}
        for qt in BLOCK_BYTES:
            g = getattr(lib, f"wb_{qt.lower()}_gemm")
            g.argtypes = [vp, i, i, vp, i, vp, i, i]
            g.restype = i
            self.gemm[qt] = g
            dq = getattr(lib, f"wb_{qt.lower()}_dequant")
            dq.argtypes = [vp, i, i, vp, i]
            dq.restype = None
            self.dequant[qt] = dq
        f = ctypes.c_float
        self.rmsnorm = lib.wb_rmsnorm
        self.rmsnorm.argtypes = [vp, vp, i, f, vp]
        self.rmsnorm.restype = None
        self.silu_mul = lib.wb_silu_mul
        self.silu_mul.argtypes = [vp, i, vp]
        self.silu_mul.restype = None
        self.rope_attend = lib.wb_rope_attend
        self.rope_attend.argtypes = [vp, vp, vp, vp, vp, i, i, i, i, i, vp]
        self.rope_attend.restype = i


_lock = threading.Lock()
_loaded: NativeKernels | None = None


def _cache_dir() -> Path:
    return engine_cache_dir("kernels")


def _cpu_signature() -> str:
    """CPU flags decide what ``-march=native`` emits, so they are part of the cache key."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    raise NativeUnavailable("no C compiler (cc/gcc/clang) found on PATH")


def load_kernels() -> NativeKernels:
    """Compile (first time only) and load the kernels; raises :class:`NativeUnavailable`."""
    global _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        import torch.utils  # noqa: F401  (make sure torch's libgomp is loaded first)

        _ = torch.get_num_threads()
        cc = _compiler()
        key = hashlib.sha256(
            "\n".join([_SOURCE, _DEQUANT_SOURCE, " ".join(_FLAGS), cc, _cpu_signature()]).encode()
        ).hexdigest()[:16]
        target = _cache_dir() / f"wbkernels-{key}.so"
        if not target.exists():
            _build(cc, target)
        try:
            _loaded = NativeKernels(ctypes.CDLL(str(target)))
        except (OSError, AttributeError) as exc:
            raise NativeUnavailable(f"cannot load {target}: {exc}") from exc
        return _loaded


def _build(cc: str, target: Path) -> None:
    """Compile both sources into ``target`` atomically (parallel processes may race here)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        gemm_c = Path(tmp) / "gemm.c"
        deq_c = Path(tmp) / "dequant.c"
        gemm_c.write_text(_SOURCE)
        deq_c.write_text(_DEQUANT_SOURCE)
        objs = []
        for src, extra in ((gemm_c, []), (deq_c, ["-ffp-contract=off"])):
            obj = src.with_suffix(".o")
            cmd = [cc, *_FLAGS[:-1], *extra, "-c", str(src), "-o", str(obj)]
            _run(cmd)
            objs.append(str(obj))
        out = Path(tmp) / "lib.so"
        _run([cc, "-shared", "-fopenmp", *objs, "-o", str(out), "-lm"])
        os.replace(out, target)


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NativeUnavailable(f"compiler failed to run: {exc}") from exc
    if proc.returncode != 0:
        raise NativeUnavailable(f"compiling engine kernels failed: {proc.stderr.strip()[:2000]}")
