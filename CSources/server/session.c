/* Sessions: the event conversation on one authenticated connection (docs/PROTOCOL.md section 7).
 *
 * RESUME opens it (credit = window, sent_upto = high_seq); CREDIT adds credit; a pump sends the
 * pending events above sent_upto while credit lasts. The pump reads pages of page_events from
 * the store (never a whole backlog) and hands each row, while the store still holds it, to the
 * codec's EVENTS writer, which encodes it straight into the connection's output buffer (no
 * intermediate copy) and cuts the messages under the peer's limit. It stops while the connection has more than
 * HD__SRV_HIGH_WATER bytes unwritten; the conn's drain hook restarts it below the low mark.
 * Pumps are deferred to the end of the loop iteration and coalesced per session, so a burst of
 * adds for one user costs one page read, not one per event. */
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

static hd__session_t *session_of(hd__conn_t *c) { return c->user_data; }

/* ---- Encoding one page into EVENTS messages ------------------------------------------------ */

typedef struct page {
  hd__session_t *ss;
  hd__conn_t *c;
  hd__events_writer_t w;
  uint32_t rows;     /* rows this page sent */
  uint32_t read;     /* rows this page read (a notice skipped for an older client is not sent) */
  int stop;          /* backpressure or a failure: end the pump */
} page_t;

/* Closes the open message and queues it; 0 if the connection can take more. */
static int finish_message(page_t *pg) {
  int rc = hd__events_writer_finish(&pg->w);
  if (rc < 0) {
    hd__conn_close(pg->c, rc, "out of memory encoding events");
    return -1;
  }
  if (rc > 0) hd__conn_queued(pg->c); /* may write at once */
  return hd__conn_out(pg->c) != NULL ? 0 : -1; /* NULL: the connection failed while flushing */
}

/* An event the client's limit cannot carry: the handshake refuses clients below the largest event
 * the server takes, so it was stored under a larger max_event_bytes. Leaving the connection
 * silently would fail it the same way at every reconnect: the client is told in a BYE, the
 * operator in a log line and a counter (docs/PROTOCOL.md, "Message limits"). */
static void too_large(page_t *pg, const hd__store_event_t *ev) {
  hd__server_events_t *s = pg->ss->ev;
  char text[200];
  snprintf(text, sizeof text, "event %llu has %zu bytes: more than this client's max_message_bytes "
           "(%llu) can carry; it stays pending", (unsigned long long)ev->seq, ev->payload_len,
           (unsigned long long)pg->c->peer_max_message);
  s->n_too_large++;
  hd__log(s->rt, HD_LOG_ERROR, "%s: %s (stored when max_event_bytes was larger? raise the "
          "client's max_message_bytes, or the server's max_event_bytes back)", pg->c->peer, text);
  hd__conn_fail(pg->c, HD_EMSGSIZE, text);
}

/* After a row went out: its credit, and whether the page goes on. */
static int page_sent(page_t *pg, uint64_t seq) {
  hd__session_t *ss = pg->ss;
  pg->rows++;
  ss->sent_upto = seq;
  if (seq > ss->user->sent_max) ss->user->sent_max = seq;
  ss->credit--;
  ss->catchup_sent++;
  if (ss->credit == 0) return 1;
  if (hd__conn_write_backlog(pg->c) >= HD__SRV_HIGH_WATER) {
    ss->blocked = 1;
    pg->stop = 1;
    return 1;
  }
  return 0;
}

/* A notice in its place in the stream: the EVENTS message before it is finished first. A client
 * without the feature never sees it: it is deleted as if confirmed. */
static int page_notice(page_t *pg, const hd__store_event_t *ev) {
  hd__session_t *ss = pg->ss;
  hd__notice_t n;
  if (!(pg->c->features & HD__FEATURE_NOTICES) ||
      hd__notice_decode(ev->payload, ev->payload_len, &n) != 0) {
    if (pg->c->features & HD__FEATURE_NOTICES) {
      hd__log(ss->ev->rt, HD_LOG_ERROR, "%s: notice %llu is unreadable: dropped", pg->c->peer,
              (unsigned long long)ev->seq);
    }
    hd__consumed_drop_notice(ss->ev, ss->user, ev->seq);
    ss->sent_upto = ev->seq;
    return 0;
  }
  if (finish_message(pg) != 0) {
    pg->stop = 1;
    return 1;
  }
  hd__entry_t e = {.seq = ev->seq, .created_ms = (uint64_t)ev->created_ms, .notice = n};
  hd__buf_t *out = hd__conn_out(pg->c);
  if (out == NULL || hd__msg_encode_notices(out, &e, 1) != 0) {
    if (out != NULL) hd__conn_close(pg->c, HD_ENOMEM, "out of memory encoding a notice");
    pg->stop = 1;
    return 1;
  }
  hd__conn_queued(pg->c);
  return page_sent(pg, ev->seq);
}

