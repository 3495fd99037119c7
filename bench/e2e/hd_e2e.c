/* hd_e2e: Hyperdown end to end, through the public API only (include/hyperdown.h).
 *
 * Modes tput | lat | paced (harness.h): ONE process, the server and the client each on its own
 * libuv loop thread (the handles own their loops), talking over TCP 127.0.0.1 with the Noise
 * handshake and both SQLite stores. One event's path: hd_server_add_event (durable: group
 * commit, fsync) -> push -> client store (commit) -> on_event -> hd_event_complete (consumed,
 * commit) -> CONSUMED -> server on_consumed (the run counts the event completed here) ->
 * hd_consumed_complete_all (delete, commit) -> DONE -> client forgets. The run then waits until
 * the server store is empty (pending 0), so the deletes are inside the timing.
 * "deliver" latency: add call -> client handler; "complete": add call -> server on_consumed.
 *
 * Mode handshake: the same server with a load client (closed loop, --inflight, default 100)
 * running, while one extra thread runs a caller-owned uv loop that keeps --hs-concurrency
 * (default 8) fresh clients dialing: create -> handshake -> on_connected -> close -> next.
 *
 * Mode idle: --clients N (default 10000) idle connections on one server. A server PROCESS
 * (this binary, --role idle-server) and --procs P (default 4) client PROCESSES (--role
 * idle-clients), each with --loops L (default 2) caller-owned uv loops (no thread per client;
 * processes because each client also opens its own SQLite store, ~5 fds, and the hard
 * RLIMIT_NOFILE here is 20000). Measured: the server's RSS before and after the N handshakes
 * (delta / N = memory per idle connection), then the fan-in: --rounds R events added for every
 * user (N x R in all, in flight at most --inflight) and every consumption report fanned in to
 * the server, events/s from the first add to the last on_consumed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <hyperdown.h>
#include <uv.h>

#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void die(const char *what, int rc) {
  fprintf(stderr, "hd_e2e: %s: %s (%s)\n", what, hd_last_error_message(), hd_err_name(rc));
  exit(1);
}
static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb, (void)flag, (void)f;
  return remove(p);
}
static void rm_rf(const char *d) { nftw(d, rm_entry, 32, FTW_DEPTH | FTW_PHYS); }

static int sync_normal;
static char tmpdir[512];

/* =============================== tput / lat / paced =============================== */

typedef struct hd_ctx {
  hd_server_t *s;
  hd_client_t *c;
  uint8_t user[32];
  h_run_t *run;
  atomic_int connected;
  atomic_long add_failed;
} hd_ctx_t;

static void on_consumed(void *ud, const uint8_t user[32], hd_consumed_t *batch) {
  (void)user;
  hd_ctx_t *x = ud;
  size_t n = hd_consumed_count(batch);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t ev;
    if (hd_consumed_event(batch, i, &ev) == 0) h_complete(x->run, h_id_of(ev.payload, ev.payload_len));
  }
  hd_consumed_complete_all(batch, 1);
}
static void on_event(void *ud, hd_event_t *e) {
  hd_ctx_t *x = ud;
  hd_event_info_t ev;
  if (hd_event_info(e, &ev) == 0) h_deliver(x->run, h_id_of(ev.payload, ev.payload_len));
  hd_event_complete(e, 1, NULL, 0);
}
static void on_connected(void *ud, const uint8_t pk[32]) {
  (void)pk;
  hd_ctx_t *x = ud;
  atomic_store(&x->connected, 1);
}
static void on_added(void *ud, int status, uint64_t seq) {
  (void)seq;
  hd_ctx_t *x = ud;
  if (status != 0) atomic_fetch_add(&x->add_failed, 1);
}
static int hd_send(void *ctx, uint64_t id, const uint8_t *p, size_t len) {
  (void)id;
  hd_ctx_t *x = ctx;
  return hd_server_add_event(x->s, x->user, p, len, on_added, x);
}

static hd_keypair_t server_kp;

static void start_server(hd_ctx_t *x, const char *dir) {
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &server_kp;
  o.topic = "e2e";
  o.listen = "127.0.0.1:0";
  o.data_dir = dir;
  o.sync_normal = sync_normal;
  o.on_consumed = on_consumed;
  o.user_data = x;
  int rc = hd_server_create(&x->s, &o);
  if (rc != 0) die("server", rc);
}

