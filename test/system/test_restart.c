/* Restart of the server and, separately, of the client at every stage of an event's life, through
 * the public API. "Restart" = an orderly close (hd_*_close_wait) and a create again on the same
 * data_dir (the server on the same port, so the client redials the same address). Crashes
 * (SIGKILL) are test_crash.c's.
 *
 * Stages of one event (DESIGN.md "Delivery semantics"):
 *   stored     the server committed it; the user is offline (or has not received it yet)
 *   delivered  the client stored it and handed it to the handler, which has not completed
 *   handled    the handler completed ok: the client recorded it consumed (durably); the server
 *              has not received the report yet
 *   reported   the server received the report and called on_consumed, which has not completed
 *   confirmed  on_consumed completed ok: the server deleted it and sent DONE; the client forgot it
 *
 * Expectations, per stage and side restarted (h = handler calls, c = on_consumed calls per event;
 * "once" means exactly once; at the end of every test both stores are empty and no event is lost):
 *
 *   SERVER restarted
 *   stored     h once, c once; numbering goes on after the restart (the next add gets seq 4).
 *   delivered  the client keeps the event in its handler across the server's absence: h once
 *              (the client store survived), c once.
 *   handled    the client completes while the server is away (events it received are handled
 *              without the server); the report goes out on reconnect: h once, c once.
 *   reported   on_consumed was called but not completed when the server closed: the event is
 *              still pending after the restart and the client reports it again, so c twice
 *              (at least once before confirmation: allowed), h once.
 *   confirmed  nothing runs again: no h, no c after the restart (DONE is final); the pause set
 *              before the restart is still in force; the next add gets the next seq, not a reused one.
 *
 *   CLIENT restarted
 *   stored     the client was closed before the events were added: h once, c once.
 *   delivered  the handler had not completed when the client closed (completing it after the
 *              close only frees it): the same event is handed to the handler again after the
 *              restart (at least once: required), so h twice for that event, once for those behind it
 *              that were stored but not yet handed out; the new instance receives nothing again
 *              (its store had them all); c once.
 *   handled    consumed while the server was away, then the client closed: not handled again
 *              after the restart (h once); reported on reconnect: c once.
 *              A racing variant closes the client right after its handler completed, without
 *              waiting for DONE: h once, c once (a report of an event the server already deleted is
 *              confirmed at once, without a callback).
 *   reported   on_consumed holds the batch; the client closes; the batch completes ok while the
 *              client is away (deleted); the client comes back and reports again: confirmed at
 *              once, c once, h once. Variant: the batch is still held when the client comes back:
 *              the server may call on_consumed again (c once or twice), never after an ok.
 *   confirmed  nothing runs again after the restart: no h, no c; the client's store is empty.
 *
 * The recorders (delivery_util.h) also flag, whatever the stage: a handler call for an event
 * already completed ok (client store intact: never allowed here), an on_consumed call for an
 * event already completed ok (never allowed after confirmation), a wrong payload or client data,
 * and an order violation. */
#include "harness.h"
#include "delivery_util.h"

typedef struct rig {
  du_server_t s;
  du_client_t c;
  int on;
  uint8_t user[32];
} rig_t;

#define CAP 64

static int rig_init(rig_t *r, int start_server) {
  memset(r, 0, sizeof *r);
  hd_keypair_t skp, ukp;
  hd_keypair_generate(&skp);
  hd_keypair_generate(&ukp);
  memcpy(r->user, ukp.public_key, 32);
  du_server_init(&r->s, "server", &skp, hdt_mkdtemp("rs-server"), CAP);
  du_client_init(&r->c, "client", 1, &ukp, skp.public_key, hdt_mkdtemp("rs-client"), CAP);
  r->on = 1;
  if (r->s.dir == NULL || r->c.dir == NULL) return -1;
  du_server_add_user(&r->s, ukp.public_key, 1);
  if (start_server && du_server_start(&r->s) != 0) return -1;
  du_client_set_addr(&r->c, r->s.port);
  return 0;
}

static void rig_free(rig_t *r) {
  if (!r->on) return;
  du_client_stop(&r->c);
  du_server_free(&r->s);
  du_client_free(&r->c);
  r->on = 0;
}

static int restart_server(rig_t *r) {
  int rc = du_server_stop(&r->s);
  if (rc != 0) return rc;
  return du_server_start(&r->s);
}

static int restart_client(rig_t *r) {
  int rc = du_client_stop(&r->c);
  if (rc != 0) return rc;
  return du_client_start(&r->c);
}

