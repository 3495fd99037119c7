/* The client's side of event delivery against a raw server: a blocking socket on this thread that
 * speaks the handshake as responder with the internal noise/record/wire API, so these tests
 * control WELCOME (store id, pause) and every message, and depend on no server event code.
 * Every wait is bounded (WAIT_FOR, testutil.h). */
#include "harness.h"
#include "transport_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#define TOPIC "client-events-test"
#define WINDOW 8

/* ---- raw server ---------------------------------------------------------------------------- */

typedef struct rmsg {
  uint8_t type;
  uint8_t *body;
  size_t len;
} rmsg_t;

typedef struct rs {
  int lfd, fd, port;
  hd_keypair_t kp;
  uint8_t store_id[16];
  uint32_t pause_ms;
  int has_epoch;     /* WELCOME carries `epoch` (a server with epochs) */
  uint64_t features; /* WELCOME's (HD__FEATURE_*; 0: a server of an earlier release) */
  uint8_t epoch[16];
  hd__cipher_t tx;
  hd__record_reader_t rr;
  hd__msg_reader_t mr;
  int have_rr;
  rmsg_t q[4096];
  size_t nq, next;
} rs_t;

static int rs_collect(void *ctx, uint8_t type, const uint8_t *body, size_t len) {
  rs_t *r = ctx;
  if (r->nq == HD__ARRAY_SIZE(r->q)) return HD_ENOMEM;
  rmsg_t *m = &r->q[r->nq++];
  m->type = type;
  m->len = len;
  m->body = malloc(len ? len : 1);
  if (len) memcpy(m->body, body, len);
  return 0;
}

static void rs_drop_conn(rs_t *r) {
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  if (r->have_rr) {
    hd__record_reader_free(&r->rr);
    hd__msg_reader_free(&r->mr);
  }
  r->have_rr = 0;
  for (size_t i = 0; i < r->nq; i++) free(r->q[i].body);
  r->nq = r->next = 0;
}

static int rs_listen(rs_t *r, uint8_t id_byte, uint32_t pause_ms) {
  memset(r, 0, sizeof *r);
  r->fd = -1;
  hd_keypair_generate(&r->kp);
  memset(r->store_id, id_byte, 16);
  r->pause_ms = pause_ms;
  r->lfd = tu_listen(&r->port);
  return r->lfd >= 0 ? 0 : -1;
}

static void rs_close(rs_t *r) {
  rs_drop_conn(r);
  close(r->lfd);
}

/* Accepts one client and completes the handshake as responder; 0 when records are up. */
static int rs_accept(rs_t *r, int ms) {
  rs_drop_conn(r);
  struct pollfd pf = {r->lfd, POLLIN, 0};
  if (poll(&pf, 1, ms * hdt_slow()) <= 0) return -1;
  r->fd = accept(r->lfd, NULL, NULL);
  if (r->fd < 0) return -1;
  uint8_t prologue[43], xs[32], xp[32], pre[16], lenb[2], msg[512], payload[512], out[512];
  tu_prologue(prologue, TOPIC);
  hd__keypair_to_x25519(&r->kp, xs, xp);
  if (tu_recv_all(r->fd, pre, 16, 3000) != 0 || tu_recv_all(r->fd, lenb, 2, 3000) != 0) return -1;
  size_t len = hd__get_u16be(lenb), pl = 0, ol = 0;
  if (len == 0 || len > sizeof msg || tu_recv_all(r->fd, msg, len, 3000) != 0) return -1;
  hd__handshake_t hs;
  if (hd__handshake_init(&hs, HD__NOISE_IK, 0, prologue, 43, xs, NULL) != 0) return -1;
  if (hd__handshake_read_message(&hs, msg, len, payload, sizeof payload, &pl) != 0) return -1;
  hd__welcome_t w = {.version = HD_PROTOCOL_VERSION, .pause_ms = r->pause_ms,
                     .max_message_bytes = HD__DEFAULT_MAX_MESSAGE, .keepalive_ms = 60000};
  memcpy(w.store_id, r->store_id, 16);
  w.has_epoch = r->has_epoch;
  w.features = r->features;
  memcpy(w.epoch, r->epoch, 16);
  uint8_t wp[HD__WELCOME_MAX];
  size_t wl = hd__welcome_encode(&w, wp);
  if (hd__handshake_write_message(&hs, wp, wl, out + 2, sizeof out - 2, &ol) != 0) return -1;
  hd__put_u16be(out, (uint16_t)ol);
  if (tu_send_all(r->fd, out, ol + 2) != 0) return -1;
  hd__cipher_t rx;
  if (hd__handshake_split(&hs, &r->tx, &rx) != 0) return -1;
  hd__handshake_wipe(&hs);
  hd__msg_reader_init(&r->mr, HD__DEFAULT_MAX_MESSAGE, rs_collect, r);
  hd__record_reader_init(&r->rr, &rx, hd__record_to_msgs, &r->mr);
  r->have_rr = 1;
  return 0;
}

/* The next message from the client within `ms`, or NULL (timeout or closed). */
static rmsg_t *rs_next(rs_t *r, int ms) {
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * hdt_slow();
  while (r->next == r->nq) {
    uint64_t now = hdt_now_ms();
    if (now >= dl || r->fd < 0) return NULL;
    struct pollfd pf = {r->fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(dl - now)) <= 0) continue;
    uint8_t buf[65536];
    ssize_t n = recv(r->fd, buf, sizeof buf, 0);
    if (n <= 0) return NULL;
    if (hd__record_reader_feed(&r->rr, buf, (size_t)n) != 0) return NULL;
  }
  return &r->q[r->next++];
}

/* The next message of `type`, skipping PING/PONG. */
static rmsg_t *rs_expect(rs_t *r, uint8_t type, int ms) {
  for (;;) {
    rmsg_t *m = rs_next(r, ms);
    if (m == NULL) return NULL;
    if (m->type == HD__MSG_PING || m->type == HD__MSG_PONG) continue;
    return m->type == type ? m : NULL;
  }
}

static int rs_send(rs_t *r, hd__buf_t *m) {
  hd__buf_t rec;
  hd__buf_init(&rec);
  int rc = hd__record_seal(&r->tx, m->data, m->len, &rec);
  if (rc == 0) rc = tu_send_all(r->fd, rec.data, rec.len);
  hd__buf_free(&rec);
  hd__buf_free(m);
  return rc;
}

/* EVENTS with seqs[0..n), payload "ev<seq>". */
static int rs_events(rs_t *r, const uint64_t *seqs, size_t n) {
  hd__entry_t e[16];
  char p[16][16];
  for (size_t i = 0; i < n; i++) {
    snprintf(p[i], sizeof p[i], "ev%llu", (unsigned long long)seqs[i]);
    e[i] = (hd__entry_t){seqs[i], 1700000000000ull + seqs[i], (const uint8_t *)p[i], strlen(p[i])};
  }
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_events(&m, e, n);
  return rs_send(r, &m);
}

/* NOTICES with one EXPIRED notice numbered `seq`, about `count` events first..last. */
static int rs_notice(rs_t *r, uint64_t seq, uint64_t count, uint64_t first, uint64_t last) {
  hd__entry_t e = {.seq = seq, .created_ms = 1700000000000ull + seq,
                   .notice = {HD_NOTICE_EXPIRED, count, first, last}};
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_notices(&m, &e, 1);
  return rs_send(r, &m);
}

static int rs_epoch(rs_t *r, uint64_t floor, uint64_t seen_upto) {
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_epoch(&m, floor, seen_upto);
  return rs_send(r, &m);
}

static int rs_done(rs_t *r, const uint64_t *seqs, size_t n) {
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_done(&m, seqs, n);
  return rs_send(r, &m);
}

/* Collects CONSUMED entries until `want` seqs were seen; checks data "ok<seq>". With `credit`,
 * CREDIT messages between them are skipped. */
