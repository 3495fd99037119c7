/* The Node addon's entry point and its stateless functions: versions, error codes, key pairs,
 * hex, topic keys. Server and Client live in handles.c. */
#include "hdn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- Helpers ---------------------------------------------------------------------------- */

void hdn_throw_napi(napi_env env, napi_status status, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[512];
  snprintf(msg, sizeof msg, "N-API call failed (%d: %s): %s", (int)status,
           info && info->error_message ? info->error_message : "unknown", what);
  napi_throw_error(env, "EINTERNAL", msg);
}

napi_value hdn_make_error(napi_env env, int rc, const char *detail) {
  if (detail == NULL) detail = hd_last_error_message();
  if (detail == NULL || detail[0] == '\0') detail = hd_strerror(rc);
  napi_value code, message, err, errnum;
  if (napi_create_string_utf8(env, hd_err_name(rc), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, detail, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &err) != napi_ok ||
      napi_create_int32(env, rc, &errnum) != napi_ok ||
      napi_set_named_property(env, err, "errno", errnum) != napi_ok) {
    return NULL;
  }
  return err;
}

napi_value hdn_throw_hd(napi_env env, int rc) {
  napi_value err = hdn_make_error(env, rc, NULL);
  if (err != NULL) napi_throw(env, err);
  return NULL;
}

napi_value hdn_throw_einval(napi_env env, const char *message) {
  napi_value code, msg, err, errnum;
  if (napi_create_string_utf8(env, "EINVAL", NAPI_AUTO_LENGTH, &code) == napi_ok &&
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) == napi_ok &&
      napi_create_type_error(env, code, msg, &err) == napi_ok &&
      napi_create_int32(env, HD_EINVAL, &errnum) == napi_ok) {
    napi_set_named_property(env, err, "errno", errnum);
    napi_throw(env, err);
  }
  return NULL;
}

int hdn_get_bytes(napi_env env, napi_value v, size_t len, const uint8_t **data, size_t *out_len,
                  const char *name) {
  char msg[160];
  bool is_ta = false;
  napi_typedarray_type type;
  size_t n = 0;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &type, &n, &p, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    snprintf(msg, sizeof msg, "%s must be a Buffer or Uint8Array", name);
    hdn_throw_einval(env, msg);
    return -1;
  }
  if (len != 0 && n != len) {
    snprintf(msg, sizeof msg, "%s must be %zu bytes, got %zu", name, len, n);
    hdn_throw_einval(env, msg);
    return -1;
  }
  *data = p;
  if (out_len) *out_len = n;
  return 0;
}

napi_value hdn_buffer_copy(napi_env env, const void *data, size_t len) {
  napi_value buf;
  void *ignored;
  HDN_CALL(env, napi_create_buffer_copy(env, len, data, &ignored, &buf));
  return buf;
}

char *hdn_get_string(napi_env env, napi_value v, const char *name) {
  napi_valuetype t;
  size_t len = 0;
  char msg[128];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    snprintf(msg, sizeof msg, "%s must be a string", name);
    hdn_throw_einval(env, msg);
    return NULL;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    hdn_throw_napi(env, napi_generic_failure, "napi_get_value_string_utf8");
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok) {
    free(s);
    hdn_throw_napi(env, napi_generic_failure, "napi_get_value_string_utf8");
    return NULL;
  }
  return s;
}

static int opt_get(napi_env env, napi_value obj, const char *key, napi_value *out) {
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, out) != napi_ok) return -1;
  if (napi_typeof(env, *out, &t) != napi_ok) return -1;
  return (t == napi_undefined || t == napi_null) ? 0 : 1;
}

int hdn_opt_u32(napi_env env, napi_value obj, const char *key, uint32_t *out) {
  napi_value v;
  double d;
  char msg[128];
  int has = opt_get(env, obj, key, &v);
  if (has <= 0) return has;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0 && d <= 4294967295.0) ||
      d != (double)(uint32_t)d) {
    snprintf(msg, sizeof msg, "%s must be an integer from 0 to 2^32-1", key);
    hdn_throw_einval(env, msg);
    return -1;
  }
  *out = (uint32_t)d;
  return 0;
}

int hdn_opt_bool(napi_env env, napi_value obj, const char *key, int *out) {
  napi_value v;
  bool b;
  char msg[128];
  int has = opt_get(env, obj, key, &v);
  if (has <= 0) return has;
  if (napi_get_value_bool(env, v, &b) != napi_ok) {
    snprintf(msg, sizeof msg, "%s must be a boolean", key);
    hdn_throw_einval(env, msg);
    return -1;
  }
  *out = b ? 1 : 0;
  return 0;
}

