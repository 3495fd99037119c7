/* Expiry and notices end to end, through the public API only (docs/QUEUES.md "Expiry",
 * "Notices"): events with a short time to live added while the client is away expire, and the
 * client gets one EXPIRED notice in their place before the later events; events already sent
 * never expire; the server's default time to live applies to plain adds; a notice not handled
 * yet survives a client restart; the stats count both sides. Every wait is bounded (WAIT_FOR);
 * every folder is a fresh mkdtemp, removed at the end. */
#include "harness.h"
#include "delivery_util.h"

#define TTL_MS 50

/* ---- the notices a client is handed (on_notice), in order ---- */
typedef struct notice_rec {
  pthread_mutex_t mu;
  int n;                 /* on_notice calls */
  uint64_t seq[16];
  hd_notice_t notice[16];
  long events_before[16]; /* handler calls for events before this notice */
  int errors;            /* hd_event_is_notice / hd_event_notice said otherwise */
  int hold;              /* keep the notice (held) instead of completing it */
  hd_event_t *held;
} notice_rec_t;

static notice_rec_t NR = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void notices_reset(int hold) {
  pthread_mutex_lock(&NR.mu);
  NR.n = NR.errors = 0;
  NR.hold = hold;
  NR.held = NULL;
  pthread_mutex_unlock(&NR.mu);
}

static void on_notice(void *ud, hd_event_t *ev) {
  du_client_t *c = ud;
  hd_notice_t n;
  long before = du_client_total_calls(c);
  int ok = hd_event_is_notice(ev) && hd_event_notice(ev, &n) == 0;
  pthread_mutex_lock(&NR.mu);
  if (!ok) NR.errors++;
  if (ok && NR.n < 16) {
    NR.seq[NR.n] = hd_event_seq(ev);
    NR.notice[NR.n] = n;
    NR.events_before[NR.n] = before;
  }
  NR.n++;
  int hold = NR.hold;
  if (hold) NR.held = ev;
  pthread_mutex_unlock(&NR.mu);
  if (!hold && hd_event_complete(ev, 1, NULL, 0) != 0) {
    pthread_mutex_lock(&NR.mu);
    NR.errors++;
    pthread_mutex_unlock(&NR.mu);
  }
}

static int notices_seen(void) {
  pthread_mutex_lock(&NR.mu);
  int n = NR.n;
  pthread_mutex_unlock(&NR.mu);
  return n;
}

/* Starts the recording client with on_notice set. */
static int client_start(du_client_t *c) {
  hd_client_options_t o;
  du_client_fill_options(c, &o);
  o.on_notice = on_notice;
  int rc = hd_client_create(&c->h, &o);
  if (rc != 0) c->h = NULL;
  return rc;
}

/* Starts the world's server with a default time to live (0: none) and an expiry batch (0: the
 * default). */
static int server_start(du_world_t *w, uint64_t default_ttl_ms, uint32_t expiry_batch) {
  hd_server_options_t o;
  char listen[64];
  du_server_fill_options(&w->s, &o, listen, sizeof listen);
  o.default_ttl_ms = default_ttl_ms;
  o.expiry_batch = expiry_batch;
  int rc = hd_server_create(&w->s.h, &o);
  if (rc != 0) {
    w->s.h = NULL;
    return rc;
  }
  w->s.port = hd_server_port(w->s.h);
  for (int i = 0; i < w->nc; i++) du_client_set_addr(&w->c[i], w->s.port);
  return 0;
}

/* Adds du_payload(tag, want) for `user` with `ttl_ms` (0: the server's default); 0 if it got
 * number `want`. */
static int add_ttl(du_world_t *w, int ui, uint64_t want, uint64_t ttl_ms) {
  uint8_t p[64];
  size_t n = du_payload(p, sizeof p, ui + 1, want, 0);
  hd_add_options_t ao;
  hd_add_options_init(&ao, HD_ADD_OPTIONS_VERSION);
  ao.ttl_ms = ttl_ms;
  hd_add_result_t r;
  int rc = hd_server_add_event_v2_wait(w->s.h, w->c[ui].kp.public_key, p, n, &ao, &r);
  return rc != 0 ? rc : r.seq == want ? 0 : -1;
}

