/* The group-commit writer: a thread that owns a store's write connection. Callers queue
 * operations; the thread takes everything queued (up to max_batch), runs it inside ONE
 * transaction with ONE commit, and hands the finished operations back to the caller's libuv loop
 * through a uv_async_t, where they complete in submission order. A slow fsync therefore costs
 * the loop nothing, and N concurrent writes cost one fsync instead of N.
 *
 * The writer knows nothing of SQL: the backend gives it hooks (begin, before_commit, commit,
 * rollback, thread_exit) and each operation carries its own `run` and `done`. */
#ifndef HD_STORE_WRITER_H
#define HD_STORE_WRITER_H

#include "store.h"

#include <uv.h>

typedef struct hd__wop hd__wop_t;

struct hd__wop {
  hd__wop_t *next;
  /* Writer thread, inside the batch's transaction. 0, or an HD_E* code (hd__error detail set)
   * that fails the whole batch: it is rolled back and every op in it completes with the code. */
  int (*run)(void *ctx, hd__wop_t *op);
  /* Loop thread, after the commit (or the failure): calls the user's callback and frees op. */
  void (*done)(void *ctx, hd__wop_t *op, int status);
  hd__store_cb cb;
  void *cb_data;
  int status;
  uint64_t value; /* what run produced, passed to cb on success */
  char *err;      /* the failure's detail (allocated only on failure) */
};

typedef struct hd__writer_hooks {
  int (*begin)(void *ctx, size_t n_ops);   /* open the transaction; n_ops sizes batch state */
  int (*before_commit)(void *ctx);         /* write what the batch accumulated (counters...) */
  int (*commit)(void *ctx);                /* 0 once durable */
  void (*rollback)(void *ctx);             /* undo, forget the batch state */
  void (*after_commit)(void *ctx);         /* the batch state is now the committed state */
  void (*thread_exit)(void *ctx);          /* last thing on the thread: close the connection */
} hd__writer_hooks_t;

typedef struct hd__writer {
  uv_loop_t *loop;
  uv_async_t async;
  uv_thread_t thread;
  uv_mutex_t mu;
  uv_cond_t cv;
  hd__wop_t *q_head, *q_tail; /* submitted, not yet taken */
  hd__wop_t *d_head, *d_tail; /* finished, not yet completed on the loop */
  int stopping, exited, held, thread_started;
  size_t max_batch;
  void *ctx;
  const hd__writer_hooks_t *hooks;
  int sticky;                 /* an I/O or corruption error: the store refuses further writes */
  char sticky_msg[256];
  hd__store_stats_t stats;    /* under mu */
  void (*closed)(void *ctx);  /* loop thread, once the thread ended and the async handle closed */
} hd__writer_t;

/* On the loop thread. Starts the thread; `closed` runs after hd__writer_stop() finished. */
int hd__writer_start(hd__writer_t *w, uv_loop_t *loop, size_t max_batch, void *ctx,
                     const hd__writer_hooks_t *hooks, void (*closed)(void *ctx));
/* Any thread. 0 (op's done will run exactly once) or HD_ECLOSED (op untouched). */
int hd__writer_submit(hd__writer_t *w, hd__wop_t *op);
/* Loop thread. Refuses new ops, commits the queued ones, ends the thread, closes the handle. */
void hd__writer_stop(hd__writer_t *w);
void hd__writer_stats(hd__writer_t *w, hd__store_stats_t *out);
/* Tests: while held, the thread takes nothing, so submissions pile up into one batch. */
void hd__writer_hold(hd__writer_t *w, int held);

/* Runs `loop` on the calling thread until *flag is set. */
void hd__store_run_until(uv_loop_t *loop, const int *flag);

#endif
