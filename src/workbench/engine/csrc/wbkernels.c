/* workbench engine kernels: GGUF block-quantized matrix-vector products with fp32 math, and one
 * whole decode step of a llama decoder in a single call.
 *
 * Built at install time as a plain shared library (setup.py's Extension) and loaded with ctypes
 * by workbench/engine/native.py. One build runs on any x86-64: the hot loops exist in scalar,
 * AVX2+FMA+F16C and AVX-512 versions (GCC/Clang `target` attributes) and the best one the CPU
 * supports is picked at run time with __builtin_cpu_supports.
 *
 * Every exported entry checks its sizes and pointers before touching memory and returns 0 or a
 * negative WB_E* code; native.py turns a non-zero code into a Python exception (it also checks
 * dtype and contiguity of the tensors it passes, which C cannot see).
 *
 * Compiled with -ffp-contract=off: the scalar parts (rmsnorm, rope, softmax, silu) are written in
 * the reference's operation order and must round like the torch ops they replace.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define WB_X86 1
#endif

#define WB_OK 0
#define WB_E_NULL -1      /* a null pointer */
#define WB_E_SHAPE -2     /* a dimension is not positive, or not a multiple of the block size */
#define WB_E_SIZE -3      /* a buffer is smaller than the dimensions need */
#define WB_E_QTYPE -4     /* unknown quantization type */
#define WB_E_RANGE -5     /* token id or position out of range */
#define WB_E_NOMEM -6     /* scratch allocation failed */
#define WB_E_CONFIG -7    /* inconsistent model configuration */

/* quantization types (GGML ids) */
#define WB_Q4_0 2
#define WB_Q4_1 3
#define WB_Q8_0 8

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static int g_isa = -1;

static int block_bytes(int qtype) {
    switch (qtype) {
    case WB_Q4_0: return 18;
    case WB_Q4_1: return 20;
    case WB_Q8_0: return 34;
    default: return 0;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* fp16 -> fp32 without hardware support (scalar path) */
static inline float h2f_soft(const uint8_t *p) {
    const uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) { man <<= 1; exp--; }
            man &= 0x3FF;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* ---------------------------------------------------------------------------------------------- */
/* Row kernels: y[n] (+)= dot(W[n], x) for n in [n0, n1). `xs` holds per-32-block sums of x (the
 * Q4 minimum term is m * sum(x_block)). Each row's arithmetic is the same whichever kernel runs
 * it within one ISA, so results do not depend on the thread count. */
typedef void (*rows_fn)(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                        float *y, int n0, int n1, int acc);

static void q4_rows_scalar(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                           float *y, int n0, int n1, int acc, int has_min) {
    const int bsz = has_min ? 20 : 18;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * stride;
        float a[16] = {0};
        float macc = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * bsz;
            const float d = h2f_soft(blk);
            const uint8_t *q = blk + (has_min ? 4 : 2);
            const float *xb = x + b * 32;
            for (int i = 0; i < 16; i++)
                a[i] += d * ((float)(q[i] & 15) * xb[i] + (float)(q[i] >> 4) * xb[i + 16]);
            macc += (has_min ? h2f_soft(blk + 2) : -8.0f * d) * xs[b];
        }
        float s = 0.0f;
        for (int i = 0; i < 16; i++) s += a[i];
        y[n] = s + macc + (acc ? y[n] : 0.0f);
    }
}
static void q4_1_rows_scalar(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                             float *y, int n0, int n1, int acc) {
    q4_rows_scalar(w, stride, nb, x, xs, y, n0, n1, acc, 1);
}
static void q4_0_rows_scalar(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                             float *y, int n0, int n1, int acc) {
    q4_rows_scalar(w, stride, nb, x, xs, y, n0, n1, acc, 0);
}
static void q8_0_rows_scalar(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                             float *y, int n0, int n1, int acc) {
    (void)xs;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * stride;
        float a[32] = {0};
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * 34;
            const float d = h2f_soft(blk);
            const int8_t *q = (const int8_t *)(blk + 2);
            const float *xb = x + b * 32;
            for (int i = 0; i < 32; i++) a[i] += d * ((float)q[i] * xb[i]);
        }
        float s = 0.0f;
        for (int i = 0; i < 32; i++) s += a[i];
        y[n] = s + (acc ? y[n] : 0.0f);
    }
}

/* ---- fast inexact mode: activations quantized to 8 bits ------------------------------------
 * As llama.cpp does: each block of 32 activations becomes int8 values and one fp32 scale, and the
 * products with 4-/8-bit weights are integer dot products. About 2x less work per block, but the
 * activations carry ~0.4% rounding, so greedy output drifts from the fp32 reference after some
 * tokens. Only the labelled `q4q8` weights mode uses it; never the default.
 *
 * Packed activation layout (passed where the fp32 kernels take `x`): int8 q[K], then fp32 d[K/32],
 * then int32 s[K/32] (the sum of each block's q, for Q4_0's -8 offset). */
static inline const int8_t *act_q(const float *packed) { return (const int8_t *)packed; }
static inline const float *act_d(const float *packed, int nb) { return (const float *)((const int8_t *)packed + nb * 32); }
static inline const int32_t *act_s(const float *packed, int nb) { return (const int32_t *)(act_d(packed, nb) + nb); }
static int64_t act_floats(int K) { return K / 4 + 2 * (K / 32); }

static void quantize_act_scalar(const float *x, int K, float *packed) {
    const int nb = K / 32;
    int8_t *q = (int8_t *)packed;
    float *d = (float *)(q + K);
    int32_t *sums = (int32_t *)(d + nb);
    for (int b = 0; b < nb; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        const float scale = amax / 127.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            const int v = (int)lrintf(x[b * 32 + i] * inv);
            q[b * 32 + i] = (int8_t)v;
            sum += v;
        }
        d[b] = scale;
        sums[b] = sum;
    }
}

/* ---- 16-bit activations (`q4q16`) ------------------------------------------------------------
 * Each block of 32 activations becomes int16 values and one fp32 scale (amax / 32767), so the
 * weights' 4- or 8-bit integers meet them in integer multiply-adds (vpmaddwd: 16 products per
 * instruction, against 8 per FMA after an int->float conversion in the fp32 kernels). An
 * activation is off by at most 1/65534 of its block's largest value -- 256x finer than q4q8's
 * 8 bits. The Q4 offset terms (m * sum x, and -8 d * sum x for Q4_0) keep the exact fp32 block
 * sums; the integer sums are exact; the per-block scale product d_w * d_x rounds once.
 *
 * Packed layout: int16 q[K], then fp32 d[K/32]. */
static int64_t act16_floats(int K) { return K / 2 + K / 32; }
/* Floats of a buffer that holds either packing of K activations. */
static int64_t act_buf_floats(int K) { return act16_floats(K) > act_floats(K) ? act16_floats(K) : act_floats(K); }
static inline const int16_t *act16_q(const float *packed) { return (const int16_t *)packed; }
static inline const float *act16_d(const float *packed, int nb) { return (const float *)((const int16_t *)packed + nb * 32); }

static void quantize_act16_scalar(const float *x, int K, float *packed) {
    const int nb = K / 32;
    int16_t *q = (int16_t *)packed;
    float *d = (float *)(q + K);
    for (int b = 0; b < nb; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        const float scale = amax / 32767.0f, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
        for (int i = 0; i < 32; i++) q[b * 32 + i] = (int16_t)lrintf(x[b * 32 + i] * inv);
        d[b] = scale;
    }
}

/* Scalar rows against integer activations, one family per packing (T: int8_t for q4q8, int16_t
 * for q4q16; Q/D: its accessors). The Q4 offsets (m, and Q4_0's -8 d) meet the exact fp32 block
 * sums of x; the products of the integers are summed exactly. */
#define INT_ACT_ROWS_SCALAR(NAME, T, Q, D)                                                                 \
    static void q4_rows_##NAME##_scalar(const uint8_t *w, size_t stride, int nb, const float *xp,         \
                                        const float *xs, float *y, int n0, int n1, int acc, int has_min) { \
        const int bsz = has_min ? 20 : 18;                                                                 \
        const T *xq = Q(xp);                                                                               \
        const float *xd = D(xp, nb);                                                                       \
        for (int n = n0; n < n1; n++) {                                                                    \
            const uint8_t *row = w + (size_t)n * stride;                                                   \
            float a = 0.0f, macc = 0.0f;                                                                   \
            for (int b = 0; b < nb; b++) {                                                                 \
                const uint8_t *blk = row + (size_t)b * bsz;                                                \
                const uint8_t *q = blk + (has_min ? 4 : 2);                                                \
                const T *xb = xq + b * 32;                                                                 \
                int32_t isum = 0;                                                                          \
                for (int i = 0; i < 16; i++) isum += (q[i] & 15) * xb[i] + (q[i] >> 4) * xb[i + 16];       \
                const float d = h2f_soft(blk);                                                             \
                a += d * xd[b] * (float)isum;                                                              \
                macc += (has_min ? h2f_soft(blk + 2) : -8.0f * d) * xs[b];                                 \
            }                                                                                              \
            y[n] = a + macc + (acc ? y[n] : 0.0f);                                                         \
        }                                                                                                  \
    }                                                                                                      \
    static void q4_1_rows_##NAME##_scalar(const uint8_t *w, size_t stride, int nb, const float *x,        \
                                          const float *xs, float *y, int n0, int n1, int acc) {            \
        q4_rows_##NAME##_scalar(w, stride, nb, x, xs, y, n0, n1, acc, 1);                                  \
    }                                                                                                      \
    static void q4_0_rows_##NAME##_scalar(const uint8_t *w, size_t stride, int nb, const float *x,        \
                                          const float *xs, float *y, int n0, int n1, int acc) {            \
        q4_rows_##NAME##_scalar(w, stride, nb, x, xs, y, n0, n1, acc, 0);                                  \
    }                                                                                                      \
    static void q8_0_rows_##NAME##_scalar(const uint8_t *w, size_t stride, int nb, const float *xp,       \
                                          const float *xs, float *y, int n0, int n1, int acc) {            \
        (void)xs;                                                                                          \
        const T *xq = Q(xp);                                                                               \
        const float *xd = D(xp, nb);                                                                       \
        for (int n = n0; n < n1; n++) {                                                                    \
            const uint8_t *row = w + (size_t)n * stride;                                                   \
            float a = 0.0f;                                                                                \
            for (int b = 0; b < nb; b++) {                                                                 \
                const uint8_t *blk = row + (size_t)b * 34;                                                 \
                const int8_t *q = (const int8_t *)(blk + 2);                                               \
                const T *xb = xq + b * 32;                                                                 \
                int32_t isum = 0;                                                                          \
                for (int i = 0; i < 32; i++) isum += q[i] * xb[i];                                         \
                a += h2f_soft(blk) * xd[b] * (float)isum;                                                  \
            }                                                                                              \
            y[n] = a + (acc ? y[n] : 0.0f);                                                                \
        }                                                                                                  \
    }
