/* The server store's dead letters (store.h: fail_events, requeue_dead, delete_dead, read_dead,
 * read_dead_seqs, dead_count, dead_users; docs/QUEUES.md "Dead letters") on SQLite: an event
 * reported failed moves with its attempts and reason, a requeue gives it the user's next number
 * after a notice that names both numbers, deletes, paging, the counts kept in the users row, a
 * fan-out's shared payload, and all of it across a reopen. Each test works in a fresh folder
 * under /tmp that it removes; every wait on the loop is bounded. */
#include "harness.h"
#include "store_util.h"

#include "wire.h"

#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

#define WAIT_MS 20000 /* generous: valgrind is slow; a passing test never waits this long */
#define CREATED_MS 1700000000000

typedef struct fx {
  store_fx_t fx;
  hd__server_store_t *s;
  int done, failed, last_status;
  uint64_t values[64];
} fx_t;

static void on_result(void *data, int status, uint64_t value) {
  fx_t *f = data;
  if (status != 0) f->failed++, f->last_status = status;
  if (f->done < (int)HD__ARRAY_SIZE(f->values)) f->values[f->done] = value;
  f->done++;
}

static int fx_open(fx_t *f) { return hd__server_store_open(&f->s, &f->fx.opts); }

static int fx_begin(fx_t *f) {
  memset(f, 0, sizeof *f);
  int rc = store_fx_init(&f->fx, "dead", "data");
  return rc != 0 ? rc : fx_open(f);
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

/* The value of the write just submitted, once it completed; UINT64_MAX if it did not or failed. */
static uint64_t wait_value(fx_t *f) {
  int want = f->done + 1, failed = f->failed;
  if (store_run_until(&f->fx.loop, &f->done, want, WAIT_MS) != 0 || f->done != want ||
      f->failed != failed) {
    return UINT64_MAX;
  }
  return f->values[want - 1];
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void user_key(uint8_t out[32], int n) {
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[31] = 0x5A;
}

/* Adds `n` events "<user>-<i>" (i from 1) for user `user`; 0 or -1. */
static int add_n(fx_t *f, int user, int n) {
  uint8_t pk[32];
  user_key(pk, user);
  for (int i = 1; i <= n; i++) {
    char text[32];
    int len = snprintf(text, sizeof text, "%d-%d", user, i);
    if (f->s->vt->add_event(f->s, pk, CREATED_MS + i, text, (size_t)len, on_result, f) != 0 ||
        wait_value(f) == UINT64_MAX) {
      return -1;
    }
  }
  return 0;
}

/* Reports seqs[0..n) of `user` failed, attempts = seq, reason "r<seq>"; the write's value. */
static uint64_t fail(fx_t *f, int user, const uint64_t *seqs, size_t n) {
  uint8_t pk[32];
  user_key(pk, user);
  hd__store_failed_t items[16];
  char reasons[16][16];
  for (size_t i = 0; i < n && i < 16; i++) {
    int len = snprintf(reasons[i], sizeof reasons[i], "r%llu", (unsigned long long)seqs[i]);
    items[i] = (hd__store_failed_t){seqs[i], (uint32_t)seqs[i], reasons[i], (size_t)len};
  }
  if (n > 16 || f->s->vt->fail_events(f->s, pk, items, n, on_result, f) != 0) return UINT64_MAX;
  return wait_value(f);
}

static uint64_t requeue(fx_t *f, int user, const uint64_t *seqs, size_t n) {
  uint8_t pk[32];
  user_key(pk, user);
  if (f->s->vt->requeue_dead(f->s, pk, seqs, n, on_result, f) != 0) return UINT64_MAX;
  return wait_value(f);
}

static uint64_t delete_dead(fx_t *f, int user, const uint64_t *seqs, size_t n) {
  uint8_t pk[32];
  user_key(pk, user);
  if (f->s->vt->delete_dead(f->s, pk, seqs, n, on_result, f) != 0) return UINT64_MAX;
  return wait_value(f);
}

/* What a read of dead letters handed out. */
typedef struct dead_page {
  int count;
  uint64_t seq[32];
  uint32_t attempts[32];
  int64_t created_ms[32], dead_ms[32];
  char payload[32][32], reason[32][32];
} dead_page_t;

static int on_dead(void *data, const hd_dead_letter_t *dl) {
  dead_page_t *p = data;
  if (p->count >= 32) return 1;
  int i = p->count++;
  p->seq[i] = dl->seq;
  p->attempts[i] = dl->attempts;
  p->created_ms[i] = dl->created_ms;
  p->dead_ms[i] = dl->dead_ms;
  snprintf(p->payload[i], sizeof p->payload[i], "%.*s", (int)dl->payload_len,
           (const char *)dl->payload);
  snprintf(p->reason[i], sizeof p->reason[i], "%.*s", (int)dl->reason_len, dl->reason);
  return 0;
}

typedef struct ev_page {
  int count;
  hd__store_event_t ev[32];
  char payload[32][32];
} ev_page_t;

static int on_event(void *data, const hd__store_event_t *ev) {
  ev_page_t *p = data;
  if (p->count >= 32) return 1;
  int i = p->count++;
  p->ev[i] = *ev;
  size_t n = ev->payload_len < 31 ? ev->payload_len : 31;
  memcpy(p->payload[i], ev->payload, n);
  p->payload[i][n] = '\0';
  p->ev[i].payload = (const uint8_t *)p->payload[i];
  return 0;
}

/* One integer from the store's database, read on a connection of the test's. */
static int64_t sql_int(fx_t *f, const char *sql) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", f->fx.folder, HD__STORE_DB_FILE);
  sqlite3 *db = NULL;
  int64_t v = INT64_MIN;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
      v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return v;
}

static int sql_exec(fx_t *f, const char *sql) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", f->fx.folder, HD__STORE_DB_FILE);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  if (rc != SQLITE_OK) fprintf(stderr, "  sql: %s\n", sqlite3_errmsg(db));
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

/* The users row of user 1 as kind_before_commit wrote it: pending, bytes, dead. */
static int user_row_is(fx_t *f, int64_t pending, int64_t bytes, int64_t dead) {
  int64_t p = sql_int(f, "SELECT pending FROM users WHERE user_no = 1");
  int64_t b = sql_int(f, "SELECT bytes FROM users WHERE user_no = 1");
  int64_t d = sql_int(f, "SELECT dead FROM users WHERE user_no = 1");
  if (p == pending && b == bytes && d == dead) return 1;
  fprintf(stderr, "  users row: pending %lld bytes %lld dead %lld; wanted %lld %lld %lld\n",
          (long long)p, (long long)b, (long long)d, (long long)pending, (long long)bytes,
          (long long)dead);
  return 0;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void move_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 4)); /* "1-1".."1-4": 3 bytes each */
  int64_t t0 = wall_ms();
  uint64_t seqs[] = {2, 3, 3, 99};
  CHECK(fail(f, 1, seqs, 4) == 2); /* 3 twice and 99 (never added) move nothing more */
  int64_t t1 = wall_ms();
  CHECK(user_row_is(f, 2, 6, 2));
  uint64_t n = 0;
  CHECK_OK(f->s->vt->pending_count(f->s, a, &n));
  CHECK(n == 2);
  CHECK_OK(f->s->vt->dead_count(f->s, a, &n));
  CHECK(n == 2);
  CHECK_OK(f->s->vt->dead_count(f->s, NULL, &n));
  CHECK(n == 2);
  dead_page_t p = {0};
  CHECK(f->s->vt->read_dead(f->s, a, 0, 10, on_dead, &p) == 2);
  CHECK(p.seq[0] == 2 && p.seq[1] == 3);
  CHECK(strcmp(p.payload[0], "1-2") == 0 && strcmp(p.payload[1], "1-3") == 0);
  CHECK(p.attempts[0] == 2 && p.attempts[1] == 3);
  CHECK(strcmp(p.reason[0], "r2") == 0 && strcmp(p.reason[1], "r3") == 0);
  CHECK(p.created_ms[0] == CREATED_MS + 2);
  CHECK(p.dead_ms[0] >= t0 && p.dead_ms[1] <= t1);
  ev_page_t e = {0};
  CHECK(f->s->vt->read_pending(f->s, a, 0, 10, on_event, &e) == 2);
  CHECK(e.ev[0].seq == 1 && e.ev[1].seq == 4);
  /* already dead, or never held: nothing moves again */
  uint64_t again[] = {2, 1};
  CHECK(fail(f, 1, again, 1) == 0);
  CHECK(user_row_is(f, 2, 6, 2));
  /* read_dead_seqs: those that are dead letters, in the order given */
  uint64_t ask[] = {3, 1, 2, 77};
  dead_page_t q = {0};
  CHECK(f->s->vt->read_dead_seqs(f->s, a, ask, 4, on_dead, &q) == 2);
  CHECK(q.seq[0] == 3 && q.seq[1] == 2);
  /* another user's: none */
  uint8_t b[32];
  user_key(b, 2);
  dead_page_t r = {0};
  CHECK(f->s->vt->read_dead(f->s, b, 0, 10, on_dead, &r) == 0);
  CHECK_OK(f->s->vt->dead_count(f->s, b, &n));
  CHECK(n == 0);
}

