/* The client store on SQLite: the events one user received, until its server confirms them.
 *
 * events is keyed by (store, seq): the server store the event came from (a row of `stores`, by
 * its small number) and its number there, clustered (WITHOUT ROWID, no extra index on the insert
 * path), so that the events of a server store that was replaced stay apart from the new one's
 * (docs/STORAGE.md). A partial index over the consumed rows makes the reconnect's "what did I
 * consume" listing cost what it returns, not a scan of every unhandled event. state is 0 for a
 * received event, 1 once consumed (data then holds the consumer's data for the server), 2 once
 * failed for good (data holds the reason for FAILED); attempts counts the handler calls, the
 * first by the receive's own commit, each later one before it happens (mark_attempt).
 * `stores` holds, per server store, its id, its high-water mark (the highest seq ever received
 * from it, kept across forgetting, so a confirmed event that it sends again is recognised as a
 * duplicate), its epoch and seen_upto; meta.server_store names the current one. */
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
    /* version 3: events keyed by (server store, seq) (docs/STORAGE.md "Events of several server
     * stores"): the remembered store becomes stores row 1 with its mark, epoch and seen_upto, and
     * every held event is its; events held with no store id remembered (none are expected) go to a
     * store of id zero, which no server has: handled, never reported, purged by an operator */
    "CREATE TABLE stores(no INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE,"
    "  high_water INTEGER NOT NULL DEFAULT 0, epoch BLOB, seen_upto INTEGER NOT NULL DEFAULT 0);"
    "INSERT INTO stores(no, id, high_water, epoch, seen_upto)"
    "  SELECT 1, value, coalesce((SELECT value FROM meta WHERE key = 'high_water'), 0),"
    "    (SELECT value FROM meta WHERE key = 'server_epoch'),"
    "    coalesce((SELECT value FROM meta WHERE key = 'seen_upto'), 0)"
    "  FROM meta WHERE key = 'server_store_id';"
    "INSERT INTO stores(no, id) SELECT 1, zeroblob(16)"
    "  WHERE NOT EXISTS (SELECT 1 FROM stores) AND EXISTS (SELECT 1 FROM events);"
    "DROP INDEX events_consumed;"
    "ALTER TABLE events RENAME TO events_v2;"
    "CREATE TABLE events(store INTEGER NOT NULL, seq INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL, payload BLOB NOT NULL, state INTEGER NOT NULL DEFAULT 0,"
    "  data BLOB, repeated INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(store, seq)) WITHOUT ROWID;"
    "INSERT INTO events SELECT 1, seq, created_ms, payload, state, data, repeated FROM events_v2;"
    "DROP TABLE events_v2;"
    "CREATE INDEX events_consumed ON events(store, seq) WHERE state = 1;"
    "INSERT INTO meta(key, value) SELECT 'server_store', 1 FROM meta"
    "  WHERE key = 'server_store_id';"
    "DELETE FROM meta WHERE key IN ('server_store_id', 'high_water', 'server_epoch',"
    "  'seen_upto');",
    /* version 4: queue semantics (docs/STORAGE.md "Queue semantics"): attempts (handler calls
     * counted before each call, so that a handler that crashes the process runs out of them too),
     * kind (1: a notice, its payload the notice's encoded fields), and state 2 (failed: data holds
     * the reason, reported as FAILED); the partial index covers every reported state */
    "ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN kind INTEGER NOT NULL DEFAULT 0;"
    "DROP INDEX events_consumed;"
    "CREATE INDEX events_reported ON events(store, seq) WHERE state >= 1;",
};

enum {
  W_INSERT, W_CONSUME, W_FORGET, W_META_SET, W_ORPHAN_DEL, W_STORE_GET, W_STORE_ADD, W_STORE_HW,
  W_COUNT
};
static const char *const write_sql[W_COUNT] = {
    /* the receive commit counts the first handler call (docs/QUEUES.md "Poison events") */
    "INSERT OR IGNORE INTO events(store, seq, created_ms, payload, repeated, kind, attempts)"
    "  VALUES(?5, ?1, ?2, ?3, ?4, ?6, 1)",
    "UPDATE events SET state = 1, data = ?2 WHERE store = ?4 AND seq = ?1 AND created_ms = ?3"
    "  AND state = 0",
    "DELETE FROM events WHERE store = ?2 AND seq = ?1 AND state >= 1",
    "INSERT OR REPLACE INTO meta(key, value) VALUES(?1, ?2)",
    /* an orphan handled: by its row, or (it became one while out) by its seq and time */
    "DELETE FROM orphans WHERE id = ?1 OR (?1 = 0 AND seq = ?2 AND created_ms = ?3)",
    "SELECT no, high_water, seen_upto FROM stores WHERE id = ?1",
    "INSERT INTO stores(id) VALUES(?1)",
    "UPDATE stores SET high_water = ?2 WHERE no = ?1",
};

