/* Restart of the server and, separately, of the client at every stage of an event's life, through
 * the public API. "Restart" = an orderly close (hd_*_close_wait) and a create again on the same
 * data_dir (the server on the same port, so the client redials the same address). Crashes
 * (SIGKILL) are test_crash.c's.
 *
 * Stages of one event (docs/ARCHITECTURE.md, "What the system promises"):
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
 * and an order violation.
 *
 * Each scenario is a row: a list of steps (below) that one function runs on a fresh world of one
 * server and one user's client; every row is a test of its own. A step that fails names its line
 * here. */
#include "harness.h"
#include "delivery_util.h"

#define CAP 64      /* seqs recorded */
#define WAIT_MS 5000
#define DONE_MS 10000

/* ---- the steps ---- */

typedef enum op {
  S_END,
  S_SRV_MODE,       /* a: the server's mode (DU_SRV_*) */
  S_CLI_MODE,       /* a: the client's mode (DU_*) */
  S_SRV_START,      /* creates the server (the same port after the first time) */
  S_SRV_STOP,       /* closes it */
  S_SRV_RESTART,    /* both */
  S_CLI_START,
  S_CLI_STOP,
  S_CLI_RESTART,
  S_ADD,            /* adds b events; the first must get seq a */
  S_PENDING,        /* the server holds a events of the user */
  S_WAIT_PENDING,   /* ... waits until it does */
  S_WAIT_CONNECTED, /* the client is connected */
  S_WAIT_DELIVERED, /* the handler holds one event and the client received a */
  S_WAIT_OK,        /* the handler completed a events ok */
  S_WAIT_CONSUMED,  /* ... and the client holds a consumed, none unhandled */
  S_WAIT_REPORTS,   /* on_consumed saw a events */
  S_REPORTS,        /* on_consumed saw a events in all */
  S_HANDLER_CALLS,  /* the handler ran a times in all */
  S_CALLS,          /* each of seqs a..b went to the handler c times */
  S_SRV_HOLDS,      /* on_consumed holds a batch */
  S_RELEASE,        /* completes the a events the handler holds */
  S_SRV_RELEASE,    /* completes what on_consumed holds: at least a batches */
  S_MARK,           /* remembers the connections and the calls so far */
  S_RECONNECTED,    /* the client connected again since S_MARK */
  S_NOTHING_RAN,    /* no handler and no on_consumed call since S_MARK */
  S_EMPTY,          /* both stores are empty */
  S_SLEEP,          /* a ms */
  S_PAUSE,          /* hd_server_update_pause(a) */
  S_STATS,          /* the client's stats: field st[0] is st[1] (and st[2] is st[3]) */
  S_WAIT_STATS,     /* ... waits until they are */
  S_DONE,           /* du_all_done: 1..a handled once each, reported b..c times */
  S_SAY_REPORTED,   /* prints whether on_consumed ran twice for seq 1 */
} op_t;

/* The stats fields a step can look at. */
enum { F_NONE, F_RECEIVED, F_HANDLED, F_UNHANDLED, F_CONSUMED, F_HIGH_WATER, F_PAUSE };

typedef struct step {
  op_t op;
  int line;
  int64_t a, b, c;
  int64_t st[4]; /* S_STATS, S_WAIT_STATS: field, value, field, value */
} step_t;

#define STEP(o, ...) {.op = o, .line = __LINE__, __VA_ARGS__}
#define SRV_MODE(m) STEP(S_SRV_MODE, .a = m)
#define CLI_MODE(m) STEP(S_CLI_MODE, .a = m)
#define SRV_START STEP(S_SRV_START)
#define SRV_STOP STEP(S_SRV_STOP)
#define SRV_RESTART STEP(S_SRV_RESTART)
#define CLI_START STEP(S_CLI_START)
#define CLI_STOP STEP(S_CLI_STOP)
#define CLI_RESTART STEP(S_CLI_RESTART)
#define ADD(first, n) STEP(S_ADD, .a = first, .b = n)
#define PENDING(n) STEP(S_PENDING, .a = n)
#define WAIT_PENDING(n) STEP(S_WAIT_PENDING, .a = n)
#define WAIT_CONNECTED STEP(S_WAIT_CONNECTED)
#define WAIT_DELIVERED(n) STEP(S_WAIT_DELIVERED, .a = n)
#define WAIT_OK(n) STEP(S_WAIT_OK, .a = n)
#define WAIT_CONSUMED(n) STEP(S_WAIT_CONSUMED, .a = n)
#define WAIT_REPORTS(n) STEP(S_WAIT_REPORTS, .a = n)
#define REPORTS(n) STEP(S_REPORTS, .a = n)
#define HANDLER_CALLS(n) STEP(S_HANDLER_CALLS, .a = n)
#define CALLS(from, to, times) STEP(S_CALLS, .a = from, .b = to, .c = times)
#define SRV_HOLDS STEP(S_SRV_HOLDS)
#define RELEASE(n) STEP(S_RELEASE, .a = n)
#define SRV_RELEASE(min) STEP(S_SRV_RELEASE, .a = min)
#define MARK STEP(S_MARK)
#define RECONNECTED STEP(S_RECONNECTED)
#define NOTHING_RAN STEP(S_NOTHING_RAN)
#define EMPTY STEP(S_EMPTY)
#define SLEEP(ms) STEP(S_SLEEP, .a = ms)
#define PAUSE(ms) STEP(S_PAUSE, .a = ms)
#define STATS(...) STEP(S_STATS, .st = {__VA_ARGS__})
#define WAIT_STATS(...) STEP(S_WAIT_STATS, .st = {__VA_ARGS__})
#define DONE(n, c_min, c_max) STEP(S_DONE, .a = n, .b = c_min, .c = c_max)
#define SAY_REPORTED STEP(S_SAY_REPORTED)
#define END STEP(S_END)