static void fail_moves_held_events(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  move_body(&f);
  CHECK_OK(fx_done(&f));
}

static void requeue_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 3));
  uint64_t seqs[] = {2, 3};
  CHECK(fail(f, 1, seqs, 2) == 2);
  /* dead letter 3 comes back: notice 4 {REQUEUED, 1, 3, 5}, then the event as 5 */
  uint64_t three = 3;
  CHECK(requeue(f, 1, &three, 1) == 1);
  CHECK(user_row_is(f, 3, 6, 1));
  ev_page_t e = {0};
  CHECK(f->s->vt->read_pending(f->s, a, 1, 10, on_event, &e) == 2);
  CHECK(e.ev[0].seq == 4 && e.ev[1].seq == 5);
  CHECK(sql_int(f, "SELECT kind FROM events WHERE user_no = 1 AND seq = 4") == 1);
  CHECK(sql_int(f, "SELECT kind FROM events WHERE user_no = 1 AND seq = 5") == 0);
  hd__notice_t nt;
  CHECK(hd__notice_decode((const uint8_t *)e.payload[0], e.ev[0].payload_len, &nt) == 0);
  CHECK(nt.kind == HD_NOTICE_REQUEUED && nt.count == 1 && nt.first_seq == 3 && nt.last_seq == 5);
  CHECK(strcmp(e.payload[1], "1-3") == 0 && e.ev[1].created_ms == CREATED_MS + 3);
  /* again: no longer a dead letter */
  CHECK(requeue(f, 1, &three, 1) == 0);
  /* all of the user's (NULL, 0): 2 comes back as 7 after notice 6 */
  CHECK(requeue(f, 1, NULL, 0) == 1);
  CHECK(user_row_is(f, 5, 9, 0));
  uint64_t n = 9;
  CHECK_OK(f->s->vt->dead_count(f->s, NULL, &n));
  CHECK(n == 0);
  ev_page_t g = {0};
  CHECK(f->s->vt->read_pending(f->s, a, 5, 10, on_event, &g) == 2);
  CHECK(g.ev[0].seq == 6 && g.ev[1].seq == 7 && strcmp(g.payload[1], "1-2") == 0);
  CHECK(hd__notice_decode((const uint8_t *)g.payload[0], g.ev[0].payload_len, &nt) == 0);
  CHECK(nt.first_seq == 2 && nt.last_seq == 7);
  CHECK(requeue(f, 1, NULL, 0) == 0);
  /* a requeued event can fail again; a notice reported failed just goes (no dead letter) */
  uint64_t fail_again[] = {7, 6};
  CHECK(fail(f, 1, fail_again, 2) == 1);
  CHECK(user_row_is(f, 3, 6, 1));
  CHECK(sql_int(f, "SELECT count(*) FROM events WHERE user_no = 1 AND seq = 6") == 0);
  /* the numbering goes on across a reopen */
  CHECK_OK(fx_close(f));
  CHECK_OK(fx_open(f));
  CHECK(requeue(f, 1, NULL, 0) == 1);
  CHECK(sql_int(f, "SELECT max(seq) FROM events WHERE user_no = 1") == 9);
}

