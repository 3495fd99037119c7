/* The checked-key set (key_cache.h): linear probing over uniformly spread keys; lookups share a
 * read lock, so concurrent adds for known users do not serialise. */
#include "key_cache.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

static const uint8_t zero_key[HD_PUBLICKEY_BYTES];

int hd__key_cache_init(hd__key_cache_t *c) {
  c->cap = HD__KEY_CACHE_MIN;
  c->count = 0;
  c->keys = calloc(c->cap, HD_PUBLICKEY_BYTES);
  if (c->keys == NULL) return hd__error(HD_ENOMEM, "out of memory for the key cache");
  if (uv_rwlock_init(&c->lock) != 0) {
    free(c->keys);
    return hd__error(HD_ENOMEM, "cannot create a lock");
  }
  return 0;
}

void hd__key_cache_destroy(hd__key_cache_t *c) {
  uv_rwlock_destroy(&c->lock);
  free(c->keys);
}

/* Public keys are uniformly spread, so their first bytes are a good enough hash. */
static size_t home_of(const uint8_t pk[HD_PUBLICKEY_BYTES], size_t cap) {
  uint64_t h;
  memcpy(&h, pk, sizeof h);
  return (size_t)h & (cap - 1);
}

/* The slot holding `pk`, or the free slot where it would go. */
static size_t probe(const hd__key_cache_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  size_t i = home_of(pk, c->cap);
  while (memcmp(c->keys[i], pk, HD_PUBLICKEY_BYTES) != 0 &&
         memcmp(c->keys[i], zero_key, HD_PUBLICKEY_BYTES) != 0) {
    i = (i + 1) & (c->cap - 1);
  }
  return i;
}

/* Writer lock held: keeps the load at most 1/2, growing to the cap, then starting over. */
static void make_room(hd__key_cache_t *c) {
  if (2 * (c->count + 1) <= c->cap) return;
  size_t cap = c->cap < HD__KEY_CACHE_MAX ? c->cap * 2 : c->cap;
  uint8_t(*keys)[HD_PUBLICKEY_BYTES] = calloc(cap, HD_PUBLICKEY_BYTES);
  if (keys == NULL) { /* keep the old table, emptied: a forgotten key is only checked again */
    memset(c->keys, 0, c->cap * HD_PUBLICKEY_BYTES);
    c->count = 0;
    return;
  }
  uint8_t(*old)[HD_PUBLICKEY_BYTES] = c->keys;
  size_t old_cap = c->cap;
  c->keys = keys;
  c->cap = cap;
  c->count = 0;
  if (cap != old_cap) { /* grown: move the keys over; at the cap: start over */
    for (size_t i = 0; i < old_cap; i++) {
      if (memcmp(old[i], zero_key, HD_PUBLICKEY_BYTES) == 0) continue;
      memcpy(c->keys[probe(c, old[i])], old[i], HD_PUBLICKEY_BYTES);
      c->count++;
    }
  }
  free(old);
}

int hd__key_cache_check(hd__key_cache_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  /* the all-zero key would match a free slot; it is small-order, so the check refuses it */
  if (memcmp(pk, zero_key, HD_PUBLICKEY_BYTES) == 0) return hd_publickey_check(pk);
  uv_rwlock_rdlock(&c->lock);
  int hit = memcmp(c->keys[probe(c, pk)], pk, HD_PUBLICKEY_BYTES) == 0;
  uv_rwlock_rdunlock(&c->lock);
  if (hit) return 0;
  int rc = hd_publickey_check(pk);
  if (rc != 0) return rc;
  uv_rwlock_wrlock(&c->lock);
  size_t i = probe(c, pk);
  if (memcmp(c->keys[i], pk, HD_PUBLICKEY_BYTES) != 0) {
    make_room(c);
    memcpy(c->keys[probe(c, pk)], pk, HD_PUBLICKEY_BYTES);
    c->count++;
  }
  uv_rwlock_wrunlock(&c->lock);
  return 0;
}
