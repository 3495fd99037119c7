/* The server store on SQLite: expiry (docs/QUEUES.md "Expiry"). An event with an expiry that was
 * not sent to its client by then is deleted by the expire op, and its user gets one notice per op
 * for what it lost; the dedup keys older than the window go in the same op. Both are bounded per
 * op, so a sweep is a run of short transactions (the server's expiry.c).
 *
 * Sent events are the client's: an expire never deletes an event at or below the user's
 * sent_upto. The server records what a live session sent (set_sent) before it submits an expire,
 * and a read from then on skips what that expire may delete (expire_horizon), so a session can
 * never send an event the op then deletes. A sent event found due only loses its expiry, so that
 * the index stops finding it. */
#include "store_sqlite_server.h"

#include <stdlib.h>
#include <string.h>

typedef struct expire_op {
  hd__wop_t base;
  int64_t now_ms;
  int64_t cutoff_ms, cutoff_user, cutoff_seq; /* every unsent due event at or below it goes, in
                                                 (expires_ms, user_no, seq) order: the reads'
                                                 horizon */
  uint32_t limit;
  int64_t *rows; /* limit x (user_no, seq), then reused for the dedup rows' user_no */
} expire_op_t;


/* events_expiry finds the due rows, oldest expiry first */
static const char *const sql_due =
    "SELECT user_no, seq FROM events WHERE expires_ms > 0"
    "  AND (expires_ms, user_no, seq) <= (?1, ?3, ?4) ORDER BY expires_ms, user_no, seq LIMIT ?2";
static const char *const sql_left = "SELECT 1 FROM events WHERE expires_ms > 0 LIMIT 1";
static const char *const sql_more =
    "SELECT 1 FROM events WHERE expires_ms > 0 AND expires_ms <= ?1 LIMIT 1";
/* the loop's read at submission: the limit-th due event, the op's cutoff (ties of expiry are
 * told apart by user and number, so that no op grows past `limit` because many events share an
 * expiry, as a fan-out's do) */
static const char *const sql_cutoff =
    "SELECT expires_ms, user_no, seq FROM events WHERE expires_ms > 0 AND expires_ms <= ?1"
    "  ORDER BY expires_ms, user_no, seq LIMIT 1 OFFSET ?2";
static const char *const sql_user_key = "SELECT public_key FROM users WHERE user_no = ?1";
static const char *const sql_delete =
    "DELETE FROM events WHERE user_no = ?1 AND seq = ?2 RETURNING kind, size";
static const char *const sql_release =
    "UPDATE events SET expires_ms = 0 WHERE user_no = ?1 AND seq = ?2";
/* dedup_age finds the old keys; the rows' users come back to adjust their counts */
static const char *const sql_dedup_prune =
    "DELETE FROM dedup WHERE (user_no, key) IN (SELECT user_no, key FROM dedup"
    "  WHERE at_ms <= ?1 ORDER BY at_ms LIMIT ?2) RETURNING user_no";

static int cmp_row(const void *a, const void *b) {
  const int64_t *x = a, *y = b;
  if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
  return (x[1] > y[1]) - (x[1] < y[1]);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

/* The batch's entry of the user numbered `user_no` (NULL in *out: no such user). */
static int user_by_no(sq_server_t *s, int64_t user_no, batch_user_t **out) {
  *out = NULL;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_user_key);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, user_no);
  int rc = sqlite3_step(st), err = 0;
  uint8_t pk[32];
  int found = rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == 32;
  if (found) memcpy(pk, sqlite3_column_blob(st, 0), 32);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) err = hd__sqlite_error(rc, s->sql.wdb, "user key");
  sqlite3_reset(st);
  if (err != 0 || !found) return err;
  return hd__sqs_batch_user(s, pk, out);
}

/* The rows [0, n) of one user (sorted by seq): unsent ones deleted, sent ones released; one
 * notice for what was deleted. */
