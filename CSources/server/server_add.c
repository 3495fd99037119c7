/* The server's adds with options (hyperdown.h "Queue semantics"): hd_server_add_event_v2 and its
 * blocking form, the add options and the sizes of the queue semantics. An add with options goes
 * to the store's add_event2, which applies the expiry, the keys and the user's limits inside the
 * batch's transaction (store_sqlite_server_add.c). */
#include "options.h"
#include "server.h"
#include "server_events.h"
#include "waiter.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

size_t hd_key_max_bytes(void) { return HD_KEY_MAX_BYTES; }
size_t hd_reason_max_bytes(void) { return HD_REASON_MAX_BYTES; }
size_t hd_fanout_max_users(void) { return HD_FANOUT_MAX_USERS; }

int hd_add_options_init(hd_add_options_t *opts, unsigned int version) {
  int rc = hd__options_check_version(opts, version, HD_ADD_OPTIONS_VERSION, "add");
  if (rc != 0) return rc;
  memset(opts, 0, sizeof *opts);
  opts->version = version;
  return 0;
}

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int hd__server_add_spec(hd__server_events_t *ev, const hd_add_options_t *opts, int64_t now,
                        hd__add_spec_t *spec) {
  memset(spec, 0, sizeof *spec);
  uint64_t ttl = ev->default_ttl_ms;
  if (opts != NULL) {
    int rc = hd__options_check_version(opts, opts->version, HD_ADD_OPTIONS_VERSION, "add");
    if (rc != 0) return rc;
    if ((opts->dedup_key != NULL) != (opts->dedup_key_len != 0) ||
        opts->dedup_key_len > HD_KEY_MAX_BYTES) {
      return hd__error(HD_EINVAL, "dedup_key: 1 to %d bytes, or NULL with length 0",
                       HD_KEY_MAX_BYTES);
    }
    if ((opts->collapse_key != NULL) != (opts->collapse_key_len != 0) ||
        opts->collapse_key_len > HD_KEY_MAX_BYTES) {
      return hd__error(HD_EINVAL, "collapse_key: 1 to %d bytes, or NULL with length 0",
                       HD_KEY_MAX_BYTES);
    }
    if (opts->ttl_ms != 0) ttl = opts->ttl_ms;
    spec->dedup_key = opts->dedup_key;
    spec->dedup_key_len = opts->dedup_key_len;
    spec->collapse_key = opts->collapse_key;
    spec->collapse_key_len = opts->collapse_key_len;
  }
  /* UINT64_MAX (and any time past the year 292 million) never expires */
  if (ttl != 0 && ttl < (uint64_t)(INT64_MAX - now)) spec->expires_ms = now + (int64_t)ttl;
  return 0;
}

/* The counters of an add's outcome (loop thread). */
static void count_result(hd__server_events_t *ev, int status, const hd_add_result_t *r) {
  if (status == HD_ELIMIT) ev->n_limited++;
  if (status != 0) return;
  if (r->flags & HD_ADD_DUPLICATE) {
    ev->n_duplicate++;
    return;
  }
  ev->n_added++;
  if (r->flags & HD_ADD_REPLACED) ev->n_replaced++;
  ev->n_dropped += r->dropped;
}

/* Collapse adds and the pushes. A collapse replaces only what the user's client was not sent:
 * the store compares with max(users.sent_upto, spec.sent_upto), and spec.sent_upto is what the
 * user's sessions pushed (hd__server_user_t.sent_max). Pushes happen on the loop while the add
 * waits for its commit, so the snapshot is taken on the loop (hd__runtime_call) together with a
 * hold on the user that stops its pushes until the add completed (session.c's pump). Nothing can
 * then be sent between the snapshot and the commit; the add's completion unholds and wakes. A
 * hold is per user, so a session that opens meanwhile is held too. Adds without a collapse key
 * need none of this and go straight to the store's queue from any thread. */
