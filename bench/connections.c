/* What connections cost a server, by kind (docs/RELIABILITY.md, "Memory per connection"): a
 * server runs in a child process, this process opens connections to it over loopback, and the
 * child's resident memory (VmRSS) is read before and after each batch, once the server has
 * settled. The figure per connection is the growth divided by the count, so it includes the
 * allocator's overhead and every buffer the connection made the server keep; the kernel's socket
 * buffers are not in it (they are not the process's memory).
 *
 *   half-open   TCP connected, nothing sent
 *   slow        the preamble and half of handshake message 1, then nothing (a slow-loris peer)
 *   idle        handshake done, RESUME sent, then silent (a real client between events)
 *   hostile     handshake done, then PINGs as fast as the socket takes them, never reading
 *
 * The first three are measured with the admission caps off (so that every connection is held),
 * then half-open and slow connections again with the default caps, and half-open ones with only
 * the cap on handshaking connections, to show what the server holds at most.
 * Usage: connections [N] (default 2000; hostile uses N / 250 connections, at least 4). */
#include "transport_util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TOPIC "bench-connections"

typedef struct child {
  pid_t pid;
  int port;
} child_t;

static long rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  }
  fclose(f);
  return kib;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* The server, in a child that lives until SIGTERM. `caps`: 0 lifts the admission caps and the
 * timeouts that would end the connections while they are measured; 1 keeps the defaults; 2 lifts
 * only the cap per address (every connection here comes from 127.0.0.1), to show the other. */
static int server_start(child_t *c, const hd_keypair_t *kp, int caps) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  c->pid = fork();
  if (c->pid < 0) return -1;
  if (c->pid == 0) {
    close(fds[0]);
    tu_peer_t p;
    tu_peer_init(&p);
    hd_server_options_t o = tu_server_options(kp, TOPIC, "127.0.0.1:0", &p);
    if (caps == 2) o.handshakes_per_address = UINT32_MAX;
    if (caps == 0) {
      o.max_handshakes = UINT32_MAX;
      o.handshakes_per_address = UINT32_MAX;
      o.handshake_timeout_ms = 120000;
      o.keepalive_ms = 120000;
    }
    hd_server_t *s;
    int port = hd_server_create(&s, &o) == 0 ? hd_server_port(s) : -1;
    if (write(fds[1], &port, sizeof port) != (ssize_t)sizeof port || port < 0) _exit(1);
    for (;;) pause(); /* SIGTERM ends it; the store folder is scratch */
  }
  close(fds[1]);
  int ok = read(fds[0], &c->port, sizeof c->port) == (ssize_t)sizeof c->port && c->port > 0;
  close(fds[0]);
  return ok ? 0 : -1;
}

static void server_stop(child_t *c) {
  kill(c->pid, SIGTERM);
  waitpid(c->pid, NULL, 0);
}

