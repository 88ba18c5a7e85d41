/* Timing and percentile helpers shared by the benchmark clients. */
#ifndef SLIMFAST_BENCH_CLOCK_H
#define SLIMFAST_BENCH_CLOCK_H
#include <time.h>

static inline double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* qsort comparator for doubles */
static inline int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* p-th quantile (0..1) of a sorted array of n values; 0 when empty */
static inline double pct(double *v, long n, double p) {
  if (n == 0) return 0;
  long i = (long)(p * (n - 1) + 0.5);
  return v[i];
}
#endif
