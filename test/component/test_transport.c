/* Transport tests: handshake over IPv4/IPv6, messages both ways, handshake failures, hostile raw
 * peers, keepalive, close semantics, caller-owned loop. Every wait is bounded (WAIT_FOR). */
#include "harness.h"
#include "transport_util.h"

#include <signal.h>

#define TOPIC "transport-test"

typedef struct pair {
  hd_keypair_t skp, ckp;
  tu_peer_t sp, cp;
  hd_server_t *s;
  hd_client_t *c;
  char addr[80];
} pair_t;

/* Starts a server on `listen` and a client dialing it. 1 on success, 0 to skip (no IPv6),
 * -1 on failure. */
static int pair_start(pair_t *p, const char *listen, uint32_t keepalive_ms) {
  memset(p, 0, sizeof *p);
  hd_keypair_generate(&p->skp);
  hd_keypair_generate(&p->ckp);
  tu_peer_init(&p->sp);
  tu_peer_init(&p->cp);
  hd_server_options_t so = tu_server_options(&p->skp, TOPIC, listen, &p->sp);
  so.keepalive_ms = keepalive_ms;
  int rc = hd_server_create(&p->s, &so);
  if (rc != 0) {
    if (listen[0] == '[') {
      printf("  (IPv6 unavailable, skipped: %s)\n", hd_last_error_message());
      return 0;
    }
    fprintf(stderr, "  server create: %s\n", hd_last_error_message());
    return -1;
  }
  hd__server_set_message_hook(p->s, tu_count_hook, &p->sp);
  if (listen[0] == '[') snprintf(p->addr, sizeof p->addr, "[::1]:%d", hd_server_port(p->s));
  else snprintf(p->addr, sizeof p->addr, "127.0.0.1:%d", hd_server_port(p->s));
  hd_client_options_t co = tu_client_options(&p->ckp, p->skp.public_key, TOPIC, p->addr, &p->cp);
  co.keepalive_ms = keepalive_ms;
  rc = hd_client_create(&p->c, &co);
  if (rc != 0) {
    fprintf(stderr, "  client create: %s\n", hd_last_error_message());
    return -1;
  }
  hd__client_set_message_hook(p->c, tu_count_hook, &p->cp);
  return 1;
}

static void pair_stop(pair_t *p) {
  if (p->c) hd_client_close_wait(p->c);
  if (p->s) hd_server_close_wait(p->s);
  p->c = NULL;
  p->s = NULL;
}

static void exchange(const char *listen) {
  pair_t p;
  int started = pair_start(&p, listen, 0);
  if (started == 0) return;
  CHECK(started == 1);
  CHECK(WAIT_FOR(atomic_load(&p.sp.connected) == 1 && atomic_load(&p.cp.connected) == 1, 5000));
  CHECK(memcmp(p.sp.key, p.ckp.public_key, 32) == 0);
  CHECK(memcmp(p.cp.key, p.skp.public_key, 32) == 0);

  /* many small messages each way, posted from this thread, in order */
  const int n = 2000;
  for (int i = 1; i <= n; i++) {
    hd__buf_t m = tu_events_message((uint64_t)i, 16);
    size_t bl;
    const uint8_t *b = tu_body(&m, &bl);
    CHECK_OK(hd__client_send(p.c, HD__MSG_EVENTS, b, bl));
    CHECK_OK(hd__server_send(p.s, p.ckp.public_key, HD__MSG_EVENTS, b, bl));
    hd__buf_free(&m);
  }
  CHECK(WAIT_FOR(atomic_load(&p.sp.messages) == n && atomic_load(&p.cp.messages) == n, 10000));
  CHECK(atomic_load(&p.sp.out_of_order) == 0 && atomic_load(&p.cp.out_of_order) == 0);

  /* one message larger than a record (65519 bytes) each way */
  hd__buf_t big = tu_events_message((uint64_t)n + 1, 300000);
  size_t bl;
  const uint8_t *b = tu_body(&big, &bl);
  CHECK_OK(hd__client_send(p.c, HD__MSG_EVENTS, b, bl));
  CHECK_OK(hd__server_send(p.s, p.ckp.public_key, HD__MSG_EVENTS, b, bl));
  hd__buf_free(&big);
  CHECK(WAIT_FOR(atomic_load(&p.sp.big_ok) == 1 && atomic_load(&p.cp.big_ok) == 1, 10000));

  pair_stop(&p);
  /* the client saw the server's orderly goodbye or closed itself first: either way status 0 */
  CHECK(atomic_load(&p.cp.disconnected) >= 1);
  CHECK(atomic_load(&p.cp.last_status) == 0);
  CHECK(atomic_load(&p.sp.destroyed) == 1 && atomic_load(&p.cp.destroyed) == 1);
}

