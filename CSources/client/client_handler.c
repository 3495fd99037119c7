/* Handing events to the client's on_event: in sequence order, one at a time (the next only after
 * the previous completed), after the pause when events arrive to an idle handler, a failed event
 * again after a doubling backoff before any later one (client_events.h). Each call is counted
 * durably before it happens, so that after max_attempts calls (those that crashed the process
 * too) the event is given up on: recorded failed and reported in FAILED, and later events flow on
 * (docs/QUEUES.md "Poison events"). A completion is recorded consumed (or failed) before it is
 * reported; a record that fails is tried again until it works (below).
 *
 * Events are read from the store a small page at a time, so memory stays bounded whatever the
 * backlog; only committed events are read, so an event is handed out only once it is durable. */
#include "client_events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PAGE_EVENTS 32
#define PAGE_BYTES (256 * 1024)

/* One page read into the ready queue: how many payload bytes, and whether an event failed. */
typedef struct fill_ctx {
  size_t bytes;
  int error;
  hd__client_events_t *ev;
} fill_ctx_t;

/* 1 if `e` is the event `row` holds (after an epoch change or a change of server store the
 * cursors start again: the event out at the handler and those whose consumption is not
 * committed yet are read once more). */
static int same_event(const hd_event_t *e, const hd__store_event_t *row) {
  /* an orphan row has no store: the event out may be the one that became it */
  return e != NULL && e->seq == row->seq && e->created_ms == row->created_ms &&
         (row->orphan != 0 || e->store == row->store);
}

static int listed(const hd__queue_t *list, const hd__store_event_t *row) {
  hd__queue_t *q;
  hd__queue_foreach(q, list) {
    if (same_event(hd__container_of(q, hd_event_t, node), row)) return 1;
  }
  return 0;
}

/* The handler has it, or handled it and its record is on its way or waits to be tried again. */
static int out_already(hd__client_events_t *ev, const hd__store_event_t *row) {
  return same_event(ev->current, row) || listed(&ev->marking, row) || listed(&ev->unrecorded, row);
}

static int fill_one(void *data, const hd__store_event_t *row) {
  fill_ctx_t *f = data;
  hd__client_events_t *ev = f->ev;
  if (row->orphan != 0) {
    ev->fetched_orphan = row->orphan;
  } else {
    ev->fetched_store = row->store;
    ev->fetched = row->seq;
  }
  if (out_already(ev, row)) return 0;
  hd_event_t *e = hd__event_new(ev->anchor, row);
  if (e == NULL) {
    f->error = HD_ENOMEM;
    return 1;
  }
  hd__queue_insert_tail(&ev->ready, &e->node);
  f->bytes += row->payload_len;
  return f->bytes >= PAGE_BYTES; /* a page of large events stops early */
}

static void fill_page(hd__client_events_t *ev) {
  fill_ctx_t f = {0, 0, ev};
  /* orphans (events the server's store lost) first: they were received before the others */
  int orphans = ev->orphans_more;
  int n = orphans ? ev->store->vt->list_orphans(ev->store, ev->fetched_orphan, PAGE_EVENTS,
                                                fill_one, &f)
                  : ev->store->vt->list_unhandled(ev->store, ev->fetched_store, ev->fetched,
                                                  PAGE_EVENTS, fill_one, &f);
  if (n < 0 || f.error != 0) {
    hd__log(ev->rt, HD_LOG_ERROR, "reading unhandled events failed: %s", hd_last_error_message());
    ev->more = ev->orphans_more = 0; /* tried again when the next events arrive */
    return;
  }
  if (n < PAGE_EVENTS && f.bytes < PAGE_BYTES) {
    if (orphans) ev->orphans_more = 0;
    else ev->more = 0;
  }
}

/* Reads pages until one gave an event (a page may hold only what is already out) or none is left. */
static void fill(hd__client_events_t *ev) {
  while (hd__queue_empty(&ev->ready) && (ev->more || ev->orphans_more)) fill_page(ev);
}