/* The current server store's row: meta.server_store. */
#define CURRENT "(SELECT value FROM meta WHERE key = 'server_store')"

enum { R_STORE, R_UNHANDLED, R_CONSUMED, R_COUNTS, R_ORPHANS, R_HELD, R_COUNT };
static const char *const read_sql[R_COUNT] = {
    "SELECT id, high_water, epoch FROM stores WHERE no = " CURRENT,
    /* every store's, the oldest store first: a replaced store's events before the new one's */
    "SELECT seq, created_ms, payload, NULL, repeated, 0, store, kind, attempts FROM events"
    "  WHERE state = 0 AND (store, seq) > (?1, ?2) ORDER BY store, seq LIMIT ?3",
    /* consumed (state 1) and failed (2: flag HD__STORE_EV_FAILED, data the reason) */
    "SELECT seq, created_ms, payload, data, (state = 2) * 4, 0, store, kind, attempts FROM events"
    "  WHERE store = " CURRENT " AND state >= 1 AND seq > ?1 ORDER BY seq LIMIT ?2",
    "SELECT coalesce(sum(state = 0), 0) + (SELECT count(*) FROM orphans),"
    "  coalesce(sum(state >= 1), 0) FROM events WHERE store = " CURRENT,
    "SELECT seq, created_ms, payload, NULL, 2, id FROM orphans WHERE id > ?1 ORDER BY id"
    "  LIMIT ?2",
    "SELECT s.id, sum(e.state = 0), sum(e.state >= 1) FROM stores s JOIN events e ON e.store = s.no"
    "  WHERE s.no IS NOT " CURRENT " GROUP BY s.no ORDER BY s.no",
};

/* The rewind's statements, prepared when it runs (once per epoch change): ?1 the floor, ?2 the
 * current store's row. */
static const char *const rewind_sql[] = {
    /* a notice above the floor is of numbers the store lost: dropped, not an orphan */
    "INSERT INTO orphans(seq, created_ms, payload) SELECT seq, created_ms, payload FROM events"
    "  WHERE store = ?2 AND seq > ?1 AND state = 0 AND kind = 0 ORDER BY seq",
    "DELETE FROM events WHERE store = ?2 AND seq > ?1 AND state >= 1",
    "DELETE FROM events WHERE store = ?2 AND seq > ?1",
};

_Static_assert(W_COUNT <= HD__SQLITE_MAX_STATEMENTS && R_COUNT <= HD__SQLITE_MAX_STATEMENTS,
               "client store: too many statements");

/* The server store the writer files events under: the last one set_server_store_id named. */
typedef struct cur_store {
  int64_t no;                     /* its row in stores (0: none yet) */
  uint8_t id[HD_STORE_ID_BYTES];
  int64_t hw;                     /* its high-water mark */
  int64_t seen;                   /* its seen_upto: events at or below it not held are marked
                                     repeated when they come */
} cur_store_t;

typedef struct sq_client {
  hd__sqlite_store_t sql; /* first: the writer's ctx and the allocation */
  hd__client_store_t iface;
  int sync_full;   /* synchronous=FULL was asked for */
  int synced_full; /* writer (pool thread): the level the write connection is at now */
  /* writer (pool thread): the current store as committed and as the current batch leaves it */
  cur_store_t committed;
  cur_store_t cur;
  int hw_dirty;    /* cur.hw changed in this batch: written before COMMIT */
} sq_client_t;

/* The writes that come from one connection carry its server store's id: they apply only while
 * that store is the current one, so nothing of one store is ever filed under another's. */
typedef struct insert_op {
  hd__wop_t base;
  uint8_t store_id[HD_STORE_ID_BYTES];
  size_t n;
  hd__store_event_t evs[]; /* followed by the payloads, copied once */
} insert_op_t;

