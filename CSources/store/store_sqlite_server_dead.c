/* The server store on SQLite: dead letters (docs/QUEUES.md "Dead letters"). An event its client
 * reported failed moves, in one statement pair, from events to dead_letters with its attempts,
 * reason and time; an operator requeues it (a new event with the user's next number, and a
 * notice that says which dead letter it was) or deletes it. users.dead counts a user's dead
 * letters, written once per batch with the rest of its row (kind_before_commit), so that counts
 * cost no scan. */
#include "store_sqlite_server.h"

#include <stdlib.h>
#include <string.h>

/* ---- writes ------------------------------------------------------------------------------- */

typedef struct fail_item {
  uint64_t seq;
  uint32_t attempts;
  size_t reason_off, reason_len; /* into the op's reasons */
} fail_item_t;

typedef struct fail_op {
  hd__wop_t base;
  uint8_t user[32];
  int64_t dead_ms;
  size_t n;
  fail_item_t *items; /* n items, then the reasons: in the same allocation */
  char *reasons;
} fail_op_t;

/* requeue_dead and delete_dead: seqs, or (all) every dead letter of the user. */
typedef struct dead_op {
  hd__wop_t base;
  uint8_t user[32];
  int all;
  size_t n;
  uint64_t seqs[];
} dead_op_t;

/* The event's own payload, or a fan-out's shared one: the dead letter keeps its own copy, since
 * the shared row goes once its last event does. Notices (kind 1) have nothing to keep. */
static const char *const sql_fail_copy =
    "INSERT INTO dead_letters(user_no, seq, created_ms, payload, attempts, reason, dead_ms)"
    "  SELECT user_no, seq, created_ms,"
    "    CASE WHEN payload_no IS NULL THEN payload"
    "      ELSE (SELECT payload FROM payloads WHERE no = payload_no) END,"
    "    ?3, ?4, ?5 FROM events WHERE user_no = ?1 AND seq = ?2 AND kind = 0";
static const char *const sql_event_del =
    "DELETE FROM events WHERE user_no = ?1 AND seq = ?2 RETURNING kind, size";
static const char *const sql_dead_one =
    "SELECT seq, created_ms, payload FROM dead_letters WHERE user_no = ?1 AND seq = ?2";
static const char *const sql_dead_next =
    "SELECT seq, created_ms, payload FROM dead_letters WHERE user_no = ?1 AND seq > ?2"
    "  ORDER BY seq LIMIT 1";
static const char *const sql_requeue_add =
    "INSERT INTO events(user_no, seq, created_ms, payload, size) VALUES(?1, ?2, ?3, ?4, ?5)";
static const char *const sql_dead_del =
    "DELETE FROM dead_letters WHERE user_no = ?1 AND seq = ?2";
static const char *const sql_dead_del_all = "DELETE FROM dead_letters WHERE user_no = ?1";

static int run_fail(void *ctx, hd__wop_t *base) {
  base->value = 0; /* how many moved */
  sq_server_t *s = ctx;
  fail_op_t *op = (fail_op_t *)base;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0 || u->user_no == 0) return err; /* never seen: nothing held */
  sqlite3_stmt *copy = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_fail_copy);
  sqlite3_stmt *del = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_event_del);
  if (copy == NULL || del == NULL) return hd_last_error_code();
  int touched = 0;
  for (size_t i = 0; i < op->n; i++) {
    const fail_item_t *f = &op->items[i];
    if (f->seq > INT64_MAX) continue;
    sqlite3_bind_int64(copy, 1, u->user_no);
    sqlite3_bind_int64(copy, 2, (int64_t)f->seq);
    sqlite3_bind_int64(copy, 3, f->attempts);
    sqlite3_bind_text(copy, 4, op->reasons + f->reason_off, (int)f->reason_len, SQLITE_STATIC);
    sqlite3_bind_int64(copy, 5, op->dead_ms);
    err = hd__sqlite_step_done(copy, "copy a failed event");
    sqlite3_clear_bindings(copy);
    if (err != 0) return err;
    int copied = sqlite3_changes(s->sql.wdb) > 0;
    sqlite3_bind_int64(del, 1, u->user_no);
    sqlite3_bind_int64(del, 2, (int64_t)f->seq);
    int64_t kind = -1, size = 0;
    err = hd__sqs_step_returning(del, &kind, &size, "delete a failed event");
    if (err != 0) return err;
    if (kind < 0) continue; /* not held: consumed, expired, deleted or failed before */
    touched = 1;
    u->pending--;
    if (kind != HD__STORE_KIND_EVENT) continue; /* a notice reported failed: just gone */
    u->bytes -= size;
    if (copied) {
      u->dead++;
      base->value++;
    }
  }
  if (touched) hd__sqs_mark_dirty(s, u);
  return 0;
}