INT_ACT_ROWS_SCALAR(q8a, int8_t, act_q, act_d)
INT_ACT_ROWS_SCALAR(q16a, int16_t, act16_q, act16_d)

static float dot_scalar(const float *a, const float *b, int n) {
    float acc = 0.0f;
    for (int d = 0; d < n; d++) acc += a[d] * b[d];
    return acc;
}
static void axpy_scalar(float *o, float w, const float *v, int n) {
    for (int d = 0; d < n; d++) o[d] += w * v[d];
}

#ifdef WB_X86
/* ---- AVX2 + FMA + F16C ---------------------------------------------------------------------- */
#define T_AVX2 __attribute__((target("avx2,fma,f16c")))

T_AVX2 static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
T_AVX2 static inline float h2f_avx2(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}
T_AVX2 static inline __m256 u8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
T_AVX2 static inline __m256 i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }

/* Attention's two inner loops over one head: q.k (eight lanes, two chains) and o += w * v. */
T_AVX2 static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}
T_AVX2 static void axpy_avx2(float *o, float w, const float *v, int n) {
    const __m256 wv = _mm256_set1_ps(w);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(o + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(v + i), _mm256_loadu_ps(o + i)));
    for (; i < n; i++) o[i] += w * v[i];
}

/* The small per-vector steps between the projections of a decode step (each 32-block's sum, the
 * 8-bit packing of q4q8, RMSNorm's sum of squares), vectorised: written as scalar chains they ran
 * on one thread while the pool's other threads waited. */
T_AVX2 static inline float sum32_avx2(const float *x) {
    const __m256 a = _mm256_add_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8));
    const __m256 b = _mm256_add_ps(_mm256_loadu_ps(x + 16), _mm256_loadu_ps(x + 24));
    return hsum256(_mm256_add_ps(a, b));
}
T_AVX2 static void block_sums_avx2(const float *x, int K, float *xs) {
    for (int b = 0; b < K / 32; b++) xs[b] = sum32_avx2(x + b * 32);
}
/* One block of 32 activations rounded to integers in [-levels, levels] (round to nearest even, as
 * lrintf in the default rounding mode), in four 8-lane vectors; returns the block's scale. */
T_AVX2 static inline float round_block_avx2(const float *xb, float levels, __m256i n[4]) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(xb + 8 * i);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float scale = _mm_cvtss_f32(m4) / levels, inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    const __m256 iv = _mm256_set1_ps(inv);
    for (int i = 0; i < 4; i++) n[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], iv));
    return scale;
}

T_AVX2 static void quantize_act_avx2(const float *x, int K, float *packed) {
    const int nb = K / 32;
    int8_t *q = (int8_t *)packed;
    float *d = (float *)(q + K);
    int32_t *sums = (int32_t *)(d + nb);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < nb; b++) {
        __m256i n[4];
        const float scale = round_block_avx2(x + b * 32, 127.0f, n);
        const __m256i s01 = _mm256_add_epi32(n[0], n[1]), s23 = _mm256_add_epi32(n[2], n[3]);
        const __m256i s = _mm256_add_epi32(s01, s23);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
        /* int32 -> int8 (no saturation happens: |n| <= 127); packs interleave 128-bit lanes, undone by the permute */
        const __m256i a16 = _mm256_packs_epi32(n[0], n[1]), b16 = _mm256_packs_epi32(n[2], n[3]);
        const __m256i p8 = _mm256_packs_epi16(a16, b16);
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permutevar8x32_epi32(p8, order));
        d[b] = scale;
        sums[b] = _mm_cvtsi128_si32(s4);
    }
}

/* Q4 rows, AVX2. A block's 16 bytes hold element i in the low nibble of byte i and element i+16 in
 * the high one. Each half of the block is broadcast as one 64-bit load and its nibbles are pulled
 * into eight 32-bit lanes with one variable shift and one mask, in the lane order
 * 0 4 1 5 2 6 3 7 | 16 20 17 21 .. | 8 12 9 13 .. | 24 28 25 29 ..; x is copied once per call into
 * that same order, so each lane still
 * multiplies an element of W by its own element of x. This replaced byte-to-dword widening
 * shuffles (vpmovzxbd), which queue on the shuffle ports: 2.86 against 3.60 ns per block over
 * 79 MB of Q4_1 on this Zen 3 core (one thread, /tmp microbenchmark, load 1.8), about 20%.
 *
 * Per block, four 8-lane products are formed and added in a tree (two independent chains: the FMA
 * latency, not its throughput, bounded a single chain), then scaled by d: fp32 math whose only
 * difference from a dequantize-then-matmul is the order of the additions. */
/* Largest K whose permuted copy of x goes on the stack (64 KiB); wider rows use the widening kernel. */
#define Q4_PERMUTE_MAX_K 16384

/* A block's 32 nibbles as eight-lane int32 vectors, in the lane order above. */
T_AVX2 static inline void q4_nibbles_avx2(const uint8_t *q, __m256i n[4]) {
    const __m256i sh = _mm256_setr_epi32(0, 0, 8, 8, 16, 16, 24, 24);
    const __m256i sh4 = _mm256_add_epi32(sh, _mm256_set1_epi32(4)), mk = _mm256_set1_epi32(15);
    long long lo8, hi8;
    memcpy(&lo8, q, 8);
    memcpy(&hi8, q + 8, 8);
    const __m256i A = _mm256_set1_epi64x(lo8), B = _mm256_set1_epi64x(hi8);
    n[0] = _mm256_and_si256(_mm256_srlv_epi32(A, sh), mk);
    n[1] = _mm256_and_si256(_mm256_srlv_epi32(A, sh4), mk);
    n[2] = _mm256_and_si256(_mm256_srlv_epi32(B, sh), mk);
    n[3] = _mm256_and_si256(_mm256_srlv_epi32(B, sh4), mk);
}

T_AVX2 static inline __m256 q4_block_avx2(const uint8_t *q, const float *xp) {
    __m256i n[4];
    q4_nibbles_avx2(q, n);
    const __m256 p0 = _mm256_mul_ps(_mm256_cvtepi32_ps(n[0]), _mm256_loadu_ps(xp));
    const __m256 p1 = _mm256_mul_ps(_mm256_cvtepi32_ps(n[2]), _mm256_loadu_ps(xp + 16));
    const __m256 p2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(n[1]), _mm256_loadu_ps(xp + 8), p0);
    const __m256 p3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(n[3]), _mm256_loadu_ps(xp + 24), p1);
    return _mm256_add_ps(p2, p3);
}

/* The same sums, widening with vpmovzxbd (x in its natural order): rows wider than
 * Q4_PERMUTE_MAX_K, whose permuted x would not fit the stack. */
T_AVX2 static inline __m256 q4_block_widen_avx2(const uint8_t *q, const float *xb) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i qb = _mm_loadu_si128((const __m128i *)q);
    const __m128i lo = _mm_and_si128(qb, mask);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(qb, 4), mask);
    const __m256 p0 = _mm256_mul_ps(u8x8(lo), _mm256_loadu_ps(xb));
    const __m256 p1 = _mm256_mul_ps(u8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xb + 8));
    const __m256 p2 = _mm256_fmadd_ps(u8x8(hi), _mm256_loadu_ps(xb + 16), p0);
    const __m256 p3 = _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xb + 24), p1);
    return _mm256_add_ps(p2, p3);
}

/* x rows copied into q4_block_avx2's lane order (see there). */
T_AVX2 static void permute_rows_avx2(const float *x, int M, int K, float *out) {
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < (size_t)M * K / 32; b++) {
        const float *xb = x + b * 32;
        float *pb = out + b * 32;
        _mm256_storeu_ps(pb, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xb), order));
        _mm256_storeu_ps(pb + 8, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xb + 16), order));
        _mm256_storeu_ps(pb + 16, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xb + 8), order));
        _mm256_storeu_ps(pb + 24, _mm256_permutevar8x32_ps(_mm256_loadu_ps(xb + 24), order));
    }
}

/* One Q4 block against 32 int16 activations: the 8 lanes of int32 pair sums. Byte i, widened to
 * 16 bits, holds element i in its low nibble and element i+16 above it: one mask and one shift. */
T_AVX2 static inline __m256i q4_block_q16a_avx2(const uint8_t *q, const int16_t *xb) {
    const __m256i bytes = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)q));
    const __m256i lo = _mm256_and_si256(bytes, _mm256_set1_epi16(0x0F));
    const __m256i hi = _mm256_srli_epi16(bytes, 4);
    return _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)xb)),
                            _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(xb + 16))));
}
/* A Q4 block's 8-lane products with x: fp32 x in the permuted or natural order, or (act16) the
 * block's int16 activations, whose integer pair sums are converted once. */
T_AVX2 static inline __attribute__((always_inline)) __m256 q4_block_any(const uint8_t *q, const float *xv, int b,
                                                                         const int permuted, const int act16) {
    if (act16) return _mm256_cvtepi32_ps(q4_block_q16a_avx2(q, act16_q(xv) + b * 32));
    return permuted ? q4_block_avx2(q, xv + b * 32) : q4_block_widen_avx2(q, xv + b * 32);
}
/* One row at a time: measured faster in the decode step than 2 or 4 interleaved rows (one
 * sequential stream through weights that do not fit the cache).
 *
 * The loop is compute-bound (the same ns per block with the matrix in L2 as streamed from DRAM),
 * so its instruction count is its speed. Per block the scales d and m are one 32-bit load and one
 * fp16 conversion ([d, m, ..] in one register): d is broadcast, and m * (block sum of x) goes into
 * lane 1 of a small vector FMA chain (Q4_0, whose block starts with d alone, keeps d * block sum in
 * lane 0 and scales it by -8 at the end). Two accumulators take even and odd blocks, so the FMA
 * latency does not bind. Before: each scale through a zeroed register and a 16-bit insert, a
 * scalar mul+add chain for m, and the x-layout branch inside the block loop -- about 45
 * instructions per block of 32 weights, 2.9 ns; now about 30. The `q4q16` rows (int16
 * activations, act16) share the loop; `has_min`, `permuted` and `act16` are constants in each
 * inlined copy. */