/* ---- the scenarios: server restarted ---- */

static const step_t server_restart_stored_steps[] = {
    SRV_START, ADD(1, 3), PENDING(3), SRV_RESTART, PENDING(3),
    ADD(4, 1), /* numbering goes on: seq 4 */
    CLI_START, DONE(4, 1, 1), CALLS(1, 4, 1), END};

static const step_t server_restart_delivered_steps[] = {
    SRV_START, CLI_MODE(DU_HOLD), CLI_START, ADD(1, 3), WAIT_DELIVERED(3), MARK, SRV_RESTART,
    PENDING(3), RECONNECTED, SLEEP(100),
    HANDLER_CALLS(1), /* still the one held call: no second hand-out */
    STATS(F_RECEIVED, 3, F_UNHANDLED, 3), CLI_MODE(DU_OK), RELEASE(1), DONE(3, 1, 1),
    CALLS(1, 3, 1), END};

/* the server is away: the client handles what it holds */
static const step_t server_restart_handled_steps[] = {
    SRV_START, CLI_MODE(DU_HOLD), CLI_START, ADD(1, 3), WAIT_DELIVERED(3), SRV_STOP,
    CLI_MODE(DU_OK), RELEASE(1), WAIT_CONSUMED(3), REPORTS(0), SRV_START, DONE(3, 1, 1),
    CALLS(1, 3, 1), END};

/* closed with the batch uncompleted (completed after the close: only freed): nothing confirmed;
 * the client reports again on reconnect: on_consumed a second time (allowed), then confirmed */
static const step_t server_restart_reported_steps[] = {
    SRV_MODE(DU_SRV_HOLD), SRV_START, CLI_START, ADD(1, 3), WAIT_REPORTS(3), SRV_HOLDS, SRV_STOP,
    SRV_MODE(DU_SRV_OK), SRV_START, PENDING(3), DONE(3, 2, 2), CALLS(1, 3, 1), END};

/* the pause set before the restart is still in force (sent again at connect); seq 4 is new */
static const step_t server_restart_confirmed_steps[] = {
    SRV_START, CLI_START, ADD(1, 3), DONE(3, 1, 1), PAUSE(123), WAIT_STATS(F_PAUSE, 123), MARK,
    SRV_RESTART, RECONNECTED, SLEEP(200), NOTHING_RAN, EMPTY, STATS(F_PAUSE, 123), ADD(4, 1),
    DONE(4, 1, 1), END};

/* ---- the scenarios: client restarted ---- */

static const step_t client_restart_stored_steps[] = {
    SRV_START, CLI_START, WAIT_CONNECTED, CLI_STOP, ADD(1, 3), PENDING(3), CLI_START,
    DONE(3, 1, 1), CALLS(1, 3, 1), END};

/* closed with seq 1 in the handler (its completion after the close only frees it): handed out
 * again, the others once; the new instance had them all in its store */
static const step_t client_restart_delivered_steps[] = {
    SRV_START, CLI_MODE(DU_HOLD), CLI_START, ADD(1, 3), WAIT_DELIVERED(3), CLI_STOP,
    CLI_MODE(DU_OK), CLI_START, DONE(3, 1, 1), CALLS(1, 1, 2), CALLS(2, 3, 1),
    STATS(F_RECEIVED, 0, F_HANDLED, 3), END};

/* the server goes away; the client handles everything (its reports cannot leave), restarts with
 * the server still away (consumed events are not handled again), then the server comes back */
