/* The metrics responder (http.h): the request parser, the routes, and the connections on the
 * server's loop. */
#include "http.h"

#include "addr.h"
#include "listen.h"
#include "metrics.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The request parser --------------------------------------------------------------------- */

/* RFC 9110 tchar */
static int is_tchar(unsigned char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* a field value's bytes: VCHAR, SP, HTAB, obs-text */
static int is_value_char(unsigned char c) { return c == ' ' || c == '\t' || (c >= 0x21 && c != 0x7f); }

static int ieq(const char *a, size_t n, const char *b) {
  if (strlen(b) != n) return 0;
  for (size_t i = 0; i < n; i++) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? (char)(a[i] - 'A' + 'a') : a[i];
    if (x != b[i]) return 0;
  }
  return 1;
}

/* The CRLF at buf[i]: 1 if there, 0 if the input ends before it is known, -1 if not there. */
static int crlf_at(const char *buf, size_t len, size_t i) {
  if (i >= len) return 0;
  if (buf[i] != '\r') return -1;
  if (i + 1 >= len) return 0;
  return buf[i + 1] == '\n' ? 1 : -1;
}

int hd__http_parse(const char *buf, size_t len, hd__http_request_t *out) {
  static const char version[] = "HTTP/1.";
  const unsigned char *u = (const unsigned char *)buf;
  size_t i = 0;
  memset(out, 0, sizeof *out);
  /* method SP */
  while (i < len && is_tchar(u[i])) {
    if (++i > HD__HTTP_METHOD_MAX) return HD__HTTP_BAD;
  }
  if (i == len) return HD__HTTP_MORE;
  if (i == 0 || u[i] != ' ') return HD__HTTP_BAD;
  out->method = buf;
  out->method_len = i++;
  /* request-target SP: origin form only */
  size_t target = i;
  if (i == len) return HD__HTTP_MORE;
  if (u[i] != '/') return HD__HTTP_BAD;
  size_t query = 0;
  while (i < len && u[i] >= 0x21 && u[i] <= 0x7e) {
    if (u[i] == '?' && query == 0) query = i;
    i++;
  }
  if (i == len) return HD__HTTP_MORE;
  if (u[i] != ' ') return HD__HTTP_BAD;
  out->path = buf + target;
  out->path_len = (query ? query : i) - target;
  i++;
  /* HTTP-version CRLF */
  for (size_t k = 0; k < sizeof version - 1; k++, i++) {
    if (i == len) return HD__HTTP_MORE;
    if (buf[i] != version[k]) return HD__HTTP_BAD;
  }
  if (i == len) return HD__HTTP_MORE;
  if (u[i] < '0' || u[i] > '9') return HD__HTTP_BAD;
  out->minor = u[i++] - '0';
  int eol = crlf_at(buf, len, i);
  if (eol <= 0) return eol == 0 ? HD__HTTP_MORE : HD__HTTP_BAD;
  i += 2;
  /* field lines, then the blank line */
  int hosts = 0;
  for (;;) {
    if (i == len) return HD__HTTP_MORE;
    if (u[i] == '\r') {
      eol = crlf_at(buf, len, i);
      if (eol <= 0) return eol == 0 ? HD__HTTP_MORE : HD__HTTP_BAD;
      i += 2;
      break;
    }
    size_t name = i;
    while (i < len && is_tchar(u[i])) i++; /* a line starting with SP or HTAB (folding) stops here */
    if (i == len) return HD__HTTP_MORE;
    if (i == name || u[i] != ':') return HD__HTTP_BAD;
    if (ieq(buf + name, i - name, "host")) hosts++;
    i++;
    while (i < len && is_value_char(u[i])) i++;
    eol = crlf_at(buf, len, i);
    if (eol <= 0) return eol == 0 ? HD__HTTP_MORE : HD__HTTP_BAD;
    i += 2;
  }
  if (hosts > 1 || (out->minor >= 1 && hosts == 0)) return HD__HTTP_BAD;
  out->head_len = i;
  return (int)i; /* within the caller's buffer, at most HD__HTTP_HEAD_MAX in the responder */
}

hd__http_route_t hd__http_route(const hd__http_request_t *r) {
  static const struct { const char *path; hd__http_route_t route; } paths[] = {
      {"/metrics", HD__HTTP_METRICS}, {"/healthz", HD__HTTP_HEALTHZ}, {"/readyz", HD__HTTP_READYZ}};
  hd__http_route_t route = HD__HTTP_NOT_FOUND;
  for (size_t k = 0; k < sizeof paths / sizeof paths[0]; k++) {
    if (strlen(paths[k].path) == r->path_len && memcmp(paths[k].path, r->path, r->path_len) == 0) {
      route = paths[k].route;
    }
  }
  int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
  return route != HD__HTTP_NOT_FOUND && !get ? HD__HTTP_NOT_ALLOWED : route;
}