T_AVX2 static inline __attribute__((always_inline)) void q4_rows_loop(
    const uint8_t *w, size_t stride, int nb, const float *xv, const float *xs, float *y, int n0, int n1, int acc,
    const int has_min, const int permuted, const int act16) {
    const int bsz = has_min ? 20 : 18, off = has_min ? 4 : 2;
    const float *xd = act16 ? act16_d(xv, nb) : NULL; /* int16 activations: each block's scale */
    for (int n = n0; n < n1; n++) {
        const uint8_t *blk = w + (size_t)n * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        __m128 mc = _mm_setzero_ps();
        int b = 0;
        for (; b + 2 <= nb; b += 2, blk += 2 * bsz) {
            int32_t s0, s1;
            memcpy(&s0, blk, 4);
            memcpy(&s1, blk + bsz, 4);
            const __m128 dm0 = _mm_cvtph_ps(_mm_cvtsi32_si128(s0)), dm1 = _mm_cvtph_ps(_mm_cvtsi32_si128(s1));
            const __m128 sc0 = act16 ? _mm_mul_ss(dm0, _mm_load_ss(xd + b)) : dm0;
            const __m128 sc1 = act16 ? _mm_mul_ss(dm1, _mm_load_ss(xd + b + 1)) : dm1;
            a0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc0), q4_block_any(blk + off, xv, b, permuted, act16), a0);
            a1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc1), q4_block_any(blk + bsz + off, xv, b + 1, permuted, act16), a1);
            mc = _mm_fmadd_ps(dm0, _mm_set1_ps(xs[b]), mc);
            mc = _mm_fmadd_ps(dm1, _mm_set1_ps(xs[b + 1]), mc);
        }
        if (b < nb) {
            int32_t s0;
            memcpy(&s0, blk, 4);
            const __m128 dm0 = _mm_cvtph_ps(_mm_cvtsi32_si128(s0));
            const __m128 sc0 = act16 ? _mm_mul_ss(dm0, _mm_load_ss(xd + b)) : dm0;
            a0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc0), q4_block_any(blk + off, xv, b, permuted, act16), a0);
            mc = _mm_fmadd_ps(dm0, _mm_set1_ps(xs[b]), mc);
        }
        const float m = has_min ? _mm_cvtss_f32(_mm_shuffle_ps(mc, mc, 1)) : -8.0f * _mm_cvtss_f32(mc);
        y[n] = hsum256(_mm256_add_ps(a0, a1)) + m + (acc ? y[n] : 0.0f);
    }
}
T_AVX2 static void q4_rows_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                float *y, int n0, int n1, int acc, int has_min) {
    const int K = nb * 32;
    if (K > Q4_PERMUTE_MAX_K) { /* x in natural order, widening kernel */
        if (has_min) q4_rows_loop(w, stride, nb, x, xs, y, n0, n1, acc, 1, 0, 0);
        else q4_rows_loop(w, stride, nb, x, xs, y, n0, n1, acc, 0, 0, 0);
        return;
    }
    float xp[K];
    permute_rows_avx2(x, 1, K, xp);
    if (has_min) q4_rows_loop(w, stride, nb, xp, xs, y, n0, n1, acc, 1, 1, 0);
    else q4_rows_loop(w, stride, nb, xp, xs, y, n0, n1, acc, 0, 1, 0);
}
T_AVX2 static void q4_1_rows_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                  float *y, int n0, int n1, int acc) {
    q4_rows_avx2(w, stride, nb, x, xs, y, n0, n1, acc, 1);
}
T_AVX2 static void q4_0_rows_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                  float *y, int n0, int n1, int acc) {
    q4_rows_avx2(w, stride, nb, x, xs, y, n0, n1, acc, 0);
}
T_AVX2 static inline __m256 q8_block_avx2(const uint8_t *q, __m256 x0, __m256 x1, __m256 x2, __m256 x3) {
    const __m256 p0 = _mm256_mul_ps(i8x8(_mm_loadl_epi64((const __m128i *)q)), x0);
    const __m256 p1 = _mm256_mul_ps(i8x8(_mm_loadl_epi64((const __m128i *)(q + 8))), x1);
    const __m256 p2 = _mm256_fmadd_ps(i8x8(_mm_loadl_epi64((const __m128i *)(q + 16))), x2, p0);
    const __m256 p3 = _mm256_fmadd_ps(i8x8(_mm_loadl_epi64((const __m128i *)(q + 24))), x3, p1);
    return _mm256_add_ps(p2, p3);
}
#define Q8_ROWS_AVX2(ROWS)                                                                            \
    for (; n + ROWS <= n1; n += ROWS) {                                                               \
        __m256 a[ROWS];                                                                               \
        for (int r = 0; r < ROWS; r++) a[r] = _mm256_setzero_ps();                                    \
        const uint8_t *r0 = w + (size_t)n * stride;                                                   \
        for (int b = 0; b < nb; b++) {                                                                \
            const float *xb = x + b * 32;                                                             \
            const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);                      \
            const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);                 \
            for (int r = 0; r < ROWS; r++) {                                                          \
                const uint8_t *blk = r0 + (size_t)r * stride + (size_t)b * 34;                        \
                a[r] = _mm256_fmadd_ps(_mm256_set1_ps(h2f_avx2(blk)), q8_block_avx2(blk + 2, x0, x1, x2, x3), a[r]); \
            }                                                                                         \
        }                                                                                             \
        for (int r = 0; r < ROWS; r++) y[n + r] = hsum256(a[r]) + (acc ? y[n + r] : 0.0f);            \
    }
T_AVX2 static void q8_0_rows_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                  float *y, int n0, int n1, int acc) {
    (void)xs;
    int n = n0;
    Q8_ROWS_AVX2(1)
}

/* ---- many rows at once (prefill), AVX2 --------------------------------------------------------
 * y[r, n] for several rows r of x. Four weight rows at a time are dequantized, exactly as gguf-py
 * (and wb_dequant) computes them, into a small fp32 tile that stays in the L1/L2 cache; then the
 * rows of x run over the tile three at a time (twelve accumulators in registers, 7 loads per 12
 * FMAs: 15-20% faster than two at a time for 6-24 rows, same process, alternated), then in a
 * pair, then alone. Before this, a prefill of more than 8 rows dequantized each whole matrix to
 * fp32 in memory and called F.linear: 4 bytes written and read back per weight, about 100 ms of a
 * 14-token chat turn's first token here. Q4 lanes are in q4_block_avx2's order (x permuted to
 * match), Q8_0's natural; each output is one fp32 FMA chain per lane, then the 8 lanes summed. */
#define MULTI_NR 4
#define MULTI_MAX_K 8192 /* wider rows run row by row (the tile lives on the stack) */
T_AVX2 static void dequant_row_avx2(int qtype, const uint8_t *row, int nb, float *o);

T_AVX2 static void dequant_lanes_avx2(int qtype, const uint8_t *row, int nb, float *out) {
    if (qtype == WB_Q8_0) { /* natural order: the ordinary row dequantizer */
        dequant_row_avx2(qtype, row, nb, out);
        return;
    }
    const int has_min = qtype == WB_Q4_1, bsz = has_min ? 20 : 18, off = has_min ? 4 : 2;
    const __m256i eight = _mm256_set1_epi32(8);
    for (int b = 0; b < nb; b++, out += 32) {
        const uint8_t *blk = row + (size_t)b * bsz;
        const __m256 d = _mm256_set1_ps(h2f_avx2(blk));
        __m256i q[4];
        q4_nibbles_avx2(blk + off, q);
        if (has_min) {
            const __m256 m = _mm256_set1_ps(h2f_avx2(blk + 2));
            for (int i = 0; i < 4; i++) _mm256_storeu_ps(out + 8 * i, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[i])), m));
        } else {
            for (int i = 0; i < 4; i++)
                _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[i], eight))));
        }
    }
}

/* Rows [n0, n1) of W against rows [0, M) of x (already in the kernel's lane order). */
T_AVX2 static void multi_rows_avx2(int qtype, const uint8_t *w, size_t stride, int nb, const float *x, int K, int M,
                                   float *y, int N, int n0, int n1, int acc, float *tile) {
    for (int n = n0; n < n1; n += MULTI_NR) {
        const int nr = n1 - n < MULTI_NR ? n1 - n : MULTI_NR;
        for (int i = 0; i < MULTI_NR; i++) /* a short last group repeats its last row; unused */
            dequant_lanes_avx2(qtype, w + (size_t)(n + (i < nr ? i : nr - 1)) * stride, nb, tile + (size_t)i * K);
        const float *t0 = tile, *t1 = tile + K, *t2 = tile + 2 * (size_t)K, *t3 = tile + 3 * (size_t)K;
        int r = 0;
        for (; r + 3 <= M; r += 3) {
            const float *xa = x + (size_t)r * K, *xb = xa + K, *xc = xb + K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            __m256 c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            for (int k = 0; k < K; k += 8) {
                const __m256 u = _mm256_loadu_ps(xa + k), v = _mm256_loadu_ps(xb + k), z = _mm256_loadu_ps(xc + k);
                __m256 wv = _mm256_loadu_ps(t0 + k);
                a0 = _mm256_fmadd_ps(wv, u, a0); b0 = _mm256_fmadd_ps(wv, v, b0); c0 = _mm256_fmadd_ps(wv, z, c0);
                wv = _mm256_loadu_ps(t1 + k);
                a1 = _mm256_fmadd_ps(wv, u, a1); b1 = _mm256_fmadd_ps(wv, v, b1); c1 = _mm256_fmadd_ps(wv, z, c1);
                wv = _mm256_loadu_ps(t2 + k);
                a2 = _mm256_fmadd_ps(wv, u, a2); b2 = _mm256_fmadd_ps(wv, v, b2); c2 = _mm256_fmadd_ps(wv, z, c2);
                wv = _mm256_loadu_ps(t3 + k);
                a3 = _mm256_fmadd_ps(wv, u, a3); b3 = _mm256_fmadd_ps(wv, v, b3); c3 = _mm256_fmadd_ps(wv, z, c3);
            }
            const __m256 out[3][MULTI_NR] = {{a0, a1, a2, a3}, {b0, b1, b2, b3}, {c0, c1, c2, c3}};
            for (int h = 0; h < 3; h++) {
                float *yr = y + (size_t)(r + h) * N + n;
                for (int i = 0; i < nr; i++) yr[i] = hsum256(out[h][i]) + (acc ? yr[i] : 0.0f);
            }
        }
        for (; r + 2 <= M; r += 2) {
            const float *xa = x + (size_t)r * K, *xb = xa + K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int k = 0; k < K; k += 8) {
                const __m256 u = _mm256_loadu_ps(xa + k), v = _mm256_loadu_ps(xb + k);
                __m256 wv = _mm256_loadu_ps(t0 + k);
                a0 = _mm256_fmadd_ps(wv, u, a0); b0 = _mm256_fmadd_ps(wv, v, b0);
                wv = _mm256_loadu_ps(t1 + k);
                a1 = _mm256_fmadd_ps(wv, u, a1); b1 = _mm256_fmadd_ps(wv, v, b1);
                wv = _mm256_loadu_ps(t2 + k);
                a2 = _mm256_fmadd_ps(wv, u, a2); b2 = _mm256_fmadd_ps(wv, v, b2);
                wv = _mm256_loadu_ps(t3 + k);
                a3 = _mm256_fmadd_ps(wv, u, a3); b3 = _mm256_fmadd_ps(wv, v, b3);
            }
            const __m256 out[2][MULTI_NR] = {{a0, a1, a2, a3}, {b0, b1, b2, b3}};
            for (int h = 0; h < 2; h++) {
                float *yr = y + (size_t)(r + h) * N + n;
                for (int i = 0; i < nr; i++) yr[i] = hsum256(out[h][i]) + (acc ? yr[i] : 0.0f);
            }
        }
        for (; r < M; r++) { /* an odd last row: the same chains, one row */
            const float *xa = x + (size_t)r * K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < K; k += 8) {
                const __m256 u = _mm256_loadu_ps(xa + k);
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(t0 + k), u, a0);
                a1 = _mm256_fmadd_ps(_mm256_loadu_ps(t1 + k), u, a1);
                a2 = _mm256_fmadd_ps(_mm256_loadu_ps(t2 + k), u, a2);
                a3 = _mm256_fmadd_ps(_mm256_loadu_ps(t3 + k), u, a3);
            }
            const __m256 out[MULTI_NR] = {a0, a1, a2, a3};
            float *yr = y + (size_t)r * N + n;
            for (int i = 0; i < nr; i++) yr[i] = hsum256(out[i]) + (acc ? yr[i] : 0.0f);
        }
    }
}

