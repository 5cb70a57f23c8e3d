/* The fused exact KL kernel: sum of t * (log t - x) over chunks, one pass per chunk.
 *
 * Optional accelerator of kldiv_cli/core/kernel.py, whose NumPy fallback performs the very
 * same IEEE double operations in the same order, so both give the same bits. Therefore:
 * no FMA contraction (compile with -ffp-contract=off), no -ffast-math. Three variants run
 * the same operations: AVX-512 intrinsics, and plain C compiled for AVX2 and for any CPU.
 * A lane's sum never depends on the vector width: element j of a chunk always goes to lane
 * j % 16, and each lane is summed in order.
 *
 * Targets are float32 or float16 (float64 targets keep NumPy's log in kldiv, so that
 * x = np.log(t) gives exactly 0); inputs float16, float32 or float64.
 * Per element (t, x widened exactly to double; t > 0, or +0; x finite):
 *   t = 2^e m from the bits, m in [0.75, 1.5); i = round(21 m - 16) (exact), the entry for
 *       m near 1 + (i - 5)/21; entry 5 is 1, so log t near 1 is computed from r = t - 1 alone
 *   r = m * inv[i] - 1  (inv[i]: near 1/(1 + (i - 5)/21), 29 bits; m has 24, so the product
 *       and the subtraction are exact; |r| <= 1/32)
 *   log1p(r) = r + r^2 q(r), q a degree-7 Chebyshev fit on |r| <= 1/32 (error 2^-55 |r|),
 *       evaluated by Estrin's scheme: q = ((c0 r + c1) r^2 + (c2 r + c3)) r^4
 *       + ((c4 r + c5) r^2 + (c6 r + c7))
 *   log t = (e ln2_hi + logc[i]) + (log1p(r) + e ln2_lo)
 *       inv[i] is chosen so that -log(inv[i]) is within 2^-63 of logc[i], a multiple of
 *       2^-42 (Gal's accurate tables), and ln2_hi and ln2_lo have at most 42 bits: both
 *       products are exact for |e| < 2^11 and the first sum is exact too.
 *   term = t (log t - x)
 * A +0 target gives 0 * finite = +-0 (torch's xlogy rule). Per chunk the kernel writes its
 * 16 lane sums and the largest target's bits (as the target dtype's unsigned integer, widened
 * as a value): bits at or above inf's (negative, -0, inf, NaN targets) send the chunk to the
 * slow path; an inf or NaN input makes its lane's sum inf or NaN, which does too.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "klbits.h"

#define LANES 16
#define OUT_STRIDE 17
#define TABLE 16
/* Bytes prefetched ahead of the elements being read. */
#define AHEAD 1024

enum { K_F16 = 0, K_F32 = 1, K_F64 = 2 };

/* The table (kernel.py's TABLE_VALUES): inv[16], logc[16], ln2_hi, ln2_lo, then the
 * coefficients of q(r), highest degree first. */
#define LN2_HI (2 * TABLE)
#define LN2_LO (2 * TABLE + 1)
#define QCOEF (2 * TABLE + 2)
#define QN 8
#define MANT 0x000fffffffffffffULL
#define ONE 0x3ff0000000000000ULL
#define EXP_BIAS 0x4330000000000000ULL
#define UNBIAS 0x1.00000000003ffp52

/* float16 bits to double, exactly: the 15 bits below the sign spell the value times
 * 2^-112 as a float32; inf and NaN become NaN (the chunk then goes to the slow path). */
static inline double half_value(uint16_t h) {
    uint32_t mag = (uint32_t)(h & 0x7fffu) << 13;
    float f;
    memcpy(&f, &mag, sizeof f);
    uint64_t b = bits_of((double)f * 0x1p112);
    b |= (uint64_t)(h & 0x8000u) << 48;
    b |= ((h & 0x7c00u) == 0x7c00u) ? 0x7ff8000000000000ULL : 0;
    return double_of(b);
}

static inline double load1(const void *src, int kind, int64_t j) {
    if (kind == K_F64) return ((const double *)src)[j];
    if (kind == K_F32) return (double)((const float *)src)[j];
    return half_value(((const uint16_t *)src)[j]);
}

/* A target's bits as an unsigned integer of its width (float16 or float32): their maximum
 * is the largest target when all are finite and non-negative, and at or above inf's
 * bits otherwise. */
