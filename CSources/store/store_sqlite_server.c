/* The server store on SQLite: per-user queues of events.
 *
 * Layout (docs/STORAGE.md): users get a small integer user_no on first sight; events are
 * clustered by (user_no, seq) in a WITHOUT ROWID table, so a user's queue is one contiguous
 * range of the B-tree and paging is a range scan with no secondary index. users.next_seq keeps
 * the next sequence number, so numbers are never reused even when every event was deleted;
 * users.pending keeps the count so introspection costs no scan.
 *
 * Writes go through the group-commit writer (store_writer.h). Within a batch the touched users
 * live in a small hash table of the store's, used by the batch on the pool thread; their
 * next_seq/pending are written once per batch, not once per event. */
#include "store_sqlite_server.h"
#include "clock.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const server_migrations[] = {
    /* version 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE users(user_no INTEGER PRIMARY KEY, public_key BLOB NOT NULL UNIQUE,"
    "  next_seq INTEGER NOT NULL, pending INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE events(user_no INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL,"
    "  PRIMARY KEY(user_no, seq)) WITHOUT ROWID;"
    /* the id only has to be unique: SQLite's PRNG is seeded from the OS */
    "INSERT INTO meta(key, value) VALUES('store_id', randomblob(16)), ('pause_ms', 0);",
    /* version 2: epochs (docs/STORAGE.md "Epochs"). seq_epoch: the epoch in which the user's
     * next_seq was last written; a floors row (u, n, f): f was the user's highest number at
     * every epoch change from the one after the row's previous write up to n. */
    "ALTER TABLE users ADD COLUMN seq_epoch INTEGER NOT NULL DEFAULT 1;"
    "CREATE TABLE epochs(no INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, reason TEXT NOT NULL,"
    "  at_ms INTEGER NOT NULL);"
    "CREATE TABLE floors(user_no INTEGER NOT NULL, epoch_no INTEGER NOT NULL,"
    "  floor INTEGER NOT NULL, PRIMARY KEY(user_no, epoch_no)) WITHOUT ROWID;"
    "INSERT INTO epochs(no, id, reason, at_ms) VALUES(1, randomblob(16), 'first',"
    "  CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));",
    /* version 3: queue semantics (docs/STORAGE.md "Queue semantics"). events: expires_ms (0:
     * never), kind (0 an event, 1 a notice whose payload is its encoded fields), collapse_key,
     * payload_no (a fan-out's payload, stored once in payloads with a count of its events; the
     * event's own payload is then empty), size (the payload's length wherever it is). users:
     * bytes (payload bytes of its events), sent_upto (events at or below were sent to its
     * client: a collapse never replaces them), dedup_keys (rows in dedup), dead (rows in
     * dead_letters). dead_letters: failed events with their
     * attempts, reason and time; dedup: the keys of recent adds with the digest of their payload */
    "ALTER TABLE events ADD COLUMN expires_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN collapse_key BLOB;"
    "ALTER TABLE events ADD COLUMN payload_no INTEGER;"
    "ALTER TABLE events ADD COLUMN size INTEGER NOT NULL DEFAULT 0;"
    "UPDATE events SET size = length(payload);"
    "CREATE INDEX events_expiry ON events(expires_ms) WHERE expires_ms > 0;"
    "CREATE INDEX events_collapse ON events(user_no, collapse_key)"
    "  WHERE collapse_key IS NOT NULL;"
    /* a user's notices, counted by an add at its limit (few: one per drop run or sweep) */
    "CREATE INDEX events_notices ON events(user_no, seq) WHERE kind = 1;"
    "ALTER TABLE users ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN sent_upto INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN dedup_keys INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE users ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;"
    "UPDATE users SET bytes = (SELECT coalesce(sum(length(payload)), 0) FROM events e"
    "  WHERE e.user_no = users.user_no);"
    "CREATE TABLE payloads(no INTEGER PRIMARY KEY, refs INTEGER NOT NULL, payload BLOB NOT NULL);"
    /* every way an event goes (consumed, expired, dropped, replaced, failed, purged) lets go of
     * a shared payload: the last one deletes it */
    "CREATE TRIGGER events_payload_gone AFTER DELETE ON events WHEN old.payload_no IS NOT NULL"
    "  BEGIN UPDATE payloads SET refs = refs - 1 WHERE no = old.payload_no;"
    "  DELETE FROM payloads WHERE no = old.payload_no AND refs <= 0; END;"
    "CREATE TABLE dead_letters(user_no INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL, attempts INTEGER NOT NULL,"
    "  reason TEXT NOT NULL, dead_ms INTEGER NOT NULL, PRIMARY KEY(user_no, seq)) WITHOUT ROWID;"
    "CREATE TABLE dedup(user_no INTEGER NOT NULL, key BLOB NOT NULL, seq INTEGER NOT NULL,"
    "  digest BLOB NOT NULL, at_ms INTEGER NOT NULL, PRIMARY KEY(user_no, key)) WITHOUT ROWID;"
    "CREATE INDEX dedup_age ON dedup(at_ms);"
    "CREATE INDEX dedup_user_age ON dedup(user_no, at_ms);",
};

/* Epoch changes a store remembers; a client whose epoch is older is resumed as one whose epoch
 * is unknown (from 0, anything it may have seen marked possibly repeated). */
#define EPOCHS_KEPT 64