static int page_row(void *data, const hd__store_event_t *ev) {
  page_t *pg = data;
  pg->read++;
  if (ev->kind == HD__STORE_KIND_NOTICE) return page_notice(pg, ev);
  hd__session_t *ss = pg->ss;
  int rc = hd__events_writer_add(&pg->w, ev->seq, (uint64_t)ev->created_ms, ev->payload,
                                 ev->payload_len);
  if (rc == HD__EVENTS_FULL) {
    rc = finish_message(pg) != 0 ? HD_ECLOSED
                                 : hd__events_writer_add(&pg->w, ev->seq, (uint64_t)ev->created_ms,
                                                         ev->payload, ev->payload_len);
  }
  if (rc != 0) {
    if (rc == HD_EMSGSIZE) too_large(pg, ev);
    else if (rc == HD_ENOMEM) hd__conn_close(pg->c, HD_ENOMEM, "out of memory encoding events");
    pg->stop = 1;
    return 1;
  }
  ss->ev->n_delivered++;
  return page_sent(pg, ev->seq);
}

/* ---- The pump -------------------------------------------------------------------------------- */

static void catchup_done(hd__session_t *ss) {
  if (!ss->catching_up) return;
  ss->catching_up = 0;
  hd__log(ss->ev->rt, HD_LOG_INFO, "%s: catch-up done: %llu events sent in %llu ms, up to seq %llu",
          ss->conn->peer, (unsigned long long)ss->catchup_sent,
          (unsigned long long)(uv_now(ss->ev->rt->loop) - ss->catchup_start_ms),
          (unsigned long long)ss->sent_upto);
}

static void pump(hd__deferred_t *d) {
  hd__session_t *ss = hd__container_of(d, hd__session_t, pump);
  hd__server_events_t *s = ss->ev;
  if (!ss->resumed || s->closing) return;
  if (ss->user->holds != 0) return; /* a collapse add is deciding what is unsent: unhold wakes */
  for (int pages = 0; pages < HD__SRV_PAGES_PER_TURN; pages++) {
    if (ss->credit == 0 || hd__conn_out(ss->conn) == NULL) return;
    if (hd__conn_write_backlog(ss->conn) >= HD__SRV_HIGH_WATER) {
      ss->blocked = 1;
      return;
    }
    uint32_t limit = ss->credit < s->page_events ? (uint32_t)ss->credit : s->page_events;
    page_t pg = {.ss = ss, .c = ss->conn};
    hd__events_writer_init(&pg.w, hd__conn_out(ss->conn), ss->conn->peer_max_message,
                           ss->events_room);
    int rc = s->store->vt->read_pending(s->store, ss->user->pk, ss->sent_upto, limit, page_row,
                                        &pg);
    if (hd__conn_out(ss->conn) != NULL) finish_message(&pg);
    ss->events_room = pg.w.room; /* the next page's messages likely have headers of this size */
    if (pg.rows > 0) hd__expiry_sent(s, ss);
    if (rc < 0) {
      hd__log(s->rt, HD_LOG_ERROR, "%s: reading pending events: %s", ss->conn->peer,
              hd_last_error_message());
      return; /* the next add or CREDIT tries again */
    }
    if (pg.stop) return;
    if (pg.read < limit && ss->credit > 0) { /* caught up: the next commit wakes us */
      catchup_done(ss);
      return;
    }
  }
  hd__runtime_defer(s->rt, &ss->pump); /* more to send: go on after the others had a turn */
}

static void wake(hd__session_t *ss) {
  if (ss->resumed && ss->credit > 0 && !ss->blocked) hd__runtime_defer(ss->ev->rt, &ss->pump);
}