static void handshake_ipv4(void) { exchange("127.0.0.1:0"); }
static void handshake_ipv6(void) { exchange("[::1]:0"); }

/* A server with tu_server_options(kp) on 127.0.0.1 (on `loop` if not NULL), recording into `sp`;
 * `addr` is where to dial it. 0 or the create's error. */
static int local_server(hd_server_t **s, const hd_keypair_t *kp, tu_peer_t *sp, uv_loop_t *loop,
                        char addr[64]) {
  tu_peer_init(sp);
  hd_server_options_t so = tu_server_options(kp, TOPIC, "127.0.0.1:0", sp);
  so.loop = loop;
  int rc = hd_server_create(s, &so);
  if (rc == 0) snprintf(addr, 64, "127.0.0.1:%d", hd_server_port(*s));
  return rc;
}

/* A good client connects to `s` and is seen by the server; used after each hostile case. */
static int good_client_works(hd_server_t *s, const hd_keypair_t *skp, tu_peer_t *sp) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t cp;
  tu_peer_init(&cp);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(s));
  hd_client_options_t co = tu_client_options(&kp, skp->public_key, TOPIC, addr, &cp);
  /* the baseline first: a client may connect before create returns */
  int before = atomic_load(&sp->connected);
  hd_client_t *c;
  if (hd_client_create(&c, &co) != 0) return 0;
  int ok = WAIT_FOR(atomic_load(&cp.connected) == 1 && atomic_load(&sp->connected) > before, 5000);
  hd_client_close_wait(c);
  return ok;
}

static void wrong_server_key_and_topic(void) {
  hd_keypair_t skp, other, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&other);
  hd_keypair_generate(&ckp);
  tu_peer_t sp, cp;
  tu_peer_init(&cp);
  tu_log_clear();
  hd_server_t *s;
  char addr[64];
  CHECK_OK(local_server(&s, &skp, &sp, NULL, addr));

  /* the client expects another server key */
  hd_client_options_t co = tu_client_options(&ckp, other.public_key, TOPIC, addr, &cp);
  co.no_reconnect = 1;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&cp.disconnected) == 1 && atomic_load(&sp.disconnected) == 1, 5000));
  CHECK(atomic_load(&cp.last_status) == HD_EAUTH);
  CHECK(strstr(cp.detail, "wrong serverPublicKey?") != NULL);
  CHECK(atomic_load(&sp.last_status) == HD_EAUTH);
  CHECK(atomic_load(&sp.last_had_key) == 0);
  CHECK(atomic_load(&cp.connected) == 0);
  CHECK_OK(hd_client_close_wait(c));

  /* another topic */
  tu_peer_init(&cp);
  co = tu_client_options(&ckp, skp.public_key, "another-topic", addr, &cp);
  co.no_reconnect = 1;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&cp.disconnected) == 1 && atomic_load(&sp.disconnected) == 2, 5000));
  CHECK(atomic_load(&cp.last_status) == HD_ETOPIC);
  CHECK(atomic_load(&sp.last_status) == HD_ETOPIC);
  CHECK(tu_log_has("ETOPIC"));
  CHECK_OK(hd_client_close_wait(c));

  /* the server closes before the verdict: its callbacks write into this frame */
  int ok = good_client_works(s, &skp, &sp);
  CHECK_OK(hd_server_close_wait(s));
  CHECK(ok);
}

/* ---- hostile raw peers ---- */

typedef struct hostile {
  hd_keypair_t skp, ckp;
  tu_peer_t sp;
  hd_server_t *s;
  int port;
} hostile_t;

