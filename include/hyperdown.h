/*
 * hyperdown.h: the one public header of Hyperdown, a durable event memory for a server and its
 * users. Everything a C, Swift, Node or Python caller may use is declared here; everything else
 * in libhyperdown is hidden.
 *
 * Conventions (docs/conventions.md):
 *   - every exported name starts with `hd_` (types end in `_t`, macros start with `HD_`);
 *   - functions that can fail return 0 or a positive count on success and a negative `HD_E*`
 *     code on failure; `hd_strerror()` and `hd_err_name()` describe a code, and
 *     `hd_last_error_message()` gives the detail of the last failure on the calling thread;
 *   - when a function that takes a callback returns an error, that callback never fires;
 *   - handles are opaque and closed asynchronously: their memory is freed only after the close
 *     callback has run;
 *   - option structs start with a `version` field; initialise them with the `_INIT` macro or the
 *     `_options_init()` function (for FFI), then set the fields you need. Fields are only ever
 *     appended, so code built against an older header keeps working.
 *
 * Threads (docs/threading.md): every public function may be called from any thread. Each server
 * or client runs on a libuv loop; by default the handle owns the loop and a thread that runs it,
 * or it can run on a loop the caller owns (`loop` option). Callbacks run on the loop's thread.
 */
#ifndef HYPERDOWN_H
#define HYPERDOWN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one export macro: the library is built with -fvisibility=hidden and -DHD_BUILDING. */
#if defined(HD_BUILDING) && defined(__GNUC__)
#define HD_EXTERN __attribute__((visibility("default")))
#else
#define HD_EXTERN
#endif

/* ---------------------------------------------------------------------------------------------
 * Versions. The release version follows semver; the ABI version (the SONAME's number) changes
 * only when a binary built against an older header would break.
 */
#define HD_VERSION_MAJOR 0
#define HD_VERSION_MINOR 1
#define HD_VERSION_PATCH 0
#define HD_VERSION_STRING "0.1.0"
/* 0xMMmmpp; a literal so that Swift and FFI importers see it. */
#define HD_VERSION_HEX 0x000100
#define HD_ABI_VERSION 1
/* The wire protocol version spoken by this library (docs/PROTOCOL.md). */
#define HD_PROTOCOL_VERSION 1

/* HD_VERSION_HEX of the library that is loaded (compare with the macro to catch a mismatch). */
HD_EXTERN unsigned int hd_version(void);
HD_EXTERN const char *hd_version_string(void);
HD_EXTERN int hd_abi_version(void);
/* 0 when the loaded library is ABI-compatible with the header this call was compiled with;
 * HD_EVERSION otherwise. Use the HD_CHECK_VERSION() macro. */
HD_EXTERN int hd_check_version(int abi_version, unsigned int header_version_hex);
#define HD_CHECK_VERSION() hd_check_version(HD_ABI_VERSION, HD_VERSION_HEX)

/* Idempotent and thread-safe; every other function calls it when needed. Returns 0 or HD_EINIT. */
HD_EXTERN int hd_init(void);

/* ---------------------------------------------------------------------------------------------
 * Errors: negative codes from one list. Append only; never renumber: the list grows, so a caller
 * must expect codes it does not know (hd_err_name gives "UNKNOWN" for them) and HD_ERRNO_MIN
 * moves down with each new one.
 */
#define HD_ERRNO_MAP(XX)                                                                          \
  XX(EINVAL, -1, "invalid argument")                                                              \
  XX(ENOMEM, -2, "out of memory")                                                                 \
  XX(EINIT, -3, "library initialisation failed")                                                  \
  XX(EVERSION, -4, "version mismatch")                                                            \
  XX(EKEY, -5, "key pair does not verify")                                                        \
  XX(EHEX, -6, "not valid hexadecimal of the expected length")                                    \
  XX(ETOPIC, -7, "peer is on another topic")                                                      \
  XX(EAUTH, -8, "handshake authentication failed")                                                \
  XX(EPROTO, -9, "protocol violation")                                                            \
  XX(EMSGSIZE, -10, "message too large")                                                          \
  XX(ETIMEDOUT, -11, "timed out")                                                                 \
  XX(ECONNREFUSED, -12, "connection refused")                                                     \
  XX(ECONNRESET, -13, "connection reset by peer")                                                 \
  XX(EADDRINUSE, -14, "address already in use")                                                   \
  XX(EADDR, -15, "invalid address")                                                               \
  XX(EIO, -16, "input/output error")                                                              \
  XX(ECLOSED, -17, "handle is closed or closing")                                                 \
  XX(EBUSY, -18, "resource busy (folder in use by another process)")                              \
  XX(ENOSPC, -19, "no space left on device")                                                      \
  XX(ESTORE, -20, "storage error")                                                                \
  XX(ECORRUPT, -21, "stored data is corrupt")                                                     \
  XX(ECANCELED, -22, "operation canceled")                                                        \
  XX(ENOTFOUND, -23, "not found")                                                                 \
  XX(EALREADY, -24, "already done")                                                               \
  XX(EBUFSIZE, -25, "buffer too small")                                                           \
  XX(ESTATE, -26, "operation not valid in the current state")                                     \
  XX(EBYE, -27, "peer closed the connection")                                                     \
  XX(ETHREAD, -28, "call not allowed on this thread")                                             \
  XX(EREPLACED, -29, "connection replaced by a newer one of the same key")                        \
  XX(ELIMIT, -30, "the user's limit of held events or bytes is reached")

typedef enum hd_errno {
#define HD__ERRNO_ENUM(name, value, text) HD_##name = value,
  HD_ERRNO_MAP(HD__ERRNO_ENUM)
#undef HD__ERRNO_ENUM
  HD_ERRNO_MIN = -30 /* the lowest code today: it moves down as codes are appended */
} hd_errno_t;

/* A static description of `code` ("unknown error" for a code that is not in the list). */
HD_EXTERN const char *hd_strerror(int code);
/* The code's name without prefix, e.g. "EAUTH" ("UNKNOWN" for a code not in the list). */
HD_EXTERN const char *hd_err_name(int code);
/* The detail of the last failure on the calling thread ("" if none). Valid until the next call
 * into the library on this thread. Inside a callback it explains the code passed to it. */
HD_EXTERN const char *hd_last_error_message(void);
/* The code of the last failure on the calling thread (0 if none). */
HD_EXTERN int hd_last_error_code(void);
HD_EXTERN void hd_clear_error(void);

/* ---------------------------------------------------------------------------------------------
 * Sizes. Every constant is also a function, for FFI.
 */
