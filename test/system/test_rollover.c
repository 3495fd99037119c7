/* Server key rollover through the public API (docs/OPERATIONS.md, "Key rollover"): a server
 * answers to its key A and its next key B at once, so that clients of either connect; after the
 * rollover (a restart with B alone) a client that knows only A fails with HD_EAUTH and one that
 * knows [A, B] moves to B. Servers on 127.0.0.1 with ports the OS picks; waits bounded. */
#include "harness.h"
#include "transport_util.h"

#include <stdio.h>

#define TOPIC "rollover-test"
#define WAIT_MS 10000

typedef struct rec {
  tu_peer_t p; /* first: the tu_* callbacks take the record as a tu_peer_t */
  atomic_int events;
  atomic_int auth_failures;
  hd_keypair_t kp;
  hd_client_t *c;
} rec_t;

static void rec_on_event(void *ud, hd_event_t *e) {
  rec_t *r = ud;
  atomic_fetch_add(&r->events, 1);
  hd_event_complete(e, 1, NULL, 0);
}

static void rec_on_disconnected(void *ud, const uint8_t *pk, int status) {
  rec_t *r = ud;
  if (status == HD_EAUTH) atomic_fetch_add(&r->auth_failures, 1);
  tu_on_disconnected(ud, pk, status);
}

/* A client dialing `addr` that accepts the `n` server keys `keys` (n x 32 bytes). */
static int rec_start(rec_t *r, const char *addr, const uint8_t *keys, size_t n) {
  memset(r, 0, sizeof *r);
  tu_peer_init(&r->p);
  hd_keypair_generate(&r->kp);
  hd_client_options_t o = tu_client_options(&r->kp, NULL, TOPIC, addr, &r->p);
  o.on_event = rec_on_event;
  o.on_disconnected = rec_on_disconnected;
  o.server_public_keys = keys;
  o.server_public_key_count = n;
  int rc = hd_client_create(&r->c, &o);
  if (rc != 0) fprintf(stderr, "  client create: %s\n", hd_last_error_message());
  return rc;
}

static hd_server_t *server_start(const hd_keypair_t *kp, const hd_keypair_t *next,
                                 const char *listen, const char *data_dir, tu_peer_t *sp) {
  hd_server_options_t so = tu_server_options(kp, TOPIC, listen, sp);
  so.next_keypair = next;
  if (data_dir != NULL) so.data_dir = data_dir;
  hd_server_t *s = NULL;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s, &so);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) fprintf(stderr, "  server create: %s\n", hd_last_error_message());
  return rc == 0 ? s : NULL;
}

static int exchange(hd_server_t *s, rec_t *r, int want) {
  if (hd_server_add_event_wait(s, r->kp.public_key, "hi", 2, NULL) != 0) return 0;
  return WAIT_FOR(atomic_load(&r->events) >= want, WAIT_MS);
}

