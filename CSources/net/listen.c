/* The listening socket (listen.h). */
#include "listen.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CANDIDATES 16

/* Whether `addr` binds, on a socket of its own: a libuv handle keeps the family of its first
 * bind, so a name's candidates of both families are tried on plain sockets and the handle is
 * bound once, to the first that works. 0 or a libuv error code. */
static int probe_bind(const struct sockaddr *addr) {
  int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int on = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on); /* as libuv binds */
  socklen_t len = addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                              : sizeof(struct sockaddr_in);
  int rc = bind(fd, addr, len) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

int hd__listen_open(uv_tcp_t *listener, const char *text, int backlog, uv_connection_cb cb,
                    int *port) {
  hd__addr_spec_t spec;
  int rc = hd__addr_spec_parse(text, &spec);
  if (rc != 0) return rc;
  struct sockaddr_storage cand[MAX_CANDIDATES];
  int n = hd__addr_resolve_blocking(&spec, cand, MAX_CANDIDATES);
  if (n < 0) return n;
  int pick = n - 1; /* the last is bound without a probe: its failure is the one reported */
  for (int i = 0; i + 1 < n; i++) {
    if (probe_bind((const struct sockaddr *)&cand[i]) == 0) {
      pick = i;
      break;
    }
  }
  const struct sockaddr *addr = (const struct sockaddr *)&cand[pick];
  rc = uv_tcp_bind(listener, addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)listener, backlog, cb);
  if (rc == 0) {
    struct sockaddr_storage bound;
    int len = sizeof bound;
    rc = uv_tcp_getsockname(listener, (struct sockaddr *)&bound, &len);
    if (rc == 0) {
      *port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    }
  }
  if (rc == 0) return 0;
  char what[HD__ADDR_HOST_MAX + 2 * HD__ADDR_STRLEN];
  if (spec.numeric) {
    snprintf(what, sizeof what, "cannot listen on %s", text);
  } else {
    char a[HD__ADDR_STRLEN];
    hd__addr_format(addr, a, sizeof a);
    snprintf(what, sizeof what, "cannot listen on %s (%s, of %d address%s it resolves to)", text,
             a, n, n == 1 ? "" : "es");
  }
  return hd__error_from_uv(rc, what);
}