static void requeue_gives_new_seq_after_a_notice(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  requeue_body(&f);
  CHECK_OK(fx_done(&f));
}

static void delete_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 4));
  CHECK_OK(add_n(f, 2, 1));
  uint64_t seqs[] = {1, 2, 3};
  CHECK(fail(f, 1, seqs, 3) == 3);
  uint64_t one = 1;
  CHECK(fail(f, 2, &one, 1) == 1);
  uint64_t del[] = {2, 50, 2};
  CHECK(delete_dead(f, 1, del, 3) == 1);
  CHECK(user_row_is(f, 1, 3, 2));
  CHECK(delete_dead(f, 1, NULL, 0) == 2);
  CHECK(user_row_is(f, 1, 3, 0));
  CHECK(delete_dead(f, 1, NULL, 0) == 0);
  CHECK(delete_dead(f, 9, NULL, 0) == 0); /* never seen */
  uint64_t n = 0;
  CHECK_OK(f->s->vt->dead_count(f->s, a, &n));
  CHECK(n == 0);
  CHECK_OK(f->s->vt->dead_count(f->s, NULL, &n));
  CHECK(n == 1); /* user 2's */
  CHECK(sql_int(f, "SELECT count(*) FROM dead_letters") == 1);
  CHECK(requeue(f, 1, del, 1) == 0); /* deleted for good */
}

