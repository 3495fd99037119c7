/* A latency histogram with fixed buckets (the Prometheus client default, in seconds, from 0.5 ms
 * to 10 s): what an exposition of `_bucket{le=...}`, `_sum` and `_count` needs. Not thread-safe:
 * one owner thread records and reads (the server's loop thread). */
#ifndef HD_HISTOGRAM_H
#define HD_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>

#define HD__HISTOGRAM_BUCKETS 14

typedef struct hd__histogram {
  uint64_t counts[HD__HISTOGRAM_BUCKETS + 1]; /* per bucket, not cumulative; the last: above */
  uint64_t sum_ns;
  uint64_t count;
} hd__histogram_t;

/* The upper bounds of the buckets in nanoseconds, ascending (HD__HISTOGRAM_BUCKETS of them). */
extern const uint64_t hd__histogram_bounds_ns[HD__HISTOGRAM_BUCKETS];

void hd__histogram_observe(hd__histogram_t *h, uint64_t ns);

#endif
