/* Error codes, their names and texts (from HD_ERRNO_MAP), and the per-thread last error. */
#include "common.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

static _Thread_local int last_code;
static _Thread_local char last_message[HD__ERROR_DETAIL_MAX];

const char *hd_strerror(int code) {
  switch (code) {
#define HD__STRERROR_CASE(name, value, text)                                                      \
  case HD_##name:                                                                                 \
    return text;
    HD_ERRNO_MAP(HD__STRERROR_CASE)
#undef HD__STRERROR_CASE
    case 0:
      return "success";
    default:
      return "unknown error";
  }
}

const char *hd_err_name(int code) {
  switch (code) {
#define HD__ERRNAME_CASE(name, value, text)                                                       \
  case HD_##name:                                                                                 \
    return #name;
    HD_ERRNO_MAP(HD__ERRNAME_CASE)
#undef HD__ERRNAME_CASE
    case 0:
      return "OK";
    default:
      return "UNKNOWN";
  }
}

const char *hd_last_error_message(void) { return last_message; }

int hd_last_error_code(void) { return last_code; }

void hd_clear_error(void) {
  last_code = 0;
  last_message[0] = '\0';
}

int hd__verror(int code, const char *fmt, va_list ap) {
  /* formatted aside first: the arguments may include the current message itself
   * (hd__error(code, "while closing: %s", hd_last_error_message()) is allowed) */
  char text[sizeof last_message];
  if (fmt == NULL) {
    snprintf(text, sizeof text, "%s", hd_strerror(code));
  } else {
    vsnprintf(text, sizeof text, fmt, ap);
  }
  last_code = code;
  memcpy(last_message, text, sizeof last_message);
  return code;
}

int hd__error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  hd__verror(code, fmt, ap);
  va_end(ap);
  return code;
}

void hd__error_save(hd__error_state_t *e) {
  e->code = last_code;
  memcpy(e->message, last_message, sizeof e->message);
}

int hd__error_restore(const hd__error_state_t *e) {
  last_code = e->code;
  memcpy(last_message, e->message, sizeof last_message);
  return e->code;
}

int hd__error_from_uv(int uv_err, const char *what) {
  int code;
  switch (uv_err) {
    case UV_ENOMEM: code = HD_ENOMEM; break;
    case UV_ECONNREFUSED: code = HD_ECONNREFUSED; break;
    case UV_ECONNRESET:
    case UV_EPIPE:
    case UV_EOF: code = HD_ECONNRESET; break;
    case UV_EADDRINUSE: code = HD_EADDRINUSE; break;
    case UV_EADDRNOTAVAIL:
    case UV_EAFNOSUPPORT:
    case UV_EINVAL: code = HD_EADDR; break;
    case UV_ETIMEDOUT: code = HD_ETIMEDOUT; break;
    case UV_ECANCELED: code = HD_ECANCELED; break;
    case UV_ENOSPC: code = HD_ENOSPC; break;
    default: code = HD_EIO; break;
  }
  return hd__error(code, "%s: %s (%s)", what, uv_strerror(uv_err), uv_err_name(uv_err));
}
