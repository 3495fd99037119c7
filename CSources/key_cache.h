/* A small cache of user keys that passed hd_publickey_check. The full check (decoding the point
 * and multiplying by the group order) costs ~50 us, which would cap adds near 20,000/s per
 * thread; a server sees the same users again and again, so it checks each one once. */
#ifndef HD_KEY_CACHE_H
#define HD_KEY_CACHE_H

#include <stdint.h>
#include <uv.h>

#include "hyperdown.h"

#define HD__KEY_CACHE_SLOTS 256

typedef struct hd__key_cache {
  uv_mutex_t mu;
  uint8_t keys[HD__KEY_CACHE_SLOTS][HD_PUBLICKEY_BYTES];
  uint8_t used[HD__KEY_CACHE_SLOTS];
} hd__key_cache_t;

int hd__key_cache_init(hd__key_cache_t *c);
void hd__key_cache_destroy(hd__key_cache_t *c);
/* hd_publickey_check, remembered: 0 or HD_EKEY. Any thread. */
int hd__key_cache_check(hd__key_cache_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]);

#endif