/* fast mode, AVX2: unsigned nibbles x signed int8 activations with maddubs (llama.cpp's method) */
T_AVX2 static inline __m256i q4_unpack_avx2(const uint8_t *q) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i qb = _mm_loadu_si128((const __m128i *)q);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(qb, 4), mask), _mm_and_si128(qb, mask));
}
#define Q4_ROWS_Q8A(ROWS)                                                                             \
    for (; n + ROWS <= n1; n += ROWS) {                                                               \
        __m256 a[ROWS];                                                                               \
        float m[ROWS];                                                                                \
        for (int r = 0; r < ROWS; r++) { a[r] = _mm256_setzero_ps(); m[r] = 0.0f; }                   \
        const uint8_t *r0 = w + (size_t)n * stride;                                                   \
        for (int b = 0; b < nb; b++) {                                                                \
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * 32));                    \
            for (int r = 0; r < ROWS; r++) {                                                          \
                const uint8_t *blk = r0 + (size_t)r * stride + (size_t)b * bsz;                       \
                const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(q4_unpack_avx2(blk + off), xv), ones); \
                const float d = h2f_avx2(blk);                                                        \
                a[r] = _mm256_fmadd_ps(_mm256_set1_ps(d * xd[b]), _mm256_cvtepi32_ps(dot), a[r]);     \
                m[r] += has_min ? h2f_avx2(blk + 2) * xs[b] : -8.0f * d * xd[b] * (float)sx[b];      \
            }                                                                                         \
        }                                                                                             \
        for (int r = 0; r < ROWS; r++) y[n + r] = hsum256(a[r]) + m[r] + (acc ? y[n + r] : 0.0f);     \
    }
T_AVX2 static void q4_rows_q8a_avx2(const uint8_t *w, size_t stride, int nb, const float *xp, const float *xs,
                                    float *y, int n0, int n1, int acc, int has_min) {
    const int bsz = has_min ? 20 : 18, off = has_min ? 4 : 2;
    const int8_t *xq = act_q(xp);
    const float *xd = act_d(xp, nb);
    const int32_t *sx = act_s(xp, nb);
    const __m256i ones = _mm256_set1_epi16(1);
    int n = n0;
    Q4_ROWS_Q8A(1)
}
T_AVX2 static void q4_1_rows_q8a_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                      float *y, int n0, int n1, int acc) {
    q4_rows_q8a_avx2(w, stride, nb, x, xs, y, n0, n1, acc, 1);
}
T_AVX2 static void q4_0_rows_q8a_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                      float *y, int n0, int n1, int acc) {
    q4_rows_q8a_avx2(w, stride, nb, x, xs, y, n0, n1, acc, 0);
}
T_AVX2 static void q8_0_rows_q8a_avx2(const uint8_t *w, size_t stride, int nb, const float *xp, const float *xs,
                                      float *y, int n0, int n1, int acc) {
    (void)xs;
    const int8_t *xq = act_q(xp);
    const float *xd = act_d(xp, nb);
    const __m256i ones = _mm256_set1_epi16(1);
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * stride;
        __m256 a = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * 34;
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(blk + 2));
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * 32));
            /* signed x signed through maddubs: |w| x (x with w's sign) */
            const __m256i dot = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
            a = _mm256_fmadd_ps(_mm256_set1_ps(h2f_avx2(blk) * xd[b]), _mm256_cvtepi32_ps(dot), a);
        }
        y[n] = hsum256(a) + (acc ? y[n] : 0.0f);
    }
}

T_AVX2 static void quantize_act16_avx2(const float *x, int K, float *packed) {
    const int nb = K / 32;
    int16_t *q = (int16_t *)packed;
    float *d = (float *)(q + K);
    for (int b = 0; b < nb; b++) {
        __m256i n[4];
        const float scale = round_block_avx2(x + b * 32, 32767.0f, n);
        /* packs interleave 64-bit quarters (a0-3 b0-3 | a4-7 b4-7): the permute restores the order */
        _mm256_storeu_si256((__m256i *)(q + b * 32), _mm256_permute4x64_epi64(_mm256_packs_epi32(n[0], n[1]), 0xD8));
        _mm256_storeu_si256((__m256i *)(q + b * 32 + 16), _mm256_permute4x64_epi64(_mm256_packs_epi32(n[2], n[3]), 0xD8));
        d[b] = scale;
    }
}

T_AVX2 static void q4_1_rows_q16a_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                       float *y, int n0, int n1, int acc) {
    q4_rows_loop(w, stride, nb, x, xs, y, n0, n1, acc, 1, 1, 1);
}
T_AVX2 static void q4_0_rows_q16a_avx2(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                       float *y, int n0, int n1, int acc) {
    q4_rows_loop(w, stride, nb, x, xs, y, n0, n1, acc, 0, 1, 1);
}
T_AVX2 static void q8_0_rows_q16a_avx2(const uint8_t *w, size_t stride, int nb, const float *xp, const float *xs,
                                       float *y, int n0, int n1, int acc) {
    (void)xs;
    const int16_t *xq = act16_q(xp);
    const float *xd = act16_d(xp, nb);
    for (int n = n0; n < n1; n++) {
        const uint8_t *blk = w + (size_t)n * stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++, blk += 34) {
            uint16_t h;
            memcpy(&h, blk, 2);
            const __m128 sc = _mm_mul_ss(_mm_cvtph_ps(_mm_cvtsi32_si128(h)), _mm_load_ss(xd + b));
            const __m256i lo = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 2)));
            const __m256i hi = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 18)));
            const __m256i p = _mm256_add_epi32(_mm256_madd_epi16(lo, _mm256_loadu_si256((const __m256i *)(xq + b * 32))),
                                               _mm256_madd_epi16(hi, _mm256_loadu_si256((const __m256i *)(xq + b * 32 + 16))));
            if (b & 1) a1 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), _mm256_cvtepi32_ps(p), a1);
            else a0 = _mm256_fmadd_ps(_mm256_broadcastss_ps(sc), _mm256_cvtepi32_ps(p), a0);
        }
        y[n] = hsum256(_mm256_add_ps(a0, a1)) + (acc ? y[n] : 0.0f);
    }
}

/* One row of blocks to fp32 with gguf-py's roundings: a multiply, then an add (never fused). */
T_AVX2 static void dequant_row_avx2(int qtype, const uint8_t *row, int nb, float *o) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    for (int b = 0; b < nb; b++, o += 32) {
        if (qtype == WB_Q8_0) {
            const uint8_t *blk = row + (size_t)b * 34;
            const __m256 d = _mm256_set1_ps(h2f_avx2(blk));
            for (int i = 0; i < 4; i++)
                _mm256_storeu_ps(o + 8 * i, _mm256_mul_ps(d, i8x8(_mm_loadl_epi64((const __m128i *)(blk + 2 + 8 * i)))));
            continue;
        }
        const int has_min = qtype == WB_Q4_1;
        const uint8_t *blk = row + (size_t)b * (has_min ? 20 : 18);
        const __m256 d = _mm256_set1_ps(h2f_avx2(blk));
        const __m128i qb = _mm_loadu_si128((const __m128i *)(blk + (has_min ? 4 : 2)));
        const __m128i lo = _mm_and_si128(qb, mask), hi = _mm_and_si128(_mm_srli_epi16(qb, 4), mask);
        __m256i q[4] = {_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)),
                        _mm256_cvtepu8_epi32(hi), _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))};
        if (has_min) {
            const __m256 m = _mm256_set1_ps(h2f_avx2(blk + 2));
            for (int i = 0; i < 4; i++)
                _mm256_storeu_ps(o + 8 * i, _mm256_add_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(q[i])), m));
        } else {
            const __m256i eight = _mm256_set1_epi32(8);
            for (int i = 0; i < 4; i++)
                _mm256_storeu_ps(o + 8 * i, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q[i], eight))));
        }
    }
}

/* ---- AVX-512 (F + BW) ----------------------------------------------------------------------- */
#define T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

T_AVX512 static inline float h2f_512(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}
T_AVX512 static inline __m512 q4_block_512(const uint8_t *q, const float *xb) {
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i qb = _mm_loadu_si128((const __m128i *)q);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(qb, mask)));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(qb, 4), mask)));
    return _mm512_fmadd_ps(hi, _mm512_loadu_ps(xb + 16), _mm512_mul_ps(lo, _mm512_loadu_ps(xb)));
}
T_AVX512 static void q4_rows_512(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                 float *y, int n0, int n1, int acc, int has_min) {
    const int bsz = has_min ? 20 : 18, off = has_min ? 4 : 2;
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        float m[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int b = 0; b < nb; b++) {
            const float *xb = x + b * 32;
            for (int j = 0; j < 4; j++) {
                const uint8_t *blk = w + (size_t)(n + j) * stride + (size_t)b * bsz;
                const float d = h2f_512(blk);
                a[j] = _mm512_fmadd_ps(_mm512_set1_ps(d), q4_block_512(blk + off, xb), a[j]);
                m[j] += (has_min ? h2f_512(blk + 2) : -8.0f * d) * xs[b];
            }
        }
        for (int j = 0; j < 4; j++) y[n + j] = _mm512_reduce_add_ps(a[j]) + m[j] + (acc ? y[n + j] : 0.0f);
    }
    for (; n < n1; n++) {
        __m512 a0 = _mm512_setzero_ps();
        float m0 = 0.0f;
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = w + (size_t)n * stride + (size_t)b * bsz;
            const float d = h2f_512(blk);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(d), q4_block_512(blk + off, x + b * 32), a0);
            m0 += (has_min ? h2f_512(blk + 2) : -8.0f * d) * xs[b];
        }
        y[n] = _mm512_reduce_add_ps(a0) + m0 + (acc ? y[n] : 0.0f);
    }
}
T_AVX512 static void q4_1_rows_512(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                   float *y, int n0, int n1, int acc) {
    q4_rows_512(w, stride, nb, x, xs, y, n0, n1, acc, 1);
}
T_AVX512 static void q4_0_rows_512(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                   float *y, int n0, int n1, int acc) {
    q4_rows_512(w, stride, nb, x, xs, y, n0, n1, acc, 0);
}
T_AVX512 static void q8_0_rows_512(const uint8_t *w, size_t stride, int nb, const float *x, const float *xs,
                                   float *y, int n0, int n1, int acc) {
    (void)xs;
    for (int n = n0; n < n1; n++) {
        const uint8_t *row = w + (size_t)n * stride;
        __m512 a0 = _mm512_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * 34;
            const float *xb = x + b * 32;
            const __m128i q0 = _mm_loadu_si128((const __m128i *)(blk + 2));
            const __m128i q1 = _mm_loadu_si128((const __m128i *)(blk + 18));
            __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(xb));
            t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(xb + 16), t);
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(h2f_512(blk)), t, a0);
        }
        y[n] = _mm512_reduce_add_ps(a0) + (acc ? y[n] : 0.0f);
    }
}
#endif /* WB_X86 */

