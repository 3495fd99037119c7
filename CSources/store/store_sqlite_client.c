/* The client store on SQLite: the events one user received, until its server confirms them.
 *
 * events is keyed by seq (the rowid: clustered, no extra index on the insert path). A partial
 * index over the consumed rows makes the reconnect's "what did I consume" listing cost what it
 * returns, not a scan of every unhandled event. state is 0 for a received event, 1 once
 * consumed (data then holds the consumer's data for the server). meta holds the high-water mark
 * (the highest seq ever received from the remembered server store, kept across forgetting, so a
 * confirmed event that the server sends again is recognised as a duplicate) and that store's id. */
#include "store_sqlite.h"
#include "store_writer.h"

#include <stdlib.h>
#include <string.h>

static const char *const client_migrations[] = {
    /* version 1 */
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
    "CREATE TABLE events(seq INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL,"
    "  payload BLOB NOT NULL, state INTEGER NOT NULL DEFAULT 0, data BLOB);"
    "CREATE INDEX events_consumed ON events(seq) WHERE state = 1;"
    "INSERT INTO meta(key, value) VALUES('high_water', 0);",
    /* version 2: epochs (docs/STORAGE.md "The client's side of epochs"): the flag of an event that
     * came again after an epoch change and may have been handled before, and the events the
     * server's store lost that this client still had to handle */
    "ALTER TABLE events ADD COLUMN repeated INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE orphans(id INTEGER PRIMARY KEY, seq INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL);",
};

enum {
  W_INSERT, W_CONSUME, W_FORGET, W_META_GET, W_META_SET, W_ORPHAN_DEL, W_ORPHAN_END, W_COUNT
};
static const char *const write_sql[W_COUNT] = {
    "INSERT OR IGNORE INTO events(seq, created_ms, payload, repeated) VALUES(?1, ?2, ?3, ?4)",
    "UPDATE events SET state = 1, data = ?2 WHERE seq = ?1 AND created_ms = ?3 AND state = 0",
    "DELETE FROM events WHERE seq = ?1 AND state = 1",
    "SELECT value FROM meta WHERE key = ?1",
    "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    /* an orphan handled: by its row, or (it became one while out) by its seq and time */
    "DELETE FROM orphans WHERE id = ?1 OR (?1 = 0 AND seq = ?2 AND created_ms = ?3)",
    "DELETE FROM meta WHERE key IN ('server_epoch', 'seen_upto')",
};

enum { R_META, R_UNHANDLED, R_CONSUMED, R_COUNTS, R_ORPHANS, R_COUNT };
static const char *const read_sql[R_COUNT] = {
    "SELECT value FROM meta WHERE key = ?1",
    "SELECT seq, created_ms, payload, NULL, repeated FROM events WHERE state = 0 AND seq > ?1"
    "  ORDER BY seq LIMIT ?2",
    "SELECT seq, created_ms, payload, data FROM events WHERE state = 1 AND seq > ?1"
    "  ORDER BY seq LIMIT ?2",
    "SELECT coalesce(sum(state = 0), 0) + (SELECT count(*) FROM orphans),"
    "  coalesce(sum(state = 1), 0) FROM events",
    "SELECT seq, created_ms, payload, NULL, 2, id FROM orphans WHERE id > ?1 ORDER BY id"
    "  LIMIT ?2",
};

/* The rewind's statements, prepared when it runs (once per epoch change). */
static const char rewind_sql[] =
    "INSERT INTO orphans(seq, created_ms, payload)"
    "  SELECT seq, created_ms, payload FROM events WHERE seq > ?1 AND state = 0 ORDER BY seq";

_Static_assert(W_COUNT <= HD__SQLITE_MAX_STATEMENTS && R_COUNT <= HD__SQLITE_MAX_STATEMENTS,
               "client store: too many statements");

typedef struct sq_client {
  hd__sqlite_store_t sql; /* first: the writer's ctx and the allocation */
  hd__client_store_t iface;
  int sync_full;   /* synchronous=FULL was asked for */
  int synced_full; /* writer (pool thread): the level the write connection is at now */
  /* writer (pool thread): the mark as committed and as the current batch leaves it; the same
   * for seen_upto (events at or below it not held are marked repeated when they come) */
  int64_t hw_committed;
  int64_t hw;
  int64_t seen_committed;
  int64_t seen;
} sq_client_t;

