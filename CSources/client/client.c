/* The client handle: dials one server, keeps one connection, dials again with a doubling
 * backoff after a failure or a disconnect; close, close_wait and the internal send/hook API
 * (client.h). Message dispatch has one place: on_conn_message. Event delivery (the store, the
 * handler, what the client tells the server) lives in client_events.h. */
#include "client.h"

#include "client_events.h"

#include "handle.h"
#include "keys.h"

#include <stdlib.h>
#include <string.h>

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
  int no_reconnect;

  hd__client_message_hook hook; /* guarded by rt->mu */
  void *hook_ud;

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
  uv_mutex_lock(&cl->rt->mu);
  int raw = cl->hook != NULL; /* transport tests drive the messages themselves */
  uv_mutex_unlock(&cl->rt->mu);
  if (cl->events != NULL) hd__client_events_on_open(cl->events, c, raw);
  if (cl->on_connected) cl->on_connected(cl->user_data, pk);
}

static void on_conn_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  hd_client_t *cl = c->cfg->owner;
  uv_mutex_lock(&cl->rt->mu);
  hd__client_message_hook hook = cl->hook;
  void *ud = cl->hook_ud;
  uv_mutex_unlock(&cl->rt->mu);
  if (hook) hook(ud, c, type, body, len);
  if (cl->events != NULL) hd__client_events_on_message(cl->events, c, type, body, len);
}

static void on_retry(uv_timer_t *t) { dial(t->data); }

static void schedule_retry(hd_client_t *cl) {
  if (cl->closing || cl->no_reconnect) return;
  hd__log(cl->rt, HD_LOG_DEBUG, "dialing again in %u ms", cl->backoff_ms);
  uv_timer_start(&cl->retry, on_retry, cl->backoff_ms, 0);
  uint64_t next = (uint64_t)cl->backoff_ms * 2;
  cl->backoff_ms = next > cl->reconnect_max_ms ? cl->reconnect_max_ms : (uint32_t)next;
}

static void on_conn_close(hd__conn_t *c, const uint8_t *pk, int status) {
  hd_client_t *cl = c->cfg->owner;
  cl->conn = NULL;
  cl->open = 0;
  if (cl->events != NULL) hd__client_events_on_close(cl->events, c);
  /* the conn restored the error detail just before this call */
  if (cl->on_disconnected) cl->on_disconnected(cl->user_data, pk, status);
  if (cl->closing) maybe_finish(cl);
  else schedule_retry(cl);
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
  int rc = hd__check_options_version(opts, version, HD_CLIENT_OPTIONS_VERSION, "client");
  if (rc != 0) return rc;
  hd_client_options_t init = HD_CLIENT_OPTIONS_INIT;
  memcpy(opts, &init, sizeof init);
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
  rc = hd__check_options_version(opts, opts ? opts->version : 0, HD_CLIENT_OPTIONS_VERSION,
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
  cl->reconnect_min_ms = opts->reconnect_min_ms ? opts->reconnect_min_ms : HD__DEFAULT_RECONNECT_MIN_MS;
  cl->reconnect_max_ms = opts->reconnect_max_ms ? opts->reconnect_max_ms : HD__DEFAULT_RECONNECT_MAX_MS;
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
    char detail[512];
    snprintf(detail, sizeof detail, "%s", hd_last_error_message());
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
    return hd__error(rc, "%s", detail);
  }
  *out = cl;
  return 0;
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
  uv_mutex_lock(&cl->rt->mu); /* hd__client_set_message_hook reads it from any thread */
  cl->events = NULL;
  uv_mutex_unlock(&cl->rt->mu);
  maybe_finish(cl);
}

static void close_task(hd__task_t *t, int cancelled) {
  hd_client_t *cl = (hd_client_t *)(void *)((char *)t - offsetof(hd_client_t, closer.task));
  (void)cancelled;
  cl->closing = 1;
  /* the handler stops first (an event handed out and not completed is handled again next
   * time), then BYE; the store commits what is queued and closes before the close callback */
  hd__client_events_close(cl->events, on_events_closed, cl);
  uv_close((uv_handle_t *)&cl->retry, on_retry_closed);
  if (cl->conn != NULL) hd__conn_close(cl->conn, 0, "client closing");
}

int hd_client_close(hd_client_t *client, hd_close_cb cb, void *cb_data) {
  if (client == NULL) return hd__error(HD_EINVAL, "client is NULL");
  return hd__runtime_close(client->rt, &client->closer, close_task, cb, cb_data);
}

int hd_client_close_wait(hd_client_t *client) {
  if (client == NULL) return hd__error(HD_EINVAL, "client is NULL");
  return hd__runtime_close_wait(client->rt, &client->closer, close_task);
}

