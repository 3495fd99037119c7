/* Helpers shared by the transport and event-layer component tests (test_transport,
 * test_transport_proc, test_server_events, test_client_events): a log capture, peer state recorded
 * by the callbacks, message bodies, handle options on fresh folders, and a raw client that speaks
 * the handshake with the internal noise/wire API over a blocking socket. Waits are testutil.h's.
 * Compiled once (transport_util.c) into the test helper library. */
#ifndef HD_TRANSPORT_UTIL_H
#define HD_TRANSPORT_UTIL_H

#include "client.h"
#include "keys.h"
#include "noise.h"
#include "record.h"
#include "server.h"
#include "wire.h"

#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- log capture ---- */

/* The log callback of the handles made by tu_*_options: keeps the text for tu_log_has. */
void tu_log(void *ud, hd_log_level_t level, const char *msg);
void tu_log_clear(void);
int tu_log_has(const char *needle);

/* ---- peer state recorded by callbacks ---- */
typedef struct tu_peer {
  atomic_int connected;      /* on_connected / on_peer_connected calls */
  atomic_int disconnected;
  atomic_int last_status;
  atomic_int last_had_key;
  uint8_t key[32];           /* the last authenticated key seen */
  char detail[512];          /* hd_last_error_message() inside the last close callback; while
                                the handle may still close connections, read it with
                                tu_peer_detail_has (it is rewritten under detail_lock) */
  pthread_mutex_t detail_lock;
  atomic_int messages;
  atomic_llong bytes;
  atomic_llong next_seq;     /* the seq expected next (in-order check) */
  atomic_int out_of_order;
  atomic_int big_ok;         /* a large message arrived intact */
  atomic_int closed;
  atomic_int destroyed;
} tu_peer_t;

void tu_peer_init(tu_peer_t *p);
/* 1 if the last close callback's detail contains `needle` (under the lock the callback takes). */
int tu_peer_detail_has(tu_peer_t *p, const char *needle);
void tu_on_connected(void *ud, const uint8_t pk[32]);
void tu_on_disconnected(void *ud, const uint8_t *pk, int status);
void tu_on_closed(void *ud);  /* counts p->closed */
void tu_on_destroy(void *ud); /* counts p->destroyed */

/* ---- messages ---- */

/* EVENTS bodies: one entry (seq, payload of `len` bytes of a pattern derived from seq). */
hd__buf_t tu_events_message(uint64_t seq, size_t len);
/* The body of a whole encoded message (after the length varint and the type byte). */
const uint8_t *tu_body(const hd__buf_t *m, size_t *len);
/* Counts a message in p: bytes, messages; EVENTS entries checked in order, large ones intact. */
void tu_count_events(tu_peer_t *p, uint8_t type, const uint8_t *body, size_t len);
/* The message hook (hd__server_set_message_hook, hd__client_set_message_hook: one type for both)
 * that counts into the tu_peer_t given as its user data. */
void tu_count_hook(void *ud, hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len);

/* ---- handles ---- */

/* A fresh store folder under /tmp, removed at exit by the process that made it (a forked child
 * that exits does not remove its parent's folders). NULL on failure. */
const char *tu_data_dir(void);
/* Options with the callbacks above recording into `p`, the log capture, a fresh data_dir. */
hd_server_options_t tu_server_options(const hd_keypair_t *kp, const char *topic,
                                      const char *listen, tu_peer_t *p);
hd_client_options_t tu_client_options(const hd_keypair_t *kp, const uint8_t *server_pk,
                                      const char *topic, const char *connect, tu_peer_t *p);
/* The client handler of tu_client_options: every event is handled at once. */
void tu_on_event(void *ud, hd_event_t *e);

/* ---- raw client over a blocking socket ---- */
typedef struct tu_raw {
  int fd;
  hd__cipher_t tx, rx;
  hd__welcome_t welcome;
  uint8_t sent[16 + 2 + 512]; /* the preamble and message 1 as sent (to replay them) */
  size_t sent_len;
  uint64_t features; /* HD__FEATURE_* its HELLO announces (tu_raw_connect: 0, none, as a client
                        of the release before the features) */
} tu_raw_t;

/* Connects to 127.0.0.1:port (TCP_NODELAY). connect()'s result. */
int tu_raw_connect(tu_raw_t *r, int port);
/* Listens on 127.0.0.1, port chosen by the OS (*port). The socket, or -1. */
int tu_listen(int *port);
int tu_send_all(int fd, const void *p, size_t n);
/* Reads exactly n bytes within `ms` (scaled); 0 ok, -1 closed or timed out. */
int tu_recv_all(int fd, void *p, size_t n, int ms);
/* 1 if the peer closed the socket (EOF or reset) within `ms` (scaled), discarding what it sent. */
int tu_wait_closed(int fd, int ms);
/* The Noise prologue: "hyperdown/1" then the topic key. */
void tu_prologue(uint8_t out[43], const char *topic);
/* Preamble + Noise IK handshake as a client, then the empty record that proves the connection
 * (as the library's client sends it); 0 when the transport ciphers are ready. */
int tu_raw_handshake(tu_raw_t *r, const hd_keypair_t *kp, const uint8_t server_pk[32],
                     const char *topic);
/* The same without the empty record: the server does not count the connection before the first
 * record (what a replayed message 1 gets). */
int tu_raw_handshake_only(tu_raw_t *r, const hd_keypair_t *kp, const uint8_t server_pk[32],
                          const char *topic);
/* The client's empty record (what tu_raw_handshake sends last). */
int tu_raw_prove(tu_raw_t *r);
/* Seals one whole encoded message into records and sends them; `tamper` flips a ciphertext bit. */
int tu_raw_send(tu_raw_t *r, const hd__buf_t *msg, int tamper);

#endif
