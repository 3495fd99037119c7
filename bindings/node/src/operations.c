/* Operations (docs/OPERATIONS.md) on the Node addon: the server's metrics (Prometheus text) and
 * its metrics responder's port, the server's next identity (key rollover), and the client's
 * lists of server addresses and server keys. Each method calls one C function; options go into
 * the core's option structs here, for handles.c's constructor. */
#include "operations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Options ------------------------------------------------------------------------------ */

void hdn_operation_options_free(hdn_operation_options_t *o) {
  hd_keypair_wipe(&o->next);
  free(o->metrics_listen);
  for (size_t i = 0; i < o->connect_count; i++) free(o->connect[i]);
  free(o->connect);
  free(o->server_keys);
  memset(o, 0, sizeof *o);
}

/* 1 if `obj[key]` is set (not undefined or null), 0 if not, -1 (thrown) if it cannot be read. */
static int present(napi_env env, napi_value obj, const char *key, napi_value *out) {
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, out) != napi_ok || napi_typeof(env, *out, &t) != napi_ok) {
    hdn_throw_napi(env, napi_generic_failure, key);
    return -1;
  }
  return t == napi_undefined || t == napi_null ? 0 : 1;
}

/* nextPublicKey + nextScalar (lib/server.js checks the pair with keyPair()), metricsListen. */
int hdn_operation_server_options(napi_env env, napi_value opts, hdn_operation_options_t *store,
                                 hd_server_options_t *o) {
  napi_value v;
  int has = present(env, opts, "nextPublicKey", &v);
  if (has < 0) return -1;
  if (has) {
    const uint8_t *pk, *scalar;
    napi_value sv = hdn_prop(env, opts, "nextScalar");
    if (sv == NULL || hdn_get_bytes(env, v, HD_PUBLICKEY_BYTES, &pk, NULL, "nextPublicKey") < 0 ||
        hdn_get_bytes(env, sv, HD_SCALAR_BYTES, &scalar, NULL, "nextScalar") < 0) {
      return -1;
    }
    int rc = hd_keypair_from_scalar(&store->next, scalar, pk);
    if (rc < 0) {
      hdn_throw_hd(env, rc);
      return -1;
    }
    o->next_keypair = &store->next;
  }
  if ((has = present(env, opts, "metricsListen", &v)) < 0) return -1;
  if (has) {
    if ((store->metrics_listen = hdn_get_string(env, v, "metricsListen")) == NULL) return -1;
    o->metrics_listen = store->metrics_listen;
  }
  return 0;
}

/* connectList (strings; replaces `connect`) and serverPublicKeys (n x 32 bytes; replaces
 * serverPublicKey). */
int hdn_operation_client_options(napi_env env, napi_value opts, hdn_operation_options_t *store,
                                 hd_client_options_t *o) {
  napi_value v;
  int has = present(env, opts, "connectList", &v);
  if (has < 0) return -1;
  if (has) {
    uint32_t n = 0;
    if (napi_get_array_length(env, v, &n) != napi_ok || n == 0) {
      hdn_throw_einval(env, "connectList must be a non-empty array of \"host:port\" strings");
      return -1;
    }
    if ((store->connect = calloc(n, sizeof *store->connect)) == NULL) {
      hdn_throw_hd(env, HD_ENOMEM);
      return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
      napi_value e;
      if (napi_get_element(env, v, i, &e) != napi_ok ||
          (store->connect[i] = hdn_get_string(env, e, "each address of connectList")) == NULL) {
        return -1;
      }
      store->connect_count = i + 1;
    }
    o->connect_list = (const char *const *)store->connect;
    o->connect_count = n;
  }
  if ((has = present(env, opts, "serverPublicKeys", &v)) < 0) return -1;
  if (has) {
    const uint8_t *keys;
    size_t len;
    if (hdn_get_bytes(env, v, 0, &keys, &len, "serverPublicKeys") < 0) return -1;
    if (len == 0 || len % HD_PUBLICKEY_BYTES != 0) {
      hdn_throw_einval(env, "serverPublicKeys must be whole 32-byte public keys");
      return -1;
    }
    if ((store->server_keys = malloc(len)) == NULL) {
      hdn_throw_hd(env, HD_ENOMEM);
      return -1;
    }
    memcpy(store->server_keys, keys, len);
    o->server_public_keys = store->server_keys;
    o->server_public_key_count = len / HD_PUBLICKEY_BYTES;
  }
  return 0;
}

/* ---- Metrics ------------------------------------------------------------------------------ */

/* server.metrics() -> string: hd_server_metrics's Prometheus text, whatever its length. */
static napi_value js_metrics(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  size_t cap = 16384;
  char *buf = NULL;
  int n;
  for (;;) {
    char *p = realloc(buf, cap);
    if (p == NULL) {
      free(buf);
      return hdn_throw_hd(env, HD_ENOMEM);
    }
    buf = p;
    n = hd_server_metrics(h->core, buf, cap);
    if (n < 0 || (size_t)n < cap) break;
    cap = (size_t)n + 1; /* snprintf-like: the whole length, then again */
  }
  if (n < 0) {
    free(buf);
    return hdn_throw_hd(env, n);
  }
  napi_value out;
  napi_status st = napi_create_string_utf8(env, buf, (size_t)n, &out);
  free(buf);
  HDN_CALL(env, st);
  return out;
}

/* server.metricsPort() -> number, or null without a metrics responder (HD_ESTATE). */
static napi_value js_metrics_port(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  napi_value out;
  int port = hd_server_metrics_port(h->core);
  if (port == HD_ESTATE) {
    hd_clear_error();
    HDN_CALL(env, napi_get_null(env, &out));
    return out;
  }
  if (port < 0) return hdn_throw_hd(env, port);
  HDN_CALL(env, napi_create_int32(env, port, &out));
  return out;
}

const napi_property_descriptor hdn_operation_server_methods[] = {
    {"metrics", NULL, js_metrics, NULL, NULL, NULL, napi_default_method, NULL},
    {"metricsPort", NULL, js_metrics_port, NULL, NULL, NULL, napi_default_method, NULL},
};
const size_t hdn_operation_server_method_count =
    sizeof hdn_operation_server_methods / sizeof hdn_operation_server_methods[0];
