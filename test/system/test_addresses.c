/* Addresses through the public API (docs/OPERATIONS.md, "Addresses"): a host name for listen and
 * connect; a client's list of servers, walked in turn past the ones that refuse, and kept
 * working when an earlier one comes back; names that do not resolve and malformed lists. Servers
 * on 127.0.0.1 (or "localhost") with ports the OS picks; every wait bounded. */
#include "harness.h"
#include "transport_util.h"

#include <stdio.h>

#define TOPIC "addresses-test"
#define WAIT_MS 10000

/* A client's recorder: the transport callbacks' (first: tu_* callbacks take it as a tu_peer_t)
 * and the events its handler saw. */
typedef struct rec {
  tu_peer_t p;
  atomic_int events;
  atomic_int refused;     /* attempts that ended with HD_ECONNREFUSED */
  atomic_int unresolved;  /* attempts that ended with HD_EADDR */
} rec_t;

static void rec_on_event(void *ud, hd_event_t *e) {
  rec_t *r = ud;
  atomic_fetch_add(&r->events, 1);
  hd_event_complete(e, 1, NULL, 0);
}

static void rec_on_disconnected(void *ud, const uint8_t *pk, int status) {
  rec_t *r = ud;
  if (status == HD_ECONNREFUSED) atomic_fetch_add(&r->refused, 1);
  if (status == HD_EADDR) atomic_fetch_add(&r->unresolved, 1);
  tu_on_disconnected(ud, pk, status);
}

static void rec_init(rec_t *r) {
  memset(r, 0, sizeof *r);
  tu_peer_init(&r->p);
}

static hd_client_options_t rec_options(rec_t *r, const hd_keypair_t *kp, const uint8_t *spk,
                                       const char *connect) {
  hd_client_options_t o = tu_client_options(kp, spk, TOPIC, connect, &r->p);
  o.on_event = rec_on_event;
  o.on_disconnected = rec_on_disconnected;
  return o;
}

/* A port nothing listens on: bound once by the OS's choice, then released. */
static int refusing_port(void) {
  int port = 0;
  int fd = tu_listen(&port);
  if (fd < 0) return -1;
  close(fd);
  return port;
}

static hd_server_t *server_on(const hd_keypair_t *kp, const char *listen, tu_peer_t *sp) {
  hd_server_options_t so = tu_server_options(kp, TOPIC, listen, sp);
  hd_server_t *s = NULL;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s, &so);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) fprintf(stderr, "  server on %s: %s\n", listen, hd_last_error_message());
  return rc == 0 ? s : NULL;
}

/* Adds one event for `user` and waits until the client's handler saw `want` events. */
static int exchange(hd_server_t *s, const hd_keypair_t *user, rec_t *r, int want) {
  if (hd_server_add_event_wait(s, user->public_key, "hi", 2, NULL) != 0) return 0;
  return WAIT_FOR(atomic_load(&r->events) >= want, WAIT_MS);
}

static void name_for_listen_and_connect(void) {
  hd_keypair_t skp, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ckp);
  tu_peer_t sp;
  tu_peer_init(&sp);
  hd_server_t *s = server_on(&skp, "localhost:0", &sp);
  CHECK(s != NULL);
  char addr[64];
  snprintf(addr, sizeof addr, "localhost:%d", hd_server_port(s));
  rec_t r;
  rec_init(&r);
  hd_client_options_t co = rec_options(&r, &ckp, skp.public_key, addr);
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&r.p.connected) == 1, WAIT_MS));
  CHECK(exchange(s, &ckp, &r, 1));
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(s));
}

