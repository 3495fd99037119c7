/* Backlog benchmark: N events (default 1,000,000) for one offline user. A server process adds
 * them (group commit: many adds in flight through hd_server_add_event and its callback, with a
 * bounded in-flight count); then a client process connects and drains them all (its handler
 * completes ok at once). Printed: the add rate, the drain rate (handled, and confirmed: both
 * stores empty), and the peak RSS (VmHWM) of each process, each with the payload size and the
 * sync mode. The run is bounded in time (--timeout).
 *
 *   backlog [EVENTS] [--payload BYTES] [--sync full|normal] [--inflight N] [--threads N]
 *           [--window N] [--timeout SECONDS] [--dir FOLDER]
 *
 * --threads: how many threads of the server process call hd_server_add_event (default 1);
 * --inflight: the most adds submitted and not yet completed, over all of them (default 16384);
 * --window: the client's window option (0: the library's default).
 *
 * The parent orchestrates two child processes (this binary again, --role server|client); each
 * child prints its own figures on its stdout, which the parent relays. Uses the public API only. */
#define _GNU_SOURCE
#include <hyperdown.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct cfg {
  long events;
  long payload;
  int sync_normal;
  long inflight;
  long window;
  long timeout_s;
  long threads;
  char dir[4096];
} cfg_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Peak resident set size of this process, in KiB (VmHWM), or -1. */
static long vm_hwm_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
  }
  fclose(f);
  return kib;
}

static const char *sync_name(const cfg_t *c) { return c->sync_normal ? "NORMAL" : "FULL"; }

static void die(const char *what, int rc) {
  fprintf(stderr, "backlog: %s: %s (%s)\n", what, hd_last_error_message(), hd_err_name(rc));
  exit(1);
}

static long dir_bytes_total;
static int du_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)p;
  (void)f;
  if (flag == FTW_F) dir_bytes_total += (long)sb->st_size;
  return 0;
}
static long dir_bytes(const char *dir) {
  dir_bytes_total = 0;
  nftw(dir, du_entry, 16, FTW_PHYS);
  return dir_bytes_total;
}

static int load_key(hd_keypair_t *kp, const char *sc_hex, const char *pk_hex) {
  uint8_t sc[32], pk[32];
  if (!sc_hex || !pk_hex || hd_hex_decode(sc, 32, sc_hex) || hd_hex_decode(pk, 32, pk_hex)) return -1;
  return hd_keypair_from_scalar(kp, sc, pk);
}

/* ================================ server process ================================ */

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long in_flight, adds_done, adds_failed;
static double last_done_at;

static void on_added(void *cb_data, int status, uint64_t seq) {
  (void)cb_data;
  (void)seq;
  pthread_mutex_lock(&mu);
  in_flight--;
  adds_done++;
  if (status != 0) adds_failed++;
  last_done_at = now_s();
  pthread_cond_signal(&cv);
  pthread_mutex_unlock(&mu);
}

typedef struct producer {
  hd_server_t *s;
  const uint8_t *user;
  const cfg_t *c;
  atomic_long next;
} producer_t;

/* Adds events while any are left, keeping at most c->inflight in flight (all producers). */
static void *producer(void *arg) {
  producer_t *p = arg;
  const cfg_t *c = p->c;
  uint8_t *payload = malloc((size_t)c->payload);
  for (long i = 0; i < c->payload; i++) payload[i] = (uint8_t)('a' + i % 26);
  for (;;) {
    long i = atomic_fetch_add(&p->next, 1);
    if (i >= c->events) break;
    pthread_mutex_lock(&mu);
    while (in_flight >= c->inflight) pthread_cond_wait(&cv, &mu);
    in_flight++;
    pthread_mutex_unlock(&mu);
    int n = snprintf((char *)payload, (size_t)c->payload, "%ld", i);
    if (n < c->payload) payload[n] = ' ';
    int rc = hd_server_add_event(p->s, p->user, payload, (size_t)c->payload, on_added, NULL);
    if (rc != 0) die("add_event", rc);
  }
  free(payload);
  return NULL;
}