enum {
  W_USER_GET, W_USER_NEW, W_USER_SET, W_EVENT_ADD, W_EVENT_DEL, W_PAUSE, W_FLOOR, W_USER_DEL,
  W_COUNT
};
static const char *const write_sql[W_COUNT] = {
    "SELECT user_no, next_seq, pending, seq_epoch, bytes, sent_upto, dedup_keys, dead FROM users"
    "  WHERE public_key = ?1",
    "INSERT INTO users(public_key, next_seq, pending) VALUES(?1, 1, 0)",
    "UPDATE users SET next_seq = ?2, pending = ?3, seq_epoch = ?4, bytes = ?5, sent_upto = ?6,"
    "  dedup_keys = ?7, dead = ?8 WHERE user_no = ?1",
    "INSERT INTO events(user_no, seq, created_ms, payload, size) VALUES(?1, ?2, ?3, ?4, ?5)",
    "DELETE FROM events WHERE user_no = ?1 AND seq = ?2 RETURNING kind, size",
    "INSERT OR REPLACE INTO meta(key, value) VALUES('pause_ms', ?1)",
    "INSERT OR REPLACE INTO floors(user_no, epoch_no, floor) VALUES(?1, ?2, ?3)",
    "DELETE FROM events WHERE user_no = ?1",
};

/* An event's payload: its own, or a fan-out's shared one. */
#define PAYLOAD                                                                                   \
  "CASE WHEN payload_no IS NULL THEN payload"                                                     \
  "  ELSE (SELECT payload FROM payloads WHERE no = payload_no) END"

enum {
  R_USER, R_PAGE, R_ONE, R_TOTAL, R_META, R_USERS, R_EPOCH_NO, R_USER_SEQ, R_FLOOR, R_COUNT
};
static const char *const read_sql[R_COUNT] = {
    "SELECT user_no, pending FROM users WHERE public_key = ?1",
    /* not what a submitted expire may delete (docs/QUEUES.md "Expiry"); a fan-out's payload
     * from payloads; the kind last (hd__sqlite_read_events' eighth column) */
    "SELECT seq, created_ms, " PAYLOAD ", NULL, 0, 0, 0, kind FROM events"
    "  WHERE user_no = ?1 AND seq > ?2"
    "  AND (expires_ms = 0 OR (expires_ms, user_no, seq) > (?4, ?6, ?7)"
    "  OR seq <= (SELECT CASE WHEN ?5 THEN max(sent_upto, next_seq - 1) ELSE sent_upto END"
    "  FROM users WHERE user_no = ?1)) ORDER BY seq LIMIT ?3",
    "SELECT created_ms, " PAYLOAD ", kind FROM events WHERE user_no = ?1 AND seq = ?2",
    "SELECT coalesce(sum(pending), 0) FROM users",
    "SELECT value FROM meta WHERE key = ?1",
    "SELECT user_no, public_key, pending FROM users WHERE user_no > ?1 AND pending > 0"
    "  ORDER BY user_no LIMIT ?2",
    /* an id, or (NULL) the first epoch if the store still keeps it */
    "SELECT no FROM epochs WHERE id = ?1 OR (?1 IS NULL AND no = 1)",
    "SELECT user_no, next_seq, seq_epoch FROM users WHERE public_key = ?1",
    "SELECT min(floor) FROM floors WHERE user_no = ?1 AND epoch_no > ?2",
};

_Static_assert(W_COUNT <= HD__SQLITE_MAX_STATEMENTS && R_COUNT <= HD__SQLITE_MAX_STATEMENTS,
               "server store: too many statements");

typedef struct add_op {
  hd__wop_t base;
  uint8_t user[32];
  int64_t created_ms;
  size_t len;
  uint8_t payload[]; /* the one copy of the payload */
} add_op_t;

typedef struct del_op {
  hd__wop_t base;
  uint8_t user[32];
  size_t n;
  uint64_t seqs[];
} del_op_t;

typedef struct pause_op {
  hd__wop_t base;
  uint32_t pause_ms;
} pause_op_t;

static sq_server_t *from_iface(hd__server_store_t *iface) { return hd__sqs_from_iface(iface); }

/* ---- writer (a pool thread, one batch at a time) --------------------------------------------- */

static size_t hash_pk(const uint8_t pk[32]) {
  uint64_t h;
  memcpy(&h, pk, sizeof h);
  return (size_t)((h ^ (h >> 29)) * 0x9E3779B97F4A7C15ull);
}

/* After a run without a clean close, anything may have been sent: every user's sent_upto becomes
 * its highest number as of this open, before the run's first batch reads a user. */
static int raise_sent(sq_server_t *s) {
  static const char *const sql =
      "UPDATE users SET sent_upto = next_seq - 1 WHERE sent_upto < next_seq - 1";
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, sql);
  if (st == NULL) return hd_last_error_code();
  int err = hd__sqlite_step_done(st, "sent after an unclean run");
  if (err == 0) s->raise_in_batch = 1;
  return err;
}

