/* The loop a handle runs on: owned loop + thread or the caller's loop, the cross-thread task
 * queue, deferred end-of-iteration work, the shared read buffer and logging (runtime.h). */
#include "runtime.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The runtime whose owned loop this thread runs: how a thread knows it is "the loop thread"
 * without racing on the thread id that uv_thread_create writes. */
static _Thread_local hd__runtime_t *current_runtime;

static void async_cb(uv_async_t *async);
static void check_cb(uv_check_t *check);
static void idle_cb(uv_idle_t *idle) { (void)idle; }

int hd__runtime_create(hd__runtime_t **out, const hd__runtime_options_t *opts) {
  *out = NULL;
  hd__runtime_t *rt = calloc(1, sizeof *rt);
  if (rt == NULL) return hd__error(HD_ENOMEM, "out of memory creating the runtime");
  int rc;
  if (opts->loop != NULL) {
    rt->loop = opts->loop;
    rt->loop_thread = uv_thread_self(); /* rule: created on the caller loop's thread */
  } else {
    rc = uv_loop_init(&rt->owned_loop);
    if (rc != 0) {
      free(rt);
      return hd__error_from_uv(rc, "cannot create the event loop");
    }
    rt->loop = &rt->owned_loop;
    rt->owns_loop = 1;
  }
  if (uv_mutex_init(&rt->mu) != 0) {
    if (rt->owns_loop) uv_loop_close(&rt->owned_loop);
    free(rt);
    return hd__error(HD_ENOMEM, "cannot create a mutex");
  }
  rc = uv_async_init(rt->loop, &rt->async, async_cb);
  if (rc == 0) {
    rt->async.data = rt;
    uv_check_init(rt->loop, &rt->check);
    uv_idle_init(rt->loop, &rt->idle);
    rt->check.data = rt;
    rt->idle.data = rt;
    /* the check handle does not keep the loop alive: only handles with work do */
    uv_check_start(&rt->check, check_cb);
    uv_unref((uv_handle_t *)&rt->check);
  }
  if (rc != 0) {
    uv_mutex_destroy(&rt->mu);
    if (rt->owns_loop) uv_loop_close(&rt->owned_loop);
    free(rt);
    return hd__error_from_uv(rc, "cannot create the loop's wake-up handle");
  }
  rt->log = opts->log;
  rt->log_user_data = opts->log_user_data;
  rt->log_level = opts->log_level;
  rt->name = opts->name ? opts->name : "hyperdown";
  *out = rt;
  return 0;
}

static void runtime_free(hd__runtime_t *rt) {
  uv_mutex_destroy(&rt->mu);
  free(rt->read_buf);
  free(rt);
}

static void loop_thread_main(void *arg) {
  hd__runtime_t *rt = arg;
  /* A write to a socket the peer has reset raises SIGPIPE, whose default action kills the
   * process. Blocked on our own thread, the write just fails with EPIPE; the process's signal
   * dispositions stay the application's (docs/threading.md). */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  current_runtime = rt;
  uv_run(rt->loop, UV_RUN_DEFAULT);
  /* uv_run returns once the runtime is released: every handle is closed. */
  uv_loop_close(rt->loop);
  current_runtime = NULL;
  uv_mutex_lock(&rt->mu);
  int joiner = rt->joiner;
  uv_mutex_unlock(&rt->mu);
  if (!joiner) {
    /* Nobody will join: the thread cleans up after itself (docs/threading.md). */
    pthread_detach(pthread_self());
    runtime_free(rt);
  }
}

int hd__runtime_start(hd__runtime_t *rt) {
  if (!rt->owns_loop) return 0;
  int rc = uv_thread_create(&rt->thread, loop_thread_main, rt);
  if (rc != 0) return hd__error_from_uv(rc, "cannot start the loop thread");
  rt->thread_started = 1;
  return 0;
}

int hd__runtime_on_loop(const hd__runtime_t *rt) {
  if (rt->owns_loop) return current_runtime == rt;
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &rt->loop_thread);
}

