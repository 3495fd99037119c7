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
 * that a failure reads `return hd__error(HD_EKEY, "public key does not match");`. The arguments
 * may include hd_last_error_message() (to prefix or keep the current detail). */
int hd__error(int code, const char *fmt, ...) HD__PRINTF(2, 3);
int hd__verror(int code, const char *fmt, va_list ap);
/* The calling thread's last error, kept aside while other calls may overwrite it (a rollback, a
 * close) and put back afterwards: `hd__error_save(&e); cleanup(); return hd__error_restore(&e);`
 * The one way to carry an error's detail across a call or to another thread. */
#define HD__ERROR_DETAIL_MAX 512
typedef struct hd__error_state {
  int code;
  char message[HD__ERROR_DETAIL_MAX];
} hd__error_state_t;
void hd__error_save(hd__error_state_t *e);
/* Makes `e` the thread's last error again; returns its code. */
int hd__error_restore(const hd__error_state_t *e);

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

/* The next wait of a doubling backoff: twice `ms`, at most `max_ms` (every retry of the core:
 * dialing, handler retries, consumption records, server deletes). */
static inline uint32_t hd__backoff_next(uint32_t ms, uint32_t max_ms) {
  uint64_t next = (uint64_t)ms * 2;
  return next > max_ms ? max_ms : (uint32_t)next;
}

#endif