napi_value hdn_prop(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  char msg[128];
  int has = opt_get(env, obj, key, &v);
  if (has < 0) {
    hdn_throw_napi(env, napi_generic_failure, key);
    return NULL;
  }
  if (has == 0) {
    snprintf(msg, sizeof msg, "%s is required", key);
    hdn_throw_einval(env, msg);
    return NULL;
  }
  return v;
}

/* ---- Key pairs -------------------------------------------------------------------------- */

/* { publicKey: Buffer(32), scalar: Buffer(32) } from a checked key pair; wipes `kp`. */
static napi_value keypair_object(napi_env env, hd_keypair_t *kp) {
  napi_value obj, pk, sc;
  napi_status st = napi_create_object(env, &obj);
  pk = st == napi_ok ? hdn_buffer_copy(env, kp->public_key, HD_PUBLICKEY_BYTES) : NULL;
  sc = pk ? hdn_buffer_copy(env, kp->scalar, HD_SCALAR_BYTES) : NULL;
  hd_keypair_wipe(kp);
  if (sc == NULL) {
    if (st != napi_ok) hdn_throw_napi(env, st, "napi_create_object");
    return NULL;
  }
  HDN_CALL(env, napi_set_named_property(env, obj, "publicKey", pk));
  HDN_CALL(env, napi_set_named_property(env, obj, "scalar", sc));
  return obj;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    hdn_throw_napi(env, napi_generic_failure, "napi_get_cb_info");
    return -1;
  }
  for (size_t i = argc; i < want; i++) napi_get_undefined(env, &argv[i]);
  return 0;
}

static napi_value js_keypair_generate(napi_env env, napi_callback_info info) {
  hd_keypair_t kp;
  int rc = hd_keypair_generate(&kp);
  if (rc < 0) return hdn_throw_hd(env, rc);
  return keypair_object(env, &kp);
}

static napi_value js_keypair_from_seed(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  const uint8_t *seed;
  hd_keypair_t kp;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (hdn_get_bytes(env, argv[0], HD_SEED_BYTES, &seed, NULL, "seed") < 0) return NULL;
  int rc = hd_keypair_from_seed(&kp, seed);
  if (rc < 0) return hdn_throw_hd(env, rc);
  return keypair_object(env, &kp);
}

static napi_value js_keypair_from_secret_key(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  const uint8_t *sk;
  hd_keypair_t kp;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (hdn_get_bytes(env, argv[0], HD_SECRETKEY_BYTES, &sk, NULL, "secretKey") < 0) return NULL;
  int rc = hd_keypair_from_secret_key(&kp, sk);
  if (rc < 0) return hdn_throw_hd(env, rc);
  return keypair_object(env, &kp);
}

static napi_value js_keypair_from_scalar(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  const uint8_t *scalar, *pk;
  hd_keypair_t kp;
  if (get_args(env, info, 2, argv) < 0) return NULL;
  if (hdn_get_bytes(env, argv[0], HD_SCALAR_BYTES, &scalar, NULL, "scalar") < 0) return NULL;
  if (hdn_get_bytes(env, argv[1], HD_PUBLICKEY_BYTES, &pk, NULL, "publicKey") < 0) return NULL;
  int rc = hd_keypair_from_scalar(&kp, scalar, pk);
  if (rc < 0) return hdn_throw_hd(env, rc);
  return keypair_object(env, &kp);
}

static napi_value js_publickey_check(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  const uint8_t *pk;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &pk, NULL, "publicKey") < 0) return NULL;
  int rc = hd_publickey_check(pk);
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
}

/* ---- Hex and topic ---------------------------------------------------------------------- */

static napi_value js_hex_encode(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  const uint8_t *bytes;
  size_t len;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (hdn_get_bytes(env, argv[0], 0, &bytes, &len, "bytes") < 0) return NULL;
  char *hex = malloc(2 * len + 1);
  if (hex == NULL) return hdn_throw_hd(env, HD_ENOMEM);
  int rc = hd_hex_encode(hex, 2 * len + 1, bytes, len);
  if (rc < 0) {
    free(hex);
    return hdn_throw_hd(env, rc);
  }
  napi_status st = napi_create_string_latin1(env, hex, 2 * len, &out);
  free(hex);
  HDN_CALL(env, st);
  return out;
}

