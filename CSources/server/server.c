/* The server handle, its transport half: a listener, the connections it accepted, the map of
 * authenticated peers by public key; create, close, close_wait, port, connected users and the
 * internal hook/send API (server.h). Events are the event layer's (server_events.h): this file
 * knows them only through its calls. */
#include "server.h"

#include "authorize.h"
#include "conn_config.h"
#include "http.h"
#include "keymap.h"
#include "listen.h"
#include "options.h"
#include "rate.h"
#include "server_events.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_AUTHORIZE_TIMEOUT_MS 5000
#define DEFAULT_MAX_HANDSHAKES 512
#define DEFAULT_HANDSHAKES_PER_ADDRESS 64

struct hd_server {
  hd__runtime_t *rt;
  hd__conn_config_t cfg;
  uv_tcp_t listener;
  int port;
  char listen_text[HD__ADDR_STRLEN];

  void *user_data;
  hd_destroy_cb destroy;
  hd_peer_cb on_peer_connected;
  hd_peer_closed_cb on_peer_disconnected;

  hd__queue_t conns;  /* every live connection, handshaking or open */
  size_t nconns;
  size_t nhandshaking; /* of those, not authenticated yet */

  /* admission (docs/RELIABILITY.md, "Admission control") */
  hd_authorize_cb authorize;
  hd__anchor_t *anchor;         /* what authorization requests reach the loop through */
  uint32_t max_handshakes;
  uint32_t handshakes_per_address;
  hd__rate_t rate;
  hd__keymap_t peers; /* authenticated peers: public key -> connection */

  hd__hook_t hook;              /* tests (server.h); loop thread */

  hd__server_events_t *events;  /* NULL once closed */
  hd__http_t *http;             /* the metrics responder (metrics_listen), or NULL; closed last,
                                   so that /readyz answers 503 while the rest closes */
  int http_closing;

  int closing;
  int listener_open;
  hd__closer_t closer;
};

static void maybe_finish(hd_server_t *s);

/* ---- Connections ---------------------------------------------------------------------------- */

static int on_conn_accept(hd__conn_t *c, const struct sockaddr *addr) {
  hd_server_t *s = c->cfg->owner;
  if (s->nhandshaking >= s->max_handshakes) {
    return hd__error(HD_EBUSY, "%s: %zu connections are handshaking already (max_handshakes)",
                     c->peer, s->nhandshaking);
  }
  if (s->handshakes_per_address != UINT32_MAX &&
      !hd__rate_take(&s->rate, addr, uv_now(s->rt->loop), s->handshakes_per_address)) {
    return hd__error(HD_EBUSY, "%s: more than %u connections from its address this second "
                               "(handshakes_per_address)", c->peer, s->handshakes_per_address);
  }
  return 0;
}

static void on_conn_authorize(hd__conn_t *c) {
  hd_server_t *s = c->cfg->owner;
  hd_authorization_t *req = hd__authorization_new(s->anchor, c);
  if (req == NULL) {
    hd__conn_close(c, HD_ENOMEM, "out of memory asking for an authorization");
    return;
  }
  s->authorize(s->user_data, c->remote_pk, req);
}

static void on_conn_open(hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd_server_t *s = c->cfg->owner;
  s->nhandshaking--;
  int err;
  hd__conn_t *old = hd__keymap_put(&s->peers, pk, c, &err);
  if (err != 0) {
    hd__conn_close(c, HD_ENOMEM, "out of memory adding the peer");
    return;
  }
  if (old != NULL) {
    /* the same identity connected again (e.g. it restarted before we noticed): the newest
     * connection wins; the old one is told why */
    hd__log(s->rt, HD_LOG_INFO, "peer %s replaces its previous connection %s", c->peer, old->peer);
    hd__conn_fail(old, HD_EREPLACED, "replaced by a newer connection of the same key");
  }
  if (s->hook.fn != NULL) {
    c->raw = 1;
  } else {
    hd__server_events_on_open(s->events, c);
    if (c->user_data == NULL) return; /* out of memory: the connection is closing */
  }
  if (s->on_peer_connected) s->on_peer_connected(s->user_data, pk);
}

static void on_conn_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  hd_server_t *s = c->cfg->owner;
  if (!c->raw) hd__server_events_on_message(s->events, c, type, body, len);
  else if (s->hook.fn != NULL) s->hook.fn(s->hook.ud, c, type, body, len);
}

