/* The loop layer's cross-thread mechanisms on a real runtime with its own thread: call-and-wait
 * with the error's detail carried back, posted sends, the anchor before and after its owner
 * detached, close_wait. */
#include "harness.h"

#include "anchor.h"
#include "runtime.h"

#include <stdatomic.h>

typedef struct fixture {
  hd__runtime_t *rt;
  hd__closer_t closer;
} fixture_t;

static fixture_t fx;

static void release_task(hd__task_t *t, int cancelled) {
  (void)t;
  (void)cancelled;
  hd__runtime_release(fx.rt);
}

static int start(void) {
  hd__runtime_options_t ro = {NULL, NULL, NULL, HD_LOG_ERROR, "test"};
  int rc = hd__runtime_create(&fx.rt, &ro);
  if (rc == 0) rc = hd__runtime_start(fx.rt);
  return rc;
}

static int stop(void) { return hd__runtime_close_wait(fx.rt, &fx.closer, release_task); }

static int on_loop_fails(void *arg) {
  *(int *)arg = hd__runtime_on_loop(fx.rt);
  return hd__error(HD_ESTORE, "the detail from the loop thread");
}

static int on_loop_counts(void *arg) { return ++*(int *)arg; }

static void test_call_runs_on_the_loop_and_brings_the_detail_back(void) {
  CHECK_OK(start());
  int on_loop = 0;
  hd_clear_error();
  CHECK_RC(hd__runtime_call(fx.rt, on_loop_fails, &on_loop), HD_ESTORE);
  CHECK(on_loop == 1);
  CHECK(strcmp(hd_last_error_message(), "the detail from the loop thread") == 0);
  int n = 41;
  CHECK(hd__runtime_call(fx.rt, on_loop_counts, &n) == 42 && n == 42);
  CHECK_OK(stop());
}

static atomic_int sent_count;

static int record_send(void *owner, const uint8_t *key, uint8_t type, const uint8_t *body,
                       size_t len) {
  (void)owner;
  if (key == NULL || key[0] != 0xab || type != 7 || len != 3 || memcmp(body, "abc", 3) != 0) {
    return hd__error(HD_EINVAL, "unexpected message");
  }
  atomic_fetch_add(&sent_count, 1);
  return 0;
}

static int read_sent(void *arg) {
  *(int *)arg = atomic_load(&sent_count);
  return 0;
}

static void test_posted_sends_copy_and_run_in_order(void) {
  CHECK_OK(start());
  atomic_store(&sent_count, 0);
  uint8_t key[32] = {0xab};
  char body[4] = "abc";
  for (int i = 0; i < 100; i++) CHECK_OK(hd__runtime_send(fx.rt, record_send, NULL, key, 7, (uint8_t *)body, 3));
  body[0] = 'x'; /* the posted copies are not affected */
  int seen = 0;
  CHECK_OK(hd__runtime_call(fx.rt, read_sent, &seen)); /* tasks run in order: all sent before */
  CHECK(seen == 100);
  CHECK_OK(stop());
}

typedef struct probe {
  hd__task_t task;
  atomic_int ran, cancelled, on_loop;
} probe_t;

static void probe_run(hd__task_t *t, int cancelled) {
  probe_t *p = hd__container_of(t, probe_t, task);
  atomic_store(&p->on_loop, hd__runtime_on_loop(fx.rt));
  atomic_fetch_add(cancelled ? &p->cancelled : &p->ran, 1);
}

typedef struct detach_call {
  hd__anchor_t *a;
} detach_call_t;

static int detach_on_loop(void *arg) {
  hd__anchor_detach(((detach_call_t *)arg)->a);
  return 0;
}

static void test_anchor_posts_while_attached_and_refuses_after(void) {
  CHECK_OK(start());
  int owner = 1;
  hd__anchor_t *a = hd__anchor_new(fx.rt, &owner);
  CHECK(a != NULL && hd__anchor_attached(a));
  hd__anchor_ref(a); /* an object the application holds */
  probe_t p = {.task.fn = probe_run};
  CHECK(hd__anchor_post(a, &p.task) == 0); /* posted from this thread */
  int dummy = 0;
  CHECK(hd__runtime_call(fx.rt, on_loop_counts, &dummy) == 1); /* after the posted task */
  CHECK(atomic_load(&p.ran) == 1 && atomic_load(&p.on_loop) == 1);
  detach_call_t d = {a};
  CHECK_OK(hd__runtime_call(fx.rt, detach_on_loop, &d));
  CHECK(!hd__anchor_attached(a) && a->owner == NULL);
  CHECK(hd__anchor_post(a, &p.task) == -1); /* the owner is gone: nothing runs */
  CHECK(atomic_load(&p.ran) == 1);
  hd__anchor_unref(a); /* the last reference frees it (valgrind checks) */
  CHECK_OK(stop());
}

static void test_close_wait_twice_and_on_the_loop(void) {
  CHECK_OK(start());
  CHECK_OK(stop());
  /* a runtime is gone after close_wait; a second runtime still works */
  CHECK_OK(start());
  int n = 0;
  CHECK(hd__runtime_call(fx.rt, on_loop_counts, &n) == 1);
  CHECK_OK(stop());
}

#define TESTS(X)                                                                                  \
  X(test_call_runs_on_the_loop_and_brings_the_detail_back)                                        \
  X(test_posted_sends_copy_and_run_in_order)                                                      \
  X(test_anchor_posts_while_attached_and_refuses_after)                                           \
  X(test_close_wait_twice_and_on_the_loop)
HD_TEST_MAIN(TESTS)