static void rollover(void) {
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  uint8_t ab[2][32];
  memcpy(ab[0], a.public_key, 32);
  memcpy(ab[1], b.public_key, 32);
  tu_peer_t sp;
  tu_peer_init(&sp);
  const char *dir = tu_data_dir();
  CHECK(dir != NULL);
  /* during the rollover: A, and B next */
  hd_server_t *s = server_start(&a, &b, "127.0.0.1:0", dir, &sp);
  CHECK(s != NULL);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(s));
  static rec_t only_a, only_b, both;
  CHECK_OK(rec_start(&only_a, addr, ab[0], 1));
  CHECK_OK(rec_start(&only_b, addr, ab[1], 1));
  CHECK_OK(rec_start(&both, addr, ab[0], 2));
  CHECK(WAIT_FOR(atomic_load(&only_a.p.connected) == 1 && atomic_load(&only_b.p.connected) == 1 &&
                     atomic_load(&both.p.connected) == 1,
                 WAIT_MS));
  CHECK(memcmp(only_a.p.key, a.public_key, 32) == 0); /* the key each one authenticated */
  CHECK(memcmp(only_b.p.key, b.public_key, 32) == 0);
  CHECK(memcmp(both.p.key, a.public_key, 32) == 0);   /* the first of its list */
  CHECK(exchange(s, &only_a, 1));
  CHECK(exchange(s, &only_b, 1));
  CHECK(exchange(s, &both, 1));
  CHECK(atomic_load(&only_a.auth_failures) + atomic_load(&only_b.auth_failures) +
            atomic_load(&both.auth_failures) == 0);

  /* the metrics tell the keys apart: the operator drops A when its count stops moving */
  char text[8192];
  CHECK(hd_server_metrics(s, text, sizeof text) > 0);
  CHECK(strstr(text, "\nhyperdown_handshakes_total{key=\"current\"} 2\n") != NULL);
  CHECK(strstr(text, "\nhyperdown_handshakes_total{key=\"next\"} 1\n") != NULL);

  /* after it: B alone, on the same store and port */
  CHECK_OK(hd_server_close_wait(s));
  s = server_start(&b, NULL, addr, dir, &sp);
  CHECK(s != NULL);
  CHECK(WAIT_FOR(atomic_load(&both.p.connected) == 2, WAIT_MS));
  CHECK(memcmp(both.p.key, b.public_key, 32) == 0);
  CHECK(atomic_load(&both.auth_failures) >= 1); /* A was refused once, then B */
  CHECK(exchange(s, &both, 2));
  CHECK(WAIT_FOR(atomic_load(&only_b.p.connected) == 2, WAIT_MS));
  CHECK(exchange(s, &only_b, 2));
  CHECK(hd_server_metrics(s, text, sizeof text) > 0);
  CHECK(strstr(text, "hyperdown_handshakes_total{key=\"next\"}") == NULL); /* no next key */
  CHECK(WAIT_FOR(atomic_load(&only_a.auth_failures) >= 2, WAIT_MS));
  CHECK(atomic_load(&only_a.p.connected) == 1);
  CHECK(atomic_load(&only_a.p.last_status) == HD_EAUTH);
  /* the event added for A's user waits in the store for a client that knows B */
  CHECK_OK(hd_server_add_event_wait(s, only_a.kp.public_key, "x", 1, NULL));
  hdt_sleep_ms(200);
  CHECK(atomic_load(&only_a.events) == 1);
  CHECK_OK(hd_client_close_wait(only_a.c));
  CHECK_OK(hd_client_close_wait(only_b.c));
  CHECK_OK(hd_client_close_wait(both.c));
  CHECK_OK(hd_server_close_wait(s));
}

/* A client whose list starts with the old key, on a server already past the rollover, moves
 * to the next key at once and stays with it across a restart. */
static void key_kept_after_success(void) {
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  uint8_t ab[2][32];
  memcpy(ab[0], a.public_key, 32);
  memcpy(ab[1], b.public_key, 32);
  tu_peer_t sp;
  tu_peer_init(&sp);
  const char *dir = tu_data_dir();
  hd_server_t *s = server_start(&b, NULL, "127.0.0.1:0", dir, &sp);
  CHECK(s != NULL);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", hd_server_port(s));
  static rec_t both;
  CHECK_OK(rec_start(&both, addr, ab[0], 2));
  CHECK(WAIT_FOR(atomic_load(&both.p.connected) == 1, WAIT_MS));
  CHECK(atomic_load(&both.auth_failures) == 1);
  CHECK_OK(hd_server_close_wait(s));
  s = server_start(&b, NULL, addr, dir, &sp);
  CHECK(s != NULL);
  CHECK(WAIT_FOR(atomic_load(&both.p.connected) == 2, WAIT_MS));
  CHECK(atomic_load(&both.auth_failures) == 1); /* B first this time */
  CHECK(exchange(s, &both, 1));
  CHECK_OK(hd_client_close_wait(both.c));
  CHECK_OK(hd_server_close_wait(s));
}

static void bad_next_keypair(void) {
  hd_keypair_t a, b;
  hd_keypair_generate(&a);
  hd_keypair_generate(&b);
  tu_peer_t sp;
  tu_peer_init(&sp);
  hd_server_options_t so = tu_server_options(&a, TOPIC, "127.0.0.1:0", &sp);
  hd_server_t *s;
  so.next_keypair = &a; /* the same key: no rollover */
  CHECK_RC(hd_server_create(&s, &so), HD_EINVAL);
  b.public_key[0] ^= 1; /* does not verify */
  so.next_keypair = &b;
  CHECK_RC(hd_server_create(&s, &so), HD_EKEY);
  CHECK(strstr(hd_last_error_message(), "next_keypair") != NULL);
  /* a version-4 caller has no such field: ignored */
  hd_keypair_generate(&b);
  so.next_keypair = &b;
  so.version = 4;
  CHECK_OK(hd_server_create(&s, &so));
  CHECK_OK(hd_server_close_wait(s));
}

#define TESTS(X)                                                                                  \
  X(rollover)                                                                                     \
  X(key_kept_after_success)                                                                       \
  X(bad_next_keypair)

HD_TEST_MAIN(TESTS)