/* mark_consumed, mark_failed (data: the reason) and mark_attempt (no data) */
typedef struct consume_op {
  hd__wop_t base;
  uint64_t seq;
  int64_t created_ms;
  int64_t orphan;
  int64_t store;
  uint32_t attempts; /* mark_failed */
  size_t len;
  uint8_t data[];
} consume_op_t;

typedef struct rewind_op {
  hd__wop_t base;
  uint8_t store_id[HD_STORE_ID_BYTES];
  uint64_t floor, seen_upto;
  uint8_t epoch[HD_STORE_ID_BYTES];
} rewind_op_t;

typedef struct forget_op {
  hd__wop_t base;
  uint8_t store_id[HD_STORE_ID_BYTES];
  size_t n;
  uint64_t seqs[];
} forget_op_t;

/* set_server_store_id and purge_store */
typedef struct store_id_op {
  hd__wop_t base;
  uint8_t id[HD_STORE_ID_BYTES];
  int refused; /* purge: HD_ENOTFOUND or HD_EBUSY, reported by purge_done */
} store_id_op_t;

/* The client store from its interface (from its SQLite base, the writer's ctx: a cast). */
static sq_client_t *from_iface(hd__client_store_t *iface) {
  return hd__container_of(iface, sq_client_t, iface);
}

/* ---- writer (a pool thread, one batch at a time) --------------------------------------------- */

static int is_current(const sq_client_t *s, const uint8_t id[HD_STORE_ID_BYTES]) {
  return s->cur.no != 0 && memcmp(s->cur.id, id, HD_STORE_ID_BYTES) == 0;
}

static int run_insert(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  insert_op_t *op = (insert_op_t *)base;
  sqlite3_stmt *st = s->sql.w[W_INSERT];
  int64_t floor = s->cur.hw; /* at or below: held already, or received and confirmed */
  base->value = 0;
  if (!is_current(s, op->store_id)) return 0;
  sqlite3_bind_int64(st, 5, s->cur.no);
  for (size_t i = 0; i < op->n; i++) {
    const hd__store_event_t *ev = &op->evs[i];
    if (ev->seq > INT64_MAX || (int64_t)ev->seq <= floor) continue;
    sqlite3_bind_int64(st, 1, (int64_t)ev->seq);
    sqlite3_bind_int64(st, 2, ev->created_ms);
    sqlite3_bind_blob(st, 3, ev->payload, (int)ev->payload_len, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int64_t)ev->seq <= s->cur.seen);
    sqlite3_bind_int(st, 6, (int)ev->kind);
    int err = hd__sqlite_step_done(st, "store received event");
    if (err != 0) return err;
    base->value += (uint64_t)sqlite3_changes(s->sql.wdb);
    if ((int64_t)ev->seq > s->cur.hw) {
      s->cur.hw = (int64_t)ev->seq;
      s->hw_dirty = 1;
    }
  }
  sqlite3_clear_bindings(st);
  return 0;
}

/* An orphan done with (consumed or failed), or an event that became one while it was out: its
 * row goes, with nothing to report; value 2 if there was one. */
static int forget_orphan(sq_client_t *s, consume_op_t *op) {
  sqlite3_stmt *st = s->sql.w[W_ORPHAN_DEL];
  sqlite3_bind_int64(st, 1, op->orphan);
  sqlite3_bind_int64(st, 2, (int64_t)op->seq);
  sqlite3_bind_int64(st, 3, op->created_ms);
  int err = hd__sqlite_step_done(st, "forget orphan");
  if (err == 0 && sqlite3_changes(s->sql.wdb) != 0) op->base.value = 2;
  return err;
}

/* The event as it was handed out: by its store, seq and creation time, so that another event
 * that got its number (after an epoch change, or in another server store) is never taken for
 * it; an orphan (or an event that became one while it was out) is forgotten, with nothing to
 * report. */
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
    sqlite3_bind_int64(st, 4, op->store);
    err = hd__sqlite_step_done(st, "mark consumed");
    sqlite3_clear_bindings(st);
    if (err != 0 || sqlite3_changes(s->sql.wdb) != 0) {
      base->value = err == 0;
      return err;
    }
  }
  return forget_orphan(s, op);
}

/* Poison events (docs/QUEUES.md): a handler call counted before it happens, and an event given
 * up on, kept as state 2 with its reason until the server confirms the FAILED report. */
