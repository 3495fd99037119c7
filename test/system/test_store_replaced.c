/* A server store replaced by another one (a new store id) while the client is away, through the
 * public API (docs/STORAGE.md "The client store: events of several server stores",
 * docs/OPERATIONS.md "Events held for another server store").
 *
 * The scenario: store A has A#1..A#6; the client handles A#1..A#3 (A keeps the reports: never
 * confirmed) and its handler keeps A#4 while the client closes, so A#4..A#6 are still to handle.
 * A's folder is put aside and the server starts on an empty folder: store B, with B#1..B#3 (B
 * keeps the reports too). The client connects to B: A#4..A#6 are handled, in order, before
 * B#1..B#3; no consumption of A goes to B. Then A's folder comes back: the client reports
 * A#1..A#6 to A, which confirms them, and the client forgets them; B's consumptions wait, shown
 * by hd_client_held_stores, until hd_client_purge_store drops them.
 *
 * Events are told apart by their payload, "A#N" or "B#N" (N its seq): the numbers of the two
 * stores collide on purpose. A server checks that every report's data is "ack " + its own
 * event's payload, so a consumption of the other store's event under the same number shows. */
#include "harness.h"
#include "delivery_util.h"

#define MAXN 16
#define WAIT_MS 10000

enum { A = 0, B = 1 };

typedef struct srv {
  char name[32]; /* first: the log callback prints it */
  hd_keypair_t kp;
  char *dir;
  int port;
  int store;                  /* A or B: whose folder it runs on */
  hd_server_t *h;
  pthread_mutex_t mu;
  int hold;                   /* keep the batches (freed unconfirmed when it stops) */
  hd_consumed_t *held[64];
  int nheld;
  int reports[2][MAXN];       /* on_consumed calls per event, since the server started */
  int mixed;                  /* a report whose data is not "ack " + this store's event */
} srv_t;

typedef struct cli {
  char name[32];
  hd_keypair_t kp;
  char *dir;
  hd_client_t *h;
  pthread_mutex_t mu;
  int hold;                   /* keep the events handed out (completed by cli_release) */
  hd_event_t *held[16];
  int nheld;
  int ok[2][MAXN];            /* completed ok, per event */
  int order[64];              /* store * 100 + seq, in the order completed */
  int norder;
  int bad;
} cli_t;

typedef struct world {
  srv_t s;
  cli_t c;
  char *tmp;
  char *aside[2];             /* where A's and B's folders wait while the other one runs */
} world_t;

/* "A#12" -> A, 12; -1 if unreadable. */
static int parse(const uint8_t *p, size_t n, int *store, int *num) {
  if (n < 3 || n > 5 || (p[0] != 'A' && p[0] != 'B') || p[1] != '#') return -1;
  *store = p[0] == 'A' ? A : B;
  *num = 0;
  for (size_t i = 2; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    *num = *num * 10 + (p[i] - '0');
  }
  return *num > 0 && *num < MAXN ? 0 : -1;
}

static void complete(cli_t *c, hd_event_t *ev) {
  hd_event_info_t info;
  int store, num;
  if (hd_event_info(ev, &info) != 0 || parse(info.payload, info.payload_len, &store, &num) != 0 ||
      info.seq != (uint64_t)num) {
    pthread_mutex_lock(&c->mu);
    c->bad++;
    pthread_mutex_unlock(&c->mu);
    hd_event_complete(ev, 1, NULL, 0);
    return;
  }
  pthread_mutex_lock(&c->mu);
  c->ok[store][num]++;
  if (c->norder < 64) c->order[c->norder++] = store * 100 + num;
  pthread_mutex_unlock(&c->mu);
  char data[16];
  int n = snprintf(data, sizeof data, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
  hd_event_complete(ev, 1, data, (size_t)n);
}

static void on_event(void *ud, hd_event_t *ev) {
  cli_t *c = ud;
  pthread_mutex_lock(&c->mu);
  if (c->hold && c->nheld < 16) {
    c->held[c->nheld++] = ev;
    pthread_mutex_unlock(&c->mu);
    return;
  }
  pthread_mutex_unlock(&c->mu);
  complete(c, ev);
}

/* Stops holding; what the handler kept is completed now. */
static void cli_release(cli_t *c) {
  pthread_mutex_lock(&c->mu);
  c->hold = 0;
  int n = c->nheld;
  hd_event_t *held[16];
  memcpy(held, c->held, sizeof held);
  c->nheld = 0;
  pthread_mutex_unlock(&c->mu);
  for (int i = 0; i < n; i++) complete(c, held[i]);
}

static int held_count(cli_t *c) {
  pthread_mutex_lock(&c->mu);
  int n = c->nheld;
  pthread_mutex_unlock(&c->mu);
  return n;
}

static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  srv_t *s = ud;
  (void)user;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < hd_consumed_count(b); i++) {
    hd_event_info_t info;
    int store, num;
    char want[16];
    if (hd_consumed_event(b, i, &info) != 0 || parse(info.payload, info.payload_len, &store, &num)) {
      s->mixed++;
      continue;
    }
    int n = snprintf(want, sizeof want, "ack %.*s", (int)info.payload_len, (const char *)info.payload);
    if (store != s->store || info.data_len != (size_t)n || memcmp(info.data, want, info.data_len)) {
      s->mixed++;
      du_log_line(s->name, "TEST: %s reported with the data '%.*s'", want + 4, (int)info.data_len,
                  (const char *)info.data);
    }
    s->reports[store][num]++;
  }
  if (s->hold && s->nheld < 64) {
    s->held[s->nheld++] = b;
    pthread_mutex_unlock(&s->mu);
    return;
  }
  pthread_mutex_unlock(&s->mu);
  hd_consumed_complete_all(b, 1);
}

