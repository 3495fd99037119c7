/* Authorization requests (hd_authorization_t): the server's question "may this key connect?",
 * asked after the client's message 1 and answered by the application from any thread, once.
 *
 * A request holds two references: the application's, until its answer has been applied on the
 * loop (or found nothing to apply), and the connection's, until the connection got its answer,
 * timed out or closed. The application answers once: the answer may free the request, so a
 * second one cannot be told from a first. The answer reaches the loop through the server's
 * anchor (anchor.h), so a request answered after the server finished only frees itself. */
#include "authorize.h"

#include <stdatomic.h>
#include <stdlib.h>

enum { ANSWER_NONE = 0, ANSWER_ALLOW = 1, ANSWER_DENY = 2 };

struct hd_authorization {
  hd__task_t task;     /* applies the answer on the loop */
  hd__anchor_t *anchor;
  hd__conn_t *conn;    /* loop thread: NULL once the connection let go */
  atomic_int answer;
  atomic_int refs;
};

static void request_unref(hd_authorization_t *r) {
  if (atomic_fetch_sub(&r->refs, 1) != 1) return;
  hd__anchor_unref(r->anchor);
  free(r);
}

static void detach_conn(hd_authorization_t *r) {
  r->conn->admission = NULL;
  r->conn = NULL;
  request_unref(r);
}

static void apply_answer(hd__task_t *t, int cancelled) {
  hd_authorization_t *r = hd__container_of(t, hd_authorization_t, task);
  if (!cancelled && r->conn != NULL) {
    hd__conn_t *c = r->conn;
    detach_conn(r);
    int allow = atomic_load(&r->answer) == ANSWER_ALLOW;
    hd__conn_admit(c, allow, "the authorization callback denied its key");
  }
  request_unref(r);
}

hd_authorization_t *hd__authorization_new(hd__anchor_t *anchor, hd__conn_t *c) {
  hd_authorization_t *r = calloc(1, sizeof *r);
  if (r == NULL) {
    hd__error(HD_ENOMEM, "out of memory asking for an authorization");
    return NULL;
  }
  r->task.fn = apply_answer;
  r->anchor = anchor;
  hd__anchor_ref(anchor);
  r->conn = c;
  atomic_init(&r->answer, ANSWER_NONE);
  atomic_init(&r->refs, 2);
  c->admission = r;
  return r;
}

void hd__authorization_drop(hd__conn_t *c) {
  hd_authorization_t *r = c->admission;
  if (r != NULL) detach_conn(r);
}

static int answer(hd_authorization_t *r, int value) {
  if (r == NULL) return hd__error(HD_EINVAL, "request is NULL");
  /* read by apply_answer on the loop: the post (under the runtime's lock) orders the two */
  atomic_store(&r->answer, value);
  /* inline on the loop thread, else posted; after the server finished nothing is left to tell */
  if (hd__anchor_post(r->anchor, &r->task) < 0) request_unref(r);
  return 0;
}

int hd_authorization_allow(hd_authorization_t *request) { return answer(request, ANSWER_ALLOW); }

int hd_authorization_deny(hd_authorization_t *request) { return answer(request, ANSWER_DENY); }