static void list_reaches_third_and_keeps_working(void) {
  hd_keypair_t skp, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ckp);
  int pa = refusing_port(), pb = refusing_port();
  CHECK(pa > 0 && pb > 0 && pa != pb);
  tu_peer_t sp_c, sp_a;
  tu_peer_init(&sp_c);
  tu_peer_init(&sp_a);
  hd_server_t *sc = server_on(&skp, "127.0.0.1:0", &sp_c);
  CHECK(sc != NULL);
  char a[3][64];
  snprintf(a[0], sizeof a[0], "127.0.0.1:%d", pa);
  snprintf(a[1], sizeof a[1], "localhost:%d", pb); /* a name among them */
  snprintf(a[2], sizeof a[2], "127.0.0.1:%d", hd_server_port(sc));
  const char *list[3] = {a[0], a[1], a[2]};
  rec_t r;
  rec_init(&r);
  hd_client_options_t co = rec_options(&r, &ckp, skp.public_key, NULL);
  co.connect_list = list;
  co.connect_count = 3;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&r.p.connected) == 1, WAIT_MS));
  CHECK(atomic_load(&r.refused) >= 2); /* the first two refused, in turn */
  CHECK(exchange(sc, &ckp, &r, 1));
  /* the first comes back (a server restarted there): the client stays where it works */
  hd_server_t *sa = server_on(&skp, a[0], &sp_a);
  CHECK(sa != NULL);
  CHECK(exchange(sc, &ckp, &r, 2));
  hdt_sleep_ms(100);
  CHECK(atomic_load(&r.p.connected) == 1 && atomic_load(&r.p.disconnected) == atomic_load(&r.refused));
  /* its server goes: the client dials it again, then moves on and finds the first one */
  CHECK_OK(hd_server_close_wait(sc));
  CHECK(WAIT_FOR(atomic_load(&r.p.connected) == 2, WAIT_MS));
  CHECK(exchange(sa, &ckp, &r, 3));
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(sa));
}

/* A name that does not resolve is an attempt that failed (HD_EADDR, the resolver's reason), as
 * a refused address is: the client reports it and goes on. */
static void unresolvable_name(void) {
  hd_keypair_t skp, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ckp);
  tu_peer_t sp;
  tu_peer_init(&sp);
  hd_server_t *s = server_on(&skp, "127.0.0.1:0", &sp);
  CHECK(s != NULL);
  char good[64];
  snprintf(good, sizeof good, "127.0.0.1:%d", hd_server_port(s));
  const char *list[2] = {"no-such-host.invalid:7000", good};
  rec_t r;
  rec_init(&r);
  hd_client_options_t co = rec_options(&r, &ckp, skp.public_key, NULL);
  co.connect_list = list;
  co.connect_count = 2;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&r.p.connected) == 1, WAIT_MS));
  CHECK(atomic_load(&r.unresolved) == 1);
  CHECK(exchange(s, &ckp, &r, 1));
  CHECK_OK(hd_client_close_wait(c));

  /* only that name: created, and it keeps trying and reporting */
  rec_t r2;
  rec_init(&r2);
  co = rec_options(&r2, &ckp, skp.public_key, "no-such-host.invalid:7000");
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&r2.unresolved) >= 3, WAIT_MS));
  CHECK(atomic_load(&r2.p.last_status) == HD_EADDR);
  CHECK(tu_peer_detail_has(&r2.p, "does not resolve"));
  CHECK(atomic_load(&r2.p.connected) == 0);
  CHECK_OK(hd_client_close_wait(c));
  CHECK_OK(hd_server_close_wait(s));
  /* the server: at create */
  tu_peer_t sp2;
  tu_peer_init(&sp2);
  hd_server_options_t so = tu_server_options(&skp, TOPIC, "no-such-host.invalid:0", &sp2);
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  CHECK(strstr(hd_last_error_message(), "does not resolve") != NULL);
}