typedef struct insert_op {
  hd__wop_t base;
  size_t n;
  hd__store_event_t evs[]; /* followed by the payloads, copied once */
} insert_op_t;

typedef struct consume_op {
  hd__wop_t base;
  uint64_t seq;
  int64_t created_ms;
  int64_t orphan;
  size_t len;
  uint8_t data[];
} consume_op_t;

typedef struct rewind_op {
  hd__wop_t base;
  uint64_t floor, seen_upto;
  uint8_t epoch[HD_STORE_ID_BYTES];
} rewind_op_t;

typedef struct forget_op {
  hd__wop_t base;
  size_t n;
  uint64_t seqs[];
} forget_op_t;

typedef struct store_id_op {
  hd__wop_t base;
  uint8_t id[HD_STORE_ID_BYTES];
} store_id_op_t;

/* The client store from its interface (from its SQLite base, the writer's ctx: a cast). */
static sq_client_t *from_iface(hd__client_store_t *iface) {
  return hd__container_of(iface, sq_client_t, iface);
}

/* ---- writer (a pool thread, one batch at a time) --------------------------------------------- */

static int run_insert(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  insert_op_t *op = (insert_op_t *)base;
  sqlite3_stmt *st = s->sql.w[W_INSERT];
  int64_t floor = s->hw; /* at or below: held already, or received and confirmed */
  base->value = 0;
  for (size_t i = 0; i < op->n; i++) {
    const hd__store_event_t *ev = &op->evs[i];
    if (ev->seq > INT64_MAX || (int64_t)ev->seq <= floor) continue;
    sqlite3_bind_int64(st, 1, (int64_t)ev->seq);
    sqlite3_bind_int64(st, 2, ev->created_ms);
    sqlite3_bind_blob(st, 3, ev->payload, (int)ev->payload_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int64_t)ev->seq <= s->seen);
    int err = hd__sqlite_step_done(st, "store received event");
    if (err != 0) return err;
    base->value += (uint64_t)sqlite3_changes(s->sql.wdb);
    if ((int64_t)ev->seq > s->hw) s->hw = (int64_t)ev->seq;
  }
  sqlite3_clear_bindings(st);
  return 0;
}

/* The event as it was handed out: by seq and creation time, so that another event that got its
 * number after an epoch change is never taken for it; an orphan (or an event that became one
 * while it was out) is forgotten, with nothing to report. */
static int run_consume(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  consume_op_t *op = (consume_op_t *)base;
  base->value = 0;
  if (op->seq > INT64_MAX) return 0;
  int err = 0;
  if (op->orphan == 0) {
    sqlite3_stmt *st = s->sql.w[W_CONSUME];
    sqlite3_bind_int64(st, 1, (int64_t)op->seq);
    sqlite3_bind_blob(st, 2, op->data, (int)op->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, op->created_ms);
    err = hd__sqlite_step_done(st, "mark consumed");
    sqlite3_clear_bindings(st);
    if (err != 0 || sqlite3_changes(s->sql.wdb) != 0) {
      base->value = err == 0;
      return err;
    }
  }
  sqlite3_stmt *st = s->sql.w[W_ORPHAN_DEL];
  sqlite3_bind_int64(st, 1, op->orphan);
  sqlite3_bind_int64(st, 2, (int64_t)op->seq);
  sqlite3_bind_int64(st, 3, op->created_ms);
  err = hd__sqlite_step_done(st, "forget orphan");
  if (err == 0 && sqlite3_changes(s->sql.wdb) != 0) base->value = 2;
  return err;
}

static int set_meta_int(sq_client_t *s, const char *key, int64_t v) {
  sqlite3_stmt *st = s->sql.w[W_META_SET];
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, v);
  return hd__sqlite_step_done(st, key);
}

static int set_meta_blob(sq_client_t *s, const char *key, const void *v, int len);

/* One statement run once with `floor` bound: how many rows it changed, or an HD_E* code. */
static int64_t run_once(sq_client_t *s, const char *sql, uint64_t floor) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->sql.wdb, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return hd__sqlite_error(rc, s->sql.wdb, "rewind");
  sqlite3_bind_int64(st, 1, floor > INT64_MAX ? INT64_MAX : (int64_t)floor);
  int err = hd__sqlite_step_done(st, "rewind");
  int64_t changed = sqlite3_changes(s->sql.wdb);
  sqlite3_finalize(st);
  return err != 0 ? err : changed;
}

