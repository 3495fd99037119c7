/* Power cuts (docs/RELIABILITY.md, "Power cuts and I/O faults"): a server and a client deliver
 * events on the fault VFS (test/util/fault_vfs.h) while a power cut hits one of the two stores at
 * a random (seeded) write or sync; the store's files are put back as the disk would hold them
 * (the writes since each file's last sync dropped, or some kept in order with the next torn, or a
 * random subset), the store reopens, more events are added, and the run is checked
 * (test/util/cut_util.h, cw_verify):
 *
 *  - synchronous=FULL: no acknowledged add is lost; the handler never runs again for an event
 *    whose consumption was recorded (reported), and without a cut of the client's store for no
 *    event at all; the server's epoch does not change;
 *  - NORMAL: only what docs/STORAGE.md ("What NORMAL may lose") allows is lost (an acknowledged
 *    add with no WAL sync after it); the server's epoch changes after its cut, and every event
 *    added after the reopen is handled although its number may be one the client saw (the
 *    sequence space does not go backwards unseen); an event handled again after a server cut is
 *    marked possibly repeated;
 *  - meanwhile an operator adds events for a second user (no client), deletes some or all of
 *    them, fails some (dead letters: the write a client's FAILED makes), requeues and deletes
 *    dead letters, and adds some that expire at once (the server's expiry sweep deletes them: its
 *    expire ops are cut too): after the cut each such event is where its acknowledged operations
 *    left it (NORMAL: or where one with no WAL sync after it had not taken it yet; an expiring
 *    one: or gone).
 *
 * HD_CUTS: cuts per test (default 20, 6 under valgrind); HD_SEED: the seed (default 1). */
#include "harness.h"
#include "cut_util.h"
#include "keyed_util.h"

#define ADDS_BEFORE 12
#define ADDS_AFTER 4
#define SETTLE_MS 10000

static const char *const mode_name[FV_MODES] = {"drop", "ordered", "random"};

/* When the cut comes: while both run; while the client is away (the server alone holds what it
 * acknowledged, or the client catches up on its return); while the store is first opened. */
enum { ONLINE, OFFLINE, OPENING, SHAPES };
static const char *const shape_name[SHAPES] = {"online", "offline", "opening"};

/* Operations of each side's store in a run without its cut firing (where the next cuts are
 * placed), and in its first open. */
static long span[2] = {60, 60}, open_span[2] = {20, 20};

/* A cut of `side` at a random operation among the next `within`. */
static void arm(cw_t *cw, int side, long within, uint64_t *rng) {
  fv_counts_t c;
  fv_counts(cw->d[side], &c);
  fv_cut_at(cw->d[side], c.ops + 1 + (long)(fv_rand(rng) % (uint64_t)(within > 0 ? within : 1)));
}

/* Adds ADDS_BEFORE events, now and then letting the deliveries, reports and deletes catch up
 * (they are cut too); in between, an operator adds and deletes events of another user. */
static void add_some(cw_t *cw, int side, uint64_t *rng) {
  for (int i = 0; i < ADDS_BEFORE; i++) {
    cw_add(cw);
    if (fv_rand(rng) % 2 == 0) cw_by_step(cw, (unsigned)(fv_rand(rng) % 14));
    if (cw->w.c[0].h != NULL && fv_rand(rng) % 3 == 0) {
      WAIT_FOR(cw_settled(cw) || fv_cut_fired(cw->d[side]), 2000);
    }
  }
}

/* The highest number acknowledged so far. */
static uint64_t top_seq(cw_t *cw) {
  uint64_t top = 0;
  for (int i = 0; i < cw->n_att; i++) {
    if (cw->att[i].add_rc == 0 && cw->att[i].seq > top) top = cw->att[i].seq;
  }
  return top;
}

