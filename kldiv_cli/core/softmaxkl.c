/* The KL of softmax(t / T) against log_softmax(s / T), row by row, in one read of each row.
 *
 * Optional accelerator of kldiv_cli/core/softmaxkl.py, whose NumPy fallback performs the very
 * same IEEE double operations in the same order, so both give the same bits. Therefore: no
 * FMA contraction (compile with -ffp-contract=off), no -ffast-math. Three variants run the
 * same operations: AVX-512 and AVX2 intrinsics (the table in registers, or gathered), and plain
 * C for any CPU. Element j of a row always goes to lane j % 16, and each lane is summed in
 * order, so a lane's sum never depends on the vector width.
 *
 * Per row (s, t widened exactly to double; every s finite, every t finite or -inf (a masked
 * class), the largest t finite, else the row is refused):
 *   ms = max s / T, mt = max t / T (+ 0.0: a -0 maximum counts as +0)
 *   zt_j = max(t_j / T - mt, -708), zs_j = s_j / T - ms, nu_j = zs_j - zt_j
 *   (a teacher class below e^-708 of the largest counts as e^-708: that moves the KL by less
 *   than n e^-708 |nu|, nothing in float32 or float16, and keeps e^zt expm1(nu) = e^zs - e^zt
 *   finite however far apart the two rows are)
 *   W = sum e^{zt_j}, N = sum e^{zt_j} nu_j, B = sum e^{zt_j} expm1(nu_j)
 * and then (in Python, for both variants) KL = log1p(B / W) - N / W: B / W is
 * S_s / S_t - 1 without the cancellation of two rounded sums, so near-identical rows keep
 * their relative accuracy.
 * exp and expm1 are kldiv's own, the same on every machine: x = k ln2/16 + r with
 * k = round(x 16/ln2) (by adding and subtracting 1.5 2^52, whose low bits then hold k) and
 * r = x - k (ln2/16); e^r - 1 = r + r^2 q(r), q a degree-5 minimax fit (|r| <= ln2/32: error
 * below 2^-58.8 |r|), by Estrin's scheme; with 2^(j/16) = th[j] + tl[j] (j = k mod 16,
 * m = floor(k / 16)) and V = tl[j] + th[j] p:
 *   e^x = (th[j] + V) 2^m,   e^x - 1 = (th[j] 2^m - 1) + V 2^m.
 * Per row the kernel writes 16 lanes of W, then of N, then of B, then 0 (taken) or 1
 * (refused).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "klbits.h"

#define LANES 16
#define ROW_OUT (3 * LANES + 1)
/* Bytes prefetched ahead of the elements being read (the first pass reads from memory). */
#define AHEAD 1024

enum { K_F16 = 0, K_F32 = 1 };

/* The table (softmaxkl.py's TABLE_VALUES): th[16], tl[16], 16/ln2, ln2/16, then the
 * coefficients of q, lowest degree first. */
#define TH 0
#define TL 16
#define INVL 32
#define STEP 33
#define QC 34
#define SHIFT 0x1.8p52
#define CLAMP 708.0 /* the floor of zt and of expm1's argument: e^-708 is normal */

/* float16 bits to double, exactly: the 15 bits below the sign spell the value times 2^-112
 * as a float32; infinities stay infinities (a masked -inf class), NaN stays NaN. */
static inline double half_value(uint16_t h) {
    uint64_t sign = (uint64_t)(h & 0x8000u) << 48;
    if ((h & 0x7c00u) == 0x7c00u)
        return double_of(sign | ((h & 0x3ffu) ? 0x7ff8000000000000ULL : 0x7ff0000000000000ULL));
    uint32_t mag = (uint32_t)(h & 0x7fffu) << 13;
    float f;
    memcpy(&f, &mag, sizeof f);
    return double_of(bits_of((double)f * 0x1p112) | sign);
}

static inline double load1(const void *src, int kind, int64_t j) {
    if (kind == K_F32) return (double)((const float *)src)[j];
    return half_value(((const uint16_t *)src)[j]);
}

/* x = k ln2/16 + r: returns k (an integer, as a double) and r. */
static inline double reduce(double x, const double *tab, double *r) {
    double kd = (x * tab[INVL] + SHIFT) - SHIFT;
    *r = x - kd * tab[STEP];
    return kd;
}