/* ---- the two handles ---- */

static int srv_start(srv_t *s, int store, int hold) {
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
  s->store = store;
  s->hold = hold;
  memset(s->reports, 0, sizeof s->reports); /* per run of a store */
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &s->kp;
  o.topic = DU_TOPIC;
  o.listen = listen;
  o.data_dir = s->dir;
  o.on_consumed = on_consumed;
  o.user_data = s;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 100 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s->h, &o);
    if (rc == HD_EADDRINUSE) hdt_sleep_ms(20);
  }
  if (rc != 0) {
    du_log_line(s->name, "TEST: hd_server_create: %s (%s)", hd_err_name(rc), hd_last_error_message());
    s->h = NULL;
    return rc;
  }
  s->port = hd_server_port(s->h);
  return 0;
}

static int srv_stop(srv_t *s) {
  if (s->h == NULL) return 0;
  int rc = hd_server_close_wait(s->h);
  s->h = NULL;
  for (int i = 0; i < s->nheld; i++) hd_consumed_complete_all(s->held[i], 0); /* only frees */
  s->nheld = 0;
  return rc;
}

static int cli_start(world_t *w, int hold) {
  cli_t *c = &w->c;
  c->hold = hold;
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", w->s.port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &c->kp;
  o.server_public_key = w->s.kp.public_key;
  o.topic = DU_TOPIC;
  o.connect = addr;
  o.data_dir = c->dir;
  o.on_event = on_event;
  o.user_data = c;
  o.log = du_log_cb;
  o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_INFO;
  o.reconnect_min_ms = 50;
  o.reconnect_max_ms = 200;
  return hd_client_create(&c->h, &o);
}

/* Closes the client; what its handler kept is then completed, which only frees it. */
static int cli_stop(cli_t *c) {
  if (c->h == NULL) return 0;
  int rc = hd_client_close_wait(c->h);
  c->h = NULL;
  for (int i = 0; i < c->nheld; i++) hd_event_complete(c->held[i], 1, NULL, 0);
  c->nheld = 0;
  return rc;
}

static int world_init(world_t *w) {
  memset(w, 0, sizeof *w);
  snprintf(w->s.name, sizeof w->s.name, "server");
  snprintf(w->c.name, sizeof w->c.name, "client");
  pthread_mutex_init(&w->s.mu, NULL);
  pthread_mutex_init(&w->c.mu, NULL);
  w->tmp = hdt_mkdtemp("replaced");
  w->s.dir = hdt_path(w->tmp, "server");
  w->c.dir = hdt_path(w->tmp, "client");
  w->aside[A] = hdt_path(w->tmp, "store-a");
  w->aside[B] = hdt_path(w->tmp, "store-b");
  if (w->tmp == NULL || w->s.dir == NULL || w->c.dir == NULL || !w->aside[A] || !w->aside[B]) {
    return -1;
  }
  if (hd_keypair_generate(&w->s.kp) != 0 || hd_keypair_generate(&w->c.kp) != 0) return -1;
  return 0;
}

static void world_free(world_t *w) {
  cli_stop(&w->c);
  srv_stop(&w->s);
  hdt_rmrf(w->tmp);
  free(w->tmp);
  free(w->s.dir);
  free(w->c.dir);
  free(w->aside[A]);
  free(w->aside[B]);
}

/* ---- steps ---- */