static const char mark_attempt_sql[] =
    "UPDATE events SET attempts = attempts + 1 WHERE store = ?1 AND seq = ?2 AND created_ms = ?3"
    "  AND state = 0 RETURNING attempts";
static const char mark_failed_sql[] =
    "UPDATE events SET state = 2, data = ?4, attempts = max(attempts, ?5) WHERE store = ?1"
    "  AND seq = ?2 AND created_ms = ?3 AND state = 0";

/* value: the attempts now, 0 if the event is not held unhandled (nor ever for an orphan: the
 * orphans table has no count, the event layer counts an orphan's calls in memory). */
static int run_mark_attempt(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  consume_op_t *op = (consume_op_t *)base;
  base->value = 0;
  if (op->seq > INT64_MAX || op->orphan != 0) return 0;
  sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, mark_attempt_sql);
  if (st == NULL) return HD_ESTORE;
  sqlite3_bind_int64(st, 1, op->store);
  sqlite3_bind_int64(st, 2, (int64_t)op->seq);
  sqlite3_bind_int64(st, 3, op->created_ms);
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    int64_t n = sqlite3_column_int64(st, 0);
    base->value = n > 0 ? (uint64_t)n : 0;
    rc = sqlite3_step(st); /* RETURNING: the update ends with the last row */
  }
  int err = rc == SQLITE_DONE ? 0 : hd__sqlite_error(rc, s->sql.wdb, "count a handler call");
  sqlite3_reset(st);
  return err;
}

/* value as run_consume's: 1 (held: report it), 2 (an orphan, forgotten), 0 (not held). */
static int run_mark_failed(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  consume_op_t *op = (consume_op_t *)base;
  base->value = 0;
  if (op->seq > INT64_MAX) return 0;
  if (op->orphan == 0) {
    sqlite3_stmt *st = hd__sqlite_stmt(&s->sql, s->sql.wdb, mark_failed_sql);
    if (st == NULL) return HD_ESTORE;
    sqlite3_bind_int64(st, 1, op->store);
    sqlite3_bind_int64(st, 2, (int64_t)op->seq);
    sqlite3_bind_int64(st, 3, op->created_ms);
    sqlite3_bind_blob(st, 4, op->data, (int)op->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, op->attempts);
    int err = hd__sqlite_step_done(st, "mark failed");
    sqlite3_clear_bindings(st);
    if (err != 0 || sqlite3_changes(s->sql.wdb) != 0) {
      base->value = err == 0;
      return err;
    }
  }
  return forget_orphan(s, op);
}

/* One statement run once with ?1 and ?2 bound: how many rows it changed, or an HD_E* code. */
static int64_t run_once(sq_client_t *s, const char *sql, int64_t a, int64_t b, const char *what) {
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->sql.wdb, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return hd__sqlite_error(rc, s->sql.wdb, what);
  sqlite3_bind_int64(st, 1, a);
  if (sqlite3_bind_parameter_count(st) > 1) sqlite3_bind_int64(st, 2, b);
  int err = hd__sqlite_step_done(st, what);
  int64_t changed = sqlite3_changes(s->sql.wdb);
  sqlite3_finalize(st);
  return err != 0 ? err : changed;
}

static int run_rewind(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  rewind_op_t *op = (rewind_op_t *)base;
  base->value = 0;
  if (!is_current(s, op->store_id)) return 0;
  int64_t floor = op->floor > INT64_MAX ? INT64_MAX : (int64_t)op->floor;
  int64_t seen = op->seen_upto > INT64_MAX ? INT64_MAX : (int64_t)op->seen_upto;
  int64_t n[3];
  for (int i = 0; i < 3; i++) {
    n[i] = run_once(s, rewind_sql[i], floor, s->cur.no, "rewind");
    if (n[i] < 0) return (int)n[i];
  }
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_prepare_v2(s->sql.wdb,
                              "UPDATE stores SET epoch = ?2, seen_upto = ?3 WHERE no = ?1", -1,
                              &st, NULL);
  if (rc != SQLITE_OK) return hd__sqlite_error(rc, s->sql.wdb, "rewind");
  sqlite3_bind_int64(st, 1, s->cur.no);
  sqlite3_bind_blob(st, 2, op->epoch, HD_STORE_ID_BYTES, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, seen);
  int err = hd__sqlite_step_done(st, "rewind");
  sqlite3_finalize(st);
  if (err != 0) return err;
  s->cur.hw = 0;
  s->hw_dirty = 1;
  s->cur.seen = seen;
  base->value = (uint64_t)n[0] | (uint64_t)n[1] << 32;
  return 0;
}

