/* The growable byte buffer of the core: connection output, assembled messages, encoders. */
#ifndef HD_BUF_H
#define HD_BUF_H

#include <stddef.h>
#include <stdint.h>

/* Owned bytes data[0..len) with room for cap. Zero-initialised is a valid empty buffer. It only
 * grows (doubling), so once it has reached a connection's working size the hot path never
 * allocates; hd__buf_trim gives memory back when a connection goes idle. */
typedef struct hd__buf {
  uint8_t *data;
  size_t len;
  size_t cap;
} hd__buf_t;

void hd__buf_init(hd__buf_t *b);
void hd__buf_free(hd__buf_t *b);
/* Makes room for `extra` more bytes after len. HD_ENOMEM on failure (the buffer is unchanged). */
int hd__buf_reserve(hd__buf_t *b, size_t extra);
int hd__buf_append(hd__buf_t *b, const void *p, size_t n);
/* Removes the first n bytes (e.g. what a write has taken); keeps the memory. */
void hd__buf_consume(hd__buf_t *b, size_t n);
/* When empty and holding more than `keep` bytes of capacity, frees the memory (idle connections
 * stay small). */
void hd__buf_trim(hd__buf_t *b, size_t keep);

#endif
