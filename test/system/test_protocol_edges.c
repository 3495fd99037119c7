/* What docs/PROTOCOL.md says about its edges, checked end to end: a second connection of the same
 * key replaces the first with BYE "replaced" and the two copies do not bounce each other; a
 * client whose max_message_bytes cannot carry the server's largest event is refused at the
 * handshake; the handshake timeout closes in silence; each side keeps alive on its own interval.
 * Every wait is bounded; counts, not speeds, are checked. */
#include "harness.h"
#include "transport_util.h"

#include <stddef.h>

#define TOPIC "protocol-edges-test"

typedef struct srv {
  hd_keypair_t kp;
  tu_peer_t p;
  hd_server_t *s;
  char addr[64];
} srv_t;

/* A server on a free port; `o` (optional) gives the options to change (nonzero ones). */
static int srv_start(srv_t *v, const hd_server_options_t *o) {
  hd_keypair_generate(&v->kp);
  tu_peer_init(&v->p);
  hd_server_options_t so = tu_server_options(&v->kp, TOPIC, "127.0.0.1:0", &v->p);
  if (o != NULL) {
    if (o->handshake_timeout_ms) so.handshake_timeout_ms = o->handshake_timeout_ms;
    if (o->keepalive_ms) so.keepalive_ms = o->keepalive_ms;
    if (o->idle_timeout_ms) so.idle_timeout_ms = o->idle_timeout_ms;
    if (o->max_message_bytes) so.max_message_bytes = o->max_message_bytes;
    if (o->max_event_bytes) so.max_event_bytes = o->max_event_bytes;
    if (o->data_dir) so.data_dir = o->data_dir;
  }
  int rc = hd_server_create(&v->s, &so);
  if (rc != 0) return rc;
  snprintf(v->addr, sizeof v->addr, "127.0.0.1:%d", hd_server_port(v->s));
  return 0;
}

static hd_client_options_t cli_options(srv_t *v, const hd_keypair_t *kp, tu_peer_t *p) {
  tu_peer_init(p);
  hd_client_options_t o = tu_client_options(kp, v->kp.public_key, TOPIC, v->addr, p);
  o.reconnect_min_ms = 10;
  o.reconnect_max_ms = 200;
  return o;
}

/* ---- a second connection of the same key ------------------------------------------------- */

/* Two copies of one client (same key, two folders): each connection replaces the other's with
 * BYE "replaced" (HD_EREPLACED); the replaced one waits reconnect_max_ms, doubling with each
 * replacement in a row, so they take turns ever more rarely. Redialing after reconnect_min_ms
 * they would connect some 100 times a second each. */
static void replaced_does_not_bounce(void) {
  srv_t v;
  CHECK_OK(srv_start(&v, NULL));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t pa, pb;
  hd_client_options_t oa = cli_options(&v, &kp, &pa), ob = cli_options(&v, &kp, &pb);
  hd_client_t *a, *b;
  CHECK_OK(hd_client_create(&a, &oa));
  CHECK(WAIT_FOR(atomic_load(&pa.connected) == 1, 5000));
  CHECK_OK(hd_client_create(&b, &ob));
  CHECK(WAIT_FOR(atomic_load(&pa.disconnected) >= 1, 5000));
  CHECK(atomic_load(&pa.last_status) == HD_EREPLACED);
  CHECK(tu_peer_detail_has(&pa, "replaced")); /* a's later replacements rewrite it meanwhile */
  hdt_sleep_ms(3000);
  int conns = atomic_load(&pa.connected) + atomic_load(&pb.connected);
  printf("  two copies of one key: %d connections in 3 s (reconnect_max 200 ms)\n", conns);
  CHECK(conns >= 3); /* they do take turns: neither gives up */
  CHECK(conns < 16);
  CHECK(tu_log_has("dialing again in"));
  CHECK_OK(hd_client_close_wait(a));
  CHECK_OK(hd_client_close_wait(b));
  CHECK_OK(hd_server_close_wait(v.s));
}