static void give_up(hd__client_events_t *ev, hd_event_t *e);

/* 1 if (store, seq) comes after (store2, seq2) in the handler's order. */
static int after(int64_t store, uint64_t seq, int64_t store2, uint64_t seq2) {
  return store > store2 || (store == store2 && seq > seq2);
}

/* The call counted, or needing no count (client_events.h): out it goes. */
static void call(hd__client_events_t *ev, hd_event_t *e, uint32_t attempt) {
  e->attempt = attempt;
  if (e->orphan == 0 && after(e->store, e->seq, ev->called_store, ev->called_seq)) {
    ev->called_store = e->store;
    ev->called_seq = e->seq;
  }
  atomic_store(&e->state, HD__EVENT_OUT);
  /* either may complete inline: the next one waits for next_d */
  if (e->kind != HD__STORE_KIND_NOTICE) {
    ev->on_event(ev->user_data, e);
  } else if (ev->on_notice != NULL) {
    ev->on_notice(ev->user_data, e);
  } else {
    hd_event_complete(e, 1, NULL, 0); /* nobody wants it: done, and the server is told */
  }
}

static void on_attempt_counted(void *data, int status, uint64_t value) {
  hd_event_t *e = data;
  hd__client_events_t *ev = e->anchor->owner;
  if (ev == NULL || ev->closing || ev->current != e) {
    hd__event_free(e); /* closed meanwhile: handed out again next time, counted again */
    return;
  }
  if (status != 0) {
    /* a full disk must not stop the handler as well (the events it holds are handled, as before
     * the count existed): the call goes ahead, counted in this process only, so only a crash of
     * the process in it goes uncounted */
    uint32_t counted = e->attempt != 0 ? e->attempt : e->stored_attempts;
    hd__log(ev->rt, HD_LOG_ERROR, "counting a handler call of event %llu failed (%s: %s): "
            "called, counted in memory only", (unsigned long long)e->seq, hd_err_name(status),
            hd_last_error_message());
    call(ev, e, counted + 1);
    return;
  }
  if (value == 0) {
    /* not held unhandled any more (a purge, or an epoch change made it an orphan: read again) */
    ev->current = NULL;
    hd__event_free(e);
    hd__runtime_defer(ev->rt, &ev->next_d);
    return;
  }
  if (ev->max_attempts != 0 && value > ev->max_attempts) {
    e->stored_attempts = (uint32_t)value;
    ev->current = NULL;
    give_up(ev, e);
    return;
  }
  call(ev, e, value > UINT32_MAX ? UINT32_MAX : (uint32_t)value);
}

static void hand_out(hd__client_events_t *ev) {
  if (ev->closing || ev->current != NULL || ev->timer_armed || ev->records_stuck) return;
  fill(ev);
  hd__queue_t *q = hd__queue_pop(&ev->ready);
  if (q == NULL) return; /* idle until events arrive */
  hd_event_t *e = hd__container_of(q, hd_event_t, node);
  /* the calls counted so far: this process's, or its row's */
  uint32_t counted = e->attempt != 0 ? e->attempt : e->stored_attempts;
  if (e->orphan != 0) {
    /* the orphans table keeps no count: an orphan's calls are counted in this process only */
    counted = e->attempt;
  } else if (e->attempt == 0 && e->store == ev->recv_store && e->seq > ev->recv_floor &&
             after(e->store, e->seq, ev->called_store, ev->called_seq)) {
    ev->current = e;
    call(ev, e, 1); /* the receive's commit counted this first call */
    return;
  }
  if (ev->max_attempts != 0 && counted >= ev->max_attempts) {
    give_up(ev, e); /* the last calls did not complete: they crashed the process */
    return;
  }
  ev->current = e;
  if (e->orphan != 0) {
    call(ev, e, counted + 1);
    return;
  }
  hd__store_event_t which = {.seq = e->seq, .created_ms = e->created_ms, .store = e->store};
  int rc = ev->store->vt->mark_attempt(ev->store, &which, on_attempt_counted, e);
  if (rc != 0) on_attempt_counted(e, rc, 0);
}

