/* Poison events, dead letters and what the queue semantics keep across restarts, end to end:
 * a real server and real clients through the public header (docs/QUEUES.md "Poison events",
 * "Dead letters", "Expiry", "Notices", "Idempotent adds", "Collapsing adds").
 *
 *   poison_among_many       one event that fails at every call among 10,000 good ones of one
 *                           user: the good ones all arrive, in order, once each; the poison one
 *                           is called exactly max_attempts (5) times, then is a dead letter with
 *                           those attempts and the handler's reason, never seen by on_consumed;
 *   handler_aborts          the handler abort()s the process on one event: the client runs in a
 *                           child process (argv[1] = "poison_role"), started again each time it
 *                           dies (bounded); the handler calls are counted in a file (a line
 *                           written before the abort): exactly max_attempts (3) of them, then the
 *                           event is a dead letter with 3 attempts and the events after it are
 *                           handled;
 *   survive_restarts        a dead letter, a dedup key, a collapse key and a notice each survive
 *                           a restart of the server and one of the client;
 *   sweep_resumes           events that expire while the server is down are taken by the sweep
 *                           at its start, and events stored before the restart that expire after
 *                           it by the sweep of the new run; the client gets both notices.
 * Servers on 127.0.0.1 port 0 (restarts on the same port), fresh folders, every wait bounded. */
#include "harness.h"
#include "delivery_util.h"

#include <sys/resource.h>

/* ---- a client with on_notice and the options the tests set ---- */

typedef struct notices {
  pthread_mutex_t mu;
  int n;                 /* on_notice calls */
  uint64_t seq[16];
  hd_notice_t notice[16];
  int hold;              /* keep the next notice instead of completing it */
  hd_event_t *held;
  int errors;
} notices_t;

static notices_t NT = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void notices_reset(int hold) {
  pthread_mutex_lock(&NT.mu);
  NT.n = NT.errors = 0;
  NT.hold = hold;
  NT.held = NULL;
  pthread_mutex_unlock(&NT.mu);
}

static void on_notice(void *ud, hd_event_t *ev) {
  (void)ud;
  hd_notice_t n;
  int ok = hd_event_is_notice(ev) && hd_event_notice(ev, &n) == 0;
  pthread_mutex_lock(&NT.mu);
  if (!ok) NT.errors++;
  if (ok && NT.n < 16) {
    NT.seq[NT.n] = hd_event_seq(ev);
    NT.notice[NT.n] = n;
  }
  NT.n++;
  int hold = NT.hold;
  if (hold) {
    NT.held = ev;
    NT.hold = 0;
  }
  pthread_mutex_unlock(&NT.mu);
  if (!hold) hd_event_complete(ev, 1, NULL, 0);
}

static int notices_seen(void) {
  pthread_mutex_lock(&NT.mu);
  int n = NT.n;
  pthread_mutex_unlock(&NT.mu);
  return n;
}

/* Starts the recording client with on_notice, `max_attempts` and a short backoff. */
static int client_start(du_client_t *c, uint32_t max_attempts) {
  hd_client_options_t o;
  du_client_fill_options(c, &o);
  o.on_notice = on_notice;
  o.max_attempts = max_attempts;
  o.retry_min_ms = 5;
  o.retry_max_ms = 20;
  int rc = hd_client_create(&c->h, &o);
  if (rc != 0) c->h = NULL;
  return rc;
}

static uint64_t dead_count(du_world_t *w, int ui) {
  uint64_t n = UINT64_MAX;
  if (w->s.h == NULL || hd_server_dead_letter_count(w->s.h, w->c[ui].kp.public_key, &n) != 0)
    return UINT64_MAX;
  return n;
}

