/* The client handle, its transport half: dials its servers in turn (dialer.h), keeps one
 * connection, dials again with a jittered doubling backoff after a failure or a disconnect, and
 * moves through the server keys it accepts after an authentication failure; create, close,
 * close_wait, stats and the internal hook/send API (client.h). Events are the event layer's
 * (client_events.h): this file knows them only through its calls. */
#include "client.h"

#include "client_events.h"
#include "conn_config.h"
#include "dialer.h"
#include "keys.h"
#include "options.h"

#include <sodium.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_RECONNECT_MIN_MS 100
#define DEFAULT_RECONNECT_MAX_MS 5000
/* After a BYE "replaced" the wait starts at reconnect_max_ms and doubles with each replacement
 * in a row, up to this (or reconnect_max_ms if larger): two copies of one key take turns ever
 * more rarely instead of bouncing each other (docs/PROTOCOL.md, BYE). */
#define REPLACED_MAX_MS 60000

struct hd_client {
  hd__runtime_t *rt;
  hd__conn_config_t cfg;
  hd__dialer_t dialer;          /* the server addresses, in turn */

  /* The server keys accepted (key rollover): n_keys x (Ed25519, X25519); `key` is the one the
   * next attempt uses, kept after a session succeeded with it. */
  uint8_t (*keys)[2][HD_PUBLICKEY_BYTES];
  size_t n_keys, key;
  size_t auth_failures;         /* in a row at the current address: all keys tried moves on */

  void *user_data;
  hd_destroy_cb destroy;
  hd_peer_cb on_connected;
  hd_peer_closed_cb on_disconnected;

  hd__conn_t *conn; /* the current attempt or connection */
  int open;
  uv_timer_t retry;
  uint32_t backoff_ms, reconnect_min_ms, reconnect_max_ms;
  uint32_t replaced_ms; /* the wait after the next BYE "replaced"; 0: none in a row yet */
  uint64_t rng;         /* the jitter's generator (splitmix64), seeded per client */
  int no_jitter;        /* benchmarks (client.h) */
  int no_reconnect;

  hd__hook_t hook;              /* tests (client.h); loop thread */
  void (*dial_observer)(void *); /* benchmarks (client.h) */
  void *dial_observer_ud;

  hd__client_events_t *events;  /* NULL once closed, and for a bare client (client.h) */

  int closing;
  int retry_open;
  hd__closer_t closer;
};

static void maybe_finish(hd_client_t *cl);
static void dial(hd_client_t *cl);

/* ---- Backoff with jitter ------------------------------------------------------------------ */

/* splitmix64: a few instructions, and independent clients draw independent delays (each seeded
 * from the system's randomness), which is all the jitter needs. */