static int run_rewind(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  rewind_op_t *op = (rewind_op_t *)base;
  int64_t orphaned = run_once(s, rewind_sql, op->floor);
  int64_t dropped = orphaned < 0 ? orphaned
                                 : run_once(s, "DELETE FROM events WHERE seq > ?1 AND state = 1",
                                            op->floor);
  int64_t gone = dropped < 0 ? dropped : run_once(s, "DELETE FROM events WHERE seq > ?1", op->floor);
  if (gone < 0) return (int)gone;
  int err = set_meta_blob(s, "server_epoch", op->epoch, HD_STORE_ID_BYTES);
  if (err == 0) err = set_meta_int(s, "seen_upto", (int64_t)op->seen_upto);
  if (err != 0) return err;
  s->hw = 0;
  s->seen = op->seen_upto > INT64_MAX ? INT64_MAX : (int64_t)op->seen_upto;
  base->value = (uint64_t)orphaned | (uint64_t)dropped << 32;
  return 0;
}

static int run_forget(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  forget_op_t *op = (forget_op_t *)base;
  sqlite3_stmt *st = s->sql.w[W_FORGET];
  base->value = 0;
  for (size_t i = 0; i < op->n; i++) {
    if (op->seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(st, 1, (int64_t)op->seqs[i]);
    int err = hd__sqlite_step_done(st, "forget event");
    if (err != 0) return err;
    base->value += (uint64_t)sqlite3_changes(s->sql.wdb);
  }
  return 0;
}

static int set_meta_blob(sq_client_t *s, const char *key, const void *v, int len) {
  sqlite3_stmt *st = s->sql.w[W_META_SET];
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_blob(st, 2, v, len, SQLITE_STATIC);
  return hd__sqlite_step_done(st, key);
}

static int run_store_id(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  store_id_op_t *op = (store_id_op_t *)base;
  sqlite3_stmt *st = s->sql.w[W_META_GET];
  sqlite3_bind_text(st, 1, "server_store_id", -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), known = 0, same = 0;
  if (rc == SQLITE_ROW) {
    known = 1;
    same = sqlite3_column_bytes(st, 0) == HD_STORE_ID_BYTES &&
           memcmp(sqlite3_column_blob(st, 0), op->id, HD_STORE_ID_BYTES) == 0;
  }
  int err = 0;
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
    err = hd__sqlite_error(rc, s->sql.wdb, "read store id");
  }
  sqlite3_reset(st);
  base->value = 0;
  if (err != 0 || same) return err;
  if (known) {
    /* Another server store: its sequence numbers start again at 1, so what we hold (numbered by
     * the old store) can neither be confirmed by it nor kept without colliding; its epochs are
     * not the new store's either. */
    err = hd__sqlite_exec(s->sql.wdb, "DELETE FROM events; DELETE FROM orphans",
                          "drop events of the old server store");
    if (err == 0) err = hd__sqlite_step_done(s->sql.w[W_ORPHAN_END], "forget the old epoch");
    if (err != 0) return err;
    s->hw = 0;
    s->seen = 0;
    base->value = 1;
  }
  return set_meta_blob(s, "server_store_id", op->id, HD_STORE_ID_BYTES);
}

/* Before BEGIN: the synchronous level. A batch of received events and forgotten (confirmed) ones
 * only commits without an fsync: the server holds every such event until it is confirmed, so a
 * power loss that drops the batch (with the high-water mark it raised) only makes the server send
 * those events again. A batch with a consumption (or a store id) is synced as configured: the
 * handler must not run twice. */
static int kind_begin(hd__sqlite_store_t *sql, size_t n_ops, int relaxed) {
  sq_client_t *s = (sq_client_t *)sql;
  int want_full = s->sync_full && !relaxed;
  if (want_full != s->synced_full) {
    const char *pragma = want_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    if (sqlite3_exec(s->sql.wdb, pragma, NULL, NULL, NULL) != SQLITE_OK) {
      return hd__error(HD_ESTORE, "client store: %s: %s", pragma, sqlite3_errmsg(s->sql.wdb));
    }
    s->synced_full = want_full;
  }
  return 0;
}

