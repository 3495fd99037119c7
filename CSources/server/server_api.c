/* The server's public event calls (hyperdown.h "Events, server side"): add_event and its
 * blocking form, update_pause, and the blocking reads (stats, pending, connected users). Any
 * thread: adds go straight to the store's queue (its submit is thread-safe); everything that
 * touches loop state runs on the loop, inline there or posted and waited for elsewhere. */
#include "server_impl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* ---- add_event ------------------------------------------------------------------------------ */

/* What the completion needs besides the store's answer: the store's op carries the payload, so
 * only this small record is added per event. */
typedef struct add_ctx {
  hd_server_t *s;
  hd_add_cb cb;
  void *cb_data;
  uint8_t user[HD_PUBLICKEY_BYTES];
} add_ctx_t;

static void add_done(void *data, int status, uint64_t seq) {
  add_ctx_t *a = data;
  hd_server_t *s = a->s;
  if (status == 0) s->n_added++;
  if (a->cb != NULL) a->cb(a->cb_data, status, status == 0 ? seq : 0);
  if (status == 0) hd__session_wake(s, a->user); /* pushed after commit, coalesced per user */
  free(a);
}

int hd_server_add_event(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                        const void *payload, size_t len, hd_add_cb cb, void *cb_data) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (len > server->max_payload) {
    return hd__error(HD_EINVAL, "payload of %zu bytes is above the limit of %zu "
                     "(max_message_bytes - %d)", len, server->max_payload, HD__SRV_PAYLOAD_SLACK);
  }
  if (hd__key_cache_check(&server->key_cache, user) != 0) {
    return hd__error(HD_EKEY, "the user is not a valid Ed25519 public key");
  }
  if (hd__srv_closed(server)) return hd__error(HD_ECLOSED, "the server is closing");
  add_ctx_t *a = malloc(sizeof *a);
  if (a == NULL) return hd__error(HD_ENOMEM, "out of memory adding an event");
  a->s = server;
  a->cb = cb;
  a->cb_data = cb_data;
  memcpy(a->user, user, HD_PUBLICKEY_BYTES);
  int rc = server->store->vt->add_event(server->store, user, now_ms(), payload, len, add_done, a);
  if (rc != 0) free(a);
  return rc;
}

typedef struct waiter {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done;
  int status;
  uint64_t value;
} waiter_t;

static void waiter_init(waiter_t *w) {
  memset(w, 0, sizeof *w);
  uv_mutex_init(&w->mu);
  uv_cond_init(&w->cv);
}

static int waiter_wait(waiter_t *w) {
  uv_mutex_lock(&w->mu);
  while (!w->done) uv_cond_wait(&w->cv, &w->mu);
  uv_mutex_unlock(&w->mu);
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
  return w->status;
}

static void waiter_signal(waiter_t *w, int status, uint64_t value) {
  uv_mutex_lock(&w->mu);
  w->status = status;
  w->value = value;
  w->done = 1;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu);
}

static void add_wait_done(void *data, int status, uint64_t seq) {
  /* the store's detail is on the loop thread: carry it to the waiting thread */
  waiter_signal(data, status, seq);
}

int hd_server_add_event_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                             const void *payload, size_t len, uint64_t *seq) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (hd__runtime_on_loop(server->rt)) {
    return hd__error(HD_ETHREAD, "add_event_wait on the server's loop thread would wait for "
                                 "itself; use hd_server_add_event");
  }
  waiter_t w;
  waiter_init(&w);
  int rc = hd_server_add_event(server, user, payload, len, add_wait_done, &w);
  if (rc != 0) {
    uv_cond_destroy(&w.cv);
    uv_mutex_destroy(&w.mu);
    return rc;
  }
  rc = waiter_wait(&w);
  if (rc != 0) return hd__error(rc, "adding the event failed: %s", hd_strerror(rc));
  if (seq != NULL) *seq = w.value;
  return 0;
}

/* ---- update_pause --------------------------------------------------------------------------- */

typedef struct pause_task {
  hd__task_t task;
  hd_server_t *s;
  uint32_t pause_ms;
  hd_done_cb cb;
  void *cb_data;
} pause_task_t;

static void push_pause(void *value, void *ctx) {
  hd__conn_t *c = value;
  hd__buf_t *out = hd__conn_out(c);
  if (out != NULL && hd__msg_encode_pause(out, *(const uint32_t *)ctx) == 0) hd__conn_queued(c);
}

static void pause_stored(void *data, int status, uint64_t value) {
  pause_task_t *p = data;
  hd_server_t *s = p->s;
  (void)value;
  if (status == 0) {
    s->cfg.welcome.pause_ms = p->pause_ms; /* new clients get it in WELCOME */
    hd__peers_each(&s->peers, push_pause, &p->pause_ms);
    hd__log(s->rt, HD_LOG_INFO, "pause set to %u ms, pushed to %zu clients",
            (unsigned)p->pause_ms, s->peers.count);
  }
  if (p->cb != NULL) p->cb(p->cb_data, status);
  free(p);
}

static void pause_run(hd__task_t *t, int cancelled) {
  pause_task_t *p = (pause_task_t *)t;
  hd_server_t *s = p->s;
  int rc = cancelled || s->store == NULL || s->store_closing
               ? hd__error(HD_ECLOSED, "the server is closing")
               : s->store->vt->set_pause(s->store, p->pause_ms, pause_stored, p);
  if (rc == 0) return;
  /* a cancelled task must only free; otherwise the caller hears why */
  if (!cancelled && p->cb != NULL) p->cb(p->cb_data, rc);
  free(p);
}