int hd__sqs_batch_user(sq_server_t *s, const uint8_t pk[32], batch_user_t **out) {
  if (s->raise_sent && !s->raise_in_batch) {
    int err = raise_sent(s);
    if (err != 0) {
      *out = NULL;
      return err;
    }
  }
  size_t mask = s->users_cap - 1, i = (hash_pk(pk) >> 7) & mask;
  while (s->users[i].gen == s->gen) {
    if (memcmp(s->users[i].pk, pk, 32) == 0) {
      *out = &s->users[i];
      return 0;
    }
    i = (i + 1) & mask;
  }
  batch_user_t *u = &s->users[i];
  memcpy(u->pk, pk, 32);
  u->gen = s->gen;
  u->user_no = 0;
  u->next_seq = 1;
  u->pending = 0;
  u->seq_epoch = 0;
  u->bytes = 0;
  u->sent_upto = 0;
  u->dedup_keys = 0;
  u->dead = 0;
  u->dirty = 0;
  sqlite3_stmt *st = s->sql.w[W_USER_GET];
  sqlite3_bind_blob(st, 1, pk, 32, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    u->user_no = sqlite3_column_int64(st, 0);
    u->next_seq = sqlite3_column_int64(st, 1);
    u->pending = sqlite3_column_int64(st, 2);
    u->seq_epoch = sqlite3_column_int64(st, 3);
    u->bytes = sqlite3_column_int64(st, 4);
    u->sent_upto = sqlite3_column_int64(st, 5);
    u->dedup_keys = sqlite3_column_int64(st, 6);
    u->dead = sqlite3_column_int64(st, 7);
  }
  u->next_seq_before = u->next_seq;
  int err = 0;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) err = hd__sqlite_error(rc, s->sql.wdb, "user lookup");
  sqlite3_reset(st);
  if (err != 0) u->gen = 0;
  *out = u;
  return err;
}

int hd__sqs_batch_reserve(sq_server_t *s, size_t more) {
  size_t used = 0;
  for (size_t i = 0; i < s->users_cap; i++) used += s->users[i].gen == s->gen;
  if (more > SIZE_MAX / 4 - used) return hd__error(HD_ENOMEM, "batch table: %zu users", more);
  if (2 * (used + more) <= s->users_cap) return 0;
  size_t cap = s->users_cap;
  while (cap < 2 * (used + more)) cap *= 2;
  batch_user_t *users = calloc(cap, sizeof *users);
  size_t *dirty = malloc(cap * sizeof *dirty);
  if (users == NULL || dirty == NULL) {
    free(users);
    free(dirty);
    return hd__error(HD_ENOMEM, "store writer: batch table of %zu users", cap);
  }
  size_t n_dirty = 0;
  for (size_t i = 0; i < s->users_cap; i++) {
    if (s->users[i].gen != s->gen) continue;
    size_t j = (hash_pk(s->users[i].pk) >> 7) & (cap - 1);
    while (users[j].gen == s->gen) j = (j + 1) & (cap - 1);
    users[j] = s->users[i];
    if (users[j].dirty) dirty[n_dirty++] = j;
  }
  free(s->users);
  free(s->dirty);
  s->users = users;
  s->dirty = dirty;
  s->users_cap = cap;
  s->n_dirty = n_dirty;
  return 0;
}

void hd__sqs_mark_dirty(sq_server_t *s, batch_user_t *u) {
  if (!u->dirty) {
    u->dirty = 1;
    s->dirty[s->n_dirty++] = (size_t)(u - s->users);
  }
}

static int run_add(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  add_op_t *op = (add_op_t *)base;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0) return err;
  if (u->user_no == 0) {
    sqlite3_stmt *st = s->sql.w[W_USER_NEW];
    sqlite3_bind_blob(st, 1, op->user, 32, SQLITE_STATIC);
    err = hd__sqlite_step_done(st, "new user");
    if (err != 0) return err;
    u->user_no = sqlite3_last_insert_rowid(s->sql.wdb);
  }
  sqlite3_stmt *st = s->sql.w[W_EVENT_ADD];
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, u->next_seq);
  sqlite3_bind_int64(st, 3, op->created_ms);
  sqlite3_bind_blob(st, 4, op->payload, (int)op->len, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, (int64_t)op->len);
  err = hd__sqlite_step_done(st, "add event");
  sqlite3_clear_bindings(st); /* drop the pointer to the payload */
  if (err != 0) return err;
  base->value = (uint64_t)u->next_seq++;
  u->pending++;
  u->bytes += (int64_t)op->len;
  hd__sqs_mark_dirty(s, u);
  return 0;
}

static int run_delete(void *ctx, hd__wop_t *base) {
  base->value = 0; /* how many were still held: counted below */
  sq_server_t *s = ctx;
  del_op_t *op = (del_op_t *)base;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, op->user, &u);
  if (err != 0 || u->user_no == 0) return err; /* never seen: nothing held */
  sqlite3_stmt *st = s->sql.w[W_EVENT_DEL];
  for (size_t i = 0; i < op->n; i++) {
    if (op->seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(st, 1, u->user_no);
    sqlite3_bind_int64(st, 2, (int64_t)op->seqs[i]);
    int64_t kind = -1, len = 0;
    err = hd__sqs_step_returning(st, &kind, &len, "delete event");
    if (err != 0) return err;
    if (kind < 0) continue; /* not held */
    base->value++;
    u->pending--;
    if (kind == HD__STORE_KIND_EVENT) u->bytes -= len;
  }
  if (base->value != 0) hd__sqs_mark_dirty(s, u);
  return 0;
}

/* Every event of the user; the users row stays (its next_seq keeps numbers from being reused). */
static int run_delete_user(void *ctx, hd__wop_t *base) {
  base->value = 0;
  sq_server_t *s = ctx;
  batch_user_t *u;
  int err = hd__sqs_batch_user(s, ((del_op_t *)base)->user, &u);
  if (err != 0 || u->user_no == 0) return err;
  sqlite3_stmt *st = s->sql.w[W_USER_DEL];
  sqlite3_bind_int64(st, 1, u->user_no);
  err = hd__sqlite_step_done(st, "delete user's events");
  if (err != 0) return err;
  base->value = (uint64_t)sqlite3_changes(s->sql.wdb);
  u->pending = 0;
  u->bytes = 0;
  if (base->value != 0) hd__sqs_mark_dirty(s, u);
  return 0;
}

