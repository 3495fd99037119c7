/* Sessions: the event conversation on one authenticated connection (docs/PROTOCOL.md section 7).
 *
 * RESUME opens it (credit = window, sent_upto = high_seq); CREDIT adds credit; a pump sends the
 * pending events above sent_upto while credit lasts. The pump reads pages of page_events from
 * the store (never a whole backlog), encodes each row straight into the connection's output
 * buffer while SQLite still holds it (no intermediate copy), and coalesces rows into EVENTS
 * messages cut under the peer's limit. It stops while the connection has more than
 * HD__SRV_HIGH_WATER bytes unwritten; the conn's drain hook restarts it below the low mark.
 * Pumps are deferred to the end of the loop iteration and coalesced per session, so a burst of
 * adds for one user costs one page read, not one per event. */
#include "server_impl.h"

#include <stdlib.h>
#include <string.h>

/* Room kept in front of a message's entries for its header (L varint, type, count varint); the
 * header is written once the entries are known and the message is shifted down over the gap. */
#define HEADER_GAP (2 * HD__VARINT_MAX + 1)

static hd__session_t *session_of(hd__conn_t *c) { return c->user_data; }

static hd__session_t *session_from_pump(hd__deferred_t *d) {
  return (hd__session_t *)(void *)((char *)d - offsetof(hd__session_t, pump));
}

/* ---- Encoding one page into EVENTS messages ------------------------------------------------ */

typedef struct page {
  hd__session_t *ss;
  hd__conn_t *c;
  size_t msg_start;  /* offset in out of the current message's gap; SIZE_MAX: none open */
  size_t body_bytes; /* the entries' bytes of the current message */
  uint64_t count;    /* entries in the current message */
  uint32_t rows;     /* rows this page handed over */
  int stop;          /* backpressure or a failure: end the pump */
} page_t;

static size_t entry_size(const hd__store_event_t *ev) {
  return hd__varint_len(ev->seq) + hd__varint_len((uint64_t)ev->created_ms) +
         hd__varint_len(ev->payload_len) + ev->payload_len;
}

/* Writes the header in front of the entries and closes the gap; queues the message. */
static void finish_message(page_t *pg) {
  if (pg->msg_start == SIZE_MAX) return;
  hd__buf_t *out = hd__conn_out(pg->c);
  uint64_t l = 1 + hd__varint_len(pg->count) + pg->body_bytes;
  size_t h = hd__varint_len(l) + 1 + hd__varint_len(pg->count);
  uint8_t *entries = out->data + pg->msg_start + HEADER_GAP;
  uint8_t *p = entries - h;
  size_t n = hd__varint_put(p, l);
  p[n++] = HD__MSG_EVENTS;
  hd__varint_put(p + n, pg->count);
  if (h != HEADER_GAP) memmove(out->data + pg->msg_start, p, h + pg->body_bytes);
  out->len = pg->msg_start + h + pg->body_bytes;
  pg->msg_start = SIZE_MAX;
  pg->count = 0;
  pg->body_bytes = 0;
  hd__conn_queued(pg->c); /* may write at once above the conn's flush threshold */
}

static int page_row(void *data, const hd__store_event_t *ev) {
  page_t *pg = data;
  hd__session_t *ss = pg->ss;
  hd__buf_t *out = hd__conn_out(pg->c);
  if (out == NULL) { /* the connection failed while flushing */
    pg->stop = 1;
    return 1;
  }
  size_t es = entry_size(ev);
  uint64_t max = pg->c->peer_max_message;
  if (1 + HD__VARINT_MAX + es > max) {
    char text[160];
    snprintf(text, sizeof text, "event %llu (%zu bytes) does not fit the client's message limit "
             "of %llu bytes", (unsigned long long)ev->seq, ev->payload_len,
             (unsigned long long)max);
    hd__conn_close(pg->c, HD_EMSGSIZE, text);
    pg->stop = 1;
    return 1;
  }
  if (pg->msg_start != SIZE_MAX &&
      1 + hd__varint_len(pg->count + 1) + pg->body_bytes + es > max) {
    finish_message(pg);
    out = hd__conn_out(pg->c);
    if (out == NULL) {
      pg->stop = 1;
      return 1;
    }
  }
  if (hd__buf_reserve(out, HEADER_GAP + es) != 0) {
    hd__conn_close(pg->c, HD_ENOMEM, "out of memory encoding events");
    pg->stop = 1;
    return 1;
  }
  if (pg->msg_start == SIZE_MAX) {
    pg->msg_start = out->len;
    out->len += HEADER_GAP;
  }
  uint8_t *p = out->data + out->len;
  p += hd__varint_put(p, ev->seq);
  p += hd__varint_put(p, (uint64_t)ev->created_ms);
  p += hd__varint_put(p, ev->payload_len);
  if (ev->payload_len) memcpy(p, ev->payload, ev->payload_len);
  out->len += es;
  pg->body_bytes += es;
  pg->count++;
  pg->rows++;
  ss->sent_upto = ev->seq;
  ss->credit--;
  ss->catchup_sent++;
  ss->s->n_delivered++;
  if (ss->credit == 0) return 1;
  if (hd__conn_write_backlog(pg->c) >= HD__SRV_HIGH_WATER) {
    ss->blocked = 1;
    pg->stop = 1;
    return 1;
  }
  return 0;
}

/* ---- The pump -------------------------------------------------------------------------------- */

