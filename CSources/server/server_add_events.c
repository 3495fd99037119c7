/* Many events at once (hyperdown.h "Many events at once", docs/QUEUES.md): hd_server_add_events
 * and its blocking form. The items, any users' and each with its own options, become one add
 * call (server_add.c) and one add_fanout op of the store without a shared payload: one
 * transaction, one fsync, a user's items numbered in item order. Every item is checked before
 * anything is queued, so an invalid one fails the call whole; a user whose key is no Ed25519 key
 * fails alone (HD_EKEY in its result, as in a fan-out), and so does a user at its limit. */
#include "options.h"
#include "clock.h"
#include "server.h"
#include "server_events.h"
#include "waiter.h"

#include <stdlib.h>
#include <string.h>

size_t hd_add_events_max(void) { return HD_ADD_EVENTS_MAX; }

/* The item's own failure, its number put before the detail. */
static int item_error(int rc, size_t i) {
  char detail[256];
  snprintf(detail, sizeof detail, "%s", hd_last_error_message());
  return hd__error(rc, "item %zu: %s", i, detail);
}

/* Checks item i and hands it to the call (or records HD_EKEY for it). */
static int add_item(hd__add_call_t *c, const hd_add_item_t *it, size_t i, int64_t now) {
  if (it->user == NULL) return hd__error(HD_EINVAL, "item %zu: user is NULL", i);
  int rc = hd__server_payload_check(c->ev, it->payload, it->len);
  hd__add_spec_t spec;
  if (rc == 0) rc = hd__server_add_spec(c->ev, it->opts, now, &spec);
  if (rc != 0) return item_error(rc, i);
  if (hd__key_cache_check(&c->ev->key_cache, it->user) != 0) {
    c->results[i].status = HD_EKEY; /* fails alone */
    return 0;
  }
  hd__store_add_t *a = hd__add_call_push(c, i, it->user, &spec);
  a->payload = it->payload;
  a->len = it->len;
  return 0;
}

int hd_server_add_events(hd_server_t *server, const hd_add_item_t *items, size_t n,
                         hd_fanout_cb cb, void *cb_data) {
  if (server == NULL || items == NULL) return hd__error(HD_EINVAL, "server or items is NULL");
  if (n == 0 || n > HD_ADD_EVENTS_MAX) {
    return hd__error(HD_EINVAL, "add_events takes 1 to %d items, not %zu", HD_ADD_EVENTS_MAX, n);
  }
  if (hd__runtime_closing(hd__server_runtime(server))) {
    return hd__error(HD_ECLOSED, "the server is closing");
  }
  hd__add_call_t *c = hd__add_call_new(hd__server_events_of(server), n, HD__ADD_REPLY_MANY,
                                       cb_data);
  if (c == NULL) return HD_ENOMEM;
  c->cb.many = cb;
  int64_t now = hd__wall_ms();
  for (size_t i = 0; i < n; i++) {
    int rc = add_item(c, &items[i], i, now);
    if (rc != 0) {
      free(c); /* nothing was queued */
      return rc;
    }
  }
  return hd__add_call_submit(c, now, NULL, 0);
}

typedef struct events_wait {
  hd_server_t *server;
  const hd_add_item_t *items;
  size_t n;
  hd_fanout_result_t *out;
  void (*signal)(void *w, int status, uint64_t value);
  void *w;
} events_wait_t;

static void events_wait_done(void *data, int status, const hd_fanout_result_t *r, size_t n) {
  events_wait_t *x = data;
  if (status == 0 && x->out != NULL) memcpy(x->out, r, n * sizeof *r);
  x->signal(x->w, status, 0); /* carries the store's detail to the waiting thread */
}

static int events_wait_submit(void *arg, void (*cb)(void *, int, uint64_t), void *w) {
  events_wait_t *x = arg;
  x->signal = cb;
  x->w = w;
  return hd_server_add_events(x->server, x->items, x->n, events_wait_done, x);
}

int hd_server_add_events_wait(hd_server_t *server, const hd_add_item_t *items, size_t n,
                              hd_fanout_result_t *results) {
  if (server == NULL) return hd__error(HD_EINVAL, "server is NULL");
  events_wait_t x = {server, items, n, results, NULL, NULL};
  return hd__waiter_call(hd__server_runtime(server), "add_events_wait", events_wait_submit, &x,
                         NULL);
}