int hd_server_update_pause(hd_server_t *server, uint32_t pause_ms, hd_done_cb cb,
                           void *cb_data) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (hd__srv_closed(server)) return hd__error(HD_ECLOSED, "the server is closing");
  pause_task_t *p = malloc(sizeof *p);
  if (p == NULL) return hd__error(HD_ENOMEM, "out of memory setting the pause");
  p->task.fn = pause_run;
  p->s = server;
  p->pause_ms = pause_ms;
  p->cb = cb;
  p->cb_data = cb_data;
  hd__runtime_post(server->rt, &p->task);
  return 0;
}

/* ---- blocking reads ----------------------------------------------------------------------- */

typedef struct read_task {
  hd__task_t task;
  hd_server_t *s;
  int (*fn)(struct read_task *r);
  void *out;
  const uint8_t *user;
  size_t cap;
  uint64_t *counts; /* pending_users */
  uint64_t *cursor; /* pending_users */
  int rc;
  char detail[256];
  waiter_t w;
  int waiting;
} read_task_t;

static void read_run(hd__task_t *t, int cancelled) {
  read_task_t *r = (read_task_t *)t;
  if (cancelled) {
    r->rc = hd__error(HD_ECLOSED, "the server closed");
  } else if (r->s->store == NULL) {
    r->rc = hd__error(HD_ECLOSED, "the server is closing");
  } else {
    r->rc = r->fn(r);
  }
  if (r->rc < 0) snprintf(r->detail, sizeof r->detail, "%s", hd_last_error_message());
  if (r->waiting) waiter_signal(&r->w, r->rc, 0);
}

/* Runs r->fn on the loop and returns its result, with its error detail on this thread. */
static int run_read(read_task_t *r) {
  r->task.fn = read_run;
  if (hd__runtime_on_loop(r->s->rt)) {
    read_run(&r->task, 0);
    return r->rc;
  }
  if (hd__srv_closed(r->s)) return hd__error(HD_ECLOSED, "the server is closing");
  waiter_init(&r->w);
  r->waiting = 1;
  hd__runtime_post(r->s->rt, &r->task);
  int rc = waiter_wait(&r->w);
  return rc < 0 ? hd__error(rc, "%s", r->detail) : rc;
}

static int stats_fn(read_task_t *r) {
  hd_server_t *s = r->s;
  hd_server_stats_t *out = r->out;
  out->events_added = s->n_added;
  out->events_delivered = s->n_delivered;
  out->events_consumed = s->n_consumed;
  out->events_confirmed = s->n_confirmed;
  out->connected_users = s->peers.count;
  hd__store_stats_t st;
  s->store->vt->stats(s->store, &st);
  out->commits = st.commits;
  return s->store->vt->pending_total(s->store, &out->pending_total);
}

int hd_server_stats(hd_server_t *server, hd_server_stats_t *out) {
  if (server == NULL || out == NULL) return hd__error(HD_EINVAL, "server or out is NULL");
  if (out->version == 0 || out->version > HD_SERVER_STATS_VERSION) {
    return hd__error(HD_EVERSION, "set out->version to HD_SERVER_STATS_VERSION (%d)",
                     HD_SERVER_STATS_VERSION);
  }
  hd_server_stats_t tmp = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  read_task_t r = {.s = server, .fn = stats_fn, .out = &tmp};
  int rc = run_read(&r);
  if (rc == 0) *out = tmp; /* version 1 is the whole struct */
  return rc;
}

static int pending_fn(read_task_t *r) {
  return r->s->store->vt->pending_count(r->s->store, r->user, r->out);
}

int hd_server_pending(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                      uint64_t *out) {
  if (server == NULL || user == NULL || out == NULL) {
    return hd__error(HD_EINVAL, "server, user or out is NULL");
  }
  read_task_t r = {.s = server, .fn = pending_fn, .out = out, .user = user};
  return run_read(&r);
}

typedef struct copy_keys {
  uint8_t *out;
  size_t cap, n;
} copy_keys_t;

static void copy_key(void *value, void *ctx) {
  copy_keys_t *k = ctx;
  if (k->n < k->cap) memcpy(k->out + 32 * k->n, ((hd__conn_t *)value)->remote_pk, 32);
  k->n++;
}

static int users_fn(read_task_t *r) {
  copy_keys_t k = {r->out, r->cap, 0};
  hd__peers_each(&r->s->peers, copy_key, &k);
  return k.n > INT32_MAX ? INT32_MAX : (int)k.n;
}

typedef struct copy_pending {
  uint8_t *keys;
  uint64_t *counts;
  size_t n;
} copy_pending_t;

static void copy_pending(void *ctx, const uint8_t key[32], uint64_t pending) {
  copy_pending_t *c = ctx;
  memcpy(c->keys + 32 * c->n, key, 32);
  if (c->counts != NULL) c->counts[c->n] = pending;
  c->n++;
}

static int pending_users_fn(read_task_t *r) {
  copy_pending_t c = {r->out, r->counts, 0};
  uint32_t limit = r->cap > UINT32_MAX ? UINT32_MAX : (uint32_t)r->cap;
  return r->s->store->vt->pending_users(r->s->store, r->cursor, limit, copy_pending, &c);
}

int hd_server_pending_users(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                            uint64_t *counts, size_t cap) {
  if (server == NULL || cursor == NULL || (keys == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server or cursor is NULL, or keys is NULL with a capacity");
  }
  if (cap == 0) return 0;
  read_task_t r = {.s = server, .fn = pending_users_fn, .out = keys, .cap = cap,
                   .counts = counts, .cursor = cursor};
  return run_read(&r);
}

int hd_server_connected_users(hd_server_t *server, uint8_t *out, size_t cap) {
  if (server == NULL || (out == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server is NULL, or out is NULL with a capacity");
  }
  read_task_t r = {.s = server, .fn = users_fn, .out = out, .cap = cap};
  return run_read(&r);
}
