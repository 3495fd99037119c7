/* Parsing and formatting of "host:port" / "[v6]:port" (addr.h). */
#include "addr.h"

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

int hd__addr_parse(const char *text, struct sockaddr_storage *out) {
  if (text == NULL) return hd__error(HD_EADDR, "no address given");
  memset(out, 0, sizeof *out);
  char host[64];
  const char *port_text;
  int v6 = 0;
  if (text[0] == '[') {
    const char *close = strchr(text, ']');
    if (close == NULL) return hd__error(HD_EADDR, "address \"%s\": '[' without ']'", text);
    size_t n = (size_t)(close - text - 1);
    if (n == 0 || n >= sizeof host) {
      return hd__error(HD_EADDR, "address \"%s\": bad IPv6 host", text);
    }
    memcpy(host, text + 1, n);
    host[n] = '\0';
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
    size_t n = (size_t)(colon - text);
    if (n == 0 || n >= sizeof host) return hd__error(HD_EADDR, "address \"%s\": bad host", text);
    memcpy(host, text, n);
    host[n] = '\0';
    port_text = colon + 1;
  }
  int port = 0;
  int rc = parse_port(text, port_text, &port);
  if (rc != 0) return rc;
  if (!v6 && strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (v6) {
    rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)out);
  } else {
    rc = uv_ip4_addr(host, port, (struct sockaddr_in *)out);
  }
  if (rc != 0) {
    return hd__error(HD_EADDR,
                     "address \"%s\": \"%s\" is not a numeric %s address (host names other "
                     "than localhost are not resolved)",
                     text, host, v6 ? "IPv6" : "IPv4");
  }
  return 0;
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