static int rs_consumed_among(rs_t *r, uint64_t *seen, size_t want, int ms, int credit) {
  size_t got = 0;
  while (got < want) {
    rmsg_t *m = rs_expect(r, HD__MSG_CONSUMED, ms);
    while (credit && m == NULL && r->next > 0 && r->q[r->next - 1].type == HD__MSG_CREDIT) {
      m = rs_expect(r, HD__MSG_CONSUMED, ms);
    }
    if (m == NULL) return (int)got;
    hd__entry_iter_t it;
    uint64_t count;
    if (hd__msg_entries_begin(&it, HD__MSG_CONSUMED, m->body, m->len, &count) != 0) return -1;
    hd__entry_t e;
    while (hd__msg_entries_next(&it, &e)) {
      char want_data[32];
      snprintf(want_data, sizeof want_data, "ok%llu", (unsigned long long)e.seq);
      if (e.len != strlen(want_data) || memcmp(e.data, want_data, e.len) != 0) return -1;
      if (got < want) seen[got] = e.seq;
      got++;
    }
  }
  return (int)got;
}

static int rs_consumed(rs_t *r, uint64_t *seen, size_t want, int ms) {
  return rs_consumed_among(r, seen, want, ms, 0);
}

/* ---- client side ----------------------------------------------------------------------------- */

enum { MODE_OK = 0, MODE_HOLD, MODE_FAIL_FIRST };

typedef struct handler {
  pthread_mutex_t mu;
  int mode;
  int fail_left;        /* MODE_FAIL_FIRST: failures still to give */
  uint64_t hold_from;   /* MODE_HOLD: events with seq >= this are kept, not completed */
  uint64_t seqs[256];   /* every call, in order */
  uint64_t at_ms[256];
  hd_event_t *held[256];
  uint32_t attempts[256]; /* hd_event_attempt of every call */
  uint64_t poison;        /* this event always fails (hd_event_fail "bad <seq>"), or with
                             `reject`, is rejected with `reason` */
  int reject;
  const char *reason;
  atomic_int calls;
  int nheld;
  int bad_payload;
} handler_t;

static void on_event(void *ud, hd_event_t *e) {
  tu_peer_t *p = ud;
  handler_t *h = *(handler_t **)((char *)p + sizeof(tu_peer_t));
  hd_event_info_t info;
  hd_event_info(e, &info);
  char want[32];
  snprintf(want, sizeof want, "ev%llu", (unsigned long long)info.seq);
  pthread_mutex_lock(&h->mu);
  if (info.payload_len != strlen(want) || memcmp(info.payload, want, info.payload_len) != 0 ||
      info.created_ms != (int64_t)(1700000000000ull + info.seq)) {
    h->bad_payload++;
  }
  hd_notice_t notice;
  if (hd_event_is_notice(e) || hd_event_notice(e, &notice) != HD_EINVAL) h->bad_payload++;
  int n = atomic_load(&h->calls);
  if (n < 256) {
    h->seqs[n] = info.seq;
    h->at_ms[n] = hdt_now_ms();
    h->attempts[n] = hd_event_attempt(e);
  }
  int complete = 1, ok = 1;
  if (h->poison != 0 && info.seq == h->poison) {
    atomic_fetch_add(&h->calls, 1);
    pthread_mutex_unlock(&h->mu);
    if (h->reject) {
      hd_event_reject(e, h->reason, strlen(h->reason));
    } else {
      snprintf(want, sizeof want, "bad %llu", (unsigned long long)info.seq);
      hd_event_fail(e, want, strlen(want));
    }
    return;
  }
  if (h->mode == MODE_HOLD && info.seq >= h->hold_from) {
    h->held[h->nheld++] = e;
    complete = 0;
  } else if (h->mode == MODE_FAIL_FIRST && h->fail_left > 0) {
    h->fail_left--;
    ok = 0;
  }
  atomic_fetch_add(&h->calls, 1);
  pthread_mutex_unlock(&h->mu);
  if (complete) {
    snprintf(want, sizeof want, "ok%llu", (unsigned long long)info.seq);
    hd_event_complete(e, ok, want, strlen(want));
  }
}

typedef struct cli {
  tu_peer_t p;
  handler_t *h; /* right after p: on_event finds it there */
  hd_client_t *c;
  hd_keypair_t kp;
  char dir[64];
  char addr[64];
} cli_t;

/* The client's keepalive_ms for the clients created next (0: the default). */
static uint32_t cli_keepalive_ms;
/* The client's max_attempts for the clients created next (0: the options' default). */
static uint32_t cli_max_attempts;
/* 1: the clients created next get options of version 1 (no max_attempts: unlimited). */
static int cli_options_v1;
/* The features the raw servers of the sessions opened next announce (with an all-zero epoch,
 * which the client's fresh store has too: no EPOCH is awaited). */
static uint64_t session_features;

/* Creates the client on c->dir with c->kp, dialing 127.0.0.1:port, the server key r's. */
static int cli_start(cli_t *c, handler_t *h, rs_t *r, int port) {
  tu_peer_init(&c->p);
  c->h = h;
  snprintf(c->addr, sizeof c->addr, "127.0.0.1:%d", port);
  hd_client_options_t o = tu_client_options(&c->kp, r->kp.public_key, TOPIC, c->addr, &c->p);
  o.data_dir = c->dir;
  o.on_event = on_event;
  o.window = WINDOW;
  o.retry_min_ms = 100;
  o.retry_max_ms = 200;
  o.keepalive_ms = cli_keepalive_ms;
  if (cli_max_attempts != 0) o.max_attempts = cli_max_attempts;
  if (cli_options_v1) o.version = 1;
  return hd_client_create(&c->c, &o);
}

static void handler_init(handler_t *h, int mode) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  h->mode = mode;
}

/* The client again, after `c` closed: its folder and key, a fresh handler in `mode`, dialing
 * 127.0.0.1:port. hd_client_create's result. */
static int cli_again(cli_t *again, handler_t *h, const cli_t *c, rs_t *r, int port, int mode) {
  handler_init(h, mode);
  *again = *c;
  return cli_start(again, h, r, port);
}

/* 1 if `m` is RESUME from store `id_or_null` (NULL: none), high_seq `high`, window `window`,
 * and, for a server without epochs, no epoch (the version-1 message). */
static int resume_is(rmsg_t *m, const uint8_t *id_or_null, uint64_t high, uint64_t window) {
  hd__resume_t res;
  if (m == NULL || hd__msg_decode_resume(m->body, m->len, &res) != 0) return 0;
  uint8_t zeros[16] = {0};
  if (memcmp(res.store_id, id_or_null ? id_or_null : zeros, 16) != 0) return 0;
  if (res.has_epoch != (session_features != 0)) return 0;
  if (res.high_seq != high || res.window != window) {
    fprintf(stderr, "  RESUME high %llu window %llu\n", (unsigned long long)res.high_seq,
            (unsigned long long)res.window);
    return 0;
  }
  return 1;
}

/* A raw server (store id bytes `id`, WELCOME pause `pause_ms`) and a client with a fresh key on a
 * fresh folder whose handler runs in `mode` (`arg`: MODE_HOLD's hold_from, MODE_FAIL_FIRST's
 * failures), connected to it: the handshake is done and the client's first message was RESUME
 * from nothing (no store id, high 0, the whole window). 0 or -1. */
static int session_open(rs_t *r, handler_t *h, cli_t *c, uint8_t id, uint32_t pause_ms, int mode,
                        uint64_t arg) {
  memset(c, 0, sizeof *c);
  handler_init(h, mode);
  if (mode == MODE_HOLD) h->hold_from = arg;
  if (mode == MODE_FAIL_FIRST) h->fail_left = (int)arg;
  hd_keypair_generate(&c->kp);
  snprintf(c->dir, sizeof c->dir, "/tmp/hd-ce-XXXXXX");
  if (rs_listen(r, id, pause_ms) != 0 || mkdtemp(c->dir) == NULL) return -1;
  r->features = session_features;
  r->has_epoch = session_features != 0;
  if (cli_start(c, h, r, r->port) != 0 || rs_accept(r, 5000) != 0) return -1;
  rmsg_t *m = rs_next(r, 3000);
  return m != NULL && m->type == HD__MSG_RESUME && resume_is(m, NULL, 0, WINDOW) ? 0 : -1;
}