static int run_pause(void *ctx, hd__wop_t *base) {
  sq_server_t *s = ctx;
  pause_op_t *op = (pause_op_t *)base;
  sqlite3_bind_int64(s->sql.w[W_PAUSE], 1, op->pause_ms);
  base->value = op->pause_ms;
  return hd__sqlite_step_done(s->sql.w[W_PAUSE], "set pause");
}

/* Before BEGIN: sizes the batch's user table and empties it. */
static int kind_begin(hd__sqlite_store_t *sql, size_t n_ops, int relaxed) {
  sq_server_t *s = (sq_server_t *)sql;
  if (s->users_cap < 2 * n_ops || s->users == NULL) {
    size_t cap = 16;
    while (cap < 2 * n_ops) cap *= 2;
    batch_user_t *users = calloc(cap, sizeof *users);
    size_t *dirty = malloc(cap * sizeof *dirty);
    if (users == NULL || dirty == NULL) {
      free(users);
      free(dirty);
      return hd__error(HD_ENOMEM, "store writer: batch table of %zu users", cap);
    }
    free(s->users);
    free(s->dirty);
    s->users = users;
    s->dirty = dirty;
    s->users_cap = cap;
    s->gen = 0;
  }
  s->gen++; /* invalidates every entry of the previous batch */
  s->n_dirty = 0;
  s->raise_in_batch = 0;
  s->open_flag_in_batch = 0;
  return 0;
}

/* The first write of a user since epoch changes records the user's floor at those changes: its
 * row has not changed since, so next_seq - 1 as committed is what it was at each of them. A user
 * new to the store had none (0): if a restore lost it, its numbers start again at 1. A store
 * that never changed epoch needs no floors. */
static int record_floor(sq_server_t *s, const batch_user_t *u) {
  if (u->seq_epoch >= s->epoch_no || s->epoch_no <= 1) return 0;
  sqlite3_stmt *st = s->sql.w[W_FLOOR];
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, s->epoch_no);
  sqlite3_bind_int64(st, 3, u->next_seq_before - 1);
  return hd__sqlite_step_done(st, "record floor");
}

/* Before COMMIT: the touched users' next_seq and pending, once per user per batch. */
static int kind_before_commit(hd__sqlite_store_t *sql) {
  sq_server_t *s = (sq_server_t *)sql;
  if (!s->open_flag) { /* under FULL: the run's first commit says a run is under way */
    int err = hd__sqlite_exec(s->sql.wdb,
                              "INSERT OR REPLACE INTO meta(key, value) VALUES('open', 'full')",
                              "clean-shutdown flag");
    if (err != 0) return err;
    s->open_flag_in_batch = 1;
  }
  sqlite3_stmt *st = s->sql.w[W_USER_SET];
  for (size_t i = 0; i < s->n_dirty; i++) {
    batch_user_t *u = &s->users[s->dirty[i]];
    int err = record_floor(s, u);
    if (err != 0) return err;
    sqlite3_bind_int64(st, 1, u->user_no);
    sqlite3_bind_int64(st, 2, u->next_seq);
    sqlite3_bind_int64(st, 3, u->pending);
    sqlite3_bind_int64(st, 4, s->epoch_no);
    sqlite3_bind_int64(st, 5, u->bytes);
    sqlite3_bind_int64(st, 6, u->sent_upto);
    sqlite3_bind_int64(st, 7, u->dedup_keys);
    sqlite3_bind_int64(st, 8, u->dead);
    err = hd__sqlite_step_done(st, "update user");
    if (err != 0) return err;
  }
  return 0;
}

static void kind_rollback(hd__sqlite_store_t *sql) {
  ((sq_server_t *)sql)->gen++; /* the batch's users hold numbers that were not committed */
}

static void kind_after_commit(hd__sqlite_store_t *sql) {
  sq_server_t *s = (sq_server_t *)sql;
  if (s->raise_in_batch) s->raise_sent = 0;
  if (s->open_flag_in_batch) s->open_flag = 1;
}

/* ---- loop thread -------------------------------------------------------------------------- */

static void pause_done(void *ctx, hd__wop_t *op, int status) {
  if (status == 0) ((sq_server_t *)ctx)->pause_ms = ((pause_op_t *)op)->pause_ms;
  hd__wop_done(ctx, op, status);
}

/* The server store is the truth: every commit is synced as configured (no op is relaxed). */
static const hd__wop_type_t add_type = {run_add, hd__wop_done, 0};
static const hd__wop_type_t delete_type = {run_delete, hd__wop_done, 0};
static const hd__wop_type_t delete_user_type = {run_delete_user, hd__wop_done, 0};
static const hd__wop_type_t pause_type = {run_pause, pause_done, 0};

static int s_add_event(hd__server_store_t *base, const uint8_t user[32], int64_t created_ms,
                       const void *payload, size_t len, hd__store_cb cb, void *cb_data) {
  if (user == NULL || (payload == NULL && len != 0) || len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "add event: no user, or payload missing or too large");
  }
  add_op_t *op = malloc(sizeof *op + len);
  if (op == NULL) return hd__error(HD_ENOMEM, "add event: %zu bytes", len);
  memcpy(op->user, user, 32);
  op->created_ms = created_ms;
  op->len = len;
  if (len != 0) memcpy(op->payload, payload, len);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &add_type, cb, cb_data);
}