/* e^r - 1 = r + r^2 q(r), q by Estrin's scheme. */
static inline double poly(double r, const double *tab) {
    const double *c = tab + QC;
    double r2 = r * r, r4 = r2 * r2;
    double a = c[0] + c[1] * r, b = c[2] + c[3] * r, d = c[4] + c[5] * r;
    double q = (a + b * r2) + d * r4;
    return r + r2 * q;
}

/* 2^(k div 16) and th, V of the formulas above. */
static inline double parts(double x, const double *tab, double *th, double *v) {
    double r, kd = reduce(x, tab, &r);
    int64_t k = (int64_t)kd;
    int64_t j = k & 15, m = k >> 4;
    double p = poly(r, tab);
    *th = tab[TH + j];
    *v = tab[TL + j] + *th * p;
    return double_of((uint64_t)(m + 1023) << 52);
}

/* The floor of zt, and of nu for expm1 (which is -1 well above it). */
static inline double floored(double x) { return x < -CLAMP ? -CLAMP : x; }

/* One element into lane k. */
static inline __attribute__((always_inline)) void one(double sv, double tv, double temp,
                                                      int scaled, double ms, double mt,
                                                      const double *tab, int k, double *acc) {
    double zt = floored((scaled ? tv / temp : tv) - mt);
    double zs = (scaled ? sv / temp : sv) - ms;
    double nu = zs - zt;
    double th, v, scale = parts(zt, tab, &th, &v);
    double et = (th + v) * scale;
    scale = parts(floored(nu), tab, &th, &v);
    double em = (th * scale - 1.0) + v * scale;
    acc[k] += et;
    acc[LANES + k] += et * nu;
    acc[2 * LANES + k] += et * em;
}

/* The first pass: the largest s and t, and whether every s is finite and every t finite or
 * -inf (-inf counts as the lowest double in the check; NaN stays NaN). */
static inline __attribute__((always_inline)) int extremes(const void *s, int sk, const void *t,
                                                         int tk, int64_t n, double *ms,
                                                         double *mt) {
    double a = -__builtin_inf(), b = -__builtin_inf();
    uint64_t worst = 0;
    for (int64_t j = 0; j < n; j++) {
        double sv = load1(s, sk, j), tv = load1(t, tk, j);
        a = sv > a ? sv : a;
        b = tv > b ? tv : b;
        double tc = tv == -__builtin_inf() ? -0x1.fffffffffffffp1023 : tv;
        uint64_t bs = bits_of(sv) & 0x7fffffffffffffffULL, bt = bits_of(tc) & 0x7fffffffffffffffULL;
        bs = bs > bt ? bs : bt;
        worst = bs > worst ? bs : worst;
    }
    *ms = a;
    *mt = b;
    return worst < 0x7ff0000000000000ULL;
}

/* The row's maxima divided by T (+ 0.0) into ms and mt. */
static inline void scale_maxima(double temp, int scaled, double *ms, double *mt) {
    if (scaled) {
        *ms = *ms / temp;
        *mt = *mt / temp;
    }
    *ms = *ms + 0.0;
    *mt = *mt + 0.0;
}

/* Whether the row is taken (values, as extremes() allows); its scaled maxima into ms, mt. */
static inline __attribute__((always_inline)) int row_setup(const void *s, int sk, const void *t,
                                                          int tk, int64_t n, double temp,
                                                          int scaled, double *ms, double *mt) {
    if (n < 1 || !extremes(s, sk, t, tk, n, ms, mt) || !(*mt > -__builtin_inf())) return 0;
    scale_maxima(temp, scaled, ms, mt);
    return 1;
}

static inline const void *row_at(const void *a, int kind, int64_t offset) {
    return kind == K_F32 ? (const void *)((const float *)a + offset)
                         : (const void *)((const uint16_t *)a + offset);
}

