/* The server store's adds with a spec (store.h add_event2, add_fanout, set_sent): deduplication
 * keys (repeat, conflict, window, cap, two in one batch, across a reopen), collapse keys (the
 * unsent event replaced, a sent one left alone, across clean and unclean reopens), per-user
 * limits (refused, or the oldest unsent dropped with one notice), fan-out (one commit, the
 * payload stored once, a user over its limit failing alone, the payload freed with its last
 * event) and many adds each with its own payload and spec in one op (hd_server_add_events).
 * Each test works in a fresh folder under /tmp; every wait on the loop is bounded. */
#include "harness.h"
#include "store_util.h"
#include "wire.h"

#include <sqlite3.h>
#include <stdio.h>

#define WAIT_MS 20000
#define T0 1700000000000 /* the adds' clock (created_ms): the dedup window is measured on it */

typedef struct add_res {
  int done, status;
  hd_add_result_t r;
} add_res_t;

static void on_add(void *data, int status, const hd_add_result_t *r) {
  add_res_t *a = data;
  a->done++;
  a->status = status;
  if (r != NULL) a->r = *r;
  else memset(&a->r, 0, sizeof a->r);
}

typedef struct fx {
  store_fx_t fx;
  hd__server_store_t *s;
} fx_t;

static int fx_open(fx_t *f) { return hd__server_store_open(&f->s, &f->fx.opts); }

static int fx_begin(fx_t *f) {
  f->s = NULL;
  if (store_fx_init(&f->fx, "adds", "data") != 0) return -1;
  return 0; /* the test sets its options, then fx_open */
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

static void user_key(uint8_t out[32], int n) {
  memset(out, 0, 32);
  out[0] = (uint8_t)n;
  out[1] = (uint8_t)(n >> 8);
  out[31] = 0xA5;
}

static hd__add_spec_t spec_of(const char *dedup, const char *collapse) {
  hd__add_spec_t s = {0};
  if (dedup != NULL) {
    s.dedup_key = (const uint8_t *)dedup;
    s.dedup_key_len = strlen(dedup);
  }
  if (collapse != NULL) {
    s.collapse_key = (const uint8_t *)collapse;
    s.collapse_key_len = strlen(collapse);
  }
  return s;
}

/* Submits an add (the loop is not run). */
static int submit(fx_t *f, int user, int64_t at, const char *text, const hd__add_spec_t *spec,
                  add_res_t *a) {
  uint8_t pk[32];
  user_key(pk, user);
  return f->s->vt->add_event2(f->s, pk, at, text, strlen(text), spec, on_add, a);
}

/* An add run to its completion: its status (0, HD_ELIMIT) and result in *a; -1000 on a timeout. */
static int add_at(fx_t *f, int user, int64_t at, const char *text, const char *dedup,
                  const char *collapse, add_res_t *a) {
  hd__add_spec_t spec = spec_of(dedup, collapse);
  memset(a, 0, sizeof *a);
  int rc = submit(f, user, at, text, &spec, a);
  if (rc != 0) return rc;
  if (store_run_until(&f->fx.loop, &a->done, 1, WAIT_MS) != 0) return -1000;
  return a->status;
}

static void on_count(void *data, int status, uint64_t value) {
  int *done = data;
  *done = status == 0 ? 1 : -1;
  (void)value;
}

static int set_sent(fx_t *f, int user, uint64_t sent) {
  uint8_t pk[32];
  user_key(pk, user);
  int done = 0;
  int rc = f->s->vt->set_sent(f->s, pk, sent, on_count, &done);
  if (rc != 0) return rc;
  return store_run_until(&f->fx.loop, &done, 1, WAIT_MS) == 0 && done == 1 ? 0 : -1;
}

static int delete_seqs(fx_t *f, int user, const uint64_t *seqs, size_t n) {
  uint8_t pk[32];
  user_key(pk, user);
  int done = 0;
  int rc = f->s->vt->delete_events(f->s, pk, seqs, n, on_count, &done);
  if (rc != 0) return rc;
  return store_run_until(&f->fx.loop, &done, 1, WAIT_MS) == 0 && done == 1 ? 0 : -1;
}

static uint64_t pending(fx_t *f, int user) {
  uint8_t pk[32];
  user_key(pk, user);
  uint64_t n = UINT64_MAX;
  f->s->vt->pending_count(f->s, pk, &n);
  return n;
}

/* One event as read_events hands it out (R_ONE). */
typedef struct row {
  int found;
  uint32_t kind;
  char payload[64];
  size_t len;
  hd__notice_t notice;
} row_t;

static int on_row(void *data, const hd__store_event_t *ev) {
  row_t *r = data;
  r->found = 1;
  r->kind = ev->kind;
  r->len = ev->payload_len;
  size_t n = ev->payload_len < sizeof r->payload - 1 ? ev->payload_len : sizeof r->payload - 1;
  memcpy(r->payload, ev->payload, n);
  r->payload[n] = '\0';
  if (ev->kind == HD__STORE_KIND_NOTICE) hd__notice_decode(ev->payload, ev->payload_len, &r->notice);
  return 0;
}

static row_t read_one(fx_t *f, int user, uint64_t seq) {
  uint8_t pk[32];
  user_key(pk, user);
  row_t r = {0};
  f->s->vt->read_events(f->s, pk, &seq, 1, on_row, &r);
  return r;
}

/* The seqs read_pending hands out (R_PAGE), and the last payload. */
typedef struct page {
  int n;
  uint64_t seqs[64];
  char last[64];
} page_t;

static int on_page(void *data, const hd__store_event_t *ev) {
  page_t *p = data;
  if (p->n < 64) p->seqs[p->n] = ev->seq;
  p->n++;
  size_t n = ev->payload_len < sizeof p->last - 1 ? ev->payload_len : sizeof p->last - 1;
  memcpy(p->last, ev->payload, n);
  p->last[n] = '\0';
  return 0;
}

static page_t read_page(fx_t *f, int user) {
  uint8_t pk[32];
  user_key(pk, user);
  page_t p = {0};
  f->s->vt->read_pending(f->s, pk, 0, 64, on_page, &p);
  return p;
}

/* A count from the store's database, read on a connection of the test's own. */
static int64_t sql_count(fx_t *f, const char *sql) {
  char path[200];
  snprintf(path, sizeof path, "%s/hyperdown.db", f->fx.folder);
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    v = sqlite3_column_int64(st, 0);
  }
  sqlite3_finalize(st);
  sqlite3_close(db);
  return v;
}