static int hostile_start(hostile_t *h, uint32_t keepalive_ms, uint32_t handshake_ms) {
  memset(h, 0, sizeof *h);
  hd_keypair_generate(&h->skp);
  hd_keypair_generate(&h->ckp);
  tu_peer_init(&h->sp);
  tu_log_clear();
  hd_server_options_t so = tu_server_options(&h->skp, TOPIC, "127.0.0.1:0", &h->sp);
  so.keepalive_ms = keepalive_ms;
  so.handshake_timeout_ms = handshake_ms * (uint32_t)hdt_slow();
  if (hd_server_create(&h->s, &so) != 0) return -1;
  h->port = hd_server_port(h->s);
  return 0;
}

/* A raw peer misbehaves in one way; the server drops it with the right status and reason and goes
 * on serving: a row per way, run by hostile_run. */
typedef struct hostile_case {
  uint32_t keepalive_ms;   /* the server's (scaled) */
  int handshake;           /* the peer completes the handshake first */
  int (*act)(tu_raw_t *r); /* what it does then; NULL: nothing */
  int hangs_up;            /* it closes the socket itself, not waiting for the server to */
  int status;              /* the server's on_peer_disconnected status */
  int had_key;             /* ... with the peer's key (1), without (0), either (-1) */
  const char *reason[2];   /* in the server's log */
} hostile_case_t;

static int send_junk(tu_raw_t *r) {
  uint8_t junk[64];
  randombytes_buf(junk, sizeof junk);
  junk[0] = 'X'; /* never the magic */
  return tu_send_all(r->fd, junk, sizeof junk);
}

static int send_tampered_ping(tu_raw_t *r) {
  hd__buf_t m;
  hd__buf_init(&m);
  hd__msg_encode_ping(&m, 7);
  int rc = tu_raw_send(r, &m, 1);
  hd__buf_free(&m);
  return rc;
}

static int send_unknown_type(tu_raw_t *r) {
  uint8_t raw[] = {0x02, 0x7e, 0x00}; /* L=2, type 0x7e: not a type of this version */
  hd__buf_t m = {raw, sizeof raw, sizeof raw};
  return tu_raw_send(r, &m, 0);
}

static int send_truncated_record(tu_raw_t *r) {
  uint8_t part[12] = {0x01, 0x00}; /* says 256 bytes, brings 10 */
  return tu_send_all(r->fd, part, sizeof part);
}

static int send_lying_length(tu_raw_t *r) {
  uint8_t part[8] = {0xff, 0xff, 1, 2, 3}; /* a record header of 0xFFFF, a few bytes, silence */
  return tu_send_all(r->fd, part, sizeof part);
}

static void hostile_run(const hostile_case_t *k) {
  hostile_t h;
  uint32_t ka = k->keepalive_ms * (uint32_t)hdt_slow();
  CHECK(hostile_start(&h, ka, 0) == 0);
  tu_raw_t r;
  CHECK(tu_raw_connect(&r, h.port) == 0);
  if (k->handshake) {
    CHECK(tu_raw_handshake(&r, &h.ckp, h.skp.public_key, TOPIC) == 0);
    if (ka) CHECK(r.welcome.keepalive_ms == ka);
    CHECK(WAIT_FOR(atomic_load(&h.sp.connected) == 1, 3000));
  }
  if (k->act) CHECK(k->act(&r) == 0);
  if (!k->hangs_up) CHECK(tu_wait_closed(r.fd, 3000));
  close(r.fd);
  CHECK(WAIT_FOR(atomic_load(&h.sp.disconnected) == 1, 3000));
  CHECK(atomic_load(&h.sp.last_status) == k->status);
  if (k->had_key >= 0) CHECK(atomic_load(&h.sp.last_had_key) == k->had_key);
  for (int i = 0; i < 2 && k->reason[i]; i++) CHECK(tu_log_has(k->reason[i]));
  int ok = good_client_works(h.s, &h.skp, &h.sp);
  CHECK_OK(hd_server_close_wait(h.s)); /* before the verdict: its callbacks write into h */
  CHECK(ok);
}

/* A row of hostile_run as a test. */
#define HOSTILE_TEST(name, ...)                                                                   \
  static void name(void) {                                                                        \
    static const hostile_case_t k = {__VA_ARGS__};                                                \
    hostile_run(&k);                                                                              \
  }

