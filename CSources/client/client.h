/* Internal interface of the client handle (public: hd_client_* in hyperdown.h). */
#ifndef HD_CLIENT_H
#define HD_CLIENT_H

#include "conn.h"

/* Receives every non-control message from the server, on the loop thread (a batch body is not
 * checked before: decode it with hd__msg_entries_begin). While a hook is set
 * the event layer leaves connections alone (no RESUME, CONSUMED or CREDIT; received messages go
 * to the hook only): transport tests drive the messages themselves. Set it before the connection
 * opens (right after create is early enough: RESUME waits for a store write). */
typedef void (*hd__client_message_hook)(void *ud, hd__conn_t *conn, uint8_t type,
                                        const uint8_t *body, size_t len);

void hd__client_set_message_hook(hd_client_t *client, hd__client_message_hook cb, void *ud);

/* Sends one message to the server. Any thread: copies and posts (0 once queued; dropped, with a
 * debug log, if not connected by then). On the loop thread: HD_ESTATE if not connected. */
int hd__client_send(hd_client_t *client, uint8_t type, const uint8_t *body, size_t len);

/* Loop thread: the open connection, or NULL. */
hd__conn_t *hd__client_conn(hd_client_t *client);
hd__runtime_t *hd__client_runtime(hd_client_t *client);

#endif
