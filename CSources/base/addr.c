/* Parsing, resolving and formatting of "host:port" / "[v6]:port" (addr.h). */
#include "addr.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static int parse_port(const char *text, const char *p, int *port) {
  if (*p == '\0') return hd__error(HD_EADDR, "address \"%s\" has no port after ':'", text);
  long v = 0;
  for (const char *q = p; *q; q++) {
    if (*q < '0' || *q > '9') {
      return hd__error(HD_EADDR, "address \"%s\": port \"%s\" is not a number", text, p);
    }
    v = v * 10 + (*q - '0');
    if (v > 65535) return hd__error(HD_EADDR, "address \"%s\": port %s is above 65535", text, p);
  }
  *port = (int)v;
  return 0;
}

/* A host name's characters (RFC 1123 labels; '_' as resolvers accept it). */
static int name_ok(const char *host) {
  if (host[0] == '.' || host[0] == '-') return 0;
  for (const char *q = host; *q; q++) {
    char ch = *q;
    int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '-' || ch == '.' || ch == '_';
    if (!ok) return 0;
  }
  return 1;
}

int hd__addr_spec_parse(const char *text, hd__addr_spec_t *out) {
  if (text == NULL) return hd__error(HD_EADDR, "no address given");
  memset(out, 0, sizeof *out);
  const char *port_text;
  size_t n;
  const char *host_start;
  int v6 = 0;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL) return hd__error(HD_EADDR, "address \"%s\": '[' without ']'", text);
    host_start = text + 1;
    n = (size_t)(close - host_start);
    if (close[1] != ':') {
      return hd__error(HD_EADDR, "address \"%s\": expected \"[ipv6]:port\"", text);
    }
    port_text = close + 2;
    v6 = 1;
  } else {
    const char *colon = strrchr(text, ':');
    if (colon == NULL) {
      return hd__error(HD_EADDR, "address \"%s\" has no port (expected \"host:port\")", text);
    }
    if (strchr(text, ':') != colon) {
      return hd__error(HD_EADDR, "address \"%s\": write IPv6 addresses as \"[ipv6]:port\"", text);
    }
    host_start = text;
    n = (size_t)(colon - text);
    port_text = colon + 1;
  }
  if (n == 0 || n > HD__ADDR_HOST_MAX) {
    return hd__error(HD_EADDR, "address \"%s\": %s host", text, n == 0 ? "empty" : "too long a");
  }
  memcpy(out->host, host_start, n);
  out->host[n] = '\0';
  int rc = parse_port(text, port_text, &out->port);
  if (rc != 0) return rc;
  if (v6) {
    if (uv_ip6_addr(out->host, out->port, (struct sockaddr_in6 *)&out->sa) != 0) {
      return hd__error(HD_EADDR, "address \"%s\": \"%s\" is not a numeric IPv6 address", text,
                       out->host);
    }
    out->numeric = 1;
    return 0;
  }
  if (uv_ip4_addr(out->host, out->port, (struct sockaddr_in *)&out->sa) == 0) {
    out->numeric = 1;
    return 0;
  }
  memset(&out->sa, 0, sizeof out->sa);
  if (!name_ok(out->host)) {
    return hd__error(HD_EADDR, "address \"%s\": \"%s\" is neither a numeric address nor a host "
                     "name", text, out->host);
  }
  return 0;
}

void hd__addr_hints(struct addrinfo *hints) {
  memset(hints, 0, sizeof *hints);
  hints->ai_family = AF_UNSPEC;
  hints->ai_socktype = SOCK_STREAM;
  hints->ai_protocol = IPPROTO_TCP;
  /* no AI_ADDRCONFIG: it drops 127.0.0.1 and ::1 on a host whose only interface is the
   * loopback; an address of a family the host lacks fails at once and the next is tried */
}

size_t hd__addr_from_list(const struct addrinfo *ai, int port, struct sockaddr_storage *out,
                          size_t cap) {
  size_t n = 0;
  for (; ai != NULL && n < cap; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
      memset(&out[n], 0, sizeof out[n]);
      memcpy(&out[n], ai->ai_addr, sizeof(struct sockaddr_in));
      ((struct sockaddr_in *)&out[n])->sin_port = htons((uint16_t)port);
      n++;
    } else if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
      memset(&out[n], 0, sizeof out[n]);
      memcpy(&out[n], ai->ai_addr, sizeof(struct sockaddr_in6));
      ((struct sockaddr_in6 *)&out[n])->sin6_port = htons((uint16_t)port);
      n++;
    }
  }
  return n;
}

int hd__addr_resolve_blocking(const hd__addr_spec_t *spec, struct sockaddr_storage *out,
                              size_t cap) {
  if (cap == 0) return hd__error(HD_EINVAL, "no room for an address");
  if (spec->numeric) {
    out[0] = spec->sa;
    return 1;
  }
  struct addrinfo hints, *ai = NULL;
  hd__addr_hints(&hints);
  int rc = getaddrinfo(spec->host, NULL, &hints, &ai);
  if (rc != 0) {
    return hd__error(HD_EADDR, "host name \"%s\" does not resolve: %s", spec->host,
                     gai_strerror(rc));
  }
  size_t n = hd__addr_from_list(ai, spec->port, out, cap);
  freeaddrinfo(ai);
  if (n == 0) {
    return hd__error(HD_EADDR, "host name \"%s\" resolves to no IPv4 or IPv6 address",
                     spec->host);
  }
  return (int)n;
}

int hd__addr_parse(const char *text, struct sockaddr_storage *out) {
  hd__addr_spec_t spec;
  int rc = hd__addr_spec_parse(text, &spec);
  if (rc == 0) rc = hd__addr_resolve_blocking(&spec, out, 1);
  return rc < 0 ? rc : 0;
}

void hd__addr_format(const struct sockaddr *sa, char *out, size_t out_size) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    uv_ip6_name(s6, ip, sizeof ip);
    snprintf(out, out_size, "[%s]:%u", ip, (unsigned)ntohs(s6->sin6_port));
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    uv_ip4_name(s4, ip, sizeof ip);
    snprintf(out, out_size, "%s:%u", ip, (unsigned)ntohs(s4->sin_port));
  } else {
    snprintf(out, out_size, "(unknown address)");
  }
}