static int run_forget(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  forget_op_t *op = (forget_op_t *)base;
  sqlite3_stmt *st = s->sql.w[W_FORGET];
  base->value = 0;
  if (!is_current(s, op->store_id)) return 0;
  sqlite3_bind_int64(st, 2, s->cur.no);
  for (size_t i = 0; i < op->n; i++) {
    if (op->seqs[i] > INT64_MAX) continue;
    sqlite3_bind_int64(st, 1, (int64_t)op->seqs[i]);
    int err = hd__sqlite_step_done(st, "forget event");
    if (err != 0) return err;
    base->value += (uint64_t)sqlite3_changes(s->sql.wdb);
  }
  return 0;
}

static int set_meta_int(sq_client_t *s, const char *key, int64_t v) {
  sqlite3_stmt *st = s->sql.w[W_META_SET];
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, v);
  return hd__sqlite_step_done(st, key);
}

/* The current store's high-water mark, if the batch raised (or a rewind reset) it. */
static int write_hw(sq_client_t *s) {
  if (!s->hw_dirty || s->cur.no == 0) return 0;
  sqlite3_stmt *st = s->sql.w[W_STORE_HW];
  sqlite3_bind_int64(st, 1, s->cur.no);
  sqlite3_bind_int64(st, 2, s->cur.hw);
  s->hw_dirty = 0;
  return hd__sqlite_step_done(st, "high-water mark");
}

/* The row of the server store `id` into *out (its no, mark, seen_upto); *found 0 if none. */
static int find_store(sq_client_t *s, const uint8_t id[HD_STORE_ID_BYTES], cur_store_t *out,
                      int *found) {
  sqlite3_stmt *st = s->sql.w[W_STORE_GET];
  sqlite3_bind_blob(st, 1, id, HD_STORE_ID_BYTES, SQLITE_STATIC);
  int rc = sqlite3_step(st), err = 0;
  *found = rc == SQLITE_ROW;
  if (rc == SQLITE_ROW) {
    out->no = sqlite3_column_int64(st, 0);
    out->hw = sqlite3_column_int64(st, 1);
    out->seen = sqlite3_column_int64(st, 2);
    memcpy(out->id, id, HD_STORE_ID_BYTES);
  } else if (rc != SQLITE_DONE) {
    err = hd__sqlite_error(rc, s->sql.wdb, "read a server store");
  }
  sqlite3_reset(st);
  return err;
}

/* Another server store: what is held stays, filed under the store it came from; the writes of
 * the new store's connection go to its own row (a new one at first sight, which starts at 0). */
static int run_store_id(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  store_id_op_t *op = (store_id_op_t *)base;
  base->value = (uint64_t)s->cur.no;
  if (is_current(s, op->id)) return 0;
  cur_store_t next = {0};
  int found, err = write_hw(s);
  if (err == 0) err = find_store(s, op->id, &next, &found);
  if (err == 0 && !found) {
    sqlite3_stmt *st = s->sql.w[W_STORE_ADD];
    sqlite3_bind_blob(st, 1, op->id, HD_STORE_ID_BYTES, SQLITE_STATIC);
    err = hd__sqlite_step_done(st, "add a server store");
    next.no = sqlite3_last_insert_rowid(s->sql.wdb);
    memcpy(next.id, op->id, HD_STORE_ID_BYTES);
  }
  if (err == 0) err = set_meta_int(s, "server_store", next.no);
  if (err != 0) return err;
  base->value = (uint64_t)next.no | (s->cur.no != 0 ? HD__STORE_ID_CHANGED : 0) |
                (found ? 0 : HD__STORE_ID_NEW);
  s->cur = next;
  return 0;
}

/* An operator gave up on a server store: its events go, and so does its row (a later connection
 * to it starts from nothing). Never the current store's. */
static int run_purge(void *ctx, hd__wop_t *base) {
  sq_client_t *s = ctx;
  store_id_op_t *op = (store_id_op_t *)base;
  cur_store_t row;
  int found;
  base->value = 0;
  int err = find_store(s, op->id, &row, &found);
  if (err != 0) return err;
  if (!found || row.no == s->cur.no) {
    op->refused = found ? HD_EBUSY : HD_ENOTFOUND;
    return 0;
  }
  int64_t n = run_once(s, "DELETE FROM events WHERE store = ?1", row.no, 0, "purge a store");
  int64_t gone = n < 0 ? n : run_once(s, "DELETE FROM stores WHERE no = ?1", row.no, 0,
                                      "purge a store");
  if (gone < 0) return (int)gone;
  base->value = (uint64_t)n;
  return 0;
}

