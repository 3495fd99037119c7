/* The metrics responder's request parser (CSources/server/http.h), on arbitrary bytes: the input
 * is the start of what a peer sent (at most the responder's HD__HTTP_HEAD_MAX). Checks: the
 * answer is BAD, MORE or a head length within the input; a complete head reads the same from
 * exactly its own bytes, every shorter prefix is MORE, and it is what a second, line-by-line
 * reading finds (CRLF lines, a request line of three parts, field lines with a colon, one Host
 * for HTTP/1.1); its spans lie inside it; an input that is MORE has only MORE prefixes; a BAD
 * input stays BAD whatever follows it; the route of a head is GET-only and by exact path. */
#include "fuzz_util.h"

#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int same(const hd__http_request_t *a, const hd__http_request_t *b) {
  return a->head_len == b->head_len && a->method == b->method &&
         a->method_len == b->method_len && a->path == b->path && a->path_len == b->path_len &&
         a->minor == b->minor;
}

/* The second reading of a complete head `h` of n bytes (the parser said so). */
static void check_lines(const char *h, size_t n, const hd__http_request_t *r) {
  FZ_CHECK(n >= 4 && memcmp(h + n - 4, "\r\n\r\n", 4) == 0);
  int line = 0, hosts = 0;
  size_t i = 0;
  while (i < n) {
    const char *cr = memchr(h + i, '\r', n - i);
    FZ_CHECK(cr != NULL && cr + 1 < h + n && cr[1] == '\n');
    size_t len = (size_t)(cr - (h + i));
    FZ_CHECK(memchr(h + i, '\n', len) == NULL);
    if (line == 0) {
      /* METHOD SP /target SP HTTP/1.d */
      FZ_CHECK(len >= r->method_len + 1 + 1 + 1 + 8);
      FZ_CHECK(h + i == r->method && h[i + r->method_len] == ' ');
      FZ_CHECK(r->path == h + i + r->method_len + 1 && r->path[0] == '/');
      FZ_CHECK(memcmp(h + i + len - 8, "HTTP/1.", 7) == 0 && h[i + len - 9] == ' ');
      FZ_CHECK(h[i + len - 1] - '0' == r->minor);
      FZ_CHECK(memchr(r->path, '?', r->path_len) == NULL);
      FZ_CHECK(r->path + r->path_len <= h + i + len - 9);
    } else if (len > 0) {
      const char *colon = memchr(h + i, ':', len);
      FZ_CHECK(colon != NULL && colon > h + i);
      if (colon - (h + i) == 4 && strncasecmp(h + i, "host", 4) == 0) hosts++;
    } else {
      FZ_CHECK(i + 2 == n); /* the blank line ends the head */
    }
    line++;
    i += len + 2;
  }
  FZ_CHECK(hosts <= 1 && (r->minor == 0 || hosts == 1));
  FZ_CHECK(r->method_len >= 1 && r->method_len <= HD__HTTP_METHOD_MAX);
  for (size_t k = 0; k < r->method_len; k++) FZ_CHECK(r->method[k] > ' ' && r->method[k] < 0x7f);
}

static void check_route(const hd__http_request_t *r) {
  hd__http_route_t route = hd__http_route(r);
  int get = r->method_len == 3 && memcmp(r->method, "GET", 3) == 0;
  int known = (r->path_len == 8 && memcmp(r->path, "/metrics", 8) == 0) ||
              (r->path_len == 8 && memcmp(r->path, "/healthz", 8) == 0) ||
              (r->path_len == 7 && memcmp(r->path, "/readyz", 7) == 0);
  if (!known) FZ_CHECK(route == HD__HTTP_NOT_FOUND);
  else if (!get) FZ_CHECK(route == HD__HTTP_NOT_ALLOWED);
  else FZ_CHECK(route == HD__HTTP_METRICS || route == HD__HTTP_HEALTHZ || route == HD__HTTP_READYZ);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > HD__HTTP_HEAD_MAX) size = HD__HTTP_HEAD_MAX;
  /* a copy of exactly `size` bytes, so that ASan sees any read past the end */
  char *buf = malloc(size ? size : 1);
  FZ_CHECK(buf != NULL);
  memcpy(buf, data, size);
  hd__http_request_t r, again;
  int rc = hd__http_parse(buf, size, &r);
  FZ_CHECK(rc == HD__HTTP_BAD || rc == HD__HTTP_MORE || (rc > 0 && (size_t)rc <= size));
  if (rc > 0) {
    FZ_CHECK(r.head_len == (size_t)rc);
    FZ_CHECK(hd__http_parse(buf, (size_t)rc, &again) == rc && same(&r, &again));
    FZ_CHECK(hd__http_parse(buf, (size_t)rc - 1, &again) == HD__HTTP_MORE);
    FZ_CHECK(hd__http_parse(buf, (size_t)rc / 2, &again) == HD__HTTP_MORE);
    check_lines(buf, (size_t)rc, &r);
    check_route(&r);
  } else if (rc == HD__HTTP_MORE) {
    if (size > 0) FZ_CHECK(hd__http_parse(buf, size - 1, &again) == HD__HTTP_MORE);
    FZ_CHECK(hd__http_parse(buf, size / 2, &again) == HD__HTTP_MORE);
  } else {
    /* BAD stays BAD: the same bytes with a valid ending after them */
    static const char tail[] = " / HTTP/1.1\r\nHost: x\r\n\r\n";
    char *more = malloc(size + sizeof tail);
    FZ_CHECK(more != NULL);
    memcpy(more, buf, size);
    memcpy(more + size, tail, sizeof tail - 1);
    FZ_CHECK(hd__http_parse(more, size + sizeof tail - 1, &again) == HD__HTTP_BAD);
    free(more);
  }
  free(buf);
  return 0;
}
