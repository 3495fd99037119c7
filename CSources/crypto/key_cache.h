/* The user keys that passed hd_publickey_check. The full check (decoding the point and
 * multiplying by the group order) costs ~50 us, which would cap adds near 20,000/s per thread;
 * a server sees the same users again and again, so it checks each one once. An open-addressing
 * set that grows with the number of distinct users, up to a cap past which it starts over (a key
 * forgotten is only checked again). */
#ifndef HD_KEY_CACHE_H
#define HD_KEY_CACHE_H

#include <stdint.h>
#include <uv.h>

#include "hyperdown.h"

#define HD__KEY_CACHE_MIN 256u
#define HD__KEY_CACHE_MAX 65536u /* slots: 2 MiB of keys at most */

typedef struct hd__key_cache {
  uv_rwlock_t lock;
  uint8_t (*keys)[HD_PUBLICKEY_BYTES]; /* an all-zero key marks a free slot: it never passes */
  size_t cap, count;
} hd__key_cache_t;

int hd__key_cache_init(hd__key_cache_t *c);
void hd__key_cache_destroy(hd__key_cache_t *c);
/* hd_publickey_check, remembered: 0 or HD_EKEY. Any thread. */
int hd__key_cache_check(hd__key_cache_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]);

#endif
