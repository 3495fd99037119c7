/* Server and Client: the core's handles on Node's own libuv loop.
 *
 * Threading: every handle is created with `loop` = napi_get_uv_event_loop(env), so the core's
 * sockets, timers and wake-up handle are libuv handles on Node's loop and every core callback
 * runs on the JS thread, inside a libuv callback. No thread is started. A callback into JS opens
 * a handle scope and goes through napi_make_callback (so async_hooks, process.nextTick and
 * microtasks behave as for Node's own I/O). An exception thrown by JS is caught, printed to
 * stderr and dropped: it never unwinds into the core.
 *
 * Lifetime of one wrapper (hdn_handle_t):
 *   OPEN     the core handle exists; a strong reference keeps the JS object alive (as Node does
 *            for its own sockets: an open handle is reachable from the loop), the core's ref'd
 *            libuv handles keep the process alive.
 *   CLOSING  close() called hd_*_close(); callbacks may still arrive (disconnects).
 *   CLOSED   the core's close callback ran: the promise resolves, every JS reference is
 *            dropped, the core frees its memory right after. The wrapper itself is freed by the
 *            N-API finalizer when the JS object is collected.
 * A worker (or any env) torn down with handles still open: an async cleanup hook closes them
 * and holds the env until the core's close callback ran. If the finalizer ever sees an open
 * handle (env teardown), it starts the close and the close callback frees the wrapper. */
#include "handles.h"
#include "admin.h"
#include "operations.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static const char *const kind_names[] = {"Server", "Client"};

static atomic_long live[HDN_LIVE_KINDS];

void *hdn_live_calloc(hdn_live_kind_t kind, size_t size) {
  void *p = calloc(1, size);
  if (p != NULL) atomic_fetch_add(&live[kind], 1);
  return p;
}

void hdn_live_free(hdn_live_kind_t kind, void *p) {
  if (p == NULL) return;
  atomic_fetch_sub(&live[kind], 1);
  free(p);
}

static const char *const callback_names[HDN_CB_COUNT] = {
    "onconnect", "ondisconnect", "onlog",        "onevent",
    "onnotice",  "onconsumed",   "ondeadletter", "onauthorize"};

int hdn_can_call_js(const hdn_handle_t *h) {
  return !h->finalized && !h->teardown && h->has_callbacks;
}

static void drop_callbacks(hdn_handle_t *h) {
  for (int i = 0; i < HDN_CB_COUNT; i++) {
    if (h->callbacks[i]) napi_delete_reference(h->env, h->callbacks[i]);
    h->callbacks[i] = NULL;
  }
  h->has_callbacks = 0;
}

/* References to the functions of `obj` named in callback_names (each optional). 0, or -1 with
 * an exception thrown (a property that is neither a function nor undefined). */
static int hold_callbacks(napi_env env, napi_value obj, hdn_handle_t *h) {
  h->has_callbacks = 1;
  for (int i = 0; i < HDN_CB_COUNT; i++) {
    napi_value fn;
    napi_valuetype t;
    if (napi_get_named_property(env, obj, callback_names[i], &fn) != napi_ok ||
        napi_typeof(env, fn, &t) != napi_ok) {
      hdn_throw_napi(env, napi_generic_failure, callback_names[i]);
      return -1;
    }
    if (t == napi_undefined) continue;
    if (t != napi_function) {
      char msg[96];
      snprintf(msg, sizeof msg, "callbacks.%s must be a function", callback_names[i]);
      hdn_throw_einval(env, msg);
      return -1;
    }
    if (napi_create_reference(env, fn, 1, &h->callbacks[i]) != napi_ok) {
      hdn_throw_napi(env, napi_generic_failure, "napi_create_reference");
      return -1;
    }
  }
  return 0;
}

/* ---- Calling JS from the loop ----------------------------------------------------------- */

static void report_exception(napi_env env, const char *kind, const char *what, napi_value exc) {
  char buf[4096] = "(unprintable exception)";
  napi_value text = exc, stack;
  napi_valuetype t;
  bool pending;
  if (napi_typeof(env, exc, &t) == napi_ok && (t == napi_object || t == napi_function) &&
      napi_get_named_property(env, exc, "stack", &stack) == napi_ok &&
      napi_typeof(env, stack, &t) == napi_ok && t == napi_string) {
    text = stack;
  }
  napi_value str;
  size_t len;
  if (napi_coerce_to_string(env, text, &str) == napi_ok) {
    napi_get_value_string_utf8(env, str, buf, sizeof buf, &len);
  }
  /* a throwing getter or toString must not leave an exception behind */
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
    napi_value ignored;
    napi_get_and_clear_last_exception(env, &ignored);
  }
  fprintf(stderr, "hyperdown: an exception thrown by a %s '%s' callback was caught and ignored: %s\n",
          kind, what, buf);
  fflush(stderr);
}

/* callbacks[cb](argv...) through napi_make_callback; must be called inside a handle scope.
 * Returns 0 if the call returned normally, -1 if it could not be made or JS threw. */
int hdn_call_js(hdn_handle_t *h, hdn_callback_t cb, size_t argc, napi_value *argv) {
  napi_env env = h->env;
  napi_value fn, recv, result;
  const char *what = callback_names[cb];
  if (h->callbacks[cb] == NULL || napi_get_reference_value(env, h->callbacks[cb], &fn) != napi_ok ||
      fn == NULL) {
    return -1;
  }
  if (h->self == NULL || napi_get_reference_value(env, h->self, &recv) != napi_ok || recv == NULL) {
    /* during create (a log line) `this` is not wrapped yet; make_callback needs an object */
    if (napi_get_global(env, &recv) != napi_ok) return -1;
  }
  napi_status st = napi_make_callback(env, h->actx, recv, fn, argc, argv, &result);
  bool pending = false;
  if (st == napi_pending_exception ||
      (napi_is_exception_pending(env, &pending) == napi_ok && pending)) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
      report_exception(env, kind_names[h->kind], what, exc);
    }
    return -1;
  }
  return st == napi_ok ? 0 : -1;
}

static void on_peer(void *ud, const uint8_t public_key[HD_PUBLICKEY_BYTES]) {
  hdn_handle_t *h = ud;
  if (!hdn_can_call_js(h)) return;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[1];
  if ((argv[0] = hdn_buffer_copy(env, public_key, HD_PUBLICKEY_BYTES)) != NULL) {
    hdn_call_js(h, HDN_CB_CONNECT, 1, argv);
  }
  napi_close_handle_scope(env, scope);
}

static void on_peer_closed(void *ud, const uint8_t *public_key, int status) {
  hdn_handle_t *h = ud;
  if (!hdn_can_call_js(h)) return;
  char detail[512];
  snprintf(detail, sizeof detail, "%s", hd_last_error_message()); /* explains `status` */
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  int ok;
  if (public_key != NULL) ok = (argv[0] = hdn_buffer_copy(env, public_key, HD_PUBLICKEY_BYTES)) != NULL;
  else ok = napi_get_null(env, &argv[0]) == napi_ok;
  if (ok) {
    if (status < 0) ok = (argv[1] = hdn_make_error(env, status, detail)) != NULL;
    else ok = napi_get_null(env, &argv[1]) == napi_ok;
  }
  if (ok) hdn_call_js(h, HDN_CB_DISCONNECT, 2, argv);
  napi_close_handle_scope(env, scope);
}

static void on_log(void *ud, hd_log_level_t level, const char *message) {
  hdn_handle_t *h = ud;
  if (!hdn_can_call_js(h)) return;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  if (napi_create_int32(env, (int32_t)level, &argv[0]) == napi_ok &&
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &argv[1]) == napi_ok) {
    hdn_call_js(h, HDN_CB_LOG, 2, argv);
  }
  napi_close_handle_scope(env, scope);
}

/* ---- Close ------------------------------------------------------------------------------ */

/* Drops every N-API resource the wrapper holds (the env is alive: the cleanup hook, removed
 * last, keeps it so). */