/* ---- Connections ---------------------------------------------------------------------------- */

enum { READING, WRITING, LINGERING };

typedef struct http_conn {
  uv_tcp_t tcp;
  uv_timer_t timer;       /* the phase's deadline: head, response, linger */
  uv_write_t write;
  uv_shutdown_t shutdown;
  hd__http_t *h;
  hd__queue_t node;
  int state;
  int eof;                /* the peer ended its side */
  int closing, open_handles;
  char status[256];       /* the status line and the headers */
  char *body;             /* malloc'd, or NULL: static_body */
  const char *static_body;
  size_t body_len;
  size_t len;             /* of head */
  char head[HD__HTTP_HEAD_MAX];
} http_conn_t;

struct hd__http {
  hd__runtime_t *rt;
  hd_server_t *server;
  uv_tcp_t listener;
  int port;
  char listen_text[HD__ADDR_STRLEN];
  hd__queue_t conns;
  size_t nconns;
  int closing, listener_open;
  void (*closed_cb)(void *arg);
  void *closed_arg;
};

static void maybe_freed(hd__http_t *h) {
  if (!h->closing || h->listener_open || h->nconns > 0) return;
  void (*cb)(void *) = h->closed_cb;
  void *arg = h->closed_arg;
  free(h);
  if (cb != NULL) cb(arg);
}

static void on_conn_handle_closed(uv_handle_t *handle) {
  http_conn_t *c = handle->data;
  if (--c->open_handles > 0) return;
  hd__http_t *h = c->h;
  hd__queue_remove(&c->node);
  h->nconns--;
  free(c->body);
  free(c);
  maybe_freed(h);
}

static void conn_close(http_conn_t *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed); /* cancels a write or shutdown */
}

static void on_timeout(uv_timer_t *t) {
  http_conn_t *c = t->data;
  hd__log(c->h->rt, HD_LOG_DEBUG, "metrics responder: a connection timed out %s",
          c->state == READING ? "sending its request" : "taking its response");
  conn_close(c);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  http_conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0 || c->eof) conn_close(c);
  /* else the linger timer or the peer's end closes it */
}

static void on_written(uv_write_t *req, int status) {
  http_conn_t *c = req->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  c->state = LINGERING;
  uv_timer_start(&c->timer, on_timeout, HD__HTTP_LINGER_MS, 0);
  c->shutdown.data = c;
  if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
}

static void respond(http_conn_t *c, int code, const char *reason, const char *extra) {
  static const char *const bodies[] = {"ok\n", "not ready\n", "not found\n",
                                       "method not allowed\n", "bad request\n",
                                       "request header fields too large\n"};
  if (c->body == NULL && c->static_body == NULL) {
    c->static_body = code == 200 ? bodies[0] : code == 503 ? bodies[1] : code == 404 ? bodies[2]
                   : code == 405 ? bodies[3] : code == 431 ? bodies[5] : bodies[4];
    c->body_len = strlen(c->static_body);
  }
  const char *type = c->body != NULL ? "text/plain; version=0.0.4; charset=utf-8"
                                     : "text/plain; charset=utf-8";
  int n = snprintf(c->status, sizeof c->status,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                   "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                   code, reason, type, c->body_len, extra ? extra : "");
  c->state = WRITING;
  uv_timer_start(&c->timer, on_timeout, HD__HTTP_WRITE_TIMEOUT_MS, 0);
  uv_buf_t bufs[2] = {uv_buf_init(c->status, (unsigned)n),
                      uv_buf_init(c->body ? c->body : (char *)c->static_body,
                                  (unsigned)c->body_len)};
  c->write.data = c;
  if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, 2, on_written) != 0) conn_close(c);
}

static void respond_metrics(http_conn_t *c) {
  hd__metrics_t m;
  if (hd__metrics_read(c->h->server, &m) != 0) {
    respond(c, 503, "Service Unavailable", NULL);
    return;
  }
  size_t len = hd__metrics_render(&m, NULL, 0);
  c->body = malloc(len + 1);
  if (c->body == NULL) {
    respond(c, 503, "Service Unavailable", NULL);
    return;
  }
  c->body_len = hd__metrics_render(&m, c->body, len + 1);
  respond(c, 200, "OK", NULL);
}

