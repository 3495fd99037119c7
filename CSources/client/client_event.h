/* The client's delivery object (hd_event_t, public functions in hyperdown.h) and the link that
 * lets a completion reach the client from any thread, or be dropped safely once it has closed.
 *
 * Ownership: the client's event state creates an event from one store row (the payload is copied
 * once, into the event's own allocation) and hands it to on_event. hd_event_complete posts the
 * event itself to the loop (the task is embedded: completing allocates nothing but a copy of the
 * caller's data). Every event holds a reference on the link, so an event completed after the
 * client closed touches only the link, never the freed client. */
#ifndef HD_CLIENT_EVENT_H
#define HD_CLIENT_EVENT_H

#include "runtime.h"
#include "store.h"
#include "wire.h"

#include <stdatomic.h>

typedef struct hd__client_events hd__client_events_t;

typedef struct hd__client_link {
  uv_mutex_t mu;               /* guards `owner` against a completion from another thread */
  atomic_uint refs;            /* the client's + one per live event */
  hd__runtime_t *rt;           /* valid while `owner` is set */
  hd__client_events_t *owner;  /* NULL once the client closes: completions are then dropped */
} hd__client_link_t;

enum { HD__EVENT_READY = 0, HD__EVENT_OUT = 1, HD__EVENT_COMPLETED = 2 };

struct hd_event {
  hd__task_t task;          /* first: the posted completion */
  hd_event_t *next;         /* the owner's lists (ready queue, reports) */
  hd__client_link_t *link;
  atomic_int state;         /* HD__EVENT_*: a second completion is refused, not run twice */
  uint32_t magic;           /* HD__EVENT_MAGIC while alive; catches most uses after free */
  uint64_t gen;             /* the client's store generation when it was read */
  int ok;
  uint8_t *data;            /* the handler's data (copied by hd_event_complete) */
  size_t data_len;
  uint64_t seq;
  int64_t created_ms;
  size_t payload_len;
  uint8_t payload[];
};

#define HD__EVENT_MAGIC 0x68646576u /* "hdev" */
/* The largest data a handler may report: it must fit one CONSUMED message of the default size. */
#define HD__EVENT_DATA_MAX (HD__DEFAULT_MAX_MESSAGE - 64)

hd__client_link_t *hd__client_link_new(hd__runtime_t *rt, hd__client_events_t *owner);
/* Loop thread: completions from now on are dropped; drops the client's reference. */
void hd__client_link_detach(hd__client_link_t *link);

/* A new event (state READY) holding a copy of the row's payload, or NULL (out of memory). */
hd_event_t *hd__event_new(hd__client_link_t *link, const hd__store_event_t *row, uint64_t gen);
void hd__event_free(hd_event_t *e);

/* Implemented by client_events.c: a completion reached the loop while the client is open. */
void hd__client_events_completed(hd__client_events_t *ev, hd_event_t *e);

#endif
