/* Redial after a restart (docs/BENCHMARKS.md, "Redial after a restart"): N clients on one loop
 * in this process, their server in a child process. Once every client is connected, the server
 * is killed (SIGKILL: every connection drops in the same instant, the harshest case) and started
 * again on the same port and store. Each client's first dial after the kill is timed (client.h's
 * dial observer, called as a dial starts); the figure is the busiest 10 ms window of those first redials against
 * the uniform share, count / (span / 10 ms): 1 is perfectly spread, N / share is everyone in the
 * same 10 ms. The clients draw each delay in [d/2, d] (client.c, jitter), d = reconnect_min_ms
 * after a working session.
 *
 * The clients are bare (client.h, hd__client_create_bare): the real client's transport, dialer,
 * backoff and handshake without an event store, since N stores would take N x 6 descriptors
 * (the per-process limit here is 20,000) for nothing this measures.
 *
 * The server is down `down_ms` before it is back (a restart's own time: the process starts and
 * opens its store). With 0 the first redials that succeed handshake on the clients' one loop,
 * whose CPU (four X25519 operations a client) then delays the timers of the others: that
 * measures the shared loop more than the jitter.
 *
 * What one loop does to the figure: it takes ~20-30 us of the loop's time to notice one lost
 * connection and as much to dial once, so 10,000 clients' losses reach their timers over a few
 * hundred ms, and timers that fall due while the loop is busy fire back to back. With a short d
 * the loop's throughput, not the draws, sets the spread (then even redials without jitter look
 * uniform over the time the loop took); "nojitter" measures that control beside the real thing.
 *
 * Usage: redial [N] [reconnect_min_ms] [down_ms] [nojitter]  (defaults 10000, 100, 1000)
 *        redial --server PORT DIR                   (the server: serves until killed) */
#include "client.h"

#include <hyperdown.h>

#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define TOPIC "bench-redial"
#define WINDOW_MS 10.0
#define BINS 25

typedef struct rec {
  atomic_int armed;          /* 1 from the kill until its first dial */
  uint64_t first_dial_ns;    /* 0: none yet */
  uint64_t lost_ns;          /* when the client saw its connection end */
  hd_client_t *c;
} rec_t;

static atomic_int connected, closed;
static uint64_t kill_ns;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* ---- the server child ---- */

static int serve(int port, const char *dir) {
  raise_nofile();
  hd_keypair_t kp;
  uint8_t seed[HD_SEED_BYTES];
  memset(seed, 0x5e, sizeof seed);
  hd_keypair_from_seed(&kp, seed);
  char listen[64];
  snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp;
  o.topic = TOPIC;
  o.listen = listen;
  o.data_dir = dir;
  o.sync_normal = 1;
  o.max_handshakes = UINT32_MAX; /* every client comes from 127.0.0.1 */
  o.handshakes_per_address = UINT32_MAX;
  o.handshake_timeout_ms = 60000;
  hd_server_t *s = NULL;
  int rc = HD_EADDRINUSE;
  for (int i = 0; i < 200 && rc == HD_EADDRINUSE; i++) {
    rc = hd_server_create(&s, &o);
    if (rc == HD_EADDRINUSE) sleep_ms(10);
  }
  if (rc != 0) {
    fprintf(stderr, "server: %s\n", hd_last_error_message());
    return 1;
  }
  printf("%d\n", hd_server_port(s));
  fflush(stdout);
  for (;;) pause();
}

/* Starts `self --server port dir`; returns its pid and reads the port it listens on. */
static pid_t spawn_server(const char *self, int *port, const char *dir) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    char p[16];
    snprintf(p, sizeof p, "%d", *port);
    execl(self, self, "--server", p, dir, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char buf[32] = {0};
  ssize_t n = read(fds[0], buf, sizeof buf - 1);
  close(fds[0]);
  if (n <= 0) return -1;
  *port = atoi(buf);
  return pid;
}

/* The supervisor, a small child forked before any client exists: it starts the server, and on
 * each line of its standard input kills it (SIGKILL), waits `down_ms` (a restart's own time)
 * and starts it again on the same port and store. The measured process never forks while its
 * clients exist (a fork of a process holding 10,000 sockets stalls its loop for a while). */
static int supervise(const char *self, const char *dir, int down_ms) {
  int port = 0;
  pid_t server = spawn_server(self, &port, dir);
  if (server < 0) return 1;
  printf("%d\n", port);
  fflush(stdout);
  char line[16];
  while (fgets(line, sizeof line, stdin) != NULL) {
    kill(server, SIGKILL);
    waitpid(server, NULL, 0);
    if (down_ms > 0) sleep_ms(down_ms);
    server = spawn_server(self, &port, dir);
    if (server < 0) return 1;
    printf("back\n");
    fflush(stdout);
  }
  kill(server, SIGKILL);
  waitpid(server, NULL, 0);
  return 0;
}