/* The user's only dead letter is `seq` with `attempts` and `reason`, its payload du_payload's. */
static int dead_letter_is(du_world_t *w, int ui, uint64_t seq, uint32_t attempts,
                          const char *reason) {
  static uint8_t buf[64 * 1024];
  hd_dead_letter_t page[4];
  uint64_t cursor = 0;
  int n = hd_server_list_dead_letters(w->s.h, w->c[ui].kp.public_key, &cursor, page, 4, buf,
                                      sizeof buf);
  if (n != 1) {
    fprintf(stderr, "  %d dead letters listed\n", n);
    return 0;
  }
  const hd_dead_letter_t *d = &page[0];
  int ok = d->seq == seq && d->attempts == attempts && d->reason_len == strlen(reason) &&
           memcmp(d->reason, reason, d->reason_len) == 0 &&
           du_payload_ok(d->payload, d->payload_len, ui + 1, seq) && d->dead_ms >= d->created_ms;
  if (!ok) {
    fprintf(stderr, "  dead letter %" PRIu64 " after %u attempts: %.*s\n", d->seq, d->attempts,
            (int)d->reason_len, d->reason);
  }
  return ok;
}

static int restart_server(du_world_t *w) {
  if (du_server_stop(&w->s) != 0) return -1;
  return du_world_start_server(w);
}

/* ---- poison_among_many ---- */

typedef struct adds {
  atomic_long done, failed;
} adds_t;

static void on_added(void *data, int status, uint64_t seq) {
  adds_t *a = data;
  (void)seq;
  if (status != 0) atomic_fetch_add(&a->failed, 1);
  atomic_fetch_add(&a->done, 1);
}

/* Adds du_payload(ui + 1, first .. first + n - 1) for user `ui` without waiting for each (one
 * thread: they take those numbers), then waits for all. */
static int add_many(du_world_t *w, int ui, uint64_t first, long n) {
  adds_t a;
  atomic_init(&a.done, 0);
  atomic_init(&a.failed, 0);
  uint8_t p[64];
  for (long i = 0; i < n; i++) {
    size_t len = du_payload(p, sizeof p, ui + 1, first + (uint64_t)i, 0);
    int rc = hd_server_add_event(w->s.h, w->c[ui].kp.public_key, p, len, on_added, &a);
    if (rc != 0) return rc;
  }
  if (!WAIT_FOR(atomic_load(&a.done) == n, 60000)) return -1;
  return atomic_load(&a.failed) == 0 ? 0 : -1;
}

#define MANY_ATTEMPTS 5

