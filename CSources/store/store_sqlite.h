/* The SQLite store: what the server and the client stores on SQLite share. One object,
 * hd__sqlite_store_t, is the first member of both (store_sqlite_server.c, store_sqlite_client.c):
 * it holds the folder's lock, the two connections (the writer's, used on libuv's pool, and the
 * loop thread's read-only one), their prepared statements and the group-commit writer
 * (store_writer.h) that their writes are queued on; it opens, runs the transactions of, and
 * closes both. A kind of store (server or client) is an hd__sqlite_kind_t: its schema, its
 * statements and its part of each batch; its file keeps only that and the operations of its
 * vtable (store.h).
 *
 * Another backend (PostgreSQL over libpq, say) is a sibling of this file: its own base object
 * with its connection and an hd__writer_t (the writer knows no SQL) for group commit, and its
 * server and client files implementing the same two vtables. */
#ifndef HD_STORE_SQLITE_H
#define HD_STORE_SQLITE_H

#include "store.h"
#include "store_writer.h"

#include <sqlite3.h>

/* Most statements a kind prepares on each connection. */
#define HD__SQLITE_MAX_STATEMENTS 12
/* Statements prepared on first use (hd__sqlite_stmt), per connection; a power of two. */
#define HD__SQLITE_CACHED 64

typedef struct hd__sqlite_store hd__sqlite_store_t;

typedef struct hd__sqlite_cached {
  const char *sql; /* the statement's text, by address: a static string of the caller's */
  sqlite3_stmt *st;
} hd__sqlite_cached_t;

/* A kind of store. The hooks are optional (NULL: nothing to do). */
typedef struct hd__sqlite_kind {
  const char *name;              /* "server" or "client", for messages */
  size_t size;                   /* of the kind's struct, which starts with hd__sqlite_store_t */
  int32_t application_id;        /* tells server and client databases apart */
  const char *const *migrations; /* migrations[i] brings version i to i+1; the latest is */
  int n_migrations;              /*   n_migrations */
  const char *const *write_sql;  /* prepared once on the write connection, as w[i] */
  size_t n_write;
  const char *const *read_sql;   /* prepared once on the read connection, as r[i] */
  size_t n_read;
  /* Loop thread, at open, inside the opening transaction (on wdb, after the migrations): what
   * the kind records at every open (the server: its epoch and the clean-shutdown flag). */
  int (*open_tx)(hd__sqlite_store_t *s, const hd__store_options_t *opts);
  /* Loop thread, at open, once the statements are ready and before the writer starts: the
   * kind's part of opening (its interface, what it keeps in memory: ids, counters). */
  int (*opened)(hd__sqlite_store_t *s, const hd__store_options_t *opts);
  /* Pool thread, the writer's last work, before the write connection closes, unless a write
   * failed for good: what the kind records at a clean close. */
  void (*closing)(hd__sqlite_store_t *s);
  /* Run in one transaction on a backup copy to mark it as one (NULL: the kind has no backups). */
  const char *backup_mark_sql;
  /* Pool thread, the kind's part of each batch (store_writer.h): begin runs before BEGIN,
   * before_commit before COMMIT, rollback after ROLLBACK. */
  int (*begin)(hd__sqlite_store_t *s, size_t n_ops, int relaxed);
  int (*before_commit)(hd__sqlite_store_t *s);
  void (*after_commit)(hd__sqlite_store_t *s);
  void (*rollback)(hd__sqlite_store_t *s);
  /* Frees what the kind allocated; last, just before the store itself is freed. */
  void (*release)(hd__sqlite_store_t *s);
} hd__sqlite_kind_t;

struct hd__sqlite_store {
  const hd__sqlite_kind_t *kind;
  hd__writer_t writer;
  char *folder;
  int lock_fd;
  sqlite3 *wdb; /* the writer's: used on the pool, one batch at a time (after open) */
  sqlite3 *rdb; /* the loop thread's, read-only */
  sqlite3_stmt *tx[2]; /* BEGIN IMMEDIATE, COMMIT (the writer's) */
  sqlite3_stmt *w[HD__SQLITE_MAX_STATEMENTS]; /* kind->write_sql on wdb */
  sqlite3_stmt *r[HD__SQLITE_MAX_STATEMENTS]; /* kind->read_sql on rdb */
  hd__sqlite_cached_t wcache[HD__SQLITE_CACHED]; /* hd__sqlite_stmt's, on wdb (pool thread) */
  hd__sqlite_cached_t rcache[HD__SQLITE_CACHED]; /* on rdb (loop thread) */
  int closing; /* close was called: reads fail with HD_ECLOSED */
  int backups; /* backups on the pool: the store is freed once they are done */
  int writer_closed;
  hd_close_cb close_cb;
  void *close_data;
};

