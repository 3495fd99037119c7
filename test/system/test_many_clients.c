/* 1,000 clients connected to one server at once (200 under valgrind), each receiving its own
 * events and no one else's.
 *
 * The clients run on ONE caller-owned libuv loop (the `loop` option), run by one thread of this
 * test that also creates them (a handle on a caller's loop is created on that loop's thread), so
 * the test does not start a loop thread per client. (Each client store still has its own group
 * commit writer thread: that is the store's design, docs/STORAGE.md.) The server runs on its own
 * loop thread. RLIMIT_NOFILE is raised to what the run needs. */
#include "harness.h"
#include "delivery_util.h"

#include <uv.h>

#define EVENTS_EACH 3

typedef struct mc_client {
  char name[32];
  int tag;
  hd_keypair_t kp;
  char *dir;
  hd_client_t *h;
  atomic_int got, wrong, dup, connected, disconnected;
  atomic_int seen[EVENTS_EACH + 1];
} mc_client_t;

typedef struct mc_user {
  uint8_t key[32];
  int tag;
} mc_user_t;

typedef struct mc {
  char name[32]; /* server's log name */
  int n;
  char *root;
  char addr[64];
  hd_keypair_t skp;
  hd_server_t *s;
  mc_client_t *cl;
  mc_user_t *users; /* sorted by key: the server's lookup */
  uv_loop_t loop;
  pthread_t thread;
  int thread_on, loop_on;
  atomic_int created, create_failed, closed;
  atomic_int reports, report_errors, unknown;
  atomic_int adds_done, adds_failed;
} mc_t;

static int user_cmp(const void *a, const void *b) {
  return memcmp(((const mc_user_t *)a)->key, ((const mc_user_t *)b)->key, 32);
}

static void mc_event(void *ud, hd_event_t *ev) {
  mc_client_t *c = ud;
  hd_event_info_t info;
  if (hd_event_info(ev, &info) != 0) {
    atomic_fetch_add(&c->wrong, 1);
    hd_event_complete(ev, 1, NULL, 0);
    return;
  }
  if (info.seq < 1 || info.seq > EVENTS_EACH ||
      !du_payload_ok(info.payload, info.payload_len, c->tag, info.seq)) {
    atomic_fetch_add(&c->wrong, 1);
    du_log_line(c->name, "TEST: wrong event seq %" PRIu64 " '%.*s'", info.seq,
                (int)(info.payload_len < 40 ? info.payload_len : 40), (const char *)info.payload);
  } else if (atomic_fetch_add(&c->seen[info.seq], 1) != 0) {
    atomic_fetch_add(&c->dup, 1);
  }
  char data[64];
  size_t dl = du_ack(data, sizeof data, c->tag, info.seq);
  atomic_fetch_add(&c->got, 1);
  hd_event_complete(ev, 1, data, dl);
}

static void mc_connected(void *ud, const uint8_t pk[32]) {
  (void)pk;
  atomic_fetch_add(&((mc_client_t *)ud)->connected, 1);
}

static void mc_disconnected(void *ud, const uint8_t *pk, int status) {
  mc_client_t *c = ud;
  (void)pk;
  atomic_fetch_add(&c->disconnected, 1);
  du_log_line(c->name, "TEST: disconnected: %s (%s)", hd_err_name(status), hd_last_error_message());
}

static void mc_consumed(void *ud, const uint8_t user[32], hd_consumed_t *b) {
  mc_t *m = ud;
  mc_user_t key;
  memcpy(key.key, user, 32);
  mc_user_t *u = bsearch(&key, m->users, (size_t)m->n, sizeof *m->users, user_cmp);
  if (u == NULL) atomic_fetch_add(&m->unknown, 1);
  size_t n = hd_consumed_count(b);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t info;
    char want[64];
    if (hd_consumed_event(b, i, &info) != 0 || u == NULL) {
      atomic_fetch_add(&m->report_errors, 1);
      continue;
    }
    size_t wl = du_ack(want, sizeof want, u->tag, info.seq);
    if (info.data_len != wl || memcmp(info.data, want, wl) != 0 ||
        !du_payload_ok(info.payload, info.payload_len, u->tag, info.seq))
      atomic_fetch_add(&m->report_errors, 1);
    atomic_fetch_add(&m->reports, 1);
  }
  hd_consumed_complete_all(b, 1);
}

/* Creates the next few clients, from a callback of the clients' loop (a handle on a caller's loop
 * is created on that loop's thread). A few per turn, so that the loop keeps serving the clients
 * already dialing: creating all of them before the loop runs would leave their handshakes
 * unserved for as long as the creation takes (under valgrind, past the handshake timeout). */
static int mc_next;