/* Declares the test's raw server r, handler h and client c, and opens them (session_open). */
#define SESSION(...)                                                                              \
  rs_t r;                                                                                         \
  handler_t h;                                                                                    \
  cli_t c;                                                                                        \
  CHECK(session_open(&r, &h, &c, __VA_ARGS__) == 0)

/* The client closed the connection (its n-th disconnection) for a protocol error. */
static int cut_off(rs_t *r, cli_t *c, int n) {
  return tu_wait_closed(r->fd, 3000) && WAIT_FOR(atomic_load(&c->p.disconnected) >= n, 3000) &&
         atomic_load(&c->p.last_status) == HD_EPROTO;
}

/* The client told why before it closed: a BYE with HD_EPROTO's code and `text` in its text
 * (what it sent before, CONSUMED for one, is skipped). */
static int told_eproto(rs_t *r, const char *text) {
  for (;;) {
    rmsg_t *m = rs_next(r, 3000);
    if (m == NULL) return 0;
    if (m->type != HD__MSG_BYE) continue;
    uint64_t reason;
    const uint8_t *t;
    size_t tl;
    if (hd__msg_decode_bye(m->body, m->len, &reason, &t, &tl) != 0) return 0;
    fprintf(stderr, "  BYE %llu \"%.*s\"\n", (unsigned long long)reason, (int)tl, (const char *)t);
    return reason == (uint64_t)-HD_EPROTO && memmem(t, tl, text, strlen(text)) != NULL;
  }
}

/* After the client closed: the raw server goes, the client's folder too. */
static void session_end(rs_t *r, cli_t *c) {
  rs_close(r);
  hdt_rmrf(c->dir);
}


static uint64_t credit_sum(rs_t *r, uint64_t want, int ms) {
  uint64_t sum = 0;
  while (sum < want) {
    rmsg_t *m = rs_expect(r, HD__MSG_CREDIT, ms);
    uint64_t v;
    if (m == NULL || hd__msg_decode_varint(HD__MSG_CREDIT, m->body, m->len, &v) != 0) break;
    sum += v;
  }
  return sum;
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void bad_options(void) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t p;
  tu_peer_init(&p);
  hd_client_options_t o = tu_client_options(&kp, kp.public_key, TOPIC, "127.0.0.1:1", &p);
  hd_client_t *c;
  o.data_dir = NULL;
  CHECK_RC(hd_client_create(&c, &o), HD_EINVAL);
  CHECK(strstr(hd_last_error_message(), "data_dir") != NULL);
  o.data_dir = tu_data_dir();
  o.on_event = NULL;
  CHECK_RC(hd_client_create(&c, &o), HD_EINVAL);
  CHECK(strstr(hd_last_error_message(), "on_event") != NULL);
  o.on_event = tu_on_event;
  CHECK_OK(hd_client_create(&c, &o));
  hd_client_t *c2;
  CHECK_RC(hd_client_create(&c2, &o), HD_EBUSY); /* the folder is in use */
  CHECK_OK(hd_client_close_wait(c));
  CHECK(atomic_load(&p.destroyed) == 1); /* the failed create fired nothing */
}

/* RESUME first; EVENTS stored then handled in order once each, completed from another thread;
 * CONSUMED carries the data; DONE forgets and grants credit. */
static void deliver_consume_confirm(void) {
  /* the handler keeps every event: this thread completes them */
  SESSION(0x11, 0, MODE_HOLD, 1);
  uint64_t s1[] = {1, 2, 3}, s2[] = {4};
  CHECK(rs_events(&r, s1, 3) == 0);
  CHECK(rs_events(&r, s2, 1) == 0);
  uint64_t done_seqs[4];
  for (int i = 0; i < 4; i++) {
    /* one at a time: the next only once the previous completed */
    CHECK(WAIT_FOR(atomic_load(&h.calls) == i + 1, 3000));
    hdt_sleep_ms(20);
    CHECK(atomic_load(&h.calls) == i + 1);
    pthread_mutex_lock(&h.mu);
    hd_event_t *e = h.held[i];
    pthread_mutex_unlock(&h.mu);
    CHECK(hd_event_seq(e) == (uint64_t)i + 1);
    char d[16];
    snprintf(d, sizeof d, "ok%d", i + 1);
    CHECK_OK(hd_event_complete(e, 1, d, strlen(d))); /* from this thread */
  }
  CHECK(rs_consumed(&r, done_seqs, 4, 3000) == 4);
  for (int i = 0; i < 4; i++) CHECK(done_seqs[i] == (uint64_t)i + 1);
  CHECK(h.bad_payload == 0);
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.events_received == 4 && st.events_handled == 4 && st.consumed == 4);
  CHECK(st.unhandled == 0 && st.high_water == 4 && st.connected == 1);
  uint64_t d1[] = {1, 2, 3, 4, 99}; /* 99: not held, ignored */
  CHECK(rs_done(&r, d1, 5) == 0);
  CHECK(credit_sum(&r, 4, 3000) == 4);
  CHECK(WAIT_FOR((hdt_client_stats(c.c, &st) == 0 && st.events_confirmed == 4), 3000));
  CHECK(st.consumed == 0 && st.unhandled == 0);
  CHECK(atomic_load(&h.calls) == 4);
  CHECK_OK(hd_client_close_wait(c.c));
  CHECK(rs_expect(&r, HD__MSG_BYE, 3000) != NULL);
  session_end(&r, &c);
}

/* A failing handler is retried after a doubling backoff, and no later event goes first. */
static void retry_backoff(void) {
  SESSION(0x12, 0, MODE_FAIL_FIRST, 2);
  uint64_t s[] = {1, 2};
  CHECK(rs_events(&r, s, 2) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 4, 5000));
  CHECK(h.seqs[0] == 1 && h.seqs[1] == 1 && h.seqs[2] == 1 && h.seqs[3] == 2);
  CHECK(h.at_ms[1] - h.at_ms[0] >= 90);  /* retry_min 100 */
  CHECK(h.at_ms[2] - h.at_ms[1] >= 190); /* doubled, capped at 200 */
  uint64_t seen[2];
  CHECK(rs_consumed(&r, seen, 2, 3000) == 2);
  CHECK(seen[0] == 1 && seen[1] == 2);
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.events_failed == 2 && st.events_handled == 2);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* WELCOME's pause delays handling; PAUSE replaces it. */
static void pause_delays(void) {
  SESSION(0x13, 400, MODE_OK, 0);
  uint64_t s1[] = {1}, s2[] = {2};
  uint64_t t0 = hdt_now_ms();
  CHECK(rs_events(&r, s1, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 1, 3000));
  CHECK(h.at_ms[0] - t0 >= 380);
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_pause(&m, 0);
  CHECK(rs_send(&r, &m) == 0);
  hdt_sleep_ms(50);
  t0 = hdt_now_ms();
  CHECK(rs_events(&r, s2, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 2, 3000));
  CHECK(h.at_ms[1] - t0 < 300);
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.pause_ms == 0);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* Events out of order and wrong-direction messages close the connection with HD_EPROTO, told to
 * the server in a BYE first. */
