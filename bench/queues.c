/* The queue semantics' costs (docs/BENCHMARKS.md, "Queue semantics"), each beside its reference
 * measured in the same run:
 *
 *   adds     adds with a time to live and a deduplication key vs plain adds (1,000 users, FULL,
 *            a window of adds in flight so that group commit works for both)
 *   fanout   one fan-out to N users vs N single adds of the same payload: time, and the store's
 *            bytes on disk after a clean close
 *   expiry   U users online receiving paced adds; the p99 of add → handler without a sweep, then
 *            while a sweep deletes M expired events of offline users; the process's peak RSS
 *
 * Usage: queues [adds|fanout|expiry|all] [--events N] [--users N] [--fanout N] [--expire M]
 *               [--online U] [--payload BYTES]
 * Everything runs in this process on 127.0.0.1, in a scratch folder under $TMPDIR (removed). */
#define _GNU_SOURCE
#include <hyperdown.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "bench-queues"
#define IN_FLIGHT 8192

static size_t n_events = 200000, n_users = 1000, n_fanout = 100000, n_expire = 1000000;
static size_t n_online = 1000, payload_len = 100;
/* what the adds beside plain ones carry: 1 a time to live, 2 a dedup key, 3 both (the target's) */
static int adds_mode = 3;
static size_t expiry_batch = 0; /* the server's expiry_batch (0: its default) */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "queues: %s: %s (%s)\n", what, hd_strerror(rc), hd_last_error_message());
  exit(1);
}

static char scratch[256];

static void rm_rf(const char *path) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
  if (system(cmd) != 0) fprintf(stderr, "queues: could not remove %s\n", path);
}

static uint64_t dir_bytes(const char *path) {
  DIR *d = opendir(path);
  if (d == NULL) return 0;
  uint64_t sum = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strncmp(e->d_name, "hyperdown.db", 12) != 0) continue;
    char p[600];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    if (stat(p, &st) == 0) sum += (uint64_t)st.st_size;
  }
  closedir(d);
  return sum;
}

static long peak_rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  while (f != NULL && fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  if (f != NULL) fclose(f);
  return kib;
}

/* ---- a window of asynchronous adds ----------------------------------------------------------- */

typedef struct window {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t in_flight;
  size_t failed;
} window_t;

static void window_init(window_t *w) {
  pthread_mutex_init(&w->mu, NULL);
  pthread_cond_init(&w->cv, NULL);
  w->in_flight = 0;
  w->failed = 0;
}

static void window_take(window_t *w) {
  pthread_mutex_lock(&w->mu);
  while (w->in_flight >= IN_FLIGHT) pthread_cond_wait(&w->cv, &w->mu);
  w->in_flight++;
  pthread_mutex_unlock(&w->mu);
}

static void window_give(window_t *w, int status) {
  pthread_mutex_lock(&w->mu);
  w->in_flight--;
  if (status != 0) w->failed++;
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
}

static void window_drain(window_t *w) {
  pthread_mutex_lock(&w->mu);
  while (w->in_flight > 0) pthread_cond_wait(&w->cv, &w->mu);
  pthread_mutex_unlock(&w->mu);
}

static void on_added(void *data, int status, uint64_t seq) {
  (void)seq;
  window_give(data, status);
}
static void on_added2(void *data, int status, const hd_add_result_t *r) {
  (void)r;
  window_give(data, status);
}

static hd_server_t *server_open(const hd_keypair_t *kp, const char *dir, uint64_t default_ttl_ms) {
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = kp;
  o.topic = TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = dir;
  o.default_ttl_ms = default_ttl_ms;
  o.expiry_batch = (uint32_t)expiry_batch;
  o.max_handshakes = UINT32_MAX;
  o.handshakes_per_address = UINT32_MAX;
  hd_server_t *s;
  int rc = hd_server_create(&s, &o);
  if (rc != 0) die("server", rc);
  return s;
}

static hd_keypair_t *keys(size_t n) {
  hd_keypair_t *k = malloc(n * sizeof *k);
  for (size_t i = 0; i < n; i++) hd_keypair_generate(&k[i]);
  return k;
}

/* ---- adds ------------------------------------------------------------------------------------ */

