/* One connection, either role: TCP, the clear preamble, the Noise IK handshake, then the record
 * layer carrying the message stream; keepalive, write coalescing and close (docs/PROTOCOL.md).
 *
 * Everything here runs on the loop thread of the owning handle. A connection reports to its
 * owner through three callbacks: on_open once the peer is authenticated, on_message for every
 * message that is not a control message (PING, PONG and BYE are handled here), and on_close
 * exactly once, after which the connection's memory is freed. */
#ifndef HD_CONN_H
#define HD_CONN_H

#include "addr.h"
#include "queue.h"
#include "noise.h"
#include "record.h"
#include "runtime.h"
#include "wire.h"

typedef struct hd__conn hd__conn_t;

/* What all connections of one handle share; owned by the handle, which outlives them. */
typedef struct hd__conn_config {
  hd__runtime_t *rt;
  int is_server;
  uint8_t public_key[HD_PUBLICKEY_BYTES]; /* our Ed25519 identity (sent in HELLO) */
  uint8_t x_secret[32], x_public[32];     /* our Noise static key pair */
  uint8_t next_x_secret[32];              /* server: the next static key (key rollover) */
  int has_next_key;                       /* server: it answers to next_x_secret too */
  /* Server, loop thread: handshakes whose message 1 authenticated under the current key and
   * under the next one, since create (the metrics: an operator waits for the first to fall to
   * the clients not yet updated before dropping the old key). */
  uint64_t handshakes_current_key, handshakes_next_key;
  uint8_t topic_key[HD_TOPIC_BYTES];
  uint8_t server_public_key[HD_PUBLICKEY_BYTES]; /* client: the server it trusts */
  uint8_t server_x_public[32];                   /* client: that key as X25519 */
  uint32_t handshake_timeout_ms;
  uint32_t keepalive_ms;
  uint32_t idle_timeout_ms;
  uint32_t max_message_bytes;   /* the largest message we accept */
  uint64_t min_peer_message;    /* server: the smallest max_message_bytes a client may advertise
                                   (its largest EVENTS message); 0: any */
  uint32_t authorize_timeout_ms; /* server: how long on_authorize's answer may take */
  hd__welcome_t welcome;        /* server: what WELCOME says (store id, pause...) */
  uint64_t features;            /* HD__FEATURE_* announced in HELLO or WELCOME (tests clear
                                   bits to play a peer of an earlier release) */

  void *owner;
  /* Server, optional: a connection was accepted from `addr`; nonzero (with the detail recorded)
   * refuses it at once, before any work: nothing read, no on_close, and hd__conn_accept returns
   * HD_EBUSY. */
  int (*on_accept)(hd__conn_t *c, const struct sockaddr *addr);
  /* Server: once the client has proved its connection with its first record (a replayed
   * message 1 never can); client: once WELCOME is read. */
  void (*on_open)(hd__conn_t *c, const uint8_t remote_public_key[HD_PUBLICKEY_BYTES]);
  /* Server, optional: the client's message 1 authenticated c->remote_pk; the connection waits
   * (no reply yet) until the owner calls hd__conn_admit, or refuses it after
   * authorize_timeout_ms. */
  void (*on_authorize)(hd__conn_t *c);
  void (*on_message)(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len);
  /* `status` 0 for an orderly close, else HD_E*; the thread's error detail explains it. The
   * remote key is NULL if the peer never authenticated. The connection is freed after this
   * without touching the config again, so the owner may free the config inside this call. */
  void (*on_close)(hd__conn_t *c, const uint8_t *remote_public_key, int status);
  /* Optional: a write finished on an open connection, so hd__conn_write_backlog() shrank
   * (lets a sender that stopped at a high-water mark go on). */
  void (*on_drain)(hd__conn_t *c);
} hd__conn_config_t;

enum hd__conn_state {
  HD__CONN_CONNECTING = 0, /* client: TCP connect in flight */
  HD__CONN_PREAMBLE,       /* server: waiting for the 16-byte preamble */
  HD__CONN_HANDSHAKE,      /* waiting for a length-prefixed handshake message */
  HD__CONN_REJECTED,       /* client: read a 0 length, waiting for the reason byte */
  HD__CONN_AUTHORIZING,    /* server: message 1 read, waiting for the owner's hd__conn_admit */
  HD__CONN_OPEN,
  HD__CONN_CLOSING,        /* orderly: BYE queued, shutdown pending */
  HD__CONN_CLOSED          /* handles closing; on_close pending */
};

struct hd__handshake_io; /* the handshake's state and input buffer: only while handshaking */

struct hd__conn {
  uv_tcp_t tcp;
  uv_timer_t timer;  /* the handshake deadline, then keepalive/idle, then the close guard */
  const hd__conn_config_t *cfg;
  enum hd__conn_state state;
  char peer[HD__ADDR_STRLEN];
  struct hd__handshake_io *hs;