void hd__runtime_post(hd__runtime_t *rt, hd__task_t *task) {
  task->next = NULL;
  if (hd__runtime_on_loop(rt)) {
    task->fn(task, 0);
    return;
  }
  uv_mutex_lock(&rt->mu);
  if (rt->task_tail) rt->task_tail->next = task;
  else rt->task_head = task;
  rt->task_tail = task;
  uv_mutex_unlock(&rt->mu);
  uv_async_send(&rt->async);
}

static hd__task_t *take_tasks(hd__runtime_t *rt) {
  uv_mutex_lock(&rt->mu);
  hd__task_t *t = rt->task_head;
  rt->task_head = rt->task_tail = NULL;
  uv_mutex_unlock(&rt->mu);
  return t;
}

static void async_cb(uv_async_t *async) {
  hd__runtime_t *rt = async->data;
  hd__task_t *t = take_tasks(rt);
  while (t != NULL) {
    hd__task_t *next = t->next;
    /* a task may release the runtime (a close): the rest are cancelled there, not run here */
    if (rt->released) {
      t->fn(t, 1);
    } else {
      t->fn(t, 0);
    }
    t = next;
  }
}

void hd__runtime_defer(hd__runtime_t *rt, hd__deferred_t *d) {
  if (d->queued) return;
  d->queued = 1;
  d->next = rt->deferred_head;
  rt->deferred_head = d;
  /* an active idle handle makes the poll phase return at once, so that work deferred from a
   * timer callback (which runs before poll) is not stuck until the next I/O */
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void hd__runtime_undefer(hd__runtime_t *rt, hd__deferred_t *d) {
  if (!d->queued) return;
  for (hd__deferred_t **p = &rt->deferred_head; *p; p = &(*p)->next) {
    if (*p == d) {
      *p = d->next;
      break;
    }
  }
  d->queued = 0;
  d->next = NULL;
}

static void check_cb(uv_check_t *check) {
  hd__runtime_t *rt = check->data;
  /* a snapshot: work deferred while flushing runs in the next iteration */
  hd__deferred_t *d = rt->deferred_head;
  rt->deferred_head = NULL;
  while (d != NULL) {
    hd__deferred_t *next = d->next;
    d->queued = 0;
    d->next = NULL;
    d->fn(d);
    d = next;
  }
  if (rt->deferred_head == NULL && uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_stop(&rt->idle);
}

int hd__runtime_request_close(hd__runtime_t *rt) {
  uv_mutex_lock(&rt->mu);
  int was = rt->close_requested;
  rt->close_requested = 1;
  uv_mutex_unlock(&rt->mu);
  return was ? hd__error(HD_ECLOSED, "the handle is already closing") : 0;
}

int hd__runtime_close(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn, hd_close_cb cb,
                      void *data) {
  int rc = hd__runtime_request_close(rt);
  if (rc != 0) return rc;
  c->cb = cb;
  c->data = data;
  c->task.fn = fn;
  hd__runtime_post(rt, &c->task);
  return 0;
}

int hd__runtime_close_wait(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn) {
  hd__runtime_waiter_t w;
  int rc = hd__runtime_request_close_wait(rt, &w);
  if (rc != 0) return rc;
  c->cb = NULL;
  c->task.fn = fn;
  hd__runtime_post(rt, &c->task);
  hd__runtime_wait(rt, &w); /* `rt` is freed once this returns */
  return 0;
}

int hd__runtime_request_close_wait(hd__runtime_t *rt, hd__runtime_waiter_t *w) {
  if (hd__runtime_on_loop(rt)) {
    return hd__error(HD_ETHREAD, "close_wait called on the handle's own loop thread: it would "
                                 "wait for itself; use the close function with a callback");
  }
  memset(w, 0, sizeof *w);
  w->join = rt->owns_loop;
  if (!w->join) {
    uv_mutex_init(&w->mu);
    uv_cond_init(&w->cv);
  }
  uv_mutex_lock(&rt->mu);
  int was = rt->close_requested;
  if (!was) {
    rt->close_requested = 1;
    if (rt->owns_loop) rt->joiner = 1;
    else rt->waiter = w;
  }
  uv_mutex_unlock(&rt->mu);
  if (was) {
    if (!w->join) {
      uv_cond_destroy(&w->cv);
      uv_mutex_destroy(&w->mu);
    }
    return hd__error(HD_ECLOSED, "the handle is already closing");
  }
  return 0;
}

void hd__runtime_wait(hd__runtime_t *rt, hd__runtime_waiter_t *w) {
  if (w->join) {
    uv_thread_join(&rt->thread);
    runtime_free(rt);
    return;
  }
  /* caller's loop: `rt` is freed by the loop thread; only the waiter is ours */
  uv_mutex_lock(&w->mu);
  while (!w->done) uv_cond_wait(&w->cv, &w->mu);
  uv_mutex_unlock(&w->mu);
  uv_cond_destroy(&w->cv);
  uv_mutex_destroy(&w->mu);
}

static void runtime_handle_closed(uv_handle_t *h) {
  hd__runtime_t *rt = h->data;
  if (--rt->pending_closes > 0) return;
  /* Cancel what is still queued: the handle these tasks refer to is gone. */
  uv_mutex_lock(&rt->mu);
  hd__task_t *t = rt->task_head;
  rt->task_head = rt->task_tail = NULL;
  hd__runtime_waiter_t *w = rt->waiter;
  uv_mutex_unlock(&rt->mu);
  while (t != NULL) {
    hd__task_t *next = t->next;
    t->fn(t, 1);
    t = next;
  }
  if (rt->owns_loop) return; /* the thread (or abort) sees uv_run return and frees */
  runtime_free(rt);
  if (w != NULL) {
    uv_mutex_lock(&w->mu);
    w->done = 1;
    uv_cond_signal(&w->cv);
    uv_mutex_unlock(&w->mu); /* `w` may vanish right after this */
  }
}

void hd__runtime_release(hd__runtime_t *rt) {
  rt->released = 1;
  rt->deferred_head = NULL;
  rt->pending_closes = 3;
  uv_close((uv_handle_t *)&rt->async, runtime_handle_closed);
  uv_close((uv_handle_t *)&rt->check, runtime_handle_closed);
  uv_close((uv_handle_t *)&rt->idle, runtime_handle_closed);
}

void hd__runtime_abort(hd__runtime_t *rt) {
  hd__runtime_release(rt);
  if (rt->owns_loop) {
    /* the thread never ran: run the loop here until every handle (also the caller's, closed
     * before this call) is closed */
    uv_run(rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(rt->loop);
    runtime_free(rt);
  }
}

void hd__runtime_read_alloc(hd__runtime_t *rt, uv_buf_t *buf) {
  if (rt->read_buf == NULL) rt->read_buf = malloc(HD__READ_BUFFER_BYTES);
  if (rt->read_buf != NULL && !rt->read_buf_busy) {
    rt->read_buf_busy = 1;
    *buf = uv_buf_init((char *)rt->read_buf, HD__READ_BUFFER_BYTES);
    return;
  }
  char *p = malloc(HD__READ_BUFFER_BYTES);
  *buf = uv_buf_init(p, p ? HD__READ_BUFFER_BYTES : 0);
}

void hd__runtime_read_free(hd__runtime_t *rt, const uv_buf_t *buf) {
  if (buf->base == NULL) return;
  if ((uint8_t *)buf->base == rt->read_buf) {
    rt->read_buf_busy = 0;
  } else {
    free(buf->base);
  }
}

void hd__log(hd__runtime_t *rt, hd_log_level_t level, const char *fmt, ...) {
  if (!hd__log_enabled(rt, level)) return;
  char line[1024];
  int n = snprintf(line, sizeof line, "%s: ", rt->name);
  if (n < 0) n = 0;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
  va_end(ap);
  rt->log(rt->log_user_data, level, line);
}
