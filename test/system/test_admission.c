/* Admission control (docs/RELIABILITY.md, "Admission control"): the authorization callback
 * (refusal on the wire without WELCOME, an answer from another thread after a delay, the
 * timeout), hd_server_disconnect, the caps on handshaking connections and on handshakes per
 * address, a replayed message 1 that must not displace the genuine connection, and a client
 * that sends without reading, which must not make the server queue unbounded output. */
#include "harness.h"
#include "transport_util.h"

#include <fcntl.h>
#include <stddef.h>
#include <inttypes.h>

#define TOPIC "admission-test"

/* What the authorization callback does, set by each test before the server takes connections. */
enum { AUTH_ALLOW, AUTH_DENY_B, AUTH_LATER, AUTH_NEVER };

static struct {
  int mode;
  uint8_t denied[32];           /* AUTH_DENY_B: this key is refused, every other admitted */
  atomic_int asked;
  _Atomic(hd_authorization_t *) held; /* AUTH_LATER / AUTH_NEVER: the request kept */
} auth;

static void authorize(void *ud, const uint8_t key[32], hd_authorization_t *req) {
  (void)ud;
  atomic_fetch_add(&auth.asked, 1);
  if (auth.mode == AUTH_ALLOW) hd_authorization_allow(req);
  else if (auth.mode == AUTH_DENY_B && memcmp(key, auth.denied, 32) == 0) hd_authorization_deny(req);
  else if (auth.mode == AUTH_DENY_B) hd_authorization_allow(req);
  else atomic_store(&auth.held, req);
}

typedef struct srv {
  hd_keypair_t skp;
  tu_peer_t sp;
  hd_server_t *s;
  int port;
  char addr[64];
} srv_t;

static int srv_start(srv_t *v, int mode, hd_server_options_t *tweak) {
  memset(&auth, 0, sizeof auth);
  auth.mode = mode;
  hd_keypair_generate(&v->skp);
  tu_peer_init(&v->sp);
  hd_server_options_t o = tu_server_options(&v->skp, TOPIC, "127.0.0.1:0", &v->sp);
  o.authorize = authorize;
  o.handshakes_per_address = UINT32_MAX;
  if (tweak != NULL) {
    if (tweak->authorize_timeout_ms) o.authorize_timeout_ms = tweak->authorize_timeout_ms;
    if (tweak->max_handshakes) o.max_handshakes = tweak->max_handshakes;
    if (tweak->handshakes_per_address) o.handshakes_per_address = tweak->handshakes_per_address;
    if (tweak->handshake_timeout_ms) o.handshake_timeout_ms = tweak->handshake_timeout_ms;
    if (tweak->keepalive_ms) o.keepalive_ms = tweak->keepalive_ms;
    o.authorize = tweak->authorize;
  }
  int rc = hd_server_create(&v->s, &o);
  if (rc != 0) return rc;
  v->port = hd_server_port(v->s);
  snprintf(v->addr, sizeof v->addr, "127.0.0.1:%d", v->port);
  return 0;
}

/* A library client of `kp` that dials v; its callbacks record into `cp`. */
static int client_start(srv_t *v, const hd_keypair_t *kp, tu_peer_t *cp, hd_client_t **out) {
  tu_peer_init(cp);
  hd_client_options_t o = tu_client_options(kp, v->skp.public_key, TOPIC, v->addr, cp);
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  return hd_client_create(out, &o);
}

/* A library client of a fresh key gets in; then it and the server close. 1 if it got in. */
static int served_then_closed(srv_t *v) {
  hd_keypair_t k;
  hd_keypair_generate(&k);
  tu_peer_t cp;
  hd_client_t *c;
  if (client_start(v, &k, &cp, &c) != 0) return 0;
  int ok = WAIT_FOR(atomic_load(&cp.connected) == 1, 5000);
  ok = hd_client_close_wait(c) == 0 && ok;
  return hd_server_close_wait(v->s) == 0 && ok;
}

/* Reads one whole record from the raw client's socket and decrypts it. Its plaintext length, or
 * -1. */