#define HD_PUBLICKEY_BYTES 32
#define HD_SCALAR_BYTES 32
#define HD_SEED_BYTES 32
#define HD_SECRETKEY_BYTES 64
#define HD_TOPIC_BYTES 32
#define HD_STORE_ID_BYTES 16

HD_EXTERN size_t hd_publickey_bytes(void);
HD_EXTERN size_t hd_scalar_bytes(void);
HD_EXTERN size_t hd_seed_bytes(void);
HD_EXTERN size_t hd_secretkey_bytes(void);
HD_EXTERN size_t hd_topic_bytes(void);
HD_EXTERN size_t hd_keypair_size(void);

/* ---------------------------------------------------------------------------------------------
 * Identity: an Ed25519 key pair. It is kept as the public key and the clamped secret scalar,
 * the one form that all three accepted inputs share (a 32-byte seed, libsodium's 64-byte secret
 * key, a keypear-style { scalar, publicKey }). Every constructor checks scalar·G == public_key
 * and returns HD_EKEY if it does not hold. The struct's layout is part of the ABI.
 */
typedef struct hd_keypair {
  uint8_t public_key[HD_PUBLICKEY_BYTES];
  uint8_t scalar[HD_SCALAR_BYTES];
} hd_keypair_t;

HD_EXTERN int hd_keypair_generate(hd_keypair_t *out);
HD_EXTERN int hd_keypair_from_seed(hd_keypair_t *out, const uint8_t seed[HD_SEED_BYTES]);
/* libsodium's crypto_sign secret key: seed || public key. The public half must match the seed. */
HD_EXTERN int hd_keypair_from_secret_key(hd_keypair_t *out,
                                         const uint8_t secret_key[HD_SECRETKEY_BYTES]);
HD_EXTERN int hd_keypair_from_scalar(hd_keypair_t *out, const uint8_t scalar[HD_SCALAR_BYTES],
                                     const uint8_t public_key[HD_PUBLICKEY_BYTES]);
/* 0 if the pair verifies, HD_EKEY otherwise. */
HD_EXTERN int hd_keypair_verify(const hd_keypair_t *kp);
/* 0 if `public_key` is a valid Ed25519 point usable as a peer identity, HD_EKEY otherwise. */
HD_EXTERN int hd_publickey_check(const uint8_t public_key[HD_PUBLICKEY_BYTES]);
/* Overwrites the secret scalar with zeros. */
HD_EXTERN void hd_keypair_wipe(hd_keypair_t *kp);

/* Lower-case hex of `len` bytes into `out` (`out_size` >= 2*len+1, NUL-terminated). */
HD_EXTERN int hd_hex_encode(char *out, size_t out_size, const uint8_t *bytes, size_t len);
/* Exactly `out_len` bytes from `hex` (NUL-terminated, 2*out_len digits, either case);
 * HD_EHEX for anything else. */
HD_EXTERN int hd_hex_decode(uint8_t *out, size_t out_len, const char *hex);

/* The topic key of a folder name: BLAKE2b-256 over a fixed context string and the name
 * (docs/PROTOCOL.md). Peers on different topics fail the handshake with HD_ETOPIC. */
HD_EXTERN int hd_topic_key(uint8_t out[HD_TOPIC_BYTES], const char *name, size_t name_len);

/* ---------------------------------------------------------------------------------------------
 * Logging. A log callback receives one line without a trailing newline, on the loop thread.
 */
typedef enum hd_log_level {
  HD_LOG_ERROR = 0,
  HD_LOG_WARN = 1,
  HD_LOG_INFO = 2,
  HD_LOG_DEBUG = 3
} hd_log_level_t;

typedef void (*hd_log_cb)(void *user_data, hd_log_level_t level, const char *message);

/* ---------------------------------------------------------------------------------------------
 * Events as the API hands them out. An event's bytes belong to the object that handed it out
 * (an hd_consumed_t batch on the server, an hd_event_t on the client) until it is completed.
 */
typedef struct hd_event_info {
  uint64_t seq;            /* the user's sequence number: from 1, strictly increasing, never reused */
  int64_t created_ms;      /* when the server stored it (Unix time, ms) */
  const uint8_t *payload;  /* what hd_server_add_event stored */
  size_t payload_len;
  const uint8_t *data;     /* server, consumed events: what the client's handler reported */
  size_t data_len;
} hd_event_info_t;

/* Server: a batch of events one user reported consumed, handed to `on_consumed`. */
typedef struct hd_consumed hd_consumed_t;
/* Client: one event handed to `on_event`. */
typedef struct hd_event hd_event_t;

/* `batch` holds the events `user` reported consumed, in sequence order. Complete each event (or
 * all) with hd_consumed_complete*(), from any thread, exactly once. */
typedef void (*hd_consumed_cb)(void *user_data, const uint8_t user[32], hd_consumed_t *batch);
/* The client's handler: complete the event with hd_event_complete(), from any thread, once. */
typedef void (*hd_event_cb)(void *user_data, hd_event_t *event);

/* ---------------------------------------------------------------------------------------------
 * Handles. A server listens on one address and serves the users that dial it; a client dials one
 * server. Both authenticate with a Noise_IK handshake (docs/PROTOCOL.md) bound to the topic.
 */
typedef struct hd_server hd_server_t;
typedef struct hd_client hd_client_t;

/* A peer finished the handshake; `public_key` is its authenticated Ed25519 key. */
typedef void (*hd_peer_cb)(void *user_data, const uint8_t public_key[HD_PUBLICKEY_BYTES]);
/* A connection ended. `public_key` is NULL if the peer never authenticated. `status` is 0 for an
 * orderly close and a negative HD_E* code otherwise (HD_EREPLACED on both sides for a connection
 * a newer one of the same key replaced); hd_last_error_message() tells the detail. */
typedef void (*hd_peer_closed_cb)(void *user_data, const uint8_t *public_key, int status);
/* A handle finished closing; its memory is freed right after this returns. */
typedef void (*hd_close_cb)(void *user_data);
/* Called once with the handle's user_data when the handle no longer uses it. */
typedef void (*hd_destroy_cb)(void *user_data);

/* Admission (docs/RELIABILITY.md, "Admission control"). A request to decide whether a client's
 * key may connect: answer it with hd_authorization_allow or hd_authorization_deny, from any
 * thread, exactly once (also after its timeout or the server's close, which only frees it). */
typedef struct hd_authorization hd_authorization_t;
/* The client `public_key` authenticated its first handshake message; the server's reply (which
 * carries the store id) waits for the answer. Runs on the loop thread: must not block. */