/* the peer address is in the logged reason */
HOSTILE_TEST(random_preamble, .act = send_junk, .status = HD_EPROTO, .had_key = -1,
             .reason = {"bad magic", "127.0.0.1:"})
HOSTILE_TEST(tampered_record, .handshake = 1, .act = send_tampered_ping, .status = HD_EAUTH,
             .had_key = 1, .reason = {"record failed authentication"})
HOSTILE_TEST(unknown_message_type, .handshake = 1, .act = send_unknown_type, .status = HD_EPROTO,
             .had_key = -1, .reason = {"unknown message type"})
HOSTILE_TEST(truncated_record_then_close, .handshake = 1, .act = send_truncated_record,
             .hangs_up = 1, .status = HD_ECONNRESET, .had_key = -1,
             .reason = {"without saying goodbye"})
/* the idle timeout drops it */
HOSTILE_TEST(lying_length_then_silence, .keepalive_ms = 100, .handshake = 1,
             .act = send_lying_length, .status = HD_ETIMEDOUT, .had_key = -1,
             .reason = {"idle timeout"})
/* it never answers the pings */
HOSTILE_TEST(silent_peer_dropped, .keepalive_ms = 50, .handshake = 1, .status = HD_ETIMEDOUT,
             .had_key = 1)

/* The same lie in the handshake: a frame length of 0xFFFF is refused at once (no buffering). */
static void lying_handshake_length(void) {
  hostile_t h;
  CHECK(hostile_start(&h, 0, 300) == 0);
  tu_raw_t r;
  CHECK(tu_raw_connect(&r, h.port) == 0);
  uint8_t topic_key[32], pre[16 + 4];
  hd_topic_key(topic_key, TOPIC, strlen(TOPIC));
  hd__preamble_encode(pre, topic_key);
  pre[16] = 0xff;
  pre[17] = 0xff;
  CHECK(tu_send_all(r.fd, pre, 18) == 0);
  uint8_t rej[3];
  CHECK(tu_recv_all(r.fd, rej, 3, 3000) == 0);
  CHECK(rej[0] == 0 && rej[1] == 0 && rej[2] == HD__REJECT_MALFORMED);
  CHECK(tu_wait_closed(r.fd, 3000));
  close(r.fd);
  /* and a peer that sends half a preamble and goes silent meets the handshake timeout */
  CHECK(tu_raw_connect(&r, h.port) == 0);
  CHECK(tu_send_all(r.fd, pre, 5) == 0);
  CHECK(tu_wait_closed(r.fd, 3000));
  close(r.fd);
  CHECK(WAIT_FOR(atomic_load(&h.sp.disconnected) == 2, 3000));
  CHECK(atomic_load(&h.sp.last_status) == HD_ETIMEDOUT);
  CHECK(tu_log_has("did not complete within"));
  int ok = good_client_works(h.s, &h.skp, &h.sp);
  CHECK_OK(hd_server_close_wait(h.s)); /* before the verdict: its callbacks write into h */
  CHECK(ok);
}

/* ---- keepalive ---- */

static void keepalive_rounds(void) {
  pair_t p;
  uint32_t ka = 50 * (uint32_t)hdt_slow();
  CHECK(pair_start(&p, "127.0.0.1:0", ka) == 1);
  CHECK(WAIT_FOR(atomic_load(&p.sp.connected) == 1 && atomic_load(&p.cp.connected) == 1, 5000));
  hdt_sleep_ms((int)ka * 12); /* several idle timeouts long: only PING/PONG keep it up */
  CHECK(atomic_load(&p.sp.disconnected) == 0 && atomic_load(&p.cp.disconnected) == 0);
  pair_stop(&p);
}

/* ---- lifecycle ---- */

