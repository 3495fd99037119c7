/* The server's public event calls (hyperdown.h "Events, server side"): add_event and its
 * blocking form, update_pause, and the blocking reads (pending, pending users). Any thread: adds
 * go straight to the store's queue (its submit is thread-safe); everything that touches loop
 * state runs on the loop, inline there or through hd__runtime_call. */
#include "options.h"
#include "server.h"
#include "server_events.h"

#include <stdlib.h>
#include <string.h>

/* ---- add_event ------------------------------------------------------------------------------ */

/* One add: an hd__add_call_t (server_add.c) answering with hd_add_cb. Under the server's default
 * time to live or per-user limits it goes through the store's add_event2, else its add_event. */
int hd_server_add_event(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                        const void *payload, size_t len, hd_add_cb cb, void *cb_data) {
  hd__add_reply_cb_t reply = {.seq = cb};
  /* no options: the server's default time to live */
  return hd__server_add_one(server, user, payload, len, NULL, HD__ADD_REPLY_SEQ, reply, cb_data);
}

typedef struct add_call {
  hd_server_t *server;
  const uint8_t *user;
  const void *payload;
  size_t len;
} add_call_t;

static int add_submit(void *arg, hd_add_cb cb, void *w) {
  add_call_t *c = arg;
  return hd_server_add_event(c->server, c->user, c->payload, c->len, cb, w);
}

int hd_server_add_event_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                             const void *payload, size_t len, uint64_t *seq) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  add_call_t c = {server, user, payload, len};
  return hd__waiter_call(hd__server_runtime(server), "add_event_wait", add_submit, &c, seq);
}

/* ---- update_pause --------------------------------------------------------------------------- */

typedef struct pause_task {
  hd__task_t task;
  hd__server_events_t *ev;
  uint32_t pause_ms;
  size_t pushed;
  hd_done_cb cb;
  void *cb_data;
} pause_task_t;

static void push_pause(void *value, void *ctx) {
  hd__server_user_t *u = value;
  pause_task_t *p = ctx;
  if (u->session == NULL) return;
  hd__session_push_pause(u->session, p->pause_ms);
  p->pushed++;
}

static void pause_stored(void *data, int status, uint64_t value) {
  pause_task_t *p = data;
  hd__server_events_t *ev = p->ev;
  (void)value;
  if (status == 0) {
    ev->welcome->pause_ms = p->pause_ms; /* new clients get it in WELCOME */
    hd__keymap_each(&ev->users, push_pause, p);
    hd__log(ev->rt, HD_LOG_INFO, "pause set to %u ms, pushed to %zu clients",
            (unsigned)p->pause_ms, p->pushed);
  }
  if (p->cb != NULL) p->cb(p->cb_data, status);
  free(p);
}

static void pause_run(hd__task_t *t, int cancelled) {
  pause_task_t *p = hd__container_of(t, pause_task_t, task);
  hd__server_events_t *ev = p->ev;
  int rc = cancelled || ev->closing
               ? hd__error(HD_ECLOSED, "the server is closing")
               : ev->store->vt->set_pause(ev->store, p->pause_ms, pause_stored, p);
  if (rc == 0) return;
  /* a cancelled task must only free; otherwise the caller hears why */
  if (!cancelled && p->cb != NULL) p->cb(p->cb_data, rc);
  free(p);
}

int hd_server_update_pause(hd_server_t *server, uint32_t pause_ms, hd_done_cb cb,
                           void *cb_data) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  hd__runtime_t *rt = hd__server_runtime(server);
  if (hd__runtime_closing(rt)) return hd__error(HD_ECLOSED, "the server is closing");
  pause_task_t *p = calloc(1, sizeof *p);
  if (p == NULL) return hd__error(HD_ENOMEM, "out of memory setting the pause");
  p->task.fn = pause_run;
  p->ev = hd__server_events_of(server);
  p->pause_ms = pause_ms;
  p->cb = cb;
  p->cb_data = cb_data;
  hd__runtime_post(rt, &p->task);
  return 0;
}

/* ---- backups --------------------------------------------------------------------------------- */

typedef struct backup_task {
  hd__task_t task;
  hd__server_events_t *ev;
  hd_done_cb cb;
  void *cb_data;
  char path[]; /* copied: the caller may free its string once the call returned */
} backup_task_t;

static void backup_written(void *data, int status, uint64_t value) {
  backup_task_t *b = data;
  (void)value;
  if (status == 0) {
    hd__log(b->ev->rt, HD_LOG_INFO, "backup of the store written to %s", b->path);
  } else {
    hd__log(b->ev->rt, HD_LOG_ERROR, "backup to %s failed: %s", b->path, hd_last_error_message());
  }
  if (b->cb != NULL) b->cb(b->cb_data, status);
  free(b);
}

static void backup_run(hd__task_t *t, int cancelled) {
  backup_task_t *b = hd__container_of(t, backup_task_t, task);
  hd__server_events_t *ev = b->ev;
  int rc = cancelled || ev->closing ? hd__error(HD_ECLOSED, "the server is closing")
                                    : ev->store->vt->backup(ev->store, b->path, backup_written, b);
  if (rc == 0) return;
  if (!cancelled && b->cb != NULL) b->cb(b->cb_data, rc);
  free(b);
}