/* ---------------------------------------------------------------------------------------------- */
/* run-time dispatch */
static void pick_isa(void) {
    if (g_isa >= 0) return;
    int isa = ISA_SCALAR;
#ifdef WB_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ISA_AVX2;
    if (isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
        isa = ISA_AVX512;
    const char *force = getenv("WORKBENCH_KERNEL_ISA"); /* for tests: force a lower level */
    if (force) {
        if (!strcmp(force, "scalar")) isa = ISA_SCALAR;
        else if (!strcmp(force, "avx2") && isa >= ISA_AVX2) isa = ISA_AVX2;
    }
#endif
    g_isa = isa;
}

/* The kernel for a block type out of one family's three (NULL for any other type). */
static rows_fn by_qtype(int qtype, rows_fn q4_1, rows_fn q4_0, rows_fn q8_0) {
    return qtype == WB_Q4_1 ? q4_1 : qtype == WB_Q4_0 ? q4_0 : qtype == WB_Q8_0 ? q8_0 : NULL;
}

static rows_fn rows_q8a_for(int qtype) {
    pick_isa();
#ifdef WB_X86
    if (g_isa >= ISA_AVX2) return by_qtype(qtype, q4_1_rows_q8a_avx2, q4_0_rows_q8a_avx2, q8_0_rows_q8a_avx2);
#endif
    return by_qtype(qtype, q4_1_rows_q8a_scalar, q4_0_rows_q8a_scalar, q8_0_rows_q8a_scalar);
}

static rows_fn rows_q16a_for(int qtype) {
    pick_isa();
#ifdef WB_X86
    if (g_isa >= ISA_AVX2) return by_qtype(qtype, q4_1_rows_q16a_avx2, q4_0_rows_q16a_avx2, q8_0_rows_q16a_avx2);
#endif
    return by_qtype(qtype, q4_1_rows_q16a_scalar, q4_0_rows_q16a_scalar, q8_0_rows_q16a_scalar);
}

static rows_fn rows_for(int qtype) {
    pick_isa();
#ifdef WB_X86
    if (g_isa == ISA_AVX512) return by_qtype(qtype, q4_1_rows_512, q4_0_rows_512, q8_0_rows_512);
    if (g_isa == ISA_AVX2) return by_qtype(qtype, q4_1_rows_avx2, q4_0_rows_avx2, q8_0_rows_avx2);
#endif
    return by_qtype(qtype, q4_1_rows_scalar, q4_0_rows_scalar, q8_0_rows_scalar);
}

/** The instruction set the kernels use on this CPU: 0 scalar, 1 AVX2, 2 AVX-512. */
int wb_isa(void) {
    pick_isa();
    return g_isa;
}

/** The library's interface version; native.py refuses a stale build. */
int wb_abi_version(void) { return 9; }

/** Return free heap memory to the system where the C library can (glibc). */
void wb_release_free_memory(void) {
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

/* Activation modes of a decode step (cfg[C_ACT]). */
enum { ACT_F32 = 0, ACT_Q8 = 1, ACT_Q16 = 2 };

static rows_fn rows_for_act(int act, int qtype) {
    return act == ACT_Q8 ? rows_q8a_for(qtype) : act == ACT_Q16 ? rows_q16a_for(qtype) : rows_for(qtype);
}

/* x packed for the kernels of activation mode `act` into buf (returned), or x itself for fp32. */
static const float *pack_act(int act, const float *x, int K, float *buf) {
    if (act == ACT_F32) return x;
#ifdef WB_X86
    if (g_isa >= ISA_AVX2) {
        (act == ACT_Q8 ? quantize_act_avx2 : quantize_act16_avx2)(x, K, buf);
        return buf;
    }
#endif
    (act == ACT_Q8 ? quantize_act_scalar : quantize_act16_scalar)(x, K, buf);
    return buf;
}

static void block_sums(const float *x, int K, float *xs) {
#ifdef WB_X86
    if (g_isa >= ISA_AVX2) {
        block_sums_avx2(x, K, xs);
        return;
    }
#endif
    for (int b = 0; b < K / 32; b++) {
        float s = 0.0f;
        for (int i = 0; i < 32; i++) s += x[b * 32 + i];
        xs[b] = s;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* A small thread pool that cannot stall on an oversubscribed machine.
 *
 * Work is a list of chunks claimed with compare-and-swap; the calling thread claims chunks too and
 * only waits for chunks a helper has actually started. A helper that is descheduled, still asleep
 * or never started costs nothing: the caller does its share. (An OpenMP team instead waits at every
 * barrier for every thread, so one preempted thread on a shared 2-vCPU machine stalls each of the
 * ~150 barriers of a decode step for a scheduler tick.) Helpers spin briefly between jobs, then
 * sleep on a condition variable. */
typedef void (*chunk_fn)(void *ctx, int chunk);

#define WB_MAX_HELPERS 63
#define WB_SPIN 20000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;                /* helper threads created */
    int active;                 /* helpers allowed to take work (threads - 1) */
    unsigned long long work;    /* (generation << 32) | next chunk, atomic */
    int gen;                    /* atomic */
    int done;                   /* chunks finished in the current job, atomic */
    int sleepers;               /* atomic */
    int spin;                   /* atomic: pauses a helper spins after this job before it sleeps */
    chunk_fn fn;
    void *ctx;
    int nchunks;
} g_pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, WB_SPIN, NULL, NULL, 0};
static pthread_mutex_t g_pool_owner = PTHREAD_MUTEX_INITIALIZER;

static inline void cpu_relax(void) {
#ifdef WB_X86
    _mm_pause();
#endif
}

/* Claim and run chunks of job `gen` until none is left (or the job changed). */
static void pool_drain(int gen, chunk_fn fn, void *ctx, int nchunks) {
    for (;;) {
        unsigned long long v = __atomic_load_n(&g_pool.work, __ATOMIC_ACQUIRE);
        if ((int)(v >> 32) != gen || (int)(v & 0xFFFFFFFFu) >= nchunks) return;
        if (!__atomic_compare_exchange_n(&g_pool.work, &v, v + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) continue;
        fn(ctx, (int)(v & 0xFFFFFFFFu));
        __atomic_add_fetch(&g_pool.done, 1, __ATOMIC_RELEASE);
    }
}

static void *pool_helper(void *arg) {
    const int idx = (int)(intptr_t)arg;
    int seen = __atomic_load_n(&g_pool.gen, __ATOMIC_SEQ_CST);
    for (;;) {
        int spins = 0, gen;
        const int budget = __atomic_load_n(&g_pool.spin, __ATOMIC_RELAXED);
        while ((gen = __atomic_load_n(&g_pool.gen, __ATOMIC_SEQ_CST)) == seen ||
               idx >= __atomic_load_n(&g_pool.active, __ATOMIC_RELAXED)) {
            if (gen != seen) seen = gen; /* not our turn: skip this job */
            if (++spins < budget) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&g_pool.mu);
            __atomic_add_fetch(&g_pool.sleepers, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&g_pool.gen, __ATOMIC_SEQ_CST) == seen)
                pthread_cond_wait(&g_pool.cv, &g_pool.mu);
            __atomic_sub_fetch(&g_pool.sleepers, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&g_pool.mu);
            spins = 0;
        }
        seen = gen;
        /* fields are read after the generation (acquire); a stale read cannot claim (CAS on gen) */
        chunk_fn fn = __atomic_load_n(&g_pool.fn, __ATOMIC_ACQUIRE);
        void *ctx = __atomic_load_n(&g_pool.ctx, __ATOMIC_ACQUIRE);
        int nchunks = __atomic_load_n(&g_pool.nchunks, __ATOMIC_ACQUIRE);
        pool_drain(gen, fn, ctx, nchunks);
    }
    return NULL;
}

/* Make `threads - 1` helpers available (created on first need, never destroyed). */
static void pool_size(int threads) {
    int want = threads - 1;
    if (want > WB_MAX_HELPERS) want = WB_MAX_HELPERS;
    if (want < 0) want = 0;
    while (g_pool.started < want) {
        pthread_t t;
        if (pthread_create(&t, NULL, pool_helper, (void *)(intptr_t)g_pool.started) != 0) break;
        pthread_detach(t);
        g_pool.started++;
    }
    __atomic_store_n(&g_pool.active, want < g_pool.started ? want : g_pool.started, __ATOMIC_RELAXED);
}

/* Run fn(ctx, 0..nchunks-1) on the calling thread plus the active helpers; returns when all ran.
 * Callers hold g_pool_owner (one job at a time). `spin`: how long helpers wait for a next job
 * before they sleep -- WB_SPIN between the ~150 jobs of a decode step, 0 after a job that torch's
 * own threads follow (a whole-matrix dequantize before BLAS), where a spinning helper took the
 * CPU from them (3.7% of a 512-token prefill's samples at 2 threads). */
static void pool_run_spin(chunk_fn fn, void *ctx, int nchunks, int spin) {
    if (nchunks <= 0) return;
    __atomic_store_n(&g_pool.spin, spin, __ATOMIC_RELAXED);
    if (__atomic_load_n(&g_pool.active, __ATOMIC_RELAXED) == 0 || nchunks == 1) {
        for (int c = 0; c < nchunks; c++) fn(ctx, c);
        return;
    }
    const int gen = __atomic_load_n(&g_pool.gen, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&g_pool.fn, fn, __ATOMIC_RELEASE);
    __atomic_store_n(&g_pool.ctx, ctx, __ATOMIC_RELEASE);
    __atomic_store_n(&g_pool.nchunks, nchunks, __ATOMIC_RELEASE);
    __atomic_store_n(&g_pool.done, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_pool.work, (unsigned long long)(unsigned)gen << 32, __ATOMIC_SEQ_CST);
    __atomic_store_n(&g_pool.gen, gen, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&g_pool.sleepers, __ATOMIC_SEQ_CST) > 0) {
        pthread_mutex_lock(&g_pool.mu);
        pthread_cond_broadcast(&g_pool.cv);
        pthread_mutex_unlock(&g_pool.mu);
    }
    pool_drain(gen, fn, ctx, nchunks);
    int spins = 0;
    while (__atomic_load_n(&g_pool.done, __ATOMIC_ACQUIRE) < nchunks) {
        if (++spins < 4000) cpu_relax();
        else sched_yield(); /* a helper holding a chunk was preempted: let it run */
    }
}
static void pool_run(chunk_fn fn, void *ctx, int nchunks) { pool_run_spin(fn, ctx, nchunks, WB_SPIN); }

