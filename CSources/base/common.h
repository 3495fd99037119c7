/* Internal helpers shared by every file of the core: error reporting and small utilities.
 * Nothing here is exported; internal names start with `hd__`. */
#ifndef HD_COMMON_H
#define HD_COMMON_H

#include "hyperdown.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define HD__ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define HD__PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define HD__UNUSED __attribute__((unused))
#else
#define HD__PRINTF(fmt, args)
#define HD__UNUSED
#endif

/* Records `code` and a formatted detail as the calling thread's last error; returns `code` so
 * that a failure reads `return hd__error(HD_EKEY, "public key does not match");`. */
int hd__error(int code, const char *fmt, ...) HD__PRINTF(2, 3);
int hd__verror(int code, const char *fmt, va_list ap);
/* Maps a libuv error (negative errno) to an HD_E* code, recording uv's text as the detail. */
int hd__error_from_uv(int uv_err, const char *what);

/* Big-endian helpers for the 2-byte length prefixes of the wire. */
static inline void hd__put_u16be(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline uint16_t hd__get_u16be(const uint8_t *p) {
  return (uint16_t)(((unsigned)p[0] << 8) | p[1]);
}

#endif