static hd_client_t *start_client(const hd_keypair_t *kp, int port, const char *dir, void *loop,
                                 void *ud, hd_event_cb ev, hd_peer_cb conn, int no_reconnect) {
  char connect[64];
  snprintf(connect, sizeof connect, "127.0.0.1:%d", port);
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = kp;
  o.server_public_key = server_kp.public_key;
  o.topic = "e2e";
  o.connect = connect;
  o.data_dir = dir;
  o.sync_normal = sync_normal;
  o.on_event = ev;
  o.on_connected = conn;
  o.user_data = ud;
  o.loop = loop;
  o.no_reconnect = no_reconnect;
  o.window = 4096;
  hd_client_t *c = NULL;
  int rc = hd_client_create(&c, &o);
  if (rc != 0) die("client", rc);
  return c;
}

static void wait_flag(atomic_int *f, double secs, const char *what) {
  double end = h_now_s() + secs;
  while (!atomic_load(f)) {
    if (h_now_s() > end) {
      fprintf(stderr, "hd_e2e: %s timed out\n", what);
      exit(1);
    }
    usleep(1000);
  }
}

static void wait_empty(hd_ctx_t *x, double secs) {
  double end = h_now_s() + secs;
  hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  for (;;) {
    hd_server_stats(x->s, &st);
    if (st.pending_total == 0 || h_now_s() > end) break;
    usleep(500);
  }
}

/* handshake churn on a caller-owned loop */
typedef struct hs_slot {
  hd_keypair_t kp;
  char dir[600];
  hd_client_t *c;
  struct hs *hs;
  uint64_t t_start;
} hs_slot_t;
typedef struct hs {
  uv_loop_t loop;
  int port;
  hs_slot_t *slots;
  int n;
  atomic_int stop;
  long done, failed;
  h_hist_t lat;
  uv_async_t wake;
  int open;
} hs_t;
static void hs_start(hs_slot_t *sl);
static void hs_closed(void *ud) {
  hs_slot_t *sl = ud;
  sl->c = NULL;
  sl->hs->open--;
  if (!atomic_load(&sl->hs->stop)) hs_start(sl);
  else if (sl->hs->open == 0) uv_close((uv_handle_t *)&sl->hs->wake, NULL);
}
static void hs_connected(void *ud, const uint8_t pk[32]) {
  (void)pk;
  hs_slot_t *sl = ud;
  h_record(&sl->hs->lat, h_now_ns() - sl->t_start);
  sl->hs->done++;
  hd_client_close(sl->c, hs_closed, sl);
}
static void hs_event(void *ud, hd_event_t *e) {
  (void)ud;
  hd_event_complete(e, 1, NULL, 0);
}
static void hs_start(hs_slot_t *sl) {
  sl->t_start = h_now_ns();
  sl->hs->open++;
  sl->c = start_client(&sl->kp, sl->hs->port, sl->dir, &sl->hs->loop, sl, hs_event, hs_connected, 1);
}
static void hs_wake(uv_async_t *a) {
  hs_t *hs = a->data;
  if (hs->open == 0) uv_close((uv_handle_t *)&hs->wake, NULL);
}
static void *hs_thread(void *arg) {
  hs_t *hs = arg;
  for (int i = 0; i < hs->n; i++) hs_start(&hs->slots[i]);
  uv_run(&hs->loop, UV_RUN_DEFAULT);
  return NULL;
}