static void on_conn_drain(hd__conn_t *c) {
  hd_server_t *s = c->cfg->owner;
  if (!c->raw) hd__server_events_on_drain(s->events, c);
}

static void on_conn_close(hd__conn_t *c, const uint8_t *pk, int status) {
  hd_server_t *s = c->cfg->owner;
  hd__queue_remove(&c->node);
  s->nconns--;
  if (pk == NULL) s->nhandshaking--;
  hd__authorization_drop(c);
  if (!c->raw) hd__server_events_on_close(s->events, c);
  if (pk != NULL) hd__keymap_remove(&s->peers, pk, c);
  /* the conn restored the error detail just before this call */
  if (s->on_peer_disconnected) s->on_peer_disconnected(s->user_data, pk, status);
  if (s->closing) maybe_finish(s);
}

static void on_connection(uv_stream_t *listener, int status) {
  hd_server_t *s = listener->data;
  if (status < 0) {
    hd__error_from_uv(status, "accept");
    hd__log(s->rt, HD_LOG_WARN, "listener %s: %s", s->listen_text, hd_last_error_message());
    return;
  }
  hd__conn_t *c;
  int rc = hd__conn_accept(&s->cfg, listener, &c);
  if (rc != 0) {
    /* a refusal is the server working as told: a flood must not flood the log too */
    hd__log(s->rt, rc == HD_EBUSY ? HD_LOG_DEBUG : HD_LOG_WARN, "listener %s: %s",
            s->listen_text, hd_last_error_message());
    return;
  }
  hd__queue_insert_tail(&s->conns, &c->node);
  s->nconns++;
  s->nhandshaking++;
  hd__log(s->rt, HD_LOG_DEBUG, "accepted %s", c->peer);
}

/* ---- Options and create --------------------------------------------------------------------- */

int hd_server_options_init(hd_server_options_t *opts, unsigned int version) {
  int rc = hd__options_check_version(opts, version, HD_SERVER_OPTIONS_VERSION, "server");
  if (rc != 0) return rc;
  hd_server_options_t init = HD_SERVER_OPTIONS_INIT;
  /* a caller's struct of an older version is shorter: only its fields */
  size_t size = version >= 5   ? sizeof init
                : version == 4 ? offsetof(hd_server_options_t, next_keypair)
                : version == 3 ? offsetof(hd_server_options_t, default_ttl_ms)
                : version == 2 ? offsetof(hd_server_options_t, max_event_bytes)
                               : offsetof(hd_server_options_t, authorize);
  memcpy(opts, &init, size);
  opts->version = version;
  return 0;
}

static void free_server(hd_server_t *s) {
  if (s->anchor != NULL) hd__anchor_detach(s->anchor); /* late answers only free themselves */
  hd__conn_config_wipe(&s->cfg);
  hd__keymap_free(&s->peers);
  free(s);
}

static void on_listener_closed_on_error(uv_handle_t *h) { free_server(h->data); }

/* Binds and listens on the creating thread, so that hd_server_port works at once (a name is
 * resolved there too: listen.h). */
static int listen_on(hd_server_t *s, const char *text) {
  return hd__listen_open(&s->listener, text, 511, on_connection, &s->port);
}

