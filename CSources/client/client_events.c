/* The client's event state: the store, receiving EVENTS/DONE/PAUSE, flow control, close and
 * stats (client_events.h). */
#include "client_events.h"

#include "array.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_WINDOW 8192
#define DEFAULT_RETRY_MIN_MS 100
#define DEFAULT_RETRY_MAX_MS 30000

int hd__client_events_create(hd__client_events_t **out, hd__runtime_t *rt,
                             const hd_client_options_t *opts) {
  *out = NULL;
  hd__client_events_t *ev = calloc(1, sizeof *ev);
  if (ev == NULL) return hd__error(HD_ENOMEM, "out of memory creating the client");
  ev->rt = rt;
  ev->on_event = opts->on_event;
  ev->on_notice = opts->version >= 2 ? opts->on_notice : NULL;
  ev->user_data = opts->user_data;
  /* a caller of version 1 has neither field: attempts are unlimited, as they were */
  if (opts->version >= 2) {
    ev->max_attempts = opts->max_attempts;
    ev->on_notice = opts->on_notice;
  }
  ev->window = opts->window ? opts->window : DEFAULT_WINDOW;
  ev->retry_min_ms = opts->retry_min_ms ? opts->retry_min_ms : DEFAULT_RETRY_MIN_MS;
  ev->retry_max_ms = opts->retry_max_ms ? opts->retry_max_ms : DEFAULT_RETRY_MAX_MS;
  if (ev->retry_max_ms < ev->retry_min_ms) ev->retry_max_ms = ev->retry_min_ms;
  hd__queue_init(&ev->ready);
  hd__queue_init(&ev->reports);
  ev->anchor = hd__anchor_new(rt, ev);
  if (ev->anchor == NULL) {
    free(ev);
    return HD_ENOMEM;
  }
  hd__store_options_t so = {.backend = HD__STORE_SQLITE, .folder = opts->data_dir, .loop = rt->loop,
                            .sync_normal = opts->sync_normal};
  int rc = hd__client_store_open(&ev->store, &so);
  if (rc != 0) {
    hd__anchor_detach(ev->anchor);
    free(ev);
    return rc;
  }
  hd__client_handler_init(ev);
  hd__client_report_init(ev);
  *out = ev;
  return 0;
}

void hd__client_events_start(hd__client_events_t *ev) { hd__client_handler_start(ev); }

/* ---- receiving ------------------------------------------------------------------------- */

static void on_inserted(void *data, int status, uint64_t value) {
  hd__client_events_t *ev = data;
  hd__insert_rec_t rec = ev->ins[ev->ins_head];
  ev->ins_head = (ev->ins_head + 1) % ev->ins_cap;
  ev->ins_len--;
  if (ev->closing) return;
  if (status != 0) {
    /* not stored: the server still holds them and sends them again after a reconnect, which
     * also resumes from the high-water mark the failed batch did not raise */
    hd__log(ev->rt, HD_LOG_ERROR, "storing %llu received events failed: %s",
            (unsigned long long)rec.n, hd_last_error_message());
    if (ev->conn != NULL && rec.epoch == ev->epoch) hd__conn_close(ev->conn, status, "store failed");
    return;
  }
  if (rec.notices) ev->notices += value;
  else ev->received += value;
  /* duplicates (at or below the high-water mark) took credit but are not held: give it back */
  if (rec.epoch == ev->epoch && value < rec.n) {
    ev->grant += rec.n - value;
    hd__client_report_flush_later(ev);
  }
  if (value > 0) hd__client_handler_arrived(ev);
}

static int push_insert(hd__client_events_t *ev, uint64_t n, int notices) {
  if (ev->ins_len == ev->ins_cap) {
    size_t cap = ev->ins_cap ? ev->ins_cap * 2 : 16;
    hd__insert_rec_t *r = malloc(cap * sizeof *r);
    if (r == NULL) return hd__error(HD_ENOMEM, "out of memory queueing received events");
    for (size_t i = 0; i < ev->ins_len; i++) r[i] = ev->ins[(ev->ins_head + i) % ev->ins_cap];
    free(ev->ins);
    ev->ins = r;
    ev->ins_cap = cap;
    ev->ins_head = 0;
  }
  ev->ins[(ev->ins_head + ev->ins_len) % ev->ins_cap] = (hd__insert_rec_t){n, notices, ev->epoch};
  ev->ins_len++;
  return 0;
}

