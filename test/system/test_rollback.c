/* A server store that lost its last commits, through the public API (docs/RELIABILITY.md,
 * "Restores and rollbacks"; docs/PROTOCOL.md, "Epochs"): restored from a backup, or the files a
 * power loss leaves under synchronous=NORMAL. The client had seen numbers the store then gives
 * again to new events.
 *
 * The scenario of every test: events old#1..old#90 are added while the client is away; the
 * store's image is taken there (a backup, or a copy of its files as a power loss would leave
 * them); old#91..old#100 are added and the client handles all 100; the server closes; the image
 * is put back; new#91..new#105 are added (they get seqs 91..105 again); the client connects.
 * Required: every new event is handled, once, unmarked; an old event is handled a second time
 * only marked as possibly repeated; a consumption the client reports is never taken for another
 * event; both sides log and count the rollback.
 *
 * The recorders are label_util's (delivery_util's take a seq for an event's identity, which a
 * rollback breaks): events are told apart by their payload, "old#N" or "new#N" (N its seq). */
#include "harness.h"
#include "label_util.h"

#define N_OLD 100
#define IMAGE_AT 90  /* the backup or the power loss keeps 1..90 */
#define N_NEW 15     /* new#91..new#105 */
#define WAIT_MS 10000

enum { OLD = 0, NEW = 1 };

static const char *const labels[2] = {"old", "new"};

typedef struct world {
  lu_world_t lw;              /* tmp: the image and the backup too */
  int logged[2];              /* "rolled back" lines of the server and the client before */
} world_t;

/* Lines logged by the handle `who` that say it saw a rollback. */
static int rollback_lines(const char *who) { return du_log_count(who, "rolled back"); }

static int world_init(world_t *w, int sync_normal) {
  memset(w, 0, sizeof *w);
  if (lu_world_init(&w->lw, "rollback", labels) != 0) return -1;
  w->lw.s.sync_normal = sync_normal;
  w->logged[0] = rollback_lines(w->lw.s.name); /* the capture is the whole program's */
  w->logged[1] = rollback_lines(w->lw.c.name);
  return lu_srv_start(&w->lw.s);
}

static void world_free(world_t *w) { lu_world_free(&w->lw); }

/* ---- steps ---- */

static int srv_rollback_stats(lu_srv_t *s, hd_rollback_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_ROLLBACK_STATS_VERSION;
  return hd_server_rollback_stats(s->h, st);
}

static int cli_rollback_stats(lu_cli_t *c, hd_rollback_stats_t *st) {
  memset(st, 0, sizeof *st);
  st->version = HD_ROLLBACK_STATS_VERSION;
  return hd_client_rollback_stats(c->h, st);
}

static void on_backup(void *data, int status) { *(atomic_int *)data = status == 0 ? 1 : status; }

/* The image of the store at this point: a backup (`power_loss` 0) or a copy of its files as a
 * power loss would leave them (1). Kept in <tmp>/image. */
static int take_image(world_t *w, int power_loss) {
  char *image = hdt_path(w->lw.tmp, "image");
  int rc = -1;
  if (image != NULL && mkdir(image, 0700) == 0) {
    if (power_loss) {
      static const char *const files[] = {"hyperdown.db", "hyperdown.db-wal", "hyperdown.store"};
      rc = 0;
      for (size_t i = 0; i < sizeof files / sizeof files[0] && rc == 0; i++) {
        char from[512], to[512];
        snprintf(from, sizeof from, "%s/%s", w->lw.s.dir, files[i]);
        snprintf(to, sizeof to, "%s/%s", image, files[i]);
        rc = hdt_copy_file(from, to);
      }
    } else {
      char path[512];
      snprintf(path, sizeof path, "%s/hyperdown.db", image);
      atomic_int done = 0;
      rc = hd_server_backup(w->lw.s.h, path, on_backup, &done);
      if (rc == 0 && !WAIT_FOR(atomic_load(&done) != 0, WAIT_MS)) rc = -1;
      if (rc == 0 && atomic_load(&done) != 1) rc = atomic_load(&done);
    }
  }
  free(image);
  return rc;
}

/* With the server closed: its folder becomes the image. */
static int put_image_back(world_t *w) {
  char *image = hdt_path(w->lw.tmp, "image");
  hdt_rmrf(w->lw.s.dir);
  int rc = image != NULL && rename(image, w->lw.s.dir) == 0 ? 0 : -1;
  free(image);
  return rc;
}

