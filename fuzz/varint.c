/* Varints (base/varint.h): hd__varint_get on arbitrary bytes agrees with the definition of
 * docs/PROTOCOL.md section 2 (minimal LEB128, at most 64 bits), what it reads re-encodes to the
 * same bytes, and every 64-bit value from the input survives put then get, also cut short. */
#include "fuzz_util.h"

#include <string.h>

/* The definition, byte by byte: the length of the varint at `p`, 0 if the bytes end inside
 * it, -1 if it is not minimal or passes 64 bits. */
static int reference_len(const uint8_t *p, size_t len) {
  for (size_t i = 0; i < len && i < HD__VARINT_MAX; i++) {
    if (i == HD__VARINT_MAX - 1 && p[i] > 1) return -1;
    if (p[i] & 0x80) continue;
    return p[i] == 0 && i > 0 ? -1 : (int)i + 1;
  }
  return len < HD__VARINT_MAX ? 0 : -1;
}

static void check_value(uint64_t v) {
  uint8_t buf[HD__VARINT_MAX];
  size_t n = hd__varint_put(buf, v);
  FZ_CHECK(n == hd__varint_len(v) && n >= 1 && n <= HD__VARINT_MAX);
  uint64_t back = ~v;
  FZ_CHECK(hd__varint_get(buf, n, &back) == (int)n && back == v);
  for (size_t cut = 0; cut < n; cut++)
    FZ_CHECK(hd__varint_get(buf, cut, &back) == HD__VARINT_SHORT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t v = 0;
  int k = hd__varint_get(data, size, &v);
  int want = reference_len(data, size);
  FZ_CHECK(k == (want < 0 ? HD__VARINT_BAD : want));
  if (k > 0) {
    uint8_t again[HD__VARINT_MAX];
    FZ_CHECK(hd__varint_put(again, v) == (size_t)k && memcmp(again, data, (size_t)k) == 0);
  }
  fz_in_t in = {data, size};
  while (in.n > 0) check_value(fz_u64(&in));
  return 0;
}