static void poison_among_many_body(du_world_t *w) {
  long n = (long)hdt_count(10000, 2000);
  uint64_t poison = (uint64_t)n / 2 + 7;
  CHECK_OK(du_world_init(w, "poison", 1, (uint64_t)n + 2, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->fail_seq = poison;
  c->fail_times = 1000000; /* every call */
  CHECK_OK(client_start(c, MANY_ATTEMPTS));
  CHECK_OK(add_many(w, 0, 1, n));
  DCHECK(WAIT_FOR(du_client_total_ok(c) == n - 1, 60000));
  DCHECK(WAIT_FOR(dead_count(w, 0) == 1, 10000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  10000));
  CHECK(du_client_calls(c, poison) == MANY_ATTEMPTS);
  CHECK(du_client_all_ok_once(c, 1, poison - 1));
  CHECK(du_client_all_ok_once(c, poison + 1, (uint64_t)n));
  CHECK(du_client_oks(c, poison) == 0);
  CHECK(du_client_clean(c)); /* in order: no call for a lower seq than the previous one */
  CHECK(dead_letter_is(w, 0, poison, MANY_ATTEMPTS, "handler failed"));
  CHECK(du_server_calls(&w->s, 0, poison) == 0); /* on_consumed never saw it */
  CHECK(du_server_calls_are(&w->s, 0, 1, poison - 1, 1));
  CHECK(du_server_calls_are(&w->s, 0, poison + 1, (uint64_t)n, 1));
  CHECK(du_server_clean(&w->s));
  hd_client_stats_t cs;
  CHECK_OK(du_client_stats(c, &cs));
  CHECK(cs.events_dead == 1 && cs.events_failed == MANY_ATTEMPTS &&
        cs.events_handled == (uint64_t)n - 1);
  hd_server_stats_t ss;
  CHECK_OK(du_server_stats(&w->s, &ss));
  CHECK(ss.events_dead == 1 && ss.dead_letters == 1);
  printf("  %ld events, poison seq %" PRIu64 ": %d calls, then a dead letter; %ld handled in "
         "order\n", n, poison, MANY_ATTEMPTS, du_client_total_ok(c));
}
DU_WORLD_TEST(poison_among_many, poison_among_many_body)

/* ---- handler_aborts: the client in a child process ---- */

#define ABORT_ATTEMPTS 3
#define ABORT_EVENTS 20
#define ABORT_SEQ 5

static void append_line(const char *path, const char *fmt, uint64_t v) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
  if (fd < 0) return;
  char line[64];
  int n = snprintf(line, sizeof line, fmt, v);
  ssize_t r = write(fd, line, (size_t)n);
  (void)r;
  close(fd);
}

static const char *role_log_path;
static uint64_t role_abort_seq;

/* Appends "handled SEQ" (or, for the poison event, "call SEQ ATTEMPT" and then abort()s). */
static void role_event(void *ud, hd_event_t *ev) {
  (void)ud;
  uint64_t seq = hd_event_seq(ev);
  if (seq == role_abort_seq) {
    append_line(role_log_path, "call %" PRIu64 "\n", hd_event_attempt(ev));
    abort();
  }
  append_line(role_log_path, "handled %" PRIu64 "\n", seq);
  hd_event_complete(ev, 1, NULL, 0);
}

/* The child: the user's client until the parent's stop file appears (or 60 s). */
static void poison_role(void) {
  if (getenv("HD_POISON_ROLE") == NULL) return; /* not a child */
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core); /* abort() leaves no core file behind */
  hd_keypair_t kp;
  uint8_t sc[32], pk[32], server_pk[32];
  CHECK_OK(hd_hex_decode(sc, 32, getenv("HD_POISON_US")));
  CHECK_OK(hd_hex_decode(pk, 32, getenv("HD_POISON_UP")));
  CHECK_OK(hd_hex_decode(server_pk, 32, getenv("HD_POISON_SP")));
  CHECK_OK(hd_keypair_from_scalar(&kp, sc, pk));
  role_log_path = getenv("HD_POISON_LOG");
  role_abort_seq = (uint64_t)atoll(getenv("HD_POISON_SEQ"));
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%s", getenv("HD_POISON_PORT"));
  hd_client_options_t o;
  hd_client_options_init(&o, HD_CLIENT_OPTIONS_VERSION);
  o.keypair = &kp;
  o.server_public_key = server_pk;
  o.topic = DU_TOPIC;
  o.connect = addr;
  o.data_dir = getenv("HD_POISON_DIR");
  o.on_event = role_event;
  o.max_attempts = ABORT_ATTEMPTS;
  o.reconnect_min_ms = 20;
  o.reconnect_max_ms = 200;
  hd_client_t *c = NULL;
  CHECK_OK(hd_client_create(&c, &o));
  uint64_t dl = hdt_now_ms() + 60000;
  while (access(getenv("HD_POISON_STOP"), F_OK) != 0 && hdt_now_ms() < dl) hdt_sleep_ms(10);
  CHECK_OK(hd_client_close_wait(c));
}

/* Lines of `path` that start with `word`, and whether every seq 1..n but `skip` has a
 * "handled" line. */
static int count_lines(const char *path, const char *word, uint64_t *values, int cap) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  char line[128];
  int n = 0;
  size_t wl = strlen(word);
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, word, wl) != 0 || line[wl] != ' ') continue;
    if (n < cap) values[n] = (uint64_t)atoll(line + wl + 1);
    n++;
  }
  fclose(f);
  return n;
}

static int all_handled_but(const char *path, uint64_t n, uint64_t skip) {
  uint64_t v[4 * ABORT_EVENTS];
  int k = count_lines(path, "handled", v, 4 * ABORT_EVENTS);
  if (k > 4 * ABORT_EVENTS) return 0;
  for (uint64_t s = 1; s <= n; s++) {
    int seen = 0;
    for (int i = 0; i < k; i++) seen |= v[i] == s;
    if (seen == (s == skip)) return 0;
  }
  return 1;
}

