/* The server's event layer (server_events.h): create, start, the user table, message dispatch,
 * close and stats. */
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

/* ---- Users ---------------------------------------------------------------------------------- */

hd__server_user_t *hd__server_user_get(hd__server_events_t *ev,
                                       const uint8_t pk[HD_PUBLICKEY_BYTES], int create) {
  hd__server_user_t *u = hd__keymap_get(&ev->users, pk);
  if (u != NULL || !create) return u;
  u = calloc(1, sizeof *u);
  if (u == NULL) return NULL;
  memcpy(u->pk, pk, HD_PUBLICKEY_BYTES);
  hd__queue_init(&u->del_node);
  int err;
  hd__keymap_put(&ev->users, pk, u, &err);
  if (err != 0) {
    free(u);
    return NULL;
  }
  return u;
}

static void user_free(hd__server_user_t *u) {
  free(u->inflight);
  free(u->del);
  free(u);
}

void hd__server_user_release(hd__server_events_t *ev, hd__server_user_t *u) {
  if (u->session != NULL || u->n_inflight != 0 || u->n_del != 0 || u->holds != 0 ||
      hd__queue_linked(&u->del_node)) {
    return;
  }
  hd__keymap_remove(&ev->users, u->pk, u);
  user_free(u);
}

static void user_free_each(void *value, void *ctx) {
  (void)ctx;
  user_free(value);
}

/* ---- Create and start ----------------------------------------------------------------------- */

static void events_free(hd__server_events_t *ev) {
  hd__keymap_each(&ev->users, user_free_each, NULL);
  hd__keymap_free(&ev->users);
  free(ev->scr_seqs);
  free(ev->scr_entries);
  free(ev->scr_plen);
  free(ev->scr_failed);
  hd__key_cache_destroy(&ev->key_cache);
  free(ev);
}

static void del_flush_deferred(hd__deferred_t *d) {
  hd__consumed_flush(hd__container_of(d, hd__server_events_t, del_flush));
}

int hd__server_events_create(hd__server_events_t **out, hd__runtime_t *rt,
                             const hd_server_options_t *opts, hd__welcome_t *welcome) {
  *out = NULL;
  if (opts->data_dir == NULL || opts->data_dir[0] == '\0') {
    return hd__error(HD_EINVAL, "data_dir is required: the folder of the server's event store");
  }
  uint32_t max_event = opts->version >= 3 ? opts->max_event_bytes : 0;
  if (max_event > UINT32_MAX - HD__SRV_PAYLOAD_SLACK) {
    /* a client's limit is a u32 too: none could take such an event */
    return hd__error(HD_EINVAL, "max_event_bytes %u is above %u (a client's largest "
                     "max_message_bytes less 64)", max_event, UINT32_MAX - HD__SRV_PAYLOAD_SLACK);
  }
  if (opts->version >= 4 && opts->expiry_batch > HD__SRV_EXPIRY_BATCH_MAX) {
    return hd__error(HD_EINVAL, "expiry_batch %u is above %u (events per sweep transaction)",
                     opts->expiry_batch, HD__SRV_EXPIRY_BATCH_MAX);
  }
  hd__server_events_t *ev = calloc(1, sizeof *ev);
  if (ev == NULL) return hd__error(HD_ENOMEM, "out of memory creating the server");
  int rc = hd__key_cache_init(&ev->key_cache);
  if (rc != 0) {
    free(ev);
    return rc;
  }
  ev->rt = rt;
  ev->welcome = welcome;
  ev->on_consumed = opts->on_consumed;
  ev->user_data = opts->user_data;
  ev->page_events = opts->page_events ? opts->page_events : HD__SRV_DEFAULT_PAGE;
  uint32_t max_message = opts->max_message_bytes ? opts->max_message_bytes
                                                 : HD__DEFAULT_MAX_MESSAGE;
  ev->max_payload = max_message - HD__SRV_PAYLOAD_SLACK;
  if (max_event != 0) ev->max_payload = max_event;
  hd__keymap_init(&ev->users);
  hd__queue_init(&ev->del_users);
  hd__queue_init(&ev->batches);
  hd__deferred_init(&ev->del_flush, del_flush_deferred);
  ev->anchor = hd__anchor_new(rt, ev);
  if (ev->anchor == NULL) {
    events_free(ev);
    return HD_ENOMEM;
  }
  /* Opens on the creating thread. That is the loop's thread in the sense of store.h: with an
   * owned loop the loop thread has not started yet (the thread start orders this before every
   * later use); with a caller's loop, create must run on that loop's thread. */
  hd__store_options_t so = {.backend = HD__STORE_SQLITE, .folder = opts->data_dir, .loop = rt->loop,
                            .sync_normal = opts->sync_normal};
  if (opts->version >= 4) {
    ev->default_ttl_ms = opts->default_ttl_ms;
    ev->on_dead_letter = opts->on_dead_letter;
    ev->expiry_batch = opts->expiry_batch ? opts->expiry_batch : HD__SRV_EXPIRY_BATCH;
    so.max_events_per_user = opts->max_pending_per_user;
    so.max_bytes_per_user = opts->max_bytes_per_user;
    so.drop_oldest = opts->overflow == HD_OVERFLOW_DROP_OLDEST;
    so.dedup_window_ms = opts->dedup_window_ms > INT64_MAX ? INT64_MAX
                                                           : (int64_t)opts->dedup_window_ms;
    so.dedup_keys_per_user = opts->dedup_keys_per_user;
    ev->limited = so.max_events_per_user != 0 || so.max_bytes_per_user != 0;
  } else {
    ev->expiry_batch = HD__SRV_EXPIRY_BATCH;
  }
  rc = hd__server_store_open(&ev->store, &so);
  if (rc != 0) {
    hd__anchor_detach(ev->anchor);
    events_free(ev);
    return rc;
  }
  hd__consumed_init(ev);
  hd__expiry_init(ev);
  ev->store->vt->store_id(ev->store, welcome->store_id);
  ev->store->vt->epoch(ev->store, welcome->epoch);
  welcome->has_epoch = 1;
  welcome->pause_ms = ev->store->vt->pause(ev->store);
  *out = ev;
  return 0;
}