/* Before COMMIT: the high-water mark, if the batch raised it. */
static int kind_before_commit(hd__sqlite_store_t *sql) {
  sq_client_t *s = (sq_client_t *)sql;
  if (s->hw == s->hw_committed) return 0;
  sqlite3_stmt *st = s->sql.w[W_META_SET];
  sqlite3_bind_text(st, 1, "high_water", -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, s->hw);
  return hd__sqlite_step_done(st, "high-water mark");
}

static void kind_rollback(hd__sqlite_store_t *sql) {
  sq_client_t *s = (sq_client_t *)sql;
  s->hw = s->hw_committed;
  s->seen = s->seen_committed;
}

static void kind_after_commit(hd__sqlite_store_t *sql) {
  sq_client_t *s = (sq_client_t *)sql;
  s->hw_committed = s->hw;
  s->seen_committed = s->seen;
}

/* ---- loop thread -------------------------------------------------------------------------- */

/* Received and forgotten events may commit without an fsync (kind_begin says why). */
static const hd__wop_type_t insert_type = {run_insert, hd__wop_done, 1};
static const hd__wop_type_t consume_type = {run_consume, hd__wop_done, 0};
static const hd__wop_type_t forget_type = {run_forget, hd__wop_done, 1};
static const hd__wop_type_t store_id_type = {run_store_id, hd__wop_done, 0};
static const hd__wop_type_t rewind_type = {run_rewind, hd__wop_done, 0};

static int c_insert_received(hd__client_store_t *base, const hd__store_event_t *evs, size_t n,
                             hd__store_cb cb, void *cb_data) {
  if (evs == NULL && n != 0) return hd__error(HD_EINVAL, "insert received: no events");
  size_t total = sizeof(insert_op_t), bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if ((evs[i].payload == NULL && evs[i].payload_len != 0) ||
        evs[i].payload_len > (size_t)INT32_MAX) {
      return hd__error(HD_EINVAL, "insert received: event %zu has a bad payload", i);
    }
    bytes += evs[i].payload_len;
  }
  if (n > (SIZE_MAX - total - bytes) / sizeof(hd__store_event_t)) {
    return hd__error(HD_EINVAL, "insert received: batch too large");
  }
  total += n * sizeof(hd__store_event_t) + bytes;
  insert_op_t *op = malloc(total);
  if (op == NULL) return hd__error(HD_ENOMEM, "insert received: %zu bytes", total);
  op->n = n;
  uint8_t *p = (uint8_t *)&op->evs[n];
  for (size_t i = 0; i < n; i++) {
    op->evs[i] = evs[i];
    op->evs[i].data = NULL;
    op->evs[i].data_len = 0;
    op->evs[i].payload = p;
    if (evs[i].payload_len != 0) memcpy(p, evs[i].payload, evs[i].payload_len);
    p += evs[i].payload_len;
  }
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &insert_type, cb, cb_data);
}

static int c_mark_consumed(hd__client_store_t *base, const hd__store_event_t *which,
                           const void *data, size_t len, hd__store_cb cb, void *cb_data) {
  if (which == NULL || (data == NULL && len != 0) || len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "mark consumed: no event or bad data");
  }
  consume_op_t *op = malloc(sizeof *op + len);
  if (op == NULL) return hd__error(HD_ENOMEM, "mark consumed");
  op->seq = which->seq;
  op->created_ms = which->created_ms;
  op->orphan = which->orphan;
  op->len = len;
  if (len != 0) memcpy(op->data, data, len);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &consume_type, cb, cb_data);
}

static int c_forget(hd__client_store_t *base, const uint64_t *seqs, size_t n, hd__store_cb cb,
                    void *cb_data) {
  if ((seqs == NULL && n != 0) || n > SIZE_MAX / 8 - sizeof(forget_op_t)) {
    return hd__error(HD_EINVAL, "forget: no sequence numbers");
  }
  forget_op_t *op = malloc(sizeof *op + n * sizeof(uint64_t));
  if (op == NULL) return hd__error(HD_ENOMEM, "forget");
  op->n = n;
  if (n != 0) memcpy(op->seqs, seqs, n * sizeof(uint64_t));
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &forget_type, cb, cb_data);
}