typedef void (*hd_authorize_cb)(void *user_data, const uint8_t public_key[HD_PUBLICKEY_BYTES],
                                hd_authorization_t *request);

/* A dead letter: an event its user's client failed to handle (docs/QUEUES.md "Poison events"),
 * as the server holds it. Pointers are valid during the call (or into a listing's buffer). */
typedef struct hd_dead_letter {
  uint64_t seq;            /* the number it had in the user's queue */
  int64_t created_ms;      /* when it was added */
  const uint8_t *payload;
  size_t payload_len;
  uint32_t attempts;       /* handler calls the client made */
  const char *reason;      /* the handler's reason, UTF-8, not NUL-terminated */
  size_t reason_len;
  int64_t dead_ms;         /* when it became a dead letter (Unix time, ms) */
} hd_dead_letter_t;
/* An event of `user` became a dead letter (durably). Loop thread; informational: nothing to
 * complete. */
typedef void (*hd_dead_letter_cb)(void *user_data, const uint8_t user[HD_PUBLICKEY_BYTES],
                                  const hd_dead_letter_t *dead_letter);

/* What an add past a per-user limit does (hd_server_options_t.overflow). */
enum { HD_OVERFLOW_REJECT = 0, HD_OVERFLOW_DROP_OLDEST = 1 };

#define HD_SERVER_OPTIONS_VERSION 5
typedef struct hd_server_options {
  unsigned int version;           /* HD_SERVER_OPTIONS_VERSION */
  const hd_keypair_t *keypair;    /* the server's identity (copied) */
  const char *topic;              /* the folder name: names the topic (copied) */
  const char *listen;             /* "127.0.0.1:7000", "[::1]:0", "0.0.0.0:7000", "host:7000" (the
                                     first address the name resolves to that binds); port 0 = any */
  void *loop;                     /* a uv_loop_t * the caller runs, or NULL for a loop thread */
  uint32_t handshake_timeout_ms;  /* 0 = 10000 */
  uint32_t keepalive_ms;          /* ping after this much silence; 0 = 5000 */
  uint32_t idle_timeout_ms;       /* drop a peer silent this long; 0 = 3 x keepalive */
  uint32_t max_message_bytes;     /* the largest message accepted; 0 = 1 MiB */
  void *user_data;                /* passed to every callback */
  hd_destroy_cb destroy;          /* optional: releases user_data after the close */
  hd_log_cb log;                  /* optional */
  hd_log_level_t log_level;       /* most verbose level passed to `log` (default HD_LOG_ERROR) */
  hd_peer_cb on_peer_connected;          /* optional */
  hd_peer_closed_cb on_peer_disconnected; /* optional */
  /* Events (appended with the event store). */
  const char *data_dir;           /* the store's folder (created 0700; locked while open) */
  int sync_normal;                /* 0: synchronous=FULL (an acknowledged event survives power
                                     loss); 1: NORMAL (survives a crash of the process) */
  hd_consumed_cb on_consumed;     /* a user reported events consumed (default: complete ok) */
  uint32_t page_events;           /* catch-up page size in events; 0 = 4096 */
  /* Admission (appended in version 2; docs/RELIABILITY.md, "Admission control"). */
  hd_authorize_cb authorize;      /* optional: decides which client keys may connect */
  uint32_t authorize_timeout_ms;  /* a request not answered by then is refused; 0 = 5000 */
  uint32_t max_handshakes;        /* connections accepted and not yet authenticated; beyond it
                                     new ones are closed at once; 0 = 512, UINT32_MAX = none */
  uint32_t handshakes_per_address; /* connections accepted per second from one address (IPv6:
                                      one /64); beyond it closed at once; 0 = 64,
                                      UINT32_MAX = none */
  /* Appended in version 3 (docs/PROTOCOL.md, "Message limits"). */
  uint32_t max_event_bytes;       /* the largest event payload hd_server_add_event accepts;
                                     0 = max_message_bytes - 64. A client whose max_message_bytes
                                     is below this + 64 is refused at the handshake (HD_EMSGSIZE):
                                     every event the server holds must be deliverable to it */
  /* Appended in version 4 (docs/QUEUES.md). */
  uint64_t default_ttl_ms;        /* an event not sent to its client this long after its add is
                                     never sent (expired); 0 = events do not expire */
  uint64_t max_pending_per_user;  /* events held per user (notices aside); 0 = no limit */
  uint64_t max_bytes_per_user;    /* payload bytes held per user; 0 = no limit */
  int overflow;                   /* HD_OVERFLOW_REJECT: an add past a limit fails with
                                     HD_ELIMIT; HD_OVERFLOW_DROP_OLDEST: the oldest events not
                                     yet sent make room and the client gets a notice */
  uint64_t dedup_window_ms;       /* how long a deduplication key is remembered; 0 = 24 h */
  uint32_t dedup_keys_per_user;   /* most keys remembered per user (the oldest go first);
                                     0 = 100000 */
  hd_dead_letter_cb on_dead_letter; /* optional */
  uint32_t expiry_batch;          /* most expired events one sweep transaction deletes;
                                     0 = 1000 */
  /* Appended in version 5 (docs/OPERATIONS.md). */
  const hd_keypair_t *next_keypair; /* optional: a second identity the server also answers to
                                     while its clients move to it (key rollover); copied */
  const char *metrics_listen;     /* optional "host:port": an HTTP/1.1 responder on the server's
                                     loop serving GET /metrics (hd_server_metrics), /healthz and
                                     /readyz; port 0 = any (hd_server_metrics_port) */
} hd_server_options_t;
#define HD_SERVER_OPTIONS_INIT {HD_SERVER_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, HD_LOG_ERROR, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
HD_EXTERN int hd_server_options_init(hd_server_options_t *opts, unsigned int version);

/* The attempts a client makes at an event before it reports it failed (a dead letter on the
 * server): docs/QUEUES.md says why 10. */
#define HD_DEFAULT_MAX_ATTEMPTS 10

