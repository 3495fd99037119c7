/* Address strings of the options: "host:port" and "[v6]:port" with numeric hosts only (no DNS:
 * a resolver would block or need a thread, and a server's address is configuration).
 * "localhost" is accepted as 127.0.0.1. */
#ifndef HD_ADDR_H
#define HD_ADDR_H

#include "common.h"

#include <sys/socket.h>

/* Parses `text` into `out`. HD_EADDR with a detail naming the fault otherwise. */
int hd__addr_parse(const char *text, struct sockaddr_storage *out);
/* "1.2.3.4:5" or "[::1]:5" into `out` (at least HD__ADDR_STRLEN bytes). */
#define HD__ADDR_STRLEN 64
void hd__addr_format(const struct sockaddr *sa, char *out, size_t out_size);

#endif
