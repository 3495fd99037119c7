/* The server's adds: the checks every add makes, the add call from the call to its one
 * completion (hd__add_call_t, used by every add: hd_server_add_event in server_api.c, the many
 * events of server_add_events.c), hd_server_add_event_v2 and the fan-out with their blocking
 * forms, the add options and the sizes of the queue semantics. An add with options goes to the
 * store's add_event2, several adds to its add_fanout; the store applies the expiry, the keys and
 * the user's limits inside the batch's transaction (store_sqlite_server_add.c). */
#include "options.h"
#include "clock.h"
#include "server.h"
#include "server_events.h"
#include "waiter.h"

#include <stdlib.h>
#include <string.h>

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

/* ---- the checks ------------------------------------------------------------------------------ */

int hd__server_payload_check(const hd__server_events_t *ev, const void *payload, size_t len) {
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (len > ev->max_payload) {
    return hd__error(HD_EINVAL, "payload of %zu bytes is above the server's max_event_bytes "
                     "(%zu)", len, ev->max_payload);
  }
  return 0;
}

int hd__server_add_check(hd_server_t *server, const void *user, const void *payload, size_t len,
                         hd__server_events_t **ev) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  *ev = hd__server_events_of(server);
  return hd__server_payload_check(*ev, payload, len);
}

int hd__server_key_check(hd__server_events_t *ev, const uint8_t user[HD_PUBLICKEY_BYTES]) {
  if (hd__key_cache_check(&ev->key_cache, user) == 0) return 0;
  return hd__error(HD_EKEY, "the user is not a valid Ed25519 public key");
}

/* ---- the add call: one completion for every add ---------------------------------------------- */

hd__add_call_t *hd__add_call_new(hd__server_events_t *ev, size_t n, int reply, void *cb_data) {
  size_t each = sizeof(hd_fanout_result_t) + sizeof(hd__store_add_t) + sizeof(size_t) + 32;
  hd__add_call_t *c = malloc(sizeof *c + n * each);
  if (c == NULL) {
    hd__error(HD_ENOMEM, "out of memory for %zu adds", n);
    return NULL;
  }
  memset(c, 0, sizeof *c);
  c->ev = ev;
  c->start_ns = uv_hrtime();
  c->reply = reply;
  c->cb_data = cb_data;
  c->n = n;
  c->results = (hd_fanout_result_t *)(c + 1);
  c->adds = (hd__store_add_t *)(c->results + n);
  c->map = (size_t *)(c->adds + n);
  c->users = (uint8_t *)(c->map + n);
  memset(c->results, 0, n * sizeof *c->results);
  return c;
}