static void purge_done(void *ctx, hd__wop_t *base, int status) {
  store_id_op_t *op = (store_id_op_t *)base;
  if (status == 0 && op->refused != 0) {
    status = hd__error(op->refused, op->refused == HD_EBUSY
                                        ? "that is the current server's store: its events are "
                                          "delivered and confirmed as usual"
                                        : "this client holds nothing of that server store");
  }
  hd__wop_done(ctx, base, status);
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
static int kind_before_commit(hd__sqlite_store_t *sql) { return write_hw((sq_client_t *)sql); }

static void kind_rollback(hd__sqlite_store_t *sql) {
  sq_client_t *s = (sq_client_t *)sql;
  s->cur = s->committed;
  s->hw_dirty = 0;
}

static void kind_after_commit(hd__sqlite_store_t *sql) {
  sq_client_t *s = (sq_client_t *)sql;
  s->committed = s->cur;
}

/* ---- loop thread -------------------------------------------------------------------------- */

/* Received and forgotten events may commit without an fsync (kind_begin says why). */
static const hd__wop_type_t insert_type = {run_insert, hd__wop_done, 1};
static const hd__wop_type_t consume_type = {run_consume, hd__wop_done, 0};
/* a count lost to a power cut (not to a crash) only gives the event one more call */
static const hd__wop_type_t attempt_type = {run_mark_attempt, hd__wop_done, 1};
static const hd__wop_type_t failed_type = {run_mark_failed, hd__wop_done, 0};
static const hd__wop_type_t forget_type = {run_forget, hd__wop_done, 1};
static const hd__wop_type_t store_id_type = {run_store_id, hd__wop_done, 0};
static const hd__wop_type_t rewind_type = {run_rewind, hd__wop_done, 0};
static const hd__wop_type_t purge_type = {run_purge, purge_done, 0};

static int c_insert_received(hd__client_store_t *base, const uint8_t store_id[HD_STORE_ID_BYTES],
                             const hd__store_event_t *evs, size_t n, hd__store_cb cb,
                             void *cb_data) {
  if ((evs == NULL && n != 0) || store_id == NULL) {
    return hd__error(HD_EINVAL, "insert received: no events or no store id");
  }
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
  memcpy(op->store_id, store_id, HD_STORE_ID_BYTES);
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

/* mark_consumed, mark_failed and mark_attempt: the event as a read handed it out, and data. */
static int submit_mark(hd__client_store_t *base, const hd__wop_type_t *type,
                       const hd__store_event_t *which, uint32_t attempts, const void *data,
                       size_t len, hd__store_cb cb, void *cb_data, const char *what) {
  if (which == NULL || (data == NULL && len != 0) || len > (size_t)INT32_MAX) {
    return hd__error(HD_EINVAL, "%s: no event or bad data", what);
  }
  consume_op_t *op = malloc(sizeof *op + len);
  if (op == NULL) return hd__error(HD_ENOMEM, "%s", what);
  op->seq = which->seq;
  op->created_ms = which->created_ms;
  op->orphan = which->orphan;
  op->store = which->store;
  op->attempts = attempts;
  op->len = len;
  if (len != 0) memcpy(op->data, data, len);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, type, cb, cb_data);
}

static int c_mark_consumed(hd__client_store_t *base, const hd__store_event_t *which,
                           const void *data, size_t len, hd__store_cb cb, void *cb_data) {
  return submit_mark(base, &consume_type, which, 0, data, len, cb, cb_data, "mark consumed");
}

static int c_mark_attempt(hd__client_store_t *base, const hd__store_event_t *which,
                          hd__store_cb cb, void *cb_data) {
  return submit_mark(base, &attempt_type, which, 0, NULL, 0, cb, cb_data, "count an attempt");
}

static int c_mark_failed(hd__client_store_t *base, const hd__store_event_t *which,
                         uint32_t attempts, const char *reason, size_t len, hd__store_cb cb,
                         void *cb_data) {
  return submit_mark(base, &failed_type, which, attempts, reason, len, cb, cb_data,
                     "mark failed");
}

static int c_forget(hd__client_store_t *base, const uint8_t store_id[HD_STORE_ID_BYTES],
                    const uint64_t *seqs, size_t n, hd__store_cb cb, void *cb_data) {
  if ((seqs == NULL && n != 0) || store_id == NULL || n > SIZE_MAX / 8 - sizeof(forget_op_t)) {
    return hd__error(HD_EINVAL, "forget: no sequence numbers or no store id");
  }
  forget_op_t *op = malloc(sizeof *op + n * sizeof(uint64_t));
  if (op == NULL) return hd__error(HD_ENOMEM, "forget");
  op->n = n;
  memcpy(op->store_id, store_id, HD_STORE_ID_BYTES);
  if (n != 0) memcpy(op->seqs, seqs, n * sizeof(uint64_t));
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &forget_type, cb, cb_data);
}