static void next_deferred(hd__deferred_t *d) {
  hand_out(hd__container_of(d, hd__client_events_t, next_d));
}

static void on_timer(uv_timer_t *t) {
  hd__client_events_t *ev = t->data;
  ev->timer_armed = 0;
  hand_out(ev);
}

static void wait_then_hand_out(hd__client_events_t *ev, uint32_t ms) {
  if (ms == 0) {
    hd__runtime_defer(ev->rt, &ev->next_d);
    return;
  }
  ev->timer_armed = 1;
  uv_timer_start(&ev->timer, on_timer, ms, 0);
}

void hd__client_handler_init(hd__client_events_t *ev) {
  uv_timer_init(ev->rt->loop, &ev->timer);
  ev->timer.data = ev;
  uv_timer_init(ev->rt->loop, &ev->record_timer);
  ev->record_timer.data = ev;
  hd__queue_init(&ev->unrecorded);
  hd__deferred_init(&ev->next_d, next_deferred);
  ev->backoff_ms = ev->retry_min_ms;
  ev->record_backoff_ms = ev->retry_min_ms;
  ev->more = ev->orphans_more = 1; /* whatever an earlier run left unhandled */
  hd__queue_init(&ev->marking);
}

void hd__client_handler_arrived(hd__client_events_t *ev) {
  ev->more = 1;
  if (ev->closing || ev->current != NULL || ev->timer_armed || ev->next_d.queued) return;
  if (!hd__queue_empty(&ev->ready)) return; /* not idle: a retry or a hand-out is on its way */
  /* the handler was idle: coalesce for the pause before the first of these is handed out */
  wait_then_hand_out(ev, ev->pause_ms);
}

static size_t drop_events(hd__queue_t *list) {
  size_t n = 0;
  hd__queue_t *q;
  for (; (q = hd__queue_pop(list)) != NULL; n++) hd__event_free(hd__container_of(q, hd_event_t, node));
  return n;
}

static void drop_ready(hd__client_events_t *ev) { drop_events(&ev->ready); }

/* Records not retried any more (close): the timer stops. */
static size_t drop_unrecorded(hd__client_events_t *ev) {
  if (ev->record_timer_armed) uv_timer_stop(&ev->record_timer);
  ev->record_timer_armed = 0;
  ev->record_backoff_ms = ev->retry_min_ms;
  return drop_events(&ev->unrecorded);
}

void hd__client_handler_rewound(hd__client_events_t *ev) {
  /* events above the floor moved to the orphans, events the loss brought back, or the events of
   * a server store seen before that is the current one again, may come in below the cursor, and
   * a purge took rows away: read everything again; out_already() skips what is out */
  drop_ready(ev);
  ev->fetched_store = 0;
  ev->fetched = 0;
  ev->fetched_orphan = 0;
  hd__client_handler_arrived(ev);
  ev->orphans_more = 1;
}

void hd__client_handler_stop(hd__client_events_t *ev) {
  hd__runtime_undefer(ev->rt, &ev->next_d);
  if (ev->timer_armed) uv_timer_stop(&ev->timer);
  ev->timer_armed = 0;
  drop_ready(ev);
  ev->current = NULL; /* the handler still has it: its completion frees it (anchor detached) */
  size_t n = drop_unrecorded(ev);
  if (n > 0) {
    hd__log(ev->rt, HD_LOG_WARN, "closing with %zu handled events whose consumption could not be "
            "recorded (%llu failed attempts): they are handed to the handler again at the next "
            "start", n, (unsigned long long)ev->record_failures);
  }
}