/* The store's files as a power loss (or a kill) would leave them, copied to <dir>/<name>, which
 * becomes the store's folder once this store is closed. */
static int crash_copy(fx_t *f, const char *name) {
  char to[sizeof f->fx.folder];
  snprintf(to, sizeof to, "%s/%s", f->fx.dir, name);
  if (store_copy_file(f->fx.folder, to, "hyperdown.db") != 0 ||
      store_copy_file(f->fx.folder, to, "hyperdown.db-wal") != 0 ||
      store_copy_file(f->fx.folder, to, HD__STORE_MARKER_FILE) != 0 || fx_close(f) != 0) {
    return -1;
  }
  snprintf(f->fx.folder, sizeof f->fx.folder, "%s", to);
  f->fx.opts.folder = f->fx.folder;
  return 0;
}

/* ---- deduplication ---------------------------------------------------------------------------- */

/* A repeat stores nothing and answers with the first add's number; a different payload under the
 * same key says so (the first wins); another user's same key is its own. */
static void dedup_repeat_and_conflict(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "pay", "k1", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == 0);
  CHECK_OK(add_at(&f, 1, T0 + 1, "pay", "k1", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(add_at(&f, 1, T0 + 2, "other", "k1", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == (HD_ADD_DUPLICATE | HD_ADD_CONFLICT));
  CHECK(pending(&f, 1) == 1);
  CHECK(strcmp(read_one(&f, 1, 1).payload, "pay") == 0);
  CHECK_OK(add_at(&f, 2, T0 + 3, "pay", "k1", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == 0); /* user 2's first */
  CHECK_OK(add_at(&f, 1, T0 + 4, "pay", "k2", NULL, &a));
  CHECK(a.r.seq == 2 && a.r.flags == 0);
  /* the key outlives its event: consumed, a repeat is still a duplicate */
  uint64_t one = 1;
  CHECK_OK(delete_seqs(&f, 1, &one, 1));
  CHECK_OK(add_at(&f, 1, T0 + 5, "pay", "k1", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK(pending(&f, 1) == 1);
  CHECK(sql_count(&f, "SELECT dedup_keys FROM users WHERE user_no = 1") == 2);
  CHECK_OK(fx_done(&f));
}

/* A key older than the window is a new add, and the key then points at it. */
static void dedup_window(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.dedup_window_ms = 1000;
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "a", "k", NULL, &a));
  CHECK(a.r.seq == 1);
  CHECK_OK(add_at(&f, 1, T0 + 999, "a", "k", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(add_at(&f, 1, T0 + 1000, "a", "k", NULL, &a));
  CHECK(a.r.seq == 2 && a.r.flags == 0);
  CHECK_OK(add_at(&f, 1, T0 + 1500, "a", "k", NULL, &a));
  CHECK(a.r.seq == 2 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK(pending(&f, 1) == 2);
  CHECK(sql_count(&f, "SELECT count(*) FROM dedup") == 1);
  CHECK(sql_count(&f, "SELECT dedup_keys FROM users") == 1);
  CHECK_OK(fx_done(&f));
}

/* At the cap the user's oldest key goes: a repeat of it is a new add; younger keys still hold. */
static void dedup_cap(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.dedup_keys_per_user = 3;
  CHECK_OK(fx_open(&f));
  const char *keys[] = {"k1", "k2", "k3", "k4"};
  for (int i = 0; i < 4; i++) CHECK_OK(add_at(&f, 1, T0 + i, "x", keys[i], NULL, &a));
  CHECK(sql_count(&f, "SELECT count(*) FROM dedup") == 3);
  CHECK(sql_count(&f, "SELECT dedup_keys FROM users") == 3);
  CHECK_OK(add_at(&f, 1, T0 + 10, "x", "k2", NULL, &a));
  CHECK(a.r.flags == HD_ADD_DUPLICATE && a.r.seq == 2);
  CHECK_OK(add_at(&f, 1, T0 + 11, "x", "k1", NULL, &a)); /* forgotten: stored again */
  CHECK(a.r.flags == 0 && a.r.seq == 5);
  CHECK(sql_count(&f, "SELECT count(*) FROM dedup") == 3); /* k2 went this time */
  CHECK_OK(add_at(&f, 1, T0 + 12, "x", "k2", NULL, &a));
  CHECK(a.r.flags == 0 && a.r.seq == 6);
  CHECK_OK(add_at(&f, 1, T0 + 13, "x", "k4", NULL, &a));
  CHECK(a.r.flags == HD_ADD_DUPLICATE && a.r.seq == 4);
  CHECK_OK(fx_done(&f));
}

/* Two adds with one key in one batch: the second is the first's duplicate. */
static void dedup_two_in_one_batch(void) {
  fx_t f;
  add_res_t a = {0}, b = {0};
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  hd__add_spec_t spec = spec_of("same", NULL);
  hd__store_stats_t st0, st1;
  f.s->vt->stats(f.s, &st0);
  f.s->vt->hold(f.s, 1);
  CHECK_OK(submit(&f, 1, T0, "first", &spec, &a));
  CHECK_OK(submit(&f, 1, T0, "second", &spec, &b));
  f.s->vt->hold(f.s, 0);
  CHECK(store_run_until(&f.fx.loop, &b.done, 1, WAIT_MS) == 0 && a.done == 1);
  f.s->vt->stats(f.s, &st1);
  CHECK(st1.commits == st0.commits + 1);
  CHECK(a.status == 0 && a.r.seq == 1 && a.r.flags == 0);
  CHECK(b.status == 0 && b.r.seq == 1 && b.r.flags == (HD_ADD_DUPLICATE | HD_ADD_CONFLICT));
  CHECK(pending(&f, 1) == 1);
  CHECK_OK(fx_done(&f));
}

/* Keys are kept across a clean reopen and across a crash (the commit was durable). */
static void dedup_survives_restart(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "a", "k", NULL, &a));
  CHECK_OK(fx_close(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0 + 1, "a", "k", NULL, &a));
  CHECK(a.r.seq == 1 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(add_at(&f, 1, T0 + 2, "b", "k2", NULL, &a));
  CHECK(crash_copy(&f, "crashed") == 0);
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0 + 3, "b", "k2", NULL, &a));
  CHECK(a.r.seq == 2 && a.r.flags == HD_ADD_DUPLICATE);
  CHECK_OK(fx_done(&f));
}

/* ---- collapse -------------------------------------------------------------------------------- */

/* An unsent event with the key is replaced (gone, the new one numbered next); another key or
 * another user is not touched. */
static void collapse_replaces_unsent(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "score 1", NULL, "score", &a));
  CHECK(a.r.seq == 1 && a.r.flags == 0);
  CHECK_OK(add_at(&f, 1, T0, "other", NULL, "weather", &a));
  CHECK_OK(add_at(&f, 2, T0, "u2", NULL, "score", &a));
  CHECK_OK(add_at(&f, 1, T0, "score 2", NULL, "score", &a));
  CHECK(a.r.seq == 3 && a.r.flags == HD_ADD_REPLACED && a.r.replaced_seq == 1);
  CHECK_OK(add_at(&f, 1, T0, "score 3", NULL, "score", &a));
  CHECK(a.r.seq == 4 && a.r.replaced_seq == 3);
  CHECK(!read_one(&f, 1, 1).found && !read_one(&f, 1, 3).found);
  CHECK(strcmp(read_one(&f, 1, 4).payload, "score 3") == 0);
  CHECK(pending(&f, 1) == 2 && pending(&f, 2) == 1);
  CHECK(sql_count(&f, "SELECT bytes FROM users WHERE user_no = 1") == 5 + 7);
  CHECK_OK(fx_done(&f));
}

/* One already sent (the stored mark, or the live session's in the spec) is left alone: both are
 * then held. The mark is never lowered. */
static void collapse_leaves_sent(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "v1", NULL, "k", &a));
  CHECK_OK(set_sent(&f, 1, 1));
  CHECK_OK(add_at(&f, 1, T0, "v2", NULL, "k", &a));
  CHECK(a.r.seq == 2 && a.r.flags == 0);
  CHECK(read_one(&f, 1, 1).found && read_one(&f, 1, 2).found);
  CHECK_OK(set_sent(&f, 1, 0)); /* never lowered */
  CHECK(sql_count(&f, "SELECT sent_upto FROM users") == 1);
  hd__add_spec_t spec = spec_of(NULL, "k");
  spec.sent_upto = 2; /* the live session sent 2 */
  memset(&a, 0, sizeof a);
  CHECK_OK(submit(&f, 1, T0, "v3", &spec, &a));
  CHECK(store_run_until(&f.fx.loop, &a.done, 1, WAIT_MS) == 0);
  CHECK(a.status == 0 && a.r.seq == 3 && a.r.flags == 0);
  CHECK_OK(add_at(&f, 1, T0, "v4", NULL, "k", &a));
  CHECK(a.r.seq == 4 && a.r.flags == HD_ADD_REPLACED && a.r.replaced_seq == 3);
  CHECK(pending(&f, 1) == 3);
  CHECK_OK(set_sent(&f, 1, 99)); /* a claim past the numbering is cut to it */
  CHECK(sql_count(&f, "SELECT sent_upto FROM users") == 4);
  CHECK_OK(fx_done(&f));
}