static int c_set_server_store_id(hd__client_store_t *base, const uint8_t id[HD_STORE_ID_BYTES],
                                 hd__store_cb cb, void *cb_data) {
  if (id == NULL) return hd__error(HD_EINVAL, "no store id");
  store_id_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "set store id");
  memcpy(op->id, id, HD_STORE_ID_BYTES);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &store_id_type, cb, cb_data);
}

static int c_rewind(hd__client_store_t *base, uint64_t floor, uint64_t seen_upto,
                    const uint8_t epoch[HD_STORE_ID_BYTES], hd__store_cb cb, void *cb_data) {
  if (epoch == NULL) return hd__error(HD_EINVAL, "rewind: no epoch");
  rewind_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "rewind");
  op->floor = floor;
  op->seen_upto = seen_upto;
  memcpy(op->epoch, epoch, HD_STORE_ID_BYTES);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &rewind_type, cb, cb_data);
}

/* Reads meta[key] on the read connection: an integer into *num, or (num NULL) a blob of exactly
 * blob_len bytes into blob. *found: the key was there. */
static int read_meta(sq_client_t *s, const char *key, int64_t *num, uint8_t *blob, int blob_len,
                     int *found) {
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_META];
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st), err = 0;
  *found = 0;
  if (rc == SQLITE_ROW) {
    if (num != NULL) {
      *num = sqlite3_column_int64(st, 0);
      *found = 1;
    } else if (sqlite3_column_bytes(st, 0) == blob_len) {
      memcpy(blob, sqlite3_column_blob(st, 0), (size_t)blob_len);
      *found = 1;
    } else {
      err = hd__error(HD_ECORRUPT, "client store: %s has %d bytes", key,
                      sqlite3_column_bytes(st, 0));
    }
  } else if (rc != SQLITE_DONE) {
    err = hd__sqlite_error(rc, s->sql.rdb, key);
  }
  sqlite3_reset(st);
  return err;
}

static int c_high_water(hd__client_store_t *base, uint64_t *out) {
  int64_t v = 0;
  int found;
  int err = read_meta(from_iface(base), "high_water", &v, NULL, 0, &found);
  *out = err == 0 && v > 0 ? (uint64_t)v : 0;
  return err;
}

static int c_server_store_id(hd__client_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  int found;
  int err = read_meta(from_iface(base), "server_store_id", NULL, out, HD_STORE_ID_BYTES, &found);
  if (err == 0 && !found) return hd__error(HD_ENOTFOUND, "no server store id remembered yet");
  return err;
}

static int c_server_epoch(hd__client_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  int found;
  int err = read_meta(from_iface(base), "server_epoch", NULL, out, HD_STORE_ID_BYTES, &found);
  if (err == 0 && !found) memset(out, 0, HD_STORE_ID_BYTES);
  return err;
}

static int list(hd__client_store_t *base, int which, uint64_t after_seq, uint32_t limit,
                hd__store_event_fn fn, void *fn_data) {
  sq_client_t *s = from_iface(base);
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  if (limit == 0 || after_seq >= INT64_MAX) return 0;
  sqlite3_stmt *st = s->sql.r[which];
  sqlite3_bind_int64(st, 1, (int64_t)after_seq);
  sqlite3_bind_int64(st, 2, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
  return hd__sqlite_read_events(st, fn, fn_data, "list events");
}

static int c_list_unhandled(hd__client_store_t *base, uint64_t after_seq, uint32_t limit,
                            hd__store_event_fn fn, void *fn_data) {
  return list(base, R_UNHANDLED, after_seq, limit, fn, fn_data);
}

static int c_list_consumed(hd__client_store_t *base, uint64_t after_seq, uint32_t limit,
                           hd__store_event_fn fn, void *fn_data) {
  return list(base, R_CONSUMED, after_seq, limit, fn, fn_data);
}

static int c_list_orphans(hd__client_store_t *base, int64_t after, uint32_t limit,
                          hd__store_event_fn fn, void *fn_data) {
  return list(base, R_ORPHANS, after < 0 ? 0 : (uint64_t)after, limit, fn, fn_data);
}

static int c_counts(hd__client_store_t *base, uint64_t *unhandled, uint64_t *consumed) {
  sq_client_t *s = from_iface(base);
  *unhandled = *consumed = 0;
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_COUNTS];
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *unhandled = (uint64_t)sqlite3_column_int64(st, 0);
    *consumed = (uint64_t)sqlite3_column_int64(st, 1);
  }
  int err = rc == SQLITE_ROW ? 0 : hd__sqlite_error(rc, s->sql.rdb, "count events");
  sqlite3_reset(st);
  return err;
}

