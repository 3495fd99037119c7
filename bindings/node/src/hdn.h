/* Shared helpers of the Node addon (hdn_ = "hyperdown node"). The addon is plain C over N-API;
 * everything it calls in the core is the public ABI of include/hyperdown.h. */
#ifndef HDN_H
#define HDN_H

#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#include "hyperdown.h"

/* Calls an N-API function; on failure throws (unless an exception is already pending) and
 * returns NULL from the enclosing napi_callback. */
#define HDN_CALL(env, call)                                                                       \
  do {                                                                                            \
    napi_status hdn_status_ = (call);                                                             \
    if (hdn_status_ != napi_ok) {                                                                 \
      hdn_throw_napi((env), hdn_status_, #call);                                                  \
      return NULL;                                                                                \
    }                                                                                             \
  } while (0)

/* Throws an Error for a failed N-API call (no-op if an exception is pending). */
void hdn_throw_napi(napi_env env, napi_status status, const char *what);
/* An Error for the core's code `rc`: message = the detail (or hd_strerror), `code` = "EKEY",
 * `errno` = rc. `detail` may be NULL: then hd_last_error_message() is used. NULL on failure. */
napi_value hdn_make_error(napi_env env, int rc, const char *detail);
/* Throws hdn_make_error(env, rc, NULL); returns NULL for `return hdn_throw_hd(env, rc);`. */
napi_value hdn_throw_hd(napi_env env, int rc);
/* Throws a TypeError with code "EINVAL" (argument of the wrong type or size). */
napi_value hdn_throw_einval(napi_env env, const char *message);

/* A Uint8Array (Buffer included) of exactly `len` bytes (len 0: any length). 0 or -1 (thrown). */
int hdn_get_bytes(napi_env env, napi_value v, size_t len, const uint8_t **data, size_t *out_len,
                  const char *name);
/* A new Buffer holding a copy of `len` bytes; NULL on failure (thrown). */
napi_value hdn_buffer_copy(napi_env env, const void *data, size_t len);
/* A string argument as a malloc'ed UTF-8 C string; NULL on failure (thrown). */
char *hdn_get_string(napi_env env, napi_value v, const char *name);
/* Optional properties of an options object: absent/undefined/null leave *out unchanged.
 * 0, or -1 with an exception thrown. */
int hdn_opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out);
int hdn_opt_bool(napi_env env, napi_value obj, const char *key, int *out);
/* A property that must be present: the value, or NULL (thrown). */
napi_value hdn_prop(napi_env env, napi_value obj, const char *key);

/* Registers Server and Client on `exports` (handles.c). */
napi_status hdn_handles_init(napi_env env, napi_value exports);

#endif