static pid_t spawn_client(du_world_t *w, const char *dir, const char *log, const char *stop) {
  char us[65], up[65], sp[65], port[16], seq[16];
  hd_hex_encode(us, 65, w->c[0].kp.scalar, 32);
  hd_hex_encode(up, 65, w->c[0].kp.public_key, 32);
  hd_hex_encode(sp, 65, w->s.kp.public_key, 32);
  snprintf(port, sizeof port, "%d", w->s.port);
  snprintf(seq, sizeof seq, "%d", ABORT_SEQ);
  char *env[] = {"HD_POISON_ROLE", "client", "HD_POISON_US", us, "HD_POISON_UP", up,
                 "HD_POISON_SP", sp, "HD_POISON_PORT", port, "HD_POISON_DIR", (char *)dir,
                 "HD_POISON_LOG", (char *)log, "HD_POISON_STOP", (char *)stop,
                 "HD_POISON_SEQ", seq, NULL};
  return hdt_spawn_self("test_poison", "poison_role", env, HDT_CHILD_NATIVE | HDT_CHILD_QUIET);
}

static void handler_aborts_body(du_world_t *w, char **root, pid_t *child) {
  CHECK_OK(du_world_init(w, "poison", 1, 64, DU_START_SERVER));
  *root = hdt_mkdtemp("poison-abort");
  CHECK(*root != NULL);
  char *dir = hdt_path(*root, "client"), *log = hdt_path(*root, "log"),
       *stop = hdt_path(*root, "stop");
  CHECK_OK(du_add_events(w->s.h, w->c[0].kp.public_key, 1, 1, ABORT_EVENTS, 0));
  int starts = 0, aborted = 0, done = 0;
  pid_t pid = -1;
  uint64_t t0 = hdt_now_ms();
  /* each child runs until it dies; one that does not die within 10 s is the last */
  while (starts < 3 * ABORT_ATTEMPTS && !done) {
    pid = spawn_client(w, dir, log, stop);
    *child = pid;
    CHECK(pid > 0);
    starts++;
    int st = 0;
    pid_t r = 0;
    uint64_t dl = hdt_now_ms() + 10000ull * (uint64_t)hdt_slow();
    while ((r = waitpid(pid, &st, WNOHANG)) == 0 && hdt_now_ms() < dl &&
           !(dead_count(w, 0) == 1 && du_server_pending(&w->s, w->c[0].kp.public_key) == 0)) {
      hdt_sleep_ms(10);
    }
    if (r == pid) {
      CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT); /* it died of the handler's abort */
      aborted++;
      pid = *child = -1;
      continue;
    }
    done = 1;
  }
  /* the last child runs on: everything drains, then it stops cleanly */
  DCHECK(WAIT_FOR(dead_count(w, 0) == 1 &&
                  du_server_pending(&w->s, w->c[0].kp.public_key) == 0, 10000));
  int fd = open(stop, O_WRONLY | O_CREAT, 0600);
  if (fd >= 0) close(fd);
  if (pid > 0) {
    int st = hdt_wait_child(pid, 30000);
    *child = st == -1 ? pid : -1;
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
  }
  uint64_t attempts[16];
  int calls = count_lines(log, "call", attempts, 16);
  printf("  %d client processes, %d aborted by the handler, %d handler calls of the poison event "
         "(in %.1f s)\n", starts, aborted, calls, (double)(hdt_now_ms() - t0) / 1000.0);
  CHECK(calls == ABORT_ATTEMPTS && aborted == ABORT_ATTEMPTS);
  for (int i = 0; i < calls && i < 16; i++) CHECK(attempts[i] == (uint64_t)i + 1);
  CHECK(dead_letter_is(w, 0, ABORT_SEQ, ABORT_ATTEMPTS, "crashed or failed 3 attempts"));
  CHECK(all_handled_but(log, ABORT_EVENTS, ABORT_SEQ));
  CHECK(du_server_calls(&w->s, 0, ABORT_SEQ) == 0);
  CHECK(du_server_calls_are(&w->s, 0, ABORT_SEQ + 1, ABORT_EVENTS, 1));
  free(dir);
  free(log);
  free(stop);
}

static void handler_aborts(void) {
  if (getenv("HD_POISON_ROLE")) return;
  static du_world_t w;
  memset(&w, 0, sizeof w);
  char *root = NULL;
  pid_t child = -1;
  handler_aborts_body(&w, &root, &child);
  if (child > 0) { /* a CHECK failed while a child ran */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
  }
  du_world_free(&w);
  if (root != NULL) hdt_rmrf(root);
  free(root);
}

/* ---- survive_restarts ---- */

