/* FAILED reports (docs/QUEUES.md "Dead letters"): a client that announced HD__FEATURE_FAILED says
 * its handler failed these events for good (after its attempts, or rejected at once). The events
 * the store still holds move to the user's dead letters in one write; once it committed, the
 * client gets DONE for every seq it reported (also those no longer held, as for CONSUMED: the
 * report is idempotent) and on_dead_letter runs once per event moved. on_consumed never sees a
 * failed event.
 *
 * The reported seqs share the user's in-flight set with CONSUMED (consumed.c): a seq in a batch,
 * a delete or a fail not committed yet is skipped by the other kind of report (its DONE comes
 * from the one in flight), so an event is never both consumed and failed. Those held are read
 * before the write, so that after it the dead letters among them are exactly the ones it moved
 * (a seq reported failed again after a lost DONE finds no held event and gets no second
 * callback). */
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

typedef struct fail_ctx {
  hd__server_events_t *ev;
  hd__server_user_t *u; /* kept alive: its seqs stay in flight until the write completes */
  size_t n;
  uint64_t seqs[];      /* ascending */
} fail_ctx_t;

typedef struct pick {
  const uint64_t *seqs;
  uint8_t *held; /* held[i]: seqs[i] is an event the store holds */
  size_t n, cursor;
} pick_t;

static int held_row(void *data, const hd__store_event_t *row) {
  pick_t *p = data;
  while (p->cursor < p->n && p->seqs[p->cursor] != row->seq) p->cursor++;
  if (p->cursor < p->n) p->held[p->cursor++] = 1;
  return 0;
}

static int tell_dead_letter(void *data, const hd_dead_letter_t *dl) {
  fail_ctx_t *f = data;
  f->ev->on_dead_letter(f->ev->user_data, f->u->pk, dl);
  return 0;
}

static void fail_done(void *data, int status, uint64_t moved) {
  fail_ctx_t *f = data;
  hd__server_events_t *ev = f->ev;
  hd__server_user_t *u = f->u;
  if (status == 0) {
    ev->n_dead += moved;
    hd__log(ev->rt, HD_LOG_INFO, "%zu events reported failed, %llu moved to the dead letters",
            f->n, (unsigned long long)moved);
    /* closing: the store refuses reads; the dead letters are durable and listed at the next
     * start, only the callback is missed */
    if (moved > 0 && ev->on_dead_letter != NULL && !ev->closing &&
        ev->store->vt->read_dead_seqs(ev->store, u->pk, f->seqs, f->n, tell_dead_letter, f) < 0) {
      hd__log(ev->rt, HD_LOG_ERROR, "reading new dead letters for on_dead_letter: %s",
              hd_last_error_message());
    }
    hd__consumed_send_done(u, f->seqs, f->n);
  } else {
    /* nothing moved: the client reports them again at its next connection */
    hd__log(ev->rt, HD_LOG_WARN, "moving %zu failed events to the dead letters failed (%s: %s): "
            "they stay; the client's connection is closed so that it reports them again", f->n,
            hd_err_name(status), hd_last_error_message());
    if (u->session != NULL) hd__conn_close(u->session->conn, status, "storing failed events");
  }
  hd__inflight_remove(u, f->seqs, f->n);
  free(f);
  hd__server_user_release(ev, u);
}

static int cmp_entry(const void *a, const void *b) {
  const hd__entry_t *x = a, *y = b;
  if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
  return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms; /* place */
}

