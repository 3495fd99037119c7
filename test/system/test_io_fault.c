/* I/O faults (docs/RELIABILITY.md, "Power cuts and I/O faults"): a server and a client deliver a
 * few events on the fault VFS (test/util/fault_vfs.h) while the disk of one store starts failing
 * with EIO or ENOSPC at one write or sync and stays failing; every operation of the scenario is
 * the fault point in turn, for each store and each error. Then:
 *
 *  - an add that failed reports HD_EIO or HD_ENOSPC (HD_EIO for an EIO fault), and the client's
 *    adds never fail for a fault of its own store;
 *  - the fault clears; when it only ever failed writes with ENOSPC (a full disk, which leaves the
 *    store usable), service resumes without a restart: a new add is acknowledged and everything
 *    is delivered;
 *  - a power cut then hits that store (test_power_cut's, dropping every unsynced write): nothing
 *    reported done was not durable (every acknowledged add is still delivered; no consumption
 *    reported is handled again), and the store opens again;
 *  - service resumes: more adds are acknowledged and everything is delivered (cw_verify);
 *  - an operator's adds, deletes, fails (dead letters), requeues and deletes of dead letters of a
 *    second user's events, and an add that expires at once (the expiry sweep's expire op), done in
 *    between, fail only with HD_EIO or HD_ENOSPC, and after the cut every acknowledged one holds
 *    (cw_verify).
 *
 * HD_FAULTS: fault points per store and error (default every operation of the scenario, 3 under
 * valgrind); HD_SEED: the seed of the spread (default 1). */
#include "harness.h"
#include "cut_util.h"
#include "keyed_util.h"

#define ADDS 3
#define ADDS_AFTER 2
#define SETTLE_MS 10000

static const char *const side_name[2] = {"server", "client"};

typedef struct figures {
  long runs, fired, failed_ops, failed_adds, resumed_alone;
  cw_figures_t cut;
} figures_t;

static long failed_ops(int d) {
  fv_counts_t c;
  fv_counts(d, &c);
  return c.failed;
}

/* The scenario; with `fault_at` 0 no fault (the dry run). *ops: the store's operations from the
 * fault's arming to the end of its phase. */
static void fault_run(cw_t *cw, int side, int err, long fault_at, uint64_t seed, figures_t *fig,
                      long *ops) {
  CHECK(cw_init(cw, "fault", 0) == 0);
  CHECK_OK(cw_start_all(cw));
  int d = cw->d[side];
  fv_counts_t c0, c1;
  fv_counts(d, &c0);
  if (fault_at > 0) fv_fault_at(d, c0.ops + fault_at, err, FV_WRITES | FV_SYNCS);
  for (int i = 0; i < ADDS; i++) {
    /* an operator's adds, delete of one, a failed one (a dead letter), the requeue of the dead
     * letters and the delete of one, a purge of another user's events and an add that expires at once, in the fault's way */
    static const unsigned steps[ADDS][5] = {
        {0, 0, 0, 10, 13}, {11, 6, 10, 99, 99}, {12, 9, 0, 0, 10}}; /* 99: none */
    for (int k = 0; k < 5 && steps[i][k] < 99; k++) {
      int by = cw_by_step(cw, steps[i][k]);
      if (by != 0 && by != HD_EIO && by != HD_ENOSPC) {
        fprintf(stderr, "  an admin call failed with %s (%s)\n", hd_err_name(by),
                hd_last_error_message());
        CHECK(0);
      }
    }
    int rc = cw_add(cw);
    if (rc == 0) continue;
    fig->failed_adds++;
    if (side == CW_CLIENT || (err == EIO && rc != HD_EIO) || (rc != HD_EIO && rc != HD_ENOSPC)) {
      fprintf(stderr, "  add %d failed with %s (%s) for %s on the %s store\n", i, hd_err_name(rc),
              hd_last_error_message(), err == EIO ? "EIO" : "ENOSPC", side_name[side]);
      CHECK(0);
    }
  }
  /* until everything is delivered, or the fault hit and had a moment to show */
  if (WAIT_FOR(cw_settled(cw) || failed_ops(d) > 0, SETTLE_MS) && failed_ops(d) > 0) {
    hdt_sleep_ms(30);
  }
  fv_counts(d, &c1);
  *ops = c1.ops - c0.ops;
  fv_fault_clear(d);
  if (c1.failed > 0) {
    fig->fired++;
    fig->failed_ops += c1.failed;
  }
  /* a full disk that failed writes only leaves the store usable: no restart needed */
  if (c1.failed > 0 && err == ENOSPC && c1.failed_syncs == 0) {
    CHECK_OK(cw_add(cw));
    DCHECK(WAIT_FOR(cw_settled(cw), SETTLE_MS));
    fig->resumed_alone++;
  }
  /* what was reported done must be durable: a cut now keeps only what was synced */
  CHECK_OK(cw_cut(cw, side, FV_DROP, seed, &fig->cut));
  for (int i = 0; i < ADDS_AFTER; i++) CHECK_OK(cw_add(cw));
  DCHECK(WAIT_FOR(cw_settled(cw), SETTLE_MS));
  hdt_sleep_ms(20); /* whatever would run again has the time to */
  CHECK(cw_verify(cw, &fig->cut));
  fig->runs++;
}