static int submit_store_id(hd__client_store_t *base, const uint8_t id[HD_STORE_ID_BYTES],
                           const hd__wop_type_t *type, hd__store_cb cb, void *cb_data) {
  if (id == NULL) return hd__error(HD_EINVAL, "no store id");
  store_id_op_t *op = calloc(1, sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "server store id");
  memcpy(op->id, id, HD_STORE_ID_BYTES);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, type, cb, cb_data);
}

static int c_set_server_store_id(hd__client_store_t *base, const uint8_t id[HD_STORE_ID_BYTES],
                                 hd__store_cb cb, void *cb_data) {
  return submit_store_id(base, id, &store_id_type, cb, cb_data);
}

static int c_purge_store(hd__client_store_t *base, const uint8_t id[HD_STORE_ID_BYTES],
                         hd__store_cb cb, void *cb_data) {
  return submit_store_id(base, id, &purge_type, cb, cb_data);
}

static int c_rewind(hd__client_store_t *base, const uint8_t store_id[HD_STORE_ID_BYTES],
                    uint64_t floor, uint64_t seen_upto, const uint8_t epoch[HD_STORE_ID_BYTES],
                    hd__store_cb cb, void *cb_data) {
  if (epoch == NULL || store_id == NULL) return hd__error(HD_EINVAL, "rewind: no epoch");
  rewind_op_t *op = malloc(sizeof *op);
  if (op == NULL) return hd__error(HD_ENOMEM, "rewind");
  memcpy(op->store_id, store_id, HD_STORE_ID_BYTES);
  op->floor = floor;
  op->seen_upto = seen_upto;
  memcpy(op->epoch, epoch, HD_STORE_ID_BYTES);
  return hd__writer_submit(&from_iface(base)->sql.writer, &op->base, &rewind_type, cb, cb_data);
}

/* The current server store's row on the read connection: its id, high-water mark and epoch
 * (zeros: none). *found 0: no server store seen yet. */
static int read_current(sq_client_t *s, uint8_t id[HD_STORE_ID_BYTES], uint64_t *hw,
                        uint8_t epoch[HD_STORE_ID_BYTES], int *found) {
  *found = 0;
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_STORE];
  int rc = sqlite3_step(st), err = 0;
  if (rc == SQLITE_ROW) {
    int64_t v = sqlite3_column_int64(st, 1);
    int id_len = sqlite3_column_bytes(st, 0), epoch_len = sqlite3_column_bytes(st, 2);
    if (id_len != HD_STORE_ID_BYTES || (epoch_len != 0 && epoch_len != HD_STORE_ID_BYTES)) {
      err = hd__error(HD_ECORRUPT, "client store: a server store's id has %d bytes, its epoch %d",
                      id_len, epoch_len);
    } else {
      *found = 1;
      if (id != NULL) memcpy(id, sqlite3_column_blob(st, 0), HD_STORE_ID_BYTES);
      if (hw != NULL) *hw = v > 0 ? (uint64_t)v : 0;
      if (epoch != NULL && epoch_len != 0) {
        memcpy(epoch, sqlite3_column_blob(st, 2), HD_STORE_ID_BYTES);
      } else if (epoch != NULL) {
        memset(epoch, 0, HD_STORE_ID_BYTES);
      }
    }
  } else if (rc != SQLITE_DONE) {
    err = hd__sqlite_error(rc, s->sql.rdb, "read the server store");
  }
  sqlite3_reset(st);
  return err;
}