int hd_server_create(hd_server_t **out, const hd_server_options_t *opts) {
  if (out == NULL) return hd__error(HD_EINVAL, "out is NULL");
  *out = NULL;
  int rc = hd_init();
  if (rc != 0) return rc;
  rc = hd__options_check_version(opts, opts ? opts->version : 0, HD_SERVER_OPTIONS_VERSION,
                                 "server");
  if (rc != 0) return rc;
  hd__addr_spec_t listen_spec; /* the syntax now; a name resolves once the handle exists */
  rc = hd__addr_spec_parse(opts->listen, &listen_spec);
  if (rc != 0) return rc;
  if (opts->data_dir == NULL || opts->data_dir[0] == '\0') {
    return hd__error(HD_EINVAL, "data_dir is required: the folder of the server's event store");
  }
  if (opts->version >= 4 && opts->overflow != HD_OVERFLOW_REJECT &&
      opts->overflow != HD_OVERFLOW_DROP_OLDEST) {
    return hd__error(HD_EINVAL, "overflow %d: HD_OVERFLOW_REJECT (0) or HD_OVERFLOW_DROP_OLDEST "
                     "(1)", opts->overflow);
  }
  hd_server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return hd__error(HD_ENOMEM, "out of memory creating the server");
  rc = hd__conn_config_init(&s->cfg, opts->keypair, opts->topic, opts->handshake_timeout_ms,
                            opts->keepalive_ms, opts->idle_timeout_ms, opts->max_message_bytes);
  if (rc == 0 && opts->version >= 5 && opts->next_keypair != NULL) {
    rc = hd__conn_config_next_key(&s->cfg, opts->next_keypair);
  }
  if (rc != 0) {
    hd__conn_config_wipe(&s->cfg);
    free(s);
    return rc;
  }
  s->cfg.is_server = 1;
  s->cfg.owner = s;
  s->cfg.on_open = on_conn_open;
  s->cfg.on_message = on_conn_message;
  s->cfg.on_close = on_conn_close;
  s->cfg.on_drain = on_conn_drain;
  s->cfg.on_accept = on_conn_accept;
  if (opts->version >= 2) {
    s->authorize = opts->authorize;
    s->cfg.authorize_timeout_ms = opts->authorize_timeout_ms;
    s->max_handshakes = opts->max_handshakes;
    s->handshakes_per_address = opts->handshakes_per_address;
  }
  if (s->authorize != NULL) s->cfg.on_authorize = on_conn_authorize;
  if (s->cfg.authorize_timeout_ms == 0) s->cfg.authorize_timeout_ms = DEFAULT_AUTHORIZE_TIMEOUT_MS;
  if (s->max_handshakes == 0) s->max_handshakes = DEFAULT_MAX_HANDSHAKES;
  if (s->handshakes_per_address == 0) s->handshakes_per_address = DEFAULT_HANDSHAKES_PER_ADDRESS;
  hd__rate_init(&s->rate);
  s->cfg.welcome.version = HD_PROTOCOL_VERSION;
  s->user_data = opts->user_data;
  s->destroy = opts->destroy;
  s->on_peer_connected = opts->on_peer_connected;
  s->on_peer_disconnected = opts->on_peer_disconnected;
  hd__queue_init(&s->conns);
  hd__keymap_init(&s->peers);
  snprintf(s->listen_text, sizeof s->listen_text, "%s", opts->listen);

  hd__runtime_options_t ro = {opts->loop, opts->log, opts->user_data, opts->log_level, "server"};
  rc = hd__runtime_create(&s->rt, &ro);
  if (rc != 0) {
    free_server(s);
    return rc;
  }
  s->cfg.rt = s->rt;
  s->anchor = hd__anchor_new(s->rt, s);
  if (s->anchor == NULL) {
    hd__runtime_abort(s->rt);
    free_server(s);
    return HD_ENOMEM;
  }
  uv_tcp_init(s->rt->loop, &s->listener);
  s->listener.data = s;
  rc = listen_on(s, opts->listen);
  /* after bind: a busy port is reported before a busy folder */
  if (rc == 0) rc = hd__server_events_create(&s->events, s->rt, opts, &s->cfg.welcome);
  /* every event it may hold must fit a client's messages: a smaller limit is refused */
  if (rc == 0) s->cfg.min_peer_message = s->events->max_payload + HD__SRV_PAYLOAD_SLACK;
  if (rc == 0) hd__server_events_start(s->events);
  if (rc == 0 && opts->version >= 5 && opts->metrics_listen != NULL) {
    rc = hd__http_start(&s->http, s->rt, s, opts->metrics_listen);
  }
  /* the loop thread starts last: everything above ran on the creating thread */
  if (rc == 0) rc = hd__runtime_start(s->rt);
  if (rc != 0) {
    hd__error_state_t e;
    hd__error_save(&e);
    hd__runtime_t *rt = s->rt;
    /* frees itself once its store is closed: within abort for an owned loop */
    if (s->events != NULL) hd__server_events_close(s->events, NULL, NULL);
    if (s->http != NULL) hd__http_close(s->http, NULL, NULL); /* frees itself likewise */
    uv_close((uv_handle_t *)&s->listener, on_listener_closed_on_error);
    hd__runtime_abort(rt);
    return hd__error_restore(&e);
  }
  s->listener_open = 1;
  hd__log(s->rt, HD_LOG_INFO, "listening on %s (port %d), store %s, pause %u ms",
          opts->listen, s->port, opts->data_dir, (unsigned)s->cfg.welcome.pause_ms);
  *out = s;
  return 0;
}

