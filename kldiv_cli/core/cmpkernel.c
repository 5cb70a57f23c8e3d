/* compare's fused passes over rows of two models' logits: the arithmetic between NumPy's
 * exp, expm1 and log1p passes, and each row's top classes and ranks.
 *
 * kldiv_cli/core/compare_fused.py calls these and does the same in NumPy when this library
 * is missing: every value is formed by the same IEEE operations in the same order (built
 * with -ffp-contract=off, no fast-math: no fused multiply-add, no reassociation), so both give
 * the same bits. A row's sums go to w lanes (w <= 256), element j of the row to lane j % w,
 * each lane summed in order from +0 (the caller adds the lanes up, in NumPy, for both paths). Each
 * function is built for AVX-512, AVX2 and generic x86-64 (or plain C elsewhere) and the best
 * the CPU runs is chosen at run time: the same operations, the same bits.
 *
 * Rows are contiguous, n rows of v classes. kind: 1 float32, 2 float64 (logits as read).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "klbits.h"

#define MAXW 256
#define ROW_OUT 7
#define INLINE static inline __attribute__((always_inline))

/* Each row's largest and smallest value, and whether it holds a NaN (out: 3 doubles per
 * row): integer keys of the bits, in the order of the values (so the loops vectorise). */
#define RANGE_BODY(T, U, S, SIGN)                                                              \
    for (int64_t r = 0; r < n; r++) {                                                          \
        const U *a = (const U *)x + r * v;                                                     \
        S hi = (S)((U)1 << (SIGN)), lo = ~hi;                                                  \
        int nan = 0;                                                                           \
        for (int64_t j = 0; j < v; j++) {                                                      \
            U b = a[j];                                                                        \
            S key = (S)(b ^ ((U)((S)b >> (SIGN)) >> 1));                                       \
            hi = key > hi ? key : hi;                                                          \
            lo = key < lo ? key : lo;                                                          \
            nan |= (b << 1) > ((U)EXP_MASK << 1);                                              \
        }                                                                                      \
        U bh = (U)hi ^ ((U)(hi >> (SIGN)) >> 1), bl = (U)lo ^ ((U)(lo >> (SIGN)) >> 1);        \
        T th, tl;                                                                              \
        memcpy(&th, &bh, sizeof th);                                                           \
        memcpy(&tl, &bl, sizeof tl);                                                           \
        out[3 * r] = (double)th;                                                               \
        out[3 * r + 1] = (double)tl;                                                           \
        out[3 * r + 2] = nan;                                                                  \
    }

INLINE void range32(const void *x, int64_t n, int64_t v, double *out) {
#define EXP_MASK 0x7f800000u
    RANGE_BODY(float, uint32_t, int32_t, 31)
#undef EXP_MASK
}

INLINE void range64(const void *x, int64_t n, int64_t v, double *out) {
#define EXP_MASK 0x7ff0000000000000ull
    RANGE_BODY(double, uint64_t, int64_t, 63)
#undef EXP_MASK
}

/* kldiv's own exp, expm1 and log1p (table-free, so every loop vectorises; the NumPy twins
 * in compare_fused.py do the same operations):
 *   x = k ln2 + r, k = round(x / ln2) (adding and subtracting 1.5 2^52), r = (x - k ln2_hi) -
 *   k ln2_lo (ln2_hi has 42 bits: k ln2_hi is exact); P = e^r - 1 = r + r^2 q(r), q the Taylor
 *   polynomial of degree 11 (|r| <= ln2/2: error below 2^-57 r; e^r - 1 to degree 13), by Estrin's scheme; then
 *   e^x = (1 + P) 2^k and e^x - 1 = (2^k - 1) + 2^k P (2^k from its bits: k >= -1022).
 *   log1p(u) (u > -1): fdlibm's, as musl writes it: 1 + u = 2^k (1 + f), 1 + f in
 *   [sqrt(2)/2, sqrt(2)) (f = u itself when 1 + u is), s = f / (2 + f), and a minimax
 *   polynomial in s^2; c = the rounding error of 1 + u, divided by it. */
#define SHIFT 0x1.8p52
#define INV_LN2 0x1.71547652b82fep0
#define LN2_HI 0x1.62e42fefa38p-1
#define LN2_LO 0x1.ef35793c7673p-45
#define LOG_HI 0x1.62e42feep-1
#define LOG_LO 0x1.a39ef35793c76p-33

