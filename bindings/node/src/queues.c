/* The queue semantics of docs/QUEUES.md on the Node addon: the server's limits, deduplication
 * window and dead-letter callback, adds with options and their results, fan-out, and the dead
 * letters' admin calls; the client's max_attempts. Each method calls one C function; the JS
 * layer (lib/queues.js) gives the names and the units. Events and notices of the client are
 * handed out in handles.c (hdn_on_client_event). */
#include "handles.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_dead_letter(void *ud, const uint8_t user[HD_PUBLICKEY_BYTES],
                           const hd_dead_letter_t *d);

/* ---- Options ------------------------------------------------------------------------------ */

/* 1 if `obj[key]` is set (not undefined or null), 0 if not, -1 (thrown) if it cannot be read. */
static int opt_present(napi_env env, napi_value obj, const char *key, napi_value *out) {
  napi_valuetype t;
  if (napi_get_named_property(env, obj, key, out) != napi_ok || napi_typeof(env, *out, &t) != napi_ok) {
    hdn_throw_napi(env, napi_generic_failure, key);
    return -1;
  }
  return t == napi_undefined || t == napi_null ? 0 : 1;
}

/* An optional count or duration: a safe integer >= 0 or a BigInt below 2^64. */
static int opt_u64(napi_env env, napi_value obj, const char *key, uint64_t *out) {
  napi_value v;
  napi_valuetype t;
  double d;
  bool lossless = false;
  int has = opt_present(env, obj, key, &v);
  if (has <= 0) return has;
  if (napi_typeof(env, v, &t) == napi_ok &&
      ((t == napi_bigint && napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok &&
        lossless) ||
       (t == napi_number && napi_get_value_double(env, v, &d) == napi_ok && d >= 0 &&
        d <= 9007199254740991.0 && d == (double)(uint64_t)d && (*out = (uint64_t)d, 1)))) {
    return 0;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "%s must be an integer from 0 (a Number up to 2^53 or a BigInt)", key);
  hdn_throw_einval(env, msg);
  return -1;
}

int hdn_queue_server_options(napi_env env, napi_value opts, hd_server_options_t *o) {
  uint32_t overflow = HD_OVERFLOW_REJECT;
  int dead = 0;
  if (hdn_opt_u32(env, opts, "maxEventBytes", &o->max_event_bytes) < 0 ||
      opt_u64(env, opts, "defaultTtlMs", &o->default_ttl_ms) < 0 ||
      opt_u64(env, opts, "maxPendingPerUser", &o->max_pending_per_user) < 0 ||
      opt_u64(env, opts, "maxBytesPerUser", &o->max_bytes_per_user) < 0 ||
      hdn_opt_u32(env, opts, "overflow", &overflow) < 0 ||
      opt_u64(env, opts, "dedupWindowMs", &o->dedup_window_ms) < 0 ||
      hdn_opt_u32(env, opts, "dedupKeysPerUser", &o->dedup_keys_per_user) < 0 ||
      hdn_opt_u32(env, opts, "expiryBatch", &o->expiry_batch) < 0 ||
      hdn_opt_bool(env, opts, "onDeadLetter", &dead) < 0) {
    return -1;
  }
  if (overflow != HD_OVERFLOW_REJECT && overflow != HD_OVERFLOW_DROP_OLDEST) {
    hdn_throw_einval(env, "overflow must be HD_OVERFLOW_REJECT (0) or HD_OVERFLOW_DROP_OLDEST (1)");
    return -1;
  }
  o->overflow = (int)overflow;
  o->on_dead_letter = dead ? on_dead_letter : NULL;
  return 0;
}

int hdn_queue_client_options(napi_env env, napi_value opts, hd_client_options_t *o) {
  return hdn_opt_u32(env, opts, "maxAttempts", &o->max_attempts);
}

/* ---- Dead letters as JS objects ----------------------------------------------------------- */

/* { id, createdAt, payload, attempts, reason, deadAt }; NULL on failure. */
static napi_value dead_letter_object(napi_env env, const hd_dead_letter_t *d) {
  napi_value obj, id, payload, reason;
  if (napi_create_object(env, &obj) != napi_ok || (id = hdn_seq_value(env, d->seq)) == NULL ||
      (payload = hdn_buffer_copy(env, d->payload, d->payload_len)) == NULL ||
      napi_create_string_utf8(env, d->reason != NULL ? d->reason : "", d->reason_len, &reason) != napi_ok ||
      napi_set_named_property(env, obj, "id", id) != napi_ok ||
      napi_set_named_property(env, obj, "payload", payload) != napi_ok ||
      napi_set_named_property(env, obj, "reason", reason) != napi_ok ||
      hdn_set_u64(env, obj, "createdAt", (uint64_t)d->created_ms) < 0 ||
      hdn_set_u64(env, obj, "attempts", d->attempts) < 0 ||
      hdn_set_u64(env, obj, "deadAt", (uint64_t)d->dead_ms) < 0) {
    return NULL;
  }
  return obj;
}

