/* The one way a thread waits for the loop: an hd__waiter_t lives on the waiting thread's stack;
 * the loop thread signals it once with a status, a value and (for a failure) its error detail,
 * which the waiting thread gets back as its own last error. */
#ifndef HD_WAITER_H
#define HD_WAITER_H

#include "common.h"

#include <uv.h>

typedef struct hd__waiter {
  uv_mutex_t mu;
  uv_cond_t cv;
  int done;
  int status;
  uint64_t value;
  hd__error_state_t error; /* the signalling thread's detail when status != 0 */
} hd__waiter_t;

int hd__waiter_init(hd__waiter_t *w);
/* Any thread, once: wakes the waiter. With status != 0 the calling thread's last error is
 * carried over. `w` may be gone as soon as this returns. */
void hd__waiter_signal(hd__waiter_t *w, int status, uint64_t value);
/* Blocks until signalled; frees the waiter's resources; returns the status (its detail is this
 * thread's last error then) and stores the value in *value if not NULL. */
int hd__waiter_wait(hd__waiter_t *w, uint64_t *value);
/* Frees a waiter that will never be signalled (the call that would have signalled it failed). */
void hd__waiter_destroy(hd__waiter_t *w);

/* The completion that signals a waiter (`w`), in the shape of the library's callbacks that carry
 * a status and a value (hd_add_cb, hd_count_cb, the store's). */
void hd__waiter_done(void *w, int status, uint64_t value);
/* The blocking form of an asynchronous call, the one way every _wait function is made: on a
 * thread other than the loop's (HD_ETHREAD there: the call would wait for itself; `what` names
 * it in the detail), runs submit(arg, hd__waiter_done, w) and waits for that completion. The
 * submit's own failure is returned at once (its callback never fires); else the completion's
 * status, and its value in *value (optional). */
struct hd__runtime;
int hd__waiter_call(const struct hd__runtime *rt, const char *what,
                    int (*submit)(void *arg, void (*cb)(void *, int, uint64_t), void *w),
                    void *arg, uint64_t *value);

#endif