static inline __attribute__((always_inline)) void rows_plain(const void *s, int sk, const void *t,
                                                            int tk, int64_t rows, int64_t n,
                                                            double temp, const double *tab,
                                                            double *out) {
    int scaled = temp != 1.0;
    for (int64_t i = 0; i < rows; i++) {
        const void *si = row_at(s, sk, i * n), *ti = row_at(t, tk, i * n);
        double *o = out + i * ROW_OUT, acc[3 * LANES] = {0};
        double ms, mt;
        int ok = row_setup(si, sk, ti, tk, n, temp, scaled, &ms, &mt);
        int64_t j = 0;
        for (; ok && j + LANES <= n; j += LANES)
            for (int k = 0; k < LANES; k++)
                one(load1(si, sk, j + k), load1(ti, tk, j + k), temp, scaled, ms, mt, tab, k,
                    acc);
        for (int k = 0; ok && j < n; j++, k++)
            one(load1(si, sk, j), load1(ti, tk, j), temp, scaled, ms, mt, tab, k, acc);
        memcpy(o, acc, sizeof acc);
        o[3 * LANES] = ok ? 0.0 : 1.0;
    }
}

static void rows_generic(const void *s, int sk, const void *t, int tk, int64_t rows, int64_t n,
                         double temp, const double *tab, double *out) {
    rows_plain(s, sk, t, tk, rows, n, temp, tab, out);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define SKL_X86 1
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2"), always_inline)) inline

typedef struct {
    __m256d invl, step, shift, one, lo, q[6];
    const double *tab;
} Tables2;

/* parts() on 4 lanes (the table by gathers; the index is k's low bits, as in parts8). */
static AVX2 __m256d parts4(__m256d x, const Tables2 *c, __m256d *th, __m256d *v) {
    __m256d ks = _mm256_add_pd(_mm256_mul_pd(x, c->invl), c->shift);
    __m256d kd = _mm256_sub_pd(ks, c->shift);
    __m256d r = _mm256_sub_pd(x, _mm256_mul_pd(kd, c->step));
    __m256i k = _mm256_castpd_si256(ks);
    __m256i j = _mm256_and_si256(k, _mm256_set1_epi64x(15));
    __m256i m = _mm256_srli_epi64(k, 4);
    __m256d r2 = _mm256_mul_pd(r, r), r4 = _mm256_mul_pd(r2, r2);
    __m256d a = _mm256_add_pd(c->q[0], _mm256_mul_pd(c->q[1], r));
    __m256d b = _mm256_add_pd(c->q[2], _mm256_mul_pd(c->q[3], r));
    __m256d d = _mm256_add_pd(c->q[4], _mm256_mul_pd(c->q[5], r));
    __m256d q = _mm256_add_pd(_mm256_add_pd(a, _mm256_mul_pd(b, r2)), _mm256_mul_pd(d, r4));
    __m256d p = _mm256_add_pd(r, _mm256_mul_pd(r2, q));
    *th = _mm256_i64gather_pd(c->tab + TH, j, 8);
    *v = _mm256_add_pd(_mm256_i64gather_pd(c->tab + TL, j, 8), _mm256_mul_pd(*th, p));
    return _mm256_castsi256_pd(
        _mm256_slli_epi64(_mm256_add_epi64(m, _mm256_set1_epi64x(1023)), 52));
}

/* one() on 4 lanes. */
static AVX2 void four(__m256d sv, __m256d tv, __m256d temp, int scaled, __m256d ms, __m256d mt,
                      const Tables2 *c, double *acc) {
    if (scaled) {
        tv = _mm256_div_pd(tv, temp);
        sv = _mm256_div_pd(sv, temp);
    }
    __m256d zt = _mm256_max_pd(_mm256_sub_pd(tv, mt), c->lo), zs = _mm256_sub_pd(sv, ms);
    __m256d nu = _mm256_sub_pd(zs, zt);
    __m256d th, v, scale = parts4(zt, c, &th, &v);
    __m256d et = _mm256_mul_pd(_mm256_add_pd(th, v), scale);
    scale = parts4(_mm256_max_pd(nu, c->lo), c, &th, &v);
    __m256d em =
        _mm256_add_pd(_mm256_sub_pd(_mm256_mul_pd(th, scale), c->one), _mm256_mul_pd(v, scale));
    _mm256_storeu_pd(acc, _mm256_add_pd(_mm256_loadu_pd(acc), et));
    _mm256_storeu_pd(acc + LANES,
                     _mm256_add_pd(_mm256_loadu_pd(acc + LANES), _mm256_mul_pd(et, nu)));
    _mm256_storeu_pd(acc + 2 * LANES,
                     _mm256_add_pd(_mm256_loadu_pd(acc + 2 * LANES), _mm256_mul_pd(et, em)));
}

/* Elements j .. j+3 of src as doubles. */
static AVX2 __m256d load4(const void *src, int kind, int64_t j) {
    if (kind == K_F32) return _mm256_cvtps_pd(_mm_loadu_ps((const float *)src + j));
    const uint16_t *h = (const uint16_t *)src + j;
    return _mm256_setr_pd(half_value(h[0]), half_value(h[1]), half_value(h[2]), half_value(h[3]));
}

__attribute__((target("avx2"))) static void rows_avx2(const void *s, int sk, const void *t,
                                                     int tk, int64_t rows, int64_t n,
                                                     double temp, const double *tab,
                                                     double *out) {
    Tables2 c = {_mm256_set1_pd(tab[INVL]), _mm256_set1_pd(tab[STEP]), _mm256_set1_pd(SHIFT),
                 _mm256_set1_pd(1.0),       _mm256_set1_pd(-CLAMP),    {_mm256_setzero_pd()},
                 tab};
    for (int d = 0; d < 6; d++) c.q[d] = _mm256_set1_pd(tab[QC + d]);
    int scaled = temp != 1.0;
    __m256d tv4 = _mm256_set1_pd(temp);
    for (int64_t i = 0; i < rows; i++) {
        const void *si = row_at(s, sk, i * n), *ti = row_at(t, tk, i * n);
        double *o = out + i * ROW_OUT, acc[3 * LANES] = {0};
        double ms = 0, mt = 0;
        int ok = row_setup(si, sk, ti, tk, n, temp, scaled, &ms, &mt);
        __m256d ms4 = _mm256_set1_pd(ms), mt4 = _mm256_set1_pd(mt);
        int64_t j = 0;
        for (; ok && j + LANES <= n; j += LANES)
            for (int k = 0; k < LANES; k += 4)
                four(load4(si, sk, j + k), load4(ti, tk, j + k), tv4, scaled, ms4, mt4, &c,
                     acc + k);
        for (int k = 0; ok && j < n; j++, k++)
            one(load1(si, sk, j), load1(ti, tk, j), temp, scaled, ms, mt, tab, k, acc);
        memcpy(o, acc, sizeof acc);
        o[3 * LANES] = ok ? 0.0 : 1.0;
    }
}

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"), always_inline)) inline

/* Elements j .. j+15 of src as doubles: the lanes 0-7 and 8-15. */
static AVX512 void load16(const void *src, int kind, int64_t j, __m512d *lo, __m512d *hi) {
    __m512 f;
    if (kind == K_F32) {
        f = _mm512_loadu_ps((const float *)src + j);
    } else {
        f = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + j)));
    }
    *lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    *hi = _mm512_cvtps_pd(_mm512_extractf32x8_ps(f, 1));
}

