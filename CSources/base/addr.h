/* Address strings of the options: "host:port" and "[v6]:port", the host numeric or a name.
 * A numeric host never meets the resolver; a name is resolved by the caller's choice of call:
 * without blocking the loop for dialing (net/dialer.h, libuv's getaddrinfo on its pool), or on
 * the creating thread for listening (hd_server_create must know its port when it returns). */
#ifndef HD_ADDR_H
#define HD_ADDR_H

#include "common.h"

#include <sys/socket.h>

/* Longest host name (RFC 1035: 253 characters written out). */
#define HD__ADDR_HOST_MAX 253

/* One address string, checked and split. */
typedef struct hd__addr_spec {
  char host[HD__ADDR_HOST_MAX + 1]; /* without the brackets of "[v6]" */
  int port;
  int numeric;                      /* host is a numeric address, already in `sa` */
  struct sockaddr_storage sa;       /* numeric: the address with the port */
} hd__addr_spec_t;

/* Checks the syntax of `text` and splits it into `out`; a numeric host is converted (no
 * resolver). HD_EADDR with a detail naming the fault. */
int hd__addr_spec_parse(const char *text, hd__addr_spec_t *out);

/* Every address `spec` stands for, at most `cap` into `out` (the port set), in the resolver's
 * order: a numeric one is itself; a name goes through getaddrinfo on the calling thread, which
 * BLOCKS (the creating thread, before the loop runs: listening only). Returns how many (>= 1)
 * or HD_EADDR (the name does not resolve; the resolver's reason in the detail). */
int hd__addr_resolve_blocking(const hd__addr_spec_t *spec, struct sockaddr_storage *out,
                              size_t cap);

/* The first address of `text` (hd__addr_spec_parse, then hd__addr_resolve_blocking): blocking
 * for a name, so for create-time options only. */
int hd__addr_parse(const char *text, struct sockaddr_storage *out);

/* getaddrinfo's hints for a TCP address of either family. */
struct addrinfo;
void hd__addr_hints(struct addrinfo *hints);
/* Copies an addrinfo list's addresses (up to `cap`) into `out` with `port`; returns how many. */
size_t hd__addr_from_list(const struct addrinfo *ai, int port, struct sockaddr_storage *out,
                          size_t cap);

/* "1.2.3.4:5" or "[::1]:5" into `out` (at least HD__ADDR_STRLEN bytes). */
#define HD__ADDR_STRLEN 64
void hd__addr_format(const struct sockaddr *sa, char *out, size_t out_size);

#endif