static void release_js(hdn_handle_t *h) {
  napi_env env = h->env;
  drop_callbacks(h);
  if (h->close_promise) napi_delete_reference(env, h->close_promise);
  if (h->self) napi_delete_reference(env, h->self);
  h->close_promise = h->self = NULL;
  if (h->actx) napi_async_destroy(env, h->actx);
  h->actx = NULL;
  if (h->cleanup) {
    napi_async_cleanup_hook_handle c = h->cleanup;
    h->cleanup = NULL;
    napi_remove_async_cleanup_hook(c); /* may let the env go: last */
  }
}

/* Closed and no operation pending: drop the JS side; free the wrapper if its object is gone.
 * (While an operation is pending the strong `self` reference keeps the object, so `finalized`
 * cannot become true before this runs, except at env teardown.) */
static void finish(hdn_handle_t *h) {
  if (h->state != HDN_CLOSED || h->pending > 0) return;
  int free_now = h->finalized;
  release_js(h);
  if (free_now) hdn_live_free(HDN_LIVE_HANDLE, h);
}

/* The core's close callback (loop thread); the core frees its handle right after. */
static void on_core_closed(void *arg) {
  hdn_handle_t *h = arg;
  h->state = HDN_CLOSED;
  h->core = NULL;
  napi_env env = h->env;
  if (h->close_deferred != NULL) {
    napi_deferred d = h->close_deferred;
    h->close_deferred = NULL;
    napi_handle_scope scope;
    if (!h->finalized && !h->teardown && napi_open_handle_scope(env, &scope) == napi_ok) {
      napi_value undef, resource = NULL;
      napi_callback_scope cscope;
      napi_get_undefined(env, &undef);
      if (h->self) napi_get_reference_value(env, h->self, &resource);
      if (resource == NULL) napi_create_object(env, &resource);
      /* a callback scope, so that the promise's reactions run when it closes */
      int scoped = napi_open_callback_scope(env, resource, h->actx, &cscope) == napi_ok;
      napi_resolve_deferred(env, d, undef);
      if (scoped) napi_close_callback_scope(env, cscope);
      bool pending = false;
      if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
        napi_value exc;
        if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
          report_exception(env, kind_names[h->kind], "close", exc);
        }
      }
      napi_close_handle_scope(env, scope);
    }
    /* torn down: the deferred is dropped with the env */
  }
  finish(h);
}

static int core_close(hdn_handle_t *h) {
  int rc = h->kind == HDN_SERVER ? hd_server_close(h->core, on_core_closed, h)
                                 : hd_client_close(h->core, on_core_closed, h);
  if (rc == 0) h->state = HDN_CLOSING;
  return rc;
}

/* The env is going away (worker terminated, process teardown) with this handle still open. */
static void cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
  hdn_handle_t *h = arg;
  h->teardown = 1;
  if (h->state == HDN_OPEN && core_close(h) == 0) return; /* on_core_closed removes the hook */
  if (h->state == HDN_CLOSING) return;
  /* closed already (cannot happen: the close removes the hook) or the close failed */
  h->cleanup = NULL;
  napi_remove_async_cleanup_hook(handle);
}

static void finalize(napi_env env, void *data, void *hint) {
  hdn_handle_t *h = data;
  h->finalized = 1;
  if (h->state == HDN_CLOSED) {
    hdn_live_free(HDN_LIVE_HANDLE, h);
    return;
  }
  /* Only at env teardown (a strong reference holds open handles): close it now; the close
   * callback frees the wrapper. */
  drop_callbacks(h);
  if (h->self) napi_delete_reference(env, h->self);
  h->self = NULL;
  if (h->state == HDN_OPEN && core_close(h) != 0) {
    /* nothing will call back: the core refused (it was already closing by its own means) */
    release_js(h);
    hdn_live_free(HDN_LIVE_HANDLE, h);
  }
}

/* ---- Events ----------------------------------------------------------------------------- */

/* An event's sequence number as a Number (always, in practice: exact up to 2^53) or a BigInt. */
napi_value hdn_seq_value(napi_env env, uint64_t seq) {
  napi_value v;
  napi_status st = seq <= 9007199254740992ULL ? napi_create_double(env, (double)seq, &v)
                                              : napi_create_bigint_uint64(env, seq, &v);
  return st == napi_ok ? v : NULL;
}

/* { id, createdAt, payload, data } of one event; data is null when empty. */
static napi_value event_object(napi_env env, const hd_event_info_t *info) {
  napi_value obj, id, created, payload, data;
  if (napi_create_object(env, &obj) != napi_ok || (id = hdn_seq_value(env, info->seq)) == NULL ||
      napi_create_double(env, (double)info->created_ms, &created) != napi_ok ||
      (payload = hdn_buffer_copy(env, info->payload, info->payload_len)) == NULL) {
    return NULL;
  }
  if (info->data != NULL && info->data_len > 0) {
    if ((data = hdn_buffer_copy(env, info->data, info->data_len)) == NULL) return NULL;
  } else if (napi_get_null(env, &data) != napi_ok) {
    return NULL;
  }
  if (napi_set_named_property(env, obj, "id", id) != napi_ok ||
      napi_set_named_property(env, obj, "createdAt", created) != napi_ok ||
      napi_set_named_property(env, obj, "payload", payload) != napi_ok ||
      napi_set_named_property(env, obj, "data", data) != napi_ok) {
    return NULL;
  }
  return obj;
}

static napi_value throw_already(napi_env env, const char *what) {
  napi_value err = hdn_make_error(env, HD_EALREADY, what);
  if (err != NULL) napi_throw(env, err);
  return NULL;
}

bool hdn_truthy(napi_env env, napi_value v) {
  napi_value b;
  bool out = false;
  if (napi_coerce_to_bool(env, v, &b) == napi_ok) napi_get_value_bool(env, b, &out);
  return out;
}

bool hdn_is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  return napi_typeof(env, v, &t) != napi_ok || t == napi_undefined || t == napi_null;
}

napi_value hdn_make_ref(napi_env env, void *data, const napi_type_tag *tag, napi_finalize fin) {
  napi_value ext;
  /* the finalizer comes last: until it is attached (NULL returned before), `data` is the caller's */
  if (napi_create_external(env, data, NULL, NULL, &ext) != napi_ok ||
      napi_type_tag_object(env, ext, tag) != napi_ok ||
      napi_add_finalizer(env, ext, data, fin, NULL, NULL) != napi_ok) {
    return NULL;
  }
  return ext;
}

void *hdn_get_ref(napi_env env, napi_value v, const napi_type_tag *tag, const char *what) {
  bool ok = false;
  void *data = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, tag, &ok) != napi_ok || !ok ||
      napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    char msg[96];
    snprintf(msg, sizeof msg, "not %s handed out by this addon", what);
    hdn_throw_einval(env, msg);
    return NULL;
  }
  return data;
}

/* The tags of the references handed to JS (random 128-bit values: napi_type_tag_object). */
static const napi_type_tag batch_tag = {0x3f1c9a5e27d84b60ULL, 0x9e4d0b7a61c2f835ULL};
static const napi_type_tag event_tag = {0x8a27e4c1d95b3f06ULL, 0x41f6c0d2b97e5a18ULL};

/* Server: one hd_consumed_t handed to JS (an external, tagged batch_tag). `b` is NULL once every
 * event is completed (the core may have freed it then). A batch whose reference is collected
 * with events still open is completed with failure: the client reports them again (nothing is lost, nothing
 * leaks). */
typedef struct batch_ref {
  hd_consumed_t *b;
  size_t count, remaining;
  unsigned char *done;
} batch_ref_t;

static void batch_fail_rest(batch_ref_t *r) {
  if (r->b != NULL && r->remaining > 0) hd_consumed_complete_all(r->b, 0);
  r->b = NULL;
  r->remaining = 0;
}

static void batch_finalize(napi_env env, void *data, void *hint) {
  batch_ref_t *r = data;
  batch_fail_rest(r);
  free(r->done);
  hdn_live_free(HDN_LIVE_BATCH, r);
}