static inline uint32_t key1(const void *t, int kind, int64_t j) {
    if (kind == K_F32) {
        uint32_t u;
        memcpy(&u, (const float *)t + j, sizeof u);
        return u;
    }
    return ((const uint16_t *)t)[j];
}

/* The term of one element (the scalar statement of the algorithm above). */
static inline __attribute__((always_inline)) double term1(double tv, double xv,
                                                         const double *tab) {
    uint64_t tb = bits_of(tv), big = (tb >> 51) & 1; /* m >= 1.5: halved, e + 1 */
    double e = double_of(((tb >> 52) + big) | EXP_BIAS) - UNBIAS;
    double m = double_of(((tb & MANT) | ONE) - (big << 52));
    /* round(21 m - 16) in the low bits of a sum with 1.5 * 2^52: no conversion to an integer,
     * which compilers cannot vectorise for AVX2 or SSE2 */
    uint64_t i = bits_of(m * 21.0 - 16.0 + 0x1.8p52) & 15;
    double r = m * tab[i] - 1.0;
    /* Estrin's scheme: the same polynomial as Horner's, a third of its dependency chain. */
    const double *c = tab + QCOEF;
    double r2 = r * r, r4 = r2 * r2;
    double a0 = c[0] * r + c[1], a1 = c[2] * r + c[3], a2 = c[4] * r + c[5], a3 = c[6] * r + c[7];
    double q = (a0 * r2 + a1) * r4 + (a2 * r2 + a3);
    double p = r + r2 * q;
    double l = (e * tab[LN2_HI] + tab[TABLE + i]) + (p + e * tab[LN2_LO]);
    return tv * (l - xv);
}

/* The row of a chunk: its lane sums, then the largest target key widened as a value. */
static inline __attribute__((always_inline)) void finish(const double *acc, uint32_t key,
                                                         int tk, double *o) {
    for (int k = 0; k < LANES; k++) o[k] = acc[k];
    float f;
    memcpy(&f, &key, sizeof f);
    o[LANES] = tk == K_F32 ? (double)f : half_value((uint16_t)key);
}

static inline __attribute__((always_inline)) void chunks(const void *x, int xk, const void *t,
                                                         int tk, int64_t n, int64_t chunk,
                                                         const double *tab, double *out) {
    for (int64_t start = 0, c = 0; start < n; start += chunk, c++) {
        int64_t end = start + chunk < n ? start + chunk : n;
        double acc[LANES] = {0};
        uint32_t key[LANES] = {0};
        int64_t j = start;
        /* 16 elements at a time, in arrays the compiler can keep in vector registers. */
        for (; j + LANES <= end; j += LANES) {
            double tv[LANES], xv[LANES];
            for (int k = 0; k < LANES; k++) {
                tv[k] = load1(t, tk, j + k);
                xv[k] = load1(x, xk, j + k);
            }
            for (int k = 0; k < LANES; k++) acc[k] += term1(tv[k], xv[k], tab);
            for (int k = 0; k < LANES; k++) {
                uint32_t b = key1(t, tk, j + k);
                key[k] = b > key[k] ? b : key[k];
            }
        }
        uint32_t top = 0;
        for (int k = 0; j < end; j++, k++) {
            acc[k] += term1(load1(t, tk, j), load1(x, xk, j), tab);
            uint32_t b = key1(t, tk, j);
            top = b > top ? b : top;
        }
        for (int k = 0; k < LANES; k++) top = key[k] > top ? key[k] : top;
        finish(acc, top, tk, out + c * OUT_STRIDE);
    }
}

static void chunks_generic(const void *x, int xk, const void *t, int tk, int64_t n, int64_t chunk,
                           const double *tab, double *out) {
    chunks(x, xk, t, tk, n, chunk, tab, out);
}

/* float64 targets: over each block of LOG_BLOCK elements (the last one ragged), the 64 lane
 * sums of t * (a - x), element j of the block into lane j % 64, in order; a = NumPy's log(t)
 * (any value where t == 0, which reads as 0 there: torch's xlogy rule, 0 * -x). Then the
 * number of zero targets. Blocks keep each sum short (64 terms; kldiv adds the blocks' lanes
 * pairwise), 64 lanes fit in registers. */
#define LOG_LANES 64
#define LOG_BLOCK 4096

