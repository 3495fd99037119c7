/* Admin and admission (docs/OPERATIONS.md "Admin", docs/RELIABILITY.md "Admission control") on
 * the Node addon: the server's authorize callback and handshake limits, disconnect, backups;
 * the client's events held for other server stores and their purge. Each method calls one C
 * function. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Admission ---------------------------------------------------------------------------- */

/* One hd_authorization_t handed to JS; NULL once answered. Collected unanswered: denied (the
 * core frees a request only when it is answered, also after its timeout). */
typedef struct authorization_ref {
  hd_authorization_t *request;
} authorization_ref_t;

static void authorization_finalize(napi_env env, void *data, void *hint) {
  authorization_ref_t *r = data;
  if (r->request != NULL) hd_authorization_deny(r->request);
  hdn_live_free(HDN_LIVE_OPERATION, r);
}

static const napi_type_tag authorization_tag = {0x5d03b8e6f2a1497cULL, 0x0c6e9f1a2b74d853ULL};

/* The open request of an authorizationAllow/Deny call (its first argument), taken from its
 * reference: the answer frees it. NULL (thrown) otherwise. */
static hd_authorization_t *take_request(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) {
    hdn_throw_einval(env, "expected (request)");
    return NULL;
  }
  authorization_ref_t *r = hdn_get_ref(env, argv[0], &authorization_tag, "an authorization request");
  if (r == NULL) return NULL;
  if (r->request == NULL) {
    napi_value err = hdn_make_error(env, HD_EALREADY, "the authorization request is already answered");
    if (err != NULL) napi_throw(env, err);
    return NULL;
  }
  hd_authorization_t *request = r->request;
  r->request = NULL;
  return request;
}

static napi_value answered(napi_env env, int rc) {
  napi_value undef;
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_get_undefined(env, &undef);
  return undef;
}

/* authorizationAllow(request): hd_authorization_allow. */
static napi_value js_authorization_allow(napi_env env, napi_callback_info info) {
  hd_authorization_t *request = take_request(env, info);
  return request == NULL ? NULL : answered(env, hd_authorization_allow(request));
}

/* authorizationDeny(request): hd_authorization_deny. */
static napi_value js_authorization_deny(napi_env env, napi_callback_info info) {
  hd_authorization_t *request = take_request(env, info);
  return request == NULL ? NULL : answered(env, hd_authorization_deny(request));
}

/* The core's authorize: onauthorize(publicKey, request). */
static void on_authorize(void *ud, const uint8_t public_key[HD_PUBLICKEY_BYTES],
                         hd_authorization_t *request) {
  hdn_handle_t *h = ud;
  authorization_ref_t *r = NULL;
  if (!hdn_can_call_js(h) || (r = hdn_live_calloc(HDN_LIVE_OPERATION, sizeof *r)) == NULL) {
    hd_authorization_deny(request);
    return;
  }
  r->request = request;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    authorization_finalize(env, r, NULL);
    return;
  }
  napi_value argv[2] = {hdn_buffer_copy(env, public_key, HD_PUBLICKEY_BYTES), NULL};
  if (argv[0] != NULL) argv[1] = hdn_make_ref(env, r, &authorization_tag, authorization_finalize);
  if (argv[1] == NULL) {
    bool pending = false;
    napi_value exc;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_get_and_clear_last_exception(env, &exc);
    }
    authorization_finalize(env, r, NULL); /* not owned by a reference */
  } else if (hdn_call_js(h, HDN_CB_AUTHORIZE, 2, argv) != 0 && r->request != NULL) {
    hd_authorization_t *q = r->request; /* JS threw before answering: refused */
    r->request = NULL;
    hd_authorization_deny(q);
  }
  napi_close_handle_scope(env, scope);
}

int hdn_admission_server_options(napi_env env, napi_value opts, hd_server_options_t *o) {
  int authorize = 0;
  if (hdn_opt_bool(env, opts, "authorize", &authorize) < 0 ||
      hdn_opt_u32(env, opts, "authorizeTimeoutMs", &o->authorize_timeout_ms) < 0 ||
      hdn_opt_u32(env, opts, "maxHandshakes", &o->max_handshakes) < 0 ||
      hdn_opt_u32(env, opts, "handshakesPerAddress", &o->handshakes_per_address) < 0) {
    return -1;
  }
  o->authorize = authorize ? on_authorize : NULL;
  return 0;
}

/* ---- Server ------------------------------------------------------------------------------- */

/* server.disconnect(user) -> number: the connections of the user it closed. */
static napi_value js_disconnect(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  const uint8_t *user;
  if (argc < 1) return hdn_throw_einval(env, "expected (user)");
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &user, NULL, "user") < 0) return NULL;
  int n = hd_server_disconnect(h->core, user);
  if (n < 0) return hdn_throw_hd(env, n);
  HDN_CALL(env, napi_create_int32(env, n, &out));
  return out;
}