static void create_some(uv_idle_t *idle) {
  mc_t *m = idle->data;
  for (int k = 0; k < 10 && mc_next < m->n; k++, mc_next++) {
    mc_client_t *c = &m->cl[mc_next];
    hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
    o.keypair = &c->kp;
    o.server_public_key = m->skp.public_key;
    o.topic = DU_TOPIC;
    o.connect = m->addr;
    o.loop = &m->loop;
    o.data_dir = c->dir;
    o.sync_normal = 1; /* 1,000 stores created at once: this test is about connections */
    o.on_event = mc_event;
    o.on_connected = mc_connected;
    o.on_disconnected = mc_disconnected;
    o.user_data = c;
    o.log = du_log_cb;
    o.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_WARN;
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 1000;
    int rc = hd_client_create(&c->h, &o);
    if (rc != 0) {
      du_log_line(c->name, "TEST: create: %s (%s)", hd_err_name(rc), hd_last_error_message());
      c->h = NULL;
      atomic_fetch_add(&m->create_failed, 1);
      mc_next = m->n;
    }
  }
  if (mc_next >= m->n) {
    uv_idle_stop(idle);
    uv_close((uv_handle_t *)idle, NULL);
    atomic_store(&m->created, 1);
  }
}

/* The clients' loop thread: runs the loop until every client has closed. */
static void *loop_main(void *arg) {
  mc_t *m = arg;
  uv_idle_t idle;
  uv_idle_init(&m->loop, &idle);
  idle.data = m;
  mc_next = 0;
  uv_idle_start(&idle, create_some);
  uv_run(&m->loop, UV_RUN_DEFAULT);
  return NULL;
}

static void on_client_closed(void *ud) { atomic_fetch_add((atomic_int *)ud, 1); }

static void on_added(void *cb_data, int status, uint64_t seq) {
  mc_t *m = cb_data;
  (void)seq;
  if (status != 0) atomic_fetch_add(&m->adds_failed, 1);
  atomic_fetch_add(&m->adds_done, 1);
}

static uint64_t connected_users(mc_t *m) {
  hd_server_stats_t st;
  if (hdt_server_stats(m->s, &st) != 0) return 0;
  return st.connected_users;
}

static int all_got(mc_t *m) {
  for (int i = 0; i < m->n; i++) {
    if (atomic_load(&m->cl[i].got) < EVENTS_EACH) return 0;
  }
  return 1;
}

static int all_connected_once(mc_t *m) {
  for (int i = 0; i < m->n; i++) {
    if (atomic_load(&m->cl[i].connected) < 1) return 0;
  }
  return 1;
}

static void mc_cleanup(mc_t *m) {
  if (m->thread_on) {
    int open = 0;
    WAIT_FOR(atomic_load(&m->created), 120000); /* the loop thread is done creating */
    for (int i = 0; i < m->n; i++) {
      if (m->cl[i].h) {
        hd_client_close(m->cl[i].h, on_client_closed, &m->closed);
        m->cl[i].h = NULL;
        open++;
      }
    }
    /* the loop runs until the last client released it */
    if (!WAIT_FOR(atomic_load(&m->closed) == open, 60000)) {
      fprintf(stderr, "  only %d of %d clients closed: giving up\n", atomic_load(&m->closed), open);
      _exit(1); /* the loop thread still runs: no clean way on */
    }
    pthread_join(m->thread, NULL);
    m->thread_on = 0;
  }
  if (m->loop_on) {
    int rc = uv_loop_close(&m->loop);
    if (rc != 0) fprintf(stderr, "  uv_loop_close: %s (a client left something on the loop)\n", uv_strerror(rc));
    m->loop_on = 0;
  }
  if (m->s) hd_server_close_wait(m->s);
  m->s = NULL;
  for (int i = 0; m->cl && i < m->n; i++) free(m->cl[i].dir);
  free(m->cl);
  free(m->users);
  if (m->root) hdt_rmrf(m->root);
  free(m->root);
}