/* How many of the sockets the server still holds open (no EOF or reset seen). */
static int held(const tu_raw_t *r, int n) {
  int open = 0;
  for (int i = 0; i < n; i++) {
    if (r[i].fd < 0) continue;
    char b;
    ssize_t got = recv(r[i].fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    if (got > 0 || (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) open++;
  }
  return open;
}

static void close_all(tu_raw_t *r, int n) {
  for (int i = 0; i < n; i++) {
    if (r[i].fd >= 0) close(r[i].fd);
    r[i].fd = -1;
  }
}

/* The preamble and half of a genuine message 1, taken once from a real handshake. */
static uint8_t slow_bytes[sizeof(((tu_raw_t *)0)->sent)];
static size_t slow_len;

static int capture_slow_bytes(int port, const hd_keypair_t *server) {
  if (slow_len > 0) return 0;
  tu_raw_t r;
  memset(&r, 0, sizeof r);
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  int rc = tu_raw_connect(&r, port) == 0 ? tu_raw_handshake_only(&r, &kp, server->public_key, TOPIC)
                                         : -1;
  if (r.fd >= 0) close(r.fd);
  if (rc != 0 || r.sent_len < 20) return -1;
  slow_len = 18 + (r.sent_len - 18) / 2; /* preamble, length, half the message */
  memcpy(slow_bytes, r.sent, slow_len);
  return 0;
}

enum kind { HALF_OPEN, SLOW, IDLE };
static const char *const kind_name[] = {"half-open", "slow", "idle (after RESUME)"};

/* Opens n connections of one kind; returns how many were made. */
static int open_kind(tu_raw_t *r, int n, int port, enum kind k, const hd_keypair_t *server) {
  int made = 0;
  for (int i = 0; i < n; i++) {
    memset(&r[i], 0, sizeof r[i]);
    r[i].fd = -1;
    if (tu_raw_connect(&r[i], port) != 0) break;
    if (k == SLOW) {
      if (tu_send_all(r[i].fd, slow_bytes, slow_len) != 0) break;
    } else if (k == IDLE) {
      hd_keypair_t kp;
      hd_keypair_generate(&kp);
      if (tu_raw_handshake(&r[i], &kp, server->public_key, TOPIC) != 0) break;
      hd__resume_t res;
      memset(&res, 0, sizeof res);
      res.window = 8192;
      hd__buf_t m;
      hd__buf_init(&m);
      int rc = hd__msg_encode_resume(&m, &res) == 0 ? tu_raw_send(&r[i], &m, 0) : -1;
      hd__buf_free(&m);
      if (rc != 0) break;
    }
    made++;
  }
  return made;
}

static const char *const caps_name[] = {"no caps", "defaults", "per-address cap off"};

static int measure_kind(const hd_keypair_t *kp, enum kind k, int n, int caps) {
  child_t c;
  if (server_start(&c, kp, caps) != 0) return -1;
  if (k == SLOW && capture_slow_bytes(c.port, kp) != 0) {
    server_stop(&c);
    return -1;
  }
  tu_raw_t *r = calloc((size_t)n, sizeof *r);
  sleep_ms(300);
  long before = rss_kib(c.pid);
  int made = open_kind(r, n, c.port, k, kp);
  sleep_ms(caps ? 1500 : 700);
  long after = rss_kib(c.pid);
  int open = held(r, made);
  printf("%-20s %-19s %5d made %6d held  server RSS %6ld -> %6ld KiB  %7.0f bytes each held\n",
         kind_name[k], caps_name[caps], made, open, before, after,
         open > 0 ? (double)(after - before) * 1024 / open : 0.0);
  close_all(r, made);
  free(r);
  server_stop(&c);
  return 0;
}

/* Hostile: authenticated connections that send PINGs as fast as they can and never read. */
static void measure_hostile(const hd_keypair_t *kp, int n) {
  child_t c;
  if (server_start(&c, kp, 1) != 0) return;
  tu_raw_t *r = calloc((size_t)n, sizeof *r);
  sleep_ms(300);
  long before = rss_kib(c.pid);
  static uint8_t pings[HD__RECORD_MAX_PLAINTEXT];
  size_t np = sizeof pings / 3 * 3;
  for (size_t i = 0; i < np; i += 3) pings[i] = 2, pings[i + 1] = HD__MSG_PING, pings[i + 2] = 0;
  uint64_t sent = 0;
  int made = 0;
  for (int i = 0; i < n; i++) {
    hd_keypair_t ck;
    hd_keypair_generate(&ck);
    memset(&r[i], 0, sizeof r[i]);
    if (tu_raw_connect(&r[i], c.port) != 0 || tu_raw_handshake(&r[i], &ck, kp->public_key, TOPIC)) {
      break;
    }
    made++;
    fcntl(r[i].fd, F_SETFL, fcntl(r[i].fd, F_GETFL) | O_NONBLOCK);
    hd__buf_t rec;
    hd__buf_init(&rec);
    size_t off = 0;
    for (uint64_t mine = 0; mine < (64u << 20);) { /* 64 MiB each at most */
      if (off == rec.len) {
        rec.len = 0;
        off = 0;
        if (hd__record_seal(&r[i].tx, pings, np, &rec) != 0) break;
      }
      ssize_t got = send(r[i].fd, rec.data + off, rec.len - off, MSG_NOSIGNAL);
      if (got > 0) {
        off += (size_t)got;
        mine += (uint64_t)got;
        continue;
      }
      if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
      struct pollfd pf = {r[i].fd, POLLOUT, 0};
      if (poll(&pf, 1, 1000) == 0) { /* blocked: the server stopped reading from it */
        sent += mine;
        break;
      }
    }
    hd__buf_free(&rec);
  }
  sleep_ms(1000);
  long after = rss_kib(c.pid);
  int open = held(r, made);
  printf("%-20s %-19s %5d made %6d held  server RSS %6ld -> %6ld KiB  %7.0f bytes each held; "
         "%.1f MiB sent each before the sends blocked\n",
         "hostile (never reads)", caps_name[0], made, open, before, after,
         open > 0 ? (double)(after - before) * 1024 / open : 0.0,
         made > 0 ? (double)sent / made / (1 << 20) : 0.0);
  close_all(r, made);
  free(r);
  server_stop(&c);
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  if (n <= 0) n = 2000;
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max; /* n sockets here and n in the child */
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (hd_init() != 0) return 1;
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  printf("connections to one server (loopback, %d each kind; RSS of the server's process)\n", n);
  measure_kind(&kp, HALF_OPEN, n, 0);
  measure_kind(&kp, SLOW, n, 0);
  measure_kind(&kp, IDLE, n, 0);
  measure_hostile(&kp, n / 250 < 4 ? 4 : n / 250);
  measure_kind(&kp, HALF_OPEN, n, 1);
  measure_kind(&kp, SLOW, n, 1);
  measure_kind(&kp, HALF_OPEN, n, 2);
  return 0;
}
