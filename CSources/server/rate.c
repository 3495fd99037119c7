/* Handshakes per address per second (rate.h). */
#include "rate.h"

#include <netinet/in.h>
#include <string.h>

void hd__rate_init(hd__rate_t *r) {
  memset(r, 0, sizeof *r);
  randombytes_buf(r->key, sizeof r->key);
}

int hd__rate_take(hd__rate_t *r, const struct sockaddr *addr, uint64_t now_ms, uint32_t limit) {
  uint8_t id[9];
  size_t n;
  if (addr->sa_family == AF_INET6) {
    const uint8_t *a = ((const struct sockaddr_in6 *)addr)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, mapped, 12) == 0) {
      id[0] = 4;
      memcpy(id + 1, a + 12, 4);
      n = 5;
    } else {
      id[0] = 6;
      memcpy(id + 1, a, 8);
      n = 9;
    }
  } else if (addr->sa_family == AF_INET) {
    id[0] = 4;
    memcpy(id + 1, &((const struct sockaddr_in *)addr)->sin_addr, 4);
    n = 5;
  } else {
    id[0] = 0; /* the address is unknown: such connections share one budget */
    n = 1;
  }
  uint64_t second = now_ms / 1000;
  if (second != r->second) {
    memset(r->count, 0, sizeof r->count);
    r->second = second;
  }
  uint8_t h[crypto_shorthash_BYTES];
  crypto_shorthash(h, id, n, r->key);
  uint16_t *slot = &r->count[(h[0] | (unsigned)h[1] << 8) % HD__RATE_SLOTS];
  if (*slot >= limit) return 0;
  if (*slot < UINT16_MAX) (*slot)++;
  return 1;
}