void hd__server_events_start(hd__server_events_t *ev) {
  const char *change = ev->store->vt->epoch_change(ev->store);
  if (change != NULL) hd__log(ev->rt, HD_LOG_WARN, "%s", change);
  uint64_t pending = 0;
  if (hd__log_enabled(ev->rt, HD_LOG_INFO) && ev->store->vt->pending_total(ev->store, &pending) == 0) {
    hd__log(ev->rt, HD_LOG_INFO, "store holds %llu pending events, pause %u ms",
            (unsigned long long)pending, (unsigned)ev->welcome->pause_ms);
  }
  hd__expiry_start(ev); /* what expired while the server was down goes first */
}

/* ---- Connections ---------------------------------------------------------------------------- */

void hd__server_events_on_open(hd__server_events_t *ev, hd__conn_t *c) {
  if (ev->closing) return;
  hd__session_open(ev, c);
}

void hd__server_events_on_message(hd__server_events_t *ev, hd__conn_t *c, uint8_t type,
                                  const uint8_t *body, size_t len) {
  hd__session_message(ev, c, type, body, len);
}

void hd__server_events_on_drain(hd__server_events_t *ev, hd__conn_t *c) {
  (void)ev;
  hd__session_drained(c);
}

void hd__server_events_on_close(hd__server_events_t *ev, hd__conn_t *c) {
  hd__session_close(ev, c);
}

/* ---- Close and stats ------------------------------------------------------------------------ */

static void close_step(hd__server_events_t *ev) {
  if (--ev->pending_closes > 0) return;
  void (*cb)(void *) = ev->closed_cb;
  void *arg = ev->closed_arg;
  hd__runtime_undefer(ev->rt, &ev->del_flush);
  hd__consumed_orphan_all(ev);
  events_free(ev);
  if (cb != NULL) cb(arg);
}

static void on_store_closed(void *data) {
  hd__server_events_t *ev = data;
  ev->store = NULL;
  close_step(ev);
}

static void on_timer_closed(uv_handle_t *h) { close_step(h->data); }

void hd__server_events_close(hd__server_events_t *ev, void (*cb)(void *arg), void *arg) {
  ev->closing = 1;
  ev->closed_cb = cb;
  ev->closed_arg = arg;
  ev->pending_closes = 3;
  /* what was completed goes to the store, then the store commits everything queued (their
   * callbacks run) and closes; we finish once it and the retry timer are closed */
  hd__consumed_flush(ev);
  hd__consumed_close(ev, on_timer_closed);
  hd__expiry_close(ev, on_timer_closed);
  if (ev->store->vt->close(ev->store, on_store_closed, ev) != 0) on_store_closed(ev);
}

int hd__server_events_stats(hd__server_events_t *ev, hd_server_stats_t *out) {
  if (ev->closing) return hd__error(HD_ECLOSED, "the server is closing");
  out->events_added = ev->n_added;
  out->events_delivered = ev->n_delivered;
  out->events_consumed = ev->n_consumed;
  out->events_confirmed = ev->n_confirmed;
  hd__store_stats_t st;
  ev->store->vt->stats(ev->store, &st);
  out->commits = st.commits;
  out->events_too_large = ev->n_too_large;
  out->adds_duplicate = ev->n_duplicate;
  out->events_replaced = ev->n_replaced;
  out->events_dropped = ev->n_dropped;
  out->adds_limited = ev->n_limited;
  out->events_expired = ev->n_expired;
  out->events_dead = ev->n_dead;
  out->events_requeued = ev->n_requeued;
  int rc = ev->store->vt->dead_count(ev->store, NULL, &out->dead_letters);
  return rc != 0 ? rc : ev->store->vt->pending_total(ev->store, &out->pending_total);
}
