/* energy.h: two-sample measures for point sets. The energy distance
 * (Szekely & Rizzo),
 * a two-sample distance that is 0 only when the distributions agree:
 *
 *     E(A, B) = 2/(n m) sum_ij |a_i - b_j| - 1/n^2 sum_ij |a_i - a_j|
 *                                          - 1/m^2 sum_ij |b_i - b_j|
 *
 * |.| the Euclidean norm. This is the V-statistic (the i = j terms, all 0,
 * are kept), which is >= 0 for any two sets (the squared MMD of the
 * distance kernel). Even for two samples of one distribution it is
 * positive, of order 1/n: that "floor" is what a perfect model would score,
 * so compare a result with the distance between two fresh samples.
 *
 * Everything is accumulated in double; rows are summed in order, so the
 * result is the same on every run. O((n + m)^2 d) time, no allocation.
 */
#ifndef DDPM_ENERGY_H
#define DDPM_ENERGY_H

/* a [n, d], b [m, d] row-major; n, m >= 1, d >= 1. Returns NAN for empty sets. */
double ddpm_energy_distance(const float *a, int n, const float *b, int m, int d);

/* The fraction of the n points of a [n, d] that lie within distance r of at
 * least one of the m points of ref [m, d] (a "how many samples landed on
 * the data" number: with ref dense on a curve, the fraction near the curve).
 * Integer counts, so thread-count independent. NAN for empty sets. */
double ddpm_near_fraction(const float *a, int n, const float *ref, int m, int d, double r);

#endif