/* The BYE on the wire: reason 29 (HD_EREPLACED), then the close; the newer connection stays. */
static void replaced_bye_on_the_wire(void) {
  srv_t v;
  CHECK_OK(srv_start(&v, NULL));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  int port = hd_server_port(v.s);
  tu_raw_t r1, r2;
  CHECK(tu_raw_connect(&r1, port) == 0 && tu_raw_handshake(&r1, &kp, v.kp.public_key, TOPIC) == 0);
  CHECK(WAIT_FOR(atomic_load(&v.p.connected) == 1, 3000));
  CHECK(tu_raw_connect(&r2, port) == 0 && tu_raw_handshake(&r2, &kp, v.kp.public_key, TOPIC) == 0);
  uint8_t lenb[2], rec[512], pt[512];
  CHECK(tu_recv_all(r1.fd, lenb, 2, 3000) == 0);
  size_t n = hd__get_u16be(lenb);
  CHECK(n >= HD__RECORD_TAG && n <= sizeof rec && tu_recv_all(r1.fd, rec, n, 3000) == 0);
  CHECK(hd__cipher_decrypt(&r1.rx, NULL, 0, rec, n, pt) == 0);
  /* L, type BYE, reason 29 (1 byte), text */
  CHECK(pt[1] == HD__MSG_BYE && pt[2] == 29);
  uint64_t reason;
  const uint8_t *text;
  size_t tl;
  CHECK(hd__msg_decode_bye(pt + 2, n - HD__RECORD_TAG - 2, &reason, &text, &tl) == 0);
  CHECK(reason == (uint64_t)-HD_EREPLACED);
  CHECK(memmem(text, tl, "replaced", 8) != NULL);
  CHECK(tu_wait_closed(r1.fd, 3000));
  CHECK(WAIT_FOR(atomic_load(&v.p.disconnected) == 1, 3000));
  CHECK(atomic_load(&v.p.last_status) == HD_EREPLACED);
  CHECK(tu_wait_closed(r2.fd, 300) == 0); /* the newer one is served */
  close(r1.fd);
  close(r2.fd);
  CHECK_OK(hd_server_close_wait(v.s));
}

/* ---- message limits ------------------------------------------------------------------------ */

static int client_handled(hd_client_t *c, uint64_t n) {
  hd_client_stats_t st;
  return hdt_client_stats(c, &st) == 0 && st.events_handled >= n;
}

/* A client whose max_message_bytes cannot carry the server's largest event (max_event_bytes +
 * 64) is refused at the handshake with HD_EMSGSIZE, never counted, and dials again with its
 * doubling backoff. With max_event_bytes lowered to its limit less 64 it is admitted, and the
 * largest event the server then takes reaches it. */
static void small_client_refused_at_handshake(void) {
  srv_t v;
  CHECK_OK(srv_start(&v, NULL)); /* max_event_bytes: 1 MiB - 64 */
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t p;
  hd_client_options_t o = cli_options(&v, &kp, &p);
  o.max_message_bytes = 65536;
  hd_client_t *c;
  tu_log_clear();
  CHECK_OK(hd_client_create(&c, &o));
  CHECK(WAIT_FOR(atomic_load(&p.disconnected) >= 2, 5000));
  CHECK(atomic_load(&p.last_status) == HD_EMSGSIZE);
  CHECK(tu_peer_detail_has(&p, "max_message_bytes (65536)"));
  CHECK(atomic_load(&p.connected) == 0 && atomic_load(&v.p.connected) == 0);
  CHECK(tu_log_has("accepts messages of at most 65536 bytes, this server's events take up to "
                   "1048576"));
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));

  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.max_event_bytes = 65536 - 64;
  CHECK_OK(srv_start(&v, &so));
  o = cli_options(&v, &kp, &p);
  o.max_message_bytes = 65536;
  CHECK_OK(hd_client_create(&c, &o));
  CHECK(WAIT_FOR(atomic_load(&p.connected) == 1, 5000));
  uint8_t *big = calloc(1, 65536);
  CHECK(big != NULL);
  uint64_t seq = 0;
  CHECK_RC(hd_server_add_event_wait(v.s, kp.public_key, big, 65536 - 63, &seq), HD_EINVAL);
  CHECK(strstr(hd_last_error_message(), "max_event_bytes") != NULL);
  CHECK_OK(hd_server_add_event_wait(v.s, kp.public_key, big, 65536 - 64, &seq));
  free(big);
  CHECK(WAIT_FOR(client_handled(c, 1), 5000));
  CHECK(atomic_load(&p.disconnected) == 0);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(v.s, &st));
  CHECK(st.events_too_large == 0);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
}

/* An event stored under a larger max_event_bytes than the server now has can exceed a client's
 * limit that the handshake accepted: the connection closes with BYE HD_EMSGSIZE naming the event,
 * a log line and a counter, never in silence. The event stays pending. */