/* Everything done: 1..n handled ok once, reported `c_times` times each, both stores empty. */
#define EXPECT_DONE(r, n, c_times)                                                                \
  do {                                                                                            \
    DCHECK(WAIT_FOR(du_client_total_ok(&(r)->c) >= (long)(n), 10000));                                 \
    DCHECK(du_client_all_ok_once(&(r)->c, 1, (n)));                                               \
    DCHECK(WAIT_FOR(du_server_pending_total(&(r)->s) == 0, 10000));                                \
    DCHECK(WAIT_FOR(du_client_store_empty(&(r)->c), 10000));                                       \
    hdt_sleep_ms(100);                                                                             \
    DCHECK(du_server_calls_are(&(r)->s, 0, 1, (n), (c_times)));                                   \
    DCHECK(du_client_clean(&(r)->c));                                                             \
    DCHECK(du_server_clean(&(r)->s));                                                             \
  } while (0)

/* =========================== server restarted =========================== */

static void srv_stored_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  CHECK(du_server_pending(&r->s, r->user) == 3);
  CHECK_OK(restart_server(r));
  CHECK(du_server_pending(&r->s, r->user) == 3);
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 4, 1, 0)); /* numbering goes on: seq 4 */
  CHECK_OK(du_client_start(&r->c));
  EXPECT_DONE(r, 4, 1);
  for (uint64_t q = 1; q <= 4; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void server_restart_stored(void) {
  rig_t r;
  srv_stored_body(&r);
  rig_free(&r);
}

static void srv_delivered_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  r->c.mode = DU_HOLD;
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_nheld(&r->c) == 1, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.events_received == 3, 5000));
  int conn_before = atomic_load(&r->c.connected);
  CHECK_OK(restart_server(r));
  CHECK(du_server_pending(&r->s, r->user) == 3);
  DCHECK(WAIT_FOR(atomic_load(&r->c.connected) > conn_before && du_client_is_connected(&r->c), 5000));
  hdt_sleep_ms(100);
  CHECK(du_client_total_calls(&r->c) == 1); /* still the one held call: no second hand-out */
  CHECK_OK(du_client_stats(&r->c, &st));
  CHECK(st.events_received == 3 && st.unhandled == 3);
  r->c.mode = DU_OK;
  CHECK(du_client_release(&r->c, 1) == 1);
  EXPECT_DONE(r, 3, 1);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void server_restart_delivered(void) {
  rig_t r;
  srv_delivered_body(&r);
  rig_free(&r);
}

static void srv_handled_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  r->c.mode = DU_HOLD;
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_nheld(&r->c) == 1, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.events_received == 3, 5000));
  CHECK_OK(du_server_stop(&r->s));
  /* the server is away: the client handles what it holds */
  r->c.mode = DU_OK;
  CHECK(du_client_release(&r->c, 1) == 1);
  DCHECK(WAIT_FOR(du_client_total_ok(&r->c) == 3, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.consumed == 3 && st.unhandled == 0, 5000));
  CHECK(du_server_total_calls(&r->s) == 0);
  CHECK_OK(du_server_start(&r->s));
  EXPECT_DONE(r, 3, 1);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void server_restart_handled(void) {
  rig_t r;
  srv_handled_body(&r);
  rig_free(&r);
}

static void srv_reported_body(rig_t *r) {
  CHECK_OK(rig_init(r, 0));
  r->s.mode = DU_SRV_HOLD;
  CHECK_OK(du_server_start(&r->s));
  du_client_set_addr(&r->c, r->s.port);
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  DCHECK(WAIT_FOR(du_server_total_calls(&r->s) == 3, 5000));
  CHECK(du_server_nheld(&r->s) >= 1);
  /* close with the batch uncompleted (completed after the close: only freed): nothing confirmed */
  CHECK_OK(du_server_stop(&r->s));
  r->s.mode = DU_SRV_OK;
  CHECK_OK(du_server_start(&r->s));
  CHECK(du_server_pending(&r->s, r->user) == 3);
  /* the client reports again on reconnect: on_consumed a second time (allowed), then confirmed */
  EXPECT_DONE(r, 3, 2);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void server_restart_reported(void) {
  rig_t r;
  srv_reported_body(&r);
  rig_free(&r);
}

static void srv_confirmed_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  EXPECT_DONE(r, 3, 1);
  CHECK_OK(hd_server_update_pause(r->s.h, 123, NULL, NULL));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.pause_ms == 123, 5000));
  int conn_before = atomic_load(&r->c.connected);
  long h_before = du_client_total_calls(&r->c), c_before = du_server_total_calls(&r->s);
  CHECK_OK(restart_server(r));
  DCHECK(WAIT_FOR(atomic_load(&r->c.connected) > conn_before && du_client_is_connected(&r->c), 5000));
  hdt_sleep_ms(200);
  CHECK(du_client_total_calls(&r->c) == h_before);
  CHECK(du_server_total_calls(&r->s) == c_before);
  CHECK(du_server_pending_total(&r->s) == 0);
  CHECK(du_client_store_empty(&r->c));
  CHECK_OK(du_client_stats(&r->c, &st));
  CHECK(st.pause_ms == 123); /* the stored pause, sent again at connect */
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 4, 1, 0)); /* seq 4: never reused */
  EXPECT_DONE(r, 4, 1);
}