typedef struct supervisor {
  pid_t pid;
  FILE *to, *from;
  int port;
} supervisor_t;

static int supervisor_start(supervisor_t *sv, const char *self, const char *dir, int down_ms) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) return -1;
  sv->pid = fork();
  if (sv->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    _exit(supervise(self, dir, down_ms));
  }
  close(in[0]);
  close(out[1]);
  sv->to = fdopen(in[1], "w");
  sv->from = fdopen(out[0], "r");
  char line[32];
  if (fgets(line, sizeof line, sv->from) == NULL) return -1;
  sv->port = atoi(line);
  return sv->port > 0 ? 0 : -1;
}

/* ---- the clients ---- */

static void on_dial(void *ud) {
  rec_t *r = ud;
  if (atomic_load(&r->armed) && r->first_dial_ns == 0) {
    r->first_dial_ns = now_ns();
    atomic_store(&r->armed, 0);
  }
}

static void on_connected(void *ud, const uint8_t pk[32]) {
  (void)ud;
  (void)pk;
  atomic_fetch_add(&connected, 1);
}

static void on_disconnected(void *ud, const uint8_t *pk, int status) {
  rec_t *r = ud;
  (void)status;
  if (pk != NULL && atomic_load(&r->armed) && r->lost_ns == 0) r->lost_ns = now_ns();
}