static void close_with_peers(void) {
  pair_t p;
  CHECK(pair_start(&p, "127.0.0.1:0", 0) == 1);
  CHECK(WAIT_FOR(atomic_load(&p.sp.connected) == 1 && atomic_load(&p.cp.connected) == 1, 5000));
  tu_peer_t closed;
  tu_peer_init(&closed);
  CHECK_OK(hd_server_close(p.s, tu_on_closed, &closed));
  CHECK_RC(hd_server_close(p.s, NULL, NULL), HD_ECLOSED);
  CHECK(WAIT_FOR(atomic_load(&closed.closed) == 1, 5000));
  CHECK(atomic_load(&p.sp.destroyed) == 1);
  CHECK(atomic_load(&p.sp.disconnected) == 1);
  CHECK(atomic_load(&p.sp.last_status) == 0);
  /* the client heard the goodbye: an orderly close, then it dials again (refused) */
  CHECK(WAIT_FOR(atomic_load(&p.cp.disconnected) >= 1, 5000));
  CHECK(WAIT_FOR(atomic_load(&p.cp.disconnected) >= 2, 5000));
  CHECK(atomic_load(&p.cp.last_status) == HD_ECONNREFUSED);
  CHECK_OK(hd_client_close_wait(p.c));
  CHECK(atomic_load(&p.cp.destroyed) == 1);
  /* the detached server thread ends on its own: give it a moment so valgrind sees it gone */
  hdt_sleep_ms(50);
}

static void many_handles(void) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  for (int i = 0; i < 50; i++) {
    tu_peer_t sp, cp;
    tu_peer_init(&cp);
    hd_server_t *s;
    char addr[64];
    CHECK_OK(local_server(&s, &kp, &sp, NULL, addr));
    hd_client_options_t co = tu_client_options(&kp, kp.public_key, TOPIC, addr, &cp);
    hd_client_t *c;
    CHECK_OK(hd_client_create(&c, &co));
    if (i % 2) CHECK(WAIT_FOR(atomic_load(&cp.connected) == 1, 5000));
    CHECK_OK(hd_client_close_wait(c));
    CHECK_OK(hd_server_close_wait(s));
    CHECK(atomic_load(&sp.destroyed) == 1 && atomic_load(&cp.destroyed) == 1);
  }
}

static void bad_options(void) {
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  hd_server_options_t so;
  CHECK_RC(hd_server_options_init(NULL, HD_SERVER_OPTIONS_VERSION), HD_EINVAL);
  CHECK_RC(hd_server_options_init(&so, HD_SERVER_OPTIONS_VERSION + 1), HD_EVERSION);
  CHECK_OK(hd_server_options_init(&so, HD_SERVER_OPTIONS_VERSION));
  hd_server_t *s;
  so.data_dir = tu_data_dir();
  so.keypair = &kp;
  so.topic = TOPIC;
  so.listen = "host.invalid:80"; /* a name that never resolves (RFC 6761) */
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  so.listen = "127.0.0.1";
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  so.listen = "::1:80";
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  so.listen = "127.0.0.1:0";
  so.topic = "";
  CHECK_RC(hd_server_create(&s, &so), HD_EINVAL);
  so.topic = TOPIC;
  hd_keypair_t bad = kp;
  bad.public_key[0] ^= 1;
  so.keypair = &bad;
  CHECK_RC(hd_server_create(&s, &so), HD_EKEY);
  so.keypair = &kp;
  so.version = 99;
  CHECK_RC(hd_server_create(&s, &so), HD_EVERSION);
  so.version = HD_SERVER_OPTIONS_VERSION;
  CHECK_OK(hd_server_create(&s, &so));
  /* a second server on the same port */
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(s));
  hd_server_t *s2;
  so.listen = addr;
  CHECK_RC(hd_server_create(&s2, &so), HD_EADDRINUSE);
  CHECK_OK(hd_server_close_wait(s));
  hd_client_options_t co;
  CHECK_RC(hd_client_options_init(&co, 0), HD_EINVAL);
  CHECK_OK(hd_client_options_init(&co, HD_CLIENT_OPTIONS_VERSION));
  co.keypair = &kp;
  co.topic = TOPIC;
  co.connect = "localhost:1";
  hd_client_t *c;
  CHECK_RC(hd_client_create(&c, &co), HD_EINVAL); /* no server key */
}