static int add_keyed(du_world_t *w, uint64_t payload_seq, const char *dedup, const char *collapse,
                     uint64_t ttl_ms, hd_add_result_t *r) {
  uint8_t p[64];
  size_t n = du_payload(p, sizeof p, 1, payload_seq, 0);
  hd_add_options_t o;
  hd_add_options_init(&o, HD_ADD_OPTIONS_VERSION);
  if (dedup) {
    o.dedup_key = (const uint8_t *)dedup;
    o.dedup_key_len = strlen(dedup);
  }
  if (collapse) {
    o.collapse_key = (const uint8_t *)collapse;
    o.collapse_key_len = strlen(collapse);
  }
  o.ttl_ms = ttl_ms;
  memset(r, 0, sizeof *r);
  return hd_server_add_event_v2_wait(w->s.h, w->c[0].kp.public_key, p, n, &o, r);
}

static uint64_t expired_count(du_world_t *w) {
  hd_server_stats_t st;
  return du_server_stats(&w->s, &st) == 0 ? st.events_expired : UINT64_MAX;
}

/* Event 1 fails twice (max_attempts 2): a dead letter. With the client away: event 2 has the
 * dedup key "k", event 3 the collapse key "c", event 4 expires (notice 5). The server restarts
 * (a clean close: what it held is unsent): the dead letter is listed as before, "k" answers 2
 * and stores nothing, "c" replaces 3 with 6. The client starts, handles 2, holds notice 5 and
 * stops with it unhandled; started again, it is handed notice 5 again, then 6; dead letter 1 is
 * never handed out again. After another restart of each, "k" still answers 2 and the dead
 * letter is still there. */
static void survive_restarts_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "poison", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  c->fail_seq = 1;
  c->fail_times = 1000;
  CHECK_OK(client_start(c, 2));
  hd_add_result_t r;
  CHECK_OK(add_keyed(w, 1, NULL, NULL, 0, &r));
  DCHECK(WAIT_FOR(dead_count(w, 0) == 1 && du_client_store_empty(c), 5000));
  CHECK_OK(du_client_stop(c));
  CHECK(du_client_calls(c, 1) == 2);
  CHECK_OK(add_keyed(w, 2, "k", NULL, 0, &r));
  CHECK(r.seq == 2 && r.flags == 0);
  CHECK_OK(add_keyed(w, 3, NULL, "c", 0, &r));
  CHECK(r.seq == 3 && r.flags == 0);
  CHECK_OK(add_keyed(w, 4, NULL, NULL, 20, &r));
  CHECK(r.seq == 4);
  DCHECK(WAIT_FOR(expired_count(w) == 1, 5000)); /* notice 5 */
  /* the server restarts */
  CHECK_OK(restart_server(w));
  CHECK(dead_count(w, 0) == 1 && dead_letter_is(w, 0, 1, 2, "handler failed"));
  CHECK(du_server_pending(&w->s, c->kp.public_key) == 3); /* 2, 3 and the notice */
  CHECK_OK(add_keyed(w, 2, "k", NULL, 0, &r));
  CHECK(r.seq == 2 && r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(add_keyed(w, 6, NULL, "c", 0, &r));
  CHECK(r.seq == 6 && (r.flags & HD_ADD_REPLACED) && r.replaced_seq == 3);
  CHECK(du_server_pending(&w->s, c->kp.public_key) == 3); /* 2, the notice and 6 */
  /* the client: handles 2, holds the notice and stops with it */
  notices_reset(1);
  CHECK_OK(client_start(c, 2));
  DCHECK(WAIT_FOR(du_client_oks(c, 2) == 1 && notices_seen() == 1, 5000));
  CHECK(NT.seq[0] == 5 && NT.notice[0].kind == HD_NOTICE_EXPIRED && NT.notice[0].count == 1 &&
        NT.notice[0].first_seq == 4 && NT.notice[0].last_seq == 4);
  hdt_sleep_ms(50);
  CHECK(du_client_calls(c, 6) == 0); /* behind the notice */
  CHECK_OK(du_client_stop(c));
  pthread_mutex_lock(&NT.mu);
  hd_event_t *held = NT.held;
  NT.held = NULL;
  pthread_mutex_unlock(&NT.mu);
  if (held != NULL) hd_event_complete(held, 1, NULL, 0); /* after the close: only freed */
  /* the client again: the notice is handed out again, then 6 */
  notices_reset(0);
  CHECK_OK(client_start(c, 2));
  DCHECK(WAIT_FOR(notices_seen() == 1 && du_client_oks(c, 6) == 1, 5000));
  CHECK(NT.seq[0] == 5 && NT.notice[0].kind == HD_NOTICE_EXPIRED);
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  /* and both once more */
  CHECK_OK(du_client_stop(c));
  CHECK_OK(restart_server(w));
  CHECK_OK(client_start(c, 2));
  CHECK_OK(add_keyed(w, 2, "k", NULL, 0, &r));
  CHECK(r.seq == 2 && r.flags == HD_ADD_DUPLICATE); /* consumed since: still a duplicate */
  CHECK(dead_count(w, 0) == 1 && dead_letter_is(w, 0, 1, 2, "handler failed"));
  hdt_sleep_ms(100);
  CHECK(du_client_calls(c, 1) == 2 && du_client_calls(c, 3) == 0 && du_client_calls(c, 4) == 0);
  CHECK(du_client_oks(c, 2) == 1 && du_client_oks(c, 6) == 1);
  CHECK(du_server_calls(&w->s, 0, 1) == 0 && du_server_calls(&w->s, 0, 3) == 0);
  CHECK(du_client_clean(c) && du_server_clean(&w->s) && NT.errors == 0);
}
DU_WORLD_TEST(survive_restarts, survive_restarts_body)

