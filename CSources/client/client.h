/* The client handle's internal interface (the public one is hd_client_* in hyperdown.h), for
 * tests that drive the protocol themselves. The server's (server.h) behaves the same way. */
#ifndef HD_CLIENT_H
#define HD_CLIENT_H

#include "conn.h"
#include "store.h"

/* While a hook is set, the event layer leaves the handle's connection alone: the connection open
 * when it is set, or opening while it is set, belongs to the hook (no RESUME, CONSUMED or CREDIT
 * from the event layer; every message it receives goes to the hook). Set it right after create:
 * RESUME waits for a store write, so it cannot have gone out yet. Any thread; returns once the
 * hook is in effect (0, or HD_ECLOSED while closing). */
int hd__client_set_message_hook(hd_client_t *client, hd__message_hook cb, void *ud);

/* Sends one message to the server. Any thread: copies and posts (0 once queued; dropped, with a
 * debug log, if not connected by then). On the loop thread: HD_ESTATE if not connected. */
int hd__client_send(hd_client_t *client, uint8_t type, const uint8_t *body, size_t len);

/* Benchmarks and tests of the transport alone: a client without an event store (data_dir,
 * on_event and the event options are ignored). It dials, moves through its addresses and keys
 * and reconnects as any client does; the messages it receives go to the hook if one is set and
 * are dropped otherwise (it sends nothing of its own: no RESUME, no credit). A thousand of them
 * cost a thousand sockets, not a thousand stores (bench/redial.c). */
int hd__client_create_bare(hd_client_t **out, const hd_client_options_t *opts);

/* Benchmarks: `fn(ud)` runs on the loop thread as each dial starts (bench/redial.c times the
 * first redials with it, without the debug log's cost). Set it on the loop's thread, or before
 * the loop runs. */
void hd__client_set_dial_observer(hd_client_t *client, void (*fn)(void *ud), void *ud);
/* Benchmarks: 0 makes every reconnect delay the full d instead of a draw in [d/2, d], for a
 * measurement of what the jitter does beside one without it. Same threads as above. */
void hd__client_set_jitter(hd_client_t *client, int on);

/* Tests: the handle's store (NULL once closed; read it while the client is open). Its writes
 * may be queued from any thread (store.h), e.g. a size quota that makes the disk look full. */
hd__client_store_t *hd__client_store_of(hd_client_t *client);

#endif