static int mode_run(h_cfg_t *cfg, int hs_conc) {
  int handshake = strcmp(cfg->mode, "handshake") == 0;
  h_cfg_t c = *cfg;
  if (handshake) c.mode = "tput";
  h_run_t *run = calloc(1, sizeof *run);
  h_init(run, &c);
  hd_ctx_t x;
  memset(&x, 0, sizeof x);
  x.run = run;
  char sdir[600], cdir[600];
  snprintf(sdir, sizeof sdir, "%s/server", tmpdir);
  snprintf(cdir, sizeof cdir, "%s/client", tmpdir);
  hd_keypair_generate(&server_kp);
  hd_keypair_t ukp;
  hd_keypair_generate(&ukp);
  memcpy(x.user, ukp.public_key, 32);
  start_server(&x, sdir);
  x.c = start_client(&ukp, hd_server_port(x.s), cdir, NULL, &x, on_event, on_connected, 0);
  wait_flag(&x.connected, 10, "connect");

  hs_t hs;
  pthread_t hs_th;
  memset(&hs, 0, sizeof hs);
  if (handshake) {
    uv_loop_init(&hs.loop);
    uv_async_init(&hs.loop, &hs.wake, hs_wake);
    hs.wake.data = &hs;
    hs.port = hd_server_port(x.s);
    hs.n = hs_conc;
    hs.slots = calloc((size_t)hs_conc, sizeof(hs_slot_t));
    for (int i = 0; i < hs_conc; i++) {
      hd_keypair_generate(&hs.slots[i].kp);
      snprintf(hs.slots[i].dir, sizeof hs.slots[i].dir, "%s/hs%d", tmpdir, i);
      hs.slots[i].hs = &hs;
    }
    pthread_create(&hs_th, NULL, hs_thread, &hs);
  }
  uint64_t hs_t0 = h_now_ns();
  int late = h_produce(run, hd_send, &x, NULL);
  uint64_t hs_t1 = h_now_ns();
  wait_empty(&x, 30);
  if (late == 0) run->t_last_complete = h_now_ns(); /* the deletes (DONE) are inside the timing */
  char more[512];
  hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  hd_server_stats(x.s, &st);
  long hs_done = 0;
  if (handshake) {
    atomic_store(&hs.stop, 1);
    uv_async_send(&hs.wake);
    pthread_join(hs_th, NULL);
    hs_done = hs.done;
  }
  snprintf(more, sizeof more,
           "\"commits\":%" PRIu64 ",\"pending_after\":%" PRIu64 ",\"add_failed\":%ld,"
           "\"threads\":\"server and client in one process, each on its own loop thread\"",
           st.commits, st.pending_total, atomic_load(&x.add_failed));
  if (handshake) {
    double secs = (double)(hs_t1 - hs_t0) / 1e9;
    snprintf(more + strlen(more), sizeof more - strlen(more),
             ",\"handshakes\":%ld,\"handshakes_per_s\":%.1f,\"hs_concurrency\":%d,"
             "\"hs_p50_us\":%.1f,\"hs_p99_us\":%.1f",
             hs_done, (double)hs_done / secs, hs_conc, h_pct(&hs.lat, 50) / 1e3, h_pct(&hs.lat, 99) / 1e3);
    run->c.mode = "handshake";
  }
  int rc = h_report(run, late, more);
  hd_client_close_wait(x.c);
  hd_server_close_wait(x.s);
  if (handshake) uv_loop_close(&hs.loop);
  return rc;
}

/* =============================== idle: 10,000 connections =============================== */

static void user_key(hd_keypair_t *kp, long i) {
  uint8_t seed[32] = {0};
  memcpy(seed, &i, sizeof i);
  seed[31] = 0x5a;
  hd_keypair_from_seed(kp, seed);
}

typedef struct idle_srv {
  hd_server_t *s;
  atomic_long completed;
  atomic_long dups;
} idle_srv_t;
static uint8_t *idle_seen;
static long idle_users, idle_rounds;
static void idle_consumed(void *ud, const uint8_t user[32], hd_consumed_t *batch) {
  (void)user;
  idle_srv_t *x = ud;
  size_t n = hd_consumed_count(batch);
  for (size_t i = 0; i < n; i++) {
    hd_event_info_t ev;
    if (hd_consumed_event(batch, i, &ev) != 0) continue;
    uint64_t id = h_id_of(ev.payload, ev.payload_len);
    if (id < (uint64_t)(idle_users * idle_rounds) && !idle_seen[id]) {
      idle_seen[id] = 1;
      atomic_fetch_add(&x->completed, 1);
    } else atomic_fetch_add(&x->dups, 1);
  }
  hd_consumed_complete_all(batch, 1);
}
static void idle_added(void *ud, int status, uint64_t seq) {
  (void)ud, (void)seq;
  if (status != 0) fprintf(stderr, "idle-server: add failed %d\n", status);
}