/* ---- sweep_resumes ---- */

/* With the client away: events 1-3 live 300 ms, 4-5 live 1500 ms, 6 has no time to live (times
 * 4 under valgrind, where the adds are slow). The server stops before any expires and starts
 * again 600 ms later: the sweep at its start takes
 * 1-3 (notice 7); 4-5 expire in the new run and its sweep takes them too (notice 8), although
 * no add of this run armed it. The client, started then, gets both notices and event 6. */
static void sweep_resumes_body(du_world_t *w) {
  notices_reset(0);
  CHECK_OK(du_world_init(w, "poison", 1, 16, DU_START_SERVER));
  du_client_t *c = &w->c[0];
  hd_add_result_t r;
  uint64_t k = hdt_slow() > 1 ? 4 : 1;
  for (uint64_t s = 1; s <= 6; s++) {
    CHECK_OK(add_keyed(w, s, NULL, NULL, s <= 3 ? 300 * k : s <= 5 ? 1500 * k : 0, &r));
    CHECK(r.seq == s);
  }
  CHECK_OK(du_server_stop(&w->s));
  CHECK(expired_count(w) == UINT64_MAX); /* stopped */
  hdt_sleep_ms(600 * (int)k);
  CHECK_OK(du_world_start_server(w));
  DCHECK(WAIT_FOR(expired_count(w) == 3, 5000));
  CHECK(du_server_pending(&w->s, c->kp.public_key) == 4); /* 4, 5, 6 and notice 7 */
  DCHECK(WAIT_FOR(expired_count(w) == 5, 5000));
  CHECK_OK(client_start(c, 0));
  DCHECK(WAIT_FOR(notices_seen() == 2 && du_client_oks(c, 6) == 1, 5000));
  DCHECK(WAIT_FOR(du_server_pending(&w->s, c->kp.public_key) == 0 && du_client_store_empty(c),
                  5000));
  CHECK(NT.seq[0] == 7 && NT.notice[0].count == 3 && NT.notice[0].first_seq == 1 &&
        NT.notice[0].last_seq == 3);
  CHECK(NT.seq[1] == 8 && NT.notice[1].count == 2 && NT.notice[1].first_seq == 4 &&
        NT.notice[1].last_seq == 5);
  for (uint64_t s = 1; s <= 5; s++) CHECK(du_client_calls(c, s) == 0);
  CHECK(du_client_clean(c) && du_server_clean(&w->s) && NT.errors == 0);
}
DU_WORLD_TEST(sweep_resumes, sweep_resumes_body)

#define TESTS(X)                                                                                  \
  X(poison_role)                                                                                  \
  X(poison_among_many)                                                                            \
  X(handler_aborts)                                                                               \
  X(survive_restarts)                                                                             \
  X(sweep_resumes)

HD_TEST_MAIN(TESTS)