void hd__session_wake(hd__server_events_t *ev, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd__server_user_t *u = hd__server_user_get(ev, pk, 0);
  if (u != NULL && u->session != NULL) wake(u->session);
}

void hd__session_unhold(hd__server_events_t *ev, hd__server_user_t *u) {
  if (--u->holds == 0 && u->session != NULL) wake(u->session);
  hd__server_user_release(ev, u);
}

void hd__session_push_pause(hd__session_t *ss, uint32_t pause_ms) {
  hd__buf_t *out = hd__conn_out(ss->conn);
  if (out != NULL && hd__msg_encode_pause(out, pause_ms) == 0) hd__conn_queued(ss->conn);
}

void hd__session_drained(hd__conn_t *c) {
  hd__session_t *ss = session_of(c);
  if (ss == NULL || !ss->blocked || hd__conn_write_backlog(c) > HD__SRV_LOW_WATER) return;
  ss->blocked = 0;
  wake(ss);
}

/* ---- Lifetime ----------------------------------------------------------------------------- */

void hd__session_open(hd__server_events_t *ev, hd__conn_t *c) {
  hd__session_t *ss = calloc(1, sizeof *ss);
  hd__server_user_t *u = ss != NULL ? hd__server_user_get(ev, c->remote_pk, 1) : NULL;
  if (u == NULL) {
    free(ss);
    hd__conn_close(c, HD_ENOMEM, "out of memory opening the session");
    return;
  }
  ss->ev = ev;
  ss->conn = c;
  ss->user = u;
  hd__deferred_init(&ss->pump, pump);
  hd__queue_init(&ss->sent_node);
  u->session = ss; /* a replaced connection's session lets go in its close */
  c->user_data = ss;
}

void hd__session_close(hd__server_events_t *s, hd__conn_t *c) {
  hd__session_t *ss = session_of(c);
  if (ss == NULL) return;
  c->user_data = NULL;
  hd__runtime_undefer(s->rt, &ss->pump);
  hd__consumed_session_close(s, ss);
  hd__expiry_session_close(s, ss);
  if (ss->catching_up) {
    hd__log(s->rt, HD_LOG_INFO, "%s: left during catch-up after %llu events (up to seq %llu)",
            c->peer, (unsigned long long)ss->catchup_sent, (unsigned long long)ss->sent_upto);
  }
  hd__server_user_t *u = ss->user;
  /* what was sent, for the collapses and drops of later adds (a failure only makes them
   * replace or drop events the client may have: it sees both, or a notice too many) */
  if (u->sent_max != 0 && s->store != NULL) {
    s->store->vt->set_sent(s->store, u->pk, u->sent_max, NULL, NULL);
  }
  if (u->session == ss) u->session = NULL;
  free(ss);
  hd__server_user_release(s, u);
}

/* ---- Messages ----------------------------------------------------------------------------- */

static void protocol_error(hd__conn_t *c, const char *what, uint8_t type) {
  const char *name = hd__msg_type_name(type);
  char text[160];
  snprintf(text, sizeof text, "%s %s", name ? name : "message", what);
  hd__conn_fail(c, HD_EPROTO, text); /* told in BYE; logged with the peer's address */
}

/* RESUME from a client whose view (high_seq, in epoch r->epoch) is not in the store's epoch
 * (docs/PROTOCOL.md "Epochs"): EPOCH tells it how much of what it saw the store still vouches
 * for, then every pending event goes out again. 0, or -1 once the connection is closing. */