#define HD_CLIENT_OPTIONS_VERSION 3
typedef struct hd_client_options {
  unsigned int version;           /* HD_CLIENT_OPTIONS_VERSION */
  const hd_keypair_t *keypair;    /* the user's identity (copied) */
  const uint8_t *server_public_key; /* HD_PUBLICKEY_BYTES: the server it trusts (copied) */
  const char *topic;              /* the folder name (copied) */
  const char *connect;            /* "127.0.0.1:7000", "[::1]:7000" or "host:7000" (resolved
                                     without blocking the loop; every address tried in turn) */
  void *loop;                     /* a uv_loop_t * the caller runs, or NULL for a loop thread */
  uint32_t handshake_timeout_ms;  /* 0 = 10000 */
  uint32_t keepalive_ms;          /* 0 = 5000 */
  uint32_t idle_timeout_ms;       /* 0 = 3 x keepalive */
  uint32_t max_message_bytes;     /* 0 = 1 MiB */
  uint32_t reconnect_min_ms;      /* first retry delay after a failure; 0 = 100 */
  uint32_t reconnect_max_ms;      /* cap of the doubling retry delay (each delay drawn at random
                                     between half of it and all of it, so that many clients part
                                     after a server restart); 0 = 5000. Also the wait
                                     after the server replaced the connection by a newer one of
                                     the same key (HD_EREPLACED), doubled with each replacement in
                                     a row up to 60 s */
  int no_reconnect;               /* 1: do not dial again after a failure or a disconnect */
  void *user_data;
  hd_destroy_cb destroy;
  hd_log_cb log;
  hd_log_level_t log_level;
  hd_peer_cb on_connected;         /* the server authenticated: its key */
  hd_peer_closed_cb on_disconnected; /* a connection or an attempt ended: why */
  /* Events (appended with the event store). */
  const char *data_dir;           /* the store's folder (created 0700; locked while open) */
  int sync_normal;                /* as for the server */
  hd_event_cb on_event;           /* the handler (required) */
  uint32_t window;                /* events accepted unconfirmed (in flight + held); 0 = 8192 */
  uint32_t retry_min_ms;          /* first delay before a failed event is handled again; 0 = 100 */
  uint32_t retry_max_ms;          /* cap of the doubling delay; 0 = 30000 */
  /* Appended in version 2 (docs/QUEUES.md). */
  uint32_t max_attempts;          /* handler calls per event, counted durably before each call;
                                     after the last failed one the event is reported failed (a
                                     dead letter) and later events flow on. 0 = unlimited (strict
                                     order); the _INIT macro and _options_init give
                                     HD_DEFAULT_MAX_ATTEMPTS. Version-1 options: unlimited */
  hd_event_cb on_notice;          /* optional: notices (hd_event_notice) in their place in the
                                     user's stream, completed like events; NULL: confirmed
                                     without being handed out */
  /* Appended in version 3 (docs/OPERATIONS.md). */
  const char *const *connect_list; /* optional: `connect_count` server addresses ("host:port",
                                     names resolved), dialed in turn; replaces `connect` */
  size_t connect_count;
  const uint8_t *server_public_keys; /* optional: `server_public_key_count` x HD_PUBLICKEY_BYTES
                                     keys the client accepts (key rollover), tried in turn;
                                     replaces `server_public_key` (copied) */
  size_t server_public_key_count;
} hd_client_options_t;
#define HD_CLIENT_OPTIONS_INIT {HD_CLIENT_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, HD_LOG_ERROR, 0, 0, 0, 0, 0, 0, 0, 0, HD_DEFAULT_MAX_ATTEMPTS, 0, 0, 0, 0, 0}
HD_EXTERN int hd_client_options_init(hd_client_options_t *opts, unsigned int version);

/* Creates a server and starts listening before it returns (so the port is known). */
HD_EXTERN int hd_server_create(hd_server_t **out, const hd_server_options_t *opts);
/* The port the server listens on (useful with port 0), or a negative code. */
HD_EXTERN int hd_server_port(hd_server_t *server);
/* Starts an orderly close: stop accepting, say goodbye to every peer, free. `cb` (optional)
 * runs on the loop thread once everything is released; the handle must not be used after this
 * call returns 0. HD_ECLOSED if it was already closing. */
HD_EXTERN int hd_server_close(hd_server_t *server, hd_close_cb cb, void *cb_data);
/* hd_server_close() and wait until it is done (and the loop thread, if owned, has ended).
 * HD_ETHREAD if called on the handle's own loop thread. */
HD_EXTERN int hd_server_close_wait(hd_server_t *server);

/* Answers an authorization request (hd_authorize_cb): the client's handshake goes on, or it is
 * refused (a rejection frame, no store id; the client sees HD_EAUTH). Any thread, exactly once
 * per request: the answer frees it (it must not be used after). An answer that comes after the timeout
 * or after the connection closed changes nothing. */
HD_EXTERN int hd_authorization_allow(hd_authorization_t *request);
HD_EXTERN int hd_authorization_deny(hd_authorization_t *request);
/* Closes every connection of the client `public_key`: open ones with a BYE (HD_EAUTH, "no longer
 * admitted"), handshaking ones at once; for a key an allow-list dropped. A client that dials
 * again meets the authorization callback. Returns how many it closed. Any thread (blocks until
 * done; inline on the loop thread); HD_ECLOSED while closing. */
HD_EXTERN int hd_server_disconnect(hd_server_t *server,
                                   const uint8_t public_key[HD_PUBLICKEY_BYTES]);

/* Creates a client and starts dialing. */
HD_EXTERN int hd_client_create(hd_client_t **out, const hd_client_options_t *opts);
HD_EXTERN int hd_client_close(hd_client_t *client, hd_close_cb cb, void *cb_data);
HD_EXTERN int hd_client_close_wait(hd_client_t *client);

/* ---------------------------------------------------------------------------------------------
 * Events, server side. The server keeps each user's events in its store until the user's client
 * has handled them and reported them consumed and `on_consumed` has completed them with success.
 */

/* The completion of hd_server_add_event: status 0 and the event's sequence number once it is
 * durable (committed), or a negative code and seq 0. Runs on the loop thread. */
typedef void (*hd_add_cb)(void *cb_data, int status, uint64_t seq);
/* A completion with a status only. */
typedef void (*hd_done_cb)(void *cb_data, int status);

/* Adds an event for `user` (an Ed25519 public key). The payload (1 byte up to the server's
 * max_event_bytes, by default max_message_bytes less 64) is copied before the call returns. The event takes the user's next
 * sequence number; concurrent adds share one transaction and one fsync; `cb` (optional) runs
 * once it is durable, and a connected user gets the event pushed right after. Any thread.
 * HD_EINVAL: empty or oversized payload; HD_EKEY: `user` is not a valid Ed25519 key;
 * HD_ECLOSED: the server is closing. */
HD_EXTERN int hd_server_add_event(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                  const void *payload, size_t len, hd_add_cb cb, void *cb_data);
/* The same, blocking until the event is durable; `seq` (optional) receives its number.
 * HD_ETHREAD on the handle's loop thread. */