typedef struct burst {
  atomic_int done, failed;
  uint64_t seq[8];
} burst_t;

static void on_burst_add(void *data, int status, const hd_add_result_t *r) {
  burst_t *b = data;
  int i = atomic_load(&b->done);
  if (status != 0) atomic_fetch_add(&b->failed, 1);
  else if (i < 8) b->seq[i] = r->seq;
  atomic_fetch_add(&b->done, 1);
}

/* Adds numbers first..first+n-1 for user `ui` with `ttl_ms` at once (not one after the other):
 * they expire together. 0 once all are stored with those numbers. */
static int add_burst(du_world_t *w, int ui, uint64_t first, int n, uint64_t ttl_ms) {
  static burst_t b;
  atomic_store(&b.done, 0);
  atomic_store(&b.failed, 0);
  hd_add_options_t ao;
  hd_add_options_init(&ao, HD_ADD_OPTIONS_VERSION);
  ao.ttl_ms = ttl_ms;
  for (int i = 0; i < n && i < 8; i++) {
    uint8_t p[64];
    size_t len = du_payload(p, sizeof p, ui + 1, first + (uint64_t)i, 0);
    int rc = hd_server_add_event_v2(w->s.h, w->c[ui].kp.public_key, p, len, &ao, on_burst_add, &b);
    if (rc != 0) return rc;
  }
  if (!WAIT_FOR(atomic_load(&b.done) == n, 5000) || atomic_load(&b.failed) != 0) return -1;
  for (int i = 0; i < n; i++) {
    if (b.seq[i] != first + (uint64_t)i) return -1; /* completions run in submission order */
  }
  return 0;
}

static void on_plain_add(void *data, int status, uint64_t seq) {
  on_burst_add(data, status, &(hd_add_result_t){.seq = seq});
}

/* The same with hd_server_add_event (no options: the server's default time to live). */
static int add_plain_burst(du_world_t *w, int ui, uint64_t first, int n) {
  static burst_t b;
  atomic_store(&b.done, 0);
  atomic_store(&b.failed, 0);
  for (int i = 0; i < n && i < 8; i++) {
    uint8_t p[64];
    size_t len = du_payload(p, sizeof p, ui + 1, first + (uint64_t)i, 0);
    int rc = hd_server_add_event(w->s.h, w->c[ui].kp.public_key, p, len, on_plain_add, &b);
    if (rc != 0) return rc;
  }
  if (!WAIT_FOR(atomic_load(&b.done) == n, 5000) || atomic_load(&b.failed) != 0) return -1;
  for (int i = 0; i < n; i++) {
    if (b.seq[i] != first + (uint64_t)i) return -1;
  }
  return 0;
}

static uint64_t expired_count(du_world_t *w) {
  hd_server_stats_t st;
  return du_server_stats(&w->s, &st) == 0 ? st.events_expired : UINT64_MAX;
}

static int notice_is(int i, uint64_t seq, uint64_t count, uint64_t first, uint64_t last) {
  pthread_mutex_lock(&NR.mu);
  int ok = i < NR.n && NR.seq[i] == seq && NR.notice[i].kind == HD_NOTICE_EXPIRED &&
           NR.notice[i].count == count && NR.notice[i].first_seq == first &&
           NR.notice[i].last_seq == last;
  pthread_mutex_unlock(&NR.mu);
  return ok;
}

/* ---- tests -------------------------------------------------------------------------------- */

/* Three events with a 50 ms time to live wait for a client that is away: they expire, and the
 * client, once back, gets one notice for them (seq 4, in their place) before the two later
 * events. Nothing is left on either side; the server never reported the notice to on_consumed. */