/* Moves one dead letter back: the notice first, so that the client learns which dead letter the
 * event is before it gets the event (numbered next). 1 if it was there (*seq: its number), 0 if
 * not, or an error. */
static int requeue_one(sq_server_t *s, batch_user_t *u, sqlite3_stmt *pick, int64_t *seq) {
  int rc = sqlite3_step(pick);
  if (rc != SQLITE_ROW) {
    int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.wdb, "read a dead letter");
    sqlite3_reset(pick);
    return err;
  }
  int64_t old_seq = sqlite3_column_int64(pick, 0);
  *seq = old_seq;
  int64_t created_ms = sqlite3_column_int64(pick, 1);
  hd__notice_t n = {HD_NOTICE_REQUEUED, 1, (uint64_t)old_seq, (uint64_t)u->next_seq + 1};
  int err = hd__sqs_add_notice(s, u, &n, hd__sqs_now_ms(), NULL);
  sqlite3_stmt *add = err == 0 ? hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_requeue_add) : NULL;
  if (err == 0 && add == NULL) err = hd_last_error_code();
  if (err != 0) {
    sqlite3_reset(pick);
    return err;
  }
  /* the payload is bound where the read left it: valid until the read is reset */
  int len = sqlite3_column_bytes(pick, 2);
  const void *payload = sqlite3_column_blob(pick, 2);
  sqlite3_bind_int64(add, 1, u->user_no);
  sqlite3_bind_int64(add, 2, u->next_seq);
  sqlite3_bind_int64(add, 3, created_ms);
  sqlite3_bind_blob(add, 4, payload != NULL ? payload : "", len, SQLITE_STATIC);
  sqlite3_bind_int64(add, 5, len);
  err = hd__sqlite_step_done(add, "requeue a dead letter");
  sqlite3_clear_bindings(add);
  sqlite3_reset(pick);
  if (err != 0) return err;
  u->next_seq++;
  u->pending++;
  u->bytes += len;
  sqlite3_stmt *del = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql_dead_del);
  if (del == NULL) return hd_last_error_code();
  sqlite3_bind_int64(del, 1, u->user_no);
  sqlite3_bind_int64(del, 2, old_seq);
  err = hd__sqlite_step_done(del, "delete a requeued dead letter");
  if (err != 0) return err;
  u->dead--;
  return 1;
}

static int run_requeue(void *ctx, hd__wop_t *base) {
  base->value = 0;
  sq_server_t *s = ctx;
  dead_op_t *op = (dead_op_t *)base;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0 || u->user_no == 0 || u->dead == 0) return err;
  sqlite3_stmt *pick = hd__sqlite_stmt(&s->sql, s->sql.wdb, op->all ? sql_dead_next : sql_dead_one);
  if (pick == NULL) return hd_last_error_code();
  /* all: the next one above the last requeued, until none is left (the table changes under the
   * walk, so each step is a fresh lookup) */
  int64_t after = 0;
  for (size_t i = 0; op->all || i < op->n; i++) {
    if (!op->all && op->seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(pick, 1, u->user_no);
    sqlite3_bind_int64(pick, 2, op->all ? after : (int64_t)op->seqs[i]);
    int got = requeue_one(s, u, pick, &after);
    if (got < 0) return got;
    if (got == 0 && op->all) break;
    base->value += (uint64_t)got;
  }
  if (base->value != 0) hd__sqs_mark_dirty(s, u);
  return 0;
}

static int run_delete_dead(void *ctx, hd__wop_t *base) {
  base->value = 0;
  sq_server_t *s = ctx;
  dead_op_t *op = (dead_op_t *)base;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0 || u->user_no == 0 || u->dead == 0) return err;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, op->all ? sql_dead_del_all : sql_dead_del);
  if (st == NULL) return hd_last_error_code();
  for (size_t i = 0; op->all ? i < 1 : i < op->n; i++) {
    if (!op->all && op->seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(st, 1, u->user_no);
    if (!op->all) sqlite3_bind_int64(st, 2, (int64_t)op->seqs[i]);
    err = hd__sqlite_step_done(st, "delete dead letters");
    if (err != 0) return err;
    base->value += (uint64_t)sqlite3_changes(s->sql.wdb);
  }
  u->dead -= (int64_t)base->value;
  if (base->value != 0) hd__sqs_mark_dirty(s, u);
  return 0;
}