static const step_t client_restart_handled_steps[] = {
    SRV_START, CLI_MODE(DU_HOLD), CLI_START, ADD(1, 3), WAIT_DELIVERED(3), SRV_STOP,
    CLI_MODE(DU_OK), RELEASE(1), WAIT_CONSUMED(3), CLI_RESTART, SLEEP(100), HANDLER_CALLS(3),
    STATS(F_CONSUMED, 3, F_UNHANDLED, 0), SRV_START, DONE(3, 1, 1), CALLS(1, 3, 1), END};

/* The client closes the moment its handler completed the last event, without waiting for DONE:
 * whatever was in flight (report, deletion, DONE), nothing runs twice. */
static const step_t client_restart_racing_report_steps[] = {
    SRV_START, CLI_START, WAIT_CONNECTED, ADD(1, 20), WAIT_OK(20), CLI_RESTART, DONE(20, 1, 1),
    CALLS(1, 20, 1), END};

/* the batch completes ok while the client is away (deleted, DONE cannot be sent); the client
 * comes back and reports the three again: confirmed at once, no callback */
static const step_t client_restart_reported_steps[] = {
    SRV_MODE(DU_SRV_HOLD), SRV_START, CLI_START, ADD(1, 3), WAIT_REPORTS(3), CLI_STOP,
    SRV_MODE(DU_SRV_OK), SRV_RELEASE(1), WAIT_PENDING(0), CLI_START, DONE(3, 1, 1),
    CALLS(1, 3, 1), END};

/* the second report, if any, arrives; then everything held (the first batch and a possible
 * second one) completes */
static const step_t client_restart_reported_still_held_steps[] = {
    SRV_MODE(DU_SRV_HOLD), SRV_START, CLI_START, ADD(1, 3), WAIT_REPORTS(3), MARK, CLI_RESTART,
    RECONNECTED, SLEEP(200), SRV_MODE(DU_SRV_OK), SRV_RELEASE(0), DONE(3, 1, 2), CALLS(1, 3, 1),
    SAY_REPORTED, END};

static const step_t client_restart_confirmed_steps[] = {
    SRV_START, CLI_START, ADD(1, 3), DONE(3, 1, 1), MARK, CLI_RESTART, RECONNECTED, SLEEP(200),
    NOTHING_RAN, EMPTY, STATS(F_HIGH_WATER, 3, F_RECEIVED, 0), ADD(4, 1), DONE(4, 1, 1), END};

/* ---- the runner ---- */

typedef struct mark {
  int connected;
  long handler_calls, reports;
} mark_t;

static uint64_t stat_field(const hd_client_stats_t *st, int64_t f) {
  switch (f) {
    case F_RECEIVED: return st->events_received;
    case F_HANDLED: return st->events_handled;
    case F_UNHANDLED: return st->unhandled;
    case F_CONSUMED: return st->consumed;
    case F_HIGH_WATER: return st->high_water;
    case F_PAUSE: return st->pause_ms;
    default: return 0;
  }
}

/* 1 if the client's stats are what st[] of the step says. */
static int stats_are(du_client_t *c, const step_t *s) {
  hd_client_stats_t st;
  if (du_client_stats(c, &st) != 0) return 0;
  for (int i = 0; i < 4 && s->st[i] != F_NONE; i += 2) {
    if (stat_field(&st, s->st[i]) != (uint64_t)s->st[i + 1]) return 0;
  }
  return 1;
}

static int restart_server(du_server_t *srv) {
  int rc = du_server_stop(srv);
  return rc != 0 ? rc : du_server_start(srv);
}

static int restart_client(du_client_t *c) {
  int rc = du_client_stop(c);
  return rc != 0 ? rc : du_client_start(c);
}

