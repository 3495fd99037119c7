/* The metrics responder's request parser and routes (CSources/server/http.h), on buffers: heads
 * that parse and what they say, heads refused and where, every prefix of a valid head "more",
 * and the routes by method and path. The responder itself: test/system/test_metrics.c. */
#include "harness.h"

#include "http.h"

typedef struct head_case {
  const char *text;
  int ok;              /* 1: a complete head; 0: refused (BAD); 2: more wanted */
  const char *method, *path;
  int minor;
} head_case_t;

static const head_case_t heads[] = {
    {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET", "/metrics", 1},
    {"GET /metrics?a=b?c HTTP/1.1\r\nHost: x\r\n\r\n", 1, "GET", "/metrics", 1},
    {"GET /healthz HTTP/1.0\r\n\r\n", 1, "GET", "/healthz", 0},
    {"DELETE /readyz HTTP/1.1\r\nHOST:x\r\nX-Empty:\r\nX-Tab:\ta\tb\r\n\r\n", 1, "DELETE", "/readyz", 1},
    {"GET / HTTP/1.1\r\nHost: x\r\nX-Obs: caf\xc3\xa9\r\n\r\n", 1, "GET", "/", 1},
    {"GET /metrics HTTP/1.1\r\nHost: x\r\n", 2, 0, 0, 0},
    {"GET /metrics HTTP/1.1\r\nHost: x\r\n\r", 2, 0, 0, 0},
    {"G", 2, 0, 0, 0},
    {"", 2, 0, 0, 0},
    {" GET / HTTP/1.1\r\n", 0, 0, 0, 0},
    {"GET metrics HTTP/1.1\r\n", 0, 0, 0, 0},
    {"GET  / HTTP/1.1\r\n", 0, 0, 0, 0},
    {"GET / HTTP/2.0\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.x\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1 \r\n", 0, 0, 0, 0},
    {"GET /\x7f HTTP/1.1\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\n: x\r\n\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\nHost: x\x01\r\n\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\nHost: x\rz\r\n\r\n", 0, 0, 0, 0},
    {"GET / HTTP/1.1\r\n\r\n", 0, 0, 0, 0},                     /* 1.1 without Host */
    {"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", 0, 0, 0, 0}, /* two Hosts */
    {"ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n", 0, 0, 0, 0},              /* method above 16 */
    {"\x16\x03\x01\x02\x00", 0, 0, 0, 0},                          /* a TLS hello */
};

static int span_is(const char *p, size_t n, const char *want) {
  return strlen(want) == n && memcmp(p, want, n) == 0;
}

static void heads_parse(void) {
  for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
    const head_case_t *c = &heads[i];
    size_t len = strlen(c->text);
    hd__http_request_t r;
    int rc = hd__http_parse(c->text, len, &r);
    int want = c->ok == 1 ? (int)len : c->ok == 2 ? HD__HTTP_MORE : HD__HTTP_BAD;
    if (rc != want) fprintf(stderr, "  case %zu: %d, wanted %d\n", i, rc, want);
    CHECK(rc == want);
    if (c->ok != 1) continue;
    CHECK(span_is(r.method, r.method_len, c->method) && span_is(r.path, r.path_len, c->path));
    CHECK(r.minor == c->minor && r.head_len == len);
    /* every prefix asks for more; bytes after the head are not its */
    for (size_t k = 0; k < len; k++) CHECK(hd__http_parse(c->text, k, &r) == HD__HTTP_MORE);
    char longer[512];
    snprintf(longer, sizeof longer, "%sbody bytes", c->text);
    CHECK(hd__http_parse(longer, strlen(longer), &r) == (int)len);
  }
}

static void routes(void) {
  static const struct { const char *head; hd__http_route_t route; } cases[] = {
      {"GET /metrics HTTP/1.0\r\n\r\n", HD__HTTP_METRICS},
      {"GET /healthz HTTP/1.0\r\n\r\n", HD__HTTP_HEALTHZ},
      {"GET /readyz HTTP/1.0\r\n\r\n", HD__HTTP_READYZ},
      {"GET /readyz?x HTTP/1.0\r\n\r\n", HD__HTTP_READYZ},
      {"GET /metricsx HTTP/1.0\r\n\r\n", HD__HTTP_NOT_FOUND},
      {"GET / HTTP/1.0\r\n\r\n", HD__HTTP_NOT_FOUND},
      {"POST /metrics HTTP/1.0\r\n\r\n", HD__HTTP_NOT_ALLOWED},
      {"get /metrics HTTP/1.0\r\n\r\n", HD__HTTP_NOT_ALLOWED}, /* methods are case-sensitive */
      {"HEAD /healthz HTTP/1.0\r\n\r\n", HD__HTTP_NOT_ALLOWED},
      {"POST /other HTTP/1.0\r\n\r\n", HD__HTTP_NOT_FOUND},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    hd__http_request_t r;
    CHECK(hd__http_parse(cases[i].head, strlen(cases[i].head), &r) > 0);
    CHECK(hd__http_route(&r) == cases[i].route);
  }
}

#define TESTS(X) X(heads_parse) X(routes)

HD_TEST_MAIN(TESTS)