static int s_delete_events(hd__server_store_t *base, const uint8_t user[32],
                           const uint64_t *seqs, size_t n, hd__store_cb cb, void *cb_data) {
  if (user == NULL || (seqs == NULL && n != 0) || n > SIZE_MAX / 8 - sizeof(del_op_t)) {
    return hd__error(HD_EINVAL, "delete events: no user or no sequence numbers");
  }
  del_op_t *op = malloc(sizeof *op + n * sizeof(uint64_t));
  if (op == NULL) return hd__error(HD_ENOMEM, "delete events: %zu", n);
  memcpy(op->user, user, 32);
  op->n = n;
  if (n != 0) memcpy(op->seqs, seqs, n * sizeof(uint64_t));
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &delete_type, cb, cb_data);
}

static int s_delete_user(hd__server_store_t *base, const uint8_t user[32], hd__store_cb cb,
                         void *cb_data) {
  if (user == NULL) return hd__error(HD_EINVAL, "delete user: no user");
  del_op_t *op = malloc(sizeof *op); /* no seqs: all of them */
  if (op == NULL) return hd__error(HD_ENOMEM, "delete user");
  memcpy(op->user, user, 32);
  op->n = 0;
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &delete_user_type, cb,
                           cb_data);
}

static int s_set_pause(hd__server_store_t *base, uint32_t pause_ms, hd__store_cb cb,
                       void *cb_data) {
  pause_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "set pause");
  op->pause_ms = pause_ms;
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &pause_type, cb, cb_data);
}

/* The user's number and pending count as committed; user_no 0 if unknown. */
static int read_user(sq_server_t *s, const uint8_t user[32], int64_t *user_no, int64_t *pending) {
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  if (user == NULL) return hd__error(HD_EINVAL, "no user");
  sqlite3_stmt *st = s->sql.r[R_USER];
  sqlite3_bind_blob(st, 1, user, 32, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  *user_no = 0;
  *pending = 0;
  if (rc == SQLITE_ROW) {
    *user_no = sqlite3_column_int64(st, 0);
    *pending = sqlite3_column_int64(st, 1);
  }
  int err = 0;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) err = hd__sqlite_error(rc, s->sql.rdb, "read user");
  sqlite3_reset(st); /* never keep a read transaction open: it would pin the WAL */
  return err;
}

static int s_read_pending(hd__server_store_t *base, const uint8_t user[32], uint64_t after_seq,
                          uint32_t limit, hd__store_event_fn fn, void *fn_data) {
  sq_server_t *s = from_iface(base);
  int64_t user_no, pending;
  int err = read_user(s, user, &user_no, &pending);
  if (err != 0 || user_no == 0 || limit == 0 || after_seq >= INT64_MAX) return err;
  sqlite3_stmt *st = s->sql.r[R_PAGE];
  sqlite3_bind_int64(st, 1, user_no);
  sqlite3_bind_int64(st, 2, (int64_t)after_seq);
  sqlite3_bind_int64(st, 3, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
  /* Only what a submitted expire may delete is skipped, not all that is due by the clock: the
   * sweep records the sessions' sent marks before it submits, and takes an event at or below a
   * mark for sent. An event skipped by the clock alone, below a later send, would be taken for
   * sent, kept, and never sent or told (test_expiry expired_before_the_sweep). */
  sqlite3_bind_int64(st, 4, s->horizon_ms);
  sqlite3_bind_int64(st, 6, s->horizon_user);
  sqlite3_bind_int64(st, 7, s->horizon_seq);
  /* After an unclean end the run's first batch raises every sent mark to what the store held
   * (raise_sent): until then the events it held are the sent ones too, or a read would skip one
   * that the expire then takes for sent (test_store_expiry unclean_end_counts_as_sent). The flag
   * drops just after that commit: a read in between also takes the batch's own adds for sent,
   * which matters only for one already due then. */
  sqlite3_bind_int(st, 5, atomic_load(&s->raise_sent) != 0);
  return hd__sqlite_read_events(st, fn, fn_data, "read pending events");
}

static int s_read_events(hd__server_store_t *base, const uint8_t user[32], const uint64_t *seqs,
                         size_t n, hd__store_event_fn fn, void *fn_data) {
  sq_server_t *s = from_iface(base);
  int64_t user_no, pending;
  int err = read_user(s, user, &user_no, &pending);
  if (err != 0 || user_no == 0) return err;
  sqlite3_stmt *st = s->sql.r[R_ONE];
  int count = 0;
  for (size_t i = 0; i < n; i++) {
    if (seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(st, 1, user_no);
    sqlite3_bind_int64(st, 2, (int64_t)seqs[i]);
    int rc = sqlite3_step(st), stop = 0;
    if (rc == SQLITE_ROW) {
      hd__store_event_t ev = {.seq = seqs[i], .created_ms = sqlite3_column_int64(st, 0),
                              .payload = sqlite3_column_blob(st, 1),
                              .payload_len = (size_t)sqlite3_column_bytes(st, 1),
                              .kind = (uint32_t)sqlite3_column_int(st, 2)};
      count++;
      stop = fn(fn_data, &ev);
    } else if (rc != SQLITE_DONE) {
      err = hd__sqlite_error(rc, s->sql.rdb, "read events");
    }
    sqlite3_reset(st);
    if (err != 0) return err;
    if (stop) break;
  }
  return count;
}

static int s_pending_count(hd__server_store_t *base, const uint8_t user[32], uint64_t *out) {
  int64_t user_no, pending;
  int err = read_user(from_iface(base), user, &user_no, &pending);
  *out = err == 0 ? (uint64_t)pending : 0;
  return err;
}

static int s_pending_users(hd__server_store_t *base, uint64_t *cursor, uint32_t limit,
                           void (*fn)(void *, const uint8_t[32], uint64_t), void *fn_data) {
  sq_server_t *s = from_iface(base);
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_USERS];
  sqlite3_bind_int64(st, 1, (int64_t)*cursor);
  sqlite3_bind_int64(st, 2, limit);
  int rc, count = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const void *key = sqlite3_column_blob(st, 1);
    if (key == NULL || sqlite3_column_bytes(st, 1) != 32) continue; /* not written by us */
    *cursor = (uint64_t)sqlite3_column_int64(st, 0);
    fn(fn_data, key, (uint64_t)sqlite3_column_int64(st, 2));
    count++;
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.rdb, "pending users");
  sqlite3_reset(st);
  return err != 0 ? err : count;
}

