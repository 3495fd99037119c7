/* The server's adds with options (hyperdown.h "Queue semantics"): hd_server_add_event_v2 and its
 * blocking form, the add options and the sizes of the queue semantics. An add with options goes
 * to the store's add_event2, which applies the expiry, the keys and the user's limits inside the
 * batch's transaction (store_sqlite_server_add.c). */
#include "options.h"
#include "server.h"
#include "server_events.h"
#include "waiter.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

size_t hd_key_max_bytes(void) { return HD_KEY_MAX_BYTES; }
size_t hd_reason_max_bytes(void) { return HD_REASON_MAX_BYTES; }
size_t hd_fanout_max_users(void) { return HD_FANOUT_MAX_USERS; }

int hd_add_options_init(hd_add_options_t *opts, unsigned int version) {
  int rc = hd__options_check_version(opts, version, HD_ADD_OPTIONS_VERSION, "add");
  if (rc != 0) return rc;
  memset(opts, 0, sizeof *opts);
  opts->version = version;
  return 0;
}

static int64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int hd__server_add_spec(hd__server_events_t *ev, const hd_add_options_t *opts, int64_t now,
                        hd__add_spec_t *spec) {
  memset(spec, 0, sizeof *spec);
  uint64_t ttl = ev->default_ttl_ms;
  if (opts != NULL) {
    int rc = hd__options_check_version(opts, opts->version, HD_ADD_OPTIONS_VERSION, "add");
    if (rc != 0) return rc;
    if ((opts->dedup_key != NULL) != (opts->dedup_key_len != 0) ||
        opts->dedup_key_len > HD_KEY_MAX_BYTES) {
      return hd__error(HD_EINVAL, "dedup_key: 1 to %d bytes, or NULL with length 0",
                       HD_KEY_MAX_BYTES);
    }
    if ((opts->collapse_key != NULL) != (opts->collapse_key_len != 0) ||
        opts->collapse_key_len > HD_KEY_MAX_BYTES) {
      return hd__error(HD_EINVAL, "collapse_key: 1 to %d bytes, or NULL with length 0",
                       HD_KEY_MAX_BYTES);
    }
    if (opts->ttl_ms != 0) ttl = opts->ttl_ms;
    spec->dedup_key = opts->dedup_key;
    spec->dedup_key_len = opts->dedup_key_len;
    spec->collapse_key = opts->collapse_key;
    spec->collapse_key_len = opts->collapse_key_len;
  }
  /* UINT64_MAX (and any time past the year 292 million) never expires */
  if (ttl != 0 && ttl < (uint64_t)(INT64_MAX - now)) spec->expires_ms = now + (int64_t)ttl;
  return 0;
}

typedef struct add2_ctx {
  hd__server_events_t *ev;
  hd_add_result_cb cb;
  void *cb_data;
  int64_t expires_ms;
  uint8_t user[HD_PUBLICKEY_BYTES];
} add2_ctx_t;

static void add2_done(void *data, int status, const hd_add_result_t *r) {
  add2_ctx_t *a = data;
  hd__server_events_t *ev = a->ev;
  if (status == 0 && !(r->flags & HD_ADD_DUPLICATE)) ev->n_added++;
  if (a->cb != NULL) a->cb(a->cb_data, status, r);
  if (status == 0 && !(r->flags & HD_ADD_DUPLICATE)) {
    hd__session_wake(ev, a->user);
    if (a->expires_ms != 0) hd__expiry_added(ev, a->expires_ms);
  }
  free(a);
}

int hd_server_add_event_v2(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                           const void *payload, size_t len, const hd_add_options_t *opts,
                           hd_add_result_cb cb, void *cb_data) {
  if (server == NULL || user == NULL) return hd__error(HD_EINVAL, "server or user is NULL");
  if (payload == NULL || len == 0) return hd__error(HD_EINVAL, "an event needs a payload");
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  hd__server_events_t *ev = hd__server_events_of(server);
  if (len > ev->max_payload) {
    return hd__error(HD_EINVAL, "payload of %zu bytes is above the server's max_event_bytes "
                     "(%zu)", len, ev->max_payload);
  }
  if (hd__key_cache_check(&ev->key_cache, user) != 0) {
    return hd__error(HD_EKEY, "the user is not a valid Ed25519 public key");
  }
  int64_t now = now_ms();
  hd__add_spec_t spec;
  int rc = hd__server_add_spec(ev, opts, now, &spec);
  if (rc != 0) return rc;
  add2_ctx_t *a = malloc(sizeof *a);
  if (a == NULL) return hd__error(HD_ENOMEM, "out of memory adding an event");
  a->ev = ev;
  a->cb = cb;
  a->cb_data = cb_data;
  a->expires_ms = spec.expires_ms;
  memcpy(a->user, user, HD_PUBLICKEY_BYTES);
  rc = ev->store->vt->add_event2(ev->store, user, now, payload, len, &spec, add2_done, a);
  if (rc != 0) free(a);
  return rc;
}

typedef struct add2_wait {
  hd__waiter_t w;
  hd_add_result_t *out;
} add2_wait_t;

static void add2_wait_done(void *data, int status, const hd_add_result_t *r) {
  add2_wait_t *aw = data;
  if (status == 0 && aw->out != NULL) *aw->out = *r;
  hd__waiter_signal(&aw->w, status, 0); /* carries the store's detail to the waiting thread */
}

int hd_server_add_event_v2_wait(hd_server_t *server, const uint8_t user[HD_PUBLICKEY_BYTES],
                                const void *payload, size_t len, const hd_add_options_t *opts,
                                hd_add_result_t *result) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  if (hd__runtime_on_loop(hd__server_runtime(server))) {
    return hd__error(HD_ETHREAD, "add_event_v2_wait on the server's loop thread would wait for "
                                 "itself; use hd_server_add_event_v2");
  }
  add2_wait_t aw = {.out = result};
  int rc = hd__waiter_init(&aw.w);
  if (rc != 0) return rc;
  rc = hd_server_add_event_v2(server, user, payload, len, opts, add2_wait_done, &aw);
  if (rc != 0) {
    hd__waiter_destroy(&aw.w);
    return rc;
  }
  return hd__waiter_wait(&aw.w, NULL);
}