/* consumedComplete(batch, index, ok): hd_consumed_complete, one event of the batch. */
static napi_value js_consumed_complete(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], undef;
  uint32_t i;
  HDN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return hdn_throw_einval(env, "expected (batch, index, ok)");
  batch_ref_t *r = hdn_get_ref(env, argv[0], &batch_tag, "a batch");
  if (r == NULL) return NULL;
  if (napi_get_value_uint32(env, argv[1], &i) != napi_ok || i >= r->count) {
    return hdn_throw_einval(env, "index must be an event's index in the batch");
  }
  if (r->done[i] || r->b == NULL) return throw_already(env, "the batch's event is already completed");
  r->done[i] = 1;
  hd_consumed_t *b = r->b;
  if (--r->remaining == 0) r->b = NULL; /* the last completion may free it */
  int rc = hd_consumed_complete(b, i, hdn_truthy(env, argv[2]));
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_get_undefined(env, &undef);
  return undef;
}

/* consumedCompleteAll(batch, ok): hd_consumed_complete_all, every open event of the batch. */
static napi_value js_consumed_complete_all(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], undef;
  HDN_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) return hdn_throw_einval(env, "expected (batch, ok)");
  batch_ref_t *r = hdn_get_ref(env, argv[0], &batch_tag, "a batch");
  if (r == NULL) return NULL;
  if (r->b == NULL) return throw_already(env, "the batch's events are already completed");
  hd_consumed_t *b = r->b;
  memset(r->done, 1, r->count);
  r->b = NULL;
  r->remaining = 0;
  int rc = hd_consumed_complete_all(b, hdn_truthy(env, argv[1]));
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_get_undefined(env, &undef);
  return undef;
}

/* The core's on_consumed: onconsumed(user, events[], batch). */
static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *batch) {
  hdn_handle_t *h = ud;
  size_t n = hd_consumed_count(batch);
  batch_ref_t *r = NULL;
  if (!hdn_can_call_js(h) || n == 0 || (r = hdn_live_calloc(HDN_LIVE_BATCH, sizeof *r)) == NULL ||
      (r->done = calloc(n, 1)) == NULL) {
    if (r) hdn_live_free(HDN_LIVE_BATCH, r);
    hd_consumed_complete_all(batch, 0); /* reported again later */
    return;
  }
  r->b = batch;
  r->count = r->remaining = n;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    batch_finalize(env, r, NULL);
    return;
  }
  napi_value argv[3], fn = NULL;
  int ok = (argv[0] = hdn_buffer_copy(env, user, HD_PUBLICKEY_BYTES)) != NULL &&
           napi_create_array_with_length(env, n, &argv[1]) == napi_ok;
  for (size_t i = 0; ok && i < n; i++) {
    hd_event_info_t info;
    napi_value ev;
    ok = hd_consumed_event(batch, i, &info) == 0 && (ev = event_object(env, &info)) != NULL &&
         napi_set_element(env, argv[1], (uint32_t)i, ev) == napi_ok;
  }
  if (ok) ok = (fn = hdn_make_ref(env, r, &batch_tag, batch_finalize)) != NULL;
  if (!ok) {
    bool pending;
    napi_value exc;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_get_and_clear_last_exception(env, &exc);
    }
    if (fn == NULL) batch_finalize(env, r, NULL); /* not owned by a reference yet */
    else batch_fail_rest(r);
    napi_close_handle_scope(env, scope);
    return;
  }
  argv[2] = fn;
  /* JS threw past the binding's own try/catch: what is still open fails (and comes back) */
  if (hdn_call_js(h, HDN_CB_CONSUMED, 3, argv) != 0) batch_fail_rest(r);
  napi_close_handle_scope(env, scope);
}

/* Client: one hd_event_t handed to JS; `e` is NULL once completed. Collected uncompleted: it
 * fails, so the core hands it out again after the backoff. */
typedef struct event_ref {
  hd_event_t *e;
} event_ref_t;

static void event_finalize(napi_env env, void *data, void *hint) {
  event_ref_t *r = data;
  if (r->e != NULL) hd_event_complete(r->e, 0, NULL, 0);
  hdn_live_free(HDN_LIVE_EVENT, r);
}

/* The open event of an eventComplete/eventFail/eventReject call; NULL (thrown) otherwise. */
static event_ref_t *open_event(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  if (napi_get_cb_info(env, info, argc, argv, NULL, NULL) != napi_ok || *argc < 1) {
    hdn_throw_einval(env, "expected (event, ...)");
    return NULL;
  }
  event_ref_t *r = hdn_get_ref(env, argv[0], &event_tag, "an event");
  if (r != NULL && r->e == NULL) {
    throw_already(env, "the event is already completed");
    return NULL;
  }
  return r;
}

/* Bytes of an optional argument (data, a reason); -1 (thrown) if it is not bytes. */
static int optional_bytes(napi_env env, size_t argc, napi_value *argv, size_t i, const uint8_t **p,
                          size_t *len, const char *what) {
  *p = NULL;
  *len = 0;
  if (argc <= i || hdn_is_nullish(env, argv[i])) return 0;
  return hdn_get_bytes(env, argv[i], 0, p, len, what);
}

/* The outcome of a completing call: the event stays open after EINVAL/ENOMEM, else it is done. */
static napi_value event_done(napi_env env, event_ref_t *r, int rc) {
  napi_value undef;
  if (rc == HD_EINVAL || rc == HD_ENOMEM) return hdn_throw_hd(env, rc); /* still open */
  r->e = NULL;
  if (rc < 0) return hdn_throw_hd(env, rc);
  napi_get_undefined(env, &undef);
  return undef;
}

/* eventComplete(event, ok[, data: Uint8Array]): hd_event_complete. */
static napi_value js_event_complete(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  event_ref_t *r = open_event(env, info, &argc, argv);
  const uint8_t *data;
  size_t len;
  if (r == NULL || optional_bytes(env, argc, argv, 2, &data, &len, "data") < 0) return NULL;
  int ok = argc > 1 && hdn_truthy(env, argv[1]);
  return event_done(env, r, hd_event_complete(r->e, ok, ok && len ? data : NULL, ok ? len : 0));
}

/* eventFail(event[, reason: Uint8Array]): hd_event_fail, a failed attempt; eventReject(...):
 * hd_event_reject, a dead letter at once. */
static napi_value event_fail_or_reject(napi_env env, napi_callback_info info, int reject) {
  size_t argc = 2;
  napi_value argv[2];
  event_ref_t *r = open_event(env, info, &argc, argv);
  const uint8_t *reason;
  size_t len;
  if (r == NULL || optional_bytes(env, argc, argv, 1, &reason, &len, "reason") < 0) return NULL;
  int rc = reject ? hd_event_reject(r->e, (const char *)reason, len)
                  : hd_event_fail(r->e, (const char *)reason, len);
  return event_done(env, r, rc);
}

static napi_value js_event_fail(napi_env env, napi_callback_info info) {
  return event_fail_or_reject(env, info, 0);
}

static napi_value js_event_reject(napi_env env, napi_callback_info info) {
  return event_fail_or_reject(env, info, 1);
}

/* A notice's fields for onnotice(kind, count, firstSeq, lastSeq, complete): argv[0..3]. */
static int notice_args(napi_env env, hd_event_t *event, napi_value *argv) {
  hd_notice_t n;
  return hd_event_notice(event, &n) == 0 &&
         napi_create_uint32(env, n.kind, &argv[0]) == napi_ok &&
         (argv[1] = hdn_seq_value(env, n.count)) != NULL &&
         (argv[2] = hdn_seq_value(env, n.first_seq)) != NULL &&
         (argv[3] = hdn_seq_value(env, n.last_seq)) != NULL;
}

/* The core's on_event and on_notice: onevent(id, payload, createdAt, event, possiblyRepeated,
 * attempt) or onnotice(kind, count, firstSeq, lastSeq, event), `event` the reference that
 * eventComplete/eventFail/eventReject take. */