static int role_server(const cfg_t *c) {
  hd_keypair_t kp;
  uint8_t user[32];
  if (load_key(&kp, getenv("BL_SKEY_S"), getenv("BL_SKEY_P")) != 0) die("server key", HD_EKEY);
  if (hd_hex_decode(user, 32, getenv("BL_USER")) != 0) die("user key", HD_EHEX);
  char sdir[4200];
  snprintf(sdir, sizeof sdir, "%s/server", c->dir);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp;
  o.topic = "backlog";
  o.listen = "127.0.0.1:0";
  o.data_dir = sdir;
  o.sync_normal = c->sync_normal;
  hd_server_t *s = NULL;
  int rc = hd_server_create(&s, &o);
  if (rc != 0) die("server", rc);
  printf("port %d\n", hd_server_port(s));
  fflush(stdout);

  producer_t pr = {s, user, c, 0};
  pthread_t th[64];
  long nth = c->threads < 1 ? 1 : c->threads > 64 ? 64 : c->threads;
  double t0 = now_s();
  for (long i = 0; i < nth; i++) pthread_create(&th[i], NULL, producer, &pr);
  for (long i = 0; i < nth; i++) pthread_join(th[i], NULL);
  pthread_mutex_lock(&mu);
  while (adds_done < c->events) pthread_cond_wait(&cv, &mu);
  double t1 = last_done_at;
  long failed = adds_failed;
  pthread_mutex_unlock(&mu);
  hd_server_stats_t st = {HD_SERVER_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0};
  hd_server_stats(s, &st);
  printf("server: added %ld events in %.2f s: %.0f events/s (payload %ld B, sync %s, "
         "%ld adding threads, %ld in flight at most, %" PRIu64 " commits, %ld failed)\n",
         c->events, t1 - t0, (double)c->events / (t1 - t0), c->payload, sync_name(c), nth,
         c->inflight, st.commits, failed);
  printf("server: store on disk after the adds: %.1f MiB\n", (double)dir_bytes(sdir) / 1048576.0);
  printf("server: peak RSS after the adds: %.1f MiB (payload %ld B, sync %s)\n",
         (double)vm_hwm_kib() / 1024.0, c->payload, sync_name(c));
  printf("ready\n");
  fflush(stdout);

  /* serve until the parent says stop (a line on stdin, or EOF) */
  char line[64];
  if (fgets(line, sizeof line, stdin) == NULL) line[0] = '\0';
  hd_server_stats(s, &st);
  printf("server: at the end: %" PRIu64 " pending, %" PRIu64 " delivered, %" PRIu64
         " consumed, %" PRIu64 " confirmed, %" PRIu64 " commits in all\n",
         st.pending_total, st.events_delivered, st.events_consumed, st.events_confirmed, st.commits);
  printf("server: peak RSS over the whole run (adds + drain): %.1f MiB (payload %ld B, sync %s)\n",
         (double)vm_hwm_kib() / 1024.0, c->payload, sync_name(c));
  fflush(stdout);
  hd_server_close_wait(s);
  return st.pending_total == 0 && failed == 0 ? 0 : 1;
}

/* ================================ client process ================================ */

static atomic_long handled;
static double first_at;

static void on_event(void *ud, hd_event_t *ev) {
  (void)ud;
  if (atomic_fetch_add(&handled, 1) == 0) first_at = now_s();
  hd_event_complete(ev, 1, NULL, 0);
}