/* EVENTS, and NOTICES (stored as rows of kind 1 whose payload is the notice's fields, in their
 * place in the stream): both take credit and keep the order. */
static int on_events(hd__client_events_t *ev, hd__conn_t *c, uint8_t type, const uint8_t *body,
                     size_t len) {
  const char *name = type == HD__MSG_NOTICES ? "NOTICES" : "EVENTS";
  if (type == HD__MSG_NOTICES && !(c->features & HD__FEATURE_NOTICES)) {
    return hd__error(HD_EPROTO, "NOTICES on a connection without the notices feature");
  }
  hd__entry_iter_t it;
  uint64_t n;
  int rc = hd__msg_entries_begin(&it, type, body, len, &n);
  if (rc != 0) return rc;
  if (n == 0) return 0;
  /* a server that ignores the window could make this client hold without bound */
  if (n > ev->credit_left) {
    return hd__error(HD_EPROTO, "%s: %llu events with only %llu of credit left (window %u)", name,
                     (unsigned long long)n, (unsigned long long)ev->credit_left, ev->window);
  }
  ev->credit_left -= n;
  rc = hd__array_reserve((void **)&ev->scratch_ev, &ev->scratch_ev_cap, (size_t)n,
                       sizeof *ev->scratch_ev);
  if (rc == 0 && type == HD__MSG_NOTICES) {
    rc = hd__array_reserve((void **)&ev->scratch_notice, &ev->scratch_notice_cap,
                           (size_t)n * HD__NOTICE_MAX, 1);
  }
  if (rc != 0) return rc;
  hd__entry_t e;
  size_t i = 0;
  while (hd__msg_entries_next(&it, &e)) {
    if (e.seq <= ev->last_seq || e.created_ms > INT64_MAX) {
      return hd__error(HD_EPROTO, "%s: seq %llu after %llu on this connection (must increase)",
                       name, (unsigned long long)e.seq, (unsigned long long)ev->last_seq);
    }
    ev->last_seq = e.seq;
    hd__store_event_t *row = &ev->scratch_ev[i];
    *row = (hd__store_event_t){
        .seq = e.seq, .created_ms = (int64_t)e.created_ms, .payload = e.data, .payload_len = e.len};
    if (type == HD__MSG_NOTICES) {
      uint8_t *p = ev->scratch_notice + i * HD__NOTICE_MAX;
      row->kind = HD__STORE_KIND_NOTICE;
      row->payload = p;
      row->payload_len = hd__notice_encode(&e.notice, p);
    }
    i++;
  }
  rc = push_insert(ev, n, type == HD__MSG_NOTICES);
  if (rc != 0) return rc;
  /* one queued write per message: the store's group commit batches them across messages */
  rc = ev->store->vt->insert_received(ev->store, c->welcome.store_id, ev->scratch_ev, i,
                                      on_inserted, ev);
  if (rc != 0) {
    ev->ins_len--; /* the newest record: its completion will never run */
    return rc;
  }
  return 0;
}

static void on_forgotten(void *data, int status, uint64_t value) {
  hd__client_events_t *ev = data;
  if (status != 0) {
    /* kept: reported again at the next connect, and the server confirms them again; the
     * connection ends so that this happens after the reconnect backoff, not whenever it would
     * end anyway (until then they would hold the window) */
    hd__log(ev->rt, HD_LOG_ERROR, "forgetting confirmed events failed (%s: %s): reconnecting to "
            "report them again", hd_err_name(status), hd_last_error_message());
    if (ev->conn != NULL && !ev->closing) {
      hd__conn_close(ev->conn, status, "forgetting confirmed events failed");
    }
    return;
  }
  ev->confirmed += value;
  if (ev->closing || value == 0) return;
  ev->grant += value; /* they left the store: the server may send as many more */
  hd__client_report_flush_later(ev);
}