void hdn_on_client_event(void *ud, hd_event_t *event) {
  hdn_handle_t *h = ud;
  event_ref_t *r = NULL;
  hd_event_info_t info;
  memset(&info, 0, sizeof info);
  if (!hdn_can_call_js(h) || (hd_event_is_notice(event) != 1 && hd_event_info(event, &info) != 0) ||
      (r = hdn_live_calloc(HDN_LIVE_EVENT, sizeof *r)) == NULL) {
    hd_event_complete(event, 0, NULL, 0); /* handed out again later */
    return;
  }
  r->e = event;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) {
    event_finalize(env, r, NULL);
    return;
  }
  napi_value argv[6], fn = NULL;
  int notice = hd_event_is_notice(event) == 1, ok;
  if (notice) {
    ok = notice_args(env, event, argv);
  } else {
    ok = (argv[0] = hdn_seq_value(env, info.seq)) != NULL &&
         (argv[1] = hdn_buffer_copy(env, info.payload, info.payload_len)) != NULL &&
         napi_create_double(env, (double)info.created_ms, &argv[2]) == napi_ok &&
         napi_get_boolean(env, hd_event_possibly_repeated(event) != 0, &argv[4]) == napi_ok &&
         napi_create_uint32(env, hd_event_attempt(event), &argv[5]) == napi_ok;
  }
  if (ok) {
    ok = (fn = hdn_make_ref(env, r, &event_tag, event_finalize)) != NULL;
  }
  if (!ok) {
    bool pending;
    napi_value exc;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_get_and_clear_last_exception(env, &exc);
    }
    if (fn == NULL) event_finalize(env, r, NULL);
    else if (r->e != NULL) {
      hd_event_complete(r->e, 0, NULL, 0);
      r->e = NULL;
    }
    napi_close_handle_scope(env, scope);
    return;
  }
  argv[notice ? 4 : 3] = fn;
  if (hdn_call_js(h, notice ? HDN_CB_NOTICE : HDN_CB_EVENT, notice ? 5 : 6, argv) != 0 &&
      r->e != NULL) {
    hd_event_complete(r->e, 0, NULL, 0); /* JS threw before completing: fail, retried */
    r->e = NULL;
  }
  napi_close_handle_scope(env, scope);
}

/* ---- Construction ----------------------------------------------------------------------- */

typedef struct common_opts {
  hd_keypair_t kp;
  char *topic;
  char *address;
  char *data_dir;
  int sync_normal;
  uint32_t handshake_timeout_ms, keepalive_ms, idle_timeout_ms, max_message_bytes;
  uint32_t log_level;
  int log;
} common_opts_t;

static void common_opts_free(common_opts_t *o) {
  hd_keypair_wipe(&o->kp);
  free(o->topic);
  free(o->address);
  free(o->data_dir);
}

static int read_common(napi_env env, napi_value opts, const char *address_key, common_opts_t *o) {
  const uint8_t *pk, *scalar;
  napi_value v;
  memset(o, 0, sizeof *o);
  if ((v = hdn_prop(env, opts, "publicKey")) == NULL) return -1;
  if (hdn_get_bytes(env, v, HD_PUBLICKEY_BYTES, &pk, NULL, "publicKey") < 0) return -1;
  if ((v = hdn_prop(env, opts, "scalar")) == NULL) return -1;
  if (hdn_get_bytes(env, v, HD_SCALAR_BYTES, &scalar, NULL, "scalar") < 0) return -1;
  int rc = hd_keypair_from_scalar(&o->kp, scalar, pk);
  if (rc < 0) {
    hdn_throw_hd(env, rc);
    return -1;
  }
  if ((v = hdn_prop(env, opts, "topic")) == NULL || (o->topic = hdn_get_string(env, v, "topic")) == NULL ||
      (v = hdn_prop(env, opts, address_key)) == NULL ||
      (o->address = hdn_get_string(env, v, address_key)) == NULL ||
      (v = hdn_prop(env, opts, "dataDir")) == NULL ||
      (o->data_dir = hdn_get_string(env, v, "dataDir")) == NULL ||
      hdn_opt_bool(env, opts, "syncNormal", &o->sync_normal) < 0 ||
      hdn_opt_u32(env, opts, "handshakeTimeoutMs", &o->handshake_timeout_ms) < 0 ||
      hdn_opt_u32(env, opts, "keepaliveMs", &o->keepalive_ms) < 0 ||
      hdn_opt_u32(env, opts, "idleTimeoutMs", &o->idle_timeout_ms) < 0 ||
      hdn_opt_u32(env, opts, "maxMessageBytes", &o->max_message_bytes) < 0 ||
      hdn_opt_u32(env, opts, "logLevel", &o->log_level) < 0 ||
      hdn_opt_bool(env, opts, "log", &o->log) < 0) {
    common_opts_free(o);
    return -1;
  }
  if (o->log_level > HD_LOG_DEBUG) o->log_level = HD_LOG_DEBUG;
  return 0;
}