static void many_body(mc_t *m) {
  m->n = (int)hdt_count(1000, 200);
  long need = (long)m->n * 16 + 256;
  long have = hdt_raise_nofile(need);
  if (have < need) printf("  (RLIMIT_NOFILE is %ld, wanted %ld)\n", have, need);
  CHECK(have >= (long)m->n * 8 + 256);
  signal(SIGPIPE, SIG_IGN); /* we run a loop ourselves (docs/threading.md) */

  m->root = hdt_mkdtemp("many");
  CHECK(m->root != NULL);
  m->cl = calloc((size_t)m->n, sizeof *m->cl);
  m->users = calloc((size_t)m->n, sizeof *m->users);
  CHECK(m->cl && m->users);
  for (int i = 0; i < m->n; i++) {
    mc_client_t *c = &m->cl[i];
    char sub[32];
    snprintf(c->name, sizeof c->name, "c%d", i + 1);
    snprintf(sub, sizeof sub, "c%d", i + 1);
    c->tag = i + 1;
    CHECK_OK(hd_keypair_generate(&c->kp));
    c->dir = hdt_path(m->root, sub);
    memcpy(m->users[i].key, c->kp.public_key, 32);
    m->users[i].tag = c->tag;
  }
  qsort(m->users, (size_t)m->n, sizeof *m->users, user_cmp);

  snprintf(m->name, sizeof m->name, "server");
  CHECK_OK(hd_keypair_generate(&m->skp));
  char *sdir = hdt_path(m->root, "server");
  hd_server_options_t so = HD_SERVER_OPTIONS_INIT;
  so.keypair = &m->skp;
  so.topic = DU_TOPIC;
  so.listen = "127.0.0.1:0";
  so.data_dir = sdir;
  so.on_consumed = mc_consumed;
  so.handshakes_per_address = UINT32_MAX; /* every client dials from 127.0.0.1 */
  so.user_data = m;
  so.log = du_log_cb;
  so.log_level = hdt_verbose() ? HD_LOG_DEBUG : HD_LOG_WARN;
  int rc = hd_server_create(&m->s, &so);
  free(sdir);
  CHECK_OK(rc);
  snprintf(m->addr, sizeof m->addr, "127.0.0.1:%d", hd_server_port(m->s));

  CHECK(uv_loop_init(&m->loop) == 0);
  m->loop_on = 1;
  uint64_t t0 = hdt_now_ms();
  CHECK(pthread_create(&m->thread, NULL, loop_main, m) == 0);
  m->thread_on = 1;
  DCHECK(WAIT_FOR(atomic_load(&m->created), 120000));
  CHECK(atomic_load(&m->create_failed) == 0);
  uint64_t t1 = hdt_now_ms();
  /* all of them connected at once */
  int all_connected = WAIT_FOR(connected_users(m) == (uint64_t)m->n, 60000);
  if (!all_connected) fprintf(stderr, "  %" PRIu64 " of %d users connected\n", connected_users(m), m->n);
  DCHECK(all_connected);
  uint64_t t2 = hdt_now_ms();
  /* each on its first connection (the client hears of it a moment after the server) */
  DCHECK(WAIT_FOR(all_connected_once(m), 30000));
  int redialed = 0;
  for (int i = 0; i < m->n; i++) redialed += atomic_load(&m->cl[i].connected) != 1;
  if (redialed) fprintf(stderr, "  %d clients connected more than once\n", redialed);
  DCHECK(redialed == 0);

  /* three events each, added in rounds so that every user has events in flight at once */
  uint8_t buf[64];
  for (uint64_t k = 1; k <= EVENTS_EACH; k++) {
    for (int i = 0; i < m->n; i++) {
      size_t len = du_payload(buf, sizeof buf, m->cl[i].tag, k, 8);
      CHECK_OK(hd_server_add_event(m->s, m->cl[i].kp.public_key, buf, len, on_added, m));
    }
  }
  DCHECK(WAIT_FOR(atomic_load(&m->adds_done) == EVENTS_EACH * m->n, 30000));
  CHECK(atomic_load(&m->adds_failed) == 0);
  int got = WAIT_FOR(all_got(m), 60000);
  if (!got) {
    int short_of = 0;
    for (int i = 0; i < m->n; i++) short_of += atomic_load(&m->cl[i].got) < EVENTS_EACH;
    fprintf(stderr, "  %d clients did not get their %d events\n", short_of, EVENTS_EACH);
  }
  DCHECK(got);
  DCHECK(WAIT_FOR(atomic_load(&m->reports) == EVENTS_EACH * m->n, 30000));
  hd_server_stats_t st;
  DCHECK(WAIT_FOR(hdt_server_stats(m->s, &st) == 0 && st.pending_total == 0, 30000));
  uint64_t t3 = hdt_now_ms();
  hdt_sleep_ms(100);
  int wrong = 0, dup = 0, extra = 0;
  for (int i = 0; i < m->n; i++) {
    wrong += atomic_load(&m->cl[i].wrong);
    dup += atomic_load(&m->cl[i].dup);
    extra += atomic_load(&m->cl[i].got) != EVENTS_EACH;
  }
  CHECK(wrong == 0); /* nobody got anyone else's event */
  CHECK(dup == 0);
  CHECK(extra == 0);
  CHECK(atomic_load(&m->report_errors) == 0 && atomic_load(&m->unknown) == 0);
  CHECK(atomic_load(&m->reports) == EVENTS_EACH * m->n);
  CHECK(connected_users(m) == (uint64_t)m->n);
  CHECK_OK(hdt_server_stats(m->s, &st));
  CHECK(st.events_added == (uint64_t)EVENTS_EACH * (uint64_t)m->n);
  CHECK(st.events_confirmed == (uint64_t)EVENTS_EACH * (uint64_t)m->n);
  printf("  %d clients: created in %" PRIu64 " ms, all connected %" PRIu64 " ms later, "
         "%d events delivered and confirmed in %" PRIu64 " ms\n",
         m->n, t1 - t0, t2 - t1, EVENTS_EACH * m->n, t3 - t2);
}

static void thousand_clients(void) {
  mc_t *m = calloc(1, sizeof *m);
  CHECK(m != NULL);
  many_body(m);
  mc_cleanup(m);
  free(m);
}

#define TESTS(X) X(thousand_clients)

HD_TEST_MAIN(TESTS)
