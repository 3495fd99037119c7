/* The client handle, its transport half: dials one server, keeps one connection, dials again
 * with a doubling backoff after a failure or a disconnect; create, close, close_wait, stats and
 * the internal hook/send API (client.h). Events are the event layer's (client_events.h): this
 * file knows them only through its calls. */
#include "client.h"

#include "client_events.h"
#include "conn_config.h"
#include "keys.h"
#include "options.h"

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
  struct sockaddr_storage addr;

  void *user_data;
  hd_destroy_cb destroy;
  hd_peer_cb on_connected;
  hd_peer_closed_cb on_disconnected;

  hd__conn_t *conn; /* the current attempt or connection */
  int open;
  uv_timer_t retry;
  uint32_t backoff_ms, reconnect_min_ms, reconnect_max_ms;
  uint32_t replaced_ms; /* the wait after the next BYE "replaced"; 0: none in a row yet */
  int no_reconnect;

  hd__hook_t hook;              /* tests (client.h); loop thread */

  hd__client_events_t *events;  /* NULL once closed */

  int closing;
  int retry_open;
  hd__closer_t closer;
};

static void maybe_finish(hd_client_t *cl);
static void dial(hd_client_t *cl);

/* ---- Connection events ------------------------------------------------------------------ */

static void on_conn_open(hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd_client_t *cl = c->cfg->owner;
  cl->open = 1;
  cl->backoff_ms = cl->reconnect_min_ms; /* a working connection resets the backoff */
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
  hd__log(cl->rt, HD_LOG_DEBUG, "dialing again in %u ms", cl->backoff_ms);
  uv_timer_start(&cl->retry, on_retry, cl->backoff_ms, 0);
  cl->backoff_ms = hd__backoff_next(cl->backoff_ms, cl->reconnect_max_ms);
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
  if (status == HD_EREPLACED) {
    /* another copy of this client (same key) took over: dialing back at once would throw it
     * out, and it would do the same */
    uint32_t cap = cl->reconnect_max_ms > REPLACED_MAX_MS ? cl->reconnect_max_ms : REPLACED_MAX_MS;
    cl->replaced_ms =
        cl->replaced_ms ? hd__backoff_next(cl->replaced_ms, cap) : cl->reconnect_max_ms;
    cl->backoff_ms = cl->replaced_ms;
    hd__log(cl->rt, HD_LOG_WARN, "replaced by another connection with this client's key (a "
            "second copy of this client?): dialing again in %u ms", cl->replaced_ms);
  } else if (pk != NULL) {
    cl->replaced_ms = 0; /* a connection that ended for another reason: the run is over */
  }
  schedule_retry(cl);
}

static void dial(hd_client_t *cl) {
  if (cl->closing || cl->conn != NULL) return;
  hd__conn_t *c;
  int rc = hd__conn_connect(&cl->cfg, (const struct sockaddr *)&cl->addr, &c);
  if (rc != 0) {
    hd__log(cl->rt, HD_LOG_WARN, "dial failed: %s", hd_last_error_message());
    if (cl->on_disconnected) cl->on_disconnected(cl->user_data, NULL, rc);
    schedule_retry(cl);
    return;
  }
  cl->conn = c;
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
  free(cl);
}

static void on_retry_closed_on_error(uv_handle_t *h) { free_client(h->data); }

int hd_client_create(hd_client_t **out, const hd_client_options_t *opts) {
  if (out == NULL) return hd__error(HD_EINVAL, "out is NULL");
  *out = NULL;
  int rc = hd_init();
  if (rc != 0) return rc;
  rc = hd__options_check_version(opts, opts ? opts->version : 0, HD_CLIENT_OPTIONS_VERSION,
                                 "client");
  if (rc != 0) return rc;
  if (opts->server_public_key == NULL) return hd__error(HD_EINVAL, "no server public key given");
  if (opts->data_dir == NULL || opts->data_dir[0] == '\0') {
    return hd__error(HD_EINVAL, "no data_dir given: the client keeps its events in a folder");
  }
  if (opts->on_event == NULL) return hd__error(HD_EINVAL, "no on_event handler given");
  hd_client_t *cl = calloc(1, sizeof *cl);
  if (cl == NULL) return hd__error(HD_ENOMEM, "out of memory creating the client");
  rc = hd__addr_parse(opts->connect, &cl->addr);
  if (rc == 0) {
    rc = hd__conn_config_init(&cl->cfg, opts->keypair, opts->topic, opts->handshake_timeout_ms,
                              opts->keepalive_ms, opts->idle_timeout_ms,
                              opts->max_message_bytes);
  }
  if (rc == 0 && hd__ed25519_pk_to_x25519(opts->server_public_key, cl->cfg.server_x_public) != 0) {
    rc = hd__error(HD_EKEY, "the server public key is not a valid Ed25519 key");
  }
  if (rc != 0) {
    free_client(cl);
    return rc;
  }
  memcpy(cl->cfg.server_public_key, opts->server_public_key, HD_PUBLICKEY_BYTES);
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

  hd__runtime_options_t ro = {opts->loop, opts->log, opts->user_data, opts->log_level, "client"};
  rc = hd__runtime_create(&cl->rt, &ro);
  if (rc != 0) {
    free_client(cl);
    return rc;
  }
  cl->cfg.rt = cl->rt;
  uv_timer_init(cl->rt->loop, &cl->retry);
  cl->retry.data = cl;
  cl->retry_open = 1;
  /* The store opens here, on the creating thread before the loop thread exists (or on the
   * caller loop's thread): the loop is not running yet, so this is its thread in effect, and a
   * folder in use is returned by create with no callback fired. */
  rc = hd__client_events_create(&cl->events, cl->rt, opts);
  /* the first dial starts here, before the loop thread runs: a synchronous failure (e.g. an
   * address family the machine lacks) is returned by create */
  hd__conn_t *c = NULL;
  if (rc == 0) rc = hd__conn_connect(&cl->cfg, (const struct sockaddr *)&cl->addr, &c);
  if (rc == 0) hd__client_events_start(cl->events); /* what the store holds, server or not */
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
  if (cl->retry_open || cl->conn != NULL || cl->events != NULL) return;
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
  hd__client_events_close(cl->events, on_events_closed, cl);
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

hd__client_store_t *hd__client_store_of(hd_client_t *cl) {
  return cl->events != NULL ? cl->events->store : NULL;
}