/* new Server(options, callbacks) / new Client(options, callbacks): callbacks { onconnect, ... } */
static napi_value construct(napi_env env, napi_callback_info info, hdn_kind_t kind) {
  size_t argc = 2;
  napi_value argv[2], this, target;
  napi_valuetype t;
  HDN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &this, NULL));
  HDN_CALL(env, napi_get_new_target(env, info, &target));
  if (target == NULL) return hdn_throw_einval(env, "use `new`");
  if (argc < 2) return hdn_throw_einval(env, "expected (options, callbacks)");
  HDN_CALL(env, napi_typeof(env, argv[0], &t));
  if (t != napi_object) return hdn_throw_einval(env, "options must be an object");
  HDN_CALL(env, napi_typeof(env, argv[1], &t));
  if (t != napi_object) return hdn_throw_einval(env, "callbacks must be an object");

  common_opts_t co;
  if (read_common(env, argv[0], kind == HDN_SERVER ? "listen" : "connect", &co) < 0) return NULL;
  uint8_t server_pk[HD_PUBLICKEY_BYTES];
  uint32_t reconnect_min = 0, reconnect_max = 0, page_events = 0, window = 0, retry_min = 0,
           retry_max = 0;
  int reconnect = 1, want_consumed = 0, want_notices = 0;
  if (kind == HDN_SERVER) {
    if (hdn_opt_u32(env, argv[0], "pageEvents", &page_events) < 0 ||
        hdn_opt_bool(env, argv[0], "onConsumed", &want_consumed) < 0) {
      common_opts_free(&co);
      return NULL;
    }
  }
  if (kind == HDN_CLIENT) {
    const uint8_t *spk;
    napi_value v = hdn_prop(env, argv[0], "serverPublicKey");
    if (v == NULL || hdn_get_bytes(env, v, HD_PUBLICKEY_BYTES, &spk, NULL, "serverPublicKey") < 0 ||
        hdn_opt_u32(env, argv[0], "reconnectMinMs", &reconnect_min) < 0 ||
        hdn_opt_u32(env, argv[0], "reconnectMaxMs", &reconnect_max) < 0 ||
        hdn_opt_bool(env, argv[0], "reconnect", &reconnect) < 0 ||
        hdn_opt_u32(env, argv[0], "window", &window) < 0 ||
        hdn_opt_u32(env, argv[0], "retryMinMs", &retry_min) < 0 ||
        hdn_opt_u32(env, argv[0], "retryMaxMs", &retry_max) < 0 ||
        hdn_opt_bool(env, argv[0], "onNotice", &want_notices) < 0) {
      common_opts_free(&co);
      return NULL;
    }
    memcpy(server_pk, spk, sizeof server_pk);
  }

  uv_loop_t *loop = NULL;
  napi_status st = napi_get_uv_event_loop(env, (struct uv_loop_s **)&loop);
  if (st != napi_ok || loop == NULL) {
    common_opts_free(&co);
    hdn_throw_napi(env, st, "napi_get_uv_event_loop");
    return NULL;
  }
  hdn_handle_t *h = hdn_live_calloc(HDN_LIVE_HANDLE, sizeof *h);
  if (h == NULL) {
    common_opts_free(&co);
    return hdn_throw_hd(env, HD_ENOMEM);
  }
  h->env = env;
  h->kind = kind;
  napi_value name;
  if (hold_callbacks(env, argv[1], h) < 0) {
    common_opts_free(&co);
    release_js(h);
    hdn_live_free(HDN_LIVE_HANDLE, h);
    return NULL;
  }
  if ((st = napi_create_string_utf8(env, kind == HDN_SERVER ? "hyperdown.Server" : "hyperdown.Client",
                                    NAPI_AUTO_LENGTH, &name)) != napi_ok ||
      (st = napi_async_init(env, NULL, name, &h->actx)) != napi_ok) {
    common_opts_free(&co);
    release_js(h);
    hdn_live_free(HDN_LIVE_HANDLE, h);
    hdn_throw_napi(env, st, "creating the handle's references");
    return NULL;
  }

  int rc;
  hdn_operation_options_t ops;
  memset(&ops, 0, sizeof ops);
  if (kind == HDN_SERVER) {
    hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
    o.keypair = &co.kp;
    o.topic = co.topic;
    o.listen = co.address;
    o.loop = loop;
    o.handshake_timeout_ms = co.handshake_timeout_ms;
    o.keepalive_ms = co.keepalive_ms;
    o.idle_timeout_ms = co.idle_timeout_ms;
    o.max_message_bytes = co.max_message_bytes;
    o.user_data = h;
    o.log = co.log ? on_log : NULL;
    o.log_level = (hd_log_level_t)co.log_level;
    o.on_peer_connected = on_peer;
    o.on_peer_disconnected = on_peer_closed;
    o.data_dir = co.data_dir;
    o.sync_normal = co.sync_normal;
    o.on_consumed = want_consumed ? on_consumed : NULL;
    o.page_events = page_events;
    hd_server_t *s = NULL;
    rc = hdn_queue_server_options(env, argv[0], &o) < 0 ||
                 hdn_admission_server_options(env, argv[0], &o) < 0 ||
                 hdn_operation_server_options(env, argv[0], &ops, &o) < 0
             ? HD_EINVAL
             : hd_server_create(&s, &o);
    h->core = s;
  } else {
    hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
    o.keypair = &co.kp;
    o.server_public_key = server_pk;
    o.topic = co.topic;
    o.connect = co.address;
    o.loop = loop;
    o.handshake_timeout_ms = co.handshake_timeout_ms;
    o.keepalive_ms = co.keepalive_ms;
    o.idle_timeout_ms = co.idle_timeout_ms;
    o.max_message_bytes = co.max_message_bytes;
    o.reconnect_min_ms = reconnect_min;
    o.reconnect_max_ms = reconnect_max;
    o.no_reconnect = !reconnect;
    o.user_data = h;
    o.log = co.log ? on_log : NULL;
    o.log_level = (hd_log_level_t)co.log_level;
    o.on_connected = on_peer;
    o.on_disconnected = on_peer_closed;
    o.data_dir = co.data_dir;
    o.sync_normal = co.sync_normal;
    o.on_event = hdn_on_client_event;
    o.on_notice = want_notices ? hdn_on_client_event : NULL;
    o.window = window;
    o.retry_min_ms = retry_min;
    o.retry_max_ms = retry_max;
    hd_client_t *c = NULL;
    rc = hdn_queue_client_options(env, argv[0], &o) < 0 ||
                 hdn_operation_client_options(env, argv[0], &ops, &o) < 0
             ? HD_EINVAL
             : hd_client_create(&c, &o);
    h->core = c;
  }
  common_opts_free(&co);
  hdn_operation_options_free(&ops);
  if (rc < 0) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", hd_last_error_message());
    release_js(h);
    hdn_live_free(HDN_LIVE_HANDLE, h);
    bool thrown = false; /* an option of the wrong type */
    if (napi_is_exception_pending(env, &thrown) == napi_ok && thrown) return NULL;
    napi_value err = hdn_make_error(env, rc, detail);
    if (err) napi_throw(env, err);
    return NULL;
  }

  st = napi_wrap(env, this, h, finalize, NULL, NULL);
  int wrapped = st == napi_ok;
  if (st == napi_ok) st = napi_create_reference(env, this, 1, &h->self);
  if (st == napi_ok) st = napi_add_async_cleanup_hook(env, cleanup_hook, h, &h->cleanup);
  if (st != napi_ok) {
    /* cannot track it: close it at once; the close callback frees what is left */
    h->finalized = 1;
    if (wrapped) napi_remove_wrap(env, this, NULL);
    if (core_close(h) != 0) {
      release_js(h);
      hdn_live_free(HDN_LIVE_HANDLE, h);
    }
    hdn_throw_napi(env, st, "wrapping the handle");
    return NULL;
  }
  return this;
}

static napi_value server_new(napi_env env, napi_callback_info info) {
  return construct(env, info, HDN_SERVER);
}
static napi_value client_new(napi_env env, napi_callback_info info) {
  return construct(env, info, HDN_CLIENT);
}

static hdn_handle_t *unwrap(napi_env env, napi_callback_info info) {
  napi_value this;
  void *data = NULL;
  if (napi_get_cb_info(env, info, NULL, NULL, &this, NULL) != napi_ok ||
      napi_unwrap(env, this, &data) != napi_ok || data == NULL) {
    hdn_throw_einval(env, "not a hyperdown handle");
    return NULL;
  }
  return data;
}

/* close() -> Promise<void>, resolved from the core's close callback; idempotent. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  hdn_handle_t *h = unwrap(env, info);
  napi_value promise, undef;
  napi_deferred d;
  if (h == NULL) return NULL;
  if (h->state == HDN_CLOSING && h->close_promise != NULL) {
    HDN_CALL(env, napi_get_reference_value(env, h->close_promise, &promise));
    return promise;
  }
  HDN_CALL(env, napi_create_promise(env, &d, &promise));
  if (h->state == HDN_CLOSED) {
    napi_get_undefined(env, &undef);
    HDN_CALL(env, napi_resolve_deferred(env, d, undef));
    return promise;
  }
  if (h->state == HDN_OPEN) {
    int rc = core_close(h);
    if (rc < 0) {
      napi_value err = hdn_make_error(env, rc, NULL);
      if (err == NULL) return NULL;
      HDN_CALL(env, napi_reject_deferred(env, d, err));
      return promise;
    }
  }
  h->close_deferred = d;
  HDN_CALL(env, napi_create_reference(env, promise, 1, &h->close_promise));
  return promise;
}

static napi_value js_port(napi_env env, napi_callback_info info) {
  hdn_handle_t *h = unwrap(env, info);
  napi_value out;
  if (h == NULL) return NULL;
  if (h->state != HDN_OPEN) return hdn_throw_hd(env, HD_ECLOSED);
  int port = hd_server_port(h->core);
  if (port < 0) return hdn_throw_hd(env, port);
  HDN_CALL(env, napi_create_int32(env, port, &out));
  return out;
}

static napi_value js_state(napi_env env, napi_callback_info info) {
  static const char *const names[] = {"open", "closing", "closed"};
  hdn_handle_t *h = unwrap(env, info);
  napi_value out;
  if (h == NULL) return NULL;
  HDN_CALL(env, napi_create_string_utf8(env, names[h->state], NAPI_AUTO_LENGTH, &out));
  return out;
}

/* ---- Asynchronous operations (addEvent, updatePause, deleteEvents, deleteUser) ------------------------------------- */