/* One world, one cut of `side` at a random operation, then the checks. */
static void cut_run(cw_t *cw, int normal, int side, int mode, int shape, uint64_t seed,
                    cw_figures_t *fig) {
  uint64_t rng = seed;
  du_client_t *c = &cw->w.c[0];
  CHECK_OK(cw_init(cw, "cut", normal));
  if (shape == OPENING) {
    arm(cw, side, open_span[side], &rng);
    cw_start(cw, CW_SERVER); /* the side cut fails to open, or opens and fails later */
    cw_start(cw, CW_CLIENT);
  } else {
    CHECK_OK(cw_start_all(cw));
    for (int i = 0; i < 2; i++) {
      fv_counts_t oc;
      fv_counts(cw->d[i], &oc);
      open_span[i] = oc.ops;
    }
  }
  hd_rollback_stats_t before = {.version = HD_ROLLBACK_STATS_VERSION};
  if (cw->w.s.h != NULL) CHECK_OK(hd_server_rollback_stats(cw->w.s.h, &before));
  fv_counts_t c0, c1;
  fv_counts(cw->d[side], &c0);
  if (shape == ONLINE) {
    arm(cw, side, span[side], &rng);
    add_some(cw, side, &rng);
  } else if (shape == OFFLINE) {
    CHECK_OK(cw_stop(cw, CW_CLIENT));
    if (side == CW_SERVER) arm(cw, side, span[side] / 2, &rng);
    add_some(cw, side, &rng);
    if (side == CW_CLIENT) {
      arm(cw, side, span[side], &rng); /* it catches up on what it missed */
      CHECK_OK(cw_start(cw, CW_CLIENT));
    }
  }
  if (cw->w.c[0].h != NULL) WAIT_FOR(cw_settled(cw) || fv_cut_fired(cw->d[side]), 2000);
  fv_counts(cw->d[side], &c1);
  if (shape != OPENING && !fv_cut_fired(cw->d[side]) && c1.ops > c0.ops) {
    span[side] = c1.ops - c0.ops;
  }
  if (hdt_verbose()) {
    printf("  cut of the %s store (%s, %s) after %ld of its operations\n",
           side == CW_SERVER ? "server" : "client", shape_name[shape], mode_name[mode],
           c1.ops - c0.ops);
  }
  uint64_t top = top_seq(cw);
  CHECK_OK(cw_cut(cw, side, mode, fv_rand(&rng), fig));
  for (int i = 0; i < 2; i++) { /* the other side, if it was away or did not start */
    if ((i == CW_SERVER ? cw->w.s.h == NULL : c->h == NULL)) CHECK_OK(cw_start(cw, i));
  }
  DCHECK(WAIT_FOR(du_client_is_connected(c), 5000));
  hd_rollback_stats_t after = {.version = HD_ROLLBACK_STATS_VERSION};
  CHECK_OK(hd_server_rollback_stats(cw->w.s.h, &after));
  if (shape != OPENING) {
    int changed = memcmp(before.epoch, after.epoch, sizeof before.epoch) != 0;
    fig->epochs_changed += changed;
    /* FULL loses nothing: the epoch stays; NORMAL may have lost commits: clients must be told */
    if (side == CW_SERVER) CHECK(changed == normal);
    else CHECK(!changed);
  }
  for (int i = 0; i < ADDS_AFTER; i++) {
    CHECK_OK(cw_add(cw));
    if (cw->att[cw->n_att - 1].seq <= top) fig->seqs_again++;
  }
  DCHECK(WAIT_FOR(cw_settled(cw), SETTLE_MS));
  hdt_sleep_ms(50); /* whatever would run again has the time to */
  CHECK(cw_verify(cw, fig));
}