static int on_done(hd__client_events_t *ev, hd__conn_t *c, const uint8_t *body, size_t len) {
  hd__entry_iter_t it;
  uint64_t n;
  int rc = hd__msg_entries_begin(&it, HD__MSG_DONE, body, len, &n);
  if (rc != 0 || n == 0) return rc;
  rc = hd__array_reserve((void **)&ev->scratch_seq, &ev->scratch_seq_cap, (size_t)n, sizeof(uint64_t));
  if (rc != 0) return rc;
  hd__entry_t e;
  size_t i = 0;
  while (hd__msg_entries_next(&it, &e)) ev->scratch_seq[i++] = e.seq;
  /* the store forgets only consumed events it holds of this connection's server store: a DONE
   * for anything else changes nothing */
  return ev->store->vt->forget(ev->store, c->welcome.store_id, ev->scratch_seq, i, on_forgotten,
                               ev);
}

void hd__client_events_on_message(hd__client_events_t *ev, hd__conn_t *c, uint8_t type,
                                  const uint8_t *body, size_t len) {
  if (c != ev->conn || ev->closing) return;
  int rc = 0;
  uint64_t v;
  switch (type) {
    case HD__MSG_EVENTS:
    case HD__MSG_NOTICES:
      rc = on_events(ev, c, type, body, len);
      break;
    case HD__MSG_DONE:
      rc = on_done(ev, c, body, len);
      break;
    case HD__MSG_PAUSE:
      rc = hd__msg_decode_varint(type, body, len, &v);
      if (rc == 0) ev->pause_ms = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
      break;
    case HD__MSG_EPOCH:
      rc = hd__client_report_epoch(ev, body, len);
      break;
    default: /* CONSUMED, RESUME, CREDIT: client to server only */
      rc = hd__error(HD_EPROTO, "%s received from the server (client to server only)",
                     hd__msg_type_name(type) ? hd__msg_type_name(type) : "unknown message");
      break;
  }
  if (rc == HD_EPROTO) hd__conn_fail(c, rc, hd_last_error_message()); /* the server's fault */
  else if (rc != 0) hd__conn_close(c, rc, hd_last_error_message());
}

/* ---- connection ------------------------------------------------------------------------ */

void hd__client_events_on_open(hd__client_events_t *ev, hd__conn_t *c) {
  if (ev->closing) return;
  ev->conn = c;
  ev->resumed = 0;
  ev->awaiting_epoch = 0;
  ev->last_seq = 0;
  ev->credit_left = 0; /* none before RESUME */
  ev->failed_kept_warned = 0;
  ev->pause_ms = c->welcome.pause_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)c->welcome.pause_ms;
  hd__client_report_open(ev, c);
}

void hd__client_events_on_close(hd__client_events_t *ev, hd__conn_t *c) {
  if (ev->conn != c) return;
  ev->conn = NULL;
  ev->resumed = 0;
}

/* ---- close and stats ------------------------------------------------------------------- */

static void close_step(hd__client_events_t *ev) {
  if (--ev->pending_closes > 0) return;
  void (*cb)(void *) = ev->closed_cb;
  void *arg = ev->closed_arg;
  free(ev->ins);
  free(ev->scratch_ev);
  free(ev->scratch_notice);
  free(ev->scratch_seq);
  free(ev->scratch_entry);
  free(ev->scratch_failed);
  free(ev);
  if (cb != NULL) cb(arg);
}

static void on_store_closed(void *data) { close_step(data); }
static void on_timer_closed(uv_handle_t *h) { close_step(h->data); }

void hd__client_events_close(hd__client_events_t *ev, void (*cb)(void *arg), void *arg) {
  ev->closing = 1;
  ev->closed_cb = cb;
  ev->closed_arg = arg;
  ev->conn = NULL;
  /* a completion from now on only frees its event: it is handled again next time */
  hd__anchor_detach(ev->anchor);
  ev->anchor = NULL;
  hd__client_handler_stop(ev);
  hd__runtime_undefer(ev->rt, &ev->flush_d);
  hd__client_report_drop(ev);
  ev->pending_closes = 3;
  uv_close((uv_handle_t *)&ev->timer, on_timer_closed);
  uv_close((uv_handle_t *)&ev->record_timer, on_timer_closed);
  /* commits every queued write (their callbacks run first, and see `closing`) */
  if (ev->store->vt->close(ev->store, on_store_closed, ev) != 0) close_step(ev);
}