static void expired_while_away_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "expiry", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  CHECK_OK(add_burst(w, 0, 1, 3, TTL_MS));
  DCHECK(WAIT_FOR(expired_count(w) == 3, 5000));
  CHECK(du_server_pending(&w->s, c->kp.public_key) == 1); /* the notice */
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 5, 2, 0));
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(du_client_total_ok(c) == 2 && notices_seen() == 1, 5000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  CHECK(notice_is(0, 4, 3, 1, 3));
  CHECK(NR.events_before[0] == 0 && NR.errors == 0);
  CHECK(du_client_all_ok_once(c, 5, 6));
  for (uint64_t i = 1; i <= 4; i++) CHECK(du_client_calls(c, i) == 0);
  CHECK(du_server_calls_are(&w->s, 0, 1, 4, 0));
  CHECK(du_server_calls_are(&w->s, 0, 5, 6, 1));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
  hd_client_stats_t cs;
  CHECK_OK(du_client_stats(c, &cs));
  CHECK(cs.notices_received == 1 && cs.events_received == 2 && cs.events_handled == 2);
  hd_server_stats_t ss;
  CHECK_OK(du_server_stats(&w->s, &ss));
  /* reports received: the two events' and the notice's */
  CHECK(ss.events_expired == 3 && ss.events_added == 5 && ss.events_consumed == 3);
  CHECK(ss.events_confirmed == 3); /* the two events and the notice */
}
DU_WORLD_TEST(expired_while_away, expired_while_away_body)

/* Events sent to a connected client are its own: held by its handler past their time to live,
 * they are still handled, reported to on_consumed and confirmed; nothing expires. */
static void sent_events_never_expire_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "expiry", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->mode = DU_HOLD;
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(du_client_is_connected(c), 5000));
  CHECK_OK(add_burst(w, 0, 1, 3, TTL_MS));
  /* the first is with the handler, the others in the client's store */
  DCHECK(WAIT_FOR(du_client_nheld(c) == 1, 5000));
  hd_client_stats_t cs;
  DCHECK(WAIT_FOR(du_client_stats(c, &cs) == 0 && cs.events_received == 3, 5000));
  hdt_sleep_ms(TTL_MS + 3 * 100); /* past their expiry: the sweep ran (it runs by their expiry) */
  for (int i = 0; i < 3; i++) {
    DCHECK(WAIT_FOR(du_client_nheld(c) == 1, 5000));
    CHECK(du_client_release(c, 1) == 1);
  }
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  CHECK(du_server_calls_are(&w->s, 0, 1, 3, 1));
  CHECK(expired_count(w) == 0 && notices_seen() == 0);
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}
DU_WORLD_TEST(sent_events_never_expire, sent_events_never_expire_body)

/* An event whose time to live ran out while its client was away, but which the sweep has not
 * taken yet when the client comes back (the sweep runs 100 ms after an expiry, to take a burst
 * at once), followed by an event sent at once: the first is either delivered (the sweep did not
 * take it before the session read it) or told in a notice, and nothing stays pending. It stayed
 * pending for ever, neither sent nor told, when a read skipped what no sweep had taken yet: the
 * sweep then took the session's sent mark (above it) for its delivery. */
static void expired_before_the_sweep_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "expiry", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  CHECK_OK(add_ttl(w, 0, 1, 20));
  hdt_sleep_ms(40); /* past its expiry, before the sweep (at 120 ms) */
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(du_client_is_connected(c), 5000));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 2, 1, 0));
  DCHECK(WAIT_FOR(du_client_oks(c, 2) == 1, 5000));
  hdt_sleep_ms(300); /* the sweep ran */
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  uint64_t told = 0;
  for (int i = 0; i < notices_seen() && i < 16; i++) {
    if (NR.notice[i].kind == HD_NOTICE_EXPIRED) told += NR.notice[i].count;
  }
  CHECK(du_client_calls(c, 1) + (int)told == 1); /* delivered or told, not both, not neither */
  CHECK(du_client_all_ok_once(c, 2, 2));
  CHECK(du_client_clean(c) && du_server_clean(&w->s) && NR.errors == 0);
}
DU_WORLD_TEST(expired_before_the_sweep, expired_before_the_sweep_body)

/* The server's default_ttl_ms applies to hd_server_add_event: an event added while the client is
 * away expires; one added with ttl UINT64_MAX does not. */
static void default_ttl_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "expiry", 1, 16, 0));
  du_client_t *c = &w->c[0];
  CHECK_OK(server_start(w, TTL_MS, 0));
  CHECK_OK(add_plain_burst(w, 0, 1, 2));
  CHECK_OK(add_ttl(w, 0, 3, UINT64_MAX));
  DCHECK(WAIT_FOR(expired_count(w) == 2, 5000));
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(du_client_total_ok(c) == 1 && notices_seen() == 1, 5000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  CHECK(notice_is(0, 4, 2, 1, 2) && NR.events_before[0] == 1);
  CHECK(du_client_all_ok_once(c, 3, 3));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}