static void delete_drops_for_good(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  delete_body(&f);
  CHECK_OK(fx_done(&f));
}

typedef struct users_seen {
  int count;
  uint8_t first[32];
  uint64_t dead[8];
} users_seen_t;

static void on_user(void *data, const uint8_t key[32], uint64_t dead) {
  users_seen_t *u = data;
  if (u->count == 0) memcpy(u->first, key, 32);
  if (u->count < 8) u->dead[u->count] = dead;
  u->count++;
}

static void paging_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 12));
  CHECK_OK(add_n(f, 2, 2));
  CHECK_OK(add_n(f, 3, 1));
  CHECK_OK(add_n(f, 4, 3));
  uint64_t seqs[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
  CHECK(fail(f, 1, seqs, 11) == 11);
  CHECK(fail(f, 2, seqs, 2) == 2);
  CHECK(fail(f, 4, seqs, 3) == 3);
  /* pages of 4 above the cursor, in order */
  uint64_t after = 0;
  int pages = 0, total = 0;
  for (;;) {
    dead_page_t p = {0};
    int got = f->s->vt->read_dead(f->s, a, after, 4, on_dead, &p);
    CHECK(got >= 0 && got <= 4 && got == p.count);
    if (got == 0) break;
    CHECK(p.seq[0] == after + 1 && p.seq[got - 1] == after + (uint64_t)got);
    after = p.seq[got - 1];
    total += got;
    pages++;
  }
  CHECK(pages == 3 && total == 11);
  dead_page_t stop = {0};
  CHECK(f->s->vt->read_dead(f->s, a, 0, 0, on_dead, &stop) == 0); /* limit 0 */
  /* users with dead letters: 1, 2 and 4 (3 has none), paged with a cursor */
  uint64_t cursor = 0;
  users_seen_t u1 = {0}, u2 = {0}, u3 = {0};
  CHECK(f->s->vt->dead_users(f->s, &cursor, 2, on_user, &u1) == 2);
  CHECK(memcmp(u1.first, a, 32) == 0 && u1.dead[0] == 11 && u1.dead[1] == 2);
  CHECK(f->s->vt->dead_users(f->s, &cursor, 2, on_user, &u2) == 1);
  CHECK(u2.dead[0] == 3);
  CHECK(f->s->vt->dead_users(f->s, &cursor, 2, on_user, &u3) == 0);
  uint64_t n = 0;
  CHECK_OK(f->s->vt->dead_count(f->s, NULL, &n));
  CHECK(n == 16);
}

static void paging_and_counts(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  paging_body(&f);
  CHECK_OK(fx_done(&f));
}

static void reopen_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 3));
  uint64_t seqs[] = {1, 3};
  CHECK(fail(f, 1, seqs, 2) == 2);
  CHECK_OK(fx_close(f));
  CHECK_OK(fx_open(f));
  dead_page_t p = {0};
  CHECK(f->s->vt->read_dead(f->s, a, 0, 10, on_dead, &p) == 2);
  CHECK(p.seq[0] == 1 && p.seq[1] == 3 && strcmp(p.reason[1], "r3") == 0);
  CHECK(strcmp(p.payload[1], "1-3") == 0 && p.attempts[1] == 3);
  uint64_t n = 0;
  CHECK_OK(f->s->vt->dead_count(f->s, a, &n));
  CHECK(n == 2);
  CHECK(user_row_is(f, 1, 3, 2));
}

static void dead_letters_survive_reopen(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  reopen_body(&f);
  CHECK_OK(fx_done(&f));
}

/* A fan-out's event keeps its payload in payloads (shared, counted); the dead letter takes its own
 * copy, and the shared row goes once no event refers to it. The rows are written as the fan-out
 * writes them, with the store closed. */
