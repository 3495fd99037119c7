/* The server handle: a listener, the connections it accepted, the table of authenticated
 * peers keyed by public key, the event store it opens at create and closes last; close,
 * close_wait and the internal send/hook API (server.h). Message dispatch has one place:
 * on_conn_message. The event layer lives in server_session.c and server_consumed.c. */
#include "server_impl.h"

#include "handle.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

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
  hd__session_open(s, c, pk);
  if (c->user_data == NULL) return; /* out of memory: the connection is closing */
  if (s->on_peer_connected) s->on_peer_connected(s->user_data, pk);
}

static void on_conn_message(hd__conn_t *c, uint8_t type, const uint8_t *body, size_t len) {
  hd_server_t *s = c->cfg->owner;
  uv_mutex_lock(&s->rt->mu);
  hd__server_message_hook hook = s->hook;
  void *ud = s->hook_ud;
  uv_mutex_unlock(&s->rt->mu);
  /* a hook (tests, diagnostics) takes the messages instead of the event layer */
  if (hook) hook(ud, c, c->remote_pk, type, body, len);
  else hd__session_message(s, c, type, body, len);
}

static void on_conn_close(hd__conn_t *c, const uint8_t *pk, int status) {
  hd_server_t *s = c->cfg->owner;
  list_remove(s, c);
  hd__session_close(s, c);
  if (pk != NULL) hd__peers_remove(&s->peers, pk, c);
  /* the conn restored the error detail just before this call */
  if (s->on_peer_disconnected) s->on_peer_disconnected(s->user_data, pk, status);
  if (s->closing) maybe_finish(s);
}

/* ---- Users ------------------------------------------------------------------------------ */

hd__srv_user_t *hd__srv_user_get(hd_server_t *s, const uint8_t pk[HD_PUBLICKEY_BYTES],
                                 int create) {
  hd__srv_user_t *u = hd__peers_get(&s->users, pk);
  if (u != NULL || !create) return u;
  u = calloc(1, sizeof *u);
  if (u == NULL) return NULL;
  memcpy(u->pk, pk, HD_PUBLICKEY_BYTES);
  int err;
  hd__peers_put(&s->users, pk, u, &err);
  if (err != 0) {
    free(u);
    return NULL;
  }
  return u;
}

static void user_free(hd__srv_user_t *u) {
  free(u->inflight);
  free(u->del);
  free(u);
}

void hd__srv_user_maybe_free(hd_server_t *s, hd__srv_user_t *u) {
  if (u->session != NULL || u->n_inflight != 0 || u->n_del != 0 || u->del_queued) return;
  hd__peers_remove(&s->users, u->pk, u);
  user_free(u);
}

static void user_free_each(void *value, void *ctx) {
  (void)ctx;
  user_free(value);
}

int hd__srv_closed(hd_server_t *s) {
  uv_mutex_lock(&s->rt->mu);
  int closed = s->rt->close_requested;
  uv_mutex_unlock(&s->rt->mu);
  return closed;
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
  hd__peers_each(&s->users, user_free_each, NULL);
  hd__peers_free(&s->users);
  free(s->scr_seqs);
  free(s->scr_entries);
  free(s->scr_plen);
  if (s->shared != NULL) hd__srv_shared_unref(s->shared);
  hd__key_cache_destroy(&s->key_cache);
  free(s);
}

static hd__srv_shared_t *shared_new(void) {
  hd__srv_shared_t *sh = calloc(1, sizeof *sh);
  if (sh == NULL) return NULL;
  if (uv_mutex_init(&sh->mu) != 0) {
    free(sh);
    return NULL;
  }
  atomic_init(&sh->refs, 1);
  return sh;
}

void hd__srv_shared_unref(hd__srv_shared_t *sh) {
  if (atomic_fetch_sub(&sh->refs, 1) != 1) return;
  uv_mutex_destroy(&sh->mu);
  free(sh);
}

/* Opens the store on the creating thread. That is the loop's thread in the sense of store.h:
 * with an owned loop the loop thread has not started yet (nothing else touches the loop, and the
 * thread start orders this before every later use); with a caller's loop create must run on
 * that loop's thread. So no post-and-wait is needed. */
