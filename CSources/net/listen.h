/* A server's listening socket from its `listen` option (docs/OPERATIONS.md, "Addresses"). */
#ifndef HD_LISTEN_H
#define HD_LISTEN_H

#include "addr.h"

#include <uv.h>

/* Binds `listener` (initialised, not bound) to the first address `text` stands for that binds
 * and listens with `cb`; *port is the port bound (port 0 picks one). A name is resolved here,
 * on the calling thread, blocking: hd_server_create returns its port, so the listener must be
 * bound before it returns (a numeric address never meets the resolver). HD_EADDR for a
 * malformed address or a name that does not resolve; the last bind's failure when none binds. */
int hd__listen_open(uv_tcp_t *listener, const char *text, int backlog, uv_connection_cb cb,
                    int *port);

#endif