static napi_value js_hex_decode(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  uint32_t len = 0;
  if (get_args(env, info, 2, argv) < 0) return NULL;
  char *hex = hdn_get_string(env, argv[0], "hex");
  if (hex == NULL) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t == napi_undefined) {
    len = (uint32_t)(strlen(hex) / 2);
  } else if (napi_get_value_uint32(env, argv[1], &len) != napi_ok) {
    free(hex);
    return hdn_throw_einval(env, "length must be a number");
  }
  uint8_t *bytes = malloc(len ? len : 1);
  if (bytes == NULL) {
    free(hex);
    return hdn_throw_hd(env, HD_ENOMEM);
  }
  int rc = hd_hex_decode(bytes, len, hex);
  free(hex);
  if (rc < 0) {
    free(bytes);
    return hdn_throw_hd(env, rc);
  }
  out = hdn_buffer_copy(env, bytes, len);
  free(bytes);
  return out;
}

static napi_value js_topic_key(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  uint8_t topic[HD_TOPIC_BYTES];
  napi_valuetype t;
  int rc;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  napi_typeof(env, argv[0], &t);
  if (t == napi_string) {
    char *name = hdn_get_string(env, argv[0], "name");
    if (name == NULL) return NULL;
    rc = hd_topic_key(topic, name, strlen(name));
    free(name);
  } else {
    const uint8_t *name;
    size_t len;
    if (hdn_get_bytes(env, argv[0], 0, &name, &len, "name") < 0) return NULL;
    rc = hd_topic_key(topic, (const char *)name, len);
  }
  if (rc < 0) return hdn_throw_hd(env, rc);
  return hdn_buffer_copy(env, topic, sizeof topic);
}

/* ---- Versions and error codes ----------------------------------------------------------- */

static napi_status set_u32(napi_env env, napi_value obj, const char *key, uint32_t v) {
  napi_value x;
  napi_status st = napi_create_uint32(env, v, &x);
  return st == napi_ok ? napi_set_named_property(env, obj, key, x) : st;
}

static napi_status set_str(napi_env env, napi_value obj, const char *key, const char *v) {
  napi_value x;
  napi_status st = napi_create_string_utf8(env, v, NAPI_AUTO_LENGTH, &x);
  return st == napi_ok ? napi_set_named_property(env, obj, key, x) : st;
}

static napi_value versions_object(napi_env env) {
  napi_value obj;
  HDN_CALL(env, napi_create_object(env, &obj));
  HDN_CALL(env, set_str(env, obj, "version", hd_version_string()));
  HDN_CALL(env, set_u32(env, obj, "versionHex", hd_version()));
  HDN_CALL(env, set_u32(env, obj, "abi", (uint32_t)hd_abi_version()));
  HDN_CALL(env, set_u32(env, obj, "protocol", HD_PROTOCOL_VERSION));
  HDN_CALL(env, set_str(env, obj, "header", HD_VERSION_STRING));
  /* the libuv the core was compiled against (Node's uv.h) and the one it runs on (Node's) */
  HDN_CALL(env, set_u32(env, obj, "uvHeaderHex", UV_VERSION_HEX));
  HDN_CALL(env, set_u32(env, obj, "uvRuntimeHex", uv_version()));
  HDN_CALL(env, set_str(env, obj, "uv", uv_version_string()));
  HDN_CALL(env, set_u32(env, obj, "napi", NAPI_VERSION));
  /* most items of one addEvents call */
  HDN_CALL(env, set_u32(env, obj, "addEventsMax", (uint32_t)hd_add_events_max()));
  return obj;
}

/* The sizes of keys and topics, from the core (the JS layer checks arguments against them). */
static napi_value sizes_object(napi_env env) {
  napi_value obj;
  HDN_CALL(env, napi_create_object(env, &obj));
  HDN_CALL(env, set_u32(env, obj, "publicKey", (uint32_t)hd_publickey_bytes()));
  HDN_CALL(env, set_u32(env, obj, "scalar", (uint32_t)hd_scalar_bytes()));
  HDN_CALL(env, set_u32(env, obj, "seed", (uint32_t)hd_seed_bytes()));
  HDN_CALL(env, set_u32(env, obj, "secretKey", (uint32_t)hd_secretkey_bytes()));
  HDN_CALL(env, set_u32(env, obj, "topic", (uint32_t)hd_topic_bytes()));
  return obj;
}