void hd__client_handler_start(hd__client_events_t *ev) {
  /* events already stored are handed out at once, with or without a server */
  hd__runtime_defer(ev->rt, &ev->next_d);
}

/* ---- recording a consumption (loop thread) -------------------------------------------------
 * A completed event is recorded consumed (mark_consumed) before it is reported. If that write
 * fails (above all a full disk: HD_ENOSPC), the event stays handled: it is kept in memory and
 * recorded again after a backoff (retry_min_ms doubling up to retry_max_ms) until that works,
 * then reported as usual. Meanwhile no event is handed out (each would only add to what cannot
 * be recorded). The store still holds the event unhandled, so only a restart before the record
 * works hands it to the handler again. */

static void on_marked(void *data, int status, uint64_t value);

static void record_failed(hd__client_events_t *ev, hd_event_t *e, int status) {
  ev->record_failures++;
  if (e->record_tries++ == 0) {
    hd__log(ev->rt, HD_LOG_ERROR, "recording event %llu %s failed (%s: %s): it is not "
            "handed to the handler again; recorded again after a backoff, and no event is handed "
            "out meanwhile", (unsigned long long)e->seq, e->dead ? "failed" : "consumed",
            hd_err_name(status), hd_last_error_message());
  }
  ev->records_stuck = 1;
  hd__queue_insert_tail(&ev->unrecorded, &e->node);
}

/* Records `e` consumed; the report follows the commit (on_marked). */
static void record_submit(hd__client_events_t *ev, hd_event_t *e) {
  /* the event as it was handed out: another event that got its number is never taken for it */
  hd__store_event_t which = {.seq = e->seq, .created_ms = e->created_ms, .orphan = e->orphan,
                             .store = e->store};
  int rc = e->dead ? ev->store->vt->mark_failed(ev->store, &which, e->attempt,
                                               (const char *)e->data, e->data_len, on_marked, e)
                   : ev->store->vt->mark_consumed(ev->store, &which, e->data, e->data_len,
                                                  on_marked, e);
  if (rc != 0) {
    record_failed(ev, e, rc);
    return;
  }
  hd__queue_insert_tail(&ev->marking, &e->node); /* until on_marked */
  if (e->record_tries > 0) ev->recording++;
}

static void on_record_timer(uv_timer_t *t);

/* After a record completed or failed: once no retried one is in flight, the next try after the
 * backoff, or, everything recorded, the handler goes on. */
static void records_settle(hd__client_events_t *ev) {
  if (!ev->records_stuck || ev->recording > 0 || ev->record_timer_armed) return;
  if (!hd__queue_empty(&ev->unrecorded)) {
    ev->record_timer_armed = 1;
    uv_timer_start(&ev->record_timer, on_record_timer, ev->record_backoff_ms, 0);
    ev->record_backoff_ms = hd__backoff_next(ev->record_backoff_ms, ev->retry_max_ms);
    return;
  }
  ev->records_stuck = 0;
  ev->record_backoff_ms = ev->retry_min_ms;
  hd__log(ev->rt, HD_LOG_WARN, "consumptions are recorded again (after %llu failed attempts in "
          "all): handing out events again", (unsigned long long)ev->record_failures);
  hd__runtime_defer(ev->rt, &ev->next_d);
}

static void on_record_timer(uv_timer_t *t) {
  hd__client_events_t *ev = t->data;
  ev->record_timer_armed = 0;
  hd__queue_t q;
  hd__queue_init(&q);
  hd__queue_move(&ev->unrecorded, &q);
  size_t n = 0;
  hd__queue_t *node;
  for (; (node = hd__queue_pop(&q)) != NULL; n++) {
    record_submit(ev, hd__container_of(node, hd_event_t, node));
  }
  hd__log(ev->rt, HD_LOG_WARN, "recording %zu consumed events again (%llu failed attempts so far)",
          n, (unsigned long long)ev->record_failures);
  records_settle(ev); /* every submission failed at once: the next try */
}