static int open_store(hd_server_t *s, const hd_server_options_t *opts) {
  hd__store_options_t so = {HD__STORE_SQLITE, opts->data_dir, s->rt->loop, opts->sync_normal, 0, 0};
  int rc = hd__server_store_open(&s->store, &so);
  if (rc != 0) return rc;
  s->store->vt->store_id(s->store, s->cfg.welcome.store_id);
  s->cfg.welcome.pause_ms = s->store->vt->pause(s->store);
  return 0;
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
  if ((rc = hd__key_cache_init(&s->key_cache)) != 0) {
    free(s);
    return rc;
  }
  rc = hd__conn_config_init(&s->cfg, opts->keypair, opts->topic, opts->handshake_timeout_ms,
                            opts->keepalive_ms, opts->idle_timeout_ms, opts->max_message_bytes);
  if (rc == 0 && (opts->data_dir == NULL || opts->data_dir[0] == '\0')) {
    rc = hd__error(HD_EINVAL, "data_dir is required: the folder of the server's event store");
  }
  if (rc == 0 && (s->shared = shared_new()) == NULL) {
    rc = hd__error(HD_ENOMEM, "out of memory creating the server");
  }
  if (rc != 0) {
    hd__conn_config_wipe(&s->cfg);
    free(s->shared);
    hd__key_cache_destroy(&s->key_cache);
    free(s);
    return rc;
  }
  s->cfg.is_server = 1;
  s->cfg.owner = s;
  s->cfg.on_open = on_conn_open;
  s->cfg.on_message = on_conn_message;
  s->cfg.on_close = on_conn_close;
  s->cfg.on_drain = hd__session_drained;
  s->cfg.welcome.version = HD_PROTOCOL_VERSION;
  s->user_data = opts->user_data;
  s->destroy = opts->destroy;
  s->on_peer_connected = opts->on_peer_connected;
  s->on_peer_disconnected = opts->on_peer_disconnected;
  s->on_consumed = opts->on_consumed;
  s->page_events = opts->page_events ? opts->page_events : HD__SRV_DEFAULT_PAGE;
  s->max_payload = s->cfg.max_message_bytes - HD__SRV_PAYLOAD_SLACK;
  hd__peers_init(&s->peers);
  hd__peers_init(&s->users);
  snprintf(s->listen_text, sizeof s->listen_text, "%s", opts->listen);

  hd__runtime_options_t ro = {opts->loop, opts->log, opts->user_data, opts->log_level, "server"};
  rc = hd__runtime_create(&s->rt, &ro);
  if (rc != 0) {
    free_server(s);
    return rc;
  }
  s->cfg.rt = s->rt;
  s->shared->rt = s->rt;
  s->shared->alive = 1;
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
    /* after bind: a busy port is reported before a busy folder */
    rc = open_store(s, opts);
    if (rc == 0) {
      rc = hd__runtime_start(s->rt);
      if (rc != 0) hd__server_store_close_wait(s->store); /* the loop is still ours here */
    }
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
  hd__log(s->rt, HD_LOG_INFO, "listening on %s (port %d), store %s, pause %u ms",
          opts->listen, s->port, opts->data_dir, (unsigned)s->cfg.welcome.pause_ms);
  *out = s;
  return 0;
}

int hd_server_port(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  return server->port;
}

/* ---- Close ------------------------------------------------------------------------------ */

static void on_store_closed(void *data) {
  hd_server_t *s = data;
  s->store = NULL;
  maybe_finish(s);
}

static void maybe_finish(hd_server_t *s) {
  if (s->listener_open || s->nconns > 0) return;
  if (s->store != NULL) {
    /* every client is gone: what was completed goes to the store, then the store commits
     * everything queued (their callbacks run) and closes; we finish in its callback */
    if (s->store_closing) return;
    s->store_closing = 1;
    hd__consumed_flush(s);
    if (s->store->vt->close(s->store, on_store_closed, s) == 0) return;
    s->store = NULL;
  }
  hd__runtime_t *rt = s->rt;
  hd__runtime_undefer(rt, &s->del_flush);
  hd__consumed_orphan_all(s);
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
  hd_server_t *s = (hd_server_t *)(void *)((char *)t - offsetof(hd_server_t, closer.task));
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
  return hd__runtime_close(server->rt, &server->closer, close_task, cb, cb_data);
}

int hd_server_close_wait(hd_server_t *server) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  return hd__runtime_close_wait(server->rt, &server->closer, close_task);
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
