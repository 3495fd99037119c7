/* Consumption reports: CONSUMED from a client, hd_consumed_t batches handed to on_consumed,
 * their completions (any thread, exactly once per event), the grouped deletes and DONE.
 *
 * A user's in-flight set holds the seqs that sit in a batch or in a delete not committed yet:
 * a report of one of them is a duplicate and is ignored; a report of an event the store does
 * not hold any more is answered DONE at once (idempotent). An ok completion joins the user's
 * delete list; one delete per user per loop iteration goes to the store, and DONE follows its
 * commit. A failed completion just leaves the in-flight set, so the client can report it again.
 *
 * A batch is one allocation: header, event infos, per-event state, payloads and client data.
 * Completions claim an event with a compare-and-swap on its state (so HD_EALREADY is exact
 * from any thread) and wake the loop with the batch's own task (posted once until it runs), so
 * completing allocates nothing. The batch is reference-counted: the loop holds it until every
 * event is processed, and each completion call holds it for its duration. After the server
 * finished, a batch is orphaned: completions only count, and the last one frees it. */
#include "server_impl.h"

#include <stdlib.h>
#include <string.h>

enum { ST_OPEN = 0, ST_OK = 1, ST_FAIL = 2, ST_DONE = 3 };

struct hd_consumed {
  hd__task_t task;            /* runs the claimed completions on the loop */
  hd__srv_shared_t *shared;
  hd_server_t *s;             /* valid while not orphaned */
  uint8_t user[HD_PUBLICKEY_BYTES];
  size_t count;
  atomic_int refs;            /* 1 for the loop until every event is processed + callers */
  atomic_size_t claimed;
  atomic_int task_queued;
  int orphan;                 /* under shared->mu */
  int hold_dropped;           /* under shared->mu */
  size_t processed, scan_from; /* loop */
  struct hd_consumed *next, *prev; /* the server's live batches (loop) */
  hd_event_info_t *ev;
  _Atomic unsigned char *state;
};

/* ---- In-flight set: a sorted array (reports and completions come mostly in order) ---------- */

