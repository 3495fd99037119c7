/* What the handle files share (handles.c: Server and Client, their lifetime and events;
 * queues.c: the queue semantics of docs/QUEUES.md). Private to the addon. */
#ifndef HDN_HANDLES_H
#define HDN_HANDLES_H

#include <stdbool.h>

#include "hdn.h"

typedef enum { HDN_SERVER = 0, HDN_CLIENT = 1 } hdn_kind_t;
typedef enum { HDN_OPEN = 0, HDN_CLOSING = 1, HDN_CLOSED = 2 } hdn_state_t;

/* The JS callbacks a handle is created with, one per kind of call (udx-native style): the object
 * given to the constructor names them as hdn_callback_names does. */
typedef enum {
  HDN_CB_CONNECT,      /* onconnect(publicKey) */
  HDN_CB_DISCONNECT,   /* ondisconnect(publicKey | null, error | null) */
  HDN_CB_LOG,          /* onlog(level, message) */
  HDN_CB_EVENT,        /* client: onevent(id, payload, createdAt, event, possiblyRepeated,
                          attempt) */
  HDN_CB_NOTICE,       /* client: onnotice(kind, count, firstSeq, lastSeq, event) */
  HDN_CB_CONSUMED,     /* server: onconsumed(user, events, batch) */
  HDN_CB_DEAD_LETTER,  /* server: ondeadletter(user, deadLetter) */
  HDN_CB_AUTHORIZE,    /* server: onauthorize(publicKey, request) */
  HDN_CB_COUNT
} hdn_callback_t;

typedef struct hdn_handle {
  napi_env env;
  hdn_kind_t kind;
  hdn_state_t state;
  void *core;                /* hd_server_t * or hd_client_t *; NULL once CLOSED */
  int finalized;             /* the JS object is gone: free on close, never touch JS again */
  int teardown;              /* the env is being torn down: no more calls into JS */
  napi_ref self;             /* strong while OPEN/CLOSING */
  napi_ref callbacks[HDN_CB_COUNT]; /* NULL: not given (and never called) */
  int has_callbacks;         /* the references are held (until the close or the finalizer) */
  napi_async_context actx;
  napi_deferred close_deferred;
  napi_ref close_promise;
  napi_async_cleanup_hook_handle cleanup;
  int pending;               /* addEvent/updatePause not completed yet: keep the wrapper */
} hdn_handle_t;

/* The addon's native objects alive in this process, by kind: a wrapper, a client event or a
 * server batch handed to JS, an addEvent/updatePause in flight. nativeObjects() reads them: once
 * every handle is closed and its objects collected, each count is back to zero, so a leak of
 * any of them shows exactly (test/handles.test.js). Atomic: worker threads share the addon. */
typedef enum {
  HDN_LIVE_HANDLE,
  HDN_LIVE_EVENT,
  HDN_LIVE_BATCH,
  HDN_LIVE_OPERATION,
  HDN_LIVE_KINDS
} hdn_live_kind_t;

void *hdn_live_calloc(hdn_live_kind_t kind, size_t size);
void hdn_live_free(hdn_live_kind_t kind, void *p);

/* The handle may call into JS (not finalized, not torn down). */
int hdn_can_call_js(const hdn_handle_t *h);
/* The callback `cb`(argv...) through napi_make_callback, inside a handle scope; an exception is
 * reported to stderr and dropped. 0 if the call returned normally (-1 also without that
 * callback). */
int hdn_call_js(hdn_handle_t *h, hdn_callback_t cb, size_t argc, napi_value *argv);

/* An event's sequence number as a Number (exact up to 2^53) or a BigInt; NULL on failure. */
napi_value hdn_seq_value(napi_env env, uint64_t seq);
/* A sequence number from a Number (a safe integer >= 0) or a BigInt; -1 (thrown) otherwise. */
int hdn_get_seq(napi_env env, napi_value v, uint64_t *out, const char *what);
/* An array of sequence numbers as a malloc'ed array (*n entries; at least one allocated);
 * NULL (thrown) if `v` is not an array of ids. */
uint64_t *hdn_get_seqs(napi_env env, napi_value v, uint32_t *n);
bool hdn_truthy(napi_env env, napi_value v);
bool hdn_is_nullish(napi_env env, napi_value v);
int hdn_set_u64(napi_env env, napi_value obj, const char *key, uint64_t v);
/* Every page of a paged user listing (hd_server_pending_users, hd_server_dead_letter_users) as
 * [{ user: Buffer, <field>: count }]; NULL with an exception pending on failure. */
