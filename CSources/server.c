/* The server handle: a listener, the connections it accepted and the table of authenticated
 * peers keyed by public key; close, close_wait and the internal send/hook API (server.h).
 * Message dispatch has one place: on_conn_message. */
#include "server.h"

#include "handle.h"
#include "peers.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

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

  hd__conn_t *conns;  /* every live connection, handshaking or open */
  size_t nconns;
  hd__peers_t peers;  /* authenticated peers: public key -> connection */

  hd__server_message_hook hook; /* guarded by rt->mu: set from any thread */
  void *hook_ud;

  int closing;
  int listener_open;
  hd_close_cb close_cb;
  void *close_data;
  hd__task_t close_task;
};

/* ---- Connections ------------------------------------------------------------------------ */

static void list_remove(hd_server_t *s, hd__conn_t *c) {
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  c->next = c->prev = NULL;
  s->nconns--;
}

static void maybe_finish(hd_server_t *s);

static void on_conn_open(hd__conn_t *c, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  hd_server_t *s = c->cfg->owner;
  int err;
  hd__conn_t *old = hd__peers_put(&s->peers, pk, c, &err);
  if (err != 0) {
    hd__conn_close(c, HD_ENOMEM, "out of memory adding the peer");
    return;
  }
  if (old != NULL) {
    /* the same identity connected again (e.g. it restarted before we noticed): the newest
     * connection wins; the old one is told why */
    hd__log(s->rt, HD_LOG_INFO, "peer %s replaces its previous connection %s", c->peer, old->peer);
    hd__conn_close(old, 0, "replaced by a newer connection of the same peer");
  }
  if (s->on_peer_connected) s->on_peer_connected(s->user_data, pk);
}

static void on_conn_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  hd_server_t *s = c->cfg->owner;
  uv_mutex_lock(&s->rt->mu);
  hd__server_message_hook hook = s->hook;
  void *ud = s->hook_ud;
  uv_mutex_unlock(&s->rt->mu);
  if (hook) hook(ud, c, c->remote_pk, type, body, len);
}

static void on_conn_close(hd__conn_t *c, const uint8_t *pk, int status) {
  hd_server_t *s = c->cfg->owner;
  list_remove(s, c);
  if (pk != NULL) hd__peers_remove(&s->peers, pk, c);
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
  if (hd__conn_accept(&s->cfg, listener, &c) != 0) {
    hd__log(s->rt, HD_LOG_WARN, "listener %s: %s", s->listen_text, hd_last_error_message());
    return;
  }
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  hd__log(s->rt, HD_LOG_DEBUG, "accepted %s", c->peer);
}

/* ---- Options and create ----------------------------------------------------------------- */

int hd_server_options_init(hd_server_options_t *opts, unsigned int version) {
  int rc = hd__check_options_version(opts, version, HD_SERVER_OPTIONS_VERSION, "server");
  if (rc != 0) return rc;
  hd_server_options_t init = HD_SERVER_OPTIONS_INIT;
  memcpy(opts, &init, sizeof init); /* version 1 is the whole struct */
  opts->version = version;
  return 0;
}

static void free_server(hd_server_t *s) {
  hd__conn_config_wipe(&s->cfg);
  hd__peers_free(&s->peers);
  free(s);
}

static void on_listener_closed_on_error(uv_handle_t *h) { free_server(h->data); }

int hd_server_create(hd_server_t **out, const hd_server_options_t *opts) {
  if (out == NULL) return hd__error(HD_EINVAL, "out is NULL");
  *out = NULL;
  int rc = hd_init();
  if (rc != 0) return rc;
  rc = hd__check_options_version(opts, opts ? opts->version : 0, HD_SERVER_OPTIONS_VERSION,
                                 "server");
  if (rc != 0) return rc;
  struct sockaddr_storage addr;
  rc = hd__addr_parse(opts->listen, &addr);
  if (rc != 0) return rc;
  hd_server_t *s = calloc(1, sizeof *s);
  if (s == NULL) return hd__error(HD_ENOMEM, "out of memory creating the server");
  rc = hd__conn_config_init(&s->cfg, opts->keypair, opts->topic, opts->handshake_timeout_ms,
                            opts->keepalive_ms, opts->idle_timeout_ms, opts->max_message_bytes);
  if (rc != 0) {
    free(s);
    return rc;
  }
  s->cfg.is_server = 1;
  s->cfg.owner = s;
  s->cfg.on_open = on_conn_open;
  s->cfg.on_message = on_conn_message;
  s->cfg.on_close = on_conn_close;
  s->cfg.welcome.version = HD_PROTOCOL_VERSION;
  s->user_data = opts->user_data;
  s->destroy = opts->destroy;
  s->on_peer_connected = opts->on_peer_connected;
  s->on_peer_disconnected = opts->on_peer_disconnected;
  hd__peers_init(&s->peers);
  snprintf(s->listen_text, sizeof s->listen_text, "%s", opts->listen);

  hd__runtime_options_t ro = {opts->loop, opts->log, opts->user_data, opts->log_level, "server"};
  rc = hd__runtime_create(&s->rt, &ro);
  if (rc != 0) {
    free_server(s);
    return rc;
  }
  s->cfg.rt = s->rt;
  uv_tcp_init(s->rt->loop, &s->listener);
  s->listener.data = s;
  /* bind and listen now, on the creating thread, so that hd_server_port works at once; the
   * loop thread starts only afterwards */
  rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
  if (rc == 0) {
    struct sockaddr_storage bound;
    int len = sizeof bound;
    rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
    if (rc == 0) {
      s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    }
  }
  if (rc != 0) {
    char what[128];
    snprintf(what, sizeof what, "cannot listen on %s", opts->listen);
    rc = hd__error_from_uv(rc, what);
  } else {
    rc = hd__runtime_start(s->rt);
  }
  if (rc != 0) {
    char detail[512];
    snprintf(detail, sizeof detail, "%s", hd_last_error_message());
    hd__runtime_t *rt = s->rt;
    uv_close((uv_handle_t *)&s->listener, on_listener_closed_on_error);
    hd__runtime_abort(rt);
    return hd__error(rc, "%s", detail);
  }
  s->listener_open = 1;
  hd__log(s->rt, HD_LOG_INFO, "listening on %s (port %d)", opts->listen, s->port);
  *out = s;
  return 0;
}