static int backup_start(void *core, void *cb_data, const void *arg) {
  return hd_server_backup(core, arg, hdn_on_done, cb_data);
}

/* server.backup(path) -> Promise<void>: a consistent copy of the running store, durable. */
static napi_value js_backup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 1) return hdn_throw_einval(env, "expected (path)");
  char *path = hdn_get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value promise = hdn_op_run(env, h, backup_start, path); /* the core copies the path */
  free(path);
  return promise;
}

/* backupFolder(dataDir, path): the same for a store no server has open, blocking. */
static napi_value js_backup_folder(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], undef;
  HDN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return hdn_throw_einval(env, "expected (dataDir, path)");
  char *dir = hdn_get_string(env, argv[0], "dataDir");
  char *path = dir != NULL ? hdn_get_string(env, argv[1], "path") : NULL;
  int rc = path != NULL ? hd_server_backup_folder(dir, path) : 0;
  free(dir);
  free(path);
  if (path == NULL) return NULL;
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_get_undefined(env, &undef);
  return undef;
}

/* ---- Client ------------------------------------------------------------------------------- */

/* client.heldStores() -> [{ store: Buffer(16), unhandled, consumed }] */
static napi_value js_held_stores(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  size_t cap = 8;
  uint8_t *ids = NULL;
  uint64_t *unhandled = NULL, *consumed = NULL;
  int n;
  for (;;) {
    uint8_t *i = realloc(ids, cap * HD_STORE_ID_BYTES);
    uint64_t *u = i ? realloc(unhandled, cap * sizeof *u) : NULL;
    uint64_t *c = u ? realloc(consumed, cap * sizeof *c) : NULL;
    if (i) ids = i;
    if (u) unhandled = u;
    if (c) consumed = c;
    if (c == NULL) {
      n = HD_ENOMEM;
      break;
    }
    n = hd_client_held_stores(h->core, ids, unhandled, consumed, cap);
    if (n < 0 || (size_t)n <= cap) break;
    cap = (size_t)n;
  }
  napi_value arr = NULL;
  napi_status st = n < 0 ? napi_ok : napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; n > 0 && st == napi_ok && i < n; i++) {
    napi_value obj, id = hdn_buffer_copy(env, ids + (size_t)i * HD_STORE_ID_BYTES, HD_STORE_ID_BYTES);
    st = id != NULL && napi_create_object(env, &obj) == napi_ok &&
                 napi_set_named_property(env, obj, "store", id) == napi_ok &&
                 hdn_set_u64(env, obj, "unhandled", unhandled[i]) == 0 &&
                 hdn_set_u64(env, obj, "consumed", consumed[i]) == 0 &&
                 napi_set_element(env, arr, (uint32_t)i, obj) == napi_ok
             ? napi_ok
             : napi_generic_failure;
  }
  free(ids);
  free(unhandled);
  free(consumed);
  if (n < 0) return hdn_throw_hd(env, n);
  if (st != napi_ok) {
    hdn_throw_napi(env, st, "heldStores");
    return NULL;
  }
  return arr;
}

static int purge_start(void *core, void *cb_data, const void *arg) {
  return hd_client_purge_store(core, arg, hdn_on_done, cb_data);
}

/* client.purgeStore(store: Buffer(16)) -> Promise<void>, once the purge is durable. */
static napi_value js_purge_store(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  const uint8_t *id;
  if (argc < 1) return hdn_throw_einval(env, "expected (store)");
  if (hdn_get_bytes(env, argv[0], HD_STORE_ID_BYTES, &id, NULL, "store") < 0) return NULL;
  return hdn_op_run(env, h, purge_start, id); /* the core copies the id */
}

const napi_property_descriptor hdn_admin_server_methods[] = {
    {"disconnect", NULL, js_disconnect, NULL, NULL, NULL, napi_default_method, NULL},
    {"backup", NULL, js_backup, NULL, NULL, NULL, napi_default_method, NULL},
};
const size_t hdn_admin_server_method_count =
    sizeof hdn_admin_server_methods / sizeof hdn_admin_server_methods[0];

const napi_property_descriptor hdn_admin_client_methods[] = {
    {"heldStores", NULL, js_held_stores, NULL, NULL, NULL, napi_default_method, NULL},
    {"purgeStore", NULL, js_purge_store, NULL, NULL, NULL, napi_default_method, NULL},
};
const size_t hdn_admin_client_method_count =
    sizeof hdn_admin_client_methods / sizeof hdn_admin_client_methods[0];

napi_status hdn_admin_init(napi_env env, napi_value exports) {
  const napi_property_descriptor functions[] = {
      {"backupFolder", NULL, js_backup_folder, NULL, NULL, NULL, napi_enumerable, NULL},
      {"authorizationAllow", NULL, js_authorization_allow, NULL, NULL, NULL, napi_enumerable, NULL},
      {"authorizationDeny", NULL, js_authorization_deny, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  return napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
}
