/* Metrics and health (docs/OPERATIONS.md, "Metrics and health"): hd_server_metrics and the
 * responder of metrics_listen, over real TCP sockets. The text is read by a strict reader of the
 * Prometheus text format (test/util/prom_text.h) whose refusals are checked here too; the
 * counters move while events flow; /healthz, /readyz, 404, 405; hostile peers (a head above the
 * limit, garbage, a stalled half request, a flood of idle connections) neither crash nor block
 * the loop, and the server's close does not wait for them. */
#include "delivery_util.h"
#include "harness.h"
#include "prom_text.h"
#include "transport_util.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <uv.h>

#define HEAD_MAX 8192       /* the responder's limit (CSources/server/http.h) */
#define READ_TIMEOUT_MS 5000 /* its deadline for a head */

/* ---- a raw HTTP peer ------------------------------------------------------------------------ */

static int tcp_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads until the peer ends the connection or `ms` pass; what was read, NUL-terminated.
 * Returns the length, or -1 on timeout (the connection still open) or an error. */
static long read_to_eof(int fd, char *out, size_t cap, int ms) {
  size_t len = 0;
  uint64_t deadline = hdt_now_ms() + (uint64_t)ms * (uint64_t)hdt_slow();
  for (;;) {
    uint64_t now = hdt_now_ms();
    if (now >= deadline) return -1;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(deadline - now)) <= 0) continue;
    char tmp[4096];
    ssize_t r = recv(fd, tmp, sizeof tmp, 0);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) break;
    if (r < 0) return -1;
    size_t k = (size_t)r < cap - 1 - len ? (size_t)r : cap - 1 - len;
    memcpy(out + len, tmp, k);
    len += k;
  }
  out[len] = '\0';
  return (long)len;
}

typedef struct response {
  int status;
  char head[2048];
  const char *body;
  size_t body_len;
  char raw[1 << 18];
} response_t;

static int quiet; /* a wait that retries until the responder answers: no line per try */

/* Sends `req` on a fresh connection and reads the whole response (the server closes after it).
 * 0, or -1 with a line on stderr. */
static int http_raw(int port, const char *req, size_t len, response_t *r) {
  memset(r, 0, offsetof(response_t, raw));
  int fd = tcp_connect(port);
  if (fd < 0) return -1;
  long n = tu_send_all(fd, req, len) == 0 ? read_to_eof(fd, r->raw, sizeof r->raw, 5000) : -1;
  close(fd);
  if (n < 0) {
    if (!quiet) fprintf(stderr, "  no complete response\n");
    return -1;
  }
  char *end = strstr(r->raw, "\r\n\r\n");
  if (end == NULL || sscanf(r->raw, "HTTP/1.1 %d ", &r->status) != 1) {
    if (!quiet) fprintf(stderr, "  not an HTTP response: %.200s\n", r->raw);
    return -1;
  }
  size_t hl = (size_t)(end - r->raw) + 4;
  if (hl >= sizeof r->head) return -1;
  memcpy(r->head, r->raw, hl);
  r->body = r->raw + hl;
  r->body_len = (size_t)n - hl;
  const char *cl = strstr(r->head, "\r\nContent-Length: ");
  if (cl == NULL || strtoul(cl + 18, NULL, 10) != r->body_len) {
    fprintf(stderr, "  Content-Length is not the body's %zu bytes\n", r->body_len);
    return -1;
  }
  return 0;
}

static int http_get(int port, const char *path, response_t *r) {
  char req[256];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "User-Agent: test_metrics\r\n\r\n", path);
  return http_raw(port, req, (size_t)n, r);
}

static int has_header(const response_t *r, const char *line) {
  char want[256];
  snprintf(want, sizeof want, "\r\n%s\r\n", line);
  return strstr(r->head, want) != NULL;
}

/* ---- the server ----------------------------------------------------------------------------- */

static char metrics_listen[64] = "127.0.0.1:0";

/* The world's server with metrics_listen, and its clients pointed at it (not started). */
static int start_server(du_world_t *w) {
  hd_server_options_t o;
  char listen[64];
  du_server_fill_options(&w->s, &o, listen, sizeof listen);
  o.metrics_listen = metrics_listen;
  int rc = hd_server_create(&w->s.h, &o);
  if (rc != 0) return rc;
  w->s.port = hd_server_port(w->s.h);
  for (int i = 0; i < w->nc; i++) du_client_set_addr(&w->c[i], w->s.port);
  return 0;
}

