/* A map from 32-byte public keys to pointers (open addressing, linear probing): the server's
 * authenticated connections and its users. Keys are hashed with SipHash under a random per-map
 * key, so peers that choose their keys cannot make lookups slow by colliding on purpose. Not
 * thread-safe: the owner's loop thread only. */
#ifndef HD_KEYMAP_H
#define HD_KEYMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct hd__keymap_slot {
  uint8_t key[32];
  void *value; /* NULL: empty slot */
} hd__keymap_slot_t;

typedef struct hd__keymap {
  hd__keymap_slot_t *slots;
  size_t cap;   /* a power of two, or 0 */
  size_t count;
  uint8_t hash_key[16];
} hd__keymap_t;

void hd__keymap_init(hd__keymap_t *t);
void hd__keymap_free(hd__keymap_t *t);
void *hd__keymap_get(const hd__keymap_t *t, const uint8_t key[32]);
/* Sets key → value (value non-NULL); returns the value it replaced or NULL. `*err` is set to
 * HD_ENOMEM (and nothing changes) if the table could not grow. */
void *hd__keymap_put(hd__keymap_t *t, const uint8_t key[32], void *value, int *err);
/* Removes key if it maps to `value` (an entry already replaced by a newer value stays). */
void hd__keymap_remove(hd__keymap_t *t, const uint8_t key[32], const void *value);
/* Visits every value; `fn` may not modify the table. */
void hd__keymap_each(const hd__keymap_t *t, void (*fn)(void *value, void *ctx), void *ctx);

#endif