static void fanout_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  CHECK_OK(add_n(f, 1, 1));
  CHECK_OK(add_n(f, 2, 1));
  CHECK_OK(fx_close(f));
  CHECK_OK(sql_exec(f, "BEGIN;"
                       "INSERT INTO payloads(no, refs, payload) VALUES(7, 2, CAST('shared!' AS BLOB));"
                       "INSERT INTO events(user_no, seq, created_ms, payload, payload_no, size)"
                       "  VALUES(1, 2, 5, x'', 7, 7), (2, 2, 5, x'', 7, 7);"
                       "UPDATE users SET next_seq = 3, pending = 2, bytes = 10;"
                       "COMMIT;"));
  CHECK_OK(fx_open(f));
  uint64_t two = 2;
  CHECK(fail(f, 1, &two, 1) == 1);
  dead_page_t p = {0};
  CHECK(f->s->vt->read_dead(f->s, a, 0, 10, on_dead, &p) == 1);
  CHECK(p.seq[0] == 2 && strcmp(p.payload[0], "shared!") == 0);
  CHECK(user_row_is(f, 1, 3, 1));
  CHECK(sql_int(f, "SELECT refs FROM payloads WHERE no = 7") == 1);
  /* the other user's event still has it; requeued, the dead letter's copy is the event's own */
  CHECK(requeue(f, 1, NULL, 0) == 1);
  CHECK(sql_int(f, "SELECT count(*) FROM events WHERE user_no = 1 AND seq = 4 AND size = 7"
                   "  AND payload_no IS NULL AND payload = CAST('shared!' AS BLOB)") == 1);
  uint8_t b[32];
  user_key(b, 2);
  CHECK(fail(f, 2, &two, 1) == 1);
  CHECK(sql_int(f, "SELECT count(*) FROM payloads") == 0);
  dead_page_t q = {0};
  CHECK(f->s->vt->read_dead(f->s, b, 0, 10, on_dead, &q) == 1);
  CHECK(strcmp(q.payload[0], "shared!") == 0);
}

static void fanout_payload_copied(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  fanout_body(&f);
  CHECK_OK(fx_done(&f));
}

static void bad_arguments_body(fx_t *f) {
  uint8_t a[32];
  user_key(a, 1);
  static char long_reason[HD_REASON_MAX_BYTES + 1];
  memset(long_reason, 'x', sizeof long_reason);
  hd__store_failed_t bad = {1, 1, long_reason, sizeof long_reason};
  CHECK_RC(f->s->vt->fail_events(f->s, a, &bad, 1, on_result, f), HD_EINVAL);
  bad.reason_len = HD_REASON_MAX_BYTES; /* the longest is fine */
  CHECK_OK(f->s->vt->fail_events(f->s, a, &bad, 1, on_result, f));
  CHECK(wait_value(f) == 0);
  CHECK_RC(f->s->vt->fail_events(f->s, NULL, &bad, 1, on_result, f), HD_EINVAL);
  CHECK_RC(f->s->vt->fail_events(f->s, a, NULL, 1, on_result, f), HD_EINVAL);
  CHECK_RC(f->s->vt->requeue_dead(f->s, a, NULL, 2, on_result, f), HD_EINVAL);
  CHECK_RC(f->s->vt->delete_dead(f->s, NULL, NULL, 0, on_result, f), HD_EINVAL);
  uint64_t n;
  CHECK_RC(f->s->vt->dead_users(f->s, NULL, 1, on_user, NULL), HD_EINVAL);
  CHECK_RC(f->s->vt->read_dead(f->s, NULL, 0, 1, on_dead, NULL), HD_EINVAL);
  CHECK_OK(f->s->vt->dead_count(f->s, a, &n));
  CHECK(n == 0 && f->done == 1);
}

static void bad_arguments(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  bad_arguments_body(&f);
  CHECK_OK(fx_done(&f));
}

#define TESTS(X)                                                                                  \
  X(fail_moves_held_events)                                                                       \
  X(requeue_gives_new_seq_after_a_notice)                                                         \
  X(delete_drops_for_good)                                                                        \
  X(paging_and_counts)                                                                            \
  X(dead_letters_survive_reopen)                                                                  \
  X(fanout_payload_copied)                                                                        \
  X(bad_arguments)
HD_TEST_MAIN(TESTS)