void hdn_op_settle(hdn_op_t *o, int status, hdn_value_fn make, const void *arg) {
  hdn_handle_t *h = o->h;
  napi_env env = h->env;
  char detail[512];
  snprintf(detail, sizeof detail, "%s", status < 0 ? hd_last_error_message() : "");
  napi_handle_scope scope;
  if (!h->teardown && napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value value = NULL, resource = NULL;
    napi_callback_scope cscope;
    if (h->self) napi_get_reference_value(env, h->self, &resource);
    if (resource == NULL) napi_create_object(env, &resource);
    int scoped = napi_open_callback_scope(env, resource, h->actx, &cscope) == napi_ok;
    if (status < 0) {
      value = hdn_make_error(env, status, detail[0] ? detail : NULL);
      if (value != NULL) napi_reject_deferred(env, o->d, value);
    } else {
      if (make != NULL) value = make(env, arg);
      else napi_get_undefined(env, &value);
      if (value != NULL) napi_resolve_deferred(env, o->d, value);
    }
    if (scoped) napi_close_callback_scope(env, cscope);
    bool pending = false;
    if (napi_is_exception_pending(env, &pending) == napi_ok && pending) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
        report_exception(env, kind_names[h->kind], "operation", exc);
      }
    }
    napi_close_handle_scope(env, scope);
  }
  hdn_live_free(HDN_LIVE_OPERATION, o);
  h->pending--;
  finish(h);
}

static napi_value seq_of(napi_env env, const void *seq) {
  return hdn_seq_value(env, *(const uint64_t *)seq);
}

void hdn_on_added(void *cb_data, int status, uint64_t seq) {
  hdn_op_settle(cb_data, status, seq_of, &seq);
}

void hdn_on_done(void *cb_data, int status) { hdn_op_settle(cb_data, status, NULL, NULL); }

/* A promise and its context; `*promise` set. NULL (thrown) on failure. */
static hdn_op_t *op_new(napi_env env, hdn_handle_t *h, napi_value *promise) {
  hdn_op_t *o = hdn_live_calloc(HDN_LIVE_OPERATION, sizeof *o);
  if (o == NULL) {
    hdn_throw_hd(env, HD_ENOMEM);
    return NULL;
  }
  napi_status st = napi_create_promise(env, &o->d, promise);
  if (st != napi_ok) {
    hdn_live_free(HDN_LIVE_OPERATION, o);
    hdn_throw_napi(env, st, "napi_create_promise");
    return NULL;
  }
  o->h = h;
  return o;
}

/* The call failed before the core took it: reject at once (the promise is returned). */
static napi_value op_fail(napi_env env, hdn_op_t *o, napi_value promise, int rc) {
  napi_value err = hdn_make_error(env, rc, NULL);
  if (err != NULL) napi_reject_deferred(env, o->d, err);
  hdn_live_free(HDN_LIVE_OPERATION, o);
  return err != NULL ? promise : NULL;
}

napi_value hdn_op_run(napi_env env, hdn_handle_t *h, hdn_op_start_fn start, const void *arg) {
  napi_value promise;
  hdn_op_t *o = op_new(env, h, &promise);
  if (o == NULL) return NULL;
  int rc;
  if (h->state != HDN_OPEN) {
    hd_clear_error(); /* ECLOSED is the whole story */
    rc = HD_ECLOSED;
  } else {
    rc = start(h->core, o, arg);
  }
  if (rc < 0) return op_fail(env, o, promise, rc);
  h->pending++;
  return promise;
}

/* The handle of an asynchronous operation's `this`, open or not (the operation's promise says
 * ECLOSED), and its arguments; NULL (thrown) if `this` is not a handle. */
hdn_handle_t *hdn_op_handle(napi_env env, napi_callback_info info, size_t *argc,
                               napi_value *argv) {
  napi_value this;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &this, NULL) != napi_ok ||
      napi_unwrap(env, this, &data) != napi_ok || data == NULL) {
    hdn_throw_einval(env, "not a hyperdown handle");
    return NULL;
  }
  return data;
}

typedef struct add_args {
  const uint8_t *user, *payload;
  size_t len;
} add_args_t;

static int add_start(void *core, void *cb_data, const void *arg) {
  const add_args_t *a = arg;
  return hd_server_add_event(core, a->user, a->payload, a->len, hdn_on_added, cb_data);
}

/* server.addEvent(user: Buffer(32), payload: Uint8Array) -> Promise<number | bigint> */
static napi_value js_add_event(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 2) return hdn_throw_einval(env, "expected (user, payload)");
  add_args_t a;
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &a.user, NULL, "user") < 0 ||
      hdn_get_bytes(env, argv[1], 0, &a.payload, &a.len, "payload") < 0) {
    return NULL;
  }
  return hdn_op_run(env, h, add_start, &a);
}

static int pause_start(void *core, void *cb_data, const void *arg) {
  return hd_server_update_pause(core, *(const uint32_t *)arg, hdn_on_done, cb_data);
}

/* server.updatePause(ms) -> Promise<void> */
static napi_value js_update_pause(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  double d = -1;
  if (argc < 1 || napi_get_value_double(env, argv[0], &d) != napi_ok || !(d >= 0) ||
      d > 4294967295.0 || d != (double)(uint32_t)d) {
    return hdn_throw_einval(env, "the pause must be an integer number of ms from 0 to 2^32-1");
  }
  uint32_t ms = (uint32_t)d;
  return hdn_op_run(env, h, pause_start, &ms);
}

/* ---- Blocking reads (inline: we are on the loop thread) ------------------------------------ */

hdn_handle_t *hdn_open_handle(napi_env env, napi_callback_info info, size_t *argc,
                                 napi_value *argv) {
  hdn_handle_t *h = hdn_op_handle(env, info, argc, argv);
  if (h == NULL) return NULL;
  if (h->state != HDN_OPEN) {
    napi_value err = hdn_make_error(env, HD_ECLOSED, "the handle is closed or closing");
    if (err) napi_throw(env, err);
    return NULL;
  }
  return h;
}

int hdn_set_u64(napi_env env, napi_value obj, const char *key, uint64_t v) {
  napi_value n;
  return napi_create_double(env, (double)v, &n) == napi_ok &&
                 napi_set_named_property(env, obj, key, n) == napi_ok
             ? 0
             : -1;
}

/* { names[i]: values[i] } as Numbers; NULL (thrown, naming `what`) on failure. */
napi_value hdn_counters_object(napi_env env, const char *what, size_t n,
                                  const char *const names[], const uint64_t values[]) {
  napi_value obj;
  HDN_CALL(env, napi_create_object(env, &obj));
  for (size_t i = 0; i < n; i++) {
    if (hdn_set_u64(env, obj, names[i], values[i]) < 0) {
      hdn_throw_napi(env, napi_generic_failure, what);
      return NULL;
    }
  }
  return obj;
}

static napi_value js_server_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  hd_server_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = HD_SERVER_STATS_VERSION;
  int rc = hd_server_stats(h->core, &s);
  if (rc < 0) return hdn_throw_hd(env, rc);
  static const char *const names[] = {
      "eventsAdded",    "eventsDelivered", "eventsConsumed", "eventsConfirmed", "pendingTotal",
      "connectedUsers", "commits",         "eventsTooLarge", "eventsExpired",   "eventsDead",
      "eventsRequeued", "addsDuplicate",   "eventsReplaced", "eventsDropped",   "addsLimited",
      "deadLetters"};
  const uint64_t values[] = {
      s.events_added,    s.events_delivered, s.events_consumed, s.events_confirmed,
      s.pending_total,   s.connected_users,  s.commits,         s.events_too_large,
      s.events_expired,  s.events_dead,      s.events_requeued, s.adds_duplicate,
      s.events_replaced, s.events_dropped,   s.adds_limited,    s.dead_letters};
  return hdn_counters_object(env, "stats", sizeof values / sizeof values[0], names, values);
}

static napi_value js_server_pending(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < 1) return hdn_throw_einval(env, "expected (user)");
  const uint8_t *user;
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &user, NULL, "user") < 0) return NULL;
  uint64_t n = 0;
  int rc = hd_server_pending(h->core, user, &n);
  if (rc < 0) return hdn_throw_hd(env, rc);
  HDN_CALL(env, napi_create_double(env, (double)n, &out));
  return out;
}