/* P = e^r - 1 of x's reduction; returns 2^k. */
INLINE double expm1_parts(double x, double *p) {
    /* ks = 1.5 2^52 + k: its low bits are k's (two's complement). */
    double ks = x * INV_LN2 + SHIFT, kd = ks - SHIFT;
    double r = (x - kd * LN2_HI) - kd * LN2_LO;
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double a = 0x1p-1 + 0x1.5555555555555p-3 * r;
    double b = 0x1.5555555555555p-5 + 0x1.1111111111111p-7 * r;
    double c = 0x1.6c16c16c16c17p-10 + 0x1.a01a01a01a01ap-13 * r;
    double d = 0x1.a01a01a01a01ap-16 + 0x1.71de3a556c734p-19 * r;
    double e = 0x1.27e4fb7789f5cp-22 + 0x1.ae64567f544e4p-26 * r;
    double f = 0x1.1eed8eff8d898p-29 + 0x1.6124613a86d09p-33 * r;
    double q = (a + b * r2) + (c + d * r2) * r4 + (e + f * r2) * r8;
    *p = r + r2 * q;
    return double_of((bits_of(ks) + 1023) << 52);
}

INLINE double exp_(double x) {
    double p, scale = expm1_parts(x, &p);
    return (1.0 + p) * scale;
}

INLINE double expm1_(double x) {
    double p, scale = expm1_parts(x, &p);
    return (scale - 1.0) + scale * p;
}

#define NEAR_LO -0x1.2bec333018867p-2
#define NEAR_HI 0x1.a827999fcef32p-2

/* log1p's polynomial part: 1 + x = 2^dk (1 + f), c the correction. */
INLINE double log1p_core(double f, double c, double dk) {
    double hfsq = 0.5 * f * f, s = f / (2.0 + f), z = s * s, w = z * z;
    double t1 = w * (0x1.999999997fa04p-2 + w * (0x1.c71c51d8e78afp-3 + w * 0x1.39a09d078c69fp-3));
    double t2 = z * (0x1.5555555555593p-1 +
                     w * (0x1.2492494229359p-2 + w * (0x1.7466496cb03dep-3 + w * 0x1.2f112df3e5244p-3)));
    double R = t2 + t1;
    return s * (hfsq + R) + (dk * LOG_LO + c) - hfsq + f + dk * LOG_HI;
}

/* Whether 1 + x is in [sqrt(2)/2, sqrt(2)): then f = x exactly, no correction. */
INLINE int near1(double x) { return (x >= NEAR_LO) & (x < NEAR_HI); }

INLINE double log1p_(double x) {
    double u = 1.0 + x;
    uint64_t hu = (bits_of(u) >> 32) + (0x3ff00000 - 0x3fe6a09e);
    /* k = (hu >> 20) - 1023 as a double, from the bits of 2^52 + (hu >> 20). */
    double dk = double_of((hu >> 20) | 0x4330000000000000ULL) - 0x1.00000000003ffp52;
    /* Both sides of each choice are formed, then one is taken (no branch: the loop
     * vectorises). */
    double big = 1.0 - (u - x), small = x - (u - 1.0);
    double c = (dk >= 2.0 ? big : small) / u;
    double f = double_of(((hu & 0x000fffff) + 0x3fe6a09e) << 32 | (bits_of(u) & 0xffffffff)) - 1.0;
    int near = near1(x);
    return log1p_core(near ? x : f, near | (dk >= 54.0) ? 0.0 : c, near ? 0.0 : dk);
}

/* log1p_ of an x that near1() takes: the same operations on the values it selects. */
INLINE double log1p_near(double x) { return log1p_core(x, 0.0, 0.0); }

/* The lanes of a row (w of them, a power of 2) added by halves. */
INLINE double tree(double *l, int w) {
    for (int h = w / 2; h >= 1; h /= 2)
        for (int k = 0; k < h; k++) l[k] = l[k] + l[k + h];
    return l[0];
}

/* The second pass of a row: ed = (em - C) iK and d = dl - c, L = log1p(ed/2); the sums of
 * kl ep (ed - d), kl_reverse ep (ed d - (ed - d)), js ep ((1 + ed) d - ((1 + ed) + 1) L) and
 * tv ep |ed|, each in w lanes added by halves, into o[0..3]. */
INLINE void terms(const double *p, const double *dl, const double *em, int64_t v, int w,
                  double C, double iK, double c, double *o) {
    double kl[MAXW] = {0}, kr[MAXW] = {0}, js[MAXW] = {0}, tv[MAXW] = {0};
    int64_t j = 0;
#define TERM(i, k, LOG)                                                                        \
    do {                                                                                       \
        double e = (em[i] - C) * iK, d = dl[i] - c;                                            \
        double a = e - d, q = 1.0 + e, l = LOG(e * 0.5);                                       \
        kl[k] += p[i] * a;                                                                     \
        kr[k] += p[i] * (e * d - a);                                                           \
        js[k] += p[i] * (q * d - (q + 1.0) * l);                                               \
        tv[k] += p[i] * fabs(e);                                                               \
    } while (0)
    /* A run of w classes whose ed/2 are all near 0 (close distributions) skips log1p's
     * reduction: the same values. */
    for (; j + w <= v; j += w) {
        int all = 1;
        for (int k = 0; k < w; k++) all &= near1(((em[j + k] - C) * iK) * 0.5);
        if (all)
            for (int k = 0; k < w; k++) TERM(j + k, k, log1p_near);
        else
            for (int k = 0; k < w; k++) TERM(j + k, k, log1p_);
    }
    for (int k = 0; j + k < v; k++) TERM(j + k, k, log1p_);
#undef TERM
    o[0] = tree(kl, w);
    o[1] = tree(kr, w);
    o[2] = tree(js, w);
    o[3] = tree(tv, w);
}

