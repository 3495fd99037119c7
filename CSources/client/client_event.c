/* hd_event_t: the client's delivery object and its any-thread completion (client_event.h). */
#include "client_event.h"

#include <stdlib.h>
#include <string.h>

hd__client_link_t *hd__client_link_new(hd__runtime_t *rt, hd__client_events_t *owner) {
  hd__client_link_t *l = calloc(1, sizeof *l);
  if (l == NULL) return NULL;
  if (uv_mutex_init(&l->mu) != 0) {
    free(l);
    return NULL;
  }
  atomic_init(&l->refs, 1);
  l->rt = rt;
  l->owner = owner;
  return l;
}

static void link_unref(hd__client_link_t *l) {
  if (atomic_fetch_sub(&l->refs, 1) != 1) return;
  uv_mutex_destroy(&l->mu);
  free(l);
}

void hd__client_link_detach(hd__client_link_t *l) {
  uv_mutex_lock(&l->mu);
  l->owner = NULL;
  l->rt = NULL;
  uv_mutex_unlock(&l->mu);
  link_unref(l);
}

hd_event_t *hd__event_new(hd__client_link_t *link, const hd__store_event_t *row, uint64_t gen) {
  hd_event_t *e = malloc(sizeof *e + row->payload_len);
  if (e == NULL) return NULL;
  memset(e, 0, sizeof *e);
  atomic_init(&e->state, HD__EVENT_READY);
  e->magic = HD__EVENT_MAGIC;
  e->link = link;
  e->gen = gen;
  e->seq = row->seq;
  e->created_ms = row->created_ms;
  e->payload_len = row->payload_len;
  if (row->payload_len) memcpy(e->payload, row->payload, row->payload_len);
  atomic_fetch_add(&link->refs, 1);
  return e;
}

void hd__event_free(hd_event_t *e) {
  hd__client_link_t *l = e->link;
  free(e->data);
  e->magic = 0; /* a later (forbidden) completion of freed memory is likely refused */
  free(e);
  link_unref(l);
}

/* The posted completion: runs on the loop, or is cancelled when the client is released first. */
static void completion_task(hd__task_t *t, int cancelled) {
  hd_event_t *e = (hd_event_t *)t;
  hd__client_events_t *owner = cancelled ? NULL : e->link->owner; /* loop thread: stable */
  if (owner == NULL) hd__event_free(e);
  else hd__client_events_completed(owner, e);
}

int hd_event_info(const hd_event_t *e, hd_event_info_t *out) {
  if (e == NULL || out == NULL) return hd__error(HD_EINVAL, "event or output is NULL");
  if (e->magic != HD__EVENT_MAGIC) return hd__error(HD_EALREADY, "event already completed");
  out->seq = e->seq;
  out->created_ms = e->created_ms;
  out->payload = e->payload;
  out->payload_len = e->payload_len;
  out->data = NULL;
  out->data_len = 0;
  return 0;
}

uint64_t hd_event_seq(const hd_event_t *e) { return e ? e->seq : 0; }

int hd_event_complete(hd_event_t *e, int ok, const void *data, size_t len) {
  if (e == NULL) return hd__error(HD_EINVAL, "event is NULL");
  if (data == NULL && len != 0) return hd__error(HD_EINVAL, "data is NULL but len is %zu", len);
  if (len > HD__EVENT_DATA_MAX) {
    return hd__error(HD_EINVAL, "completion data of %zu bytes is above the limit of %d", len,
                     HD__EVENT_DATA_MAX);
  }
  /* Freed memory cannot be checked reliably: the magic catches the common case of a second
   * completion soon after the first (and valgrind/ASan the rest); the state catches a race of
   * two completions on live memory. */
  if (e->magic != HD__EVENT_MAGIC) return hd__error(HD_EALREADY, "event already completed");
  uint8_t *copy = NULL;
  if (ok && len != 0) {
    copy = malloc(len);
    if (copy == NULL) return hd__error(HD_ENOMEM, "copying %zu bytes of completion data", len);
    memcpy(copy, data, len);
  }
  int want = HD__EVENT_OUT;
  if (!atomic_compare_exchange_strong(&e->state, &want, HD__EVENT_COMPLETED)) {
    free(copy);
    return hd__error(HD_EALREADY, "event %llu already completed", (unsigned long long)e->seq);
  }
  e->ok = ok != 0;
  e->data = copy;
  e->data_len = copy ? len : 0;
  e->task.fn = completion_task;
  hd__client_link_t *l = e->link;
  uv_mutex_lock(&l->mu);
  hd__runtime_t *rt = l->rt;
  if (rt == NULL) {
    uv_mutex_unlock(&l->mu);
    hd__event_free(e); /* the client has closed: the event is handled again next time */
    return 0;
  }
  if (hd__runtime_on_loop(rt)) {
    /* only the loop thread detaches the link, so it stays set without the lock */
    uv_mutex_unlock(&l->mu);
    hd__client_events_completed(l->owner, e);
    return 0;
  }
  hd__runtime_post(rt, &e->task); /* under the lock: the runtime cannot be released meanwhile */
  uv_mutex_unlock(&l->mu);
  return 0;
}