static int expire_user(sq_server_t *s, expire_op_t *op, const int64_t *rows, size_t n,
                       uint64_t *expired) {
  batch_user_t *u;
  int err = user_by_no(s, rows[0], &u);
  if (err != 0 || u == NULL) return err;
  sqlite3_stmt *del = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_delete);
  sqlite3_stmt *rel = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_release);
  if (del == NULL || rel == NULL) return hd_last_error_code();
  hd__notice_t notice = {.kind = HD_NOTICE_EXPIRED};
  for (size_t i = 0; i < n; i++) {
    int64_t seq = rows[2 * i + 1];
    if (seq <= u->sent_upto) {
      sqlite3_bind_int64(rel, 1, u->user_no);
      sqlite3_bind_int64(rel, 2, seq);
      err = hd__sqlite_step_done(rel, "release a sent event's expiry");
      if (err != 0) return err;
      continue;
    }
    sqlite3_bind_int64(del, 1, u->user_no);
    sqlite3_bind_int64(del, 2, seq);
    int64_t kind = -1, size = 0;
    err = hd__sqs_step_returning(del, &kind, &size, "expire event");
    if (err != 0) return err;
    if (kind < 0) continue;
    u->pending--;
    if (kind == HD__STORE_KIND_EVENT) u->bytes -= size;
    if (notice.count++ == 0) notice.first_seq = (uint64_t)seq;
    notice.last_seq = (uint64_t)seq;
  }
  if (notice.count == 0) return 0;
  *expired += notice.count;
  hd__sqs_mark_dirty(s, u);
  return hd__sqs_add_notice(s, u, &notice, op->now_ms, NULL);
}

/* Every unsent event due at or below the op's cutoff goes, `limit` rows at a time: the reads
 * have skipped all of them since the op's submission, so one left behind would be taken for sent
 * by the next op (a later event's send raises the user's mark over it) and stay pending for ever.
 * The cutoff keeps the work near `limit`: it is the limit-th due event (adds due at once since
 * add a few). */
static int expire_events(sq_server_t *s, expire_op_t *op, uint64_t *expired) {
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_due);
  if (st == NULL) return hd_last_error_code();
  size_t n;
  do {
    sqlite3_bind_int64(st, 1, op->cutoff_ms);
    sqlite3_bind_int64(st, 2, op->limit);
    sqlite3_bind_int64(st, 3, op->cutoff_user);
    sqlite3_bind_int64(st, 4, op->cutoff_seq);
    n = 0;
    int rc;
    /* read first, then write: a scan is not to see its own table change under it */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < op->limit) {
      op->rows[2 * n] = sqlite3_column_int64(st, 0);
      op->rows[2 * n + 1] = sqlite3_column_int64(st, 1);
      n++;
    }
    int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                                    : hd__sqlite_error(rc, s->sql.wdb, "due events");
    sqlite3_reset(st);
    if (err != 0 || n == 0) return err;
    qsort(op->rows, n, 2 * sizeof(int64_t), cmp_row);
    /* each row found is deleted or released (its expiry cleared): the next round finds others */
    for (size_t i = 0, j; i < n && err == 0; i = j) {
      for (j = i + 1; j < n && op->rows[2 * j] == op->rows[2 * i]; j++) {}
      err = expire_user(s, op, op->rows + 2 * i, j - i, expired);
    }
    if (err != 0) return err;
  } while (n == op->limit);
  return 0;
}

static int prune_dedup(sq_server_t *s, expire_op_t *op, size_t *found) {
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_dedup_prune);
  if (st == NULL) return hd_last_error_code();
  int64_t cutoff = op->now_ms - s->dedup_window_ms;
  sqlite3_bind_int64(st, 1, cutoff);
  sqlite3_bind_int64(st, 2, op->limit);
  size_t n = 0;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (n < op->limit) op->rows[n++] = sqlite3_column_int64(st, 0);
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.wdb, "prune dedup keys");
  sqlite3_reset(st);
  *found = n;
  if (err != 0 || n == 0) return err;
  qsort(op->rows, n, sizeof(int64_t), cmp_i64);
  for (size_t i = 0, j; i < n && err == 0; i = j) {
    for (j = i + 1; j < n && op->rows[j] == op->rows[i]; j++) {}
    batch_user_t *u;
    err = user_by_no(s, op->rows[i], &u);
    if (err == 0 && u != NULL) {
      u->dedup_keys -= (int64_t)(j - i);
      if (u->dedup_keys < 0) u->dedup_keys = 0;
      hd__sqs_mark_dirty(s, u);
    }
  }
  return err;
}

