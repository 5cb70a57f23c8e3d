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
 *   t = 2^e m from the bits, m in [1, 2); i = round((m - 1) * 16); i = 16 means m / 2
 *       against entry 0 (e + 1), so log t near 1 is computed from r = t - 1 alone
 *   r = m * inv[i] - 1  (inv[i]: 1/(1 + i/16) to 28 bits; m has 24, so the product and the
 *       subtraction are exact)
 *   log1p(r) = r + r^2 q(r), q a degree-7 Chebyshev fit on |r| <= 1/32 (error 2^-55 |r|),
 *       evaluated by Estrin's scheme: q = ((c0 r + c1) r^2 + (c2 r + c3)) r^4
 *       + ((c4 r + c5) r^2 + (c6 r + c7))
 *   log t = (e ln2_hi + logc_hi[i]) + (log1p(r) + (e ln2_lo + logc_lo[i]))
 *       (the first sum is exact: ln2_hi and logc_hi[i] are multiples of 2^-42)
 *   term = t (log t - x)
 * A +0 target gives 0 * finite = +-0 (torch's xlogy rule). Per chunk the kernel writes its
 * 16 lane sums, the largest target's bits and the largest |x|'s bits: bits at or above
 * inf's (negative, -0, inf, NaN targets; inf or NaN inputs) send the chunk to the slow path.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define OUT_STRIDE 18
#define TABLE 16
/* Bytes prefetched ahead of the elements being read. */
#define AHEAD 1024

enum { K_F16 = 0, K_F32 = 1, K_F64 = 2 };

/* The table (kernel.py's TABLE): inv[16], logc_hi[16], logc_lo[16], ln2_hi, ln2_lo, then the
 * coefficients of q(r), highest degree first. */
#define LN2_HI (3 * TABLE)
#define LN2_LO (3 * TABLE + 1)
#define QCOEF (3 * TABLE + 2)
#define QN 8
#define MANT 0x000fffffffffffffULL
#define ONE 0x3ff0000000000000ULL
#define EXP_BIAS 0x4330000000000000ULL
#define UNBIAS 0x1.00000000003ffp52

static inline uint64_t bits_of(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static inline double double_of(uint64_t u) {
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

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

/* The term of one element (the scalar statement of the algorithm above). */
static inline __attribute__((always_inline)) double term1(double tv, double xv,
                                                         const double *tab) {
    uint64_t tb = bits_of(tv);
    uint64_t i = (((tb >> 47) & 31) + 1) >> 1, up = i >> 4;
    double e = double_of(((tb >> 52) + up) | EXP_BIAS) - UNBIAS;
    uint64_t mb = ((tb & MANT) | ONE) - (up << 52);
    double r = double_of(mb) * tab[i & 15] - 1.0;
    /* Estrin's scheme: the same polynomial as Horner's, a third of its dependency chain. */
    const double *c = tab + QCOEF;
    double r2 = r * r, r4 = r2 * r2;
    double a0 = c[0] * r + c[1], a1 = c[2] * r + c[3], a2 = c[4] * r + c[5], a3 = c[6] * r + c[7];
    double q = (a0 * r2 + a1) * r4 + (a2 * r2 + a3);
    double p = r + r2 * q;
    double l = (e * tab[LN2_HI] + tab[TABLE + (i & 15)]) +
               (p + (e * tab[LN2_LO] + tab[2 * TABLE + (i & 15)]));
    return tv * (l - xv);
}

/* One element into lane k, with its target key and |x|. */
static inline __attribute__((always_inline)) void one(double tv, double xv, const double *tab,
                                                      int k, double *acc, uint64_t *tkey,
                                                      uint64_t *xabs) {
    acc[k] += term1(tv, xv, tab);
    uint64_t tb = bits_of(tv);
    uint64_t xa = bits_of(xv) & 0x7fffffffffffffffULL;
    tkey[k] = tb > tkey[k] ? tb : tkey[k];
    xabs[k] = xa > xabs[k] ? xa : xabs[k];
}

static inline __attribute__((always_inline)) void finish(const double *acc, const uint64_t *tkey,
                                                         const uint64_t *xabs, double *o) {
    uint64_t tk_max = 0, xa_max = 0;
    for (int k = 0; k < LANES; k++) {
        o[k] = acc[k];
        tk_max = tkey[k] > tk_max ? tkey[k] : tk_max;
        xa_max = xabs[k] > xa_max ? xabs[k] : xa_max;
    }
    memcpy(o + LANES, &tk_max, 8);
    memcpy(o + LANES + 1, &xa_max, 8);
}

static inline __attribute__((always_inline)) void chunks(const void *x, int xk, const void *t,
                                                         int tk, int64_t n, int64_t chunk,
                                                         const double *tab, double *out) {
    for (int64_t start = 0, c = 0; start < n; start += chunk, c++) {
        int64_t end = start + chunk < n ? start + chunk : n;
        double acc[LANES] = {0};
        uint64_t tkey[LANES] = {0}, xabs[LANES] = {0};
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
                uint64_t tb = bits_of(tv[k]), xa = bits_of(xv[k]) & 0x7fffffffffffffffULL;
                tkey[k] = tb > tkey[k] ? tb : tkey[k];
                xabs[k] = xa > xabs[k] ? xa : xabs[k];
            }
        }
        for (int k = 0; j < end; j++, k++)
            one(load1(t, tk, j), load1(x, xk, j), tab, k, acc, tkey, xabs);
        finish(acc, tkey, xabs, out + c * OUT_STRIDE);
    }
}

static void chunks_generic(const void *x, int xk, const void *t, int tk, int64_t n, int64_t chunk,
                           const double *tab, double *out) {
    chunks(x, xk, t, tk, n, chunk, tab, out);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define KL_X86 1
#include <immintrin.h>

__attribute__((target("avx2"))) static void chunks_avx2(const void *x, int xk, const void *t,
                                                       int tk, int64_t n, int64_t chunk,
                                                       const double *tab, double *out) {
    chunks(x, xk, t, tk, n, chunk, tab, out);
}

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"), always_inline)) inline

/* Elements j .. j+15 of src as doubles: the lanes 0-7 and 8-15. */
static AVX512 void load16(const void *src, int kind, int64_t j, __m512d *lo, __m512d *hi) {
    if (kind == K_F64) {
        const double *s = (const double *)src + j;
        *lo = _mm512_loadu_pd(s);
        *hi = _mm512_loadu_pd(s + 8);
        _mm_prefetch((const char *)s + AHEAD, _MM_HINT_NTA);
        _mm_prefetch((const char *)s + AHEAD + 64, _MM_HINT_NTA);
        return;
    }
    __m512 f;
    if (kind == K_F32) {
        const float *s = (const float *)src + j;
        f = _mm512_loadu_ps(s);
        _mm_prefetch((const char *)s + AHEAD, _MM_HINT_NTA);
    } else {
        const uint16_t *s = (const uint16_t *)src + j;
        f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s));
        if ((j & 31) == 0) _mm_prefetch((const char *)s + AHEAD, _MM_HINT_NTA);
    }
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    *hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(f, 1));
}

