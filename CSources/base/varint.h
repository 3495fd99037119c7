/* Unsigned LEB128 varints as the wire uses them (docs/PROTOCOL.md, "Varints"): 7 bits per byte,
 * least significant group first, high bit = "more follows", at most 10 bytes for 64 bits.
 * Decoding is strict: a non-minimal encoding or a value past 64 bits is refused, so that every
 * value has exactly one encoding (no smuggling, no ambiguity between implementations). */
#ifndef HD_VARINT_H
#define HD_VARINT_H

#include <stddef.h>
#include <stdint.h>

#define HD__VARINT_MAX 10

/* Results of hd__varint_get besides a positive byte count. */
#define HD__VARINT_SHORT 0 /* the input ends inside the varint: feed more */
#define HD__VARINT_BAD (-1) /* overlong (non-minimal) or more than 64 bits */

static inline size_t hd__varint_len(uint64_t v) {
#if defined(__GNUC__)
  /* seven bits per byte, without a loop: every EVENTS entry sizes three varints */
  return (size_t)(70 - __builtin_clzll(v | 1)) / 7;
#else
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
#endif
}

/* Writes the minimal encoding of `v` at `p` (room for HD__VARINT_MAX bytes); returns its length. */
static inline size_t hd__varint_put(uint8_t *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    p[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  p[n++] = (uint8_t)v;
  return n;
}

/* Reads one varint from `len` bytes at `p`. Returns the number of bytes used (1..10),
 * HD__VARINT_SHORT if the bytes end before the varint does, HD__VARINT_BAD if it is invalid. */
static inline int hd__varint_get(const uint8_t *p, size_t len, uint64_t *out) {
  uint64_t v = 0;
  for (size_t i = 0; i < HD__VARINT_MAX; i++) {
    if (i == len) return HD__VARINT_SHORT;
    uint8_t b = p[i];
    /* The 10th byte carries bit 63 only: anything above 1 overflows (or continues to an 11th). */
    if (i == HD__VARINT_MAX - 1 && b > 1) return HD__VARINT_BAD;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      /* A zero final byte after a continuation adds nothing: a longer spelling of a shorter one. */
      if (b == 0 && i > 0) return HD__VARINT_BAD;
      *out = v;
      return (int)i + 1;
    }
  }
  return HD__VARINT_BAD; /* not reached: the 10th byte either ends or is refused above */
}

#endif
