/* What the client tells its server (client_events.h): on each connect the store id check, RESUME
 * and the consumed-but-unconfirmed report; afterwards CONSUMED for each committed completion,
 * FAILED for each event given up on, and CREDIT for each event that left the store, coalesced
 * into one write per loop iteration. A server that takes no FAILED (an earlier release) is not
 * told of failed events: the store keeps them until a connection to one that does. */
#include "client_events.h"

#include "array.h"

#include <stdlib.h>
#include <string.h>

#define REPORT_PAGE 256

/* Encodes `n` CONSUMED (or FAILED) entries into as few messages as the server's limit allows. */
static int send_batch(hd__client_events_t *ev, const hd__entry_t *e, size_t n, int failed) {
  hd__conn_t *c = ev->conn;
  while (n > 0) {
    size_t k = failed ? hd__msg_failed_fit(e, n, c->peer_max_message)
                      : hd__msg_consumed_fit(e, n, c->peer_max_message);
    if (k == 0) {
      /* cannot happen with data under HD__EVENT_DATA_MAX and a server accepting 1 MiB; a server
       * with a smaller limit never learns of this event (it stays consumed here) */
      hd__log(ev->rt, HD_LOG_ERROR, "%s event %llu: data of %zu bytes too large for the "
              "server's limit of %llu", failed ? "failed" : "consumed",
              (unsigned long long)e->seq, e->len, (unsigned long long)c->peer_max_message);
      e++;
      n--;
      continue;
    }
    hd__buf_t *out = hd__conn_out(c);
    if (out == NULL) return hd__error(HD_ESTATE, "not connected any more"); /* not a failure */
    int rc = failed ? hd__msg_encode_failed(out, e, k) : hd__msg_encode_consumed(out, e, k);
    if (rc != 0) return rc;
    hd__conn_queued(c);
    e += k;
    n -= k;
  }
  return 0;
}

static int send_consumed(hd__client_events_t *ev, const hd__entry_t *e, size_t n) {
  return send_batch(ev, e, n, 0);
}

/* FAILED, to a server that takes it; else they stay in the store (state 2), told once per
 * connection, and later events flow on. */
static int send_failed(hd__client_events_t *ev, const hd__entry_t *e, size_t n) {
  if (n == 0) return 0;
  if (ev->conn->features & HD__FEATURE_FAILED) return send_batch(ev, e, n, 1);
  if (!ev->failed_kept_warned) {
    ev->failed_kept_warned = 1;
    hd__log(ev->rt, HD_LOG_WARN, "the server (an earlier release) takes no FAILED: events the "
            "handler failed for good (event %llu...) are kept, and reported to a server that "
            "takes them; later events go on", (unsigned long long)e->seq);
  }
  return 0;
}

static void flush(hd__deferred_t *d) {
  hd__client_events_t *ev = hd__container_of(d, hd__client_events_t, flush_d);
  if (ev->conn == NULL || !ev->resumed) {
    hd__client_report_drop(ev); /* the store has them: reported after the next RESUME */
    return;
  }
  /* nor before EPOCH is applied: a report could confirm another event that got the number
   * (docs/PROTOCOL.md "Epochs"); they are reported from the store then */
  if (ev->awaiting_epoch) hd__client_report_drop(ev);
  size_t n = 0;
  hd__queue_t *q;
  hd__queue_foreach(q, &ev->reports) n++;
  int rc = 0;
  if (n > 0) {
    rc = hd__array_reserve((void **)&ev->scratch_entry, &ev->scratch_entry_cap, n,
                         sizeof *ev->scratch_entry);
    if (rc == 0) {
      rc = hd__array_reserve((void **)&ev->scratch_failed, &ev->scratch_failed_cap, n,
                             sizeof *ev->scratch_failed);
    }
    if (rc == 0) {
      size_t i = 0, f = 0;
      hd__queue_foreach(q, &ev->reports) {
        hd_event_t *e = hd__container_of(q, hd_event_t, node);
        /* an event of another server store waits, consumed in the store, for a connection to
         * its own: under its number this one has, or will have, another event */
        if (e->store != ev->store_no) continue;
        hd__entry_t entry = {.seq = e->seq, .data = e->data, .len = e->data_len,
                             .attempts = e->attempt};
        if (e->dead) ev->scratch_failed[f++] = entry;
        else ev->scratch_entry[i++] = entry;
      }
      rc = send_consumed(ev, ev->scratch_entry, i); /* the data's one copy: into the wire */
      if (rc == 0) rc = send_failed(ev, ev->scratch_failed, f);
    }
  }
  hd__client_report_drop(ev);
  if (rc == 0 && ev->grant > 0 && ev->conn != NULL) {
    hd__buf_t *out = hd__conn_out(ev->conn);
    if (out != NULL && (rc = hd__msg_encode_credit(out, ev->grant)) == 0) {
      ev->credit_left += ev->grant;
      ev->grant = 0;
      hd__conn_queued(ev->conn);
    }
  }
  if (rc != 0 && rc != HD_ESTATE && ev->conn != NULL) hd__conn_close(ev->conn, rc, "report failed");
}