/* The report's work once decoded: entries e[0..n) in message order. */
static void report(hd__server_events_t *ev, hd__session_t *ss, hd__entry_t *e, size_t n,
                   uint64_t *seqs, uint8_t *held, hd__store_failed_t *items) {
  hd__server_user_t *u = ss->user;
  hd__conn_t *c = ss->conn;
  for (size_t i = 0; i < n; i++) e[i].created_ms = i; /* FAILED has none: the place */
  qsort(e, n, sizeof *e, cmp_entry);
  /* one per seq (the first in the message), none in flight */
  size_t k = 0;
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t seq = e[i].seq;
    if (i > 0 && seq == prev) continue;
    prev = seq;
    if (hd__inflight_has(u, seq)) continue;
    e[k++] = e[i];
  }
  for (size_t i = 0; i < k; i++) seqs[i] = e[i].seq;
  pick_t p = {seqs, held, k, 0};
  memset(held, 0, k);
  int rc = ev->store->vt->read_events(ev->store, u->pk, seqs, k, held_row, &p);
  if (rc < 0) {
    hd__log(ev->rt, HD_LOG_ERROR, "%s: reading events reported failed: %s", c->peer,
            hd_last_error_message());
    hd__conn_close(c, rc, "reading events reported failed");
    return;
  }
  /* not held: finished already (DONE at once); held: to the dead letters */
  size_t gone = 0, moving = 0;
  uint64_t *gone_seqs = seqs + k;
  for (size_t i = 0; i < k; i++) {
    if (!held[i]) {
      gone_seqs[gone++] = e[i].seq;
      continue;
    }
    items[moving] = (hd__store_failed_t){e[i].seq, (uint32_t)(e[i].attempts > UINT32_MAX
                                                                   ? UINT32_MAX
                                                                   : e[i].attempts),
                                         (const char *)e[i].data, e[i].len};
    seqs[moving++] = e[i].seq;
  }
  if (gone) hd__consumed_send_done(u, gone_seqs, gone);
  hd__log(ev->rt, HD_LOG_DEBUG, "%s: FAILED %zu events: %zu to the dead letters, %zu finished "
          "already (DONE)", c->peer, n, moving, gone);
  if (moving == 0) return;
  fail_ctx_t *f = malloc(sizeof *f + moving * sizeof(uint64_t));
  if (f == NULL || hd__inflight_add(u, seqs, moving) != 0) {
    free(f);
    hd__conn_close(c, HD_ENOMEM, "out of memory storing failed events");
    return;
  }
  f->ev = ev;
  f->u = u;
  f->n = moving;
  memcpy(f->seqs, seqs, moving * sizeof(uint64_t));
  rc = ev->store->vt->fail_events(ev->store, u->pk, items, moving, fail_done, f);
  if (rc != 0) {
    hd__inflight_remove(u, f->seqs, moving);
    free(f);
    hd__log(ev->rt, HD_LOG_WARN, "%s: cannot store %zu failed events (%s): the connection is "
            "closed so that the client reports them again", c->peer, moving,
            hd_last_error_message());
    hd__conn_close(c, rc, "storing failed events");
  }
}

void hd__failed_report(hd__server_events_t *ev, hd__session_t *ss, const uint8_t *body,
                       size_t len) {
  hd__conn_t *c = ss->conn;
  hd__entry_iter_t it;
  uint64_t count;
  if (hd__msg_entries_begin(&it, HD__MSG_FAILED, body, len, &count) != 0) {
    hd__conn_fail(c, HD_EPROTO, hd_last_error_message()); /* "FAILED: <the fault>" */
    return;
  }
  if (count == 0 || ev->closing) return;
  /* a rare message: its own scratch, freed after the call (the reasons point into the body,
   * which the store copies at submit) */
  size_t n = (size_t)count;
  hd__entry_t *e = malloc(n * sizeof *e);
  uint64_t *seqs = malloc(2 * n * sizeof *seqs);
  uint8_t *held = malloc(n);
  hd__store_failed_t *items = malloc(n * sizeof *items);
  if (e == NULL || seqs == NULL || held == NULL || items == NULL) {
    hd__conn_close(c, HD_ENOMEM, "out of memory reading FAILED");
  } else {
    size_t i = 0;
    while (i < n && hd__msg_entries_next(&it, &e[i])) i++;
    report(ev, ss, e, i, seqs, held, items);
  }
  free(e);
  free(seqs);
  free(held);
  free(items);
}