/* ---------------------------------------------------------------------------------------------- */
/* Matrix jobs: rows [0, N) of one or more block matrices in chunks of ROWS_PER_CHUNK rows. */
#define ROWS_PER_CHUNK 64

typedef struct {
    rows_fn rows;
    const uint8_t *w;
    size_t stride;
    int nb, N, M, K;
    const float *x, *xs;
    float *y;
    int acc;
    int qtype;
    const float *xm; /* many-row kernel: x in its lane order, or NULL to run row by row */
} gemm_job;

static void gemm_chunk(void *p, int c) {
    const gemm_job *j = (const gemm_job *)p;
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < j->N ? n0 + ROWS_PER_CHUNK : j->N;
#ifdef WB_X86
    if (j->xm) {
        float tile[MULTI_NR * j->K]; /* K <= MULTI_MAX_K: at most 128 KiB of stack */
        multi_rows_avx2(j->qtype, j->w, j->stride, j->nb, j->xm, j->K, j->M, j->y, j->N, n0, n1, j->acc, tile);
        return;
    }
#endif
    for (int r = 0; r < j->M; r++)
        j->rows(j->w, j->stride, j->nb, j->x + (size_t)r * j->K, j->xs + (size_t)r * j->nb, j->y + (size_t)r * j->N,
                n0, n1, j->acc);
}

static int chunks_of(int n) { return (n + ROWS_PER_CHUNK - 1) / ROWS_PER_CHUNK; }

/** y[M,N] (+)= x[M,K] . W[N,K]^T for W stored as GGUF blocks of `qtype`. Sizes are element counts
 * of the buffers as allocated; acc != 0 adds into y. */
/* Scratch floats gemm_locked needs for M rows of K. */
static size_t gemm_scratch_floats(int M, int K) { return (size_t)M * K + (size_t)M * (K / 32); }

/* y[M,N] (+)= x . W^T on the pool (the caller holds g_pool_owner and sized it); `scratch` holds
 * gemm_scratch_floats(M, K) floats. Several rows on AVX2 take the many-row kernel (x copied into
 * its lane order); otherwise the row kernels (with each 32-block's sum of x). */
static void gemm_locked(int qtype, const float *x, int M, int K, const uint8_t *w, int N, float *y, int acc, float *scratch) {
    const int nb = K / 32;
    gemm_job j = {rows_for(qtype), w, (size_t)nb * block_bytes(qtype), nb, N, M, K, x, NULL, y, acc, qtype, NULL};
#ifdef WB_X86
    if (M > 1 && K <= MULTI_MAX_K && g_isa >= ISA_AVX2) {
        if (qtype == WB_Q8_0) {
            j.xm = x;
        } else {
            permute_rows_avx2(x, M, K, scratch);
            j.xm = scratch;
        }
    }
#endif
    if (!j.xm) {
        for (int r = 0; r < M; r++) block_sums(x + (size_t)r * K, K, scratch + (size_t)r * nb);
        j.xs = scratch;
    }
    pool_run(gemm_chunk, &j, chunks_of(N));
}

/* What both gemm entries check before touching memory. */
static int check_gemm(int qtype, const float *x, int64_t x_len, int M, int K, const uint8_t *w, int64_t w_len, int N,
                      const float *y, int64_t y_len, int nthreads) {
    const int bsz = block_bytes(qtype);
    if (!bsz) return WB_E_QTYPE;
    if (!x || !w || !y) return WB_E_NULL;
    if (M <= 0 || K <= 0 || N <= 0 || K % 32 || nthreads <= 0) return WB_E_SHAPE;
    const int64_t stride = (int64_t)(K / 32) * bsz;
    if (x_len < (int64_t)M * K || y_len < (int64_t)M * N || w_len < (int64_t)N * stride) return WB_E_SIZE;
    return WB_OK;
}

int wb_gemm(int qtype, const float *x, int64_t x_len, int M, int K, const uint8_t *w, int64_t w_len, int N,
            float *y, int64_t y_len, int nthreads, int acc) {
    const int rc = check_gemm(qtype, x, x_len, M, K, w, w_len, N, y, y_len, nthreads);
    if (rc != WB_OK) return rc;
    float *scratch = (float *)malloc(sizeof(float) * gemm_scratch_floats(M, K));
    if (!scratch) return WB_E_NOMEM;
    pthread_mutex_lock(&g_pool_owner);
    pool_size(nthreads);
    gemm_locked(qtype, x, M, K, w, N, y, acc, scratch);
    pthread_mutex_unlock(&g_pool_owner);
    free(scratch);
    return WB_OK;
}

/** wb_gemm, one row of x at a time, with x's activations packed as a decode step packs them (act:
 * ACT_F32, ACT_Q8 or ACT_Q16): the integer-activation row kernels' own entry, so tests can hold
 * every block type's kernels against the dense product, not only the types one model has. */
int wb_gemm_act(int act, int qtype, const float *x, int64_t x_len, int M, int K, const uint8_t *w, int64_t w_len,
                int N, float *y, int64_t y_len, int nthreads, int acc) {
    const int rc = check_gemm(qtype, x, x_len, M, K, w, w_len, N, y, y_len, nthreads);
    if (rc != WB_OK) return rc;
    if (act != ACT_F32 && act != ACT_Q8 && act != ACT_Q16) return WB_E_CONFIG;
    const int nb = K / 32;
    const size_t stride = (size_t)nb * block_bytes(qtype);
    const int64_t per_row = nb + act_buf_floats(K);
    float *scratch = (float *)malloc(sizeof(float) * (size_t)per_row);
    if (!scratch) return WB_E_NOMEM;
    pthread_mutex_lock(&g_pool_owner);
    pool_size(nthreads);
    for (int r = 0; r < M; r++) {
        const float *xr = x + (size_t)r * K;
        block_sums(xr, K, scratch);
        gemm_job j = {rows_for_act(act, qtype), w, stride, nb, N, 1, K, pack_act(act, xr, K, scratch + nb), scratch,
                      y + (size_t)r * N, acc, qtype, NULL};
        pool_run(gemm_chunk, &j, chunks_of(N));
    }
    pthread_mutex_unlock(&g_pool_owner);
    free(scratch);
    return WB_OK;
}

typedef struct {
    int qtype, bsz, nb, N, K;
    const uint8_t *w;
    float *out;
} dequant_job;

/* Exactly gguf-py's arithmetic: a multiply, then an add (no fused multiply-add). */
static void dequant_rows(const dequant_job *j, int n0, int n1) {
#ifdef WB_X86
    pick_isa();
    if (g_isa >= ISA_AVX2) {
        for (int n = n0; n < n1; n++)
            dequant_row_avx2(j->qtype, j->w + (size_t)n * j->nb * j->bsz, j->nb, j->out + (size_t)n * j->K);
        return;
    }
#endif
    for (int n = n0; n < n1; n++) {
        for (int b = 0; b < j->nb; b++) {
            const uint8_t *blk = j->w + ((size_t)n * j->nb + b) * j->bsz;
            float *o = j->out + (size_t)n * j->K + b * 32;
            const float d = h2f_soft(blk);
            if (j->qtype == WB_Q4_1) {
                const float m = h2f_soft(blk + 2);
                for (int i = 0; i < 16; i++) {
                    const float lo = d * (float)(blk[4 + i] & 15);
                    const float hi = d * (float)(blk[4 + i] >> 4);
                    o[i] = lo + m;
                    o[i + 16] = hi + m;
                }
            } else if (j->qtype == WB_Q4_0) {
                for (int i = 0; i < 16; i++) {
                    o[i] = d * (float)((int)(blk[2 + i] & 15) - 8);
                    o[i + 16] = d * (float)((int)(blk[2 + i] >> 4) - 8);
                }
            } else {
                const int8_t *q = (const int8_t *)(blk + 2);
                for (int i = 0; i < 32; i++) o[i] = d * (float)q[i];
            }
        }
    }
}

static void dequant_chunk(void *p, int c) {
    const dequant_job *j = (const dequant_job *)p;
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < j->N ? n0 + ROWS_PER_CHUNK : j->N;
    dequant_rows(j, n0, n1);
}