static void catchup_done(hd__session_t *ss) {
  if (!ss->catching_up) return;
  ss->catching_up = 0;
  hd__log(ss->s->rt, HD_LOG_INFO, "%s: catch-up done: %llu events sent in %llu ms, up to seq %llu",
          ss->conn->peer, (unsigned long long)ss->catchup_sent,
          (unsigned long long)(uv_now(ss->s->rt->loop) - ss->catchup_start_ms),
          (unsigned long long)ss->sent_upto);
}

static void pump(hd__deferred_t *d) {
  hd__session_t *ss = session_from_pump(d);
  hd_server_t *s = ss->s;
  if (!ss->resumed || s->store == NULL || s->store_closing) return;
  for (int pages = 0; pages < HD__SRV_PAGES_PER_TURN; pages++) {
    if (ss->credit == 0 || hd__conn_out(ss->conn) == NULL) return;
    if (hd__conn_write_backlog(ss->conn) >= HD__SRV_HIGH_WATER) {
      ss->blocked = 1;
      return;
    }
    uint32_t limit = ss->credit < s->page_events ? (uint32_t)ss->credit : s->page_events;
    page_t pg = {ss, ss->conn, SIZE_MAX, 0, 0, 0, 0};
    int rc = s->store->vt->read_pending(s->store, ss->user->pk, ss->sent_upto, limit, page_row,
                                        &pg);
    if (hd__conn_out(ss->conn) != NULL) finish_message(&pg);
    if (rc < 0) {
      hd__log(s->rt, HD_LOG_ERROR, "%s: reading pending events: %s", ss->conn->peer,
              hd_last_error_message());
      return; /* the next add or CREDIT tries again */
    }
    if (pg.stop) return;
    if (pg.rows < limit && ss->credit > 0) { /* caught up: the next commit wakes us */
      catchup_done(ss);
      return;
    }
  }
  hd__runtime_defer(s->rt, &ss->pump); /* more to send: go on after the others had a turn */
}

static void wake(hd__session_t *ss) {
  if (ss->resumed && ss->credit > 0 && !ss->blocked) hd__runtime_defer(ss->s->rt, &ss->pump);
}

void hd__session_wake(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd__srv_user_t *u = hd__srv_user_get(s, pk, 0);
  if (u != NULL && u->session != NULL) wake(u->session);
}

void hd__session_drained(hd__conn_t *c) {
  hd__session_t *ss = session_of(c);
  if (ss == NULL || !ss->blocked || hd__conn_write_backlog(c) > HD__SRV_LOW_WATER) return;
  ss->blocked = 0;
  wake(ss);
}

/* ---- Lifetime ----------------------------------------------------------------------------- */

void hd__session_open(hd_server_t *s, hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd__session_t *ss = calloc(1, sizeof *ss);
  hd__srv_user_t *u = ss != NULL ? hd__srv_user_get(s, pk, 1) : NULL;
  if (u == NULL) {
    free(ss);
    hd__conn_close(c, HD_ENOMEM, "out of memory opening the session");
    return;
  }
  ss->s = s;
  ss->conn = c;
  ss->user = u;
  ss->pump.fn = pump;
  u->session = ss; /* a replaced connection's session lets go in its close */
  c->user_data = ss;
}

void hd__session_close(hd_server_t *s, hd__conn_t *c) {
  hd__session_t *ss = session_of(c);
  if (ss == NULL) return;
  c->user_data = NULL;
  hd__runtime_undefer(s->rt, &ss->pump);
  if (ss->catching_up) {
    hd__log(s->rt, HD_LOG_INFO, "%s: left during catch-up after %llu events (up to seq %llu)",
            c->peer, (unsigned long long)ss->catchup_sent, (unsigned long long)ss->sent_upto);
  }
  hd__srv_user_t *u = ss->user;
  if (u->session == ss) u->session = NULL;
  free(ss);
  hd__srv_user_maybe_free(s, u);
}

/* ---- Messages ----------------------------------------------------------------------------- */

static void protocol_error(hd__conn_t *c, const char *what, uint8_t type) {
  const char *name = hd__msg_type_name(type);
  char text[160];
  snprintf(text, sizeof text, "%s %s", name ? name : "message", what);
  hd__conn_close(c, HD_EPROTO, text); /* logged with the peer's address by the conn */
}

static void on_resume(hd_server_t *s, hd__session_t *ss, const uint8_t *body, size_t len) {
  hd__resume_t r;
  if (hd__msg_decode_resume(body, len, &r) != 0) {
    hd__conn_close(ss->conn, HD_EPROTO, "malformed RESUME");
    return;
  }
  static const uint8_t zero[HD_STORE_ID_BYTES];
  int known = memcmp(r.store_id, s->cfg.welcome.store_id, HD_STORE_ID_BYTES) == 0;
  int fresh = memcmp(r.store_id, zero, HD_STORE_ID_BYTES) == 0;
  /* another store's numbers mean nothing here: send everything pending */
  ss->sent_upto = known || fresh ? r.high_seq : 0;
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

void hd__session_message(hd_server_t *s, hd__conn_t *c, uint8_t type, const uint8_t *body,
                         size_t len) {
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
        hd__conn_close(c, HD_EPROTO, "malformed CREDIT");
        return;
      }
      ss->credit = v > UINT64_MAX - ss->credit ? UINT64_MAX : ss->credit + v;
      wake(ss);
      break;
    case HD__MSG_CONSUMED:
      hd__consumed_report(s, ss, body, len);
      break;
    default: /* EVENTS, DONE, PAUSE: server-to-client messages */
      protocol_error(c, "from a client (wrong direction)", type);
      break;
  }
}