HD_EXTERN int hd_server_add_event_wait(hd_server_t *server,
                                       const uint8_t user[HD_PUBLICKEY_BYTES],
                                       const void *payload, size_t len, uint64_t *seq);
/* Stores the pause (ms) and pushes it to every connected client; new clients get it in WELCOME.
 * `cb` (optional) runs once it is stored. */
HD_EXTERN int hd_server_update_pause(hd_server_t *server, uint32_t pause_ms, hd_done_cb cb,
                                     void *cb_data);

HD_EXTERN size_t hd_consumed_count(const hd_consumed_t *batch);
/* Event `index` (0-based) of the batch, with the client's data. HD_EINVAL past the end. */
HD_EXTERN int hd_consumed_event(const hd_consumed_t *batch, size_t index, hd_event_info_t *out);
/* Completes event `index`: ok != 0 deletes it and confirms it to the client (DONE); ok == 0 keeps
 * it, and the client reports it again on its next connection. Any thread, once per event
 * (HD_EALREADY after that). The batch is freed after its last completion. */
HD_EXTERN int hd_consumed_complete(hd_consumed_t *batch, size_t index, int ok);
/* Completes every event of the batch not completed yet, with the same `ok`.
 * A batch outlives the server's close: completing it after the close only frees it (its events
 * are not deleted; the client reports them again to the next server on the folder). A batch
 * that is never completed is never freed: the application must complete every event. */
HD_EXTERN int hd_consumed_complete_all(hd_consumed_t *batch, int ok);

#define HD_SERVER_STATS_VERSION 3
typedef struct hd_server_stats {
  unsigned int version;       /* set to HD_SERVER_STATS_VERSION before the call */
  uint64_t events_added;      /* adds that completed durable since create */
  uint64_t events_delivered;  /* events sent to clients (a resend after reconnect counts again) */
  uint64_t events_consumed;   /* consumption reports received */
  uint64_t events_confirmed;  /* events completed ok, deleted and confirmed (DONE) */
  uint64_t pending_total;     /* events held in the store */
  uint64_t connected_users;   /* authenticated connections now */
  uint64_t commits;           /* store transactions (one fsync each) */
  /* Appended in version 2. */
  uint64_t events_too_large;  /* times an event could not be sent because it is larger than the
                                 client's max_message_bytes (stored under a larger
                                 max_event_bytes): that connection closed with BYE HD_EMSGSIZE */
  /* Appended in version 3 (docs/QUEUES.md), since create. */
  uint64_t events_expired;    /* deleted unsent after their time to live */
  uint64_t events_dead;       /* moved to the dead letters (failed or rejected by the client) */
  uint64_t events_requeued;   /* dead letters given back to their users */
  uint64_t adds_duplicate;    /* adds answered with an earlier add's number (deduplication key) */
  uint64_t events_replaced;   /* unsent events replaced by a newer one with their collapse key */
  uint64_t events_dropped;    /* unsent events dropped to make room (HD_OVERFLOW_DROP_OLDEST) */
  uint64_t adds_limited;      /* adds refused with HD_ELIMIT */
  uint64_t dead_letters;      /* dead letters held now */
} hd_server_stats_t;

/* Blocking reads, any thread (inline on the loop thread). */
HD_EXTERN int hd_server_stats(hd_server_t *server, hd_server_stats_t *out);
/* How many events the store holds for `user`. */
HD_EXTERN int hd_server_pending(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                uint64_t *out);
/* Copies up to `cap` connected users' keys into `out` (cap x 32 bytes); returns how many are
 * connected (may exceed cap). */
HD_EXTERN int hd_server_connected_users(hd_server_t *server, uint8_t *out, size_t cap);
/* The users the store holds events for, in the order they were first seen, a page at a time:
 * start with *cursor = 0; each call copies up to `cap` keys into `keys` (cap x 32 bytes) and
 * their pending counts into `counts` (optional, cap entries), moves *cursor past them, and
 * returns how many it copied (0: no more). */