static void on_closed(void *ud) {
  (void)ud;
  atomic_fetch_add(&closed, 1);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

typedef struct run {
  char dir[64];
  supervisor_t sv;
  int n, down_ms;
  rec_t *recs;
  int ok;
} run_t;

static int wait_count(atomic_int *v, int want, int seconds) {
  for (int i = 0; i < seconds * 100; i++) {
    if (atomic_load(v) >= want) return 1;
    sleep_ms(10);
  }
  return atomic_load(v) >= want;
}

static void report(run_t *r) {
  uint64_t *t = malloc(sizeof *t * (size_t)r->n);
  int m = 0;
  for (int i = 0; i < r->n; i++) {
    if (r->recs[i].first_dial_ns != 0) t[m++] = r->recs[i].first_dial_ns - kill_ns;
  }
  if (m < 2) {
    printf("only %d first redials recorded\n", m);
    free(t);
    return;
  }
  uint64_t lost_last = 0;
  for (int i = 0; i < r->n; i++) {
    if (r->recs[i].lost_ns > lost_last) lost_last = r->recs[i].lost_ns;
  }
  printf("every client saw the loss within %.1f ms of the kill\n",
         lost_last ? (double)(lost_last - kill_ns) / 1e6 : -1.0);
  /* each client's own wait, from its loss to its first redial: the draws themselves (plus the
   * loop's lateness), free of the time the loop took to notice the losses */
  uint64_t *w = malloc(sizeof *w * (size_t)r->n);
  int k = 0;
  for (int i = 0; i < r->n; i++) {
    const rec_t *c = &r->recs[i];
    if (c->lost_ns != 0 && c->first_dial_ns > c->lost_ns) w[k++] = c->first_dial_ns - c->lost_ns;
  }
  if (k > 0) {
    qsort(w, (size_t)k, sizeof *w, cmp_u64);
    printf("each client's wait from its loss to its first redial: min %.1f, p10 %.1f, median "
           "%.1f, p90 %.1f, max %.1f ms\n", (double)w[0] / 1e6, (double)w[k / 10] / 1e6,
           (double)w[k / 2] / 1e6, (double)w[k * 9 / 10] / 1e6, (double)w[k - 1] / 1e6);
  }
  free(w);
  qsort(t, (size_t)m, sizeof *t, cmp_u64);
  double span_ms = (double)(t[m - 1] - t[0]) / 1e6;
  int best = 0;
  double best_at = 0;
  for (int i = 0, j = 0; i < m; i++) {
    while (t[i] - t[j] >= (uint64_t)(WINDOW_MS * 1e6)) j++;
    if (i - j + 1 > best) {
      best = i - j + 1;
      best_at = (double)t[j] / 1e6;
    }
  }
  double share = (double)m / (span_ms / WINDOW_MS);
  printf("first redials: %d of %d clients, from %.1f to %.1f ms after the kill (span %.1f ms)\n",
         m, r->n, (double)t[0] / 1e6, (double)t[m - 1] / 1e6, span_ms);
  printf("busiest 10 ms window: %d redials (from %.1f ms); uniform share %.1f; ratio %.2fx\n",
         best, best_at, share, (double)best / share);
  printf("busiest 10 ms window holds %.1f%% of all first redials\n", 100.0 * best / m);
  int bins[BINS] = {0}, top = 0;
  for (int i = 0; i < m; i++) {
    int b = (int)((double)(t[i] - t[0]) / 1e6 / span_ms * BINS);
    if (b >= BINS) b = BINS - 1;
    if (++bins[b] > top) top = bins[b];
  }
  printf("histogram (ms after the kill: first redials):\n");
  for (int b = 0; b < BINS; b++) {
    double from = (double)t[0] / 1e6 + span_ms * b / BINS;
    int bar = top ? bins[b] * 50 / top : 0;
    printf("  %7.1f  %5d  ", from, bins[b]);
    for (int q = 0; q < bar; q++) putchar('#');
    putchar('\n');
  }
  free(t);
}

/* The controller, on its own thread while the loop runs on the main one. */
static void control(void *arg) {
  run_t *r = arg;
  if (!wait_count(&connected, r->n, 120)) {
    fprintf(stderr, "only %d of %d clients connected\n", atomic_load(&connected), r->n);
  } else {
    printf("%d clients connected; killing the server (down %d ms)\n", r->n, r->down_ms);
    for (int i = 0; i < r->n; i++) atomic_store(&r->recs[i].armed, 1);
    kill_ns = now_ns();
    fputs("restart\n", r->sv.to);
    fflush(r->sv.to);
    char line[32];
    if (fgets(line, sizeof line, r->sv.from) != NULL) {
      printf("server back after %.1f ms\n", (double)(now_ns() - kill_ns) / 1e6);
    }
    if (!wait_count(&connected, 2 * r->n, 120)) {
      fprintf(stderr, "only %d of %d clients reconnected\n", atomic_load(&connected) - r->n, r->n);
    } else {
      printf("all reconnected %.1f ms after the kill\n", (double)(now_ns() - kill_ns) / 1e6);
      r->ok = 1;
    }
    report(r);
  }
  for (int i = 0; i < r->n; i++) hd_client_close(r->recs[i].c, on_closed, NULL);
  if (!wait_count(&closed, r->n, 60)) fprintf(stderr, "clients did not all close\n");
  fclose(r->sv.to); /* the supervisor stops its server and ends */
  waitpid(r->sv.pid, NULL, 0);
}

int main(int argc, char **argv) {
  if (argc == 4 && strcmp(argv[1], "--server") == 0) return serve(atoi(argv[2]), argv[3]);
  signal(SIGPIPE, SIG_IGN);
  raise_nofile();
  static run_t r;
  r.n = argc > 1 ? atoi(argv[1]) : 10000;
  uint32_t min_ms = argc > 2 ? (uint32_t)atoi(argv[2]) : 100;
  r.down_ms = argc > 3 ? atoi(argv[3]) : 1000;
  int no_jitter = argc > 4 && strcmp(argv[4], "nojitter") == 0;
  snprintf(r.dir, sizeof r.dir, "/tmp/hd-redial-XXXXXX");
  if (mkdtemp(r.dir) == NULL) return 1;
  char self[4096];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) return 1;
  self[sl] = '\0';
  if (supervisor_start(&r.sv, self, r.dir, r.down_ms) != 0) return 1;
  printf("server on 127.0.0.1:%d; %d clients, reconnect_min_ms %u%s\n", r.sv.port, r.n, min_ms,
         no_jitter ? ", jitter OFF (every delay the full d)" : "");
  uv_loop_t loop;
  uv_loop_init(&loop);
  r.recs = calloc((size_t)r.n, sizeof *r.recs);
  hd_keypair_t server_kp;
  uint8_t seed[HD_SEED_BYTES];
  memset(seed, 0x5e, sizeof seed);
  hd_keypair_from_seed(&server_kp, seed);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", r.sv.port);
  for (int i = 0; i < r.n; i++) {
    hd_keypair_t kp;
    hd_keypair_generate(&kp);
    hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
    o.keypair = &kp;
    o.server_public_key = server_kp.public_key;
    o.topic = TOPIC;
    o.connect = addr;
    o.loop = &loop;
    o.reconnect_min_ms = min_ms;
    o.handshake_timeout_ms = 60000;
    o.user_data = &r.recs[i];
    o.on_connected = on_connected;
    o.on_disconnected = on_disconnected;
    if (hd__client_create_bare(&r.recs[i].c, &o) != 0) {
      fprintf(stderr, "client %d: %s\n", i, hd_last_error_message());
      return 1;
    }
    hd__client_set_dial_observer(r.recs[i].c, on_dial, &r.recs[i]);
    if (no_jitter) hd__client_set_jitter(r.recs[i].c, 0);
  }
  uv_thread_t ctl;
  uv_thread_create(&ctl, control, &r);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_thread_join(&ctl);
  uv_loop_close(&loop);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", r.dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r.dir);
  return r.ok ? 0 : 1;
}