/* Each row of a clean block (finite logits, spans at most 600 after t): z = (x - ma)/t,
 * delta = ((y - x) - dm)/t, ep = e^z, em = expm1(delta); S = sum ep and C = (sum ep em)/S
 * (lanes added by halves), c = log1p(C), iK = 1 / (1 + C), then terms(). out per row: S, C, c, kl,
 * kl_reverse, js, tv (the last four times S; js and tv twice their value). work: 3 v. */
#define ROWS_BODY(T)                                                                           \
    for (int64_t r = 0; r < n; r++) {                                                          \
        const T *xr = (const T *)x + r * v, *yr = (const T *)y + r * v;                        \
        double *ep = work, *em = work + v, *dl = work + 2 * v, *o = out + r * ROW_OUT;         \
        double m = ma[r], s = dm[r], sl[MAXW] = {0}, cl[MAXW] = {0};                           \
        if (t == 1.0)                                                                          \
            for (int64_t j = 0; j < v; j++) {                                                  \
                double z = (double)xr[j] - m, dd = ((double)yr[j] - (double)xr[j]) - s;        \
                ep[j] = exp_(z);                                                               \
                em[j] = expm1_(dd);                                                            \
                dl[j] = dd;                                                                    \
            }                                                                                  \
        else                                                                                   \
            for (int64_t j = 0; j < v; j++) {                                                  \
                double z = ((double)xr[j] - m) / t;                                            \
                double dd = (((double)yr[j] - (double)xr[j]) - s) / t;                         \
                ep[j] = exp_(z);                                                               \
                em[j] = expm1_(dd);                                                            \
                dl[j] = dd;                                                                    \
            }                                                                                  \
        int64_t j = 0;                                                                         \
        for (; j + w <= v; j += w)                                                             \
            for (int k = 0; k < w; k++) {                                                      \
                sl[k] += ep[j + k];                                                            \
                cl[k] += ep[j + k] * em[j + k];                                                \
            }                                                                                  \
        for (int k = 0; j + k < v; k++) {                                                      \
            sl[k] += ep[j + k];                                                                \
            cl[k] += ep[j + k] * em[j + k];                                                    \
        }                                                                                      \
        double S = tree(sl, w), C = tree(cl, w) / S, c = log1p_(C);                            \
        o[0] = S;                                                                              \
        o[1] = C;                                                                              \
        o[2] = c;                                                                              \
        terms(ep, dl, em, v, w, C, 1.0 / (1.0 + C), c, o + 3);                                 \
    }

INLINE void rows32(const void *x, const void *y, int64_t n, int64_t v, const double *ma,
                   const double *dm, double t, int w, double *work, double *out) {
    ROWS_BODY(float)
}

INLINE void rows64(const void *x, const void *y, int64_t n, int64_t v, const double *ma,
                   const double *dm, double t, int w, double *work, double *out) {
    ROWS_BODY(double)
}

/* Each row's k (<= 16) largest classes, largest first, ties to the lower index (the order of
 * np.argmax); -1 fills a row of fewer than k classes. Rows must hold no NaN. A block of 64
 * is looked at only if one of its values beats the k-th so far (a vectorised test). */
#define TOP_BODY(T)                                                                            \
    for (int64_t r = 0; r < n; r++) {                                                          \
        const T *a = (const T *)x + r * v;                                                     \
        T val[16];                                                                             \
        int64_t idx[16];                                                                       \
        int m = 0;                                                                             \
        for (int64_t s = 0; s < v; s += 64) {                                                  \
            int64_t e = s + 64 < v ? s + 64 : v;                                               \
            if (m == k) {                                                                      \
                T lo = val[k - 1];                                                             \
                int any = 0;                                                                   \
                for (int64_t j = s; j < e; j++) any |= a[j] > lo;                              \
                if (!any) continue;                                                            \
            }                                                                                  \
            for (int64_t j = s; j < e; j++) {                                                  \
                T b = a[j];                                                                    \
                if (m == k && !(b > val[k - 1])) continue;                                     \
                int i = m < k ? m++ : k - 1;                                                   \
                for (; i > 0 && val[i - 1] < b; i--) {                                         \
                    val[i] = val[i - 1];                                                       \
                    idx[i] = idx[i - 1];                                                       \
                }                                                                              \
                val[i] = b;                                                                    \
                idx[i] = j;                                                                    \
            }                                                                                  \
        }                                                                                      \
        for (int i = 0; i < k; i++) out[r * k + i] = i < m ? idx[i] : -1;                      \
    }