/* Adds store#first..store#last; each must get its number as its seq. */
static int add(world_t *w, int store, int first, int last) {
  for (int n = first; n <= last; n++) {
    char p[8];
    int len = snprintf(p, sizeof p, "%c#%d", store == A ? 'A' : 'B', n);
    uint64_t seq = 0;
    int rc = hd_server_add_event_wait(w->s.h, w->c.kp.public_key, p, (size_t)len, &seq);
    if (rc != 0 || seq != (uint64_t)n) {
      du_log_line("test", "TEST: add %s: %s, seq %llu", p, hd_err_name(rc), (unsigned long long)seq);
      return -1;
    }
  }
  return 0;
}

static int ok_count(cli_t *c, int store, int n) {
  pthread_mutex_lock(&c->mu);
  int v = c->ok[store][n];
  pthread_mutex_unlock(&c->mu);
  return v;
}

/* 1 once store#first..store#last were each completed ok exactly once. */
static int handled_once(cli_t *c, int store, int first, int last) {
  for (int n = first; n <= last; n++) {
    if (ok_count(c, store, n) != 1) return 0;
  }
  return 1;
}

static int reports(srv_t *s, int store, int n) {
  pthread_mutex_lock(&s->mu);
  int v = s->reports[store][n];
  pthread_mutex_unlock(&s->mu);
  return v;
}

static uint64_t pending(srv_t *s) {
  hd_server_stats_t st;
  return s->h != NULL && hdt_server_stats(s->h, &st) == 0 ? st.pending_total : UINT64_MAX;
}

static uint64_t high_water(cli_t *c) {
  hd_client_stats_t st;
  return c->h != NULL && hdt_client_stats(c->h, &st) == 0 ? st.high_water : UINT64_MAX;
}

/* With the server stopped: its folder goes aside as `from`'s, and `to`'s comes back (or none:
 * an empty folder, a new store). */
static int swap_folder(world_t *w, int from, int to, int fresh) {
  if (rename(w->s.dir, w->aside[from]) != 0) return -1;
  return fresh ? 0 : rename(w->aside[to], w->s.dir);
}

/* Store A with A#1..A#6: A#1..A#3 handled and reported (A keeps the reports), A#4 kept by the
 * handler when the client closes, so A#4..A#6 are still to handle; A's folder goes aside. */
static void with_store_a(world_t *w) {
  CHECK_OK(srv_start(&w->s, A, 1));
  CHECK_OK(add(w, A, 1, 3));
  CHECK_OK(cli_start(w, 0));
  DCHECK(WAIT_FOR(reports(&w->s, A, 1) + reports(&w->s, A, 2) + reports(&w->s, A, 3) == 3,
                  WAIT_MS));
  pthread_mutex_lock(&w->c.mu);
  w->c.hold = 1;
  pthread_mutex_unlock(&w->c.mu);
  CHECK_OK(add(w, A, 4, 6));
  DCHECK(WAIT_FOR(held_count(&w->c) == 1 && high_water(&w->c) == 6, WAIT_MS));
  CHECK_OK(cli_stop(&w->c));
  CHECK_OK(srv_stop(&w->s));
  CHECK_OK(swap_folder(w, A, B, 1));
  CHECK(handled_once(&w->c, A, 1, 3) && ok_count(&w->c, A, 4) == 0);
}

/* Store B (a new store id) with B#1..B#3, B keeping the reports: the client holds its first
 * event until it has B's events, then handles A#4..A#6 before B#1..B#3. */
static void then_store_b(world_t *w) {
  CHECK_OK(srv_start(&w->s, B, 1));
  CHECK_OK(add(w, B, 1, 3));
  CHECK_OK(cli_start(w, 1));
  DCHECK(WAIT_FOR(held_count(&w->c) == 1 && high_water(&w->c) == 3, WAIT_MS));
  cli_release(&w->c);
  DCHECK(WAIT_FOR(handled_once(&w->c, A, 4, 6) && handled_once(&w->c, B, 1, 3), WAIT_MS));
  DCHECK(WAIT_FOR(reports(&w->s, B, 1) + reports(&w->s, B, 2) + reports(&w->s, B, 3) == 3,
                  WAIT_MS));
  hdt_sleep_ms(100);
  pthread_mutex_lock(&w->c.mu);
  static const int want[] = {1, 2, 3, 4, 5, 6, 101, 102, 103};
  int norder = w->c.norder, in_order = norder == 9;
  for (int i = 0; in_order && i < 9; i++) in_order = w->c.order[i] == want[i];
  pthread_mutex_unlock(&w->c.mu);
  DCHECK(in_order);
  for (int n = 1; n < MAXN; n++) CHECK(reports(&w->s, A, n) == 0); /* nothing of A went to B */
  CHECK(w->s.mixed == 0);
  CHECK_OK(cli_stop(&w->c));
  CHECK_OK(srv_stop(&w->s));
}