napi_value hdn_user_counts(napi_env env, hd_server_t *core, hdn_user_pager_t page,
                           const char *field, const char *what) {
  enum { PAGE = 256 };
  uint8_t keys[PAGE * HD_PUBLICKEY_BYTES];
  uint64_t counts[PAGE], cursor = 0;
  napi_value arr;
  HDN_CALL(env, napi_create_array(env, &arr));
  uint32_t at = 0;
  for (;;) {
    int n = page(core, &cursor, keys, counts, PAGE);
    if (n < 0) return hdn_throw_hd(env, n);
    for (int i = 0; i < n; i++) {
      napi_value obj, key = hdn_buffer_copy(env, keys + (size_t)i * HD_PUBLICKEY_BYTES,
                                            HD_PUBLICKEY_BYTES);
      if (key == NULL) return NULL;
      HDN_CALL(env, napi_create_object(env, &obj));
      HDN_CALL(env, napi_set_named_property(env, obj, "user", key));
      if (hdn_set_u64(env, obj, field, counts[i]) < 0) {
        hdn_throw_napi(env, napi_generic_failure, what);
        return NULL;
      }
      HDN_CALL(env, napi_set_element(env, arr, at++, obj));
    }
    if (n < PAGE) return arr;
  }
}

/* pendingUsers() -> [{ user: Buffer, pending }] in the order the store first saw them. */
static napi_value js_server_pending_users(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  return hdn_user_counts(env, h->core, hd_server_pending_users, "pending", "pendingUsers");
}

/* A sequence number from a Number (a safe integer >= 0) or a BigInt; -1 (thrown) otherwise. */
int hdn_get_seq(napi_env env, napi_value v, uint64_t *out, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) t = napi_undefined;
  bool lossless = false;
  double d;
  if (t == napi_bigint && napi_get_value_bigint_uint64(env, v, out, &lossless) == napi_ok &&
      lossless) {
    return 0;
  }
  if (t == napi_number && napi_get_value_double(env, v, &d) == napi_ok && d >= 0 &&
      d <= 9007199254740991.0 && d == (double)(uint64_t)d) {
    *out = (uint64_t)d;
    return 0;
  }
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be an event id (a non-negative integer or BigInt)", what);
  hdn_throw_einval(env, msg);
  return -1;
}

uint64_t *hdn_get_seqs(napi_env env, napi_value v, uint32_t *n) {
  bool is_array = false;
  *n = 0;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array ||
      napi_get_array_length(env, v, n) != napi_ok) {
    hdn_throw_einval(env, "ids must be an array of event ids");
    return NULL;
  }
  uint64_t *seqs = malloc((*n ? *n : 1) * sizeof *seqs);
  if (seqs == NULL) {
    hdn_throw_hd(env, HD_ENOMEM);
    return NULL;
  }
  for (uint32_t i = 0; i < *n; i++) {
    napi_value e;
    if (napi_get_element(env, v, i, &e) != napi_ok || hdn_get_seq(env, e, &seqs[i], "an id") < 0) {
      free(seqs);
      return NULL;
    }
  }
  return seqs;
}

/* listEvents(user, after, limit) -> [{ id, createdAt, payload, data: null }]: one page. */
static napi_value js_server_list_events(napi_env env, napi_callback_info info) {
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
  hd_event_info_t *ev = malloc((size_t)limit * sizeof *ev);
  size_t size = 1u << 20;
  uint8_t *buf = NULL;
  int n = ev == NULL ? HD_ENOMEM : HD_EBUFSIZE;
  while (n == HD_EBUFSIZE && size <= (1u << 30)) { /* a payload above the buffer: a larger one */
    uint8_t *p = realloc(buf, size);
    if (p == NULL) {
      n = HD_ENOMEM;
      break;
    }
    buf = p;
    uint64_t cursor = after;
    n = hd_server_list_events(h->core, user, &cursor, ev, (size_t)limit, buf, size);
    size *= 4;
  }
  napi_value arr = NULL;
  napi_status st = n < 0 ? napi_ok : napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; n > 0 && st == napi_ok && i < n; i++) {
    napi_value obj = event_object(env, &ev[i]);
    st = obj != NULL ? napi_set_element(env, arr, (uint32_t)i, obj) : napi_generic_failure;
  }
  free(ev);
  free(buf);
  if (n < 0) return hdn_throw_hd(env, n);
  if (st != napi_ok) {
    hdn_throw_napi(env, st, "listEvents");
    return NULL;
  }
  return arr;
}

typedef struct ids_args {
  hdn_ids_fn fn;
  const uint8_t *user;
  const uint64_t *seqs;
  size_t n;
} ids_args_t;

static int ids_start(void *core, void *cb_data, const void *arg) {
  const ids_args_t *a = arg;
  return a->fn(core, a->user, a->seqs, a->n, hdn_on_added, cb_data);
}

napi_value hdn_ids_call(napi_env env, napi_callback_info info, hdn_ids_fn fn, hdn_ids_mode_t mode) {
  size_t argc = 2;
  napi_value argv[2], promise, zero;
  hdn_handle_t *h = hdn_op_handle(env, info, &argc, argv);
  if (h == NULL) return NULL;
  if (argc < (mode == HDN_IDS_REQUIRED ? 2u : 1u)) {
    return hdn_throw_einval(env, mode == HDN_IDS_REQUIRED ? "expected (user, ids)" : "expected (user)");
  }
  ids_args_t a = {fn, NULL, NULL, 0};
  if (hdn_get_bytes(env, argv[0], HD_PUBLICKEY_BYTES, &a.user, NULL, "user") < 0) return NULL;
  int all = mode == HDN_IDS_NONE || (mode == HDN_IDS_OPTIONAL && (argc < 2 || hdn_is_nullish(env, argv[1])));
  uint32_t n = 0;
  uint64_t *seqs = all ? NULL : hdn_get_seqs(env, argv[1], &n);
  if (!all && seqs == NULL) return NULL;
  a.seqs = seqs;
  a.n = n;
  if (mode == HDN_IDS_OPTIONAL && !all && n == 0) {
    /* an empty array is "none", not "all": the core takes seqs NULL and n 0 for all */
    napi_deferred d;
    free(seqs);
    HDN_CALL(env, napi_create_promise(env, &d, &promise));
    HDN_CALL(env, napi_create_uint32(env, 0, &zero));
    HDN_CALL(env, napi_resolve_deferred(env, d, zero));
    return promise;
  }
  promise = hdn_op_run(env, h, ids_start, &a);
  free(seqs); /* copied by the call */
  return promise;
}

/* The core's hd_server_delete_user as an hdn_ids_fn (it takes no ids). */
static int delete_user(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                       const uint64_t *seqs, size_t n, hd_count_cb cb, void *cb_data) {
  return hd_server_delete_user(server, user, cb, cb_data);
}

/* deleteEvents(user, ids) / deleteUser(user) -> Promise<number>: how many, once durable. */
static napi_value js_server_delete_events(napi_env env, napi_callback_info info) {
  return hdn_ids_call(env, info, hd_server_delete_events, HDN_IDS_REQUIRED);
}

static napi_value js_server_delete_user(napi_env env, napi_callback_info info) {
  return hdn_ids_call(env, info, delete_user, HDN_IDS_NONE);
}

static napi_value js_server_connected_users(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  size_t cap = 16;
  uint8_t *keys = NULL;
  int n;
  for (;;) {
    uint8_t *p = realloc(keys, cap * HD_PUBLICKEY_BYTES);
    if (p == NULL) {
      free(keys);
      return hdn_throw_hd(env, HD_ENOMEM);
    }
    keys = p;
    n = hd_server_connected_users(h->core, keys, cap);
    if (n < 0 || (size_t)n <= cap) break;
    cap = (size_t)n;
  }
  if (n < 0) {
    free(keys);
    return hdn_throw_hd(env, n);
  }
  napi_value arr;
  napi_status st = napi_create_array_with_length(env, (size_t)n, &arr);
  for (int i = 0; st == napi_ok && i < n; i++) {
    napi_value b = hdn_buffer_copy(env, keys + (size_t)i * HD_PUBLICKEY_BYTES, HD_PUBLICKEY_BYTES);
    st = b != NULL ? napi_set_element(env, arr, (uint32_t)i, b) : napi_generic_failure;
  }
  free(keys);
  if (st != napi_ok) {
    hdn_throw_napi(env, st, "connectedUsers");
    return NULL;
  }
  return arr;
}