static void on_marked(void *data, int status, uint64_t value) {
  hd_event_t *e = data;
  hd__client_events_t *ev = e->anchor->owner;
  hd__queue_remove(&e->node); /* off ev->marking */
  if (ev != NULL && e->record_tries > 0) ev->recording--;
  if (ev == NULL || ev->closing) {
    /* closed: an event not recorded is handled again at the next start */
    hd__event_free(e);
    if (ev != NULL && !ev->closing) records_settle(ev);
    return;
  }
  if (status == 0 && value != 0 && e->dead) ev->dead++;
  if (status != 0) record_failed(ev, e, status);
  /* 0: not held (or consumed) any more (a purge); 2: an orphan, done and forgotten (the
   * server's store does not know it): nothing to report */
  else if (value != 1) hd__event_free(e);
  else hd__client_report_consumed(ev, e);
  records_settle(ev);
}

/* ---- completions (loop thread) --------------------------------------------------------- */

/* Gives up on `e` (its last attempt failed, it was rejected, or its calls ran out while they
 * crashed the process): recorded failed with its reason, reported in FAILED; the later events
 * flow on. */
static void give_up(hd__client_events_t *ev, hd_event_t *e) {
  if (e->attempt < e->stored_attempts) e->attempt = e->stored_attempts;
  if (e->data == NULL) {
    char text[64];
    int n = snprintf(text, sizeof text, "crashed or failed %u attempts", e->attempt);
    e->data = (uint8_t *)strdup(text);
    e->data_len = e->data != NULL ? (size_t)n : 0;
  }
  e->dead = 1;
  hd__log(ev->rt, HD_LOG_WARN, "event %llu failed for good after %u attempts (%.*s): reported "
          "failed, later events go on", (unsigned long long)e->seq, e->attempt,
          (int)e->data_len, e->data != NULL ? (const char *)e->data : "");
  ev->backoff_ms = ev->retry_min_ms;
  record_submit(ev, e);
  records_settle(ev);
  hd__runtime_defer(ev->rt, &ev->next_d);
}

/* A failed attempt: again after the backoff, before any later event. */
static void retry_later(hd__client_events_t *ev, hd_event_t *e) {
  atomic_store(&e->state, HD__EVENT_READY);
  hd__queue_insert_head(&ev->ready, &e->node); /* before any later event */
  hd__runtime_undefer(ev->rt, &ev->next_d);
  wait_then_hand_out(ev, ev->backoff_ms);
  ev->backoff_ms = hd__backoff_next(ev->backoff_ms, ev->retry_max_ms);
}

void hd__client_handler_completed(hd__client_events_t *ev, hd_event_t *e) {
  if (ev->current == e) ev->current = NULL;
  if (ev->closing) {
    hd__event_free(e);
    return;
  }
  if (e->ok) {
    if (e->kind != HD__STORE_KIND_NOTICE) ev->handled++;
    if (e->flags & HD__STORE_EV_REPEATED) ev->repeated++;
    ev->backoff_ms = ev->retry_min_ms;
    /* the event stays alive until the commit: its data goes into CONSUMED then */
    record_submit(ev, e);
    records_settle(ev);
    /* the next event need not wait for the commit; after this iteration, so that a handler
     * completing inline cannot recurse through a whole backlog */
    hd__runtime_defer(ev->rt, &ev->next_d);
    return;
  }
  if (!e->rejected) ev->failed++;
  if (e->rejected || (ev->max_attempts != 0 && e->attempt >= ev->max_attempts)) {
    give_up(ev, e);
    return;
  }
  hd__log(ev->rt, HD_LOG_DEBUG, "event %llu failed (attempt %u: %.*s); handled again in %u ms",
          (unsigned long long)e->seq, e->attempt, (int)e->data_len, (const char *)e->data,
          ev->backoff_ms);
  retry_later(ev, e);
}