static void cuts(int normal) {
  unsigned n = cw_env_count("HD_CUTS", 20, 6);
  uint64_t seed = cw_seed(1) * 1000003u + (uint64_t)normal;
  cw_figures_t fig;
  memset(&fig, 0, sizeof fig);
  uint64_t t0 = hdt_now_ms();
  static cw_t cw;
  for (unsigned r = 0; r < n; r++) {
    int failed = hd_test_failed_checks;
    uint64_t run_seed = seed + r;
    /* every side and shape in six runs, then again with the next way of keeping writes */
    int side = (int)(r % 2), shape = (int)(r % SHAPES);
    int mode = (int)((r / (2 * SHAPES)) % FV_MODES);
    cut_run(&cw, normal, side, mode, shape, run_seed, &fig);
    cw_free(&cw);
    if (hd_test_failed_checks != failed) {
      fprintf(stderr, "  run %u failed: a cut of the %s store, %s, %s, HD_SEED=%" PRIu64 "\n",
              r, side == CW_SERVER ? "server" : "client", shape_name[shape], mode_name[mode],
              cw_seed(1));
      return;
    }
  }
  printf("  %s: %ld cuts (%ld of the server store, %ld of the client's) in %" PRIu64 " ms: "
         "%ld unsynced writes dropped, %ld torn, %ld files removed; %ld adds acknowledged, "
         "%ld failed; %ld events verified; %ld handled again; %ld allowed lost; "
         "%ld epoch changes; %ld numbers given again; another user: %ld deletes acknowledged, "
          "%ld deleted events verified gone, %ld kept verified, %ld fails and %ld requeues "
          "acknowledged, %ld dead letters verified, %ld expiring ones gone\n",
         normal ? "NORMAL" : "FULL", fig.cuts, fig.cuts_server, fig.cuts_client, hdt_now_ms() - t0,
         fig.writes_dropped, fig.writes_torn, fig.files_removed, fig.adds_acked, fig.adds_failed,
         fig.events_verified, fig.rehandled, fig.allowed_lost, fig.epochs_changed,
         fig.seqs_again, fig.by_deletes_acked, fig.by_deleted_verified, fig.by_kept_verified,
          fig.by_fails_acked, fig.by_requeues_acked, fig.by_dead_verified, fig.by_expired_gone);
}

static void cuts_full(void) { cuts(0); }
static void cuts_normal(void) { cuts(1); }

/* Adds with dedup and collapse keys, fan-outs and add_events calls (keyed_util.h) while a power
 * cut hits the server store at a random operation: after the reopen the store is consistent (its
 * counters, the shared payloads' references, every fan-out and every add_events call held by all
 * its users or none, a user's items in item order), and what must have lasted did (a repeated
 * key is still a duplicate of its first add, the latest collapse is held, the acknowledged
 * fan-outs and add_events calls are held). set_sent is cut in cuts_full/cuts_normal: a session that ends
 * writes it. */
#define KEYED_STEPS 6
static void keyed_cuts(int normal) {
  unsigned n = cw_env_count("HD_CUTS", 20, 6);
  uint64_t seed = cw_seed(1) * 7919u + (uint64_t)normal;
  long kspan = 0, lasting_checked = 0;
  uint64_t t0 = hdt_now_ms();
  static ku_t k;
  for (unsigned r = 0; r <= n; r++) { /* run 0 measures the operations of a run */
    int failed = hd_test_failed_checks;
    uint64_t rng = seed + r;
    CHECK_OK(ku_init(&k, "keyed-cut", normal));
    CHECK_OK(ku_start(&k));
    fv_counts_t c0, c1;
    fv_counts(k.d, &c0);
    if (r > 0) fv_cut_at(k.d, c0.ops + 1 + (long)(fv_rand(&rng) % (uint64_t)(kspan > 0 ? kspan : 1)));
    for (int i = 0; i < KEYED_STEPS && !fv_cut_fired(k.d); i++) CHECK_OK(ku_step(&k));
    fv_counts(k.d, &c1);
    if (r == 0) kspan = c1.ops - c0.ops;
    CHECK_OK(ku_cut(&k, (int)(r % FV_MODES), fv_rand(&rng)));
    CHECK(ku_verify(&k));
    for (int i = 0; i < k.n; i++) lasting_checked += k.dedup[i].rc == 0;
    ku_free(&k);
    if (hd_test_failed_checks != failed) {
      fprintf(stderr, "  keyed run %u failed (%s, HD_SEED=%" PRIu64 ")\n", r,
              mode_name[r % FV_MODES], cw_seed(1));
      return;
    }
  }
  printf("  keyed %s: %u cuts of %ld operations in %" PRIu64 " ms, %ld dedup adds acknowledged\n",
         normal ? "NORMAL" : "FULL", n, kspan, hdt_now_ms() - t0, lasting_checked);
}

static void keyed_cuts_full(void) { keyed_cuts(0); }
static void keyed_cuts_normal(void) { keyed_cuts(1); }

#define TESTS(X) X(cuts_full) X(cuts_normal) X(keyed_cuts_full) X(keyed_cuts_normal)

HD_TEST_MAIN(TESTS)
