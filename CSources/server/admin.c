/* The server's admin calls (hyperdown.h "Admin"): a user's pending events listed a page at a
 * time, and deleted, some or all. Deletes go straight to the store's queue (its submit is
 * thread-safe), like adds; the listing is a read on the loop through hd__runtime_call.
 *
 * A delete needs nothing from the sessions: a session pages from what it sent last, so an event
 * deleted before it was sent is never read; one deleted after is answered DONE when its client
 * reports it (consumed.c: a report of an event the store no longer holds), without on_consumed. */
#include "server.h"
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

/* ---- listing -------------------------------------------------------------------------------- */

typedef struct list_call {
  hd_server_t *s;
  const uint8_t *user;
  uint64_t *cursor;
  hd_event_info_t *events;
  size_t cap, n;
  uint8_t *buf;
  size_t buf_len, used;
  size_t too_big; /* the page's first payload, when it did not fit */
  uint64_t too_big_seq;
} list_call_t;

static int list_row(void *arg, const hd__store_event_t *row) {
  list_call_t *l = arg;
  const uint8_t *payload = NULL;
  if (row->kind == HD__STORE_KIND_NOTICE) { /* the user's application's, not an added event */
    *l->cursor = row->seq;
    return 0;
  }
  if (l->buf != NULL) {
    if (row->payload_len > l->buf_len - l->used) {
      if (l->n == 0) {
        l->too_big = row->payload_len;
        l->too_big_seq = row->seq;
      }
      return 1; /* the next call lists it */
    }
    memcpy(l->buf + l->used, row->payload, row->payload_len);
    payload = l->buf + l->used;
    l->used += row->payload_len;
  }
  l->events[l->n++] = (hd_event_info_t){row->seq, row->created_ms, payload, row->payload_len,
                                        NULL, 0};
  *l->cursor = row->seq;
  return 0;
}

static int list_on_loop(void *arg) {
  list_call_t *l = arg;
  hd__server_events_t *ev = hd__server_events_of(l->s);
  if (ev == NULL || ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  int rc;
  /* a page of notices only lists nothing: the next page, so that 0 still means the end */
  do {
    rc = ev->store->vt->read_pending(ev->store, l->user, *l->cursor, (uint32_t)l->cap, list_row,
                                     l);
  } while (rc == (int)l->cap && l->n == 0 && l->too_big == 0);
  if (rc < 0) return rc;
  if (l->too_big != 0) {
    return hd__error(HD_EBUFSIZE, "event %llu's payload has %zu bytes; the buffer has %zu",
                     (unsigned long long)l->too_big_seq, l->too_big, l->buf_len);
  }
  return (int)l->n;
}

int hd_server_list_events(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                          uint64_t *cursor, hd_event_info_t *events, size_t cap, uint8_t *buf,
                          size_t buf_len) {
  if (server == NULL || user == NULL || cursor == NULL || (events == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server, user or cursor is NULL, or events is NULL with a "
                                "capacity");
  }
  if (buf == NULL && buf_len != 0) return hd__error(HD_EINVAL, "buf is NULL with a length");
  if (cap == 0) return 0;
  list_call_t l = {.s = server, .user = user, .cursor = cursor, .events = events,
                   .cap = cap > INT32_MAX ? INT32_MAX : cap, .buf = buf, .buf_len = buf_len};
  return hd__runtime_call(hd__server_runtime(server), list_on_loop, &l);
}

/* ---- deletes -------------------------------------------------------------------------------- */

typedef struct delete_ctx {
  hd__server_events_t *ev;
  hd_count_cb cb;
  void *cb_data;
  int all;      /* every event of the user (else those named) */
} delete_ctx_t;

static void deleted(void *data, int status, uint64_t count) {
  delete_ctx_t *d = data;
  if (status != 0) count = 0; /* the batch rolled back: nothing was deleted */
  if (status == 0) {
    hd__log(d->ev->rt, HD_LOG_INFO, "admin: deleted %llu events (%s)", (unsigned long long)count,
            d->all ? "every one of a user" : "of those named");
  } else {
    hd__log(d->ev->rt, HD_LOG_WARN, "admin: a delete failed: %s", hd_last_error_message());
  }
  if (d->cb != NULL) d->cb(d->cb_data, status, count);
  free(d);
}

/* seqs NULL: every event of the user. */
static int submit_delete(hd_server_t *server, const uint8_t *user, const uint64_t *seqs, size_t n,
                         hd_count_cb cb, void *cb_data) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  delete_ctx_t *d = malloc(sizeof *d);
  if (d == NULL) return hd__error(HD_ENOMEM, "out of memory deleting events");
  d->ev = hd__server_events_of(server);
  d->cb = cb;
  d->cb_data = cb_data;
  d->all = seqs == NULL;
  hd__server_store_t *st = d->ev->store;
  int rc = seqs != NULL ? st->vt->delete_events(st, user, seqs, n, deleted, d)
                        : st->vt->delete_user(st, user, deleted, d);
  if (rc != 0) free(d);
  return rc;
}

int hd_server_delete_events(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                            const uint64_t *seqs, size_t n, hd_count_cb cb, void *cb_data) {
  static const uint64_t none[1];
  if (seqs == NULL && n != 0) return hd__error(HD_EINVAL, "seqs is NULL with a count");
  return submit_delete(server, user, seqs != NULL ? seqs : none, n, cb, cb_data);
}

int hd_server_delete_user(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                          hd_count_cb cb, void *cb_data) {
  return submit_delete(server, user, NULL, 0, cb, cb_data);
}

typedef struct delete_call {
  hd_server_t *server;
  const uint8_t *user;
  const uint64_t *seqs;
  size_t n;
  int all;
} delete_call_t;

static int delete_submit(void *arg, hd_count_cb cb, void *w) {
  delete_call_t *d = arg;
  return d->all ? hd_server_delete_user(d->server, d->user, cb, w)
                : hd_server_delete_events(d->server, d->user, d->seqs, d->n, cb, w);
}

static int delete_wait(hd_server_t *server, const uint8_t *user, const uint64_t *seqs, size_t n,
                       int all, uint64_t *count) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  delete_call_t d = {server, user, seqs, n, all};
  uint64_t got = 0;
  int rc = hd__waiter_call(hd__server_runtime(server), "a blocking delete", delete_submit, &d,
                           &got);
  if (count != NULL) *count = got;
  return rc;
}

int hd_server_delete_events_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                 const uint64_t *seqs, size_t n, uint64_t *count) {
  return delete_wait(server, user, seqs, n, 0, count);
}

int hd_server_delete_user_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                               uint64_t *count) {
  return delete_wait(server, user, NULL, 0, 1, count);
}