typedef struct {
    __m512d inv0, inv1, hi0, hi1, lo0, lo1, ln2_hi, ln2_lo, q[QN];
} Tables;

/* one() on 8 lanes, with the instructions AVX-512 has for it: getexp/getmant split t (the
 * same e and m as the bits give; a +0 target is first raised to the smallest normal, whose
 * finite logarithm then meets t = 0 as it does in one()), and fused multiply-adds only
 * where the product is exact (so the result is the same as separate operations). */
static AVX512 void eight(__m512d t, __m512d x, const Tables *tb_, __m512d *acc, __m512i *tkey,
                         __m512i *xabs) {
    __m512i tb = _mm512_castpd_si512(t);
    __m512d tn = _mm512_max_pd(t, _mm512_set1_pd(0x1p-1022));
    __m512d e = _mm512_getexp_pd(tn);
    __m512d m = _mm512_getmant_pd(tn, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_src);
    __m512i v = _mm512_add_epi64(_mm512_castpd_si512(m), _mm512_set1_epi64(1LL << 47));
    __m512i i = _mm512_srli_epi64(v, 48);
    __mmask8 up = _mm512_testn_epi64_mask(v, _mm512_set1_epi64(1LL << 52));
    e = _mm512_mask_add_pd(e, up, e, _mm512_set1_pd(1.0));
    m = _mm512_mask_mul_pd(m, up, m, _mm512_set1_pd(0.5));
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
    __m512d lo = _mm512_add_pd(_mm512_mul_pd(e, tb_->ln2_lo),
                               _mm512_permutex2var_pd(tb_->lo0, i, tb_->lo1));
    __m512d l = _mm512_add_pd(hi, _mm512_add_pd(p, lo));
    *acc = _mm512_add_pd(*acc, _mm512_mul_pd(t, _mm512_sub_pd(l, x)));
    *tkey = _mm512_max_epu64(*tkey, tb);
    __m512i xa =
        _mm512_and_si512(_mm512_castpd_si512(x), _mm512_set1_epi64(0x7fffffffffffffffLL));
    *xabs = _mm512_max_epu64(*xabs, xa);
}

