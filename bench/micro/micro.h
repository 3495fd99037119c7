/* Shared helpers of the hot-path micro-benchmarks (bench/micro/, docs/benchmarks/hot-path.md):
 * a monotonic clock, bounded repetition, medians, and the CSV row every figure is printed as.
 *
 * Every figure is printed beside its physical reference, both measured in the same process,
 * interleaved rep by rep (reference, subject, reference, subject...) so that a noisy neighbour
 * hits both alike. The value printed is the median over the reps; the ratio is the median of the
 * per-rep ratios subject/reference (>1 = the subject is faster, for rates).
 *
 * CSV columns (the runner adds the header):
 *   bench,case,param,size,unit,value,ref_name,ref_value,ratio,reps,note */
#ifndef HD_BENCH_MICRO_H
#define HD_BENCH_MICRO_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MB_MAX_REPS 64

static inline double mb_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mb_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static inline double mb_median(const double *v, int n) {
  double t[MB_MAX_REPS];
  if (n <= 0) return 0;
  if (n > MB_MAX_REPS) n = MB_MAX_REPS;
  memcpy(t, v, (size_t)n * sizeof *t);
  qsort(t, (size_t)n, sizeof *t, mb_cmp_double);
  return n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
}

/* Environment knobs shared by every binary: MB_REPS (default 5), MB_SECONDS (time per
 * measurement, default 0.3). */
static inline int mb_reps(void) {
  const char *s = getenv("MB_REPS");
  int r = s ? atoi(s) : 5;
  return r < 1 ? 1 : r > MB_MAX_REPS ? MB_MAX_REPS : r;
}

static inline double mb_seconds(double dflt) {
  const char *s = getenv("MB_SECONDS");
  double v = s ? atof(s) : dflt;
  return v > 0 ? v : dflt;
}

/* One CSV row: a subject figure, its reference, the median of the per-rep ratios. */
static inline void mb_row(const char *bench, const char *cas, const char *param, long size,
                          const char *unit, const double *val, const char *ref_name,
                          const double *ref, int reps, int higher_is_better, const char *note) {
  double ratios[MB_MAX_REPS];
  for (int i = 0; i < reps; i++) {
    if (ref == NULL || ref[i] == 0 || val[i] == 0)
      ratios[i] = 0;
    else
      ratios[i] = higher_is_better ? val[i] / ref[i] : ref[i] / val[i];
  }
  printf("%s,%s,%s,%ld,%s,%.6g,%s,%.6g,%.4f,%d,%s\n", bench, cas, param, size, unit,
         mb_median(val, reps), ref_name ? ref_name : "", ref ? mb_median(ref, reps) : 0.0,
         ref ? mb_median(ratios, reps) : 0.0, reps, note ? note : "");
  fflush(stdout);
}

#define MB_CHECK(cond, ...)                                   \
  do {                                                        \
    if (!(cond)) {                                            \
      fprintf(stderr, "bench: check failed: %s: ", #cond);   \
      fprintf(stderr, __VA_ARGS__);                           \
      fprintf(stderr, "\n");                                  \
      exit(1);                                                \
    }                                                         \
  } while (0)

#endif
