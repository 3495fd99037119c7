/* The client's address list and its resolution (dialer.h). */
#include "dialer.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hd__dialer_init(hd__dialer_t *d, hd__runtime_t *rt, const char *const *texts, size_t n,
                    hd__dialer_cb cb, void *owner) {
  memset(d, 0, sizeof *d);
  if (n == 0 || texts == NULL) return hd__error(HD_EINVAL, "no server address given");
  d->specs = calloc(n, sizeof *d->specs);
  if (d->specs == NULL) return hd__error(HD_ENOMEM, "out of memory for %zu addresses", n);
  for (size_t i = 0; i < n; i++) {
    int rc = hd__addr_spec_parse(texts[i], &d->specs[i]);
    if (rc != 0) {
      if (n > 1) rc = hd__error(rc, "server address %zu of %zu: %s", i + 1, n, hd_last_error_message());
      hd__dialer_free(d);
      return rc;
    }
  }
  d->n = n;
  d->rt = rt;
  d->cb = cb;
  d->owner = owner;
  d->req.data = d;
  return 0;
}

void hd__dialer_free(hd__dialer_t *d) {
  free(d->specs);
  d->specs = NULL;
  d->n = 0;
}

const char *hd__dialer_entry_text(const hd__dialer_t *d) { return d->specs[d->entry].host; }

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  hd__dialer_t *d = req->data;
  d->resolving = 0;
  const hd__addr_spec_t *spec = &d->specs[d->entry];
  int rc = 0;
  if (status == UV_EAI_CANCELED) {
    rc = hd__error(HD_ECANCELED, "resolving \"%s\" canceled", spec->host);
  } else if (status != 0) {
    rc = hd__error(HD_EADDR, "host name \"%s\" does not resolve: %s", spec->host,
                   uv_strerror(status));
  } else {
    d->n_resolved = hd__addr_from_list(ai, spec->port, d->resolved, HD__DIALER_MAX_RESOLVED);
    d->next = 0;
    if (d->n_resolved == 0) {
      rc = hd__error(HD_EADDR, "host name \"%s\" resolves to no IPv4 or IPv6 address",
                     spec->host);
    }
  }
  uv_freeaddrinfo(ai);
  if (rc == 0 && hd__log_enabled(d->rt, HD_LOG_DEBUG)) {
    char first[HD__ADDR_STRLEN];
    hd__addr_format((const struct sockaddr *)&d->resolved[0], first, sizeof first);
    hd__log(d->rt, HD_LOG_DEBUG, "%s resolves to %zu address(es), first %s", spec->host,
            d->n_resolved, first);
  }
  d->cb(d, rc, rc == 0 ? (const struct sockaddr *)&d->resolved[0] : NULL);
}

int hd__dialer_next(hd__dialer_t *d, const struct sockaddr **addr) {
  *addr = NULL;
  if (d->resolving) return 1;
  const hd__addr_spec_t *spec = &d->specs[d->entry];
  if (d->n_resolved == 0 && spec->numeric) {
    d->resolved[0] = spec->sa;
    d->n_resolved = 1;
    d->next = 0;
  }
  if (d->n_resolved > 0) {
    *addr = (const struct sockaddr *)&d->resolved[d->next];
    return 0;
  }
  struct addrinfo hints;
  hd__addr_hints(&hints);
  int rc = uv_getaddrinfo(d->rt->loop, &d->req, on_resolved, spec->host, NULL, &hints);
  if (rc != 0) {
    return hd__error(HD_EADDR, "cannot resolve \"%s\": %s", spec->host, uv_strerror(rc));
  }
  d->resolving = 1;
  return 1;
}

int hd__dialer_failed(hd__dialer_t *d) {
  if (d->n_resolved > 0 && d->next + 1 < d->n_resolved) {
    d->next++;
    return 0;
  }
  d->entry = (d->entry + 1) % d->n;
  d->n_resolved = 0;
  d->next = 0;
  return 1;
}

int hd__dialer_cancel(hd__dialer_t *d) {
  if (!d->resolving) return 0;
  uv_cancel((uv_req_t *)&d->req);
  return 1;
}