static void bad_lists(void) {
  hd_keypair_t skp, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ckp);
  rec_t r;
  rec_init(&r);
  hd_client_t *c = NULL;
  hd_client_options_t co = rec_options(&r, &ckp, skp.public_key, "127.0.0.1:1");
  const char *list[3] = {"127.0.0.1:1", "not an address", "127.0.0.1:2"};
  co.connect_list = list;
  co.connect_count = 0; /* empty */
  CHECK_RC(hd_client_create(&c, &co), HD_EINVAL);
  CHECK(strstr(hd_last_error_message(), "empty address list") != NULL);
  co.connect_list = NULL;
  co.connect_count = 2;
  CHECK_RC(hd_client_create(&c, &co), HD_EINVAL);
  co.connect_list = list;
  co.connect_count = 3; /* the second is malformed: named with its place */
  CHECK_RC(hd_client_create(&c, &co), HD_EADDR);
  CHECK(strstr(hd_last_error_message(), "server address 2 of 3") != NULL);
  const char *bad_port[1] = {"localhost:70000"};
  co.connect_list = bad_port;
  co.connect_count = 1;
  CHECK_RC(hd_client_create(&c, &co), HD_EADDR);
  const char *no_port[1] = {"localhost"};
  co.connect_list = no_port;
  CHECK_RC(hd_client_create(&c, &co), HD_EADDR);
  const char *null_entry[2] = {"127.0.0.1:1", NULL};
  co.connect_list = null_entry;
  co.connect_count = 2;
  CHECK_RC(hd_client_create(&c, &co), HD_EADDR);
  /* key lists */
  co = rec_options(&r, &ckp, skp.public_key, "127.0.0.1:1");
  uint8_t keys[2][32];
  memcpy(keys[0], skp.public_key, 32);
  memset(keys[1], 0, 32);
  keys[1][0] = 2; /* not a point of the curve's prime-order group */
  co.server_public_keys = keys[0];
  co.server_public_key_count = 0;
  CHECK_RC(hd_client_create(&c, &co), HD_EINVAL);
  co.server_public_key_count = 2;
  CHECK_RC(hd_client_create(&c, &co), HD_EKEY);
  CHECK(strstr(hd_last_error_message(), "key 2 of 2") != NULL);
  /* servers */
  tu_peer_t sp;
  tu_peer_init(&sp);
  hd_server_t *s;
  hd_server_options_t so = tu_server_options(&skp, TOPIC, "bad name!:0", &sp);
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  so.listen = ":0";
  CHECK_RC(hd_server_create(&s, &so), HD_EADDR);
  CHECK(c == NULL);
}

/* The waits between attempts are drawn in [d/2, d]: with d pinned at 200 ms (min = max), every
 * wait is at least about 100 ms, at most 200 ms and some loop delay, and they differ (a fixed
 * delay would make them all alike). */
#define JITTER_ATTEMPTS 8
typedef struct attempts {
  tu_peer_t p;
  atomic_int n;
  uint64_t at[JITTER_ATTEMPTS];
} attempts_t;

static void attempts_on_disconnected(void *ud, const uint8_t *pk, int status) {
  attempts_t *a = ud;
  int i = atomic_load(&a->n);
  if (i < JITTER_ATTEMPTS) a->at[i] = hdt_now_ms();
  atomic_store(&a->n, i + 1);
  tu_on_disconnected(ud, pk, status);
}

static void backoff_is_jittered(void) {
  hd_keypair_t skp, ckp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ckp);
  int port = refusing_port();
  CHECK(port > 0);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  static attempts_t a;
  memset(&a, 0, sizeof a);
  tu_peer_init(&a.p);
  hd_client_options_t co = tu_client_options(&ckp, skp.public_key, TOPIC, addr, &a.p);
  co.on_disconnected = attempts_on_disconnected;
  co.reconnect_min_ms = 200;
  co.reconnect_max_ms = 200;
  hd_client_t *c;
  CHECK_OK(hd_client_create(&c, &co));
  CHECK(WAIT_FOR(atomic_load(&a.n) >= JITTER_ATTEMPTS, 200 * JITTER_ATTEMPTS + WAIT_MS));
  CHECK_OK(hd_client_close_wait(c));
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 1; i < JITTER_ATTEMPTS; i++) {
    uint64_t gap = a.at[i] - a.at[i - 1];
    if (gap < lo) lo = gap;
    if (gap > hi) hi = gap;
  }
  if (hdt_verbose()) printf("  waits between attempts: %llu..%llu ms\n", (unsigned long long)lo,
                            (unsigned long long)hi);
  CHECK(lo >= 90);
  CHECK(hi <= 200 + 150 * (uint64_t)hdt_slow());
  CHECK(hi - lo >= 5); /* 7 draws in [100, 200] all within 5 ms: about 1 in 10^8 */
}

#define TESTS(X)                                                                                  \
  X(backoff_is_jittered)                                                                          \
  X(name_for_listen_and_connect)                                                                  \
  X(list_reaches_third_and_keeps_working)                                                         \
  X(unresolvable_name)                                                                            \
  X(bad_lists)

HD_TEST_MAIN(TESTS)