DU_WORLD_TEST(default_ttl, default_ttl_body)

/* A notice the client stored but did not finish with is handed out again after the client
 * restarts (it is a row of its store like an event), then confirmed. */
static void notice_survives_client_restart_body(du_world_t *w) {
  notices_reset(1);
  CHECK_OK(du_world_init(w, "expiry", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  CHECK_OK(add_ttl(w, 0, 1, TTL_MS));
  DCHECK(WAIT_FOR(expired_count(w) == 1, 5000));
  CHECK_OK(du_add_events(w->s.h, c->kp.public_key, 1, 3, 1, 0));
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(notices_seen() == 1, 5000));
  hd_client_stats_t cs;
  DCHECK(WAIT_FOR(du_client_stats(c, &cs) == 0 && cs.events_received == 1, 5000));
  CHECK(cs.notices_received == 1);
  CHECK_OK(du_client_stop(c));
  pthread_mutex_lock(&NR.mu);
  hd_event_t *held = NR.held;
  NR.held = NULL;
  NR.hold = 0;
  pthread_mutex_unlock(&NR.mu);
  CHECK(held != NULL);
  hd_event_complete(held, 1, NULL, 0); /* after the close: only freed */
  CHECK(du_client_total_calls(c) == 0); /* the event waits behind the notice */
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(notices_seen() == 2 && du_client_total_ok(c) == 1, 5000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  CHECK(notice_is(0, 2, 1, 1, 1) && notice_is(1, 2, 1, 1, 1));
  CHECK(NR.events_before[1] == 0 && NR.errors == 0);
  CHECK(du_client_all_ok_once(c, 3, 3));
  CHECK(du_server_calls_are(&w->s, 0, 1, 2, 0));
  CHECK(du_client_clean(c) && du_server_clean(&w->s));
}
DU_WORLD_TEST(notice_survives_client_restart, notice_survives_client_restart_body)

/* expiry_batch bounds each sweep transaction: seven due events go in batches of two, one notice
 * per batch, the next batch at once after a full one (not after the sweep's one-second wait).
 * A batch above the store's bound is refused at create. */
static void batches_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "expiry", 1, 32, 0));
  du_client_t *c = &w->c[0];
  hd_server_options_t o;
  char listen[64];
  du_server_fill_options(&w->s, &o, listen, sizeof listen);
  o.expiry_batch = (1u << 20) + 1;
  hd_server_t *bad = NULL;
  CHECK_RC(hd_server_create(&bad, &o), HD_EINVAL);
  CHECK_OK(server_start(w, 0, 2));
  uint64_t t0 = hdt_now_ms();
  CHECK_OK(add_burst(w, 0, 1, 7, TTL_MS));
  DCHECK(WAIT_FOR(expired_count(w) == 7, 5000));
  uint64_t took = hdt_now_ms() - t0;
  if (hdt_slow() == 1) CHECK(took < 2500); /* four transactions; a wait between them: 3 s */
  CHECK_OK(client_start(c));
  DCHECK(WAIT_FOR(notices_seen() == 4, 5000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  uint64_t next = 1;
  for (int i = 0; i < 4; i++) { /* oldest expiry first: 1-2, 3-4, 5-6, 7 */
    uint64_t n = i < 3 ? 2 : 1;
    CHECK(notice_is(i, 8 + (uint64_t)i, n, next, next + n - 1));
    next += n;
  }
  CHECK(NR.errors == 0 && du_client_total_calls(c) == 0);
}
DU_WORLD_TEST(batches, batches_body)

#define TESTS(X)                                                                                  \
  X(expired_while_away)                                                                           \
  X(sent_events_never_expire)                                                                     \
  X(expired_before_the_sweep)                                                                     \
  X(default_ttl)                                                                                  \
  X(notice_survives_client_restart)                                                                \
  X(batches)
HD_TEST_MAIN(TESTS)