static void protocol_errors(void) {
  SESSION(0x14, 0, MODE_OK, 0);
  uint64_t s2[] = {2}, s1[] = {1};
  CHECK(rs_events(&r, s2, 1) == 0);
  CHECK(rs_events(&r, s1, 1) == 0);
  CHECK(told_eproto(&r, "EVENTS: seq 1 after 2"));
  CHECK(cut_off(&r, &c, 1));
  /* it dials again: a CREDIT from the server is in the wrong direction */
  CHECK(rs_accept(&r, 5000) == 0);
  rmsg_t *m = rs_expect(&r, HD__MSG_RESUME, 3000);
  CHECK(resume_is(m, r.store_id, 2, WINDOW - 1)); /* holds 2 (consumed, unconfirmed) */
  hd__buf_t b;
  hd__buf_init(&b);
  hd__msg_encode_credit(&b, 5);
  CHECK(rs_send(&r, &b) == 0);
  CHECK(told_eproto(&r, "CREDIT received from the server"));
  CHECK(cut_off(&r, &c, 2));
  CHECK(atomic_load(&h.calls) == 1); /* event 2 was stored and handled once; 1 never stored */
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* A server that sends more events than the window it was given is cut off (HD_EPROTO), so it
 * cannot make the client hold without bound; what fitted the window was stored. */
static void window_enforced(void) {
  /* the handler holds every event: nothing is confirmed, no credit comes back */
  SESSION(0x16, 0, MODE_HOLD, 1);
  uint64_t first[WINDOW], extra[] = {WINDOW + 1};
  for (int i = 0; i < WINDOW; i++) first[i] = (uint64_t)i + 1;
  CHECK(rs_events(&r, first, WINDOW) == 0);
  CHECK(rs_events(&r, extra, 1) == 0);
  CHECK(cut_off(&r, &c, 1));
  hd_client_stats_t st;
  CHECK(WAIT_FOR((hdt_client_stats(c.c, &st), st.high_water == WINDOW), 3000));
  CHECK_OK(hd_client_close_wait(c.c));
  for (int i = 0; i < h.nheld; i++) hd_event_complete(h.held[i], 0, NULL, 0); /* only frees */
  session_end(&r, &c);
}

/* Restart on the same folder: unhandled events are handled with no server; handled but
 * unconfirmed ones are reported again (CONSUMED) and not handled again. A completion after the
 * close is safe. */
static void restart(void) {
  SESSION(0x15, 0, MODE_HOLD, 2);
  uint64_t s[] = {1, 2, 3};
  CHECK(rs_events(&r, s, 3) == 0);
  uint64_t seen[1];
  CHECK(rs_consumed(&r, seen, 1, 3000) == 1 && seen[0] == 1);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 2, 3000)); /* 2 is held by the handler */
  CHECK_OK(hd_client_close_wait(c.c));
  CHECK_OK(hd_event_complete(h.held[0], 1, "late", 4)); /* after close: freed, nothing else */
  rs_drop_conn(&r);

  /* no server reachable: 2 and 3 are handled from the store */
  handler_t h2;
  cli_t c2;
  CHECK_OK(cli_again(&c2, &h2, &c, &r, 1, MODE_OK));
  CHECK(WAIT_FOR(atomic_load(&h2.calls) == 2, 5000));
  CHECK(h2.seqs[0] == 2 && h2.seqs[1] == 3);
  hdt_sleep_ms(50);
  CHECK(atomic_load(&h2.calls) == 2);
  CHECK_OK(hd_client_close_wait(c2.c));

  /* with the server again: all three reported consumed, none handled again */
  handler_t h3;
  cli_t c3;
  CHECK_OK(cli_again(&c3, &h3, &c, &r, r.port, MODE_OK));
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_is(rs_next(&r, 3000), r.store_id, 3, WINDOW - 3));
  uint64_t all[3];
  CHECK(rs_consumed(&r, all, 3, 3000) == 3);
  CHECK(all[0] == 1 && all[1] == 2 && all[2] == 3);
  uint64_t d[] = {1, 2, 3};
  CHECK(rs_done(&r, d, 3) == 0);
  CHECK(credit_sum(&r, 3, 3000) == 3);
  hdt_sleep_ms(50);
  CHECK(atomic_load(&h3.calls) == 0);
  CHECK_OK(hd_client_close_wait(c3.c));
  session_end(&r, &c);
}

/* A new server store id: the client resumes from 0 and handles the new store's events even where
 * their numbers repeat; what it consumed of the old store is neither reported to the new one nor
 * forgotten by the new one's DONE; back to the old store, it resumes with the old mark and
 * reports them there. */
static void store_id_change(void) {
  SESSION(0x16, 0, MODE_OK, 0);
  uint64_t s[] = {1, 2};
  CHECK(rs_events(&r, s, 2) == 0);
  uint64_t seen[2];
  CHECK(rs_consumed(&r, seen, 2, 3000) == 2);
  /* the server comes back with another store */
  uint8_t old_id[16];
  memcpy(old_id, r.store_id, 16);
  memset(r.store_id, 0x17, 16);
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  /* the old store's two consumed events do not count against the new store's window */
  CHECK(resume_is(rs_next(&r, 3000), old_id, 0, WINDOW));
  CHECK(rs_events(&r, s, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 3, 3000));
  CHECK(h.seqs[2] == 1);
  CHECK(rs_consumed(&r, seen, 1, 3000) == 1 && seen[0] == 1);
  CHECK(rs_done(&r, s, 2) == 0); /* 2 is only the old store's */
  CHECK(credit_sum(&r, 1, 3000) == 1); /* the new store's 1 left the store */
  /* back to the old store: its mark, and its consumptions reported again */
  memcpy(r.store_id, old_id, 16);
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_is(rs_next(&r, 3000), old_id, 2, WINDOW - 2));
  CHECK(rs_consumed(&r, seen, 2, 3000) == 2 && seen[0] == 1 && seen[1] == 2);
  CHECK(atomic_load(&h.calls) == 3);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* Sets the client store's size quota (store.h set_quota: 1 keeps the size it has, 0 lifts it)
 * and waits until it is in force. 0 or -1. */
typedef struct quota_wait {
  atomic_int done, status;
} quota_wait_t;

static void quota_set(void *data, int status, uint64_t value) {
  quota_wait_t *q = data;
  (void)value;
  atomic_store(&q->status, status);
  atomic_store(&q->done, 1);
}

static int set_quota(hd_client_t *client, uint64_t pages) {
  hd__client_store_t *s = hd__client_store_of(client);
  quota_wait_t q = {0, 0};
  if (s == NULL || s->vt->set_quota(s, pages, quota_set, &q) != 0) return -1;
  return WAIT_FOR(atomic_load(&q.done), 3000) && atomic_load(&q.status) == 0 ? 0 : -1;
}

/* Reads CONSUMED messages until every seq of `want` (a bit per seq, seqs below 64) is in *seen
 * or `ms` passed; adds the seqs it reads to *seen and their data's length to len[seq] (seqs
 * below 8), SIZE_MAX if the data is not "ok<seq>" or, for BIG_DATA bytes, all 'b'. Returns
 * 1 once all of `want` were seen. */
#define BIG_DATA (256 * 1024) /* needs new pages, whatever the store has free */

static int consumed_seen(rs_t *r, uint64_t want, uint64_t *seen, size_t len[8], int ms) {
  while ((*seen & want) != want) {
    rmsg_t *m = rs_next(r, ms);
    if (m == NULL) break;
    hd__entry_iter_t it;
    hd__entry_t e;
    if (m->type != HD__MSG_CONSUMED ||
        hd__msg_entries_begin(&it, HD__MSG_CONSUMED, m->body, m->len, NULL) != 0) {
      continue;
    }
    while (hd__msg_entries_next(&it, &e)) {
      if (e.seq >= 64) continue;
      *seen |= 1ull << e.seq;
      if (e.seq >= 8) continue;
      char ok[16];
      snprintf(ok, sizeof ok, "ok%llu", (unsigned long long)e.seq);
      int good = e.len == BIG_DATA ? 1 : e.len == strlen(ok) && memcmp(e.data, ok, e.len) == 0;
      for (size_t i = 0; e.len == BIG_DATA && i < e.len; i++) good &= e.data[i] == 'b';
      len[e.seq] = good ? e.len : SIZE_MAX;
    }
  }
  return (*seen & want) == want;
}

