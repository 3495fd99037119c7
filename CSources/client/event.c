/* hd_event_t: the client's delivery object and its any-thread completion (event.h). */
#include "event.h"

#include "client_events.h"

#include <stdlib.h>
#include <string.h>

hd_event_t *hd__event_new(hd__anchor_t *anchor, const hd__store_event_t *row) {
  hd_event_t *e = malloc(sizeof *e + row->payload_len);
  if (e == NULL) {
    hd__error(HD_ENOMEM, "out of memory reading event %llu", (unsigned long long)row->seq);
    return NULL;
  }
  memset(e, 0, sizeof *e);
  atomic_init(&e->state, HD__EVENT_READY);
  e->magic = HD__EVENT_MAGIC;
  e->anchor = anchor;
  e->seq = row->seq;
  e->created_ms = row->created_ms;
  e->flags = row->flags;
  e->orphan = row->orphan;
  e->store = row->store;
  e->stored_attempts = row->attempts;
  e->kind = row->kind;
  e->payload_len = row->payload_len;
  if (row->payload_len) memcpy(e->payload, row->payload, row->payload_len);
  hd__anchor_ref(anchor);
  return e;
}

void hd__event_free(hd_event_t *e) {
  hd__anchor_t *a = e->anchor;
  free(e->data);
  e->magic = 0; /* a later (forbidden) completion of freed memory is likely refused */
  free(e);
  hd__anchor_unref(a);
}

/* The posted completion: runs on the loop, or is cancelled when the client is released first. */
static void completion_task(hd__task_t *t, int cancelled) {
  hd_event_t *e = hd__container_of(t, hd_event_t, task);
  hd__client_events_t *owner = cancelled ? NULL : e->anchor->owner; /* loop thread: stable */
  if (owner == NULL) hd__event_free(e);
  else hd__client_handler_completed(owner, e);
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

int hd_event_possibly_repeated(const hd_event_t *e) {
  return e != NULL && e->magic == HD__EVENT_MAGIC && (e->flags & HD__STORE_EV_REPEATED) != 0;
}

int hd_event_is_notice(const hd_event_t *e) {
  return e != NULL && e->magic == HD__EVENT_MAGIC && e->kind == HD__STORE_KIND_NOTICE;
}

int hd_event_notice(const hd_event_t *e, hd_notice_t *out) {
  if (e == NULL || out == NULL) return hd__error(HD_EINVAL, "event or output is NULL");
  if (e->magic != HD__EVENT_MAGIC) return hd__error(HD_EALREADY, "event already completed");
  hd__notice_t n;
  if (e->kind != HD__STORE_KIND_NOTICE || hd__notice_decode(e->payload, e->payload_len, &n) != 0) {
    return hd__error(HD_EINVAL, "event %llu is not a notice", (unsigned long long)e->seq);
  }
  /* a kind this release does not know is handed on as it came (the caller ignores it) */
  out->kind = n.kind > UINT32_MAX ? UINT32_MAX : (unsigned int)n.kind;
  out->count = n.count;
  out->first_seq = n.first_seq;
  out->last_seq = n.last_seq;
  return 0;
}

/* The one completion path: ok (data for the server), a failed attempt or a rejection (data: the
 * reason, UTF-8, at most HD_REASON_MAX_BYTES). */
static int complete(hd_event_t *e, int ok, int rejected, const void *data, size_t len) {
  /* Freed memory cannot be checked reliably: the magic catches the common case of a second
   * completion soon after the first (and valgrind/ASan the rest); the state catches a race of
   * two completions on live memory. */
  if (e->magic != HD__EVENT_MAGIC) return hd__error(HD_EALREADY, "event already completed");
  uint8_t *copy = NULL;
  if (len != 0) {
    copy = malloc(len);
    if (copy == NULL) return hd__error(HD_ENOMEM, "copying %zu bytes of completion data", len);
    memcpy(copy, data, len);
  }
  int want = HD__EVENT_OUT;
  if (!atomic_compare_exchange_strong(&e->state, &want, HD__EVENT_COMPLETED)) {
    free(copy);
    return hd__error(HD_EALREADY, "event %llu already completed", (unsigned long long)e->seq);
  }
  /* the handler has the event: the loop leaves it alone until the completion is posted */
  free(e->data); /* an earlier attempt's reason */
  e->ok = ok;
  e->rejected = rejected;
  e->data = copy;
  e->data_len = copy ? len : 0;
  e->task.fn = completion_task;
  /* inline on the loop thread, else posted; once the client has closed, the event is only
   * freed (it is handled again next time) */
  if (hd__anchor_post(e->anchor, &e->task) < 0) hd__event_free(e);
  return 0;
}

int hd_event_complete(hd_event_t *e, int ok, const void *data, size_t len) {
  if (e == NULL) return hd__error(HD_EINVAL, "event is NULL");
  if (data == NULL && len != 0) return hd__error(HD_EINVAL, "data is NULL but len is %zu", len);
  if (len > HD__EVENT_DATA_MAX) {
    return hd__error(HD_EINVAL, "completion data of %zu bytes is above the limit of %d", len,
                     HD__EVENT_DATA_MAX);
  }
  if (!ok) {
    return complete(e, 0, 0, HD__REASON_HANDLER_FAILED, sizeof HD__REASON_HANDLER_FAILED - 1);
  }
  return complete(e, 1, 0, data, len);
}

/* A reason as it is kept and reported: UTF-8 (HD_EINVAL otherwise: nothing is replaced, so that
 * the operator reads what the handler said), cut to HD_REASON_MAX_BYTES at a character's start;
 * empty: `fallback`. */
static int failure(hd_event_t *e, int rejected, const char *reason, size_t len,
                   const char *fallback) {
  if (e == NULL) return hd__error(HD_EINVAL, "event is NULL");
  if (reason == NULL && len != 0) {
    return hd__error(HD_EINVAL, "reason is NULL but len is %zu", len);
  }
  if (len != 0 && !hd__utf8_valid((const uint8_t *)reason, len)) {
    return hd__error(HD_EINVAL, "the reason is not UTF-8");
  }
  if (len > HD_REASON_MAX_BYTES) {
    len = HD_REASON_MAX_BYTES;
    while (len > 0 && ((uint8_t)reason[len] & 0xc0) == 0x80) len--; /* a continuation byte */
  }
  if (len == 0) {
    reason = fallback;
    len = strlen(fallback);
  }
  return complete(e, 0, rejected, reason, len);
}

int hd_event_fail(hd_event_t *e, const char *reason, size_t len) {
  return failure(e, 0, reason, len, HD__REASON_HANDLER_FAILED);
}

int hd_event_reject(hd_event_t *e, const char *reason, size_t len) {
  return failure(e, 1, reason, len, HD__REASON_REJECTED);
}

uint32_t hd_event_attempt(const hd_event_t *e) {
  return e != NULL && e->magic == HD__EVENT_MAGIC ? e->attempt : 0;
}