/* The mark survives a clean reopen; after a run that ended without a clean close (under FULL and
 * under NORMAL) everything held then counts as sent, what is added later does not. */
static void collapse_after_restart(void) {
  for (int normal = 0; normal <= 1; normal++) {
    fx_t f;
    add_res_t a;
    CHECK_OK(fx_begin(&f));
    f.fx.opts.sync_normal = normal;
    CHECK_OK(fx_open(&f));
    CHECK_OK(add_at(&f, 1, T0, "v1", NULL, "k", &a));
    CHECK_OK(set_sent(&f, 1, 1));
    CHECK_OK(add_at(&f, 1, T0, "v2", NULL, "k", &a)); /* 2, unsent */
    CHECK_OK(fx_close(&f));
    CHECK_OK(fx_open(&f));
    CHECK(sql_count(&f, "SELECT count(*) FROM meta WHERE key = 'open'") == (normal ? 1 : 0));
    CHECK_OK(add_at(&f, 1, T0, "v3", NULL, "k", &a)); /* the clean close kept 2 unsent */
    CHECK(a.r.seq == 3 && a.r.replaced_seq == 2);
    CHECK(sql_count(&f, "SELECT count(*) FROM meta WHERE key = 'open'") == 1);
    CHECK(crash_copy(&f, "crashed") == 0);
    CHECK_OK(fx_open(&f));
    CHECK(sql_count(&f, "SELECT sent_upto FROM users") == 1); /* raised by the first batch */
    CHECK_OK(add_at(&f, 1, T0, "v4", NULL, "k", &a)); /* 3 may have been sent: left alone */
    CHECK(a.r.seq == 4 && a.r.flags == 0);
    CHECK(sql_count(&f, "SELECT sent_upto FROM users") == 3);
    CHECK_OK(add_at(&f, 1, T0, "v5", NULL, "k", &a)); /* 4 was added in this run */
    CHECK(a.r.seq == 5 && a.r.replaced_seq == 4);
    CHECK(pending(&f, 1) == 3);
    CHECK_OK(fx_done(&f));
  }
}

