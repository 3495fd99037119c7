/* Event delivery end to end, through the public API only: the original library's example with its
 * own three key pairs, per-user FIFO, isolation between users, handler completions from another
 * thread and with failures, the pause setting, and a server consumption that fails.
 * Every wait is bounded (WAIT_FOR); every folder is a fresh mkdtemp, removed at the end. */
#include "harness.h"
#include "delivery_util.h"

/* ---------------------------------------------------------------------------------------------
 * The original's example (hyperdown-original-README.md "Usage / test"): server kp0; user kp1
 * online; user kp2 offline, comes later. Payloads are the example's objects as JSON.
 */
static const char *const original_payloads[3][3] = {
    {NULL, NULL, NULL},
    {NULL, "{\"prize\":500,\"game\":\"boxing\",\"note\":\"user1 is online\"}",
     "{\"prize\":4500,\"game\":\"boxing2\",\"note\":\"user1 is still online\"}"},
    {NULL, "{\"prize\":-500,\"game\":\"boxing\",\"note\":\"user2 is offline\"}", NULL},
};

static int original_check(int tag, uint64_t seq, const uint8_t *p, size_t n) {
  if (tag < 1 || tag > 2 || seq < 1 || seq > 2) return 0;
  const char *want = original_payloads[tag][seq];
  return want != NULL && n == strlen(want) && memcmp(p, want, n) == 0;
}

static void original_example_body(du_world_t *w) {
  hd_keypair_t kp0, kp1, kp2;
  CHECK_OK(hdt_example_keypair(&kp0, 0));
  CHECK_OK(hdt_example_keypair(&kp1, 1));
  CHECK_OK(hdt_example_keypair(&kp2, 2));

  du_server_init(&w->s, "server", &kp0, hdt_mkdtemp("server"), 16);
  w->s_on = 1;
  CHECK(w->s.dir != NULL);
  w->s.check = original_check;
  du_server_add_user(&w->s, kp1.public_key, 1);
  du_server_add_user(&w->s, kp2.public_key, 2);
  CHECK_OK(du_server_start(&w->s));

  du_client_t *online = &w->c[0], *offline = &w->c[1];
  du_client_init(online, "client1", 1, &kp1, kp0.public_key, hdt_mkdtemp("client1"), 16);
  du_client_init(offline, "client2", 2, &kp2, kp0.public_key, hdt_mkdtemp("client2"), 16);
  w->nc = 2;
  CHECK(online->dir && offline->dir);
  online->check = offline->check = original_check;
  du_client_set_addr(online, w->s.port);
  du_client_set_addr(offline, w->s.port);

  CHECK_OK(du_client_start(online));
  DCHECK(WAIT_FOR(du_client_is_connected(online), 5000));

  /* an event for the online user */
  uint64_t seq = 0;
  const char *p = original_payloads[1][1];
  CHECK_OK(hd_server_add_event_wait(w->s.h, kp1.public_key, p, strlen(p), &seq));
  CHECK(seq == 1);
  /* an event for the offline user: it waits in the server's store */
  p = original_payloads[2][1];
  CHECK_OK(hd_server_add_event_wait(w->s.h, kp2.public_key, p, strlen(p), &seq));
  CHECK(seq == 1);
  DCHECK(WAIT_FOR(du_client_oks(online, 1) == 1, 5000));
  DCHECK(du_server_pending(&w->s, kp2.public_key) == 1);

  /* the offline user comes back later */
  CHECK_OK(du_client_start(offline));
  /* another event for the online user */
  p = original_payloads[1][2];
  CHECK_OK(hd_server_add_event_wait(w->s.h, kp1.public_key, p, strlen(p), &seq));
  CHECK(seq == 2);

  DCHECK(WAIT_FOR(du_client_oks(online, 2) == 1 && du_client_oks(offline, 1) == 1, 5000));
  /* every server callback ran once per event, with the client's data */
  DCHECK(WAIT_FOR(du_server_calls(&w->s, 0, 1) == 1 && du_server_calls(&w->s, 0, 2) == 1 &&
                     du_server_calls(&w->s, 1, 1) == 1,
                 5000));
  /* both stores end empty */
  DCHECK(WAIT_FOR(du_server_pending(&w->s, kp1.public_key) == 0 &&
                     du_server_pending(&w->s, kp2.public_key) == 0 &&
                     du_server_pending_total(&w->s) == 0,
                 5000));
  DCHECK(WAIT_FOR(du_client_store_empty(online) && du_client_store_empty(offline), 5000));

  hd_server_stats_t ss;
  CHECK_OK(du_server_stats(&w->s, &ss));
  CHECK(ss.events_added == 3);
  CHECK(ss.events_consumed == 3);
  CHECK(ss.events_confirmed == 3);
  CHECK(ss.events_delivered >= 3);
  CHECK(ss.pending_total == 0);
  CHECK(ss.connected_users == 2);
  hd_client_stats_t cs;
  CHECK_OK(du_client_stats(online, &cs));
  CHECK(cs.events_received == 2 && cs.events_handled == 2 && cs.events_confirmed == 2);
  CHECK(cs.high_water == 2 && cs.connected == 1 && cs.events_failed == 0);
  CHECK_OK(du_client_stats(offline, &cs));
  CHECK(cs.events_received == 1 && cs.events_handled == 1 && cs.events_confirmed == 1);

  /* nothing more runs: each handler and each callback exactly once */
  hdt_sleep_ms(100);
  CHECK(du_client_total_calls(online) == 2 && du_client_total_calls(offline) == 1);
  CHECK(du_server_total_calls(&w->s) == 3);
  CHECK(du_client_clean(online) && du_client_clean(offline) && du_server_clean(&w->s));
}