static double adds_run(const hd_keypair_t *kp, const hd_keypair_t *users, int with_options,
                       int rep) {
  char dir[400];
  snprintf(dir, sizeof dir, "%s/adds-%d-%d", scratch, with_options, rep);
  hd_server_t *s = server_open(kp, dir, 0);
  uint8_t *payload = calloc(1, payload_len);
  window_t w;
  window_init(&w);
  char key[32];
  double t0 = now_s();
  for (size_t i = 0; i < n_events; i++) {
    const uint8_t *user = users[i % n_users].public_key;
    window_take(&w);
    int rc;
    if (with_options) {
      hd_add_options_t ao = HD_ADD_OPTIONS_INIT;
      if (with_options & 1) ao.ttl_ms = 3600 * 1000;
      int kl = snprintf(key, sizeof key, "order-%zu", i);
      if (with_options & 2) {
        ao.dedup_key = (const uint8_t *)key;
        ao.dedup_key_len = (size_t)kl;
      }
      rc = hd_server_add_event_v2(s, user, payload, payload_len, &ao, on_added2, &w);
    } else {
      rc = hd_server_add_event(s, user, payload, payload_len, on_added, &w);
    }
    if (rc != 0) die("add", rc);
  }
  window_drain(&w);
  double rate = (double)n_events / (now_s() - t0);
  if (w.failed != 0) die("an add failed", HD_ESTORE);
  hd_server_close_wait(s);
  free(payload);
  rm_rf(dir);
  return rate;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void bench_adds(const hd_keypair_t *kp) {
  hd_keypair_t *users = keys(n_users);
  double plain[3], opts[3];
  for (int r = 0; r < 3; r++) { /* interleaved, so that drift hits both alike */
    plain[r] = adds_run(kp, users, 0, r);
    opts[r] = adds_run(kp, users, adds_mode, r);
  }
  qsort(plain, 3, sizeof(double), cmp_double);
  qsort(opts, 3, sizeof(double), cmp_double);
  printf("adds: %zu events, %zu users, %zu B, FULL, %d in flight\n", n_events, n_users,
         payload_len, IN_FLIGHT);
  printf("  plain adds          %9.0f events/s (median of 3)\n", plain[1]);
  printf("  ttl + dedup key     %9.0f events/s (median of 3)\n", opts[1]);
  printf("  ratio               %9.2fx   target >= 0.8x: %s\n", opts[1] / plain[1],
         opts[1] / plain[1] >= 0.8 ? "met" : "missed");
  free(users);
}

/* ---- fan-out --------------------------------------------------------------------------------- */

static void bench_fanout(const hd_keypair_t *kp) {
  hd_keypair_t *k = keys(n_fanout);
  uint8_t *users = malloc(n_fanout * 32);
  for (size_t i = 0; i < n_fanout; i++) memcpy(users + 32 * i, k[i].public_key, 32);
  free(k);
  uint8_t *payload = malloc(payload_len);
  memset(payload, 'x', payload_len);
  char dir[400];

  /* each way twice on one store: to users it does not know yet (each add makes the user's row),
   * then to the same users again */
  double fan_s[2], single_s[2];
  uint64_t fan_bytes, single_bytes;
  hd_fanout_result_t *res = malloc(n_fanout * sizeof *res);
  snprintf(dir, sizeof dir, "%s/fanout", scratch);
  hd_server_t *s = server_open(kp, dir, 0);
  for (int round = 0; round < 2; round++) {
    double t0 = now_s();
    int rc = hd_server_add_fanout_wait(s, users, n_fanout, payload, payload_len, NULL, res);
    fan_s[round] = now_s() - t0;
    if (rc != 0) die("fan-out", rc);
    for (size_t i = 0; i < n_fanout; i++) {
      if (res[i].status != 0) die("a fan-out user failed", res[i].status);
    }
  }
  hd_server_close_wait(s);
  fan_bytes = dir_bytes(dir);
  rm_rf(dir);

  snprintf(dir, sizeof dir, "%s/singles", scratch);
  s = server_open(kp, dir, 0);
  window_t w;
  window_init(&w);
  for (int round = 0; round < 2; round++) {
    double t0 = now_s();
    for (size_t i = 0; i < n_fanout; i++) {
      window_take(&w);
      int rc = hd_server_add_event(s, users + 32 * i, payload, payload_len, on_added, &w);
      if (rc != 0) die("add", rc);
    }
    window_drain(&w);
    single_s[round] = now_s() - t0;
  }
  hd_server_close_wait(s);
  single_bytes = dir_bytes(dir);
  rm_rf(dir);

  printf("fanout: %zu users, %zu B payload, FULL; twice each (new users, then the same again)\n",
         n_fanout, payload_len);
  printf("  one fan-out         %8.3f s then %8.3f s  %10" PRIu64 " bytes on disk\n", fan_s[0],
         fan_s[1], fan_bytes);
  printf("  single adds         %8.3f s then %8.3f s  %10" PRIu64 " bytes on disk (%d in flight)\n",
         single_s[0], single_s[1], single_bytes, IN_FLIGHT);
  printf("  ratio (fan-out / singles)  time %.2fx then %.2fx  bytes %.2fx\n", fan_s[0] / single_s[0],
         fan_s[1] / single_s[1], (double)fan_bytes / (double)single_bytes);
  free(res);
  free(users);
  free(payload);
}

/* ---- expiry under online load ----------------------------------------------------------------- */

typedef struct lat {
  pthread_mutex_t mu;
  int64_t *us;
  size_t n, cap;
  int recording;
} lat_t;

static lat_t lat;

static void on_event(void *data, hd_event_t *e) {
  (void)data;
  hd_event_info_t info;
  if (hd_event_info(e, &info) == 0 && info.payload_len >= sizeof(int64_t)) {
    int64_t sent;
    memcpy(&sent, info.payload, sizeof sent);
    int64_t d = now_us() - sent;
    pthread_mutex_lock(&lat.mu);
    if (lat.recording && lat.n < lat.cap) lat.us[lat.n++] = d;
    pthread_mutex_unlock(&lat.mu);
  }
  hd_event_complete(e, 1, NULL, 0);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Paced adds to the online users for `seconds`; the p99 of what arrived (µs). */
static double paced_p99(hd_server_t *s, const hd_keypair_t *online, double seconds, double rate,
                        size_t *got) {
  pthread_mutex_lock(&lat.mu);
  lat.n = 0;
  lat.recording = 1;
  pthread_mutex_unlock(&lat.mu);
  uint8_t payload[128];
  memset(payload, 0, sizeof payload);
  size_t len = payload_len < sizeof payload ? payload_len : sizeof payload;
  if (len < sizeof(int64_t)) len = sizeof(int64_t);
  double t0 = now_s(), interval = 1.0 / rate;
  size_t sent = 0;
  while (now_s() - t0 < seconds) {
    double due = t0 + (double)sent * interval;
    double wait = due - now_s();
    if (wait > 0) {
      struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
      nanosleep(&ts, NULL);
    }
    int64_t t = now_us();
    memcpy(payload, &t, sizeof t);
    int rc = hd_server_add_event(s, online[sent % n_online].public_key, payload, len, NULL, NULL);
    if (rc != 0) die("paced add", rc);
    sent++;
  }
  sleep(1); /* the last ones arrive */
  pthread_mutex_lock(&lat.mu);
  lat.recording = 0;
  size_t n = lat.n;
  qsort(lat.us, n, sizeof(int64_t), cmp_i64);
  double p99 = n ? (double)lat.us[(size_t)((double)n * 0.99)] : -1;
  pthread_mutex_unlock(&lat.mu);
  *got = n;
  return p99;
}

static void bench_expiry(const hd_keypair_t *kp) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  char dir[400];
  snprintf(dir, sizeof dir, "%s/expiry-server", scratch);
  hd_server_t *s = server_open(kp, dir, 0);
  int port = hd_server_port(s);
  pthread_mutex_init(&lat.mu, NULL);
  lat.cap = 1 << 20;
  lat.us = malloc(lat.cap * sizeof(int64_t));

  hd_keypair_t *online = keys(n_online);
  hd_client_t **clients = calloc(n_online, sizeof *clients);
  char connect[64];
  snprintf(connect, sizeof connect, "127.0.0.1:%d", port);
  for (size_t i = 0; i < n_online; i++) {
    char cdir[450];
    snprintf(cdir, sizeof cdir, "%s/client-%zu", scratch, i);
    hd_client_options_t co = HD_CLIENT_OPTIONS_INIT;
    co.keypair = &online[i];
    co.server_public_key = kp->public_key;
    co.topic = TOPIC;
    co.connect = connect;
    co.data_dir = cdir;
    co.on_event = on_event;
    int rc = hd_client_create(&clients[i], &co);
    if (rc != 0) die("client", rc);
  }
  sleep(3); /* every client connected */

  /* M events for offline users, a fan-out per 1,000 users, every one expiring at the same time
   * (the ttl of each call is what is left until then), so that the baseline runs before it */
  size_t offline_users = 1000, per_user = n_expire / offline_users;
  hd_keypair_t *off = keys(offline_users);
  uint8_t *ou = malloc(offline_users * 32);
  for (size_t i = 0; i < offline_users; i++) memcpy(ou + 32 * i, off[i].public_key, 32);
  uint8_t payload[128] = {0};
  double t0 = now_s(), expire_at = t0 + 90.0;
  for (size_t j = 0; j < per_user; j++) {
    hd_add_options_t ao = HD_ADD_OPTIONS_INIT;
    double left = expire_at - now_s();
    if (left < 7.0) die("preload slower than 83 s: use a smaller --expire", HD_ETIMEDOUT);
    ao.ttl_ms = (uint64_t)(left * 1000);
    int rc = hd_server_add_fanout_wait(s, ou, offline_users, payload, payload_len, &ao, NULL);
    if (rc != 0) die("preload", rc);
  }
  double preload = now_s() - t0;
  while (now_s() < expire_at - 6.0) usleep(10000);

  size_t got_base = 0, got_sweep = 0;
  double base = paced_p99(s, online, 5.0, 1000.0, &got_base);
  while (now_s() < expire_at) usleep(1000);
  double sweep = paced_p99(s, online, 10.0, 1000.0, &got_sweep);
  hd_server_stats_t st1 = {.version = HD_SERVER_STATS_VERSION};
  hd_server_stats(s, &st1);
  uint64_t expired_in_window = st1.events_expired;
  double t1 = now_s();
  while (now_s() - t1 < 120) {
    hd_server_stats(s, &st1);
    if (st1.events_expired >= per_user * offline_users) break;
    usleep(100000);
  }
  double sweep_total = now_s() - t1;

  printf("expiry: %zu events of %zu offline users expire while %zu users receive 1,000 adds/s\n",
         per_user * offline_users, offline_users, n_online);
  printf("  preload (fan-outs)  %8.2f s\n", preload);
  printf("  online p99 without a sweep  %8.0f us (%zu events)\n", base, got_base);
  printf("  online p99 during the sweep %8.0f us (%zu events), expired meanwhile %" PRIu64 "\n",
         sweep, got_sweep, expired_in_window);
  printf("  ratio %.2fx   target <= 2x: %s\n", sweep / base, sweep / base <= 2.0 ? "met" : "missed");
  printf("  every event expired %s (%.1f s after the measured window)\n",
         st1.events_expired >= per_user * offline_users ? "yes" : "NO", sweep_total);
  printf("  peak RSS of the process (server + %zu clients) %ld KiB\n", n_online, peak_rss_kib());

  for (size_t i = 0; i < n_online; i++) hd_client_close_wait(clients[i]);
  hd_server_close_wait(s);
  free(clients);
  free(online);
  free(off);
  free(ou);
  free(lat.us);
}

int main(int argc, char **argv) {
  const char *what = "all";
  for (int i = 1; i < argc; i++) {
    size_t *knob = NULL;
    if (strcmp(argv[i], "--events") == 0) knob = &n_events;
    else if (strcmp(argv[i], "--users") == 0) knob = &n_users;
    else if (strcmp(argv[i], "--fanout") == 0) knob = &n_fanout;
    else if (strcmp(argv[i], "--expire") == 0) knob = &n_expire;
    else if (strcmp(argv[i], "--online") == 0) knob = &n_online;
    else if (strcmp(argv[i], "--payload") == 0) knob = &payload_len;
    else if (strcmp(argv[i], "--expiry-batch") == 0) knob = &expiry_batch;
    else what = argv[i];
    if (knob != NULL) {
      if (++i >= argc) {
        fprintf(stderr, "queues: %s needs a number\n", argv[i - 1]);
        return 2;
      }
      *knob = strtoull(argv[i], NULL, 10);
    }
  }
  if (payload_len < sizeof(int64_t) || payload_len > 128) {
    fprintf(stderr, "queues: --payload between 8 and 128\n");
    return 2;
  }
  if (getenv("QUEUES_ADDS_MODE") != NULL) adds_mode = atoi(getenv("QUEUES_ADDS_MODE"));
  const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(scratch, sizeof scratch, "%s/hd-bench-queues-XXXXXX", tmp);
  if (mkdtemp(scratch) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  if (strcmp(what, "adds") == 0 || strcmp(what, "all") == 0) bench_adds(&kp);
  if (strcmp(what, "fanout") == 0 || strcmp(what, "all") == 0) bench_fanout(&kp);
  if (strcmp(what, "expiry") == 0 || strcmp(what, "all") == 0) bench_expiry(&kp);
  rm_rf(scratch);
  return 0;
}
