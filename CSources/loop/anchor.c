/* The anchor of objects that may outlive their handle (anchor.h). */
#include "anchor.h"

#include <stdlib.h>

hd__anchor_t *hd__anchor_new(hd__runtime_t *rt, void *owner) {
  hd__anchor_t *a = calloc(1, sizeof *a);
  if (a == NULL) {
    hd__error(HD_ENOMEM, "out of memory creating a handle");
    return NULL;
  }
  if (uv_mutex_init(&a->mu) != 0) {
    free(a);
    hd__error(HD_ENOMEM, "cannot create a mutex");
    return NULL;
  }
  atomic_init(&a->refs, 1);
  a->rt = rt;
  a->owner = owner;
  return a;
}

void hd__anchor_ref(hd__anchor_t *a) { atomic_fetch_add(&a->refs, 1); }

void hd__anchor_unref(hd__anchor_t *a) {
  if (atomic_fetch_sub(&a->refs, 1) != 1) return;
  uv_mutex_destroy(&a->mu);
  free(a);
}

int hd__anchor_post(hd__anchor_t *a, hd__task_t *task) {
  uv_mutex_lock(&a->mu);
  hd__runtime_t *rt = a->rt;
  int rc = -1;
  if (rt != NULL && hd__runtime_on_loop(rt)) {
    rc = 1; /* only the loop thread detaches: the owner stays attached without the lock */
  } else if (rt != NULL) {
    hd__runtime_post(rt, task); /* under the lock: the runtime cannot be released meanwhile */
    rc = 0;
  }
  uv_mutex_unlock(&a->mu);
  if (rc == 1) task->fn(task, 0);
  return rc;
}

int hd__anchor_attached(hd__anchor_t *a) {
  uv_mutex_lock(&a->mu);
  int attached = a->rt != NULL;
  uv_mutex_unlock(&a->mu);
  return attached;
}

void hd__anchor_detach(hd__anchor_t *a) {
  uv_mutex_lock(&a->mu);
  a->rt = NULL;
  a->owner = NULL;
  uv_mutex_unlock(&a->mu);
  hd__anchor_unref(a);
}