/* ---- limits ---------------------------------------------------------------------------------- */

/* Refused with HD_ELIMIT, nothing written, and the batch it was in goes on; a payload above the
 * byte limit never fits; notices do not count as events. */
static void limit_refuses(void) {
  fx_t f;
  add_res_t a = {0}, b = {0};
  CHECK_OK(fx_begin(&f));
  f.fx.opts.max_events_per_user = 2;
  f.fx.opts.max_bytes_per_user = 10;
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 1, T0, "1234", NULL, NULL, &a));
  CHECK_OK(add_at(&f, 1, T0, "5678", NULL, NULL, &a));
  CHECK(add_at(&f, 1, T0, "9", "key", "ck", &a) == HD_ELIMIT);
  CHECK(a.r.seq == 0 && sql_count(&f, "SELECT count(*) FROM dedup") == 0);
  CHECK(pending(&f, 1) == 2);
  hd__add_spec_t none = {0};
  f.s->vt->hold(f.s, 1);
  CHECK_OK(submit(&f, 1, T0, "x", &none, &a));
  a.done = 0;
  CHECK_OK(submit(&f, 2, T0, "y", &none, &b));
  f.s->vt->hold(f.s, 0);
  CHECK(store_run_until(&f.fx.loop, &b.done, 1, WAIT_MS) == 0);
  CHECK(a.status == HD_ELIMIT && b.status == 0 && b.r.seq == 1);
  uint64_t one = 1;
  CHECK_OK(delete_seqs(&f, 1, &one, 1));
  CHECK(add_at(&f, 1, T0, "1234567", NULL, NULL, &a) == HD_ELIMIT); /* 4 + 7 bytes > 10 */
  CHECK_OK(add_at(&f, 1, T0, "123456", NULL, NULL, &a));
  CHECK(add_at(&f, 2, T0, "12345678901", NULL, NULL, &a) == HD_ELIMIT);
  CHECK(sql_count(&f, "SELECT bytes FROM users WHERE user_no = 1") == 10);
  CHECK_OK(fx_done(&f));
}

