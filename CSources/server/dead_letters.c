/* The public dead-letter calls (hyperdown.h "Queue semantics", docs/QUEUES.md "Dead letters"): a
 * user's dead letters listed a page at a time, counted, the users holding some, and requeued or
 * deleted. Like admin.c: reads run on the loop through hd__runtime_call; writes go straight to the
 * store's queue (its submit is thread-safe) and complete on the loop, where a requeue wakes the
 * user's session so that the event goes out at once. */
#include "server.h"
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

/* ---- listing -------------------------------------------------------------------------------- */

typedef struct list_call {
  hd_server_t *s;
  const uint8_t *user;
  uint64_t *cursor;
  hd_dead_letter_t *out;
  size_t cap, n;
  uint8_t *buf;
  size_t buf_len, used;
  size_t too_big; /* the page's first dead letter's payload and reason, when they did not fit */
  uint64_t too_big_seq;
} list_call_t;

static int list_row(void *arg, const hd_dead_letter_t *row) {
  list_call_t *l = arg;
  hd_dead_letter_t dl = *row;
  dl.payload = NULL;
  dl.reason = NULL;
  if (l->buf != NULL) {
    size_t need = row->payload_len + row->reason_len;
    if (need > l->buf_len - l->used) {
      if (l->n == 0) {
        l->too_big = need;
        l->too_big_seq = row->seq;
      }
      return 1; /* the next call lists it */
    }
    uint8_t *p = l->buf + l->used;
    if (row->payload_len) memcpy(p, row->payload, row->payload_len);
    if (row->reason_len) memcpy(p + row->payload_len, row->reason, row->reason_len);
    dl.payload = p;
    dl.reason = (const char *)p + row->payload_len;
    l->used += need;
  }
  l->out[l->n++] = dl;
  *l->cursor = row->seq;
  return 0;
}