typedef struct {
    __m512d th0, th1, tl0, tl1, invl, step, shift, one, lo, q[6];
} Tables;

/* parts() on 8 lanes: returns 2^m, with th and V. */
static AVX512 __m512d parts8(__m512d x, const Tables *c, __m512d *th, __m512d *v) {
    /* ks = 1.5 2^52 + k: its low bits are k's (two's complement), the table index. */
    __m512d ks = _mm512_add_pd(_mm512_mul_pd(x, c->invl), c->shift);
    __m512d kd = _mm512_sub_pd(ks, c->shift);
    __m512d r = _mm512_sub_pd(x, _mm512_mul_pd(kd, c->step));
    __m512i k = _mm512_castpd_si512(ks);
    /* (bits >> 4) + 1023 ends in m + 1023: the bits of 1.5 2^52 >> 4 end in 12 zeros. */
    __m512i m = _mm512_srli_epi64(k, 4);
    __m512d r2 = _mm512_mul_pd(r, r), r4 = _mm512_mul_pd(r2, r2);
    __m512d a = _mm512_add_pd(c->q[0], _mm512_mul_pd(c->q[1], r));
    __m512d b = _mm512_add_pd(c->q[2], _mm512_mul_pd(c->q[3], r));
    __m512d d = _mm512_add_pd(c->q[4], _mm512_mul_pd(c->q[5], r));
    __m512d q = _mm512_add_pd(_mm512_add_pd(a, _mm512_mul_pd(b, r2)),
                              _mm512_mul_pd(d, r4));
    __m512d p = _mm512_add_pd(r, _mm512_mul_pd(r2, q));
    *th = _mm512_permutex2var_pd(c->th0, k, c->th1);
    *v = _mm512_add_pd(_mm512_permutex2var_pd(c->tl0, k, c->tl1), _mm512_mul_pd(*th, p));
    return _mm512_castsi512_pd(
        _mm512_slli_epi64(_mm512_add_epi64(m, _mm512_set1_epi64(1023)), 52));
}