static int s_pending_total(hd__server_store_t *base, uint64_t *out) {
  sq_server_t *s = from_iface(base);
  *out = 0;
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_TOTAL];
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) *out = (uint64_t)sqlite3_column_int64(st, 0);
  int err = rc == SQLITE_ROW ? 0 : hd__sqlite_error(rc, s->sql.rdb, "pending total");
  sqlite3_reset(st);
  return err;
}

/* The number of the epoch `epoch` names (all zeros: the store's first), 0 if the store does not
 * know it (any more). */
static int epoch_no_of(sq_server_t *s, const uint8_t epoch[HD_STORE_ID_BYTES], int64_t *no) {
  static const uint8_t zero[HD_STORE_ID_BYTES];
  sqlite3_stmt *st = s->sql.r[R_EPOCH_NO];
  if (memcmp(epoch, zero, HD_STORE_ID_BYTES) == 0) sqlite3_bind_null(st, 1);
  else sqlite3_bind_blob(st, 1, epoch, HD_STORE_ID_BYTES, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  *no = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
  int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.rdb, "epoch");
  sqlite3_reset(st);
  return err;
}

/* The user's lowest floor over the epoch changes after epoch `no`; INT64_MAX if none applies,
 * 0 for a user the store does not know (a restore may have lost it with all its numbers). */
static int lowest_floor(sq_server_t *s, const uint8_t user[32], int64_t no, int64_t *out) {
  sqlite3_stmt *st = s->sql.r[R_USER_SEQ];
  sqlite3_bind_blob(st, 1, user, 32, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  int64_t user_no = 0, next_seq = 1, seq_epoch = 0;
  if (rc == SQLITE_ROW) {
    user_no = sqlite3_column_int64(st, 0);
    next_seq = sqlite3_column_int64(st, 1);
    seq_epoch = sqlite3_column_int64(st, 2);
  }
  int err = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.rdb, "user");
  sqlite3_reset(st);
  if (err != 0 || user_no == 0) {
    *out = 0;
    return err;
  }
  /* not written since the latest changes: its floor at them is what it holds now */
  *out = seq_epoch < s->epoch_no ? next_seq - 1 : INT64_MAX;
  st = s->sql.r[R_FLOOR];
  sqlite3_bind_int64(st, 1, user_no);
  sqlite3_bind_int64(st, 2, no);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL &&
      sqlite3_column_int64(st, 0) < *out) {
    *out = sqlite3_column_int64(st, 0);
  }
  err = rc == SQLITE_ROW ? 0 : hd__sqlite_error(rc, s->sql.rdb, "floor");
  sqlite3_reset(st);
  return err;
}

static int s_resume_floor(hd__server_store_t *base, const uint8_t user[32],
                          const uint8_t epoch[HD_STORE_ID_BYTES], uint64_t high_seq,
                          uint64_t *floor, int *known) {
  sq_server_t *s = from_iface(base);
  *floor = 0;
  *known = 0;
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  if (user == NULL || epoch == NULL) return hd__error(HD_EINVAL, "no user or epoch");
  int64_t no = 0, lowest = 0;
  int err = epoch_no_of(s, epoch, &no);
  if (err != 0 || no == 0) return err; /* unknown: nothing it saw can be vouched for */
  *known = 1;
  err = no >= s->epoch_no ? 0 : lowest_floor(s, user, no, &lowest);
  if (err != 0) return err;
  *floor = no >= s->epoch_no || (uint64_t)lowest > high_seq ? high_seq : (uint64_t)lowest;
  return 0;
}

static void s_epoch(hd__server_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  memcpy(out, from_iface(base)->epoch_id, HD_STORE_ID_BYTES);
}

static const char *s_epoch_change(hd__server_store_t *base) {
  sq_server_t *s = from_iface(base);
  return s->epoch_note[0] != '\0' ? s->epoch_note : NULL;
}

static int s_backup(hd__server_store_t *base, const char *path, hd__store_cb cb, void *cb_data) {
  return hd__sqlite_store_backup(&from_iface(base)->sql, path, cb, cb_data);
}

static uint32_t s_pause(hd__server_store_t *base) { return from_iface(base)->pause_ms; }

static void s_store_id(hd__server_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  memcpy(out, from_iface(base)->store_id, HD_STORE_ID_BYTES);
}

static void s_stats(hd__server_store_t *base, hd__store_stats_t *out) {
  hd__writer_stats(&from_iface(base)->sql.writer, out);
}

static void s_hold(hd__server_store_t *base, int held) {
  hd__writer_hold(&from_iface(base)->sql.writer, held);
}

static int s_close(hd__server_store_t *base, hd_close_cb cb, void *cb_data) {
  return hd__sqlite_store_close(&from_iface(base)->sql, cb, cb_data);
}