static void server_restart_confirmed(void) {
  rig_t r;
  srv_confirmed_body(&r);
  rig_free(&r);
}

/* =========================== client restarted =========================== */

static void cli_stored_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  CHECK_OK(du_client_start(&r->c));
  DCHECK(WAIT_FOR(du_client_is_connected(&r->c), 5000));
  CHECK_OK(du_client_stop(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  CHECK(du_server_pending(&r->s, r->user) == 3);
  CHECK_OK(du_client_start(&r->c));
  EXPECT_DONE(r, 3, 1);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void client_restart_stored(void) {
  rig_t r;
  cli_stored_body(&r);
  rig_free(&r);
}

static void cli_delivered_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  r->c.mode = DU_HOLD;
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_nheld(&r->c) == 1, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.events_received == 3, 5000));
  /* close with seq 1 in the handler; its completion after the close only frees it */
  CHECK_OK(du_client_stop(&r->c));
  r->c.mode = DU_OK;
  CHECK_OK(du_client_start(&r->c));
  EXPECT_DONE(r, 3, 1);
  CHECK(du_client_calls(&r->c, 1) == 2); /* handed out again: its handler never completed */
  CHECK(du_client_calls(&r->c, 2) == 1 && du_client_calls(&r->c, 3) == 1);
  CHECK_OK(du_client_stats(&r->c, &st));
  CHECK(st.events_received == 0); /* the new instance had them all in its store */
  CHECK(st.events_handled == 3);
}

static void client_restart_delivered(void) {
  rig_t r;
  cli_delivered_body(&r);
  rig_free(&r);
}

static void cli_handled_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  r->c.mode = DU_HOLD;
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  hd_client_stats_t st;
  DCHECK(WAIT_FOR(du_client_nheld(&r->c) == 1, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.events_received == 3, 5000));
  /* the server goes away; the client handles everything; its reports cannot leave */
  CHECK_OK(du_server_stop(&r->s));
  r->c.mode = DU_OK;
  CHECK(du_client_release(&r->c, 1) == 1);
  DCHECK(WAIT_FOR(du_client_total_ok(&r->c) == 3, 5000));
  DCHECK(WAIT_FOR(du_client_stats(&r->c, &st) == 0 && st.consumed == 3 && st.unhandled == 0, 5000));
  /* the client restarts (with the server still away), then the server comes back */
  CHECK_OK(restart_client(r));
  hdt_sleep_ms(100);
  CHECK(du_client_total_calls(&r->c) == 3); /* consumed events are not handled again */
  CHECK_OK(du_client_stats(&r->c, &st));
  CHECK(st.consumed == 3 && st.unhandled == 0);
  CHECK_OK(du_server_start(&r->s));
  EXPECT_DONE(r, 3, 1);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void client_restart_handled(void) {
  rig_t r;
  cli_handled_body(&r);
  rig_free(&r);
}

/* The client closes the moment its handler completed the last event, without waiting for DONE:
 * whatever was in flight (report, deletion, DONE), nothing runs twice. */