static int run_expire(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  expire_op_t *op = (expire_op_t *)base;
  uint64_t expired = 0;
  size_t keys = 0;
  base->value = 0;
  int err = expire_events(s, op, &expired);
  if (err == 0) err = prune_dedup(s, op, &keys);
  if (err != 0) return err;
  base->value = expired;
  if (keys == op->limit) base->value |= HD__STORE_EXPIRE_MORE;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_more);
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, op->now_ms);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) base->value |= HD__STORE_EXPIRE_MORE; /* past the cutoff, due already */
  err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.wdb, "due left");
  sqlite3_reset(st);
  if (err != 0) return err;
  st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_left);
  if (st == NULL) return hd_last_error_code();
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) base->value |= HD__STORE_EXPIRE_LEFT;
  err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.wdb, "expiries left");
  sqlite3_reset(st);
  return err;
}

static void expire_done(void *ctx, hd__wop_t *base, int status) {
  free(((expire_op_t *)base)->rows);
  hd__wop_done(ctx, base, status);
}

static const hd__wop_type_t expire_type = {run_expire, expire_done, 0};

int hd__sqs_expire(hd__server_store_t *base, int64_t now_ms, uint32_t limit, hd__store_cb cb,
                   void *cb_data) {
  if (limit == 0 || limit > (1u << 20)) {
    return hd__error(HD_EINVAL, "expire: a limit of 1 to %u, not %u", 1u << 20, limit);
  }
  sq_server_t *s = hd__sqs_from_iface(base);
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  expire_op_t *op = malloc(sizeof *op);
  int64_t *rows = malloc(2 * (size_t)limit * sizeof *rows);
  if (op == NULL || rows == NULL) {
    free(op);
    free(rows);
    return hd__error(HD_ENOMEM, "expire: %u rows", limit);
  }
  op->now_ms = now_ms;
  op->limit = limit;
  op->rows = rows;
  /* the cutoff: everything due now, or the limit-th due event if more are (this thread's read
   * of what is committed; an op queued before this one takes what is due up to its own) */
  int64_t c_ms = now_ms, c_user = INT64_MAX, c_seq = INT64_MAX;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.rdb, sql_cutoff);
  if (st == NULL) {
    free(op);
    free(rows);
    return hd_last_error_code();
  }
  sqlite3_bind_int64(st, 1, now_ms);
  sqlite3_bind_int64(st, 2, (int64_t)limit - 1);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    c_ms = sqlite3_column_int64(st, 0);
    c_user = sqlite3_column_int64(st, 1);
    c_seq = sqlite3_column_int64(st, 2);
  }
  int err = src == SQLITE_ROW || src == SQLITE_DONE ? 0
                                                    : hd__sqlite_error(src, s->sql.rdb, "cutoff");
  sqlite3_reset(st); /* never keep a read transaction open: it would pin the WAL */
  if (err != 0) {
    free(op);
    free(rows);
    return err;
  }
  /* from now on a read skips what this op deletes, whatever the clock does meanwhile; the
   * horizon never goes back (an op queued before takes what is due up to its own) */
  if (c_ms > s->horizon_ms || (c_ms == s->horizon_ms && (c_user > s->horizon_user ||
                                                         (c_user == s->horizon_user &&
                                                          c_seq > s->horizon_seq)))) {
    s->horizon_ms = c_ms;
    s->horizon_user = c_user;
    s->horizon_seq = c_seq;
  }
  op->cutoff_ms = s->horizon_ms;
  op->cutoff_user = s->horizon_user;
  op->cutoff_seq = s->horizon_seq;
  int rc = hd__writer_submit(&s->sql.writer, &op->base, &expire_type, cb, cb_data);
  if (rc != 0) free(rows); /* op was freed */
  return rc;
}

