/* One connection: TCP, preamble, Noise IK handshake, records, keepalive, close (conn.h).
 *
 * Memory per idle connection: the struct itself (libuv's tcp and timer handles, two ciphers,
 * the readers' small fixed parts) plus the message reader's small reusable buffer. Reads land in
 * the runtime's shared buffer and are decrypted there in place; only a record or message cut by
 * a read boundary is collected on the heap, after its length was checked. The handshake state
 * and its input buffer exist only while handshaking. */
#include "conn.h"

#include "keys.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The largest handshake message accepted: HELLO/WELCOME are small; anything bigger is not ours
 * and must not make us buffer 64 KiB per half-open connection. */
#define HS_FRAME_MAX 512
/* How long an orderly close waits for the peer to take our last bytes. */
#define CLOSE_GRACE_MS 2000
/* Plaintext queued beyond this is sealed and written at once instead of at the end of the
 * iteration, so that one loop iteration never holds unbounded data. */
#define FLUSH_THRESHOLD (2 * HD__RECORD_MAX_PLAINTEXT)
/* What the output buffer may keep between flushes (a small idle footprint). */
#define OUT_KEEP 2048
/* Written bytes the peer has not taken beyond which we stop reading from it, until half of them
 * are gone: everything we write unasked (EVENTS) already stops at the session's high-water mark
 * (1 MiB), so only answers to what the peer sends (PONG, DONE...) can pass it, and a peer that
 * sends without reading then holds its own stream back, not our memory (docs/RELIABILITY.md,
 * "Memory per connection"). */
#define OUT_HOLD (2u * 1024u * 1024u)

/* Why reads are stopped (conn->reads_held). */
#define HOLD_OWNER 1  /* hd__conn_hold_reads */
#define HOLD_OUTPUT 2 /* the peer does not take what we write */

static const char PROLOGUE_NAME[] = "hyperdown/1";

struct hd__handshake_io {
  hd__handshake_t hs;
  size_t have;
  uint8_t buf[2 + HS_FRAME_MAX]; /* the preamble, then one length-prefixed message */
};

typedef struct write_req {
  uv_write_t req;
  uint8_t *data;
} write_req_t;

enum close_mode { CLOSE_ABRUPT, CLOSE_FLUSH, CLOSE_BYE };

static void conn_end(hd__conn_t *c, int status, enum close_mode mode);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_timer(uv_timer_t *t);
static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len);
static void flush_deferred(hd__deferred_t *d);
static void reads_hold(hd__conn_t *c, int why, int hold);
static void server_reject(hd__conn_t *c, int code, uint8_t reason);
static void prove(hd__conn_t *c);

static hd__conn_t *conn_from_flush(hd__deferred_t *d) {
  return hd__container_of(d, hd__conn_t, flush);
}

static uv_loop_t *conn_loop(const hd__conn_t *c) { return c->cfg->rt->loop; }

