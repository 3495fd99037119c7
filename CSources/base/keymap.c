/* The key map (keymap.h). Deletion uses backward-shift so that no tombstones accumulate over
 * millions of connects and disconnects. */
#include "keymap.h"

#include "common.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void hd__keymap_init(hd__keymap_t *t) {
  memset(t, 0, sizeof *t);
  randombytes_buf(t->hash_key, sizeof t->hash_key);
}

void hd__keymap_free(hd__keymap_t *t) {
  free(t->slots);
  t->slots = NULL;
  t->cap = t->count = 0;
}

static size_t slot_of(const hd__keymap_t *t, const uint8_t key[32]) {
  uint8_t h[crypto_shorthash_BYTES];
  crypto_shorthash(h, key, 32, t->hash_key);
  uint64_t v;
  memcpy(&v, h, sizeof v);
  return (size_t)v & (t->cap - 1);
}

static size_t find(const hd__keymap_t *t, const uint8_t key[32]) {
  size_t i = slot_of(t, key);
  while (t->slots[i].value != NULL) {
    if (memcmp(t->slots[i].key, key, 32) == 0) return i;
    i = (i + 1) & (t->cap - 1);
  }
  return i;
}

void *hd__keymap_get(const hd__keymap_t *t, const uint8_t key[32]) {
  if (t->count == 0) return NULL;
  return t->slots[find(t, key)].value;
}

static int grow(hd__keymap_t *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  hd__keymap_slot_t *old = t->slots;
  size_t old_cap = t->cap;
  t->slots = calloc(cap, sizeof *t->slots);
  if (t->slots == NULL) {
    t->slots = old;
    return hd__error(HD_ENOMEM, "out of memory growing a key map to %zu entries", cap);
  }
  t->cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (old[i].value != NULL) t->slots[find(t, old[i].key)] = old[i];
  }
  free(old);
  return 0;
}

void *hd__keymap_put(hd__keymap_t *t, const uint8_t key[32], void *value, int *err) {
  *err = 0;
  /* load factor at most 1/2: short probe sequences */
  if ((t->count + 1) * 2 > t->cap && (*err = grow(t)) != 0) return NULL;
  size_t i = find(t, key);
  void *old = t->slots[i].value;
  if (old == NULL) {
    memcpy(t->slots[i].key, key, 32);
    t->count++;
  }
  t->slots[i].value = value;
  return old;
}

void hd__keymap_remove(hd__keymap_t *t, const uint8_t key[32], const void *value) {
  if (t->count == 0) return;
  size_t i = find(t, key);
  if (t->slots[i].value == NULL || t->slots[i].value != value) return;
  t->slots[i].value = NULL;
  t->count--;
  /* backward-shift the cluster that follows so lookups never stop at a hole too early */
  size_t j = i;
  for (;;) {
    j = (j + 1) & (t->cap - 1);
    if (t->slots[j].value == NULL) break;
    size_t home = slot_of(t, t->slots[j].key);
    /* the entry at j may move to i if i lies cyclically in [home, j) */
    int movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      t->slots[i] = t->slots[j];
      t->slots[j].value = NULL;
      i = j;
    }
  }
}

void hd__keymap_each(const hd__keymap_t *t, void (*fn)(void *value, void *ctx), void *ctx) {
  for (size_t i = 0; i < t->cap; i++) {
    if (t->slots[i].value != NULL) fn(t->slots[i].value, ctx);
  }
}