static int epoch_resume(hd__server_events_t *s, hd__session_t *ss, const hd__resume_t *r,
                        uint64_t high) {
  uint64_t floor = 0;
  int known = 0;
  int rc = s->store->vt->resume_floor(s->store, ss->user->pk, r->epoch, high, &floor, &known);
  hd__buf_t *out = rc == 0 ? hd__conn_out(ss->conn) : NULL;
  if (rc == 0 && out != NULL) rc = hd__msg_encode_epoch(out, floor, known ? floor : high);
  if (rc != 0) {
    hd__error(rc, "answering RESUME from another epoch: %s", hd_last_error_message());
    hd__conn_close(ss->conn, rc, hd_last_error_message());
    return -1;
  }
  if (out == NULL) return -1;
  hd__conn_queued(ss->conn);
  ss->sent_upto = 0;
  s->n_epoch_resumes++;
  if (floor < high) {
    s->n_rollbacks++;
    char keeps[96];
    if (known) snprintf(keeps, sizeof keeps, "keeps what it saw only up to seq %llu",
                        (unsigned long long)floor);
    else snprintf(keeps, sizeof keeps, "does not know the epoch it saw it in");
    hd__log(s->rt, HD_LOG_WARN,
            "%s: the store rolled back under this client (restored from a backup, or it lost its "
            "last commits): it saw up to seq %llu, the store %s; EPOCH sent: every pending event "
            "is sent again, %s",
            ss->conn->peer, (unsigned long long)high, keeps,
            known ? "those above it are new to the client" : "all marked possibly repeated");
  } else {
    hd__log(s->rt, high > 0 ? HD_LOG_INFO : HD_LOG_DEBUG,
            "%s: resumes from another epoch of the store; nothing it saw (up to seq %llu) was "
            "lost; EPOCH sent, every pending event is sent again",
            ss->conn->peer, (unsigned long long)high);
  }
  return 0;
}

static void on_resume(hd__server_events_t *s, hd__session_t *ss, const uint8_t *body, size_t len) {
  hd__resume_t r;
  if (hd__msg_decode_resume(body, len, &r) != 0) {
    hd__conn_close(ss->conn, HD_EPROTO, "malformed RESUME");
    return;
  }
  static const uint8_t zero[HD_STORE_ID_BYTES];
  int known = memcmp(r.store_id, s->welcome->store_id, HD_STORE_ID_BYTES) == 0;
  int fresh = memcmp(r.store_id, zero, HD_STORE_ID_BYTES) == 0;
  /* another store's numbers mean nothing here: send everything pending */
  ss->sent_upto = known || fresh ? r.high_seq : 0;
  /* a client without epochs sends none: it is served as before */
  if (r.has_epoch && memcmp(r.epoch, s->welcome->epoch, HD_STORE_ID_BYTES) != 0 &&
      epoch_resume(s, ss, &r, ss->sent_upto) != 0) {
    return;
  }
  ss->credit = r.window;
  ss->resumed = 1;
  ss->catching_up = 1;
  ss->catchup_sent = 0;
  ss->catchup_start_ms = uv_now(s->rt->loop);
  uint64_t pending = 0;
  s->store->vt->pending_count(s->store, ss->user->pk, &pending);
  hd__log(s->rt, HD_LOG_INFO,
          "%s: resume from seq %llu%s, window %llu, %llu events pending: catch-up starts",
          ss->conn->peer, (unsigned long long)ss->sent_upto,
          known || fresh ? "" : " (client knew another store: from 0)",
          (unsigned long long)r.window, (unsigned long long)pending);
  wake(ss);
}

void hd__session_message(hd__server_events_t *s, hd__conn_t *c, uint8_t type,
                         const uint8_t *body, size_t len) {
  hd__session_t *ss = session_of(c);
  if (ss == NULL) return;
  if (!ss->resumed && type != HD__MSG_RESUME) {
    protocol_error(c, "before RESUME (RESUME must come first)", type);
    return;
  }
  uint64_t v;
  switch (type) {
    case HD__MSG_RESUME:
      if (ss->resumed) {
        protocol_error(c, "a second time", type);
        return;
      }
      on_resume(s, ss, body, len);
      break;
    case HD__MSG_CREDIT:
      if (hd__msg_decode_varint(type, body, len, &v) != 0) {
        hd__conn_fail(c, HD_EPROTO, hd_last_error_message());
        return;
      }
      ss->credit = v > UINT64_MAX - ss->credit ? UINT64_MAX : ss->credit + v;
      wake(ss);
      break;
    case HD__MSG_CONSUMED:
      hd__consumed_report(s, ss, body, len);
      break;
    case HD__MSG_FAILED:
      /* a peer that did not announce the feature does not speak it: as an unknown message */
      if (!(c->features & HD__FEATURE_FAILED)) {
        protocol_error(c, "without the feature announced in HELLO", type);
        return;
      }
      hd__failed_report(s, ss, body, len);
      break;
    default: /* EVENTS, DONE, PAUSE: server-to-client messages */
      protocol_error(c, "from a client (wrong direction)", type);
      break;
  }
}