/* Up to the moment the client connects again: old#1..90 added while it is away, the image taken,
 * old#91..100 added and all 100 handled by the client (`hold_from`: events from there on are
 * kept by its handler; `srv_hold`: the server keeps every consumption report), both closed, the
 * image put back, the server started on it and new#91..105 added. */
static void until_the_restore(world_t *w, int power_loss, uint64_t hold_from, int srv_hold) {
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, OLD, 1, IMAGE_AT));
  CHECK_OK(take_image(w, power_loss));
  w->lw.c.hold_from = hold_from;
  w->lw.s.hold = srv_hold;
  CHECK_OK(lu_cli_start(&w->lw.c, &w->lw.s));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, OLD, IMAGE_AT + 1, N_OLD));
  int last = hold_from ? (int)hold_from - 1 : N_OLD;
  DCHECK(WAIT_FOR(lu_handled(&w->lw.c, OLD, 1, last, 1) && lu_high_water(&w->lw.c) == N_OLD, WAIT_MS));
  if (!hold_from && !srv_hold) {
    DCHECK(WAIT_FOR(lu_pending(&w->lw.s) == 0 && lu_client_store_empty(&w->lw.c), WAIT_MS));
  }
  if (srv_hold) DCHECK(WAIT_FOR(lu_reports(&w->lw.s, OLD, last) > 0, WAIT_MS));
  CHECK_OK(lu_cli_stop(&w->lw.c));
  CHECK_OK(lu_srv_stop(&w->lw.s));
  CHECK_OK(put_image_back(w));
  w->lw.c.hold_from = 0;
  w->lw.s.hold = 0;
  CHECK_OK(lu_srv_start(&w->lw.s));
  CHECK_OK(lu_add(&w->lw.s, &w->lw.c, NEW, IMAGE_AT + 1, IMAGE_AT + N_NEW));
}

/* After the client connected again: every new event handled exactly once, unmarked, and no
 * consumption taken for another event; both stores empty in the end. */
static void new_events_delivered(world_t *w) {
  DCHECK(WAIT_FOR(lu_handled(&w->lw.c, NEW, IMAGE_AT + 1, IMAGE_AT + N_NEW, 1), WAIT_MS));
  DCHECK(WAIT_FOR(lu_pending(&w->lw.s) == 0 && lu_client_store_empty(&w->lw.c), WAIT_MS));
  hdt_sleep_ms(100);
  pthread_mutex_lock(&w->lw.c.mu);
  for (int n = IMAGE_AT + 1; n <= IMAGE_AT + N_NEW; n++) {
    CHECK(w->lw.c.ok[NEW][n] == 1 && w->lw.c.marked[NEW][n] == 0);
  }
  int repeats = w->lw.c.unmarked_repeats, bad = w->lw.c.bad;
  pthread_mutex_unlock(&w->lw.c.mu);
  CHECK(repeats == 0 && bad == 0);
  CHECK(w->lw.s.premature == 0 && w->lw.s.bad == 0);
}

/* Both sides counted and logged one rollback, and agree on the epoch. */
static void rollback_counted(world_t *w, uint64_t repeated, uint64_t orphaned, uint64_t dropped) {
  hd_rollback_stats_t ss, cs;
  CHECK_OK(srv_rollback_stats(&w->lw.s, &ss));
  CHECK_OK(cli_rollback_stats(&w->lw.c, &cs));
  CHECK(ss.rollbacks == 1 && ss.epoch_resumes == 1);
  CHECK(cs.rollbacks == 1 && cs.epoch_resumes == 1);
  if (cs.events_repeated != repeated || cs.events_orphaned != orphaned ||
      cs.consumed_dropped != dropped) {
    fprintf(stderr, "  client: %llu repeated, %llu orphaned, %llu dropped\n",
            (unsigned long long)cs.events_repeated, (unsigned long long)cs.events_orphaned,
            (unsigned long long)cs.consumed_dropped);
  }
  CHECK(cs.events_repeated == repeated && cs.events_orphaned == orphaned &&
        cs.consumed_dropped == dropped);
  CHECK(memcmp(ss.epoch, cs.epoch, HD_STORE_ID_BYTES) == 0);
  CHECK(rollback_lines(w->lw.s.name) - w->logged[0] == 1);
  CHECK(rollback_lines(w->lw.c.name) - w->logged[1] == 1);
}

/* ---- the tests ---- */

/* The client comes back to the store put back at 90, which had old#1..90 pending (handled since):
 * they come again, marked; new#91..105 are handled as the new events they are. */