static int c_high_water(hd__client_store_t *base, uint64_t *out) {
  int found;
  *out = 0;
  return read_current(from_iface(base), NULL, out, NULL, &found);
}

static int c_server_store_id(hd__client_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  int found;
  int err = read_current(from_iface(base), out, NULL, NULL, &found);
  if (err == 0 && !found) return hd__error(HD_ENOTFOUND, "no server store id remembered yet");
  return err;
}

static int c_server_epoch(hd__client_store_t *base, uint8_t out[HD_STORE_ID_BYTES]) {
  int found;
  memset(out, 0, HD_STORE_ID_BYTES);
  return read_current(from_iface(base), NULL, NULL, out, &found);
}

/* A paging read: ?1.. bound to the n values, then the limit. */
static int list(hd__client_store_t *base, int which, const int64_t *after, int n, uint32_t limit,
                hd__store_event_fn fn, void *fn_data) {
  sq_client_t *s = from_iface(base);
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  if (limit == 0) return 0;
  sqlite3_stmt *st = s->sql.r[which];
  for (int i = 0; i < n; i++) sqlite3_bind_int64(st, i + 1, after[i]);
  sqlite3_bind_int64(st, n + 1, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
  return hd__sqlite_read_events(st, fn, fn_data, "list events");
}

static int64_t clamp(uint64_t v) { return v > INT64_MAX ? INT64_MAX : (int64_t)v; }

static int c_list_unhandled(hd__client_store_t *base, int64_t after_store, uint64_t after_seq,
                            uint32_t limit, hd__store_event_fn fn, void *fn_data) {
  int64_t after[2] = {after_store, clamp(after_seq)};
  return list(base, R_UNHANDLED, after, 2, limit, fn, fn_data);
}

static int c_list_consumed(hd__client_store_t *base, uint64_t after_seq, uint32_t limit,
                           hd__store_event_fn fn, void *fn_data) {
  int64_t after = clamp(after_seq);
  return list(base, R_CONSUMED, &after, 1, limit, fn, fn_data);
}

static int c_list_orphans(hd__client_store_t *base, int64_t after, uint32_t limit,
                          hd__store_event_fn fn, void *fn_data) {
  return list(base, R_ORPHANS, &after, 1, limit, fn, fn_data);
}

static int c_held_stores(hd__client_store_t *base, hd__store_held_fn fn, void *fn_data) {
  sq_client_t *s = from_iface(base);
  if (s->sql.closing) return hd__error(HD_ECLOSED, "store is closing");
  sqlite3_stmt *st = s->sql.r[R_HELD];
  int rc, count = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (sqlite3_column_bytes(st, 0) != HD_STORE_ID_BYTES) continue;
    count++;
    fn(fn_data, sqlite3_column_blob(st, 0), (uint64_t)sqlite3_column_int64(st, 1),
       (uint64_t)sqlite3_column_int64(st, 2));
  }
  int err = rc == SQLITE_DONE ? count : hd__sqlite_error(rc, s->sql.rdb, "list server stores");
  sqlite3_reset(st);
  return err;
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
    .mark_attempt = c_mark_attempt,
    .mark_failed = c_mark_failed,
    .mark_consumed = c_mark_consumed,
    .forget = c_forget,
    .set_server_store_id = c_set_server_store_id,
    .purge_store = c_purge_store,
    .rewind = c_rewind,
    .high_water = c_high_water,
    .server_store_id = c_server_store_id,
    .server_epoch = c_server_epoch,
    .list_unhandled = c_list_unhandled,
    .list_orphans = c_list_orphans,
    .list_consumed = c_list_consumed,
    .held_stores = c_held_stores,
    .counts = c_counts,
    .stats = c_stats,
    .hold = c_hold,
    .close = c_close,
    .set_quota = c_set_quota,
};

/* At open: the interface, the synchronous level asked for and the current server store as
 * committed. */
static int kind_opened(hd__sqlite_store_t *sql, const hd__store_options_t *opts) {
  sq_client_t *s = (sq_client_t *)sql;
  s->iface.vt = &sqlite_client_vtable;
  s->iface.loop = opts->loop;
  s->sync_full = s->synced_full = !opts->sync_normal;
  uint8_t id[HD_STORE_ID_BYTES];
  int found;
  int err = read_current(s, id, NULL, NULL, &found);
  if (err == 0 && found) err = find_store(s, id, &s->cur, &found);
  s->committed = s->cur;
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