void hd__client_report_init(hd__client_events_t *ev) { hd__deferred_init(&ev->flush_d, flush); }

void hd__client_report_flush_later(hd__client_events_t *ev) {
  if (ev->closing) return;
  hd__runtime_defer(ev->rt, &ev->flush_d);
}

void hd__client_report_consumed(hd__client_events_t *ev, hd_event_t *e) {
  hd__queue_insert_tail(&ev->reports, &e->node);
  hd__client_report_flush_later(ev);
}

void hd__client_report_drop(hd__client_events_t *ev) {
  hd__queue_t *q;
  while ((q = hd__queue_pop(&ev->reports)) != NULL) {
    hd__event_free(hd__container_of(q, hd_event_t, node));
  }
}

/* ---- on connect ------------------------------------------------------------------------ */

/* Reconnect path only (bounded by the window): a page of consumed events is copied out of the
 * store's rows (valid during the callback only) into `page`, then encoded. */
typedef struct page {
  hd__client_events_t *ev;
  hd__buf_t bytes;
  size_t n, failed; /* consumed (scratch_entry) and failed (scratch_failed) rows */
  uint64_t last;
} page_t;

static int page_one(void *data, const hd__store_event_t *row) {
  page_t *p = data;
  hd__client_events_t *ev = p->ev;
  int failed = (row->flags & HD__STORE_EV_FAILED) != 0;
  size_t at = p->bytes.len;
  if (hd__array_reserve((void **)&ev->scratch_entry, &ev->scratch_entry_cap, p->n + 1,
                        sizeof *ev->scratch_entry) != 0 ||
      hd__array_reserve((void **)&ev->scratch_failed, &ev->scratch_failed_cap, p->failed + 1,
                        sizeof *ev->scratch_failed) != 0 ||
      (row->data_len && hd__buf_append(&p->bytes, row->data, row->data_len) != 0)) {
    return 1;
  }
  /* data holds the offset until the page is complete (the buffer may move) */
  hd__entry_t e = {.seq = row->seq, .data = (const uint8_t *)(uintptr_t)at, .len = row->data_len,
                   .attempts = row->attempts};
  if (failed) ev->scratch_failed[p->failed++] = e;
  else ev->scratch_entry[p->n++] = e;
  p->last = row->seq;
  return 0;
}

static void page_fix(page_t *p, hd__entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++) e[i].data = p->bytes.data + (uintptr_t)e[i].data;
}

static int report_consumed_from_store(hd__client_events_t *ev) {
  page_t p = {ev, {0}, 0, 0, 0};
  int rc = 0;
  for (;;) {
    p.n = p.failed = 0;
    p.bytes.len = 0;
    int got = ev->store->vt->list_consumed(ev->store, p.last, REPORT_PAGE, page_one, &p);
    if (got < 0) {
      rc = got;
      break;
    }
    page_fix(&p, ev->scratch_entry, p.n);
    page_fix(&p, ev->scratch_failed, p.failed);
    if (p.n > 0 && (rc = send_consumed(ev, ev->scratch_entry, p.n)) != 0) break;
    if ((rc = send_failed(ev, ev->scratch_failed, p.failed)) != 0) break;
    if (got < REPORT_PAGE) break;
    if (p.n + p.failed < (size_t)got) {
      rc = hd__error(HD_ENOMEM, "out of memory reporting consumed events");
      break;
    }
  }
  hd__buf_free(&p.bytes);
  return rc;
}