/* Allocates a connection and its libuv handles (which then must be closed to free it). */
static hd__conn_t *conn_new(const hd__conn_config_t *cfg) {
  hd__conn_t *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->hs = calloc(1, sizeof *c->hs);
  if (c->hs == NULL) {
    free(c);
    return NULL;
  }
  c->cfg = cfg;
  uv_tcp_init(cfg->rt->loop, &c->tcp);
  uv_timer_init(cfg->rt->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  hd__deferred_init(&c->flush, flush_deferred);
  c->peer_max_message = HD__DEFAULT_MAX_MESSAGE;
  hd__msg_reader_init(&c->mr, cfg->max_message_bytes, on_msg, c);
  snprintf(c->peer, sizeof c->peer, "(unknown peer)");
  return c;
}

#define PROLOGUE_BYTES (sizeof PROLOGUE_NAME - 1 + HD_TOPIC_BYTES)

static void prologue_make(const hd__conn_config_t *cfg, uint8_t prologue[PROLOGUE_BYTES]) {
  memcpy(prologue, PROLOGUE_NAME, sizeof PROLOGUE_NAME - 1);
  memcpy(prologue + sizeof PROLOGUE_NAME - 1, cfg->topic_key, HD_TOPIC_BYTES);
}

static int prologue_init(const hd__conn_config_t *cfg, hd__handshake_t *hs, int initiator) {
  uint8_t prologue[PROLOGUE_BYTES];
  prologue_make(cfg, prologue);
  return hd__handshake_init(hs, HD__NOISE_IK, initiator, prologue, sizeof prologue,
                            cfg->x_secret, initiator ? cfg->server_x_public : NULL);
}

/* ---- Freeing ---------------------------------------------------------------------------- */

static void conn_free(hd__conn_t *c) {
  if (c->hs) {
    hd__handshake_wipe(&c->hs->hs);
    free(c->hs);
  }
  hd__cipher_wipe(&c->tx);
  hd__record_reader_free(&c->rr);
  hd__msg_reader_free(&c->mr);
  hd__buf_free(&c->out);
  free(c->close_detail);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  hd__conn_t *c = h->data;
  if (--c->pending_closes > 0) return;
  /* Everything libuv held is released: report, then free. The detail recorded at the moment
   * of the failure is restored so that hd_last_error_message() explains `status`. */
  if (!c->silent && c->cfg->on_close != NULL) {
    if (c->status != 0) hd__error(c->status, "%s", c->close_detail ? c->close_detail : "");
    else hd__error(0, "%s", c->close_detail ? c->close_detail : "closed");
    c->cfg->on_close(c, c->authenticated ? c->remote_pk : NULL, c->status);
  }
  conn_free(c);
}

static void close_handles(hd__conn_t *c) {
  if (c->state == HD__CONN_CLOSED) return;
  c->state = HD__CONN_CLOSED;
  hd__runtime_undefer(c->cfg->rt, &c->flush);
  c->pending_closes = 2;
  uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

/* For create paths that failed before the owner knew about the connection. */
static void conn_discard(hd__conn_t *c) {
  c->silent = 1;
  close_handles(c);
}

/* ---- Writing ---------------------------------------------------------------------------- */

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  hd__conn_t *c = req->handle->data;
  free(w->data);
  free(w);
  if (status < 0 && c->state < HD__CONN_CLOSING) {
    conn_end(c, hd__error_from_uv(status, "write failed"), CLOSE_ABRUPT);
    return;
  }
  if (c->state != HD__CONN_OPEN) return;
  if (c->reads_held & HOLD_OUTPUT) {
    c->last_recv_ms = uv_now(conn_loop(c)); /* it takes our bytes: it is not silent */
    if (c->tcp.write_queue_size <= OUT_HOLD / 2) reads_hold(c, HOLD_OUTPUT, 0);
    if (c->state != HD__CONN_OPEN) return;
  }
  if (c->cfg->on_drain != NULL) c->cfg->on_drain(c);
}

/* Writes `data` (malloc'd; ownership passes here, freed in the callback or on error). */
static int write_owned(hd__conn_t *c, uint8_t *data, size_t len) {
  write_req_t *w = malloc(sizeof *w);
  if (w == NULL) {
    free(data);
    return hd__error(HD_ENOMEM, "out of memory queueing a write");
  }
  w->data = data;
  uv_buf_t buf = uv_buf_init((char *)data, (unsigned)len);
  int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (rc != 0) {
    free(data);
    free(w);
    return hd__error_from_uv(rc, "write failed");
  }
  if (c->state == HD__CONN_OPEN && c->tcp.write_queue_size >= OUT_HOLD) {
    reads_hold(c, HOLD_OUTPUT, 1);
  }
  return 0;
}

static int write_copy(hd__conn_t *c, const uint8_t *p, size_t len) {
  uint8_t *data = malloc(len);
  if (data == NULL) return hd__error(HD_ENOMEM, "out of memory queueing a write");
  memcpy(data, p, len);
  return write_owned(c, data, len);
}

/* Seals everything queued into records and writes them in one uv_write. */
static int flush_now(hd__conn_t *c) {
  if (c->out.len == 0) return 0;
  hd__buf_t sealed;
  hd__buf_init(&sealed);
  int rc = hd__record_seal(&c->tx, c->out.data, c->out.len, &sealed);
  hd__buf_consume(&c->out, c->out.len);
  hd__buf_trim(&c->out, OUT_KEEP);
  if (rc != 0) {
    hd__buf_free(&sealed);
    return rc;
  }
  return write_owned(c, sealed.data, sealed.len);
}

static void flush_deferred(hd__deferred_t *d) {
  hd__conn_t *c = conn_from_flush(d);
  if (c->state != HD__CONN_OPEN && c->state != HD__CONN_CLOSING) return;
  int rc = flush_now(c);
  if (rc != 0 && c->state == HD__CONN_OPEN) conn_end(c, rc, CLOSE_ABRUPT);
}

hd__buf_t *hd__conn_out(hd__conn_t *c) { return c->state == HD__CONN_OPEN ? &c->out : NULL; }

void hd__conn_queued(hd__conn_t *c) {
  if (c->out.len >= FLUSH_THRESHOLD) {
    hd__runtime_undefer(c->cfg->rt, &c->flush);
    int rc = flush_now(c);
    if (rc != 0) conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  hd__runtime_defer(c->cfg->rt, &c->flush);
}

/* Appends one message without the state check (BYE while closing). */
static int queue_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  uint64_t l = (uint64_t)len + 1;
  if (l > c->peer_max_message) {
    return hd__error(HD_EMSGSIZE, "message of %llu bytes is above the peer's limit of %llu",
                     (unsigned long long)l, (unsigned long long)c->peer_max_message);
  }
  int rc = hd__buf_reserve(&c->out, HD__VARINT_MAX + (size_t)l);
  if (rc != 0) return rc;
  uint8_t *p = c->out.data + c->out.len;
  size_t n = hd__varint_put(p, l);
  p[n++] = type;
  if (len) memcpy(p + n, body, len);
  c->out.len += n + len;
  return 0;
}

int hd__conn_send(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  if (c->state != HD__CONN_OPEN) return hd__error(HD_ESTATE, "connection is not open");
  int rc = queue_message(c, type, body, len);
  if (rc != 0) return rc;
  hd__conn_queued(c);
  return 0;
}

size_t hd__conn_write_backlog(const hd__conn_t *c) { return c->tcp.write_queue_size + c->out.len; }

/* ---- Closing ---------------------------------------------------------------------------- */

static void on_shutdown(uv_shutdown_t *req, int status) {
  hd__conn_t *c = req->handle->data;
  free(req);
  (void)status;
  close_handles(c);
}

/* Ends the connection once: records why, logs it, then closes at once (ABRUPT) or after the
 * queued bytes are written (FLUSH; BYE first sends a goodbye with the reason). */
static void conn_end(hd__conn_t *c, int status, enum close_mode mode) {
  if (c->state >= HD__CONN_CLOSING) return;
  const char *detail = hd_last_error_message();
  c->status = status;
  c->close_detail = strdup(status != 0 ? detail : (detail[0] ? detail : "closed"));
  if (status != 0) {
    hd__log(c->cfg->rt, HD_LOG_WARN, "connection %s closed: %s: %s", c->peer,
            hd_err_name(status), detail);
  } else {
    hd__log(c->cfg->rt, HD_LOG_DEBUG, "connection %s closed: %s", c->peer,
            c->close_detail ? c->close_detail : "");
  }
  if (mode == CLOSE_BYE && c->state == HD__CONN_OPEN) {
    const char *text = c->close_detail ? c->close_detail : "";
    size_t text_len = strlen(text);
    if (text_len > HD__BYE_TEXT_MAX) text_len = HD__BYE_TEXT_MAX; /* may cut UTF-8: logs only */
    hd__buf_t bye;
    hd__buf_init(&bye);
    if (hd__msg_encode_bye(&bye, (uint64_t)(status < 0 ? -status : 0), text, text_len) != 0) {
      hd__buf_free(&bye);
      hd__msg_encode_bye(&bye, (uint64_t)(status < 0 ? -status : 0), "", 0);
    }
    hd__buf_append(&c->out, bye.data, bye.len);
    hd__buf_free(&bye);
  }
  if (mode == CLOSE_BYE && c->state != HD__CONN_OPEN) mode = CLOSE_FLUSH;
  if (mode != CLOSE_ABRUPT && c->state == HD__CONN_OPEN) flush_now(c);
  hd__runtime_undefer(c->cfg->rt, &c->flush);
  if (mode == CLOSE_ABRUPT || c->state == HD__CONN_CONNECTING) {
    close_handles(c);
    return;
  }
  c->state = HD__CONN_CLOSING;
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_shutdown_t *req = malloc(sizeof *req);
  if (req == NULL || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    free(req);
    close_handles(c);
    return;
  }
  /* a peer that does not read must not hold the connection open */
  uv_timer_start(&c->timer, on_timer, CLOSE_GRACE_MS, 0);
}

void hd__conn_close(hd__conn_t *c, int status, const char *text) {
  if (c->state >= HD__CONN_CLOSING) return;
  if (status == 0) {
    if (c->state != HD__CONN_OPEN) {
      hd__error(HD_ECANCELED, "%s", text ? text : "closed during the handshake");
      conn_end(c, HD_ECANCELED, CLOSE_ABRUPT);
      return;
    }
    hd__error(0, "%s", text ? text : "closed");
    conn_end(c, 0, CLOSE_BYE);
  } else {
    hd__error(status, "%s", text ? text : hd_strerror(status));
    conn_end(c, status, CLOSE_ABRUPT);
  }
}

void hd__conn_fail(hd__conn_t *c, int status, const char *text) {
  if (status == 0) {
    hd__conn_close(c, 0, text);
    return;
  }
  if (c->state >= HD__CONN_CLOSING) return;
  hd__error(status, "%s", text ? text : hd_strerror(status));
  conn_end(c, status, CLOSE_BYE); /* a BYE only once records are up */
}

/* A failure the connection finds itself (a record, a message, the idle timeout), its detail the
 * thread's: the peer's protocol faults are told as hd__conn_fail tells them, the rest closes. */
static void conn_fail(hd__conn_t *c, int status) {
  int tell = c->state == HD__CONN_OPEN && (status == HD_EPROTO || status == HD_EMSGSIZE);
  conn_end(c, status, tell ? CLOSE_BYE : CLOSE_ABRUPT);
}

/* ---- Keepalive -------------------------------------------------------------------------- */

static void keepalive_arm(hd__conn_t *c) {
  uint64_t now = uv_now(conn_loop(c));
  uint64_t due = c->last_recv_ms + (c->ping_sent ? c->cfg->idle_timeout_ms : c->cfg->keepalive_ms);
  uv_timer_start(&c->timer, on_timer, due > now ? due - now : 1, 0);
}

/* The timer is not reset on every read (that would cost a syscall-free but still non-trivial
 * heap operation per record); it wakes when a ping or the idle deadline could be due and
 * re-arms itself from the time of the last byte received. */
static void keepalive_tick(hd__conn_t *c) {
  uint64_t now = uv_now(conn_loop(c));
  /* we are not listening: the peer is not silent (a peer that does not take our bytes is: see
   * on_write) */
  if (c->reads_held & HOLD_OWNER) c->last_recv_ms = now;
  uint64_t silent = now - c->last_recv_ms;
  if (silent >= c->cfg->idle_timeout_ms) {
    conn_fail(c, hd__error(HD_ETIMEDOUT, "peer %s silent for %llu ms (idle timeout %u ms)",
                           c->peer, (unsigned long long)silent, c->cfg->idle_timeout_ms));
    return;
  }
  if (silent >= c->cfg->keepalive_ms && !c->ping_sent) {
    hd__buf_t *out = hd__conn_out(c);
    if (out != NULL && hd__msg_encode_ping(out, ++c->ping_nonce) == 0) {
      hd__conn_queued(c);
      c->ping_sent = 1;
    }
  }
  if (c->state == HD__CONN_OPEN) keepalive_arm(c);
}

static void on_timer(uv_timer_t *t) {
  hd__conn_t *c = t->data;
  switch (c->state) {
    case HD__CONN_CONNECTING:
    case HD__CONN_PREAMBLE:
    case HD__CONN_HANDSHAKE:
    case HD__CONN_REJECTED:
      conn_end(c,
               hd__error(HD_ETIMEDOUT, "handshake with %s did not complete within %u ms",
                         c->peer, c->cfg->handshake_timeout_ms),
               CLOSE_ABRUPT);
      break;
    case HD__CONN_AUTHORIZING:
      hd__error(HD_ETIMEDOUT, "client %s refused: its authorization was not answered within %u ms",
                c->peer, c->cfg->authorize_timeout_ms);
      server_reject(c, HD_ETIMEDOUT, HD__REJECT_REFUSED);
      break;
    case HD__CONN_OPEN:
      if (c->authenticated) {
        keepalive_tick(c);
        break;
      }
      /* message 2 went out and no record came back: message 1 was likely replayed by someone
       * who cannot go on (docs/PROTOCOL.md, section 4) */
      conn_end(c,
               hd__error(HD_ETIMEDOUT, "client %s sent no record within %u ms of the handshake",
                         c->peer, c->cfg->handshake_timeout_ms),
               CLOSE_ABRUPT);
      break;
    case HD__CONN_CLOSING:
      close_handles(c); /* the grace period is over */
      break;
    case HD__CONN_CLOSED:
      break;
  }
}

/* ---- Messages --------------------------------------------------------------------------- */

static int on_msg(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  hd__conn_t *c = ctx;
  /* stops the feed: the connection is closing and its detail is already set */
  if (c->state != HD__CONN_OPEN) return HD_ECLOSED;
  /* A batch body is walked by the layer that decodes it (hd__msg_entries_begin), which closes
   * the connection on a malformed one: checking it here too would walk every entry twice. */
  int rc = hd__msg_is_batch(type) ? 0 : hd__msg_check(type, body, len);
  if (rc != 0) {
    conn_fail(c, rc);
    return rc;
  }
  uint64_t v;
  switch (type) {
    case HD__MSG_PING: {
      hd__msg_decode_varint(type, body, len, &v);
      hd__buf_t *out = hd__conn_out(c);
      if (out != NULL && hd__msg_encode_pong(out, v) == 0) hd__conn_queued(c);
      break;
    }
    case HD__MSG_PONG:
      break; /* any record already counted as a sign of life */
    case HD__MSG_BYE: {
      const uint8_t *text;
      size_t text_len;
      hd__msg_decode_bye(body, len, &v, &text, &text_len);
      if (v == 0) {
        hd__error(0, "peer %s said goodbye: %.*s", c->peer, (int)text_len, (const char *)text);
        conn_end(c, 0, CLOSE_FLUSH);
      } else if (v == (uint64_t)-HD_EREPLACED) {
        /* its own status: the owner must not dial again at once (docs/PROTOCOL.md, BYE) */
        hd__error(HD_EREPLACED, "peer %s closed the connection: %.*s", c->peer, (int)text_len,
                  (const char *)text);
        conn_end(c, HD_EREPLACED, CLOSE_FLUSH);
      } else {
        hd__error(HD_EBYE, "peer %s closed the connection with error %s: %.*s", c->peer,
                  hd_err_name(-(int)(v > 1000 ? 1000 : v)), (int)text_len, (const char *)text);
        conn_end(c, HD_EBYE, CLOSE_FLUSH);
      }
      return HD_ECLOSED;
    }
    default:
      if (c->cfg->on_message != NULL) c->cfg->on_message(c, type, body, len);
      break;
  }
  return c->state == HD__CONN_OPEN ? 0 : HD_ECLOSED;
}

/* Every record of the peer, once it authenticated: the first one proves a server's connection
 * (become_open). */
static int on_record(void *ctx, uint8_t *pt, size_t len) {
  hd__conn_t *c = ctx;
  if (!c->authenticated) {
    prove(c);
    if (c->state != HD__CONN_OPEN) return HD_ECLOSED;
  }
  return len ? hd__msg_reader_feed(&c->mr, pt, len) : 0;
}

/* Client: an empty record right after message 2, so that the server can count the connection
 * before the first message (docs/PROTOCOL.md, section 4). */
static int send_proof(hd__conn_t *c) {
  uint8_t rec[HD__RECORD_HEADER + HD__RECORD_TAG];
  hd__put_u16be(rec, HD__RECORD_TAG);
  int rc = hd__cipher_encrypt(&c->tx, NULL, 0, NULL, 0, rec + HD__RECORD_HEADER);
  return rc != 0 ? rc : write_copy(c, rec, sizeof rec);
}

/* ---- Handshake -------------------------------------------------------------------------- */

static void become_open(hd__conn_t *c) {
  hd__cipher_t rx;
  int rc = hd__handshake_split(&c->hs->hs, &c->tx, &rx);
  if (rc == 0) rc = hd__record_reader_init(&c->rr, &rx, on_record, c);
  if (rc == 0 && !c->cfg->is_server) rc = send_proof(c);
  hd__cipher_wipe(&rx);
  hd__handshake_wipe(&c->hs->hs);
  free(c->hs);
  c->hs = NULL;
  if (rc != 0) {
    conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  c->state = HD__CONN_OPEN;
  if (c->cfg->is_server) {
    /* Message 1 carries no freshness: its bytes, replayed, get this far too. The connection
     * counts (on_open) once the client's first record proves it holds the session keys; until
     * then the handshake deadline runs again. */
    uv_timer_start(&c->timer, on_timer, c->cfg->handshake_timeout_ms, 0);
    return;
  }
  prove(c);
}

/* The peer holds the session keys: the connection is open for the owner. */
static void prove(hd__conn_t *c) {
  c->authenticated = 1;
  c->last_recv_ms = uv_now(conn_loop(c));
  keepalive_arm(c);
  hd__log(c->cfg->rt, HD_LOG_INFO, "connection %s open", c->peer);
  if (c->cfg->on_open != NULL) c->cfg->on_open(c, c->remote_pk);
}

/* Server: answers with a rejection frame, then closes once it is written. `code`'s detail is
 * already recorded. */
static void server_reject(hd__conn_t *c, int code, uint8_t reason) {
  uint8_t frame[HD__REJECT_BYTES];
  hd__reject_encode(frame, reason);
  hd__error_state_t e;
  hd__error_save(&e);
  write_copy(c, frame, sizeof frame);
  hd__error_restore(&e);
  conn_end(c, code, CLOSE_FLUSH);
}

static void server_welcome(hd__conn_t *c);

static void server_read_msg1(hd__conn_t *c, const uint8_t *msg, size_t len) {
  struct hd__handshake_io *io = c->hs;
  uint8_t payload[HS_FRAME_MAX];
  size_t plen = 0;
  int rc = prologue_init(c->cfg, &io->hs, 0);
  if (rc != 0) {
    conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  /* during a key rollover the client may know either key: the current one first (the one
   * most clients hold), then the next (docs/OPERATIONS.md, "Key rollover") */
  uint8_t prologue[PROLOGUE_BYTES];
  prologue_make(c->cfg, prologue);
  int used_next = 0;
  rc = hd__handshake_read_first_either(&io->hs, prologue, sizeof prologue,
                                       c->cfg->has_next_key ? c->cfg->next_x_secret : NULL, msg,
                                       len, payload, sizeof payload, &plen, &used_next);
  if (rc != 0) {
    rc = hd__error(HD_EAUTH,
                   "handshake from %s failed authentication: the client does not expect this "
                   "server's key%s, or the message was tampered with",
                   c->peer, c->cfg->has_next_key ? " nor its next key" : "");
    server_reject(c, rc, HD__REJECT_AUTH);
    return;
  }
  hd__hello_t hello;
  rc = hd__hello_decode(payload, plen, &hello);
  if (rc != 0) {
    server_reject(c, HD_EPROTO, HD__REJECT_MALFORMED);
    return;
  }
  if (hello.version != HD_PROTOCOL_VERSION) {
    hd__error(HD_EVERSION, "client %s speaks protocol version %llu, this server %d", c->peer,
              (unsigned long long)hello.version, HD_PROTOCOL_VERSION);
    server_reject(c, HD_EVERSION, HD__REJECT_VERSION);
    return;
  }
  uint8_t x[32];
  const uint8_t *rs = hd__handshake_remote_static(&io->hs);
  if (hd__ed25519_pk_to_x25519(hello.public_key, x) != 0 || rs == NULL ||
      sodium_memcmp(x, rs, 32) != 0) {
    rc = hd__error(HD_EAUTH,
                   "client %s: the Ed25519 key in HELLO does not map to the Noise static key "
                   "it authenticated with (identity mismatch)",
                   c->peer);
    server_reject(c, rc, HD__REJECT_IDENTITY);
    return;
  }
  if (hello.max_message_bytes < c->cfg->min_peer_message) {
    /* every event must be deliverable: one this client could not take would stay pending and
     * fail each of its connections (docs/PROTOCOL.md, "Message limits") */
    hd__error(HD_EMSGSIZE, "client %s refused: it accepts messages of at most %llu bytes, this "
              "server's events take up to %llu (max_event_bytes + 64)", c->peer,
              (unsigned long long)hello.max_message_bytes,
              (unsigned long long)c->cfg->min_peer_message);
    server_reject(c, HD_EMSGSIZE, HD__REJECT_MSGSIZE);
    return;
  }
  memcpy(c->remote_pk, hello.public_key, HD_PUBLICKEY_BYTES);
  c->hello_read = 1;
  /* the config is the owner's, shared by its connections: the counters are its (conn.h) */
  hd__conn_config_t *cfg = (hd__conn_config_t *)c->cfg;
  if (used_next) {
    cfg->handshakes_next_key++;
    hd__log(c->cfg->rt, HD_LOG_DEBUG, "client %s dialed the next key", c->peer);
  } else {
    cfg->handshakes_current_key++;
  }
  c->peer_max_message = hello.max_message_bytes;
  c->features = hello.features & c->cfg->features;
  if (c->cfg->on_authorize == NULL) {
    server_welcome(c);
    return;
  }
  /* the reply waits for the owner's decision: a refused key never sees WELCOME (store id) */
  c->state = HD__CONN_AUTHORIZING;
  uv_timer_start(&c->timer, on_timer, c->cfg->authorize_timeout_ms, 0);
  c->cfg->on_authorize(c);
}

void hd__conn_admit(hd__conn_t *c, int allow, const char *why) {
  if (c->state != HD__CONN_AUTHORIZING) return;
  if (allow) {
    c->state = HD__CONN_HANDSHAKE;
    server_welcome(c);
    return;
  }
  hd__error(HD_EAUTH, "client %s refused: %s", c->peer, why ? why : "not admitted");
  server_reject(c, HD_EAUTH, HD__REJECT_REFUSED);
}

/* Server: message 2 with WELCOME, then the connection waits for the client's first record. */
static void server_welcome(hd__conn_t *c) {
  struct hd__handshake_io *io = c->hs;
  int rc;
  hd__welcome_t w = c->cfg->welcome;
  w.version = HD_PROTOCOL_VERSION;
  w.max_message_bytes = c->cfg->max_message_bytes;
  w.keepalive_ms = c->cfg->keepalive_ms;
  w.features = c->cfg->features;
  uint8_t wp[HD__WELCOME_MAX];
  size_t wlen = hd__welcome_encode(&w, wp);
  uint8_t frame[2 + HS_FRAME_MAX];
  size_t mlen = 0;
  rc = hd__handshake_write_message(&io->hs, wp, wlen, frame + 2, HS_FRAME_MAX, &mlen);
  if (rc == 0) {
    hd__put_u16be(frame, (uint16_t)mlen);
    rc = write_copy(c, frame, 2 + mlen);
  }
  if (rc != 0) {
    conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  become_open(c);
}

static void client_read_msg2(hd__conn_t *c, const uint8_t *msg, size_t len) {
  uint8_t payload[HS_FRAME_MAX];
  size_t plen = 0;
  int rc = hd__handshake_read_message(&c->hs->hs, msg, len, payload, sizeof payload, &plen);
  if (rc != 0) {
    conn_end(c,
             hd__error(HD_EAUTH,
                       "the reply of server %s failed authentication: it does not hold the key "
                       "the client expects (wrong serverPublicKey?) or it was tampered with",
                       c->peer),
             CLOSE_ABRUPT);
    return;
  }
  hd__welcome_t w;
  rc = hd__welcome_decode(payload, plen, &w);
  if (rc != 0) {
    conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  if (w.version != HD_PROTOCOL_VERSION) {
    conn_end(c,
             hd__error(HD_EVERSION, "server %s speaks protocol version %llu, this client %d",
                       c->peer, (unsigned long long)w.version, HD_PROTOCOL_VERSION),
             CLOSE_ABRUPT);
    return;
  }
  c->peer_max_message = w.max_message_bytes;
  c->features = w.features & c->cfg->features;
  c->welcome = w;
  memcpy(c->remote_pk, c->cfg->server_public_key, HD_PUBLICKEY_BYTES);
  become_open(c);
}

/* Consumes handshake bytes; returns how many were used, or -1 once the connection is ending. */
static ssize_t handshake_feed(hd__conn_t *c, const uint8_t *p, size_t n) {
  struct hd__handshake_io *io = c->hs;
  size_t take;
  if (c->state == HD__CONN_PREAMBLE) {
    take = HD__PREAMBLE_BYTES - io->have;
    if (take > n) take = n;
    memcpy(io->buf + io->have, p, take);
    io->have += take;
    if (io->have < HD__PREAMBLE_BYTES) return (ssize_t)take;
    if (memcmp(io->buf, "HYDN", 4) != 0) {
      /* not Hyperdown at all: close without a reply (docs/PROTOCOL.md, section 3) */
      conn_end(c, hd__error(HD_EPROTO, "peer %s does not speak Hyperdown (bad magic)", c->peer),
               CLOSE_ABRUPT);
      return -1;
    }
    int rc = hd__preamble_check(io->buf, c->cfg->topic_key);
    if (rc != 0) {
      if (rc == HD_ETOPIC) {
        hd__error(HD_ETOPIC, "client %s is on another topic (preamble topic tag differs)",
                  c->peer);
      }
      server_reject(c, rc, hd__reject_reason_for(rc));
      return -1;
    }
    io->have = 0;
    c->state = HD__CONN_HANDSHAKE;
    return (ssize_t)take;
  }
  if (c->state == HD__CONN_REJECTED) {
    int rc = hd__reject_error(p[0]);
    if (p[0] == HD__REJECT_AUTH) {
      hd__error(HD_EAUTH, "server rejected the handshake: it does not hold the key the client "
                          "expects (wrong serverPublicKey?)");
    } else if (p[0] == HD__REJECT_MSGSIZE) {
      hd__error(HD_EMSGSIZE, "server refused the handshake: its events can be larger than this "
                "client's max_message_bytes (%u) allows; raise it to the server's max_event_bytes "
                "+ 64", c->cfg->max_message_bytes);
    }
    conn_end(c, rc, CLOSE_ABRUPT);
    return -1;
  }
  /* HD__CONN_HANDSHAKE: a u16be length, then that many bytes */
  if (io->have < 2) {
    take = 2 - io->have;
    if (take > n) take = n;
    memcpy(io->buf + io->have, p, take);
    io->have += take;
    if (io->have < 2) return (ssize_t)take;
    size_t len = hd__get_u16be(io->buf);
    if (len == 0 && !c->cfg->is_server) {
      c->state = HD__CONN_REJECTED;
      io->have = 0;
      return (ssize_t)take;
    }
    if (len == 0 || len > HS_FRAME_MAX) {
      int rc = hd__error(HD_EPROTO, "handshake message of %zu bytes from %s (accepted: 1..%d)",
                         len, c->peer, HS_FRAME_MAX);
      if (c->cfg->is_server) server_reject(c, rc, HD__REJECT_MALFORMED);
      else conn_end(c, rc, CLOSE_ABRUPT);
      return -1;
    }
    return (ssize_t)take;
  }
  size_t len = hd__get_u16be(io->buf);
  take = 2 + len - io->have;
  if (take > n) take = n;
  memcpy(io->buf + io->have, p, take);
  io->have += take;
  if (io->have < 2 + len) return (ssize_t)take;
  if (c->cfg->is_server) server_read_msg1(c, io->buf + 2, len);
  else client_read_msg2(c, io->buf + 2, len);
  return c->state == HD__CONN_OPEN || c->state == HD__CONN_AUTHORIZING ? (ssize_t)take : -1;
}

/* ---- Reading ---------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  hd__conn_t *c = h->data;
  (void)suggested;
  hd__runtime_read_alloc(c->cfg->rt, buf);
}

static void consume(hd__conn_t *c, uint8_t *p, size_t n) {
  while (n > 0 && (c->state == HD__CONN_PREAMBLE || c->state == HD__CONN_HANDSHAKE ||
                   c->state == HD__CONN_REJECTED)) {
    ssize_t used = handshake_feed(c, p, n);
    if (used < 0) return;
    p += used;
    n -= (size_t)used;
  }
  if (n > 0 && c->state == HD__CONN_AUTHORIZING) {
    conn_end(c, hd__error(HD_EPROTO, "client %s sent records before message 2", c->peer),
             CLOSE_ABRUPT);
    return;
  }
  if (n == 0 || c->state != HD__CONN_OPEN) return;
  int rc = hd__record_reader_feed(&c->rr, p, n);
  if (rc != 0 && c->state == HD__CONN_OPEN) conn_fail(c, rc);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  hd__conn_t *c = s->data;
  if (nread > 0) {
    c->last_recv_ms = uv_now(conn_loop(c));
    c->ping_sent = 0;
    consume(c, (uint8_t *)buf->base, (size_t)nread);
  } else if (nread < 0 && c->state < HD__CONN_CLOSING) {
    int rc;
    if (nread == UV_EOF) {
      rc = hd__error(HD_ECONNRESET, "peer %s closed the connection %s", c->peer,
                     c->state == HD__CONN_OPEN ? "without saying goodbye"
                                               : "during the handshake");
    } else {
      char what[128];
      snprintf(what, sizeof what, "read from %s", c->peer);
      rc = hd__error_from_uv((int)nread, what);
    }
    conn_end(c, rc, CLOSE_ABRUPT);
  }
  hd__runtime_read_free(c->cfg->rt, buf);
}

/* ---- Starting --------------------------------------------------------------------------- */

int hd__conn_accept(const hd__conn_config_t *cfg, uv_stream_t *listener, hd__conn_t **out) {
  *out = NULL;
  hd__conn_t *c = conn_new(cfg);
  if (c == NULL) return hd__error(HD_ENOMEM, "out of memory accepting a connection");
  int rc = uv_accept(listener, (uv_stream_t *)&c->tcp);
  if (rc != 0) {
    conn_discard(c);
    return hd__error_from_uv(rc, "accept failed");
  }
  uv_tcp_nodelay(&c->tcp, 1);
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    hd__addr_format((struct sockaddr *)&ss, c->peer, sizeof c->peer);
  } else {
    ss.ss_family = AF_UNSPEC;
  }
  if (cfg->on_accept != NULL && cfg->on_accept(c, (struct sockaddr *)&ss) != 0) {
    conn_discard(c); /* on_accept recorded the detail */
    return HD_EBUSY;
  }
  c->state = HD__CONN_PREAMBLE;
  uv_timer_start(&c->timer, on_timer, cfg->handshake_timeout_ms, 0);
  rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0) {
    conn_discard(c);
    return hd__error_from_uv(rc, "cannot read from an accepted connection");
  }
  *out = c;
  return 0;
}

static void on_connect(uv_connect_t *req, int status) {
  hd__conn_t *c = req->handle->data;
  free(req);
  if (c->state != HD__CONN_CONNECTING) return; /* closed meanwhile (ECANCELED) */
  if (status < 0) {
    char what[128];
    snprintf(what, sizeof what, "connect to %s", c->peer);
    conn_end(c, hd__error_from_uv(status, what), CLOSE_ABRUPT);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  /* preamble + message 1 in one write */
  uint8_t *data = malloc(HD__PREAMBLE_BYTES + 2 + HS_FRAME_MAX);
  int rc = data ? 0 : hd__error(HD_ENOMEM, "out of memory starting the handshake");
  size_t mlen = 0;
  if (rc == 0) rc = prologue_init(c->cfg, &c->hs->hs, 1);
  if (rc == 0) {
    hd__hello_t hello;
    hello.version = HD_PROTOCOL_VERSION;
    memcpy(hello.public_key, c->cfg->public_key, HD_PUBLICKEY_BYTES);
    hello.max_message_bytes = c->cfg->max_message_bytes;
    hello.features = c->cfg->features;
    uint8_t hp[HD__HELLO_MAX];
    size_t hlen = hd__hello_encode(&hello, hp);
    hd__preamble_encode(data, c->cfg->topic_key);
    rc = hd__handshake_write_message(&c->hs->hs, hp, hlen, data + HD__PREAMBLE_BYTES + 2,
                                     HS_FRAME_MAX, &mlen);
  }
  if (rc == 0) {
    hd__put_u16be(data + HD__PREAMBLE_BYTES, (uint16_t)mlen);
    rc = write_owned(c, data, HD__PREAMBLE_BYTES + 2 + mlen);
    data = NULL;
  }
  free(data);
  if (rc == 0) {
    rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) rc = hd__error_from_uv(rc, "cannot read from the connection");
  }
  if (rc != 0) {
    conn_end(c, rc, CLOSE_ABRUPT);
    return;
  }
  c->state = HD__CONN_HANDSHAKE;
}

int hd__conn_connect(const hd__conn_config_t *cfg, const struct sockaddr *addr,
                     hd__conn_t **out) {
  *out = NULL;
  hd__conn_t *c = conn_new(cfg);
  uv_connect_t *req = malloc(sizeof *req);
  if (c == NULL || req == NULL) {
    free(req);
    if (c) conn_discard(c);
    return hd__error(HD_ENOMEM, "out of memory dialing");
  }
  hd__addr_format(addr, c->peer, sizeof c->peer);
  c->state = HD__CONN_CONNECTING;
  int rc = uv_tcp_connect(req, &c->tcp, addr, on_connect);
  if (rc != 0) {
    free(req);
    conn_discard(c);
    char what[128];
    snprintf(what, sizeof what, "connect to %s", c->peer);
    return hd__error_from_uv(rc, what);
  }
  uv_timer_start(&c->timer, on_timer, cfg->handshake_timeout_ms, 0);
  *out = c;
  return 0;
}

void hd__conn_hold_reads(hd__conn_t *c, int hold) { reads_hold(c, HOLD_OWNER, hold); }

/* Sets or clears one reason to hold reads; reading stops with the first and resumes after the
 * last. */
static void reads_hold(hd__conn_t *c, int why, int hold) {
  if (c->state != HD__CONN_OPEN) return;
  int was = c->reads_held;
  c->reads_held = hold ? was | why : was & ~why;
  if ((was != 0) == (c->reads_held != 0)) return;
  if (c->reads_held) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    return;
  }
  c->last_recv_ms = uv_now(conn_loop(c));
  int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (rc != 0) {
    conn_end(c, hd__error_from_uv(rc, "cannot read from the connection again"), CLOSE_ABRUPT);
  }
}