static void too_large_event_told(void) {
  srv_t v;
  char *dir = hdt_mkdtemp("edges-too-large");
  CHECK(dir != NULL);
  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.data_dir = dir;
  CHECK_OK(srv_start(&v, &so));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  uint8_t *big = calloc(1, 5000);
  CHECK(big != NULL);
  CHECK_OK(hd_server_add_event_wait(v.s, kp.public_key, big, 5000, NULL));
  free(big);
  CHECK_OK(hd_server_close_wait(v.s));

  so.max_event_bytes = 1000; /* the same store, now with a smaller limit */
  CHECK_OK(srv_start(&v, &so));
  tu_peer_t p;
  hd_client_options_t o = cli_options(&v, &kp, &p);
  o.max_message_bytes = 2000;
  hd_client_t *c;
  tu_log_clear();
  CHECK_OK(hd_client_create(&c, &o));
  CHECK(WAIT_FOR(atomic_load(&p.disconnected) >= 1, 5000));
  CHECK(atomic_load(&p.last_status) == HD_EBYE);
  CHECK(tu_peer_detail_has(&p, "EMSGSIZE") && tu_peer_detail_has(&p, "event 1 has 5000 bytes"));
  CHECK(tu_log_has("stored when max_event_bytes was larger?"));
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(v.s, &st));
  CHECK(st.events_too_large >= 1 && st.pending_total == 1);
  hd_server_stats_t v1 = {.version = 1, .events_too_large = 12345};
  CHECK_OK(hd_server_stats(v.s, &v1)); /* a caller built against version 1: not written past */
  CHECK(v1.pending_total == 1 && v1.events_too_large == 12345);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
  hdt_rmrf(dir);
  free(dir);
}

/* ---- handshake timeout and keepalive ---------------------------------------------------------- */

/* 1 if the peer closed `fd` within `ms` (scaled) without sending a single byte. */
static int closed_silently(int fd, int ms) {
  uint64_t dl = hdt_now_ms() + (uint64_t)ms * hdt_slow();
  for (;;) {
    uint64_t now = hdt_now_ms();
    if (now >= dl) return 0;
    struct pollfd pf = {fd, POLLIN, 0};
    if (poll(&pf, 1, (int)(dl - now)) <= 0) continue;
    uint8_t b[256];
    ssize_t n = recv(fd, b, sizeof b, 0);
    if (n > 0) {
      fprintf(stderr, "  %zd bytes came before the close\n", n);
      return 0;
    }
    return 1; /* EOF or reset */
  }
}

/* The next record from the server on a raw connection, decrypted: its first message's type (or
 * -1: closed, timed out, or not a message). */
static int raw_next_type(tu_raw_t *r, int ms) {
  uint8_t lenb[2], rec[1024], pt[1024];
  if (tu_recv_all(r->fd, lenb, 2, ms) != 0) return -1;
  size_t n = hd__get_u16be(lenb);
  if (n < HD__RECORD_TAG || n > sizeof rec || tu_recv_all(r->fd, rec, n, ms) != 0) return -1;
  if (hd__cipher_decrypt(&r->rx, NULL, 0, rec, n, pt) != 0 || n == HD__RECORD_TAG) return -1;
  uint64_t l;
  int vl = hd__varint_get(pt, n - HD__RECORD_TAG, &l);
  return vl > 0 && (size_t)vl < n - HD__RECORD_TAG ? pt[vl] : -1;
}

/* The handshake timeout closes in silence: no rejection frame, no BYE, whether the client sent
 * nothing, only the preamble, or the whole handshake and then no record. */