typedef struct hold_call {
  hd__server_events_t *ev;
  const uint8_t *users; /* n x 32 */
  size_t n;
  uint64_t *sent;       /* n: the snapshots */
  size_t held;          /* users held so far */
  int (*submit)(struct hold_call *c);
  void *arg;
} hold_call_t;

static void unhold_users(hd__server_events_t *ev, const uint8_t *users, size_t n) {
  for (size_t i = 0; i < n; i++) {
    hd__server_user_t *u = hd__server_user_get(ev, users + 32 * i, 0);
    if (u != NULL && u->holds != 0) hd__session_unhold(ev, u);
  }
}

static int hold_on_loop(void *arg) {
  hold_call_t *c = arg;
  if (c->ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  int rc = 0;
  for (c->held = 0; c->held < c->n; c->held++) {
    hd__server_user_t *u = hd__server_user_get(c->ev, c->users + 32 * c->held, 1);
    if (u == NULL) {
      rc = hd__error(HD_ENOMEM, "out of memory holding a user's pushes");
      break;
    }
    u->holds++;
    c->sent[c->held] = u->sent_max;
  }
  if (rc == 0) rc = c->submit(c);
  if (rc != 0) unhold_users(c->ev, c->users, c->held);
  return rc;
}

/* ---- one user ---------------------------------------------------------------------------------- */

typedef struct add2_ctx {
  hd__server_events_t *ev;
  hd_add_result_cb cb;
  void *cb_data;
  int held;
  int64_t expires_ms;
  uint8_t user[HD_PUBLICKEY_BYTES];
} add2_ctx_t;

static void add2_done(void *data, int status, const hd_add_result_t *r) {
  add2_ctx_t *a = data;
  hd__server_events_t *ev = a->ev;
  count_result(ev, status, r);
  if (a->held) unhold_users(ev, a->user, 1);
  if (a->cb != NULL) a->cb(a->cb_data, status, r);
  if (status == 0 && !(r->flags & HD_ADD_DUPLICATE)) {
    hd__session_wake(ev, a->user);
    if (a->expires_ms != 0) hd__expiry_added(ev, a->expires_ms);
  }
  free(a);
}

typedef struct add2_submit {
  add2_ctx_t *a;
  int64_t now;
  const void *payload;
  size_t len;
  hd__add_spec_t *spec;
} add2_submit_t;

static int add2_submit(hold_call_t *c) {
  add2_submit_t *x = c->arg;
  hd__server_events_t *ev = x->a->ev;
  x->spec->sent_upto = c->sent[0];
  x->a->held = 1;
  return ev->store->vt->add_event2(ev->store, x->a->user, x->now, x->payload, x->len, x->spec,
                                   add2_done, x->a);
}

int hd_server_add_event_v2(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                           const void *payload, size_t len, const hd_add_options_t *opts,
                           hd_add_result_cb cb, void *cb_data) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  hd__server_events_t *ev = hd__server_events_of(server);
  if (len > ev->max_payload) {
    return hd__error(HD_EINVAL, "payload of %zu bytes is above the server's max_event_bytes "
                     "(%zu)", len, ev->max_payload);
  }
  if (hd__key_cache_check(&ev->key_cache, user) != 0) {
    return hd__error(HD_EKEY, "the user is not a valid Ed25519 public key");
  }
  int64_t now = now_ms();
  hd__add_spec_t spec;
  int rc = hd__server_add_spec(ev, opts, now, &spec);
  if (rc != 0) return rc;
  add2_ctx_t *a = malloc(sizeof *a);
  if (a == NULL) return hd__error(HD_ENOMEM, "out of memory adding an event");
  a->ev = ev;
  a->cb = cb;
  a->cb_data = cb_data;
  a->held = 0;
  a->expires_ms = spec.expires_ms;
  memcpy(a->user, user, HD_PUBLICKEY_BYTES);
  if (spec.collapse_key != NULL) {
    uint64_t sent = 0;
    add2_submit_t x = {a, now, payload, len, &spec};
    hold_call_t c = {ev, a->user, 1, &sent, 0, add2_submit, &x};
    rc = hd__runtime_call(hd__server_runtime(server), hold_on_loop, &c);
  } else {
    rc = ev->store->vt->add_event2(ev->store, user, now, payload, len, &spec, add2_done, a);
  }
  if (rc != 0) free(a);
  return rc;
}