static int role_idle_server(long n, long inflight) {
  h_raise_nofile();
  char sdir[600];
  snprintf(sdir, sizeof sdir, "%s/server", tmpdir);
  uint8_t sk[32];
  if (hd_hex_decode(sk, 32, getenv("HD_E2E_SEED")) != 0) return 2;
  hd_keypair_from_seed(&server_kp, sk);
  idle_srv_t x;
  memset(&x, 0, sizeof x);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &server_kp;
  o.topic = "e2e";
  o.listen = "127.0.0.1:0";
  o.data_dir = sdir;
  o.sync_normal = sync_normal;
  o.on_consumed = idle_consumed;
  o.user_data = &x;
  o.keepalive_ms = 60000; /* idle means idle: no ping traffic during the measurement */
  int rc = hd_server_create(&x.s, &o);
  if (rc != 0) die("server", rc);
  uint8_t(*users)[32] = malloc((size_t)n * 32);
  for (long i = 0; i < n; i++) {
    hd_keypair_t kp;
    user_key(&kp, i);
    memcpy(users[i], kp.public_key, 32);
  }
  printf("port %d\n", hd_server_port(x.s));
  fflush(stdout);
  char line[128];
  while (fgets(line, sizeof line, stdin)) {
    if (strncmp(line, "rss", 3) == 0) {
      hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
      hd_server_stats(x.s, &st);
      printf("rss %ld %" PRIu64 "\n", h_rss_kib_of(0, "VmRSS"), st.connected_users);
    } else if (strncmp(line, "fanin", 5) == 0) {
      idle_rounds = atol(line + 6);
      idle_users = n;
      long total = n * idle_rounds;
      idle_seen = calloc((size_t)total, 1);
      uint8_t payload[256];
      long plen = 100;
      double t0 = h_now_s(), end = t0 + 120;
      long id = 0;
      for (long r = 0; r < idle_rounds; r++)
        for (long u = 0; u < n; u++, id++) {
          while (id - atomic_load(&x.completed) >= inflight && h_now_s() < end) usleep(100);
          h_fill(payload, plen, (uint64_t)id);
          hd_server_add_event(x.s, users[u], payload, (size_t)plen, idle_added, NULL);
        }
      while (atomic_load(&x.completed) < total && h_now_s() < end) usleep(200);
      double t1 = h_now_s();
      printf("fanin %ld %.3f %ld\n", atomic_load(&x.completed), t1 - t0, atomic_load(&x.dups));
    } else if (strncmp(line, "stop", 4) == 0) break;
    fflush(stdout);
  }
  fflush(stdout);
  _exit(0); /* 10,000 orderly goodbyes are not what is measured */
}

typedef struct idle_cl {
  hd_client_t *c;
  long idx;
  uint64_t last_seq;
  long handled, bad;
} idle_cl_t;
static atomic_long icl_connected, icl_handled, icl_bad;
static void icl_event(void *ud, hd_event_t *e) {
  idle_cl_t *c = ud;
  uint64_t seq = hd_event_seq(e);
  if (seq != c->last_seq + 1) atomic_fetch_add(&icl_bad, 1);
  c->last_seq = seq;
  atomic_fetch_add(&icl_handled, 1);
  hd_event_complete(e, 1, NULL, 0);
}
static void icl_conn(void *ud, const uint8_t pk[32]) {
  (void)pk, (void)ud;
  atomic_fetch_add(&icl_connected, 1);
}
typedef struct iloop {
  uv_loop_t loop;
  uv_timer_t keep;
} iloop_t;
static atomic_int icl_stop;
static void keep_cb(uv_timer_t *t) {
  if (atomic_load(&icl_stop)) uv_stop(t->loop);
}
static void *iloop_thread(void *arg) {
  iloop_t *l = arg;
  uv_run(&l->loop, UV_RUN_DEFAULT);
  return NULL;
}

