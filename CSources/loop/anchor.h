/* What outlives a handle for objects the application still holds after the handle closed (the
 * client's hd_event_t, the server's hd_consumed_t). Such an object keeps a reference on the
 * anchor, never on the handle: while the owner is attached, work is posted to its runtime under
 * the anchor's lock (so the runtime cannot be released meanwhile); once the owner detached, the
 * object only frees itself. */
#ifndef HD_ANCHOR_H
#define HD_ANCHOR_H

#include "runtime.h"

#include <stdatomic.h>

typedef struct hd__anchor {
  uv_mutex_t mu;      /* guards rt and owner against a post from another thread */
  atomic_uint refs;   /* the owner's + one per live object */
  hd__runtime_t *rt;  /* NULL once detached */
  void *owner;        /* NULL once detached; read on the loop thread without the lock */
} hd__anchor_t;

/* A new anchor holding the owner's reference, or NULL (out of memory; detail recorded). */
hd__anchor_t *hd__anchor_new(hd__runtime_t *rt, void *owner);
void hd__anchor_ref(hd__anchor_t *a);
void hd__anchor_unref(hd__anchor_t *a);

/* Any thread: runs `task` on the owner's loop: inline (returns 1) when called on the loop
 * thread, else posted (returns 0). Returns -1, doing nothing, when the owner has detached. */
int hd__anchor_post(hd__anchor_t *a, hd__task_t *task);

/* Any thread: 1 while the owner is attached. */
int hd__anchor_attached(hd__anchor_t *a);

/* The owner is going away (loop thread): posts fail from now on; drops the owner's reference. */
void hd__anchor_detach(hd__anchor_t *a);

#endif