int hd_server_backup(hd_server_t *server, const char *path, hd_done_cb cb, void *cb_data) {
  if (server == NULL || path == NULL || path[0] == '\0') {
    return hd__error(HD_EINVAL, "server or path is NULL or empty");
  }
  hd__runtime_t *rt = hd__server_runtime(server);
  if (hd__runtime_closing(rt)) return hd__error(HD_ECLOSED, "the server is closing");
  size_t len = strlen(path);
  backup_task_t *b = calloc(1, sizeof *b + len + 1);
  if (b == NULL) return hd__error(HD_ENOMEM, "out of memory starting a backup");
  b->task.fn = backup_run;
  b->ev = hd__server_events_of(server);
  b->cb = cb;
  b->cb_data = cb_data;
  memcpy(b->path, path, len + 1);
  hd__runtime_post(rt, &b->task);
  return 0;
}

int hd_server_backup_folder(const char *data_dir, const char *path) {
  if (data_dir == NULL || path == NULL || data_dir[0] == '\0' || path[0] == '\0') {
    return hd__error(HD_EINVAL, "data_dir or path is NULL or empty");
  }
  return hd__server_store_backup_folder(data_dir, path);
}

/* ---- blocking reads ------------------------------------------------------------------------- */

typedef struct read_call {
  hd_server_t *s;
  const uint8_t *user;
  uint64_t *count;
  uint8_t *keys;    /* pending_users */
  uint64_t *counts;
  uint64_t *cursor;
  uint32_t cap;
  size_t n;
  hd_rollback_stats_t *rollback;
} read_call_t;

/* The event layer on the loop thread, or NULL (detail recorded) once it is closing. */
static hd__server_events_t *open_events(read_call_t *r) {
  hd__server_events_t *ev = hd__server_events_of(r->s);
  if (ev == NULL || ev->closing) {
    hd__error(HD_ECLOSED, "the server is closing");
    return NULL;
  }
  return ev;
}

static int pending_on_loop(void *arg) {
  read_call_t *r = arg;
  hd__server_events_t *ev = open_events(r);
  return ev == NULL ? HD_ECLOSED : ev->store->vt->pending_count(ev->store, r->user, r->count);
}

int hd_server_pending(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                      uint64_t *out) {
  if (server == NULL || user == NULL || out == NULL) {
    return hd__error(HD_EINVAL, "server, user or out is NULL");
  }
  read_call_t r = {.s = server, .user = user, .count = out};
  return hd__runtime_call(hd__server_runtime(server), pending_on_loop, &r);
}

static void copy_pending(void *ctx, const uint8_t key[32], uint64_t pending) {
  read_call_t *r = ctx;
  memcpy(r->keys + 32 * r->n, key, 32);
  if (r->counts != NULL) r->counts[r->n] = pending;
  r->n++;
}

static int pending_users_on_loop(void *arg) {
  read_call_t *r = arg;
  hd__server_events_t *ev = open_events(r);
  return ev == NULL ? HD_ECLOSED
                    : ev->store->vt->pending_users(ev->store, r->cursor, r->cap, copy_pending, r);
}

int hd_server_pending_users(hd_server_t *server, uint64_t *cursor, uint8_t *keys,
                            uint64_t *counts, size_t cap) {
  if (server == NULL || cursor == NULL || (keys == NULL && cap != 0)) {
    return hd__error(HD_EINVAL, "server or cursor is NULL, or keys is NULL with a capacity");
  }
  if (cap == 0) return 0;
  read_call_t r = {.s = server, .keys = keys, .counts = counts, .cursor = cursor,
                   .cap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t)cap};
  return hd__runtime_call(hd__server_runtime(server), pending_users_on_loop, &r);
}

static int rollback_stats_on_loop(void *arg) {
  read_call_t *r = arg;
  hd__server_events_t *ev = open_events(r);
  if (ev == NULL) return HD_ECLOSED;
  hd_rollback_stats_t *out = r->rollback;
  ev->store->vt->epoch(ev->store, out->epoch);
  out->rollbacks = ev->n_rollbacks;
  out->epoch_resumes = ev->n_epoch_resumes;
  return 0;
}

int hd_server_rollback_stats(hd_server_t *server, hd_rollback_stats_t *out) {
  if (server == NULL || out == NULL) return hd__error(HD_EINVAL, "server or out is NULL");
  int rc = hd__options_check_stats_version(out->version, HD_ROLLBACK_STATS_VERSION, "rollback");
  if (rc != 0) return rc;
  hd_rollback_stats_t tmp = {.version = HD_ROLLBACK_STATS_VERSION};
  read_call_t r = {.s = server, .rollback = &tmp};
  rc = hd__runtime_call(hd__server_runtime(server), rollback_stats_on_loop, &r);
  if (rc == 0) *out = tmp; /* version 1 is the whole struct */
  return rc;
}