static int role_idle_clients(long from, long to, int loops, int port) {
  h_raise_nofile();
  uint8_t sk[32];
  if (hd_hex_decode(sk, 32, getenv("HD_E2E_SEED")) != 0) return 2;
  hd_keypair_from_seed(&server_kp, sk);
  iloop_t *ls = calloc((size_t)loops, sizeof *ls);
  for (int i = 0; i < loops; i++) {
    uv_loop_init(&ls[i].loop);
    uv_timer_init(&ls[i].loop, &ls[i].keep);
    uv_timer_start(&ls[i].keep, keep_cb, 100, 100);
  }
  long n = to - from;
  idle_cl_t *cl = calloc((size_t)n, sizeof *cl);
  /* created before the loops run (allowed: the loop is not running yet) */
  for (long i = 0; i < n; i++) {
    hd_keypair_t kp;
    user_key(&kp, from + i);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/c%ld", tmpdir, from + i);
    char connect[64];
    snprintf(connect, sizeof connect, "127.0.0.1:%d", port);
    hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
    o.keypair = &kp;
    o.server_public_key = server_kp.public_key;
    o.topic = "e2e";
    o.connect = connect;
    o.data_dir = dir;
    o.sync_normal = sync_normal;
    o.on_event = icl_event;
    o.on_connected = icl_conn;
    o.user_data = &cl[i];
    o.loop = &ls[i % loops].loop;
    o.keepalive_ms = 60000;
    o.handshake_timeout_ms = 60000;
    o.reconnect_min_ms = 200;
    cl[i].idx = from + i;
    int rc = hd_client_create(&cl[i].c, &o);
    if (rc != 0) die("idle client", rc);
  }
  pthread_t *th = calloc((size_t)loops, sizeof *th);
  for (int i = 0; i < loops; i++) pthread_create(&th[i], NULL, iloop_thread, &ls[i]);
  /* report counts on stdout every 200 ms until stdin says stop (or closes) */
  fcntl(0, F_SETFL, O_NONBLOCK);
  char buf[64];
  for (int k = 0; k < 3000; k++) { /* 600 s at most */
    printf("count %ld %ld %ld\n", atomic_load(&icl_connected), atomic_load(&icl_handled), atomic_load(&icl_bad));
    fflush(stdout);
    usleep(200000);
    ssize_t r = read(0, buf, sizeof buf);
    if (r == 0 || (r > 0 && strncmp(buf, "stop", 4) == 0)) break;
  }
  atomic_store(&icl_stop, 1);
  _exit(0);
}

typedef struct proc {
  pid_t pid;
  int in, out;
  char buf[8192];
  size_t len;
} proc_t;

static proc_t spawn(char **argv) {
  proc_t p;
  memset(&p, 0, sizeof p);
  int o[2], i[2];
  if (pipe(o) || pipe(i)) exit(1);
  p.pid = fork();
  if (p.pid == 0) {
    dup2(o[1], 1);
    dup2(i[0], 0);
    close(o[0]), close(o[1]), close(i[0]), close(i[1]);
    execv("/proc/self/exe", argv);
    _exit(127);
  }
  close(o[1]);
  close(i[0]);
  p.out = o[0];
  p.in = i[1];
  fcntl(p.out, F_SETFL, O_NONBLOCK);
  return p;
}
/* the last complete line starting with `prefix` read so far (non-blocking), or NULL */
static int read_line(proc_t *p, const char *prefix, char *out, size_t cap) {
  int found = 0;
  for (;;) {
    ssize_t r = read(p->out, p->buf + p->len, sizeof p->buf - p->len - 1);
    if (r <= 0) break;
    p->len += (size_t)r;
  }
  char *nl;
  while ((nl = memchr(p->buf, '\n', p->len)) != NULL) {
    *nl = 0;
    if (strncmp(p->buf, prefix, strlen(prefix)) == 0) {
      snprintf(out, cap, "%.*s", (int)cap - 1, p->buf);
      found = 1;
    }
    size_t used = (size_t)(nl - p->buf) + 1;
    memmove(p->buf, p->buf + used, p->len - used);
    p->len -= used;
  }
  return found;
}
static int wait_line(proc_t *p, const char *prefix, char *out, size_t cap, double secs) {
  double end = h_now_s() + secs;
  while (h_now_s() < end) {
    if (read_line(p, prefix, out, cap)) return 0;
    usleep(2000);
  }
  return -1;
}
static void say(proc_t *p, const char *s) {
  ssize_t w = write(p->in, s, strlen(s));
  (void)w;
}