/* GET /metrics, read strictly into `t` (pt_free after). */
static int scrape(int port, response_t *r, pt_text_t *t) {
  if (http_get(port, "/metrics", r) != 0) return -1;
  if (r->status != 200) {
    fprintf(stderr, "  /metrics: status %d\n", r->status);
    return -1;
  }
  if (pt_parse(r->body, r->body_len, t) != 0) {
    fprintf(stderr, "  /metrics refused by the strict reader: %s\n", t->error);
    return -1;
  }
  return 0;
}

static double value(const pt_text_t *t, const char *name) {
  double v;
  return pt_value(t, name, "", &v) == 0 ? v : NAN;
}

static const char *const counters[] = {
    "hyperdown_events_added_total",     "hyperdown_events_delivered_total",
    "hyperdown_events_consumed_total",  "hyperdown_events_confirmed_total",
    "hyperdown_events_failed_total",    "hyperdown_events_expired_total",
    "hyperdown_events_requeued_total",  "hyperdown_events_replaced_total",
    "hyperdown_events_dropped_total",   "hyperdown_events_too_large_total",
    "hyperdown_adds_duplicate_total",   "hyperdown_adds_limited_total",
    "hyperdown_store_commits_total",    "hyperdown_resumes_epoch_total",
    "hyperdown_resumes_rolled_back_total"};
static const char *const gauges[] = {"hyperdown_events_pending", "hyperdown_users_pending",
                                     "hyperdown_connections",
                                     "hyperdown_connections_handshaking",
                                     "hyperdown_dead_letters"};
#define NCOUNTERS (sizeof counters / sizeof counters[0])
#define NGAUGES (sizeof gauges / sizeof gauges[0])

/* The names the docs promise: every family prefixed, typed, helped; counters end in _total. */
static int names_ok(const pt_text_t *t) {
  for (size_t i = 0; i < t->nf; i++) {
    const pt_family_t *f = &t->families[i];
    size_t n = strlen(f->name);
    if (strncmp(f->name, "hyperdown_", 10) != 0 || !f->has_help || f->type[0] == '\0') return 0;
    if (strcmp(f->type, "counter") == 0 && (n < 6 || strcmp(f->name + n - 6, "_total") != 0)) return 0;
  }
  for (size_t i = 0; i < NCOUNTERS; i++) {
    const pt_family_t *f = pt_family(t, counters[i]);
    if (f == NULL || strcmp(f->type, "counter") != 0) return 0;
  }
  for (size_t i = 0; i < NGAUGES; i++) {
    const pt_family_t *f = pt_family(t, gauges[i]);
    if (f == NULL || strcmp(f->type, "gauge") != 0) return 0;
  }
  const pt_family_t *h = pt_family(t, "hyperdown_add_durable_seconds");
  return h != NULL && strcmp(h->type, "histogram") == 0;
}

/* ---- the counters move while events flow ---------------------------------------------------- */

