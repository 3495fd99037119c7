/* A table of connections keyed by the peer's 32-byte public key (open addressing, linear
 * probing). Keys are hashed with SipHash under a random per-table key, so peers that choose
 * their keys cannot make lookups slow by colliding on purpose. Loop thread only. */
#ifndef HD_PEERS_H
#define HD_PEERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct hd__peer_slot {
  uint8_t key[32];
  void *value; /* NULL: empty slot */
} hd__peer_slot_t;

typedef struct hd__peers {
  hd__peer_slot_t *slots;
  size_t cap;   /* a power of two, or 0 */
  size_t count;
  uint8_t hash_key[16];
} hd__peers_t;

void hd__peers_init(hd__peers_t *t);
void hd__peers_free(hd__peers_t *t);
void *hd__peers_get(const hd__peers_t *t, const uint8_t key[32]);
/* Sets key → value (value non-NULL); returns the value it replaced or NULL. `*err` is set to
 * HD_ENOMEM (and nothing changes) if the table could not grow. */
void *hd__peers_put(hd__peers_t *t, const uint8_t key[32], void *value, int *err);
/* Removes key if it maps to `value` (a stale entry of a replaced connection stays). */
void hd__peers_remove(hd__peers_t *t, const uint8_t key[32], const void *value);
/* Visits every value; `fn` may not modify the table. */
void hd__peers_each(const hd__peers_t *t, void (*fn)(void *value, void *ctx), void *ctx);

#endif