static void resume(hd__client_events_t *ev) {
  hd__client_store_t *s = ev->store;
  hd__resume_t r = {0};
  uint64_t unhandled = 0, consumed = 0;
  memcpy(r.store_id, ev->resume_id, HD_STORE_ID_BYTES);
  int rc = s->vt->high_water(s, &r.high_seq);
  if (rc == 0) rc = s->vt->counts(s, &unhandled, &consumed);
  /* the epoch only to a server that has them (a server without them refuses trailing bytes) */
  r.has_epoch = ev->conn->welcome.has_epoch;
  if (rc == 0 && r.has_epoch) rc = s->vt->server_epoch(s, r.epoch);
  ev->awaiting_epoch = r.has_epoch && memcmp(r.epoch, ev->conn->welcome.epoch, HD_STORE_ID_BYTES);
  ev->resume_high = r.high_seq;
  /* what we hold counts against the window: the server may send only the rest */
  uint64_t held = unhandled + consumed;
  r.window = held < ev->window ? ev->window - held : 0;
  /* completions committed before this point are in the store's listing below */
  hd__client_report_drop(ev);
  ev->epoch++;
  ev->grant = 0;
  ev->credit_left = r.window;
  hd__buf_t *out = rc == 0 ? hd__conn_out(ev->conn) : NULL;
  if (rc == 0 && out != NULL) rc = hd__msg_encode_resume(out, &r);
  if (rc == 0 && out != NULL) {
    hd__conn_queued(ev->conn);
    ev->resumed = 1;
    hd__log(ev->rt, HD_LOG_DEBUG, "RESUME high_seq %llu window %llu (holding %llu)%s",
            (unsigned long long)r.high_seq, (unsigned long long)r.window, (unsigned long long)held,
            ev->awaiting_epoch ? ", in another epoch than the server's" : "");
    if (!ev->awaiting_epoch) rc = report_consumed_from_store(ev);
  }
  if (rc != 0 && rc != HD_ESTATE && ev->conn != NULL) {
    hd__error(rc, "resuming: %s", hd_last_error_message());
    hd__conn_close(ev->conn, rc, hd_last_error_message());
  }
}

/* ---- EPOCH: the server's store changed epoch since our view --------------------------------- */

typedef struct rewind_ctx {
  hd__client_events_t *ev;
  uint64_t credit_epoch; /* the connection (RESUME) it answered */
  uint64_t floor, high;
} rewind_ctx_t;

static void on_rewound(void *data, int status, uint64_t value) {
  rewind_ctx_t *r = data;
  hd__client_events_t *ev = r->ev;
  uint64_t floor = r->floor, high = r->high;
  int same_conn = ev->conn != NULL && r->credit_epoch == ev->epoch;
  free(r);
  if (ev->closing) return;
  if (status != 0) {
    /* nothing changed: the next connection resumes in the old epoch and gets EPOCH again */
    hd__log(ev->rt, HD_LOG_ERROR, "applying the server's epoch change failed: %s",
            hd_last_error_message());
    if (same_conn) hd__conn_close(ev->conn, status, "store failed");
    return;
  }
  uint64_t orphaned = value & 0xffffffffu, dropped = value >> 32;
  ev->epoch_resumes++;
  ev->orphaned += orphaned;
  ev->dropped += dropped;
  if (floor < high) {
    ev->rollbacks++;
    hd__log(ev->rt, HD_LOG_WARN,
            "the server's store rolled back (restored from a backup, or it lost its last commits): "
            "this client saw up to seq %llu, the store keeps only up to %llu; its events above "
            "%llu are new events; %llu unhandled events it no longer has are handed out and not "
            "reported, %llu consumed ones are dropped unreported",
            (unsigned long long)high, (unsigned long long)floor, (unsigned long long)floor,
            (unsigned long long)orphaned, (unsigned long long)dropped);
  } else {
    hd__log(ev->rt, high > 0 ? HD_LOG_INFO : HD_LOG_DEBUG,
            "the server's store is in another epoch; nothing this client saw was lost (up to seq "
            "%llu)", (unsigned long long)high);
  }
  hd__client_handler_rewound(ev);
  if (!same_conn) return;
  ev->awaiting_epoch = 0;
  int rc = report_consumed_from_store(ev);
  if (rc == 0) hd__client_report_flush_later(ev); /* the credit that waited */
  if (rc != 0 && rc != HD_ESTATE && ev->conn != NULL) {
    hd__error(rc, "reporting after an epoch change: %s", hd_last_error_message());
    hd__conn_close(ev->conn, rc, hd_last_error_message());
  }
}

