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
  hd__queue_init(&rt->tasks);
  hd__queue_init(&rt->deferred);
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
  if (hd__runtime_on_loop(rt)) {
    task->fn(task, 0);
    return;
  }
  uv_mutex_lock(&rt->mu);
  hd__queue_insert_tail(&rt->tasks, &task->node);
  uv_mutex_unlock(&rt->mu);
  uv_async_send(&rt->async);
}

/* Runs (or, with `cancelled`, cancels) every task in `q`, which the caller took from rt->tasks. */
static void run_tasks(hd__runtime_t *rt, hd__queue_t *q, int cancelled) {
  hd__queue_t *n;
  while ((n = hd__queue_pop(q)) != NULL) {
    hd__task_t *t = hd__container_of(n, hd__task_t, node);
    /* a task may release the runtime (a close): the rest are cancelled there, not run here */
    t->fn(t, cancelled || rt->released);
  }
}

static void async_cb(uv_async_t *async) {
  hd__runtime_t *rt = async->data;
  hd__queue_t q;
  hd__queue_init(&q);
  uv_mutex_lock(&rt->mu);
  hd__queue_move(&rt->tasks, &q);
  uv_mutex_unlock(&rt->mu);
  run_tasks(rt, &q, 0);
}

void hd__deferred_init(hd__deferred_t *d, hd__deferred_fn fn) {
  hd__queue_init(&d->node);
  d->fn = fn;
  d->queued = 0;
}

void hd__runtime_defer(hd__runtime_t *rt, hd__deferred_t *d) {
  if (d->queued) return;
  d->queued = 1;
  hd__queue_insert_tail(&rt->deferred, &d->node);
  /* an active idle handle makes the poll phase return at once, so that work deferred from a
   * timer callback (which runs before poll) is not stuck until the next I/O */
  if (!uv_is_active((uv_handle_t *)&rt->idle)) uv_idle_start(&rt->idle, idle_cb);
}

void hd__runtime_undefer(hd__runtime_t *rt, hd__deferred_t *d) {
  (void)rt;
  if (!d->queued) return;
  hd__queue_remove(&d->node);
  d->queued = 0;
}

static void check_cb(uv_check_t *check) {
  hd__runtime_t *rt = check->data;
  /* a snapshot: work deferred while flushing runs in the next iteration */
  hd__queue_t q;
  hd__queue_init(&q);
  hd__queue_move(&rt->deferred, &q);
  hd__queue_t *n;
  while ((n = hd__queue_pop(&q)) != NULL) {
    hd__deferred_t *d = hd__container_of(n, hd__deferred_t, node);
    d->queued = 0;
    d->fn(d);
  }
  if (hd__queue_empty(&rt->deferred) && uv_is_active((uv_handle_t *)&rt->idle)) {
    uv_idle_stop(&rt->idle);
  }
}

int hd__runtime_closing(hd__runtime_t *rt) {
  uv_mutex_lock(&rt->mu);
  int closing = rt->close_requested;
  uv_mutex_unlock(&rt->mu);
  return closing;
}

/* ---- Calls from other threads --------------------------------------------------------------- */

typedef struct call_task {
  hd__task_t task;
  int (*fn)(void *arg);
  void *arg;
  hd__waiter_t waiter;
} call_task_t;

static void call_task_run(hd__task_t *t, int cancelled) {
  call_task_t *c = hd__container_of(t, call_task_t, task);
  int rc = cancelled ? hd__error(HD_ECLOSED, "the handle closed") : c->fn(c->arg);
  hd__waiter_signal(&c->waiter, rc, 0); /* `c` lives on the waiting thread's stack */
}

int hd__runtime_call(hd__runtime_t *rt, int (*fn)(void *arg), void *arg) {
  if (hd__runtime_on_loop(rt)) return fn(arg);
  if (hd__runtime_closing(rt)) return hd__error(HD_ECLOSED, "the handle is closing");
  call_task_t c = {.fn = fn, .arg = arg};
  int rc = hd__waiter_init(&c.waiter);
  if (rc != 0) return rc;
  c.task.fn = call_task_run;
  hd__runtime_post(rt, &c.task); /* run, or cancelled at release: the waiter hears either way */
  return hd__waiter_wait(&c.waiter, NULL);
}