static int role_client(const cfg_t *c) {
  hd_keypair_t kp;
  uint8_t server_pk[32];
  if (load_key(&kp, getenv("BL_UKEY_S"), getenv("BL_UKEY_P")) != 0) die("user key", HD_EKEY);
  if (hd_hex_decode(server_pk, 32, getenv("BL_SKEY_P")) != 0) die("server key", HD_EHEX);
  char cdir[4200], connect[64];
  snprintf(cdir, sizeof cdir, "%s/client", c->dir);
  snprintf(connect, sizeof connect, "127.0.0.1:%s", getenv("BL_PORT"));
  hd_client_options_t o = HD_CLIENT_OPTIONS_INIT;
  o.keypair = &kp;
  o.server_public_key = server_pk;
  o.topic = "backlog";
  o.connect = connect;
  o.data_dir = cdir;
  o.sync_normal = c->sync_normal;
  o.on_event = on_event;
  o.window = (uint32_t)c->window;
  double t0 = now_s();
  hd_client_t *cl = NULL;
  int rc = hd_client_create(&cl, &o);
  if (rc != 0) die("client", rc);
  hd_client_stats_t st = {HD_CLIENT_STATS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  double next_report = t0 + 10;
  long max_held = 0;
  while (atomic_load(&handled) < c->events) {
    usleep(5000);
    hd_client_stats(cl, &st);
    long held = (long)(st.unhandled + st.consumed);
    if (held > max_held) max_held = held;
    if (now_s() > next_report) {
      fprintf(stderr, "client: %ld handled so far\n", atomic_load(&handled));
      next_report += 10;
    }
  }
  double t1 = now_s();
  for (;;) {
    hd_client_stats(cl, &st);
    if (st.unhandled == 0 && st.consumed == 0) break;
    usleep(2000);
  }
  double t2 = now_s();
  printf("client: handled %ld events in %.2f s after connecting: %.0f events/s "
         "(first after %.3f s; payload %ld B, sync %s, window %ld)\n",
         c->events, t1 - t0, (double)c->events / (t1 - t0), first_at - t0, c->payload,
         sync_name(c), c->window ? c->window : 8192);
  printf("client: all confirmed (both stores empty) after %.2f s: %.0f events/s "
         "(payload %ld B, sync %s)\n",
         t2 - t0, (double)c->events / (t2 - t0), c->payload, sync_name(c));
  printf("client: at most %ld events held in its store at once\n", max_held);
  printf("client: peak RSS: %.1f MiB (payload %ld B, sync %s)\n", (double)vm_hwm_kib() / 1024.0,
         c->payload, sync_name(c));
  fflush(stdout);
  hd_client_close_wait(cl);
  return 0;
}

/* ================================ the parent ================================ */

typedef struct child {
  pid_t pid;
  int out; /* its stdout */
  int in;  /* its stdin (server) */
  char buf[8192];
  size_t len;
} child_t;

static child_t spawn(const char *self, const char *role, const cfg_t *c, char **env) {
  child_t ch;
  memset(&ch, 0, sizeof ch);
  int out[2], in[2];
  if (pipe(out) != 0 || pipe(in) != 0) {
    perror("pipe");
    exit(1);
  }
  char events[32], payload[32], inflight[32], window[32], threads[32];
  snprintf(events, sizeof events, "%ld", c->events);
  snprintf(payload, sizeof payload, "%ld", c->payload);
  snprintf(inflight, sizeof inflight, "%ld", c->inflight);
  snprintf(window, sizeof window, "%ld", c->window);
  snprintf(threads, sizeof threads, "%ld", c->threads);
  ch.pid = fork();
  if (ch.pid == 0) {
    dup2(out[1], 1);
    dup2(in[0], 0);
    close(out[0]);
    close(out[1]);
    close(in[0]);
    close(in[1]);
    for (int i = 0; env[i]; i += 2) setenv(env[i], env[i + 1], 1);
    char *argv[] = {(char *)self, "--role", (char *)role, events, "--payload", payload, "--sync",
                    c->sync_normal ? "normal" : "full", "--inflight", inflight, "--window", window,
                    "--threads", threads, "--dir", (char *)c->dir, NULL};
    execv(self, argv);
    _exit(127);
  }
  close(out[1]);
  close(in[0]);
  ch.out = out[0];
  ch.in = in[1];
  return ch;
}

/* Reads lines from the child until one starts with `until` (NULL: until EOF), relaying them.
 * Returns 0, or -1 on EOF before it / the deadline. */
static int relay(child_t *ch, const char *until, double deadline, char *found, size_t found_size) {
  for (;;) {
    char *nl;
    while ((nl = memchr(ch->buf, '\n', ch->len)) != NULL) {
      *nl = '\0';
      int match = until && strncmp(ch->buf, until, strlen(until)) == 0;
      if (match && found) snprintf(found, found_size, "%.*s", (int)found_size - 1, ch->buf);
      if (strncmp(ch->buf, "port ", 5) != 0 && strcmp(ch->buf, "ready") != 0)
        printf("%s\n", ch->buf);
      size_t used = (size_t)(nl - ch->buf) + 1;
      memmove(ch->buf, ch->buf + used, ch->len - used);
      ch->len -= used;
      if (match) return 0;
    }
    double left = deadline - now_s();
    if (left <= 0) return -1;
    struct pollfd pf = {ch->out, POLLIN, 0};
    int pr = poll(&pf, 1, (int)(left * 1000) + 1);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return -1;
    ssize_t r = read(ch->out, ch->buf + ch->len, sizeof ch->buf - ch->len - 1);
    if (r <= 0) return until ? -1 : 0;
    ch->len += (size_t)r;
  }
}

static int wait_child(child_t *ch, double deadline) {
  int status;
  while (now_s() < deadline) {
    if (waitpid(ch->pid, &status, WNOHANG) == ch->pid) {
      ch->pid = 0;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    usleep(10000);
  }
  return -1;
}

static void kill_child(child_t *ch) {
  if (ch->pid > 0) {
    kill(ch->pid, SIGKILL);
    waitpid(ch->pid, NULL, 0);
    ch->pid = 0;
  }
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
  (void)sb;
  (void)flag;
  (void)f;
  return remove(p);
}

static void usage(void) {
  fprintf(stderr, "usage: backlog [EVENTS] [--payload BYTES] [--sync full|normal] [--inflight N]\n"
                  "               [--threads N] [--window N] [--timeout SECONDS] [--dir FOLDER]\n");
  exit(2);
}

int main(int argc, char **argv) {
  cfg_t c = {1000000, 100, 0, 16384, 0, 1800, 1, ""};
  const char *role = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--role") == 0 && v) role = argv[++i];
    else if (strcmp(a, "--payload") == 0 && v) c.payload = atol(argv[++i]);
    else if (strcmp(a, "--sync") == 0 && v) c.sync_normal = strcmp(argv[++i], "normal") == 0;
    else if (strcmp(a, "--inflight") == 0 && v) c.inflight = atol(argv[++i]);
    else if (strcmp(a, "--window") == 0 && v) c.window = atol(argv[++i]);
    else if (strcmp(a, "--timeout") == 0 && v) c.timeout_s = atol(argv[++i]);
    else if (strcmp(a, "--threads") == 0 && v) c.threads = atol(argv[++i]);
    else if (strcmp(a, "--dir") == 0 && v) snprintf(c.dir, sizeof c.dir, "%s", argv[++i]);
    else if (a[0] >= '0' && a[0] <= '9') c.events = atol(a);
    else usage();
  }
  if (c.events < 1 || c.payload < 16 || c.inflight < 1) usage();
  if (role && strcmp(role, "server") == 0) return role_server(&c);
  if (role && strcmp(role, "client") == 0) return role_client(&c);

  int own_dir = c.dir[0] == '\0';
  if (own_dir) {
    snprintf(c.dir, sizeof c.dir, "/tmp/hd-backlog-XXXXXX");
    if (mkdtemp(c.dir) == NULL) {
      perror("mkdtemp");
      return 1;
    }
  }
  char self[4096];
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) return 1;
  self[sl] = '\0';
  setvbuf(stdout, NULL, _IOLBF, 0);
  signal(SIGPIPE, SIG_IGN);
  printf("backlog: %ld events of %ld bytes for one offline user, sync %s, in %s (timeout %ld s)\n",
         c.events, c.payload, sync_name(&c), c.dir, c.timeout_s);

  hd_keypair_t skp, ukp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ukp);
  char ss[65], sp[65], us[65], up[65];
  hd_hex_encode(ss, sizeof ss, skp.scalar, 32);
  hd_hex_encode(sp, sizeof sp, skp.public_key, 32);
  hd_hex_encode(us, sizeof us, ukp.scalar, 32);
  hd_hex_encode(up, sizeof up, ukp.public_key, 32);
  double deadline = now_s() + (double)c.timeout_s;
  int status = 1;

  char *senv[] = {"BL_SKEY_S", ss, "BL_SKEY_P", sp, "BL_USER", up, NULL};
  child_t server = spawn(self, "server", &c, senv);
  child_t client;
  memset(&client, 0, sizeof client);
  char port_line[64] = "";
  if (relay(&server, "port", deadline, port_line, sizeof port_line) != 0) {
    fprintf(stderr, "backlog: the server did not start\n");
    goto out;
  }
  char port[64];
  snprintf(port, sizeof port, "%.10s", port_line + 5);
  if (relay(&server, "ready", deadline, NULL, 0) != 0) {
    fprintf(stderr, "backlog: the adds did not finish in time\n");
    goto out;
  }
  char *cenv[] = {"BL_UKEY_S", us, "BL_UKEY_P", up, "BL_SKEY_P", sp, "BL_PORT", port, NULL};
  client = spawn(self, "client", &c, cenv);
  if (relay(&client, NULL, deadline, NULL, 0) != 0) {
    fprintf(stderr, "backlog: the drain did not finish in time\n");
    goto out;
  }
  int crc = wait_child(&client, deadline);
  if (crc != 0) {
    fprintf(stderr, "backlog: the client exited with %d\n", crc);
    goto out;
  }
  ssize_t w = write(server.in, "stop\n", 5);
  (void)w;
  relay(&server, NULL, deadline, NULL, 0);
  int src = wait_child(&server, deadline);
  if (src != 0) {
    fprintf(stderr, "backlog: the server exited with %d\n", src);
    goto out;
  }
  status = 0;
out:
  kill_child(&client);
  kill_child(&server);
  if (server.out) close(server.out);
  if (server.in) close(server.in);
  if (client.out) close(client.out);
  if (client.in) close(client.in);
  if (own_dir) nftw(c.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return status;
}