static void run_step(du_world_t *w, mark_t *m, const step_t *s) {
  du_server_t *srv = &w->s;
  du_client_t *c = &w->c[0];
  const uint8_t *user = c->kp.public_key;
  hd_client_stats_t st;
  switch (s->op) {
    case S_END: break;
    case S_SRV_MODE: srv->mode = (int)s->a; break;
    case S_CLI_MODE: c->mode = (int)s->a; break;
    case S_SRV_START: CHECK_OK(du_world_start_server(w)); break;
    case S_SRV_STOP: CHECK_OK(du_server_stop(srv)); break;
    case S_SRV_RESTART: CHECK_OK(restart_server(srv)); break;
    case S_CLI_START: CHECK_OK(du_client_start(c)); break;
    case S_CLI_STOP: CHECK_OK(du_client_stop(c)); break;
    case S_CLI_RESTART: CHECK_OK(restart_client(c)); break;
    case S_ADD: CHECK_OK(du_add_events(srv->h, user, c->tag, (uint64_t)s->a, (int)s->b, 0)); break;
    case S_PENDING: CHECK(du_server_pending(srv, user) == (uint64_t)s->a); break;
    case S_WAIT_PENDING:
      DCHECK(WAIT_FOR(du_server_pending(srv, user) == (uint64_t)s->a, WAIT_MS));
      break;
    case S_WAIT_CONNECTED: DCHECK(WAIT_FOR(du_client_is_connected(c), WAIT_MS)); break;
    case S_WAIT_DELIVERED:
      DCHECK(WAIT_FOR(du_client_nheld(c) == 1, WAIT_MS));
      DCHECK(WAIT_FOR(du_client_stats(c, &st) == 0 && st.events_received == (uint64_t)s->a,
                      WAIT_MS));
      break;
    case S_WAIT_OK: DCHECK(WAIT_FOR(du_client_total_ok(c) == s->a, WAIT_MS)); break;
    case S_WAIT_CONSUMED:
      DCHECK(WAIT_FOR(du_client_total_ok(c) == s->a, WAIT_MS));
      DCHECK(WAIT_FOR(du_client_stats(c, &st) == 0 && st.consumed == (uint64_t)s->a &&
                          st.unhandled == 0, WAIT_MS));
      break;
    case S_WAIT_REPORTS: DCHECK(WAIT_FOR(du_server_total_calls(srv) == s->a, WAIT_MS)); break;
    case S_REPORTS: CHECK(du_server_total_calls(srv) == s->a); break;
    case S_HANDLER_CALLS: CHECK(du_client_total_calls(c) == s->a); break;
    case S_CALLS:
      for (int64_t q = s->a; q <= s->b; q++) CHECK(du_client_calls(c, (uint64_t)q) == s->c);
      break;
    case S_SRV_HOLDS: CHECK(du_server_nheld(srv) >= 1); break;
    case S_RELEASE: CHECK(du_client_release(c, 1) == s->a); break;
    case S_SRV_RELEASE: CHECK(du_server_release(srv, 1) >= s->a); break;
    case S_MARK:
      m->connected = atomic_load(&c->connected);
      m->handler_calls = du_client_total_calls(c);
      m->reports = du_server_total_calls(srv);
      break;
    case S_RECONNECTED:
      DCHECK(WAIT_FOR(atomic_load(&c->connected) > m->connected && du_client_is_connected(c),
                      WAIT_MS));
      break;
    case S_NOTHING_RAN:
      CHECK(du_client_total_calls(c) == m->handler_calls);
      CHECK(du_server_total_calls(srv) == m->reports);
      break;
    case S_EMPTY:
      CHECK(du_server_pending_total(srv) == 0);
      CHECK(du_client_store_empty(c));
      break;
    case S_SLEEP: hdt_sleep_ms((int)s->a); break;
    case S_PAUSE: CHECK_OK(hd_server_update_pause(srv->h, (uint32_t)s->a, NULL, NULL)); break;
    case S_STATS: CHECK(stats_are(c, s)); break;
    case S_WAIT_STATS: DCHECK(WAIT_FOR(stats_are(c, s), WAIT_MS)); break;
    case S_DONE:
      CHECK(du_all_done(srv, 0, c, (uint64_t)s->a, (int)s->b, (int)s->c, DONE_MS));
      break;
    case S_SAY_REPORTED:
      if (du_server_calls(srv, 0, 1) == 2)
        printf("  (on_consumed ran twice before confirmation)\n");
      break;
  }
}

/* Runs a scenario's steps on a fresh world of one server and one user; stops at the first step
 * that fails, naming its line. */
static void run_steps(du_world_t *w, const step_t *steps) {
  CHECK_OK(du_world_init(w, "restart", 1, CAP, 0));
  mark_t m = {0, 0, 0};
  for (const step_t *s = steps; s->op != S_END; s++) {
    int failed_before = hd_test_failed_checks;
    run_step(w, &m, s);
    if (hd_test_failed_checks != failed_before) {
      fprintf(stderr, "  the step on line %d of %s failed\n", s->line, __FILE__);
      return;
    }
  }
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
  X(client_restart_racing_report)                                                                 \
  X(client_restart_reported)                                                                      \
  X(client_restart_reported_still_held)                                                           \
  X(client_restart_confirmed)

/* Every scenario above is a test: <name> runs <name>_steps. */
#define SCENARIO_TEST(name) DU_WORLD_TEST(name, run_steps, name##_steps)
TESTS(SCENARIO_TEST)

HD_TEST_MAIN(TESTS)
