/* The server handle's internal interface (the public one is hd_server_* in hyperdown.h): for the
 * public event calls (server_api.c) and for tests that drive the protocol themselves. The
 * client's (client.h) behaves the same way. */
#ifndef HD_SERVER_H
#define HD_SERVER_H

#include "conn.h"

typedef struct hd__server_events hd__server_events_t;

/* The handle's event layer (NULL once closed; loop thread) and runtime (any thread). */
hd__server_events_t *hd__server_events_of(hd_server_t *server);
hd__runtime_t *hd__server_runtime(hd_server_t *server);

/* While a hook is set, the event layer leaves the handle's connections alone: a connection open
 * when it is set, or opening while it is set, belongs to the hook (no session: no EVENTS, DONE
 * or PAUSE from the event layer; every message it receives goes to the hook). Any thread;
 * returns once the hook is in effect (0, or HD_ECLOSED while closing). */
int hd__server_set_message_hook(hd_server_t *server, hd__message_hook cb, void *ud);

/* Sends one message to the connected peer `public_key`. From any thread: copies the body and
 * posts it (returns 0 once queued; a peer that is gone by then is skipped, logged at debug
 * level). On the loop thread it sends at once: HD_ENOTFOUND if that peer is not connected,
 * HD_EMSGSIZE above its limit, HD_ECLOSED while closing. */
int hd__server_send(hd_server_t *server, const uint8_t public_key[HD_PUBLICKEY_BYTES],
                    uint8_t type, const uint8_t *body, size_t len);

/* For the metrics (metrics.c) and the HTTP responder (http.c); loop thread. */
typedef struct hd__server_conns {
  uint64_t open;        /* authenticated connections (connected users) */
  uint64_t handshaking; /* accepted, not authenticated yet */
  uint64_t handshakes_current_key, handshakes_next_key; /* since create (key rollover) */
  int has_next_key;
} hd__server_conns_t;
void hd__server_conns(hd_server_t *server, hd__server_conns_t *out);
/* 1 while the store is open and the listener accepts (not closing): /readyz. */
int hd__server_ready(hd_server_t *server);

#endif