static void cli_racing_body(rig_t *r) {
  const int n = 20;
  CHECK_OK(rig_init(r, 1));
  CHECK_OK(du_client_start(&r->c));
  DCHECK(WAIT_FOR(du_client_is_connected(&r->c), 5000));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, n, 0));
  DCHECK(WAIT_FOR(du_client_total_ok(&r->c) == n, 5000));
  CHECK_OK(restart_client(r));
  EXPECT_DONE(r, (uint64_t)n, 1);
  for (uint64_t q = 1; q <= (uint64_t)n; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void client_restart_racing_report(void) {
  rig_t r;
  cli_racing_body(&r);
  rig_free(&r);
}

static void cli_reported_body(rig_t *r) {
  CHECK_OK(rig_init(r, 0));
  r->s.mode = DU_SRV_HOLD;
  CHECK_OK(du_server_start(&r->s));
  du_client_set_addr(&r->c, r->s.port);
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  DCHECK(WAIT_FOR(du_server_total_calls(&r->s) == 3, 5000));
  CHECK_OK(du_client_stop(&r->c));
  /* the batch completes ok while the client is away: deleted, DONE cannot be sent */
  r->s.mode = DU_SRV_OK;
  CHECK(du_server_release(&r->s, 1) >= 1);
  DCHECK(WAIT_FOR(du_server_pending(&r->s, r->user) == 0, 5000));
  /* the client comes back and reports the three again: confirmed at once, no callback */
  CHECK_OK(du_client_start(&r->c));
  EXPECT_DONE(r, 3, 1);
  for (uint64_t q = 1; q <= 3; q++) CHECK(du_client_calls(&r->c, q) == 1);
}

static void client_restart_reported(void) {
  rig_t r;
  cli_reported_body(&r);
  rig_free(&r);
}

static void cli_reported_held_body(rig_t *r) {
  CHECK_OK(rig_init(r, 0));
  r->s.mode = DU_SRV_HOLD;
  CHECK_OK(du_server_start(&r->s));
  du_client_set_addr(&r->c, r->s.port);
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  DCHECK(WAIT_FOR(du_server_total_calls(&r->s) == 3, 5000));
  int conn_before = atomic_load(&r->c.connected);
  CHECK_OK(restart_client(r));
  DCHECK(WAIT_FOR(atomic_load(&r->c.connected) > conn_before && du_client_is_connected(&r->c), 5000));
  hdt_sleep_ms(200); /* the second report, if any, arrives */
  /* now complete everything held (the first batch and a possible second one) */
  r->s.mode = DU_SRV_OK;
  du_server_release(&r->s, 1);
  DCHECK(WAIT_FOR(du_server_pending_total(&r->s) == 0, 10000));
  DCHECK(WAIT_FOR(du_client_store_empty(&r->c), 10000));
  hdt_sleep_ms(100);
  CHECK(du_client_all_ok_once(&r->c, 1, 3));
  for (uint64_t q = 1; q <= 3; q++) {
    int calls = du_server_calls(&r->s, 0, q);
    CHECK(calls == 1 || calls == 2);
    CHECK(du_client_calls(&r->c, q) == 1);
  }
  if (du_server_calls(&r->s, 0, 1) == 2) printf("  (reported_held: on_consumed ran twice before confirmation)\n");
  CHECK(du_client_clean(&r->c));
  CHECK(du_server_clean(&r->s));
}

static void client_restart_reported_still_held(void) {
  rig_t r;
  cli_reported_held_body(&r);
  rig_free(&r);
}

static void cli_confirmed_body(rig_t *r) {
  CHECK_OK(rig_init(r, 1));
  CHECK_OK(du_client_start(&r->c));
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 1, 3, 0));
  EXPECT_DONE(r, 3, 1);
  long h_before = du_client_total_calls(&r->c), c_before = du_server_total_calls(&r->s);
  int conn_before = atomic_load(&r->c.connected);
  CHECK_OK(restart_client(r));
  DCHECK(WAIT_FOR(atomic_load(&r->c.connected) > conn_before && du_client_is_connected(&r->c), 5000));
  hdt_sleep_ms(200);
  CHECK(du_client_total_calls(&r->c) == h_before);
  CHECK(du_server_total_calls(&r->s) == c_before);
  CHECK(du_client_store_empty(&r->c));
  hd_client_stats_t st;
  CHECK_OK(du_client_stats(&r->c, &st));
  CHECK(st.high_water == 3 && st.events_received == 0);
  CHECK_OK(du_add_events(r->s.h, r->user, 1, 4, 1, 0));
  EXPECT_DONE(r, 4, 1);
}

static void client_restart_confirmed(void) {
  rig_t r;
  cli_confirmed_body(&r);
  rig_free(&r);
}

#define TESTS(X)                                                                                  \
  X(server_restart_stored)                                                                        \
  X(server_restart_delivered)                                                                     \
  X(server_restart_handled)                                                                       \
  X(server_restart_reported)                                                                      \
  X(server_restart_confirmed)                                                                     \
  X(client_restart_stored)                                                                        \
  X(client_restart_delivered)                                                                     \
  X(client_restart_handled)                                                                       \
  X(client_restart_racing_report)                                                               \
  X(client_restart_reported)                                                                      \
  X(client_restart_reported_still_held)                                                           \
  X(client_restart_confirmed)

HD_TEST_MAIN(TESTS)