DU_WORLD_TEST(original_example, original_example_body)

/* ---------------------------------------------------------------------------------------------
 * The other tests: one server and `n` users with fresh keys; user i (tag i+1) is client c[i]. */

/* Per-user FIFO across 1,000 events: half added while the user is offline (catch-up in pages),
 * the rest while it connects and after (live pushes), many adds in flight at once. */
typedef struct adds {
  atomic_int done, failed, wrong_seq;
} adds_t;

typedef struct add_req {
  adds_t *a;
  uint64_t want;
} add_req_t;

static void on_added(void *cb_data, int status, uint64_t seq) {
  add_req_t *r = cb_data;
  if (status != 0) atomic_fetch_add(&r->a->failed, 1);
  else if (seq != r->want) atomic_fetch_add(&r->a->wrong_seq, 1);
  atomic_fetch_add(&r->a->done, 1);
}

static void fifo_body(du_world_t *w) {
  const int n = 1000;
  CHECK_OK(du_world_init(w, "delivery", 1, (uint64_t)n + 2, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  du_server_t *s = &w->s;
  /* a small page and window so that the backlog crosses many pages and credit rounds */
  adds_t a;
  memset(&a, 0, sizeof a);
  add_req_t *reqs = calloc((size_t)n, sizeof *reqs);
  CHECK(reqs != NULL);
  uint8_t buf[128];
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++) {
    if (i == n / 2) rc = du_client_start(c); /* the user connects in the middle of the stream */
    if (rc != 0) break;
    reqs[i].a = &a;
    reqs[i].want = (uint64_t)i + 1;
    size_t len = du_payload(buf, sizeof buf, 1, (uint64_t)i + 1, (size_t)(i % 50));
    rc = hd_server_add_event(s->h, c->kp.public_key, buf, len, on_added, &reqs[i]);
  }
  if (rc != 0) fprintf(stderr, "  add: %s (%s)\n", hd_err_name(rc), hd_last_error_message());
  int all_added = rc == 0 && WAIT_FOR(atomic_load(&a.done) == n, 10000);
  CHECK(rc == 0);
  CHECK(all_added); /* (on failure `reqs` is left to the callbacks still to come) */
  free(reqs);
  CHECK(atomic_load(&a.failed) == 0);
  CHECK(atomic_load(&a.wrong_seq) == 0); /* the i-th add from one thread got seq i */
  CHECK(du_all_done(s, 0, c, (uint64_t)n, 1, 1, 20000));
  CHECK(du_server_total_calls(s) == n);
}

DU_WORLD_TEST(fifo_1000, fifo_body)

/* Two users, events interleaved from two threads: each sees its own only, all of them, in order. */
typedef struct feeder {
  hd_server_t *s;
  const uint8_t *user;
  int tag, n, rc;
} feeder_t;

static void *feed(void *arg) {
  feeder_t *f = arg;
  f->rc = du_add_events(f->s, f->user, f->tag, 1, f->n, 10);
  return NULL;
}

static void isolation_body(du_world_t *w) {
  const int n = (int)hdt_count(300, 100);
  CHECK_OK(du_world_init(w, "delivery", 2, (uint64_t)n + 2, DU_START_SERVER | DU_START_CLIENTS));
  feeder_t f[2];
  pthread_t t[2];
  for (int i = 0; i < 2; i++) {
    f[i] = (feeder_t){w->s.h, w->c[i].kp.public_key, i + 1, n, 0};
    CHECK(pthread_create(&t[i], NULL, feed, &f[i]) == 0);
  }
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  CHECK_OK(f[0].rc);
  CHECK_OK(f[1].rc);
  for (int i = 0; i < 2; i++) {
    du_client_t *c = &w->c[i];
    /* the payload check ("user<tag>#seq") fails on another user's event */
    CHECK(du_all_done(&w->s, i, c, (uint64_t)n, 1, 1, 10000));
    CHECK(du_server_pending(&w->s, c->kp.public_key) != UINT64_MAX);
  }
  CHECK(du_server_total_calls(&w->s) == 2 * n);
  /* the server saw two distinct users */
  uint8_t keys[4 * 32];
  CHECK(hd_server_connected_users(w->s.h, keys, 4) == 2);
  int seen0 = 0, seen1 = 0;
  for (int i = 0; i < 2; i++) {
    if (memcmp(keys + 32 * i, w->c[0].kp.public_key, 32) == 0) seen0++;
    if (memcmp(keys + 32 * i, w->c[1].kp.public_key, 32) == 0) seen1++;
  }
  CHECK(seen0 == 1 && seen1 == 1);
}

DU_WORLD_TEST(two_users_isolated, isolation_body)

/* The handler hands each event to a worker thread that completes it a moment later. */
static void thread_body(du_world_t *w) {
  const int n = (int)hdt_count(300, 100);
  CHECK_OK(du_world_init(w, "delivery", 1, (uint64_t)n + 2, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->mode = DU_THREAD;
  CHECK_OK(du_client_start(c));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, n, 0));
  CHECK(du_all_done(&w->s, 0, c, (uint64_t)n, 1, 1, 10000));
  CHECK(du_server_total_calls(&w->s) == n);
}

DU_WORLD_TEST(complete_from_thread, thread_body)

/* Event 3 of 5 fails twice, then succeeds: retried after a backoff, before any later event; the
 * server's callback runs once per event. */
static void fail_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "delivery", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->fail_seq = 3;
  c->fail_times = 2;
  CHECK_OK(du_client_start(c));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, 5, 0));
  /* du_client_clean in du_all_done: 4 was never handed out before 3 succeeded (order) */
  CHECK(du_all_done(&w->s, 0, c, 5, 1, 1, 5000));
  CHECK(du_server_total_calls(&w->s) == 5);
  CHECK(du_client_calls(c, 3) == 3);
  CHECK(du_client_calls(c, 1) == 1 && du_client_calls(c, 2) == 1);
  CHECK(du_client_calls(c, 4) == 1 && du_client_calls(c, 5) == 1);
  hd_client_stats_t st;
  CHECK_OK(du_client_stats(c, &st));
  CHECK(st.events_failed == 2);
  CHECK(st.events_handled == 5);
}

