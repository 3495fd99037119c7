/* Consumption reports: CONSUMED from a client, hd_consumed_t batches handed to on_consumed,
 * their completions (any thread, exactly once per event), the grouped deletes and DONE.
 *
 * A user's in-flight set holds the seqs that sit in a batch or in a delete not committed yet:
 * a report of one of them is a duplicate and is ignored; a report of an event the store does
 * not hold any more is answered DONE at once (idempotent). An ok completion joins the user's
 * delete list; one delete per user per loop iteration goes to the store, and DONE follows its
 * commit; a delete that fails (a full disk) is tried again after a backoff until it works. A
 * failed completion just leaves the in-flight set, so the client can report it again.
 *
 * A batch is one allocation: header, event infos, per-event state, payloads and client data.
 * Completions claim an event with a compare-and-swap on its state (so HD_EALREADY is exact
 * from any thread) and wake the loop with the batch's own task (posted once until it runs), so
 * completing allocates nothing. The batch is reference-counted: the loop holds it until every
 * event is processed, and each completion call holds it for its duration. A batch reaches the
 * loop through the event layer's anchor (anchor.h): after the server finished, the anchor is
 * detached and the batch is an orphan: completions only count, and the last one frees it. */
#include "server_events.h"

#include "array.h"

#include <stdlib.h>
#include <string.h>

enum { ST_OPEN = 0, ST_OK = 1, ST_FAIL = 2, ST_DONE = 3 };

struct hd_consumed {
  hd__task_t task;            /* runs the claimed completions on the loop */
  hd__anchor_t *anchor;
  hd__server_events_t *owner; /* valid while the anchor is attached */
  uint8_t user[HD_PUBLICKEY_BYTES];
  size_t count;
  atomic_int refs;            /* 1 for the loop until every event is processed + callers */
  atomic_size_t claimed;
  atomic_int task_queued;
  atomic_int hold_dropped;    /* the loop's reference was dropped (exactly once) */
  size_t processed, scan_from; /* loop */
  hd__queue_t node;           /* on the event layer's live batches (loop) */
  hd_event_info_t *ev;
  _Atomic unsigned char *state;
};

/* ---- In-flight set: a sorted array, changed in bulk --------------------------------------------
 * Every change takes a sorted list and costs one pass over the part of the set it touches (a
 * merge from the back, a compaction from the first seq removed): a report or a delete of n events
 * costs O(n + m), never n shifts of the whole set. */