hd__store_add_t *hd__add_call_push(hd__add_call_t *c, size_t i, const uint8_t *user,
                                   const hd__add_spec_t *spec) {
  size_t k = c->m++;
  hd__store_add_t *a = &c->adds[k];
  memcpy(c->users + 32 * k, user, 32);
  a->user = c->users + 32 * k;
  a->payload = NULL;
  a->len = 0;
  a->spec = *spec;
  c->map[k] = i;
  return a;
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
static void unhold(hd__add_call_t *c, size_t upto) {
  for (size_t i = 0; i < upto; i++) {
    if (c->adds[i].spec.collapse_key_len == 0) continue;
    hd__server_user_t *u = hd__server_user_get(c->ev, c->adds[i].user, 0);
    if (u != NULL && u->holds != 0) hd__session_unhold(c->ev, u);
  }
}

static void reply(hd__add_call_t *c, int status) {
  int ok = status == 0;
  switch (c->reply) {
    case HD__ADD_REPLY_SEQ:
      if (c->cb.seq != NULL) c->cb.seq(c->cb_data, status, ok ? c->results[0].result.seq : 0);
      break;
    case HD__ADD_REPLY_RESULT:
      if (c->cb.result != NULL) c->cb.result(c->cb_data, status, ok ? &c->results[0].result : NULL);
      break;
    default:
      if (c->cb.many != NULL) c->cb.many(c->cb_data, status, ok ? c->results : NULL, ok ? c->n : 0);
  }
}

/* The one completion. status: the call's (0: its transaction committed; a single add's own
 * failure, HD_ELIMIT, is its status too); r[0..m): the store's per add (status 0 only). */
static void add_call_done(hd__add_call_t *c, int status, const hd_fanout_result_t *r) {
  hd__server_events_t *ev = c->ev;
  if (c->held) unhold(c, c->m);
  if (status == 0) {
    for (size_t i = 0; i < c->m; i++) {
      c->results[c->map[i]] = r[i];
      count_result(ev, r[i].status, &r[i].result);
    }
  } else {
    count_result(ev, status, NULL);
  }
  /* one observation per call, however many adds: the time the caller waited for durability */
  if (status == 0) hd__histogram_observe(&ev->add_durable, uv_hrtime() - c->start_ns);
  reply(c, status);
  if (status == 0) {
    int64_t expiry = 0; /* the earliest of the stored events: the sweep runs by then */
    for (size_t i = 0; i < c->m; i++) {
      if (r[i].status != 0 || (r[i].result.flags & HD_ADD_DUPLICATE)) continue;
      hd__session_wake(ev, c->adds[i].user); /* pushed after commit, coalesced per user */
      int64_t e = c->adds[i].spec.expires_ms;
      if (e != 0 && (expiry == 0 || e < expiry)) expiry = e;
    }
    if (expiry != 0) hd__expiry_added(ev, expiry);
  }
  free(c);
}

static void one_done(void *data, int status, const hd_add_result_t *r) {
  hd_fanout_result_t res = {0};
  if (status == 0) res.result = *r;
  add_call_done(data, status, &res);
}

static void seq_done(void *data, int status, uint64_t seq) {
  hd_fanout_result_t res = {0};
  res.result.seq = seq;
  add_call_done(data, status, &res);
}

static void many_done(void *data, int status, const hd_fanout_result_t *r, size_t m) {
  (void)m;
  add_call_done(data, status, r);
}

typedef struct add_submit {
  hd__add_call_t *c;
  int64_t now;
  const void *shared;
  size_t shared_len;
} add_submit_t;

static int to_store(add_submit_t *x) {
  hd__add_call_t *c = x->c;
  hd__server_store_t *st = c->ev->store;
  if (c->reply == HD__ADD_REPLY_MANY) {
    return st->vt->add_fanout(st, c->adds, c->m, x->now, x->shared, x->shared_len, many_done, c);
  }
  const hd__store_add_t *a = &c->adds[0];
  /* a plain add without an expiry and without limits needs none of add_event2's reads */
  if (c->reply == HD__ADD_REPLY_SEQ && a->spec.expires_ms == 0 && !c->ev->limited) {
    return st->vt->add_event(st, a->user, x->now, a->payload, a->len, seq_done, c);
  }
  return st->vt->add_event2(st, a->user, x->now, a->payload, a->len, &a->spec, one_done, c);
}

static int hold_on_loop(void *arg) {
  add_submit_t *x = arg;
  hd__add_call_t *c = x->c;
  if (c->ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  int rc = 0;
  size_t i;
  for (i = 0; i < c->m; i++) {
    hd__store_add_t *a = &c->adds[i];
    if (a->spec.collapse_key_len == 0) continue;
    hd__server_user_t *u = hd__server_user_get(c->ev, a->user, 1);
    if (u == NULL) {
      rc = hd__error(HD_ENOMEM, "out of memory holding a user's pushes");
      break;
    }
    u->holds++;
    a->spec.sent_upto = u->sent_max;
  }
  c->held = rc == 0;
  if (rc == 0) rc = to_store(x);
  if (rc != 0) {
    unhold(c, i);
    c->held = 0;
  }
  return rc;
}

int hd__add_call_submit(hd__add_call_t *c, int64_t now_ms, const void *shared,
                        size_t shared_len) {
  add_submit_t x = {c, now_ms, shared, shared_len};
  int collapse = 0;
  for (size_t i = 0; i < c->m && !collapse; i++) collapse = c->adds[i].spec.collapse_key_len != 0;
  int rc = collapse ? hd__runtime_call(c->ev->rt, hold_on_loop, &x) : to_store(&x);
  if (rc != 0) free(c);
  return rc;
}

/* ---- one user -------------------------------------------------------------------------------- */

int hd__server_add_one(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                       const void *payload, size_t len, const hd_add_options_t *opts, int reply,
                       hd__add_reply_cb_t cb, void *cb_data) {
  hd__server_events_t *ev = NULL;
  int rc = hd__server_add_check(server, user, payload, len, &ev);
  if (rc == 0) rc = hd__server_key_check(ev, user);
  if (rc != 0) return rc;
  int64_t now = hd__wall_ms();
  hd__add_spec_t spec;
  rc = hd__server_add_spec(ev, opts, now, &spec);
  if (rc != 0) return rc;
  hd__add_call_t *c = hd__add_call_new(ev, 1, reply, cb_data);
  if (c == NULL) return HD_ENOMEM;
  c->cb = cb;
  hd__store_add_t *a = hd__add_call_push(c, 0, user, &spec);
  a->payload = payload;
  a->len = len;
  return hd__add_call_submit(c, now, NULL, 0);
}

int hd_server_add_event_v2(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                           const void *payload, size_t len, const hd_add_options_t *opts,
                           hd_add_result_cb cb, void *cb_data) {
  hd__add_reply_cb_t reply = {.result = cb};
  return hd__server_add_one(server, user, payload, len, opts, HD__ADD_REPLY_RESULT, reply,
                            cb_data);
}

/* The blocking forms: hd__waiter_call with a completion that keeps the result, then signals. */
typedef struct add2_wait {
  hd_server_t *server;
  const uint8_t *user;
  const void *payload;
  size_t len;
  const hd_add_options_t *opts;
  hd_add_result_t *out;
  void (*signal)(void *w, int status, uint64_t value);
  void *w;
} add2_wait_t;

static void add2_wait_done(void *data, int status, const hd_add_result_t *r) {
  add2_wait_t *x = data;
  if (status == 0 && x->out != NULL) *x->out = *r;
  x->signal(x->w, status, 0); /* carries the store's detail to the waiting thread */
}

static int add2_wait_submit(void *arg, void (*cb)(void *, int, uint64_t), void *w) {
  add2_wait_t *x = arg;
  x->signal = cb;
  x->w = w;
  return hd_server_add_event_v2(x->server, x->user, x->payload, x->len, x->opts, add2_wait_done,
                                x);
}

int hd_server_add_event_v2_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                const void *payload, size_t len, const hd_add_options_t *opts,
                                hd_add_result_t *result) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  add2_wait_t x = {server, user, payload, len, opts, result, NULL, NULL};
  return hd__waiter_call(hd__server_runtime(server), "add_event_v2_wait", add2_wait_submit, &x,
                         NULL);
}

