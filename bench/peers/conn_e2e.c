/* conn_e2e: connections to a peer (Redis, NATS, Mosquitto) over plain TCP with the peer's own
 * greeting, spoken directly on the socket (the libraries would start a thread or two per
 * connection; the peer's side is what is measured):
 *   redis: PING -> +PONG
 *   nats:  INFO <- , CONNECT {} + PING -> PONG
 *   mqtt:  CONNECT (MQTT 3.1.1, clean_session 0: a persistent session, keepalive 0) -> CONNACK
 *
 * --mode idle --clients N --server-pid P: opens N connections, greets on each, keeps them open;
 *   prints the server's RSS delta / N (bytes per idle connection).
 * --mode hs --duration S --concurrency C: C threads each connect, greet and close in a loop;
 *   prints handshakes/s (run it while the peer's tput driver loads the server).
 * Neither peer encrypts here (no TLS), while a Hyperdown handshake is Noise_IK (X25519 x4). */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static const char *proto;
static int port;

static int read_until(int fd, const char *needle, size_t want_bytes) {
  char buf[4096];
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
    if (r <= 0) return -1;
    len += (size_t)r;
    buf[len] = 0;
    if (needle && strstr(buf, needle)) return 0;
    if (!needle && len >= want_bytes) return (unsigned char)buf[0] == 0x20 && buf[3] == 0 ? 0 : -1;
    if (len >= sizeof buf - 1) len = 0;
  }
}

static int greet(long idx) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) goto fail;
  if (strcmp(proto, "redis") == 0) {
    if (write(fd, "PING\r\n", 6) != 6 || read_until(fd, "+PONG\r\n", 0)) goto fail;
  } else if (strcmp(proto, "nats") == 0) {
    if (read_until(fd, "\r\n", 0)) goto fail;
    const char *c = "CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n";
    if (write(fd, c, strlen(c)) != (ssize_t)strlen(c) || read_until(fd, "PONG\r\n", 0)) goto fail;
  } else { /* mqtt */
    char id[32];
    int idl = snprintf(id, sizeof id, "idle-%ld", idx);
    uint8_t p[64];
    int n = 0;
    p[n++] = 0x10;
    p[n++] = (uint8_t)(10 + 2 + idl);
    const uint8_t vh[] = {0, 4, 'M', 'Q', 'T', 'T', 4, 0x00 /* clean_session 0 */, 0, 0};
    memcpy(p + n, vh, sizeof vh);
    n += (int)sizeof vh;
    p[n++] = 0;
    p[n++] = (uint8_t)idl;
    memcpy(p + n, id, (size_t)idl);
    n += idl;
    if (write(fd, p, (size_t)n) != n || read_until(fd, NULL, 4)) goto fail;
  }
  return fd;
fail:
  close(fd);
  return -1;
}

static atomic_long hs_done, hs_fail;
static atomic_int hs_stop;
static void *hs_worker(void *arg) {
  long base = (long)(intptr_t)arg * 100000000L;
  for (long i = 0; !atomic_load(&hs_stop); i++) {
    int fd = greet(base + i % 1000);
    if (fd < 0) atomic_fetch_add(&hs_fail, 1);
    else {
      atomic_fetch_add(&hs_done, 1);
      close(fd);
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  h_cfg_t cfg;
  h_cfg_defaults(&cfg);
  long clients = 10000;
  int conc = 8;
  proto = "redis";
  for (int i = 1; i < argc; i++) {
    if (h_parse(&cfg, argc, argv, &i)) continue;
    if (i + 1 < argc && strcmp(argv[i], "--proto") == 0) proto = argv[++i];
    else if (i + 1 < argc && strcmp(argv[i], "--clients") == 0) clients = atol(argv[++i]);
    else if (i + 1 < argc && strcmp(argv[i], "--concurrency") == 0) conc = atoi(argv[++i]);
    else {
      fprintf(stderr, "conn_e2e: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  const char *sys = strcmp(proto, "mqtt") == 0 ? "mosquitto" : proto;
  port = cfg.port;
  h_raise_nofile();
  char json[1024];
  if (strcmp(cfg.mode, "idle") == 0) {
    long rss0 = h_rss_kib_of(cfg.server_pid, "VmRSS");
    int *fds = calloc((size_t)clients, sizeof(int));
    double t0 = h_now_s();
    long ok = 0;
    for (long i = 0; i < clients && h_now_s() < t0 + 120; i++) {
      fds[i] = greet(i);
      if (fds[i] >= 0) ok++;
    }
    double t1 = h_now_s();
    sleep(2);
    long rss1 = h_rss_kib_of(cfg.server_pid, "VmRSS");
    snprintf(json, sizeof json,
             "{\"system\":\"%s\",\"durability\":\"%s\",\"mode\":\"idle\",\"clients\":%ld,"
             "\"connected\":%ld,\"connect_all_s\":%.2f,\"server_rss_before_kib\":%ld,"
             "\"server_rss_idle_kib\":%ld,\"bytes_per_idle_conn\":%.0f,\"note\":\"plain TCP, no TLS\"}",
             sys, cfg.durability, clients, ok, t1 - t0, rss0, rss1,
             ok ? (double)(rss1 - rss0) * 1024.0 / (double)ok : 0);
    for (long i = 0; i < clients; i++)
      if (fds[i] >= 0) close(fds[i]);
  } else {
    pthread_t th[64];
    if (conc > 64) conc = 64;
    double t0 = h_now_s();
    for (int i = 0; i < conc; i++) pthread_create(&th[i], NULL, hs_worker, (void *)(intptr_t)i);
    usleep((useconds_t)(cfg.duration_s * 1e6));
    atomic_store(&hs_stop, 1);
    for (int i = 0; i < conc; i++) pthread_join(th[i], NULL);
    double secs = h_now_s() - t0;
    snprintf(json, sizeof json,
             "{\"system\":\"%s\",\"durability\":\"%s\",\"mode\":\"handshake\",\"handshakes\":%ld,"
             "\"failed\":%ld,\"handshakes_per_s\":%.1f,\"hs_concurrency\":%d,\"note\":\"plain TCP greeting, no TLS, under the tput driver's load\"}",
             sys, cfg.durability, atomic_load(&hs_done), atomic_load(&hs_fail),
             (double)atomic_load(&hs_done) / secs, conc);
  }
  printf("%s\n", json);
  if (cfg.out) {
    FILE *f = fopen(cfg.out, "a");
    if (f) fprintf(f, "%s\n", json), fclose(f);
  }
  return 0;
}