int hd_server_port(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  return server->port;
}

int hd_server_metrics_port(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (server->http == NULL) return hd__error(HD_ESTATE, "the server has no metrics_listen");
  return hd__http_port(server->http);
}

/* ---- Close ---------------------------------------------------------------------------------- */

static void on_events_closed(void *arg) {
  hd_server_t *s = arg;
  s->events = NULL;
  maybe_finish(s);
}

static void on_http_closed(void *arg) {
  hd_server_t *s = arg;
  s->http = NULL;
  maybe_finish(s);
}

static void maybe_finish(hd_server_t *s) {
  if (s->listener_open || s->nconns > 0) return;
  if (s->events != NULL) {
    /* every client is gone: the event layer commits what it holds and closes its store; we
     * finish in its callback */
    hd__server_events_t *ev = s->events;
    if (ev->closing) return;
    hd__server_events_close(ev, on_events_closed, s);
    return;
  }
  if (s->http != NULL) {
    if (!s->http_closing) hd__http_close(s->http, on_http_closed, s);
    s->http_closing = 1;
    return;
  }
  hd__runtime_t *rt = s->rt;
  hd__log(rt, HD_LOG_INFO, "closed");
  if (s->destroy) s->destroy(s->user_data);
  if (s->closer.cb) s->closer.cb(s->closer.data);
  free_server(s);
  hd__runtime_release(rt);
}

static void on_listener_closed(uv_handle_t *h) {
  hd_server_t *s = h->data;
  s->listener_open = 0;
  maybe_finish(s);
}

static void close_task(hd__task_t *t, int cancelled) {
  hd_server_t *s = hd__container_of(t, hd_server_t, closer.task);
  (void)cancelled; /* the close task is what releases the runtime: never cancelled */
  s->closing = 1;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  /* say goodbye to everyone; each on_close shrinks the list and the last one finishes */
  hd__queue_t *q, *n;
  hd__queue_foreach_safe(q, n, &s->conns) {
    hd__conn_close(hd__container_of(q, hd__conn_t, node), 0, "server closing");
  }
}

static int close_server(hd_server_t *s, int wait, hd_close_cb cb, void *cb_data) {
  if (s == NULL) return hd__error(HD_EINVAL, "server is NULL");
  return wait ? hd__runtime_close_wait(s->rt, &s->closer, close_task)
              : hd__runtime_close(s->rt, &s->closer, close_task, cb, cb_data);
}

int hd_server_close(hd_server_t *server, hd_close_cb cb, void *cb_data) {
  return close_server(server, 0, cb, cb_data);
}

int hd_server_close_wait(hd_server_t *server) { return close_server(server, 1, NULL, NULL); }

/* ---- Reads from any thread ------------------------------------------------------------------ */

typedef struct stats_call {
  hd_server_t *s;
  hd_server_stats_t *out;
} stats_call_t;

static int stats_on_loop(void *arg) {
  stats_call_t *c = arg;
  if (c->s->events == NULL) return hd__error(HD_ECLOSED, "the server is closing");
  int rc = hd__server_events_stats(c->s->events, c->out);
  c->out->connected_users = c->s->peers.count;
  return rc;
}

int hd_server_stats(hd_server_t *server, hd_server_stats_t *out) {
  if (server == NULL || out == NULL) return hd__error(HD_EINVAL, "server or out is NULL");
  int rc = hd__options_check_stats_version(out->version, HD_SERVER_STATS_VERSION, "server");
  if (rc != 0) return rc;
  hd_server_stats_t tmp = {.version = out->version};
  stats_call_t c = {server, &tmp};
  rc = hd__runtime_call(server->rt, stats_on_loop, &c);
  if (rc != 0) return rc;
  /* a caller built against an older version has the struct without the fields appended since */
  size_t size = out->version == 1   ? offsetof(hd_server_stats_t, events_too_large)
                : out->version == 2 ? offsetof(hd_server_stats_t, events_expired)
                                    : sizeof tmp;
  memcpy(out, &tmp, size);
  return 0;
}

typedef struct users_call {
  hd_server_t *s;
  uint8_t *out;
  size_t cap, n;
} users_call_t;

static void copy_key(void *value, void *ctx) {
  users_call_t *c = ctx;
  if (c->n < c->cap) memcpy(c->out + 32 * c->n, ((hd__conn_t *)value)->remote_pk, 32);
  c->n++;
}