/* Past a limit the oldest unsent events make room; the client is told by one DROPPED notice that
 * later drops widen; a replaced event makes room too; with nothing unsent the add is refused. */
static void limit_drops_oldest(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.max_events_per_user = 3;
  f.fx.opts.drop_oldest = 1;
  CHECK_OK(fx_open(&f));
  for (int i = 0; i < 3; i++) CHECK_OK(add_at(&f, 1, T0, "e", NULL, NULL, &a));
  CHECK_OK(add_at(&f, 1, T0, "e4", NULL, NULL, &a));
  CHECK(a.r.flags == HD_ADD_DROPPED && a.r.dropped == 1 && a.r.seq == 5);
  row_t n = read_one(&f, 1, 4);
  CHECK(n.found && n.kind == HD__STORE_KIND_NOTICE && n.notice.kind == HD_NOTICE_DROPPED);
  CHECK(n.notice.count == 1 && n.notice.first_seq == 1 && n.notice.last_seq == 1);
  CHECK(!read_one(&f, 1, 1).found && read_one(&f, 1, 2).found);
  CHECK_OK(add_at(&f, 1, T0, "e6", NULL, NULL, &a)); /* drops 2: the notice widens in place */
  CHECK(a.r.dropped == 1 && a.r.seq == 6);
  n = read_one(&f, 1, 4);
  CHECK(n.notice.count == 2 && n.notice.first_seq == 1 && n.notice.last_seq == 2);
  CHECK(pending(&f, 1) == 4); /* 3, the notice, 5, 6 */
  CHECK_OK(add_at(&f, 1, T0, "c1", NULL, "ck", &a)); /* drops 3 */
  CHECK(a.r.seq == 7 && a.r.dropped == 1);
  CHECK_OK(add_at(&f, 1, T0, "c2", NULL, "ck", &a)); /* replacing 7 is room enough */
  CHECK(a.r.seq == 8 && a.r.flags == HD_ADD_REPLACED && a.r.replaced_seq == 7);
  CHECK_OK(set_sent(&f, 1, 6)); /* the notice went out: the next drop has a new one */
  CHECK_OK(add_at(&f, 1, T0, "e9", NULL, NULL, &a));
  CHECK(a.r.flags == HD_ADD_DROPPED && a.r.dropped == 1 && a.r.seq == 10);
  n = read_one(&f, 1, 9);
  CHECK(n.kind == HD__STORE_KIND_NOTICE && n.notice.count == 1 && n.notice.first_seq == 8);
  CHECK(sql_count(&f, "SELECT count(*) FROM events WHERE kind = 0") == 3);
  CHECK_OK(set_sent(&f, 1, 10));
  CHECK(add_at(&f, 1, T0, "e11", NULL, NULL, &a) == HD_ELIMIT); /* all sent: nothing to drop */
  CHECK(pending(&f, 1) == 5);
  CHECK_OK(fx_done(&f));
}