static const hd__server_store_vtable_t sqlite_server_vtable = {
    .backend_name = "sqlite",
    .add_event = s_add_event,
    .add_event2 = hd__sqs_add_event2,
    .add_fanout = hd__sqs_add_fanout,
    .set_sent = hd__sqs_set_sent,
    .fail_events = hd__sqs_fail_events,
    .requeue_dead = hd__sqs_requeue_dead,
    .delete_dead = hd__sqs_delete_dead,
    .read_dead = hd__sqs_read_dead,
    .read_dead_seqs = hd__sqs_read_dead_seqs,
    .dead_count = hd__sqs_dead_count,
    .dead_users = hd__sqs_dead_users,
    .delete_events = s_delete_events,
    .delete_user = s_delete_user,
    .expire = hd__sqs_expire,
    .set_pause = s_set_pause,
    .backup = s_backup,
    .read_pending = s_read_pending,
    .read_events = s_read_events,
    .pending_count = s_pending_count,
    .pending_total = s_pending_total,
    .pending_users = s_pending_users,
    .resume_floor = s_resume_floor,
    .pause = s_pause,
    .store_id = s_store_id,
    .epoch = s_epoch,
    .epoch_change = s_epoch_change,
    .stats = s_stats,
    .hold = s_hold,
    .close = s_close,
};

/* ---- epochs: at open and at a clean close ------------------------------------------------ */

/* meta[key] on the opening transaction's connection: its text into buf (or "" if absent). */
static int meta_text(sqlite3 *db, const char *key, char *buf, size_t cap) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL);
  buf[0] = '\0';
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const unsigned char *v = sqlite3_column_text(st, 0);
      snprintf(buf, cap, "%s", v != NULL ? (const char *)v : "");
      rc = SQLITE_DONE;
    }
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, db, key);
  sqlite3_finalize(st);
  return err;
}

static int64_t wall_ms(void) { return hd__sqs_now_ms(); }

int64_t hd__sqs_now_ms(void) { return hd__wall_ms(); }

int hd__sqs_step_returning(sqlite3_stmt *st, int64_t *a, int64_t *b, const char *what) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *a = sqlite3_column_int64(st, 0);
    *b = sqlite3_column_int64(st, 1);
    rc = sqlite3_step(st); /* RETURNING: the statement's work ends with the last row */
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, sqlite3_db_handle(st), what);
  sqlite3_reset(st);
  return err;
}

int hd__sqs_add_notice(sq_server_t *s, batch_user_t *u, const hd__notice_t *n,
                       int64_t created_ms, uint64_t *seq) {
  uint8_t body[HD__NOTICE_MAX];
  size_t len = hd__notice_encode(n, body);
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb,
                                     "INSERT INTO events(user_no, seq, created_ms, payload, kind)"
                                     "  VALUES(?1, ?2, ?3, ?4, 1)");
  if (st == NULL) return hd_last_error_code();
  sqlite3_bind_int64(st, 1, u->user_no);
  sqlite3_bind_int64(st, 2, u->next_seq);
  sqlite3_bind_int64(st, 3, created_ms);
  sqlite3_bind_blob(st, 4, body, (int)len, SQLITE_STATIC);
  int err = hd__sqlite_step_done(st, "add notice");
  sqlite3_clear_bindings(st);
  if (err != 0) return err;
  if (seq != NULL) *seq = (uint64_t)u->next_seq;
  u->next_seq++;
  u->pending++;
  hd__sqs_mark_dirty(s, u);
  return 0;
}

/* A new epoch: recorded with its reason, the oldest forgotten past EPOCHS_KEPT with the floors
 * only they needed. */
static int new_epoch(sqlite3 *db, const char *reason) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO epochs(no, id, reason, at_ms)"
                              "  SELECT max(no) + 1, randomblob(16), ?1, ?2 FROM epochs",
                              -1, &st, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_bind_text(st, 1, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, wall_ms());
    rc = sqlite3_step(st);
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, db, "new epoch");
  sqlite3_finalize(st);
  char sql[256];
  snprintf(sql, sizeof sql,
           "DELETE FROM epochs WHERE no <= (SELECT max(no) FROM epochs) - %d;"
           "DELETE FROM floors WHERE epoch_no <= (SELECT min(no) FROM epochs);"
           "DELETE FROM meta WHERE key = 'backup_ms'",
           EPOCHS_KEPT);
  return err != 0 ? err : hd__sqlite_exec(db, sql, "new epoch");
}

/* Inside the opening transaction. A copy made by a backup carries meta.backup_ms: its first open
 * is a restore. meta.open is set while the store is open ('normal' or 'full') and removed by a
 * clean close: found at open, the last run ended without one; under NORMAL its last commits may
 * be gone. Either starts a new epoch. */