static int raw_read_record(tu_raw_t *r, uint8_t *pt, size_t cap, int ms) {
  uint8_t lenb[2];
  if (tu_recv_all(r->fd, lenb, 2, ms) != 0) return -1;
  size_t len = hd__get_u16be(lenb);
  if (len < 16 || len - 16 > cap) return -1;
  uint8_t ct[65535];
  if (tu_recv_all(r->fd, ct, len, ms) != 0) return -1;
  if (hd__cipher_decrypt(&r->rx, NULL, 0, ct, len, pt) != 0) return -1;
  return (int)(len - 16);
}

/* The raw client is served: PING gets PONG (other messages, e.g. the server's PING, skipped). */
static int raw_pings(tu_raw_t *r, uint64_t nonce) {
  hd__buf_t m;
  hd__buf_init(&m);
  int rc = hd__msg_encode_ping(&m, nonce) == 0 ? tu_raw_send(r, &m, 0) : -1;
  hd__buf_free(&m);
  if (rc != 0) return 0;
  uint8_t pt[65536];
  for (int i = 0; i < 16; i++) {
    int n = raw_read_record(r, pt, sizeof pt, 3000);
    if (n < 0) return 0;
    /* a record may hold several messages: look for 02 08 <nonce> among them */
    for (int k = 0; k + 2 < n; k++) {
      if (pt[k] == 2 && pt[k + 1] == HD__MSG_PONG && pt[k + 2] == nonce) return 1;
    }
  }
  return 0;
}

/* ---- the callback ---- */

static void refused_key_gets_no_welcome(void) {
  srv_t v;
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  CHECK_OK(srv_start(&v, AUTH_DENY_B, NULL));
  memcpy(auth.denied, b.public_key, 32);
  /* b, at the wire: message 1 is answered with a rejection (reason 6), then EOF; no message 2,
   * so no WELCOME and no store id */
  tu_raw_t r;
  memset(&r, 0, sizeof r);
  CHECK(tu_raw_connect(&r, v.port) == 0);
  CHECK(tu_raw_handshake_only(&r, &b, v.skp.public_key, TOPIC) != 0); /* it got no message 2 */
  close(r.fd);
  tu_raw_t r2;
  memset(&r2, 0, sizeof r2);
  CHECK(tu_raw_connect(&r2, v.port) == 0);
  CHECK(tu_send_all(r2.fd, r.sent, r.sent_len) == 0); /* b's message 1 again, read by hand */
  uint8_t head[3];
  CHECK(tu_recv_all(r2.fd, head, 3, 3000) == 0);
  CHECK(head[0] == 0 && head[1] == 0 && head[2] == HD__REJECT_REFUSED);
  CHECK(tu_wait_closed(r2.fd, 3000));
  close(r2.fd);
  CHECK(atomic_load(&auth.asked) == 2);
  CHECK(tu_log_has("refused"));
  /* a: admitted, its WELCOME carries the store id */
  tu_raw_t ra;
  memset(&ra, 0, sizeof ra);
  CHECK(tu_raw_connect(&ra, v.port) == 0);
  CHECK(tu_raw_handshake(&ra, &a, v.skp.public_key, TOPIC) == 0);
  CHECK(raw_pings(&ra, 5));
  close(ra.fd);
  /* b through the library: HD_EAUTH, with the reason in the detail */
  tu_peer_t cp;
  hd_client_t *c;
  CHECK_OK(client_start(&v, &b, &cp, &c));
  CHECK(WAIT_FOR(atomic_load(&cp.disconnected) >= 1, 5000));
  CHECK(atomic_load(&cp.last_status) == HD_EAUTH);
  CHECK(strstr(cp.detail, "does not admit") != NULL);
  CHECK(atomic_load(&cp.connected) == 0);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
  CHECK(atomic_load(&v.sp.connected) == 1); /* a only */
}

static void *allow_later(void *arg) {
  (void)arg;
  hd_authorization_t *req;
  while ((req = atomic_load(&auth.held)) == NULL) hdt_sleep_ms(1);
  hdt_sleep_ms(200);
  hd_authorization_allow(req);
  return NULL;
}