DU_WORLD_TEST(handler_fails_twice, fail_body)

/* Event 3 of 5 always fails: after the default 10 attempts the client reports it failed, the
 * server keeps it as a dead letter (not consumed: its callback never sees it) and confirms it, and
 * events 4 and 5 are handled after it (docs/QUEUES.md "Poison events"). */
static void poison_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "delivery", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->fail_seq = 3;
  c->fail_times = 1000;
  CHECK_OK(du_client_start(c));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 1, 5, 0));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_stats(c, &st) == 0 && st.events_dead == 1 &&
                  st.events_confirmed == 5, 10000));
  CHECK(st.events_handled == 4 && st.events_failed == HD_DEFAULT_MAX_ATTEMPTS);
  CHECK(st.consumed == 0 && st.unhandled == 0);
  CHECK(du_client_calls(c, 3) == HD_DEFAULT_MAX_ATTEMPTS);
  CHECK(du_client_oks(c, 4) == 1 && du_client_oks(c, 5) == 1);
  uint64_t dead = 0;
  CHECK_OK(hd_server_dead_letter_count(w->s.h, c->kp.public_key, &dead));
  CHECK(dead == 1);
  CHECK(du_server_total_calls(&w->s) == 4);
}

DU_WORLD_TEST(poison_event_dead_lettered, poison_body)