static int kind_open_tx(hd__sqlite_store_t *sql, const hd__store_options_t *opts) {
  sq_server_t *s = (sq_server_t *)sql;
  sqlite3 *db = sql->wdb;
  char backup_ms[32], was_open[16], reason[200];
  int err = meta_text(db, "backup_ms", backup_ms, sizeof backup_ms);
  if (err == 0) err = meta_text(db, "open", was_open, sizeof was_open);
  if (err != 0) return err;
  reason[0] = '\0';
  if (backup_ms[0] != '\0') {
    time_t t = (time_t)(strtoll(backup_ms, NULL, 10) / 1000);
    struct tm tm;
    char when[32] = "?";
    if (gmtime_r(&t, &tm) != NULL) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
    snprintf(reason, sizeof reason, "restored from a backup taken %s", when);
  } else if (strcmp(was_open, "normal") == 0) {
    snprintf(reason, sizeof reason,
             "the last run ended without a clean close under synchronous=NORMAL (its last "
             "commits may be lost)");
  }
  s->epoch_note[0] = '\0';
  if (reason[0] != '\0') {
    err = new_epoch(db, reason);
    if (err != 0) return err;
    snprintf(s->epoch_note, sizeof s->epoch_note,
             "the store starts a new epoch: %s; clients that saw events it no longer has are "
             "told at their next connection and get the events numbered again",
             reason);
  }
  /* After a run without a clean close its sessions may have sent anything the store held: the
   * first batch raises every user's sent_upto (so that no collapse or drop touches what a client
   * may have). */
  s->raise_sent = was_open[0] != '\0';
  s->open_flag = was_open[0] != '\0' || opts->sync_normal;
  /* Under FULL the flag is written by the run's first commit (kind_before_commit), not here: an
   * open that writes nothing also works on a full disk, so the events the store holds are
   * delivered meanwhile. Here it only has to replace a NORMAL run's. */
  if (opts->sync_normal || strcmp(was_open, "normal") == 0) {
    err = hd__sqlite_exec(db,
                          opts->sync_normal
                              ? "INSERT OR REPLACE INTO meta(key, value) VALUES('open', 'normal')"
                              : "INSERT OR REPLACE INTO meta(key, value) VALUES('open', 'full')",
                          "clean-shutdown flag");
    if (err != 0) return err;
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(db, "SELECT no, id FROM epochs ORDER BY no DESC LIMIT 1", -1, &st,
                              NULL);
  if (rc == SQLITE_OK) rc = sqlite3_step(st);
  if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 1) == HD_STORE_ID_BYTES) {
    s->epoch_no = sqlite3_column_int64(st, 0);
    memcpy(s->epoch_id, sqlite3_column_blob(st, 1), HD_STORE_ID_BYTES);
  } else {
    err = rc == SQLITE_ROW || rc == SQLITE_DONE ? hd__error(HD_ECORRUPT, "server store has no epoch")
                                                : hd__sqlite_error(rc, db, "read epoch");
  }
  sqlite3_finalize(st);
  return err;
}

/* A clean close: the next open knows nothing was lost. */
static void kind_closing(hd__sqlite_store_t *sql) {
  sqlite3_exec(sql->wdb, "DELETE FROM meta WHERE key = 'open'", NULL, NULL, NULL);
}

/* At open: the interface, and the store id and the pause, committed by the migration that
 * created the store. */
static int kind_opened(hd__sqlite_store_t *sql, const hd__store_options_t *opts) {
  sq_server_t *s = (sq_server_t *)sql;
  s->iface.vt = &sqlite_server_vtable;
  s->iface.loop = opts->loop;
  s->max_events_per_user = opts->max_events_per_user;
  s->max_bytes_per_user = opts->max_bytes_per_user;
  s->drop_oldest = opts->drop_oldest;
  s->dedup_window_ms = opts->dedup_window_ms > 0 ? opts->dedup_window_ms : 24 * 3600 * 1000;
  s->dedup_keys_per_user = opts->dedup_keys_per_user ? opts->dedup_keys_per_user : 100000;
  sqlite3_stmt *st = s->sql.r[R_META];
  sqlite3_bind_text(st, 1, "store_id", -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), err = 0;
  if (rc != SQLITE_ROW) {
    err = rc == SQLITE_DONE ? hd__error(HD_ECORRUPT, "server store has no store id")
                            : hd__sqlite_error(rc, s->sql.rdb, "read store id");
  } else if (sqlite3_column_bytes(st, 0) != HD_STORE_ID_BYTES) {
    err = hd__error(HD_ECORRUPT, "server store id has %d bytes", sqlite3_column_bytes(st, 0));
  } else {
    memcpy(s->store_id, sqlite3_column_blob(st, 0), HD_STORE_ID_BYTES);
  }
  sqlite3_reset(st);
  if (err != 0) return err;
  sqlite3_bind_text(st, 1, "pause_ms", -1, SQLITE_STATIC);
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) s->pause_ms = (uint32_t)sqlite3_column_int64(st, 0);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) err = hd__sqlite_error(rc, s->sql.rdb, "read pause");
  sqlite3_reset(st);
  return err;
}

static void kind_release(hd__sqlite_store_t *sql) {
  sq_server_t *s = (sq_server_t *)sql;
  free(s->users);
  free(s->dirty);
}

static const hd__sqlite_kind_t server_kind = {
    .name = "server", .size = sizeof(sq_server_t), .application_id = 0x48447376 /* "HDsv" */,
    .migrations = server_migrations, .n_migrations = (int)HD__ARRAY_SIZE(server_migrations),
    .write_sql = write_sql, .n_write = W_COUNT, .read_sql = read_sql, .n_read = R_COUNT,
    .open_tx = kind_open_tx, .opened = kind_opened, .closing = kind_closing,
    .begin = kind_begin, .before_commit = kind_before_commit, .rollback = kind_rollback,
    .after_commit = kind_after_commit,
    .release = kind_release,
    /* the first open of a copy marked so is a restore (kind_open_tx) */
    .backup_mark_sql = "INSERT OR REPLACE INTO meta(key, value) VALUES('backup_ms',"
                       "  CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))",
};

int hd__sqlite_server_store_backup_folder(const char *folder, const char *path) {
  return hd__sqlite_backup_folder(&server_kind, folder, path);
}

int hd__sqlite_server_store_open(hd__server_store_t **out, const hd__store_options_t *opts) {
  hd__sqlite_store_t *sql;
  int err = hd__sqlite_store_open(&sql, &server_kind, opts);
  *out = err == 0 ? &((sq_server_t *)sql)->iface : NULL;
  return err;
}