static size_t lower_bound(const uint64_t *a, size_t lo, size_t hi, uint64_t seq) {
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (a[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Adds `seqs` (ascending, distinct, none of them in the set). */
static int inflight_add_sorted(hd__server_user_t *u, const uint64_t *seqs, size_t n) {
  if (n == 0) return 0;
  int rc = hd__array_reserve((void **)&u->inflight, &u->cap_inflight, u->n_inflight + n,
                             sizeof *u->inflight);
  if (rc != 0) return rc;
  uint64_t *a = u->inflight;
  size_t i = u->n_inflight, j = n, w = u->n_inflight + n;
  while (j > 0) { /* from the back: what is above every new seq is moved once, the rest not */
    if (i > 0 && a[i - 1] > seqs[j - 1]) a[--w] = a[--i];
    else a[--w] = seqs[--j];
  }
  u->n_inflight += n;
  return 0;
}

/* Removes `seqs` (ascending, distinct; those not in the set are skipped). */
static void inflight_remove_sorted(hd__server_user_t *u, const uint64_t *seqs, size_t n) {
  if (n == 0 || u->n_inflight == 0) return;
  uint64_t *a = u->inflight;
  size_t m = u->n_inflight, r = lower_bound(a, 0, m, seqs[0]), w = r, j = 0;
  while (r < m && j < n) {
    if (seqs[j] < a[r]) j++;
    else if (seqs[j] == a[r]) j++, r++;
    else a[w++] = a[r++];
  }
  if (w != r) memmove(a + w, a + r, (m - r) * sizeof *a);
  u->n_inflight = w + (m - r);
  if (u->n_inflight == 0 && u->cap_inflight > 1024) { /* an idle user stays small */
    free(u->inflight);
    u->inflight = NULL;
    u->cap_inflight = 0;
  }
}

/* For FAILED reports (failed.c), which share the set: a seq cannot be failed and consumed at
 * once. */
int hd__inflight_add(hd__server_user_t *u, const uint64_t *seqs, size_t n) {
  return inflight_add_sorted(u, seqs, n);
}

void hd__inflight_remove(hd__server_user_t *u, const uint64_t *seqs, size_t n) {
  inflight_remove_sorted(u, seqs, n);
}

int hd__inflight_has(const hd__server_user_t *u, uint64_t seq) {
  size_t at = lower_bound(u->inflight, 0, u->n_inflight, seq);
  return at < u->n_inflight && u->inflight[at] == seq;
}

static int cmp_seq(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* ---- DONE --------------------------------------------------------------------------------- */

/* Sends DONE for `seqs` on the user's connection, if any (split under the peer's limit). */
void hd__consumed_send_done(hd__server_user_t *u, const uint64_t *seqs, size_t n) {
  if (u->session == NULL) return; /* the client reports them again at its next connection */
  hd__conn_t *c = u->session->conn;
  while (n > 0) {
    hd__buf_t *out = hd__conn_out(c);
    if (out == NULL) return;
    size_t k = hd__msg_done_fit(seqs, n, c->peer_max_message);
    if (k == 0 || hd__msg_encode_done(out, seqs, k) != 0) {
      hd__conn_close(c, HD_ENOMEM, "cannot encode DONE");
      return;
    }
    hd__conn_queued(c);
    seqs += k;
    n -= k;
  }
}

/* ---- Grouped deletes ------------------------------------------------------------------------ */

typedef struct del_ctx {
  hd__server_events_t *ev;
  hd__server_user_t *u; /* kept alive: its seqs stay in flight until this completes */
  hd__queue_t node;     /* on ev->del_retry while it waits to be tried again */
  unsigned tries;
  size_t n;
  uint64_t seqs[];
} del_ctx_t;

/* A delete that could not even be submitted (out of memory, a failed store): the events stay
 * stored, out of the in-flight set, and since a client reports a consumption once per connection,
 * its connection is ended so that it reports them again after its reconnect backoff. Left
 * connected, they would stay pending and hold the client's window. */
static void delete_not_submitted(hd__server_events_t *ev, hd__server_user_t *u, size_t n) {
  hd__log(ev->rt, HD_LOG_WARN, "cannot delete %zu consumed events (%s): they stay, and the "
          "client's connection is closed so that it reports them again when it reconnects", n,
          hd_last_error_message());
  if (u->session != NULL) {
    hd__conn_close(u->session->conn, HD_EIO, "deleting consumed events failed");
  }
}

/* The delete is over (done, or given up): its seqs leave the in-flight set. */
static void del_end(del_ctx_t *d) {
  hd__server_events_t *ev = d->ev;
  hd__server_user_t *u = d->u;
  inflight_remove_sorted(u, d->seqs, d->n);
  free(d);
  hd__server_user_release(ev, u);
}

/* A delete that failed (above all a full disk: HD_ENOSPC) is tried again after a backoff until it
 * works: the application completed those events with success, and the client, which waits for
 * their DONE, would otherwise report them again only at its next connection and hold its credit
 * for them meanwhile. Its seqs stay in flight, so a report of them meanwhile is a duplicate. */
static void on_del_timer(uv_timer_t *t);

static void del_retry_later(del_ctx_t *d) {
  hd__server_events_t *ev = d->ev;
  hd__queue_insert_tail(&ev->del_retry, &d->node);
  if (uv_is_active((uv_handle_t *)&ev->del_timer)) return;
  uv_timer_start(&ev->del_timer, on_del_timer, ev->del_backoff_ms, 0);
  ev->del_backoff_ms = hd__backoff_next(ev->del_backoff_ms, HD__SRV_DEL_RETRY_MAX_MS);
}

static void del_done(void *data, int status, uint64_t value);

static int del_submit(del_ctx_t *d) {
  return d->ev->store->vt->delete_events(d->ev->store, d->u->pk, d->seqs, d->n, del_done, d);
}

static void on_del_timer(uv_timer_t *t) {
  hd__server_events_t *ev = t->data;
  hd__queue_t q;
  hd__queue_init(&q);
  hd__queue_move(&ev->del_retry, &q);
  hd__queue_t *node;
  while ((node = hd__queue_pop(&q)) != NULL) {
    del_ctx_t *d = hd__container_of(node, del_ctx_t, node);
    if (del_submit(d) != 0) {
      delete_not_submitted(ev, d->u, d->n);
      del_end(d); /* out of the in-flight set: the client's next report of them is answered */
    }
  }
}

void hd__consumed_init(hd__server_events_t *ev) {
  hd__queue_init(&ev->del_retry);
  uv_timer_init(ev->rt->loop, &ev->del_timer);
  ev->del_timer.data = ev;
  ev->del_backoff_ms = HD__SRV_DEL_RETRY_MIN_MS;
}

void hd__consumed_close(hd__server_events_t *ev, uv_close_cb closed) {
  uv_timer_stop(&ev->del_timer);
  size_t n = 0;
  hd__queue_t *node;
  while ((node = hd__queue_pop(&ev->del_retry)) != NULL) {
    del_ctx_t *d = hd__container_of(node, del_ctx_t, node);
    n += d->n;
    del_end(d);
  }
  if (n > 0) {
    hd__log(ev->rt, HD_LOG_WARN, "closing with %zu consumed events whose delete failed: they "
            "stay and are confirmed when the client reports them again", n);
  }
  uv_close((uv_handle_t *)&ev->del_timer, closed);
}

static void del_done(void *data, int status, uint64_t value) {
  del_ctx_t *d = data;
  hd__server_events_t *ev = d->ev;
  (void)value;
  if (status == 0) {
    ev->n_confirmed += d->n;
    ev->del_backoff_ms = HD__SRV_DEL_RETRY_MIN_MS;
    if (d->tries > 0) {
      hd__log(ev->rt, HD_LOG_WARN, "deleted %zu consumed events at try %u", d->n, d->tries + 1);
    }
    hd__consumed_send_done(d->u, d->seqs, d->n);
    del_end(d);
    return;
  }
  if (ev->closing) {
    hd__log(ev->rt, HD_LOG_WARN, "deleting %zu consumed events failed (%s: %s) while closing: "
            "they stay and are confirmed when the client reports them again", d->n,
            hd_err_name(status), hd_last_error_message());
    del_end(d);
    return;
  }
  if (d->tries++ == 0) {
    hd__log(ev->rt, HD_LOG_WARN, "deleting %zu consumed events failed (%s: %s): tried again "
            "after a backoff until it works", d->n, hd_err_name(status), hd_last_error_message());
  }
  del_retry_later(d);
}

static void submit_delete(hd__server_events_t *ev, hd__server_user_t *u) {
  size_t n = u->n_del;
  u->n_del = 0;
  /* completions come in any order across batches: sorted once for the in-flight set */
  qsort(u->del, n, sizeof *u->del, cmp_seq);
  del_ctx_t *d = malloc(sizeof *d + n * sizeof(uint64_t));
  int rc = d == NULL ? hd__error(HD_ENOMEM, "out of memory deleting %zu events", n) : 0;
  if (d != NULL) {
    d->ev = ev;
    d->u = u;
    d->tries = 0;
    d->n = n;
    memcpy(d->seqs, u->del, n * sizeof(uint64_t));
    rc = del_submit(d);
  }
  if (rc != 0) {
    /* not deleted: out of the in-flight set, so the client's next report of them is answered */
    inflight_remove_sorted(u, u->del, n);
    free(d);
    delete_not_submitted(ev, u, n);
  }
}

void hd__consumed_flush(hd__server_events_t *ev) {
  hd__queue_t *q;
  while ((q = hd__queue_pop(&ev->del_users)) != NULL) {
    hd__server_user_t *u = hd__container_of(q, hd__server_user_t, del_node);
    if (u->n_del) submit_delete(ev, u);
    hd__server_user_release(ev, u);
  }
}

static int queue_delete(hd__server_events_t *ev, hd__server_user_t *u, uint64_t seq) {
  int rc = hd__array_reserve((void **)&u->del, &u->cap_del, u->n_del + 1, sizeof *u->del);
  if (rc != 0) return rc;
  u->del[u->n_del++] = seq;
  if (!hd__queue_linked(&u->del_node)) hd__queue_insert_tail(&ev->del_users, &u->del_node);
  hd__runtime_defer(ev->rt, &ev->del_flush);
  return 0;
}

void hd__consumed_drop_notice(hd__server_events_t *ev, hd__server_user_t *u, uint64_t seq) {
  size_t at = lower_bound(u->inflight, 0, u->n_inflight, seq);
  if (at < u->n_inflight && u->inflight[at] == seq) return; /* on its way already */
  if (inflight_add_sorted(u, &seq, 1) != 0) return; /* stays: skipped again next time */
  if (queue_delete(ev, u, seq) != 0) inflight_remove_sorted(u, &seq, 1);
}

/* ---- Batches: lifetime ------------------------------------------------------------------- */

static void batch_unref(hd_consumed_t *b) {
  if (atomic_fetch_sub(&b->refs, 1) != 1) return;
  hd__anchor_unref(b->anchor);
  free(b);
}

/* Drops the loop's reference, once: whoever sees the batch finished first (the loop, or after
 * the server finished, the completion or the orphaning that sees every event claimed). */
static void batch_drop_hold(hd_consumed_t *b) {
  if (atomic_exchange(&b->hold_dropped, 1) == 0) batch_unref(b);
}

/* Loop: applies the completions claimed since the last run. */
static void batch_run(hd__task_t *t, int cancelled) {
  hd_consumed_t *b = hd__container_of(t, hd_consumed_t, task);
  if (cancelled) return; /* the server finished: the batch is orphaned, completions free it */
  atomic_store(&b->task_queued, 0);
  hd__server_events_t *ev = b->owner;
  hd__server_user_t *u = hd__server_user_get(ev, b->user, 0);
  int all_done = 1;
  size_t n_failed = 0; /* ascending, like the batch: they leave the in-flight set in one pass */
  for (size_t i = b->scan_from; i < b->count; i++) {
    unsigned char st = atomic_load(&b->state[i]);
    if (st == ST_OPEN || st == ST_DONE) {
      if (st == ST_OPEN) all_done = 0;
      if (all_done) b->scan_from = i + 1;
      continue;
    }
    atomic_store(&b->state[i], ST_DONE);
    b->processed++;
    if (all_done) b->scan_from = i + 1;
    if (u == NULL) continue;
    uint64_t seq = b->ev[i].seq;
    if (st == ST_OK && queue_delete(ev, u, seq) == 0) continue;
    /* failed: kept, and may be reported again */
    if (hd__array_reserve((void **)&ev->scr_failed, &ev->scr_failed_cap, n_failed + 1,
                          sizeof *ev->scr_failed) == 0) {
      ev->scr_failed[n_failed++] = seq;
    } else {
      inflight_remove_sorted(u, &seq, 1);
    }
  }
  if (u != NULL) {
    inflight_remove_sorted(u, ev->scr_failed, n_failed);
    hd__server_user_release(ev, u);
  }
  if (b->processed < b->count) return;
  hd__queue_remove(&b->node);
  batch_drop_hold(b);
}

/* Any thread, after claiming events: let the loop apply them (or free an orphan). A claim made
 * before the anchor was detached is seen by the orphaning (the anchor's lock orders the two); one
 * made after sees the anchor detached here: either way the last claim of an orphan drops it. */
static void batch_notify(hd_consumed_t *b) {
  if (atomic_exchange(&b->task_queued, 1) == 0 && hd__anchor_post(b->anchor, &b->task) >= 0) {
    return; /* applied inline on the loop thread, or posted there */
  }
  if (hd__anchor_attached(b->anchor)) return; /* a run is queued: it applies this claim too */
  if (atomic_load(&b->claimed) == b->count) batch_drop_hold(b);
}

void hd__consumed_orphan_all(hd__server_events_t *ev) {
  hd__anchor_t *anchor = ev->anchor;
  ev->anchor = NULL;
  hd__anchor_detach(anchor); /* the batches' references keep it for them */
  size_t n = 0;
  hd__queue_t *q;
  while ((q = hd__queue_pop(&ev->batches)) != NULL) {
    hd_consumed_t *b = hd__container_of(q, hd_consumed_t, node);
    b->owner = NULL;
    n++;
    /* claimed, not applied: nothing is left to wait for */
    if (atomic_load(&b->claimed) == b->count) batch_drop_hold(b);
  }
  if (n) {
    hd__log(ev->rt, HD_LOG_WARN, "closed with %zu consumed batches not completed by the "
            "application: their events stay stored and are reported again", n);
  }
}

/* ---- Batches: the public calls ---------------------------------------------------------- */

size_t hd_consumed_count(const hd_consumed_t *batch) { return batch ? batch->count : 0; }

int hd_consumed_event(const hd_consumed_t *batch, size_t index, hd_event_info_t *out) {
  if (batch == NULL || out == NULL) return hd__error(HD_EINVAL, "batch or out is NULL");
  if (index >= batch->count) {
    return hd__error(HD_EINVAL, "index %zu is past the batch's %zu events", index, batch->count);
  }
  *out = batch->ev[index];
  return 0;
}

static int claim(hd_consumed_t *b, size_t i, int ok) {
  unsigned char expect = ST_OPEN;
  if (!atomic_compare_exchange_strong(&b->state[i], &expect, ok ? ST_OK : ST_FAIL)) return 0;
  atomic_fetch_add(&b->claimed, 1);
  return 1;
}

int hd_consumed_complete(hd_consumed_t *batch, size_t index, int ok) {
  if (batch == NULL) return hd__error(HD_EINVAL, "batch is NULL");
  if (index >= batch->count) {
    return hd__error(HD_EINVAL, "index %zu is past the batch's %zu events", index, batch->count);
  }
  atomic_fetch_add(&batch->refs, 1);
  int rc = 0;
  if (claim(batch, index, ok)) batch_notify(batch);
  else rc = hd__error(HD_EALREADY, "event %zu of the batch was already completed", index);
  batch_unref(batch);
  return rc;
}

int hd_consumed_complete_all(hd_consumed_t *batch, int ok) {
  if (batch == NULL) return hd__error(HD_EINVAL, "batch is NULL");
  atomic_fetch_add(&batch->refs, 1);
  size_t n = 0;
  for (size_t i = 0; i < batch->count; i++) n += (size_t)claim(batch, i, ok);
  int rc = 0;
  if (n) batch_notify(batch);
  else rc = hd__error(HD_EALREADY, "every event of the batch was already completed");
  batch_unref(batch);
  return rc;
}

/* ---- CONSUMED ---------------------------------------------------------------------------------
 * A report goes through two steps. At once, for the whole message: its entries are sorted (by
 * seq, then by their place in the message), a repeat within the message and a seq already in
 * flight are dropped (the first of a repeat is kept), and the rest, the candidates, join the
 * in-flight set in one merge: O(n log n) for n entries, whatever their order. Then a slice of at
 * most HD__SRV_REPORT_SLICE candidates at a time: the store says which it still holds (the others
 * are answered DONE at once) and those become one batch for on_consumed. A message with more
 * candidates than one slice (or one that arrives while another is being worked through) is
 * copied into a report and worked through a slice per loop turn, its connection's reads held
 * meanwhile (so a client cannot queue reports faster than they are worked through): one message,
 * however large, never holds the loop for more than one slice. */

struct hd__report {
  hd__deferred_t work;      /* the next slice, after this loop turn */
  hd__server_events_t *ev;
  hd__session_t *ss;
  hd__report_t *next;       /* the session's next report */
  size_t n, done;           /* candidates, and how many of them went through */
  uint64_t *seq;            /* the n candidates' seqs, ascending */
  uint32_t *end;            /* where each one's data ends in `data` */
  uint8_t *data;
};

static int scratch_reserve(hd__server_events_t *ev, size_t n) {
  if (n <= ev->scr_cap) return 0;
  size_t cap = ev->scr_cap ? ev->scr_cap : 64;
  while (cap < n) cap *= 2;
  uint64_t *seqs = realloc(ev->scr_seqs, 2 * cap * sizeof *seqs);
  if (seqs != NULL) ev->scr_seqs = seqs;
  hd__entry_t *ents = realloc(ev->scr_entries, cap * sizeof *ents);
  if (ents != NULL) ev->scr_entries = ents;
  size_t *plen = realloc(ev->scr_plen, cap * sizeof *plen);
  if (plen != NULL) ev->scr_plen = plen;
  if (seqs == NULL || ents == NULL || plen == NULL) {
    return hd__error(HD_ENOMEM, "out of memory reading a consumption report");
  }
  ev->scr_cap = cap;
  return 0;
}

/* By seq, then by place in the message (kept in created_ms, which CONSUMED does not use). */
static int cmp_entry(const void *a, const void *b) {
  const hd__entry_t *x = a, *y = b;
  if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
  return x->created_ms < y->created_ms ? -1 : x->created_ms > y->created_ms;
}

typedef struct read_ctx {
  hd__server_events_t *ev;
  size_t cursor;
  hd_consumed_t *b; /* pass 2 */
  uint8_t *bytes;   /* pass 2: where the next payload goes */
} read_ctx_t;

/* scr_plen of a candidate that is a notice: deleted and confirmed, never the application's */
#define PLEN_NOTICE (SIZE_MAX - 1)

/* Pass 1: which candidates are held, and their payload sizes (reads keep the order given). */
static int measure_row(void *data, const hd__store_event_t *row) {
  read_ctx_t *r = data;
  while (r->ev->scr_seqs[r->cursor] != row->seq) r->cursor++;
  r->ev->scr_plen[r->cursor] = row->kind == HD__STORE_KIND_NOTICE ? PLEN_NOTICE : row->payload_len;
  r->ev->scr_entries[r->cursor].created_ms = (uint64_t)row->created_ms;
  r->cursor++;
  return 0;
}

/* Pass 2: the payloads, straight into the batch. */
static int copy_row(void *data, const hd__store_event_t *ev) {
  read_ctx_t *r = data;
  while (r->cursor < r->b->count && r->b->ev[r->cursor].seq != ev->seq) r->cursor++;
  if (r->cursor == r->b->count) return 1;
  hd_event_info_t *e = &r->b->ev[r->cursor++];
  if (ev->payload_len != e->payload_len) return 0; /* cannot happen: not in flight elsewhere */
  memcpy(r->bytes, ev->payload, ev->payload_len);
  e->payload = r->bytes;
  r->bytes += ev->payload_len;
  return 0;
}

static hd_consumed_t *batch_build(hd__server_events_t *ev, hd__server_user_t *u, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += ev->scr_plen[i] + ev->scr_entries[i].len;
  size_t head = sizeof(hd_consumed_t);
  size_t infos = n * sizeof(hd_event_info_t);
  size_t states = n * sizeof(_Atomic unsigned char);
  hd_consumed_t *b = malloc(head + infos + states + bytes);
  if (b == NULL) {
    hd__error(HD_ENOMEM, "out of memory for a batch of %zu events (%zu bytes)", n, bytes);
    return NULL;
  }
  memset(b, 0, head);
  b->ev = (hd_event_info_t *)(void *)((char *)b + head);
  b->state = (_Atomic unsigned char *)((char *)b->ev + infos);
  uint8_t *p = (uint8_t *)b->state + states;
  b->task.fn = batch_run;
  b->owner = ev;
  b->anchor = ev->anchor;
  memcpy(b->user, u->pk, HD_PUBLICKEY_BYTES);
  b->count = n;
  atomic_init(&b->refs, 1);
  atomic_init(&b->claimed, 0);
  atomic_init(&b->task_queued, 0);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t *e = &b->ev[i];
    const hd__entry_t *c = &ev->scr_entries[i];
    atomic_init(&b->state[i], ST_OPEN);
    e->seq = c->seq;
    e->created_ms = (int64_t)c->created_ms;
    e->payload_len = ev->scr_plen[i];
    e->payload = NULL;
    e->data_len = c->len;
    e->data = c->len ? p : NULL;
    if (c->len) memcpy(p, c->data, c->len);
    p += c->len;
  }
  read_ctx_t r = {ev, 0, b, p};
  int rc = ev->store->vt->read_events(ev->store, u->pk, ev->scr_seqs, n, copy_row, &r);
  if (rc < 0) {
    free(b);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (b->ev[i].payload != NULL) continue;
    /* an admin delete committed between the two reads: the event is gone, its payload with it;
     * completing it is answered DONE like any event the store no longer holds */
    b->ev[i].payload = r.bytes; /* a valid pointer */
    b->ev[i].payload_len = 0;
  }
  return b;
}

/* The message's entries into scr_entries, sorted by seq, without repeats (the first one in the
 * message is kept) and without the seqs already in flight; their seqs into scr_seqs. Returns how
 * many are left. */
static size_t candidates(hd__server_events_t *ev, const hd__server_user_t *u,
                         hd__entry_iter_t *it) {
  hd__entry_t *e = ev->scr_entries, x;
  size_t n = 0;
  int sorted = 1;
  while (hd__msg_entries_next(it, &x)) {
    x.created_ms = n;
    if (n > 0 && x.seq <= e[n - 1].seq) sorted = 0;
    e[n++] = x;
  }
  if (!sorted) qsort(e, n, sizeof *e, cmp_entry);
  size_t k = 0, at = 0;
  uint64_t prev = 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t seq = e[i].seq;
    if (i > 0 && seq == prev) continue;
    prev = seq;
    at = lower_bound(u->inflight, at, u->n_inflight, seq);
    if (at < u->n_inflight && u->inflight[at] == seq) continue;
    ev->scr_seqs[k] = seq;
    e[k++] = e[i];
  }
  return k;
}

/* One slice: the candidates in scr_entries and scr_seqs [0, k), in flight already. Those the
 * store does not hold any more are answered DONE and leave the set; the held ones become a batch,
 * returned for the caller to hand over once its own bookkeeping is done. NULL: none is held, or
 * a failure (logged; the slice left the set, the client may report it again). */
static hd_consumed_t *slice_run(hd__server_events_t *ev, hd__session_t *ss, size_t k) {
  hd__server_user_t *u = ss->user;
  for (size_t i = 0; i < k; i++) ev->scr_plen[i] = SIZE_MAX;
  read_ctx_t r = {ev, 0, NULL, NULL};
  int rc = ev->store->vt->read_events(ev->store, u->pk, ev->scr_seqs, k, measure_row, &r);
  if (rc < 0) {
    hd__log(ev->rt, HD_LOG_ERROR, "%s: reading reported events: %s", ss->conn->peer,
            hd_last_error_message());
    inflight_remove_sorted(u, ev->scr_seqs, k);
    return NULL;
  }
  /* split: held ones stay in front (in order); the others are finished already */
  size_t held = 0, gone = 0;
  uint64_t *gone_seqs = ev->scr_seqs + ev->scr_cap;
  for (size_t i = 0; i < k; i++) {
    if (ev->scr_plen[i] == SIZE_MAX) {
      gone_seqs[gone++] = ev->scr_seqs[i];
      continue;
    }
    if (ev->scr_plen[i] == PLEN_NOTICE) {
      /* in flight already: DONE follows the delete's commit, as for a completed event */
      if (queue_delete(ev, u, ev->scr_seqs[i]) != 0) inflight_remove_sorted(u, &ev->scr_seqs[i], 1);
      continue;
    }
    ev->scr_seqs[held] = ev->scr_seqs[i];
    ev->scr_entries[held] = ev->scr_entries[i];
    ev->scr_plen[held] = ev->scr_plen[i];
    held++;
  }
  if (gone) {
    inflight_remove_sorted(u, gone_seqs, gone);
    hd__consumed_send_done(u, gone_seqs, gone);
  }
  hd__log(ev->rt, HD_LOG_DEBUG, "%s: %zu reported events to the application, %zu already "
          "finished (DONE)", ss->conn->peer, held, gone);
  if (held == 0) return NULL;
  hd_consumed_t *b = batch_build(ev, u, held);
  if (b == NULL) {
    hd__log(ev->rt, HD_LOG_ERROR, "%s: cannot hand %zu consumed events over: %s", ss->conn->peer,
            held, hd_last_error_message());
    inflight_remove_sorted(u, ev->scr_seqs, held);
    return NULL;
  }
  hd__anchor_ref(ev->anchor);
  hd__queue_insert_tail(&ev->batches, &b->node);
  return b;
}

/* The application may do anything in on_consumed (complete the batch, which may free it, at
 * once): nothing is touched after the call. */
static void hand_over(hd__server_events_t *ev, hd__server_user_t *u, hd_consumed_t *b) {
  if (ev->on_consumed != NULL) ev->on_consumed(ev->user_data, u->pk, b);
  else hd_consumed_complete_all(b, 1);
}

static void report_work(hd__deferred_t *d);

/* The session's first report is done: the next one goes on, or the connection is read again. */
static void report_pop(hd__session_t *ss) {
  hd__report_t *r = ss->reports;
  ss->reports = r->next;
  free(r);
  if (ss->reports != NULL) hd__runtime_defer(ss->ev->rt, &ss->reports->work);
  else hd__conn_hold_reads(ss->conn, 0);
}

/* Loop, after a turn: the next slice of the session's first report. */
static void report_work(hd__deferred_t *d) {
  hd__report_t *r = hd__container_of(d, hd__report_t, work);
  hd__server_events_t *ev = r->ev;
  hd__session_t *ss = r->ss;
  hd__server_user_t *u = ss->user;
  /* closing: the session closes soon and drops the report (its events leave the set) */
  if (ev->closing || hd__conn_out(ss->conn) == NULL) return;
  size_t k = r->n - r->done;
  if (k > HD__SRV_REPORT_SLICE) k = HD__SRV_REPORT_SLICE;
  for (size_t i = 0; i < k; i++) { /* the scratch holds a whole message: room for a slice */
    size_t j = r->done + i, from = j ? r->end[j - 1] : 0;
    ev->scr_seqs[i] = r->seq[j];
    ev->scr_entries[i] = (hd__entry_t){.seq = r->seq[j], .data = r->data + from, .len = r->end[j] - from};
  }
  r->done += k;
  hd_consumed_t *b = slice_run(ev, ss, k);
  if (r->done < r->n) hd__runtime_defer(ev->rt, &r->work);
  else report_pop(ss);
  if (b != NULL) hand_over(ev, u, b);
}

/* Copies the k candidates (scr_entries) into a report at the end of the session's queue. */
static void report_queue(hd__server_events_t *ev, hd__session_t *ss, size_t k) {
  size_t bytes = 0;
  for (size_t i = 0; i < k; i++) bytes += ev->scr_entries[i].len;
  hd__report_t *r = malloc(sizeof *r + k * (sizeof *r->seq + sizeof *r->end) + bytes);
  if (r == NULL) {
    inflight_remove_sorted(ss->user, ev->scr_seqs, k);
    hd__conn_close(ss->conn, HD_ENOMEM, "out of memory queueing a consumption report");
    return;
  }
  r->seq = (uint64_t *)(void *)(r + 1);
  r->end = (uint32_t *)(void *)(r->seq + k);
  r->data = (uint8_t *)(r->end + k);
  size_t off = 0;
  for (size_t i = 0; i < k; i++) {
    const hd__entry_t *e = &ev->scr_entries[i];
    r->seq[i] = e->seq;
    if (e->len) memcpy(r->data + off, e->data, e->len);
    off += e->len;
    r->end[i] = (uint32_t)off; /* a message is below 4 GiB */
  }
  r->ev = ev;
  r->ss = ss;
  r->next = NULL;
  r->n = k;
  r->done = 0;
  hd__deferred_init(&r->work, report_work);
  hd__report_t **tail = &ss->reports;
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = r;
  if (ss->reports == r) {
    hd__runtime_defer(ev->rt, &r->work);
    hd__conn_hold_reads(ss->conn, 1);
  }
}

void hd__consumed_report(hd__server_events_t *ev, hd__session_t *ss, const uint8_t *body,
                         size_t len) {
  hd__server_user_t *u = ss->user;
  hd__conn_t *c = ss->conn;
  hd__entry_iter_t it;
  uint64_t count;
  if (hd__msg_entries_begin(&it, HD__MSG_CONSUMED, body, len, &count) != 0) {
    hd__conn_fail(c, HD_EPROTO, hd_last_error_message()); /* "CONSUMED: <the fault>" */
    return;
  }
  ev->n_consumed += count;
  if (count == 0 || ev->closing) return;
  if (scratch_reserve(ev, (size_t)count) != 0) {
    hd__conn_close(c, HD_ENOMEM, "out of memory reading CONSUMED");
    return;
  }
  size_t k = candidates(ev, u, &it);
  hd__log(ev->rt, HD_LOG_DEBUG, "%s: CONSUMED %llu events, %zu new (the others repeat or are in "
          "flight already)%s", c->peer, (unsigned long long)count, k,
          k > HD__SRV_REPORT_SLICE || ss->reports != NULL ? ": worked through in slices" : "");
  if (k == 0) return;
  if (inflight_add_sorted(u, ev->scr_seqs, k) != 0) {
    hd__conn_close(c, HD_ENOMEM, "out of memory reading CONSUMED");
    return;
  }
  if (ss->reports != NULL || k > HD__SRV_REPORT_SLICE) {
    report_queue(ev, ss, k);
    return;
  }
  hd_consumed_t *b = slice_run(ev, ss, k);
  if (b != NULL) hand_over(ev, u, b);
}

void hd__consumed_session_close(hd__server_events_t *ev, hd__session_t *ss) {
  hd__report_t *r;
  while ((r = ss->reports) != NULL) {
    ss->reports = r->next;
    hd__runtime_undefer(ev->rt, &r->work);
    /* not worked through: the client reports them again on its next connection */
    inflight_remove_sorted(ss->user, r->seq + r->done, r->n - r->done);
    free(r);
  }
}
