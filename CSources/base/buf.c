/* The growable byte buffer (buf.h). */
#include "buf.h"

#include "common.h"

#include <stdlib.h>
#include <string.h>

void hd__buf_init(hd__buf_t *b) {
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

void hd__buf_free(hd__buf_t *b) {
  free(b->data);
  hd__buf_init(b);
}

int hd__buf_reserve(hd__buf_t *b, size_t extra) {
  if (extra <= b->cap - b->len) return 0;
  if (extra > SIZE_MAX - b->len) return hd__error(HD_ENOMEM, "buffer size overflows");
  size_t need = b->len + extra;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->data, cap);
  if (p == NULL) return hd__error(HD_ENOMEM, "out of memory growing a buffer to %zu bytes", cap);
  b->data = p;
  b->cap = cap;
  return 0;
}

int hd__buf_append(hd__buf_t *b, const void *p, size_t n) {
  int rc = hd__buf_reserve(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

void hd__buf_consume(hd__buf_t *b, size_t n) {
  if (n >= b->len) {
    b->len = 0;
  } else {
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
  }
}

void hd__buf_trim(hd__buf_t *b, size_t keep) {
  if (b->len == 0 && b->cap > keep) hd__buf_free(b);
}