/* Opens a store of `kind` in opts->folder (loop thread): allocates kind->size bytes, zeroed,
 * then locks the folder, opens the write connection, migrates the schema, prepares the write
 * statements, opens the read connection, prepares the read statements, runs kind->opened and
 * starts the writer. HD_EBUSY: the folder is in use; HD_EVERSION: written by a newer release;
 * HD_ECORRUPT: not a readable database. On failure everything is released and *out is NULL. */
int hd__sqlite_store_open(hd__sqlite_store_t **out, const hd__sqlite_kind_t *kind,
                          const hd__store_options_t *opts);
/* Loop thread. Closes the read side, lets the writer commit what is queued and close the write
 * connection (the last one, so it checkpoints the WAL), releases the lock, frees the store and
 * calls cb. HD_ECLOSED if already closing. */
int hd__sqlite_store_close(hd__sqlite_store_t *s, hd_close_cb cb, void *cb_data);

/* Loop thread. Copies the store to `path` on a thread of libuv's pool, with a connection of its
 * own (the loop and the writer go on), and marks the copy as a backup (hd__sqlite_backup_file);
 * then cb(cb_data, status, 0) on the loop (the detail in hd_last_error_message()). A close waits
 * for it. HD_ECLOSED while closing, HD_EINVAL if the kind has no backups. */
int hd__sqlite_store_backup(hd__sqlite_store_t *s, const char *path, hd__store_cb cb,
                            void *cb_data);
/* Any thread, blocking: the same for a store of `kind` in `folder` that no process has open
 * (HD_EBUSY if one has: back it up through that store), HD_ENOTFOUND if there is no store. */
int hd__sqlite_backup_folder(const hd__sqlite_kind_t *kind, const char *folder, const char *path);
/* Any thread, blocking: a consistent copy of <folder>/hyperdown.db (a store of `kind`) at `path`
 * with SQLite's online backup API on connections of its own (one read transaction: writers go
 * on, the copy is the database as of one commit), marked with kind->backup_mark_sql, turned into
 * a single file (journal_mode=DELETE), fsynced, then renamed to `path` (written beside it under
 * a temporary name first, so that `path` is never a copy without its mark) and the rename fsynced. */
int hd__sqlite_backup_file(const hd__sqlite_kind_t *kind, const char *folder, const char *path);

/* sqlite3_exec of `sql`, an HD_E* code naming `what` on failure. */
int hd__sqlite_exec(sqlite3 *db, const char *sql, const char *what);

/* Records an HD_E* code for a SQLite failure and returns it: FULL → ENOSPC, CORRUPT/NOTADB →
 * ECORRUPT, IOERR → EIO, BUSY/LOCKED → EBUSY, NOMEM → ENOMEM, anything else → ESTORE. The detail
 * names `what`, SQLite's message and the OS errno when there is one. */
int hd__sqlite_error(int rc, sqlite3 *db, const char *what);

/* The statement of `sql` (a static string: it is known by its address) on `db` (s->wdb on the
 * writer's thread, s->rdb on the loop thread), prepared on its first use and kept until the
 * connection closes, so that a file of a kind can have statements of its own without a shared
 * list. NULL with the error recorded if it does not prepare. */
sqlite3_stmt *hd__sqlite_stmt(hd__sqlite_store_t *s, sqlite3 *db, const char *sql);

/* Steps a statement expected to finish (INSERT/UPDATE/DELETE) and resets it. */
int hd__sqlite_step_done(sqlite3_stmt *st, const char *what);

/* Steps a bound read whose rows are (seq, created_ms, payload[, data[, flags[, orphan[,
 * store[, kind[, attempts]]]]]]),
 * handing each row to fn
 * as an event, until the rows end or fn returns non-zero; then resets it (an open read would
 * pin the WAL). Returns how many rows fn got, or an HD_E* code naming `what`. */
int hd__sqlite_read_events(sqlite3_stmt *st, hd__store_event_fn fn, void *fn_data,
                           const char *what);

#endif