static void faults(int side, int err) {
  static cw_t cw;
  figures_t fig;
  memset(&fig, 0, sizeof fig);
  uint64_t t0 = hdt_now_ms();
  int failed = hd_test_failed_checks;
  long n = 0;
  fault_run(&cw, side, err, 0, 1, &fig, &n); /* how many operations the scenario does */
  cw_free(&cw);
  CHECK(hd_test_failed_checks == failed && n > 0);
  memset(&fig, 0, sizeof fig);
  long points = (long)cw_env_count("HD_FAULTS", (unsigned)n, 3);
  if (points > n) points = n;
  uint64_t seed = cw_seed(1);
  long offset = (long)(seed % (uint64_t)n);
  for (long j = 0; j < points; j++) {
    /* every point when all are run; else spread evenly, shifted by the seed */
    long at = 1 + (points == n ? j : (offset + j * n / points) % n);
    long ops;
    fault_run(&cw, side, err, at, seed + (uint64_t)j, &fig, &ops);
    cw_free(&cw);
    if (hd_test_failed_checks != failed) {
      fprintf(stderr, "  the fault at operation %ld of %ld failed (HD_SEED=%" PRIu64 ")\n", at, n,
              seed);
      return;
    }
  }
  printf("  %s on the %s store: %ld fault points of %ld operations in %" PRIu64 " ms; fired in "
         "%ld runs, %ld operations failed, %ld adds failed, %ld resumed without a restart; "
         "%ld adds acknowledged, %ld events verified, %ld handled again; another user: %ld "
         "deletes acknowledged, %ld deleted events verified gone, %ld kept verified, %ld fails "
         "and %ld requeues acknowledged, %ld dead letters verified, %ld expiring ones gone\n",
         err == EIO ? "EIO" : "ENOSPC", side_name[side], points, n, hdt_now_ms() - t0, fig.fired,
         fig.failed_ops, fig.failed_adds, fig.resumed_alone, fig.cut.adds_acked,
         fig.cut.events_verified, fig.cut.rehandled, fig.cut.by_deletes_acked,
         fig.cut.by_deleted_verified, fig.cut.by_kept_verified, fig.cut.by_fails_acked,
         fig.cut.by_requeues_acked, fig.cut.by_dead_verified, fig.cut.by_expired_gone);
}

static void eio_server(void) { faults(CW_SERVER, EIO); }
static void enospc_server(void) { faults(CW_SERVER, ENOSPC); }
static void eio_client(void) { faults(CW_CLIENT, EIO); }
static void enospc_client(void) { faults(CW_CLIENT, ENOSPC); }

/* Adds with keys, fan-outs and add_events calls (keyed_util.h) while the server store's disk
 * fails at each operation in turn: every add fails only with HD_EIO or HD_ENOSPC; after a full
 * disk that failed writes only, the next step succeeds without a restart; then a power cut
 * (every unsynced write dropped) and the store is consistent and holds what was acknowledged
 * (ku_verify). */
#define KEYED_STEPS 3
static void keyed_run(ku_t *k, int err, long fault_at, long *ops, long *fired) {
  CHECK_OK(ku_init(k, "keyed-fault", 0));
  CHECK_OK(ku_start(k));
  fv_counts_t c0, c1;
  fv_counts(k->d, &c0);
  if (fault_at > 0) fv_fault_at(k->d, c0.ops + fault_at, err, FV_WRITES | FV_SYNCS);
  for (int i = 0; i < KEYED_STEPS; i++) {
    CHECK_OK(ku_step(k));
    int j = k->n - 1;
    int rcs[3] = {k->dedup[j].rc, k->collapse[j].rc, k->fan[j].rc};
    for (int a = 0; a < 3; a++) CHECK(rcs[a] == 0 || err == ENOSPC || rcs[a] == HD_EIO);
  }
  fv_counts(k->d, &c1);
  *ops = c1.ops - c0.ops;
  fv_fault_clear(k->d);
  if (c1.failed > 0) (*fired)++;
  if (c1.failed > 0 && err == ENOSPC && c1.failed_syncs == 0) {
    CHECK_OK(ku_step(k)); /* a full disk leaves the store usable */
    CHECK(k->dedup[k->n - 1].rc == 0 && k->collapse[k->n - 1].rc == 0 && k->fan[k->n - 1].rc == 0);
  }
  CHECK_OK(ku_cut(k, FV_DROP, 1));
  CHECK(ku_verify(k));
}

static void keyed_faults(int err) {
  static ku_t k;
  long n = 0, fired = 0;
  uint64_t t0 = hdt_now_ms();
  int failed = hd_test_failed_checks;
  keyed_run(&k, err, 0, &n, &fired);
  ku_free(&k);
  CHECK(hd_test_failed_checks == failed && n > 0);
  long points = (long)cw_env_count("HD_FAULTS", (unsigned)n, 3);
  if (points > n) points = n;
  long offset = (long)(cw_seed(1) % (uint64_t)n);
  for (long j = 0; j < points; j++) {
    long at = 1 + (points == n ? j : (offset + j * n / points) % n), ops;
    keyed_run(&k, err, at, &ops, &fired);
    ku_free(&k);
    if (hd_test_failed_checks != failed) {
      fprintf(stderr, "  keyed: the fault at operation %ld of %ld failed\n", at, n);
      return;
    }
  }
  printf("  keyed %s on the server store: %ld fault points of %ld operations in %" PRIu64
         " ms; fired in %ld runs\n", err == EIO ? "EIO" : "ENOSPC", points, n, hdt_now_ms() - t0,
         fired);
}

static void keyed_eio(void) { keyed_faults(EIO); }
static void keyed_enospc(void) { keyed_faults(ENOSPC); }

#define TESTS(X) X(eio_server) X(enospc_server) X(eio_client) X(enospc_client) X(keyed_eio) \
  X(keyed_enospc)

HD_TEST_MAIN(TESTS)
