#include "histogram.h"

const uint64_t hd__histogram_bounds_ns[HD__HISTOGRAM_BUCKETS] = {
    500000ull,    1000000ull,   2500000ull,    5000000ull,    10000000ull,
    25000000ull,  50000000ull,  100000000ull,  250000000ull,  500000000ull,
    1000000000ull, 2500000000ull, 5000000000ull, 10000000000ull};

void hd__histogram_observe(hd__histogram_t *h, uint64_t ns) {
  size_t i = 0;
  while (i < HD__HISTOGRAM_BUCKETS && ns > hd__histogram_bounds_ns[i]) i++;
  h->counts[i]++;
  h->sum_ns += ns;
  h->count++;
}