static napi_value js_client_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  hd_client_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = HD_CLIENT_STATS_VERSION;
  int rc = hd_client_stats(h->core, &s);
  if (rc < 0) return hdn_throw_hd(env, rc);
  static const char *const names[] = {"eventsReceived",  "eventsHandled", "eventsFailed",
                                       "eventsConfirmed", "unhandled",     "consumed",
                                       "highWater",       "pauseMs",       "eventsDead",
                                       "noticesReceived"};
  const uint64_t values[] = {s.events_received,  s.events_handled, s.events_failed,
                             s.events_confirmed, s.unhandled,      s.consumed,
                             s.high_water,       s.pause_ms,       s.events_dead,
                             s.notices_received};
  napi_value b, obj = hdn_counters_object(env, "stats", sizeof values / sizeof values[0], names, values);
  if (obj == NULL) return NULL;
  HDN_CALL(env, napi_get_boolean(env, s.connected != 0, &b));
  HDN_CALL(env, napi_set_named_property(env, obj, "connected", b));
  return obj;
}

/* hd_rollback_stats_t as { epoch: Buffer, rollbacks, ... }. */
static napi_value rollback_object(napi_env env, const hd_rollback_stats_t *s) {
  static const char *const names[] = {"rollbacks", "epochResumes", "eventsRepeated",
                                       "eventsOrphaned", "consumedDropped"};
  const uint64_t values[] = {s->rollbacks, s->epoch_resumes, s->events_repeated,
                             s->events_orphaned, s->consumed_dropped};
  napi_value epoch,
      obj = hdn_counters_object(env, "rollbackStats", sizeof values / sizeof values[0], names, values);
  if (obj == NULL || (epoch = hdn_buffer_copy(env, s->epoch, sizeof s->epoch)) == NULL) return NULL;
  HDN_CALL(env, napi_set_named_property(env, obj, "epoch", epoch));
  return obj;
}

/* server.rollbackStats() and client.rollbackStats(): hd_server_rollback_stats or
 * hd_client_rollback_stats, by the handle's role. */
static napi_value rollback_stats(napi_env env, napi_callback_info info, int server) {
  size_t argc = 0;
  hdn_handle_t *h = hdn_open_handle(env, info, &argc, NULL);
  if (h == NULL) return NULL;
  hd_rollback_stats_t s;
  memset(&s, 0, sizeof s);
  s.version = HD_ROLLBACK_STATS_VERSION;
  int rc = server ? hd_server_rollback_stats(h->core, &s) : hd_client_rollback_stats(h->core, &s);
  return rc < 0 ? hdn_throw_hd(env, rc) : rollback_object(env, &s);
}

static napi_value js_server_rollback_stats(napi_env env, napi_callback_info info) {
  return rollback_stats(env, info, 1);
}

static napi_value js_client_rollback_stats(napi_env env, napi_callback_info info) {
  return rollback_stats(env, info, 0);
}

/* nativeObjects() -> { handles, events, batches, operations } alive in this process. */
static napi_value js_native_objects(napi_env env, napi_callback_info info) {
  static const char *const names[HDN_LIVE_KINDS] = {"handles", "events", "batches", "operations"};
  uint64_t values[HDN_LIVE_KINDS];
  for (int k = 0; k < HDN_LIVE_KINDS; k++) values[k] = (uint64_t)atomic_load(&live[k]);
  return hdn_counters_object(env, "nativeObjects", HDN_LIVE_KINDS, names, values);
}

napi_status hdn_handles_init(napi_env env, napi_value exports) {
  napi_status st;
  napi_value cls;
  /* the completions of what the handles hand out, one function per C call */
  const napi_property_descriptor functions[] = {
      {"nativeObjects", NULL, js_native_objects, NULL, NULL, NULL, napi_enumerable, NULL},
      {"consumedComplete", NULL, js_consumed_complete, NULL, NULL, NULL, napi_enumerable, NULL},
      {"consumedCompleteAll", NULL, js_consumed_complete_all, NULL, NULL, NULL, napi_enumerable,
       NULL},
      {"eventComplete", NULL, js_event_complete, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventFail", NULL, js_event_fail, NULL, NULL, NULL, napi_enumerable, NULL},
      {"eventReject", NULL, js_event_reject, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  st = napi_define_properties(env, exports, sizeof functions / sizeof functions[0], functions);
  if (st != napi_ok) return st;
  napi_property_descriptor server_props[] = {
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"port", NULL, js_port, NULL, NULL, NULL, napi_default_method, NULL},
      {"state", NULL, js_state, NULL, NULL, NULL, napi_default_method, NULL},
      {"addEvent", NULL, js_add_event, NULL, NULL, NULL, napi_default_method, NULL},
      {"updatePause", NULL, js_update_pause, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, js_server_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"pending", NULL, js_server_pending, NULL, NULL, NULL, napi_default_method, NULL},
      {"connectedUsers", NULL, js_server_connected_users, NULL, NULL, NULL, napi_default_method,
       NULL},
      {"rollbackStats", NULL, js_server_rollback_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"pendingUsers", NULL, js_server_pending_users, NULL, NULL, NULL, napi_default_method,
       NULL},
      {"listEvents", NULL, js_server_list_events, NULL, NULL, NULL, napi_default_method, NULL},
      {"deleteEvents", NULL, js_server_delete_events, NULL, NULL, NULL, napi_default_method, NULL},
      {"deleteUser", NULL, js_server_delete_user, NULL, NULL, NULL, napi_default_method, NULL},
  };
  /* the class's own methods, then those of queues.c and operations.c */
  enum { SERVER_PROPS = sizeof server_props / sizeof server_props[0], MORE = 24 };
  napi_property_descriptor all[SERVER_PROPS + MORE];
  size_t n = SERVER_PROPS;
  if (hdn_queue_server_method_count + hdn_operation_server_method_count +
          hdn_admin_server_method_count > MORE) {
    return napi_generic_failure;
  }
  memcpy(all, server_props, sizeof server_props);
  memcpy(all + n, hdn_queue_server_methods, hdn_queue_server_method_count * sizeof *all);
  n += hdn_queue_server_method_count;
  memcpy(all + n, hdn_operation_server_methods, hdn_operation_server_method_count * sizeof *all);
  n += hdn_operation_server_method_count;
  memcpy(all + n, hdn_admin_server_methods, hdn_admin_server_method_count * sizeof *all);
  n += hdn_admin_server_method_count;
  st = napi_define_class(env, "Server", NAPI_AUTO_LENGTH, server_new, NULL, n, all, &cls);
  if (st == napi_ok) st = napi_set_named_property(env, exports, "Server", cls);
  if (st != napi_ok) return st;
  napi_property_descriptor client_props[] = {
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"state", NULL, js_state, NULL, NULL, NULL, napi_default_method, NULL},
      {"stats", NULL, js_client_stats, NULL, NULL, NULL, napi_default_method, NULL},
      {"rollbackStats", NULL, js_client_rollback_stats, NULL, NULL, NULL, napi_default_method, NULL},
  };
  enum { CLIENT_PROPS = sizeof client_props / sizeof client_props[0] };
  napi_property_descriptor call[CLIENT_PROPS + 8];
  if (hdn_admin_client_method_count > 8) return napi_generic_failure;
  memcpy(call, client_props, sizeof client_props);
  memcpy(call + CLIENT_PROPS, hdn_admin_client_methods, hdn_admin_client_method_count * sizeof *call);
  st = napi_define_class(env, "Client", NAPI_AUTO_LENGTH, client_new, NULL,
                         CLIENT_PROPS + hdn_admin_client_method_count, call, &cls);
  if (st == napi_ok) st = napi_set_named_property(env, exports, "Client", cls);
  if (st == napi_ok) st = hdn_admin_init(env, exports);
  return st;
}