/* The core's on_dead_letter: ondeadletter(user, deadLetter). */
static void on_dead_letter(void *ud, const uint8_t user[HD_PUBLICKEY_BYTES],
                           const hd_dead_letter_t *d) {
  hdn_handle_t *h = ud;
  if (!hdn_can_call_js(h)) return;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  if ((argv[0] = hdn_buffer_copy(env, user, HD_PUBLICKEY_BYTES)) != NULL &&
      (argv[1] = dead_letter_object(env, d)) != NULL) {
    hdn_call_js(h, HDN_CB_DEAD_LETTER, 2, argv);
  } else {
    bool pending = false;
    napi_value exc;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_get_and_clear_last_exception(env, &exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

/* ---- Adds with options and fan-out -------------------------------------------------------- */

/* hd_add_options_t from { ttlMs, dedupKey, collapseKey } (keys: Uint8Array, pointing into the
 * caller's buffers, which the core copies before the call returns). -1 (thrown) on a bad one. */
static int add_options(napi_env env, napi_value v, hd_add_options_t *o) {
  napi_value k;
  int has;
  hd_add_options_init(o, HD_ADD_OPTIONS_VERSION);
  if (hdn_is_nullish(env, v)) return 0;
  if (opt_u64(env, v, "ttlMs", &o->ttl_ms) < 0) return -1;
  if ((has = opt_present(env, v, "dedupKey", &k)) < 0 ||
      (has && hdn_get_bytes(env, k, 0, &o->dedup_key, &o->dedup_key_len, "dedupKey") < 0)) {
    return -1;
  }
  if ((has = opt_present(env, v, "collapseKey", &k)) < 0 ||
      (has && hdn_get_bytes(env, k, 0, &o->collapse_key, &o->collapse_key_len, "collapseKey") < 0)) {
    return -1;
  }
  return 0;
}

/* { seq, duplicate, conflict, replacedSeq (null unless replaced), dropped }; NULL on failure. */
static napi_value add_result_object(napi_env env, const hd_add_result_t *r) {
  napi_value obj, seq, dup, conflict, replaced;
  if (napi_create_object(env, &obj) != napi_ok || (seq = hdn_seq_value(env, r->seq)) == NULL ||
      napi_get_boolean(env, (r->flags & HD_ADD_DUPLICATE) != 0, &dup) != napi_ok ||
      napi_get_boolean(env, (r->flags & HD_ADD_CONFLICT) != 0, &conflict) != napi_ok) {
    return NULL;
  }
  if (r->flags & HD_ADD_REPLACED) {
    if ((replaced = hdn_seq_value(env, r->replaced_seq)) == NULL) return NULL;
  } else if (napi_get_null(env, &replaced) != napi_ok) {
    return NULL;
  }
  if (napi_set_named_property(env, obj, "seq", seq) != napi_ok ||
      napi_set_named_property(env, obj, "duplicate", dup) != napi_ok ||
      napi_set_named_property(env, obj, "conflict", conflict) != napi_ok ||
      napi_set_named_property(env, obj, "replacedSeq", replaced) != napi_ok ||
      hdn_set_u64(env, obj, "dropped", (r->flags & HD_ADD_DROPPED) ? r->dropped : 0) < 0) {
    return NULL;
  }
  return obj;
}

static napi_value add_result_value(napi_env env, const void *r) {
  return add_result_object(env, r);
}

static void on_add_result(void *cb_data, int status, const hd_add_result_t *r) {
  hdn_op_settle(cb_data, status, status == 0 ? add_result_value : NULL, r);
}

typedef struct add_v2_args {
  const uint8_t *user, *payload;
  size_t len;
  hd_add_options_t opts;
} add_v2_args_t;

static int add_v2_start(void *core, void *cb_data, const void *arg) {
  const add_v2_args_t *a = arg;
  return hd_server_add_event_v2(core, a->user, a->payload, a->len, &a->opts, on_add_result, cb_data);
}

/* server.addEventV2(user: Buffer(32), payload: Uint8Array, options) -> Promise<result> */
static napi_value js_add_event_v2(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 2) return hdn_throw_einval(env, "expected (user, payload, options)");
  if (argc < 3) napi_get_undefined(env, &argv[2]);
  add_v2_args_t a;
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &a.user, NULL, "user") < 0 ||
      hdn_get_bytes(env, argv[1], 0, &a.payload, &a.len, "payload") < 0 ||
      add_options(env, argv[2], &a.opts) < 0) {
    return NULL;
  }
  return hdn_op_run(env, h, add_v2_start, &a);
}