/* update_pause reaches a connected client, and a client that connects later gets it at connect. */
static void on_pause_stored(void *cb_data, int status) {
  atomic_store((atomic_int *)cb_data, status == 0 ? 1 : -1);
}

static uint32_t pause_of(du_client_t *c) {
  hd_client_stats_t st;
  if (du_client_stats(c, &st) != 0) return UINT32_MAX;
  return st.pause_ms;
}

static void pause_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "delivery", 2, 16, DU_START_SERVER));
  du_client_t *a = &w->c[0], *b = &w->c[1];
  CHECK_OK(du_client_start(a));
  DCHECK(WAIT_FOR(du_client_is_connected(a), 5000));
  CHECK(pause_of(a) == 0);
  atomic_int stored = 0;
  CHECK_OK(hd_server_update_pause(w->s.h, 250, on_pause_stored, &stored));
  DCHECK(WAIT_FOR(atomic_load(&stored) != 0, 5000));
  CHECK(atomic_load(&stored) == 1);
  DCHECK(WAIT_FOR(pause_of(a) == 250, 5000));
  /* a client that connects afterwards gets the pause in the welcome */
  CHECK_OK(du_client_start(b));
  DCHECK(WAIT_FOR(du_client_is_connected(b), 5000));
  DCHECK(WAIT_FOR(pause_of(b) == 250, 1000));
  /* events still flow under a pause */
  CHECK_OK(du_add_events(w->s.h, a->kp.public_key, 1, 1, 3, 0));
  CHECK_OK(du_add_events(w->s.h, b->kp.public_key, 2, 1, 2, 0));
  DCHECK(WAIT_FOR(du_client_total_ok(a) == 3 && du_client_total_ok(b) == 2, 10000));
  /* and back to 0, no callback */
  CHECK_OK(hd_server_update_pause(w->s.h, 0, NULL, NULL));
  DCHECK(WAIT_FOR(pause_of(a) == 0 && pause_of(b) == 0, 5000));
  DCHECK(WAIT_FOR(du_server_pending_total(&w->s) == 0, 5000));
  CHECK(du_client_clean(a) && du_client_clean(b) && du_server_clean(&w->s));
}

DU_WORLD_TEST(update_pause_reaches_clients, pause_body)

/* The server's on_consumed completes event 2 with failure: it stays pending on the server and
 * consumed-unconfirmed on the client (the handler does not run again); after the client closes and
 * opens again, it reports it again, the callback runs a second time, succeeds, both stores empty. */
