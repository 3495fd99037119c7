/* A server store replaced by another one (a new store id) while the client is away, through the
 * public API (docs/STORAGE.md "Events of several server stores", docs/OPERATIONS.md "Events held
 * for another server store").
 *
 * The scenario: store A has A#1..A#6; the client handles A#1..A#3 (A keeps the reports: never
 * confirmed) and its handler keeps A#4 while the client closes, so A#4..A#6 are still to handle.
 * A's folder is put aside and the server starts on an empty folder: store B, with B#1..B#3 (B
 * keeps the reports too). The client connects to B: A#4..A#6 are handled, in order, before
 * B#1..B#3; no consumption of A goes to B. Then A's folder comes back: the client reports
 * A#1..A#6 to A, which confirms them, and the client forgets them; B's consumptions wait, shown
 * by hd_client_held_stores, until hd_client_purge_store drops them.
 *
 * Events are told apart by their payload, "A#N" or "B#N" (N its seq; label_util's recorders):
 * the numbers of the two stores collide on purpose. A server counts as bad every report of the
 * other store's event, or whose data is not "ack " + its own event's payload, so a consumption
 * of the other store's event under the same number shows. */
#include "harness.h"
#include "label_util.h"

#define WAIT_MS 10000

enum { A = 0, B = 1 };

static const char *const labels[2] = {"A", "B"};

typedef struct world {
  lu_world_t lw;
  char *aside[2];             /* where A's and B's folders wait while the other one runs */
} world_t;

static int world_init(world_t *w) {
  memset(w, 0, sizeof *w);
  if (lu_world_init(&w->lw, "replaced", labels) != 0) return -1;
  w->aside[A] = hdt_path(w->lw.tmp, "store-a");
  w->aside[B] = hdt_path(w->lw.tmp, "store-b");
  return w->aside[A] != NULL && w->aside[B] != NULL ? 0 : -1;
}

static void world_free(world_t *w) {
  lu_world_free(&w->lw);
  free(w->aside[A]);
  free(w->aside[B]);
}

/* ---- steps ---- */

/* Starts the server on the folder of store `label`, keeping the reports if `hold`. */
static int start_store(world_t *w, int label, int hold) {
  w->lw.s.label = label;
  w->lw.s.hold = hold;
  return lu_srv_start(&w->lw.s);
}

/* Starts the client, its handler keeping what it gets if `hold`. */
static int start_client(world_t *w, int hold) {
  w->lw.c.hold_from = hold ? 1 : 0;
  return lu_cli_start(&w->lw.c, &w->lw.s);
}

/* 1 once label#first..label#last were each completed ok exactly once. */
static int handled_once(lu_cli_t *c, int label, int first, int last) {
  for (int n = first; n <= last; n++) {
    if (lu_ok_count(c, label, n) != 1) return 0;
  }
  return 1;
}

/* How many reports of label#first..label#last the server got since it started. */
static int reports_of(lu_srv_t *s, int label, int first, int last) {
  int sum = 0;
  for (int n = first; n <= last; n++) sum += lu_reports(s, label, n);
  return sum;
}

/* With the server stopped: its folder goes aside as `from`'s, and `to`'s comes back (or, with
 * `fresh`, none: an empty folder, a new store). */
static int swap_folder(world_t *w, int from, int to, int fresh) {
  if (rename(w->lw.s.dir, w->aside[from]) != 0) return -1;
  return fresh ? 0 : rename(w->aside[to], w->lw.s.dir);
}

/* Store A with A#1..A#6: A#1..A#3 handled and reported (A keeps the reports), A#4 kept by the
 * handler when the client closes, so A#4..A#6 are still to handle; A's folder goes aside. */
static void with_store_a(world_t *w) {
  CHECK_OK(start_store(w, A, 1));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, A, 1, 3));
  CHECK_OK(start_client(w, 0));
  DCHECK(WAIT_FOR(reports_of(&w->lw.s, A, 1, 3) == 3, WAIT_MS));
  pthread_mutex_lock(&w->lw.c.mu);
  w->lw.c.hold_from = 1;
  pthread_mutex_unlock(&w->lw.c.mu);
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, A, 4, 6));
  DCHECK(WAIT_FOR(lu_held_count(&w->lw.c) == 1 && lu_high_water(&w->lw.c) == 6, WAIT_MS));
  CHECK_OK(lu_cli_stop(&w->lw.c));
  CHECK_OK(lu_srv_stop(&w->lw.s));
  CHECK_OK(swap_folder(w, A, B, 1));
  CHECK(handled_once(&w->lw.c, A, 1, 3) && lu_ok_count(&w->lw.c, A, 4) == 0);
}

/* Store B (a new store id) with B#1..B#3, B keeping the reports: the client holds its first
 * event until it has B's events, then handles A#4..A#6 before B#1..B#3. */