/* Drop-oldest under a byte limit drops as many as it takes. */
static void limit_drops_for_bytes(void) {
  fx_t f;
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.max_bytes_per_user = 10;
  f.fx.opts.drop_oldest = 1;
  CHECK_OK(fx_open(&f));
  for (int i = 0; i < 5; i++) CHECK_OK(add_at(&f, 1, T0, "ab", NULL, NULL, &a));
  CHECK_OK(add_at(&f, 1, T0, "abcdefg", NULL, NULL, &a)); /* needs 7: drops 4 x 2 bytes */
  CHECK(a.r.dropped == 4 && a.r.seq == 7);
  CHECK(sql_count(&f, "SELECT bytes FROM users") == 9);
  CHECK(read_one(&f, 1, 5).found && read_one(&f, 1, 6).notice.count == 4);
  CHECK(add_at(&f, 1, T0, "abcdefghijk", NULL, NULL, &a) == HD_ELIMIT); /* never fits */
  CHECK_OK(fx_done(&f));
}

/* ---- fan-out --------------------------------------------------------------------------------- */

typedef struct fan_res {
  int done, status;
  size_t n;
  hd_fanout_result_t *r;
} fan_res_t;

static void on_fanout(void *data, int status, const hd_fanout_result_t *results, size_t n) {
  fan_res_t *fr = data;
  fr->done++;
  fr->status = status;
  fr->n = n;
  if (results != NULL) memcpy(fr->r, results, n * sizeof *results);
}

static int fanout(fx_t *f, int first_user, size_t n, const char *text, const char *dedup,
                  fan_res_t *fr) {
  uint8_t *users = malloc(32 * n);
  hd__store_add_t *adds = calloc(n, sizeof *adds);
  if (users == NULL || adds == NULL) {
    free(users);
    free(adds);
    return -1;
  }
  hd__add_spec_t spec = spec_of(dedup, NULL);
  for (size_t i = 0; i < n; i++) {
    user_key(users + 32 * i, first_user + (int)i);
    adds[i].user = users + 32 * i;
    adds[i].spec = spec;
  }
  fr->done = 0;
  int rc = f->s->vt->add_fanout(f->s, adds, n, T0, text, strlen(text), on_fanout, fr);
  free(users);
  free(adds);
  if (rc != 0) return rc;
  return store_run_until(&f->fx.loop, &fr->done, 1, WAIT_MS) == 0 ? fr->status : -1000;
}

/* 1000 users in one op, one commit, one payload row; each user's event reads back; deleting the
 * events one user at a time lets go of the payload with the last. */
static void fanout_thousand(void) {
  fx_t f;
  fan_res_t fr = {.r = calloc(1000, sizeof(hd_fanout_result_t))};
  CHECK(fr.r != NULL);
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  add_res_t a;
  CHECK_OK(add_at(&f, 7, T0, "before", NULL, NULL, &a)); /* user 7 has its own numbering */
  hd__store_stats_t st0, st1;
  f.s->vt->stats(f.s, &st0);
  CHECK_OK(fanout(&f, 1, 1000, "breaking news", NULL, &fr));
  f.s->vt->stats(f.s, &st1);
  CHECK(st1.commits == st0.commits + 1 && fr.n == 1000);
  for (int i = 0; i < 1000; i++) {
    CHECK(fr.r[i].status == 0 && fr.r[i].result.seq == (i + 1 == 7 ? 2u : 1u));
  }
  CHECK(sql_count(&f, "SELECT count(*) FROM payloads") == 1);
  CHECK(sql_count(&f, "SELECT refs FROM payloads") == 1000);
  CHECK(sql_count(&f, "SELECT count(*) FROM events WHERE length(payload) > 0") == 1);
  CHECK(sql_count(&f, "SELECT sum(bytes) FROM users") == 1000 * 13 + 6);
  row_t r = read_one(&f, 500, 1);
  CHECK(r.found && strcmp(r.payload, "breaking news") == 0);
  for (int u = 1; u <= 1000; u++) {
    uint64_t seq = u == 7 ? 2 : 1;
    CHECK_OK(delete_seqs(&f, u, &seq, 1));
    if (u == 999) CHECK(sql_count(&f, "SELECT refs FROM payloads") == 1);
  }
  CHECK(sql_count(&f, "SELECT count(*) FROM payloads") == 0);
  CHECK(sql_count(&f, "SELECT sum(bytes) FROM users") == 6);
  free(fr.r);
  CHECK_OK(fx_done(&f));
}