typedef int (*hdn_user_pager_t)(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                                uint64_t *counts, size_t cap);
napi_value hdn_user_counts(napi_env env, hd_server_t *core, hdn_user_pager_t page,
                           const char *field, const char *what);
/* { names[i]: values[i] } as Numbers; NULL (thrown, naming `what`) on failure. */
napi_value hdn_counters_object(napi_env env, const char *what, size_t n, const char *const names[],
                               const uint64_t values[]);
/* A reference to `data` handed to JS (udx-native style: JS passes it back to the one function
 * of each C call): an external tagged `tag`, `fin` running when it is collected. NULL on
 * failure, `data` still the caller's. */
napi_value hdn_make_ref(napi_env env, void *data, const napi_type_tag *tag, napi_finalize fin);
/* The data of a reference made with `tag`; NULL (thrown EINVAL, naming `what`) otherwise. */
void *hdn_get_ref(napi_env env, napi_value v, const napi_type_tag *tag, const char *what);

/* An asynchronous operation: its handle and its promise. While it runs the handle counts it
 * (h->pending) and stays alive. */
typedef struct hdn_op {
  hdn_handle_t *h;
  napi_deferred d;
} hdn_op_t;
/* Builds the value a settled operation resolves with (inside a handle scope). */
typedef napi_value (*hdn_value_fn)(napi_env env, const void *arg);

/* The handle of `this` (open or not: the operation's promise says ECLOSED) and the arguments;
 * NULL (thrown) if `this` is not a handle. */
hdn_handle_t *hdn_op_handle(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv);
/* The same for a blocking read: NULL (thrown ECLOSED) unless open. */
hdn_handle_t *hdn_open_handle(napi_env env, napi_callback_info info, size_t *argc,
                              napi_value *argv);
/* Starts one asynchronous core call: `start(h->core, cb_data, arg)` must pass `cb_data` to the
 * core as its callback's data (the callback settles it with hdn_op_settle). Makes the promise,
 * rejects it at once with ECLOSED (closing handle) or with the code the core refused the call
 * with, and otherwise counts the operation on the handle. The promise, or NULL (thrown). */
typedef int (*hdn_op_start_fn)(void *core, void *cb_data, const void *arg);
napi_value hdn_op_run(napi_env env, hdn_handle_t *h, hdn_op_start_fn start, const void *arg);
/* Settles from the core's completion (loop thread): resolved with make(env, arg) (undefined for
 * make NULL) or rejected with an Error carrying `status`; frees the operation. */
void hdn_op_settle(hdn_op_t *o, int status, hdn_value_fn make, const void *arg);
/* A completion (hd_add_cb, hd_count_cb) that resolves with the number. */
void hdn_on_added(void *cb_data, int status, uint64_t seq);
/* A completion (hd_done_cb) that resolves with undefined. */
void hdn_on_done(void *cb_data, int status);

/* (user, ids) -> Promise<number> calls (delete events, requeue/delete dead letters): ids
 * REQUIRED (an array), NONE (the user alone) or OPTIONAL (nullish: all, an empty array: none,
 * resolved with 0 at once without a call). */
typedef int (*hdn_ids_fn)(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                          const uint64_t *seqs, size_t n, hd_count_cb cb, void *cb_data);
typedef enum { HDN_IDS_REQUIRED, HDN_IDS_NONE, HDN_IDS_OPTIONAL } hdn_ids_mode_t;
napi_value hdn_ids_call(napi_env env, napi_callback_info info, hdn_ids_fn fn, hdn_ids_mode_t mode);

/* The client's on_event and on_notice (handles.c): a notice goes to onnotice. */
void hdn_on_client_event(void *ud, hd_event_t *event);

/* Queue semantics (queues.c): the server's and client's options of docs/QUEUES.md; 0, or -1
 * with an exception thrown. */
int hdn_queue_server_options(napi_env env, napi_value opts, hd_server_options_t *o);
int hdn_queue_client_options(napi_env env, napi_value opts, hd_client_options_t *o);
/* The queue-semantics methods, appended to the classes' property lists. */
extern const napi_property_descriptor hdn_queue_server_methods[];
extern const size_t hdn_queue_server_method_count;

#endif