typedef struct fanout_results {
  const hd_fanout_result_t *results;
  size_t n;
} fanout_results_t;

/* [{ status, result }] in the users' order: status 0 and the result, or the code and null. */
static napi_value fanout_value(napi_env env, const void *arg) {
  const fanout_results_t *f = arg;
  napi_value arr;
  if (napi_create_array_with_length(env, f->n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < f->n; i++) {
    napi_value obj, status, result;
    if (napi_create_object(env, &obj) != napi_ok ||
        napi_create_int32(env, f->results[i].status, &status) != napi_ok) {
      return NULL;
    }
    if (f->results[i].status == 0) result = add_result_object(env, &f->results[i].result);
    else if (napi_get_null(env, &result) != napi_ok) result = NULL;
    if (result == NULL || napi_set_named_property(env, obj, "status", status) != napi_ok ||
        napi_set_named_property(env, obj, "result", result) != napi_ok ||
        napi_set_element(env, arr, (uint32_t)i, obj) != napi_ok) {
      return NULL;
    }
  }
  return arr;
}

static void on_fanout(void *cb_data, int status, const hd_fanout_result_t *results, size_t n) {
  fanout_results_t f = {results, n};
  hdn_op_settle(cb_data, status, status == 0 ? fanout_value : NULL, &f);
}

typedef struct fanout_args {
  const uint8_t *users, *payload;
  size_t n, len;
  hd_add_options_t opts;
} fanout_args_t;

static int fanout_start(void *core, void *cb_data, const void *arg) {
  const fanout_args_t *a = arg;
  return hd_server_add_fanout(core, a->users, a->n, a->payload, a->len, &a->opts, on_fanout, cb_data);
}

/* server.addFanout(users: Buffer(n x 32), payload, options) -> Promise<[{ status, result }]> */
static napi_value js_add_fanout(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 2) return hdn_throw_einval(env, "expected (users, payload, options)");
  if (argc < 3) napi_get_undefined(env, &argv[2]);
  fanout_args_t a;
  size_t users_len;
  if (hdn_get_bytes(env, argv[0], 0, &a.users, &users_len, "users") < 0 ||
      hdn_get_bytes(env, argv[1], 0, &a.payload, &a.len, "payload") < 0 ||
      add_options(env, argv[2], &a.opts) < 0) {
    return NULL;
  }
  if (users_len % HD_PUBLICKEY_BYTES != 0) {
    return hdn_throw_einval(env, "users must be whole 32-byte public keys");
  }
  a.n = users_len / HD_PUBLICKEY_BYTES;
  return hdn_op_run(env, h, fanout_start, &a);
}

typedef struct add_events_args {
  const hd_add_item_t *items;
  size_t n;
} add_events_args_t;

static int add_events_start(void *core, void *cb_data, const void *arg) {
  const add_events_args_t *a = arg;
  return hd_server_add_events(core, a->items, a->n, on_fanout, cb_data);
}

/* server.addEvents(users: Buffer(n x 32), payloads: Uint8Array[n], options: (object | undefined)[n])
 * -> Promise<[{ status, result }]>: hd_server_add_events, one transaction, results in item
 * order as addFanout's. */
static napi_value js_add_events(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 3) return hdn_throw_einval(env, "expected (users, payloads, options)");
  const uint8_t *users;
  size_t users_len;
  uint32_t n = 0, np = 0, no = 0;
  if (hdn_get_bytes(env, argv[0], 0, &users, &users_len, "users") < 0) return NULL;
  n = (uint32_t)(users_len / HD_PUBLICKEY_BYTES);
  if (users_len % HD_PUBLICKEY_BYTES != 0 || napi_get_array_length(env, argv[1], &np) != napi_ok ||
      napi_get_array_length(env, argv[2], &no) != napi_ok || np != n || no != n) {
    return hdn_throw_einval(env, "expected n users (n x 32 bytes), n payloads and n options");
  }
  hd_add_item_t *items = calloc(n ? n : 1, sizeof *items);
  hd_add_options_t *opts = calloc(n ? n : 1, sizeof *opts);
  napi_value promise = NULL;
  int ok = items != NULL && opts != NULL;
  if (!ok) hdn_throw_hd(env, HD_ENOMEM);
  for (uint32_t i = 0; ok && i < n; i++) {
    napi_value p, o;
    const uint8_t *payload = NULL;
    ok = napi_get_element(env, argv[1], i, &p) == napi_ok &&
         napi_get_element(env, argv[2], i, &o) == napi_ok &&
         hdn_get_bytes(env, p, 0, &payload, &items[i].len, "payload") == 0 &&
         add_options(env, o, &opts[i]) == 0;
    items[i].payload = payload;
    items[i].user = users + (size_t)i * HD_PUBLICKEY_BYTES;
    items[i].opts = &opts[i];
  }
  if (ok) {
    add_events_args_t a = {items, n};
    promise = hdn_op_run(env, h, add_events_start, &a); /* the core copies the items */
  }
  free(items);
  free(opts);
  return promise;
}