HD_EXTERN int hd_server_pending_users(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                                      uint64_t *counts, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * Events, client side. The client writes received events to its store before it hands them to
 * `on_event`: in sequence order, one at a time (the next after the previous completed), after the
 * pause window. Events already received are handled even while the server is away.
 */

/* The event's fields; the pointers stay valid until hd_event_complete(). */
HD_EXTERN int hd_event_info(const hd_event_t *event, hd_event_info_t *out);
HD_EXTERN uint64_t hd_event_seq(const hd_event_t *event);
/* ok != 0: the event is recorded consumed (durably) with `data` (optional, copied) and reported
 * to the server. ok == 0: it stays and is handed to the handler again after a backoff (doubling
 * from retry_min_ms to retry_max_ms), before any later event, until max_attempts calls (then it is
 * reported failed: hd_event_fail). Frees the event. Any thread, once. */
HD_EXTERN int hd_event_complete(hd_event_t *event, int ok, const void *data, size_t len);

#define HD_CLIENT_STATS_VERSION 2
typedef struct hd_client_stats {
  unsigned int version;       /* set to HD_CLIENT_STATS_VERSION before the call */
  uint64_t events_received;   /* new events stored */
  uint64_t events_handled;    /* handler completions with success */
  uint64_t events_failed;     /* handler completions with failure (retried) */
  uint64_t events_confirmed;  /* DONE received: forgotten */
  uint64_t unhandled;         /* held, not yet consumed (also of other server stores:
                                 hd_client_held_stores) */
  uint64_t consumed;          /* consumed, not yet confirmed by the server (or waiting for
                                 their own server store) */
  uint64_t high_water;        /* the highest sequence received from the current server store */
  uint32_t pause_ms;          /* the pause in force */
  int connected;              /* 1 while authenticated to the server */
  /* Appended in version 2. */
  uint64_t events_dead;       /* reported failed after max_attempts, or rejected */
  uint64_t notices_received;  /* notices stored */
} hd_client_stats_t;
/* Blocking read, any thread (inline on the loop thread). */
HD_EXTERN int hd_client_stats(hd_client_t *client, hd_client_stats_t *out);

/* ---------------------------------------------------------------------------------------------
 * Backups, restores and rollbacks (appended; docs/OPERATIONS.md, docs/RELIABILITY.md).
 *
 * A server store has an epoch that changes whenever it may have lost its last commits: at the
 * first open of a backup copy and after a run under sync_normal that ended without a clean close.
 * A client that saw numbers the store lost is told at its next connection: the events the store
 * acknowledged since are delivered although their numbers were seen before, and an event the
 * loss brought back is handed out marked as possibly repeated.
 */

/* Writes a consistent copy of the running server's store to `path` (a file that must not exist;
 * the folder must), marked as a backup so that a store restored from it knows it was restored.
 * The copy is taken on a thread of libuv's pool with a connection of its own: adds, deliveries
 * and deletes go on meanwhile, and the copy is the store as of one commit. `cb` (optional) runs
 * on the loop thread with 0 once the copy is complete and durable, or the error (HD_EINVAL: the
 * file exists; HD_EIO, HD_ENOSPC...; the detail in hd_last_error_message()). Any thread.
 * HD_EINVAL for a NULL or empty path, HD_ECLOSED while closing; then `cb` never runs. */
HD_EXTERN int hd_server_backup(hd_server_t *server, const char *path, hd_done_cb cb,
                               void *cb_data);
/* The same for the server store in `data_dir` while no server has it open, blocking: HD_EBUSY if
 * a process has it open (back it up through that server: hd_server_backup), HD_ENOTFOUND if
 * there is no store there. Any thread. */
HD_EXTERN int hd_server_backup_folder(const char *data_dir, const char *path);

/* 1 if the event may have been handled before: the server's store lost its last commits (a
 * restore, a power loss under sync_normal) and gave this event again, and this client had
 * handled an event under its number before. 0 otherwise (also for NULL). Valid until the event
 * is completed. */
HD_EXTERN int hd_event_possibly_repeated(const hd_event_t *event);

#define HD_ROLLBACK_STATS_VERSION 1
typedef struct hd_rollback_stats {
  unsigned int version;       /* set to HD_ROLLBACK_STATS_VERSION before the call */
  uint8_t epoch[HD_STORE_ID_BYTES]; /* server: its store's epoch; client: the server store's epoch
                                       its events belong to (zeros: none known yet) */
  uint64_t rollbacks;         /* server: resumes of clients that had seen numbers the store lost
                                 (told so with EPOCH); client: such resumes of its own */
  uint64_t epoch_resumes;     /* resumes answered with EPOCH (a new epoch), rollback or not */
  uint64_t events_repeated;   /* client: events handed out marked possibly repeated */
  uint64_t events_orphaned;   /* client: unhandled events the server's store lost: handed out,
                                 never reported */
  uint64_t consumed_dropped;  /* client: consumed events the server's store lost: dropped,
                                 never reported (their numbers are other events now) */
} hd_rollback_stats_t;
/* Blocking reads, any thread (inline on the loop thread). Counters since create. */
HD_EXTERN int hd_server_rollback_stats(hd_server_t *server, hd_rollback_stats_t *out);
HD_EXTERN int hd_client_rollback_stats(hd_client_t *client, hd_rollback_stats_t *out);

/* ---------------------------------------------------------------------------------------------
 * Events held for another server store (appended; docs/OPERATIONS.md "Events held for another
 * server store").
 *
 * When the server's store is replaced by another one (a new store id: a new folder, not a
 * restore of the old one), the client keeps what it holds of the old store: its unhandled events
 * are handled, before the new store's; the consumptions of its events wait, in the client's
 * store, for a connection to a server with that store again, which gets them and confirms them.
 * Nothing of one store is reported to another. They are kept until then, or until an operator
 * purges them.
 */

/* The server stores other than the current one that the client holds events for, the one seen
 * first first: up to `cap` of them, each its id into `ids` (cap x HD_STORE_ID_BYTES), how many of
 * its events are still to handle into `unhandled` and how many are handled and wait for that
 * store to be told into `consumed` (both optional). Returns how many such stores there are (may
 * exceed cap; 0: none). hd_client_stats's unhandled and consumed count these events too.
 * Blocking read, any thread (inline on the loop thread). */
HD_EXTERN int hd_client_held_stores(hd_client_t *client, uint8_t *ids, uint64_t *unhandled,
                                    uint64_t *consumed, size_t cap);
/* Drops every event the client holds for the server store `store_id` (an id from
 * hd_client_held_stores) and forgets that store: its unhandled events are not handled, its
 * consumptions never reported. Should a server with that store come back, the client takes it
 * for a store it never saw: the store sends its pending events again, including those whose
 * consumption was purged, which are then handled again. `cb` (optional) runs on the loop thread
 * once the purge is durable, with 0 or: HD_ENOTFOUND (a store the client never saw, or purged),
 * HD_EBUSY (it is the store of the server the client talks to: its events are confirmed as
 * usual), a store error. Any thread. HD_EINVAL for a NULL id, HD_ECLOSED while closing; then `cb`
 * never runs. */
HD_EXTERN int hd_client_purge_store(hd_client_t *client,
                                    const uint8_t store_id[HD_STORE_ID_BYTES], hd_done_cb cb,
                                    void *cb_data);

/* ---------------------------------------------------------------------------------------------
 * Admin (appended; docs/OPERATIONS.md "Admin"): a user's pending events, listed a page at a time,
 * and deleted, some or all (a user or a device removed). With hd_server_pending_users (the users
 * and their counts) and hd_server_disconnect.
 *
 * Listing pages with a cursor, like hd_server_pending_users: start with *cursor = 0; each call
 * fills up to `cap` entries of `events` with the events numbered above *cursor, in order, moves
 * *cursor to the last one listed and returns how many (0: no more). The payloads are copied
 * into the caller's `buf` (`buf_len` bytes), which the entries' payload pointers point into: the
 * library keeps nothing for the caller to free, and a binding gives one buffer for a page. A page
 * ends early at the first event whose payload does not fit in what is left of `buf` (the next
 * call lists it); HD_EBUFSIZE if not even the page's first one fits (its size in the detail).
 * With `buf` NULL (and buf_len 0) only the fields are listed (payload NULL, payload_len its
 * size). `data` is NULL and data_len 0. A later listing of other event kinds (dead letters) takes
 * the same shape. Blocking read, any thread (inline on the loop thread); HD_ECLOSED while
 * closing. */
HD_EXTERN int hd_server_list_events(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                    uint64_t *cursor, hd_event_info_t *events, size_t cap,
                                    uint8_t *buf, size_t buf_len);

/* The completion of a delete: status 0 and how many events were deleted (the others were not
 * held: never added, consumed meanwhile, deleted before), or a negative code and count 0. Runs on
 * the loop thread. */
typedef void (*hd_count_cb)(void *cb_data, int status, uint64_t count);

/* Deletes the events `seqs[0..n)` of `user` (the array is copied before the call returns);
 * hd_server_delete_user deletes every event the store holds for `user` (also adds made before the
 * call and not yet durable). `cb` (optional) runs once the delete is durable. Numbers are never
 * given again: the user's next event takes the next one.
 *
 * Events that were delivered already: the user's client keeps what it received (it is not told;
 * to stop it, hd_server_disconnect and remove it from the allow-list) and may still report such an
 * event consumed: the server answers DONE as for any event it no longer holds, and on_consumed
 * does not see it. A batch handed to on_consumed before the delete keeps its copy of the event (its
 * payload is empty if the delete committed while the batch was being made); completing it is
 * answered DONE as usual. An event not yet delivered is never delivered. Any
 * thread. HD_EINVAL: NULL user, or seqs NULL with n > 0; HD_ECLOSED: the server is closing; then
 * `cb` never runs. */
HD_EXTERN int hd_server_delete_events(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                      const uint64_t *seqs, size_t n, hd_count_cb cb,
                                      void *cb_data);
HD_EXTERN int hd_server_delete_user(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                    hd_count_cb cb, void *cb_data);
/* The same, blocking until the delete is durable; `count` (optional) receives how many were
 * deleted. HD_ETHREAD on the handle's loop thread. */
HD_EXTERN int hd_server_delete_events_wait(hd_server_t *server,
                                           const uint8_t user[HD_PUBLICKEY_BYTES],
                                           const uint64_t *seqs, size_t n, uint64_t *count);
HD_EXTERN int hd_server_delete_user_wait(hd_server_t *server,
                                         const uint8_t user[HD_PUBLICKEY_BYTES], uint64_t *count);

/* ---------------------------------------------------------------------------------------------
 * Queue semantics (appended; docs/QUEUES.md): adds with a time to live, a deduplication key or a
 * collapse key; fan-out; per-user limits (hd_server_options_t); poison events and dead letters;
 * notices.
 */

/* Longest deduplication or collapse key, and longest reason of a failed event, in bytes. */
#define HD_KEY_MAX_BYTES 256
#define HD_REASON_MAX_BYTES 1024
/* Most users of one hd_server_add_fanout call. */
#define HD_FANOUT_MAX_USERS 100000
HD_EXTERN size_t hd_key_max_bytes(void);
HD_EXTERN size_t hd_reason_max_bytes(void);
HD_EXTERN size_t hd_fanout_max_users(void);

#define HD_ADD_OPTIONS_VERSION 1
typedef struct hd_add_options {
  unsigned int version;           /* HD_ADD_OPTIONS_VERSION */
  uint64_t ttl_ms;                /* time to live: not sent this long after the add, the event
                                     expires; 0 = the server's default_ttl_ms, UINT64_MAX = never */
  const uint8_t *dedup_key;       /* optional, per user: a repeat within the server's
                                     dedup_window_ms stores nothing and answers with the first
                                     add's number (HD_ADD_DUPLICATE) */
  size_t dedup_key_len;           /* 1..HD_KEY_MAX_BYTES */
  const uint8_t *collapse_key;    /* optional, per user: replaces the user's unsent event with the
                                     same key (HD_ADD_REPLACED) */
  size_t collapse_key_len;        /* 1..HD_KEY_MAX_BYTES */
} hd_add_options_t;
#define HD_ADD_OPTIONS_INIT {HD_ADD_OPTIONS_VERSION, 0, 0, 0, 0, 0}
HD_EXTERN int hd_add_options_init(hd_add_options_t *opts, unsigned int version);

/* hd_add_result_t.flags */
enum {
  HD_ADD_DUPLICATE = 1, /* the dedup key was seen within the window: nothing stored, seq is the
                           first add's (the event may have been consumed since) */
  HD_ADD_CONFLICT = 2,  /* with HD_ADD_DUPLICATE: this add's payload differs from the first's
                           (the first wins) */
  HD_ADD_REPLACED = 4,  /* replaced the unsent event replaced_seq with the same collapse key */
  HD_ADD_DROPPED = 8    /* `dropped` older unsent events made room (HD_OVERFLOW_DROP_OLDEST) */
};
typedef struct hd_add_result {
  uint64_t seq;          /* the event's number (a duplicate: the first add's) */
  uint32_t flags;        /* HD_ADD_* */
  uint64_t replaced_seq; /* HD_ADD_REPLACED: the event it replaced */
  uint64_t dropped;      /* HD_ADD_DROPPED: how many */
} hd_add_result_t;
/* status 0 and the result once durable, or a negative code (HD_ELIMIT: the user is at a limit
 * under HD_OVERFLOW_REJECT) and result NULL. Loop thread. */
typedef void (*hd_add_result_cb)(void *cb_data, int status, const hd_add_result_t *result);

/* hd_server_add_event with options (NULL: as hd_server_add_event). Any thread. HD_EINVAL: as
 * hd_server_add_event, or a key longer than HD_KEY_MAX_BYTES. */
HD_EXTERN int hd_server_add_event_v2(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                     const void *payload, size_t len,
                                     const hd_add_options_t *opts, hd_add_result_cb cb,
                                     void *cb_data);
/* The same, blocking until durable; `result` (optional) receives the result. The add's own
 * failure (HD_ELIMIT...) is the return value. HD_ETHREAD on the handle's loop thread. */
HD_EXTERN int hd_server_add_event_v2_wait(hd_server_t *server,
                                          const uint8_t user[HD_PUBLICKEY_BYTES],
                                          const void *payload, size_t len,
                                          const hd_add_options_t *opts, hd_add_result_t *result);

/* Fan-out: one payload for `n` users (users: n x 32 bytes, 1..HD_FANOUT_MAX_USERS), in one
 * transaction, the payload stored once. `opts` applies to each user (a dedup or collapse key is
 * each user's). cb(cb_data, status, results, n): status is 0 once the transaction is durable and
 * results[i] is users[i]'s: its status (0, HD_ELIMIT, HD_EKEY...) and, when 0, its result; a user
 * that fails fails alone. A negative status fails the whole call (results NULL). Loop thread. */
typedef struct hd_fanout_result {
  int status;
  hd_add_result_t result;
} hd_fanout_result_t;
typedef void (*hd_fanout_cb)(void *cb_data, int status, const hd_fanout_result_t *results,
                             size_t n);
HD_EXTERN int hd_server_add_fanout(hd_server_t *server, const uint8_t *users, size_t n,
                                   const void *payload, size_t len, const hd_add_options_t *opts,
                                   hd_fanout_cb cb, void *cb_data);
/* The same, blocking; `results` (optional) has n entries. HD_ETHREAD on the loop thread. */
HD_EXTERN int hd_server_add_fanout_wait(hd_server_t *server, const uint8_t *users, size_t n,
                                        const void *payload, size_t len,
                                        const hd_add_options_t *opts,
                                        hd_fanout_result_t *results);

/* Dead letters, listed as hd_server_list_events lists events: a page of `user`'s dead letters
 * numbered above *cursor, their payloads and reasons copied into `buf`. */
HD_EXTERN int hd_server_list_dead_letters(hd_server_t *server,
                                          const uint8_t user[HD_PUBLICKEY_BYTES],
                                          uint64_t *cursor, hd_dead_letter_t *out, size_t cap,
                                          uint8_t *buf, size_t buf_len);
/* How many dead letters the store holds for `user` (NULL: for every user). Blocking read. */
HD_EXTERN int hd_server_dead_letter_count(hd_server_t *server,
                                          const uint8_t user[HD_PUBLICKEY_BYTES], uint64_t *out);
/* The users holding dead letters, paged as hd_server_pending_users. */
HD_EXTERN int hd_server_dead_letter_users(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                                          uint64_t *counts, size_t cap);
/* Requeues dead letters `seqs[0..n)` of `user` (seqs NULL and n 0: all of them): each comes back
 * as a new event with the user's next number (and its attempts start again), and the client gets
 * a notice (HD_NOTICE_REQUEUED). Deleting drops them for good. cb: how many. Any thread. */
HD_EXTERN int hd_server_requeue_dead_letters(hd_server_t *server,
                                             const uint8_t user[HD_PUBLICKEY_BYTES],
                                             const uint64_t *seqs, size_t n, hd_count_cb cb,
                                             void *cb_data);
HD_EXTERN int hd_server_delete_dead_letters(hd_server_t *server,
                                            const uint8_t user[HD_PUBLICKEY_BYTES],
                                            const uint64_t *seqs, size_t n, hd_count_cb cb,
                                            void *cb_data);
HD_EXTERN int hd_server_requeue_dead_letters_wait(hd_server_t *server,
                                                  const uint8_t user[HD_PUBLICKEY_BYTES],
                                                  const uint64_t *seqs, size_t n,
                                                  uint64_t *count);
HD_EXTERN int hd_server_delete_dead_letters_wait(hd_server_t *server,
                                                 const uint8_t user[HD_PUBLICKEY_BYTES],
                                                 const uint64_t *seqs, size_t n,
                                                 uint64_t *count);

/* Client side. A failed attempt with the handler's reason (hd_event_complete(event, 0, ...) is one
 * with the reason "handler failed"); after max_attempts the event is reported failed. A reason is
 * UTF-8 (HD_EINVAL otherwise, and the event stays the caller's), cut to HD_REASON_MAX_BYTES at a
 * character's start; empty: "handler failed". Frees the event. */
HD_EXTERN int hd_event_fail(hd_event_t *event, const char *reason, size_t len);
/* Rejects the event at once, whatever its attempts: reported failed with `reason` (at most
 * HD_REASON_MAX_BYTES, longer is cut), a dead letter on the server. Frees the event. */
HD_EXTERN int hd_event_reject(hd_event_t *event, const char *reason, size_t len);
/* Which handler call this is for the event: 1 the first time (counted across restarts). */
HD_EXTERN uint32_t hd_event_attempt(const hd_event_t *event);

/* Notices: what the user's application missed, in their place in its stream (on_notice). */
enum {
  HD_NOTICE_EXPIRED = 1,  /* `count` events numbered first_seq..last_seq expired unsent */
  HD_NOTICE_DROPPED = 2,  /* `count` events numbered first_seq..last_seq were dropped by a limit */
  HD_NOTICE_REQUEUED = 3  /* the dead letter first_seq comes back as event last_seq (count 1) */
};
typedef struct hd_notice {
  unsigned int kind;  /* HD_NOTICE_* (a later release may add kinds: ignore unknown ones) */
  uint64_t count;
  uint64_t first_seq;
  uint64_t last_seq;
} hd_notice_t;
/* 1 if `event` is a notice, else 0. */
HD_EXTERN int hd_event_is_notice(const hd_event_t *event);
/* The notice's fields; HD_EINVAL if `event` is not a notice. */
HD_EXTERN int hd_event_notice(const hd_event_t *event, hd_notice_t *out);

/* ---------------------------------------------------------------------------------------------
 * Many events at once, and operations (docs/OPERATIONS.md).
 */

/* One event of hd_server_add_events. */
typedef struct hd_add_item {
  const uint8_t *user;            /* HD_PUBLICKEY_BYTES */
  const void *payload;            /* copied before the call returns */
  size_t len;
  const hd_add_options_t *opts;   /* optional, as for hd_server_add_event_v2 */
} hd_add_item_t;
/* Most items of one hd_server_add_events call. */
#define HD_ADD_EVENTS_MAX 100000
HD_EXTERN size_t hd_add_events_max(void);
/* Adds `n` events (1..HD_ADD_EVENTS_MAX, any users, a user's events take its numbers in item
 * order) in one transaction and one fsync. cb(cb_data, status, results, n) as for
 * hd_server_add_fanout: results[i] is items[i]'s; an item that fails (HD_ELIMIT...) fails alone;
 * a negative status fails the whole call. HD_EINVAL (nothing added, cb never runs) if any item
 * is invalid. Any thread; cb on the loop thread. */
HD_EXTERN int hd_server_add_events(hd_server_t *server, const hd_add_item_t *items, size_t n,
                                   hd_fanout_cb cb, void *cb_data);
/* The same, blocking; `results` (optional) has n entries. HD_ETHREAD on the loop thread. */
HD_EXTERN int hd_server_add_events_wait(hd_server_t *server, const hd_add_item_t *items,
                                        size_t n, hd_fanout_result_t *results);

/* The server's metrics in the Prometheus text exposition format (version 0.0.4), names prefixed
 * `hyperdown_`: counters since create (added, delivered, consumed, confirmed, failed...), gauges
 * (pending events, users, connections, dead letters) and a histogram of the time from an add to
 * its commit. Writes at most `cap` bytes (NUL-terminated when cap > 0) and returns the length of
 * the whole text (like snprintf: call again with a larger buffer when it is >= cap), or a
 * negative code. Any thread. */
HD_EXTERN int hd_server_metrics(hd_server_t *server, char *buf, size_t cap);
/* The port of the metrics responder (metrics_listen with port 0), or HD_ESTATE without one. */
HD_EXTERN int hd_server_metrics_port(hd_server_t *server);

#ifdef __cplusplus
}
#endif
#endif /* HYPERDOWN_H */