/* one() on 8 lanes. */
static AVX512 void eight(__m512d sv, __m512d tv, __m512d temp, int scaled, __m512d ms,
                         __m512d mt, const Tables *c, __m512d *w, __m512d *nsum, __m512d *b) {
    if (scaled) {
        tv = _mm512_div_pd(tv, temp);
        sv = _mm512_div_pd(sv, temp);
    }
    __m512d zt = _mm512_max_pd(_mm512_sub_pd(tv, mt), c->lo), zs = _mm512_sub_pd(sv, ms);
    __m512d nu = _mm512_sub_pd(zs, zt);
    __m512d th, v, scale = parts8(zt, c, &th, &v);
    __m512d et = _mm512_mul_pd(_mm512_add_pd(th, v), scale);
    scale = parts8(_mm512_max_pd(nu, c->lo), c, &th, &v);
    __m512d em =
        _mm512_add_pd(_mm512_sub_pd(_mm512_mul_pd(th, scale), c->one), _mm512_mul_pd(v, scale));
    *w = _mm512_add_pd(*w, et);
    *nsum = _mm512_add_pd(*nsum, _mm512_mul_pd(et, nu));
    *b = _mm512_add_pd(*b, _mm512_mul_pd(et, em));
}

/* Elements j .. j+15 of src as float32 (exact for float16). */
static AVX512 __m512 load16s(const void *src, int kind, int64_t j) {
    if (kind == K_F32) return _mm512_loadu_ps((const float *)src + j);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)src + j)));
}

/* The first pass in float32 (the extremes are values of the row, the same as in double;
 * float16 widens exactly), 16 elements at a time, then the tail: extremes()'s result. */
static AVX512 int extremes512(const void *s, int sk, const void *t, int tk, int64_t n,
                              double *ms, double *mt) {
    __m512 a = _mm512_set1_ps(-__builtin_inff()), b = a;
    __m512 lowest = _mm512_set1_ps(-0x1.fffffep127f);
    __m512i worst = _mm512_setzero_si512(), absmask = _mm512_set1_epi32(0x7fffffff);
    int64_t j = 0, sb = sk == K_F32 ? 4 : 2, tb = tk == K_F32 ? 4 : 2;
    for (; j + LANES <= n; j += LANES) {
        _mm_prefetch((const char *)s + j * sb + AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)t + j * tb + AHEAD, _MM_HINT_T0);
        __m512 vs = load16s(s, sk, j), vt = load16s(t, tk, j);
        a = _mm512_max_ps(vs, a);
        b = _mm512_max_ps(vt, b);
        /* max(lowest, t): -inf becomes finite, NaN stays (the second operand). */
        __m512i x = _mm512_max_epu32(_mm512_and_si512(_mm512_castps_si512(vs), absmask),
                                     _mm512_and_si512(
                                         _mm512_castps_si512(_mm512_max_ps(lowest, vt)), absmask));
        worst = _mm512_max_epu32(worst, x);
    }
    double ta, tb_;
    int ok = extremes(row_at(s, sk, j), sk, row_at(t, tk, j), tk, n - j, &ta, &tb_);
    double va = _mm512_reduce_max_ps(a), vb = _mm512_reduce_max_ps(b);
    *ms = ta > va ? ta : va;
    *mt = tb_ > vb ? tb_ : vb;
    return ok && (uint32_t)_mm512_reduce_max_epu32(worst) < 0x7f800000u;
}