/* A user at its limit fails alone; the payload counts only the users that got it; a fan-out
 * whose users all repeat its key stores no payload. */
static void fanout_one_over_limit(void) {
  fx_t f;
  hd_fanout_result_t r[5];
  fan_res_t fr = {.r = r};
  add_res_t a;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.max_events_per_user = 1;
  CHECK_OK(fx_open(&f));
  CHECK_OK(add_at(&f, 3, T0, "full", NULL, NULL, &a));
  CHECK_OK(fanout(&f, 1, 5, "p", "once", &fr));
  for (int i = 0; i < 5; i++) CHECK(r[i].status == (i == 2 ? HD_ELIMIT : 0));
  CHECK(r[0].result.seq == 1 && r[2].result.seq == 0);
  CHECK(sql_count(&f, "SELECT refs FROM payloads") == 4);
  CHECK(sql_count(&f, "SELECT count(*) FROM dedup") == 4);
  uint64_t one = 1;
  CHECK_OK(delete_seqs(&f, 3, &one, 1));
  CHECK_OK(fanout(&f, 1, 5, "p", "once", &fr)); /* 1, 2, 4, 5 repeat; 3 now has room */
  CHECK(r[0].result.flags == HD_ADD_DUPLICATE && r[2].status == 0 && r[2].result.seq == 2);
  CHECK(sql_count(&f, "SELECT count(*) FROM payloads") == 2);
  CHECK_OK(fanout(&f, 1, 5, "p", "once", &fr)); /* every user repeats: no payload kept */
  for (int i = 0; i < 5; i++) CHECK(r[i].result.flags == HD_ADD_DUPLICATE);
  CHECK(sql_count(&f, "SELECT count(*) FROM payloads") == 2);
  CHECK(f.s->vt->add_fanout(f.s, NULL, HD_FANOUT_MAX_USERS + 1, T0, "p", 1, on_fanout, &fr) ==
        HD_EINVAL);
  CHECK_OK(fx_done(&f));
}

/* The paging read (R_PAGE: sessions and hd_server_list_events) hands out a fan-out's payload. */
static void fanout_read_pending(void) {
  fx_t f;
  hd_fanout_result_t r[3];
  fan_res_t fr = {.r = r};
  CHECK_OK(fx_begin(&f));
  CHECK_OK(fx_open(&f));
  CHECK_OK(fanout(&f, 1, 3, "shared", NULL, &fr));
  page_t p = read_page(&f, 2);
  CHECK(p.n == 1 && p.seqs[0] == 1);
  CHECK(strcmp(p.last, "shared") == 0);
  CHECK_OK(fx_done(&f));
}

/* ---- many adds, each its own (hd_server_add_events' op) -------------------------------------- */

/* One op of items of several users, each with its own payload and spec: a user's items take its
 * numbers in item order, a dedup repeat inside the op answers with the op's own first add, a
 * collapse inside the op replaces the op's own earlier add, a user at its limit fails alone, each
 * item keeps its expiry; one commit; payloads inline (no shared row); a payload given twice in a
 * row reads back right (the op copied it once). */
