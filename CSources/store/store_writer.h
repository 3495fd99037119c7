/* The group-commit writer: it owns a store's write connection. Callers queue operations; the
 * writer takes everything queued (up to max_batch), runs it inside ONE transaction with ONE
 * commit on a thread of libuv's pool (uv_queue_work), and completes the operations on the
 * store's loop in submission order. A slow fsync therefore costs the loop nothing, N concurrent
 * writes cost one fsync instead of N, and at most one batch per store runs at a time. The pool
 * is the process's own (Node's, under Node), so a store adds no thread of its own.
 *
 * The writer knows nothing of SQL, nor of any backend: the backend gives it hooks (begin,
 * before_commit, commit, rollback, after_commit, thread_exit) and each operation a type (its
 * `run` and `done`). Any backend whose writes are transactions on one connection can use it. */
#ifndef HD_STORE_WRITER_H
#define HD_STORE_WRITER_H

#include "queue.h"
#include "store.h"

#include <uv.h>

typedef struct hd__wop hd__wop_t;

/* What one kind of write does: a static const instance per kind, shared by every op of it. */
typedef struct hd__wop_type {
  /* Pool thread, inside the batch's transaction. 0, or an HD_E* code (hd__error detail set)
   * that fails the whole batch: it is rolled back and every op in it completes with the code. */
  int (*run)(void *ctx, hd__wop_t *op);
  /* Loop thread, after the commit (or the failure; hd_last_error_message() holds the detail):
   * calls the user's callback and frees op. hd__wop_done is the usual one. */
  void (*done)(void *ctx, hd__wop_t *op, int status);
  int relaxed; /* may commit without an fsync (what it writes is held elsewhere too) */
} hd__wop_type_t;

/* A queued write. A backend embeds it first in its op struct, allocated with malloc. */
struct hd__wop {
  hd__queue_t node; /* in the writer's queue, then in the batch */
  const hd__wop_type_t *type;
  hd__store_cb cb;
  void *cb_data;
  uint64_t value; /* what run produced, passed to cb on success */
};

typedef struct hd__writer_hooks {
  /* open the transaction; n_ops sizes batch state; relaxed: every op of the batch is relaxed */
  int (*begin)(void *ctx, size_t n_ops, int relaxed);
  int (*before_commit)(void *ctx);         /* write what the batch accumulated (counters...) */
  int (*commit)(void *ctx);                /* 0 once durable */
  void (*rollback)(void *ctx);             /* undo, forget the batch state */
  void (*after_commit)(void *ctx);         /* the batch state is now the committed state */
  void (*thread_exit)(void *ctx);          /* last work on the pool: close the connection */
} hd__writer_hooks_t;

typedef struct hd__writer {
  uv_loop_t *loop;
  uv_async_t async;           /* a submission from any thread asks the loop to schedule */
  uv_work_t work;
  uv_mutex_t mu;
  hd__queue_t queue;          /* submitted, not yet taken (under mu) */
  hd__queue_t batch;          /* the batch on the pool; empty for the final work */
  size_t batch_n;
  int batch_relaxed;
  int batch_status;           /* set by the pool thread: 0 (committed) or the failure's code */
  hd__error_state_t batch_error; /* the failure's detail, for the completions */
  int running;                /* a work is on the pool (loop thread) */
  int stopping, exited, held; /* under mu */
  size_t max_batch;
  void *ctx;
  const hd__writer_hooks_t *hooks;
  hd__error_state_t sticky;   /* an I/O or corruption error (code != 0): the store refuses
                                 further writes (pool thread) */
  hd__store_stats_t stats;    /* under mu */
  void (*closed)(void *ctx);  /* loop thread, once the final work ran and the handle closed */
} hd__writer_t;

/* On the loop thread. `closed` runs after hd__writer_stop() finished. */
int hd__writer_start(hd__writer_t *w, uv_loop_t *loop, size_t max_batch, void *ctx,
                     const hd__writer_hooks_t *hooks, void (*closed)(void *ctx));
/* Any thread. Queues `op` (allocated with malloc) as a write of `type`, completing through
 * cb(cb_data, status, value). 0: op's done will run exactly once; HD_ECLOSED: op was freed. */
int hd__writer_submit(hd__writer_t *w, hd__wop_t *op, const hd__wop_type_t *type,
                      hd__store_cb cb, void *cb_data);
/* The usual `done`: frees op and calls its callback with the status and op's value. */
void hd__wop_done(void *ctx, hd__wop_t *op, int status);
/* Loop thread. Refuses new ops, commits the queued ones, closes the connection and the handle. */
void hd__writer_stop(hd__writer_t *w);
void hd__writer_stats(hd__writer_t *w, hd__store_stats_t *out);
/* Tests: while held, the writer takes nothing, so submissions pile up into one batch. */
void hd__writer_hold(hd__writer_t *w, int held);

/* Runs `loop` on the calling thread until *flag is set. */
void hd__store_run_until(uv_loop_t *loop, const int *flag);

#endif