static size_t lower_bound(const hd__srv_user_t *u, uint64_t seq) {
  size_t lo = 0, hi = u->n_inflight;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (u->inflight[mid] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static int inflight_has(const hd__srv_user_t *u, uint64_t seq) {
  size_t i = lower_bound(u, seq);
  return i < u->n_inflight && u->inflight[i] == seq;
}

static int inflight_add(hd__srv_user_t *u, uint64_t seq) {
  if (u->n_inflight == u->cap_inflight) {
    size_t cap = u->cap_inflight ? 2 * u->cap_inflight : 64;
    uint64_t *p = realloc(u->inflight, cap * sizeof *p);
    if (p == NULL) return hd__error(HD_ENOMEM, "out of memory tracking reported events");
    u->inflight = p;
    u->cap_inflight = cap;
  }
  size_t i = lower_bound(u, seq);
  memmove(u->inflight + i + 1, u->inflight + i, (u->n_inflight - i) * sizeof(uint64_t));
  u->inflight[i] = seq;
  u->n_inflight++;
  return 0;
}

static void inflight_remove(hd__srv_user_t *u, uint64_t seq) {
  size_t i = lower_bound(u, seq);
  if (i == u->n_inflight || u->inflight[i] != seq) return;
  memmove(u->inflight + i, u->inflight + i + 1, (u->n_inflight - i - 1) * sizeof(uint64_t));
  u->n_inflight--;
  if (u->n_inflight == 0 && u->cap_inflight > 1024) { /* an idle user stays small */
    free(u->inflight);
    u->inflight = NULL;
    u->cap_inflight = 0;
  }
}

/* ---- DONE --------------------------------------------------------------------------------- */

void hd__send_done(hd_server_t *s, hd__srv_user_t *u, const uint64_t *seqs, size_t n) {
  (void)s;
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
  hd_server_t *s;
  hd__srv_user_t *u; /* kept alive: its seqs stay in flight until this completes */
  size_t n;
  uint64_t seqs[];
} del_ctx_t;

static void del_done(void *data, int status, uint64_t value) {
  del_ctx_t *d = data;
  hd_server_t *s = d->s;
  hd__srv_user_t *u = d->u;
  (void)value;
  if (status == 0) {
    s->n_confirmed += d->n;
  } else {
    hd__log(s->rt, HD_LOG_WARN, "deleting %zu consumed events failed (%s: %s): they stay and are "
            "confirmed when the client reports them again", d->n, hd_err_name(status),
            hd_last_error_message());
  }
  for (size_t i = 0; i < d->n; i++) inflight_remove(u, d->seqs[i]);
  if (status == 0) hd__send_done(s, u, d->seqs, d->n);
  free(d);
  hd__srv_user_maybe_free(s, u);
}

static void submit_delete(hd_server_t *s, hd__srv_user_t *u) {
  size_t n = u->n_del;
  u->n_del = 0;
  del_ctx_t *d = n ? malloc(sizeof *d + n * sizeof(uint64_t)) : NULL;
  int rc = d == NULL ? hd__error(HD_ENOMEM, "out of memory deleting events") : 0;
  if (d != NULL) {
    d->s = s;
    d->u = u;
    d->n = n;
    memcpy(d->seqs, u->del, n * sizeof(uint64_t));
    rc = s->store == NULL ? hd__error(HD_ECLOSED, "store closed")
                          : s->store->vt->delete_events(s->store, u->pk, d->seqs, n, del_done, d);
  }
  if (rc != 0) {
    if (d != NULL) {
      hd__log(s->rt, HD_LOG_WARN, "cannot delete %zu consumed events: %s", n,
              hd_last_error_message());
      for (size_t i = 0; i < n; i++) inflight_remove(u, d->seqs[i]);
    }
    free(d);
  }
}

void hd__consumed_flush(hd_server_t *s) {
  hd__srv_user_t *u = s->del_head;
  s->del_head = NULL;
  while (u != NULL) {
    hd__srv_user_t *next = u->del_next;
    u->del_next = NULL;
    u->del_queued = 0;
    if (u->n_del) submit_delete(s, u);
    hd__srv_user_maybe_free(s, u);
    u = next;
  }
}

static void del_flush_deferred(hd__deferred_t *d) {
  hd_server_t *s = (hd_server_t *)(void *)((char *)d - offsetof(hd_server_t, del_flush));
  hd__consumed_flush(s);
}

static int queue_delete(hd_server_t *s, hd__srv_user_t *u, uint64_t seq) {
  if (u->n_del == u->cap_del) {
    size_t cap = u->cap_del ? 2 * u->cap_del : 64;
    uint64_t *p = realloc(u->del, cap * sizeof *p);
    if (p == NULL) return hd__error(HD_ENOMEM, "out of memory queueing a delete");
    u->del = p;
    u->cap_del = cap;
  }
  u->del[u->n_del++] = seq;
  if (!u->del_queued) {
    u->del_queued = 1;
    u->del_next = s->del_head;
    s->del_head = u;
  }
  s->del_flush.fn = del_flush_deferred;
  hd__runtime_defer(s->rt, &s->del_flush);
  return 0;
}

/* ---- Batches: lifetime ------------------------------------------------------------------- */

static void batch_unref(hd_consumed_t *b) {
  if (atomic_fetch_sub(&b->refs, 1) != 1) return;
  hd__srv_shared_unref(b->shared);
  free(b);
}

static void batch_unlink(hd_server_t *s, hd_consumed_t *b) {
  if (b->prev) b->prev->next = b->next;
  else s->batches = b->next;
  if (b->next) b->next->prev = b->prev;
  b->next = b->prev = NULL;
}

/* Loop: applies the completions claimed since the last run. */
static void batch_run(hd__task_t *t, int cancelled) {
  hd_consumed_t *b = (hd_consumed_t *)t;
  if (cancelled) return; /* the server finished: the batch is orphaned, completions free it */
  atomic_store(&b->task_queued, 0);
  hd_server_t *s = b->s;
  hd__srv_user_t *u = hd__srv_user_get(s, b->user, 0);
  int all_done = 1;
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
    if (st == ST_OK && queue_delete(s, u, b->ev[i].seq) == 0) continue;
    inflight_remove(u, b->ev[i].seq); /* failed: kept, and may be reported again */
  }
  if (u != NULL) hd__srv_user_maybe_free(s, u);
  if (b->processed < b->count) return;
  batch_unlink(s, b);
  uv_mutex_lock(&b->shared->mu);
  int drop = !b->hold_dropped;
  b->hold_dropped = 1;
  uv_mutex_unlock(&b->shared->mu);
  if (drop) batch_unref(b);
}

/* Any thread, after claiming events: let the loop apply them (or free an orphan). */
static void batch_notify(hd_consumed_t *b) {
  hd__srv_shared_t *sh = b->shared;
  int run_inline = 0, drop = 0;
  uv_mutex_lock(&sh->mu);
  if (b->orphan) {
    drop = atomic_load(&b->claimed) == b->count && !b->hold_dropped;
    if (drop) b->hold_dropped = 1;
  } else if (atomic_exchange(&b->task_queued, 1) == 0) {
    if (hd__runtime_on_loop(sh->rt)) run_inline = 1;
    else hd__runtime_post(sh->rt, &b->task);
  }
  uv_mutex_unlock(&sh->mu);
  if (run_inline) batch_run(&b->task, 0); /* the loop thread: the server cannot vanish now */
  if (drop) batch_unref(b);
}

void hd__consumed_orphan_all(hd_server_t *s) {
  hd__srv_shared_t *sh = s->shared;
  uv_mutex_lock(&sh->mu);
  sh->alive = 0;
  hd_consumed_t *b = s->batches, *drop = NULL;
  size_t n = 0;
  s->batches = NULL;
  while (b != NULL) {
    hd_consumed_t *next = b->next;
    b->orphan = 1;
    b->s = NULL;
    n++;
    if (atomic_load(&b->claimed) == b->count && !b->hold_dropped) {
      b->hold_dropped = 1;
      b->next = drop; /* claimed, not applied: nothing is left to wait for */
      drop = b;
    }
    b = next;
  }
  uv_mutex_unlock(&sh->mu);
  if (n) {
    hd__log(s->rt, HD_LOG_WARN, "closed with %zu consumed batches not completed by the "
            "application: their events stay stored and are reported again", n);
  }
  while (drop != NULL) {
    hd_consumed_t *next = drop->next;
    batch_unref(drop);
    drop = next;
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

/* ---- CONSUMED ------------------------------------------------------------------------------- */

static int scratch_reserve(hd_server_t *s, size_t n) {
  if (n <= s->scr_cap) return 0;
  size_t cap = s->scr_cap ? s->scr_cap : 64;
  while (cap < n) cap *= 2;
  uint64_t *seqs = realloc(s->scr_seqs, 2 * cap * sizeof *seqs);
  if (seqs != NULL) s->scr_seqs = seqs;
  hd__entry_t *ents = realloc(s->scr_entries, cap * sizeof *ents);
  if (ents != NULL) s->scr_entries = ents;
  size_t *plen = realloc(s->scr_plen, cap * sizeof *plen);
  if (plen != NULL) s->scr_plen = plen;
  if (seqs == NULL || ents == NULL || plen == NULL) {
    return hd__error(HD_ENOMEM, "out of memory reading a consumption report");
  }
  s->scr_cap = cap;
  return 0;
}

static int cmp_entry(const void *a, const void *b) {
  uint64_t x = ((const hd__entry_t *)a)->seq, y = ((const hd__entry_t *)b)->seq;
  return x < y ? -1 : x > y;
}

typedef struct read_ctx {
  hd_server_t *s;
  size_t cursor;
  hd_consumed_t *b; /* pass 2 */
  uint8_t *bytes;   /* pass 2: where the next payload goes */
} read_ctx_t;

/* Pass 1: which candidates are held, and their payload sizes (reads keep the order given). */
static int measure_row(void *data, const hd__store_event_t *ev) {
  read_ctx_t *r = data;
  while (r->s->scr_seqs[r->cursor] != ev->seq) r->cursor++;
  r->s->scr_plen[r->cursor] = ev->payload_len;
  r->s->scr_entries[r->cursor].created_ms = (uint64_t)ev->created_ms;
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

static hd_consumed_t *batch_build(hd_server_t *s, hd__srv_user_t *u, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += s->scr_plen[i] + s->scr_entries[i].len;
  size_t head = sizeof(hd_consumed_t);
  size_t infos = n * sizeof(hd_event_info_t);
  size_t states = n * sizeof(_Atomic unsigned char);
  hd_consumed_t *b = malloc(head + infos + states + bytes);
  if (b == NULL) return NULL;
  memset(b, 0, head);
  b->ev = (hd_event_info_t *)(void *)((char *)b + head);
  b->state = (_Atomic unsigned char *)((char *)b->ev + infos);
  uint8_t *p = (uint8_t *)b->state + states;
  b->task.fn = batch_run;
  b->s = s;
  b->shared = s->shared;
  memcpy(b->user, u->pk, HD_PUBLICKEY_BYTES);
  b->count = n;
  atomic_init(&b->refs, 1);
  atomic_init(&b->claimed, 0);
  atomic_init(&b->task_queued, 0);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t *e = &b->ev[i];
    const hd__entry_t *c = &s->scr_entries[i];
    atomic_init(&b->state[i], ST_OPEN);
    e->seq = c->seq;
    e->created_ms = (int64_t)c->created_ms;
    e->payload_len = s->scr_plen[i];
    e->payload = NULL;
    e->data_len = c->len;
    e->data = c->len ? p : NULL;
    if (c->len) memcpy(p, c->data, c->len);
    p += c->len;
  }
  read_ctx_t r = {s, 0, b, p};
  int rc = s->store->vt->read_events(s->store, u->pk, s->scr_seqs, n, copy_row, &r);
  if (rc < 0) {
    free(b);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    if (b->ev[i].payload == NULL) b->ev[i].payload = r.bytes; /* empty: a valid pointer */
  }
  return b;
}

void hd__consumed_report(hd_server_t *s, hd__session_t *ss, const uint8_t *body, size_t len) {
  hd__srv_user_t *u = ss->user;
  hd__conn_t *c = ss->conn;
  hd__entry_iter_t it;
  uint64_t count;
  if (hd__msg_entries_begin(&it, HD__MSG_CONSUMED, body, len, &count) != 0) {
    hd__conn_close(c, HD_EPROTO, "malformed CONSUMED");
    return;
  }
  s->n_consumed += count;
  if (count == 0 || s->store == NULL || s->store_closing) return;
  if (scratch_reserve(s, (size_t)count) != 0) {
    hd__conn_close(c, HD_ENOMEM, "out of memory reading CONSUMED");
    return;
  }
  /* candidates: not in flight already (duplicates of a report awaiting the application or a
   * delete are ignored); they enter the in-flight set now so a repeat within the message is too */
  size_t k = 0;
  int sorted = 1;
  hd__entry_t e;
  while (hd__msg_entries_next(&it, &e)) {
    if (inflight_has(u, e.seq) || inflight_add(u, e.seq) != 0) continue;
    if (k > 0 && e.seq < s->scr_entries[k - 1].seq) sorted = 0;
    s->scr_entries[k++] = e;
  }
  if (k == 0) return;
  if (!sorted) qsort(s->scr_entries, k, sizeof *s->scr_entries, cmp_entry);
  for (size_t i = 0; i < k; i++) {
    s->scr_seqs[i] = s->scr_entries[i].seq;
    s->scr_plen[i] = SIZE_MAX;
  }
  read_ctx_t r = {s, 0, NULL, NULL};
  int rc = s->store->vt->read_events(s->store, u->pk, s->scr_seqs, k, measure_row, &r);
  if (rc < 0) {
    hd__log(s->rt, HD_LOG_ERROR, "%s: reading reported events: %s", c->peer,
            hd_last_error_message());
    for (size_t i = 0; i < k; i++) inflight_remove(u, s->scr_seqs[i]);
    return;
  }
  /* split: held ones stay in front (in order); the others are finished already */
  size_t held = 0, gone = 0;
  uint64_t *gone_seqs = s->scr_seqs + s->scr_cap;
  for (size_t i = 0; i < k; i++) {
    if (s->scr_plen[i] == SIZE_MAX) {
      gone_seqs[gone++] = s->scr_seqs[i];
      inflight_remove(u, s->scr_seqs[i]);
      continue;
    }
    s->scr_seqs[held] = s->scr_seqs[i];
    s->scr_entries[held] = s->scr_entries[i];
    s->scr_plen[held] = s->scr_plen[i];
    held++;
  }
  if (gone) hd__send_done(s, u, gone_seqs, gone);
  hd__log(s->rt, HD_LOG_DEBUG, "%s: CONSUMED %llu events: %zu to the application, %zu already "
          "finished (DONE), %llu duplicates", c->peer, (unsigned long long)count, held, gone,
          (unsigned long long)(count - k));
  if (held == 0) return;
  hd_consumed_t *b = batch_build(s, u, held);
  if (b == NULL) {
    hd__log(s->rt, HD_LOG_ERROR, "%s: cannot hand %zu consumed events over: %s", c->peer, held,
            hd_last_error_message());
    for (size_t i = 0; i < held; i++) inflight_remove(u, s->scr_seqs[i]);
    return;
  }
  atomic_fetch_add(&s->shared->refs, 1);
  b->next = s->batches;
  if (s->batches) s->batches->prev = b;
  s->batches = b;
  /* the batch may be completed (and freed) inside the callback: not touched after it */
  if (s->on_consumed != NULL) s->on_consumed(s->user_data, u->pk, b);
  else hd_consumed_complete_all(b, 1);
}