static int users_on_loop(void *arg) {
  users_call_t *c = arg;
  hd__keymap_each(&c->s->peers, copy_key, c);
  return c->n > INT32_MAX ? INT32_MAX : (int)c->n;
}

int hd_server_connected_users(hd_server_t *server, uint8_t *out, size_t cap) {
  if (server == NULL || (out == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server is NULL, or out is NULL with a capacity");
  }
  users_call_t c = {server, out, cap, 0};
  return hd__runtime_call(server->rt, users_on_loop, &c);
}

/* ---- Disconnect ---------------------------------------------------------------------------- */

typedef struct disconnect_call {
  hd_server_t *s;
  const uint8_t *key;
} disconnect_call_t;

static int disconnect_on_loop(void *arg) {
  disconnect_call_t *d = arg;
  int n = 0;
  hd__queue_t *q, *next;
  hd__queue_foreach_safe(q, next, &d->s->conns) {
    hd__conn_t *c = hd__container_of(q, hd__conn_t, node);
    if (c->state >= HD__CONN_CLOSING || !c->hello_read ||
        memcmp(c->remote_pk, d->key, HD_PUBLICKEY_BYTES) != 0) {
      continue;
    }
    n++;
    if (c->state == HD__CONN_AUTHORIZING) hd__conn_admit(c, 0, "disconnected by the server");
    else if (c->authenticated) hd__conn_fail(c, HD_EAUTH, "no longer admitted");
    else hd__conn_close(c, HD_EAUTH, "disconnected by the server before its first record");
  }
  return n;
}

int hd_server_disconnect(hd_server_t *server, const uint8_t public_key[HD_PUBLICKEY_BYTES]) {
  if (server == NULL || public_key == NULL) return hd__error(HD_EINVAL, "server or key is NULL");
  disconnect_call_t d = {server, public_key};
  return hd__runtime_call(server->rt, disconnect_on_loop, &d);
}

/* ---- The event layer and the runtime, for server_api.c --------------------------------------- */

void hd__server_conns(hd_server_t *s, hd__server_conns_t *out) {
  out->open = s->peers.count;
  out->handshaking = s->nhandshaking;
  out->handshakes_current_key = s->cfg.handshakes_current_key;
  out->handshakes_next_key = s->cfg.handshakes_next_key;
  out->has_next_key = s->cfg.has_next_key;
}

int hd__server_ready(hd_server_t *s) {
  return !s->closing && s->listener_open && s->events != NULL && !s->events->closing;
}

hd__server_events_t *hd__server_events_of(hd_server_t *s) { return s->events; }

hd__runtime_t *hd__server_runtime(hd_server_t *s) { return s->rt; }

/* ---- Internal API (server.h) ---------------------------------------------------------------- */

typedef struct hook_call {
  hd_server_t *s;
  hd__hook_t hook;
} hook_call_t;

static int set_hook_on_loop(void *arg) {
  hook_call_t *h = arg;
  hd_server_t *s = h->s;
  s->hook = h->hook;
  /* the open connections are the hook's from now on */
  hd__queue_t *q;
  hd__queue_foreach(q, &s->conns) {
    hd__conn_t *c = hd__container_of(q, hd__conn_t, node);
    if (s->hook.fn == NULL || s->closing || !c->authenticated || c->raw) continue;
    hd__server_events_on_close(s->events, c);
    c->raw = 1;
  }
  return 0;
}

int hd__server_set_message_hook(hd_server_t *s, hd__message_hook cb, void *ud) {
  hook_call_t h = {s, {cb, ud}};
  return hd__runtime_call(s->rt, set_hook_on_loop, &h);
}

static int send_now(void *owner, const uint8_t *pk, uint8_t type, const uint8_t *body,
                    size_t len) {
  hd_server_t *s = owner;
  if (s->closing) return hd__error(HD_ECLOSED, "the server is closing");
  hd__conn_t *c = hd__keymap_get(&s->peers, pk);
  if (c == NULL) return hd__error(HD_ENOTFOUND, "that peer is not connected");
  return hd__conn_send(c, type, body, len);
}

int hd__server_send(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES], uint8_t type,
                    const uint8_t *body, size_t len) {
  return hd__runtime_send(s->rt, send_now, s, pk, type, body, len);
}