/* ---- fan-out --------------------------------------------------------------------------------- */

int hd_server_add_fanout(hd_server_t *server, const uint8_t *users, size_t n,
                         const void *payload, size_t len, const hd_add_options_t *opts,
                         hd_fanout_cb cb, void *cb_data) {
  if (n == 0 || n > HD_FANOUT_MAX_USERS) {
    return hd__error(HD_EINVAL, "a fan-out has 1 to %d users, not %zu", HD_FANOUT_MAX_USERS, n);
  }
  hd__server_events_t *ev;
  int rc = hd__server_add_check(server, users, payload, len, &ev);
  if (rc != 0) return rc;
  int64_t now = hd__wall_ms();
  hd__add_spec_t spec;
  rc = hd__server_add_spec(ev, opts, now, &spec);
  if (rc != 0) return rc;
  hd__add_call_t *c = hd__add_call_new(ev, n, HD__ADD_REPLY_MANY, cb_data);
  if (c == NULL) return HD_ENOMEM;
  c->cb.many = cb;
  for (size_t i = 0; i < n; i++) {
    if (hd__key_cache_check(&ev->key_cache, users + 32 * i) != 0) {
      c->results[i].status = HD_EKEY; /* fails alone */
      continue;
    }
    hd__add_call_push(c, i, users + 32 * i, &spec);
  }
  return hd__add_call_submit(c, now, payload, len);
}

typedef struct fanout_wait {
  hd_server_t *server;
  const uint8_t *users;
  size_t n;
  const void *payload;
  size_t len;
  const hd_add_options_t *opts;
  hd_fanout_result_t *out;
  void (*signal)(void *w, int status, uint64_t value);
  void *w;
} fanout_wait_t;

static void fanout_wait_done(void *data, int status, const hd_fanout_result_t *r, size_t n) {
  fanout_wait_t *x = data;
  if (status == 0 && x->out != NULL) memcpy(x->out, r, n * sizeof *r);
  x->signal(x->w, status, 0);
}

static int fanout_wait_submit(void *arg, void (*cb)(void *, int, uint64_t), void *w) {
  fanout_wait_t *x = arg;
  x->signal = cb;
  x->w = w;
  return hd_server_add_fanout(x->server, x->users, x->n, x->payload, x->len, x->opts,
                              fanout_wait_done, x);
}

int hd_server_add_fanout_wait(hd_server_t *server, const uint8_t *users, size_t n,
                              const void *payload, size_t len, const hd_add_options_t *opts,
                              hd_fanout_result_t *results) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  fanout_wait_t x = {server, users, n, payload, len, opts, results, NULL, NULL};
  return hd__waiter_call(hd__server_runtime(server), "add_fanout_wait", fanout_wait_submit, &x,
                         NULL);
}
