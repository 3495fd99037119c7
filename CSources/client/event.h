/* The client's delivery object (hd_event_t, public functions in hyperdown.h) and its completion
 * from any thread.
 *
 * Ownership: the client's event layer creates an event from one store row (the payload is copied
 * once, into the event's own allocation) and hands it to on_event. hd_event_complete posts the
 * event itself to the loop (the task is embedded: completing allocates nothing but a copy of the
 * caller's data). Every event holds a reference on the event layer's anchor (anchor.h), so an
 * event completed after the client closed touches only the anchor, never the freed client. */
#ifndef HD_EVENT_H
#define HD_EVENT_H

#include "anchor.h"
#include "store.h"
#include "wire.h"

#include <stdatomic.h>

enum { HD__EVENT_READY = 0, HD__EVENT_OUT = 1, HD__EVENT_COMPLETED = 2 };

struct hd_event {
  hd__task_t task;          /* the posted completion */
  hd__queue_t node;         /* the owner's lists (ready queue, reports) */
  hd__anchor_t *anchor;
  atomic_int state;         /* HD__EVENT_*: a second completion is refused, not run twice */
  uint32_t magic;           /* HD__EVENT_MAGIC while alive; catches most uses after free */
  int ok;
  int rejected;             /* hd_event_reject: failed for good at once */
  int dead;                 /* failed for good: recorded with mark_failed, reported in FAILED */
  uint32_t record_tries;    /* failed attempts to record its consumption (client_handler.c) */
  uint32_t attempt;         /* the handler call it is out for, 1-based (0: not called in this
                               process); once dead, the calls counted in all */
  uint32_t stored_attempts; /* the calls its row counted when it was read */
  uint8_t *data;            /* the handler's data (copied by hd_event_complete), or the reason of
                               its last failure (hd_event_fail) */
  size_t data_len;
  uint64_t seq;
  int64_t created_ms;
  uint32_t flags;           /* HD__STORE_EV_* of its row */
  int64_t orphan;           /* its row among the orphans (0: an event of the server's numbering) */
  int64_t store;            /* the server store it came from (store.h hd__store_event_t.store) */
  uint32_t kind;            /* HD__STORE_KIND_*: a notice's payload is its encoded fields */
  size_t payload_len;
  uint8_t payload[];
};

#define HD__EVENT_MAGIC 0x68646576u /* "hdev" */
/* The largest data a handler may report: it must fit one CONSUMED message of the default size. */
#define HD__EVENT_DATA_MAX (HD__DEFAULT_MAX_MESSAGE - 64)
/* The reasons of hd_event_complete(e, 0, ...) and of an event whose last calls did not complete
 * (the process crashed in the handler, or closed). */
#define HD__REASON_HANDLER_FAILED "handler failed"
#define HD__REASON_REJECTED "rejected"

/* A new event (state READY) holding a copy of the row's payload, or NULL (out of memory, detail
 * recorded). Its completion reaches the anchor's owner (hd__client_events_t) on the loop. */
hd_event_t *hd__event_new(hd__anchor_t *anchor, const hd__store_event_t *row);
void hd__event_free(hd_event_t *e);

#endif