static uint64_t rng_next(hd_client_t *cl) {
  uint64_t z = (cl->rng += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/* A delay drawn uniformly in [d/2, d]: clients that lost their server at the same moment (its
 * restart) come back spread over half the delay instead of in the same millisecond, and none
 * waits longer than d. */
static uint32_t jitter(hd_client_t *cl, uint32_t d) {
  if (cl->no_jitter) return d;
  uint32_t lo = d / 2;
  return lo + (uint32_t)(rng_next(cl) % ((uint64_t)(d - lo) + 1));
}

static void use_key(hd_client_t *cl, size_t i) {
  cl->key = i;
  memcpy(cl->cfg.server_public_key, cl->keys[i][0], HD_PUBLICKEY_BYTES);
  memcpy(cl->cfg.server_x_public, cl->keys[i][1], HD_PUBLICKEY_BYTES);
}

/* ---- Connection events ------------------------------------------------------------------ */

static void on_conn_open(hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd_client_t *cl = c->cfg->owner;
  cl->open = 1;
  cl->backoff_ms = cl->reconnect_min_ms; /* a working connection resets the backoff */
  cl->auth_failures = 0;
  if (cl->hook.fn != NULL) c->raw = 1;
  else if (cl->events != NULL) hd__client_events_on_open(cl->events, c);
  if (cl->on_connected) cl->on_connected(cl->user_data, pk);
}

static void on_conn_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  hd_client_t *cl = c->cfg->owner;
  if (!c->raw) {
    if (cl->events != NULL) hd__client_events_on_message(cl->events, c, type, body, len);
  } else if (cl->hook.fn != NULL) {
    cl->hook.fn(cl->hook.ud, c, type, body, len);
  }
}

static void on_retry(uv_timer_t *t) { dial(t->data); }

static void schedule_retry(hd_client_t *cl) {
  if (cl->closing || cl->no_reconnect) return;
  uint32_t delay = jitter(cl, cl->backoff_ms);
  hd__log(cl->rt, HD_LOG_DEBUG, "dialing again in %u ms", delay);
  uv_timer_start(&cl->retry, on_retry, delay, 0);
  cl->backoff_ms = hd__backoff_next(cl->backoff_ms, cl->reconnect_max_ms);
}

/* The same attempt goes on with the next address of one name: no backoff (the turn of the
 * loop lets the failed connection's memory go first). */
static void dial_soon(hd_client_t *cl) {
  if (cl->closing) return;
  uv_timer_start(&cl->retry, on_retry, 0, 0);
}

/* An attempt that never authenticated ended with `status`: the next key after an
 * authentication failure (while there are keys not tried at this address), else the next
 * address. */
static void attempt_failed(hd_client_t *cl, int status) {
  if (cl->closing) return;
  if (status == HD_EAUTH && cl->n_keys > 1) {
    size_t failed = cl->key;
    use_key(cl, (cl->key + 1) % cl->n_keys);
    hd__log(cl->rt, HD_LOG_INFO, "server key %zu of %zu refused; key %zu next", failed + 1,
            cl->n_keys, cl->key + 1);
    if (++cl->auth_failures < cl->n_keys) {
      schedule_retry(cl);
      return;
    }
  }
  cl->auth_failures = 0;
  /* the other addresses of one name are the same attempt: tried even under no_reconnect */
  if (hd__dialer_failed(&cl->dialer) == 0) dial_soon(cl);
  else schedule_retry(cl);
}

static void on_conn_close(hd__conn_t *c, const uint8_t *pk, int status) {
  hd_client_t *cl = c->cfg->owner;
  cl->conn = NULL;
  cl->open = 0;
  if (!c->raw && cl->events != NULL) hd__client_events_on_close(cl->events, c);
  /* the conn restored the error detail just before this call */
  if (cl->on_disconnected) cl->on_disconnected(cl->user_data, pk, status);
  if (cl->closing) {
    maybe_finish(cl);
    return;
  }
  if (pk == NULL) {
    attempt_failed(cl, status);
    return;
  }
  if (status == HD_EREPLACED) {
    /* another copy of this client (same key) took over: dialing back at once would throw it
     * out, and it would do the same */
    uint32_t cap = cl->reconnect_max_ms > REPLACED_MAX_MS ? cl->reconnect_max_ms : REPLACED_MAX_MS;
    cl->replaced_ms =
        cl->replaced_ms ? hd__backoff_next(cl->replaced_ms, cap) : cl->reconnect_max_ms;
    cl->backoff_ms = cl->replaced_ms;
    hd__log(cl->rt, HD_LOG_WARN, "replaced by another connection with this client's key (a "
            "second copy of this client?): dialing again in about %u ms", cl->replaced_ms);
  } else {
    cl->replaced_ms = 0; /* a connection that ended for another reason: the run is over */
  }
  /* a session ended: the address that worked is dialed again first (a restart is the usual
   * cause); its failure then moves on through the list */
  schedule_retry(cl);
}

/* Dials the current address; 0, or the failure (already reported). */
static int dial_now(hd_client_t *cl, const struct sockaddr *addr) {
  hd__conn_t *c;
  if (hd__log_enabled(cl->rt, HD_LOG_DEBUG)) {
    char text[HD__ADDR_STRLEN];
    hd__addr_format(addr, text, sizeof text);
    hd__log(cl->rt, HD_LOG_DEBUG, "dialing %s (%s)", text, hd__dialer_entry_text(&cl->dialer));
  }
  if (cl->dial_observer != NULL) cl->dial_observer(cl->dial_observer_ud);
  int rc = hd__conn_connect(&cl->cfg, addr, &c);
  if (rc == 0) cl->conn = c;
  return rc;
}

static void dial_failed(hd_client_t *cl, int rc) {
  hd__log(cl->rt, HD_LOG_WARN, "dial failed: %s", hd_last_error_message());
  if (cl->on_disconnected) cl->on_disconnected(cl->user_data, NULL, rc);
  attempt_failed(cl, rc);
}

static void dial(hd_client_t *cl) {
  if (cl->closing || cl->conn != NULL) return;
  const struct sockaddr *addr;
  int rc = hd__dialer_next(&cl->dialer, &addr);
  if (rc == 1) return; /* on_resolved dials */
  if (rc == 0) rc = dial_now(cl, addr);
  if (rc != 0) dial_failed(cl, rc);
}

static void on_resolved(hd__dialer_t *d, int status, const struct sockaddr *addr) {
  hd_client_t *cl = d->owner;
  (void)addr;
  if (cl->closing) {
    maybe_finish(cl);
    return;
  }
  if (status != 0) dial_failed(cl, status);
  else dial(cl);
}

/* ---- Options and create ----------------------------------------------------------------- */

int hd_client_options_init(hd_client_options_t *opts, unsigned int version) {
  int rc = hd__options_check_version(opts, version, HD_CLIENT_OPTIONS_VERSION, "client");
  if (rc != 0) return rc;
  hd_client_options_t init = HD_CLIENT_OPTIONS_INIT;
  /* a caller's struct of version 1 is shorter: only its fields */
  size_t size = version >= 3   ? sizeof init
                : version == 2 ? offsetof(hd_client_options_t, connect_list)
                               : offsetof(hd_client_options_t, max_attempts);
  memcpy(opts, &init, size);
  opts->version = version;
  return 0;
}

static void free_client(hd_client_t *cl) {
  hd__conn_config_wipe(&cl->cfg);
  hd__dialer_free(&cl->dialer);
  free(cl->keys);
  free(cl);
}

static void on_retry_closed_on_error(uv_handle_t *h) { free_client(h->data); }

/* The addresses: connect_list (version 3) replaces connect. */
static int addresses_init(hd_client_t *cl, const hd_client_options_t *opts) {
  if (opts->version >= 3 && (opts->connect_list != NULL || opts->connect_count > 0)) {
    if (opts->connect_list == NULL || opts->connect_count == 0) {
      return hd__error(HD_EINVAL, "connect_list is %s with connect_count %zu: an empty address "
                       "list", opts->connect_list ? "set" : "NULL", opts->connect_count);
    }
    return hd__dialer_init(&cl->dialer, NULL, opts->connect_list, opts->connect_count,
                           on_resolved, cl);
  }
  const char *one[1] = {opts->connect};
  return hd__dialer_init(&cl->dialer, NULL, one, 1, on_resolved, cl);
}

/* The keys: server_public_keys (version 3) replaces server_public_key. */
static int keys_init(hd_client_t *cl, const hd_client_options_t *opts) {
  const uint8_t *keys = opts->server_public_key;
  size_t n = 1;
  if (opts->version >= 3 && (opts->server_public_keys != NULL || opts->server_public_key_count)) {
    if (opts->server_public_keys == NULL || opts->server_public_key_count == 0) {
      return hd__error(HD_EINVAL, "server_public_keys is %s with server_public_key_count %zu: "
                       "an empty key list", opts->server_public_keys ? "set" : "NULL",
                       opts->server_public_key_count);
    }
    keys = opts->server_public_keys;
    n = opts->server_public_key_count;
  }
  if (keys == NULL) return hd__error(HD_EINVAL, "no server public key given");
  cl->keys = calloc(n, sizeof *cl->keys);
  if (cl->keys == NULL) return hd__error(HD_ENOMEM, "out of memory for %zu server keys", n);
  for (size_t i = 0; i < n; i++) {
    memcpy(cl->keys[i][0], keys + i * HD_PUBLICKEY_BYTES, HD_PUBLICKEY_BYTES);
    if (hd__ed25519_pk_to_x25519(cl->keys[i][0], cl->keys[i][1]) != 0) {
      return n == 1 ? hd__error(HD_EKEY, "the server public key is not a valid Ed25519 key")
                    : hd__error(HD_EKEY, "server public key %zu of %zu is not a valid Ed25519 "
                                "key", i + 1, n);
    }
  }
  cl->n_keys = n;
  use_key(cl, 0);
  return 0;
}

static int create_client(hd_client_t **out, const hd_client_options_t *opts, int bare) {
  if (out == NULL) return hd__error(HD_EINVAL, "out is NULL");
  *out = NULL;
  int rc = hd_init();
  if (rc != 0) return rc;
  rc = hd__options_check_version(opts, opts ? opts->version : 0, HD_CLIENT_OPTIONS_VERSION,
                                 "client");
  if (rc != 0) return rc;
  if (!bare && (opts->data_dir == NULL || opts->data_dir[0] == '\0')) {
    return hd__error(HD_EINVAL, "no data_dir given: the client keeps its events in a folder");
  }
  if (!bare && opts->on_event == NULL) return hd__error(HD_EINVAL, "no on_event handler given");
  hd_client_t *cl = calloc(1, sizeof *cl);
  if (cl == NULL) return hd__error(HD_ENOMEM, "out of memory creating the client");
  rc = hd__conn_config_init(&cl->cfg, opts->keypair, opts->topic, opts->handshake_timeout_ms,
                            opts->keepalive_ms, opts->idle_timeout_ms, opts->max_message_bytes);
  if (rc == 0) rc = keys_init(cl, opts);
  if (rc == 0) rc = addresses_init(cl, opts);
  if (rc != 0) {
    free_client(cl);
    return rc;
  }
  cl->cfg.owner = cl;
  cl->cfg.on_open = on_conn_open;
  cl->cfg.on_message = on_conn_message;
  cl->cfg.on_close = on_conn_close;
  cl->user_data = opts->user_data;
  cl->destroy = opts->destroy;
  cl->on_connected = opts->on_connected;
  cl->on_disconnected = opts->on_disconnected;
  cl->reconnect_min_ms = opts->reconnect_min_ms ? opts->reconnect_min_ms : DEFAULT_RECONNECT_MIN_MS;
  cl->reconnect_max_ms = opts->reconnect_max_ms ? opts->reconnect_max_ms : DEFAULT_RECONNECT_MAX_MS;
  if (cl->reconnect_max_ms < cl->reconnect_min_ms) cl->reconnect_max_ms = cl->reconnect_min_ms;
  cl->backoff_ms = cl->reconnect_min_ms;
  cl->no_reconnect = opts->no_reconnect;
  randombytes_buf(&cl->rng, sizeof cl->rng);

  hd__runtime_options_t ro = {opts->loop, opts->log, opts->user_data, opts->log_level, "client"};
  rc = hd__runtime_create(&cl->rt, &ro);
  if (rc != 0) {
    free_client(cl);
    return rc;
  }
  cl->cfg.rt = cl->rt;
  cl->dialer.rt = cl->rt;
  uv_timer_init(cl->rt->loop, &cl->retry);
  cl->retry.data = cl;
  cl->retry_open = 1;
  /* The store opens here, on the creating thread before the loop thread exists (or on the
   * caller loop's thread): the loop is not running yet, so this is its thread in effect, and a
   * folder in use is returned by create with no callback fired. */
  if (!bare) rc = hd__client_events_create(&cl->events, cl->rt, opts);
  /* The first dial of one numeric address starts here, before the loop thread runs: a
   * synchronous failure (e.g. an address family the machine lacks) is returned by create. A
   * name is resolved on the loop, and a list goes on to its next address: both dial from the
   * loop's first turn, so that every callback runs on the loop thread. */
  hd__conn_t *c = NULL;
  const hd__addr_spec_t *first = &cl->dialer.specs[0];
  if (rc == 0 && cl->dialer.n == 1 && first->numeric) {
    rc = hd__conn_connect(&cl->cfg, (const struct sockaddr *)&first->sa, &c);
  } else if (rc == 0) {
    uv_timer_start(&cl->retry, on_retry, 0, 0);
  }
  if (rc == 0 && cl->events != NULL) hd__client_events_start(cl->events); /* what the store
                                                                   holds, server or not */
  /* set before the thread starts: a dial that fails at once clears it from the loop thread */
  cl->conn = c;
  if (rc == 0) rc = hd__runtime_start(cl->rt);
  if (rc != 0) {
    hd__error_state_t e;
    hd__error_save(&e);
    cl->conn = NULL;
    if (c != NULL) {
      /* never started: close it without callbacks */
      c->silent = 1; /* its close callback must not touch `cl`, freed first */
      hd__conn_close(c, HD_ECANCELED, "client create failed");
    }
    hd__runtime_t *rt = cl->rt;
    /* frees itself once its store and timer are closed: within abort for an owned loop */
    if (cl->events != NULL) hd__client_events_close(cl->events, NULL, NULL);
    uv_close((uv_handle_t *)&cl->retry, on_retry_closed_on_error);
    hd__runtime_abort(rt);
    return hd__error_restore(&e);
  }
  *out = cl;
  return 0;
}

int hd_client_create(hd_client_t **out, const hd_client_options_t *opts) {
  return create_client(out, opts, 0);
}

int hd__client_create_bare(hd_client_t **out, const hd_client_options_t *opts) {
  return create_client(out, opts, 1);
}

/* ---- Stats ---------------------------------------------------------------------------------- */

typedef struct stats_call {
  hd_client_t *cl;
  hd_client_stats_t *out;
  hd_rollback_stats_t *rollback;
} stats_call_t;

static int stats_on_loop(void *arg) {
  stats_call_t *c = arg;
  if (c->cl->closing || c->cl->events == NULL) return hd__error(HD_ECLOSED, "the client is closing");
  int rc = hd__client_events_stats(c->cl->events, c->out);
  c->out->connected = c->cl->open;
  return rc;
}

int hd_client_stats(hd_client_t *client, hd_client_stats_t *out) {
  if (client == NULL || out == NULL) return hd__error(HD_EINVAL, "client or output is NULL");
  int rc = hd__options_check_stats_version(out->version, HD_CLIENT_STATS_VERSION, "client");
  if (rc != 0) return rc;
  hd_client_stats_t tmp = {.version = out->version};
  stats_call_t c = {.cl = client, .out = &tmp};
  rc = hd__runtime_call(client->rt, stats_on_loop, &c);
  if (rc != 0) return rc;
  /* a caller built against version 1 has the struct without the fields appended since */
  memcpy(out, &tmp, out->version == 1 ? offsetof(hd_client_stats_t, events_dead) : sizeof tmp);
  return 0;
}

static int rollback_stats_on_loop(void *arg) {
  stats_call_t *c = arg;
  if (c->cl->closing || c->cl->events == NULL) return hd__error(HD_ECLOSED, "the client is closing");
  return hd__client_events_rollback_stats(c->cl->events, c->rollback);
}

int hd_client_rollback_stats(hd_client_t *client, hd_rollback_stats_t *out) {
  if (client == NULL || out == NULL) return hd__error(HD_EINVAL, "client or output is NULL");
  int rc = hd__options_check_stats_version(out->version, HD_ROLLBACK_STATS_VERSION, "rollback");
  if (rc != 0) return rc;
  hd_rollback_stats_t tmp = {.version = HD_ROLLBACK_STATS_VERSION};
  stats_call_t c = {.cl = client, .rollback = &tmp};
  rc = hd__runtime_call(client->rt, rollback_stats_on_loop, &c);
  if (rc == 0) *out = tmp; /* version 1 is the whole struct */
  return rc;
}

/* ---- Events held for other server stores ----------------------------------------------------- */

typedef struct held_call {
  hd_client_t *cl;
  hd__held_list_t list;
  const uint8_t *id;
  hd_done_cb cb;
  void *cb_data;
} held_call_t;

static int held_on_loop(void *arg) {
  held_call_t *c = arg;
  if (c->cl->closing || c->cl->events == NULL) {
    return hd__error(HD_ECLOSED, "the client is closing");
  }
  return hd__client_events_held_stores(c->cl->events, &c->list);
}

int hd_client_held_stores(hd_client_t *client, uint8_t *ids, uint64_t *unhandled,
                          uint64_t *consumed, size_t cap) {
  if (client == NULL || (cap != 0 && ids == NULL)) {
    return hd__error(HD_EINVAL, "client is NULL, or ids is NULL with a capacity");
  }
  held_call_t c = {.cl = client, .list = {ids, unhandled, consumed, cap, 0, 0, 0}};
  return hd__runtime_call(client->rt, held_on_loop, &c);
}

static int purge_on_loop(void *arg) {
  held_call_t *c = arg;
  if (c->cl->closing || c->cl->events == NULL) {
    return hd__error(HD_ECLOSED, "the client is closing");
  }
  return hd__client_events_purge_store(c->cl->events, c->id, c->cb, c->cb_data);
}

int hd_client_purge_store(hd_client_t *client, const uint8_t store_id[HD_STORE_ID_BYTES],
                          hd_done_cb cb, void *cb_data) {
  if (client == NULL || store_id == NULL) return hd__error(HD_EINVAL, "client or store id is NULL");
  held_call_t c = {.cl = client, .id = store_id, .cb = cb, .cb_data = cb_data};
  return hd__runtime_call(client->rt, purge_on_loop, &c);
}

/* ---- Close ------------------------------------------------------------------------------ */

static void maybe_finish(hd_client_t *cl) {
  if (cl->retry_open || cl->conn != NULL || cl->events != NULL || cl->dialer.resolving) return;
  hd__runtime_t *rt = cl->rt;
  hd__log(rt, HD_LOG_INFO, "closed");
  if (cl->destroy) cl->destroy(cl->user_data);
  if (cl->closer.cb) cl->closer.cb(cl->closer.data);
  free_client(cl);
  hd__runtime_release(rt);
}

static void on_retry_closed(uv_handle_t *h) {
  hd_client_t *cl = h->data;
  cl->retry_open = 0;
  maybe_finish(cl);
}

static void on_events_closed(void *arg) {
  hd_client_t *cl = arg;
  cl->events = NULL;
  maybe_finish(cl);
}

static void close_task(hd__task_t *t, int cancelled) {
  hd_client_t *cl = hd__container_of(t, hd_client_t, closer.task);
  (void)cancelled;
  cl->closing = 1;
  /* the handler stops first (an event handed out and not completed is handled again next
   * time), then BYE; the store commits what is queued and closes before the close callback */
  if (cl->events != NULL) hd__client_events_close(cl->events, on_events_closed, cl);
  hd__dialer_cancel(&cl->dialer); /* its callback finishes the close if it comes last */
  uv_close((uv_handle_t *)&cl->retry, on_retry_closed);
  if (cl->conn != NULL) hd__conn_close(cl->conn, 0, "client closing");
}

static int close_client(hd_client_t *cl, int wait, hd_close_cb cb, void *cb_data) {
  if (cl == NULL) return hd__error(HD_EINVAL, "client is NULL");
  return wait ? hd__runtime_close_wait(cl->rt, &cl->closer, close_task)
              : hd__runtime_close(cl->rt, &cl->closer, close_task, cb, cb_data);
}

int hd_client_close(hd_client_t *client, hd_close_cb cb, void *cb_data) {
  return close_client(client, 0, cb, cb_data);
}

int hd_client_close_wait(hd_client_t *client) { return close_client(client, 1, NULL, NULL); }

/* ---- Internal API (client.h) ---------------------------------------------------------------- */

typedef struct hook_call {
  hd_client_t *cl;
  hd__hook_t hook;
} hook_call_t;

static int set_hook_on_loop(void *arg) {
  hook_call_t *h = arg;
  hd_client_t *cl = h->cl;
  cl->hook = h->hook;
  hd__conn_t *c = cl->open ? cl->conn : NULL;
  if (cl->hook.fn == NULL || c == NULL || c->raw) return 0;
  /* the open connection is the hook's from now on */
  if (cl->events != NULL) hd__client_events_on_close(cl->events, c);
  c->raw = 1;
  return 0;
}

int hd__client_set_message_hook(hd_client_t *cl, hd__message_hook cb, void *ud) {
  hook_call_t h = {cl, {cb, ud}};
  return hd__runtime_call(cl->rt, set_hook_on_loop, &h);
}

static int send_now(void *owner, const uint8_t *key, uint8_t type, const uint8_t *body,
                    size_t len) {
  hd_client_t *cl = owner;
  (void)key;
  if (cl->closing) return hd__error(HD_ECLOSED, "the client is closing");
  if (!cl->open) return hd__error(HD_ESTATE, "the client is not connected");
  return hd__conn_send(cl->conn, type, body, len);
}

int hd__client_send(hd_client_t *cl, uint8_t type, const uint8_t *body, size_t len) {
  return hd__runtime_send(cl->rt, send_now, cl, NULL, type, body, len);
}

void hd__client_set_dial_observer(hd_client_t *cl, void (*fn)(void *ud), void *ud) {
  cl->dial_observer = fn;
  cl->dial_observer_ud = ud;
}

void hd__client_set_jitter(hd_client_t *cl, int on) { cl->no_jitter = !on; }

hd__client_store_t *hd__client_store_of(hd_client_t *cl) {
  return cl->events != NULL ? cl->events->store : NULL;
}