/* The client's disk is full (a size quota: the write fails with HD_ENOSPC as on a full disk)
 * when the handler completes an event. The record is retried with a backoff; the event is not
 * handed to the handler again, and once the failure is known no later event goes out; when
 * there is room again it is recorded and reported with its data, the handler goes on, the
 * server's DONE forgets them, and a restart on the folder handles nothing again. */
static void record_retried_disk_full(void) {
  tu_log_clear();
  SESSION(0x18, 0, MODE_HOLD, 2);
  uint64_t s[] = {1, 2, 3, 4};
  size_t len[8] = {0};
  uint64_t seen = 0;
  CHECK(rs_events(&r, s, 4) == 0);
  CHECK(consumed_seen(&r, 1u << 1, &seen, len, 3000)); /* 1: handled, recorded, reported */
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 2, 3000));        /* 2 is with the handler */
  CHECK(set_quota(c.c, 1) == 0);                            /* no room to grow */
  static uint8_t big[BIG_DATA];
  memset(big, 'b', sizeof big);
  CHECK_OK(hd_event_complete(h.held[0], 1, big, sizeof big));
  CHECK(WAIT_FOR(tu_log_has("recording event 2 consumed failed"), 3000));
  /* 3 went out with 2's record on its way (the next event does not wait for the commit) */
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 3, 3000));
  CHECK_OK(hd_event_complete(h.held[1], 1, "ok3", 3));
  hdt_sleep_ms(600 * hdt_slow()); /* retries after 100 and 200 ms, then every 200 ms: all fail */
  CHECK(atomic_load(&h.calls) == 3); /* 2 is not handed out again, nor 4 while 2 is unrecorded */
  CHECK(tu_log_has("recording event 2 consumed failed (ENOSPC"));
  CHECK(tu_log_has("recording 1 consumed events again"));
  CHECK(!consumed_seen(&r, 1u << 2, &seen, len, 50)); /* 2 is not reported (3 may be) */
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.events_handled == 3 && st.unhandled >= 2); /* 2 and 4 (3 too, if not recorded) */
  CHECK(set_quota(c.c, 0) == 0); /* room again: the next try records 2 */
  CHECK(consumed_seen(&r, 1u << 2 | 1u << 3, &seen, len, 3000));
  CHECK(len[2] == BIG_DATA && len[3] == 3);
  CHECK(WAIT_FOR(tu_log_has("recorded again"), 3000));
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 4, 3000)); /* the handler goes on with 4 */
  CHECK(h.seqs[3] == 4);
  CHECK_OK(hd_event_complete(h.held[2], 1, "ok4", 3));
  CHECK(consumed_seen(&r, 1u << 4, &seen, len, 3000) && seen == 0x1e && len[4] == 3);
  uint64_t d[] = {1, 2, 3, 4};
  CHECK(rs_done(&r, d, 4) == 0);
  CHECK(credit_sum(&r, 4, 3000) == 4);
  CHECK(WAIT_FOR((hdt_client_stats(c.c, &st) == 0 && st.events_confirmed == 4), 3000));
  CHECK(st.consumed == 0 && st.unhandled == 0 && st.events_handled == 4);
  CHECK_OK(hd_client_close_wait(c.c));
  /* a restart on the folder: nothing to handle again, nothing to report */
  handler_t h2;
  cli_t c2;
  CHECK_OK(cli_again(&c2, &h2, &c, &r, r.port, MODE_OK));
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_is(rs_next(&r, 3000), r.store_id, 4, WINDOW));
  CHECK(rs_next(&r, 300) == NULL);
  CHECK(atomic_load(&h2.calls) == 0);
  CHECK_OK(hd_client_close_wait(c2.c));
  session_end(&r, &c);
}

/* 1 if `m` is RESUME with high_seq `high` carrying the epoch `epoch`. */
static int resume_in(rmsg_t *m, uint64_t high, const uint8_t epoch[16]) {
  hd__resume_t res;
  if (m == NULL || hd__msg_decode_resume(m->body, m->len, &res) != 0) return 0;
  return res.has_epoch && memcmp(res.epoch, epoch, 16) == 0 && res.high_seq == high;
}

/* The client's rollback counters: epoch_resumes, rollbacks, consumed_dropped (UINT64_MAX if the
 * call fails). */
static uint64_t cli_rollback(cli_t *c, int which) {
  hd_rollback_stats_t st = {.version = HD_ROLLBACK_STATS_VERSION};
  if (hd_client_rollback_stats(c->c, &st) != 0) return UINT64_MAX;
  return which == 0 ? st.epoch_resumes : which == 1 ? st.rollbacks : st.consumed_dropped;
}

/* A server without epochs gets the version-1 RESUME (checked by session_open). Once it has
 * epochs, the client sends its own (zeros: none yet) and reports nothing consumed until EPOCH
 * has been applied; after a rollback it drops the consumed events above the floor unreported
 * (their numbers are other events now) and takes the events sent again above it as new; EPOCH
 * that nobody asked for is a protocol error. */
static void resume_epochs(void) {
  SESSION(0x31, 0, MODE_OK, 0);
  uint64_t s3[] = {1, 2, 3}, seen[3];
  CHECK(rs_events(&r, s3, 3) == 0);
  CHECK(rs_consumed(&r, seen, 3, 3000) == 3);
  uint8_t zeros[16] = {0}, e1[16], e2[16];
  memset(e1, 0xE1, sizeof e1);
  memset(e2, 0xE2, sizeof e2);
  /* the server now has epochs: e1 */
  r.has_epoch = 1;
  memcpy(r.epoch, e1, 16);
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_in(rs_next(&r, 3000), 3, zeros));
  CHECK(rs_next(&r, 200) == NULL); /* no CONSUMED before EPOCH */
  CHECK(rs_epoch(&r, 3, 3) == 0);  /* nothing was lost */
  CHECK(rs_consumed(&r, seen, 3, 3000) == 3);
  CHECK(rs_events(&r, s3, 3) == 0); /* everything pending again: held, dropped */
  CHECK(WAIT_FOR(cli_rollback(&c, 0) == 1, 3000));
  CHECK(cli_rollback(&c, 1) == 0);
  /* the store rolled back to 1 and is in epoch e2 */
  memcpy(r.epoch, e2, 16);
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_in(rs_next(&r, 3000), 3, e1));
  CHECK(rs_next(&r, 200) == NULL);
  CHECK(rs_epoch(&r, 1, 1) == 0);
  CHECK(rs_consumed(&r, seen, 1, 3000) == 1 && seen[0] == 1); /* 2 and 3: dropped, unreported */
  CHECK(WAIT_FOR(cli_rollback(&c, 1) == 1, 3000));
  CHECK(cli_rollback(&c, 0) == 2 && cli_rollback(&c, 2) == 2);
  CHECK(rs_events(&r, s3, 3) == 0); /* everything pending again: 1 held, 2 and 3 new */
  CHECK(rs_consumed_among(&r, seen, 2, 3000, 1) == 2 && seen[0] == 2 && seen[1] == 3);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 5, 3000));
  CHECK(h.seqs[3] == 2 && h.seqs[4] == 3);
  /* a third connection resumes in e2 with the mark at 3: nothing more to say */
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_in(rs_next(&r, 3000), 3, e2));
  uint64_t all[3];
  CHECK(rs_consumed(&r, all, 3, 3000) == 3); /* reported at once: same epoch */
  int before = atomic_load(&c.p.disconnected);
  CHECK(rs_epoch(&r, 3, 3) == 0); /* unasked */
  CHECK(cut_off(&r, &c, before + 1));
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* Events the client already holds, sent again (a server that resumes from seq 1, as after EPOCH or
 * a store id change), are dropped as already seen, and the credit they took is given back at once
 * in CREDIT: it does not wait for DONE, which will never come for them. */