static void async_allow_after_a_delay(void) {
  srv_t v;
  hd_keypair_t a;
  hd_keypair_generate(&a);
  CHECK_OK(srv_start(&v, AUTH_LATER, NULL));
  pthread_t t;
  pthread_create(&t, NULL, allow_later, NULL);
  tu_peer_t cp;
  hd_client_t *c;
  CHECK_OK(client_start(&v, &a, &cp, &c));
  int ok = WAIT_FOR(atomic_load(&cp.connected) == 1 && atomic_load(&v.sp.connected) == 1, 5000);
  pthread_join(t, NULL);
  CHECK(ok);
  CHECK(atomic_load(&cp.disconnected) == 0); /* admitted on its first attempt */
  CHECK(atomic_load(&auth.asked) == 1);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
}

static void unanswered_request_times_out(void) {
  srv_t v;
  hd_keypair_t a;
  hd_keypair_generate(&a);
  hd_server_options_t tw = {0};
  tw.authorize = authorize;
  tw.authorize_timeout_ms = 200;
  CHECK_OK(srv_start(&v, AUTH_NEVER, &tw));
  tu_raw_t r;
  memset(&r, 0, sizeof r);
  CHECK(tu_raw_connect(&r, v.port) == 0);
  CHECK(tu_raw_handshake_only(&r, &a, v.skp.public_key, TOPIC) != 0);
  close(r.fd);
  CHECK(WAIT_FOR(atomic_load(&v.sp.disconnected) == 1, 3000));
  CHECK(atomic_load(&v.sp.last_status) == HD_ETIMEDOUT);
  CHECK(strstr(v.sp.detail, "not answered within 200 ms") != NULL);
  /* the late answer finds nothing to do and frees the request */
  hd_authorization_t *req = atomic_load(&auth.held);
  CHECK(req != NULL);
  CHECK_OK(hd_authorization_allow(req));
  /* an answer that outlives the server: close with a request pending, answer after */
  atomic_store(&auth.held, NULL);
  tu_raw_t r2;
  memset(&r2, 0, sizeof r2);
  CHECK(tu_raw_connect(&r2, v.port) == 0);
  CHECK(tu_send_all(r2.fd, r.sent, r.sent_len) == 0);
  CHECK(WAIT_FOR(atomic_load(&auth.held) != NULL, 3000));
  CHECK_OK(hd_server_close_wait(v.s));
  close(r2.fd);
  CHECK_OK(hd_authorization_deny(atomic_load(&auth.held)));
}

/* ---- hd_server_disconnect ---- */

static void disconnect_closes_live_connections(void) {
  srv_t v;
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  CHECK_OK(srv_start(&v, AUTH_DENY_B, NULL));
  memset(auth.denied, 0, 32); /* nobody refused yet */
  tu_peer_t ca, cb;
  hd_client_t *c1, *c2;
  CHECK_OK(client_start(&v, &a, &ca, &c1));
  CHECK_OK(client_start(&v, &b, &cb, &c2));
  CHECK(WAIT_FOR(atomic_load(&ca.connected) == 1 && atomic_load(&cb.connected) == 1, 5000));
  CHECK(WAIT_FOR(atomic_load(&v.sp.connected) == 2, 5000));
  /* the allow-list drops b: its live connection goes, and it is refused when it dials again */
  memcpy(auth.denied, b.public_key, 32);
  CHECK_RC(hd_server_disconnect(v.s, b.public_key), 1);
  CHECK(WAIT_FOR(atomic_load(&cb.disconnected) >= 1, 5000));
  CHECK(WAIT_FOR(atomic_load(&cb.last_status) == HD_EAUTH, 5000)); /* the redial's refusal */
  CHECK(atomic_load(&cb.connected) == 1);
  CHECK(atomic_load(&ca.disconnected) == 0);
  CHECK_RC(hd_server_disconnect(v.s, b.public_key), 0);
  uint8_t keys[2 * 32];
  CHECK_RC(hd_server_connected_users(v.s, keys, 2), 1);
  CHECK(memcmp(keys, a.public_key, 32) == 0);
  CHECK_OK(hd_client_close_wait(c2));
  CHECK_OK(hd_client_close_wait(c1));
  CHECK_OK(hd_server_close_wait(v.s));
}

/* ---- caps ---- */

/* A connection that sends a preamble on another topic: a server that took it answers with a
 * rejection (topic, reason 2); one that refused it closes without a byte. 1 taken, 0 refused. */