/* A server and a client on one loop that this thread runs (Node's way): no extra thread. */
static void caller_loop(void) {
  /* libuv runs on this thread here: like Node, a caller's loop ignores SIGPIPE itself */
  signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop) == 0);
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t sp, cp, closed;
  tu_peer_init(&cp);
  tu_peer_init(&closed);
  hd_server_t *s;
  char addr[64];
  CHECK_OK(local_server(&s, &kp, &sp, &loop, addr));
  hd_client_options_t co = tu_client_options(&kp, kp.public_key, TOPIC, addr, &cp);
  co.loop = &loop;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  hd__server_set_message_hook(s, tu_count_hook, &sp);
  uint64_t dl = hdt_now_ms() + 5000u * (unsigned)hdt_slow();
  while (atomic_load(&sp.connected) == 0 || atomic_load(&cp.connected) == 0) {
    CHECK(hdt_now_ms() < dl);
    uv_run(&loop, UV_RUN_ONCE);
  }
  /* on the loop thread a send runs inline and reports its result */
  hd__buf_t m = tu_events_message(1, 10);
  size_t bl;
  const uint8_t *b = tu_body(&m, &bl);
  CHECK_OK(hd__client_send(c, HD__MSG_EVENTS, b, bl));
  hd__buf_free(&m);
  while (atomic_load(&sp.messages) == 0) {
    CHECK(hdt_now_ms() < dl);
    uv_run(&loop, UV_RUN_ONCE);
  }
  CHECK_RC(hd_server_close_wait(s), HD_ETHREAD); /* it would wait for itself */
  CHECK_OK(hd_server_close(s, tu_on_closed, &closed));
  CHECK_OK(hd_client_close(c, tu_on_closed, &closed));
  while (atomic_load(&closed.closed) < 2) {
    CHECK(hdt_now_ms() < dl);
    uv_run(&loop, UV_RUN_ONCE);
  }
  uv_run(&loop, UV_RUN_DEFAULT); /* returns at once: nothing of ours is left on the loop */
  CHECK(uv_loop_close(&loop) == 0);
}

/* close_wait from another thread while the caller's loop runs on its own thread */
typedef struct loop_ctx {
  uv_loop_t loop;
  hd_keypair_t kp;
  tu_peer_t sp;
  hd_server_t *_Atomic s;
} loop_ctx_t;

static void *loop_thread_fn(void *arg) {
  loop_ctx_t *x = arg;
  signal(SIGPIPE, SIG_IGN);
  hd_server_options_t so = tu_server_options(&x->kp, TOPIC, "127.0.0.1:0", &x->sp);
  so.loop = &x->loop;
  hd_server_t *s = NULL;
  if (hd_server_create(&s, &so) != 0) return NULL; /* on the loop's own thread: the rule */
  atomic_store(&x->s, s);
  uv_run(&x->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void caller_loop_close_wait(void) {
  loop_ctx_t x;
  memset(&x, 0, sizeof x);
  CHECK(uv_loop_init(&x.loop) == 0);
  hd_keypair_generate(&x.kp);
  tu_peer_init(&x.sp);
  pthread_t t;
  pthread_create(&t, NULL, loop_thread_fn, &x);
  int ok = WAIT_FOR(atomic_load(&x.s) != NULL, 5000);
  if (ok) CHECK_OK(hd_server_close_wait(atomic_load(&x.s)));
  pthread_join(t, NULL); /* uv_run returned: the server left nothing on the loop */
  CHECK(ok);
  CHECK(atomic_load(&x.sp.destroyed) == 1);
  CHECK(uv_loop_close(&x.loop) == 0);
}

/* An idle connection: the struct, the message reader's reusable buffer and the output buffer
 * kept between flushes stay within 16 KiB (reads use the runtime's shared buffer). */
static void idle_footprint(void) { CHECK(sizeof(hd__conn_t) + HD__MSG_KEEP + 2048 <= 16384); }

#define TESTS(X)                                                                                  \
  X(idle_footprint)                                                                               \
  X(bad_options)                                                                                  \
  X(handshake_ipv4)                                                                               \
  X(handshake_ipv6)                                                                               \
  X(wrong_server_key_and_topic)                                                                   \
  X(random_preamble)                                                                              \
  X(tampered_record)                                                                              \
  X(unknown_message_type)                                                                         \
  X(truncated_record_then_close)                                                                  \
  X(lying_length_then_silence)                                                                    \
  X(lying_handshake_length)                                                                       \
  X(keepalive_rounds)                                                                             \
  X(silent_peer_dropped)                                                                          \
  X(close_with_peers)                                                                             \
  X(many_handles)                                                                                 \
  X(caller_loop)                                                                                  \
  X(caller_loop_close_wait)

HD_TEST_MAIN(TESTS)
