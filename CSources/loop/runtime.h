/* The loop a handle runs on (docs/threading.md).
 *
 * Each server or client owns one runtime. The runtime either owns a uv_loop_t and a thread that
 * runs it, or wraps a loop the caller runs (Node's), in which case it starts no thread. Work from
 * other threads reaches the loop through a mutex-protected queue of tasks and one uv_async_t; a
 * call made on the loop thread runs inline. The runtime also offers "deferred" work that runs
 * once at the end of the current loop iteration (used to coalesce writes), one shared read buffer
 * for all connections (a connection that is idle owns no read memory), and the log helper. */
#ifndef HD_RUNTIME_H
#define HD_RUNTIME_H

#include "common.h"
#include "queue.h"
#include "waiter.h"

#include <uv.h>

/* A unit of work posted to the loop. `cancelled` is 1 when the runtime is being released before
 * the task could run: the task must then only free its own memory. Tasks are intrusive: embed
 * one in a struct of your own and recover it with hd__container_of. */
typedef struct hd__task hd__task_t;
typedef void (*hd__task_fn)(hd__task_t *task, int cancelled);
struct hd__task {
  hd__queue_t node;
  hd__task_fn fn;
};

/* A handle's close: the work that closes it (on the loop thread) and the callback to run once it
 * is closed. */
typedef struct hd__closer {
  hd__task_t task;
  hd_close_cb cb;
  void *data;
} hd__closer_t;

/* Work to run once after the current loop iteration's I/O callbacks (uv_check), e.g. flushing
 * the writes a connection queued during this iteration. Intrusive, like tasks. */
typedef struct hd__deferred hd__deferred_t;
typedef void (*hd__deferred_fn)(hd__deferred_t *d);
struct hd__deferred {
  hd__queue_t node;
  hd__deferred_fn fn;
  int queued;
};
/* Readies `d` to run `fn` when deferred (before the first hd__runtime_defer/undefer). */
void hd__deferred_init(hd__deferred_t *d, hd__deferred_fn fn);

typedef struct hd__runtime_options {
  uv_loop_t *loop;        /* caller-owned loop, or NULL: own a loop and a thread */
  hd_log_cb log;
  void *log_user_data;
  hd_log_level_t log_level;
  const char *name;       /* "server" or "client": prefixes log lines */
} hd__runtime_options_t;

#define HD__READ_BUFFER_BYTES 65536

typedef struct hd__runtime {
  uv_loop_t *loop;
  uv_loop_t owned_loop;
  int owns_loop;
  uv_thread_t thread;
  uv_thread_t loop_thread; /* the thread that runs `loop` (ours, or the creator's) */
  int thread_started;

  uv_mutex_t mu;           /* guards tasks, close_requested, joiner, waiter */
  hd__queue_t tasks;
  uv_async_t async;
  int close_requested;     /* the handle's close was called: further closes get HD_ECLOSED */
  int joiner;              /* close_wait will join the owned thread: do not detach */
  hd__waiter_t *waiter;    /* close_wait on a caller-owned loop */
  int pending_closes;      /* loop handles of the runtime still closing */
  int released;

  uv_check_t check;
  uv_idle_t idle;          /* active while deferred work is queued, so poll does not block */
  hd__queue_t deferred;

  uint8_t *read_buf;       /* shared by every connection of this runtime */
  int read_buf_busy;

  hd_log_cb log;
  void *log_user_data;
  hd_log_level_t log_level;
  const char *name;
} hd__runtime_t;

/* Creates the runtime and its loop handles but does not start the thread yet, so that the
 * caller can set up its libuv handles (bind, listen, connect) synchronously first. With a
 * caller-owned loop this must be called on that loop's thread (HD_ETHREAD is not detectable
 * here; docs/threading.md states the rule). */
int hd__runtime_create(hd__runtime_t **out, const hd__runtime_options_t *opts);
/* Starts the loop thread (no-op for a caller-owned loop). On failure the runtime must be
 * destroyed with hd__runtime_abort. */
int hd__runtime_start(hd__runtime_t *rt);
/* Undoes a create whose start never happened or failed: closes the loop handles, runs the loop
 * until they are gone (owned loop) and frees. Only for error paths of *_create. */
void hd__runtime_abort(hd__runtime_t *rt);

/* 1 if the calling thread is the loop thread. */
int hd__runtime_on_loop(const hd__runtime_t *rt);
/* Runs `task` on the loop: inline when called on the loop thread, else queued and woken. */
void hd__runtime_post(hd__runtime_t *rt, hd__task_t *task);
/* Queues `d` to run after this iteration's I/O (once, even if deferred several times). Loop
 * thread only. */
void hd__runtime_defer(hd__runtime_t *rt, hd__deferred_t *d);
/* Removes `d` if queued (a connection that closes). Loop thread only. */
void hd__runtime_undefer(hd__runtime_t *rt, hd__deferred_t *d);

/* 1 once the handle's close was requested (it takes no new work). Any thread. */
int hd__runtime_closing(hd__runtime_t *rt);

/* Runs fn(arg) on the loop and returns its result, with its error detail, on the calling thread:
 * inline on the loop thread, else posted and waited for. HD_ECLOSED (fn not run) once the handle
 * is closing or when the runtime is released before the task ran. */
int hd__runtime_call(hd__runtime_t *rt, int (*fn)(void *arg), void *arg);

/* Copies a message and has fn(owner, key, type, body, len) send it from the loop thread: at once
 * when called there (its result is returned), else posted (0 once queued; a failure there is
 * logged at debug level and dropped, e.g. a peer that left meanwhile). `key` (32 bytes) may be
 * NULL. */
typedef int (*hd__send_fn)(void *owner, const uint8_t *key, uint8_t type, const uint8_t *body,
                           size_t len);
int hd__runtime_send(hd__runtime_t *rt, hd__send_fn fn, void *owner, const uint8_t *key,
                     uint8_t type, const uint8_t *body, size_t len);
/* The public hd_*_close of a handle: marks the runtime closing (HD_ECLOSED if it already was,
 * and then nothing else changes), records `cb`, and posts `fn` to do the work. */
int hd__runtime_close(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn, hd_close_cb cb,
                      void *data);
/* hd_*_close_wait: the same without a callback, then blocks until the runtime is released (an
 * owned loop's thread is joined; a caller's loop signals a waiter). HD_ETHREAD on the loop
 * thread. */
int hd__runtime_close_wait(hd__runtime_t *rt, hd__closer_t *c, hd__task_fn fn);
/* The handle is gone: close the loop handles; cancel queued tasks. With an owned loop the
 * thread then ends (joined by the waiter or detached); memory is freed when all is closed.
 * Loop thread only; `rt` must not be used after. */
void hd__runtime_release(hd__runtime_t *rt);

/* The shared read buffer for alloc_cb (falls back to malloc if already lent out, which libuv
 * never does for one loop; kept for safety) and its release in read_cb. */
void hd__runtime_read_alloc(hd__runtime_t *rt, uv_buf_t *buf);
void hd__runtime_read_free(hd__runtime_t *rt, const uv_buf_t *buf);

/* One log line to the log callback if `level` passes the filter. Loop thread (or the creating
 * thread during create). */
void hd__log(hd__runtime_t *rt, hd_log_level_t level, const char *fmt, ...) HD__PRINTF(3, 4);
static inline int hd__log_enabled(const hd__runtime_t *rt, hd_log_level_t level) {
  return rt->log != NULL && level <= rt->log_level;
}

#endif