static napi_value errors_object(napi_env env) {
  napi_value obj;
  HDN_CALL(env, napi_create_object(env, &obj));
#define HDN_ERR(name, value, text)                                                                \
  {                                                                                               \
    napi_value v;                                                                                 \
    HDN_CALL(env, napi_create_int32(env, value, &v));                                             \
    HDN_CALL(env, napi_set_named_property(env, obj, #name, v));                                   \
  }
  HD_ERRNO_MAP(HDN_ERR)
#undef HDN_ERR
  return obj;
}

/* strerror(code) -> the static text; used by the JS layer for codes without a detail. */
static napi_value js_strerror(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t code = 0;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (napi_get_value_int32(env, argv[0], &code) != napi_ok) {
    return hdn_throw_einval(env, "code must be a number");
  }
  HDN_CALL(env, napi_create_string_utf8(env, hd_strerror(code), NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_err_name(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  int32_t code = 0;
  if (get_args(env, info, 1, argv) < 0) return NULL;
  if (napi_get_value_int32(env, argv[0], &code) != napi_ok) {
    return hdn_throw_einval(env, "code must be a number");
  }
  HDN_CALL(env, napi_create_string_utf8(env, hd_err_name(code), NAPI_AUTO_LENGTH, &out));
  return out;
}

/* ---- Diagnostics ------------------------------------------------------------------------ */

#ifdef __GLIBC__
#include <malloc.h>

/* Bytes in use in glibc's malloc (mallinfo2's uordblks): the exact measure of live native
 * memory when the process runs with MALLOC_ARENA_MAX=1 (mallinfo2 sees the main arena only) and
 * glibc.malloc.tcache_count=0 (cached chunks count as used). For the soak test
 * (test/soak/cycle-memory.js); not part of the package's API. */
static napi_value js_malloc_in_use(napi_env env, napi_callback_info info) {
  struct mallinfo2 m = mallinfo2();
  napi_value out;
  HDN_CALL(env, napi_create_double(env, (double)m.uordblks, &out));
  return out;
}
#endif

/* ---- Module ----------------------------------------------------------------------------- */

NAPI_MODULE_INIT() {
  int rc = HD_CHECK_VERSION();
  if (rc == 0) rc = hd_init();
  if (rc < 0) return hdn_throw_hd(env, rc);
  /* The core must run on the libuv that runs this loop: same major, and the header it was
   * compiled against no newer than the runtime (a system uv.h picked up by mistake shows here). */
  if ((uv_version() >> 16) != (UV_VERSION_HEX >> 16) || uv_version() < UV_VERSION_HEX) {
    napi_throw_error(env, "EVERSION",
                     "hyperdown addon was compiled against another libuv than Node's own");
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"keyPairGenerate", NULL, js_keypair_generate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"keyPairFromSeed", NULL, js_keypair_from_seed, NULL, NULL, NULL, napi_enumerable, NULL},
      {"keyPairFromSecretKey", NULL, js_keypair_from_secret_key, NULL, NULL, NULL,
       napi_enumerable, NULL},
      {"keyPairFromScalar", NULL, js_keypair_from_scalar, NULL, NULL, NULL, napi_enumerable,
       NULL},
      {"publicKeyCheck", NULL, js_publickey_check, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hexEncode", NULL, js_hex_encode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"hexDecode", NULL, js_hex_decode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"topicKey", NULL, js_topic_key, NULL, NULL, NULL, napi_enumerable, NULL},
      {"strerror", NULL, js_strerror, NULL, NULL, NULL, napi_enumerable, NULL},
      {"errName", NULL, js_err_name, NULL, NULL, NULL, napi_enumerable, NULL},
#ifdef __GLIBC__
      {"mallocInUse", NULL, js_malloc_in_use, NULL, NULL, NULL, napi_enumerable, NULL},
#endif
  };
  HDN_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  napi_value versions = versions_object(env);
  if (versions == NULL) return NULL;
  HDN_CALL(env, napi_set_named_property(env, exports, "versions", versions));
  napi_value sizes = sizes_object(env);
  if (sizes == NULL) return NULL;
  HDN_CALL(env, napi_set_named_property(env, exports, "sizes", sizes));
  napi_value errors = errors_object(env);
  if (errors == NULL) return NULL;
  HDN_CALL(env, napi_set_named_property(env, exports, "errors", errors));
  HDN_CALL(env, hdn_handles_init(env, exports));
  return exports;
}