static void c_stats(hd__client_store_t *base, hd__store_stats_t *out) {
  hd__writer_stats(&from_iface(base)->sql.writer, out);
}

static void c_hold(hd__client_store_t *base, int held) {
  hd__writer_hold(&from_iface(base)->sql.writer, held);
}

static int c_close(hd__client_store_t *base, hd_close_cb cb, void *cb_data) {
  return hd__sqlite_store_close(&from_iface(base)->sql, cb, cb_data);
}

/* Tests: the size quota of open_conn, changed between two writes (a queued write itself). */
typedef struct quota_op {
  hd__wop_t base;
  uint64_t pages;
} quota_op_t;

static int run_quota(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  char sql[64];
  /* SQLite keeps the size the file has if asked for less; none: its own ceiling */
  uint64_t pages = ((quota_op_t *)base)->pages;
  snprintf(sql, sizeof sql, "PRAGMA max_page_count=%llu",
           (unsigned long long)(pages ? pages : 4294967294u));
  int rc = sqlite3_exec(s->sql.wdb, sql, NULL, NULL, NULL);
  return rc == SQLITE_OK ? 0 : hd__sqlite_error(rc, s->sql.wdb, "size quota");
}

static const hd__wop_type_t quota_type = {run_quota, hd__wop_done, 1};

static int c_set_quota(hd__client_store_t *base, uint64_t max_db_pages, hd__store_cb cb,
                       void *cb_data) {
  quota_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "size quota");
  op->pages = max_db_pages;
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &quota_type, cb, cb_data);
}

static const hd__client_store_vtable_t sqlite_client_vtable = {
    .backend_name = "sqlite",
    .insert_received = c_insert_received,
    .mark_consumed = c_mark_consumed,
    .forget = c_forget,
    .set_server_store_id = c_set_server_store_id,
    .rewind = c_rewind,
    .high_water = c_high_water,
    .server_store_id = c_server_store_id,
    .server_epoch = c_server_epoch,
    .list_unhandled = c_list_unhandled,
    .list_orphans = c_list_orphans,
    .list_consumed = c_list_consumed,
    .counts = c_counts,
    .stats = c_stats,
    .hold = c_hold,
    .close = c_close,
    .set_quota = c_set_quota,
};

/* At open: the interface, the synchronous level asked for and the high-water mark as
 * committed. */
static int kind_opened(hd__sqlite_store_t *sql, const hd__store_options_t *opts) {
  sq_client_t *s = (sq_client_t *)sql;
  s->iface.vt = &sqlite_client_vtable;
  s->iface.loop = opts->loop;
  s->sync_full = s->synced_full = !opts->sync_normal;
  uint64_t hw = 0;
  int64_t seen = 0;
  int found;
  int err = c_high_water(&s->iface, &hw);
  if (err == 0) err = read_meta(s, "seen_upto", &seen, NULL, 0, &found);
  s->hw = s->hw_committed = (int64_t)hw;
  s->seen = s->seen_committed = seen;
  return err;
}

static const hd__sqlite_kind_t client_kind = {
    .name = "client", .size = sizeof(sq_client_t), .application_id = 0x4844636c /* "HDcl" */,
    .migrations = client_migrations, .n_migrations = (int)HD__ARRAY_SIZE(client_migrations),
    .write_sql = write_sql, .n_write = W_COUNT, .read_sql = read_sql, .n_read = R_COUNT,
    .opened = kind_opened, .begin = kind_begin, .before_commit = kind_before_commit,
    .after_commit = kind_after_commit, .rollback = kind_rollback,
};

int hd__sqlite_client_store_open(hd__client_store_t **out, const hd__store_options_t *opts) {
  hd__sqlite_store_t *sql;
  int err = hd__sqlite_store_open(&sql, &client_kind, opts);
  *out = err == 0 ? &((sq_client_t *)sql)->iface : NULL;
  return err;
}