typedef struct add2_wait {
  hd__waiter_t w;
  hd_add_result_t *out;
} add2_wait_t;

static void add2_wait_done(void *data, int status, const hd_add_result_t *r) {
  add2_wait_t *aw = data;
  if (status == 0 && aw->out != NULL) *aw->out = *r;
  hd__waiter_signal(&aw->w, status, 0); /* carries the store's detail to the waiting thread */
}

int hd_server_add_event_v2_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                const void *payload, size_t len, const hd_add_options_t *opts,
                                hd_add_result_t *result) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (hd__runtime_on_loop(hd__server_runtime(server))) {
    return hd__error(HD_ETHREAD, "add_event_v2_wait on the server's loop thread would wait for "
                                 "itself; use hd_server_add_event_v2");
  }
  add2_wait_t aw = {.out = result};
  int rc = hd__waiter_init(&aw.w);
  if (rc != 0) return rc;
  rc = hd_server_add_event_v2(server, user, payload, len, opts, add2_wait_done, &aw);
  if (rc != 0) {
    hd__waiter_destroy(&aw.w);
    return rc;
  }
  return hd__waiter_wait(&aw.w, NULL);
}

/* ---- fan-out --------------------------------------------------------------------------------- */

/* The store gets the users whose key is valid (`valid`, m of them, their places in `map`); the
 * results go back in the caller's order, HD_EKEY for the others. */
typedef struct fanout_ctx {
  hd__server_events_t *ev;
  hd_fanout_cb cb;
  void *cb_data;
  size_t n, m;
  int held;
  int64_t expires_ms;          /* the events' expiry (0: none): the sweep is told */
  hd_fanout_result_t *results; /* n */
  size_t *map;                 /* m: valid[i] is users[map[i]] */
  uint8_t *valid;              /* m x 32 */
  uint64_t *sent;              /* m: the holds' snapshots */
} fanout_ctx_t;

static void fanout_done(void *data, int status, const hd_fanout_result_t *r, size_t m) {
  fanout_ctx_t *f = data;
  hd__server_events_t *ev = f->ev;
  if (f->held) unhold_users(ev, f->valid, f->m);
  if (status == 0) {
    for (size_t i = 0; i < m; i++) {
      f->results[f->map[i]] = r[i];
      count_result(ev, r[i].status, &r[i].result);
    }
  }
  if (f->cb != NULL) f->cb(f->cb_data, status, status == 0 ? f->results : NULL,
                           status == 0 ? f->n : 0);
  if (status == 0) {
    for (size_t i = 0; i < m; i++) {
      if (r[i].status == 0 && !(r[i].result.flags & HD_ADD_DUPLICATE)) {
        hd__session_wake(ev, f->valid + 32 * i);
      }
    }
    if (f->expires_ms != 0) hd__expiry_added(ev, f->expires_ms);
  }
  free(f);
}

typedef struct fanout_submit {
  fanout_ctx_t *f;
  int64_t now;
  const void *payload;
  size_t len;
  hd__add_spec_t *spec;
} fanout_submit_t;

static int fanout_store(fanout_submit_t *x, int held) {
  hd__server_events_t *ev = x->f->ev;
  x->f->held = held;
  return ev->store->vt->add_fanout(ev->store, x->f->valid, x->f->m, x->now, x->payload, x->len,
                                   x->spec, held ? x->f->sent : NULL, fanout_done, x->f);
}