/* Back to store A: it gets the reports of A#1..A#6 and confirms them; A#7 is handled. */
static void back_to_store_a(world_t *w) {
  CHECK_OK(swap_folder(w, B, A, 0));
  CHECK_OK(srv_start(&w->s, A, 0));
  CHECK_OK(add(w, A, 7, 7));
  CHECK_OK(cli_start(w, 0));
  DCHECK(WAIT_FOR(handled_once(&w->c, A, 7, 7) && pending(&w->s) == 0, WAIT_MS));
  for (int n = 1; n <= 7; n++) CHECK(reports(&w->s, A, n) == 1);
  for (int n = 1; n < MAXN; n++) CHECK(reports(&w->s, B, n) == 0);
  CHECK(w->s.mixed == 0 && w->c.bad == 0);
  CHECK(handled_once(&w->c, A, 1, 7) && handled_once(&w->c, B, 1, 3));
  CHECK(high_water(&w->c) == 7);
}

static void on_purged(void *data, int status) { atomic_store((atomic_int *)data, status ? status : 1); }

/* Purges `id`: 1 once purged, or the error the callback got. */
static int purge(cli_t *c, const uint8_t id[HD_STORE_ID_BYTES]) {
  atomic_int done = 0;
  int rc = hd_client_purge_store(c->h, id, on_purged, &done);
  if (rc != 0) return rc;
  return WAIT_FOR(atomic_load(&done) != 0, WAIT_MS) ? atomic_load(&done) : HD_ETIMEDOUT;
}

/* B's consumptions still wait (B kept the reports); an operator sees them and purges them. */
static void purge_store_b(world_t *w) {
  uint8_t ids[2][HD_STORE_ID_BYTES], other[HD_STORE_ID_BYTES];
  uint64_t unhandled[2] = {9, 9}, consumed[2] = {9, 9};
  CHECK(hd_client_held_stores(w->c.h, ids[0], unhandled, consumed, 2) == 1);
  CHECK(unhandled[0] == 0 && consumed[0] == 3);
  CHECK(hd_client_held_stores(w->c.h, NULL, NULL, NULL, 0) == 1);
  hd_client_stats_t st;
  CHECK(hdt_client_stats(w->c.h, &st) == 0 && st.unhandled == 0 && st.consumed == 3);
  memset(other, 0x42, sizeof other);
  CHECK(purge(&w->c, other) == HD_ENOTFOUND);
  CHECK(hd_client_purge_store(w->c.h, NULL, NULL, NULL) == HD_EINVAL);
  CHECK(purge(&w->c, ids[0]) == 1);
  CHECK(hd_client_held_stores(w->c.h, ids[0], unhandled, consumed, 2) == 0);
  CHECK(hdt_client_stats(w->c.h, &st) == 0 && st.unhandled == 0 && st.consumed == 0);
  CHECK(purge(&w->c, ids[0]) == HD_ENOTFOUND);
  /* the purge is durable, and A's events are still confirmed as usual */
  CHECK_OK(cli_stop(&w->c));
  CHECK_OK(add(w, A, 8, 8));
  CHECK_OK(cli_start(w, 0));
  DCHECK(WAIT_FOR(handled_once(&w->c, A, 8, 8) && pending(&w->s) == 0, WAIT_MS));
  CHECK(hd_client_held_stores(w->c.h, NULL, NULL, NULL, 0) == 0);
  CHECK(handled_once(&w->c, B, 1, 3) && w->s.mixed == 0 && w->c.bad == 0);
}

static void replaced_and_back(world_t *w) {
  CHECK_OK(world_init(w));
  int failed = hd_test_failed_checks;
  with_store_a(w);
  if (hd_test_failed_checks != failed) return;
  then_store_b(w);
  if (hd_test_failed_checks != failed) return;
  back_to_store_a(w);
  if (hd_test_failed_checks != failed) return;
  purge_store_b(w);
}

/* Defines the test `name`: body(world), then the world is freed whatever the body's CHECKs did. */
#define REPLACED_TEST(name, body)                                                                 \
  static void name(void) {                                                                        \
    static world_t name##_w;                                                                      \
    body(&name##_w);                                                                              \
    world_free(&name##_w);                                                                        \
  }

REPLACED_TEST(old_store_handled_first_reported_to_it_only_then_purged, replaced_and_back)

#define TESTS(X) X(old_store_handled_first_reported_to_it_only_then_purged)
HD_TEST_MAIN(TESTS)