static void credit_back_for_seen(void) {
  SESSION(0x19, 0, MODE_HOLD, 1); /* the handler keeps every event: nothing is consumed */
  uint64_t s[] = {1, 2, 3};
  CHECK(rs_events(&r, s, 3) == 0);
  hd_client_stats_t st;
  CHECK(WAIT_FOR((hdt_client_stats(c.c, &st) == 0 && st.events_received == 3), 3000));
  rs_drop_conn(&r);
  CHECK(rs_accept(&r, 5000) == 0);
  CHECK(resume_is(rs_next(&r, 3000), r.store_id, 3, WINDOW - 3));
  CHECK(rs_events(&r, s, 3) == 0); /* all three again, within the credit of 5 */
  CHECK(credit_sum(&r, 3, 3000) == 3);
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.events_received == 3 && st.unhandled == 3 && st.high_water == 3);
  CHECK(atomic_load(&c.p.disconnected) == 1); /* only the drop above */
  CHECK_OK(hd_client_close_wait(c.c));
  for (int i = 0; i < h.nheld; i++) hd_event_complete(h.held[i], 0, NULL, 0); /* only frees */
  session_end(&r, &c);
}

/* The pause window opens when events arrive to an idle handler (once stored) and is not pushed
 * back by later arrivals: events arriving every 150 ms with a pause of 600 ms are handed out
 * while they keep coming. Were the window to restart at each arrival, nothing would be handed
 * out before they stopped. */
static void pause_from_first_arrival(void) {
  SESSION(0x1a, 600, MODE_OK, 0);
  uint64_t sent = 0;
  while (sent < WINDOW && atomic_load(&h.calls) == 0) {
    uint64_t s[] = {++sent};
    CHECK(rs_events(&r, s, 1) == 0);
    hdt_sleep_ms(150);
  }
  printf("  first hand-out after %llu arrivals 150 ms apart (pause 600 ms)\n",
         (unsigned long long)sent);
  CHECK(atomic_load(&h.calls) >= 1 && sent < WINDOW);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == (int)sent, 3000));
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* The client keeps alive on its own keepalive_ms, not on the interval WELCOME gives (60 s here):
 * it PINGs after 200 ms of silence and, unanswered, drops the connection after its idle timeout
 * (3 x keepalive) with HD_ETIMEDOUT and without a BYE. */
static void client_keepalive_own_interval(void) {
  cli_keepalive_ms = 200;
  SESSION(0x1b, 0, MODE_OK, 0);
  cli_keepalive_ms = 0;
  rmsg_t *m;
  while ((m = rs_next(&r, 3000)) != NULL && m->type != HD__MSG_PING) {
  }
  CHECK(m != NULL);
  while ((m = rs_next(&r, 5000)) != NULL) CHECK(m->type != HD__MSG_BYE);
  CHECK(WAIT_FOR(atomic_load(&c.p.disconnected) >= 1, 3000));
  CHECK(atomic_load(&c.p.last_status) == HD_ETIMEDOUT);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* With the notices feature in WELCOME, a notice comes in its place between events: stored (not
 * counted as an event), completed at once without on_notice (none set), reported CONSUMED in
 * order with the events, forgotten at DONE with its credit given back. */
static void notices_in_place(void) {
  rs_t r;
  handler_t h;
  cli_t c;
  memset(&r, 0, sizeof r);
  /* session_open with a server that announces notices: its listen and the feature first */
  memset(&c, 0, sizeof c);
  handler_init(&h, MODE_OK);
  hd_keypair_generate(&c.kp);
  snprintf(c.dir, sizeof c.dir, "/tmp/hd-ce-XXXXXX");
  CHECK(rs_listen(&r, 0x1a, 0) == 0 && mkdtemp(c.dir) != NULL);
  r.features = HD__FEATURE_NOTICES; /* carried after the epoch: a server of this release */
  r.has_epoch = 1;
  memset(r.epoch, 0xe1, sizeof r.epoch);
  CHECK(cli_start(&c, &h, &r, r.port) == 0 && rs_accept(&r, 5000) == 0);
  CHECK(rs_expect(&r, HD__MSG_RESUME, 3000) != NULL);
  CHECK(rs_epoch(&r, 0, 0) == 0); /* the client knew no epoch: nothing it saw is vouched for */
  uint64_t s1[] = {1}, s3[] = {3};
  CHECK(rs_events(&r, s1, 1) == 0);
  CHECK(rs_notice(&r, 2, 7, 10, 20) == 0);
  CHECK(rs_events(&r, s3, 1) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 2, 3000));
  CHECK(h.seqs[0] == 1 && h.seqs[1] == 3 && h.bad_payload == 0);
  uint64_t seen[3] = {0};
  size_t got = 0;
  while (got < 3) { /* the notice's entry has no data; the events' "ok<seq>" */
    rmsg_t *m = rs_expect(&r, HD__MSG_CONSUMED, 3000);
    CHECK(m != NULL);
    hd__entry_iter_t it;
    uint64_t count;
    CHECK(hd__msg_entries_begin(&it, HD__MSG_CONSUMED, m->body, m->len, &count) == 0);
    hd__entry_t e;
    while (hd__msg_entries_next(&it, &e) && got < 3) {
      CHECK((e.seq == 2) == (e.len == 0));
      seen[got++] = e.seq;
    }
  }
  CHECK(seen[0] == 1 && seen[1] == 2 && seen[2] == 3);
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.events_received == 2 && st.notices_received == 1 && st.events_handled == 2);
  uint64_t d[] = {1, 2, 3};
  CHECK(rs_done(&r, d, 3) == 0);
  CHECK(credit_sum(&r, 3, 3000) == 3);
  CHECK(WAIT_FOR((hdt_client_stats(c.c, &st) == 0 && st.consumed == 0), 3000));
  CHECK(st.unhandled == 0 && st.high_water == 3);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* NOTICES from a server that did not announce the feature is a protocol error. */