static inline __attribute__((always_inline)) void log_lanes(const double *a, const void *x, int xk,
                                                            const double *t, int64_t n,
                                                            double *out) {
    int64_t zeros = 0;
    for (int64_t j = 0; j < n; j += LOG_BLOCK, out += LOG_LANES) {
        int64_t m = n - j < LOG_BLOCK ? n - j : LOG_BLOCK;
        double acc[LOG_LANES] = {0};
        int64_t row = 0;
        for (; row + LOG_LANES <= m; row += LOG_LANES) /* whole rows: vectorised */
            for (int k = 0; k < LOG_LANES; k++) {
                int64_t i = j + row + k;
                double tv = t[i], av = tv == 0 ? 0.0 : a[i];
                acc[k] += tv * (av - load1(x, xk, i));
                zeros += tv == 0;
            }
        for (int64_t k = 0; row + k < m; k++) {
            int64_t i = j + row + k;
            acc[k] += t[i] * ((t[i] == 0 ? 0.0 : a[i]) - load1(x, xk, i));
            zeros += t[i] == 0;
        }
        for (int k = 0; k < LOG_LANES; k++) out[k] = acc[k];
    }
    out[0] = (double)zeros;
}

static void log_lanes_generic(const double *a, const void *x, int xk, const double *t, int64_t n,
                              double *out) {
    log_lanes(a, x, xk, t, n, out);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KL_X86 1
#include <immintrin.h>

__attribute__((target("avx2"))) static void chunks_avx2(const void *x, int xk, const void *t,
                                                       int tk, int64_t n, int64_t chunk,
                                                       const double *tab, double *out) {
    chunks(x, xk, t, tk, n, chunk, tab, out);
}

__attribute__((target("avx2"))) static void log_lanes_avx2(const double *a, const void *x, int xk,
                                                          const double *t, int64_t n,
                                                          double *out) {
    log_lanes(a, x, xk, t, n, out);
}

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,f16c"), always_inline)) inline

/* Elements j .. j+15 of src as doubles: the lanes 0-7 and 8-15. Two 256-bit conversions
 * of float32 (no extract); float16 through float32. */
static AVX512 void load16(const void *src, int kind, int64_t j, __m512d *lo, __m512d *hi) {
    if (kind == K_F64) {
        const double *s = (const double *)src + j;
        *lo = _mm512_loadu_pd(s);
        *hi = _mm512_loadu_pd(s + 8);
    } else if (kind == K_F32) {
        const float *s = (const float *)src + j;
        *lo = _mm512_cvtps_pd(_mm256_loadu_ps(s));
        *hi = _mm512_cvtps_pd(_mm256_loadu_ps(s + 8));
    } else {
        const __m128i *s = (const __m128i *)((const uint16_t *)src + j);
        *lo = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(s)));
        *hi = _mm512_cvtps_pd(_mm256_cvtph_ps(_mm_loadu_si128(s + 1)));
    }
}

/* The largest key of elements j .. j+15 of the targets, lane by lane (float32: 16 lanes of
 * 32 bits; float16: 16 lanes of 16 bits in the low half). */
static AVX512 __m512i keys16(const void *t, int kind, int64_t j, __m512i key) {
    if (kind == K_F32)
        return _mm512_max_epu32(key, _mm512_loadu_si512((const float *)t + j));
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)t + j));
    return _mm512_inserti64x4(key, _mm256_max_epu16(_mm512_castsi512_si256(key), h), 0);
}

static AVX512 void prefetch(const void *src, int kind, int64_t j) {
    /* 32 elements: 64 bytes of float16, 128 of float32, 256 of float64. */
    const char *s = (const char *)src + (j << kind << 1) + AHEAD;
    for (int b = 0; b < (1 << kind); b++) _mm_prefetch(s + 64 * b, _MM_HINT_NTA);
}

typedef struct {
    __m512d inv0, inv1, hi0, hi1, ln2_hi, ln2_lo, q[QN];
} Tables;

/* term1 on 8 lanes, with the instructions AVX-512 has for it: getexp/getmant split t (the
 * same e and m as the bits give; a +0 target gives m = 0 and the exponent of the smallest
 * normal, finite, so its term is 0 as in term1), the index rounded by the conversion, and
 * fused multiply-adds only where the product is exact (so the result is the same as
 * separate operations). */