int hd_server_port(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  return server->port;
}

/* ---- Close ------------------------------------------------------------------------------ */

static void maybe_finish(hd_server_t *s) {
  if (s->listener_open || s->nconns > 0) return;
  hd__runtime_t *rt = s->rt;
  hd__log(rt, HD_LOG_INFO, "closed");
  if (s->destroy) s->destroy(s->user_data);
  if (s->close_cb) s->close_cb(s->close_data);
  free_server(s);
  hd__runtime_release(rt);
}

static void on_listener_closed(uv_handle_t *h) {
  hd_server_t *s = h->data;
  s->listener_open = 0;
  maybe_finish(s);
}

static void close_task(hd__task_t *t, int cancelled) {
  hd_server_t *s = (hd_server_t *)(void *)((char *)t - offsetof(hd_server_t, close_task));
  (void)cancelled; /* the close task is what releases the runtime: never cancelled */
  s->closing = 1;
  uv_close((uv_handle_t *)&s->listener, on_listener_closed);
  /* say goodbye to everyone; each on_close shrinks the list and the last one finishes */
  hd__conn_t *c = s->conns;
  while (c != NULL) {
    hd__conn_t *next = c->next;
    hd__conn_close(c, 0, "server closing");
    c = next;
  }
}

int hd_server_close(hd_server_t *server, hd_close_cb cb, void *cb_data) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  int rc = hd__runtime_request_close(server->rt);
  if (rc != 0) return rc;
  server->close_cb = cb;
  server->close_data = cb_data;
  server->close_task.fn = close_task;
  hd__runtime_post(server->rt, &server->close_task);
  return 0;
}

int hd_server_close_wait(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  hd__runtime_waiter_t w;
  hd__runtime_t *rt = server->rt;
  int rc = hd__runtime_request_close_wait(rt, &w);
  if (rc != 0) return rc;
  server->close_cb = NULL;
  server->close_task.fn = close_task;
  hd__runtime_post(rt, &server->close_task);
  hd__runtime_wait(rt, &w);
  return 0;
}

/* ---- Internal API ----------------------------------------------------------------------- */

void hd__server_set_message_hook(hd_server_t *s, hd__server_message_hook cb, void *ud) {
  uv_mutex_lock(&s->rt->mu);
  s->hook = cb;
  s->hook_ud = ud;
  uv_mutex_unlock(&s->rt->mu);
}

hd__conn_t *hd__server_peer(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES]) {
  return hd__peers_get(&s->peers, pk);
}

size_t hd__server_peer_count(hd_server_t *s) { return s->peers.count; }

hd__runtime_t *hd__server_runtime(hd_server_t *s) { return s->rt; }

static int send_now(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES], uint8_t type,
                    const uint8_t *body, size_t len) {
  if (s->closing) return hd__error(HD_ECLOSED, "the server is closing");
  hd__conn_t *c = hd__peers_get(&s->peers, pk);
  if (c == NULL) return hd__error(HD_ENOTFOUND, "that peer is not connected");
  return hd__conn_send(c, type, body, len);
}

typedef struct send_task {
  hd__task_t task;
  hd_server_t *s;
  uint8_t pk[HD_PUBLICKEY_BYTES];
  uint8_t type;
  size_t len;
  uint8_t body[];
} send_task_t;

static void send_task_run(hd__task_t *t, int cancelled) {
  send_task_t *st = (send_task_t *)t;
  if (!cancelled && send_now(st->s, st->pk, st->type, st->body, st->len) != 0) {
    hd__log(st->s->rt, HD_LOG_DEBUG, "posted send dropped: %s", hd_last_error_message());
  }
  free(st);
}

int hd__server_send(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES], uint8_t type,
                    const uint8_t *body, size_t len) {
  if (hd__runtime_on_loop(s->rt)) return send_now(s, pk, type, body, len);
  send_task_t *st = malloc(sizeof *st + len);
  if (st == NULL) return hd__error(HD_ENOMEM, "out of memory posting a message");
  st->task.fn = send_task_run;
  st->s = s;
  memcpy(st->pk, pk, HD_PUBLICKEY_BYTES);
  st->type = type;
  st->len = len;
  if (len) memcpy(st->body, body, len);
  hd__runtime_post(s->rt, &st->task);
  return 0;
}
