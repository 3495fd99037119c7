/* Growable arrays (array.h). */
#include "array.h"

#include "common.h"

#include <stdint.h>
#include <stdlib.h>

int hd__array_reserve(void **p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return 0;
  size_t n = *cap ? *cap : 16;
  while (n < need) {
    if (n > SIZE_MAX / 2 / size) return hd__error(HD_ENOMEM, "array of %zu entries overflows", need);
    n *= 2;
  }
  void *q = realloc(*p, n * size);
  if (q == NULL) return hd__error(HD_ENOMEM, "out of memory (%zu entries of %zu bytes)", n, size);
  *p = q;
  *cap = n;
  return 0;
}