static int fanout_submit(hold_call_t *c) { return fanout_store(c->arg, 1); }

int hd_server_add_fanout(hd_server_t *server, const uint8_t *users, size_t n,
                         const void *payload, size_t len, const hd_add_options_t *opts,
                         hd_fanout_cb cb, void *cb_data) {
  if (server == NULL || users == NULL) return hd__error(HD_EINVAL, "server or users is NULL");
  if (n == 0 || n > HD_FANOUT_MAX_USERS) {
    return hd__error(HD_EINVAL, "a fan-out has 1 to %d users, not %zu", HD_FANOUT_MAX_USERS, n);
  }
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  hd__server_events_t *ev = hd__server_events_of(server);
  if (len > ev->max_payload) {
    return hd__error(HD_EINVAL, "payload of %zu bytes is above the server's max_event_bytes "
                     "(%zu)", len, ev->max_payload);
  }
  int64_t now = now_ms();
  hd__add_spec_t spec;
  int rc = hd__server_add_spec(ev, opts, now, &spec);
  if (rc != 0) return rc;
  fanout_ctx_t *f = malloc(sizeof *f + n * (sizeof(hd_fanout_result_t) + sizeof(size_t) + 8 + 32));
  if (f == NULL) return hd__error(HD_ENOMEM, "out of memory for a fan-out to %zu users", n);
  f->results = (hd_fanout_result_t *)(f + 1);
  f->sent = (uint64_t *)(f->results + n);
  f->map = (size_t *)(f->sent + n);
  f->valid = (uint8_t *)(f->map + n);
  f->ev = ev;
  f->cb = cb;
  f->cb_data = cb_data;
  f->n = n;
  f->m = 0;
  f->held = 0;
  f->expires_ms = spec.expires_ms;
  for (size_t i = 0; i < n; i++) {
    memset(&f->results[i], 0, sizeof f->results[i]);
    if (hd__key_cache_check(&ev->key_cache, users + 32 * i) != 0) {
      f->results[i].status = HD_EKEY;
      continue;
    }
    memcpy(f->valid + 32 * f->m, users + 32 * i, 32);
    f->map[f->m++] = i;
  }
  fanout_submit_t x = {f, now, payload, len, &spec};
  if (spec.collapse_key != NULL && f->m != 0) {
    hold_call_t c = {ev, f->valid, f->m, f->sent, 0, fanout_submit, &x};
    rc = hd__runtime_call(hd__server_runtime(server), hold_on_loop, &c);
  } else {
    rc = fanout_store(&x, 0);
  }
  if (rc != 0) free(f);
  return rc;
}

typedef struct fanout_wait {
  hd__waiter_t w;
  hd_fanout_result_t *out;
} fanout_wait_t;

static void fanout_wait_done(void *data, int status, const hd_fanout_result_t *r, size_t n) {
  fanout_wait_t *fw = data;
  if (status == 0 && fw->out != NULL) memcpy(fw->out, r, n * sizeof *r);
  hd__waiter_signal(&fw->w, status, 0);
}

int hd_server_add_fanout_wait(hd_server_t *server, const uint8_t *users, size_t n,
                              const void *payload, size_t len, const hd_add_options_t *opts,
                              hd_fanout_result_t *results) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (hd__runtime_on_loop(hd__server_runtime(server))) {
    return hd__error(HD_ETHREAD, "add_fanout_wait on the server's loop thread would wait for "
                                 "itself; use hd_server_add_fanout");
  }
  fanout_wait_t fw = {.out = results};
  int rc = hd__waiter_init(&fw.w);
  if (rc != 0) return rc;
  rc = hd_server_add_fanout(server, users, n, payload, len, opts, fanout_wait_done, &fw);
  if (rc != 0) {
    hd__waiter_destroy(&fw.w);
    return rc;
  }
  return hd__waiter_wait(&fw.w, NULL);
}