  hd__cipher_t tx;
  hd__record_reader_t rr;   /* owns the receiving cipher */
  hd__msg_reader_t mr;
  uint64_t peer_max_message; /* the largest message the peer accepts */
  uint64_t features;         /* HD__FEATURE_* both sides announced: what this connection may
                                send and receive beyond the first release's messages */
  hd__buf_t out;             /* plaintext messages waiting for the end of the iteration */
  hd__deferred_t flush;

  uint64_t last_recv_ms;     /* uv_now of the last byte received */
  int ping_sent;             /* a PING went out since last_recv_ms */
  uint64_t ping_nonce;

  uint8_t remote_pk[HD_PUBLICKEY_BYTES];
  int authenticated;         /* server: the client proved itself with its first record */
  int hello_read;            /* server: remote_pk holds message 1's authenticated key */
  int status;                /* the close status once closing */
  char *close_detail;        /* the error detail, kept until on_close */
  int pending_closes;
  int reads_held;            /* HOLD_* bits (conn.c): hd__conn_hold_reads, the write backlog */
  int silent;                /* freed without on_close (a create path that failed) */
  hd__welcome_t welcome;     /* client: what the server said in WELCOME */

  void *user_data;           /* the event layer's (the server's session) */
  void *admission;           /* the owner's, while on_authorize's answer is pending */
  int raw;                   /* a test hook took it over: the event layer never sees it */
  hd__queue_t node;          /* the owner's list of its connections */
};

/* A test hook (server.h, client.h): receives every message of a connection it owns (conn->raw),
 * on the loop thread. `body` is valid only during the call; a batch body (EVENTS, CONSUMED, DONE)
 * is not checked before: decode it with hd__msg_entries_begin, which rejects a malformed one.
 * The peer's key is conn->remote_pk. */
typedef void (*hd__message_hook)(void *ud, hd__conn_t *conn, uint8_t type, const uint8_t *body,
                                 size_t len);
/* A hook with its argument, as a handle keeps it (fn NULL: none). */
typedef struct hd__hook {
  hd__message_hook fn;
  void *ud;
} hd__hook_t;

/* Server: accepts a pending connection from `listener` and starts the handshake. On error
 * nothing is allocated (the pending connection is refused); HD_EBUSY: on_accept refused it. */
int hd__conn_accept(const hd__conn_config_t *cfg, uv_stream_t *listener, hd__conn_t **out);
/* Client: starts dialing `addr`. The connection reports failures through on_close. */
int hd__conn_connect(const hd__conn_config_t *cfg, const struct sockaddr *addr,
                     hd__conn_t **out);

/* Server: the answer to on_authorize (loop thread; ignored unless the connection is still
 * waiting for it): allow sends message 2, refuse answers with a rejection frame and closes
 * with HD_EAUTH and `why` as the detail. */
void hd__conn_admit(hd__conn_t *c, int allow, const char *why);

/* Queues one message (type + body) for the peer. It goes out with the other messages of this
 * loop iteration. HD_ESTATE before on_open or after close, HD_EMSGSIZE above the peer's limit. */
int hd__conn_send(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len);
/* For the encoders of wire.h (hd__msg_encode_*): the buffer to append whole messages to, or
 * NULL if the connection cannot send; call hd__conn_queued() after appending. */
hd__buf_t *hd__conn_out(hd__conn_t *c);
void hd__conn_queued(hd__conn_t *c);
/* Bytes queued in libuv and not yet written (backpressure for the next layer). */
size_t hd__conn_write_backlog(const hd__conn_t *c);

/* Closes the connection. status 0: orderly (BYE with `text`, then shutdown); otherwise abrupt,
 * without a word to the peer (a failure of ours: out of memory, the store), with `text` as the
 * detail kept for on_close and the log. Idempotent. */
void hd__conn_close(hd__conn_t *c, int status, const char *text);
/* Closes because of an error the peer should hear about: its protocol violation (HD_EPROTO) or a
 * message above a limit (HD_EMSGSIZE). BYE with the code (`status` < 0, sent as its positive
 * value) and `text` (cut to the BYE's 256 bytes), flushed, then shutdown; `text` is also the
 * detail for on_close and the log. Before records are up it closes without a BYE (nothing could
 * carry it). status 0 is hd__conn_close's orderly close. Idempotent. */
void hd__conn_fail(hd__conn_t *c, int status, const char *text);

/* Stops (hold 1) or resumes (hold 0) reading from the peer, for a receiver with more work queued
 * than it takes on per loop turn (the server's CONSUMED reports). Messages already read are still
 * delivered. The peer's silence while reads are held does not count towards the idle timeout. */
void hd__conn_hold_reads(hd__conn_t *c, int hold);

#endif