int hd__client_events_stats(hd__client_events_t *ev, hd_client_stats_t *out) {
  if (ev->closing) return hd__error(HD_ECLOSED, "the client is closing");
  out->events_received = ev->received;
  out->events_handled = ev->handled;
  out->events_failed = ev->failed;
  out->events_confirmed = ev->confirmed;
  out->events_dead = ev->dead;
  out->notices_received = ev->notices;
  out->pause_ms = ev->pause_ms;
  out->connected = ev->conn != NULL;
  int rc = ev->store->vt->counts(ev->store, &out->unhandled, &out->consumed);
  if (rc == 0) rc = ev->store->vt->high_water(ev->store, &out->high_water);
  /* what it holds for other server stores too (hd_client_held_stores tells them apart) */
  hd__held_list_t l = {0};
  if (rc == 0 && (rc = hd__client_events_held_stores(ev, &l)) > 0) rc = 0;
  out->unhandled += l.total_unhandled;
  out->consumed += l.total_consumed;
  return rc;
}

/* ---- events held for other server stores ------------------------------------------------- */

static void held_one(void *data, const uint8_t id[HD_STORE_ID_BYTES], uint64_t unhandled,
                     uint64_t consumed) {
  hd__held_list_t *l = data;
  if (l->n < l->cap) {
    if (l->ids != NULL) memcpy(l->ids + l->n * HD_STORE_ID_BYTES, id, HD_STORE_ID_BYTES);
    if (l->unhandled != NULL) l->unhandled[l->n] = unhandled;
    if (l->consumed != NULL) l->consumed[l->n] = consumed;
  }
  l->n++;
  l->total_unhandled += unhandled;
  l->total_consumed += consumed;
}

int hd__client_events_held_stores(hd__client_events_t *ev, hd__held_list_t *l) {
  if (ev->closing) return hd__error(HD_ECLOSED, "the client is closing");
  int rc = ev->store->vt->held_stores(ev->store, held_one, l);
  return rc < 0 ? rc : l->n > INT32_MAX ? INT32_MAX : (int)l->n;
}

typedef struct purge_ctx {
  hd__client_events_t *ev;
  hd_done_cb cb;
  void *cb_data;
} purge_ctx_t;

static void on_purged(void *data, int status, uint64_t value) {
  purge_ctx_t p = *(purge_ctx_t *)data;
  free(data);
  if (!p.ev->closing && status == 0) {
    hd__log(p.ev->rt, HD_LOG_WARN, "purged %llu events held for another server store: they are "
            "not handled nor reported", (unsigned long long)value);
    hd__client_handler_rewound(p.ev); /* what was read of them is dropped */
  }
  if (p.cb != NULL) p.cb(p.cb_data, status);
}

int hd__client_events_purge_store(hd__client_events_t *ev, const uint8_t id[HD_STORE_ID_BYTES],
                                  hd_done_cb cb, void *cb_data) {
  if (ev->closing) return hd__error(HD_ECLOSED, "the client is closing");
  purge_ctx_t *p = malloc(sizeof *p);
  if (p == NULL) return hd__error(HD_ENOMEM, "out of memory purging a server store");
  *p = (purge_ctx_t){ev, cb, cb_data};
  int rc = ev->store->vt->purge_store(ev->store, id, on_purged, p);
  if (rc != 0) free(p);
  return rc;
}

int hd__client_events_rollback_stats(hd__client_events_t *ev, hd_rollback_stats_t *out) {
  if (ev->closing) return hd__error(HD_ECLOSED, "the client is closing");
  out->rollbacks = ev->rollbacks;
  out->epoch_resumes = ev->epoch_resumes;
  out->events_repeated = ev->repeated;
  out->events_orphaned = ev->orphaned;
  out->consumed_dropped = ev->dropped;
  return ev->store->vt->server_epoch(ev->store, out->epoch);
}