INLINE void top32(const void *x, int64_t n, int64_t v, int k, int64_t *out) { TOP_BODY(float) }
INLINE void top64(const void *x, int64_t n, int64_t v, int k, int64_t *out) { TOP_BODY(double) }

/* 1 + the classes ranked above class best[r] of each row: larger values, and equal ones of a
 * lower index. */
#define RANK_BODY(T)                                                                           \
    for (int64_t r = 0; r < n; r++) {                                                          \
        const T *a = (const T *)y + r * v;                                                     \
        T c = a[best[r]];                                                                      \
        int64_t above = 0, b = best[r];                                                        \
        for (int64_t j = 0; j < v; j++) above += a[j] > c;                                     \
        for (int64_t j = 0; j < b; j++) above += a[j] == c;                                    \
        rank[r] = 1 + above;                                                                   \
    }

INLINE void rank32(const void *y, int64_t n, int64_t v, const int64_t *best, int64_t *rank) {
    RANK_BODY(float)
}
INLINE void rank64(const void *y, int64_t n, int64_t v, const int64_t *best, int64_t *rank) {
    RANK_BODY(double)
}

/* One set of entry points per instruction set. */
#define VARIANT(SUFFIX, ATTR)                                                                  \
    ATTR static void range_##SUFFIX(const void *x, int kind, int64_t n, int64_t v,              \
                                    double *out) {                                             \
        if (kind == 1)                                                                         \
            range32(x, n, v, out);                                                             \
        else                                                                                   \
            range64(x, n, v, out);                                                             \
    }                                                                                          \
    ATTR static void rows_##SUFFIX(const void *x, const void *y, int kind, int64_t n,           \
                                   int64_t v, const double *ma, const double *dm, double t,    \
                                   int w, double *work, double *out) {                         \
        if (kind == 1)                                                                         \
            rows32(x, y, n, v, ma, dm, t, w, work, out);                                       \
        else                                                                                   \
            rows64(x, y, n, v, ma, dm, t, w, work, out);                                       \
    }                                                                                          \
    ATTR static void top_##SUFFIX(const void *x, int kind, int64_t n, int64_t v, int k,         \
                                  int64_t *out) {                                              \
        if (kind == 1)                                                                         \
            top32(x, n, v, k, out);                                                            \
        else                                                                                   \
            top64(x, n, v, k, out);                                                            \
    }                                                                                          \
    ATTR static void rank_##SUFFIX(const void *y, int kind, int64_t n, int64_t v,               \
                                   const int64_t *best, int64_t *rank) {                       \
        if (kind == 1)                                                                         \
            rank32(y, n, v, best, rank);                                                       \
        else                                                                                   \
            rank64(y, n, v, best, rank);                                                       \
    }

VARIANT(generic, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define X86 1
VARIANT(avx2, __attribute__((target("avx2"))))
VARIANT(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw"))))
#endif

/* isa: 2 AVX-512, 1 AVX2, 0 generic (kernel.py's kl_isa tells what the CPU runs). */
#ifdef X86
#define DISPATCH(NAME, ...)                                                                    \
    if (isa == 2)                                                                              \
        NAME##_avx512(__VA_ARGS__);                                                            \
    else if (isa == 1)                                                                         \
        NAME##_avx2(__VA_ARGS__);                                                              \
    else                                                                                       \
        NAME##_generic(__VA_ARGS__)
#else
#define DISPATCH(NAME, ...) NAME##_generic(__VA_ARGS__)
#endif

void cmp_range(const void *x, int kind, int64_t n, int64_t v, double *out, int isa) {
    DISPATCH(range, x, kind, n, v, out);
}

void cmp_rows(const void *x, const void *y, int kind, int64_t n, int64_t v, const double *ma,
              const double *dm, double t, int w, double *work, double *out, int isa) {
    DISPATCH(rows, x, y, kind, n, v, ma, dm, t, w, work, out);
}

void cmp_top(const void *x, int kind, int64_t n, int64_t v, int k, int64_t *out, int isa) {
    DISPATCH(top, x, kind, n, v, k, out);
}

void cmp_rank(const void *y, int kind, int64_t n, int64_t v, const int64_t *best, int64_t *rank,
              int isa) {
    DISPATCH(rank, y, kind, n, v, best, rank);
}