static AVX512 void rows512(const void *s, int sk, const void *t, int tk, int64_t rows, int64_t n,
                           double temp, const double *tab, double *out, const Tables *c) {
    int scaled = temp != 1.0;
    __m512d tv8 = _mm512_set1_pd(temp);
    for (int64_t i = 0; i < rows; i++) {
        const void *si = row_at(s, sk, i * n), *ti = row_at(t, tk, i * n);
        double *o = out + i * ROW_OUT, acc[3 * LANES] = {0};
        double ms = 0, mt = 0;
        int ok = n >= 1 && extremes512(si, sk, ti, tk, n, &ms, &mt) && mt > -__builtin_inf();
        if (ok) scale_maxima(temp, scaled, &ms, &mt);
        int64_t j = 0;
        if (ok) {
            __m512d ms8 = _mm512_set1_pd(ms), mt8 = _mm512_set1_pd(mt);
            __m512d w0 = _mm512_setzero_pd(), w1 = w0, n0 = w0, n1 = w0, b0 = w0, b1 = w0;
            /* The next row's lines are fetched into L2 while this one is computed: its first
             * pass then reads from cache, not from memory. */
            const char *sn = (const char *)row_at(si, sk, n), *tn = (const char *)row_at(ti, tk, n);
            int64_t sb = sk == K_F32 ? 4 : 2, tbytes = tk == K_F32 ? 4 : 2;
            int more = i + 1 < rows;
            for (; j + LANES <= n; j += LANES) {
                __m512d s0, s1, t0, t1;
                if (more) {
                    _mm_prefetch(sn + j * sb, _MM_HINT_T1);
                    _mm_prefetch(tn + j * tbytes, _MM_HINT_T1);
                }
                load16(si, sk, j, &s0, &s1);
                load16(ti, tk, j, &t0, &t1);
                eight(s0, t0, tv8, scaled, ms8, mt8, c, &w0, &n0, &b0);
                eight(s1, t1, tv8, scaled, ms8, mt8, c, &w1, &n1, &b1);
            }
            _mm512_storeu_pd(acc, w0);
            _mm512_storeu_pd(acc + 8, w1);
            _mm512_storeu_pd(acc + LANES, n0);
            _mm512_storeu_pd(acc + LANES + 8, n1);
            _mm512_storeu_pd(acc + 2 * LANES, b0);
            _mm512_storeu_pd(acc + 2 * LANES + 8, b1);
            for (int k = 0; j < n; j++, k++)
                one(load1(si, sk, j), load1(ti, tk, j), temp, scaled, ms, mt, tab, k, acc);
        }
        memcpy(o, acc, sizeof acc);
        o[3 * LANES] = ok ? 0.0 : 1.0;
    }
}

__attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))) static void rows_avx512(
    const void *s, int sk, const void *t, int tk, int64_t rows, int64_t n, double temp,
    const double *tab, double *out) {
    Tables c = {_mm512_loadu_pd(tab + TH),      _mm512_loadu_pd(tab + TH + 8),
                _mm512_loadu_pd(tab + TL),      _mm512_loadu_pd(tab + TL + 8),
                _mm512_set1_pd(tab[INVL]),      _mm512_set1_pd(tab[STEP]),
                _mm512_set1_pd(SHIFT),
                _mm512_set1_pd(1.0),            _mm512_set1_pd(-CLAMP),
                {_mm512_setzero_pd()}};
    for (int d = 0; d < 6; d++) c.q[d] = _mm512_set1_pd(tab[QC + d]);
    rows512(s, sk, t, tk, rows, n, temp, tab, out, &c);
}
#endif

/* The lanes of `rows` C-contiguous rows of n elements of s and t (kinds 0 float16,
 * 1 float32) at temperature temp, with the table tab: ROW_OUT doubles per row into out,
 * using instruction set isa (2 AVX-512, 1 AVX2, 0 generic; kernel.py's kl_isa() tells
 * what this CPU runs). Returns 0, or -1 for arguments it does
 * not take. */
int skl_rows(const void *s, int sk, const void *t, int tk, int64_t rows, int64_t n, double temp,
             const double *tab, double *out, int isa) {
    if (sk < 0 || sk > 1 || tk < 0 || tk > 1 || rows < 0 || n < 0 || !(temp > 0)) return -1;
#ifdef SKL_X86
    if (isa == 2) {
        rows_avx512(s, sk, t, tk, rows, n, temp, tab, out);
        return 0;
    }
    if (isa == 1) {
        rows_avx2(s, sk, t, tk, rows, n, temp, tab, out);
        return 0;
    }
#endif
    if (isa != 0) return -1;
    rows_generic(s, sk, t, tk, rows, n, temp, tab, out);
    return 0;
}