static int mode_idle(h_cfg_t *cfg, long n, int procs, int loops, long rounds) {
  signal(SIGPIPE, SIG_IGN);
  uint8_t seed[32];
  char seedhex[65];
  hd_keypair_t tmp;
  hd_keypair_generate(&tmp);
  memcpy(seed, tmp.public_key, 32);
  hd_hex_encode(seedhex, sizeof seedhex, seed, 32);
  setenv("HD_E2E_SEED", seedhex, 1);
  char ns[32], inf[32], from[32], to[32], lp[32], port[32];
  snprintf(ns, sizeof ns, "%ld", n);
  snprintf(inf, sizeof inf, "%ld", cfg->inflight);
  char *sargv[] = {"hd_e2e", "--role", "idle-server", "--clients", ns, "--inflight", inf, "--dir",
                   tmpdir, "--sync", sync_normal ? "normal" : "full", NULL};
  proc_t srv = spawn(sargv);
  proc_t *cl = calloc((size_t)procs, sizeof *cl);
  char line[256];
  int rc = 1;
  double t_conn = 0;
  long rss0 = 0, rss1 = 0, rss2 = 0;
  if (wait_line(&srv, "port", line, sizeof line, 20) != 0) goto out;
  snprintf(port, sizeof port, "%.20s", line + 5);
  say(&srv, "rss\n");
  if (wait_line(&srv, "rss", line, sizeof line, 10) != 0) goto out;
  rss0 = atol(line + 4);
  double t0 = h_now_s();
  for (int i = 0; i < procs; i++) {
    snprintf(from, sizeof from, "%ld", n * i / procs);
    snprintf(to, sizeof to, "%ld", n * (i + 1) / procs);
    snprintf(lp, sizeof lp, "%d", loops);
    char *cargv[] = {"hd_e2e", "--role", "idle-clients", "--from", from, "--to", to, "--loops", lp,
                     "--port", port, "--dir", tmpdir, "--sync", sync_normal ? "normal" : "full", NULL};
    cl[i] = spawn(cargv);
  }
  long conn = 0, handled = 0, bad = 0;
  double end = h_now_s() + 180;
  while (h_now_s() < end) {
    conn = handled = bad = 0;
    for (int i = 0; i < procs; i++) {
      static char last[16][128];
      read_line(&cl[i], "count", last[i], sizeof last[i]);
      long a = 0, b = 0, c = 0;
      sscanf(last[i], "count %ld %ld %ld", &a, &b, &c);
      conn += a, handled += b, bad += c;
    }
    if (conn >= n) break;
    usleep(50000);
  }
  t_conn = h_now_s() - t0;
  fprintf(stderr, "idle: %ld of %ld connected in %.2f s\n", conn, n, t_conn);
  if (conn < n) goto out;
  sleep(2);
  say(&srv, "rss\n");
  if (wait_line(&srv, "rss", line, sizeof line, 10) != 0) goto out;
  long users = 0;
  sscanf(line, "rss %ld %ld", &rss1, &users);
  char cmd[64];
  snprintf(cmd, sizeof cmd, "fanin %ld\n", rounds);
  say(&srv, cmd);
  if (wait_line(&srv, "fanin", line, sizeof line, 150) != 0) goto out;
  long fcomp = 0, fdups = 0;
  double fsecs = 0;
  sscanf(line, "fanin %ld %lf %ld", &fcomp, &fsecs, &fdups);
  usleep(500000);
  long chandled = 0, cbad = 0;
  for (int i = 0; i < procs; i++) {
    char last[128] = "";
    wait_line(&cl[i], "count", last, sizeof last, 2);
    long a = 0, b = 0, c = 0;
    sscanf(last, "count %ld %ld %ld", &a, &b, &c);
    chandled += b, cbad += c;
  }
  say(&srv, "rss\n");
  if (wait_line(&srv, "rss", line, sizeof line, 10) == 0) rss2 = atol(line + 4);
  int exact = fcomp == n * rounds && fdups == 0 && cbad == 0 && chandled == n * rounds;
  char json[1024];
  snprintf(json, sizeof json,
           "{\"system\":\"hyperdown\",\"durability\":\"%s\",\"mode\":\"idle\",\"clients\":%ld,"
           "\"connected_users\":%ld,\"connect_all_s\":%.2f,\"server_rss_before_kib\":%ld,"
           "\"server_rss_idle_kib\":%ld,\"server_rss_after_fanin_kib\":%ld,"
           "\"bytes_per_idle_conn\":%.0f,\"fanin_events\":%ld,\"fanin_rounds\":%ld,"
           "\"fanin_inflight\":%ld,\"fanin_seconds\":%.3f,\"fanin_events_per_s\":%.1f,"
           "\"exactly_once\":%s,\"client_handled\":%ld,\"client_out_of_order\":%ld,"
           "\"threads\":\"server process + %d client processes x %d caller-owned loops\"}",
           cfg->durability, n, users, t_conn, rss0, rss1, rss2, (double)(rss1 - rss0) * 1024.0 / (double)n,
           fcomp, rounds, cfg->inflight, fsecs, fsecs > 0 ? (double)fcomp / fsecs : 0,
           exact ? "true" : "false", chandled, cbad, procs, loops);
  printf("%s\n", json);
  if (cfg->out) {
    FILE *f = fopen(cfg->out, "a");
    if (f) fprintf(f, "%s\n", json), fclose(f);
  }
  rc = exact ? 0 : 1;
out:
  if (rc) fprintf(stderr, "idle: failed\n");
  for (int i = 0; i < procs; i++)
    if (cl[i].pid > 0) say(&cl[i], "stop\n");
  say(&srv, "stop\n");
  usleep(300000);
  for (int i = 0; i < procs; i++)
    if (cl[i].pid > 0) kill(cl[i].pid, SIGKILL), waitpid(cl[i].pid, NULL, 0);
  if (srv.pid > 0) kill(srv.pid, SIGKILL), waitpid(srv.pid, NULL, 0);
  return rc;
}