static void handshake_timeout_silent(void) {
  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.handshake_timeout_ms = 300;
  srv_t v;
  CHECK_OK(srv_start(&v, &so));
  int port = hd_server_port(v.s);
  tu_raw_t r;
  CHECK(tu_raw_connect(&r, port) == 0);
  CHECK(closed_silently(r.fd, 3000));
  close(r.fd);
  uint8_t pre[HD__PREAMBLE_BYTES], tk[HD_TOPIC_BYTES];
  CHECK_OK(hd_topic_key(tk, TOPIC, strlen(TOPIC)));
  hd__preamble_encode(pre, tk);
  CHECK(tu_raw_connect(&r, port) == 0 && tu_send_all(r.fd, pre, sizeof pre) == 0);
  CHECK(closed_silently(r.fd, 3000));
  close(r.fd);
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  CHECK(tu_raw_connect(&r, port) == 0);
  CHECK(tu_raw_handshake_only(&r, &kp, v.kp.public_key, TOPIC) == 0); /* WELCOME read */
  CHECK(closed_silently(r.fd, 3000));
  close(r.fd);
  CHECK(atomic_load(&v.p.connected) == 0);
  CHECK(WAIT_FOR(atomic_load(&v.p.disconnected) == 3, 3000));
  CHECK(atomic_load(&v.p.last_status) == HD_ETIMEDOUT);
  CHECK_OK(hd_server_close_wait(v.s));

  /* the client's side: a server that takes message 1 and never answers */
  int lport, lfd = tu_listen(&lport);
  CHECK(lfd >= 0);
  hd_keypair_t skp;
  hd_keypair_generate(&skp);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", lport);
  tu_peer_t p;
  tu_peer_init(&p);
  hd_client_options_t o = tu_client_options(&kp, skp.public_key, TOPIC, addr, &p);
  o.handshake_timeout_ms = 300;
  o.no_reconnect = 1;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &o));
  struct pollfd pf = {lfd, POLLIN, 0};
  CHECK(poll(&pf, 1, 3000 * hdt_slow()) == 1);
  int fd = accept(lfd, NULL, NULL);
  CHECK(fd >= 0);
  uint8_t first[18];
  CHECK(tu_recv_all(fd, first, sizeof first, 3000) == 0); /* preamble and message 1's length */
  size_t m1 = hd__get_u16be(first + 16);
  uint8_t *msg1 = malloc(m1);
  CHECK(msg1 != NULL);
  int got = tu_recv_all(fd, msg1, m1, 3000);
  free(msg1);
  CHECK(got == 0);
  CHECK(closed_silently(fd, 3000));
  CHECK(WAIT_FOR(atomic_load(&p.disconnected) == 1, 3000));
  CHECK(atomic_load(&p.last_status) == HD_ETIMEDOUT);
  close(fd);
  close(lfd);
  CHECK_OK(hd_client_close_wait(c));
}

/* Each side keeps alive on its own keepalive_ms: the server PINGs a silent client after its own
 * interval and drops it, without a BYE, once its idle timeout passes unanswered. A library client
 * with a much longer interval than the server's WELCOME says stays connected: it answers PINGs. */
static void keepalive_on_own_interval(void) {
  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.keepalive_ms = 200; /* idle timeout 600 ms */
  srv_t v;
  CHECK_OK(srv_start(&v, &so));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_raw_t r;
  CHECK(tu_raw_connect(&r, hd_server_port(v.s)) == 0);
  CHECK(tu_raw_handshake(&r, &kp, v.kp.public_key, TOPIC) == 0);
  CHECK(r.welcome.keepalive_ms == 200);
  CHECK(raw_next_type(&r, 3000) == HD__MSG_PING);
  CHECK(closed_silently(r.fd, 5000)); /* not answered: dropped, no BYE */
  close(r.fd);
  CHECK(WAIT_FOR(atomic_load(&v.p.disconnected) == 1, 3000));
  CHECK(atomic_load(&v.p.last_status) == HD_ETIMEDOUT);

  tu_peer_t p;
  hd_client_options_t o = cli_options(&v, &kp, &p);
  o.keepalive_ms = 60000;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &o));
  CHECK(WAIT_FOR(atomic_load(&p.connected) == 1, 5000));
  hdt_sleep_ms(2000); /* more than 3 idle timeouts of the server's */
  CHECK(atomic_load(&p.disconnected) == 0 && atomic_load(&v.p.disconnected) == 1);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
}

/* A caller built against options version 2 has no max_event_bytes: init does not write it and
 * create does not read it (garbage there would refuse every default client). */
static void options_version_2(void) {
  hd_server_options_t o;
  memset(&o, 0xab, sizeof o);
  CHECK_OK(hd_server_options_init(&o, 2));
  CHECK(o.version == 2 && o.handshakes_per_address == 0 && o.max_event_bytes == 0xabababab);
  srv_t v;
  hd_keypair_generate(&v.kp);
  tu_peer_init(&v.p);
  hd_server_options_t t = tu_server_options(&v.kp, TOPIC, "127.0.0.1:0", &v.p);
  memcpy(&o, &t, offsetof(hd_server_options_t, max_event_bytes));
  o.version = 2;
  CHECK_OK(hd_server_create(&v.s, &o));
  snprintf(v.addr, sizeof v.addr, "127.0.0.1:%d", hd_server_port(v.s));
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  tu_peer_t p;
  hd_client_options_t co = cli_options(&v, &kp, &p);
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&p.connected) == 1, 5000));
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(v.s));
}

#define TESTS(X)                                                                                  \
  X(replaced_does_not_bounce)                                                                     \
  X(replaced_bye_on_the_wire)                                                                     \
  X(small_client_refused_at_handshake)                                                            \
  X(too_large_event_told)                                                                         \
  X(options_version_2)                                                                            \
  X(handshake_timeout_silent)                                                                     \
  X(keepalive_on_own_interval)

HD_TEST_MAIN(TESTS)