/** out[N,K] = dequantized W, with gguf-py's exact arithmetic (d*q + m: a multiply, then an add). */
int wb_dequant(int qtype, const uint8_t *w, int64_t w_len, int N, int K, float *out, int64_t out_len,
               int nthreads) {
    const int bsz = block_bytes(qtype);
    if (!bsz) return WB_E_QTYPE;
    if (!w || !out) return WB_E_NULL;
    if (N <= 0 || K <= 0 || K % 32 || nthreads <= 0) return WB_E_SHAPE;
    const int nb = K / 32;
    if (w_len < (int64_t)N * nb * bsz || out_len < (int64_t)N * K) return WB_E_SIZE;
    dequant_job j = {qtype, bsz, nb, N, K, w, out};
    if (nthreads == 1 || N < 2 * ROWS_PER_CHUNK) {
        dequant_rows(&j, 0, N);
        return WB_OK;
    }
    pthread_mutex_lock(&g_pool_owner);
    pool_size(nthreads);
    pool_run_spin(dequant_chunk, &j, chunks_of(N), 0);
    pthread_mutex_unlock(&g_pool_owner);
    return WB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* One decode step. */
static void rmsnorm(const float *x, const float *w, int K, float eps, float *out) {
#ifdef WB_X86
    const float ss = g_isa >= ISA_AVX2 ? dot_avx2(x, x, K) : dot_scalar(x, x, K);
#else
    const float ss = dot_scalar(x, x, K);
#endif
    const float r = 1.0f / sqrtf(ss / (float)K + eps);
    for (int i = 0; i < K; i++) out[i] = w[i] * (x[i] * r);
}

static void rope_head(float *v, const float *c, const float *s, int hd, int interleaved) {
    const int half = hd / 2;
    if (interleaved) { /* the same arithmetic per value as below, pairs stored adjacently */
        for (int i = 0; i < half; i++) {
            const float a = v[2 * i], b = v[2 * i + 1];
            v[2 * i] = a * c[i] + (-b) * s[i];
            v[2 * i + 1] = b * c[i + half] + a * s[i + half];
        }
        return;
    }
    for (int i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        v[i] = a * c[i] + (-b) * s[i];
        v[i + half] = b * c[i + half] + a * s[i + half];
    }
}

/* cfg layout (int32): */
enum {
    C_LAYERS, C_HIDDEN, C_INTER, C_HEADS, C_KV_HEADS, C_HEAD_DIM, C_VOCAB,
    C_EMB_QTYPE, C_HEAD_QTYPE, C_LAYER_QTYPE,
    C_ROPE_INTERLEAVED, /* 1: Q/K rows in GGUF order, rotary pairs (2i, 2i+1); 0: rotate-half (i, i+d/2) */
    C_ACT,              /* activations of decode's products: ACT_F32, ACT_Q8 (q4q8), ACT_Q16 (q4q16) */
    C_COUNT
};
/* ptrs layout: embed, head, out_norm, then per layer: attn_norm, ffn_norm, q, k, v, o, gate, up, down */
#define P_GLOBAL 3
#define P_LAYER 9

/* The widest activation row a layer has (hidden, intermediate, or all query heads). */
static int64_t widest_row(const int32_t *cfg) {
    int64_t widest = cfg[C_HIDDEN] > cfg[C_INTER] ? cfg[C_HIDDEN] : cfg[C_INTER];
    const int64_t qd = (int64_t)cfg[C_HEADS] * cfg[C_HEAD_DIM];
    return qd > widest ? qd : widest;
}

/* What both whole-model steps check of the model before touching memory: the config's shape, one
 * non-null pointer per tensor, known block types. The caller checks its own buffers first. */
static int check_model(const int64_t *ptrs, int nptrs, const int32_t *cfg, int ncfg, int nthreads) {
    if (ncfg != C_COUNT) return WB_E_CONFIG;
    const int L = cfg[C_LAYERS], H = cfg[C_HIDDEN], I = cfg[C_INTER], NH = cfg[C_HEADS], NKV = cfg[C_KV_HEADS],
              HD = cfg[C_HEAD_DIM], V = cfg[C_VOCAB];
    if (L <= 0 || H <= 0 || I <= 0 || NH <= 0 || NKV <= 0 || HD <= 0 || V <= 0 || nthreads <= 0) return WB_E_SHAPE;
    if (H % 32 || I % 32 || (NH * HD) % 32 || HD % 2 || NH % NKV) return WB_E_SHAPE;
    if (nptrs != P_GLOBAL + P_LAYER * L) return WB_E_CONFIG;
    for (int i = 0; i < nptrs; i++)
        if (!ptrs[i]) return WB_E_NULL;
    if (!block_bytes(cfg[C_EMB_QTYPE]) || !block_bytes(cfg[C_HEAD_QTYPE]) || !block_bytes(cfg[C_LAYER_QTYPE]))
        return WB_E_QTYPE;
    return WB_OK;
}

/* Row `token` of the block-quantized embedding table, dequantized into out[0..H). */
static void embed_row(const int64_t *ptrs, const int32_t *cfg, int token, float *out) {
    const int eqt = cfg[C_EMB_QTYPE], H = cfg[C_HIDDEN], bsz = block_bytes(eqt);
    dequant_job dj = {eqt, bsz, H / 32, 1, H, (const uint8_t *)ptrs[0] + (size_t)token * (H / 32) * bsz, out};
    dequant_rows(&dj, 0, 1);
}

/** Scratch floats wb_decode_step needs for this config and KV capacity. */
int64_t wb_decode_scratch(const int32_t *cfg, int ncfg, int cap) {
    if (!cfg || ncfg != C_COUNT || cap <= 0) return WB_E_CONFIG;
    const int64_t h = cfg[C_HIDDEN], i = cfg[C_INTER], nh = cfg[C_HEADS], nkv = cfg[C_KV_HEADS], hd = cfg[C_HEAD_DIM];
    const int64_t widest = widest_row(cfg);
    return 2 * h + (nh + 2 * nkv) * hd + nh * hd + 2 * i + widest / 32 + act_buf_floats((int)widest) + nh * (int64_t)cap;
}

typedef struct {
    rows_fn lrows;
    int H, I, NH, NKV, HD, cap, pos, rep, interleaved;
    size_t sH, sI, sA;
    const uint8_t *wq, *wk, *wv, *wo, *wg, *wu, *wd;
    float *x, *hb, *q, *k, *v, *att, *gate, *up, *xs, *probs, *kc, *vc, *xa;
    const float *in_h, *in_a, *in_g; /* inputs of the projections: fp32 vectors, or packed 8-bit ones */
    const float *c, *s;
    float scale;
} step_job;

/* Q, K and V rows as one chunk list */
static void qkv_chunk(void *p, int c) {
    const step_job *j = (const step_job *)p;
    const int nq = chunks_of(j->NH * j->HD), nk = chunks_of(j->NKV * j->HD);
    const uint8_t *w;
    float *y;
    int N;
    if (c < nq) { w = j->wq; y = j->q; N = j->NH * j->HD; }
    else if (c < nq + nk) { c -= nq; w = j->wk; y = j->k; N = j->NKV * j->HD; }
    else { c -= nq + nk; w = j->wv; y = j->v; N = j->NKV * j->HD; }
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < N ? n0 + ROWS_PER_CHUNK : N;
    j->lrows(w, j->sH, j->H / 32, j->in_h, j->xs, y, n0, n1, 0);
}

/* One query (already rotated) against cached positions 0..upto: scores, softmax, weighted values.
 * The two inner loops run vectorised where the CPU has AVX2: written as plain C with
 * -ffp-contract=off they were one serial chain of scalar adds per score, about 2 ms of a 17 ms
 * decode step at 100 positions. */
static void attend_one(const float *qh, const float *kj, const float *vj, int upto, int HD, float scale, float *pr,
                       float *o) {
    float (*dot)(const float *, const float *, int) = dot_scalar;
    void (*axpy)(float *, float, const float *, int) = axpy_scalar;
#ifdef WB_X86
    if (g_isa >= ISA_AVX2) { dot = dot_avx2; axpy = axpy_avx2; }
#endif
    float mx = -INFINITY;
    for (int t = 0; t <= upto; t++) {
        const float acc = dot(qh, kj + (size_t)t * HD, HD) * scale;
        pr[t] = acc;
        if (acc > mx) mx = acc;
    }
    float sum = 0.0f;
    for (int t = 0; t <= upto; t++) {
        pr[t] = expf(pr[t] - mx);
        sum += pr[t];
    }
    for (int d = 0; d < HD; d++) o[d] = 0.0f;
    for (int t = 0; t <= upto; t++) axpy(o, pr[t] / sum, vj + (size_t)t * HD, HD);
}

/* One query head of a decode step. */
static void attend_chunk(void *p, int h) {
    const step_job *j = (const step_job *)p;
    const int HD = j->HD;
    float *qh = j->q + (size_t)h * HD;
    rope_head(qh, j->c, j->s, HD, j->interleaved);
    const int kvh = h / j->rep;
    attend_one(qh, j->kc + (size_t)kvh * j->cap * HD, j->vc + (size_t)kvh * j->cap * HD, j->pos, HD, j->scale,
               j->probs + (size_t)h * j->cap, j->att + (size_t)h * HD);
}

static void o_chunk(void *p, int c) {
    const step_job *j = (const step_job *)p;
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < j->H ? n0 + ROWS_PER_CHUNK : j->H;
    j->lrows(j->wo, j->sA, j->NH * j->HD / 32, j->in_a, j->xs, j->x, n0, n1, 1);
}

static void gate_up_chunk(void *p, int c) {
    const step_job *j = (const step_job *)p;
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < j->I ? n0 + ROWS_PER_CHUNK : j->I;
    j->lrows(j->wg, j->sH, j->H / 32, j->in_h, j->xs, j->gate, n0, n1, 0);
    j->lrows(j->wu, j->sH, j->H / 32, j->in_h, j->xs, j->up, n0, n1, 0);
    for (int i = n0; i < n1; i++) {
        const float g = j->gate[i];
        j->gate[i] = (g / (1.0f + expf(-g))) * j->up[i];
    }
}

static void down_chunk(void *p, int c) {
    const step_job *j = (const step_job *)p;
    const int n0 = c * ROWS_PER_CHUNK, n1 = n0 + ROWS_PER_CHUNK < j->H ? n0 + ROWS_PER_CHUNK : j->H;
    j->lrows(j->wd, j->sI, j->I / 32, j->in_g, j->xs, j->x, n0, n1, 1);
}

/** Whole decoder for one token at position `pos`: embedding row, every layer (K/V written into the
 * cache laid out [layers, 2, kv_heads, cap, head_dim]), final norm, logits. */
int wb_decode_step(const int64_t *ptrs, int nptrs, const int32_t *cfg, int ncfg, float eps, int token, int pos,
                   float *kv, int64_t kv_len, int cap, const float *cosr, const float *sinr, int64_t rope_len,
                   float *scratch, int64_t scratch_len, float *logits, int64_t logits_len, int nthreads) {
    if (!ptrs || !cfg || !kv || !cosr || !sinr || !scratch || !logits) return WB_E_NULL;
    const int rc = check_model(ptrs, nptrs, cfg, ncfg, nthreads);
    if (rc != WB_OK) return rc;
    const int L = cfg[C_LAYERS], H = cfg[C_HIDDEN], I = cfg[C_INTER], NH = cfg[C_HEADS], NKV = cfg[C_KV_HEADS],
              HD = cfg[C_HEAD_DIM], V = cfg[C_VOCAB];
    const int hqt = cfg[C_HEAD_QTYPE], lqt = cfg[C_LAYER_QTYPE];
    if (token < 0 || token >= V || pos < 0 || pos >= cap) return WB_E_RANGE;
    if ((int64_t)(pos + 1) * HD > rope_len) return WB_E_RANGE;
    if (kv_len < (int64_t)L * 2 * NKV * cap * HD || logits_len < V) return WB_E_SIZE;
    if (scratch_len < wb_decode_scratch(cfg, ncfg, cap)) return WB_E_SIZE;

    step_job j;
    j.x = scratch;
    j.hb = j.x + H;
    j.q = j.hb + H;
    j.k = j.q + (size_t)NH * HD;
    j.v = j.k + (size_t)NKV * HD;
    j.att = j.v + (size_t)NKV * HD;
    j.gate = j.att + (size_t)NH * HD;
    j.up = j.gate + I;
    j.xs = j.up + I;
    const int widest = (int)widest_row(cfg);
    j.xa = j.xs + widest / 32;
    j.probs = j.xa + act_buf_floats(widest);
    const int act = cfg[C_ACT];
    if (act != ACT_F32 && act != ACT_Q8 && act != ACT_Q16) return WB_E_CONFIG;
    j.lrows = rows_for_act(act, lqt);
    const int lb = block_bytes(lqt);
    j.interleaved = cfg[C_ROPE_INTERLEAVED] != 0;
    j.H = H; j.I = I; j.NH = NH; j.NKV = NKV; j.HD = HD; j.cap = cap; j.pos = pos; j.rep = NH / NKV;
    j.sH = (size_t)(H / 32) * lb;
    j.sI = (size_t)(I / 32) * lb;
    j.sA = (size_t)(NH * HD / 32) * lb;
    j.scale = 1.0f / sqrtf((float)HD);
    j.c = cosr + (size_t)pos * HD;
    j.s = sinr + (size_t)pos * HD;

    embed_row(ptrs, cfg, token, j.x);
    pthread_mutex_lock(&g_pool_owner);
    pool_size(nthreads);
    const int n_qkv = chunks_of(NH * HD) + 2 * chunks_of(NKV * HD);
    for (int l = 0; l < L; l++) {
        const int64_t *lp = ptrs + P_GLOBAL + P_LAYER * l;
        j.wq = (const uint8_t *)lp[2]; j.wk = (const uint8_t *)lp[3]; j.wv = (const uint8_t *)lp[4];
        j.wo = (const uint8_t *)lp[5]; j.wg = (const uint8_t *)lp[6]; j.wu = (const uint8_t *)lp[7];
        j.wd = (const uint8_t *)lp[8];
        j.kc = kv + (size_t)l * 2 * NKV * cap * HD;
        j.vc = j.kc + (size_t)NKV * cap * HD;
        rmsnorm(j.x, (const float *)lp[0], H, eps, j.hb);
        block_sums(j.hb, H, j.xs);
        j.in_h = pack_act(act, j.hb, H, j.xa);
        pool_run(qkv_chunk, &j, n_qkv);
        for (int h = 0; h < NKV; h++) {
            rope_head(j.k + (size_t)h * HD, j.c, j.s, HD, j.interleaved);
            memcpy(j.kc + ((size_t)h * cap + pos) * HD, j.k + (size_t)h * HD, sizeof(float) * HD);
            memcpy(j.vc + ((size_t)h * cap + pos) * HD, j.v + (size_t)h * HD, sizeof(float) * HD);
        }
        pool_run(attend_chunk, &j, NH);
        block_sums(j.att, NH * HD, j.xs);
        j.in_a = pack_act(act, j.att, NH * HD, j.xa);
        pool_run(o_chunk, &j, chunks_of(H));
        rmsnorm(j.x, (const float *)lp[1], H, eps, j.hb);
        block_sums(j.hb, H, j.xs);
        j.in_h = pack_act(act, j.hb, H, j.xa);
        pool_run(gate_up_chunk, &j, chunks_of(I));
        block_sums(j.gate, I, j.xs);
        j.in_g = pack_act(act, j.gate, I, j.xa);
        pool_run(down_chunk, &j, chunks_of(H));
    }
    rmsnorm(j.x, (const float *)ptrs[2], H, eps, j.hb);
    block_sums(j.hb, H, j.xs);
    const int hb = block_bytes(hqt);
    const float *head_in = pack_act(act, j.hb, H, j.xa);
    gemm_job hj = {rows_for_act(act, hqt), (const uint8_t *)ptrs[1], (size_t)(H / 32) * hb, H / 32,
                   V, 1, H, head_in, j.xs, logits, 0};
    pool_run(gemm_chunk, &hj, chunks_of(V));
    pthread_mutex_unlock(&g_pool_owner);
    return WB_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* Several tokens through the whole decoder in one call: a short prefill (a chat turn's new
 * tokens). The same layer code as wb_decode_step, with M rows in every projection (the many-row
 * kernel) and causal attention over the cache. Through torch, a 14-token prefill spent about 20 ms
 * of 71 in per-op dispatch between the projections and could not use the second thread. */

/** Scratch floats wb_prefill_step needs for M tokens and KV capacity `cap`. */
int64_t wb_prefill_scratch(const int32_t *cfg, int ncfg, int cap, int M) {
    if (!cfg || ncfg != C_COUNT || cap <= 0 || M <= 0) return WB_E_CONFIG;
    const int64_t h = cfg[C_HIDDEN], i = cfg[C_INTER], nh = cfg[C_HEADS], nkv = cfg[C_KV_HEADS], hd = cfg[C_HEAD_DIM];
    return M * (2 * h + (nh + 2 * nkv) * hd + nh * hd + 2 * i) + (int64_t)gemm_scratch_floats(M, (int)widest_row(cfg)) +
           nh * (int64_t)cap;
}

typedef struct {
    int M, pos, HD, cap, rep, interleaved, qstride, astride;
    float *q, *att, *probs;
    const float *kc, *vc, *cosr, *sinr;
    float scale;
} prefill_attend_job;

/* One query head for every new row: row i sits at position pos + i and sees positions 0..pos+i. */
static void prefill_attend_chunk(void *p, int h) {
    const prefill_attend_job *j = (const prefill_attend_job *)p;
    const int HD = j->HD, kvh = h / j->rep;
    const float *kj = j->kc + (size_t)kvh * j->cap * HD, *vj = j->vc + (size_t)kvh * j->cap * HD;
    for (int i = 0; i < j->M; i++) {
        const int at = j->pos + i;
        float *qh = j->q + (size_t)i * j->qstride + (size_t)h * HD;
        rope_head(qh, j->cosr + (size_t)at * HD, j->sinr + (size_t)at * HD, HD, j->interleaved);
        attend_one(qh, kj, vj, at, HD, j->scale, j->probs + (size_t)h * j->cap, j->att + (size_t)i * j->astride + (size_t)h * HD);
    }
}

/** Tokens `tokens[0..M)` at positions pos..pos+M-1 through every layer (their K/V written into the
 * cache), then the final norm and the logits of the last one. fp32 math in every weights mode. */
int wb_prefill_step(const int64_t *ptrs, int nptrs, const int32_t *cfg, int ncfg, float eps, const int32_t *tokens,
                    int M, int pos, float *kv, int64_t kv_len, int cap, const float *cosr, const float *sinr,
                    int64_t rope_len, float *scratch, int64_t scratch_len, float *logits, int64_t logits_len,
                    int nthreads) {
    if (!ptrs || !cfg || !tokens || !kv || !cosr || !sinr || !scratch || !logits) return WB_E_NULL;
    const int rc = check_model(ptrs, nptrs, cfg, ncfg, nthreads);
    if (rc != WB_OK) return rc;
    if (M <= 0) return WB_E_SHAPE;
    const int L = cfg[C_LAYERS], H = cfg[C_HIDDEN], I = cfg[C_INTER], NH = cfg[C_HEADS], NKV = cfg[C_KV_HEADS],
              HD = cfg[C_HEAD_DIM], V = cfg[C_VOCAB];
    const int hqt = cfg[C_HEAD_QTYPE], lqt = cfg[C_LAYER_QTYPE];
    for (int i = 0; i < M; i++)
        if (tokens[i] < 0 || tokens[i] >= V) return WB_E_RANGE;
    if (pos < 0 || pos + M > cap) return WB_E_RANGE;
    if ((int64_t)(pos + M) * HD > rope_len) return WB_E_RANGE;
    if (kv_len < (int64_t)L * 2 * NKV * cap * HD || logits_len < V) return WB_E_SIZE;
    if (scratch_len < wb_prefill_scratch(cfg, ncfg, cap, M)) return WB_E_SIZE;

    const int QD = NH * HD, KD = NKV * HD;
    float *x = scratch, *hb = x + (size_t)M * H, *q = hb + (size_t)M * H, *k = q + (size_t)M * QD,
          *v = k + (size_t)M * KD, *att = v + (size_t)M * KD, *gate = att + (size_t)M * QD, *up = gate + (size_t)M * I;
    float *gs = up + (size_t)M * I, *probs = gs + gemm_scratch_floats(M, (int)widest_row(cfg));
    const int interleaved = cfg[C_ROPE_INTERLEAVED] != 0;

    for (int i = 0; i < M; i++) embed_row(ptrs, cfg, tokens[i], x + (size_t)i * H);
    pick_isa();
    pthread_mutex_lock(&g_pool_owner);
    pool_size(nthreads);
    for (int l = 0; l < L; l++) {
        const int64_t *lp = ptrs + P_GLOBAL + P_LAYER * l;
        float *kc = kv + (size_t)l * 2 * NKV * cap * HD, *vc = kc + (size_t)NKV * cap * HD;
        for (int i = 0; i < M; i++) rmsnorm(x + (size_t)i * H, (const float *)lp[0], H, eps, hb + (size_t)i * H);
        gemm_locked(lqt, hb, M, H, (const uint8_t *)lp[2], QD, q, 0, gs);
        gemm_locked(lqt, hb, M, H, (const uint8_t *)lp[3], KD, k, 0, gs);
        gemm_locked(lqt, hb, M, H, (const uint8_t *)lp[4], KD, v, 0, gs);
        for (int i = 0; i < M; i++) {
            const int at = pos + i;
            for (int h = 0; h < NKV; h++) {
                float *kh = k + (size_t)i * KD + (size_t)h * HD;
                rope_head(kh, cosr + (size_t)at * HD, sinr + (size_t)at * HD, HD, interleaved);
                memcpy(kc + ((size_t)h * cap + at) * HD, kh, sizeof(float) * HD);
                memcpy(vc + ((size_t)h * cap + at) * HD, v + (size_t)i * KD + (size_t)h * HD, sizeof(float) * HD);
            }
        }
        prefill_attend_job aj = {M, pos, HD, cap, NH / NKV, interleaved, QD, QD, q, att, probs, kc, vc, cosr, sinr,
                                 1.0f / sqrtf((float)HD)};
        pool_run(prefill_attend_chunk, &aj, NH);
        gemm_locked(lqt, att, M, QD, (const uint8_t *)lp[5], H, x, 1, gs);
        for (int i = 0; i < M; i++) rmsnorm(x + (size_t)i * H, (const float *)lp[1], H, eps, hb + (size_t)i * H);
        gemm_locked(lqt, hb, M, H, (const uint8_t *)lp[6], I, gate, 0, gs);
        gemm_locked(lqt, hb, M, H, (const uint8_t *)lp[7], I, up, 0, gs);
        for (size_t n = 0; n < (size_t)M * I; n++) {
            const float g = gate[n];
            gate[n] = (g / (1.0f + expf(-g))) * up[n];
        }
        gemm_locked(lqt, gate, M, I, (const uint8_t *)lp[8], H, x, 1, gs);
    }
    float *last = x + (size_t)(M - 1) * H;
    rmsnorm(last, (const float *)ptrs[2], H, eps, hb);
    gemm_locked(hqt, hb, 1, H, (const uint8_t *)ptrs[1], V, logits, 0, gs);
    pthread_mutex_unlock(&g_pool_owner);
    return WB_OK;
}
