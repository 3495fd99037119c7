/* The server store's expiry (store.h expire, set_sent; docs/QUEUES.md "Expiry"): bounded ops,
 * one notice per user per op, sent events left alone, dedup keys pruned, work left for after a
 * reopen, and reads that skip what expired unsent. Every test works in a fresh folder under /tmp
 * that it removes, and every wait on the loop is bounded. */
#include "harness.h"
#include "store_util.h"
#include "wire.h"

#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

#define WAIT_MS 20000 /* generous: valgrind is slow; a passing test never waits this long */
/* The test's start on the store's clock: expiries are set around it. */
static int64_t NOW;

typedef struct fx {
  store_fx_t fx;
  hd__server_store_t *s;
  int done, status;
  uint64_t value;
} fx_t;

static void on_done(void *data, int status, uint64_t value) {
  fx_t *f = data;
  f->done++;
  f->status = status;
  f->value = value;
}

static void on_added(void *data, int status, const hd_add_result_t *r) {
  on_done(data, status, status == 0 ? r->seq : 0);
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int fx_begin(fx_t *f) {
  memset(f, 0, sizeof *f);
  NOW = wall_ms();
  if (store_fx_init(&f->fx, "expiry", "data") != 0) return -1;
  return hd__server_store_open(&f->s, &f->fx.opts);
}

static int fx_close(fx_t *f) {
  if (f->s == NULL) return 0;
  int done = 0;
  int rc = f->s->vt->close(f->s, store_set_flag, &done);
  f->s = NULL;
  return rc != 0 ? rc : store_run_until(&f->fx.loop, &done, 1, WAIT_MS);
}

static int fx_done(fx_t *f) {
  int rc = fx_close(f);
  return store_fx_done(&f->fx) != 0 ? -1 : rc;
}

/* Waits for the op just submitted (rc its submission): 0 and its status in f->status. */
static int wait_op(fx_t *f, int rc) {
  if (rc != 0) return rc;
  int want = f->done + 1;
  return store_run_until(&f->fx.loop, &f->done, want, WAIT_MS) == 0 ? f->status : -1;
}

static void user_key(uint8_t out[32], int n) {
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[31] = 0x5A;
}

/* An add of `text` for user `user` expiring at `expires_ms` (0: never); its seq, or 0. */
static uint64_t add(fx_t *f, int user, const char *text, int64_t expires_ms) {
  uint8_t pk[32];
  user_key(pk, user);
  hd__add_spec_t spec = {.expires_ms = expires_ms};
  int rc = f->s->vt->add_event2(f->s, pk, NOW - 60000, text, strlen(text), &spec, on_added, f);
  return wait_op(f, rc) == 0 ? f->value : 0;
}

/* One expire op at `now`: its value, or UINT64_MAX on failure. */
static uint64_t expire(fx_t *f, int64_t now, uint32_t limit) {
  return wait_op(f, f->s->vt->expire(f->s, now, limit, on_done, f)) == 0 ? f->value : UINT64_MAX;
}

static int set_sent(fx_t *f, int user, uint64_t sent_upto) {
  uint8_t pk[32];
  user_key(pk, user);
  return wait_op(f, f->s->vt->set_sent(f->s, pk, sent_upto, on_done, f));
}

/* What a read of a user's pending rows gave. */
typedef struct rows {
  int n;
  uint64_t seq[64];
  uint32_t kind[64];
  hd__notice_t notice[64];
  int bad_notice;
} rows_t;

static int on_row(void *data, const hd__store_event_t *ev) {
  rows_t *r = data;
  if (r->n == 64) return 1;
  r->seq[r->n] = ev->seq;
  r->kind[r->n] = ev->kind;
  if (ev->kind == HD__STORE_KIND_NOTICE &&
      hd__notice_decode(ev->payload, ev->payload_len, &r->notice[r->n]) != 0) {
    r->bad_notice++;
  }
  r->n++;
  return 0;
}

static int pending_rows(fx_t *f, int user, rows_t *r) {
  uint8_t pk[32];
  user_key(pk, user);
  memset(r, 0, sizeof *r);
  return f->s->vt->read_pending(f->s, pk, 0, 64, on_row, r);
}

static uint64_t pending(fx_t *f, int user) {
  uint8_t pk[32];
  user_key(pk, user);
  uint64_t n = UINT64_MAX;
  return f->s->vt->pending_count(f->s, pk, &n) == 0 ? n : UINT64_MAX;
}

static int is_notice(const rows_t *r, int i, uint64_t count, uint64_t first, uint64_t last) {
  return i < r->n && r->kind[i] == HD__STORE_KIND_NOTICE &&
         r->notice[i].kind == HD_NOTICE_EXPIRED && r->notice[i].count == count &&
         r->notice[i].first_seq == first && r->notice[i].last_seq == last;
}

/* The database's own view (the store closed): one integer. */
static int64_t sql_int(fx_t *f, const char *sql) {
  char path[256];
  snprintf(path, sizeof path, "%s/" HD__STORE_DB_FILE, f->fx.folder);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_open(path, &db) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

static int sql_exec(fx_t *f, const char *sql) {
  char path[256];
  snprintf(path, sizeof path, "%s/" HD__STORE_DB_FILE, f->fx.folder);
  sqlite3 *db = NULL;
  int rc = sqlite3_open(path, &db) == SQLITE_OK ? sqlite3_exec(db, sql, NULL, NULL, NULL) : -1;
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

#define EXPIRED(v) ((v) & UINT32_MAX)

/* ---- tests -------------------------------------------------------------------------------- */

/* Ops take the due events oldest expiry first, at most `limit`, and give each user touched one
 * notice for what it lost in that op, numbered after its events. */
static void bounded_with_a_notice_per_user(fx_t *f) {
  CHECK_OK(fx_begin(f));
  for (int i = 0; i < 5; i++) CHECK(add(f, 1, "a", NOW - 1000 + i) == (uint64_t)i + 1);
  for (int i = 0; i < 3; i++) CHECK(add(f, 2, "bb", NOW - 900 + i) == (uint64_t)i + 1);
  CHECK(add(f, 2, "kept", 0) == 4);
  CHECK(add(f, 2, "later", NOW + 60000) == 5);
  uint64_t v = expire(f, NOW, 4);
  CHECK(EXPIRED(v) == 4 && (v & HD__STORE_EXPIRE_MORE) && (v & HD__STORE_EXPIRE_LEFT));
  v = expire(f, NOW, 100);
  CHECK(EXPIRED(v) == 4 && !(v & HD__STORE_EXPIRE_MORE) && (v & HD__STORE_EXPIRE_LEFT));
  CHECK(EXPIRED(expire(f, NOW, 100)) == 0);
  rows_t r;
  CHECK(pending_rows(f, 1, &r) == 2 && r.bad_notice == 0);
  CHECK(is_notice(&r, 0, 4, 1, 4) && r.seq[0] == 6);
  CHECK(is_notice(&r, 1, 1, 5, 5) && r.seq[1] == 7);
  CHECK(pending_rows(f, 2, &r) == 3 && r.bad_notice == 0);
  CHECK(r.seq[0] == 4 && r.kind[0] == HD__STORE_KIND_EVENT);
  CHECK(r.seq[1] == 5 && r.kind[1] == HD__STORE_KIND_EVENT);
  CHECK(is_notice(&r, 2, 3, 1, 3) && r.seq[2] == 6);
  CHECK(pending(f, 1) == 2 && pending(f, 2) == 3);
  /* the later one's time comes */
  v = expire(f, NOW + 60000, 100);
  CHECK(EXPIRED(v) == 1 && !(v & HD__STORE_EXPIRE_LEFT));
  CHECK(pending_rows(f, 2, &r) == 3 && is_notice(&r, 2, 1, 5, 5) && r.seq[2] == 7);
  CHECK_OK(fx_close(f));
  /* the counts kept are the rows: pending (notices too), bytes (events only) */
  CHECK(sql_int(f, "SELECT count(*) FROM users u WHERE pending != (SELECT count(*) FROM events e"
                   "  WHERE e.user_no = u.user_no)") == 0);
  CHECK(sql_int(f, "SELECT count(*) FROM users u WHERE bytes != (SELECT coalesce(sum(size), 0)"
                   "  FROM events e WHERE e.user_no = u.user_no AND kind = 0)") == 0);
  CHECK(sql_int(f, "SELECT bytes FROM users ORDER BY user_no DESC LIMIT 1") == 4);
}

/* A read skips an event that expired unsent once an expire that may delete it was submitted
 * (from then on no session may send it); the clock alone does not skip it: the sweep records
 * the sessions' sent marks just before it submits and takes what is below a mark for sent, so
 * an event skipped by the clock below a later send would be kept and never sent nor told
 * (test_expiry expired_before_the_sweep). One not yet due, or without an expiry, is read as
 * usual, and so is a due one that was sent (it is the client's). */
static void read_pending_skips_expired(fx_t *f) {
  CHECK_OK(fx_begin(f));
  int64_t now = NOW;
  CHECK(add(f, 1, "sent", now - 1000) == 1);
  CHECK(add(f, 1, "gone", now - 1000) == 2);
  CHECK(add(f, 1, "plain", 0) == 3);
  CHECK(add(f, 1, "soon", now + 600000) == 4);
  CHECK_OK(set_sent(f, 1, 1));
  rows_t r;
  CHECK(pending_rows(f, 1, &r) == 4); /* due, but no sweep took it yet */
  CHECK(EXPIRED(expire(f, now - 2000, 100)) == 0); /* a sweep before its time: not skipped */
  CHECK(pending_rows(f, 1, &r) == 4);
  CHECK(EXPIRED(expire(f, now, 100)) == 1);
  CHECK(pending_rows(f, 1, &r) == 4);
  CHECK(r.seq[0] == 1 && r.seq[1] == 3 && r.seq[2] == 4 && is_notice(&r, 3, 1, 2, 2));
  CHECK(pending(f, 1) == 4);
}

/* An event at or below the user's sent_upto is never expired: it only loses its expiry, so later
 * ops do not find it again. set_sent never lowers the mark. */
static void sent_events_untouched(fx_t *f) {
  CHECK_OK(fx_begin(f));
  for (int i = 0; i < 4; i++) CHECK(add(f, 1, "e", NOW - 100) == (uint64_t)i + 1);
  CHECK_OK(set_sent(f, 1, 2));
  CHECK(f->value == 2);
  CHECK_OK(set_sent(f, 1, 1));
  CHECK(f->value == 2);
  CHECK_OK(set_sent(f, 7, 5)); /* a user the store never saw: nothing to record */
  CHECK(f->value == 0);
  uint64_t v = expire(f, NOW, 100);
  CHECK(EXPIRED(v) == 2 && !(v & HD__STORE_EXPIRE_LEFT));
  rows_t r;
  CHECK(pending_rows(f, 1, &r) == 3);
  CHECK(r.seq[0] == 1 && r.seq[1] == 2 && is_notice(&r, 2, 2, 3, 4));
  CHECK(EXPIRED(expire(f, NOW + 1000, 100)) == 0);
  uint8_t pk[32];
  user_key(pk, 1);
  uint64_t seqs[2] = {1, 2};
  CHECK(f->s->vt->read_events(f->s, pk, seqs, 2, on_row, &r) == 2);
  CHECK_OK(fx_close(f));
  CHECK(sql_int(f, "SELECT count(*) FROM events WHERE expires_ms > 0") == 0);
}

/* Dedup keys older than the window go with the sweep, `limit` at a time, and their users' counts
 * follow. The rows are written as the add path writes them. */
static void dedup_keys_pruned(fx_t *f) {
  CHECK_OK(fx_begin(f));
  CHECK(add(f, 1, "x", 0) == 1);
  CHECK(add(f, 2, "y", 0) == 1);
  CHECK_OK(fx_close(f));
  char sql[1024];
  int64_t old = NOW - 25LL * 3600 * 1000, fresh = NOW - 1000;
  snprintf(sql, sizeof sql,
           "INSERT INTO dedup(user_no, key, seq, digest, at_ms) VALUES"
           " (1, x'01', 1, x'00', %lld), (1, x'02', 1, x'00', %lld), (1, x'03', 1, x'00', %lld),"
           " (2, x'01', 1, x'00', %lld), (2, x'02', 1, x'00', %lld);"
           "UPDATE users SET dedup_keys = 3 WHERE user_no = 1;"
           "UPDATE users SET dedup_keys = 2 WHERE user_no = 2;",
           (long long)old, (long long)old + 1, (long long)fresh, (long long)old + 2,
           (long long)fresh);
  CHECK_OK(sql_exec(f, sql));
  CHECK_OK(hd__server_store_open(&f->s, &f->fx.opts)); /* window: the default 24 h */
  uint64_t v = expire(f, NOW, 2);
  CHECK(EXPIRED(v) == 0 && (v & HD__STORE_EXPIRE_MORE));
  v = expire(f, NOW, 2);
  CHECK(EXPIRED(v) == 0 && !(v & HD__STORE_EXPIRE_MORE));
  CHECK_OK(fx_close(f));
  CHECK(sql_int(f, "SELECT count(*) FROM dedup") == 2);
  snprintf(sql, sizeof sql, "SELECT count(*) FROM dedup WHERE at_ms < %lld", (long long)fresh);
  CHECK(sql_int(f, sql) == 0);
  CHECK(sql_int(f, "SELECT dedup_keys FROM users WHERE user_no = 1") == 1);
  CHECK(sql_int(f, "SELECT dedup_keys FROM users WHERE user_no = 2") == 1);
  /* a shorter window (the server's dedup_window_ms) prunes the fresh ones too */
  f->fx.opts.dedup_window_ms = 500;
  CHECK_OK(hd__server_store_open(&f->s, &f->fx.opts));
  CHECK(EXPIRED(expire(f, NOW, 10)) == 0);
  CHECK_OK(fx_close(f));
  CHECK(sql_int(f, "SELECT count(*) FROM dedup") == 0);
  CHECK(sql_int(f, "SELECT sum(dedup_keys) FROM users") == 0);
}

/* What was due when the store closed is found by the index after a reopen: the sweep goes on
 * where it stopped, and the notices of the first run stay in their place. */
static void restart_resumes(fx_t *f) {
  CHECK_OK(fx_begin(f));
  for (int i = 0; i < 6; i++) CHECK(add(f, 1, "e", NOW - 100 + i) == (uint64_t)i + 1);
  CHECK(EXPIRED(expire(f, NOW, 2)) == 2);
  CHECK_OK(fx_close(f));
  CHECK_OK(hd__server_store_open(&f->s, &f->fx.opts));
  uint64_t v = expire(f, NOW, 100);
  CHECK(EXPIRED(v) == 4 && !(v & HD__STORE_EXPIRE_MORE) && !(v & HD__STORE_EXPIRE_LEFT));
  rows_t r;
  CHECK(pending_rows(f, 1, &r) == 2);
  CHECK(is_notice(&r, 0, 2, 1, 2) && r.seq[0] == 7);
  CHECK(is_notice(&r, 1, 4, 3, 6) && r.seq[1] == 8);
  CHECK(add(f, 1, "next", 0) == 9); /* numbers go on after the notices */
}

/* After a run that ended without a clean close, everything the store held may have been sent:
 * the run's first batch raises the sent marks to it, so a due event held then only loses its
 * expiry. A read made before that batch commits, while an expire that will raise them is
 * already submitted, must hand it out too: skipped then, it was taken for sent by the expire and
 * never read again (found by the crash torture). */
static void unclean_end_counts_as_sent(fx_t *f) {
  CHECK_OK(fx_begin(f));
  CHECK(add(f, 1, "held", NOW - 1000) == 1);
  /* the files as a SIGKILL leaves them: copied while open, the copy opened */
  char to[sizeof f->fx.folder];
  snprintf(to, sizeof to, "%s/crashed", f->fx.dir);
  CHECK_OK(store_copy_file(f->fx.folder, to, "hyperdown.db"));
  CHECK_OK(store_copy_file(f->fx.folder, to, "hyperdown.db-wal"));
  CHECK_OK(store_copy_file(f->fx.folder, to, HD__STORE_MARKER_FILE));
  CHECK_OK(fx_close(f));
  snprintf(f->fx.folder, sizeof f->fx.folder, "%s", to);
  f->fx.opts.folder = f->fx.folder;
  CHECK_OK(hd__server_store_open(&f->s, &f->fx.opts));
  int want = f->done + 1;
  CHECK_OK(f->s->vt->expire(f->s, NOW, 100, on_done, f)); /* in flight while the store reads */
  rows_t r;
  CHECK(pending_rows(f, 1, &r) == 1 && r.seq[0] == 1);
  CHECK_OK(store_run_until(&f->fx.loop, &f->done, want, WAIT_MS));
  CHECK(f->status == 0 && EXPIRED(f->value) == 0); /* taken for sent */
  CHECK(pending_rows(f, 1, &r) == 1 && r.seq[0] == 1);
  CHECK(add(f, 1, "later", NOW - 10) == 2); /* added in this run: it expires */
  CHECK(EXPIRED(expire(f, NOW, 100)) == 1);
  CHECK(pending_rows(f, 1, &r) == 2 && r.seq[0] == 1 && is_notice(&r, 1, 1, 2, 2));
}

static void bad_arguments(fx_t *f) {
  CHECK_OK(fx_begin(f));
  CHECK(f->s->vt->expire(f->s, NOW, 0, on_done, f) == HD_EINVAL);
  CHECK(f->s->vt->set_sent(f->s, NULL, 1, on_done, f) == HD_EINVAL);
  CHECK(f->done == 0);
  /* never above the user's last number (a client's claim cannot cover later adds) */
  CHECK(add(f, 1, "a", NOW - 10) == 1);
  CHECK_OK(set_sent(f, 1, UINT64_MAX));
  CHECK(f->value == 1);
  CHECK(add(f, 1, "b", NOW - 10) == 2);
  CHECK(EXPIRED(expire(f, NOW, 10)) == 1);
}

/* More due than one op takes: the op's cutoff is the expiry of the limit-th due event, and reads
 * skip only what it takes. The ones past the cutoff may still be sent meanwhile (a session
 * sends them, its mark rises over them) and are then the client's; none is skipped by the reads
 * and then taken for sent, which would leave it pending and never sent (an op that took `limit`
 * rows but let the reads skip every due one did). */
static void more_due_than_one_op(fx_t *f) {
  CHECK_OK(fx_begin(f));
  for (int i = 0; i < 5; i++) CHECK(add(f, 1, "e", NOW - 100 + i) == (uint64_t)i + 1);
  CHECK(add(f, 1, "plain", 0) == 6);
  uint64_t v = expire(f, NOW, 2);
  CHECK(EXPIRED(v) == 2 && (v & HD__STORE_EXPIRE_MORE));
  rows_t r;
  /* 3 to 5 are due but past the cutoff: read (and so sent) as usual; then the notice */
  CHECK(pending_rows(f, 1, &r) == 5);
  CHECK(r.seq[0] == 3 && r.seq[1] == 4 && r.seq[2] == 5 && r.seq[3] == 6);
  CHECK(is_notice(&r, 4, 2, 1, 2));
  CHECK_OK(set_sent(f, 1, 7)); /* a session sent all of them */
  v = expire(f, NOW, 2); /* 3 and 4 released */
  CHECK(EXPIRED(v) == 0 && (v & HD__STORE_EXPIRE_MORE));
  v = expire(f, NOW, 2); /* 5 */
  CHECK(EXPIRED(v) == 0 && !(v & HD__STORE_EXPIRE_MORE));
  CHECK(pending_rows(f, 1, &r) == 5 && r.seq[0] == 3); /* the client's: kept, never lost */
  CHECK_OK(fx_close(f));
  CHECK(sql_int(f, "SELECT count(*) FROM events WHERE expires_ms > 0") == 0);
}

/* Events that share an expiry (a fan-out's do) are told apart by user and number: an op takes
 * `limit` of them, not every one due at that instant (an op of 82,000 rows held the writer for
 * half a second in bench/queues expiry before). */
static void ties_bounded(fx_t *f) {
  CHECK_OK(fx_begin(f));
  for (int u = 1; u <= 2; u++) {
    for (int i = 0; i < 5; i++) CHECK(add(f, u, "t", NOW - 50) == (uint64_t)i + 1);
  }
  uint64_t v = expire(f, NOW, 3);
  CHECK(EXPIRED(v) == 3 && (v & HD__STORE_EXPIRE_MORE));
  v = expire(f, NOW, 3);
  CHECK(EXPIRED(v) == 3 && (v & HD__STORE_EXPIRE_MORE));
  v = expire(f, NOW, 3);
  CHECK(EXPIRED(v) == 3 && (v & HD__STORE_EXPIRE_MORE));
  v = expire(f, NOW, 3);
  CHECK(EXPIRED(v) == 1 && !(v & HD__STORE_EXPIRE_MORE));
  CHECK_OK(fx_close(f));
  CHECK(sql_int(f, "SELECT count(*) FROM events WHERE kind = 0") == 0);
}

/* Each test runs on a fixture that is freed whatever its CHECKs did. */
#define FX_TEST(name)                                                                             \
  static void name##_test(void) {                                                                 \
    fx_t f;                                                                                       \
    name(&f);                                                                                     \
    CHECK_OK(fx_done(&f));                                                                        \
  }

FX_TEST(bounded_with_a_notice_per_user)
FX_TEST(read_pending_skips_expired)
FX_TEST(sent_events_untouched)
FX_TEST(dedup_keys_pruned)
FX_TEST(restart_resumes)
FX_TEST(unclean_end_counts_as_sent)
FX_TEST(bad_arguments)
FX_TEST(more_due_than_one_op)
FX_TEST(ties_bounded)

#define TESTS(X)                                                                                  \
  X(bounded_with_a_notice_per_user_test)                                                          \
  X(read_pending_skips_expired_test)                                                              \
  X(sent_events_untouched_test)                                                                   \
  X(dedup_keys_pruned_test)                                                                       \
  X(restart_resumes_test)                                                                         \
  X(unclean_end_counts_as_sent_test)                                                              \
  X(bad_arguments_test)                                                                           \
  X(more_due_than_one_op_test)                                                                    \
  X(ties_bounded_test)
HD_TEST_MAIN(TESTS)