static void many_own_adds(void) {
  fx_t f;
  CHECK_OK(fx_begin(&f));
  f.fx.opts.max_events_per_user = 3;
  CHECK_OK(fx_open(&f));
  enum { N = 9 };
  uint8_t users[5][32];
  for (int u = 0; u < 5; u++) user_key(users[u], u + 1);
  static const char *const text[N] = {"u1-a", "u2-a", "u1-b", "u3-k", "u3-k", "u4-x", "u4-y",
                                      "u1-c", "u1-d"};
  static const int who[N] = {0, 1, 0, 2, 2, 3, 3, 0, 0};
  hd__store_add_t adds[N];
  memset(adds, 0, sizeof adds);
  for (int i = 0; i < N; i++) {
    adds[i].user = users[who[i]];
    adds[i].payload = text[i];
    adds[i].len = strlen(text[i]);
  }
  adds[3].spec = spec_of("once", NULL);
  adds[4].spec = spec_of("once", NULL);
  adds[5].spec = spec_of(NULL, "ck");
  adds[6].spec = spec_of(NULL, "ck");
  adds[1].spec.expires_ms = T0 + 5000;
  static const char shared_twice[] = "u5-same";
  hd__store_add_t more[2] = {{users[4], shared_twice, 7, {0}}, {users[4], shared_twice, 7, {0}}};
  hd__store_stats_t st0, st1;
  f.s->vt->stats(f.s, &st0);
  hd_fanout_result_t r[N], r2[2];
  fan_res_t fr = {.r = r}, fr2 = {.r = r2};
  f.s->vt->hold(f.s, 1); /* both ops in one batch: one commit */
  CHECK_OK(f.s->vt->add_fanout(f.s, adds, N, T0, NULL, 0, on_fanout, &fr));
  CHECK_OK(f.s->vt->add_fanout(f.s, more, 2, T0, NULL, 0, on_fanout, &fr2));
  f.s->vt->hold(f.s, 0);
  CHECK_OK(store_run_until(&f.fx.loop, &fr2.done, 1, WAIT_MS));
  CHECK(fr.done == 1 && fr.status == 0 && fr.n == N && fr2.status == 0);
  f.s->vt->stats(f.s, &st1);
  CHECK(st1.commits == st0.commits + 1);
  /* user 1: a, b, c take 1, 2, 3 in item order; d is past the limit of 3 */
  CHECK(r[0].status == 0 && r[0].result.seq == 1);
  CHECK(r[2].status == 0 && r[2].result.seq == 2);
  CHECK(r[7].status == 0 && r[7].result.seq == 3);
  CHECK(r[8].status == HD_ELIMIT && r[8].result.seq == 0);
  CHECK(r[1].status == 0 && r[1].result.seq == 1);
  CHECK(r[3].result.seq == 1 && r[3].result.flags == 0);
  CHECK(r[4].status == 0 && r[4].result.seq == 1 && r[4].result.flags == HD_ADD_DUPLICATE);
  CHECK(r[5].result.seq == 1 && r[6].result.seq == 2);
  CHECK(r[6].result.flags == HD_ADD_REPLACED && r[6].result.replaced_seq == 1);
  CHECK(r2[0].result.seq == 1 && r2[1].result.seq == 2);
  page_t p = read_page(&f, 1);
  CHECK(p.n == 3 && p.seqs[0] == 1 && p.seqs[2] == 3 && strcmp(p.last, "u1-c") == 0);
  CHECK(strcmp(read_one(&f, 1, 2).payload, "u1-b") == 0);
  CHECK(strcmp(read_one(&f, 4, 2).payload, "u4-y") == 0 && !read_one(&f, 4, 1).found);
  CHECK(strcmp(read_one(&f, 5, 2).payload, "u5-same") == 0);
  CHECK(pending(&f, 3) == 1 && pending(&f, 5) == 2);
  CHECK(sql_count(&f, "SELECT count(*) FROM payloads") == 0);
  CHECK(sql_count(&f, "SELECT count(*) FROM events WHERE expires_ms = " "1700000005000") == 1);
  CHECK(sql_count(&f, "SELECT sum(bytes) FROM users") == 4 * 3 + 4 + 4 + 4 + 2 * 7);
  /* a bad spec anywhere fails the op whole, before anything is queued */
  adds[8].spec.dedup_key_len = HD_KEY_MAX_BYTES + 1;
  CHECK(f.s->vt->add_fanout(f.s, adds, N, T0, NULL, 0, on_fanout, &fr) == HD_EINVAL);
  CHECK(fr.done == 1);
  CHECK_OK(fx_done(&f));
}

#define TESTS(X)                                                                                  \
  X(dedup_repeat_and_conflict)                                                                    \
  X(dedup_window)                                                                                 \
  X(dedup_cap)                                                                                    \
  X(dedup_two_in_one_batch)                                                                       \
  X(dedup_survives_restart)                                                                       \
  X(collapse_replaces_unsent)                                                                     \
  X(collapse_leaves_sent)                                                                         \
  X(collapse_after_restart)                                                                       \
  X(limit_refuses)                                                                                \
  X(limit_drops_oldest)                                                                           \
  X(limit_drops_for_bytes)                                                                        \
  X(fanout_thousand)                                                                              \
  X(fanout_one_over_limit)                                                                        \
  X(fanout_read_pending)                                                                           \
  X(many_own_adds)
HD_TEST_MAIN(TESTS)
