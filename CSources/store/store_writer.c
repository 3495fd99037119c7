/* The group-commit writer (store_writer.h). The mutex guards the queue the submitters fill. The
 * loop thread moves up to max_batch ops from its head into the batch list, which then belongs to
 * the pool thread until the work's completion hands it back to the loop. Order is kept end to
 * end (queue order = batch order = completion order), so completions run in submission order. */
#include "store_writer.h"

#include <stdlib.h>
#include <string.h>

static int is_sticky(int code) { return code == HD_EIO || code == HD_ECORRUPT; }

/* Pool thread: runs the batch in one transaction. 0 once committed, else the failure's code
 * (with its detail as this thread's last error) after a rollback. */
static int commit_batch(hd__writer_t *w) {
  const hd__writer_hooks_t *h = w->hooks;
  int rc = h->begin(w->ctx, w->batch_n, w->batch_relaxed);
  if (rc == 0) {
    hd__queue_t *q;
    hd__queue_foreach(q, &w->batch) {
      hd__wop_t *op = hd__container_of(q, hd__wop_t, node);
      rc = op->type->run(w->ctx, op);
      if (rc != 0) break;
    }
  }
  if (rc == 0) rc = h->before_commit(w->ctx);
  if (rc == 0) rc = h->commit(w->ctx);
  if (rc == 0) {
    h->after_commit(w->ctx);
    return 0;
  }
  hd__error_state_t e;
  hd__error_save(&e); /* rollback may overwrite this thread's last error */
  h->rollback(w->ctx);
  hd__error_restore(&e);
  return rc;
}

/* Pool thread: one batch, or the final work that closes the connection. */
static void work_cb(uv_work_t *req) {
  hd__writer_t *w = req->data;
  if (hd__queue_empty(&w->batch)) {
    w->hooks->thread_exit(w->ctx);
    return;
  }
  int rc = w->sticky.code;
  if (rc != 0) {
    hd__error(rc, "store failed earlier and accepts no more writes: %s", w->sticky.message);
  } else {
    rc = commit_batch(w);
    /* After a failed fsync the kernel may have dropped the dirty pages: retrying could report
     * data durable that is not. Refuse further writes instead (the process restarts cleanly). */
    if (is_sticky(rc)) hd__error_save(&w->sticky);
  }
  w->batch_status = rc;
  if (rc != 0) hd__error_save(&w->batch_error);
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
  if (hd__queue_empty(&w->batch)) { /* the final work: the connection is closed */
    w->exited = 1;
    uv_close((uv_handle_t *)&w->async, on_async_closed);
    return;
  }
  /* A completion may stop the writer or submit, which schedules the next batch at once: take
   * this one's ops and outcome out of the writer first. */
  hd__queue_t done;
  hd__queue_init(&done);
  hd__queue_move(&w->batch, &done);
  int rc = w->batch_status;
  hd__error_state_t error;
  if (rc != 0) error = w->batch_error;
  uv_mutex_lock(&w->mu);
  if (rc == 0) {
    w->stats.commits++;
    w->stats.ops_done += w->batch_n;
  } else {
    w->stats.ops_failed += w->batch_n;
  }
  w->stats.queued -= w->batch_n;
  uv_mutex_unlock(&w->mu);
  hd__queue_t *q;
  while ((q = hd__queue_pop(&done)) != NULL) {
    hd__wop_t *op = hd__container_of(q, hd__wop_t, node);
    if (rc != 0) hd__error_restore(&error); /* each callback sees the detail */
    op->type->done(w->ctx, op, rc);
  }
  schedule(w);
}

/* Loop thread: puts the next batch (everything queued, at most max_batch, so that one giant
 * batch cannot delay every completion and grow the WAL without limit) on the pool, or, once
 * stopping and drained, the final work. */
static void schedule(hd__writer_t *w) {
  if (w->running || w->exited) return;
  size_t n = 0;
  int relaxed = 1;
  uv_mutex_lock(&w->mu);
  hd__queue_t *q;
  while (!w->held && n < w->max_batch && (q = hd__queue_pop(&w->queue)) != NULL) {
    hd__queue_insert_tail(&w->batch, q);
    relaxed &= hd__container_of(q, hd__wop_t, node)->type->relaxed;
    n++;
  }
  int finish = w->stopping && hd__queue_empty(&w->queue);
  uv_mutex_unlock(&w->mu);
  if (n == 0 && !finish) return;
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
  hd__queue_init(&w->queue);
  hd__queue_init(&w->batch);
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

int hd__writer_submit(hd__writer_t *w, hd__wop_t *op, const hd__wop_type_t *type,
                      hd__store_cb cb, void *cb_data) {
  op->type = type;
  op->cb = cb;
  op->cb_data = cb_data;
  op->value = 0;
  uv_mutex_lock(&w->mu);
  if (w->stopping) {
    uv_mutex_unlock(&w->mu);
    free(op);
    return hd__error(HD_ECLOSED, "store is closing");
  }
  int first = hd__queue_empty(&w->queue);
  hd__queue_insert_tail(&w->queue, &op->node);
  w->stats.queued++;
  uv_mutex_unlock(&w->mu);
  /* only when the queue was empty: otherwise a schedule is pending or a batch is running, and
   * its completion takes the rest */
  if (first) uv_async_send(&w->async);
  return 0;
}

void hd__wop_done(void *ctx, hd__wop_t *op, int status) {
  hd__store_cb cb = op->cb;
  void *data = op->cb_data;
  uint64_t value = op->value;
  free(op);
  if (cb != NULL) cb(data, status, value);
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