static void consumed_fail_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "delivery", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  du_server_t *s = &w->s;
  s->mode = DU_SRV_FAIL_ONCE;
  s->fail_tag = 1;
  s->fail_seq = 2;
  CHECK_OK(du_client_start(c));
  CHECK_OK(du_add_events(s->h, c->kp.public_key, 1, 1, 3, 0));
  DCHECK(WAIT_FOR(du_client_total_ok(c) == 3, 5000));
  DCHECK(WAIT_FOR(du_server_total_calls(s) == 3, 5000));
  /* 1 and 3 confirmed; 2 stays */
  DCHECK(WAIT_FOR(du_server_pending(s, c->kp.public_key) == 1, 5000));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_stats(c, &st) == 0 && st.consumed == 1 && st.unhandled == 0, 5000));
  hdt_sleep_ms(200);
  CHECK(du_server_calls(s, 0, 2) == 1); /* not re-reported on the same connection */
  CHECK(du_client_calls(c, 2) == 1);
  hd_server_stats_t ss;
  CHECK_OK(du_server_stats(s, &ss));
  CHECK(ss.events_confirmed == 2 && ss.pending_total == 1);

  /* close and open the client again: the report comes back, the callback succeeds this time */
  CHECK_OK(du_client_stop(c));
  CHECK_OK(du_client_start(c));
  DCHECK(WAIT_FOR(du_server_calls(s, 0, 2) == 2, 5000));
  DCHECK(WAIT_FOR(du_server_pending(s, c->kp.public_key) == 0, 5000));
  DCHECK(WAIT_FOR(du_client_store_empty(c), 5000));
  hdt_sleep_ms(100);
  CHECK(du_client_calls(c, 2) == 1); /* the handler ran once */
  CHECK(du_server_calls(s, 0, 1) == 1 && du_server_calls(s, 0, 3) == 1);
  CHECK(du_client_clean(c) && du_server_clean(s));
}

DU_WORLD_TEST(consumed_failure_comes_back, consumed_fail_body)

/* The users the store holds events for, paged with a cursor, with their counts; a user whose
 * events are all consumed leaves the list. */
static void pending_users_body(du_world_t *w) {
  CHECK_OK(du_world_init(w, "delivery", 3, 16, DU_START_SERVER));
  const int counts[3] = {3, 1, 2};
  for (int u = 0; u < 3; u++) {
    CHECK_OK(du_add_events(w->s.h, w->c[u].kp.public_key, u + 1, 1, counts[u], 0));
  }
  uint64_t cursor = 0, n[2];
  uint8_t keys[2 * 32];
  CHECK_RC(hd_server_pending_users(w->s.h, &cursor, keys, n, 2), 2);
  CHECK(memcmp(keys, w->c[0].kp.public_key, 32) == 0 && n[0] == 3);
  CHECK(memcmp(keys + 32, w->c[1].kp.public_key, 32) == 0 && n[1] == 1);
  CHECK_RC(hd_server_pending_users(w->s.h, &cursor, keys, NULL, 2), 1);
  CHECK(memcmp(keys, w->c[2].kp.public_key, 32) == 0);
  CHECK_RC(hd_server_pending_users(w->s.h, &cursor, keys, n, 2), 0);
  CHECK_RC(hd_server_pending_users(w->s.h, NULL, keys, n, 2), HD_EINVAL);
  /* user 2 comes, consumes its event, and leaves the list */
  CHECK_OK(du_client_start(&w->c[1]));
  DCHECK(WAIT_FOR(du_client_total_ok(&w->c[1]) == 1, 10000));
  uint64_t left = 1;
  DCHECK(WAIT_FOR(hd_server_pending(w->s.h, w->c[1].kp.public_key, &left) == 0 && left == 0, 10000));
  cursor = 0;
  CHECK_RC(hd_server_pending_users(w->s.h, &cursor, keys, n, 2), 2);
  CHECK(memcmp(keys, w->c[0].kp.public_key, 32) == 0 && n[0] == 3);
  CHECK(memcmp(keys + 32, w->c[2].kp.public_key, 32) == 0 && n[1] == 2);
}

DU_WORLD_TEST(pending_users, pending_users_body)

#define TESTS(X)                                                                                  \
  X(original_example)                                                                             \
  X(fifo_1000)                                                                                    \
  X(two_users_isolated)                                                                           \
  X(complete_from_thread)                                                                         \
  X(handler_fails_twice)                                                                          \
  X(poison_event_dead_lettered)                                                                   \
  X(update_pause_reaches_clients)                                                                 \
  X(consumed_failure_comes_back)                                                                  \
  X(pending_users)

HD_TEST_MAIN(TESTS)