static int probe(int port) {
  tu_raw_t r;
  if (tu_raw_connect(&r, port) != 0) return -1;
  uint8_t pre[HD__PREAMBLE_BYTES], other[32] = {1};
  hd__preamble_encode(pre, other);
  tu_send_all(r.fd, pre, sizeof pre);
  uint8_t head[3];
  int taken = tu_recv_all(r.fd, head, 3, 3000) == 0 && head[2] == HD__REJECT_TOPIC;
  close(r.fd);
  return taken;
}

static void handshaking_cap(void) {
  srv_t v;
  hd_server_options_t tw = {0};
  tw.max_handshakes = 4;
  CHECK_OK(srv_start(&v, AUTH_ALLOW, &tw));
  /* four connections that say nothing hold every handshaking slot */
  int fds[4];
  for (int i = 0; i < 4; i++) {
    tu_raw_t r;
    CHECK(tu_raw_connect(&r, v.port) == 0);
    fds[i] = r.fd;
  }
  /* the server counts them when it accepts them: wait until the fifth is refused */
  int refused = 0;
  for (int i = 0; i < 50 && !refused; i++) refused = probe(v.port) == 0;
  CHECK(refused);
  for (int i = 0; i < 4; i++) close(fds[i]);
  CHECK(WAIT_FOR(atomic_load(&v.sp.disconnected) >= 4, 5000));
  /* slots free again: a good client is served */
  CHECK(served_then_closed(&v));
}

static void handshakes_per_address_cap(void) {
  srv_t v;
  hd_server_options_t tw = {0};
  tw.handshakes_per_address = 2;
  CHECK_OK(srv_start(&v, AUTH_ALLOW, &tw));
  /* 20 in a row: at 2 a second, some are refused unless they took 10 s */
  int taken = 0, refused = 0;
  for (int i = 0; i < 20; i++) {
    int p = probe(v.port);
    CHECK(p >= 0);
    if (p) taken++;
    else refused++;
  }
  CHECK(taken >= 2 && refused >= 1);
  /* the budget comes back: a good client gets in (its client redials after a refusal) */
  CHECK(served_then_closed(&v));
}

/* ---- a replayed message 1 (was fuzz/findings/replayed_message_1.c) ---- */

static void replayed_message_1_does_not_displace(void) {
  srv_t v;
  hd_keypair_t a;
  hd_keypair_generate(&a);
  hd_server_options_t tw = {0};
  tw.authorize = authorize;
  tw.handshake_timeout_ms = 300;
  CHECK_OK(srv_start(&v, AUTH_ALLOW, &tw));
  tu_raw_t genuine;
  memset(&genuine, 0, sizeof genuine);
  CHECK(tu_raw_connect(&genuine, v.port) == 0);
  CHECK(tu_raw_handshake(&genuine, &a, v.skp.public_key, TOPIC) == 0);
  CHECK(raw_pings(&genuine, 1));
  CHECK(atomic_load(&v.sp.connected) == 1);
  /* someone who saw the bytes sends them again: they are answered (message 1 carries no
   * freshness), but the replayer cannot send a record, so the server never counts it */
  tu_raw_t replay;
  CHECK(tu_raw_connect(&replay, v.port) == 0);
  CHECK(tu_send_all(replay.fd, genuine.sent, genuine.sent_len) == 0);
  uint8_t head[2];
  CHECK(tu_recv_all(replay.fd, head, 2, 3000) == 0 && (head[0] | head[1]) != 0);
  /* its handshake deadline closes it, unauthenticated */
  CHECK(WAIT_FOR(atomic_load(&v.sp.disconnected) == 1, 5000));
  CHECK(atomic_load(&v.sp.last_had_key) == 0);
  CHECK(atomic_load(&v.sp.last_status) == HD_ETIMEDOUT);
  close(replay.fd);
  /* the genuine connection is still the user's */
  CHECK(raw_pings(&genuine, 2));
  CHECK(atomic_load(&v.sp.connected) == 1);
  uint8_t key[32];
  CHECK_RC(hd_server_connected_users(v.s, key, 1), 1);
  close(genuine.fd);
  CHECK_OK(hd_server_close_wait(v.s));
}

/* ---- memory: a client that sends without reading ---- */

/* It floods PINGs and never reads the PONGs. The server stops reading from it once its unread
 * output passes the bound, so the client's sends block after what the kernel buffers hold; with
 * nothing bounding it, the server would read on and queue every PONG. */
