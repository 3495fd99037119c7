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
#include "hdn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

typedef enum { HDN_SERVER = 0, HDN_CLIENT = 1 } hdn_kind_t;
typedef enum { HDN_OPEN = 0, HDN_CLOSING = 1, HDN_CLOSED = 2 } hdn_state_t;

static const char *const kind_names[] = {"Server", "Client"};

typedef struct hdn_handle {
  napi_env env;
  hdn_kind_t kind;
  hdn_state_t state;
  void *core;                /* hd_server_t * or hd_client_t *; NULL once CLOSED */
  int finalized;             /* the JS object is gone: free on close, never touch JS again */
  int teardown;              /* the env is being torn down: no more calls into JS */
  napi_ref self;             /* strong while OPEN/CLOSING */
  napi_ref on_event;         /* onEvent(type, ...) */
  napi_async_context actx;
  napi_deferred close_deferred;
  napi_ref close_promise;
  napi_async_cleanup_hook_handle cleanup;
} hdn_handle_t;

static int can_call_js(const hdn_handle_t *h) {
  return !h->finalized && !h->teardown && h->on_event != NULL;
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

/* onEvent(argv...) through napi_make_callback; must be called inside a handle scope. */
static void call_js(hdn_handle_t *h, const char *what, size_t argc, napi_value *argv) {
  napi_env env = h->env;
  napi_value fn, recv, result;
  if (napi_get_reference_value(env, h->on_event, &fn) != napi_ok || fn == NULL) return;
  if (h->self == NULL || napi_get_reference_value(env, h->self, &recv) != napi_ok || recv == NULL) {
    /* during create (a log line) `this` is not wrapped yet; make_callback needs an object */
    if (napi_get_global(env, &recv) != napi_ok) return;
  }
  napi_status st = napi_make_callback(env, h->actx, recv, fn, argc, argv, &result);
  bool pending = false;
  if (st == napi_pending_exception ||
      (napi_is_exception_pending(env, &pending) == napi_ok && pending)) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
      report_exception(env, kind_names[h->kind], what, exc);
    }
  }
}

static void on_peer(void *ud, const uint8_t public_key[HD_PUBLICKEY_BYTES]) {
  hdn_handle_t *h = ud;
  if (!can_call_js(h)) return;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[2];
  if (napi_create_string_utf8(env, "connect", NAPI_AUTO_LENGTH, &argv[0]) == napi_ok &&
      (argv[1] = hdn_buffer_copy(env, public_key, HD_PUBLICKEY_BYTES)) != NULL) {
    call_js(h, "connect", 2, argv);
  }
  napi_close_handle_scope(env, scope);
}

static void on_peer_closed(void *ud, const uint8_t *public_key, int status) {
  hdn_handle_t *h = ud;
  if (!can_call_js(h)) return;
  char detail[512];
  snprintf(detail, sizeof detail, "%s", hd_last_error_message()); /* explains `status` */
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[3];
  int ok = napi_create_string_utf8(env, "disconnect", NAPI_AUTO_LENGTH, &argv[0]) == napi_ok;
  if (ok) {
    if (public_key != NULL) ok = (argv[1] = hdn_buffer_copy(env, public_key, HD_PUBLICKEY_BYTES)) != NULL;
    else ok = napi_get_null(env, &argv[1]) == napi_ok;
  }
  if (ok) {
    if (status < 0) ok = (argv[2] = hdn_make_error(env, status, detail)) != NULL;
    else ok = napi_get_null(env, &argv[2]) == napi_ok;
  }
  if (ok) call_js(h, "disconnect", 3, argv);
  napi_close_handle_scope(env, scope);
}

static void on_log(void *ud, hd_log_level_t level, const char *message) {
  hdn_handle_t *h = ud;
  if (!can_call_js(h)) return;
  napi_env env = h->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[3];
  if (napi_create_string_utf8(env, "log", NAPI_AUTO_LENGTH, &argv[0]) == napi_ok &&
      napi_create_int32(env, (int32_t)level, &argv[1]) == napi_ok &&
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &argv[2]) == napi_ok) {
    call_js(h, "log", 3, argv);
  }
  napi_close_handle_scope(env, scope);
}

/* ---- Close ------------------------------------------------------------------------------ */

/* Drops every N-API resource the wrapper holds (the env is alive: the cleanup hook, removed
 * last, keeps it so). */
static void release_js(hdn_handle_t *h) {
  napi_env env = h->env;
  if (h->on_event) napi_delete_reference(env, h->on_event);
  if (h->close_promise) napi_delete_reference(env, h->close_promise);
  if (h->self) napi_delete_reference(env, h->self);
  h->on_event = h->close_promise = h->self = NULL;
  if (h->actx) napi_async_destroy(env, h->actx);
  h->actx = NULL;
  if (h->cleanup) {
    napi_async_cleanup_hook_handle c = h->cleanup;
    h->cleanup = NULL;
    napi_remove_async_cleanup_hook(c); /* may let the env go: last */
  }
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
  int free_now = h->finalized;
  release_js(h);
  if (free_now) free(h);
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
    free(h);
    return;
  }
  /* Only at env teardown (a strong reference holds open handles): close it now; the close
   * callback frees the wrapper. */
  if (h->on_event) napi_delete_reference(env, h->on_event);
  if (h->self) napi_delete_reference(env, h->self);
  h->on_event = h->self = NULL;
  if (h->state == HDN_OPEN && core_close(h) != 0) {
    /* nothing will call back: the core refused (it was already closing by its own means) */
    release_js(h);
    free(h);
  }
}