/* =============================== main =============================== */

int main(int argc, char **argv) {
  h_cfg_t cfg;
  h_cfg_defaults(&cfg);
  cfg.system = "hyperdown";
  const char *role = NULL, *dir = NULL;
  long clients = 10000, from = 0, to = 0, rounds = 1;
  int procs = 4, loops = 2, hs_conc = 8;
  for (int i = 1; i < argc; i++) {
    if (h_parse(&cfg, argc, argv, &i)) continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (strcmp(a, "--sync") == 0) sync_normal = strcmp(v, "normal") == 0;
    else if (strcmp(a, "--role") == 0) role = v;
    else if (strcmp(a, "--dir") == 0) dir = v;
    else if (strcmp(a, "--clients") == 0) clients = atol(v);
    else if (strcmp(a, "--from") == 0) from = atol(v);
    else if (strcmp(a, "--to") == 0) to = atol(v);
    else if (strcmp(a, "--procs") == 0) procs = atoi(v);
    else if (strcmp(a, "--loops") == 0) loops = atoi(v);
    else if (strcmp(a, "--rounds") == 0) rounds = atol(v);
    else if (strcmp(a, "--hs-concurrency") == 0) hs_conc = atoi(v);
    else goto usage;
    i++;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (strcmp(cfg.durability, "?") == 0) cfg.durability = sync_normal ? "synchronous=NORMAL" : "synchronous=FULL";
  if (role) {
    snprintf(tmpdir, sizeof tmpdir, "%s", dir ? dir : "/tmp");
    if (strcmp(role, "idle-server") == 0) return role_idle_server(clients, cfg.inflight);
    if (strcmp(role, "idle-clients") == 0) return role_idle_clients(from, to, loops, cfg.port);
    goto usage;
  }
  snprintf(tmpdir, sizeof tmpdir, "%s/hd-e2e-XXXXXX", dir ? dir : "/tmp");
  if (!mkdtemp(tmpdir)) return 1;
  int rc;
  if (strcmp(cfg.mode, "idle") == 0) rc = mode_idle(&cfg, clients, procs, loops, rounds);
  else rc = mode_run(&cfg, hs_conc);
  rm_rf(tmpdir);
  return rc;
usage:
  fprintf(stderr, "usage: hd_e2e --mode tput|lat|paced|handshake|idle [--sync full|normal] "
                  "[--inflight N] [--events N] [--duration S] [--rate R] [--payload B] [--out F] "
                  "[--curves DIR] [--clients N --procs P --loops L --rounds R] [--hs-concurrency C]\n");
  return 2;
}
