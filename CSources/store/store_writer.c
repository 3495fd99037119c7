/* The group-commit writer (store_writer.h). One mutex guards two FIFO lists: the queue the
 * callers fill and the finished list the loop drains. Order is kept end to end (queue order =
 * batch order = finished order = completion order), so completions run in submission order. */
#include "store_writer.h"

#include <stdlib.h>
#include <string.h>

static int is_sticky(int code) { return code == HD_EIO || code == HD_ECORRUPT; }

/* Runs one batch on a pool thread; sets every op's status. Returns 1 if it committed. */
static int run_batch(hd__writer_t *w, hd__wop_t *batch, size_t n) {
  int rc = w->sticky;
  if (rc != 0) {
    hd__error(rc, "store failed earlier and accepts no more writes: %s", w->sticky_msg);
  } else {
    rc = w->hooks->begin(w->ctx, n, w->batch_relaxed);
    for (hd__wop_t *op = batch; rc == 0 && op != NULL; op = op->next) rc = op->run(w->ctx, op);
    if (rc == 0) rc = w->hooks->before_commit(w->ctx);
    if (rc == 0) rc = w->hooks->commit(w->ctx);
    if (rc == 0) {
      w->hooks->after_commit(w->ctx);
      for (hd__wop_t *op = batch; op != NULL; op = op->next) op->status = 0;
      return 1;
    }
    /* keep the detail: rollback may overwrite this thread's last error */
    char msg[256];
    snprintf(msg, sizeof msg, "%s", hd_last_error_message());
    w->hooks->rollback(w->ctx);
    hd__error(rc, "%s", msg);
    /* After a failed fsync the kernel may have dropped the dirty pages: retrying could report
     * data durable that is not. Refuse further writes instead (the process restarts cleanly). */
    if (is_sticky(rc)) {
      w->sticky = rc;
      snprintf(w->sticky_msg, sizeof w->sticky_msg, "%s", msg);
    }
  }
  const char *msg = hd_last_error_message();
  for (hd__wop_t *op = batch; op != NULL; op = op->next) {
    op->status = rc;
    op->value = 0;
    op->err = strdup(msg); /* NULL on ENOMEM: the code alone is reported then */
  }
  return 0;
}

static void complete_ops(hd__writer_t *w, hd__wop_t *op) {
  while (op != NULL) {
    hd__wop_t *next = op->next;
    int status = op->status;
    if (status != 0) hd__error(status, "%s", op->err != NULL ? op->err : hd_strerror(status));
    free(op->err);
    op->err = NULL;
    op->done(w->ctx, op, status);
    op = next;
  }
}

/* Pool thread: one batch, or the final work that closes the connection. */
static void work_cb(uv_work_t *req) {
  hd__writer_t *w = req->data;
  if (w->batch == NULL) {
    w->hooks->thread_exit(w->ctx);
    return;
  }
  w->batch_committed = run_batch(w, w->batch, w->batch_n);
}

static void on_async_closed(uv_handle_t *h) {
  hd__writer_t *w = h->data;
  uv_mutex_destroy(&w->mu);
  w->closed(w->ctx); /* may free w */
}

static void schedule(hd__writer_t *w);

/* Loop thread: the work is done; complete its ops in order and take the next batch. */
static void after_work_cb(uv_work_t *req, int status) {
  hd__writer_t *w = req->data;
  w->running = 0;
  hd__wop_t *batch = w->batch;
  if (batch == NULL) { /* the final work: the connection is closed */
    w->exited = 1;
    uv_close((uv_handle_t *)&w->async, on_async_closed);
    return;
  }
  w->batch = NULL;
  uv_mutex_lock(&w->mu);
  if (w->batch_committed) {
    w->stats.commits++;
    w->stats.ops_done += w->batch_n;
  } else {
    w->stats.ops_failed += w->batch_n;
  }
  w->stats.queued -= w->batch_n;
  uv_mutex_unlock(&w->mu);
  complete_ops(w, batch);
  schedule(w);
}

/* Loop thread: puts the next batch (everything queued, at most max_batch, so that one giant
 * batch cannot delay every completion and grow the WAL without limit) on the pool, or, once
 * stopping and drained, the final work. */
static void schedule(hd__writer_t *w) {
  if (w->running || w->exited) return;
  uv_mutex_lock(&w->mu);
  hd__wop_t *batch = w->held ? NULL : w->q_head;
  int finish = w->stopping && w->q_head == NULL;
  size_t n = 0;
  int relaxed = 1;
  if (batch != NULL) {
    hd__wop_t *last = batch;
    n = 1;
    relaxed = batch->relaxed;
    while (last->next != NULL && n < w->max_batch) {
      last = last->next;
      relaxed &= last->relaxed;
      n++;
    }
    w->q_head = last->next;
    if (w->q_head == NULL) w->q_tail = NULL;
    last->next = NULL;
  }
  uv_mutex_unlock(&w->mu);
  if (batch == NULL && !finish) return;
  w->batch = batch;
  w->batch_n = n;
  w->batch_relaxed = relaxed;
  w->running = 1;
  w->work.data = w;
  uv_queue_work(w->loop, &w->work, work_cb, after_work_cb);
}

static void on_async(uv_async_t *a) { schedule(a->data); }

int hd__writer_start(hd__writer_t *w, uv_loop_t *loop, size_t max_batch, void *ctx,
                     const hd__writer_hooks_t *hooks, void (*closed)(void *ctx)) {
  memset(w, 0, sizeof *w);
  w->loop = loop;
  w->max_batch = max_batch ? max_batch : HD__STORE_DEFAULT_MAX_BATCH;
  w->ctx = ctx;
  w->hooks = hooks;
  w->closed = closed;
  if (uv_mutex_init(&w->mu) != 0) return hd__error(HD_ENOMEM, "store writer: mutex");
  int rc = uv_async_init(loop, &w->async, on_async);
  if (rc != 0) {
    uv_mutex_destroy(&w->mu);
    return hd__error_from_uv(rc, "store writer: async handle");
  }
  w->async.data = w;
  return 0;
}

int hd__writer_submit(hd__writer_t *w, hd__wop_t *op) {
  op->next = NULL;
  op->err = NULL;
  uv_mutex_lock(&w->mu);
  if (w->stopping) {
    uv_mutex_unlock(&w->mu);
    return hd__error(HD_ECLOSED, "store is closing");
  }
  if (w->q_tail != NULL) {
    w->q_tail->next = op;
  } else {
    w->q_head = op;
  }
  w->q_tail = op;
  w->stats.queued++;
  int first = w->q_head == op;
  uv_mutex_unlock(&w->mu);
  /* only when the queue was empty: otherwise a schedule is pending or a batch is running, and
   * its completion takes the rest */
  if (first) uv_async_send(&w->async);
  return 0;
}

void hd__writer_stop(hd__writer_t *w) {
  uv_mutex_lock(&w->mu);
  w->stopping = 1;
  w->held = 0;
  uv_mutex_unlock(&w->mu);
  schedule(w);
}

void hd__writer_stats(hd__writer_t *w, hd__store_stats_t *out) {
  uv_mutex_lock(&w->mu);
  *out = w->stats;
  uv_mutex_unlock(&w->mu);
}

void hd__writer_hold(hd__writer_t *w, int held) {
  uv_mutex_lock(&w->mu);
  w->held = held && !w->stopping;
  uv_mutex_unlock(&w->mu);
  if (!held) uv_async_send(&w->async);
}

void hd__store_run_until(uv_loop_t *loop, const int *flag) {
  while (!*flag) uv_run(loop, UV_RUN_ONCE);
}
