/* The checked-key cache (key_cache.h): direct-mapped, so a lookup is one compare. */
#include "key_cache.h"

#include <string.h>

#include "common.h"

int hd__key_cache_init(hd__key_cache_t *c) {
  memset(c->used, 0, sizeof c->used);
  if (uv_mutex_init(&c->mu) != 0) return hd__error(HD_ENOMEM, "cannot create a mutex");
  return 0;
}

void hd__key_cache_destroy(hd__key_cache_t *c) { uv_mutex_destroy(&c->mu); }

/* Two bytes of the key pick the slot: public keys are uniformly spread. */
static size_t slot_of(const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  return ((size_t)pk[0] | (size_t)pk[1] << 8) % HD__KEY_CACHE_SLOTS;
}

int hd__key_cache_check(hd__key_cache_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  size_t i = slot_of(pk);
  uv_mutex_lock(&c->mu);
  int hit = c->used[i] && memcmp(c->keys[i], pk, HD_PUBLICKEY_BYTES) == 0;
  uv_mutex_unlock(&c->mu);
  if (hit) return 0;
  int rc = hd_publickey_check(pk);
  if (rc != 0) return rc;
  uv_mutex_lock(&c->mu);
  memcpy(c->keys[i], pk, HD_PUBLICKEY_BYTES);
  c->used[i] = 1;
  uv_mutex_unlock(&c->mu);
  return 0;
}