static void client_that_never_reads(void) {
  srv_t v;
  hd_keypair_t a;
  hd_keypair_generate(&a);
  hd_server_options_t tw = {0};
  tw.keepalive_ms = 300;
  tw.authorize = authorize;
  CHECK_OK(srv_start(&v, AUTH_ALLOW, &tw));
  tu_raw_t r;
  memset(&r, 0, sizeof r);
  CHECK(tu_raw_connect(&r, v.port) == 0);
  int small = 64 * 1024;
  setsockopt(r.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  setsockopt(r.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  CHECK(tu_raw_handshake(&r, &a, v.skp.public_key, TOPIC) == 0);
  fcntl(r.fd, F_SETFL, fcntl(r.fd, F_GETFL) | O_NONBLOCK);
  /* one record full of PINGs, sealed anew each time (the nonce moves on) */
  static uint8_t pings[HD__RECORD_MAX_PLAINTEXT];
  size_t np = sizeof pings / 3 * 3;
  for (size_t i = 0; i < np; i += 3) pings[i] = 2, pings[i + 1] = HD__MSG_PING, pings[i + 2] = 0;
  const uint64_t limit = 256ull << 20;
  uint64_t sent = 0;
  hd__buf_t rec;
  hd__buf_init(&rec);
  size_t off = 0;
  while (sent < limit) {
    if (off == rec.len) {
      rec.len = 0;
      off = 0;
      CHECK(hd__record_seal(&r.tx, pings, np, &rec) == 0);
    }
    ssize_t n = send(r.fd, rec.data + off, rec.len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += (size_t)n;
      sent += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break; /* closed by the server */
    struct pollfd pf = {r.fd, POLLOUT, 0};
    if (poll(&pf, 1, 2000 * hdt_slow()) == 0) break; /* blocked: the server stopped reading */
  }
  hd__buf_free(&rec);
  printf("  a client that never reads got %.1f MiB of PINGs in before its sends blocked\n",
         (double)sent / (1 << 20));
  CHECK(sent < limit);
  /* it is silent towards the server's PING while it does not read: the idle timeout ends it */
  CHECK(WAIT_FOR(atomic_load(&v.sp.disconnected) == 1, 10000));
  CHECK(atomic_load(&v.sp.last_status) == HD_ETIMEDOUT);
  close(r.fd);
  /* meanwhile and after, the others are served */
  CHECK(served_then_closed(&v));
}

/* ---- options of version 1 ---- */

/* A caller built against version 1 has a shorter struct: init writes only its fields, and create
 * reads only them (the new ones take their defaults, whatever lies beyond). */
static void options_version_1(void) {
  hd_server_options_t o;
  memset(&o, 0xab, sizeof o);
  CHECK_OK(hd_server_options_init(&o, 1));
  CHECK(o.version == 1 && o.page_events == 0);
  const uint8_t *tail = (const uint8_t *)&o.authorize;
  for (size_t i = 0; i < sizeof o - offsetof(hd_server_options_t, authorize); i++) {
    CHECK(tail[i] == 0xab);
  }
  hd_keypair_t skp;
  hd_keypair_generate(&skp);
  tu_peer_t sp;
  tu_peer_init(&sp);
  hd_server_options_t t = tu_server_options(&skp, TOPIC, "127.0.0.1:0", &sp);
  memcpy(&o, &t, offsetof(hd_server_options_t, authorize));
  o.version = 1; /* authorize etc. are 0xab bytes: never read */
  srv_t v;
  v.skp = skp;
  CHECK_OK(hd_server_create(&v.s, &o));
  v.port = hd_server_port(v.s);
  snprintf(v.addr, sizeof v.addr, "127.0.0.1:%d", v.port);
  CHECK(served_then_closed(&v));
}

#define TESTS(X)                          \
  X(options_version_1)                    \
  X(refused_key_gets_no_welcome)          \
  X(async_allow_after_a_delay)            \
  X(unanswered_request_times_out)         \
  X(disconnect_closes_live_connections)   \
  X(handshaking_cap)                      \
  X(handshakes_per_address_cap)           \
  X(replayed_message_1_does_not_displace) \
  X(client_that_never_reads)

HD_TEST_MAIN(TESTS)