static void then_store_b(world_t *w) {
  CHECK_OK(start_store(w, B, 1));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, B, 1, 3));
  CHECK_OK(start_client(w, 1));
  DCHECK(WAIT_FOR(lu_held_count(&w->lw.c) == 1 && lu_high_water(&w->lw.c) == 3, WAIT_MS));
  lu_cli_release(&w->lw.c);
  DCHECK(WAIT_FOR(handled_once(&w->lw.c, A, 4, 6) && handled_once(&w->lw.c, B, 1, 3), WAIT_MS));
  DCHECK(WAIT_FOR(reports_of(&w->lw.s, B, 1, 3) == 3, WAIT_MS));
  hdt_sleep_ms(100);
  static const int want[] = {1, 2, 3, 4, 5, 6, LU_MAXN + 1, LU_MAXN + 2, LU_MAXN + 3};
  pthread_mutex_lock(&w->lw.c.mu);
  int in_order = w->lw.c.norder == 9;
  for (int i = 0; in_order && i < 9; i++) in_order = w->lw.c.order[i] == want[i];
  pthread_mutex_unlock(&w->lw.c.mu);
  DCHECK(in_order);
  CHECK(reports_of(&w->lw.s, A, 1, LU_MAXN - 1) == 0); /* nothing of A went to B */
  CHECK(w->lw.s.bad == 0 && w->lw.s.premature == 0);
  CHECK_OK(lu_cli_stop(&w->lw.c));
  CHECK_OK(lu_srv_stop(&w->lw.s));
}

/* Back to store A: it gets the reports of A#1..A#6 and confirms them; A#7 is handled. */
static void back_to_store_a(world_t *w) {
  CHECK_OK(swap_folder(w, B, A, 0));
  CHECK_OK(start_store(w, A, 0));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, A, 7, 7));
  CHECK_OK(start_client(w, 0));
  DCHECK(WAIT_FOR(handled_once(&w->lw.c, A, 7, 7) && lu_pending(&w->lw.s) == 0, WAIT_MS));
  for (int n = 1; n <= 7; n++) CHECK(lu_reports(&w->lw.s, A, n) == 1);
  CHECK(reports_of(&w->lw.s, B, 1, LU_MAXN - 1) == 0);
  CHECK(w->lw.s.bad == 0 && w->lw.s.premature == 0 && w->lw.c.bad == 0);
  CHECK(handled_once(&w->lw.c, A, 1, 7) && handled_once(&w->lw.c, B, 1, 3));
  CHECK(lu_high_water(&w->lw.c) == 7);
}

static void on_purged(void *data, int status) { atomic_store((atomic_int *)data, status ? status : 1); }

/* Purges `id`: 1 once purged, or the error the callback got. */
static int purge(lu_cli_t *c, const uint8_t id[HD_STORE_ID_BYTES]) {
  atomic_int done = 0;
  int rc = hd_client_purge_store(c->h, id, on_purged, &done);
  if (rc != 0) return rc;
  return WAIT_FOR(atomic_load(&done) != 0, WAIT_MS) ? atomic_load(&done) : HD_ETIMEDOUT;
}

/* B's consumptions still wait (B kept the reports); an operator sees them and purges them. */
static void purge_store_b(world_t *w) {
  uint8_t ids[2][HD_STORE_ID_BYTES], other[HD_STORE_ID_BYTES];
  uint64_t unhandled[2] = {9, 9}, consumed[2] = {9, 9};
  CHECK(hd_client_held_stores(w->lw.c.h, ids[0], unhandled, consumed, 2) == 1);
  CHECK(unhandled[0] == 0 && consumed[0] == 3);
  CHECK(hd_client_held_stores(w->lw.c.h, NULL, NULL, NULL, 0) == 1);
  hd_client_stats_t st;
  CHECK(hdt_client_stats(w->lw.c.h, &st) == 0 && st.unhandled == 0 && st.consumed == 3);
  memset(other, 0x42, sizeof other);
  CHECK(purge(&w->lw.c, other) == HD_ENOTFOUND);
  CHECK(hd_client_purge_store(w->lw.c.h, NULL, NULL, NULL) == HD_EINVAL);
  CHECK(purge(&w->lw.c, ids[0]) == 1);
  CHECK(hd_client_held_stores(w->lw.c.h, ids[0], unhandled, consumed, 2) == 0);
  CHECK(lu_client_store_empty(&w->lw.c));
  CHECK(purge(&w->lw.c, ids[0]) == HD_ENOTFOUND);
  /* the purge is durable, and A's events are still confirmed as usual */
  CHECK_OK(lu_cli_stop(&w->lw.c));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, A, 8, 8));
  CHECK_OK(start_client(w, 0));
  DCHECK(WAIT_FOR(handled_once(&w->lw.c, A, 8, 8) && lu_pending(&w->lw.s) == 0, WAIT_MS));
  CHECK(hd_client_held_stores(w->lw.c.h, NULL, NULL, NULL, 0) == 0);
  CHECK(handled_once(&w->lw.c, B, 1, 3) && w->lw.s.bad == 0 && w->lw.c.bad == 0);
}

static void replaced_and_back(world_t *w) {
  CHECK_OK(world_init(w));
  int failed = hd_test_failed_checks;
  with_store_a(w);
  if (hd_test_failed_checks != failed) return;
  then_store_b(w);
  if (hd_test_failed_checks != failed) return;
  back_to_store_a(w);
  if (hd_test_failed_checks != failed) return;
  purge_store_b(w);
}

/* Defines the test `name`: body(world), then the world is freed whatever the body's CHECKs did. */
#define REPLACED_TEST(name, body)                                                                 \
  static void name(void) {                                                                        \
    static world_t name##_w;                                                                      \
    body(&name##_w);                                                                              \
    world_free(&name##_w);                                                                        \
  }

REPLACED_TEST(old_store_handled_first_reported_to_it_only_then_purged, replaced_and_back)

#define TESTS(X) X(old_store_handled_first_reported_to_it_only_then_purged)
HD_TEST_MAIN(TESTS)