static AVX512 void eight(__m512d t, __m512d x, const Tables *tb_, __m512d *acc) {
    /* e: the exponent of 4t/3 (the product's rounding cannot cross a power of 2 for a
     * 24-bit mantissa), which is that of t, plus 1 where m >= 1.5 */
    __m512d e = _mm512_getexp_pd(
        _mm512_max_pd(_mm512_mul_pd(t, _mm512_set1_pd(4.0 / 3)), _mm512_set1_pd(0x1p-1022)));
    __m512d m = _mm512_getmant_pd(t, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src);
    __m512i i = _mm512_cvt_roundpd_epi64(
        _mm512_fmsub_pd(m, _mm512_set1_pd(21.0), _mm512_set1_pd(16.0)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d inv = _mm512_permutex2var_pd(tb_->inv0, i, tb_->inv1);
    __m512d r = _mm512_fmsub_pd(m, inv, _mm512_set1_pd(1.0));
    __m512d r2 = _mm512_mul_pd(r, r), r4 = _mm512_mul_pd(r2, r2);
    __m512d a0 = _mm512_add_pd(_mm512_mul_pd(tb_->q[0], r), tb_->q[1]);
    __m512d a1 = _mm512_add_pd(_mm512_mul_pd(tb_->q[2], r), tb_->q[3]);
    __m512d a2 = _mm512_add_pd(_mm512_mul_pd(tb_->q[4], r), tb_->q[5]);
    __m512d a3 = _mm512_add_pd(_mm512_mul_pd(tb_->q[6], r), tb_->q[7]);
    __m512d b0 = _mm512_add_pd(_mm512_mul_pd(a0, r2), a1);
    __m512d b1 = _mm512_add_pd(_mm512_mul_pd(a2, r2), a3);
    __m512d q = _mm512_add_pd(_mm512_mul_pd(b0, r4), b1);
    __m512d p = _mm512_add_pd(r, _mm512_mul_pd(r2, q));
    __m512d hi = _mm512_fmadd_pd(e, tb_->ln2_hi, _mm512_permutex2var_pd(tb_->hi0, i, tb_->hi1));
    __m512d l = _mm512_add_pd(hi, _mm512_fmadd_pd(e, tb_->ln2_lo, p));
    *acc = _mm512_add_pd(*acc, _mm512_mul_pd(t, _mm512_sub_pd(l, x)));
}

/* Elements j .. j+15 into the lanes 0-7 (acc0) and 8-15 (acc1). */
static AVX512 void sixteen(const void *x, int xk, const void *t, int tk, int64_t j,
                           const Tables *tb_, __m512d *acc0, __m512d *acc1, __m512i *key) {
    __m512d t0, t1, x0, x1;
    load16(t, tk, j, &t0, &t1);
    load16(x, xk, j, &x0, &x1);
    *key = keys16(t, tk, j, *key);
    eight(t0, x0, tb_, acc0);
    eight(t1, x1, tb_, acc1);
}

/* The chunks' loop: 32 elements a step (one prefetch per cache line), then 16, then the
 * tail element by element. */
static AVX512 void chunks512(const void *x, int xk, const void *t, int tk, int64_t n,
                             int64_t chunk, const double *tab, double *out, const Tables *tb_) {
    for (int64_t start = 0, c = 0; start < n; start += chunk, c++) {
        int64_t end = start + chunk < n ? start + chunk : n;
        __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
        __m512i key = _mm512_setzero_si512();
        int64_t j = start;
        for (; j + 2 * LANES <= end; j += 2 * LANES) {
            prefetch(t, tk, j);
            prefetch(x, xk, j);
            sixteen(x, xk, t, tk, j, tb_, &acc0, &acc1, &key);
            sixteen(x, xk, t, tk, j + LANES, tb_, &acc0, &acc1, &key);
        }
        if (j + LANES <= end) {
            sixteen(x, xk, t, tk, j, tb_, &acc0, &acc1, &key);
            j += LANES;
        }
        double acc[LANES];
        _mm512_storeu_pd(acc, acc0);
        _mm512_storeu_pd(acc + 8, acc1);
        uint32_t top = tk == K_F32 ? _mm512_reduce_max_epu32(key)
                                   : (uint32_t)_mm512_reduce_max_epu32(_mm512_cvtepu16_epi32(
                                         _mm512_castsi512_si256(key)));
        for (int k = 0; j < end; j++, k++) {
            acc[k] += term1(load1(t, tk, j), load1(x, xk, j), tab);
            uint32_t b = key1(t, tk, j);
            top = b > top ? b : top;
        }
        finish(acc, top, tk, out + c * OUT_STRIDE);
    }
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,f16c"))) static void chunks_avx512(
    const void *x, int xk, const void *t, int tk, int64_t n, int64_t chunk, const double *tab,
    double *out) {
    Tables tb_ = {_mm512_loadu_pd(tab),        _mm512_loadu_pd(tab + 8),
                  _mm512_loadu_pd(tab + 16),   _mm512_loadu_pd(tab + 24),
                  _mm512_set1_pd(tab[LN2_HI]), _mm512_set1_pd(tab[LN2_LO]),
                  {_mm512_setzero_pd()}};
    for (int d = 0; d < QN; d++) tb_.q[d] = _mm512_set1_pd(tab[QCOEF + d]);
    chunks512(x, xk, t, tk, n, chunk, tab, out, &tb_);
}

/* log_lanes 64 elements at a time, in 8 vectors of 8 lanes (software prefetch made it slower:
 * a and t are in cache, just written and read by NumPy's log). */
__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw,f16c"))) static void log_lanes_avx512(
    const double *a, const void *x, int xk, const double *t, int64_t n, double *out) {
    __m512d zero = _mm512_setzero_pd();
    int64_t zeros = 0;
    for (int64_t j = 0; j < n; j += LOG_BLOCK, out += LOG_LANES) {
        int64_t end = n - j < LOG_BLOCK ? n : j + LOG_BLOCK, i = j;
        __m512d acc[LOG_LANES / 8];
        for (int g = 0; g < LOG_LANES / 8; g++) acc[g] = zero;
        for (; i + LOG_LANES <= end; i += LOG_LANES) {
            __m512d xv[LOG_LANES / 8];
            for (int g = 0; g < LOG_LANES / 8; g += 2) load16(x, xk, i + 8 * g, xv + g, xv + g + 1);
            for (int g = 0; g < LOG_LANES / 8; g++) {
                __m512d tv = _mm512_loadu_pd(t + i + 8 * g);
                __mmask8 z = _mm512_cmp_pd_mask(tv, zero, _CMP_EQ_OQ);
                __m512d av = _mm512_maskz_mov_pd((__mmask8)~z, _mm512_loadu_pd(a + i + 8 * g));
                acc[g] = _mm512_add_pd(acc[g], _mm512_mul_pd(tv, _mm512_sub_pd(av, xv[g])));
                if (z) zeros += __builtin_popcount(z);
            }
        }
        for (int g = 0; g < LOG_LANES / 8; g++) _mm512_storeu_pd(out + 8 * g, acc[g]);
        for (int k = 0; i < end; i++, k++) {
            out[k] += t[i] * ((t[i] == 0 ? 0.0 : a[i]) - load1(x, xk, i));
            zeros += t[i] == 0;
        }
    }
    out[0] = (double)zeros;
}
#endif

/* The best instruction set this CPU offers: 2 AVX-512, 1 AVX2, 0 generic. */
int kl_isa(void) {
#ifdef KL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("f16c"))
        return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* Sums the chunks of n elements of x and t (kinds 0 float16, 1 float32, 2 float64; t
 * float16 or float32) with the table tab, writing OUT_STRIDE doubles per chunk to out,
 * using instruction set isa (at most kl_isa()). Returns 0, or -1 for arguments it does not
 * take. */
int kl_chunks(const void *x, int xk, const void *t, int tk, int64_t n, int64_t chunk,
              const double *tab, double *out, int isa) {
    if (xk < 0 || xk > 2 || tk < 0 || tk > 1 || n < 0 || chunk <= 0) return -1;
#ifdef KL_X86
    if (isa == 2) {
        chunks_avx512(x, xk, t, tk, n, chunk, tab, out);
        return 0;
    }
    if (isa == 1) {
        chunks_avx2(x, xk, t, tk, n, chunk, tab, out);
        return 0;
    }
#endif
    if (isa != 0) return -1;
    chunks_generic(x, xk, t, tk, n, chunk, tab, out);
    return 0;
}

/* log_lanes over n elements (a, t float64; x of kind xk): the lane sums of each block, then
 * the count of zero targets, into out (64 per block, then one), using instruction set isa. Returns 0, or -1 for arguments it does not take. */
int kl_log_lanes(const double *a, const void *x, int xk, const double *t, int64_t n, double *out,
                 int isa) {
    if (xk < 0 || xk > 2 || n < 0) return -1;
#ifdef KL_X86
    if (isa == 2) {
        log_lanes_avx512(a, x, xk, t, n, out);
        return 0;
    }
    if (isa == 1) {
        log_lanes_avx2(a, x, xk, t, n, out);
        return 0;
    }
#endif
    if (isa != 0) return -1;
    log_lanes_generic(a, x, xk, t, n, out);
    return 0;
}
