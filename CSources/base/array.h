/* Growable arrays: the one helper that every scratch array, in-flight set and ring of the core
 * grows with. */
#ifndef HD_ARRAY_H
#define HD_ARRAY_H

#include <stddef.h>

/* Makes *p hold at least `need` elements of `size` bytes, doubling *cap (from 16) as needed; the
 * contents are kept. HD_ENOMEM (detail recorded; *p and *cap unchanged) on failure. */
int hd__array_reserve(void **p, size_t *cap, size_t need, size_t size);

#endif