static void back_to_the_image(world_t *w) {
  CHECK_OK(lu_cli_start(&w->lw.c, &w->lw.s));
  new_events_delivered(w);
  for (int n = 1; n <= IMAGE_AT; n++) {
    CHECK(lu_ok_count(&w->lw.c, OLD, n) == 2 && w->lw.c.marked[OLD][n] == 1);
  }
  for (int n = IMAGE_AT + 1; n <= N_OLD; n++) CHECK(lu_ok_count(&w->lw.c, OLD, n) == 1);
  rollback_counted(w, IMAGE_AT, 0, 0);
}

/* The required case: a backup at 90, the client saw 100, the store restored, 15 adds. A clean
 * restart afterwards is no rollback: the client resumes in the store's new epoch. */
static void restore_from_backup(world_t *w) {
  CHECK_OK(world_init(w, 0));
  until_the_restore(w, 0, 0, 0);
  int failed = hd_test_failed_checks;
  back_to_the_image(w);
  CHECK(hd_test_failed_checks == failed);
  CHECK_OK(lu_srv_stop(&w->lw.s));
  CHECK_OK(lu_srv_start(&w->lw.s));
  hd_rollback_stats_t ss;
  DCHECK(WAIT_FOR(hd_server_connected_users(w->lw.s.h, NULL, 0) == 1, WAIT_MS));
  hdt_sleep_ms(100);
  CHECK_OK(srv_rollback_stats(&w->lw.s, &ss));
  CHECK(ss.rollbacks == 0 && ss.epoch_resumes == 0);
}

/* The same after a power loss under synchronous=NORMAL: the image is the store's files as they
 * were on disk at 90, the store notices at its next open that it was not closed cleanly. */
static void power_loss_under_normal(world_t *w) {
  CHECK_OK(world_init(w, 1));
  until_the_restore(w, 1, 0, 0);
  back_to_the_image(w);
}

/* The client still holds events above the floor when it comes back: old#91..95 consumed, never
 * confirmed (the server kept the reports), old#96..100 not handled (its handler kept old#96).
 * The consumed ones are dropped, never reported to the restored store (whose 91..95 are new
 * events now); the unhandled ones are handled once, as what they are, and never reported. The
 * events at or below the floor that it consumed are reported again and not handled again. */
static void restore_with_events_held_above_the_floor(world_t *w) {
  CHECK_OK(world_init(w, 0));
  until_the_restore(w, 0, 96, 1);
  /* old#96 is kept by the handler until EPOCH is applied, so that 96..100 are still unhandled
   * then (a client handles what it holds before it is connected: they would be consumed, and
   * dropped unreported as 91..95 are) */
  w->lw.c.hold_from = 96;
  CHECK_OK(lu_cli_start(&w->lw.c, &w->lw.s));
  hd_rollback_stats_t cs;
  DCHECK(WAIT_FOR(cli_rollback_stats(&w->lw.c, &cs) == 0 && cs.epoch_resumes == 1, WAIT_MS));
  DCHECK(WAIT_FOR(lu_held_count(&w->lw.c) == 1, WAIT_MS));
  lu_cli_release(&w->lw.c);
  new_events_delivered(w);
  for (int n = 1; n <= N_OLD; n++) {
    if (lu_ok_count(&w->lw.c, OLD, n) != 1) fprintf(stderr, "  old#%d handled %d times\n", n, lu_ok_count(&w->lw.c, OLD, n));
    CHECK(lu_ok_count(&w->lw.c, OLD, n) == 1);
  }
  for (int n = 96; n <= N_OLD; n++) CHECK(w->lw.c.marked[OLD][n] == 0 && lu_reports(&w->lw.s, OLD, n) == 0);
  rollback_counted(w, 0, 5, 5);
}

/* Defines the test `name`: body(world), then the world is freed whatever the body's CHECKs did. */
#define ROLLBACK_TEST(name, body)                                                                 \
  static void name(void) {                                                                        \
    static world_t name##_w;                                                                      \
    body(&name##_w);                                                                              \
    world_free(&name##_w);                                                                        \
  }

ROLLBACK_TEST(restore_from_backup_delivers_new_events, restore_from_backup)
ROLLBACK_TEST(power_loss_under_normal_delivers_new_events, power_loss_under_normal)
ROLLBACK_TEST(restore_with_events_held_above_the_floor_is_safe,
              restore_with_events_held_above_the_floor)

#define TESTS(X)                                                                                  \
  X(restore_from_backup_delivers_new_events)                                                      \
  X(power_loss_under_normal_delivers_new_events)                                                  \
  X(restore_with_events_held_above_the_floor_is_safe)
HD_TEST_MAIN(TESTS)