/* ---- Construction ----------------------------------------------------------------------- */

typedef struct common_opts {
  hd_keypair_t kp;
  char *topic;
  char *address;
  uint32_t handshake_timeout_ms, keepalive_ms, idle_timeout_ms, max_message_bytes;
  uint32_t log_level;
  int log;
} common_opts_t;

static void common_opts_free(common_opts_t *o) {
  hd_keypair_wipe(&o->kp);
  free(o->topic);
  free(o->address);
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

/* new Server(options, onEvent) / new Client(options, onEvent) */
static napi_value construct(napi_env env, napi_callback_info info, hdn_kind_t kind) {
  size_t argc = 2;
  napi_value argv[2], this, target;
  napi_valuetype t;
  HDN_CALL(env, napi_get_cb_info(env, info, &argc, argv, &this, NULL));
  HDN_CALL(env, napi_get_new_target(env, info, &target));
  if (target == NULL) return hdn_throw_einval(env, "use `new`");
  if (argc < 2) return hdn_throw_einval(env, "expected (options, onEvent)");
  HDN_CALL(env, napi_typeof(env, argv[0], &t));
  if (t != napi_object) return hdn_throw_einval(env, "options must be an object");
  HDN_CALL(env, napi_typeof(env, argv[1], &t));
  if (t != napi_function) return hdn_throw_einval(env, "onEvent must be a function");

  common_opts_t co;
  if (read_common(env, argv[0], kind == HDN_SERVER ? "listen" : "connect", &co) < 0) return NULL;
  uint8_t server_pk[HD_PUBLICKEY_BYTES];
  uint32_t reconnect_min = 0, reconnect_max = 0;
  int reconnect = 1;
  if (kind == HDN_CLIENT) {
    const uint8_t *spk;
    napi_value v = hdn_prop(env, argv[0], "serverPublicKey");
    if (v == NULL || hdn_get_bytes(env, v, HD_PUBLICKEY_BYTES, &spk, NULL, "serverPublicKey") < 0 ||
        hdn_opt_u32(env, argv[0], "reconnectMinMs", &reconnect_min) < 0 ||
        hdn_opt_u32(env, argv[0], "reconnectMaxMs", &reconnect_max) < 0 ||
        hdn_opt_bool(env, argv[0], "reconnect", &reconnect) < 0) {
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
  hdn_handle_t *h = calloc(1, sizeof *h);
  if (h == NULL) {
    common_opts_free(&co);
    return hdn_throw_hd(env, HD_ENOMEM);
  }
  h->env = env;
  h->kind = kind;
  napi_value name;
  if ((st = napi_create_reference(env, argv[1], 1, &h->on_event)) != napi_ok ||
      (st = napi_create_string_utf8(env, kind == HDN_SERVER ? "hyperdown.Server" : "hyperdown.Client",
                                    NAPI_AUTO_LENGTH, &name)) != napi_ok ||
      (st = napi_async_init(env, NULL, name, &h->actx)) != napi_ok) {
    common_opts_free(&co);
    release_js(h);
    free(h);
    hdn_throw_napi(env, st, "creating the handle's references");
    return NULL;
  }

  int rc;
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
    hd_server_t *s = NULL;
    rc = hd_server_create(&s, &o);
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
    hd_client_t *c = NULL;
    rc = hd_client_create(&c, &o);
    h->core = c;
  }
  common_opts_free(&co);
  if (rc < 0) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", hd_last_error_message());
    release_js(h);
    free(h);
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
      free(h);
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

napi_status hdn_handles_init(napi_env env, napi_value exports) {
  napi_status st;
  napi_value cls;
  napi_property_descriptor server_props[] = {
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"port", NULL, js_port, NULL, NULL, NULL, napi_default_method, NULL},
      {"state", NULL, js_state, NULL, NULL, NULL, napi_default_method, NULL},
  };
  st = napi_define_class(env, "Server", NAPI_AUTO_LENGTH, server_new, NULL,
                         sizeof server_props / sizeof server_props[0], server_props, &cls);
  if (st == napi_ok) st = napi_set_named_property(env, exports, "Server", cls);
  if (st != napi_ok) return st;
  napi_property_descriptor client_props[] = {
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default_method, NULL},
      {"state", NULL, js_state, NULL, NULL, NULL, napi_default_method, NULL},
  };
  st = napi_define_class(env, "Client", NAPI_AUTO_LENGTH, client_new, NULL,
                         sizeof client_props / sizeof client_props[0], client_props, &cls);
  if (st == napi_ok) st = napi_set_named_property(env, exports, "Client", cls);
  return st;
}