/* The chunks' 16-lane loop (then the tail, element by element). */
static AVX512 void chunks512(const void *x, int xk, const void *t, int tk, int64_t n,
                             int64_t chunk, const double *tab, double *out, const Tables *tb_) {
    for (int64_t start = 0, c = 0; start < n; start += chunk, c++) {
        int64_t end = start + chunk < n ? start + chunk : n;
        __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
        __m512i tk0 = _mm512_setzero_si512(), tk1 = tk0, xa0 = tk0, xa1 = tk0;
        int64_t j = start;
        for (; j + LANES <= end; j += LANES) {
            __m512d t0, t1, x0, x1;
            load16(t, tk, j, &t0, &t1);
            load16(x, xk, j, &x0, &x1);
            eight(t0, x0, tb_, &acc0, &tk0, &xa0);
            eight(t1, x1, tb_, &acc1, &tk1, &xa1);
        }
        double acc[LANES];
        uint64_t tkey[LANES], xabs[LANES];
        _mm512_storeu_pd(acc, acc0);
        _mm512_storeu_pd(acc + 8, acc1);
        _mm512_storeu_si512(tkey, tk0);
        _mm512_storeu_si512(tkey + 8, tk1);
        _mm512_storeu_si512(xabs, xa0);
        _mm512_storeu_si512(xabs + 8, xa1);
        for (int k = 0; j < end; j++, k++)
            one(load1(t, tk, j), load1(x, xk, j), tab, k, acc, tkey, xabs);
        finish(acc, tkey, xabs, out + c * OUT_STRIDE);
    }
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static void chunks_avx512(
    const void *x, int xk, const void *t, int tk, int64_t n, int64_t chunk, const double *tab,
    double *out) {
    Tables tb_ = {_mm512_loadu_pd(tab),          _mm512_loadu_pd(tab + 8),
                  _mm512_loadu_pd(tab + 16),     _mm512_loadu_pd(tab + 24),
                  _mm512_loadu_pd(tab + 32),     _mm512_loadu_pd(tab + 40),
                  _mm512_set1_pd(tab[LN2_HI]), _mm512_set1_pd(tab[LN2_LO]),
                  {_mm512_setzero_pd()}};
    for (int d = 0; d < QN; d++) tb_.q[d] = _mm512_set1_pd(tab[QCOEF + d]);
    chunks512(x, xk, t, tk, n, chunk, tab, out, &tb_);
}
#endif

/* The best instruction set this CPU offers: 2 AVX-512, 1 AVX2, 0 generic. */
int kl_isa(void) {
#ifdef KL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
        return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* Sums the chunks of n elements of x and t (kinds 0 float16, 1 float32, 2 float64; t
 * float16 or float32) with
 * the table tab, writing OUT_STRIDE doubles per chunk to out, using instruction set isa
 * (at most kl_isa()). Returns 0, or -1 for arguments it does not take. */
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
