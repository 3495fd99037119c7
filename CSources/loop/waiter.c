/* A thread waiting for the loop (waiter.h). */
#include "waiter.h"

#include "runtime.h"

#include <string.h>

int hd__waiter_init(hd__waiter_t *w) {
  memset(w, 0, sizeof *w);
  if (uv_mutex_init(&w->mu) != 0) return hd__error(HD_ENOMEM, "cannot create a mutex");
  if (uv_cond_init(&w->cv) != 0) {
    uv_mutex_destroy(&w->mu);
    return hd__error(HD_ENOMEM, "cannot create a condition variable");
  }
  return 0;
}

void hd__waiter_signal(hd__waiter_t *w, int status, uint64_t value) {
  uv_mutex_lock(&w->mu);
  w->status = status;
  w->value = value;
  if (status != 0) hd__error_save(&w->error);
  w->done = 1;
  uv_cond_signal(&w->cv);
  uv_mutex_unlock(&w->mu); /* the waiter may return and free `w` from here on */
}

void hd__waiter_destroy(hd__waiter_t *w) {
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
}

int hd__waiter_wait(hd__waiter_t *w, uint64_t *value) {
  uv_mutex_lock(&w->mu);
  while (!w->done) uv_cond_wait(&w->cv, &w->mu);
  uv_mutex_unlock(&w->mu);
  hd__waiter_destroy(w);
  if (w->status != 0) {
    hd__error_restore(&w->error);
    if (hd_last_error_code() != w->status) hd__error(w->status, "%s", hd_strerror(w->status));
    return w->status;
  }
  if (value != NULL) *value = w->value;
  return 0;
}

void hd__waiter_done(void *w, int status, uint64_t value) { hd__waiter_signal(w, status, value); }

int hd__waiter_call(const struct hd__runtime *rt, const char *what,
                    int (*submit)(void *arg, void (*cb)(void *, int, uint64_t), void *w),
                    void *arg, uint64_t *value) {
  if (hd__runtime_on_loop(rt)) {
    return hd__error(HD_ETHREAD, "%s on the handle's loop thread would wait for itself; use the "
                     "call without _wait", what);
  }
  hd__waiter_t w;
  int rc = hd__waiter_init(&w);
  if (rc != 0) return rc;
  rc = submit(arg, hd__waiter_done, &w);
  if (rc != 0) {
    hd__waiter_destroy(&w);
    return rc;
  }
  return hd__waiter_wait(&w, value);
}
