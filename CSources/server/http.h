/* The metrics responder (hd_server_options_t.metrics_listen; docs/OPERATIONS.md, "Metrics and
 * health"): a minimal HTTP/1.1 server on the server's own loop, no framework. GET /metrics (the
 * text of hd_server_metrics), GET /healthz (200 while the process runs), GET /readyz (200 while
 * the store is open and the event listener accepts, else 503); 404 for another path, 405 for
 * another method, 400 for a malformed request, 431 for a head above HD__HTTP_HEAD_MAX. One
 * request per connection: every response says Connection: close. Hostile peers are bounded: the
 * head's size, the time to send it, the time to take the answer, and the connections at once.
 * Loop thread, except the parser, which is a pure function (fuzz/http_request.c). */
#ifndef HD_HTTP_H
#define HD_HTTP_H

#include "runtime.h"

#define HD__HTTP_HEAD_MAX 8192         /* request line and headers, with the blank line */
#define HD__HTTP_READ_TIMEOUT_MS 5000  /* from accept to the head's blank line */
#define HD__HTTP_WRITE_TIMEOUT_MS 5000 /* for the response to be taken */
#define HD__HTTP_LINGER_MS 1000        /* after the response, unread input is drained this long
                                          before the close (a close with unread input sends RST,
                                          which may destroy the response at the peer) */
#define HD__HTTP_MAX_CONNS 64          /* more at once are closed as they come */
#define HD__HTTP_METHOD_MAX 16

/* ---- The request parser --------------------------------------------------------------------- */

/* What a complete head says. The spans point into the parsed buffer. */
typedef struct hd__http_request {
  size_t head_len;     /* bytes up to and with the blank line's CRLF */
  const char *method;  /* a token, case-sensitive */
  size_t method_len;
  const char *path;    /* origin form, starts with '/', without the query */
  size_t path_len;
  int minor;           /* HTTP/1.<minor> */
} hd__http_request_t;

enum { HD__HTTP_BAD = -1, HD__HTTP_MORE = 0 };

/* Reads the head at the start of buf[0..len): its length (> 0) with `out` filled when the blank
 * line is there; HD__HTTP_MORE when everything so far can still start a valid head;
 * HD__HTTP_BAD as soon as it cannot (RFC 9112: request line, token field names, visible
 * values, CRLF line ends, no folding; HTTP/1.1 needs exactly one Host, HTTP/1.0 at most one).
 * A prefix of a valid head is MORE; an extension of a BAD input is BAD. */
int hd__http_parse(const char *buf, size_t len, hd__http_request_t *out);

/* What a request gets, from its method and path alone. */
typedef enum hd__http_route {
  HD__HTTP_METRICS,
  HD__HTTP_HEALTHZ,
  HD__HTTP_READYZ,
  HD__HTTP_NOT_FOUND,
  HD__HTTP_NOT_ALLOWED,
} hd__http_route_t;
hd__http_route_t hd__http_route(const hd__http_request_t *r);

/* ---- The responder -------------------------------------------------------------------------- */

typedef struct hd__http hd__http_t;

/* Binds `listen` ("host:port"; port 0 = any) and listens on rt's loop for `server`: on the
 * creating thread before the loop runs, like the event listener. */
int hd__http_start(hd__http_t **out, hd__runtime_t *rt, hd_server_t *server, const char *listen);
int hd__http_port(const hd__http_t *h);
/* Stops listening, closes every connection, then cb(arg) (optional) and `h` is freed. Loop
 * thread (or the creating thread on a failed create: the loop must then run for it to end). */
void hd__http_close(hd__http_t *h, void (*cb)(void *arg), void *arg);

#endif