/* ---- Internal API ----------------------------------------------------------------------- */

void hd__client_set_message_hook(hd_client_t *cl, hd__client_message_hook cb, void *ud) {
  uv_mutex_lock(&cl->rt->mu);
  cl->hook = cb;
  cl->hook_ud = ud;
  if (cl->events != NULL) atomic_store(&cl->events->raw, cb != NULL);
  uv_mutex_unlock(&cl->rt->mu);
}

hd__conn_t *hd__client_conn(hd_client_t *cl) { return cl->open ? cl->conn : NULL; }

hd__runtime_t *hd__client_runtime(hd_client_t *cl) { return cl->rt; }

static int send_now(hd_client_t *cl, uint8_t type, const uint8_t *body, size_t len) {
  if (cl->closing) return hd__error(HD_ECLOSED, "the client is closing");
  if (!cl->open) return hd__error(HD_ESTATE, "the client is not connected");
  return hd__conn_send(cl->conn, type, body, len);
}

typedef struct send_task {
  hd__task_t task;
  hd_client_t *cl;
  uint8_t type;
  size_t len;
  uint8_t body[];
} send_task_t;

static void send_task_run(hd__task_t *t, int cancelled) {
  send_task_t *st = (send_task_t *)t;
  if (!cancelled && send_now(st->cl, st->type, st->body, st->len) != 0) {
    hd__log(st->cl->rt, HD_LOG_DEBUG, "posted send dropped: %s", hd_last_error_message());
  }
  free(st);
}

int hd__client_send(hd_client_t *cl, uint8_t type, const uint8_t *body, size_t len) {
  if (hd__runtime_on_loop(cl->rt)) return send_now(cl, type, body, len);
  send_task_t *st = malloc(sizeof *st + len);
  if (st == NULL) return hd__error(HD_ENOMEM, "out of memory posting a message");
  st->task.fn = send_task_run;
  st->cl = cl;
  st->type = type;
  st->len = len;
  if (len) memcpy(st->body, body, len);
  hd__runtime_post(cl->rt, &st->task);
  return 0;
}

/* ---- Stats ------------------------------------------------------------------------------ */

typedef struct stats_task {
  hd__task_t task;
  hd_client_t *cl;
  hd_client_stats_t *out;
  uv_mutex_t mu;
  uv_cond_t cv;
  int done, rc;
  char detail[256];
} stats_task_t;

static int stats_now(hd_client_t *cl, hd_client_stats_t *out) {
  if (cl->closing || cl->events == NULL) return hd__error(HD_ECLOSED, "the client is closing");
  int rc = hd__client_events_stats(cl->events, out);
  out->connected = cl->open;
  return rc;
}

static void stats_task_run(hd__task_t *t, int cancelled) {
  stats_task_t *st = (stats_task_t *)t;
  int rc = cancelled ? hd__error(HD_ECLOSED, "the client closed") : stats_now(st->cl, st->out);
  uv_mutex_lock(&st->mu);
  st->rc = rc;
  if (rc != 0) snprintf(st->detail, sizeof st->detail, "%s", hd_last_error_message());
  st->done = 1;
  uv_cond_signal(&st->cv);
  uv_mutex_unlock(&st->mu); /* `st` lives on the waiter's stack: gone right after this */
}

int hd_client_stats(hd_client_t *client, hd_client_stats_t *out) {
  if (client == NULL || out == NULL) return hd__error(HD_EINVAL, "client or output is NULL");
  if (out->version == 0 || out->version > HD_CLIENT_STATS_VERSION) {
    return hd__error(HD_EVERSION, "client stats version %u (known: 1..%d)", out->version,
                     HD_CLIENT_STATS_VERSION);
  }
  unsigned int version = out->version;
  memset(out, 0, sizeof *out);
  out->version = version;
  if (hd__runtime_on_loop(client->rt)) return stats_now(client, out);
  stats_task_t st;
  memset(&st, 0, sizeof st);
  st.task.fn = stats_task_run;
  st.cl = client;
  st.out = out;
  uv_mutex_init(&st.mu);
  uv_cond_init(&st.cv);
  hd__runtime_post(client->rt, &st.task);
  uv_mutex_lock(&st.mu);
  while (!st.done) uv_cond_wait(&st.cv, &st.mu); /* the loop runs every task or cancels it */
  uv_mutex_unlock(&st.mu);
  uv_cond_destroy(&st.cv);
  uv_mutex_destroy(&st.mu);
  return st.rc != 0 ? hd__error(st.rc, "%s", st.detail) : 0;
}
