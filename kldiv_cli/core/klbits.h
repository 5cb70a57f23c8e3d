/* The bit moves every kernel source shares (klkernel.c, softmaxkl.c, cmpkernel.c): a
 * double's IEEE bits and back, through memcpy (no aliasing rules broken, one move each). */
#ifndef KLDIV_KLBITS_H
#define KLDIV_KLBITS_H

#include <stdint.h>
#include <string.h>

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

#endif
