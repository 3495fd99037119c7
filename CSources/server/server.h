/* Internal interface of the server handle (the public one is hd_server_* in hyperdown.h), for
 * tests and for the event store that the next layer puts on top. */
#ifndef HD_SERVER_H
#define HD_SERVER_H

#include "conn.h"

/* Receives every non-control message of an authenticated peer, on the loop thread. `body` is
 * valid only during the call; a batch body (EVENTS, CONSUMED, DONE) is not checked before: the
 * hook decodes it with hd__msg_entries_begin, which rejects a malformed one. */
typedef void (*hd__server_message_hook)(void *ud, hd__conn_t *conn,
                                        const uint8_t public_key[HD_PUBLICKEY_BYTES],
                                        uint8_t type, const uint8_t *body, size_t len);

void hd__server_set_message_hook(hd_server_t *server, hd__server_message_hook cb, void *ud);

/* Sends one message to the connected peer `public_key`. From any thread: copies the body and
 * posts it (returns 0 once queued; a peer that is gone by then is skipped silently, logged at
 * debug level). On the loop thread it sends at once: HD_ENOTFOUND if that peer is not
 * connected, HD_EMSGSIZE above its limit, HD_ECLOSED while closing. */
int hd__server_send(hd_server_t *server, const uint8_t public_key[HD_PUBLICKEY_BYTES],
                    uint8_t type, const uint8_t *body, size_t len);

/* Loop thread: the open connection of a peer, or NULL. */
hd__conn_t *hd__server_peer(hd_server_t *server, const uint8_t public_key[HD_PUBLICKEY_BYTES]);
/* Loop thread: how many peers are authenticated and connected. */
size_t hd__server_peer_count(hd_server_t *server);
/* The runtime of the handle (its loop, posting tasks onto it). */
hd__runtime_t *hd__server_runtime(hd_server_t *server);

#endif