static void notices_without_feature_refused(void) {
  SESSION(0x1b, 0, MODE_OK, 0);
  CHECK(rs_notice(&r, 1, 1, 1, 1) == 0);
  CHECK(told_eproto(&r, "NOTICES on a connection without the notices feature"));
  CHECK(cut_off(&r, &c, 1));
  hd_client_stats_t st;
  CHECK_OK(hdt_client_stats(c.c, &st));
  CHECK(st.notices_received == 0 && st.high_water == 0);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* ---- poison events (docs/QUEUES.md "Poison events") ------------------------------------------ */

/* What the client reported: CONSUMED seqs, FAILED entries (seq, attempts, reason), collected
 * until `consumed` and `failed` of them came (CREDIT, PING and PONG skipped); 0, or -1 if another
 * message came, the connection ended or `ms` passed first. */
typedef struct reports {
  uint64_t consumed[16];
  size_t nc;
  uint64_t failed[16], attempts[16];
  char reason[16][HD_REASON_MAX_BYTES + 1];
  size_t reason_len[16];
  size_t nf;
} reports_t;

static int rs_reports(rs_t *r, reports_t *out, size_t consumed, size_t failed, int ms) {
  memset(out, 0, sizeof *out);
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * hdt_slow();
  while (out->nc < consumed || out->nf < failed) {
    uint64_t now = hdt_now_ms();
    rmsg_t *m = now < dl ? rs_next(r, (int)((dl - now) / hdt_slow()) + 1) : NULL;
    if (m == NULL) return -1;
    if (m->type == HD__MSG_CREDIT || m->type == HD__MSG_PING || m->type == HD__MSG_PONG) continue;
    if (m->type != HD__MSG_CONSUMED && m->type != HD__MSG_FAILED) return -1;
    hd__entry_iter_t it;
    uint64_t count;
    if (hd__msg_entries_begin(&it, m->type, m->body, m->len, &count) != 0) return -1;
    hd__entry_t e;
    while (hd__msg_entries_next(&it, &e)) {
      if (m->type == HD__MSG_CONSUMED && out->nc < 16) {
        out->consumed[out->nc++] = e.seq;
      } else if (m->type == HD__MSG_FAILED && out->nf < 16) {
        out->failed[out->nf] = e.seq;
        out->attempts[out->nf] = e.attempts;
        memcpy(out->reason[out->nf], e.data, e.len);
        out->reason[out->nf][e.len] = '\0';
        out->reason_len[out->nf++] = e.len;
      }
    }
  }
  return 0;
}

/* Opens a session whose client gives up after `max` attempts and whose raw server announces
 * `features`; the handler fails (or rejects) event `poison`. */
static int poison_open(rs_t *r, handler_t *h, cli_t *c, uint8_t id, uint64_t features,
                       uint32_t max, uint64_t poison) {
  cli_max_attempts = max;
  session_features = features;
  int rc = session_open(r, h, c, id, 0, MODE_OK, 0);
  cli_max_attempts = 0;
  session_features = 0;
  h->poison = poison;
  return rc;
}

/* An event whose handler fails max_attempts times is recorded failed and reported in FAILED
 * with its attempts and last reason; the events after it are handled meanwhile... after it, in
 * order; DONE forgets it like a consumed one. */
static void poison_reported_failed(void) {
  rs_t r;
  handler_t h;
  cli_t c;
  CHECK(poison_open(&r, &h, &c, 0x21, HD__FEATURE_FAILED, 3, 2) == 0);
  uint64_t s[] = {1, 2, 3};
  CHECK(rs_events(&r, s, 3) == 0);
  reports_t rep;
  CHECK(rs_reports(&r, &rep, 2, 1, 5000) == 0);
  CHECK(rep.nc == 2 && rep.consumed[0] == 1 && rep.consumed[1] == 3);
  CHECK(rep.nf == 1 && rep.failed[0] == 2 && rep.attempts[0] == 3);
  CHECK(strcmp(rep.reason[0], "bad 2") == 0);
  CHECK(atomic_load(&h.calls) == 5);
  static const uint64_t seqs[] = {1, 2, 2, 2, 3};
  static const uint32_t attempts[] = {1, 1, 2, 3, 1};
  for (int i = 0; i < 5; i++) CHECK(h.seqs[i] == seqs[i] && h.attempts[i] == attempts[i]);
  hd_client_stats_t st;
  CHECK(WAIT_FOR(hdt_client_stats(c.c, &st) == 0 && st.events_dead == 1, 3000));
  CHECK(st.events_failed == 3 && st.events_handled == 2 && st.consumed == 3 && st.unhandled == 0);
  uint64_t done[] = {1, 2, 3};
  CHECK(rs_done(&r, done, 3) == 0);
  CHECK(WAIT_FOR(hdt_client_stats(c.c, &st) == 0 && st.events_confirmed == 3, 3000));
  CHECK(st.consumed == 0);
  /* a version-1 stats struct gets its fields only */
  struct {
    hd_client_stats_t st;
    uint64_t canary;
  } v1;
  memset(&v1, 0xAB, sizeof v1);
  v1.st.version = 1;
  CHECK_OK(hd_client_stats(c.c, &v1.st));
  CHECK(v1.st.events_confirmed == 3);
  uint64_t ab;
  memset(&ab, 0xAB, sizeof ab);
  CHECK(v1.st.events_dead == ab && v1.st.notices_received == ab);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* A rejected event is reported failed at once (attempts 1) with its reason cut to
 * HD_REASON_MAX_BYTES at a character's start; a reason that is not UTF-8 is refused
 * (HD_EINVAL) and the event stays the handler's. */
static void poison_rejected_cut(void) {
  rs_t r;
  handler_t h;
  cli_t c;
  char reason[HD_REASON_MAX_BYTES + 8];
  memset(reason, 'x', sizeof reason);
  memcpy(reason + HD_REASON_MAX_BYTES - 1, "\xc3\xa9", 2); /* é across the limit */
  reason[sizeof reason - 1] = '\0';
  CHECK(poison_open(&r, &h, &c, 0x22, HD__FEATURE_FAILED, 0, 1) == 0);
  h.reject = 1;
  h.reason = "\xc3("; /* not UTF-8: refused */
  hd_event_t *held = NULL;
  h.mode = MODE_HOLD;
  h.hold_from = 1;
  h.poison = 0;
  uint64_t s[] = {1, 2};
  CHECK(rs_events(&r, s, 2) == 0);
  CHECK(WAIT_FOR(atomic_load(&h.calls) == 1, 3000));
  pthread_mutex_lock(&h.mu);
  held = h.held[0];
  h.mode = MODE_OK;
  pthread_mutex_unlock(&h.mu);
  CHECK(hd_event_attempt(held) == 1 && hd_event_attempt(NULL) == 0);
  CHECK_RC(hd_event_reject(held, h.reason, strlen(h.reason)), HD_EINVAL);
  CHECK_RC(hd_event_fail(held, NULL, 3), HD_EINVAL);
  /* a second completion is not checked here: the loop may have freed the event already */
  CHECK_OK(hd_event_reject(held, reason, strlen(reason)));
  reports_t rep;
  CHECK(rs_reports(&r, &rep, 1, 1, 5000) == 0);
  CHECK(rep.nf == 1 && rep.failed[0] == 1 && rep.attempts[0] == 1);
  CHECK(rep.reason_len[0] == HD_REASON_MAX_BYTES - 1);
  CHECK(rep.nc == 1 && rep.consumed[0] == 2);
  hd_client_stats_t st;
  CHECK(WAIT_FOR(hdt_client_stats(c.c, &st) == 0 && st.events_dead == 1, 3000));
  CHECK(st.events_failed == 0 && st.events_handled == 1);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* A server of an earlier release (no FAILED in its WELCOME) is not sent FAILED: the failed event
 * is kept, later events flow on, and it is reported once the client talks to a server that takes
 * FAILED. */
static void poison_kept_for_old_server(void) {
  rs_t r;
  handler_t h;
  cli_t c;
  tu_log_clear();
  CHECK(poison_open(&r, &h, &c, 0x23, 0, 2, 2) == 0);
  uint64_t s[] = {1, 2, 3};
  CHECK(rs_events(&r, s, 3) == 0);
  reports_t rep;
  CHECK(rs_reports(&r, &rep, 2, 0, 5000) == 0);
  CHECK(rep.consumed[0] == 1 && rep.consumed[1] == 3);
  hd_client_stats_t st;
  CHECK(WAIT_FOR(hdt_client_stats(c.c, &st) == 0 && st.events_dead == 1, 3000));
  CHECK(WAIT_FOR(tu_log_has("takes no FAILED"), 3000));
  uint64_t done[] = {1, 3};
  CHECK(rs_done(&r, done, 2) == 0);
  CHECK(WAIT_FOR(hdt_client_stats(c.c, &st) == 0 && st.events_confirmed == 2, 3000));
  CHECK(st.consumed == 1); /* the failed one, kept */
  uint64_t s4[] = {4};
  CHECK(rs_events(&r, s4, 1) == 0);
  CHECK(rs_reports(&r, &rep, 1, 0, 5000) == 0 && rep.consumed[0] == 4);
  for (rmsg_t *m; (m = rs_next(&r, 300)) != NULL;) CHECK(m->type != HD__MSG_FAILED);
  CHECK_OK(hd_client_close_wait(c.c));
  /* the same server store, now of a release that takes FAILED */
  rs_t r2;
  CHECK(rs_listen(&r2, 0x23, 0) == 0);
  r2.kp = r.kp;
  r2.features = HD__FEATURE_FAILED;
  r2.has_epoch = 1;
  rs_close(&r);
  handler_t h2;
  cli_t c2;
  CHECK_OK(cli_again(&c2, &h2, &c, &r2, r2.port, MODE_OK));
  CHECK(rs_accept(&r2, 5000) == 0);
  CHECK(rs_expect(&r2, HD__MSG_RESUME, 3000) != NULL);
  CHECK(rs_reports(&r2, &rep, 0, 1, 5000) == 0);
  CHECK(rep.failed[0] == 2 && rep.attempts[0] == 2 && strcmp(rep.reason[0], "bad 2") == 0);
  CHECK_OK(hd_client_close_wait(c2.c));
  session_end(&r2, &c);
}

/* Options of version 1 know no max_attempts: a failing event is retried for ever, as before
 * (here 12 times, past the default of 10), and hd_client_options_init(..., 1) writes only the
 * fields of version 1. */
static void poison_v1_options_unlimited(void) {
  struct {
    hd_client_options_t o;
    uint64_t canary;
  } v1;
  memset(&v1, 0xAB, sizeof v1);
  CHECK_OK(hd_client_options_init(&v1.o, 1));
  CHECK(v1.o.version == 1 && v1.o.on_event == NULL && v1.o.retry_max_ms == 0);
  uint32_t ab;
  memset(&ab, 0xAB, sizeof ab);
  CHECK(v1.o.max_attempts == ab);
  hd_client_options_t v2;
  CHECK_OK(hd_client_options_init(&v2, HD_CLIENT_OPTIONS_VERSION));
  CHECK(v2.max_attempts == HD_DEFAULT_MAX_ATTEMPTS && v2.on_notice == NULL);

  cli_options_v1 = 1;
  rs_t r;
  handler_t h;
  cli_t c;
  int opened = session_open(&r, &h, &c, 0x25, 0, MODE_FAIL_FIRST, 12);
  cli_options_v1 = 0;
  CHECK(opened == 0);
  uint64_t one = 1;
  CHECK(rs_events(&r, &one, 1) == 0);
  reports_t rep;
  CHECK(rs_reports(&r, &rep, 1, 0, 10000) == 0 && rep.consumed[0] == 1);
  CHECK(atomic_load(&h.calls) == 13 && h.attempts[12] == 13);
  CHECK_OK(hd_client_close_wait(c.c));
  session_end(&r, &c);
}

/* The crash child (poison_crash_counted): a client on HD_POISON_DIR whose handler appends the
 * attempt to HD_POISON_LOG and aborts the process; it exits once an event was reported failed
 * and confirmed. Nothing to do outside a child. */
static const char *poison_log;

static void crash_on_event(void *ud, hd_event_t *e) {
  char line[32];
  int n = snprintf(line, sizeof line, "%u\n", hd_event_attempt(e));
  int fd = open(poison_log, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd >= 0) {
    if (write(fd, line, (size_t)n) != n) fprintf(stderr, "poison child: log write failed\n");
    close(fd);
  }
  abort();
}

static void poison_crash_child(void) {
  const char *dir = getenv("HD_POISON_DIR"), *port = getenv("HD_POISON_PORT");
  poison_log = getenv("HD_POISON_LOG");
  if (dir == NULL || port == NULL || poison_log == NULL) return; /* not a child */
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  hd_keypair_t kp, server;
  CHECK_OK(hdt_example_keypair(&kp, 1));
  CHECK_OK(hdt_example_keypair(&server, 0));
  tu_peer_t p;
  tu_peer_init(&p);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%s", port);
  hd_client_options_t o = tu_client_options(&kp, server.public_key, TOPIC, addr, &p);
  o.data_dir = dir;
  o.on_event = crash_on_event;
  o.window = WINDOW;
  o.max_attempts = 3;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &o));
  hd_client_stats_t st;
  CHECK(WAIT_FOR(hdt_client_stats(c, &st) == 0 && st.events_dead == 1 && st.events_confirmed == 1,
                 10000));
  CHECK_OK(hd_client_close_wait(c));
}

/* Accepts the child's connection, or sees it exit first: 0 connected, 1 exited (*status), -1
 * neither within 10 s. Connections of children that died before the handshake are skipped. */
static int accept_or_exit(rs_t *r, pid_t pid, int *status) {
  uint64_t dl = hdt_now_ms() + 10000u * hdt_slow();
  while (hdt_now_ms() < dl) {
    struct pollfd pf = {r->lfd, POLLIN, 0};
    if (poll(&pf, 1, 20) > 0 && rs_accept(r, 100) == 0) return 0;
    if (waitpid(pid, status, WNOHANG) == pid) return 1;
  }
  return -1;
}

/* A handler that crashes the process (abort) runs out of attempts too: each run calls it with
 * the next attempt, and the run after the last reports the event failed without calling it. */
static void poison_crash_counted(void) {
  rs_t r;
  CHECK(rs_listen(&r, 0x24, 0) == 0);
  CHECK_OK(hdt_example_keypair(&r.kp, 0));
  r.features = HD__FEATURE_FAILED;
  r.has_epoch = 1;
  char *dir = hdt_mkdtemp("poison"), *store = hdt_path(dir, "client"), *log = hdt_path(dir, "log");
  char port[16];
  snprintf(port, sizeof port, "%d", r.port);
  char *env[] = {"HD_POISON_DIR", store, "HD_POISON_PORT", port, "HD_POISON_LOG", log, NULL};
  int reported = 0, runs = 0;
  while (!reported && runs < 6) {
    runs++;
    pid_t pid = hdt_spawn_self("test_client_events", "poison_crash_child", env, HDT_CHILD_QUIET);
    CHECK(pid > 0);
    int status = 0, got = accept_or_exit(&r, pid, &status);
    CHECK(got >= 0);
    if (got == 0 && rs_expect(&r, HD__MSG_RESUME, 3000) != NULL) {
      if (runs == 1) {
        uint64_t one = 1;
        CHECK(rs_events(&r, &one, 1) == 0);
      }
      reports_t rep;
      if (rs_reports(&r, &rep, 0, 1, 3000) == 0) {
        CHECK(rep.failed[0] == 1 && rep.attempts[0] == 3);
        CHECK(strcmp(rep.reason[0], "crashed or failed 3 attempts") == 0);
        uint64_t one = 1;
        CHECK(rs_done(&r, &one, 1) == 0);
        reported = 1;
      }
    }
    if (got == 0) status = hdt_wait_child(pid, 15000);
    if (reported) CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    else CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  }
  CHECK(reported && runs == 4);
  char text[64] = {0};
  FILE *f = fopen(log, "r");
  CHECK(f != NULL);
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  CHECK(n == 6 && strcmp(text, "1\n2\n3\n") == 0);
  rs_close(&r);
  hdt_rmrf(dir);
  free(store);
  free(log);
  free(dir);
}

#define TESTS(X)                                                                                  \
  X(bad_options)                                                                                  \
  X(deliver_consume_confirm)                                                                      \
  X(retry_backoff)                                                                                \
  X(pause_delays)                                                                                 \
  X(protocol_errors)                                                                              \
  X(window_enforced)                                                                              \
  X(restart)                                                                                      \
  X(store_id_change)                                                                              \
  X(record_retried_disk_full)                                                                      \
  X(resume_epochs)                                                                                \
  X(credit_back_for_seen)                                                                         \
  X(pause_from_first_arrival)                                                                     \
  X(client_keepalive_own_interval)                                                                 \
  X(notices_in_place)                                                                             \
  X(notices_without_feature_refused)                                                               \
  X(client_keepalive_own_interval)                                                                \
  X(poison_reported_failed)                                                                       \
  X(poison_rejected_cut)                                                                          \
  X(poison_kept_for_old_server)                                                                   \
  X(poison_v1_options_unlimited)                                                                  \
  X(poison_crash_child)                                                                           \
  X(poison_crash_counted)

HD_TEST_MAIN(TESTS)