static int list_on_loop(void *arg) {
  list_call_t *l = arg;
  hd__server_events_t *ev = hd__server_events_of(l->s);
  if (ev == NULL || ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  int rc = ev->store->vt->read_dead(ev->store, l->user, *l->cursor, (uint32_t)l->cap, list_row,
                                    l);
  if (rc < 0) return rc;
  if (l->too_big != 0) {
    return hd__error(HD_EBUFSIZE, "dead letter %llu's payload and reason have %zu bytes; the "
                     "buffer has %zu", (unsigned long long)l->too_big_seq, l->too_big, l->buf_len);
  }
  return (int)l->n;
}

int hd_server_list_dead_letters(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                uint64_t *cursor, hd_dead_letter_t *out, size_t cap, uint8_t *buf,
                                size_t buf_len) {
  if (server == NULL || user == NULL || cursor == NULL || (out == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server, user or cursor is NULL, or out is NULL with a capacity");
  }
  if (buf == NULL && buf_len != 0) return hd__error(HD_EINVAL, "buf is NULL with a length");
  if (cap == 0) return 0;
  list_call_t l = {.s = server, .user = user, .cursor = cursor, .out = out,
                   .cap = cap > INT32_MAX ? INT32_MAX : cap, .buf = buf, .buf_len = buf_len};
  return hd__runtime_call(hd__server_runtime(server), list_on_loop, &l);
}

/* ---- counts --------------------------------------------------------------------------------- */

typedef struct count_call {
  hd_server_t *s;
  const uint8_t *user;
  uint64_t *out;
  uint8_t *keys;
  uint64_t *counts;
  uint64_t *cursor;
  uint32_t cap;
  size_t n;
} count_call_t;

static hd__server_events_t *open_events(hd_server_t *s) {
  hd__server_events_t *ev = hd__server_events_of(s);
  if (ev == NULL || ev->closing) {
    hd__error(HD_ECLOSED, "the server is closing");
    return NULL;
  }
  return ev;
}

static int count_on_loop(void *arg) {
  count_call_t *c = arg;
  hd__server_events_t *ev = open_events(c->s);
  return ev == NULL ? HD_ECLOSED : ev->store->vt->dead_count(ev->store, c->user, c->out);
}

int hd_server_dead_letter_count(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                uint64_t *out) {
  if (server == NULL || out == NULL) return hd__error(HD_EINVAL, "server or out is NULL");
  count_call_t c = {.s = server, .user = user, .out = out};
  return hd__runtime_call(hd__server_runtime(server), count_on_loop, &c);
}

static void copy_user(void *ctx, const uint8_t key[32], uint64_t dead) {
  count_call_t *c = ctx;
  memcpy(c->keys + 32 * c->n, key, 32);
  if (c->counts != NULL) c->counts[c->n] = dead;
  c->n++;
}

static int users_on_loop(void *arg) {
  count_call_t *c = arg;
  hd__server_events_t *ev = open_events(c->s);
  return ev == NULL ? HD_ECLOSED
                    : ev->store->vt->dead_users(ev->store, c->cursor, c->cap, copy_user, c);
}

int hd_server_dead_letter_users(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                                uint64_t *counts, size_t cap) {
  if (server == NULL || cursor == NULL || (keys == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server or cursor is NULL, or keys is NULL with a capacity");
  }
  if (cap == 0) return 0;
  count_call_t c = {.s = server, .keys = keys, .counts = counts, .cursor = cursor,
                    .cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap};
  return hd__runtime_call(hd__server_runtime(server), users_on_loop, &c);
}

/* ---- requeue and delete --------------------------------------------------------------------- */

typedef struct dead_ctx {
  hd__server_events_t *ev;
  hd_count_cb cb;
  void *cb_data;
  int requeue;
  uint8_t user[HD_PUBLICKEY_BYTES];
} dead_ctx_t;

static void dead_written(void *data, int status, uint64_t count) {
  dead_ctx_t *d = data;
  hd__server_events_t *ev = d->ev;
  if (status != 0) count = 0; /* the batch rolled back: nothing changed */
  const char *what = d->requeue ? "requeued" : "deleted";
  if (status == 0) {
    hd__log(ev->rt, HD_LOG_INFO, "admin: %s %llu dead letters", what, (unsigned long long)count);
    if (d->requeue && count > 0) {
      ev->n_requeued += count;
      if (!ev->closing) hd__session_wake(ev, d->user);
    }
  } else {
    hd__log(ev->rt, HD_LOG_WARN, "admin: dead letters not %s: %s", what, hd_last_error_message());
  }
  if (d->cb != NULL) d->cb(d->cb_data, status, count);
  free(d);
}

static int submit(hd_server_t *server, const uint8_t *user, const uint64_t *seqs, size_t n,
                  int requeue, hd_count_cb cb, void *cb_data) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (seqs == NULL && n != 0) return hd__error(HD_EINVAL, "seqs is NULL with a count");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  dead_ctx_t *d = malloc(sizeof *d);
  if (d == NULL) return hd__error(HD_ENOMEM, "out of memory for a dead-letter call");
  d->ev = hd__server_events_of(server);
  d->cb = cb;
  d->cb_data = cb_data;
  d->requeue = requeue;
  memcpy(d->user, user, HD_PUBLICKEY_BYTES);
  hd__server_store_t *st = d->ev->store;
  int rc = requeue ? st->vt->requeue_dead(st, user, seqs, n, dead_written, d)
                   : st->vt->delete_dead(st, user, seqs, n, dead_written, d);
  if (rc != 0) free(d);
  return rc;
}

int hd_server_requeue_dead_letters(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                   const uint64_t *seqs, size_t n, hd_count_cb cb,
                                   void *cb_data) {
  return submit(server, user, seqs, n, 1, cb, cb_data);
}

int hd_server_delete_dead_letters(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                  const uint64_t *seqs, size_t n, hd_count_cb cb, void *cb_data) {
  return submit(server, user, seqs, n, 0, cb, cb_data);
}

typedef struct dead_call {
  hd_server_t *server;
  const uint8_t *user;
  const uint64_t *seqs;
  size_t n;
  int requeue;
} dead_call_t;

static int dead_submit(void *arg, hd_count_cb cb, void *w) {
  dead_call_t *d = arg;
  return submit(d->server, d->user, d->seqs, d->n, d->requeue, cb, w);
}

static int submit_wait(hd_server_t *server, const uint8_t *user, const uint64_t *seqs, size_t n,
                       int requeue, uint64_t *count) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  dead_call_t d = {server, user, seqs, n, requeue};
  uint64_t got = 0;
  int rc = hd__waiter_call(hd__server_runtime(server), "a blocking dead-letter call", dead_submit,
                           &d, &got);
  if (count != NULL) *count = got;
  return rc;
}

int hd_server_requeue_dead_letters_wait(hd_server_t *server,
                                        const uint8_t user[HD_PUBLICKEY_BYTES],
                                        const uint64_t *seqs, size_t n, uint64_t *count) {
  return submit_wait(server, user, seqs, n, 1, count);
}

int hd_server_delete_dead_letters_wait(hd_server_t *server,
                                       const uint8_t user[HD_PUBLICKEY_BYTES],
                                       const uint64_t *seqs, size_t n, uint64_t *count) {
  return submit_wait(server, user, seqs, n, 0, count);
}