/* ---- Dead letters ------------------------------------------------------------------------- */

/* listDeadLetters(user, after, limit) -> [{ id, createdAt, payload, attempts, reason, deadAt }] */
static napi_value js_list_dead_letters(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 3) return hdn_throw_einval(env, "expected (user, after, limit)");
  const uint8_t *user;
  uint64_t after, limit;
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &user, NULL, "user") < 0 ||
      hdn_get_seq(env, argv[1], &after, "after") < 0 || hdn_get_seq(env, argv[2], &limit, "limit") < 0) {
    return NULL;
  }
  if (limit == 0 || limit > 65536) return hdn_throw_einval(env, "limit must be 1 to 65536");
  hd_dead_letter_t *dl = malloc((size_t)limit * sizeof *dl);
  size_t size = 1u << 20;
  uint8_t *buf = NULL;
  int n = dl == NULL ? HD_ENOMEM : HD_EBUFSIZE;
  while (n == HD_EBUFSIZE && size <= (1u << 30)) { /* the page's first one is larger: grow */
    uint8_t *p = realloc(buf, size);
    if (p == NULL) {
      n = HD_ENOMEM;
      break;
    }
    buf = p;
    uint64_t cursor = after;
    n = hd_server_list_dead_letters(h->core, user, &cursor, dl, (size_t)limit, buf, size);
    size *= 4;
  }
  napi_value arr = NULL;
  napi_status st = n < 0 ? napi_ok : napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; n > 0 && st == napi_ok && i < n; i++) {
    napi_value obj = dead_letter_object(env, &dl[i]);
    st = obj != NULL ? napi_set_element(env, arr, (uint32_t)i, obj) : napi_generic_failure;
  }
  free(dl);
  free(buf);
  if (n < 0) return hdn_throw_hd(env, n);
  if (st != napi_ok) {
    hdn_throw_napi(env, st, "listDeadLetters");
    return NULL;
  }
  return arr;
}

/* deadLetterCount(user | null) -> number */
static napi_value js_dead_letter_count(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  const uint8_t *user = NULL;
  if (argc > 0 && !hdn_is_nullish(env, argv[0]) &&
      hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &user, NULL, "user") < 0) {
    return NULL;
  }
  uint64_t n = 0;
  int rc = hd_server_dead_letter_count(h->core, user, &n);
  if (rc < 0) return hdn_throw_hd(env, rc);
  HDN_CALL(env, napi_create_double(env, (double)n, &out));
  return out;
}

/* deadLetterUsers() -> [{ user: Buffer, count }], every page. */
static napi_value js_dead_letter_users(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  return hdn_user_counts(env, h->core, hd_server_dead_letter_users, "count", "deadLetterUsers");
}

static napi_value js_requeue_dead_letters(napi_env env, napi_callback_info info) {
  return hdn_ids_call(env, info, hd_server_requeue_dead_letters, HDN_IDS_OPTIONAL);
}

static napi_value js_delete_dead_letters(napi_env env, napi_callback_info info) {
  return hdn_ids_call(env, info, hd_server_delete_dead_letters, HDN_IDS_OPTIONAL);
}

const napi_property_descriptor hdn_queue_server_methods[] = {
    {"addEventV2", NULL, js_add_event_v2, NULL, NULL, NULL, napi_default_method, NULL},
    {"addFanout", NULL, js_add_fanout, NULL, NULL, NULL, napi_default_method, NULL},
    {"addEvents", NULL, js_add_events, NULL, NULL, NULL, napi_default_method, NULL},
    {"listDeadLetters", NULL, js_list_dead_letters, NULL, NULL, NULL, napi_default_method, NULL},
    {"deadLetterCount", NULL, js_dead_letter_count, NULL, NULL, NULL, napi_default_method, NULL},
    {"deadLetterUsers", NULL, js_dead_letter_users, NULL, NULL, NULL, napi_default_method, NULL},
    {"requeueDeadLetters", NULL, js_requeue_dead_letters, NULL, NULL, NULL, napi_default_method,
     NULL},
    {"deleteDeadLetters", NULL, js_delete_dead_letters, NULL, NULL, NULL, napi_default_method,
     NULL},
};
const size_t hdn_queue_server_method_count =
    sizeof hdn_queue_server_methods / sizeof hdn_queue_server_methods[0];