static void on_request(http_conn_t *c, const hd__http_request_t *r) {
  switch (hd__http_route(r)) {
  case HD__HTTP_METRICS: respond_metrics(c); break;
  case HD__HTTP_HEALTHZ: respond(c, 200, "OK", NULL); break;
  case HD__HTTP_READYZ:
    if (hd__server_ready(c->h->server)) respond(c, 200, "OK", NULL);
    else respond(c, 503, "Service Unavailable", NULL);
    break;
  case HD__HTTP_NOT_FOUND: respond(c, 404, "Not Found", NULL); break;
  case HD__HTTP_NOT_ALLOWED: respond(c, 405, "Method Not Allowed", "Allow: GET\r\n"); break;
  }
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf) {
  http_conn_t *c = handle->data;
  (void)suggested;
  /* the head fills the buffer; what comes after it is read into it too, and dropped */
  if (c->state == READING) *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof c->head - c->len));
  else *buf = uv_buf_init(c->head, sizeof c->head);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
  http_conn_t *c = stream->data;
  (void)buf;
  if (c->closing) return;
  if (nread < 0) {
    c->eof = 1;
    uv_read_stop(stream);
    /* a request cut short gets no answer; an answer being written goes on */
    if (c->state != WRITING) conn_close(c);
    return;
  }
  if (nread == 0 || c->state != READING) return;
  c->len += (size_t)nread;
  hd__http_request_t r;
  int rc = hd__http_parse(c->head, c->len, &r);
  if (rc > 0) on_request(c, &r);
  else if (rc == HD__HTTP_BAD) respond(c, 400, "Bad Request", NULL);
  else if (c->len == sizeof c->head) respond(c, 431, "Request Header Fields Too Large", NULL);
}

static void free_handle(uv_handle_t *handle) { free(handle); }

static void on_connection(uv_stream_t *listener, int status) {
  hd__http_t *h = listener->data;
  if (status < 0 || h->closing) return;
  if (h->nconns >= HD__HTTP_MAX_CONNS) {
    /* taken off the backlog and closed, so that a flood does not queue up behind the bound */
    uv_tcp_t *t = malloc(sizeof *t);
    if (t == NULL) return;
    uv_tcp_init(h->rt->loop, t);
    if (uv_accept(listener, (uv_stream_t *)t) == 0) {
      hd__log(h->rt, HD_LOG_DEBUG, "metrics responder: %d connections at once: one closed",
              HD__HTTP_MAX_CONNS);
    }
    uv_close((uv_handle_t *)t, free_handle);
    return;
  }
  http_conn_t *c = malloc(sizeof *c);
  if (c == NULL) return;
  memset(c, 0, offsetof(http_conn_t, head));
  c->h = h;
  uv_tcp_init(h->rt->loop, &c->tcp);
  uv_timer_init(h->rt->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->open_handles = 2;
  hd__queue_insert_tail(&h->conns, &c->node);
  h->nconns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, HD__HTTP_READ_TIMEOUT_MS, 0);
}

/* ---- Start and close ------------------------------------------------------------------------ */

static void on_listener_closed(uv_handle_t *handle) {
  hd__http_t *h = handle->data;
  h->listener_open = 0;
  maybe_freed(h);
}

int hd__http_start(hd__http_t **out, hd__runtime_t *rt, hd_server_t *server, const char *listen) {
  *out = NULL;
  hd__http_t *h = calloc(1, sizeof *h);
  if (h == NULL) return hd__error(HD_ENOMEM, "out of memory starting the metrics responder");
  h->rt = rt;
  h->server = server;
  hd__queue_init(&h->conns);
  snprintf(h->listen_text, sizeof h->listen_text, "%s", listen);
  uv_tcp_init(rt->loop, &h->listener);
  h->listener.data = h;
  h->listener_open = 1;
  /* the same address forms as the event listener's `listen`: names resolved, first that binds */
  int rc = hd__listen_open(&h->listener, listen, 64, on_connection, &h->port);
  if (rc != 0) {
    char detail[256];
    snprintf(detail, sizeof detail, "metrics_listen: %s", hd_last_error_message());
    hd__error_state_t e;
    hd__error(rc, "%s", detail);
    hd__error_save(&e);
    hd__http_close(h, NULL, NULL); /* frees itself once the loop has closed the listener */
    return hd__error_restore(&e);
  }
  hd__log(rt, HD_LOG_INFO, "metrics responder on %s (port %d): /metrics, /healthz, /readyz",
          listen, h->port);
  *out = h;
  return 0;
}

int hd__http_port(const hd__http_t *h) { return h->port; }

void hd__http_close(hd__http_t *h, void (*cb)(void *arg), void *arg) {
  h->closing = 1;
  h->closed_cb = cb;
  h->closed_arg = arg;
  uv_close((uv_handle_t *)&h->listener, on_listener_closed);
  hd__queue_t *q, *n;
  hd__queue_foreach_safe(q, n, &h->conns) conn_close(hd__container_of(q, http_conn_t, node));
}