/* The server store is the truth: these commit synced as configured, like every write of it. */
static const hd__wop_type_t fail_type = {run_fail, hd__wop_done, 0};
static const hd__wop_type_t requeue_type = {run_requeue, hd__wop_done, 0};
static const hd__wop_type_t delete_dead_type = {run_delete_dead, hd__wop_done, 0};

int hd__sqs_fail_events(hd__server_store_t *base, const uint8_t user[32],
                        const hd__store_failed_t *f, size_t n, hd__store_cb cb, void *cb_data) {
  if (user == NULL || (f == NULL && n != 0) || n > (SIZE_MAX / 2) / sizeof(fail_item_t)) {
    return hd__error(HD_EINVAL, "fail events: no user or no events");
  }
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (f[i].reason_len > HD_REASON_MAX_BYTES || (f[i].reason == NULL && f[i].reason_len != 0)) {
      return hd__error(HD_EINVAL, "fail events: the reason of %llu has %zu bytes (at most %d)",
                       (unsigned long long)f[i].seq, f[i].reason_len, HD_REASON_MAX_BYTES);
    }
    bytes += f[i].reason_len;
  }
  fail_op_t *op = malloc(sizeof *op + n * sizeof(fail_item_t) + bytes);
  if (op == NULL) return hd__error(HD_ENOMEM, "fail events: %zu", n);
  memcpy(op->user, user, 32);
  op->dead_ms = hd__sqs_now_ms();
  op->n = n;
  op->items = (fail_item_t *)(void *)(op + 1);
  op->reasons = (char *)(op->items + n);
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    op->items[i] = (fail_item_t){f[i].seq, f[i].attempts, off, f[i].reason_len};
    if (f[i].reason_len != 0) memcpy(op->reasons + off, f[i].reason, f[i].reason_len);
    off += f[i].reason_len;
  }
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, &fail_type, cb,
                           cb_data);
}

static int submit_dead_op(hd__server_store_t *base, const uint8_t user[32], const uint64_t *seqs,
                          size_t n, const hd__wop_type_t *type, hd__store_cb cb, void *cb_data) {
  if (user == NULL || (seqs == NULL && n != 0) || n > (SIZE_MAX / 2) / sizeof(uint64_t)) {
    return hd__error(HD_EINVAL, "dead letters: no user, or no sequence numbers with a count");
  }
  dead_op_t *op = malloc(sizeof *op + n * sizeof(uint64_t));
  if (op == NULL) return hd__error(HD_ENOMEM, "dead letters: %zu", n);
  memcpy(op->user, user, 32);
  op->all = seqs == NULL;
  op->n = n;
  if (n != 0) memcpy(op->seqs, seqs, n * sizeof(uint64_t));
  return hd__writer_submit(&hd__sqs_from_iface(base)->sql.writer, &op->base, type, cb, cb_data);
}

int hd__sqs_requeue_dead(hd__server_store_t *base, const uint8_t user[32], const uint64_t *seqs,
                         size_t n, hd__store_cb cb, void *cb_data) {
  return submit_dead_op(base, user, seqs, n, &requeue_type, cb, cb_data);
}

int hd__sqs_delete_dead(hd__server_store_t *base, const uint8_t user[32], const uint64_t *seqs,
                        size_t n, hd__store_cb cb, void *cb_data) {
  return submit_dead_op(base, user, seqs, n, &delete_dead_type, cb, cb_data);
}

/* ---- reads (loop thread) ------------------------------------------------------------------ */

static const char *const sql_read_page =
    "SELECT d.seq, d.created_ms, d.payload, d.attempts, d.reason, d.dead_ms"
    "  FROM users u JOIN dead_letters d ON d.user_no = u.user_no"
    "  WHERE u.public_key = ?1 AND d.seq > ?2 ORDER BY d.seq LIMIT ?3";
static const char *const sql_read_one =
    "SELECT d.seq, d.created_ms, d.payload, d.attempts, d.reason, d.dead_ms"
    "  FROM users u JOIN dead_letters d ON d.user_no = u.user_no"
    "  WHERE u.public_key = ?1 AND d.seq = ?2";
static const char *const sql_count_user = "SELECT dead FROM users WHERE public_key = ?1";
static const char *const sql_count_all = "SELECT coalesce(sum(dead), 0) FROM users";
static const char *const sql_users =
    "SELECT user_no, public_key, dead FROM users WHERE user_no > ?1 AND dead > 0"
    "  ORDER BY user_no LIMIT ?2";

static sqlite3_stmt *read_stmt(sq_server_t *s, const char *sql) {
  if (s->sql.closing) {
    hd__error(HD_ECLOSED, "store is closing");
    return NULL;
  }
  return hd__sqlite_stmt(&s->sql, s->sql.rdb, sql);
}