static void counters_move_body(du_world_t *w) {
  static response_t r;
  pt_text_t a = {0}, b = {0}, c = {0};
  CHECK(du_world_init(w, "metrics", 1, 256, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  CHECK(port > 0 && port != w->s.port);
  CHECK_OK(du_client_start(&w->c[0]));
  du_client_t *cl = &w->c[0];
  DCHECK(du_add_events(w->s.h, cl->kp.public_key, cl->tag, 1, 20, 0) == 0);
  DCHECK(du_all_done(&w->s, 0, cl, 20, 1, 1, 10000));

  int ok = scrape(port, &r, &a) == 0;
  /* 30 more, scraped while they flow, then once all are confirmed */
  if (ok) ok = du_add_events(w->s.h, cl->kp.public_key, cl->tag, 21, 30, 0) == 0;
  if (ok) ok = scrape(port, &r, &b) == 0;
  if (ok) ok = du_all_done(&w->s, 0, cl, 50, 1, 1, 10000);
  if (ok) ok = scrape(port, &r, &c) == 0;
  int names = ok && names_ok(&a) && names_ok(&c);
  double added[3] = {value(&a, counters[0]), value(&b, counters[0]), value(&c, counters[0])};
  double confirmed[2] = {value(&a, "hyperdown_events_confirmed_total"),
                         value(&c, "hyperdown_events_confirmed_total")};
  double delivered[2] = {value(&a, "hyperdown_events_delivered_total"),
                         value(&c, "hyperdown_events_delivered_total")};
  double consumed = value(&c, "hyperdown_events_consumed_total");
  double pending = value(&c, "hyperdown_events_pending");
  double users = value(&c, "hyperdown_users_pending");
  double conns = value(&c, "hyperdown_connections");
  double commits[2] = {value(&a, "hyperdown_store_commits_total"),
                       value(&c, "hyperdown_store_commits_total")};
  int monotonic = ok;
  for (size_t i = 0; i < NCOUNTERS && monotonic; i++) {
    monotonic = value(&a, counters[i]) <= value(&b, counters[i]) &&
                value(&b, counters[i]) <= value(&c, counters[i]);
  }
  double inf = NAN, count = NAN;
  if (ok) {
    pt_value(&c, "hyperdown_add_durable_seconds_bucket", "le=\"+Inf\"", &inf);
    pt_value(&c, "hyperdown_add_durable_seconds_count", "", &count);
  }
  pt_free(&a);
  pt_free(&b);
  pt_free(&c);
  DCHECK(ok);
  CHECK(names);
  CHECK(monotonic);
  CHECK(added[0] == 20 && added[1] == 50 && added[2] == 50); /* the wait above: all 30 durable */
  CHECK(confirmed[0] == 20 && confirmed[1] == 50);
  CHECK(delivered[0] >= 20 && delivered[1] >= 50 && consumed >= 50);
  CHECK(commits[1] > commits[0]);
  CHECK(pending == 0 && users == 0 && conns == 1);
  CHECK(inf == count && count == added[2]);
}
DU_WORLD_TEST(counters_move_while_events_flow, counters_move_body)

/* The gauges with events held: pending events and users, dead letters after a rejection. */
static void gauges_body(du_world_t *w) {
  static response_t r;
  pt_text_t t = {0};
  CHECK(du_world_init(w, "metrics-gauges", 2, 64, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  /* nobody connected: everything stays pending */
  CHECK(du_add_events(w->s.h, w->c[0].kp.public_key, w->c[0].tag, 1, 3, 0) == 0);
  CHECK(du_add_events(w->s.h, w->c[1].kp.public_key, w->c[1].tag, 1, 2, 0) == 0);
  CHECK(scrape(port, &r, &t) == 0);
  double pending = value(&t, "hyperdown_events_pending"), users = value(&t, "hyperdown_users_pending");
  double conns = value(&t, "hyperdown_connections"), dead = value(&t, "hyperdown_dead_letters");
  double added = value(&t, "hyperdown_events_added_total");
  pt_free(&t);
  CHECK(pending == 5 && users == 2 && conns == 0 && dead == 0 && added == 5);
}
DU_WORLD_TEST(gauges_pending_users_connections, gauges_body)

/* The histogram's _count is every durable add (recorded at the add's completion, server_add.c),
 * its _sum their time, above 0. */
static void histogram_body(du_world_t *w) {
  char buf[16384];
  pt_text_t t = {0};
  CHECK(du_world_init(w, "metrics-hist", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  CHECK(du_add_events(w->s.h, w->c[0].kp.public_key, w->c[0].tag, 1, 7, 0) == 0);
  int n = hd_server_metrics(w->s.h, buf, sizeof buf);
  CHECK(n > 0 && (size_t)n < sizeof buf);
  CHECK(pt_parse(buf, (size_t)n, &t) == 0);
  double count = NAN, added = value(&t, "hyperdown_events_added_total");
  double sum = value(&t, "hyperdown_add_durable_seconds_sum");
  pt_value(&t, "hyperdown_add_durable_seconds_count", "", &count);
  pt_free(&t);
  CHECK(added == 7);
  CHECK(count == added && sum > 0);
}
DU_WORLD_TEST(histogram_counts_every_add, histogram_body)

/* hd_server_metrics is snprintf-like and agrees with hd_server_stats. */
static void snprintf_body(du_world_t *w) {
  static char full[65536], small[64];
  pt_text_t t = {0};
  CHECK(du_world_init(w, "metrics-call", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  CHECK(du_add_events(w->s.h, w->c[0].kp.public_key, w->c[0].tag, 1, 4, 0) == 0);
  int len = hd_server_metrics(w->s.h, NULL, 0);
  CHECK(len > 0);
  memset(small, 'x', sizeof small);
  CHECK(hd_server_metrics(w->s.h, small, sizeof small) == len);
  CHECK(strlen(small) == sizeof small - 1); /* cut, NUL-terminated */
  CHECK(hd_server_metrics(w->s.h, full, sizeof full) == len);
  CHECK(strlen(full) == (size_t)len && strncmp(full, small, sizeof small - 1) == 0);
  CHECK(hd_server_metrics(w->s.h, NULL, 5) == HD_EINVAL);
  CHECK(hd_server_metrics(NULL, full, sizeof full) == HD_EINVAL);
  hd_server_stats_t st;
  CHECK_OK(hdt_server_stats(w->s.h, &st));
  CHECK(pt_parse(full, (size_t)len, &t) == 0);
  int agree = value(&t, "hyperdown_events_added_total") == (double)st.events_added &&
              value(&t, "hyperdown_events_pending") == (double)st.pending_total &&
              value(&t, "hyperdown_store_commits_total") == (double)st.commits;
  pt_free(&t);
  CHECK(agree);
  CHECK(st.events_added == 4);
}
DU_WORLD_TEST(metrics_call_is_snprintf_like, snprintf_body)

/* ---- the endpoints -------------------------------------------------------------------------- */

static void endpoints_body(du_world_t *w) {
  static response_t r;
  CHECK(du_world_init(w, "metrics-http", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  CHECK(http_get(port, "/healthz", &r) == 0);
  CHECK(r.status == 200 && has_header(&r, "Connection: close"));
  CHECK(http_get(port, "/readyz", &r) == 0);
  CHECK(r.status == 200);
  CHECK(http_get(port, "/metrics?name[]=x", &r) == 0); /* the query is not the path */
  CHECK(r.status == 200);
  CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  CHECK(http_get(port, "/nothing", &r) == 0);
  CHECK(r.status == 404);
  CHECK(http_get(port, "/metrics/", &r) == 0);
  CHECK(r.status == 404);
  static const char post[] = "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
  CHECK(http_raw(port, post, sizeof post - 1, &r) == 0);
  CHECK(r.status == 405 && has_header(&r, "Allow: GET"));
  static const char head[] = "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(http_raw(port, head, sizeof head - 1, &r) == 0);
  CHECK(r.status == 405);
  static const char http10[] = "GET /healthz HTTP/1.0\r\n\r\n"; /* 1.0 needs no Host */
  CHECK(http_raw(port, http10, sizeof http10 - 1, &r) == 0);
  CHECK(r.status == 200);
  static const char nohost[] = "GET /healthz HTTP/1.1\r\n\r\n";
  CHECK(http_raw(port, nohost, sizeof nohost - 1, &r) == 0);
  CHECK(r.status == 400);
  CHECK(hd_server_port(w->s.h) != port);
  /* a head that comes a byte at a time is read whole */
  static const char drip[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  int fd = tcp_connect(port);
  CHECK(fd >= 0);
  int one = 1, sent = setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) == 0;
  for (size_t i = 0; sent && i < sizeof drip - 1; i++) {
    sent = tu_send_all(fd, drip + i, 1) == 0;
    hdt_sleep_ms(2);
  }
  long n = sent ? read_to_eof(fd, r.raw, sizeof r.raw, 5000) : -1;
  close(fd);
  CHECK(n > 0 && strncmp(r.raw, "HTTP/1.1 200 ", 13) == 0);
}
DU_WORLD_TEST(endpoints_healthz_readyz_404_405, endpoints_body)

/* ---- hostile peers -------------------------------------------------------------------------- */

static void hostile_body(du_world_t *w) {
  static response_t r;
  static char big[HEAD_MAX + 4096];
  CHECK(du_world_init(w, "metrics-hostile", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  /* a head above the limit: 431, not a read of it all */
  int n = snprintf(big, sizeof big, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(big + n, 'a', sizeof big - (size_t)n);
  CHECK(http_raw(port, big, sizeof big, &r) == 0);
  CHECK(r.status == 431);
  /* garbage: refused at once */
  uint8_t junk[512];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 37 + 11);
  CHECK(http_raw(port, (const char *)junk, sizeof junk, &r) == 0);
  CHECK(r.status == 400);
  static const char *const bad[] = {
      "GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",         /* not origin form */
      "GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",        /* not HTTP/1.x */
      "GET /metrics HTTP/1.1\nHost: x\n\n",              /* bare LF */
      "GET /metrics HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
      "GET /metrics HTTP/1.1\r\nHost x\r\n\r\n",         /* no colon */
      "GET /metrics HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
      "GET /met\x01rics HTTP/1.1\r\nHost: x\r\n\r\n",
      "GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(http_raw(port, bad[i], strlen(bad[i]), &r) == 0);
    if (r.status != 400) fprintf(stderr, "  bad request %zu got %d\n", i, r.status);
    CHECK(r.status == 400);
  }
}
DU_WORLD_TEST(hostile_requests_are_refused, hostile_body)

/* Half a request, then silence: other requests and the event loop go on; the stalled connection
 * is closed by the server within its deadline; and the server's close does not wait for it. */
static void stalled_body(du_world_t *w) {
  static response_t r;
  char rest[256];
  CHECK(du_world_init(w, "metrics-stall", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  int fd = tcp_connect(port);
  CHECK(fd >= 0);
  uint64_t t0 = hdt_now_ms();
  static const char half[] = "GET /metr";
  int sent = tu_send_all(fd, half, sizeof half - 1) == 0;
  int served = http_get(port, "/healthz", &r) == 0 && r.status == 200;
  hd_server_stats_t st;
  int stats = hdt_server_stats(w->s.h, &st) == 0;
  int added = du_add_events(w->s.h, w->c[0].kp.public_key, w->c[0].tag, 1, 1, 0) == 0;
  long got = read_to_eof(fd, rest, sizeof rest, READ_TIMEOUT_MS + 3000);
  uint64_t took = hdt_now_ms() - t0;
  close(fd);
  CHECK(sent && served && stats && added);
  CHECK(got == 0); /* closed without an answer */
  CHECK(took >= READ_TIMEOUT_MS - 100);

  /* a second stalled peer, then the close: prompt */
  fd = tcp_connect(port);
  CHECK(fd >= 0);
  CHECK(tu_send_all(fd, half, sizeof half - 1) == 0);
  hdt_sleep_ms(50); /* accepted and read: the close meets a connection, not the backlog */
  t0 = hdt_now_ms();
  int closed = du_server_stop(&w->s) == 0;
  took = hdt_now_ms() - t0;
  got = read_to_eof(fd, rest, sizeof rest, 2000);
  close(fd);
  CHECK(closed);
  CHECK(took < 2000 * (uint64_t)hdt_slow());
  CHECK(got == 0);
}
DU_WORLD_TEST(stalled_request_is_bounded, stalled_body)

/* More idle connections than the responder holds: the extra ones are closed as they come; the
 * ones it holds time out; then it answers again. */
static void flood_body(du_world_t *w) {
  static response_t r;
  enum { N = 80 };
  int fds[N];
  CHECK(du_world_init(w, "metrics-flood", 1, 64, 0) == 0);
  CHECK_OK(start_server(w));
  int port = hd_server_metrics_port(w->s.h);
  int opened = 0;
  for (int i = 0; i < N; i++) {
    fds[i] = tcp_connect(port);
    if (fds[i] >= 0) opened++;
  }
  /* the extra ones are closed at once; look well within the held ones' 5 s deadline */
  hdt_sleep_ms(hdt_slow() > 1 ? 2000 : 300);
  int closed_early = 0;
  for (int i = 0; i < N; i++) {
    char tmp[64];
    if (fds[i] >= 0 && recv(fds[i], tmp, sizeof tmp, MSG_DONTWAIT) == 0) closed_early++;
  }
  hd_server_stats_t st;
  int stats = hdt_server_stats(w->s.h, &st) == 0;
  for (int i = 0; i < N; i++) if (fds[i] >= 0) close(fds[i]);
  CHECK(opened == N);
  CHECK(stats);
  CHECK(closed_early >= N - 64); /* those above the bound */
  CHECK(closed_early < N);       /* the bound holds the rest, not fewer */
  /* once they are gone it serves again */
  quiet = 1;
  int served = WAIT_FOR(http_get(port, "/healthz", &r) == 0 && r.status == 200, 3000);
  quiet = 0;
  CHECK(served);
}
DU_WORLD_TEST(connection_flood_is_bounded, flood_body)

/* ---- while the server closes ---------------------------------------------------------------- */

static void on_closed(void *data) { *(int *)data = 1; }

/* On a loop the test runs, so that the close and the requests are ordered: both requests' heads
 * are read but for their last CRLF before the close; the CRLF is there when the close starts;
 * the responder (closed last) answers /readyz with 503, and /metrics still with the counters (the
 * store closes after the connections: a last scrape sees the final counts). */
static void closing_run(uv_loop_t *loop, const char *dir) {
  static response_t r1, r2;
  hd_keypair_t kp;
  hd_keypair_generate(&kp);
  hd_server_options_t o = HD_SERVER_OPTIONS_INIT;
  o.keypair = &kp;
  o.topic = DU_TOPIC;
  o.listen = "127.0.0.1:0";
  o.data_dir = dir;
  o.loop = loop;
  o.metrics_listen = "127.0.0.1:0";
  hd_server_t *s;
  CHECK_OK(hd_server_create(&s, &o));
  int port = hd_server_metrics_port(s);
  int fd1 = tcp_connect(port), fd2 = tcp_connect(port);
  static const char ready[] = "GET /readyz HTTP/1.1\r\nHost: x\r\n";
  static const char metrics[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  int sent = fd1 >= 0 && fd2 >= 0 && tu_send_all(fd1, ready, sizeof ready - 1) == 0 &&
             tu_send_all(fd2, metrics, sizeof metrics - 1) == 0;
  for (int i = 0; i < 100; i++) { /* accepted, the heads read but for their end */
    uv_run(loop, UV_RUN_NOWAIT);
    hdt_sleep_ms(1);
  }
  sent = sent && tu_send_all(fd1, "\r\n", 2) == 0 && tu_send_all(fd2, "\r\n", 2) == 0;
  int closed = 0;
  int rc = hd_server_close(s, on_closed, &closed);
  uint64_t deadline = hdt_now_ms() + 10000u * (uint64_t)hdt_slow();
  while (rc == 0 && !closed && hdt_now_ms() < deadline) {
    uv_run(loop, UV_RUN_NOWAIT);
    hdt_sleep_ms(1);
  }
  uv_run(loop, UV_RUN_DEFAULT); /* the runtime's own handles */
  long n1 = fd1 >= 0 ? read_to_eof(fd1, r1.raw, sizeof r1.raw, 2000) : -1;
  long n2 = fd2 >= 0 ? read_to_eof(fd2, r2.raw, sizeof r2.raw, 2000) : -1;
  if (fd1 >= 0) close(fd1);
  if (fd2 >= 0) close(fd2);
  CHECK(sent);
  CHECK_OK(rc);
  CHECK(closed);
  if (n1 <= 0 || n2 <= 0) fprintf(stderr, "  readyz: %.40s / metrics: %.40s\n", r1.raw, r2.raw);
  CHECK(n1 > 0 && strncmp(r1.raw, "HTTP/1.1 503 ", 13) == 0);
  CHECK(n2 > 0 && strncmp(r2.raw, "HTTP/1.1 200 ", 13) == 0);
  const char *body = strstr(r2.raw, "\r\n\r\n");
  pt_text_t t;
  CHECK(body != NULL);
  int parsed = pt_parse(body + 4, strlen(body + 4), &t) == 0;
  pt_free(&t);
  CHECK(parsed);
}

static void readyz_503_while_closing(void) {
  char *dir = hdt_mkdtemp("metrics-closing");
  uv_loop_t loop;
  CHECK(dir != NULL && uv_loop_init(&loop) == 0);
  closing_run(&loop, dir);
  uv_run(&loop, UV_RUN_DEFAULT);
  int loop_closed = uv_loop_close(&loop) == 0;
  hdt_rmrf(dir);
  free(dir);
  CHECK(loop_closed);
}

/* ---- options -------------------------------------------------------------------------------- */

static void options_body(du_world_t *w) {
  CHECK(du_world_init(w, "metrics-opts", 1, 64, 0) == 0);
  /* none asked: no port */
  hd_server_options_t o;
  char addr[64];
  du_server_fill_options(&w->s, &o, addr, sizeof addr);
  CHECK_OK(hd_server_create(&w->s.h, &o));
  CHECK(hd_server_metrics_port(w->s.h) == HD_ESTATE);
  char buf[64];
  CHECK(hd_server_metrics(w->s.h, buf, sizeof buf) > 0); /* the call needs no responder */
  CHECK_OK(du_server_stop(&w->s));
  /* a bad address, a busy port: create fails and leaves nothing */
  o.metrics_listen = "not an address";
  CHECK(hd_server_create(&w->s.h, &o) == HD_EADDR);
  w->s.h = NULL;
  int busy = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  CHECK(bind(busy, (struct sockaddr *)&a, sizeof a) == 0 && listen(busy, 1) == 0 &&
        getsockname(busy, (struct sockaddr *)&a, &al) == 0);
  char taken[64];
  snprintf(taken, sizeof taken, "127.0.0.1:%d", ntohs(a.sin_port));
  o.metrics_listen = taken;
  int rc = hd_server_create(&w->s.h, &o);
  close(busy);
  if (rc == 0) du_server_stop(&w->s);
  w->s.h = NULL;
  CHECK(rc == HD_EADDRINUSE);
  /* the folder is free again: a create succeeds */
  o.metrics_listen = "127.0.0.1:0";
  CHECK_OK(hd_server_create(&w->s.h, &o));
  CHECK(hd_server_metrics_port(w->s.h) > 0);
  /* a version-4 struct has no metrics_listen: none is read */
  CHECK_OK(du_server_stop(&w->s));
  o.version = 4;
  CHECK_OK(hd_server_create(&w->s.h, &o));
  CHECK(hd_server_metrics_port(w->s.h) == HD_ESTATE);
}
DU_WORLD_TEST(metrics_listen_options, options_body)

/* ---- the strict reader refuses what the format forbids -------------------------------------- */

typedef struct bad_text {
  const char *why;
  const char *text;
} bad_text_t;

#define T_C "# TYPE a_total counter\n"
#define T_H "# TYPE h histogram\n"
static const bad_text_t bad_texts[] = {
    {"no trailing newline", T_C "a_total 1"},
    {"a sample before its TYPE", "a_total 1\n" T_C},
    {"a sample without TYPE", "g 1\n"},
    {"bad metric name", "# TYPE 1a gauge\n1a 1\n"},
    {"bad metric name char", "# TYPE a-b gauge\na-b 1\n"},
    {"bad label name", "# TYPE g gauge\ng{1x=\"a\"} 1\n"},
    {"reserved label name", "# TYPE g gauge\ng{__x=\"a\"} 1\n"},
    {"label twice", "# TYPE g gauge\ng{x=\"a\",x=\"b\"} 1\n"},
    {"label not quoted", "# TYPE g gauge\ng{x=a} 1\n"},
    {"bad label escape", "# TYPE g gauge\ng{x=\"a\\t\"} 1\n"},
    {"label not closed", "# TYPE g gauge\ng{x=\"a} 1\n"},
    {"bad help escape", "# HELP g a \\q\n# TYPE g gauge\ng 1\n"},
    {"two HELP", "# HELP g a\n# HELP g b\n# TYPE g gauge\ng 1\n"},
    {"two TYPE", "# TYPE g gauge\n# TYPE g gauge\ng 1\n"},
    {"unknown type", "# TYPE g meter\ng 1\n"},
    {"value not a float", "# TYPE g gauge\ng one\n"},
    {"value hex", "# TYPE g gauge\ng 0x10\n"},
    {"value empty", "# TYPE g gauge\ng\n"},
    {"value glued", "# TYPE g gauge\ng{x=\"a\"}1\n"},
    {"timestamp not an integer", "# TYPE g gauge\ng 1 1.5\n"},
    {"after the timestamp", "# TYPE g gauge\ng 1 15 x\n"},
    {"duplicate series", "# TYPE g gauge\ng{a=\"1\",b=\"2\"} 1\ng{b=\"2\",a=\"1\"} 2\n"},
    {"duplicate plain series", "# TYPE g gauge\ng 1\ng 2\n"},
    {"family not in one group", "# TYPE g gauge\n# TYPE k gauge\ng{a=\"1\"} 1\nk 1\ng{a=\"2\"} 1\n"},
    {"negative counter", T_C "a_total -1\n"},
    {"buckets not cumulative",
     T_H "h_bucket{le=\"1\"} 5\nh_bucket{le=\"2\"} 4\nh_bucket{le=\"+Inf\"} 5\nh_sum 3\nh_count 5\n"},
    {"le not ascending",
     T_H "h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n"},
    {"le repeated", T_H "h_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\n"
                    "h_sum 1\nh_count 1\n"},
    {"+Inf is not _count", T_H "h_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 3\n"},
    {"no +Inf", T_H "h_bucket{le=\"1\"} 1\nh_sum 3\nh_count 1\n"},
    {"+Inf not last", T_H "h_bucket{le=\"+Inf\"} 1\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n"},
    {"no _sum", T_H "h_bucket{le=\"+Inf\"} 1\nh_count 1\n"},
    {"bucket without le", T_H "h_bucket 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n"},
    {"histogram without suffix", T_H "h 1\n"},
    {"NUL byte", "# TYPE g gauge\ng 1\0\n"},
};
#define NBAD (sizeof bad_texts / sizeof bad_texts[0])

static void reader_refuses(void) {
  for (size_t i = 0; i < NBAD; i++) {
    pt_text_t t;
    const char *s = bad_texts[i].text;
    size_t len = strcmp(bad_texts[i].why, "NUL byte") == 0 ? strlen(s) + 2 : strlen(s);
    int rc = pt_parse(s, len, &t);
    pt_free(&t);
    if (rc != -1) fprintf(stderr, "  the reader took: %s\n", bad_texts[i].why);
    CHECK(rc == -1);
  }
  /* and takes what the format allows, with a histogram of two series */
  static const char good[] =
      "# A comment\n\n# HELP g A gauge \\\\ with\\n escapes.\n# TYPE g gauge\n"
      "g{path=\"/a\\\"b\\\\c\\n\",code=\"200\",} 1.5e3 1700000000000\ng{path=\"/b\"} NaN\n"
      "# TYPE h histogram\n"
      "h_bucket{x=\"1\",le=\"0.5\"} 0\nh_bucket{x=\"1\",le=\"1\"} 2\nh_bucket{x=\"1\",le=\"+Inf\"} 3\n"
      "h_sum{x=\"1\"} 2.5\nh_count{x=\"1\"} 3\n"
      "h_bucket{x=\"2\",le=\"+Inf\"} 0\nh_sum{x=\"2\"} 0\nh_count{x=\"2\"} 0\n"
      "# TYPE c_total counter\nc_total +Inf\n";
  pt_text_t t;
  int rc = pt_parse(good, sizeof good - 1, &t);
  if (rc != 0) fprintf(stderr, "  refused: %s\n", t.error);
  double v = 0;
  int found = pt_value(&t, "g", "code=\"200\",path=\"/a\\\"b\\\\c\\n\"", &v) == 0 && v == 1500;
  pt_free(&t);
  CHECK(rc == 0);
  CHECK(found);
}

#define TESTS(X)                                                                                  \
  X(reader_refuses)                                                                               \
  X(counters_move_while_events_flow)                                                              \
  X(gauges_pending_users_connections)                                                             \
  X(histogram_counts_every_add)                                                                   \
  X(metrics_call_is_snprintf_like)                                                                \
  X(endpoints_healthz_readyz_404_405)                                                             \
  X(hostile_requests_are_refused)                                                                 \
  X(stalled_request_is_bounded)                                                                   \
  X(connection_flood_is_bounded)                                                                  \
  X(readyz_503_while_closing)                                                                     \
  X(metrics_listen_options)

HD_TEST_MAIN(TESTS)