int hd__client_report_epoch(hd__client_events_t *ev, const uint8_t *body, size_t len) {
  uint64_t floor, seen_upto;
  int rc = hd__msg_decode_epoch(body, len, &floor, &seen_upto);
  if (rc != 0) return rc;
  if (ev->awaiting_epoch != 1) {
    return hd__error(HD_EPROTO, ev->awaiting_epoch ? "EPOCH a second time on one connection"
                                                   : "EPOCH from a server whose epoch this "
                                                     "client did not question");
  }
  ev->awaiting_epoch = 2; /* applied once the rewind is committed (on_rewound) */
  rewind_ctx_t *r = malloc(sizeof *r);
  if (r == NULL) return hd__error(HD_ENOMEM, "out of memory applying EPOCH");
  *r = (rewind_ctx_t){ev, ev->epoch, floor, ev->resume_high};
  /* before anything received after it: writes commit in order */
  rc = ev->store->vt->rewind(ev->store, ev->conn->welcome.store_id, floor, seen_upto,
                             ev->conn->welcome.epoch, on_rewound, r);
  if (rc != 0) free(r);
  return rc;
}

/* A server store other than the current one: what is held for the others stays (docs/STORAGE.md
 * "Events of several server stores"). */
static void store_changed(hd__client_events_t *ev, int first_sight) {
  hd__held_list_t l = {0};
  int stores = hd__client_events_held_stores(ev, &l);
  hd__log(ev->rt, HD_LOG_WARN, "the server's store is not the one this client talked to last "
          "(another store id: the store was replaced, or the server runs on another folder): %s; "
          "events held for %zu other server stores: %llu unhandled, handled before this store's, "
          "%llu consumed, reported only to their own store (hd_client_held_stores, "
          "hd_client_purge_store)",
          first_sight ? "a store it never saw, starting from sequence 0"
                      : "a store it talked to before, resuming where it left it",
          stores < 0 ? 0 : (size_t)stores, (unsigned long long)l.total_unhandled,
          (unsigned long long)l.total_consumed);
  hd__client_handler_rewound(ev);
}

static void on_store_id_set(void *data, int status, uint64_t value) {
  hd__client_events_t *ev = data;
  ev->sets_pending--;
  if (ev->closing) return;
  int changed = status == 0 && (value & HD__STORE_ID_CHANGED) != 0;
  if (status == 0) ev->store_no = (int64_t)(value & 0xffffffffu);
  /* another store than the last connection's (client_events.h): what this process receives
   * from it from now on is above its mark now (no insert of this connection is queued yet) */
  if (status == 0 && ev->sets_pending == 0 && ev->store_no != ev->recv_store &&
      ev->store->vt->high_water(ev->store, &ev->recv_floor) == 0) {
    ev->recv_store = ev->store_no;
  }
  if (changed) store_changed(ev, (value & HD__STORE_ID_NEW) != 0);
  /* a connection that closed meanwhile has a newer set queued, or none is needed */
  if (ev->sets_pending > 0 || ev->conn == NULL || ev->resumed) return;
  if (status != 0) {
    hd__error(status, "recording the server's store id: %s", hd_last_error_message());
    hd__conn_close(ev->conn, status, hd_last_error_message());
    return;
  }
  /* a store seen before: RESUME carries its own mark and epoch, under its id */
  if (!(value & HD__STORE_ID_NEW)) {
    memcpy(ev->resume_id, ev->conn->welcome.store_id, HD_STORE_ID_BYTES);
  }
  resume(ev);
}

void hd__client_report_open(hd__client_events_t *ev, hd__conn_t *c) {
  if (ev->store->vt->server_store_id(ev->store, ev->resume_id) != 0) {
    memset(ev->resume_id, 0, HD_STORE_ID_BYTES); /* none remembered: zeros */
  }
  /* RESUME waits for this write: writes complete in order, so when it has, every earlier
   * insert, consumption and forget is committed and the high-water mark and the counts that
   * RESUME carries are exact */
  int rc = ev->store->vt->set_server_store_id(ev->store, c->welcome.store_id, on_store_id_set, ev);
  if (rc != 0) {
    hd__conn_close(c, rc, "recording the server's store id");
    return;
  }
  ev->sets_pending++;
}