typedef struct send_task {
  hd__task_t task;
  hd__runtime_t *rt;
  hd__send_fn fn;
  void *owner;
  int has_key;
  uint8_t key[32];
  uint8_t type;
  size_t len;
  uint8_t body[];
} send_task_t;

static void send_task_run(hd__task_t *t, int cancelled) {
  send_task_t *st = hd__container_of(t, send_task_t, task);
  if (!cancelled &&
      st->fn(st->owner, st->has_key ? st->key : NULL, st->type, st->body, st->len) != 0) {
    hd__log(st->rt, HD_LOG_DEBUG, "posted send dropped: %s", hd_last_error_message());
  }
  free(st);
}

int hd__runtime_send(hd__runtime_t *rt, hd__send_fn fn, void *owner, const uint8_t *key,
                     uint8_t type, const uint8_t *body, size_t len) {
  if (hd__runtime_on_loop(rt)) return fn(owner, key, type, body, len);
  send_task_t *st = malloc(sizeof *st + len);
  if (st == NULL) return hd__error(HD_ENOMEM, "out of memory posting a message");
  st->task.fn = send_task_run;
  st->rt = rt;
  st->fn = fn;
  st->owner = owner;
  st->has_key = key != NULL;
  if (key != NULL) memcpy(st->key, key, sizeof st->key);
  st->type = type;
  st->len = len;
  if (len) memcpy(st->body, body, len);
  hd__runtime_post(rt, &st->task);
  return 0;
}

/* ---- Close ---------------------------------------------------------------------------------- */

int hd__runtime_close(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn, hd_close_cb cb,
                      void *data) {
  uv_mutex_lock(&rt->mu);
  int was = rt->close_requested;
  rt->close_requested = 1;
  uv_mutex_unlock(&rt->mu);
  if (was) return hd__error(HD_ECLOSED, "the handle is already closing");
  c->cb = cb;
  c->data = data;
  c->task.fn = fn;
  hd__runtime_post(rt, &c->task);
  return 0;
}

int hd__runtime_close_wait(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn) {
  if (hd__runtime_on_loop(rt)) {
    return hd__error(HD_ETHREAD, "close_wait called on the handle's own loop thread: it would "
                                 "wait for itself; use the close function with a callback");
  }
  /* an owned loop's thread is joined; a caller's loop frees the runtime and signals us */
  hd__waiter_t w;
  int join = rt->owns_loop;
  if (!join) {
    int rc = hd__waiter_init(&w);
    if (rc != 0) return rc;
  }
  uv_mutex_lock(&rt->mu);
  int was = rt->close_requested;
  if (!was) {
    rt->close_requested = 1;
    if (join) rt->joiner = 1;
    else rt->waiter = &w;
  }
  uv_mutex_unlock(&rt->mu);
  if (was) {
    if (!join) hd__waiter_destroy(&w);
    return hd__error(HD_ECLOSED, "the handle is already closing");
  }
  c->cb = NULL;
  c->task.fn = fn;
  hd__runtime_post(rt, &c->task);
  if (join) {
    uv_thread_join(&rt->thread);
    runtime_free(rt);
  } else {
    hd__waiter_wait(&w, NULL); /* `rt` is freed by the loop thread before the signal */
  }
  return 0;
}

static void runtime_handle_closed(uv_handle_t *h) {
  hd__runtime_t *rt = h->data;
  if (--rt->pending_closes > 0) return;
  /* Cancel what is still queued: the handle these tasks refer to is gone. */
  hd__queue_t q;
  hd__queue_init(&q);
  uv_mutex_lock(&rt->mu);
  hd__queue_move(&rt->tasks, &q);
  hd__waiter_t *w = rt->waiter;
  uv_mutex_unlock(&rt->mu);
  run_tasks(rt, &q, 1);
  if (rt->owns_loop) return; /* the thread (or abort) sees uv_run return and frees */
  runtime_free(rt);
  if (w != NULL) hd__waiter_signal(w, 0, 0); /* `w` may vanish right after this */
}

void hd__runtime_release(hd__runtime_t *rt) {
  rt->released = 1;
  /* deferred work belongs to objects the handle has freed by now: forget it unread */
  hd__queue_init(&rt->deferred);
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