/* Steps a bound read of dead letters, each row to fn until fn stops; resets it. Returns how many
 * fn got, or an error. */
static int read_rows(sqlite3_stmt *st, hd__store_dead_fn fn, void *fn_data, int *stopped) {
  int rc, count = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    hd_dead_letter_t dl = {
        .seq = (uint64_t)sqlite3_column_int64(st, 0),
        .created_ms = sqlite3_column_int64(st, 1),
        .payload = sqlite3_column_blob(st, 2),
        .payload_len = (size_t)sqlite3_column_bytes(st, 2),
        .attempts = (uint32_t)sqlite3_column_int64(st, 3),
        .reason = (const char *)sqlite3_column_text(st, 4),
        .reason_len = (size_t)sqlite3_column_bytes(st, 4),
        .dead_ms = sqlite3_column_int64(st, 5),
    };
    count++;
    if (fn(fn_data, &dl) != 0) {
      *stopped = 1;
      rc = SQLITE_DONE;
      break;
    }
  }
  int err = rc == SQLITE_DONE ? count : hd__sqlite_error(rc, sqlite3_db_handle(st), "dead letters");
  sqlite3_reset(st); /* never keep a read open: it would pin the WAL */
  return err;
}

int hd__sqs_read_dead(hd__server_store_t *base, const uint8_t user[32], uint64_t after_seq,
                      uint32_t limit, hd__store_dead_fn fn, void *fn_data) {
  if (user == NULL || fn == NULL) return hd__error(HD_EINVAL, "read dead letters: no user or fn");
  sqlite3_stmt *st = read_stmt(hd__sqs_from_iface(base), sql_read_page);
  if (st == NULL) return hd_last_error_code();
  if (limit == 0 || after_seq >= INT64_MAX) return 0;
  sqlite3_bind_blob(st, 1, user, 32, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st, 2, (int64_t)after_seq);
  sqlite3_bind_int64(st, 3, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
  int stopped = 0;
  return read_rows(st, fn, fn_data, &stopped);
}

int hd__sqs_read_dead_seqs(hd__server_store_t *base, const uint8_t user[32], const uint64_t *seqs,
                           size_t n, hd__store_dead_fn fn, void *fn_data) {
  if (user == NULL || fn == NULL || (seqs == NULL && n != 0)) {
    return hd__error(HD_EINVAL, "read dead letters: no user, fn or seqs");
  }
  sqlite3_stmt *st = read_stmt(hd__sqs_from_iface(base), sql_read_one);
  if (st == NULL) return hd_last_error_code();
  int count = 0, stopped = 0;
  for (size_t i = 0; i < n && !stopped; i++) {
    if (seqs[i] > INT64_MAX) continue;
    sqlite3_bind_blob(st, 1, user, 32, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (int64_t)seqs[i]);
    int got = read_rows(st, fn, fn_data, &stopped);
    if (got < 0) return got;
    count += got;
  }
  return count;
}

int hd__sqs_dead_count(hd__server_store_t *base, const uint8_t user[32], uint64_t *out) {
  *out = 0;
  sqlite3_stmt *st = read_stmt(hd__sqs_from_iface(base), user ? sql_count_user : sql_count_all);
  if (st == NULL) return hd_last_error_code();
  if (user != NULL) sqlite3_bind_blob(st, 1, user, 32, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(st, 0);
  int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
                                                  : hd__sqlite_error(rc, sqlite3_db_handle(st),
                                                                     "dead letter count");
  sqlite3_reset(st);
  return err;
}

int hd__sqs_dead_users(hd__server_store_t *base, uint64_t *cursor, uint32_t limit,
                       void (*fn)(void *, const uint8_t[32], uint64_t), void *fn_data) {
  if (cursor == NULL || fn == NULL) return hd__error(HD_EINVAL, "dead users: no cursor or fn");
  sqlite3_stmt *st = read_stmt(hd__sqs_from_iface(base), sql_users);
  if (st == NULL) return hd_last_error_code();
  if (limit == 0 || *cursor >= INT64_MAX) return 0;
  sqlite3_bind_int64(st, 1, (int64_t)*cursor);
  sqlite3_bind_int64(st, 2, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
  int rc, count = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const void *key = sqlite3_column_blob(st, 1);
    if (key == NULL || sqlite3_column_bytes(st, 1) != 32) continue; /* not written by us */
    *cursor = (uint64_t)sqlite3_column_int64(st, 0);
    fn(fn_data, key, (uint64_t)sqlite3_column_int64(st, 2));
    count++;
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, sqlite3_db_handle(st), "dead users");
  sqlite3_reset(st);
  return err != 0 ? err : count;
}
